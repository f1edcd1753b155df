/* Resize (uint8 HWC): bilinear with and without antialias, torchvision's tensor path
 * (_functional_tensor.resize -> ATen upsample_bilinear2d / _upsample_bilinear2d_aa).
 *
 * Single-threaded on purpose, like every image op: the loader runs one sample per thread. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/cpu.h"
#include "transforms.h"

/* One axis of ATen's antialiased bilinear (upsample_bilinear2d_aa, "HelperInterpLinear"): for each
 * output index the taps [xmin, xmin + n) and their normalised float32 weights. For upscaling this
 * is ordinary bilinear, with weights computed the antialias kernel's way (torch does the same when
 * antialias=True). Shapes: xmin, nw (out), weights (out, max_taps). */
typedef struct {
    int out, max_taps;
    int *xmin, *ntaps;
    float *w;
} af_taps;

static void taps_free(af_taps *t) {
    free(t->xmin);
    free(t->ntaps);
    free(t->w);
}

static af_status taps_aa(int in, int out, af_taps *t) {
    float scale = (float)in / (float)out; /* area_pixel_compute_scale: float32 in / out */
    float support = scale >= 1.0f ? 1.0f * scale : 1.0f; /* interp_size / 2 = 1 for bilinear */
    float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
    t->out = out;
    t->max_taps = (int)ceilf(support) * 2 + 1;
    t->xmin = malloc(sizeof(int) * out);
    t->ntaps = malloc(sizeof(int) * out);
    t->w = malloc(sizeof(float) * (size_t)out * t->max_taps);
    if (!t->xmin || !t->ntaps || !t->w) {
        taps_free(t);
        return AF_FAIL(AF_ERR_OOM, "resize: out of memory");
    }
    for (int i = 0; i < out; i++) {
        float center = scale * ((float)i + 0.5f);
        int64_t xmin = (int64_t)(center - support + 0.5f);
        if (xmin < 0) xmin = 0;
        int64_t xmax = (int64_t)(center + support + 0.5f);
        if (xmax > in) xmax = in;
        int n = (int)(xmax - xmin);
        if (n > t->max_taps) n = t->max_taps;
        float *w = t->w + (size_t)i * t->max_taps, total = 0.0f;
        for (int j = 0; j < n; j++) {
            float x = ((float)(j + xmin) - center + 0.5f) * invscale;
            float v = 1.0f - fabsf(x);
            w[j] = v > 0.0f ? v : 0.0f;
            total += w[j];
        }
        for (int j = 0; j < n; j++) w[j] = total != 0.0f ? w[j] / total : 0.0f;
        t->xmin[i] = (int)xmin;
        t->ntaps[i] = n;
    }
    return AF_OK;
}

static inline uint8_t round_u8(float v) {
    v = nearbyintf(v); /* torch.round: half to even */
    return v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
}

/* Both resize paths are separable: a horizontal pass turns one source row into a float32 row of OW*C
 * values, a vertical pass combines a few such rows into one output row. Source rows are resampled
 * horizontally once each, into a ring of `nslots` rows (the vertical window never spans more), not
 * once per output row nor into a whole (H, OW, C) intermediate. Each output value is computed with
 * the same float32 operations in the same order as ATen, so the result does not depend on this
 * organisation. */
typedef struct {
    float *rows; /* nslots * OW * C */
    int *tag;    /* source row held by each slot, -1 when empty */
    int nslots;
} row_ring;

static af_status ring_init(row_ring *r, int nslots, size_t rowlen) {
    r->nslots = nslots;
    r->rows = malloc(sizeof(float) * (size_t)nslots * rowlen);
    r->tag = malloc(sizeof(int) * (size_t)nslots);
    if (!r->rows || !r->tag) {
        free(r->rows);
        free(r->tag);
        return AF_FAIL(AF_ERR_OOM, "resize: out of memory");
    }
    for (int k = 0; k < nslots; k++) r->tag[k] = -1;
    return AF_OK;
}

/* Antialias horizontal pass of one row: row (W, C) uint8 -> out (OW, C) float32. */
AF_CPU_DISPATCH
static void hpass_aa(const uint8_t *row, int W, int C, const af_taps *t, float *out) {
    int OW = t->out;
    if (OW == W) { /* ATen skips an axis whose size does not change */
        for (int k = 0; k < W * C; k++) out[k] = row[k];
        return;
    }
    if (C == 1) {
        for (int x = 0; x < OW; x++) {
            const float *w = t->w + (size_t)x * t->max_taps;
            const uint8_t *p = row + t->xmin[x];
            float acc = (float)p[0] * w[0];
            for (int j = 1; j < t->ntaps[x]; j++) acc += (float)p[j] * w[j];
            out[x] = acc;
        }
    } else if (C == 3) {
        for (int x = 0; x < OW; x++) {
            const float *w = t->w + (size_t)x * t->max_taps;
            const uint8_t *p = row + 3 * t->xmin[x];
            float a0 = (float)p[0] * w[0], a1 = (float)p[1] * w[0], a2 = (float)p[2] * w[0];
            for (int j = 1; j < t->ntaps[x]; j++) {
                a0 += (float)p[3 * j] * w[j];
                a1 += (float)p[3 * j + 1] * w[j];
                a2 += (float)p[3 * j + 2] * w[j];
            }
            out[3 * x] = a0, out[3 * x + 1] = a1, out[3 * x + 2] = a2;
        }
    } else {
        for (int x = 0; x < OW; x++) {
            const float *w = t->w + (size_t)x * t->max_taps;
            const uint8_t *p = row + (size_t)C * t->xmin[x];
            for (int c = 0; c < C; c++) {
                float acc = (float)p[c] * w[0];
                for (int j = 1; j < t->ntaps[x]; j++) acc += (float)p[j * C + c] * w[j];
                out[x * C + c] = acc;
            }
        }
    }
}

static const float *ring_row_aa(row_ring *r, const af_image *src, const af_taps *th, int y) {
    size_t len = (size_t)th->out * src->channels;
    int slot = y % r->nslots;
    float *row = r->rows + (size_t)slot * len;
    if (r->tag[slot] != y) {
        hpass_aa(src->data + (size_t)y * src->width * src->channels, src->width, src->channels, th, row);
        r->tag[slot] = y;
    }
    return row;
}

/* Antialiased path: horizontal pass then vertical pass (ATen resamples the contiguous width dimension
 * first and skips a dimension whose size does not change). */
AF_CPU_DISPATCH
static af_status resize_aa(const af_image *src, af_image *dst) {
    int H = src->height, C = src->channels, OH = dst->height, OW = dst->width;
    size_t len = (size_t)OW * C;
    af_taps th = {0}, tv = {0};
    row_ring ring = {0};
    float *acc = NULL;
    af_status st = AF_OK;
    AF_CHECK(taps_aa(src->width, OW, &th));
    AF_CHECK(taps_aa(H, OH, &tv));
    AF_CHECK(ring_init(&ring, tv.max_taps, len));
    acc = malloc(sizeof(float) * len);
    if (!acc) AF_CHECK_FAIL(AF_ERR_OOM, "resize: out of memory");
    for (int y = 0; y < OH; y++) {
        uint8_t *orow = dst->data + (size_t)y * len;
        if (OH == H) {
            const float *r0 = ring_row_aa(&ring, src, &th, y);
            for (size_t x = 0; x < len; x++) orow[x] = round_u8(r0[x]);
            continue;
        }
        /* tap-major so the x loop vectorises; each acc[x] still sums its taps in order 0, 1, ... */
        const float *w = tv.w + (size_t)y * tv.max_taps;
        const float *r0 = ring_row_aa(&ring, src, &th, tv.xmin[y]);
        for (size_t x = 0; x < len; x++) acc[x] = r0[x] * w[0];
        for (int j = 1; j < tv.ntaps[y]; j++) {
            const float *rj = ring_row_aa(&ring, src, &th, tv.xmin[y] + j);
            float wj = w[j];
            for (size_t x = 0; x < len; x++) acc[x] += rj[x] * wj;
        }
        for (size_t x = 0; x < len; x++) orow[x] = round_u8(acc[x]);
    }
fail:
    free(acc);
    free(ring.rows);
    free(ring.tag);
    taps_free(&th);
    taps_free(&tv);
    return st;
}

/* Plain bilinear (upsample_bilinear2d, align_corners=False): src = scale*(d + 0.5) - 0.5 clamped at
 * 0, 2x2 taps, out = h0*(w0*a + w1*b) + h1*(w0*c + w1*d) in float32. */
static void bilinear_index(int in, int out, int d, int *i0, int *i1, float *l0, float *l1) {
    float scale = (float)in / (float)out;
    float s = scale * ((float)d + 0.5f) - 0.5f;
    if (s < 0.0f) s = 0.0f;
    int i = (int)s;
    float lambda = s - (float)i;
    if (lambda < 0.0f) lambda = 0.0f;
    if (lambda > 1.0f) lambda = 1.0f;
    *i0 = i;
    *i1 = i + (i < in - 1 ? 1 : 0);
    *l1 = lambda;
    *l0 = 1.0f - lambda;
}

/* The horizontal half of plain bilinear for one row: out[x] = w0*a + w1*b, ATen's inner sum. */
AF_CPU_DISPATCH
static const float *ring_row_plain(row_ring *r, const af_image *src, const int *x0, const int *x1, const float *l0,
                                   const float *l1, int OW, int y) {
    int C = src->channels;
    int slot = y % r->nslots;
    float *out = r->rows + (size_t)slot * OW * C;
    if (r->tag[slot] == y) return out;
    const uint8_t *row = src->data + (size_t)y * src->width * C;
    if (C == 1) {
        for (int x = 0; x < OW; x++) out[x] = l0[x] * (float)row[x0[x]] + l1[x] * (float)row[x1[x]];
    } else {
        for (int x = 0; x < OW; x++)
            for (int c = 0; c < C; c++)
                out[x * C + c] = l0[x] * (float)row[x0[x] * C + c] + l1[x] * (float)row[x1[x] * C + c];
    }
    r->tag[slot] = y;
    return out;
}

AF_CPU_DISPATCH
static af_status resize_plain(const af_image *src, af_image *dst) {
    int H = src->height, W = src->width, C = src->channels, OH = dst->height, OW = dst->width;
    size_t len = (size_t)OW * C;
    row_ring ring = {0};
    af_status st = AF_OK;
    int *x0 = malloc(sizeof(int) * 2 * (size_t)OW);
    float *l0 = malloc(sizeof(float) * 2 * (size_t)OW);
    if (!x0 || !l0) AF_CHECK_FAIL(AF_ERR_OOM, "resize: out of memory");
    int *x1 = x0 + OW;
    float *l1 = l0 + OW;
    for (int x = 0; x < OW; x++) bilinear_index(W, OW, x, &x0[x], &x1[x], &l0[x], &l1[x]);
    AF_CHECK(ring_init(&ring, 2, len)); /* rows y0 and y0 + 1 never share a slot */
    for (int y = 0; y < OH; y++) {
        int y0, y1;
        float h0, h1;
        bilinear_index(H, OH, y, &y0, &y1, &h0, &h1);
        const float *top = ring_row_plain(&ring, src, x0, x1, l0, l1, OW, y0);
        const float *bot = ring_row_plain(&ring, src, x0, x1, l0, l1, OW, y1);
        uint8_t *orow = dst->data + (size_t)y * len;
        for (size_t x = 0; x < len; x++) orow[x] = round_u8(h0 * top[x] + h1 * bot[x]);
    }
fail:
    free(x0);
    free(l0);
    free(ring.rows);
    free(ring.tag);
    return st;
}

af_status af_img_resize(const af_image *src, int oh, int ow, int antialias, af_image *dst) {
    if (oh < 1 || ow < 1) return AF_FAIL(AF_ERR_VALUE, "resize: output size must be positive, got %dx%d", oh, ow);
    if (src->height < 1 || src->width < 1) return AF_FAIL(AF_ERR_VALUE, "resize: the input image is empty");
    AF_TRY(af_image_alloc(dst, oh, ow, src->channels));
    af_status st = AF_OK;
    st = antialias ? resize_aa(src, dst) : resize_plain(src, dst);
    if (st != AF_OK) af_image_free(dst);
    return st;
}

void af_resize_output_size(int h, int w, int size, int max_size, int *oh, int *ow) {
    /* torchvision _compute_resized_output_size for a single int. Callers refuse empty images; an
     * empty one keeps its size here rather than dividing by zero. */
    if (h < 1 || w < 1) {
        *oh = h;
        *ow = w;
        return;
    }
    int shorter = h <= w ? h : w, longer = h <= w ? w : h;
    int new_short = size, new_long = (int)((int64_t)size * longer / shorter);
    if (max_size > 0 && new_long > max_size) {
        new_short = (int)((int64_t)max_size * new_short / new_long);
        new_long = max_size;
    }
    if (w <= h) {
        *ow = new_short;
        *oh = new_long;
    } else {
        *oh = new_short;
        *ow = new_long;
    }
}
