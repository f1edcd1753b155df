/* Geometry of interpolate (csrc/ops/interpolate.c), shared with a future interpolate.cu: plain C,
 * nvcc-clean. The formulas are PyTorch's (aten/src/ATen/native/UpSample.h), so that results match
 * torch.nn.functional.interpolate. */
#ifndef AF_OPS_INTERPOLATE_H
#define AF_OPS_INTERPOLATE_H

#include <math.h>
#include <stdint.h>

enum { AF_INTERP_BILINEAR = 0, AF_INTERP_BICUBIC = 1 };

/* Source step per output pixel. align_corners maps the corner pixels' centres onto each other;
 * otherwise a user-given scale_factor (given > 0) is used as is, else in / out. */
static inline double af_interp_scale(int64_t in, int64_t out, int align_corners, double given) {
    if (align_corners) return out > 1 ? (double)(in - 1) / (double)(out - 1) : 0.0;
    return given > 0 ? 1.0 / given : (double)in / (double)out;
}

/* Source coordinate of output index dst: pixel centres line up (half-pixel offset) unless
 * align_corners; bilinear clamps negative coordinates to 0, bicubic does not. */
static inline double af_interp_source(double scale, int64_t dst, int align_corners, int cubic) {
    if (align_corners) return scale * (double)dst;
    double src = scale * ((double)dst + 0.5) - 0.5;
    return (!cubic && src < 0) ? 0.0 : src;
}

/* Keys' cubic convolution weights (A = -0.75, as torch) of the 4 taps at floor(src) - 1 .. + 2,
 * t = src - floor(src). */
static inline void af_interp_cubic_weights(double t, double *w) {
    const double A = -0.75;
    double x1 = t + 1, x2 = t, x3 = 1 - t, x4 = 2 - t;
    w[0] = ((A * x1 - 5 * A) * x1 + 8 * A) * x1 - 4 * A;
    w[1] = ((A + 2) * x2 - (A + 3)) * x2 * x2 + 1;
    w[2] = ((A + 2) * x3 - (A + 3)) * x3 * x3 + 1;
    w[3] = ((A * x4 - 5 * A) * x4 + 8 * A) * x4 - 4 * A;
}

/* One output coordinate's taps along one dim: input indices (clamped to [0, n)) and weights.
 * Bilinear uses 2 taps (the second one repeats the first at the last pixel), bicubic 4. */
typedef struct af_interp_taps {
    int64_t idx[4];
    double w[4];
    int n;
} af_interp_taps;

static inline af_interp_taps af_interp_taps_at(int mode, double scale, int64_t dst, int64_t n, int align_corners) {
    af_interp_taps t = {{0, 0, 0, 0}, {0, 0, 0, 0}, 0};
    if (mode == AF_INTERP_BILINEAR) {
        double src = af_interp_source(scale, dst, align_corners, 0);
        int64_t i0 = (int64_t)src;
        if (i0 > n - 1) i0 = n - 1;
        double lambda = src - (double)i0;
        t.n = 2;
        t.idx[0] = i0;
        t.idx[1] = i0 < n - 1 ? i0 + 1 : i0;
        t.w[0] = 1 - lambda;
        t.w[1] = lambda;
        return t;
    }
    double src = af_interp_source(scale, dst, align_corners, 1);
    double fl = floor(src);
    af_interp_cubic_weights(src - fl, t.w);
    t.n = 4;
    for (int k = 0; k < 4; k++) {
        int64_t i = (int64_t)fl - 1 + k;
        t.idx[k] = i < 0 ? 0 : i > n - 1 ? n - 1 : i;
    }
    return t;
}

#endif
