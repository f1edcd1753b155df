/* Sobel edge maps for the hand detector.
 *
 * The published hand-assisted method does not state its exact edge pipeline, so the defaults are
 * OpenCV's conventions throughout (cv2.cvtColor, cv2.GaussianBlur, cv2.Sobel docs). Gray Y = (4899 R + 9617 G + 1868 B + 8192) >> 14 (cvtColor's
 * 8-bit fixed point), an optional 3x3 Gaussian blur [1,2,1]^T [1,2,1] / 16 (rounded half up, the
 * bit-exact 8-bit GaussianBlur for this kernel), cross-correlation with
 * Gx = [[-1,0,1],[-2,0,2],[-1,0,1]] and Gy = Gx^T under BORDER_REFLECT_101 (index -1 -> 1,
 * n -> n-2), then a magnitude saturated to uint8:
 *   L2        rne(sqrt(gx^2 + gy^2))                      (cv2.magnitude, then convertScaleAbs)
 *   L1        |gx| + |gy|
 *   HALF_ABS  rne(0.5 sat(|gx|) + 0.5 sat(|gy|))          (the OpenCV tutorial's addWeighted blend) */
#include <math.h>
#include <stdlib.h>

#include "../core/cpu.h"
#include "transforms.h"

static inline int reflect101(int i, int n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
    return i;
}

static inline uint8_t sat_u8(double v) {
    v = nearbyint(v);
    return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v;
}

/* src (H, W, C) -> dst (H, W, out_channels) */
AF_CPU_DISPATCH
af_status af_img_sobel(const af_image *src, af_sobel_magnitude magnitude, int blur, int out_channels, af_image *dst) {
    if (out_channels != 1 && out_channels != 3)
        return AF_FAIL(AF_ERR_VALUE, "sobel: out_channels must be 1 or 3, got %d", out_channels);
    if (magnitude < AF_SOBEL_L2 || magnitude > AF_SOBEL_HALF_ABS) return AF_FAIL(AF_ERR_VALUE, "sobel: unknown magnitude %d", magnitude);
    int H = src->height, W = src->width, C = src->channels;
    size_t n = (size_t)H * W;
    uint8_t *gray = malloc(n ? n : 1), *smooth = blur ? malloc(n ? n : 1) : NULL;
    if (!gray || (blur && !smooth)) {
        free(gray);
        free(smooth);
        return AF_FAIL(AF_ERR_OOM, "sobel: out of memory");
    }
    for (size_t k = 0; k < n; k++) {
        const uint8_t *px = src->data + k * C;
        gray[k] = C == 3 ? (uint8_t)((4899 * px[0] + 9617 * px[1] + 1868 * px[2] + 8192) >> 14) : px[0];
    }
    const uint8_t *g = gray;
    if (blur) {
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                int acc = 0;
                for (int di = -1; di <= 1; di++)
                    for (int dj = -1; dj <= 1; dj++)
                        acc += (2 - abs(di)) * (2 - abs(dj)) * gray[(size_t)reflect101(i + di, H) * W + reflect101(j + dj, W)];
                smooth[(size_t)i * W + j] = (uint8_t)((acc + 8) >> 4);
            }
        g = smooth;
    }
    af_status st = af_image_alloc(dst, H, W, out_channels);
    if (st == AF_OK) {
        for (int i = 0; i < H; i++) {
            const uint8_t *up = g + (size_t)reflect101(i - 1, H) * W, *mid = g + (size_t)i * W,
                          *down = g + (size_t)reflect101(i + 1, H) * W;
            for (int j = 0; j < W; j++) {
                int l = reflect101(j - 1, W), r = reflect101(j + 1, W);
                int gx = (up[r] - up[l]) + 2 * (mid[r] - mid[l]) + (down[r] - down[l]);
                int gy = (down[l] + 2 * down[j] + down[r]) - (up[l] + 2 * up[j] + up[r]);
                uint8_t v;
                if (magnitude == AF_SOBEL_L2) v = sat_u8(sqrt((double)gx * gx + (double)gy * gy));
                else if (magnitude == AF_SOBEL_L1) v = sat_u8(abs(gx) + abs(gy));
                else v = sat_u8(0.5 * sat_u8(abs(gx)) + 0.5 * sat_u8(abs(gy)));
                for (int c = 0; c < out_channels; c++) dst->data[((size_t)i * W + j) * out_channels + c] = v;
            }
        }
    }
    free(gray);
    free(smooth);
    return st;
}
