/* Resize (uint8 HWC): bilinear with and without antialias, torchvision's tensor path
 * (_functional_tensor.resize -> ATen upsample_bilinear2d / _upsample_bilinear2d_aa), in fixed point.
 *
 * Which source pixels each output reads is ATen's, computed with ATen's float32 index arithmetic.
 * The weights and sums are integers instead of ATen's float32 (the Pillow-SIMD / OpenCV approach),
 * so the result is within one level of torchvision's instead of bit-identical:
 *   - each axis's weights are rounded to multiples of 2^-14 so that they sum to exactly 2^14
 *     (cumulative rounding of the normalised weights: every weight stays within 2^-14 of its real
 *     value and none goes negative, whatever the number of taps);
 *   - the horizontal pass sums uint8 x weight in int32 and keeps 7 fraction bits (int16 rows,
 *     rounded half up);
 *   - the vertical pass sums those rows x weight in int32 and rounds half to even to uint8.
 * The total error against the exact real-valued result stays below 0.015 of a level on random
 * images at ordinary scales, 0.04 with hundreds of taps (tests/image/test_geometry.py pins both;
 * float32 ATen's is below 0.001). So an output differs from torchvision's only where the exact
 * value lies that close to a .5 tie, or on an exact tie, where torchvision's float32 rounding
 * errors pick a side at random: with antialias (torchvision's default) on under 0.5% of pixels of
 * random images; without it at a non-dyadic scale on up to 5% (50x70 to 20x30: 4%);
 * never by more than 1 (tests/image/test_torchvision.py bounds both). Integer sums also make the
 * result independent of how the loops are vectorised: every instruction-set clone gives the same
 * bytes by construction.
 *
 * Single-threaded on purpose, like every image op: the loader runs one sample per thread. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/cpu.h"
#include "transforms.h"

#define RS_WBITS 14 /* weights: multiples of 2^-14, summing to 2^14 */
#define RS_MBITS 7  /* fraction bits of the horizontally resampled rows */
#define RS_VSHIFT (2 * RS_WBITS - RS_MBITS)

/* One axis: for each output index, k taps starting at xmin with int16 weights summing to 2^14.
 * k is the widest window of the axis; narrower ones are padded with zero weights (and moved left at
 * the far border so the window stays inside the image), so every output runs the same loop. */
typedef struct {
    int out, k, stride;
    int *xmin;  /* out */
    int16_t *w; /* out * stride */
} rs_taps;

static void taps_free(rs_taps *t) {
    free(t->xmin);
    free(t->w);
}

/* The float32 taps of output i, as ATen computes them: *xmin and n un-normalised weights in fw.
 * antialias: upsample_bilinear2d_aa's HelperInterpLinear (triangle filter over the scaled support;
 * for upscaling it is ordinary bilinear; at most cap taps, as ATen's max_taps). Otherwise upsample_bilinear2d (align_corners=False):
 * src = scale * (i + 0.5) - 0.5 clamped at 0, two taps. */
static int taps_float(int in, int out, int antialias, int cap, int i, int *xmin, float *fw) {
    float scale = (float)in / (float)out; /* area_pixel_compute_scale: float32 in / out */
    if (!antialias) {
        float s = scale * ((float)i + 0.5f) - 0.5f;
        if (s < 0.0f) s = 0.0f;
        int i0 = (int)s;
        float lambda = s - (float)i0;
        if (lambda < 0.0f) lambda = 0.0f;
        if (lambda > 1.0f) lambda = 1.0f;
        *xmin = i0;
        fw[0] = 1.0f - lambda;
        if (i0 >= in - 1) return 1; /* the second tap is the same pixel: all the weight on it */
        fw[1] = lambda;
        return 2;
    }
    float support = scale >= 1.0f ? 1.0f * scale : 1.0f; /* interp_size / 2 = 1 for bilinear */
    float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
    float center = scale * ((float)i + 0.5f);
    int64_t lo = (int64_t)(center - support + 0.5f), hi = (int64_t)(center + support + 0.5f);
    if (lo < 0) lo = 0;
    if (hi > in) hi = in;
    int n = (int)(hi - lo);
    if (n > cap) n = cap;
    for (int j = 0; j < n; j++) {
        float x = ((float)(j + lo) - center + 0.5f) * invscale;
        float v = 1.0f - fabsf(x);
        fw[j] = v > 0.0f ? v : 0.0f;
    }
    *xmin = (int)lo;
    return n;
}

static int taps_cap(int in, int out, int antialias) {
    float scale = (float)in / (float)out;
    return antialias ? (int)ceilf(scale >= 1.0f ? scale : 1.0f) * 2 + 1 : 2;
}

static af_status taps_make(int in, int out, int antialias, rs_taps *t) {
    int cap = taps_cap(in, out, antialias);
    if (cap > in) cap = in; /* a window never holds more than the whole axis */
    t->out = out;
    t->stride = cap;
    t->k = 1;
    t->xmin = malloc(sizeof(int) * (size_t)out);
    t->w = calloc((size_t)out * cap, sizeof(int16_t));
    float *fw = malloc(sizeof(float) * (size_t)(cap + 1));
    int *n = malloc(sizeof(int) * (size_t)out);
    if (!t->xmin || !t->w || !fw || !n) {
        free(fw);
        free(n);
        taps_free(t);
        return AF_FAIL(AF_ERR_OOM, "resize: out of memory");
    }
    for (int i = 0; i < out; i++) {
        int lo, m = taps_float(in, out, antialias, cap, i, &lo, fw);
        double total = 0.0;
        for (int j = 0; j < m; j++) total += fw[j];
        int16_t *w = t->w + (size_t)i * cap;
        if (m < 1 || !(total > 0.0)) { /* no weight at all: cannot happen for valid sizes; take the nearest pixel */
            m = 1;
            w[0] = 1 << RS_WBITS;
        } else {
            /* cumulative rounding: w[j] = R(S_j) - R(S_{j-1}) with S_j the normalised partial sums, so the
             * weights sum to exactly 2^14, each within one step of its real value, none negative */
            double cum = 0.0;
            int64_t prev = 0;
            for (int j = 0; j < m; j++) {
                cum += fw[j];
                int64_t r = j == m - 1 ? (1 << RS_WBITS) : (int64_t)floor(cum / total * (double)(1 << RS_WBITS) + 0.5);
                w[j] = (int16_t)(r - prev);
                prev = r;
            }
        }
        t->xmin[i] = lo;
        n[i] = m;
        if (m > t->k) t->k = m;
    }
    /* pad every window to k taps, keeping it inside [0, in) */
    for (int i = 0; i < out; i++) {
        int shift = t->xmin[i] + t->k - in;
        if (shift <= 0) continue;
        int16_t *w = t->w + (size_t)i * cap;
        memmove(w + shift, w, sizeof(int16_t) * (size_t)n[i]);
        memset(w, 0, sizeof(int16_t) * (size_t)shift);
        t->xmin[i] -= shift;
    }
    free(fw);
    free(n);
    return AF_OK;
}

/* ---- horizontal pass: one uint8 row (W, C) -> int16 row (OW, C) with RS_MBITS fraction bits ---- */

typedef int32_t rs_v4 __attribute__((vector_size(16)));
typedef int16_t rs_h4 __attribute__((vector_size(8)));

#define RS_HROUND (1 << (RS_MBITS - 1))

/* Three channels with a 4-lane integer vector per output pixel: the four values at a tap (the pixel
 * and the next one's first channel, whose lane is discarded) times the tap's weight, two output
 * pixels per 8-lane vector (one multiply, shift and narrowing for both). `wide` is the row widened
 * to int32 with one element of padding, so the last pixel's 4th lane stays inside it. GCC lowers
 * the vector types to AVX/SSE on x86 and to scalar code where there is no SIMD, with the same
 * result. */
typedef int32_t rs_v8 __attribute__((vector_size(32)));
typedef int16_t rs_h8 __attribute__((vector_size(16)));

/* Pixel a's four lanes, then pixel b's; and the store of a pair's two pixels side by side (the last
 * two lanes land on the next pair, rewritten next, or the row's padding). __builtin_shufflevector
 * keeps both in registers; GCC before 12 lacks it, and gets the same values through memory. */
#if defined(__clang__) || __GNUC__ >= 12
#define RS_CONCAT(a, b) __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7)
static inline void rs_store_pair(int16_t *out, rs_h8 h) {
    h = __builtin_shufflevector(h, h, 0, 1, 2, 4, 5, 6, 7, 7);
    memcpy(out, &h, sizeof(h));
}
#else
#define RS_CONCAT(a, b) ((union { rs_v8 v; rs_v4 half[2]; }){.half = {(a), (b)}}.v)
static inline void rs_store_pair(int16_t *out, rs_h8 h) {
    union { rs_h8 v; rs_h4 half[2]; } u = {.v = h};
    memcpy(out, &u.half[0], sizeof(rs_h4)); /* its 4th lane is rewritten by the next store */
    memcpy(out + 3, &u.half[1], sizeof(rs_h4));
}
#endif

/* The weights of output pixels 2i and 2i + 1 at tap j, each repeated over 4 lanes: w8[i * k + j]. */
static rs_v8 *pair_weights(const rs_taps *t) {
    int pairs = t->out / 2, k = t->k;
    rs_v8 *w8 = aligned_alloc(32, sizeof(rs_v8) * (size_t)(pairs * k + 1));
    if (!w8) return NULL;
    for (int i = 0; i < pairs; i++)
        for (int j = 0; j < k; j++) {
            int32_t a = t->w[(size_t)2 * i * t->stride + j], b = t->w[(size_t)(2 * i + 1) * t->stride + j];
            w8[i * k + j] = (rs_v8){a, a, a, a, b, b, b, b};
        }
    return w8;
}

static inline __attribute__((always_inline)) void hpass3_k(const int32_t *wide, const rs_taps *t, const rs_v8 *w8,
                                                           int16_t *out, const int k) {
    int x = 0;
    for (; x + 1 < t->out; x += 2, w8 += k) {
        const int32_t *pa = wide + 3 * (size_t)t->xmin[x], *pb = wide + 3 * (size_t)t->xmin[x + 1];
        rs_v8 acc = {RS_HROUND, RS_HROUND, RS_HROUND, RS_HROUND, RS_HROUND, RS_HROUND, RS_HROUND, RS_HROUND};
        for (int j = 0; j < k; j++) {
            rs_v4 va, vb;
            memcpy(&va, pa + 3 * j, sizeof(va));
            memcpy(&vb, pb + 3 * j, sizeof(vb));
            acc += RS_CONCAT(va, vb) * w8[j];
        }
        rs_store_pair(out + 3 * (size_t)x, __builtin_convertvector(acc >> RS_MBITS, rs_h8));
    }
    for (; x < t->out; x++) {
        const int32_t *p = wide + 3 * (size_t)t->xmin[x];
        const int16_t *w = t->w + (size_t)x * t->stride;
        rs_v4 acc = {RS_HROUND, RS_HROUND, RS_HROUND, RS_HROUND};
        for (int j = 0; j < k; j++) {
            rs_v4 v;
            memcpy(&v, p + 3 * j, sizeof(v));
            acc += v * (int32_t)w[j];
        }
        rs_h4 h = __builtin_convertvector(acc >> RS_MBITS, rs_h4);
        memcpy(out + 3 * (size_t)x, &h, sizeof(h)); /* the 4th lane lands on the row's padding */
    }
}

static inline __attribute__((always_inline)) void hpass1_k(const uint8_t *row, const rs_taps *t, int16_t *out,
                                                           const int k) {
    for (int x = 0; x < t->out; x++) {
        const uint8_t *p = row + t->xmin[x];
        const int16_t *w = t->w + (size_t)x * t->stride;
        int32_t acc = RS_HROUND;
        for (int j = 0; j < k; j++) acc += (int32_t)p[j] * w[j];
        out[x] = (int16_t)(acc >> RS_MBITS);
    }
}

AF_CPU_DISPATCH
static void hpass(const uint8_t *row, int W, int C, const rs_taps *t, const rs_v8 *w8, int identity, int32_t *wide,
                  int16_t *out) {
    if (identity) { /* ATen skips an axis whose size does not change; the identity taps give row << 7 too */
        for (size_t k = 0; k < (size_t)W * C; k++) out[k] = (int16_t)(row[k] << RS_MBITS);
        return;
    }
    int k = t->k;
    if (C == 3) {
        for (size_t i = 0; i < (size_t)W * 3; i++) wide[i] = row[i];
        wide[(size_t)W * 3] = 0;
        switch (k) { /* constant tap counts unroll */
        case 1: hpass3_k(wide, t, w8, out, 1); return;
        case 2: hpass3_k(wide, t, w8, out, 2); return;
        case 3: hpass3_k(wide, t, w8, out, 3); return;
        case 4: hpass3_k(wide, t, w8, out, 4); return;
        case 5: hpass3_k(wide, t, w8, out, 5); return;
        default: hpass3_k(wide, t, w8, out, k); return;
        }
    }
    if (C == 1) {
        switch (k) {
        case 1: hpass1_k(row, t, out, 1); return;
        case 2: hpass1_k(row, t, out, 2); return;
        case 3: hpass1_k(row, t, out, 3); return;
        case 4: hpass1_k(row, t, out, 4); return;
        case 5: hpass1_k(row, t, out, 5); return;
        default: hpass1_k(row, t, out, k); return;
        }
    }
    for (int x = 0; x < t->out; x++) {
        const uint8_t *p = row + (size_t)C * t->xmin[x];
        const int16_t *w = t->w + (size_t)x * t->stride;
        for (int c = 0; c < C; c++) {
            int32_t acc = RS_HROUND;
            for (int j = 0; j < k; j++) acc += (int32_t)p[j * C + c] * w[j];
            out[(size_t)x * C + c] = (int16_t)(acc >> RS_MBITS);
        }
    }
}

/* ---- vertical pass: k int16 rows -> one uint8 row ---- */

/* The rows are at most 255 << 7 and the weights sum to 2^14, so a sum stays below 2^29 and the
 * result at most 255: no clamping needed. Rounding is half to even like torch.round: an exact tie
 * (common when the scale is a power of two and the weights are dyadic) goes the way torchvision's
 * float32 result goes. */
static inline int32_t round_even(int32_t v) {
    return (v + (1 << (RS_VSHIFT - 1)) - 1 + ((v >> RS_VSHIFT) & 1)) >> RS_VSHIFT;
}

AF_CPU_DISPATCH
static void vpass(const int16_t *const *rows, const int16_t *w, int k, size_t len, int32_t *acc, uint8_t *out) {
    int used[64], nused = 0; /* taps with a nonzero weight (padding and identity axes have zeros) */
    for (int j = 0; j < k && nused < 64; j++)
        if (w[j] != 0) used[nused++] = j;
    if (nused == 1) {
        const int16_t *r0 = rows[used[0]];
        int32_t w0 = w[used[0]];
        for (size_t x = 0; x < len; x++) out[x] = (uint8_t)round_even(r0[x] * w0);
        return;
    }
    if (nused == 2) { /* every bilinear upscale */
        const int16_t *r0 = rows[used[0]], *r1 = rows[used[1]];
        int32_t w0 = w[used[0]], w1 = w[used[1]];
        for (size_t x = 0; x < len; x++) out[x] = (uint8_t)round_even(r0[x] * w0 + r1[x] * w1);
        return;
    }
    if (nused == 3) {
        const int16_t *r0 = rows[used[0]], *r1 = rows[used[1]], *r2 = rows[used[2]];
        int32_t w0 = w[used[0]], w1 = w[used[1]], w2 = w[used[2]];
        for (size_t x = 0; x < len; x++)
            out[x] = (uint8_t)round_even(r0[x] * w0 + r1[x] * w1 + r2[x] * w2);
        return;
    }
    for (size_t x = 0; x < len; x++) acc[x] = 0;
    for (int j = 0; j < k; j++) {
        int32_t wj = w[j];
        if (wj == 0) continue;
        const int16_t *r = rows[j];
        for (size_t x = 0; x < len; x++) acc[x] += r[x] * wj;
    }
    for (size_t x = 0; x < len; x++) out[x] = (uint8_t)round_even(acc[x]);
}

/* Source rows are resampled horizontally once each, into a ring of k rows (the vertical window
 * never spans more, and windows only move down), not once per output row nor into a whole
 * (H, OW, C) intermediate. */
static af_status resize_fixed(const af_image *src, int antialias, af_image *dst) {
    int H = src->height, W = src->width, C = src->channels, OH = dst->height, OW = dst->width;
    size_t len = (size_t)OW * C, slot_len = len + 8; /* + the spare lanes of hpass3_k's last stores */
    rs_taps th = {0}, tv = {0};
    int16_t *ring = NULL;
    int32_t *acc = NULL, *wide = NULL;
    rs_v8 *w8 = NULL;
    int *tag = NULL;
    const int16_t **rows = NULL;
    af_status st = AF_OK;
    AF_CHECK(taps_make(W, OW, antialias, &th));
    AF_CHECK(taps_make(H, OH, antialias, &tv));
    int k = tv.k;
    ring = malloc(sizeof(int16_t) * slot_len * (size_t)k);
    acc = malloc(sizeof(int32_t) * len);
    tag = malloc(sizeof(int) * (size_t)k);
    rows = malloc(sizeof(*rows) * (size_t)k);
    wide = malloc(sizeof(int32_t) * ((size_t)W * C + 1));
    if (C == 3) w8 = pair_weights(&th);
    if (!ring || !acc || !tag || !rows || !wide || (C == 3 && !w8)) AF_CHECK_FAIL(AF_ERR_OOM, "resize: out of memory");
    for (int j = 0; j < k; j++) tag[j] = -1;
    for (int y = 0; y < OH; y++) {
        for (int j = 0; j < k; j++) {
            int sy = tv.xmin[y] + j, slot = sy % k;
            int16_t *r = ring + (size_t)slot * slot_len;
            if (tag[slot] != sy) {
                hpass(src->data + (size_t)sy * W * C, W, C, &th, w8, OW == W, wide, r);
                tag[slot] = sy;
            }
            rows[j] = r;
        }
        vpass(rows, tv.w + (size_t)y * tv.stride, k, len, acc, dst->data + (size_t)y * len);
    }
fail:
    free(w8);
    free(wide);
    free(ring);
    free(acc);
    free(tag);
    free(rows);
    taps_free(&th);
    taps_free(&tv);
    return st;
}

af_status af_img_resize(const af_image *src, int oh, int ow, int antialias, af_image *dst) {
    if (oh < 1 || ow < 1) return AF_FAIL(AF_ERR_VALUE, "resize: output size must be positive, got %dx%d", oh, ow);
    if (src->height < 1 || src->width < 1) return AF_FAIL(AF_ERR_VALUE, "resize: the input image is empty");
    AF_TRY(af_image_alloc(dst, oh, ow, src->channels));
    af_status st = resize_fixed(src, antialias, dst);
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
