/* The band's session state machine and notification scheduler (see pmld_device.h). */
#include "pmld_device.h"

#include <string.h>

int pmld_device_init(pmld_device *dev, const pmld_info *info, int16_t *storage,
                     uint32_t n_values, uint32_t session_seed)
{
    uint32_t gyro_capacity = info->n_gyro_ranges ? n_values / 6u : 0u;
    memset(dev, 0, sizeof *dev);
    if (n_values / 3u != info->buffer_samples || n_values % 3u != 0u ||
        gyro_capacity != info->buffer_samples_gyro || info->buffer_samples == 0u) {
        return PMLD_E_BUFFER;
    }
    dev->info = info;
    pmld_ring_init(&dev->ring, storage, n_values);
    dev->session_seed = session_seed;
    dev->state = PMLD_STATE_IDLE;
    dev->battery_pct = PMLD_BATTERY_UNKNOWN;
    return PMLD_OK;
}

static void stop_session(pmld_device *dev, uint8_t reason, uint16_t error_code)
{
    dev->state = PMLD_STATE_STOPPED;
    dev->stop_reason = reason;
    dev->error_code = error_code;
    dev->status_pending = 1;
}

void pmld_device_disconnect(pmld_device *dev)
{
    dev->sending = 0;
}

void pmld_device_set_battery(pmld_device *dev, uint8_t pct)
{
    dev->battery_pct = pct;
    if (dev->state == PMLD_STATE_STREAMING && pct != PMLD_BATTERY_UNKNOWN &&
        pct <= PMLD_BATTERY_STOP_PCT) {
        stop_session(dev, PMLD_STOP_BATTERY_LOW, 0);
    }
}

void pmld_device_fault(pmld_device *dev, uint16_t error_code)
{
    if (dev->state == PMLD_STATE_STREAMING) {
        stop_session(dev, PMLD_STOP_ERROR, error_code);
    }
}

int pmld_device_sample(pmld_device *dev, const int16_t *values, uint64_t now_us)
{
    pmld_ring *ring = &dev->ring;
    if (dev->state != PMLD_STATE_STREAMING) {
        return 0;
    }
    if (ring->next_index == 0xFFFFFFFFu) {
        /* next_index must stay a u32: the last index a session can hold is 2^32 - 2 */
        stop_session(dev, PMLD_STOP_ERROR, PMLD_ERROR_INDEX_LIMIT);
        return 0;
    }
    if (pmld_ring_full(ring) &&
        pmld_ring_oldest(ring) >= (dev->sending ? dev->cursor : dev->sent_until)) {
        /* this sample would overwrite one the host has not been sent: at or after the
           send cursor, or (link down, host position unknown) never sent at all */
        if (dev->stop_on_overflow) {
            stop_session(dev, PMLD_STOP_BUFFER_OVERFLOW, 0);
            return 0;
        }
        if (!dev->overflow) {
            dev->overflow = 1;
            dev->status_pending = 1;
        }
    }
    pmld_ring_push(ring, values);
    dev->last_sample_us = now_us;
    return 1;
}

static int supported(const pmld_device *dev, const pmld_command *cmd)
{
    const pmld_info *info = dev->info;
    int rate_ok = 0, range_ok = 0, gyro_ok = (cmd->gyro_range_dps == 0u);
    unsigned i;
    for (i = 0; i < info->n_rates; ++i) {
        rate_ok |= info->rates_hz[i] == cmd->rate_hz;
    }
    for (i = 0; i < info->n_acc_ranges; ++i) {
        range_ok |= info->acc_ranges[i].range_g == cmd->range_g;
    }
    for (i = 0; i < info->n_gyro_ranges; ++i) {
        gyro_ok |= info->gyro_ranges[i].range_dps == cmd->gyro_range_dps;
    }
    if ((cmd->flags & PMLD_SESSION_STOP_ON_OVERFLOW) &&
        !(info->features & PMLD_FEATURE_STOP_ON_OVERFLOW)) {
        return 0;
    }
    return rate_ok && range_ok && gyro_ok;
}

static uint8_t start(pmld_device *dev, const pmld_command *cmd, uint64_t now_us,
                     pmld_reply *reply)
{
    if (dev->state == PMLD_STATE_STREAMING) {
        return PMLD_STATUS_BUSY;
    }
    if (!supported(dev, cmd)) {
        return PMLD_STATUS_UNSUPPORTED;
    }
    if (dev->battery_pct != PMLD_BATTERY_UNKNOWN && dev->battery_pct <= PMLD_BATTERY_STOP_PCT) {
        return PMLD_STATUS_BATTERY_LOW;
    }
    dev->start_count++;
    dev->session_id = dev->session_seed + dev->start_count;
    if (dev->session_id == 0u) {
        dev->session_id = 1u;
    }
    dev->state = PMLD_STATE_STREAMING;
    dev->rate_hz = cmd->rate_hz;
    dev->range_g = cmd->range_g;
    dev->gyro_range_dps = cmd->gyro_range_dps;
    dev->stop_on_overflow = (cmd->flags & PMLD_SESSION_STOP_ON_OVERFLOW) ? 1u : 0u;
    pmld_ring_reset(&dev->ring, dev->gyro_range_dps ? 6u : 3u);
    dev->sending = 1;
    dev->cursor = 0;
    dev->sent_until = 0;
    dev->seq = 0;
    dev->overflow = 0;
    dev->stop_reason = PMLD_STOP_NONE;
    dev->error_code = 0;
    dev->sync_pending = 1;
    dev->status_pending = 0;
    dev->next_status_us = now_us + (uint64_t)dev->info->status_interval_s * 1000000u;
    reply->session_id = dev->session_id;
    return PMLD_STATUS_OK;
}

static uint8_t resume(pmld_device *dev, const pmld_command *cmd, pmld_reply *reply)
{
    uint32_t oldest = pmld_ring_oldest(&dev->ring);
    if (dev->state == PMLD_STATE_IDLE) {
        return PMLD_STATUS_NO_SESSION;
    }
    if (cmd->session_id != dev->session_id) {
        return PMLD_STATUS_SESSION_MISMATCH;
    }
    if (cmd->from_index > dev->ring.next_index) {
        return PMLD_STATUS_INVALID_PARAMETER;
    }
    dev->cursor = cmd->from_index > oldest ? cmd->from_index : oldest;
    dev->sending = 1;
    dev->status_pending = 1;
    dev->sync_pending = dev->state == PMLD_STATE_STREAMING;
    reply->flags = dev->state == PMLD_STATE_STREAMING ? PMLD_RESUME_STREAMING : 0u;
    reply->session_id = dev->session_id;
    reply->from_index = cmd->from_index;
    reply->first_index = dev->cursor;
    reply->next_index = dev->ring.next_index;
    return PMLD_STATUS_OK;
}

static uint8_t execute(pmld_device *dev, const pmld_command *cmd, uint64_t now_us,
                       pmld_reply *reply)
{
    switch (cmd->opcode) {
    case PMLD_OP_START:
        return start(dev, cmd, now_us, reply);
    case PMLD_OP_STOP:
        if (dev->state != PMLD_STATE_STREAMING) {
            return PMLD_STATUS_NOT_STREAMING;
        }
        stop_session(dev, PMLD_STOP_USER, 0);
        reply->end_index = dev->ring.next_index;
        return PMLD_STATUS_OK;
    case PMLD_OP_RESUME:
        return resume(dev, cmd, reply);
    case PMLD_OP_GET_INFO:
        reply->state = dev->state;
        if (dev->state != PMLD_STATE_IDLE) {
            reply->session_id = dev->session_id;
            reply->rate_hz = dev->rate_hz;
            reply->range_g = dev->range_g;
            reply->gyro_range_dps = dev->gyro_range_dps;
            reply->flags = dev->stop_on_overflow ? PMLD_SESSION_STOP_ON_OVERFLOW : 0u;
            reply->stop_reason = dev->stop_reason;
            reply->next_index = dev->ring.next_index;
        }
        return PMLD_STATUS_OK;
    default: /* PMLD_OP_SET_TIME */
        if (dev->state == PMLD_STATE_STREAMING) {
            return PMLD_STATUS_BUSY;
        }
        reply->previous_us = now_us + dev->clock_offset_us;
        reply->flags = dev->clock_set ? PMLD_SETTIME_WAS_SET : 0u;
        dev->clock_offset_us = cmd->utc_us - now_us;
        dev->clock_set = 1;
        return PMLD_STATUS_OK;
    }
}

size_t pmld_device_command(pmld_device *dev, const uint8_t *cmd, size_t len, uint64_t now_us,
                           uint8_t *out)
{
    pmld_command command;
    pmld_reply reply;
    int err = pmld_decode_command(cmd, len, &command);
    int n;
    memset(&reply, 0, sizeof reply);
    reply.opcode = len > 0 ? cmd[0] : 0u;
    reply.token = len > 1 ? cmd[1] : 0u;
    switch (err) {
    case PMLD_OK:
        reply.status = execute(dev, &command, now_us, &reply);
        break;
    case PMLD_E_UNKNOWN_OPCODE:
        reply.status = PMLD_STATUS_UNKNOWN_OPCODE;
        break;
    case PMLD_E_TRUNCATED:
    case PMLD_E_LENGTH:
        reply.status = PMLD_STATUS_INVALID_LENGTH;
        break;
    default:
        reply.status = PMLD_STATUS_INVALID_PARAMETER;
        break;
    }
    if (reply.status != PMLD_STATUS_OK) {
        /* an error reply echoes opcode and token only */
        uint8_t opcode = reply.opcode, token = reply.token, status = reply.status;
        memset(&reply, 0, sizeof reply);
        reply.opcode = opcode;
        reply.token = token;
        reply.status = status;
    }
    n = pmld_encode_reply(&reply, out, PMLD_MAX_REPLY_SIZE);
    return n > 0 ? (size_t)n : 0u;
}

size_t pmld_device_next_frame(pmld_device *dev, unsigned mtu, uint64_t now_us, int flush,
                              uint8_t *out, size_t cap)
{
    unsigned spf = pmld_samples_per_frame(mtu, dev->gyro_range_dps != 0u);
    int n = 0;
    if (!dev->sending || spf == 0u) {
        return 0;
    }
    if (dev->status_pending || now_us >= dev->next_status_us) {
        pmld_status s;
        s.seq = dev->seq;
        s.streaming = dev->state == PMLD_STATE_STREAMING;
        s.overflow = dev->overflow;
        s.battery_pct = dev->battery_pct;
        s.stop_reason = dev->stop_reason;
        s.error_code = dev->error_code;
        s.session_id = dev->session_id;
        s.oldest_index = pmld_ring_oldest(&dev->ring);
        s.next_index = dev->ring.next_index;
        n = pmld_encode_status(&s, out, cap);
        if (n > 0) {
            dev->status_pending = 0;
            dev->next_status_us = now_us + (uint64_t)dev->info->status_interval_s * 1000000u;
        }
    } else if (dev->state == PMLD_STATE_STREAMING && dev->ring.next_index > 0u &&
               (dev->sync_pending || now_us >= dev->next_sync_us)) {
        pmld_time_sync t;
        uint64_t delay = now_us > dev->last_sample_us ? now_us - dev->last_sample_us : 0u;
        t.seq = dev->seq;
        t.sample_index = dev->ring.next_index - 1u;
        t.sample_time_us = dev->last_sample_us + dev->clock_offset_us;
        t.tx_delay_us = delay > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)delay;
        t.clock_set = dev->clock_set;
        n = pmld_encode_time_sync(&t, out, cap);
        if (n > 0) {
            dev->sync_pending = 0;
            dev->next_sync_us = now_us + (uint64_t)dev->info->time_sync_interval_s * 1000000u;
        }
    } else {
        /* samples overwritten while waiting for the link are skipped: the host sees
           the jump in first_index, and STATUS says overflow */
        uint32_t oldest = pmld_ring_oldest(&dev->ring);
        uint32_t available, count;
        int16_t rows[PMLD_MAX_SAMPLES_PER_FRAME * 6];
        if (dev->cursor < oldest) {
            dev->cursor = oldest;
        }
        available = dev->ring.next_index - dev->cursor;
        count = available < spf ? available : spf;
        if (count == 0u || !(count == spf || flush || dev->state == PMLD_STATE_STOPPED)) {
            return 0;
        }
        if (pmld_ring_read(&dev->ring, dev->cursor, count, rows) != 0) {
            return 0;
        }
        n = pmld_encode_data_rows(dev->seq, dev->cursor, rows, count, dev->gyro_range_dps != 0u,
                                  out, cap);
        if (n > 0) {
            dev->cursor += count;
            if (dev->cursor > dev->sent_until) {
                dev->sent_until = dev->cursor;
            }
        }
    }
    if (n <= 0) {
        return 0;
    }
    dev->seq++;
    return (size_t)n;
}
