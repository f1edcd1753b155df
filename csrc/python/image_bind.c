/* Bindings of csrc/image: decoding, compiled transform pipelines (PyCapsules the loader shares with
 * its C threads), and every image op with explicit parameters (affectfer.transforms.functional).
 * Images cross as NumPy uint8 arrays (H, W) or (H, W, C) with C in {1, 3}; the GIL is released
 * while C works. */
#include "binding.h"

#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL affectfer_ARRAY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <limits.h>
#include <math.h>
#include <string.h>

#include "../core/tensor.h"
#include "../image/transforms.h"

#define PIPELINE_CAPSULE "affectfer.image.pipeline"

/* A C-contiguous uint8 view of a NumPy image (a new reference; the array itself when it already is
 * one) after checking its shape; TypeError/ValueError naming `what`. */
static PyArrayObject *image_array(PyObject *obj, const char *what) {
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != NPY_UINT8) {
        PyErr_Format(PyExc_TypeError, "'%s' must be a NumPy uint8 array (H, W) or (H, W, C), got %s", what,
                     PyArray_Check(obj) ? "another dtype" : Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    int nd = PyArray_NDIM(a);
    if (nd != 2 && nd != 3) {
        PyErr_Format(PyExc_ValueError, "'%s' must be (H, W) or (H, W, C), got %d dims", what, nd);
        return NULL;
    }
    npy_intp H = PyArray_DIM(a, 0), W = PyArray_DIM(a, 1), C = nd == 3 ? PyArray_DIM(a, 2) : 1;
    if (C != 1 && C != 3) {
        PyErr_Format(PyExc_ValueError, "'%s' must have 1 or 3 channels, got %zd", what, (Py_ssize_t)C);
        return NULL;
    }
    if (H > AF_IMAGE_MAX_SIDE || W > AF_IMAGE_MAX_SIDE || H < 1 || W < 1) {
        PyErr_Format(PyExc_ValueError, "'%s' must have 1 to %d rows and columns, got %zd x %zd", what, AF_IMAGE_MAX_SIDE,
                     (Py_ssize_t)H, (Py_ssize_t)W);
        return NULL;
    }
    return (PyArrayObject *)PyArray_FROMANY(obj, NPY_UINT8, 2, 3, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
}

static af_image image_of_array(PyArrayObject *c, uint8_t *data, int borrowed) {
    return (af_image){.data = data, .height = (int)PyArray_DIM(c, 0), .width = (int)PyArray_DIM(c, 1),
                      .channels = PyArray_NDIM(c) == 3 ? (int)PyArray_DIM(c, 2) : 1, .borrowed = borrowed};
}

/* Copy a NumPy image into a fresh af_image (for ops that work in place); errors name `what`. */
static int image_from_numpy(PyObject *obj, const char *what, af_image *img) {
    memset(img, 0, sizeof(*img));
    PyArrayObject *c = image_array(obj, what);
    if (!c) return -1;
    af_image view = image_of_array(c, PyArray_DATA(c), 1);
    af_status st = af_image_make_owned(&view);
    Py_DECREF(c);
    if (st != AF_OK) {
        af_py_raise(st);
        return -1;
    }
    *img = view;
    return 0;
}

/* A read-only af_image over the NumPy image's own bytes, for ops that only read their input; *keep
 * holds the array until the caller releases it (Py_DECREF) after the op. */
static int image_view_numpy(PyObject *obj, const char *what, af_image *img, PyObject **keep) {
    memset(img, 0, sizeof(*img));
    PyArrayObject *c = image_array(obj, what);
    if (!c) return -1;
    *img = image_of_array(c, PyArray_DATA(c), 1);
    *keep = (PyObject *)c;
    return 0;
}

static void host_capsule_free(PyObject *capsule) { af_free_host(PyCapsule_GetPointer(capsule, NULL)); }

/* A new (H, W, C) uint8 array of img's pixels; takes img over. An owned image's buffer becomes the
 * array's memory as it is (no copy, and a block the host allocator recycles: a fresh NumPy array of
 * a 224x224 image would be new pages, first-touch faults and all); a borrowed one is copied. */
static PyObject *image_to_numpy(af_image *img) {
    npy_intp dims[3] = {img->height, img->width, img->channels};
    if (img->borrowed) {
        PyObject *arr = PyArray_SimpleNew(3, dims, NPY_UINT8);
        if (arr) memcpy(PyArray_DATA((PyArrayObject *)arr), img->data, (size_t)img->height * img->width * img->channels);
        af_image_free(img);
        return arr;
    }
    PyObject *base = PyCapsule_New(img->data, NULL, host_capsule_free);
    if (!base) {
        af_image_free(img);
        return NULL;
    }
    PyObject *arr = PyArray_SimpleNewFromData(3, dims, NPY_UINT8, img->data);
    memset(img, 0, sizeof(*img)); /* the capsule owns the pixels now */
    if (!arr || PyArray_SetBaseObject((PyArrayObject *)arr, base) < 0) { /* steals base (frees it on failure too) */
        if (!arr) Py_DECREF(base);
        Py_XDECREF(arr);
        return NULL;
    }
    return arr;
}

static PyObject *py_image_decode(PyObject *self, PyObject *args) {
    Py_buffer buf;
    PyObject *max_obj;
    long long max_pixels;
    const char *name;
    if (!PyArg_ParseTuple(args, "y*Os:image_decode", &buf, &max_obj, &name)) return NULL;
    if (af_py_int_arg(max_obj, "max_pixels", 1, LLONG_MAX, &max_pixels) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    af_image img;
    af_status st;
    Py_BEGIN_ALLOW_THREADS
    st = af_image_decode(buf.buf, (size_t)buf.len, max_pixels, name, &img);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    if (st != AF_OK) return af_py_raise(st);
    return image_to_numpy(&img);
}

static PyObject *py_image_read(PyObject *self, PyObject *args) {
    PyObject *path_obj, *max_obj;
    long long max_pixels;
    if (!PyArg_ParseTuple(args, "O&O:image_read", PyUnicode_FSConverter, &path_obj, &max_obj)) return NULL;
    if (af_py_int_arg(max_obj, "max_pixels", 1, LLONG_MAX, &max_pixels) < 0) {
        Py_DECREF(path_obj);
        return NULL;
    }
    af_image img;
    af_status st;
    Py_BEGIN_ALLOW_THREADS
    st = af_image_read_file(PyBytes_AS_STRING(path_obj), max_pixels, &img);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_obj);
    if (st != AF_OK) return af_py_raise(st);
    return image_to_numpy(&img);
}

/* ---- pipelines ---- */

static void pipeline_capsule_free(PyObject *capsule) {
    af_pipeline_free(PyCapsule_GetPointer(capsule, PIPELINE_CAPSULE));
}

const af_pipeline *af_py_pipeline_arg(PyObject *obj, const char *what) {
    if (!PyCapsule_IsValid(obj, PIPELINE_CAPSULE)) {
        PyErr_Format(PyExc_TypeError,
                     "'%s' must be an affectfer.transforms transform (Compose, ...) or its compiled pipeline, got %.100s; "
                     "Python callables cannot run in the C pipeline",
                     what, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return PyCapsule_GetPointer(obj, PIPELINE_CAPSULE);
}

/* pipeline_check(obj, what): TypeError naming `what` unless obj is a compiled pipeline */
static PyObject *py_pipeline_check(PyObject *self, PyObject *args) {
    PyObject *obj;
    const char *what;
    if (!PyArg_ParseTuple(args, "Os:pipeline_check", &obj, &what)) return NULL;
    if (!af_py_pipeline_arg(obj, what)) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_pipeline_build(PyObject *self, PyObject *spec_obj) {
    PyArrayObject *spec = (PyArrayObject *)PyArray_FROMANY(spec_obj, NPY_FLOAT64, 1, 1, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!spec) return NULL;
    af_pipeline *p = NULL;
    af_status st = af_pipeline_build(PyArray_DATA(spec), PyArray_DIM(spec, 0), &p);
    Py_DECREF(spec);
    if (st != AF_OK) return af_py_raise(st);
    PyObject *cap = PyCapsule_New(p, PIPELINE_CAPSULE, pipeline_capsule_free);
    if (!cap) af_pipeline_free(p);
    return cap;
}

/* pipeline_run(pipeline, image, seed, stream) -> float32 (C, H, W) when the pipeline has a ToTensor
 * stage, else uint8 (H, W, C) */
static PyObject *py_pipeline_run(PyObject *self, PyObject *args) {
    PyObject *cap, *img_obj;
    unsigned long long seed, stream;
    if (!PyArg_ParseTuple(args, "OOKK:pipeline_run", &cap, &img_obj, &seed, &stream)) return NULL;
    const af_pipeline *p = af_py_pipeline_arg(cap, "pipeline");
    if (!p) return NULL;
    af_image img;
    if (image_from_numpy(img_obj, "image", &img) < 0) return NULL;
    af_rng rng = af_rng_make(seed, stream, 0);
    af_status st = AF_OK;
    if (!af_pipeline_has_to_tensor(p)) {
        Py_BEGIN_ALLOW_THREADS
        st = af_pipeline_run(p, &img, &rng, NULL);
        Py_END_ALLOW_THREADS
        if (st != AF_OK) {
            af_image_free(&img);
            return af_py_raise(st);
        }
        return image_to_numpy(&img);
    }
    /* the output size is only known for certain after the uint8 stages: run them into a scratch
     * float buffer sized from output_shape, checked against the final image */
    int C, H, W;
    st = af_pipeline_output_shape(p, img.height, img.width, &C, &H, &W);
    if (st != AF_OK) {
        af_image_free(&img);
        return af_py_raise(st);
    }
    float *out = af_alloc_host(sizeof(float) * (size_t)(img.channels > C ? img.channels : C) * H * W + 64);
    if (!out) {
        af_image_free(&img);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    st = af_pipeline_run(p, &img, &rng, out);
    Py_END_ALLOW_THREADS
    PyObject *arr = NULL;
    if (st == AF_OK && (img.height != H || img.width != W)) st = AF_FAIL(AF_ERR_INTERNAL, "pipeline: output shape mismatch");
    if (st == AF_OK) {
        npy_intp dims[3] = {img.channels, img.height, img.width};
        arr = PyArray_SimpleNew(3, dims, NPY_FLOAT32);
        if (arr) memcpy(PyArray_DATA((PyArrayObject *)arr), out, sizeof(float) * (size_t)img.channels * H * W);
    } else {
        af_py_raise(st);
    }
    af_free_host(out);
    af_image_free(&img);
    return arr;
}

static PyObject *py_pipeline_output_shape(PyObject *self, PyObject *args) {
    PyObject *cap;
    int h, w;
    if (!PyArg_ParseTuple(args, "Oii:pipeline_output_shape", &cap, &h, &w)) return NULL;
    const af_pipeline *p = af_py_pipeline_arg(cap, "pipeline");
    if (!p) return NULL;
    int C, H, W;
    af_status st = af_pipeline_output_shape(p, h, w, &C, &H, &W);
    if (st != AF_OK) return af_py_raise(st);
    return Py_BuildValue("(iii)", C, H, W);
}

/* ---- samplers (exposed to test their distributions) ---- */

static PyObject *py_resized_crop_params(PyObject *self, PyObject *args) {
    int H, W;
    double s0, s1, r0, r1;
    unsigned long long seed, stream;
    if (!PyArg_ParseTuple(args, "ii(dd)(dd)KK:resized_crop_params", &H, &W, &s0, &s1, &r0, &r1, &seed, &stream)) return NULL;
    if (H < 1 || W < 1) return PyErr_Format(PyExc_ValueError, "image size must be positive");
    af_rng rng = af_rng_make(seed, stream, 0);
    int top, left, h, w;
    af_resized_crop_params(H, W, s0, s1, r0, r1, &rng, &top, &left, &h, &w);
    return Py_BuildValue("(iiii)", top, left, h, w);
}

static PyObject *py_erasing_params(PyObject *self, PyObject *args) {
    int H, W;
    double s0, s1, r0, r1;
    unsigned long long seed, stream;
    if (!PyArg_ParseTuple(args, "ii(dd)(dd)KK:erasing_params", &H, &W, &s0, &s1, &r0, &r1, &seed, &stream)) return NULL;
    if (H < 1 || W < 1) return PyErr_Format(PyExc_ValueError, "image size must be positive");
    af_rng rng = af_rng_make(seed, stream, 0);
    int top, left, h, w;
    if (!af_erasing_params(H, W, s0, s1, r0, r1, &rng, &top, &left, &h, &w)) Py_RETURN_NONE;
    return Py_BuildValue("(iiii)", top, left, h, w);
}

/* ---- functional ops: image_op(name, image, params) with explicit float parameters ----
 * One table row per op: its parameter count, a check built from the pipeline builder's validators
 * (so a parameter is refused the same way in both paths) and the call. `run` works in place or
 * writes a new image into `out`. */

typedef struct {
    const char *name;
    int nparams;
    af_status (*check)(const char *name, const double *p);
    af_status (*run)(af_image *img, const double *p, af_image *out);
    int reads_only; /* 1: the op never writes img (it makes `out`), so img may be a view of the caller's array */
} image_op_def;

static af_status check_none(const char *name, const double *p) { return AF_OK; }

static af_status check_resize(const char *name, const double *p) { return af_check_size(name, p[0], p[1]); }
static af_status run_resize(af_image *img, const double *p, af_image *out) {
    return af_img_resize(img, (int)p[0], (int)p[1], p[2] != 0, out);
}

static af_status check_crop(const char *name, const double *p) {
    AF_TRY(af_check_int(name, "top", p[0], -AF_IMAGE_MAX_SIDE, AF_IMAGE_MAX_SIDE));
    AF_TRY(af_check_int(name, "left", p[1], -AF_IMAGE_MAX_SIDE, AF_IMAGE_MAX_SIDE));
    AF_TRY(af_check_int(name, "height", p[2], 0, AF_IMAGE_MAX_SIDE));
    return af_check_int(name, "width", p[3], 0, AF_IMAGE_MAX_SIDE);
}
static af_status run_crop(af_image *img, const double *p, af_image *out) {
    return af_img_crop(img, (int)p[0], (int)p[1], (int)p[2], (int)p[3], NULL, out);
}

static af_status run_center_crop(af_image *img, const double *p, af_image *out) {
    return af_img_center_crop(img, (int)p[0], (int)p[1], out);
}

/* left, top, right, bottom, padding_mode, fill r, g, b */
static af_status check_pad(const char *name, const double *p) {
    for (int k = 0; k < 4; k++) AF_TRY(af_check_int(name, "padding", p[k], 0, AF_IMAGE_MAX_SIDE));
    AF_TRY(af_check_int(name, "padding_mode", p[4], AF_PAD_CONSTANT, AF_PAD_SYMMETRIC));
    return af_check_fill(name, p + 5);
}
static af_status run_pad(af_image *img, const double *p, af_image *out) {
    uint8_t fill[3] = {(uint8_t)p[5], (uint8_t)p[6], (uint8_t)p[7]};
    return af_img_pad(img, (int)p[0], (int)p[1], (int)p[2], (int)p[3], (af_pad_mode)(int)p[4], fill, out);
}

#define IN_PLACE(op, call)                                                                                         \
    static af_status run_##op(af_image *img, const double *p, af_image *out) {                                     \
        (void)p, (void)out;                                                                                        \
        call;                                                                                                      \
        return AF_OK;                                                                                              \
    }
IN_PLACE(hflip, af_img_hflip(img))
IN_PLACE(vflip, af_img_vflip(img))
IN_PLACE(autocontrast, af_img_autocontrast(img))
IN_PLACE(equalize, af_img_equalize(img))
IN_PLACE(invert, af_img_invert(img))
IN_PLACE(adjust_brightness, af_img_adjust_brightness(img, p[0]))
IN_PLACE(adjust_saturation, af_img_adjust_saturation(img, p[0]))
IN_PLACE(adjust_contrast, af_img_adjust_contrast(img, p[0]))
IN_PLACE(adjust_hue, af_img_adjust_hue(img, p[0]))
IN_PLACE(posterize, af_img_posterize(img, (int)p[0]))
IN_PLACE(solarize, af_img_solarize(img, p[0]))
#undef IN_PLACE

static af_status check_factor(const char *name, const double *p) { return af_check_range(name, "factor", p[0], 0, HUGE_VAL); }
static af_status check_hue(const char *name, const double *p) { return af_check_range(name, "hue_factor", p[0], -0.5, 0.5); }
static af_status run_adjust_sharpness(af_image *img, const double *p, af_image *out) { return af_img_adjust_sharpness(img, p[0]); }

static af_status check_grayscale(const char *name, const double *p) {
    return af_check_channels(name, "num_output_channels", p[0], 0);
}
static af_status run_grayscale(af_image *img, const double *p, af_image *out) { return af_img_grayscale(img, (int)p[0], out); }

static af_status check_posterize(const char *name, const double *p) { return af_check_int(name, "bits", p[0], 0, 8); }
static af_status check_solarize(const char *name, const double *p) { return af_check_range(name, "threshold", p[0], 0, 255); }

/* angle, tx, ty, scale, shear_x, shear_y, has_center, cx, cy, interpolation, has_fill, fill r, g, b */
static af_status check_affine(const char *name, const double *p) {
    AF_TRY(af_check_finite(name, p, 14));
    AF_TRY(af_check_int(name, "interpolation", p[9], AF_INTERP_NEAREST, AF_INTERP_BILINEAR));
    return p[10] != 0 ? af_check_fill(name, p + 11) : AF_OK;
}
static af_status run_affine(af_image *img, const double *p, af_image *out) {
    uint8_t fill[3] = {(uint8_t)p[11], (uint8_t)p[12], (uint8_t)p[13]};
    return af_img_affine(img, p[0], p[1], p[2], p[3], p[4], p[5], p[6] != 0, p[7], p[8], (int)p[9], p[10] != 0 ? fill : NULL,
                         out);
}

/* op index, signed magnitude, has_fill, fill r, g, b */
static af_status check_randaugment_op(const char *name, const double *p) {
    AF_TRY(af_check_int(name, "op", p[0], 0, AF_RA_NUM_OPS - 1));
    AF_TRY(af_check_finite(name, p + 1, 1));
    if ((int)p[0] == AF_RA_POSTERIZE) AF_TRY(af_check_range(name, "Posterize bits", p[1], 0, 8));
    return p[2] != 0 ? af_check_fill(name, p + 3) : AF_OK;
}
static af_status run_randaugment_op(af_image *img, const double *p, af_image *out) {
    uint8_t fill[3] = {(uint8_t)p[3], (uint8_t)p[4], (uint8_t)p[5]};
    return af_randaugment_apply_op(img, (int)p[0], p[1], p[2] != 0 ? fill : NULL);
}

static af_status check_sobel(const char *name, const double *p) { return af_check_sobel(name, p[0], p[1], p[2]); }
static af_status run_sobel(af_image *img, const double *p, af_image *out) {
    return af_img_sobel(img, (af_sobel_magnitude)(int)p[0], p[1] != 0, (int)p[2], out);
}

static const image_op_def image_ops[] = {
    {"resize", 3, check_resize, run_resize, 1},
    {"crop", 4, check_crop, run_crop, 1},
    {"center_crop", 2, check_resize, run_center_crop, 1},
    {"pad", 8, check_pad, run_pad, 1},
    {"hflip", 0, check_none, run_hflip},
    {"vflip", 0, check_none, run_vflip},
    {"adjust_brightness", 1, check_factor, run_adjust_brightness},
    {"adjust_saturation", 1, check_factor, run_adjust_saturation},
    {"adjust_contrast", 1, check_factor, run_adjust_contrast},
    {"adjust_hue", 1, check_hue, run_adjust_hue},
    {"adjust_sharpness", 1, check_factor, run_adjust_sharpness},
    {"rgb_to_grayscale", 1, check_grayscale, run_grayscale, 1},
    {"posterize", 1, check_posterize, run_posterize},
    {"solarize", 1, check_solarize, run_solarize},
    {"autocontrast", 0, check_none, run_autocontrast},
    {"equalize", 0, check_none, run_equalize},
    {"invert", 0, check_none, run_invert},
    {"affine", 14, check_affine, run_affine, 1},
    {"randaugment_op", 6, check_randaugment_op, run_randaugment_op},
    {"sobel", 3, check_sobel, run_sobel, 1},
};

#define IMAGE_OP_MAX_PARAMS 16

static PyObject *py_image_op(PyObject *self, PyObject *args) {
    const char *name;
    PyObject *img_obj, *params_obj;
    if (!PyArg_ParseTuple(args, "sOO:image_op", &name, &img_obj, &params_obj)) return NULL;
    const image_op_def *def = NULL;
    for (size_t k = 0; k < sizeof(image_ops) / sizeof(image_ops[0]); k++)
        if (!strcmp(name, image_ops[k].name)) def = &image_ops[k];
    if (!def) return PyErr_Format(PyExc_ValueError, "unknown image op '%s'", name);
    double p[IMAGE_OP_MAX_PARAMS] = {0};
    Py_ssize_t np = af_py_doubles(params_obj, "params", p, IMAGE_OP_MAX_PARAMS);
    if (np < 0) return NULL;
    if (np != def->nparams) return PyErr_Format(PyExc_ValueError, "%s takes %d parameters, got %zd", name, def->nparams, np);
    af_status st = def->check(name, p);
    if (st != AF_OK) return af_py_raise(st);
    af_image img, out = {0};
    PyObject *keep = NULL;
    if ((def->reads_only ? image_view_numpy(img_obj, "img", &img, &keep) : image_from_numpy(img_obj, "img", &img)) < 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    st = def->run(&img, p, &out);
    Py_END_ALLOW_THREADS
    PyObject *result;
    if (st != AF_OK) {
        af_image_free(&img);
        af_image_free(&out);
        result = af_py_raise(st);
    } else if (out.data) {
        af_image_free(&img);
        result = image_to_numpy(&out);
    } else {
        result = image_to_numpy(&img); /* a view (borrowed) is copied: never the caller's own array */
    }
    Py_XDECREF(keep);
    return result;
}

/* mean and std arguments (1 or C numbers each) expanded to C float32 values, checked like the
 * pipeline's Normalize stage. */
static int mean_std_arg(PyObject *mean_obj, PyObject *std_obj, int C, float *mean, float *sd) {
    double m[3], s[3];
    Py_ssize_t nm = af_py_doubles(mean_obj, "mean", m, 3);
    Py_ssize_t ns = nm < 0 ? -1 : af_py_doubles(std_obj, "std", s, 3);
    if (ns < 0) return -1;
    if (nm != ns || (nm != 1 && nm != C)) {
        PyErr_Format(PyExc_ValueError, "normalize: mean and std need 1 or %d values each, got %zd and %zd", C, nm, ns);
        return -1;
    }
    af_status st = af_check_mean_std("normalize", (int)nm, m, s);
    if (st != AF_OK) {
        af_py_raise(st);
        return -1;
    }
    for (int c = 0; c < C; c++) {
        mean[c] = (float)m[nm == 1 ? 0 : c];
        sd[c] = (float)s[nm == 1 ? 0 : c];
    }
    return 0;
}

/* image_to_tensor(image, mean or None, std or None) -> float32 (C, H, W): ToTensor, then Normalize */
static PyObject *py_image_to_tensor(PyObject *self, PyObject *args) {
    PyObject *img_obj, *mean_obj, *std_obj;
    if (!PyArg_ParseTuple(args, "OOO:image_to_tensor", &img_obj, &mean_obj, &std_obj)) return NULL;
    af_image img;
    if (image_from_numpy(img_obj, "img", &img) < 0) return NULL;
    int C = img.channels;
    float mean[3], sd[3];
    int normalize = mean_obj != Py_None || std_obj != Py_None;
    if (normalize && mean_std_arg(mean_obj, std_obj, C, mean, sd) < 0) {
        af_image_free(&img);
        return NULL;
    }
    npy_intp dims[3] = {C, img.height, img.width};
    PyObject *arr = PyArray_SimpleNew(3, dims, NPY_FLOAT32);
    if (arr) {
        float *x = PyArray_DATA((PyArrayObject *)arr);
        Py_BEGIN_ALLOW_THREADS
        af_img_to_tensor_normalize(&img, x, normalize ? mean : NULL, normalize ? sd : NULL);
        Py_END_ALLOW_THREADS
    }
    af_image_free(&img);
    return arr;
}

/* randaugment(image, num_ops, magnitude, num_bins, op_mask, seed, stream) -> (image, ops, magnitudes):
 * the policy with its draws exposed, for tests and notebooks */
static PyObject *py_randaugment(PyObject *self, PyObject *args) {
    PyObject *img_obj;
    int num_ops, magnitude, num_bins;
    unsigned int mask;
    unsigned long long seed, stream;
    if (!PyArg_ParseTuple(args, "OiiiIKK:randaugment", &img_obj, &num_ops, &magnitude, &num_bins, &mask, &seed, &stream))
        return NULL;
    if (num_ops < 0 || num_ops > 64) return PyErr_Format(PyExc_ValueError, "num_ops must be in [0, 64], got %d", num_ops);
    if (num_bins < 2 || magnitude < 0 || magnitude >= num_bins)
        return PyErr_Format(PyExc_ValueError, "magnitude must be in [0, num_magnitude_bins) with num_magnitude_bins >= 2");
    af_image img;
    if (image_from_numpy(img_obj, "img", &img) < 0) return NULL;
    af_rng rng = af_rng_make(seed, stream, 0);
    int ops[64];
    double mags[64];
    af_status st = af_randaugment(&img, num_ops, magnitude, num_bins, mask & ((1u << AF_RA_NUM_OPS) - 1), NULL, &rng, ops, mags);
    if (st != AF_OK) {
        af_image_free(&img);
        return af_py_raise(st);
    }
    PyObject *op_list = PyList_New(num_ops), *mag_list = PyList_New(num_ops);
    for (int k = 0; op_list && mag_list && k < num_ops; k++) {
        PyList_SET_ITEM(op_list, k, PyUnicode_FromString(af_randaugment_op_names[ops[k]]));
        PyList_SET_ITEM(mag_list, k, PyFloat_FromDouble(mags[k]));
    }
    PyObject *arr = image_to_numpy(&img);
    if (!arr || !op_list || !mag_list) {
        Py_XDECREF(arr);
        Py_XDECREF(op_list);
        Py_XDECREF(mag_list);
        return NULL;
    }
    return Py_BuildValue("(NNN)", arr, op_list, mag_list);
}

/* randaugment_magnitude(op, bin, num_bins, h, w) -> (value, signed) */
static PyObject *py_randaugment_magnitude(PyObject *self, PyObject *args) {
    int op, bin, num_bins, h, w;
    if (!PyArg_ParseTuple(args, "iiiii:randaugment_magnitude", &op, &bin, &num_bins, &h, &w)) return NULL;
    if (op < 0 || op >= AF_RA_NUM_OPS) return PyErr_Format(PyExc_ValueError, "op must be in [0, %d)", AF_RA_NUM_OPS);
    if (num_bins < 2 || bin < 0 || bin >= num_bins) return PyErr_Format(PyExc_ValueError, "bin must be in [0, num_bins)");
    int is_signed;
    double m = af_randaugment_magnitude(op, bin, num_bins, h, w, &is_signed);
    return Py_BuildValue("(dO)", m, is_signed ? Py_True : Py_False);
}

static PyObject *py_randaugment_ops(PyObject *self, PyObject *unused) {
    PyObject *l = PyList_New(AF_RA_NUM_OPS);
    for (int k = 0; l && k < AF_RA_NUM_OPS; k++) PyList_SET_ITEM(l, k, PyUnicode_FromString(af_randaugment_op_names[k]));
    return l;
}

/* The image codes and the pipeline stage layouts as module attributes, so affectfer.transforms never
 * re-types a C enum or a parameter order. image_stages = {name: (kind, (parameter names, ...))}. */
int af_image_init(PyObject *module) {
    static const char *const pad_names[] = {"constant", "edge", "reflect", "symmetric"};
    static const int pad_codes[] = {AF_PAD_CONSTANT, AF_PAD_EDGE, AF_PAD_REFLECT, AF_PAD_SYMMETRIC};
    static const char *const sobel_names[] = {"l2", "l1", "half_abs"};
    static const int sobel_codes[] = {AF_SOBEL_L2, AF_SOBEL_L1, AF_SOBEL_HALF_ABS};
    if (PyModule_AddObject(module, "image_default_max_pixels", PyLong_FromLongLong(AF_IMAGE_DEFAULT_MAX_PIXELS)) < 0) return -1;
    static const char *const interp_names[] = {"nearest", "bilinear"};
    static const int interp_codes[] = {AF_INTERP_NEAREST, AF_INTERP_BILINEAR};
    if (af_py_add_codes(module, "pad_modes", 4, pad_names, pad_codes) < 0 ||
        af_py_add_codes(module, "sobel_magnitudes", 3, sobel_names, sobel_codes) < 0 ||
        af_py_add_codes(module, "interpolations", 2, interp_names, interp_codes) < 0)
        return -1;
    PyObject *stages = PyDict_New();
    if (!stages) return -1;
    for (int kind = 0; kind < AF_STAGE_KIND_END; kind++) {
        const char *name, *params;
        if (!af_pipeline_stage_info(kind, &name, &params)) continue;
        PyObject *text = PyUnicode_FromString(params);
        PyObject *list = text ? PyUnicode_Split(text, NULL, -1) : NULL;
        PyObject *names = list ? PyList_AsTuple(list) : NULL;
        PyObject *entry = names ? Py_BuildValue("(iO)", kind, names) : NULL;
        int bad = !entry || PyDict_SetItemString(stages, name, entry) < 0;
        Py_XDECREF(text);
        Py_XDECREF(list);
        Py_XDECREF(names);
        Py_XDECREF(entry);
        if (bad) {
            Py_DECREF(stages);
            return -1;
        }
    }
    if (PyModule_AddObject(module, "image_stages", stages) < 0) {
        Py_DECREF(stages);
        return -1;
    }
    return 0;
}

/* image_normalize(x float32 (C, H, W), mean, std) -> (x - mean) / std per channel, a new array */
static PyObject *py_image_normalize(PyObject *self, PyObject *args) {
    PyObject *x_obj, *mean_obj, *std_obj;
    if (!PyArg_ParseTuple(args, "OOO:image_normalize", &x_obj, &mean_obj, &std_obj)) return NULL;
    PyArrayObject *x = (PyArrayObject *)af_py_as_array(x_obj, NPY_FLOAT32, 3, "tensor");
    if (!x) return NULL;
    int C = (int)PyArray_DIM(x, 0);
    float mean[3], sd[3];
    if (C != 1 && C != 3) {
        Py_DECREF(x);
        return PyErr_Format(PyExc_ValueError, "normalize: 'tensor' must be (C, H, W) with C 1 or 3, got C = %d", C);
    }
    if (mean_std_arg(mean_obj, std_obj, C, mean, sd) < 0) {
        Py_DECREF(x);
        return NULL;
    }
    PyObject *out = PyArray_NewCopy(x, NPY_CORDER);
    Py_DECREF(x);
    if (!out) return NULL;
    float *data = PyArray_DATA((PyArrayObject *)out);
    int H = (int)PyArray_DIM((PyArrayObject *)out, 1), W = (int)PyArray_DIM((PyArrayObject *)out, 2);
    Py_BEGIN_ALLOW_THREADS
    af_normalize_chw(data, C, H, W, mean, sd);
    Py_END_ALLOW_THREADS
    return out;
}

PyMethodDef af_image_methods[] = {
    {"image_normalize", py_image_normalize, METH_VARARGS, "image_normalize(x (C, H, W), mean, std) -> float32"},
    {"image_decode", py_image_decode, METH_VARARGS, "image_decode(bytes, max_pixels, name) -> uint8 (H, W, 3)"},
    {"image_read", py_image_read, METH_VARARGS, "image_read(path, max_pixels) -> uint8 (H, W, 3)"},
    {"pipeline_check", py_pipeline_check, METH_VARARGS, "pipeline_check(obj, what): TypeError unless a compiled pipeline"},
    {"pipeline_build", py_pipeline_build, METH_O, "pipeline_build(spec float64 array) -> pipeline capsule"},
    {"pipeline_run", py_pipeline_run, METH_VARARGS, "pipeline_run(pipeline, image, seed, stream) -> array"},
    {"pipeline_output_shape", py_pipeline_output_shape, METH_VARARGS, "pipeline_output_shape(pipeline, h, w) -> (C, H, W)"},
    {"resized_crop_params", py_resized_crop_params, METH_VARARGS, "RandomResizedCrop box (top, left, h, w)"},
    {"erasing_params", py_erasing_params, METH_VARARGS, "RandomErasing box (top, left, h, w) or None"},
    {"randaugment", py_randaugment, METH_VARARGS, "randaugment(img, num_ops, magnitude, num_bins, op_mask, seed, stream)"},
    {"randaugment_magnitude", py_randaugment_magnitude, METH_VARARGS, "(value, signed) of an op's magnitude bin"},
    {"randaugment_ops", py_randaugment_ops, METH_NOARGS, "the 14 op names in torchvision's table order"},
    {"image_op", py_image_op, METH_VARARGS, "image_op(name, image, params) -> array"},
    {"image_to_tensor", py_image_to_tensor, METH_VARARGS, "image_to_tensor(image, mean, std) -> float32 (C, H, W)"},
    {NULL},
};
