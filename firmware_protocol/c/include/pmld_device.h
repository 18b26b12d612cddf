/*
 * The band's firmware logic: session state machine, CONTROL command handling and the
 * scheduling of DATA-characteristic notifications (DATA, TIME_SYNC, STATUS frames).
 *
 * Platform-free: the firmware passes in time (now_us, its monotonic clock in µs),
 * samples (pmld_device_sample, from the IMU's data-ready interrupt), CONTROL writes
 * (pmld_device_command, whose reply it indicates) and calls pmld_device_next_frame
 * whenever the link can take another notification (e.g. on each "notification sent"
 * event, and on a latency timer with flush = 1). Nothing is sent before START or
 * RESUME, nor after pmld_device_disconnect until the next RESUME.
 *
 * The Python DeviceModel in pmld.ble.protocol behaves identically, byte for byte
 * (vectors/sessions.json).
 */
#ifndef PMLD_DEVICE_H
#define PMLD_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "pmld_protocol.h"
#include "pmld_ring.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const pmld_info *info;
    pmld_ring ring;
    uint32_t session_seed;
    uint32_t start_count;
    uint8_t state;       /* PMLD_STATE_* */
    uint32_t session_id; /* 0: none */
    uint16_t rate_hz;
    uint8_t range_g;
    uint16_t gyro_range_dps; /* 0: no gyroscope in this session */
    uint8_t stop_on_overflow;
    uint8_t sending;     /* the host asked for frames (START/RESUME) and is connected */
    uint32_t cursor;     /* next sample index to send */
    uint32_t sent_until; /* every index below was sent at least once */
    uint16_t seq;
    uint8_t overflow;
    uint8_t stop_reason;
    uint16_t error_code;
    uint8_t battery_pct;
    uint64_t clock_offset_us; /* device clock = monotonic + offset (mod 2^64) */
    uint8_t clock_set;
    uint64_t last_sample_us; /* monotonic time of the newest sample */
    uint8_t sync_pending;
    uint8_t status_pending;
    uint64_t next_sync_us;
    uint64_t next_status_us;
} pmld_device;

/* storage must hold info->buffer_samples * 3 values; the gyro capacity is then
   n_values / 6 and must equal info->buffer_samples_gyro (0 without gyroscope).
   Returns 0, or PMLD_E_BUFFER when the sizes disagree. */
int pmld_device_init(pmld_device *dev, const pmld_info *info, int16_t *storage,
                     uint32_t n_values, uint32_t session_seed);

/* Execute a CONTROL write; writes the reply (<= PMLD_MAX_REPLY_SIZE bytes) and returns
   its length. Every write gets a reply. */
size_t pmld_device_command(pmld_device *dev, const uint8_t *cmd, size_t len, uint64_t now_us,
                           uint8_t *reply);

/* One acquired sample (3 or 6 values per the session); returns 1 if stored. */
int pmld_device_sample(pmld_device *dev, const int16_t *values, uint64_t now_us);

/* The next notification at ATT MTU `mtu` (23..517) into out (cap >= mtu - 3 or the
   frame's size); returns its length, or 0 when there is nothing to send. */
size_t pmld_device_next_frame(pmld_device *dev, unsigned mtu, uint64_t now_us, int flush,
                              uint8_t *out, size_t cap);

void pmld_device_disconnect(pmld_device *dev);
void pmld_device_set_battery(pmld_device *dev, uint8_t pct);
/* A sensor or firmware fault: a streaming session stops with reason ERROR. */
void pmld_device_fault(pmld_device *dev, uint16_t error_code);

#ifdef __cplusplus
}
#endif

#endif /* PMLD_DEVICE_H */
