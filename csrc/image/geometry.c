/* Geometric image ops: resize, crop, pad, flips, affine warps (uint8 HWC).
 *
 * Reference: torchvision's tensor path (_functional_tensor.resize / affine), which runs uint8 images
 * through float32 ATen kernels: interpolate(bilinear, antialias) for Resize and
 * grid_sample(align_corners=False) for affine warps. The float32 operation orders below follow
 * those kernels (see tests/image/test_torchvision.py for what matches bit for bit).
 *
 * Single-threaded on purpose: images are transformed inside the loader's worker threads, one
 * sample per thread, so an OpenMP team per call would only oversubscribe the cores. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/cpu.h"
#include "transforms.h"

/* ---- Resize ---- */

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

/* Antialiased path: horizontal pass into float32, then vertical pass (ATen resamples the contiguous
 * width dimension first and skips a dimension whose size does not change). */
AF_CPU_DISPATCH
static af_status resize_aa(const af_image *src, af_image *dst) {
    int H = src->height, W = src->width, C = src->channels, OH = dst->height, OW = dst->width;
    af_taps th = {0}, tv = {0};
    float *tmp = NULL;
    af_status st = AF_OK;
    AF_CHECK(taps_aa(W, OW, &th));
    AF_CHECK(taps_aa(H, OH, &tv));
    tmp = malloc(sizeof(float) * (size_t)H * OW * C);
    if (!tmp) AF_CHECK_FAIL(AF_ERR_OOM, "resize: out of memory");
    /* tmp: (H, OW, C) */
    for (int y = 0; y < H; y++) {
        const uint8_t *row = src->data + (size_t)y * W * C;
        for (int x = 0; x < OW; x++) {
            const float *w = th.w + (size_t)x * th.max_taps;
            for (int c = 0; c < C; c++) {
                float acc;
                if (OW == W) acc = row[x * C + c];
                else {
                    acc = (float)row[th.xmin[x] * C + c] * w[0];
                    for (int j = 1; j < th.ntaps[x]; j++) acc += (float)row[(th.xmin[x] + j) * C + c] * w[j];
                }
                tmp[((size_t)y * OW + x) * C + c] = acc;
            }
        }
    }
    for (int y = 0; y < OH; y++) {
        const float *w = tv.w + (size_t)y * tv.max_taps;
        uint8_t *orow = dst->data + (size_t)y * OW * C;
        for (int x = 0; x < OW * C; x++) {
            float acc;
            if (OH == H) acc = tmp[(size_t)y * OW * C + x];
            else {
                acc = tmp[(size_t)tv.xmin[y] * OW * C + x] * w[0];
                for (int j = 1; j < tv.ntaps[y]; j++) acc += tmp[(size_t)(tv.xmin[y] + j) * OW * C + x] * w[j];
            }
            orow[x] = round_u8(acc);
        }
    }
fail:
    free(tmp);
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

AF_CPU_DISPATCH
static void resize_plain(const af_image *src, af_image *dst) {
    int H = src->height, W = src->width, C = src->channels, OH = dst->height, OW = dst->width;
    for (int y = 0; y < OH; y++) {
        int y0, y1;
        float h0, h1;
        bilinear_index(H, OH, y, &y0, &y1, &h0, &h1);
        const uint8_t *r0 = src->data + (size_t)y0 * W * C, *r1 = src->data + (size_t)y1 * W * C;
        for (int x = 0; x < OW; x++) {
            int x0, x1;
            float w0, w1;
            bilinear_index(W, OW, x, &x0, &x1, &w0, &w1);
            for (int c = 0; c < C; c++) {
                float top = w0 * (float)r0[x0 * C + c] + w1 * (float)r0[x1 * C + c];
                float bot = w0 * (float)r1[x0 * C + c] + w1 * (float)r1[x1 * C + c];
                dst->data[((size_t)y * OW + x) * C + c] = round_u8(h0 * top + h1 * bot);
            }
        }
    }
}

af_status af_img_resize(const af_image *src, int oh, int ow, int antialias, af_image *dst) {
    if (oh < 1 || ow < 1) return AF_FAIL(AF_ERR_VALUE, "resize: output size must be positive, got %dx%d", oh, ow);
    if (src->height < 1 || src->width < 1) return AF_FAIL(AF_ERR_VALUE, "resize: the input image is empty");
    AF_TRY(af_image_alloc(dst, oh, ow, src->channels));
    af_status st = AF_OK;
    if (antialias) st = resize_aa(src, dst);
    else resize_plain(src, dst);
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

/* ---- crops, padding, flips ---- */

af_status af_img_crop(const af_image *src, int top, int left, int h, int w, const uint8_t fill[3], af_image *dst) {
    if (h < 0 || w < 0) return AF_FAIL(AF_ERR_VALUE, "crop: size must be non-negative, got %dx%d", h, w);
    int C = src->channels;
    AF_TRY(af_image_alloc(dst, h, w, C));
    for (int y = 0; y < h; y++) {
        int sy = top + y;
        uint8_t *orow = dst->data + (size_t)y * w * C;
        for (int x = 0; x < w; x++) {
            int sx = left + x;
            if (sy >= 0 && sy < src->height && sx >= 0 && sx < src->width)
                memcpy(orow + x * C, src->data + ((size_t)sy * src->width + sx) * C, C);
            else
                for (int c = 0; c < C; c++) orow[x * C + c] = fill ? fill[c] : 0;
        }
    }
    return AF_OK;
}

af_status af_img_center_crop(const af_image *src, int h, int w, af_image *dst) {
    /* torchvision F.center_crop: pad (zeros) by ((w-W)//2, (h-H)//2, (w-W+1)//2, (h-H+1)//2) when the
     * crop is larger, then top = int(round((H' - h) / 2.0)) with Python's half-even round. */
    int H = src->height, W = src->width;
    int pad_l = w > W ? (w - W) / 2 : 0, pad_t = h > H ? (h - H) / 2 : 0;
    int pad_r = w > W ? (w - W + 1) / 2 : 0, pad_b = h > H ? (h - H + 1) / 2 : 0;
    int H2 = H + pad_t + pad_b, W2 = W + pad_l + pad_r;
    int top = (int)nearbyint((H2 - h) / 2.0), left = (int)nearbyint((W2 - w) / 2.0);
    return af_img_crop(src, top - pad_t, left - pad_l, h, w, NULL, dst);
}

/* Source index of padded position p (0-based in the padded axis) for an axis of n pixels with
 * `before` pixels of padding: torch.nn.functional.pad's edge/reflect/symmetric rules. */
static int pad_index(int p, int before, int n, af_pad_mode mode) {
    int i = p - before;
    if (i >= 0 && i < n) return i;
    if (mode == AF_PAD_EDGE) return i < 0 ? 0 : n - 1;
    if (n == 1) return 0;
    if (mode == AF_PAD_REFLECT) { /* mirror without repeating the edge: -1 -> 1 */
        int period = 2 * (n - 1);
        i = ((i % period) + period) % period;
        return i < n ? i : period - i;
    }
    /* symmetric: mirror repeating the edge: -1 -> 0 */
    int period = 2 * n;
    i = ((i % period) + period) % period;
    return i < n ? i : period - 1 - i;
}

af_status af_img_pad(const af_image *src, int left, int top, int right, int bottom, af_pad_mode mode,
                     const uint8_t fill[3], af_image *dst) {
    if (left < 0 || top < 0 || right < 0 || bottom < 0) return AF_FAIL(AF_ERR_VALUE, "pad: padding must be non-negative");
    int H = src->height, W = src->width, C = src->channels;
    if (mode == AF_PAD_REFLECT && (left >= W || right >= W || top >= H || bottom >= H))
        return AF_FAIL(AF_ERR_VALUE, "pad: reflect padding must be smaller than the image (%dx%d)", H, W);
    if (mode != AF_PAD_CONSTANT && (H < 1 || W < 1)) return AF_FAIL(AF_ERR_VALUE, "pad: cannot pad an empty image");
    int OH = H + top + bottom, OW = W + left + right;
    AF_TRY(af_image_alloc(dst, OH, OW, C));
    for (int y = 0; y < OH; y++) {
        uint8_t *orow = dst->data + (size_t)y * OW * C;
        int sy = mode == AF_PAD_CONSTANT ? y - top : pad_index(y, top, H, mode);
        for (int x = 0; x < OW; x++) {
            int sx = mode == AF_PAD_CONSTANT ? x - left : pad_index(x, left, W, mode);
            if (sy >= 0 && sy < H && sx >= 0 && sx < W)
                memcpy(orow + x * C, src->data + ((size_t)sy * W + sx) * C, C);
            else
                for (int c = 0; c < C; c++) orow[x * C + c] = fill ? fill[c] : 0;
        }
    }
    return AF_OK;
}

AF_CPU_DISPATCH
void af_img_hflip(af_image *img) {
    int W = img->width, C = img->channels;
    for (int y = 0; y < img->height; y++) {
        uint8_t *row = img->data + (size_t)y * W * C;
        for (int x = 0; x < W / 2; x++)
            for (int c = 0; c < C; c++) {
                uint8_t t = row[x * C + c];
                row[x * C + c] = row[(W - 1 - x) * C + c];
                row[(W - 1 - x) * C + c] = t;
            }
    }
}

void af_img_vflip(af_image *img) {
    size_t rowbytes = (size_t)img->width * img->channels;
    for (int y = 0; y < img->height / 2; y++) {
        uint8_t *a = img->data + y * rowbytes, *b = img->data + (size_t)(img->height - 1 - y) * rowbytes;
        for (size_t k = 0; k < rowbytes; k++) {
            uint8_t t = a[k];
            a[k] = b[k];
            b[k] = t;
        }
    }
}

/* ---- affine warps ---- */

/* torchvision _get_inverse_affine_matrix (double precision), output -> source in centered
 * coordinates. */
static void inverse_affine_matrix(double cx, double cy, double angle, double tx, double ty, double scale,
                                  double shear_x, double shear_y, double m[6]) {
    const double deg = 3.14159265358979323846 / 180.0;
    double rot = angle * deg, sx = shear_x * deg, sy = shear_y * deg;
    double a = cos(rot - sy) / cos(sy);
    double b = -cos(rot - sy) * tan(sx) / cos(sy) - sin(rot);
    double c = sin(rot - sy) / cos(sy);
    double d = -sin(rot - sy) * tan(sx) / cos(sy) + cos(rot);
    m[0] = d / scale;
    m[1] = -b / scale;
    m[2] = 0.0 / scale;
    m[3] = -c / scale;
    m[4] = a / scale;
    m[5] = 0.0 / scale;
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
    m[2] += cx;
    m[5] += cy;
}

AF_CPU_DISPATCH
af_status af_img_affine(const af_image *src, double angle, double tx, double ty, double scale, double shear_x,
                        double shear_y, int has_center, double cx, double cy, int interpolation,
                        const uint8_t *fill, af_image *dst) {
    if (!(scale > 0.0)) return AF_FAIL(AF_ERR_VALUE, "affine: scale must be positive, got %g", scale);
    int H = src->height, W = src->width, C = src->channels;
    double m[6];
    /* F.affine turns a pixel center into centered coordinates: c - size / 2 */
    inverse_affine_matrix(has_center ? cx - W * 0.5 : 0.0, has_center ? cy - H * 0.5 : 0.0, angle, tx, ty, scale,
                          shear_x, shear_y, m);
    /* _gen_affine_grid: theta in float32, rescaled by (W/2, H/2); grid = [x, y, 1] . theta^T */
    float r[3][2];
    for (int k = 0; k < 3; k++) {
        r[k][0] = (float)m[k] / (0.5f * (float)W);
        r[k][1] = (float)m[3 + k] / (0.5f * (float)H);
    }
    AF_TRY(af_image_alloc(dst, H, W, C));
    float half_w = (float)W / 2.0f, half_h = (float)H / 2.0f;
    for (int i = 0; i < H; i++) {
        float yb = (float)i + 0.5f - half_h; /* float32 linspace(-H/2 + 0.5, H/2 - 0.5, H): exact */
        for (int j = 0; j < W; j++) {
            float xb = (float)j + 0.5f - half_w;
            float gx = xb * r[0][0] + yb * r[1][0] + r[2][0];
            float gy = xb * r[0][1] + yb * r[1][1] + r[2][1];
            /* grid_sampler_2d CPU kernel, align_corners=False: (g + 1) * (size / 2) - 0.5 */
            float u = (gx + 1.0f) * half_w - 0.5f, v = (gy + 1.0f) * half_h - 0.5f;
            uint8_t *o = dst->data + ((size_t)i * W + j) * C;
            if (interpolation == AF_INTERP_NEAREST) {
                float ku = nearbyintf(u), kv = nearbyintf(v);
                int inside = ku >= 0.0f && ku < (float)W && kv >= 0.0f && kv < (float)H;
                for (int c = 0; c < C; c++)
                    o[c] = inside ? src->data[((size_t)kv * W + (size_t)ku) * C + c] : (fill ? fill[c] : 0);
                continue;
            }
            float xw = floorf(u), yn = floorf(v);
            float we = u - xw, ea = (xw + 1.0f) - u, ns = v - yn, so = (yn + 1.0f) - v;
            float wnw = so * ea, wne = so * we, wsw = ns * ea, wse = ns * we;
            int x0 = (int)xw, y0 = (int)yn;
            int in_nw = x0 >= 0 && x0 < W && y0 >= 0 && y0 < H, in_ne = x0 + 1 >= 0 && x0 + 1 < W && y0 >= 0 && y0 < H;
            int in_sw = x0 >= 0 && x0 < W && y0 + 1 >= 0 && y0 + 1 < H;
            int in_se = x0 + 1 >= 0 && x0 + 1 < W && y0 + 1 >= 0 && y0 + 1 < H;
            /* the all-ones mask channel torchvision samples with the same grid when fill is given */
            float mask = (in_nw ? wnw : 0.0f) + (in_ne ? wne : 0.0f) + (in_sw ? wsw : 0.0f) + (in_se ? wse : 0.0f);
            for (int c = 0; c < C; c++) {
#define PIX(yy, xx) ((float)src->data[((size_t)(yy) * W + (xx)) * C + c])
                float vnw = in_nw ? PIX(y0, x0) : 0.0f, vne = in_ne ? PIX(y0, x0 + 1) : 0.0f;
                float vsw = in_sw ? PIX(y0 + 1, x0) : 0.0f, vse = in_se ? PIX(y0 + 1, x0 + 1) : 0.0f;
#undef PIX
                float val = vnw * wnw + vne * wne + vsw * wsw + vse * wse;
                if (fill) val = val * mask + (1.0f - mask) * (float)fill[c];
                o[c] = round_u8(val);
            }
        }
    }
    return AF_OK;
}
