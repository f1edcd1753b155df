/* The threaded loader: worker threads that read, decode, transform and write samples straight into
 * the batch buffers of the bounded queue (queue.c). The design summary is in data.h. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../image/transforms.h"
#include "data.h"

struct af_loader {
    af_loader_config cfg;
    af_loader_source src;
    const int64_t *order;
    const uint8_t *is_copy;
    int64_t n_order;
    int C, H, W; /* every sample's output shape */
    int gray;    /* af_pipeline_leading_gray of the transform: files are decoded straight to that gray image */
    af_batch_queue *queue;
    pthread_t *threads;
    int n_threads;
};

/* Names sample `idx` in messages: its path, or its position in the in-memory array. */
static const char *sample_name(const af_loader_source *src, int64_t idx, char *buf, size_t size) {
    if (src->paths) return src->paths[idx];
    if (src->pack) snprintf(buf, size, "%s, sample %lld", src->pack->name, (long long)idx);
    else snprintf(buf, size, "<array sample %lld>", (long long)idx);
    return buf;
}

/* Re-raises the calling thread's last error with the sample's name in front (unless already there). */
static af_status name_error(af_status st, const char *name) {
    const char *msg = af_error_message();
    if (strstr(msg, name)) return st;
    char copy[768];
    snprintf(copy, sizeof(copy), "%s", msg);
    return AF_FAIL(st, "%s: %s", name, copy);
}

/* Reads dataset sample idx into img (decoding a file, or copying the in-memory image). gray (1 or 3):
 * a file becomes the image the transform's leading Grayscale would make of it (0: RGB). */
static af_status read_sample(const af_loader *l, int64_t idx, int gray, af_image *img) {
    const af_loader_source *src = &l->src;
    if (src->paths) return af_image_read_file_gray(src->paths[idx], l->cfg.max_pixels, gray, img);
    if (src->pack) { /* no decode, no copy: the pipeline reads the mapping (pipeline.c copies before writing) */
        af_pack_image(src->pack, idx, img);
        return AF_OK;
    }
    AF_TRY(af_image_alloc(img, src->img_h, src->img_w, src->img_c));
    size_t nbytes = (size_t)src->img_h * src->img_w * src->img_c;
    memcpy(img->data, src->images + (size_t)idx * nbytes, nbytes);
    return AF_OK;
}

/* Sample idx, cropped to its face box when the source has boxes. The box is clamped to the image (an
 * annotated box may reach past the border, as detector boxes do); one left empty by the clamp is an
 * error, never a silent fallback to the whole image. */
static af_status load_image(const af_loader *l, int64_t idx, int gray, af_image *img) {
    AF_TRY(read_sample(l, idx, gray, img));
    if (!l->src.boxes) return AF_OK;
    const int64_t *b = l->src.boxes + 4 * idx;
    int64_t left = b[0] < 0 ? 0 : b[0], top = b[1] < 0 ? 0 : b[1];
    int64_t right = b[2] > img->width ? img->width : b[2], bottom = b[3] > img->height ? img->height : b[3];
    if (right <= left || bottom <= top)
        return AF_FAIL(AF_ERR_VALUE, "face box (left %lld, top %lld, right %lld, bottom %lld) is empty inside the %dx%d "
                       "(WxH) image", (long long)b[0], (long long)b[1], (long long)b[2], (long long)b[3], img->width,
                       img->height);
    af_image crop = {0};
    af_status st = af_img_crop(img, (int)top, (int)left, (int)(bottom - top), (int)(right - left), NULL, &crop);
    af_image_free(img);
    *img = crop;
    return st;
}

/* Whether position s reads its file straight to gray: the transform starts with an unconditional
 * Grayscale and no augment_copies pipeline runs before it (that one expects the RGB image). Only
 * files are decoded here; packed and in-memory images arrive as they are. */
static int gray_decode(const af_loader *l, int64_t s) {
    return l->gray && l->src.paths && !(l->is_copy && l->is_copy[s] && l->cfg.augment_copies) ? l->gray : 0;
}

/* Runs the augmentations of position s on img; when `out` is not NULL writes the float32 result
 * there (after checking it has the batch's shape). (C, H, W) come back for the shape probe. gray:
 * img was decoded to gray (gray_decode), standing in for the transform's first stage. */
static af_status transform_sample(const af_loader *l, int64_t s, int gray, af_image *img, float *out, int *C, int *H,
                                  int *W) {
    af_rng rng = af_rng_make(l->cfg.seed, AF_STREAM_SAMPLE(l->cfg.epoch, s * l->cfg.position_stride + l->cfg.position_offset), 0);
    if (l->is_copy && l->is_copy[s] && l->cfg.augment_copies) AF_TRY(af_pipeline_run(l->cfg.augment_copies, img, &rng, NULL));
    const af_pipeline *p = l->cfg.transform;
    if (p && af_pipeline_has_to_tensor(p)) {
        AF_TRY(af_pipeline_output_shape(p, img->height, img->width, C, H, W));
        if (out && (*C != l->C || *H != l->H || *W != l->W))
            return AF_FAIL(AF_ERR_VALUE, "the transform gives a (%d, %d, %d) image but the batch holds (%d, %d, %d): "
                           "add a Resize/crop to a fixed size", *C, *H, *W, l->C, l->H, l->W);
        return af_pipeline_run_from(p, gray ? 1 : 0, img, &rng, out);
    }
    if (p) AF_TRY(af_pipeline_run_from(p, gray ? 1 : 0, img, &rng, NULL));
    *C = img->channels, *H = img->height, *W = img->width;
    if (out) {
        if (*C != l->C || *H != l->H || *W != l->W)
            return AF_FAIL(AF_ERR_VALUE, "image is %dx%dx%d (HxWxC) but the batch holds %dx%dx%d: images of different "
                           "sizes need a transform with a Resize/crop to a fixed size", *H, *W, *C, l->H, l->W, l->C);
        af_img_to_tensor(img, out);
    }
    return AF_OK;
}

static af_status process(const af_loader *l, int64_t s, af_batch *b, int64_t row) {
    int64_t idx = l->order[s];
    char buf[512];
    const char *name = sample_name(&l->src, idx, buf, sizeof(buf));
    af_image img = {0};
    int C, H, W;
    float *out = (float *)af_tensor_data(b->images) + (size_t)row * l->C * l->H * l->W;
    int gray = gray_decode(l, s);
    af_status st = load_image(l, idx, gray, &img);
    if (st == AF_OK) st = transform_sample(l, s, gray, &img, out, &C, &H, &W);
    af_image_free(&img);
    if (st != AF_OK) return name_error(st, name);
    ((int64_t *)af_tensor_data(b->labels))[row] = l->src.labels[idx];
    if (b->targets) {
        int T = l->src.num_targets;
        memcpy((float *)af_tensor_data(b->targets) + (size_t)row * T, l->src.targets + (size_t)idx * T, (size_t)T * sizeof(float));
    }
    return AF_OK;
}

static void *worker_main(void *arg) {
    af_loader *l = arg;
    int64_t s, row;
    af_batch *b;
    af_status st;
    while (af_queue_claim(l->queue, &s, &b, &row, &st)) {
        st = process(l, s, b, row);
        if (st != AF_OK) break;
        af_queue_row_done(l->queue, b);
    }
    if (st != AF_OK) af_queue_fail(l->queue, st, s); /* s: the failing position (claim sets it too) */
    return NULL;
}

af_status af_loader_start(const af_loader_config *cfg, const af_loader_source *src, const int64_t *order,
                          const uint8_t *is_copy, int64_t n_order, af_loader **out) {
    af_status st = AF_OK;
    *out = NULL;
    if (cfg->workers < 1 || cfg->workers > AF_LOADER_MAX_WORKERS)
        return AF_FAIL(AF_ERR_VALUE, "loader: 'workers' must be in [1, %d], got %d", AF_LOADER_MAX_WORKERS, cfg->workers);
    if (cfg->prefetch < 1 || cfg->prefetch > AF_LOADER_MAX_PREFETCH)
        return AF_FAIL(AF_ERR_VALUE, "loader: 'prefetch' must be in [1, %d], got %d", AF_LOADER_MAX_PREFETCH, cfg->prefetch);
    if (cfg->batch_size < 1) return AF_FAIL(AF_ERR_VALUE, "loader: 'batch_size' must be >= 1, got %lld", (long long)cfg->batch_size);
    if (n_order < 0 || n_order >= (1ll << 40)) return AF_FAIL(AF_ERR_VALUE, "loader: an epoch holds 0 to 2^40 samples, got %lld", (long long)n_order);
    if (cfg->epoch >= (1ull << 23)) return AF_FAIL(AF_ERR_VALUE, "loader: epoch must be < 2^23, got %llu", (unsigned long long)cfg->epoch);
    af_loader_config c = *cfg;
    if (c.position_stride == 0) c.position_stride = 1;
    if (c.position_stride < 1 || c.position_offset < 0 || c.position_offset >= c.position_stride)
        return AF_FAIL(AF_ERR_VALUE, "loader: position offset %lld must be in [0, stride %lld)", (long long)c.position_offset,
                       (long long)c.position_stride);
    if (n_order > 0 && (n_order - 1) > ((1ll << 40) - 1 - c.position_offset) / c.position_stride)
        return AF_FAIL(AF_ERR_VALUE, "loader: %lld samples at stride %lld pass 2^40 positions", (long long)n_order,
                       (long long)c.position_stride);
    for (int64_t s = 0; s < n_order; s++)
        if (order[s] < 0 || order[s] >= src->n)
            return AF_FAIL(AF_ERR_INDEX, "loader: the sampler gave index %lld for a dataset of %lld samples", (long long)order[s], (long long)src->n);
    af_loader *l = calloc(1, sizeof(*l));
    if (!l) return AF_FAIL(AF_ERR_OOM, "loader: out of memory");
    l->cfg = c;
    l->src = *src;
    l->order = order;
    l->is_copy = is_copy;
    l->n_order = n_order;
    l->gray = af_pipeline_leading_gray(c.transform);
    if (n_order > 0) { /* probe position 0 for the batch shape (its randomness is replayed later) */
        char buf[512];
        af_image img = {0};
        int gray = gray_decode(l, 0);
        st = load_image(l, order[0], gray, &img);
        if (st == AF_OK) st = transform_sample(l, 0, gray, &img, NULL, &l->C, &l->H, &l->W);
        af_image_free(&img);
        if (st != AF_OK) {
            st = name_error(st, sample_name(src, order[0], buf, sizeof(buf)));
            goto fail;
        }
    }
    AF_CHECK(af_queue_new(cfg->prefetch, n_order, cfg->batch_size, cfg->drop_last, l->C, l->H, l->W,
                          src->targets ? src->num_targets : 0, cfg->buffers, &l->queue));
    l->threads = calloc((size_t)cfg->workers, sizeof(pthread_t));
    if (!l->threads) AF_CHECK_FAIL(AF_ERR_OOM, "loader: out of memory");
    for (int i = 0; i < cfg->workers; i++) {
        if (pthread_create(&l->threads[i], NULL, worker_main, l) != 0) AF_CHECK_FAIL(AF_ERR_RUNTIME, "loader: could not start worker thread %d", i);
        l->n_threads++;
    }
    *out = l;
    return AF_OK;
fail:
    af_loader_free(l);
    return st;
}

int64_t af_loader_num_batches(const af_loader *l) { return af_queue_num_batches(l->queue); }

af_status af_loader_next(af_loader *l, int timeout_ms, af_batch *out, int *got) {
    return af_queue_take(l->queue, timeout_ms, out, got);
}

void af_loader_free(af_loader *l) {
    if (!l) return;
    if (l->queue) af_queue_stop(l->queue);
    for (int i = 0; i < l->n_threads; i++) pthread_join(l->threads[i], NULL);
    af_queue_free(l->queue);
    free(l->threads);
    free(l);
}
