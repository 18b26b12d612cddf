/* The shared JSON vectors (firmware_protocol/vectors/ *.json files) against the C reference.
 *
 * Valid vectors: decoding the bytes gives the "decoded" meaning, and encoding that
 * meaning gives the bytes (unless "roundtrip": false). Invalid vectors: decoding fails
 * with the stated error kind; invalid commands also get the stated reply status from
 * the device. Sessions: every reply and notification of pmld_device matches.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "json.h"
#include "pmld_device.h"
#include "pmld_protocol.h"

#define MAX_FILE (1u << 21)
#define MAX_NODES (1 << 17)
#define MAX_BYTES 2048u

static char file_text[MAX_FILE];
static json_node nodes[MAX_NODES];
static int16_t ring_storage[1u << 20];
static char current[160];

/* ---- helpers ------------------------------------------------------------------------- */
static int load(const char *dir, const char *name)
{
    char path[1024];
    FILE *f;
    size_t n;
    char err[128];
    int used;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    if (!f) {
        CHECK(0, "cannot open %s", path);
        return -1;
    }
    n = fread(file_text, 1, MAX_FILE, f);
    fclose(f);
    if (n == MAX_FILE) {
        CHECK(0, "%s is larger than %u bytes", path, MAX_FILE);
        return -1;
    }
    used = json_parse(file_text, n, nodes, MAX_NODES, err, sizeof err);
    if (used < 0) {
        CHECK(0, "%s: %s", path, err);
        return -1;
    }
    return 0;
}

static int field(int obj, const char *key)
{
    int v = json_get(nodes, obj, key);
    if (v < 0) {
        CHECK(0, "%s: missing field %s", current, key);
    }
    return v;
}

static uint64_t u64(int obj, const char *key)
{
    return json_u64(nodes, field(obj, key));
}

static int flag(int obj, const char *key)
{
    return json_bool(nodes, field(obj, key));
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t hex_field(int obj, const char *key, uint8_t *out)
{
    int node = field(obj, key);
    size_t i, n;
    if (node < 0 || nodes[node].type != JSON_STRING || nodes[node].len % 2 != 0 ||
        nodes[node].len / 2 > MAX_BYTES) {
        CHECK(0, "%s: %s is not a hex string", current, key);
        return 0;
    }
    n = nodes[node].len / 2;
    for (i = 0; i < n; ++i) {
        int hi = hexval(nodes[node].text[2 * i]), lo = hexval(nodes[node].text[2 * i + 1]);
        CHECK(hi >= 0 && lo >= 0, "%s: bad hex digit", current);
        out[i] = (uint8_t)((hi < 0 ? 0 : hi) * 16 + (lo < 0 ? 0 : lo));
    }
    return n;
}

static size_t hex_node(int node, uint8_t *out)
{
    size_t i, n = nodes[node].len / 2;
    for (i = 0; i < n && i < MAX_BYTES; ++i) {
        out[i] = (uint8_t)(hexval(nodes[node].text[2 * i]) * 16 +
                           hexval(nodes[node].text[2 * i + 1]));
    }
    return n;
}

static void set_name(int vec, const char *file)
{
    char name[96];
    if (json_string(nodes, json_get(nodes, vec, "name"), name, sizeof name) < 0) {
        strcpy(name, "?");
    }
    snprintf(current, sizeof current, "%s:%s", file, name);
}

static int is_valid(int vec)
{
    return json_bool(nodes, field(vec, "valid"));
}

static int roundtrip(int vec)
{
    int node = json_get(nodes, vec, "roundtrip");
    return node < 0 || json_bool(nodes, node);
}

static void check_error(int vec, int err)
{
    char expected[32];
    json_string(nodes, field(vec, "error"), expected, sizeof expected);
    CHECK(err < 0 && strcmp(pmld_error_name(err), expected) == 0,
          "%s: expected error %s, got %s", current, expected, pmld_error_name(err));
}

static void check_bytes(const uint8_t *got, int n, const uint8_t *want, size_t m)
{
    CHECK(n >= 0 && (size_t)n == m && memcmp(got, want, m) == 0,
          "%s: encoding gives %d bytes, differing from the vector's %lu", current, n,
          (unsigned long)m);
}

static const char *const STOP_NAMES[] = {"NONE", "USER", "BATTERY_LOW", "BUFFER_OVERFLOW",
                                         "ERROR"};
static const char *const STATE_NAMES[] = {"IDLE", "STREAMING", "STOPPED"};
static const char *const OPCODE_NAMES[] = {"", "START", "STOP", "RESUME", "GET_INFO",
                                           "SET_TIME"};
static const char *const STATUS_NAMES[] = {
    "OK",   "UNKNOWN_OPCODE", "INVALID_LENGTH", "INVALID_PARAMETER", "UNSUPPORTED", "BUSY",
    "NOT_STREAMING", "NO_SESSION", "SESSION_MISMATCH", "BATTERY_LOW", "ERROR"};

/* An enum given by name (or as a number, for codes this version does not name). */
static unsigned enum_field(int obj, const char *key, const char *const *names, unsigned n)
{
    int node = field(obj, key);
    unsigned i;
    if (node >= 0 && nodes[node].type == JSON_NUMBER) {
        return (unsigned)json_u64(nodes, node);
    }
    for (i = 0; i < n; ++i) {
        if (json_string_eq(nodes, node, names[i])) {
            return i;
        }
    }
    CHECK(0, "%s: unknown name in %s", current, key);
    return 0xFFu;
}

/* ---- frames -------------------------------------------------------------------------- */
static void frame_from_json(int d, pmld_frame *f)
{
    memset(f, 0, sizeof *f);
    if (json_string_eq(nodes, field(d, "type"), "DATA")) {
        int acc = field(d, "acc"), gyro = json_get(nodes, d, "gyro");
        int has_gyro = !json_is_null(nodes, gyro);
        unsigned width = has_gyro ? 6u : 3u, i, k;
        f->type = PMLD_FRAME_DATA;
        f->u.data.seq = (uint16_t)u64(d, "seq");
        f->u.data.first_index = (uint32_t)u64(d, "first_index");
        f->u.data.gyro = (uint8_t)has_gyro;
        f->u.data.count = (uint8_t)nodes[acc].count;
        for (i = 0; i < f->u.data.count && i < PMLD_MAX_SAMPLES_PER_FRAME; ++i) {
            for (k = 0; k < 3; ++k) {
                f->u.data.samples[i * width + k] =
                    (int16_t)json_i64(nodes, json_at(nodes, json_at(nodes, acc, (int)i), (int)k));
                if (has_gyro) {
                    f->u.data.samples[i * width + 3 + k] = (int16_t)json_i64(
                        nodes, json_at(nodes, json_at(nodes, gyro, (int)i), (int)k));
                }
            }
        }
    } else if (json_string_eq(nodes, field(d, "type"), "TIME_SYNC")) {
        f->type = PMLD_FRAME_TIME_SYNC;
        f->u.sync.seq = (uint16_t)u64(d, "seq");
        f->u.sync.sample_index = (uint32_t)u64(d, "sample_index");
        f->u.sync.sample_time_us = u64(d, "sample_time_us");
        f->u.sync.tx_delay_us = (uint32_t)u64(d, "tx_delay_us");
        f->u.sync.clock_set = (uint8_t)flag(d, "clock_set");
    } else {
        pmld_status *s = &f->u.status;
        f->type = PMLD_FRAME_STATUS;
        s->seq = (uint16_t)u64(d, "seq");
        s->streaming = (uint8_t)flag(d, "streaming");
        s->overflow = (uint8_t)flag(d, "overflow");
        s->battery_pct = (uint8_t)u64(d, "battery_pct");
        s->stop_reason = (uint8_t)enum_field(d, "stop_reason", STOP_NAMES, 5);
        s->error_code = (uint16_t)u64(d, "error_code");
        s->session_id = (uint32_t)u64(d, "session_id");
        s->oldest_index = (uint32_t)u64(d, "oldest_index");
        s->next_index = (uint32_t)u64(d, "next_index");
    }
}

static int frames_equal(const pmld_frame *a, const pmld_frame *b)
{
    if (a->type != b->type) return 0;
    if (a->type == PMLD_FRAME_DATA) {
        const pmld_data_frame *x = &a->u.data, *y = &b->u.data;
        unsigned width = x->gyro ? 6u : 3u;
        return x->seq == y->seq && x->first_index == y->first_index && x->count == y->count &&
               x->gyro == y->gyro &&
               memcmp(x->samples, y->samples, sizeof(int16_t) * x->count * width) == 0;
    }
    if (a->type == PMLD_FRAME_TIME_SYNC) {
        const pmld_time_sync *x = &a->u.sync, *y = &b->u.sync;
        return x->seq == y->seq && x->sample_index == y->sample_index &&
               x->sample_time_us == y->sample_time_us && x->tx_delay_us == y->tx_delay_us &&
               x->clock_set == y->clock_set;
    }
    {
        const pmld_status *x = &a->u.status, *y = &b->u.status;
        return x->seq == y->seq && x->streaming == y->streaming && x->overflow == y->overflow &&
               x->battery_pct == y->battery_pct && x->stop_reason == y->stop_reason &&
               x->error_code == y->error_code && x->session_id == y->session_id &&
               x->oldest_index == y->oldest_index && x->next_index == y->next_index;
    }
}

static int encode_frame(const pmld_frame *f, uint8_t *out, size_t cap)
{
    switch (f->type) {
    case PMLD_FRAME_DATA: return pmld_encode_data(&f->u.data, out, cap);
    case PMLD_FRAME_TIME_SYNC: return pmld_encode_time_sync(&f->u.sync, out, cap);
    default: return pmld_encode_status(&f->u.status, out, cap);
    }
}

static void test_frames(int root)
{
    int vec;
    for (vec = nodes[field(root, "vectors")].first; vec >= 0; vec = nodes[vec].next) {
        static uint8_t bytes[MAX_BYTES], again[MAX_BYTES];
        static pmld_frame got, want;
        size_t n;
        int err;
        set_name(vec, "frames");
        n = hex_field(vec, "hex", bytes);
        err = pmld_decode_frame(bytes, n, &got);
        if (!is_valid(vec)) {
            check_error(vec, err);
            continue;
        }
        CHECK(err == PMLD_OK, "%s: decode fails: %s", current, pmld_error_name(err));
        frame_from_json(field(vec, "decoded"), &want);
        CHECK(err != PMLD_OK || frames_equal(&got, &want), "%s: decoded fields differ", current);
        if (roundtrip(vec)) {
            check_bytes(again, encode_frame(&want, again, sizeof again), bytes, n);
        }
        if (json_get(nodes, vec, "mtu") >= 0) {
            unsigned mtu = (unsigned)u64(vec, "mtu");
            CHECK(n <= mtu - PMLD_ATT_OVERHEAD, "%s: frame exceeds MTU", current);
            CHECK(want.u.data.count == pmld_samples_per_frame(mtu, want.u.data.gyro),
                  "%s: not a full frame for MTU %u", current, mtu);
        }
    }
}

/* ---- commands ------------------------------------------------------------------------ */
static void command_from_json(int d, pmld_command *c)
{
    memset(c, 0, sizeof *c);
    c->opcode = (uint8_t)enum_field(d, "opcode", OPCODE_NAMES, 6);
    c->token = (uint8_t)u64(d, "token");
    if (c->opcode == PMLD_OP_START) {
        c->rate_hz = (uint16_t)u64(d, "rate_hz");
        c->range_g = (uint8_t)u64(d, "range_g");
        c->gyro_range_dps = (uint16_t)u64(d, "gyro_range_dps");
        c->flags = (uint8_t)((c->gyro_range_dps ? PMLD_SESSION_GYRO : 0u) |
                             (flag(d, "stop_on_overflow") ? PMLD_SESSION_STOP_ON_OVERFLOW : 0u));
    } else if (c->opcode == PMLD_OP_RESUME) {
        c->session_id = (uint32_t)u64(d, "session_id");
        c->from_index = (uint32_t)u64(d, "from_index");
    } else if (c->opcode == PMLD_OP_SET_TIME) {
        c->utc_us = u64(d, "utc_us");
    }
}

static pmld_info reference_info;

static void make_reference_info(void)
{
    static const uint16_t rates[] = {25, 50, 100, 200};
    unsigned i;
    memset(&reference_info, 0, sizeof reference_info);
    reference_info.major = 1;
    reference_info.sensors = PMLD_SENSOR_ACC;
    reference_info.features = PMLD_FEATURE_STOP_ON_OVERFLOW;
    reference_info.time_sync_interval_s = 1;
    reference_info.status_interval_s = 5;
    reference_info.buffer_samples = 1024;
    reference_info.n_rates = 4;
    for (i = 0; i < 4; ++i) reference_info.rates_hz[i] = rates[i];
    reference_info.n_acc_ranges = 1;
    reference_info.acc_ranges[0].range_g = 8;
    reference_info.acc_ranges[0].counts_per_g = 4096.0f;
}

static void test_commands(int root)
{
    int vec;
    make_reference_info();
    for (vec = nodes[field(root, "vectors")].first; vec >= 0; vec = nodes[vec].next) {
        static uint8_t bytes[MAX_BYTES], again[MAX_BYTES], reply[PMLD_MAX_REPLY_SIZE];
        static pmld_device dev;
        pmld_command got, want;
        size_t n, r;
        int err;
        set_name(vec, "commands");
        n = hex_field(vec, "hex", bytes);
        err = pmld_decode_command(bytes, n, &got);
        if (!is_valid(vec)) {
            unsigned status;
            check_error(vec, err);
            status = enum_field(vec, "status", STATUS_NAMES, 11);
            pmld_device_init(&dev, &reference_info, ring_storage, 3072, 1);
            r = pmld_device_command(&dev, bytes, n, 0, reply);
            CHECK(r == 3 && reply[2] == status && reply[0] == ((n ? bytes[0] : 0) | 0x80),
                  "%s: device reply status %u, expected %u", current, r == 3 ? reply[2] : 255u,
                  status);
            continue;
        }
        CHECK(err == PMLD_OK, "%s: decode fails: %s", current, pmld_error_name(err));
        command_from_json(field(vec, "decoded"), &want);
        CHECK(got.opcode == want.opcode && got.token == want.token &&
                  got.rate_hz == want.rate_hz && got.range_g == want.range_g &&
                  got.flags == want.flags && got.gyro_range_dps == want.gyro_range_dps &&
                  got.session_id == want.session_id && got.from_index == want.from_index &&
                  got.utc_us == want.utc_us,
              "%s: decoded fields differ", current);
        check_bytes(again, pmld_encode_command(&want, again, sizeof again), bytes, n);
    }
}

/* ---- replies ------------------------------------------------------------------------- */
static void reply_from_json(int d, pmld_reply *r)
{
    memset(r, 0, sizeof *r);
    r->opcode = (uint8_t)enum_field(d, "opcode", OPCODE_NAMES, 6);
    r->token = (uint8_t)u64(d, "token");
    r->status = (uint8_t)enum_field(d, "status", STATUS_NAMES, 11);
    if (r->status != PMLD_STATUS_OK) {
        return;
    }
    switch (r->opcode) {
    case PMLD_OP_START:
        r->session_id = (uint32_t)u64(d, "session_id");
        break;
    case PMLD_OP_STOP:
        r->end_index = (uint32_t)u64(d, "end_index");
        break;
    case PMLD_OP_RESUME:
        r->session_id = (uint32_t)u64(d, "session_id");
        r->from_index = (uint32_t)u64(d, "from_index");
        r->first_index = (uint32_t)u64(d, "first_index");
        r->next_index = (uint32_t)u64(d, "next_index");
        r->flags = (uint8_t)((flag(d, "streaming") ? PMLD_RESUME_STREAMING : 0u) |
                             (r->first_index > r->from_index ? PMLD_RESUME_OVERWRITTEN : 0u));
        break;
    case PMLD_OP_GET_INFO:
        r->state = (uint8_t)enum_field(d, "state", STATE_NAMES, 3);
        r->session_id = (uint32_t)u64(d, "session_id");
        r->rate_hz = (uint16_t)u64(d, "rate_hz");
        r->range_g = (uint8_t)u64(d, "range_g");
        r->gyro_range_dps = (uint16_t)u64(d, "gyro_range_dps");
        r->stop_reason = (uint8_t)enum_field(d, "stop_reason", STOP_NAMES, 5);
        r->next_index = (uint32_t)u64(d, "next_index");
        r->flags = (uint8_t)((r->gyro_range_dps ? PMLD_SESSION_GYRO : 0u) |
                             (flag(d, "stop_on_overflow") ? PMLD_SESSION_STOP_ON_OVERFLOW : 0u));
        break;
    default:
        r->previous_us = u64(d, "previous_us");
        r->flags = flag(d, "was_set") ? PMLD_SETTIME_WAS_SET : 0u;
        break;
    }
}

static void test_replies(int root)
{
    int vec;
    for (vec = nodes[field(root, "vectors")].first; vec >= 0; vec = nodes[vec].next) {
        static uint8_t bytes[MAX_BYTES], again[MAX_BYTES];
        pmld_reply got, want;
        size_t n;
        int err;
        set_name(vec, "replies");
        n = hex_field(vec, "hex", bytes);
        err = pmld_decode_reply(bytes, n, &got);
        if (!is_valid(vec)) {
            check_error(vec, err);
            continue;
        }
        CHECK(err == PMLD_OK, "%s: decode fails: %s", current, pmld_error_name(err));
        reply_from_json(field(vec, "decoded"), &want);
        CHECK(got.opcode == want.opcode && got.token == want.token &&
                  got.status == want.status && got.flags == want.flags &&
                  got.session_id == want.session_id && got.end_index == want.end_index &&
                  got.from_index == want.from_index && got.first_index == want.first_index &&
                  got.next_index == want.next_index && got.state == want.state &&
                  got.range_g == want.range_g && got.stop_reason == want.stop_reason &&
                  got.rate_hz == want.rate_hz && got.gyro_range_dps == want.gyro_range_dps &&
                  got.previous_us == want.previous_us,
              "%s: decoded fields differ", current);
        check_bytes(again, pmld_encode_reply(&want, again, sizeof again), bytes, n);
    }
}

/* ---- INFO ---------------------------------------------------------------------------- */
static void string_from_json(int d, const char *key, pmld_string *s)
{
    char buf[256];
    int n = json_string(nodes, field(d, key), buf, sizeof buf);
    CHECK(n >= 0 && n <= (int)PMLD_MAX_STRING, "%s: bad string %s", current, key);
    s->len = (uint8_t)(n < 0 ? 0 : n);
    memcpy(s->text, buf, s->len);
    s->text[s->len] = '\0';
}

static void info_from_json(int d, pmld_info *info)
{
    int list = field(d, "rates_hz"), item;
    unsigned i = 0;
    memset(info, 0, sizeof *info);
    info->major = (uint8_t)u64(d, "major");
    info->minor = (uint8_t)u64(d, "minor");
    info->features = flag(d, "stop_on_overflow") ? PMLD_FEATURE_STOP_ON_OVERFLOW : 0u;
    info->time_sync_interval_s = (uint8_t)u64(d, "time_sync_interval_s");
    info->status_interval_s = (uint8_t)u64(d, "status_interval_s");
    info->buffer_samples = (uint32_t)u64(d, "buffer_samples");
    info->buffer_samples_gyro = (uint32_t)u64(d, "buffer_samples_gyro");
    for (item = nodes[list].first; item >= 0 && i < PMLD_MAX_RATES; item = nodes[item].next) {
        info->rates_hz[i++] = (uint16_t)json_u64(nodes, item);
    }
    info->n_rates = (uint8_t)i;
    list = field(d, "acc_ranges");
    for (i = 0, item = nodes[list].first; item >= 0 && i < PMLD_MAX_RANGES;
         item = nodes[item].next, ++i) {
        info->acc_ranges[i].range_g = (uint8_t)json_u64(nodes, json_at(nodes, item, 0));
        info->acc_ranges[i].counts_per_g = (float)json_double(nodes, json_at(nodes, item, 1));
    }
    info->n_acc_ranges = (uint8_t)i;
    list = field(d, "gyro_ranges");
    for (i = 0, item = nodes[list].first; item >= 0 && i < PMLD_MAX_RANGES;
         item = nodes[item].next, ++i) {
        info->gyro_ranges[i].range_dps = (uint16_t)json_u64(nodes, json_at(nodes, item, 0));
        info->gyro_ranges[i].counts_per_dps = (float)json_double(nodes, json_at(nodes, item, 1));
    }
    info->n_gyro_ranges = (uint8_t)i;
    info->sensors = (uint8_t)(PMLD_SENSOR_ACC | (i ? PMLD_SENSOR_GYRO : 0u));
    string_from_json(d, "model", &info->model);
    string_from_json(d, "firmware", &info->firmware);
    string_from_json(d, "serial", &info->serial);
}

static int strings_equal(const pmld_string *a, const pmld_string *b)
{
    return a->len == b->len && memcmp(a->text, b->text, a->len) == 0;
}

static int infos_equal(const pmld_info *a, const pmld_info *b)
{
    unsigned i;
    if (a->major != b->major || a->minor != b->minor || a->sensors != b->sensors ||
        a->features != b->features || a->time_sync_interval_s != b->time_sync_interval_s ||
        a->status_interval_s != b->status_interval_s || a->buffer_samples != b->buffer_samples ||
        a->buffer_samples_gyro != b->buffer_samples_gyro || a->n_rates != b->n_rates ||
        a->n_acc_ranges != b->n_acc_ranges || a->n_gyro_ranges != b->n_gyro_ranges) {
        return 0;
    }
    for (i = 0; i < a->n_rates; ++i) {
        if (a->rates_hz[i] != b->rates_hz[i]) return 0;
    }
    for (i = 0; i < a->n_acc_ranges; ++i) {
        if (a->acc_ranges[i].range_g != b->acc_ranges[i].range_g ||
            memcmp(&a->acc_ranges[i].counts_per_g, &b->acc_ranges[i].counts_per_g, 4) != 0) {
            return 0;
        }
    }
    for (i = 0; i < a->n_gyro_ranges; ++i) {
        if (a->gyro_ranges[i].range_dps != b->gyro_ranges[i].range_dps ||
            memcmp(&a->gyro_ranges[i].counts_per_dps, &b->gyro_ranges[i].counts_per_dps, 4) !=
                0) {
            return 0;
        }
    }
    return strings_equal(&a->model, &b->model) && strings_equal(&a->firmware, &b->firmware) &&
           strings_equal(&a->serial, &b->serial);
}

static void test_info(int root)
{
    int vec;
    for (vec = nodes[field(root, "vectors")].first; vec >= 0; vec = nodes[vec].next) {
        static uint8_t bytes[MAX_BYTES], again[MAX_BYTES];
        static pmld_info got, want;
        size_t n;
        int err;
        set_name(vec, "info");
        n = hex_field(vec, "hex", bytes);
        err = pmld_decode_info(bytes, n, &got);
        if (!is_valid(vec)) {
            check_error(vec, err);
            continue;
        }
        CHECK(err == PMLD_OK, "%s: decode fails: %s", current, pmld_error_name(err));
        info_from_json(field(vec, "decoded"), &want);
        CHECK(infos_equal(&got, &want), "%s: decoded fields differ", current);
        if (roundtrip(vec)) {
            check_bytes(again, pmld_encode_info(&want, again, sizeof again), bytes, n);
        }
    }
}

/* ---- sessions ------------------------------------------------------------------------ */
static const uint64_t PATTERN_MUL[6] = {37, 101, 53, 7, 211, 139};
static const uint64_t PATTERN_ADD[6] = {0, 7, 1000, 3, 5, 11};

/* The test signal of pmld.ble.protocol.pattern_samples. */
static void pattern(uint32_t index, unsigned width, int16_t *out)
{
    unsigned a;
    for (a = 0; a < width; ++a) {
        out[a] = (int16_t)((int32_t)((index * PATTERN_MUL[a] + PATTERN_ADD[a]) % 4001u) - 2000);
    }
}

static void run_session(int session)
{
    static pmld_info info;
    static pmld_device dev;
    static uint8_t bytes[MAX_BYTES], out[MAX_BYTES];
    char base[100];
    int step, k = 0;
    size_t n = hex_field(session, "info", bytes);
    int err = pmld_decode_info(bytes, n, &info);
    CHECK(err == PMLD_OK, "%s: info: %s", current, pmld_error_name(err));
    err = pmld_device_init(&dev, &info, ring_storage, info.buffer_samples * 3u,
                           (uint32_t)u64(session, "session_seed"));
    CHECK(err == PMLD_OK, "%s: device init", current);
    if (err != PMLD_OK) {
        return;
    }
    {
        size_t bl = strlen(current) < sizeof base ? strlen(current) : sizeof base - 1;
        memcpy(base, current, bl);
        base[bl] = '\0';
    }
    for (step = nodes[field(session, "steps")].first; step >= 0; step = nodes[step].next, ++k) {
        int op = field(step, "op");
        snprintf(current, sizeof current, "%s step %d", base, k);
        if (json_string_eq(nodes, op, "command")) {
            static uint8_t want[MAX_BYTES];
            size_t m = hex_field(step, "hex", bytes), w = hex_field(step, "reply", want);
            size_t r = pmld_device_command(&dev, bytes, m, u64(step, "now_us"), out);
            check_bytes(out, (int)r, want, w);
        } else if (json_string_eq(nodes, op, "samples")) {
            uint64_t count = u64(step, "n"), t0 = u64(step, "t0_us"), dt = u64(step, "dt_us");
            uint32_t first = dev.ring.next_index;
            uint64_t i, kept = 0;
            int16_t values[6];
            for (i = 0; i < count; ++i) {
                pattern(first + (uint32_t)i, dev.gyro_range_dps ? 6u : 3u, values);
                kept += (uint64_t)pmld_device_sample(&dev, values, t0 + i * dt);
            }
            CHECK(kept == u64(step, "kept"), "%s: kept %lu samples, expected %lu", current,
                  (unsigned long)kept, (unsigned long)u64(step, "kept"));
        } else if (json_string_eq(nodes, op, "poll")) {
            unsigned mtu = (unsigned)u64(step, "mtu");
            uint64_t now = u64(step, "now_us"), limit = u64(step, "limit");
            int flush = flag(step, "flush");
            int frames = field(step, "frames"), want = nodes[frames].first, got = 0;
            for (;;) {
                static uint8_t expect[MAX_BYTES];
                size_t len, e;
                if (limit && (uint64_t)got == limit) break;
                len = pmld_device_next_frame(&dev, mtu, now, flush, out, sizeof out);
                if (len == 0) break;
                CHECK(len <= mtu - PMLD_ATT_OVERHEAD, "%s: frame exceeds the MTU", current);
                if (want < 0) {
                    CHECK(0, "%s: extra frame %d", current, got);
                    break;
                }
                e = hex_node(want, expect);
                CHECK(len == e && memcmp(out, expect, e) == 0, "%s: frame %d differs", current,
                      got);
                want = nodes[want].next;
                ++got;
            }
            CHECK(got == nodes[frames].count, "%s: %d frames, expected %d", current, got,
                  nodes[frames].count);
        } else if (json_string_eq(nodes, op, "disconnect")) {
            pmld_device_disconnect(&dev);
        } else if (json_string_eq(nodes, op, "battery")) {
            pmld_device_set_battery(&dev, (uint8_t)u64(step, "pct"));
        } else if (json_string_eq(nodes, op, "fail")) {
            pmld_device_fault(&dev, (uint16_t)u64(step, "code"));
        } else {
            CHECK(0, "%s: unknown op", current);
        }
    }
}

static void test_sessions(int root)
{
    int session;
    for (session = nodes[field(root, "vectors")].first; session >= 0;
         session = nodes[session].next) {
        set_name(session, "sessions");
        run_session(session);
    }
}

/* ---- entry --------------------------------------------------------------------------- */
int run_vector_tests(const char *dir)
{
    static const struct {
        const char *file;
        void (*run)(int root);
    } suites[] = {{"frames.json", test_frames},
                  {"commands.json", test_commands},
                  {"replies.json", test_replies},
                  {"info.json", test_info},
                  {"sessions.json", test_sessions}};
    unsigned i;
    int loaded = 0;
    for (i = 0; i < sizeof suites / sizeof suites[0]; ++i) {
        int before = g_failures, vectors;
        if (load(dir, suites[i].file) != 0) {
            continue;
        }
        ++loaded;
        vectors = nodes[json_get(nodes, 0, "vectors")].count;
        suites[i].run(0);
        printf("  %-14s %3d vectors  %s\n", suites[i].file, vectors,
               g_failures == before ? "ok" : "FAILED");
    }
    return loaded;
}
