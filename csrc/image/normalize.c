/* ToTensor + Normalize: uint8 HWC -> float32 CHW, the one conversion every path uses (pipelines,
 * the loader, affectfer.transforms.functional).
 * torchvision ToTensor divides by 255 in float32 (a division, not a multiply by 1/255: the last bit
 * differs); Normalize then computes (x - mean) / std per channel in float32, as
 * torchvision.transforms.functional.normalize (sub_ then div_). */
#include "../core/cpu.h"
#include "transforms.h"

/* img (H, W, C) uint8 -> out (C, H, W) float32 in [0, 1] */
AF_CPU_DISPATCH
void af_img_to_tensor(const af_image *img, float *out) {
    int H = img->height, W = img->width, C = img->channels;
    size_t HW = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        float *o = out + c * HW;
        const uint8_t *p = img->data + c;
        for (size_t k = 0; k < HW; k++) o[k] = (float)p[k * C] / 255.0f;
    }
}

/* x (C, H, W) float32 in place: (x - mean[c]) / std[c] */
AF_CPU_DISPATCH
void af_normalize_chw(float *x, int C, int H, int W, const float *mean, const float *std) {
    size_t HW = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        float m = mean[c], s = std[c], *xc = x + c * HW;
        for (size_t k = 0; k < HW; k++) xc[k] = (xc[k] - m) / s;
    }
}
