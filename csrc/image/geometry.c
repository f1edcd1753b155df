/* Geometric image ops: crop, pad, flips, affine warps (uint8 HWC); resize is in resize.c.
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

static inline uint8_t round_u8(float v) {
    v = nearbyintf(v); /* torch.round: half to even */
    return v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
}

/* ---- crops, padding, flips ---- */

af_status af_img_crop(const af_image *src, int top, int left, int h, int w, const uint8_t fill[3], af_image *dst) {
    if (h < 0 || w < 0) return AF_FAIL(AF_ERR_VALUE, "crop: size must be non-negative, got %dx%d", h, w);
    int C = src->channels;
    AF_TRY(af_image_alloc(dst, h, w, C));
    /* columns [x0, x1) of the crop lie inside the source: one copy per row, the fill around it */
    int64_t x0 = left < 0 ? -(int64_t)left : 0, x1 = (int64_t)src->width - left;
    if (x0 > w) x0 = w;
    if (x1 > w) x1 = w;
    if (x1 < x0) x1 = x0;
    for (int y = 0; y < h; y++) {
        int64_t sy = (int64_t)top + y;
        uint8_t *orow = dst->data + (size_t)y * w * C;
        int inside = sy >= 0 && sy < src->height;
        int64_t a = inside ? x0 : w, b = inside ? x1 : w; /* a row outside is all fill */
        for (int64_t x = 0; x < a; x++)
            for (int c = 0; c < C; c++) orow[x * C + c] = fill ? fill[c] : 0;
        if (b > a) memcpy(orow + a * C, src->data + ((size_t)sy * src->width + (size_t)(left + a)) * C, (size_t)(b - a) * C);
        for (int64_t x = b > a ? b : a; x < w; x++)
            for (int c = 0; c < C; c++) orow[x * C + c] = fill ? fill[c] : 0;
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

/* Reverses the pixel order of a row into out (no overlap): 16-byte blocks of 5 RGB pixels or 16 gray
 * ones turned around with one byte shuffle each (pshufb where the CPU has it), the rest pixel by pixel.
 * A block is loaded from one byte before its pixels (C = 3), so no load passes the row's end, and
 * stored whole: its 16th byte is the first of out's next pixel, which a later block or the tail loop
 * writes (a block always has a pixel after it). A 15-byte store compiled to a 16-byte spill and an
 * 8-byte reload at offset 7, which the Intel CI machine cannot forward from the store: flip ran at
 * 4x OpenCV's time there. */
static inline void reverse_row(const uint8_t *row, int W, int C, uint8_t *out) {
    int x = 0;
    if (C == 3) {
        for (; x + 6 <= W; x += 5) { /* out pixels x..x+4 = row pixels W-1-x .. W-5-x */
            af_v16u8 v;
            memcpy(&v, row + 3 * (size_t)(W - x - 5) - 1, 16);
            v = AF_SHUFFLE16(v, 13, 14, 15, 10, 11, 12, 7, 8, 9, 4, 5, 6, 1, 2, 3, 0);
            memcpy(out + 3 * (size_t)x, &v, 16);
        }
    } else if (C == 1) {
        for (; x + 16 <= W; x += 16) {
            af_v16u8 v;
            memcpy(&v, row + (W - x - 16), 16);
            v = AF_SHUFFLE16(v, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
            memcpy(out + x, &v, 16);
        }
    }
    for (; x < W; x++)
        for (int c = 0; c < C; c++) out[(size_t)x * C + c] = row[(size_t)(W - 1 - x) * C + c];
}

AF_CPU_DISPATCH
void af_img_hflip(af_image *img) {
    enum { STACK_ROW = 4096 * 3 };
    int W = img->width, C = img->channels;
    size_t rowbytes = (size_t)W * C;
    if (rowbytes <= STACK_ROW) { /* every face crop: reverse into a stack row, copy back */
        uint8_t tmp[STACK_ROW];
        for (int y = 0; y < img->height; y++) {
            uint8_t *row = img->data + (size_t)y * rowbytes;
            reverse_row(row, W, C, tmp);
            memcpy(row, tmp, rowbytes);
        }
        return;
    }
    for (int y = 0; y < img->height; y++) {
        uint8_t *row = img->data + (size_t)y * rowbytes;
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

/* A whole-pixel translation: out(i, j) = src(i - dy, j - dx), fill (or 0) where that falls outside.
 * This is what af_img_affine computes with nearest interpolation for a pure translation by integers
 * (RandAugment's TranslateX/Y): the exact source coordinate is then the integer j - dx, and float32
 * rounding in the grid moves it by far less than the 0.5 that would change the nearest pixel (sides
 * below 2^16), so the copy is bit-identical, without the per-pixel grid. */
af_status af_img_translate(const af_image *src, int64_t dx, int64_t dy, const uint8_t *fill, af_image *dst) {
    int H = src->height, W = src->width, C = src->channels;
    AF_TRY(af_image_alloc(dst, H, W, C));
    size_t rowbytes = (size_t)W * C;
    /* output columns [j0, j1) read source columns [j0 - dx, j1 - dx) */
    int64_t j0 = dx > 0 ? dx : 0, j1 = dx < 0 ? W + dx : W;
    if (j0 > W) j0 = W;
    if (j1 < j0) j1 = j0;
    for (int i = 0; i < H; i++) {
        uint8_t *o = dst->data + (size_t)i * rowbytes;
        int64_t si = i - dy;
        int64_t lo = si >= 0 && si < H ? j0 : W; /* a row from outside is all fill */
        int64_t hi = si >= 0 && si < H ? j1 : W;
        for (int64_t j = 0; j < lo; j++)
            for (int c = 0; c < C; c++) o[j * C + c] = fill ? fill[c] : 0;
        if (hi > lo) memcpy(o + lo * C, src->data + (size_t)si * rowbytes + (lo - dx) * C, (size_t)(hi - lo) * C);
        for (int64_t j = hi > lo ? hi : lo; j < W; j++)
            for (int c = 0; c < C; c++) o[j * C + c] = fill ? fill[c] : 0;
    }
    return AF_OK;
}

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

/* Nearest sampling of af_img_affine, with its per-pixel float32 grid (r: the rescaled theta). The grid
 * is computed for a block of columns at a time into integer source coordinates, in a loop of plain
 * float32 arithmetic that vectorises (same operations, same order, so the same picks), and the
 * pixels are gathered in a second loop. */
AF_CPU_DISPATCH
static void affine_nearest(const af_image *src, const float r[3][2], const uint8_t *fill, af_image *dst) {
    enum { BLOCK = 256 };
    int H = src->height, W = src->width, C = src->channels;
    float half_w = (float)W / 2.0f, half_h = (float)H / 2.0f, fw = (float)W, fh = (float)H;
    uint8_t fc[3] = {fill ? fill[0] : 0, fill ? fill[1] : 0, fill ? fill[2] : 0};
    int32_t iu[BLOCK], iv[BLOCK];
    for (int i = 0; i < H; i++) {
        float yb = (float)i + 0.5f - half_h; /* float32 linspace(-H/2 + 0.5, H/2 - 0.5, H): exact */
        float py0 = yb * r[1][0], py1 = yb * r[1][1];
        uint8_t *orow = dst->data + (size_t)i * W * C;
        for (int j0 = 0; j0 < W; j0 += BLOCK) {
            int n = W - j0 < BLOCK ? W - j0 : BLOCK;
            for (int k = 0; k < n; k++) {
                float xb = (float)(j0 + k) + 0.5f - half_w;
                float gx = xb * r[0][0] + py0 + r[2][0];
                float gy = xb * r[0][1] + py1 + r[2][1];
                /* grid_sampler_2d CPU kernel, align_corners=False: (g + 1) * (size / 2) - 0.5 */
                float ku = nearbyintf((gx + 1.0f) * half_w - 0.5f), kv = nearbyintf((gy + 1.0f) * half_h - 0.5f);
                int inside = (ku >= 0.0f) & (ku < fw) & (kv >= 0.0f) & (kv < fh); /* & not &&: no branches */
                iu[k] = (int32_t)(inside ? ku : -1.0f);
                iv[k] = (int32_t)(inside ? kv : 0.0f);
            }
            uint8_t *o = orow + (size_t)j0 * C;
            if (C == 3) {
                for (int k = 0; k < n; k++) {
                    const uint8_t *p = iu[k] < 0 ? fc : src->data + ((size_t)iv[k] * W + (size_t)iu[k]) * 3;
                    o[3 * k] = p[0], o[3 * k + 1] = p[1], o[3 * k + 2] = p[2];
                }
            } else {
                for (int k = 0; k < n; k++)
                    for (int c = 0; c < C; c++)
                        o[k * C + c] = iu[k] < 0 ? fc[c] : src->data[((size_t)iv[k] * W + (size_t)iu[k]) * C + c];
            }
        }
    }
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
    if (interpolation == AF_INTERP_NEAREST) {
        affine_nearest(src, r, fill, dst);
        return AF_OK;
    }
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
