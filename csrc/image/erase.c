/* RandomErasing (Zhong et al., arXiv 1708.04896) and the box samplers of RandomErasing /
 * RandomResizedCrop (torchvision RandomErasing.get_params, RandomResizedCrop.get_params).
 *
 * The samplers follow torchvision's get_params step by step: scale and log-ratio draws are float32
 * uniforms (torch.empty(1).uniform_), the exp is float32, sizes are Python's round() of a double
 * sqrt (half to even), positions are uniform integers over the inclusive range. Only the random
 * stream differs (Philox instead of torch's generator). */
#include <math.h>
#include <string.h>

#include "transforms.h"

/* torch.empty(1).uniform_(lo, hi).item(): a float32 in [lo, hi) */
static float uniform_f32(af_rng *rng, float lo, float hi) { return lo + af_rng_uniform_f32(rng) * (hi - lo); }

int af_erasing_params(int H, int W, double scale_lo, double scale_hi, double ratio_lo, double ratio_hi, af_rng *rng,
                      int *top, int *left, int *h, int *w) {
    double area = (double)H * W;
    float lr0 = logf((float)ratio_lo), lr1 = logf((float)ratio_hi);
    for (int attempt = 0; attempt < 10; attempt++) {
        double erase_area = area * (double)uniform_f32(rng, (float)scale_lo, (float)scale_hi);
        double aspect = (double)expf(uniform_f32(rng, lr0, lr1));
        double hh = nearbyint(sqrt(erase_area * aspect)), ww = nearbyint(sqrt(erase_area / aspect));
        if (!(hh < H && ww < W)) continue; /* strict: torchvision never erases a whole side */
        *h = (int)hh;
        *w = (int)ww;
        *top = (int)af_rng_below(rng, (uint32_t)(H - *h + 1));
        *left = (int)af_rng_below(rng, (uint32_t)(W - *w + 1));
        return 1;
    }
    return 0;
}

void af_resized_crop_params(int H, int W, double scale_lo, double scale_hi, double ratio_lo, double ratio_hi,
                            af_rng *rng, int *top, int *left, int *h, int *w) {
    double area = (double)H * W;
    float lr0 = logf((float)ratio_lo), lr1 = logf((float)ratio_hi);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target_area = area * (double)uniform_f32(rng, (float)scale_lo, (float)scale_hi);
        double aspect = (double)expf(uniform_f32(rng, lr0, lr1));
        double ww = nearbyint(sqrt(target_area * aspect)), hh = nearbyint(sqrt(target_area / aspect));
        if (ww > 0 && ww <= W && hh > 0 && hh <= H) {
            *w = (int)ww;
            *h = (int)hh;
            *top = (int)af_rng_below(rng, (uint32_t)(H - *h + 1));
            *left = (int)af_rng_below(rng, (uint32_t)(W - *w + 1));
            return;
        }
    }
    /* fallback: the largest centered crop within the ratio range */
    double in_ratio = (double)W / (double)H;
    double rmin = ratio_lo < ratio_hi ? ratio_lo : ratio_hi, rmax = ratio_lo < ratio_hi ? ratio_hi : ratio_lo;
    if (in_ratio < rmin) {
        *w = W;
        *h = (int)nearbyint(*w / rmin);
    } else if (in_ratio > rmax) {
        *h = H;
        *w = (int)nearbyint(*h * rmax);
    } else {
        *w = W;
        *h = H;
    }
    *top = (H - *h) / 2;
    *left = (W - *w) / 2;
}

/* x: (C, H, W) float32; box rows [top, top+h), columns [left, left+w) */
void af_erase_chw(float *x, int C, int H, int W, int top, int left, int h, int w, const float *values, int random,
                  af_rng *rng) {
    for (int c = 0; c < C; c++)
        for (int i = top; i < top + h; i++) {
            float *row = x + ((size_t)c * H + i) * W;
            for (int j = left; j < left + w; j++) {
                if (random) { /* N(0, 1) by Box-Muller */
                    double u1 = 1.0 - af_rng_uniform(rng), u2 = af_rng_uniform(rng);
                    row[j] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
                } else {
                    row[j] = values[c];
                }
            }
        }
}

void af_img_erase(af_image *img, int top, int left, int h, int w, const uint8_t *values) {
    int C = img->channels;
    for (int i = top; i < top + h; i++)
        for (int j = left; j < left + w; j++) memcpy(img->data + ((size_t)i * img->width + j) * C, values, C);
}
