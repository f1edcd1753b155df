/* ToTensor + Normalize: uint8 HWC -> float32 CHW, the one conversion every path uses (pipelines,
 * the loader, affectfer.transforms.functional).
 * torchvision ToTensor divides by 255 in float32 (a division, not a multiply by 1/255: the last bit
 * differs); Normalize then computes (x - mean) / std per channel in float32, as
 * torchvision.transforms.functional.normalize (sub_ then div_).
 *
 * A uint8 channel takes only 256 values, so both steps together are one table lookup per pixel: the
 * table holds exactly the float32 results of x / 255 and then (x / 255 - mean) / std, so the output
 * is bit-identical to running the two steps on the whole image, in one pass and without the
 * intermediate [0, 1] image. */
#include "../core/cpu.h"
#include "transforms.h"

/* lut[v] = ((float)v / 255 - mean) / std in float32, the operations torchvision performs */
static void fill_lut(float lut[256], const float *mean, const float *std) {
    for (int v = 0; v < 256; v++) {
        float x = (float)v / 255.0f;
        lut[v] = mean ? (x - *mean) / *std : x;
    }
}

/* img (H, W, C) uint8 -> out (C, H, W) float32; mean/std (C) or both NULL (plain ToTensor) */
AF_CPU_DISPATCH
void af_img_to_tensor_normalize(const af_image *img, float *out, const float *mean, const float *std) {
    int C = img->channels;
    size_t HW = (size_t)img->height * img->width;
    const uint8_t *p = img->data;
    float lut[3][256];
    for (int c = 0; c < C; c++) fill_lut(lut[c], mean ? mean + c : NULL, std ? std + c : NULL);
    if (C == 1) {
        for (size_t k = 0; k < HW; k++) out[k] = lut[0][p[k]];
    } else if (C == 3) {
        float *o0 = out, *o1 = out + HW, *o2 = out + 2 * HW;
        for (size_t k = 0; k < HW; k++) {
            o0[k] = lut[0][p[3 * k]];
            o1[k] = lut[1][p[3 * k + 1]];
            o2[k] = lut[2][p[3 * k + 2]];
        }
    } else {
        for (int c = 0; c < C; c++)
            for (size_t k = 0; k < HW; k++) out[c * HW + k] = lut[c][p[k * C + c]];
    }
}

void af_img_to_tensor(const af_image *img, float *out) { af_img_to_tensor_normalize(img, out, NULL, NULL); }

/* x (C, H, W) float32 in place: (x - mean[c]) / std[c] */
AF_CPU_DISPATCH
void af_normalize_chw(float *x, int C, int H, int W, const float *mean, const float *std) {
    size_t HW = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        float m = mean[c], s = std[c], *xc = x + c * HW;
        for (size_t k = 0; k < HW; k++) xc[k] = (xc[k] - m) / s;
    }
}
