/* RandAugment (Cubuk et al., arXiv 1909.13719) with torchvision >= 0.12 semantics (torchvision/transforms/autoaugment.py):
 * the 14-op table in torchvision's order, float32 linspace magnitude tables over num_bins bins, one
 * uniform op draw per step, a fair coin for the sign of signed ops only, nearest interpolation and
 * fill 0 (torchvision's fill=None) for the geometric ops.
 *
 * torch.linspace on the CPU evaluates start + step*k (first half) and end - step*(steps-1-k) (second
 * half) with a fused multiply-add (measured against torch 2.x: a separately rounded product differs
 * at a few indices), so the tables use fmaf explicitly; the build's -ffp-contract=off does not touch
 * an explicit fmaf. */
#include <math.h>

#include "transforms.h"

const char *const af_randaugment_op_names[AF_RA_NUM_OPS] = {
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness",
    "Color", "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"};

/* torch.linspace(start, end, steps)[k] in float32 */
static float linspace_f32(double start, double end, int steps, int k) {
    float s = (float)start, e = (float)end;
    if (steps == 1) return s;
    float step = (e - s) / (float)(steps - 1);
    if (k < steps / 2) return fmaf(step, (float)k, s);
    return fmaf(-step, (float)(steps - 1 - k), e);
}

double af_randaugment_magnitude(int op, int bin, int num_bins, int h, int w, int *is_signed) {
    *is_signed = op >= AF_RA_SHEAR_X && op <= AF_RA_SHARPNESS;
    switch (op) {
    case AF_RA_SHEAR_X:
    case AF_RA_SHEAR_Y:
        return linspace_f32(0.0, 0.3, num_bins, bin);
    case AF_RA_TRANSLATE_X:
        return linspace_f32(0.0, 150.0 / 331.0 * w, num_bins, bin);
    case AF_RA_TRANSLATE_Y:
        return linspace_f32(0.0, 150.0 / 331.0 * h, num_bins, bin);
    case AF_RA_ROTATE:
        return linspace_f32(0.0, 30.0, num_bins, bin);
    case AF_RA_BRIGHTNESS:
    case AF_RA_COLOR:
    case AF_RA_CONTRAST:
    case AF_RA_SHARPNESS:
        return linspace_f32(0.0, 0.9, num_bins, bin);
    case AF_RA_POSTERIZE: /* 8 - round(k / ((num_bins - 1) / 4)), float32 division, half to even */
        return 8.0 - (double)nearbyintf((float)bin / (float)((num_bins - 1) / 4.0));
    case AF_RA_SOLARIZE:
        return linspace_f32(255.0, 0.0, num_bins, bin);
    }
    return 0.0; /* Identity, AutoContrast, Equalize: scalar tables */
}

af_status af_randaugment_apply_op(af_image *img, int op, double m, const uint8_t *fill) {
    af_image out;
    const double deg = 180.0 / 3.14159265358979323846;
    switch (op) {
    case AF_RA_IDENTITY:
        return AF_OK;
    case AF_RA_SHEAR_X: /* F.affine(shear=[degrees(atan(m)), 0], center=[0, 0]) */
        AF_TRY(af_img_affine(img, 0.0, 0.0, 0.0, 1.0, atan(m) * deg, 0.0, 1, 0.0, 0.0, 0, fill, &out));
        break;
    case AF_RA_SHEAR_Y:
        AF_TRY(af_img_affine(img, 0.0, 0.0, 0.0, 1.0, 0.0, atan(m) * deg, 1, 0.0, 0.0, 0, fill, &out));
        break;
    case AF_RA_TRANSLATE_X: /* F.affine(translate=[int(m), 0]): int() truncates toward zero */
    case AF_RA_TRANSLATE_Y: {
        /* whole pixels with nearest interpolation: a copy (af_img_translate says why it is exact) */
        double t = trunc(m), tx = op == AF_RA_TRANSLATE_X ? t : 0.0, ty = op == AF_RA_TRANSLATE_Y ? t : 0.0;
        if (fabs(t) < (double)(1 << 30) && img->height < (1 << 16) && img->width < (1 << 16)) /* NaN fails too */
            AF_TRY(af_img_translate(img, (int64_t)tx, (int64_t)ty, fill, &out));
        else
            AF_TRY(af_img_affine(img, 0.0, tx, ty, 1.0, 0.0, 0.0, 0, 0.0, 0.0, 0, fill, &out));
        break;
    }
    case AF_RA_ROTATE: /* F.rotate(m) is counter-clockwise: F.affine's angle -m */
        AF_TRY(af_img_affine(img, -m, 0.0, 0.0, 1.0, 0.0, 0.0, 0, 0.0, 0.0, 0, fill, &out));
        break;
    case AF_RA_BRIGHTNESS:
        af_img_adjust_brightness(img, 1.0 + m);
        return AF_OK;
    case AF_RA_COLOR:
        af_img_adjust_saturation(img, 1.0 + m);
        return AF_OK;
    case AF_RA_CONTRAST:
        af_img_adjust_contrast(img, 1.0 + m);
        return AF_OK;
    case AF_RA_SHARPNESS:
        return af_img_adjust_sharpness(img, 1.0 + m);
    case AF_RA_POSTERIZE:
        af_img_posterize(img, (int)m);
        return AF_OK;
    case AF_RA_SOLARIZE:
        af_img_solarize(img, m);
        return AF_OK;
    case AF_RA_AUTOCONTRAST:
        af_img_autocontrast(img);
        return AF_OK;
    case AF_RA_EQUALIZE:
        af_img_equalize(img);
        return AF_OK;
    default:
        return AF_FAIL(AF_ERR_VALUE, "RandAugment: unknown op %d", op);
    }
    af_image_free(img);
    *img = out;
    return AF_OK;
}

af_status af_randaugment(af_image *img, int num_ops, int magnitude, int num_bins, uint32_t op_mask,
                         const uint8_t *fill, af_rng *rng, int *sampled_ops, double *sampled_mags) {
    int ops[AF_RA_NUM_OPS], K = 0;
    for (int op = 0; op < AF_RA_NUM_OPS; op++)
        if (op_mask & (1u << op)) ops[K++] = op;
    if (K == 0) return AF_FAIL(AF_ERR_VALUE, "RandAugment: every op is excluded");
    if (num_bins < 2 || magnitude < 0 || magnitude >= num_bins)
        return AF_FAIL(AF_ERR_VALUE, "RandAugment: magnitude must be in [0, num_magnitude_bins), got %d of %d", magnitude,
                       num_bins);
    for (int k = 0; k < num_ops; k++) {
        int op = ops[af_rng_below(rng, (uint32_t)K)];
        int is_signed;
        double m = af_randaugment_magnitude(op, magnitude, num_bins, img->height, img->width, &is_signed);
        if (is_signed && af_rng_below(rng, 2)) m = -m;
        if (sampled_ops) sampled_ops[k] = op;
        if (sampled_mags) sampled_mags[k] = m;
        AF_TRY(af_randaugment_apply_op(img, op, m, fill));
    }
    return AF_OK;
}
