/* Counter-based random numbers: Philox 4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random
 * numbers: as easy as 1, 2, 3", SC 2011).
 *
 * Every draw is a pure function of (seed, stream, counter): the 64-bit seed is the Philox key, and
 * the 128-bit Philox counter holds the 64-bit stream id in its high half and a 64-bit position in
 * its low half. Work split across threads therefore gets identical numbers whatever the thread
 * count or scheduling, as long as each work item uses its own stream (e.g. the loader gives sample
 * i of epoch e its own stream) or its own counter range. Header-only and free of libc calls so the
 * same code serves .c and .cu files. */
#ifndef AF_RNG_H
#define AF_RNG_H

#include <stdint.h>

#ifdef __CUDACC__
#define AF_RNG_FN static __host__ __device__ inline
#else
#define AF_RNG_FN static inline
#endif

/* One Philox4x32-10 block: 4 uint32 outputs from a 128-bit counter and a 64-bit key. Constants
 * are the paper's (multipliers 0xD2511F53, 0xCD9E8D57; Weyl increments 0x9E3779B9, 0xBB67AE85). */
AF_RNG_FN void af_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

/* A cursor over one stream: successive calls walk the counter. Cheap to create, copyable. */
typedef struct af_rng {
    uint64_t seed;
    uint64_t stream;
    uint64_t counter; /* index of the next 4-word block */
    uint32_t block[4];
    int used;         /* words of `block` already handed out; 4 = need a new block */
} af_rng;

AF_RNG_FN af_rng af_rng_make(uint64_t seed, uint64_t stream, uint64_t counter) {
    af_rng r;
    r.seed = seed;
    r.stream = stream;
    r.counter = counter;
    r.used = 4;
    r.block[0] = r.block[1] = r.block[2] = r.block[3] = 0;
    return r;
}

AF_RNG_FN uint32_t af_rng_u32(af_rng *r) {
    if (r->used == 4) {
        uint32_t ctr[4] = {(uint32_t)r->counter, (uint32_t)(r->counter >> 32), (uint32_t)r->stream,
                           (uint32_t)(r->stream >> 32)};
        uint32_t key[2] = {(uint32_t)r->seed, (uint32_t)(r->seed >> 32)};
        af_philox4x32_10(ctr, key, r->block);
        r->counter++;
        r->used = 0;
    }
    return r->block[r->used++];
}

/* Uniform in [0, 1) with 24 random bits: every value exactly representable in float32. */
AF_RNG_FN float af_rng_uniform_f32(af_rng *r) { return (float)(af_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

/* Uniform in [0, 1) with 53 random bits. */
AF_RNG_FN double af_rng_uniform(af_rng *r) {
    uint64_t hi = af_rng_u32(r) >> 5, lo = af_rng_u32(r) >> 6; /* 27 + 26 bits */
    return (double)(hi * 67108864.0 + lo) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n), n >= 1, without modulo bias (Lemire's multiply-shift with rejection). */
AF_RNG_FN uint32_t af_rng_below(af_rng *r, uint32_t n) {
    uint64_t m = (uint64_t)af_rng_u32(r) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)af_rng_u32(r) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

/* The global state (csrc/core/rng.c), thread-safe: affectfer.manual_seed and every op that draws. */
#ifndef __CUDACC__
void af_rng_manual_seed(uint64_t seed); /* and restart at stream 0 */
void af_rng_next_stream(uint64_t *seed, uint64_t *stream); /* reserve one stream: (seed, stream) */
void af_rng_get_state(uint64_t *seed, uint64_t *next_stream);
void af_rng_set_state(uint64_t seed, uint64_t next_stream);
#endif

#endif
