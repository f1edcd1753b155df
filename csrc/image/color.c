/* Photometric ops on uint8 HWC images, torchvision's tensor path
 * (torchvision/transforms/_functional_tensor.py: adjust_*, rgb_to_grayscale, posterize, solarize,
 * autocontrast, equalize, invert).
 *
 * torchvision computes these on uint8 tensors promoted to float32, with Python-float factors cast
 * to float32, then clamps to [0, 255] and truncates (.to(uint8)). Each formula below keeps the
 * exact float32 operation order of the torchvision expression it mirrors (the build forbids FMA
 * contraction), which is what makes e.g. 200 * 1.27 come out as 254 like torchvision. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/cpu.h"
#include "transforms.h"

static inline uint8_t trunc_u8(float v) {
    v = af_clampf(v, 0.0f, 255.0f);
    return (uint8_t)(int)v;
}

/* torchvision _blend(a, b, r) = (r * a + (1.0 - r) * b).clamp(0, 255).to(uint8), in float32. The
 * factor is a Python float (double): r and 1.0 - r are computed in double and each cast to float32
 * once, which is why the factors below are passed as double. Gray (rgb_to_grayscale) is
 * (0.2989 * R + 0.587 * G + 0.114 * B).to(uint8) with float32 weights. */

/* The per-pixel float32 expressions below only combine per-value products (r * a, q * b, the gray
 * weights times a channel), so they are tabulated: a 256-entry table of each product, rounded to
 * float32 exactly as the direct expression rounds it, gives bit-identical results much faster. */
static void product_table(float factor32, float table[256]) {
    for (int v = 0; v < 256; v++) table[v] = factor32 * (float)v;
}

AF_CPU_DISPATCH
static void apply_lut(af_image *img, const uint8_t lut[256]) {
    size_t n = (size_t)img->height * img->width * img->channels;
    for (size_t k = 0; k < n; k++) img->data[k] = lut[img->data[k]];
}

/* rgb_to_grayscale with the three weighted products tabulated */
typedef struct {
    float r[256], g[256], b[256];
} gray_tables;

static void gray_tables_init(gray_tables *t) {
    product_table(0.2989f, t->r);
    product_table(0.587f, t->g);
    product_table(0.114f, t->b);
}

static inline uint8_t gray_lut(const gray_tables *t, const uint8_t *px) { return trunc_u8(t->r[px[0]] + t->g[px[1]] + t->b[px[2]]); }

void af_img_adjust_brightness(af_image *img, double factor) {
    /* _blend(img, zeros, f): the zero term adds nothing */
    float r = (float)factor;
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = trunc_u8(r * (float)v);
    apply_lut(img, lut);
}

AF_CPU_DISPATCH
void af_img_adjust_saturation(af_image *img, double factor) {
    if (img->channels == 1) return; /* torchvision returns 1-channel images unchanged */
    float ra[256], qb[256];
    product_table((float)factor, ra);
    product_table((float)(1.0 - factor), qb);
    gray_tables gt;
    gray_tables_init(&gt);
    size_t n = (size_t)img->height * img->width;
    /* blend[g][a] for every (gray, value) pair: 64 KiB, cheaper than per-pixel float math from
     * about 20k pixels on */
    uint8_t *table = n >= 20000 ? malloc(65536) : NULL;
    if (table)
        for (int g = 0; g < 256; g++)
            for (int a = 0; a < 256; a++) table[g * 256 + a] = trunc_u8(ra[a] + qb[g]);
    for (size_t k = 0; k < n; k++) {
        uint8_t *px = img->data + 3 * k;
        int g = gray_lut(&gt, px);
        if (table) {
            const uint8_t *row = table + g * 256;
            px[0] = row[px[0]], px[1] = row[px[1]], px[2] = row[px[2]];
        } else {
            float qg = qb[g];
            for (int c = 0; c < 3; c++) px[c] = trunc_u8(ra[px[c]] + qg);
        }
    }
    free(table);
}

AF_CPU_DISPATCH
void af_img_adjust_contrast(af_image *img, double factor) {
    size_t n = (size_t)img->height * img->width;
    if (n == 0) return;
    /* mean of the truncated gray image (the channel itself for 1-channel images) in float32. The
     * integer sum is exact; torch's float32 sum is too while it stays below 2^24. */
    gray_tables gt;
    gray_tables_init(&gt);
    int64_t sum = 0;
    for (size_t k = 0; k < n; k++) sum += img->channels == 3 ? gray_lut(&gt, img->data + 3 * k) : img->data[k];
    float mean = (float)sum / (float)n;
    float r = (float)factor, q = (float)(1.0 - factor), qm = q * mean;
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = trunc_u8(r * (float)v + qm);
    apply_lut(img, lut);
}

AF_CPU_DISPATCH
void af_img_adjust_hue(af_image *img, double hue_factor) {
    if (img->channels == 1) return;
    size_t n = (size_t)img->height * img->width;
    const float to_u8 = 255.999f; /* convert_image_dtype: 255 + 1 - 1e-3 */
    const float hue = (float)hue_factor;
    for (size_t k = 0; k < n; k++) {
        uint8_t *px = img->data + 3 * k;
        float r = (float)px[0] / 255.0f, g = (float)px[1] / 255.0f, b = (float)px[2] / 255.0f;
        float gb_max = g > b ? g : b, gb_min = g < b ? g : b; /* no NaN: values are uint8 / 255 */
        float maxc = r > gb_max ? r : gb_max, minc = r < gb_min ? r : gb_min;
        int eqc = maxc == minc;
        float cr = maxc - minc;
        float s = cr / (eqc ? 1.0f : maxc);
        float crd = eqc ? 1.0f : cr;
        float rc = (maxc - r) / crd, gc = (maxc - g) / crd, bc = (maxc - b) / crd;
        float h;
        if (maxc == r) h = bc - gc;
        else if (maxc == g) h = (2.0f + rc) - bc;
        else h = (4.0f + gc) - rc;
        h = fmodf(h / 6.0f + 1.0f, 1.0f);
        /* (h + hue) % 1.0: torch.remainder = fmod, plus the divisor when the signs differ */
        h = fmodf(h + hue, 1.0f);
        if (h != 0.0f && h < 0.0f) h += 1.0f;
        float v = maxc;
        float h6 = h * 6.0f;
        float fi = floorf(h6);
        float f = h6 - fi;
        int i = ((int)fi % 6 + 6) % 6;
        float p = af_clampf(v * (1.0f - s), 0.0f, 1.0f);
        float q = af_clampf(v * (1.0f - s * f), 0.0f, 1.0f);
        float t = af_clampf(v * (1.0f - s * (1.0f - f)), 0.0f, 1.0f);
        float out[3];
        switch (i) {
        case 0: out[0] = v, out[1] = t, out[2] = p; break;
        case 1: out[0] = q, out[1] = v, out[2] = p; break;
        case 2: out[0] = p, out[1] = v, out[2] = t; break;
        case 3: out[0] = p, out[1] = q, out[2] = v; break;
        case 4: out[0] = t, out[1] = p, out[2] = v; break;
        default: out[0] = v, out[1] = p, out[2] = q; break;
        }
        for (int c = 0; c < 3; c++) px[c] = trunc_u8(out[c] * to_u8);
    }
}

/* adjust_sharpness: blend with a degenerate image whose interior is the 3x3 smoothing
 * [[1,1,1],[1,5,1],[1,1,1]] / 13 rounded half to even, borders copied from the input. S / 13 (S the
 * integer weighted sum) is never within 0.038 of a tie, so (S + 6) / 13 in integers equals torch's
 * float32 conv + round for every input (_functional_tensor._blurred_degenerate_image). The blend covers the border too (blending a
 * pixel with itself, as torchvision does). Images with a side <= 2 are returned unchanged. */
AF_CPU_DISPATCH
af_status af_img_adjust_sharpness(af_image *img, double factor) {
    int H = img->height, W = img->width, C = img->channels;
    if (H <= 2 || W <= 2) return AF_OK;
    float ra[256], qb[256];
    product_table((float)factor, ra);
    product_table((float)(1.0 - factor), qb);
    size_t rowbytes = (size_t)W * C;
    uint8_t *prev = malloc(rowbytes), *cur = malloc(rowbytes);
    if (!prev || !cur) {
        free(prev);
        free(cur);
        return AF_FAIL(AF_ERR_OOM, "adjust_sharpness: out of memory");
    }
    /* rows are rewritten top to bottom in place: keep the original previous and current rows */
    memcpy(prev, img->data, rowbytes);
    for (int i = 0; i < H; i++) {
        uint8_t *row = img->data + (size_t)i * rowbytes;
        memcpy(cur, row, rowbytes);
        const uint8_t *next = row + rowbytes;
        /* border pixels blend with themselves; the interior columns [C, (W - 1) * C) of an interior
         * row form one run without branches */
        size_t lo = 0, hi = 0;
        if (i > 0 && i < H - 1) lo = (size_t)C, hi = rowbytes - C;
        for (size_t k = 0; k < lo; k++) row[k] = trunc_u8(ra[cur[k]] + qb[cur[k]]);
        for (size_t k = lo; k < hi; k++) {
            int S = prev[k - C] + prev[k] + prev[k + C] + cur[k - C] + 5 * cur[k] + cur[k + C] + next[k - C] + next[k] +
                    next[k + C];
            row[k] = trunc_u8(ra[cur[k]] + qb[(S + 6) / 13]);
        }
        for (size_t k = hi > lo ? hi : 0; k < rowbytes; k++) row[k] = trunc_u8(ra[cur[k]] + qb[cur[k]]);
        uint8_t *t = prev;
        prev = cur;
        cur = t;
    }
    free(prev);
    free(cur);
    return AF_OK;
}

AF_CPU_DISPATCH
af_status af_img_grayscale(const af_image *src, int out_channels, af_image *dst) {
    if (out_channels != 1 && out_channels != 3)
        return AF_FAIL(AF_ERR_VALUE, "grayscale: num_output_channels must be 1 or 3, got %d", out_channels);
    AF_TRY(af_image_alloc(dst, src->height, src->width, out_channels));
    gray_tables gt;
    gray_tables_init(&gt);
    size_t n = (size_t)src->height * src->width;
    for (size_t k = 0; k < n; k++) {
        uint8_t g = src->channels == 3 ? gray_lut(&gt, src->data + 3 * k) : src->data[k];
        for (int c = 0; c < out_channels; c++) dst->data[k * out_channels + c] = g;
    }
    return AF_OK;
}

/* A gray source (R = G = B = v) goes through rgb_to_grayscale as a fixed function of v, which is not
 * v itself (0.2989 + 0.587 + 0.114 = 0.9999 in float32 products, truncated: often v - 1). The
 * table is built from the same per-pixel expression af_img_grayscale uses, so a 1-channel decode
 * mapped through it is byte for byte what decoding to RGB and then Grayscale gives. */
static uint8_t gray_of_gray[256];
static pthread_once_t gray_of_gray_once = PTHREAD_ONCE_INIT;

static void gray_of_gray_init(void) {
    gray_tables gt;
    gray_tables_init(&gt);
    for (int v = 0; v < 256; v++) {
        uint8_t px[3] = {(uint8_t)v, (uint8_t)v, (uint8_t)v};
        gray_of_gray[v] = gray_lut(&gt, px);
    }
}

void af_img_grayscale_of_gray(af_image *img) {
    pthread_once(&gray_of_gray_once, gray_of_gray_init);
    apply_lut(img, gray_of_gray);
}

void af_img_posterize(af_image *img, int bits) {
    /* img & -(2 ** (8 - bits)): keep the top `bits` bits */
    uint8_t mask = bits >= 8 ? 0xFF : bits <= 0 ? 0 : (uint8_t)(0xFF << (8 - bits));
    size_t n = (size_t)img->height * img->width * img->channels;
    for (size_t k = 0; k < n; k++) img->data[k] &= mask;
}

void af_img_solarize(af_image *img, double threshold) {
    float t = (float)threshold; /* uint8 >= python float compares in float32 */
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = (float)v >= t ? (uint8_t)(255 - v) : (uint8_t)v;
    apply_lut(img, lut);
}

void af_img_invert(af_image *img) {
    size_t n = (size_t)img->height * img->width * img->channels;
    for (size_t k = 0; k < n; k++) img->data[k] = 255 - img->data[k];
}

/* autocontrast per channel: ((x - lo) * scale).clamp(0, 255).to(uint8) */
void af_img_autocontrast(af_image *img) {
    int C = img->channels;
    size_t n = (size_t)img->height * img->width;
    if (n == 0) return;
    for (int c = 0; c < C; c++) {
        uint8_t lo = 255, hi = 0;
        for (size_t k = 0; k < n; k++) {
            uint8_t v = img->data[k * C + c];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        if (hi == lo) continue;
        /* `bound / (max - min)` on a tensor is Tensor.__rtruediv__ = reciprocal(max - min) * bound */
        float flo = (float)lo, scale = (1.0f / ((float)hi - flo)) * 255.0f;
        uint8_t lut[256];
        for (int v = 0; v < 256; v++) lut[v] = trunc_u8(((float)v - flo) * scale);
        for (size_t k = 0; k < n; k++) img->data[k * C + c] = lut[img->data[k * C + c]];
    }
}

/* equalize per channel (torchvision _scale_channel == Pillow ImageOps.equalize) */
void af_img_equalize(af_image *img) {
    int C = img->channels;
    size_t n = (size_t)img->height * img->width;
    for (int c = 0; c < C; c++) {
        int64_t hist[256] = {0};
        for (size_t k = 0; k < n; k++) hist[img->data[k * C + c]]++;
        int64_t total = 0, last = 0;
        for (int v = 0; v < 256; v++)
            if (hist[v]) {
                total += hist[v];
                last = hist[v];
            }
        int64_t step = (total - last) / 255;
        if (step == 0) continue;
        uint8_t lut[256];
        int64_t cum = 0;
        lut[0] = 0;
        for (int v = 1; v < 256; v++) {
            cum += hist[v - 1];
            int64_t m = (cum + step / 2) / step;
            lut[v] = (uint8_t)(m > 255 ? 255 : m);
        }
        for (size_t k = 0; k < n; k++) img->data[k * C + c] = lut[img->data[k * C + c]];
    }
}
