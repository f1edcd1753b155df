/* Samplers and the threaded loader (csrc/data/).
 *
 * Every sampler is a pure function of (seed, epoch) (bagging: of (seed, model)): the same arguments
 * give the same index list on every machine and thread count, because all draws come from Philox
 * streams (core/rng.h). Streams are packed so that the loader's per-sample streams and the
 * samplers' streams never collide for the same seed:
 *   loader sample i of epoch e:  stream = e << 40 | i             (top bit 0; i < 2^40, e < 2^23)
 *   sampler kind k, epoch/model: stream = 1 << 63 | k << 48 | e    (top bit 1) */
#ifndef AF_DATA_H
#define AF_DATA_H

#include <stdint.h>

#include "../core/rng.h"
#include "../core/status.h"

#define AF_STREAM_SAMPLE(epoch, i) (((uint64_t)(epoch) << 40) | (uint64_t)(i))
#define AF_STREAM_SAMPLER(kind, epoch) ((1ull << 63) | ((uint64_t)(kind) << 48) | ((uint64_t)(epoch) & 0xFFFFFFFFFFFFull))

enum { AF_SAMPLER_SHUFFLE = 1, AF_SAMPLER_WEIGHTED = 2, AF_SAMPLER_OVERSAMPLE = 3, AF_SAMPLER_BAGGING = 4 };

/* Fisher-Yates shuffle of idx[0..n) in place, drawing from r (Durstenfeld's form: for k = n-1 down
 * to 1 swap idx[k] with idx[j], j uniform in [0, k]). n < 2^32. */
void af_shuffle_i64(int64_t *idx, int64_t n, af_rng *r);

/* out[k] = k. */
af_status af_sampler_sequential(int64_t n, int64_t *out);
/* A uniformly random permutation of 0..n-1 from stream (seed, SHUFFLE, epoch). */
af_status af_sampler_shuffled(int64_t n, uint64_t seed, uint64_t epoch, int64_t *out);
/* num_samples independent draws with replacement, P(k) = weights[k] / sum(weights), by exact inverse
 * CDF: u uniform in [0, total), the answer is the first k whose running sum exceeds u (so a zero
 * weight is never drawn). Draw i uses counter i of stream (seed, WEIGHTED, epoch). Weights must be
 * finite, >= 0, with a positive sum. */
af_status af_sampler_weighted(const double *weights, int64_t n, int64_t num_samples, uint64_t seed, uint64_t epoch,
                              int64_t *out);
/* Per-sample weights 1 / n_{labels[k]} (inverse class frequency; every class then gets probability
 * 1/C per draw). Labels in [0, num_classes). */
af_status af_class_inverse_weights(const int64_t *labels, int64_t n, int num_classes, double *out);
/* Class-balanced oversampling: every class present is filled up to the largest
 * class count n_max by copies of its own samples, taken round-robin in index order. The epoch list is
 * the n originals followed by the copies, shuffled with stream (seed, OVERSAMPLE, epoch) when
 * `shuffle`. is_copy[k] = 1 marks a copy (the loader applies the extra augmentation to those only).
 * af_sampler_oversample_size gives the list length (n_max * number of classes present). */
af_status af_sampler_oversample_size(const int64_t *labels, int64_t n, int num_classes, int64_t *size);
af_status af_sampler_oversample(const int64_t *labels, int64_t n, int num_classes, uint64_t seed, uint64_t epoch,
                                int shuffle, int64_t *out, uint8_t *is_copy);
/* Bagging: `m` distinct indices of 0..n-1 (without replacement), the first m of a permutation drawn
 * from stream (seed, BAGGING, model), returned sorted. Independent of the epoch. */
af_status af_sampler_bagging(int64_t n, int64_t m, uint64_t seed, uint64_t model, int64_t *out);



/* ---- the loader ----
 *
 * How a batch gets made (a teaching summary; loader.c and queue.c hold the details):
 * the epoch is a list of `n` sample positions (the sampler's order). Position s belongs to batch
 * s / batch_size. Worker threads claim positions one at a time from a shared cursor, but never for
 * a batch more than `capacity` batches ahead of the consumer (the bounded prefetch queue), so memory
 * stays at `capacity` batches. A worker reads and decodes the file (or copies the in-memory image),
 * runs the transform pipeline with Philox stream (seed, epoch << 40 | s) and writes the float32
 * result straight into row s % batch_size of its batch. When a batch's last row is written the batch
 * is ready; the consumer takes batches strictly in order. Because every sample's randomness depends
 * only on (seed, epoch, s) and every row has one writer, batches are bitwise identical for any number
 * of workers. A worker error stops the workers; the batches before the failing sample are still
 * delivered, then the take that reaches the failing batch reports the error (naming the file). */
#include "../core/tensor.h"

typedef struct af_batch {
    af_tensor *images;  /* (B, C, H, W) float32 */
    af_tensor *labels;  /* (B,) int64 */
    af_tensor *targets; /* (B, T) float32, or NULL */
    int64_t index;      /* batch number in the epoch; -1 for a free slot */
    int64_t remaining;  /* rows not yet written */
} af_batch;

typedef struct af_batch_queue af_batch_queue; /* queue.c */

typedef struct af_loader_source {
    int64_t n;                 /* dataset size */
    const char *const *paths;  /* n file paths, or NULL for in-memory images */
    const uint8_t *images;     /* n x H x W x C uint8 when paths is NULL */
    int img_h, img_w, img_c;
    const int64_t *labels;     /* n */
    const float *targets;      /* n x T, or NULL */
    int num_targets;
    const struct af_pack *pack; /* when not NULL: pre-decoded samples borrowed from a pack (paths NULL) */
    const int64_t *boxes;      /* n x 4 face boxes (left, top, right, bottom), or NULL: sample idx is cropped to
                                * rows [top, bottom) and columns [left, right), clamped to the image, before any
                                * transform (annotated face boxes: AffectNet, ExpW) */
} af_loader_source;

#define AF_LOADER_MAX_WORKERS 256
#define AF_LOADER_MAX_PREFETCH 1024 /* batch slots in flight, each a whole batch */

/* Recycled batch image buffers (queue.c), shared by the epochs of one loader so that buffers carry
 * over from one epoch to the next. af_batch_pool_new returns the creator's reference (NULL when out
 * of memory); af_batch_pool_release drops it (the kept buffers go with the last holder). */
typedef struct af_batch_pool af_batch_pool;
af_batch_pool *af_batch_pool_new(void);
void af_batch_pool_release(af_batch_pool *p);

struct af_pipeline;
typedef struct af_loader_config {
    const struct af_pipeline *transform;      /* NULL: ToTensor only (x / 255) */
    const struct af_pipeline *augment_copies; /* run before `transform` on oversampled copies; may be NULL */
    int64_t batch_size;
    int drop_last;
    int workers;      /* threads, 1 to AF_LOADER_MAX_WORKERS */
    int prefetch;     /* batches in flight, 1 to AF_LOADER_MAX_PREFETCH */
    uint64_t seed, epoch;
    int64_t max_pixels; /* decoder limit */
    /* Position s of this order is position s * stride + offset of the whole epoch's order, whose
     * Philox stream it draws from: a rank's shard (affectfer.data.samplers deals positions out
     * round robin) then augments each sample exactly as one process would. 0/0 means 1/0. */
    int64_t position_stride, position_offset;
    af_batch_pool *buffers; /* may be NULL (a pool for this epoch alone); must outlive af_loader_start */
} af_loader_config;

typedef struct af_loader af_loader;

/* Starts the workers for one epoch over `order` (n_order dataset indices; is_copy may be NULL). The
 * source and order arrays must stay alive until af_loader_free. Probes the first sample to fix the
 * batch shape (fails naming the file if it cannot be read). */
af_status af_loader_start(const af_loader_config *cfg, const af_loader_source *src, const int64_t *order,
                          const uint8_t *is_copy, int64_t n_order, af_loader **out);
int64_t af_loader_num_batches(const af_loader *l);
/* Waits up to timeout_ms for the next batch. *got = 0: timed out (call again); *got = 1 and
 * out->images == NULL: the epoch is over; otherwise the caller owns out's tensors. A worker error is
 * returned here with its message (naming the file). */
af_status af_loader_next(af_loader *l, int timeout_ms, af_batch *out, int *got);
/* Stops the workers (they finish their current sample), joins them and frees everything. NULL is fine. */
void af_loader_free(af_loader *l);

/* queue.c: the bounded, ordered batch queue shared by the workers and the consumer. Its image
 * buffers come from `pool` (NULL: a pool of its own), recycled once the consumer drops a batch. */
af_status af_queue_new(int capacity, int64_t n_samples, int64_t batch_size, int drop_last, int C, int H, int W, int T,
                       af_batch_pool *pool, af_batch_queue **out);
int64_t af_queue_num_batches(const af_batch_queue *q);
/* A worker claims the next sample position: returns 1 with *s, *batch (its batch, buffers allocated)
 * and *row; 0 when there is no more work (epoch done or stopped), or when the batch buffers could
 * not be allocated (then *st says why and *s is the position that needed them). */
int af_queue_claim(af_batch_queue *q, int64_t *s, af_batch **batch, int64_t *row, af_status *st);
void af_queue_row_done(af_batch_queue *q, af_batch *batch);
/* Records a failure at sample position s (status and the calling thread's message; the earliest
 * position wins) and stops handing out work. The batches before the failing one are still completed
 * by the workers and delivered; af_queue_take then returns the error. */
void af_queue_fail(af_batch_queue *q, af_status st, int64_t s);
af_status af_queue_take(af_batch_queue *q, int timeout_ms, af_batch *out, int *got);
void af_queue_stop(af_batch_queue *q);
void af_queue_free(af_batch_queue *q);
/* ---- packs (pack.c): pre-decoded uint8 images in one memory-mapped file ----
 *
 * A pack holds every sample of a dataset already decoded (and optionally shrunk), so training reads
 * pixels straight from the page cache instead of decoding JPEGs. The byte layout is documented at
 * the top of pack.c and in docs/pack-format.md. Readers trust nothing: af_pack_parse checks every
 * size, offset and count against the file before any pointer is formed, so a hostile file fails
 * with AF_ERR_VALUE naming it. */
#define AF_PACK_VERSION 1u
#define AF_PACK_HEADER_SIZE 128u
#define AF_PACK_ALIGN 64u
#define AF_PACK_MAX_COUNT (1ll << 40)  /* the loader's epoch limit */
#define AF_PACK_MAX_NAMES 65536        /* class names, and target columns */
#define AF_PACK_MAX_NAME_BYTES 4096
#define AF_PACK_MAX_SIDE 65536         /* the decoder's per-side cap */

struct af_image; /* image/image.h */
typedef struct af_pack {
    const uint8_t *base; /* the whole file */
    uint64_t size;
    int64_t count;
    int num_classes, num_targets;
    uint32_t max_side;      /* the resize applied when packing, 0 = none */
    const uint8_t *strings; /* num_classes class names then num_targets target names: u32 length + UTF-8 */
    uint64_t strings_size;
    /* table columns (little-endian, possibly unaligned in caller memory: read them with the
     * af_pack_* accessors below) */
    const uint8_t *offsets, *labels, *shapes, *crcs, *targets;
    char *name;           /* the file, for messages */
    void *mapping;        /* non-NULL when af_pack_open mapped the file */
} af_pack;

/* CRC-32 (IEEE 802.3, the polynomial of zlib's crc32 and PNG): crc = af_crc32(crc, data, n), from 0. */
uint32_t af_crc32(uint32_t crc, const void *data, size_t n);
/* Validates `size` bytes at `data` as a pack and fills *out (pointers into `data`; out->mapping stays
 * NULL, out->name is a copy of `name`: free() it when done). Checks magic, version, header CRC,
 * section bounds, every sample's shape, offset and label. Does not read pixels. */
af_status af_pack_parse(const uint8_t *data, uint64_t size, const char *name, af_pack *out);
/* Recomputes every sample's pixel CRC; fails naming the file and the first bad sample. */
af_status af_pack_verify(const af_pack *p);
/* Opens `path` (a regular file), maps it read-only, parses it, optionally verifies pixel CRCs. */
af_status af_pack_open(const char *path, int verify_crc, af_pack **out);
void af_pack_close(af_pack *p); /* unmaps and frees; NULL is fine */
/* Accessors for sample i (0 <= i < count; no check). */
uint64_t af_pack_offset(const af_pack *p, int64_t i);
int64_t af_pack_label(const af_pack *p, int64_t i);
void af_pack_shape(const af_pack *p, int64_t i, int *H, int *W, int *C);
uint32_t af_pack_crc(const af_pack *p, int64_t i);
/* Name k of the strings section (classes first, then targets): pointer and byte length. */
void af_pack_name(const af_pack *p, int k, const char **s, uint32_t *len);
/* Sample i as an image that borrows the mapping (img->borrowed = 1): no copy, never written. */
void af_pack_image(const af_pack *p, int64_t i, struct af_image *img);

/* Writing: af_pack_writer_open(path, count, ...) creates `<path>.<pid>.tmp`; samples are added in
 * order in chunks (decoded, shrunk and checksummed on `workers` threads, written by the caller's
 * thread in order, so the bytes never depend on the thread count); af_pack_writer_finish writes the
 * table and header, fsyncs, and renames the file onto `path` (then fsyncs the folder): the final
 * path is either absent, the previous file, or the complete new pack. af_pack_writer_free without
 * finish removes the temporary file. */
typedef struct af_pack_writer af_pack_writer;
typedef struct af_pack_item {
    const char *path;      /* an image file to decode, or NULL: */
    const uint8_t *pixels; /* H x W x C uint8 in memory */
    int height, width, channels;
    int64_t label;
    const float *targets;  /* num_targets floats, or NULL when the pack has none */
} af_pack_item;
af_status af_pack_writer_open(const char *path, int64_t count, int num_classes, int num_targets,
                              const char *const *names, const uint32_t *name_lens, int max_side, af_pack_writer **out);
af_status af_pack_writer_add(af_pack_writer *w, const af_pack_item *items, int n, int workers, int64_t max_pixels);
af_status af_pack_writer_finish(af_pack_writer *w);
void af_pack_writer_free(af_pack_writer *w);
#endif
