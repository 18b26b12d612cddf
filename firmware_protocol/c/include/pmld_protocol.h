/*
 * pmld band GATT protocol 1.0: constants and the frame / command / reply / INFO codec.
 *
 * The byte layouts are specified in firmware_protocol/SPEC.md. Every multi-byte field
 * is little-endian and read or written byte by byte, so the code does not depend on
 * the host's endianness or alignment. The only platform assumption: float is IEEE 754
 * binary32 (INFO's scale factors).
 *
 * C99, no dynamic allocation, no global state.
 */
#ifndef PMLD_PROTOCOL_H
#define PMLD_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PMLD_PROTOCOL_MAJOR 1
#define PMLD_PROTOCOL_MINOR 0

/* 128-bit UUIDs (string form; a firmware stores them little-endian for its stack). */
#define PMLD_SERVICE_UUID "5b4f0001-dfd8-4ec7-903b-70957256f63d"
#define PMLD_INFO_UUID    "5b4f0002-dfd8-4ec7-903b-70957256f63d"
#define PMLD_CONTROL_UUID "5b4f0003-dfd8-4ec7-903b-70957256f63d"
#define PMLD_DATA_UUID    "5b4f0004-dfd8-4ec7-903b-70957256f63d"

#define PMLD_ATT_MIN_MTU 23u
#define PMLD_ATT_MAX_MTU 517u
#define PMLD_ATT_OVERHEAD 3u

#define PMLD_DATA_HEADER_SIZE 8u
#define PMLD_MAX_SAMPLES_PER_FRAME 63u
#define PMLD_TIME_SYNC_SIZE 20u
#define PMLD_STATUS_SIZE 20u
#define PMLD_MAX_FRAME_SIZE (PMLD_DATA_HEADER_SIZE + PMLD_MAX_SAMPLES_PER_FRAME * 12u)
#define PMLD_MAX_COMMAND_SIZE 10u
#define PMLD_MAX_REPLY_SIZE 20u
#define PMLD_MAX_INFO_SIZE 512u

#define PMLD_BATTERY_UNKNOWN 255u
#define PMLD_BATTERY_STOP_PCT 3u
#define PMLD_ERROR_INDEX_LIMIT 0xFFFFu
#define PMLD_MAX_RATES 16u
#define PMLD_MAX_RANGES 8u
#define PMLD_MAX_STRING 32u

/* frame types (first byte of a DATA-characteristic notification) */
enum { PMLD_FRAME_DATA = 0x01, PMLD_FRAME_TIME_SYNC = 0x02, PMLD_FRAME_STATUS = 0x03 };

/* command opcodes; a reply starts with opcode | PMLD_REPLY_BIT */
enum {
    PMLD_OP_START = 0x01,
    PMLD_OP_STOP = 0x02,
    PMLD_OP_RESUME = 0x03,
    PMLD_OP_GET_INFO = 0x04,
    PMLD_OP_SET_TIME = 0x05
};
#define PMLD_REPLY_BIT 0x80u

/* reply status codes */
enum {
    PMLD_STATUS_OK = 0x00,
    PMLD_STATUS_UNKNOWN_OPCODE = 0x01,
    PMLD_STATUS_INVALID_LENGTH = 0x02,
    PMLD_STATUS_INVALID_PARAMETER = 0x03,
    PMLD_STATUS_UNSUPPORTED = 0x04,
    PMLD_STATUS_BUSY = 0x05,
    PMLD_STATUS_NOT_STREAMING = 0x06,
    PMLD_STATUS_NO_SESSION = 0x07,
    PMLD_STATUS_SESSION_MISMATCH = 0x08,
    PMLD_STATUS_BATTERY_LOW = 0x09,
    PMLD_STATUS_ERROR = 0x0A
};

enum {
    PMLD_STOP_NONE = 0,
    PMLD_STOP_USER = 1,
    PMLD_STOP_BATTERY_LOW = 2,
    PMLD_STOP_BUFFER_OVERFLOW = 3,
    PMLD_STOP_ERROR = 4
};

enum { PMLD_STATE_IDLE = 0, PMLD_STATE_STREAMING = 1, PMLD_STATE_STOPPED = 2 };

/* flag bits */
#define PMLD_DATA_COUNT_MASK 0x3Fu
#define PMLD_DATA_GYRO 0x40u
#define PMLD_DATA_RESERVED 0x80u
#define PMLD_SYNC_CLOCK_SET 0x01u
#define PMLD_STATUS_STREAMING 0x01u
#define PMLD_STATUS_OVERFLOW 0x02u
#define PMLD_SESSION_GYRO 0x01u
#define PMLD_SESSION_STOP_ON_OVERFLOW 0x02u
#define PMLD_SESSION_RESERVED 0xFCu
#define PMLD_RESUME_STREAMING 0x01u
#define PMLD_RESUME_OVERWRITTEN 0x02u
#define PMLD_SETTIME_WAS_SET 0x01u
#define PMLD_SENSOR_ACC 0x01u
#define PMLD_SENSOR_GYRO 0x02u
#define PMLD_FEATURE_STOP_ON_OVERFLOW 0x01u

/* Error results (negative); pmld_error_name() gives the vectors' "error" kind. */
typedef enum {
    PMLD_OK = 0,
    PMLD_E_TRUNCATED = -1,
    PMLD_E_LENGTH = -2,
    PMLD_E_UNKNOWN_TYPE = -3,
    PMLD_E_UNKNOWN_OPCODE = -4,
    PMLD_E_BAD_COUNT = -5,
    PMLD_E_RESERVED = -6,
    PMLD_E_BAD_VALUE = -7,
    PMLD_E_NOT_PMLD = -8,
    PMLD_E_VERSION_OLD = -9,
    PMLD_E_VERSION_NEW = -10,
    PMLD_E_BUFFER = -11 /* output buffer too small, or an argument out of range */
} pmld_err;

const char *pmld_error_name(int err);

/* ---- frames (DATA characteristic, notify) ------------------------------------------ */
typedef struct {
    uint16_t seq;
    uint32_t first_index;
    uint8_t count; /* 1..63 */
    uint8_t gyro;  /* 0: rows of 3 (acc x,y,z); 1: rows of 6 (acc x,y,z, gyro x,y,z) */
    int16_t samples[PMLD_MAX_SAMPLES_PER_FRAME * 6];
} pmld_data_frame;

typedef struct {
    uint16_t seq;
    uint32_t sample_index;
    uint64_t sample_time_us;
    uint32_t tx_delay_us;
    uint8_t clock_set;
} pmld_time_sync;

typedef struct {
    uint16_t seq;
    uint8_t streaming;
    uint8_t overflow;
    uint8_t battery_pct;
    uint8_t stop_reason;
    uint16_t error_code;
    uint32_t session_id;
    uint32_t oldest_index;
    uint32_t next_index;
} pmld_status;

typedef struct {
    uint8_t type; /* PMLD_FRAME_* */
    union {
        pmld_data_frame data;
        pmld_time_sync sync;
        pmld_status status;
    } u;
} pmld_frame;

/* Samples in a full DATA frame at this ATT MTU; 0 if the MTU is outside 23..517. */
unsigned pmld_samples_per_frame(unsigned mtu, int gyro);

/* Encoders return the frame length, or a negative pmld_err. */
int pmld_encode_data(const pmld_data_frame *frame, uint8_t *out, size_t cap);
/* The same from interleaved samples (count rows of 3 or 6 int16): no copy needed. */
int pmld_encode_data_rows(uint16_t seq, uint32_t first_index, const int16_t *rows,
                          unsigned count, int gyro, uint8_t *out, size_t cap);
int pmld_encode_time_sync(const pmld_time_sync *frame, uint8_t *out, size_t cap);
int pmld_encode_status(const pmld_status *frame, uint8_t *out, size_t cap);
/* Decode one notification: 0 or a negative pmld_err. */
int pmld_decode_frame(const uint8_t *in, size_t len, pmld_frame *out);

/* ---- commands (CONTROL, written by the host) --------------------------------------- */
typedef struct {
    uint8_t opcode;
    uint8_t token;
    /* START */
    uint16_t rate_hz;
    uint8_t range_g;
    uint8_t flags; /* PMLD_SESSION_* */
    uint16_t gyro_range_dps;
    /* RESUME */
    uint32_t session_id;
    uint32_t from_index;
    /* SET_TIME */
    uint64_t utc_us;
} pmld_command;

int pmld_encode_command(const pmld_command *cmd, uint8_t *out, size_t cap);
int pmld_decode_command(const uint8_t *in, size_t len, pmld_command *out);

/* ---- replies (CONTROL, indicated by the band) -------------------------------------- */
typedef struct {
    uint8_t opcode; /* without the reply bit */
    uint8_t token;
    uint8_t status;
    uint8_t flags;        /* RESUME: PMLD_RESUME_*; GET_INFO: PMLD_SESSION_*; SET_TIME */
    uint32_t session_id;  /* START, RESUME, GET_INFO */
    uint32_t end_index;   /* STOP */
    uint32_t from_index;  /* RESUME */
    uint32_t first_index; /* RESUME */
    uint32_t next_index;  /* RESUME, GET_INFO */
    uint8_t state;        /* GET_INFO */
    uint8_t range_g;      /* GET_INFO */
    uint8_t stop_reason;  /* GET_INFO */
    uint16_t rate_hz;     /* GET_INFO */
    uint16_t gyro_range_dps; /* GET_INFO */
    uint64_t previous_us; /* SET_TIME */
} pmld_reply;

int pmld_encode_reply(const pmld_reply *reply, uint8_t *out, size_t cap);
int pmld_decode_reply(const uint8_t *in, size_t len, pmld_reply *out);

/* ---- INFO (read) -------------------------------------------------------------------- */
typedef struct {
    uint8_t range_g;
    float counts_per_g;
} pmld_acc_range;

typedef struct {
    uint16_t range_dps;
    float counts_per_dps;
} pmld_gyro_range;

typedef struct {
    uint8_t len;
    char text[PMLD_MAX_STRING + 1]; /* NUL-terminated copy; may itself hold NULs */
} pmld_string;

typedef struct {
    uint8_t major;
    uint8_t minor;
    uint8_t sensors;  /* PMLD_SENSOR_* */
    uint8_t features; /* PMLD_FEATURE_* */
    uint8_t time_sync_interval_s;
    uint8_t status_interval_s;
    uint32_t buffer_samples;
    uint32_t buffer_samples_gyro;
    uint8_t n_rates;
    uint16_t rates_hz[PMLD_MAX_RATES];
    uint8_t n_acc_ranges;
    pmld_acc_range acc_ranges[PMLD_MAX_RANGES];
    uint8_t n_gyro_ranges;
    pmld_gyro_range gyro_ranges[PMLD_MAX_RANGES];
    pmld_string model;
    pmld_string firmware;
    pmld_string serial;
} pmld_info;

int pmld_encode_info(const pmld_info *info, uint8_t *out, size_t cap);
int pmld_decode_info(const uint8_t *in, size_t len, pmld_info *out);
/* 0 when the whole info is consistent (the checks pmld_decode_info ends with). */
int pmld_check_info(const pmld_info *info);
/* 1 when in[0..len) is strict UTF-8 (no overlongs, surrogates or code points > 10FFFF). */
int pmld_utf8_valid(const uint8_t *in, size_t len);

/* little-endian helpers, also used by the device */
void pmld_put_u16(uint8_t *p, uint16_t v);
void pmld_put_u32(uint8_t *p, uint32_t v);
void pmld_put_u64(uint8_t *p, uint64_t v);
uint16_t pmld_get_u16(const uint8_t *p);
uint32_t pmld_get_u32(const uint8_t *p);
uint64_t pmld_get_u64(const uint8_t *p);

#ifdef __cplusplus
}
#endif

#endif /* PMLD_PROTOCOL_H */
