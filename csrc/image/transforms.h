/* The image operations behind affectfer.transforms, each with explicit parameters (no randomness),
 * and the pipeline builder. Everything works on af_image (uint8 HWC, see image.h).
 *
 * Reference semantics: torchvision's tensor path (torchvision >= 0.12; conformance measured against
 * 0.29), torchvision/transforms/_functional_tensor.py pixel by pixel: photometric math is done in
 * float32 in torchvision's operation order, and the build uses -ffp-contract=off so nothing is
 * fused (a fused multiply-add would round differently from ATen's separate ops).
 *
 * Ops that change the image size write a new image into `dst` (which must be a zeroed or freed
 * af_image, distinct from src); the others work in place. */
#ifndef AF_IMAGE_TRANSFORMS_H
#define AF_IMAGE_TRANSFORMS_H

#include "image.h"

/* min(max(v, lo), hi) for floats, NaN giving lo as fminf(fmaxf(v, lo), hi) does. Written with
 * comparisons because GCC keeps fminf/fmaxf as library calls unless NaNs are ruled out
 * (-ffinite-math-only), and a call per pixel stops the loop vectorising. */
static inline float af_clampf(float v, float lo, float hi) {
    v = v > lo ? v : lo;
    return v < hi ? v : hi;
}

/* A 16-byte vector and a constant byte shuffle of it (pshufb where the CPU has it): GCC spells it
 * __builtin_shuffle (its __builtin_shufflevector needs GCC 12), clang __builtin_shufflevector. */
typedef uint8_t af_v16u8 __attribute__((vector_size(16)));
#if defined(__clang__)
#define AF_SHUFFLE16(v, ...) __builtin_shufflevector(v, v, __VA_ARGS__)
#else
#define AF_SHUFFLE16(v, ...) __builtin_shuffle(v, (af_v16u8){__VA_ARGS__})
#endif

/* ---- geometry.c (resize: resize.c) ---- */
/* Bilinear resize to oh x ow (align_corners=False). antialias=1 applies torchvision's antialiased
 * (Pillow-style triangle filter) path when downscaling, the default of torchvision >= 0.17;
 * antialias=0 is plain 4-tap bilinear (torchvision < 0.15 on tensors). Fixed point (14-bit weights,
 * integer sums; resize.c says how far from torchvision's float32 result that can be: within 1). */
af_status af_img_resize(const af_image *src, int oh, int ow, int antialias, af_image *dst);
/* torchvision's output size for Resize(size) with an int size: the shorter edge becomes `size`, the
 * longer int(size * long / short), both capped by max_size (0 = none). */
void af_resize_output_size(int h, int w, int size, int max_size, int *oh, int *ow);
/* Crop rows [top, top+h), columns [left, left+w); parts outside the source are filled with `fill`
 * (torchvision's F.crop pads with zeros outside). */
af_status af_img_crop(const af_image *src, int top, int left, int h, int w, const uint8_t fill[3], af_image *dst);
/* torchvision CenterCrop: zero padding when the crop is larger, top = round((H - h) / 2) half-even. */
af_status af_img_center_crop(const af_image *src, int h, int w, af_image *dst);
typedef enum { AF_INTERP_NEAREST = 0, AF_INTERP_BILINEAR = 1 } af_interpolation;
typedef enum { AF_PAD_CONSTANT = 0, AF_PAD_EDGE = 1, AF_PAD_REFLECT = 2, AF_PAD_SYMMETRIC = 3 } af_pad_mode;
af_status af_img_pad(const af_image *src, int left, int top, int right, int bottom, af_pad_mode mode,
                     const uint8_t fill[3], af_image *dst);
void af_img_hflip(af_image *img);
void af_img_vflip(af_image *img);
/* torchvision F.affine / F.rotate on the tensor path (_functional_tensor.affine, grid_sample): angle in degrees (clockwise
 * positive on screen, like F.affine), translate in pixels, scale, shear in degrees, center in pixel
 * coordinates (has_center=0: the image center). interpolation: af_interpolation. `fill`
 * NULL = torchvision's fill=None (outside pixels 0, no mask); otherwise torchvision's mask rule (_apply_grid_transform). */
/* out(i, j) = src(i - dy, j - dx), fill (NULL: 0) outside: af_img_affine's nearest result for a
 * translation by whole pixels, bit for bit, as a copy. Sides below 2^16. */
af_status af_img_translate(const af_image *src, int64_t dx, int64_t dy, const uint8_t *fill, af_image *dst);
af_status af_img_affine(const af_image *src, double angle, double tx, double ty, double scale, double shear_x,
                        double shear_y, int has_center, double cx, double cy, int interpolation,
                        const uint8_t *fill, af_image *dst);

/* ---- color.c (in place) ---- */
/* Factors are doubles like torchvision's Python floats: r = f32(factor), 1 - r = f32(1.0 - factor). */
void af_img_adjust_brightness(af_image *img, double factor);
void af_img_adjust_saturation(af_image *img, double factor); /* RandAugment's Color */
void af_img_adjust_contrast(af_image *img, double factor);
void af_img_adjust_hue(af_image *img, double hue); /* hue in [-0.5, 0.5] */
af_status af_img_adjust_sharpness(af_image *img, double factor);
/* Grayscale with torchvision's float32 weights (0.2989, 0.587, 0.114), truncated; writes 1 channel
 * (out_channels 1) or the gray value replicated into 3 channels. */
af_status af_img_grayscale(const af_image *src, int out_channels, af_image *dst);
/* In place on the single channel of a gray source (what a 1-channel decode gives): each value v becomes
 * the Grayscale of the RGB pixel (v, v, v), so the result is bit-identical to decoding to RGB and
 * then af_img_grayscale(src, 1, ...). */
void af_img_grayscale_of_gray(af_image *img);
void af_img_posterize(af_image *img, int bits);
void af_img_solarize(af_image *img, double threshold);
void af_img_autocontrast(af_image *img);
void af_img_equalize(af_image *img);
void af_img_invert(af_image *img);

/* ---- randaugment.c ---- */
enum {
    AF_RA_IDENTITY, AF_RA_SHEAR_X, AF_RA_SHEAR_Y, AF_RA_TRANSLATE_X, AF_RA_TRANSLATE_Y, AF_RA_ROTATE,
    AF_RA_BRIGHTNESS, AF_RA_COLOR, AF_RA_CONTRAST, AF_RA_SHARPNESS, AF_RA_POSTERIZE, AF_RA_SOLARIZE,
    AF_RA_AUTOCONTRAST, AF_RA_EQUALIZE, AF_RA_NUM_OPS
};
extern const char *const af_randaugment_op_names[AF_RA_NUM_OPS];
/* The magnitude of op `op` at bin `bin` of `num_bins` for an image of h x w (torchvision's
 * _augmentation_space: float32 linspace tables); *is_signed tells whether a random sign applies. */
double af_randaugment_magnitude(int op, int bin, int num_bins, int h, int w, int *is_signed);
/* Applies one RandAugment op with an already signed magnitude (nearest interpolation, fill 0 or
 * `fill` when not NULL). May replace *img. */
af_status af_randaugment_apply_op(af_image *img, int op, double magnitude, const uint8_t *fill);
/* The policy: num_ops draws over the ops whose bit is set in op_mask (in table order). When
 * sampled_ops/sampled_mags are not NULL they receive the chosen ops and signed magnitudes. */
af_status af_randaugment(af_image *img, int num_ops, int magnitude, int num_bins, uint32_t op_mask,
                         const uint8_t *fill, af_rng *rng, int *sampled_ops, double *sampled_mags);

/* ---- erase.c ---- */
/* RandomErasing's box sampler (torchvision RandomErasing.get_params): returns 1 and the box when one of 10 attempts fits,
 * 0 when all are rejected (the image stays unchanged). */
int af_erasing_params(int H, int W, double scale_lo, double scale_hi, double ratio_lo, double ratio_hi, af_rng *rng,
                      int *top, int *left, int *h, int *w);
/* RandomResizedCrop's sampler (torchvision RandomResizedCrop.get_params), with the centered fallback. */
void af_resized_crop_params(int H, int W, double scale_lo, double scale_hi, double ratio_lo, double ratio_hi,
                            af_rng *rng, int *top, int *left, int *h, int *w);
/* Erase a box of a float32 CHW tensor with per-channel values, or N(0,1) noise when random. */
void af_erase_chw(float *x, int C, int H, int W, int top, int left, int h, int w, const float *values, int random,
                  af_rng *rng);
void af_img_erase(af_image *img, int top, int left, int h, int w, const uint8_t *values);

/* ---- edges.c ---- */
typedef enum { AF_SOBEL_L2 = 0, AF_SOBEL_L1 = 1, AF_SOBEL_HALF_ABS = 2 } af_sobel_magnitude;
/* Sobel edge map of the gray image (edges.c): OpenCV gray conversion, optional 3x3 Gaussian
 * blur, OpenCV's reflect-101 border, magnitude saturated to uint8; 1 or 3 (replicated) channels. */
af_status af_img_sobel(const af_image *src, af_sobel_magnitude magnitude, int blur, int out_channels, af_image *dst);

/* ---- normalize.c ---- */
/* uint8 HWC -> float32 CHW: x / 255 (a float32 division, like ToTensor). */
void af_img_to_tensor(const af_image *img, float *out);
/* Both at once (ToTensor then Normalize, bit-identical to the two steps); mean/std (C) or both NULL. */
void af_img_to_tensor_normalize(const af_image *img, float *out, const float *mean, const float *std);
/* In place on float32 CHW: (x - mean[c]) / std[c] in float32 (Normalize). */
void af_normalize_chw(float *x, int C, int H, int W, const float *mean, const float *std);

/* ---- pipeline.c ---- */
/* Parameter checks shared by the pipeline builder and the functional ops: each fails with
 * AF_ERR_VALUE naming the op, the parameter and the offending value. */
#define AF_IMAGE_MAX_SIDE 65536
af_status af_check_int(const char *op, const char *what, double v, double lo, double hi);
af_status af_check_range(const char *op, const char *what, double v, double lo, double hi);
af_status af_check_size(const char *op, double h, double w); /* integers in [1, AF_IMAGE_MAX_SIDE] */
af_status af_check_fill(const char *op, const double *rgb);  /* 3 integers in [0, 255] */
af_status af_check_channels(const char *op, const char *what, double v, int allow_same); /* 1, 3 (or 0) */
af_status af_check_finite(const char *op, const double *p, int n);
af_status af_check_sobel(const char *op, double magnitude, double blur, double out_channels);
af_status af_check_mean_std(const char *op, int n, const double *mean, const double *std); /* finite, std != 0 in float32 */

/* Stage kinds of a pipeline spec. A spec is a flat float64 array of stages, each
 * [kind, nparams, params...]; each kind's parameter layout is defined once in pipeline.c
 * (af_pipeline_stage_info, exported as affectfer._C.image_stages) and filled in by name by
 * affectfer.transforms. af_pipeline_build validates everything. */
enum {
    AF_STAGE_RESIZE = 1, AF_STAGE_CENTER_CROP, AF_STAGE_RANDOM_CROP, AF_STAGE_RANDOM_RESIZED_CROP,
    AF_STAGE_HFLIP, AF_STAGE_VFLIP, AF_STAGE_COLOR_JITTER, AF_STAGE_GRAYSCALE, AF_STAGE_RANDOM_ERASING,
    AF_STAGE_RANDAUGMENT, AF_STAGE_SOBEL, AF_STAGE_TO_TENSOR, AF_STAGE_NORMALIZE, AF_STAGE_RANDOM_AFFINE,
    AF_STAGE_RANDOM_APPLY, AF_STAGE_KIND_END
};
af_status af_pipeline_build(const double *spec, int64_t n, af_pipeline **out);
/* Name and parameter layout (space-separated names; a trailing "name..." takes the rest) of stage
 * kind `kind`; returns 0 for an unused id. */
int af_pipeline_stage_info(int kind, const char **name, const char **params);
void af_pipeline_free(af_pipeline *p);

#endif
