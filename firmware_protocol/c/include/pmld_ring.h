/*
 * Ring buffer of the newest samples of a session, for RESUME replay.
 *
 * The caller supplies the storage (int16 values); sample i of the session (i counts
 * from 0 at START) lives in slot i % capacity, so the buffer needs no head/tail
 * bookkeeping beyond next_index: the oldest sample still held is
 * max(0, next_index - capacity), and every older sample has been overwritten.
 */
#ifndef PMLD_RING_H
#define PMLD_RING_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int16_t *storage;
    uint32_t n_values;   /* size of storage in int16 values */
    uint32_t width;      /* int16 values per sample: 3 (acc) or 6 (acc + gyro) */
    uint32_t capacity;   /* samples: n_values / width */
    uint32_t next_index; /* index the next pushed sample gets */
} pmld_ring;

void pmld_ring_init(pmld_ring *ring, int16_t *storage, uint32_t n_values);
/* Empty the ring for samples of `width` values (3 or 6). */
void pmld_ring_reset(pmld_ring *ring, uint32_t width);
uint32_t pmld_ring_oldest(const pmld_ring *ring);
int pmld_ring_full(const pmld_ring *ring);
/* Append one sample (width values), overwriting the oldest when full. */
void pmld_ring_push(pmld_ring *ring, const int16_t *sample);
/* Copy `count` samples from `first` into out (count * width values): 0, or -1 when
   any of them is not held (overwritten or not yet acquired). */
int pmld_ring_read(const pmld_ring *ring, uint32_t first, uint32_t count, int16_t *out);

#ifdef __cplusplus
}
#endif

#endif /* PMLD_RING_H */
