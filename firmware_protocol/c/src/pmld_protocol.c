/* pmld band GATT protocol 1.0: frame / command / reply / INFO codec (see SPEC.md). */
#include "pmld_protocol.h"

#include <string.h>

typedef char pmld_float_is_32_bits[(sizeof(float) == 4) ? 1 : -1];

const char *pmld_error_name(int err)
{
    switch (err) {
    case PMLD_OK: return "ok";
    case PMLD_E_TRUNCATED: return "truncated";
    case PMLD_E_LENGTH: return "length";
    case PMLD_E_UNKNOWN_TYPE: return "unknown_type";
    case PMLD_E_UNKNOWN_OPCODE: return "unknown_opcode";
    case PMLD_E_BAD_COUNT: return "bad_count";
    case PMLD_E_RESERVED: return "reserved";
    case PMLD_E_BAD_VALUE: return "bad_value";
    case PMLD_E_NOT_PMLD: return "not_pmld";
    case PMLD_E_VERSION_OLD: return "version_old";
    case PMLD_E_VERSION_NEW: return "version_new";
    case PMLD_E_BUFFER: return "buffer";
    default: return "unknown_error";
    }
}

/* ---- little-endian access ------------------------------------------------------------ */
void pmld_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

void pmld_put_u32(uint8_t *p, uint32_t v)
{
    pmld_put_u16(p, (uint16_t)(v & 0xFFFFu));
    pmld_put_u16(p + 2, (uint16_t)(v >> 16));
}

void pmld_put_u64(uint8_t *p, uint64_t v)
{
    pmld_put_u32(p, (uint32_t)(v & 0xFFFFFFFFu));
    pmld_put_u32(p + 4, (uint32_t)(v >> 32));
}

uint16_t pmld_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

uint32_t pmld_get_u32(const uint8_t *p)
{
    return (uint32_t)pmld_get_u16(p) | ((uint32_t)pmld_get_u16(p + 2) << 16);
}

uint64_t pmld_get_u64(const uint8_t *p)
{
    return (uint64_t)pmld_get_u32(p) | ((uint64_t)pmld_get_u32(p + 4) << 32);
}

static void put_i16(uint8_t *p, int16_t v)
{
    /* two's complement bit pattern, without relying on implementation-defined casts */
    uint16_t u = (v < 0) ? (uint16_t)(65535u - (uint16_t)(-(v + 1))) : (uint16_t)v;
    pmld_put_u16(p, u);
}

static int16_t get_i16(const uint8_t *p)
{
    uint16_t u = pmld_get_u16(p);
    return (u >= 0x8000u) ? (int16_t)(-(int32_t)(65535u - u) - 1) : (int16_t)u;
}

static void put_f32(uint8_t *p, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    pmld_put_u32(p, bits);
}

static float get_f32(const uint8_t *p)
{
    uint32_t bits = pmld_get_u32(p);
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* ---- frames -------------------------------------------------------------------------- */
unsigned pmld_samples_per_frame(unsigned mtu, int gyro)
{
    unsigned size = gyro ? 12u : 6u;
    unsigned n;
    if (mtu < PMLD_ATT_MIN_MTU || mtu > PMLD_ATT_MAX_MTU) {
        return 0;
    }
    n = (mtu - PMLD_ATT_OVERHEAD - PMLD_DATA_HEADER_SIZE) / size;
    return n < PMLD_MAX_SAMPLES_PER_FRAME ? n : PMLD_MAX_SAMPLES_PER_FRAME;
}

int pmld_encode_data_rows(uint16_t seq, uint32_t first_index, const int16_t *rows,
                          unsigned count, int gyro, uint8_t *out, size_t cap)
{
    unsigned width = gyro ? 6u : 3u;
    size_t length = PMLD_DATA_HEADER_SIZE + (size_t)count * width * 2u;
    unsigned i;
    if (count < 1u || count > PMLD_MAX_SAMPLES_PER_FRAME || cap < length) {
        return PMLD_E_BUFFER;
    }
    out[0] = PMLD_FRAME_DATA;
    out[1] = (uint8_t)(count | (gyro ? PMLD_DATA_GYRO : 0u));
    pmld_put_u16(out + 2, seq);
    pmld_put_u32(out + 4, first_index);
    for (i = 0; i < count * width; ++i) {
        put_i16(out + PMLD_DATA_HEADER_SIZE + 2u * i, rows[i]);
    }
    return (int)length;
}

int pmld_encode_data(const pmld_data_frame *frame, uint8_t *out, size_t cap)
{
    return pmld_encode_data_rows(frame->seq, frame->first_index, frame->samples, frame->count,
                                 frame->gyro, out, cap);
}

int pmld_encode_time_sync(const pmld_time_sync *frame, uint8_t *out, size_t cap)
{
    if (cap < PMLD_TIME_SYNC_SIZE) {
        return PMLD_E_BUFFER;
    }
    out[0] = PMLD_FRAME_TIME_SYNC;
    out[1] = frame->clock_set ? PMLD_SYNC_CLOCK_SET : 0u;
    pmld_put_u16(out + 2, frame->seq);
    pmld_put_u32(out + 4, frame->sample_index);
    pmld_put_u64(out + 8, frame->sample_time_us);
    pmld_put_u32(out + 16, frame->tx_delay_us);
    return (int)PMLD_TIME_SYNC_SIZE;
}

static int check_status(const pmld_status *s)
{
    if (s->stop_reason > PMLD_STOP_ERROR) {
        return PMLD_E_BAD_VALUE;
    }
    if (s->battery_pct > 100u && s->battery_pct != PMLD_BATTERY_UNKNOWN) {
        return PMLD_E_BAD_VALUE;
    }
    if ((s->streaming != 0) != (s->stop_reason == PMLD_STOP_NONE)) {
        return PMLD_E_BAD_VALUE;
    }
    if (s->error_code != 0u && s->stop_reason != PMLD_STOP_ERROR) {
        return PMLD_E_BAD_VALUE;
    }
    if (s->session_id == 0u || s->oldest_index > s->next_index) {
        return PMLD_E_BAD_VALUE;
    }
    return PMLD_OK;
}

int pmld_encode_status(const pmld_status *frame, uint8_t *out, size_t cap)
{
    if (cap < PMLD_STATUS_SIZE) {
        return PMLD_E_BUFFER;
    }
    if (check_status(frame) != PMLD_OK) {
        return PMLD_E_BUFFER;
    }
    out[0] = PMLD_FRAME_STATUS;
    out[1] = (uint8_t)((frame->streaming ? PMLD_STATUS_STREAMING : 0u) |
                       (frame->overflow ? PMLD_STATUS_OVERFLOW : 0u));
    pmld_put_u16(out + 2, frame->seq);
    out[4] = frame->battery_pct;
    out[5] = frame->stop_reason;
    pmld_put_u16(out + 6, frame->error_code);
    pmld_put_u32(out + 8, frame->session_id);
    pmld_put_u32(out + 12, frame->oldest_index);
    pmld_put_u32(out + 16, frame->next_index);
    return (int)PMLD_STATUS_SIZE;
}

static int size_error(size_t len, size_t size)
{
    return len < size ? PMLD_E_TRUNCATED : PMLD_E_LENGTH;
}

int pmld_decode_frame(const uint8_t *in, size_t len, pmld_frame *out)
{
    if (len == 0) {
        return PMLD_E_TRUNCATED;
    }
    out->type = in[0];
    if (in[0] == PMLD_FRAME_DATA) {
        pmld_data_frame *d = &out->u.data;
        unsigned count, width, i;
        size_t need;
        if (len < PMLD_DATA_HEADER_SIZE) {
            return PMLD_E_TRUNCATED;
        }
        if (in[1] & PMLD_DATA_RESERVED) {
            return PMLD_E_RESERVED;
        }
        count = in[1] & PMLD_DATA_COUNT_MASK;
        if (count == 0u) {
            return PMLD_E_BAD_COUNT;
        }
        d->gyro = (in[1] & PMLD_DATA_GYRO) ? 1u : 0u;
        width = d->gyro ? 6u : 3u;
        need = PMLD_DATA_HEADER_SIZE + (size_t)count * width * 2u;
        if (len != need) {
            return size_error(len, need);
        }
        d->count = (uint8_t)count;
        d->seq = pmld_get_u16(in + 2);
        d->first_index = pmld_get_u32(in + 4);
        for (i = 0; i < count * width; ++i) {
            d->samples[i] = get_i16(in + PMLD_DATA_HEADER_SIZE + 2u * i);
        }
        return PMLD_OK;
    }
    if (in[0] == PMLD_FRAME_TIME_SYNC) {
        pmld_time_sync *t = &out->u.sync;
        if (len != PMLD_TIME_SYNC_SIZE) {
            return size_error(len, PMLD_TIME_SYNC_SIZE);
        }
        if (in[1] & (uint8_t)~PMLD_SYNC_CLOCK_SET) {
            return PMLD_E_RESERVED;
        }
        t->clock_set = (in[1] & PMLD_SYNC_CLOCK_SET) ? 1u : 0u;
        t->seq = pmld_get_u16(in + 2);
        t->sample_index = pmld_get_u32(in + 4);
        t->sample_time_us = pmld_get_u64(in + 8);
        t->tx_delay_us = pmld_get_u32(in + 16);
        return PMLD_OK;
    }
    if (in[0] == PMLD_FRAME_STATUS) {
        pmld_status *s = &out->u.status;
        if (len != PMLD_STATUS_SIZE) {
            return size_error(len, PMLD_STATUS_SIZE);
        }
        if (in[1] & (uint8_t)~(PMLD_STATUS_STREAMING | PMLD_STATUS_OVERFLOW)) {
            return PMLD_E_RESERVED;
        }
        s->streaming = (in[1] & PMLD_STATUS_STREAMING) ? 1u : 0u;
        s->overflow = (in[1] & PMLD_STATUS_OVERFLOW) ? 1u : 0u;
        s->seq = pmld_get_u16(in + 2);
        s->battery_pct = in[4];
        s->stop_reason = in[5];
        s->error_code = pmld_get_u16(in + 6);
        s->session_id = pmld_get_u32(in + 8);
        s->oldest_index = pmld_get_u32(in + 12);
        s->next_index = pmld_get_u32(in + 16);
        return check_status(s);
    }
    return PMLD_E_UNKNOWN_TYPE;
}

/* ---- commands ------------------------------------------------------------------------ */
static size_t command_size(uint8_t opcode)
{
    switch (opcode) {
    case PMLD_OP_START: return 8;
    case PMLD_OP_STOP: return 2;
    case PMLD_OP_RESUME: return 10;
    case PMLD_OP_GET_INFO: return 2;
    case PMLD_OP_SET_TIME: return 10;
    default: return 0;
    }
}

int pmld_encode_command(const pmld_command *cmd, uint8_t *out, size_t cap)
{
    size_t size = command_size(cmd->opcode);
    if (size == 0 || cap < size) {
        return PMLD_E_BUFFER;
    }
    out[0] = cmd->opcode;
    out[1] = cmd->token;
    switch (cmd->opcode) {
    case PMLD_OP_START:
        pmld_put_u16(out + 2, cmd->rate_hz);
        out[4] = cmd->range_g;
        out[5] = cmd->flags;
        pmld_put_u16(out + 6, cmd->gyro_range_dps);
        break;
    case PMLD_OP_RESUME:
        pmld_put_u32(out + 2, cmd->session_id);
        pmld_put_u32(out + 6, cmd->from_index);
        break;
    case PMLD_OP_SET_TIME:
        pmld_put_u64(out + 2, cmd->utc_us);
        break;
    default:
        break;
    }
    return (int)size;
}

int pmld_decode_command(const uint8_t *in, size_t len, pmld_command *out)
{
    size_t size;
    memset(out, 0, sizeof *out);
    if (len == 0) {
        return PMLD_E_TRUNCATED;
    }
    out->opcode = in[0];
    size = command_size(in[0]);
    if (size == 0) {
        return PMLD_E_UNKNOWN_OPCODE;
    }
    if (len != size) {
        return size_error(len, size);
    }
    out->token = in[1];
    switch (in[0]) {
    case PMLD_OP_START:
        out->rate_hz = pmld_get_u16(in + 2);
        out->range_g = in[4];
        out->flags = in[5];
        out->gyro_range_dps = pmld_get_u16(in + 6);
        if (out->flags & PMLD_SESSION_RESERVED) {
            return PMLD_E_RESERVED;
        }
        if (((out->flags & PMLD_SESSION_GYRO) != 0) != (out->gyro_range_dps > 0u)) {
            return PMLD_E_BAD_VALUE;
        }
        if (out->rate_hz == 0u || out->range_g == 0u) {
            return PMLD_E_BAD_VALUE;
        }
        break;
    case PMLD_OP_RESUME:
        out->session_id = pmld_get_u32(in + 2);
        out->from_index = pmld_get_u32(in + 6);
        break;
    case PMLD_OP_SET_TIME:
        out->utc_us = pmld_get_u64(in + 2);
        break;
    default:
        break;
    }
    return PMLD_OK;
}

/* ---- replies ------------------------------------------------------------------------- */
static size_t reply_size(uint8_t opcode)
{
    switch (opcode) {
    case PMLD_OP_START: return 7;
    case PMLD_OP_STOP: return 7;
    case PMLD_OP_RESUME: return 20;
    case PMLD_OP_GET_INFO: return 19;
    case PMLD_OP_SET_TIME: return 12;
    default: return 0;
    }
}

static int check_get_info(const pmld_reply *r)
{
    if (r->state == PMLD_STATE_IDLE) {
        if (r->session_id || r->rate_hz || r->range_g || r->gyro_range_dps || r->flags ||
            r->stop_reason || r->next_index) {
            return PMLD_E_BAD_VALUE;
        }
        return PMLD_OK;
    }
    if (r->session_id == 0u || r->rate_hz == 0u || r->range_g == 0u) {
        return PMLD_E_BAD_VALUE;
    }
    if ((r->state == PMLD_STATE_STREAMING) != (r->stop_reason == PMLD_STOP_NONE)) {
        return PMLD_E_BAD_VALUE;
    }
    return PMLD_OK;
}

int pmld_encode_reply(const pmld_reply *r, uint8_t *out, size_t cap)
{
    size_t size = (r->status != PMLD_STATUS_OK) ? 3u : reply_size(r->opcode);
    if (size == 0 || cap < size || (r->opcode & PMLD_REPLY_BIT && r->status == PMLD_STATUS_OK)) {
        return PMLD_E_BUFFER;
    }
    out[0] = (uint8_t)(r->opcode | PMLD_REPLY_BIT);
    out[1] = r->token;
    out[2] = r->status;
    if (r->status != PMLD_STATUS_OK) {
        return 3;
    }
    switch (r->opcode) {
    case PMLD_OP_START:
        pmld_put_u32(out + 3, r->session_id);
        break;
    case PMLD_OP_STOP:
        pmld_put_u32(out + 3, r->end_index);
        break;
    case PMLD_OP_RESUME:
        if (!(r->from_index <= r->first_index && r->first_index <= r->next_index)) {
            return PMLD_E_BUFFER;
        }
        out[3] = (uint8_t)((r->flags & PMLD_RESUME_STREAMING) |
                           (r->first_index > r->from_index ? PMLD_RESUME_OVERWRITTEN : 0u));
        pmld_put_u32(out + 4, r->session_id);
        pmld_put_u32(out + 8, r->from_index);
        pmld_put_u32(out + 12, r->first_index);
        pmld_put_u32(out + 16, r->next_index);
        break;
    case PMLD_OP_GET_INFO:
        if (check_get_info(r) != PMLD_OK) {
            return PMLD_E_BUFFER;
        }
        out[3] = r->state;
        out[4] = (uint8_t)((r->flags & PMLD_SESSION_STOP_ON_OVERFLOW) |
                           (r->gyro_range_dps ? PMLD_SESSION_GYRO : 0u));
        out[5] = r->range_g;
        out[6] = r->stop_reason;
        pmld_put_u16(out + 7, r->rate_hz);
        pmld_put_u16(out + 9, r->gyro_range_dps);
        pmld_put_u32(out + 11, r->session_id);
        pmld_put_u32(out + 15, r->next_index);
        break;
    case PMLD_OP_SET_TIME:
        pmld_put_u64(out + 3, r->previous_us);
        out[11] = (uint8_t)(r->flags & PMLD_SETTIME_WAS_SET);
        break;
    default:
        return PMLD_E_BUFFER;
    }
    return (int)size;
}

int pmld_decode_reply(const uint8_t *in, size_t len, pmld_reply *out)
{
    size_t size;
    memset(out, 0, sizeof *out);
    if (len < 3) {
        return PMLD_E_TRUNCATED;
    }
    if (!(in[0] & PMLD_REPLY_BIT)) {
        return PMLD_E_UNKNOWN_TYPE;
    }
    out->opcode = (uint8_t)(in[0] & (uint8_t)~PMLD_REPLY_BIT);
    out->token = in[1];
    out->status = in[2];
    if (out->status != PMLD_STATUS_OK) {
        return len == 3 ? PMLD_OK : PMLD_E_LENGTH;
    }
    size = reply_size(out->opcode);
    if (size == 0) {
        return PMLD_E_UNKNOWN_OPCODE;
    }
    if (len != size) {
        return size_error(len, size);
    }
    switch (out->opcode) {
    case PMLD_OP_START:
        out->session_id = pmld_get_u32(in + 3);
        return out->session_id ? PMLD_OK : PMLD_E_BAD_VALUE;
    case PMLD_OP_STOP:
        out->end_index = pmld_get_u32(in + 3);
        return PMLD_OK;
    case PMLD_OP_RESUME:
        out->flags = in[3];
        out->session_id = pmld_get_u32(in + 4);
        out->from_index = pmld_get_u32(in + 8);
        out->first_index = pmld_get_u32(in + 12);
        out->next_index = pmld_get_u32(in + 16);
        if (out->flags & (uint8_t)~(PMLD_RESUME_STREAMING | PMLD_RESUME_OVERWRITTEN)) {
            return PMLD_E_RESERVED;
        }
        if (!(out->from_index <= out->first_index && out->first_index <= out->next_index)) {
            return PMLD_E_BAD_VALUE;
        }
        if (((out->flags & PMLD_RESUME_OVERWRITTEN) != 0) !=
            (out->first_index > out->from_index)) {
            return PMLD_E_BAD_VALUE;
        }
        return out->session_id ? PMLD_OK : PMLD_E_BAD_VALUE;
    case PMLD_OP_GET_INFO:
        out->state = in[3];
        out->flags = in[4];
        out->range_g = in[5];
        out->stop_reason = in[6];
        out->rate_hz = pmld_get_u16(in + 7);
        out->gyro_range_dps = pmld_get_u16(in + 9);
        out->session_id = pmld_get_u32(in + 11);
        out->next_index = pmld_get_u32(in + 15);
        if (out->flags & PMLD_SESSION_RESERVED) {
            return PMLD_E_RESERVED;
        }
        if (out->state > PMLD_STATE_STOPPED || out->stop_reason > PMLD_STOP_ERROR) {
            return PMLD_E_BAD_VALUE;
        }
        if (((out->flags & PMLD_SESSION_GYRO) != 0) != (out->gyro_range_dps > 0u)) {
            return PMLD_E_BAD_VALUE;
        }
        return check_get_info(out);
    default: /* PMLD_OP_SET_TIME */
        out->previous_us = pmld_get_u64(in + 3);
        out->flags = in[11];
        return (out->flags & (uint8_t)~PMLD_SETTIME_WAS_SET) ? PMLD_E_RESERVED : PMLD_OK;
    }
}

/* ---- INFO ---------------------------------------------------------------------------- */
int pmld_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t extra;
        uint32_t cp, min;
        size_t k;
        if (c < 0x80u) {
            ++i;
            continue;
        } else if ((c & 0xE0u) == 0xC0u) {
            extra = 1;
            cp = c & 0x1Fu;
            min = 0x80u;
        } else if ((c & 0xF0u) == 0xE0u) {
            extra = 2;
            cp = c & 0x0Fu;
            min = 0x800u;
        } else if ((c & 0xF8u) == 0xF0u) {
            extra = 3;
            cp = c & 0x07u;
            min = 0x10000u;
        } else {
            return 0;
        }
        if (len - i <= extra) {
            return 0;
        }
        for (k = 1; k <= extra; ++k) {
            if ((s[i + k] & 0xC0u) != 0x80u) {
                return 0;
            }
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFFu || (cp >= 0xD800u && cp <= 0xDFFFu)) {
            return 0;
        }
        i += extra + 1;
    }
    return 1;
}

static int float_ok(float v)
{
    /* finite and > 0 (NaN fails the comparisons; infinity fails the upper bound) */
    return v > 0.0f && v <= 3.402823466e38f;
}

int pmld_check_info(const pmld_info *info)
{
    unsigned i;
    if (info->n_rates < 1u || info->n_rates > PMLD_MAX_RATES) {
        return PMLD_E_BAD_VALUE;
    }
    for (i = 0; i < info->n_rates; ++i) {
        if (info->rates_hz[i] == 0u || (i > 0 && info->rates_hz[i] <= info->rates_hz[i - 1])) {
            return PMLD_E_BAD_VALUE;
        }
    }
    if (info->n_acc_ranges < 1u || info->n_acc_ranges > PMLD_MAX_RANGES ||
        info->n_gyro_ranges > PMLD_MAX_RANGES) {
        return PMLD_E_BAD_VALUE;
    }
    for (i = 0; i < info->n_acc_ranges; ++i) {
        const pmld_acc_range *r = &info->acc_ranges[i];
        if (r->range_g == 0u || (i > 0 && r->range_g <= info->acc_ranges[i - 1].range_g) ||
            !float_ok(r->counts_per_g)) {
            return PMLD_E_BAD_VALUE;
        }
    }
    for (i = 0; i < info->n_gyro_ranges; ++i) {
        const pmld_gyro_range *r = &info->gyro_ranges[i];
        if (r->range_dps == 0u || (i > 0 && r->range_dps <= info->gyro_ranges[i - 1].range_dps) ||
            !float_ok(r->counts_per_dps)) {
            return PMLD_E_BAD_VALUE;
        }
    }
    if (info->buffer_samples == 0u) {
        return PMLD_E_BAD_VALUE;
    }
    if ((info->n_gyro_ranges > 0u) != (info->buffer_samples_gyro > 0u)) {
        return PMLD_E_BAD_VALUE;
    }
    if (((info->sensors & PMLD_SENSOR_GYRO) != 0) != (info->n_gyro_ranges > 0u)) {
        return PMLD_E_BAD_VALUE;
    }
    if (info->time_sync_interval_s == 0u || info->status_interval_s == 0u) {
        return PMLD_E_BAD_VALUE;
    }
    if (info->model.len > PMLD_MAX_STRING || info->firmware.len > PMLD_MAX_STRING ||
        info->serial.len > PMLD_MAX_STRING) {
        return PMLD_E_BAD_VALUE;
    }
    return PMLD_OK;
}

int pmld_encode_info(const pmld_info *info, uint8_t *out, size_t cap)
{
    size_t pos = 20;
    const pmld_string *strings[3];
    unsigned i;
    if (pmld_check_info(info) != PMLD_OK || !(info->sensors & PMLD_SENSOR_ACC)) {
        return PMLD_E_BUFFER;
    }
    strings[0] = &info->model;
    strings[1] = &info->firmware;
    strings[2] = &info->serial;
    if (cap < 20u + 1u + 2u * info->n_rates + 1u + 5u * info->n_acc_ranges + 1u +
                  6u * info->n_gyro_ranges + 3u + info->model.len + info->firmware.len +
                  info->serial.len) {
        return PMLD_E_BUFFER;
    }
    memcpy(out, "PMLD", 4);
    out[4] = info->major;
    out[5] = info->minor;
    out[8] = (uint8_t)(PMLD_SENSOR_ACC | (info->n_gyro_ranges ? PMLD_SENSOR_GYRO : 0u));
    out[9] = info->features;
    out[10] = info->time_sync_interval_s;
    out[11] = info->status_interval_s;
    pmld_put_u32(out + 12, info->buffer_samples);
    pmld_put_u32(out + 16, info->buffer_samples_gyro);
    out[pos++] = info->n_rates;
    for (i = 0; i < info->n_rates; ++i, pos += 2) {
        pmld_put_u16(out + pos, info->rates_hz[i]);
    }
    out[pos++] = info->n_acc_ranges;
    for (i = 0; i < info->n_acc_ranges; ++i, pos += 5) {
        out[pos] = info->acc_ranges[i].range_g;
        put_f32(out + pos + 1, info->acc_ranges[i].counts_per_g);
    }
    out[pos++] = info->n_gyro_ranges;
    for (i = 0; i < info->n_gyro_ranges; ++i, pos += 6) {
        pmld_put_u16(out + pos, info->gyro_ranges[i].range_dps);
        put_f32(out + pos + 2, info->gyro_ranges[i].counts_per_dps);
    }
    for (i = 0; i < 3; ++i) {
        out[pos++] = strings[i]->len;
        memcpy(out + pos, strings[i]->text, strings[i]->len);
        pos += strings[i]->len;
    }
    pmld_put_u16(out + 6, (uint16_t)pos);
    return (int)pos;
}

int pmld_decode_info(const uint8_t *in, size_t len, pmld_info *out)
{
    size_t pos, total;
    unsigned i, n;
    int too_many = 0;
    pmld_string *strings[3];
    memset(out, 0, sizeof *out);
    if (len < 6 || memcmp(in, "PMLD", 4) != 0) {
        size_t k = len < 4 ? len : 4;
        if (memcmp(in, "PMLD", k) != 0) {
            return PMLD_E_NOT_PMLD;
        }
        return PMLD_E_TRUNCATED;
    }
    out->major = in[4];
    out->minor = in[5];
    if (out->major < PMLD_PROTOCOL_MAJOR) {
        return PMLD_E_VERSION_OLD;
    }
    if (out->major > PMLD_PROTOCOL_MAJOR) {
        return PMLD_E_VERSION_NEW;
    }
    if (len < 20) {
        return PMLD_E_TRUNCATED;
    }
    total = pmld_get_u16(in + 6);
    if (total != len) {
        return size_error(len, total);
    }
    out->sensors = in[8];
    out->features = in[9];
    out->time_sync_interval_s = in[10];
    out->status_interval_s = in[11];
    out->buffer_samples = pmld_get_u32(in + 12);
    out->buffer_samples_gyro = pmld_get_u32(in + 16);
    if (!(out->sensors & PMLD_SENSOR_ACC)) {
        return PMLD_E_BAD_VALUE;
    }
    if (out->sensors & (uint8_t)~(PMLD_SENSOR_ACC | PMLD_SENSOR_GYRO)) {
        return PMLD_E_RESERVED;
    }
    if (out->features & (uint8_t)~PMLD_FEATURE_STOP_ON_OVERFLOW) {
        return PMLD_E_RESERVED;
    }
    pos = 20;
    /* lists: walk all of them (a count beyond the stored maximum is noted, then refused
       after the walk, so that a truncated value is reported as truncated first) */
    if (pos + 1 > len) return PMLD_E_TRUNCATED;
    n = in[pos++];
    if (pos + 2u * n > len) return PMLD_E_TRUNCATED;
    for (i = 0; i < n; ++i) {
        if (i < PMLD_MAX_RATES) out->rates_hz[i] = pmld_get_u16(in + pos + 2u * i);
    }
    pos += 2u * n;
    too_many |= n > PMLD_MAX_RATES;
    out->n_rates = (uint8_t)(n > PMLD_MAX_RATES ? PMLD_MAX_RATES : n);
    if (pos + 1 > len) return PMLD_E_TRUNCATED;
    n = in[pos++];
    if (pos + 5u * n > len) return PMLD_E_TRUNCATED;
    for (i = 0; i < n && i < PMLD_MAX_RANGES; ++i) {
        out->acc_ranges[i].range_g = in[pos + 5u * i];
        out->acc_ranges[i].counts_per_g = get_f32(in + pos + 5u * i + 1u);
    }
    pos += 5u * n;
    too_many |= n > PMLD_MAX_RANGES;
    out->n_acc_ranges = (uint8_t)(n > PMLD_MAX_RANGES ? PMLD_MAX_RANGES : n);
    if (pos + 1 > len) return PMLD_E_TRUNCATED;
    n = in[pos++];
    if (pos + 6u * n > len) return PMLD_E_TRUNCATED;
    for (i = 0; i < n && i < PMLD_MAX_RANGES; ++i) {
        out->gyro_ranges[i].range_dps = pmld_get_u16(in + pos + 6u * i);
        out->gyro_ranges[i].counts_per_dps = get_f32(in + pos + 6u * i + 2u);
    }
    pos += 6u * n;
    too_many |= n > PMLD_MAX_RANGES;
    out->n_gyro_ranges = (uint8_t)(n > PMLD_MAX_RANGES ? PMLD_MAX_RANGES : n);
    strings[0] = &out->model;
    strings[1] = &out->firmware;
    strings[2] = &out->serial;
    for (i = 0; i < 3; ++i) {
        if (pos + 1 > len) return PMLD_E_TRUNCATED;
        n = in[pos++];
        if (pos + n > len) return PMLD_E_TRUNCATED;
        if (!pmld_utf8_valid(in + pos, n)) {
            return PMLD_E_BAD_VALUE;
        }
        too_many |= n > PMLD_MAX_STRING;
        strings[i]->len = (uint8_t)(n > PMLD_MAX_STRING ? PMLD_MAX_STRING : n);
        memcpy(strings[i]->text, in + pos, strings[i]->len);
        strings[i]->text[strings[i]->len] = '\0';
        pos += n;
    }
    /* a newer minor version may append fields: ignore them */
    if (pos != len && out->minor <= PMLD_PROTOCOL_MINOR) {
        return PMLD_E_LENGTH;
    }
    if (too_many) {
        return PMLD_E_BAD_VALUE;
    }
    return pmld_check_info(out);
}
