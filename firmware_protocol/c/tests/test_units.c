/* Unit tests of the C reference beyond the shared vectors: ring buffer, frame sizing,
   sequence wrap, the index limit, argument checks, and random bytes through every
   decoder (decoded bytes must re-encode to themselves: the encoding is canonical). */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "pmld_device.h"
#include "pmld_protocol.h"
#include "pmld_ring.h"

static void test_ring(void)
{
    int16_t storage[12], out[12];
    int16_t s[6];
    pmld_ring ring;
    int16_t i;
    pmld_ring_init(&ring, storage, 12);
    CHECK(ring.capacity == 4 && pmld_ring_oldest(&ring) == 0 && !pmld_ring_full(&ring),
          "fresh ring");
    for (i = 0; i < 6; ++i) {
        s[0] = i;
        s[1] = (int16_t)(-i);
        s[2] = (int16_t)(100 + i);
        pmld_ring_push(&ring, s);
    }
    CHECK(ring.next_index == 6 && pmld_ring_oldest(&ring) == 2 && pmld_ring_full(&ring),
          "ring after 6 pushes: next %u oldest %u", ring.next_index, pmld_ring_oldest(&ring));
    CHECK(pmld_ring_read(&ring, 2, 4, out) == 0 && out[0] == 2 && out[1] == -2 &&
              out[2] == 102 && out[9] == 5 && out[11] == 105,
          "replay of 2..5 after the wrap");
    CHECK(pmld_ring_read(&ring, 1, 1, out) == -1, "index 1 was overwritten");
    CHECK(pmld_ring_read(&ring, 5, 2, out) == -1, "index 6 does not exist yet");
    CHECK(pmld_ring_read(&ring, 6, 0, out) == 0, "an empty read at the end is fine");
    pmld_ring_reset(&ring, 6);
    CHECK(ring.capacity == 2 && ring.next_index == 0, "gyro width halves the capacity");
}

static void test_frame_sizes(void)
{
    static const unsigned table[][3] = {{23, 0, 2},  {23, 1, 1},   {185, 0, 29}, {247, 0, 39},
                                        {247, 1, 19}, {517, 0, 63}, {517, 1, 42}, {22, 0, 0},
                                        {518, 0, 0}};
    unsigned i;
    uint8_t out[PMLD_MAX_FRAME_SIZE];
    int16_t rows[PMLD_MAX_SAMPLES_PER_FRAME * 6];
    memset(rows, 0, sizeof rows);
    for (i = 0; i < sizeof table / sizeof table[0]; ++i) {
        unsigned n = pmld_samples_per_frame(table[i][0], (int)table[i][1]);
        CHECK(n == table[i][2], "samples per frame at MTU %u gyro %u: %u", table[i][0],
              table[i][1], n);
        if (n) {
            int len = pmld_encode_data_rows(0, 0, rows, n, (int)table[i][1], out, sizeof out);
            CHECK(len > 0 && (unsigned)len <= table[i][0] - 3u, "full frame fits MTU %u",
                  table[i][0]);
        }
    }
    CHECK(pmld_encode_data_rows(0, 0, rows, 2, 0, out, 19) == PMLD_E_BUFFER, "cap too small");
    CHECK(pmld_encode_data_rows(0, 0, rows, 0, 0, out, sizeof out) == PMLD_E_BUFFER, "count 0");
    CHECK(pmld_encode_data_rows(0, 0, rows, 64, 0, out, sizeof out) == PMLD_E_BUFFER,
          "count 64");
}

static void test_utf8(void)
{
    static const struct {
        const char *bytes;
        size_t len;
        int ok;
    } cases[] = {{"abc", 3, 1},           {"\xc2\xb5", 2, 1},         {"\xe2\x82\xac", 3, 1},
                 {"\xf0\x9f\x98\x80", 4, 1}, {"\xc0\x80", 2, 0},       {"\xed\xa0\x80", 3, 0},
                 {"\xf4\x90\x80\x80", 4, 0}, {"\xe2\x82", 2, 0},       {"\x80", 1, 0},
                 {"\xff", 1, 0},           {"\xe0\x80\xaf", 3, 0}};
    unsigned i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        CHECK(pmld_utf8_valid((const uint8_t *)cases[i].bytes, cases[i].len) == cases[i].ok,
              "utf8 case %u", i);
    }
}

static pmld_info small_info(void)
{
    pmld_info info;
    memset(&info, 0, sizeof info);
    info.major = 1;
    info.sensors = PMLD_SENSOR_ACC;
    info.time_sync_interval_s = 1;
    info.status_interval_s = 5;
    info.buffer_samples = 8;
    info.n_rates = 1;
    info.rates_hz[0] = 100;
    info.n_acc_ranges = 1;
    info.acc_ranges[0].range_g = 8;
    info.acc_ranges[0].counts_per_g = 4096.0f;
    return info;
}

static void test_device_edges(void)
{
    static const uint8_t start[] = {PMLD_OP_START, 1, 100, 0, 8, 0, 0, 0};
    pmld_info info = small_info();
    pmld_device dev;
    int16_t storage[24];
    uint8_t reply[PMLD_MAX_REPLY_SIZE], out[PMLD_MAX_FRAME_SIZE];
    int16_t sample[3] = {1, 2, 3};
    pmld_frame frame;
    size_t n;

    CHECK(pmld_device_init(&dev, &info, storage, 21, 0) == PMLD_E_BUFFER,
          "storage that disagrees with INFO is refused");
    CHECK(pmld_device_init(&dev, &info, storage, 24, 0) == PMLD_OK, "device init");
    CHECK(pmld_device_next_frame(&dev, 23, 0, 1, out, sizeof out) == 0, "idle: nothing sent");
    n = pmld_device_command(&dev, start, sizeof start, 0, reply);
    CHECK(n == 7 && reply[2] == PMLD_STATUS_OK, "START");

    /* sequence numbers wrap from 65535 to 0 */
    dev.seq = 0xFFFFu;
    pmld_device_sample(&dev, sample, 10);
    n = pmld_device_next_frame(&dev, 23, 20, 0, out, sizeof out);
    CHECK(n == PMLD_TIME_SYNC_SIZE && pmld_decode_frame(out, n, &frame) == PMLD_OK &&
              frame.u.sync.seq == 0xFFFFu && frame.u.sync.tx_delay_us == 10,
          "TIME_SYNC with seq 65535");
    n = pmld_device_next_frame(&dev, 23, 20, 1, out, sizeof out);
    CHECK(n == 14 && pmld_decode_frame(out, n, &frame) == PMLD_OK && frame.u.data.seq == 0 &&
              frame.u.data.count == 1,
          "the next frame has seq 0");
    CHECK(pmld_device_next_frame(&dev, 23, 30, 1, out, sizeof out) == 0, "nothing left");
    CHECK(pmld_device_next_frame(&dev, 600, 30, 1, out, sizeof out) == 0, "bad MTU: nothing");

    /* the sample index stops short of 2^32 - 1: the session ends with ERROR 0xFFFF */
    dev.ring.next_index = 0xFFFFFFFEu;
    dev.sent_until = dev.ring.next_index;
    dev.cursor = dev.ring.next_index;
    CHECK(pmld_device_sample(&dev, sample, 40) == 1, "index 4294967294 is stored");
    CHECK(pmld_device_sample(&dev, sample, 50) == 0 && dev.state == PMLD_STATE_STOPPED &&
              dev.stop_reason == PMLD_STOP_ERROR && dev.error_code == PMLD_ERROR_INDEX_LIMIT,
          "index 4294967295 stops the session");
    n = pmld_device_next_frame(&dev, 23, 60, 0, out, sizeof out);
    CHECK(n == PMLD_STATUS_SIZE && pmld_decode_frame(out, n, &frame) == PMLD_OK &&
              frame.u.status.next_index == 0xFFFFFFFFu && !frame.u.status.streaming,
          "STATUS after the index limit");
    n = pmld_device_next_frame(&dev, 23, 60, 0, out, sizeof out);
    CHECK(n == 14 && pmld_decode_frame(out, n, &frame) == PMLD_OK &&
              frame.u.data.first_index == 0xFFFFFFFEu,
          "the last sample is drained after the stop");
}

/* xorshift32: deterministic pseudo-random bytes */
static uint32_t rng_state = 2463534242u;
static uint32_t next_random(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void test_random_bytes(void)
{
    static uint8_t in[600], again[600];
    static pmld_frame frame;
    static pmld_info info;
    pmld_command cmd;
    pmld_reply reply;
    int round, decoded = 0;
    for (round = 0; round < 200000; ++round) {
        size_t len = next_random() % 40u, i;
        int kind = round % 4;
        if (round % 97 == 0) len = next_random() % 600u;
        for (i = 0; i < len; ++i) in[i] = (uint8_t)next_random();
        /* steer a quarter of the inputs into plausible headers */
        if (len > 1 && round % 3 == 0) {
            in[0] = (uint8_t)(kind == 0 ? 1 + next_random() % 3 : in[0]);
            if (kind == 0 && in[0] == 1) in[1] = (uint8_t)(in[1] & 0x7F);
            if (kind == 2) in[0] |= 0x80u;
        }
        if (kind == 0 && pmld_decode_frame(in, len, &frame) == PMLD_OK) {
            int n = frame.type == PMLD_FRAME_DATA        ? pmld_encode_data(&frame.u.data, again, sizeof again)
                    : frame.type == PMLD_FRAME_TIME_SYNC ? pmld_encode_time_sync(&frame.u.sync, again, sizeof again)
                                                         : pmld_encode_status(&frame.u.status, again, sizeof again);
            CHECK(n == (int)len && memcmp(in, again, len) == 0, "frame re-encodes, round %d", round);
            ++decoded;
        } else if (kind == 1 && pmld_decode_command(in, len, &cmd) == PMLD_OK) {
            int n = pmld_encode_command(&cmd, again, sizeof again);
            CHECK(n == (int)len && memcmp(in, again, len) == 0, "command re-encodes, round %d",
                  round);
            ++decoded;
        } else if (kind == 2 && pmld_decode_reply(in, len, &reply) == PMLD_OK) {
            int n = pmld_encode_reply(&reply, again, sizeof again);
            CHECK(n == (int)len && memcmp(in, again, len) == 0, "reply re-encodes, round %d",
                  round);
            ++decoded;
        } else if (kind == 3) {
            if (len >= 6) memcpy(in, "PMLD\x01\x00", 6);
            if (len >= 8) pmld_put_u16(in + 6, (uint16_t)len);
            if (pmld_decode_info(in, len, &info) == PMLD_OK) {
                int n = pmld_encode_info(&info, again, sizeof again);
                CHECK(n == (int)len && memcmp(in, again, len) == 0, "info re-encodes");
                ++decoded;
            }
        }
    }
    CHECK(decoded > 500, "random inputs that decode: %d", decoded);
}

int run_unit_tests(void)
{
    int before = g_failures;
    test_ring();
    test_frame_sizes();
    test_utf8();
    test_device_edges();
    test_random_bytes();
    printf("  %-14s %s\n", "unit tests", g_failures == before ? "ok" : "FAILED");
    return g_failures - before;
}
