/* Transform pipelines: what affectfer.transforms.Compose compiles into.
 *
 * A pipeline is an immutable array of stages built once from a flat float64 spec
 * ([kind, nparams, params...] per stage, produced by affectfer.transforms), so loader threads can
 * share it. Running it walks the uint8 stages on the image (replacing the image when the size
 * changes), then, after a ToTensor stage, the float32 stages (Normalize, RandomErasing) on the CHW
 * output. Every random draw comes from the af_rng passed in, in stage order, so one (seed, stream)
 * always gives the same result. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/tensor.h"
#include "transforms.h"

#define AF_STAGE_MAX_PARAMS 20
#define AF_PIPELINE_MAX_STAGES 64

typedef struct {
    int kind;
    int nparams;
    double p[AF_STAGE_MAX_PARAMS];
} af_stage;

struct af_pipeline {
    int nstages;
    int to_tensor; /* index of the ToTensor stage, or -1 */
    af_stage stages[];
};

/* Each kind's parameter layout, in spec order: the one definition (exported to Python as
 * affectfer._C.image_stages, from which affectfer.transforms builds specs by name). A trailing
 * "name..." takes the rest of the stage's parameters. Notes on the meanings:
 *   Resize            width 0: the shorter edge becomes `height`, capped by max_size (0 = none)
 *   RandomCrop        padding_mode: af_pad_mode
 *   ColorJitter       an op is off when its range is [1, 1], or [0, 0] for hue
 *   Grayscale         out_channels 0 = as many as the input
 *   RandAugment       op_mask bit i = op i of the table
 *   SobelEdges        magnitude: af_sobel_magnitude
 *   RandomAffine      translate as fractions of the size; interpolation: af_interpolation
 *   RandomApply       the next `count` stages run iff u <= p (torchvision RandomApply); they must keep
 *                     the image size
 *   Normalize         channels C, then mean[0..C) and std[0..C)    (after ToTensor)
 *   RandomErasing     random 1: N(0, 1) noise, else nvalues values (after ToTensor on the float
 *                     tensor, or before it on uint8 with 0..255 values) */
static const struct {
    const char *name;
    int min_params, max_params;
    const char *params;
} stage_info[AF_STAGE_KIND_END] = {
    [AF_STAGE_RESIZE] = {"Resize", 4, 4, "height width max_size antialias"},
    [AF_STAGE_CENTER_CROP] = {"CenterCrop", 2, 2, "height width"},
    [AF_STAGE_RANDOM_CROP] = {"RandomCrop", 11, 11,
                              "height width pad_left pad_top pad_right pad_bottom pad_if_needed padding_mode fill_r fill_g fill_b"},
    [AF_STAGE_RANDOM_RESIZED_CROP] = {"RandomResizedCrop", 7, 7, "height width scale_lo scale_hi ratio_lo ratio_hi antialias"},
    [AF_STAGE_HFLIP] = {"RandomHorizontalFlip", 1, 1, "p"},
    [AF_STAGE_VFLIP] = {"RandomVerticalFlip", 1, 1, "p"},
    [AF_STAGE_COLOR_JITTER] = {"ColorJitter", 8, 8,
                               "brightness_lo brightness_hi contrast_lo contrast_hi saturation_lo saturation_hi hue_lo hue_hi"},
    [AF_STAGE_GRAYSCALE] = {"Grayscale", 2, 2, "out_channels p"},
    [AF_STAGE_RANDAUGMENT] = {"RandAugment", 8, 8, "num_ops magnitude num_bins op_mask has_fill fill_r fill_g fill_b"},
    [AF_STAGE_SOBEL] = {"SobelEdges", 3, 3, "magnitude blur out_channels"},
    [AF_STAGE_RANDOM_ERASING] = {"RandomErasing", 7, 10, "p scale_lo scale_hi ratio_lo ratio_hi random nvalues values..."},
    [AF_STAGE_RANDOM_AFFINE] = {"RandomAffine", 17, 17,
                                "degrees_lo degrees_hi translate_x translate_y scale_lo scale_hi shear_x_lo shear_x_hi "
                                "shear_y_lo shear_y_hi interpolation fill_r fill_g fill_b has_center center_x center_y"},
    [AF_STAGE_RANDOM_APPLY] = {"RandomApply", 2, 2, "p count"},
    [AF_STAGE_TO_TENSOR] = {"ToTensor", 0, 0, ""},
    [AF_STAGE_NORMALIZE] = {"Normalize", 3, 7, "channels mean_std..."},
};

int af_pipeline_stage_info(int kind, const char **name, const char **params) {
    if (kind < 1 || kind >= AF_STAGE_KIND_END || !stage_info[kind].name) return 0;
    *name = stage_info[kind].name;
    *params = stage_info[kind].params;
    return 1;
}

static int is_int(double v, double lo, double hi) { return v == floor(v) && v >= lo && v <= hi; }

/* ---- parameter checks, shared with the functional ops (affectfer._C.image_op) ---- */

af_status af_check_int(const char *op, const char *what, double v, double lo, double hi) {
    if (is_int(v, lo, hi)) return AF_OK;
    return AF_FAIL(AF_ERR_VALUE, "%s: %s must be an integer in [%g, %g], got %.10g", op, what, lo, hi, v);
}

af_status af_check_range(const char *op, const char *what, double v, double lo, double hi) {
    if (v >= lo && v <= hi) return AF_OK;
    return AF_FAIL(AF_ERR_VALUE, "%s: %s must be in [%g, %g], got %.10g", op, what, lo, hi, v);
}

af_status af_check_size(const char *op, double h, double w) {
    if (is_int(h, 1, AF_IMAGE_MAX_SIDE) && is_int(w, 1, AF_IMAGE_MAX_SIDE)) return AF_OK;
    return AF_FAIL(AF_ERR_VALUE, "%s: size must be positive integers up to %d, got (%.10g, %.10g)", op, AF_IMAGE_MAX_SIDE, h, w);
}

af_status af_check_fill(const char *op, const double *rgb) {
    for (int c = 0; c < 3; c++) AF_TRY(af_check_int(op, "fill", rgb[c], 0, 255));
    return AF_OK;
}

af_status af_check_channels(const char *op, const char *what, double v, int allow_same) {
    if (v == 1 || v == 3 || (allow_same && v == 0)) return AF_OK;
    return AF_FAIL(AF_ERR_VALUE, "%s: %s must be 1 or 3, got %.10g", op, what, v);
}

af_status af_check_finite(const char *op, const double *p, int n) {
    for (int k = 0; k < n; k++)
        if (!isfinite(p[k])) return AF_FAIL(AF_ERR_VALUE, "%s: parameter %d must be finite, got %.10g", op, k, p[k]);
    return AF_OK;
}

af_status af_check_sobel(const char *op, double magnitude, double blur, double out_channels) {
    AF_TRY(af_check_int(op, "magnitude", magnitude, AF_SOBEL_L2, AF_SOBEL_HALF_ABS));
    AF_TRY(af_check_int(op, "blur", blur, 0, 1));
    return af_check_channels(op, "out_channels", out_channels, 0);
}

af_status af_check_mean_std(const char *op, int n, const double *mean, const double *std) {
    AF_TRY(af_check_finite(op, mean, n));
    AF_TRY(af_check_finite(op, std, n));
    for (int c = 0; c < n; c++)
        if ((float)std[c] == 0.0f) return AF_FAIL(AF_ERR_VALUE, "%s: std evaluated to zero, leading to division by zero", op);
    return AF_OK;
}

static af_status check_stage(const af_stage *s, int after_tensor) {
    const char *name = stage_info[s->kind].name;
    const double *p = s->p;
    int n = s->nparams;
    switch (s->kind) {
    case AF_STAGE_RESIZE:
        AF_TRY(af_check_int(name, "size", p[0], 1, AF_IMAGE_MAX_SIDE));
        AF_TRY(af_check_int(name, "width", p[1], 0, AF_IMAGE_MAX_SIDE));
        AF_TRY(af_check_int(name, "max_size", p[2], 0, AF_IMAGE_MAX_SIDE));
        break;
    case AF_STAGE_CENTER_CROP:
        AF_TRY(af_check_size(name, p[0], p[1]));
        break;
    case AF_STAGE_RANDOM_CROP:
        AF_TRY(af_check_size(name, p[0], p[1]));
        for (int k = 2; k < 6; k++) AF_TRY(af_check_int(name, "padding", p[k], 0, AF_IMAGE_MAX_SIDE));
        AF_TRY(af_check_int(name, "padding_mode", p[7], AF_PAD_CONSTANT, AF_PAD_SYMMETRIC));
        AF_TRY(af_check_fill(name, p + 8));
        break;
    case AF_STAGE_RANDOM_RESIZED_CROP:
        AF_TRY(af_check_size(name, p[0], p[1]));
        if (!(p[2] > 0 && p[2] <= p[3] && p[3] < 1e30) || !(p[4] > 0 && p[4] <= p[5] && p[5] < 1e30))
            return AF_FAIL(AF_ERR_VALUE, "RandomResizedCrop: scale and ratio must be positive (lo, hi) with lo <= hi");
        break;
    case AF_STAGE_HFLIP:
    case AF_STAGE_VFLIP:
        AF_TRY(af_check_range(name, "p", p[0], 0, 1));
        break;
    case AF_STAGE_COLOR_JITTER:
        for (int k = 0; k < 3; k++)
            if (!(p[2 * k] >= 0 && p[2 * k] <= p[2 * k + 1] && isfinite(p[2 * k + 1])))
                return AF_FAIL(AF_ERR_VALUE, "ColorJitter: brightness, contrast and saturation ranges must be 0 <= lo <= hi");
        if (!(p[6] >= -0.5 && p[6] <= p[7] && p[7] <= 0.5))
            return AF_FAIL(AF_ERR_VALUE, "ColorJitter: hue range must be -0.5 <= lo <= hi <= 0.5");
        break;
    case AF_STAGE_GRAYSCALE:
        AF_TRY(af_check_channels(name, "num_output_channels", p[0], 1));
        AF_TRY(af_check_range(name, "p", p[1], 0, 1));
        break;
    case AF_STAGE_RANDAUGMENT:
        AF_TRY(af_check_int(name, "num_ops", p[0], 0, 64));
        if (!is_int(p[2], 2, 1 << 16) || !is_int(p[1], 0, p[2] - 1))
            return AF_FAIL(AF_ERR_VALUE, "RandAugment: magnitude must be in [0, num_magnitude_bins) and num_magnitude_bins >= 2");
        if (!is_int(p[3], 1, (1 << AF_RA_NUM_OPS) - 1)) return AF_FAIL(AF_ERR_VALUE, "RandAugment: every op is excluded");
        AF_TRY(af_check_int(name, "has_fill", p[4], 0, 1));
        AF_TRY(af_check_fill(name, p + 5));
        break;
    case AF_STAGE_RANDOM_AFFINE:
        AF_TRY(af_check_finite(name, p, 17));
        if (!(p[0] <= p[1]) || !(p[4] > 0 && p[4] <= p[5]) || !(p[6] <= p[7]) || !(p[8] <= p[9]))
            return AF_FAIL(AF_ERR_VALUE, "RandomAffine: degrees, scale and shear ranges must be (min, max), scale positive");
        if (!(p[2] >= 0 && p[2] <= 1 && p[3] >= 0 && p[3] <= 1))
            return AF_FAIL(AF_ERR_VALUE, "RandomAffine: translate fractions must be in [0, 1]");
        AF_TRY(af_check_int(name, "interpolation", p[10], AF_INTERP_NEAREST, AF_INTERP_BILINEAR));
        AF_TRY(af_check_fill(name, p + 11));
        AF_TRY(af_check_int(name, "has_center", p[14], 0, 1));
        break;
    case AF_STAGE_RANDOM_APPLY:
        AF_TRY(af_check_range(name, "p", p[0], 0, 1));
        AF_TRY(af_check_int(name, "count", p[1], 0, AF_PIPELINE_MAX_STAGES));
        return AF_OK; /* allowed on either side of ToTensor; its stages are checked where they stand */
    case AF_STAGE_SOBEL:
        AF_TRY(af_check_sobel(name, p[0], p[1], p[2]));
        break;
    case AF_STAGE_RANDOM_ERASING: {
        AF_TRY(af_check_range(name, "p", p[0], 0, 1));
        if (!(p[1] >= 0 && p[1] <= p[2] && p[2] <= 1)) return AF_FAIL(AF_ERR_VALUE, "RandomErasing: scale must be 0 <= lo <= hi <= 1");
        if (!(p[3] > 0 && p[3] <= p[4] && p[4] < 1e30)) return AF_FAIL(AF_ERR_VALUE, "RandomErasing: ratio must be 0 < lo <= hi");
        if (!is_int(p[5], 0, 1) || !is_int(p[6], 0, 3) || n != 7 + (int)p[6] || (p[5] == 0 && p[6] == 0))
            return AF_FAIL(AF_ERR_VALUE, "RandomErasing: value must be 'random' or 1 or C numbers");
        int nvalues = (int)p[6];
        if (!after_tensor) {
            if (p[5] == 1) return AF_FAIL(AF_ERR_VALUE, "RandomErasing: value='random' needs a float tensor (put it after ToTensor)");
            for (int k = 0; k < nvalues; k++)
                if (!is_int(p[7 + k], 0, 255))
                    return AF_FAIL(AF_ERR_VALUE, "RandomErasing: before ToTensor, values must be integers in [0, 255]");
        }
        return AF_OK;
    }
    case AF_STAGE_TO_TENSOR:
        if (after_tensor) return AF_FAIL(AF_ERR_VALUE, "ToTensor: the pipeline already converted to a tensor");
        return AF_OK;
    case AF_STAGE_NORMALIZE: {
        if (!after_tensor) return AF_FAIL(AF_ERR_VALUE, "Normalize: must come after ToTensor");
        if (!is_int(p[0], 1, 3)) return AF_FAIL(AF_ERR_VALUE, "Normalize: mean and std need 1 or 3 values");
        int C = (int)p[0]; /* only after the range check: converting an out-of-range double is undefined */
        if (n != 1 + 2 * C) return AF_FAIL(AF_ERR_VALUE, "Normalize: mean and std need 1 or 3 values");
        AF_TRY(af_check_mean_std(name, C, p + 1, p + 1 + C));
        return AF_OK;
    }
    }
    if (after_tensor) return AF_FAIL(AF_ERR_VALUE, "%s: works on uint8 images and must come before ToTensor", name);
    return AF_OK;
}

static void stage_shape(const af_stage *s, int *C, int *H, int *W);

af_status af_pipeline_build(const double *spec, int64_t n, af_pipeline **out) {
    *out = NULL;
    af_stage stages[AF_PIPELINE_MAX_STAGES];
    int nstages = 0, to_tensor = -1;
    int64_t pos = 0;
    while (pos < n) {
        if (nstages == AF_PIPELINE_MAX_STAGES) return AF_FAIL(AF_ERR_VALUE, "pipeline: at most %d stages", AF_PIPELINE_MAX_STAGES);
        if (pos + 2 > n) return AF_FAIL(AF_ERR_VALUE, "pipeline: truncated spec at stage %d", nstages);
        double kind = spec[pos], np = spec[pos + 1];
        if (!is_int(kind, 1, AF_STAGE_KIND_END - 1) || !stage_info[(int)kind].name)
            return AF_FAIL(AF_ERR_VALUE, "pipeline: stage %d has an unknown kind %g", nstages, kind);
        af_stage *s = &stages[nstages];
        s->kind = (int)kind;
        if (!is_int(np, stage_info[s->kind].min_params, stage_info[s->kind].max_params) || pos + 2 + (int64_t)np > n)
            return AF_FAIL(AF_ERR_VALUE, "pipeline: %s takes %d to %d parameters, got %g", stage_info[s->kind].name,
                           stage_info[s->kind].min_params, stage_info[s->kind].max_params, np);
        s->nparams = (int)np;
        memset(s->p, 0, sizeof(s->p));
        for (int k = 0; k < s->nparams; k++) {
            s->p[k] = spec[pos + 2 + k];
            if (isnan(s->p[k])) return AF_FAIL(AF_ERR_VALUE, "pipeline: %s has a NaN parameter", stage_info[s->kind].name);
        }
        AF_TRY(check_stage(s, to_tensor >= 0));
        if (s->kind == AF_STAGE_TO_TENSOR) to_tensor = nstages;
        nstages++;
        pos += 2 + s->nparams;
    }
    /* RandomApply spans: inside the pipeline, no ToTensor, no nested RandomApply, sizes unchanged */
    for (int k = 0; k < nstages; k++) {
        if (stages[k].kind != AF_STAGE_RANDOM_APPLY) continue;
        int count = (int)stages[k].p[1];
        if (k + count > nstages - 1)
            return AF_FAIL(AF_ERR_VALUE, "RandomApply: covers %d stages but only %d follow", count, nstages - k - 1);
        for (int j = k + 1; j <= k + count; j++) {
            int C = 3, H = 37, W = 41;
            stage_shape(&stages[j], &C, &H, &W);
            if (stages[j].kind == AF_STAGE_TO_TENSOR || stages[j].kind == AF_STAGE_RANDOM_APPLY || C != 3 || H != 37 || W != 41)
                return AF_FAIL(AF_ERR_VALUE, "RandomApply: %s changes the image size or type; only size-preserving "
                               "transforms can be applied at random", stage_info[stages[j].kind].name);
        }
    }
    af_pipeline *p = malloc(sizeof(af_pipeline) + sizeof(af_stage) * (size_t)nstages);
    if (!p) return AF_FAIL(AF_ERR_OOM, "pipeline: out of memory");
    p->nstages = nstages;
    p->to_tensor = to_tensor;
    memcpy(p->stages, stages, sizeof(af_stage) * (size_t)nstages);
    *out = p;
    return AF_OK;
}

void af_pipeline_free(af_pipeline *p) { free(p); }

int af_pipeline_has_to_tensor(const af_pipeline *p) { return p && p->to_tensor >= 0; }

/* Size after a uint8 stage, given the size before it (no randomness changes sizes). */
static void stage_shape(const af_stage *s, int *C, int *H, int *W) {
    const double *p = s->p;
    switch (s->kind) {
    case AF_STAGE_RESIZE:
        if (p[1] == 0) af_resize_output_size(*H, *W, (int)p[0], (int)p[2], H, W);
        else {
            *H = (int)p[0];
            *W = (int)p[1];
        }
        break;
    case AF_STAGE_CENTER_CROP:
    case AF_STAGE_RANDOM_CROP:
    case AF_STAGE_RANDOM_RESIZED_CROP:
        *H = (int)p[0];
        *W = (int)p[1];
        break;
    case AF_STAGE_GRAYSCALE:
        if (p[0] != 0) *C = (int)p[0];
        break;
    case AF_STAGE_SOBEL:
        *C = (int)p[2];
        break;
    }
}

af_status af_pipeline_output_shape(const af_pipeline *p, int in_h, int in_w, int *channels, int *height, int *width) {
    if (!af_pipeline_has_to_tensor(p)) return AF_FAIL(AF_ERR_VALUE, "pipeline: no ToTensor stage, so no tensor output");
    if (in_h < 1 || in_w < 1) return AF_FAIL(AF_ERR_VALUE, "pipeline: the image is empty (%d x %d)", in_h, in_w);
    int C = 3, H = in_h, W = in_w;
    for (int k = 0; k < p->to_tensor; k++) stage_shape(&p->stages[k], &C, &H, &W);
    *channels = C;
    *height = H;
    *width = W;
    return AF_OK;
}

/* Replace *img by *next (the stage's new image). */
static void swap_in(af_image *img, af_image *next) {
    af_image_free(img);
    *img = *next;
}

static af_status run_random_crop(const af_stage *s, af_image *img, af_rng *rng) {
    const double *p = s->p;
    int th = (int)p[0], tw = (int)p[1];
    uint8_t fill[3] = {(uint8_t)p[8], (uint8_t)p[9], (uint8_t)p[10]};
    af_pad_mode mode = (af_pad_mode)(int)p[7];
    af_image tmp;
    int l = (int)p[2], t = (int)p[3], r = (int)p[4], b = (int)p[5];
    if (l || t || r || b) {
        AF_TRY(af_img_pad(img, l, t, r, b, mode, fill, &tmp));
        swap_in(img, &tmp);
    }
    /* pad_if_needed: torchvision pads the width first, then the height, on both sides */
    if (p[6] != 0 && img->width < tw) {
        int d = tw - img->width;
        AF_TRY(af_img_pad(img, d, 0, d, 0, mode, fill, &tmp));
        swap_in(img, &tmp);
    }
    if (p[6] != 0 && img->height < th) {
        int d = th - img->height;
        AF_TRY(af_img_pad(img, 0, d, 0, d, mode, fill, &tmp));
        swap_in(img, &tmp);
    }
    if (img->height < th || img->width < tw)
        return AF_FAIL(AF_ERR_VALUE, "RandomCrop: required crop size (%d, %d) is larger than the input image (%d, %d)", th, tw,
                       img->height, img->width);
    int top = img->height == th ? 0 : (int)af_rng_below(rng, (uint32_t)(img->height - th + 1));
    int left = img->width == tw ? 0 : (int)af_rng_below(rng, (uint32_t)(img->width - tw + 1));
    AF_TRY(af_img_crop(img, top, left, th, tw, NULL, &tmp));
    swap_in(img, &tmp);
    return AF_OK;
}

/* ColorJitter (torchvision ColorJitter.get_params and forward): a random order of the four ops, every enabled factor drawn (in the order
 * brightness, contrast, saturation, hue, as torchvision's get_params) as a float32 uniform, then the
 * enabled ops applied in that order. */
static af_status run_color_jitter(const af_stage *s, af_image *img, af_rng *rng) {
    const double *p = s->p;
    int order[4] = {0, 1, 2, 3};
    for (int k = 3; k > 0; k--) { /* Fisher-Yates */
        int j = (int)af_rng_below(rng, (uint32_t)(k + 1));
        int t = order[k];
        order[k] = order[j];
        order[j] = t;
    }
    double factor[4]; /* float32 draws, used as Python floats (.item()) */
    int enabled[4];
    for (int k = 0; k < 4; k++) {
        double lo = p[2 * k], hi = p[2 * k + 1], center = k == 3 ? 0.0 : 1.0;
        enabled[k] = !(lo == center && hi == center);
        if (enabled[k]) factor[k] = (double)((float)lo + af_rng_uniform_f32(rng) * ((float)hi - (float)lo));
    }
    for (int k = 0; k < 4; k++) {
        int op = order[k];
        if (!enabled[op]) continue;
        if (op == 0) af_img_adjust_brightness(img, factor[0]);
        else if (op == 1) af_img_adjust_contrast(img, factor[1]);
        else if (op == 2) af_img_adjust_saturation(img, factor[2]);
        else af_img_adjust_hue(img, factor[3]);
    }
    return AF_OK;
}

static af_status run_uint8_stage(const af_stage *s, af_image *img, af_rng *rng) {
    const double *p = s->p;
    af_image tmp;
    switch (s->kind) {
    case AF_STAGE_RESIZE: {
        int oh = (int)p[0], ow = (int)p[1];
        if (ow == 0) af_resize_output_size(img->height, img->width, (int)p[0], (int)p[2], &oh, &ow);
        if (oh == img->height && ow == img->width) return AF_OK; /* torchvision returns the input as is */
        AF_TRY(af_img_resize(img, oh, ow, p[3] != 0, &tmp));
        swap_in(img, &tmp);
        return AF_OK;
    }
    case AF_STAGE_CENTER_CROP:
        AF_TRY(af_img_center_crop(img, (int)p[0], (int)p[1], &tmp));
        swap_in(img, &tmp);
        return AF_OK;
    case AF_STAGE_RANDOM_CROP:
        return run_random_crop(s, img, rng);
    case AF_STAGE_RANDOM_RESIZED_CROP: {
        if (img->height < 1 || img->width < 1) return AF_FAIL(AF_ERR_VALUE, "RandomResizedCrop: the image is empty");
        int top, left, h, w;
        af_resized_crop_params(img->height, img->width, p[2], p[3], p[4], p[5], rng, &top, &left, &h, &w);
        af_image crop;
        AF_TRY(af_img_crop(img, top, left, h, w, NULL, &crop));
        af_status st = af_img_resize(&crop, (int)p[0], (int)p[1], p[6] != 0, &tmp);
        af_image_free(&crop);
        if (st != AF_OK) return st;
        swap_in(img, &tmp);
        return AF_OK;
    }
    case AF_STAGE_HFLIP:
        if (af_rng_uniform(rng) < p[0]) af_img_hflip(img);
        return AF_OK;
    case AF_STAGE_VFLIP:
        if (af_rng_uniform(rng) < p[0]) af_img_vflip(img);
        return AF_OK;
    case AF_STAGE_COLOR_JITTER:
        return run_color_jitter(s, img, rng);
    case AF_STAGE_GRAYSCALE: {
        /* RandomGrayscale draws its coin; Grayscale is the p = 1 case */
        if (p[1] < 1.0 && !(af_rng_uniform(rng) < p[1])) return AF_OK;
        AF_TRY(af_img_grayscale(img, p[0] == 0 ? img->channels : (int)p[0], &tmp));
        swap_in(img, &tmp);
        return AF_OK;
    }
    case AF_STAGE_RANDAUGMENT: {
        uint8_t fill[3] = {(uint8_t)p[5], (uint8_t)p[6], (uint8_t)p[7]};
        return af_randaugment(img, (int)p[0], (int)p[1], (int)p[2], (uint32_t)p[3], p[4] != 0 ? fill : NULL, rng, NULL, NULL);
    }
    case AF_STAGE_RANDOM_AFFINE: {
        /* torchvision RandomAffine.get_params: float32 uniforms, translations rounded half to even */
        float u;
        double angle = (float)p[0] + af_rng_uniform_f32(rng) * ((float)p[1] - (float)p[0]);
        double tx = 0, ty = 0, scale = 1, shx = 0, shy = 0;
        if (p[2] > 0 || p[3] > 0) {
            float max_dx = (float)(p[2] * img->width), max_dy = (float)(p[3] * img->height);
            u = af_rng_uniform_f32(rng);
            tx = nearbyint((double)(-max_dx + u * (2.0f * max_dx)));
            u = af_rng_uniform_f32(rng);
            ty = nearbyint((double)(-max_dy + u * (2.0f * max_dy)));
        }
        if (!(p[4] == 1 && p[5] == 1)) scale = (float)p[4] + af_rng_uniform_f32(rng) * ((float)p[5] - (float)p[4]);
        if (!(p[6] == 0 && p[7] == 0)) shx = (float)p[6] + af_rng_uniform_f32(rng) * ((float)p[7] - (float)p[6]);
        if (!(p[8] == 0 && p[9] == 0)) shy = (float)p[8] + af_rng_uniform_f32(rng) * ((float)p[9] - (float)p[8]);
        uint8_t fill[3] = {(uint8_t)p[11], (uint8_t)p[12], (uint8_t)p[13]};
        AF_TRY(af_img_affine(img, angle, tx, ty, scale, shx, shy, p[14] != 0, p[15], p[16], (int)p[10], fill, &tmp));
        swap_in(img, &tmp);
        return AF_OK;
    }
    case AF_STAGE_SOBEL:
        AF_TRY(af_img_sobel(img, (af_sobel_magnitude)(int)p[0], p[1] != 0, (int)p[2], &tmp));
        swap_in(img, &tmp);
        return AF_OK;
    case AF_STAGE_RANDOM_ERASING: {
        if (!(af_rng_uniform(rng) < p[0])) return AF_OK;
        int top, left, h, w;
        if (!af_erasing_params(img->height, img->width, p[1], p[2], p[3], p[4], rng, &top, &left, &h, &w)) return AF_OK;
        int nvalues = (int)p[6];
        if (nvalues != 1 && nvalues != img->channels)
            return AF_FAIL(AF_ERR_VALUE, "RandomErasing: %d values for a %d-channel image", nvalues, img->channels);
        uint8_t v[3];
        for (int c = 0; c < img->channels; c++) v[c] = (uint8_t)p[7 + (nvalues == 1 ? 0 : c)];
        af_img_erase(img, top, left, h, w, v);
        return AF_OK;
    }
    }
    return AF_FAIL(AF_ERR_INTERNAL, "pipeline: stage kind %d has no uint8 implementation", s->kind);
}

/* The float32 mean and std of a Normalize stage for a C-channel image (one value is broadcast). */
static af_status normalize_params(const af_stage *s, int C, float mean[3], float sd[3]) {
    int n = (int)s->p[0];
    if (n != 1 && n != C) return AF_FAIL(AF_ERR_VALUE, "Normalize: %d mean/std values for a %d-channel image", n, C);
    for (int c = 0; c < C; c++) {
        mean[c] = (float)s->p[1 + (n == 1 ? 0 : c)];
        sd[c] = (float)s->p[1 + n + (n == 1 ? 0 : c)];
    }
    return AF_OK;
}

static af_status run_float_stage(const af_stage *s, float *x, int C, int H, int W, af_rng *rng) {
    const double *p = s->p;
    switch (s->kind) {
    case AF_STAGE_NORMALIZE: {
        float mean[3], sd[3];
        AF_TRY(normalize_params(s, C, mean, sd));
        af_normalize_chw(x, C, H, W, mean, sd);
        return AF_OK;
    }
    case AF_STAGE_RANDOM_ERASING: {
        if (!(af_rng_uniform(rng) < p[0])) return AF_OK;
        int top, left, h, w;
        if (!af_erasing_params(H, W, p[1], p[2], p[3], p[4], rng, &top, &left, &h, &w)) return AF_OK;
        int nvalues = (int)p[6];
        if (p[5] == 0 && nvalues != 1 && nvalues != C)
            return AF_FAIL(AF_ERR_VALUE, "RandomErasing: %d values for a %d-channel image", nvalues, C);
        float v[3];
        for (int c = 0; c < C; c++) v[c] = p[5] != 0 ? 0.0f : (float)p[7 + (nvalues == 1 ? 0 : c)];
        af_erase_chw(x, C, H, W, top, left, h, w, v, p[5] != 0, rng);
        return AF_OK;
    }
    }
    return AF_FAIL(AF_ERR_INTERNAL, "pipeline: stage kind %d has no float implementation", s->kind);
}

/* Stages that only read their input and write a new image (which swap_in puts in its place), so they
 * may read a borrowed, read-only image (a pack mapping) without a copy first. */
static int reads_source_only(int kind) {
    switch (kind) {
    case AF_STAGE_RESIZE: case AF_STAGE_CENTER_CROP: case AF_STAGE_RANDOM_CROP: case AF_STAGE_RANDOM_RESIZED_CROP:
    case AF_STAGE_GRAYSCALE: case AF_STAGE_RANDOM_AFFINE: case AF_STAGE_SOBEL:
        return 1;
    }
    return 0;
}

int af_pipeline_leading_gray(const af_pipeline *p) {
    if (!p || p->nstages < 1 || p->stages[0].kind != AF_STAGE_GRAYSCALE || !(p->stages[0].p[1] >= 1.0)) return 0;
    return p->stages[0].p[0] == 0 ? 3 : (int)p->stages[0].p[0]; /* 0: as many as the input, RGB once decoded */
}

af_status af_pipeline_run(const af_pipeline *p, af_image *img, af_rng *rng, float *out) {
    return af_pipeline_run_from(p, 0, img, rng, out);
}

af_status af_pipeline_run_from(const af_pipeline *p, int first, af_image *img, af_rng *rng, float *out) {
    if (img->channels != 1 && img->channels != 3)
        return AF_FAIL(AF_ERR_VALUE, "pipeline: images must have 1 or 3 channels, got %d", img->channels);
    if (img->height < 1 || img->width < 1)
        return AF_FAIL(AF_ERR_VALUE, "pipeline: the image is empty (%d x %d)", img->height, img->width);
    int nuint8 = p->to_tensor >= 0 ? p->to_tensor : p->nstages;
    for (int k = first; k < nuint8; k++) {
        const af_stage *s = &p->stages[k];
        if (s->kind == AF_STAGE_RANDOM_APPLY) {
            if (s->p[0] < af_rng_uniform(rng)) k += (int)s->p[1]; /* torchvision: skip when p < u */
            continue;
        }
        if (img->borrowed && !reads_source_only(s->kind)) AF_TRY(af_image_make_owned(img));
        AF_TRY(run_uint8_stage(s, img, rng));
    }
    if (p->to_tensor < 0 || !out) return AF_OK;
    /* af_pipeline_output_shape promises RGB (what decoding yields) unless a stage sets the channel
     * count: a 1-channel input image is widened like a decoded gray file, so the tensor always has
     * the announced shape */
    int C, H, W;
    AF_TRY(af_pipeline_output_shape(p, 1, 1, &C, &H, &W));
    if (img->channels == 1 && C == 3) {
        af_image rgb;
        AF_TRY(af_img_grayscale(img, 3, &rgb));
        swap_in(img, &rgb);
    }
    /* a Normalize right after ToTensor (the usual recipe) runs inside the conversion, one pass */
    int k = p->to_tensor + 1;
    if (k < p->nstages && p->stages[k].kind == AF_STAGE_NORMALIZE) {
        float mean[3], sd[3];
        AF_TRY(normalize_params(&p->stages[k], img->channels, mean, sd));
        af_img_to_tensor_normalize(img, out, mean, sd);
        k++;
    } else {
        af_img_to_tensor(img, out);
    }
    for (; k < p->nstages; k++) {
        const af_stage *s = &p->stages[k];
        if (s->kind == AF_STAGE_RANDOM_APPLY) {
            if (s->p[0] < af_rng_uniform(rng)) k += (int)s->p[1];
            continue;
        }
        AF_TRY(run_float_stage(s, out, img->channels, img->height, img->width, rng));
    }
    return AF_OK;
}
