/* Ring buffer with replay from a sample index (see pmld_ring.h). */
#include "pmld_ring.h"

void pmld_ring_init(pmld_ring *ring, int16_t *storage, uint32_t n_values)
{
    ring->storage = storage;
    ring->n_values = n_values;
    pmld_ring_reset(ring, 3);
}

void pmld_ring_reset(pmld_ring *ring, uint32_t width)
{
    ring->width = width;
    ring->capacity = ring->n_values / width;
    ring->next_index = 0;
}

uint32_t pmld_ring_oldest(const pmld_ring *ring)
{
    return ring->next_index > ring->capacity ? ring->next_index - ring->capacity : 0u;
}

int pmld_ring_full(const pmld_ring *ring)
{
    return ring->next_index - pmld_ring_oldest(ring) == ring->capacity;
}

void pmld_ring_push(pmld_ring *ring, const int16_t *sample)
{
    int16_t *slot = ring->storage + (ring->next_index % ring->capacity) * ring->width;
    uint32_t k;
    for (k = 0; k < ring->width; ++k) {
        slot[k] = sample[k];
    }
    ring->next_index++;
}

int pmld_ring_read(const pmld_ring *ring, uint32_t first, uint32_t count, int16_t *out)
{
    uint32_t i, k;
    if (first < pmld_ring_oldest(ring) || first > ring->next_index ||
        count > ring->next_index - first) {
        return -1;
    }
    for (i = 0; i < count; ++i) {
        const int16_t *slot = ring->storage + ((first + i) % ring->capacity) * ring->width;
        for (k = 0; k < ring->width; ++k) {
            out[i * ring->width + k] = slot[k];
        }
    }
    return 0;
}
