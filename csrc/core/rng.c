/* The process-wide random state: a seed and the next free stream id. Every op that draws
 * randomness reserves a whole stream (af_rng_next_stream) and then reads only (seed, stream,
 * counter), so results do not depend on which thread draws or when; the mutex only makes the
 * reservation itself atomic against manual_seed and other reservations. */
#include <pthread.h>

#include "rng.h"

static pthread_mutex_t rng_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t global_seed = 0x5eed;
static uint64_t global_stream = 0;

void af_rng_manual_seed(uint64_t seed) {
    pthread_mutex_lock(&rng_lock);
    global_seed = seed;
    global_stream = 0;
    pthread_mutex_unlock(&rng_lock);
}

void af_rng_next_stream(uint64_t *seed, uint64_t *stream) {
    pthread_mutex_lock(&rng_lock);
    *seed = global_seed;
    *stream = global_stream++;
    pthread_mutex_unlock(&rng_lock);
}

void af_rng_get_state(uint64_t *seed, uint64_t *next_stream) {
    pthread_mutex_lock(&rng_lock);
    *seed = global_seed;
    *next_stream = global_stream;
    pthread_mutex_unlock(&rng_lock);
}

void af_rng_set_state(uint64_t seed, uint64_t next_stream) {
    pthread_mutex_lock(&rng_lock);
    global_seed = seed;
    global_stream = next_stream;
    pthread_mutex_unlock(&rng_lock);
}
