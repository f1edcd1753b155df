/* ToTensor + Normalize: uint8 HWC -> float32 CHW.
 * torchvision ToTensor divides by 255 in float32 (a division, not a multiply by 1/255: the last bit
 * differs); Normalize then computes (x - mean) / std per channel in float32 (spec 2.8). */
#include "transforms.h"

/* img (H, W, C) uint8 -> out (C, H, W) float32 */
void af_img_to_tensor(const af_image *img, const float *mean, const float *std, float *out) {
    int H = img->height, W = img->width, C = img->channels;
    size_t HW = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        float *o = out + c * HW;
        const uint8_t *p = img->data + c;
        if (mean) {
            float m = mean[c], s = std[c];
            for (size_t k = 0; k < HW; k++) o[k] = ((float)p[k * C] / 255.0f - m) / s;
        } else {
            for (size_t k = 0; k < HW; k++) o[k] = (float)p[k * C] / 255.0f;
        }
    }
}
