/* Bindings of csrc/image: decoding, compiled transform pipelines (PyCapsules the loader shares with
 * its C threads), and every image op with explicit parameters (affectfer.transforms.functional).
 * Images cross as NumPy uint8 arrays (H, W) or (H, W, C) with C in {1, 3}; the GIL is released
 * while C works. */
#include "binding.h"

#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL affectfer_ARRAY_API
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <math.h>
#include <string.h>

#include "../core/tensor.h"
#include "../image/transforms.h"

#define PIPELINE_CAPSULE "affectfer.image.pipeline"

/* Copy a NumPy image into a fresh af_image; TypeError/ValueError naming `what`. */
static int image_from_numpy(PyObject *obj, const char *what, af_image *img) {
    memset(img, 0, sizeof(*img));
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != NPY_UINT8) {
        PyErr_Format(PyExc_TypeError, "'%s' must be a NumPy uint8 array (H, W) or (H, W, C), got %s", what,
                     PyArray_Check(obj) ? "another dtype" : Py_TYPE(obj)->tp_name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    int nd = PyArray_NDIM(a);
    if (nd != 2 && nd != 3) {
        PyErr_Format(PyExc_ValueError, "'%s' must be (H, W) or (H, W, C), got %d dims", what, nd);
        return -1;
    }
    npy_intp H = PyArray_DIM(a, 0), W = PyArray_DIM(a, 1), C = nd == 3 ? PyArray_DIM(a, 2) : 1;
    if (C != 1 && C != 3) {
        PyErr_Format(PyExc_ValueError, "'%s' must have 1 or 3 channels, got %zd", what, (Py_ssize_t)C);
        return -1;
    }
    if (H > (1 << 16) || W > (1 << 16)) {
        PyErr_Format(PyExc_ValueError, "'%s' is too large (%zd x %zd; at most 65536 per side)", what, (Py_ssize_t)H, (Py_ssize_t)W);
        return -1;
    }
    PyArrayObject *c = (PyArrayObject *)PyArray_FROMANY(obj, NPY_UINT8, 2, 3, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!c) return -1;
    af_status st = af_image_alloc(img, (int)H, (int)W, (int)C);
    if (st != AF_OK) {
        Py_DECREF(c);
        af_py_raise(st);
        return -1;
    }
    memcpy(img->data, PyArray_DATA(c), (size_t)H * W * C);
    Py_DECREF(c);
    return 0;
}

/* A new (H, W, C) uint8 array holding img's pixels; frees img. */
static PyObject *image_to_numpy(af_image *img) {
    npy_intp dims[3] = {img->height, img->width, img->channels};
    PyObject *arr = PyArray_SimpleNew(3, dims, NPY_UINT8);
    if (arr) memcpy(PyArray_DATA((PyArrayObject *)arr), img->data, (size_t)img->height * img->width * img->channels);
    af_image_free(img);
    return arr;
}

static PyObject *py_image_decode(PyObject *self, PyObject *args) {
    Py_buffer buf;
    long long max_pixels;
    const char *name;
    if (!PyArg_ParseTuple(args, "y*Ls:image_decode", &buf, &max_pixels, &name)) return NULL;
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
    PyObject *path_obj;
    long long max_pixels;
    if (!PyArg_ParseTuple(args, "O&L:image_read", PyUnicode_FSConverter, &path_obj, &max_pixels)) return NULL;
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

static af_pipeline *pipeline_arg(PyObject *obj) {
    if (!PyCapsule_IsValid(obj, PIPELINE_CAPSULE)) {
        PyErr_Format(PyExc_TypeError, "'pipeline' must be a compiled pipeline (affectfer.transforms.Compose.compile())");
        return NULL;
    }
    return PyCapsule_GetPointer(obj, PIPELINE_CAPSULE);
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
    af_pipeline *p = pipeline_arg(cap);
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
    af_pipeline *p = pipeline_arg(cap);
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

/* ---- functional ops: image_op(name, image, params) with explicit float parameters ---- */

static int nparams_ok(const char *name, Py_ssize_t got, Py_ssize_t want) {
    if (got == want) return 1;
    PyErr_Format(PyExc_ValueError, "%s takes %zd parameters, got %zd", name, want, got);
    return 0;
}

static PyObject *py_image_op(PyObject *self, PyObject *args) {
    const char *name;
    PyObject *img_obj, *params_obj;
    if (!PyArg_ParseTuple(args, "sOO:image_op", &name, &img_obj, &params_obj)) return NULL;
    PyArrayObject *pa = (PyArrayObject *)PyArray_FROMANY(params_obj, NPY_FLOAT64, 1, 1, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!pa) return NULL;
    Py_ssize_t np = PyArray_DIM(pa, 0);
    double p[16] = {0};
    if (np > 16) {
        Py_DECREF(pa);
        return PyErr_Format(PyExc_ValueError, "%s: too many parameters", name);
    }
    memcpy(p, PyArray_DATA(pa), sizeof(double) * np);
    Py_DECREF(pa);
    af_image img, out = {0};
    if (image_from_numpy(img_obj, "img", &img) < 0) return NULL;
    af_status st = AF_OK;
    int replaced = 0;
#define NEED(k)                                                                                                     \
    if (!nparams_ok(name, np, k)) goto bad;
    if (!strcmp(name, "resize")) {
        NEED(3);
        if (!(p[0] >= 1 && p[1] >= 1 && p[0] <= 65536 && p[1] <= 65536)) {
            PyErr_Format(PyExc_ValueError, "resize: size must be positive, got (%g, %g)", p[0], p[1]);
            goto bad;
        }
        Py_BEGIN_ALLOW_THREADS
        st = af_img_resize(&img, (int)p[0], (int)p[1], p[2] != 0, &out);
        Py_END_ALLOW_THREADS
        replaced = 1;
    } else if (!strcmp(name, "crop")) {
        NEED(4);
        if (!(p[2] >= 0 && p[3] >= 0 && p[2] <= 65536 && p[3] <= 65536 && fabs(p[0]) < 65536 && fabs(p[1]) < 65536)) {
            PyErr_Format(PyExc_ValueError, "crop: height and width must be in [0, 65536]");
            goto bad;
        }
        st = af_img_crop(&img, (int)p[0], (int)p[1], (int)p[2], (int)p[3], NULL, &out);
        replaced = 1;
    } else if (!strcmp(name, "center_crop")) {
        NEED(2);
        if (!(p[0] >= 1 && p[1] >= 1 && p[0] <= 65536 && p[1] <= 65536)) {
            PyErr_Format(PyExc_ValueError, "center_crop: size must be positive");
            goto bad;
        }
        st = af_img_center_crop(&img, (int)p[0], (int)p[1], &out);
        replaced = 1;
    } else if (!strcmp(name, "pad")) {
        NEED(8);
        for (int k = 0; k < 4; k++)
            if (!(p[k] >= 0 && p[k] <= 65536)) {
                PyErr_Format(PyExc_ValueError, "pad: padding must be in [0, 65536]");
                goto bad;
            }
        if (!(p[4] >= 0 && p[4] <= 3)) {
            PyErr_Format(PyExc_ValueError, "pad: unknown padding_mode");
            goto bad;
        }
        uint8_t fill[3] = {(uint8_t)p[5], (uint8_t)p[6], (uint8_t)p[7]};
        st = af_img_pad(&img, (int)p[0], (int)p[1], (int)p[2], (int)p[3], (af_pad_mode)(int)p[4], fill, &out);
        replaced = 1;
    } else if (!strcmp(name, "hflip")) {
        NEED(0);
        af_img_hflip(&img);
    } else if (!strcmp(name, "vflip")) {
        NEED(0);
        af_img_vflip(&img);
    } else if (!strcmp(name, "adjust_brightness") || !strcmp(name, "adjust_saturation") || !strcmp(name, "adjust_contrast") ||
               !strcmp(name, "adjust_hue") || !strcmp(name, "adjust_sharpness")) {
        NEED(1);
        if (!(p[0] >= 0) && strcmp(name, "adjust_hue")) {
            PyErr_Format(PyExc_ValueError, "%s: factor must be non-negative, got %g", name, p[0]);
            goto bad;
        }
        if (!strcmp(name, "adjust_hue") && !(p[0] >= -0.5 && p[0] <= 0.5)) {
            PyErr_Format(PyExc_ValueError, "adjust_hue: hue_factor must be in [-0.5, 0.5], got %g", p[0]);
            goto bad;
        }
        double f = p[0];
        if (!strcmp(name, "adjust_brightness")) af_img_adjust_brightness(&img, f);
        else if (!strcmp(name, "adjust_saturation")) af_img_adjust_saturation(&img, f);
        else if (!strcmp(name, "adjust_contrast")) af_img_adjust_contrast(&img, f);
        else if (!strcmp(name, "adjust_hue")) af_img_adjust_hue(&img, f);
        else st = af_img_adjust_sharpness(&img, f);
    } else if (!strcmp(name, "rgb_to_grayscale")) {
        NEED(1);
        if (!(p[0] == 1 || p[0] == 3)) {
            PyErr_Format(PyExc_ValueError, "rgb_to_grayscale: num_output_channels must be 1 or 3");
            goto bad;
        }
        st = af_img_grayscale(&img, (int)p[0], &out);
        replaced = 1;
    } else if (!strcmp(name, "posterize")) {
        NEED(1);
        if (!(p[0] >= 0 && p[0] <= 8 && p[0] == floor(p[0]))) {
            PyErr_Format(PyExc_ValueError, "posterize: bits must be an integer in [0, 8], got %g", p[0]);
            goto bad;
        }
        af_img_posterize(&img, (int)p[0]);
    } else if (!strcmp(name, "solarize")) {
        NEED(1);
        if (!(p[0] >= 0 && p[0] <= 255)) {
            PyErr_Format(PyExc_ValueError, "solarize: threshold must be in [0, 255], got %g", p[0]);
            goto bad;
        }
        af_img_solarize(&img, p[0]);
    } else if (!strcmp(name, "autocontrast")) {
        NEED(0);
        af_img_autocontrast(&img);
    } else if (!strcmp(name, "equalize")) {
        NEED(0);
        af_img_equalize(&img);
    } else if (!strcmp(name, "invert")) {
        NEED(0);
        af_img_invert(&img);
    } else if (!strcmp(name, "affine")) {
        /* angle, tx, ty, scale, shear_x, shear_y, has_center, cx, cy, interpolation, has_fill, fill r, g, b */
        NEED(14);
        for (int k = 0; k < 14; k++)
            if (!isfinite(p[k])) {
                PyErr_Format(PyExc_ValueError, "affine: parameters must be finite");
                goto bad;
            }
        if (!(p[9] == 0 || p[9] == 1)) {
            PyErr_Format(PyExc_ValueError, "affine: interpolation must be nearest or bilinear");
            goto bad;
        }
        uint8_t fill[3] = {(uint8_t)p[11], (uint8_t)p[12], (uint8_t)p[13]};
        Py_BEGIN_ALLOW_THREADS
        st = af_img_affine(&img, p[0], p[1], p[2], p[3], p[4], p[5], p[6] != 0, p[7], p[8], (int)p[9], p[10] != 0 ? fill : NULL, &out);
        Py_END_ALLOW_THREADS
        replaced = 1;
    } else if (!strcmp(name, "randaugment_op")) {
        /* op index, signed magnitude, has_fill, fill r, g, b */
        NEED(6);
        if (!(p[0] >= 0 && p[0] < AF_RA_NUM_OPS && p[0] == floor(p[0])) || !isfinite(p[1])) {
            PyErr_Format(PyExc_ValueError, "randaugment_op: op must be an index in [0, %d) and the magnitude finite", AF_RA_NUM_OPS);
            goto bad;
        }
        if ((int)p[0] == AF_RA_POSTERIZE && !(p[1] >= 0 && p[1] <= 8)) {
            PyErr_Format(PyExc_ValueError, "randaugment_op: Posterize bits must be in [0, 8]");
            goto bad;
        }
        uint8_t fill[3] = {(uint8_t)p[3], (uint8_t)p[4], (uint8_t)p[5]};
        st = af_randaugment_apply_op(&img, (int)p[0], p[1], p[2] != 0 ? fill : NULL);
    } else if (!strcmp(name, "sobel")) {
        NEED(3);
        if (!(p[0] >= 0 && p[0] <= 2) || !(p[2] == 1 || p[2] == 3)) {
            PyErr_Format(PyExc_ValueError, "sobel: magnitude must be l2/l1/half_abs and out_channels 1 or 3");
            goto bad;
        }
        st = af_img_sobel(&img, (af_sobel_magnitude)(int)p[0], p[1] != 0, (int)p[2], &out);
        replaced = 1;
    } else if (!strcmp(name, "to_tensor")) {
        /* params: [] or mean[C] + std[C] */
        int C = img.channels;
        if (np != 0 && np != 2 * C) {
            PyErr_Format(PyExc_ValueError, "to_tensor: mean and std need %d values each", C);
            goto bad;
        }
        float mean[3], sd[3];
        for (int c = 0; c < C && np; c++) {
            mean[c] = (float)p[c];
            sd[c] = (float)p[C + c];
            if (sd[c] == 0.0f) {
                PyErr_Format(PyExc_ValueError, "normalize: std evaluated to zero, leading to division by zero");
                goto bad;
            }
        }
        npy_intp dims[3] = {C, img.height, img.width};
        PyObject *arr = PyArray_SimpleNew(3, dims, NPY_FLOAT32);
        if (arr) af_img_to_tensor(&img, np ? mean : NULL, np ? sd : NULL, PyArray_DATA((PyArrayObject *)arr));
        af_image_free(&img);
        return arr;
    } else {
        PyErr_Format(PyExc_ValueError, "unknown image op '%s'", name);
        goto bad;
    }
#undef NEED
    if (st != AF_OK) {
        af_image_free(&img);
        return af_py_raise(st);
    }
    if (replaced) {
        af_image_free(&img);
        return image_to_numpy(&out);
    }
    return image_to_numpy(&img);
bad:
    af_image_free(&img);
    af_image_free(&out);
    return NULL;
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

PyMethodDef af_image_methods[] = {
    {"image_decode", py_image_decode, METH_VARARGS, "image_decode(bytes, max_pixels, name) -> uint8 (H, W, 3)"},
    {"image_read", py_image_read, METH_VARARGS, "image_read(path, max_pixels) -> uint8 (H, W, 3)"},
    {"pipeline_build", py_pipeline_build, METH_O, "pipeline_build(spec float64 array) -> pipeline capsule"},
    {"pipeline_run", py_pipeline_run, METH_VARARGS, "pipeline_run(pipeline, image, seed, stream) -> array"},
    {"pipeline_output_shape", py_pipeline_output_shape, METH_VARARGS, "pipeline_output_shape(pipeline, h, w) -> (C, H, W)"},
    {"resized_crop_params", py_resized_crop_params, METH_VARARGS, "RandomResizedCrop box (top, left, h, w)"},
    {"erasing_params", py_erasing_params, METH_VARARGS, "RandomErasing box (top, left, h, w) or None"},
    {"randaugment", py_randaugment, METH_VARARGS, "randaugment(img, num_ops, magnitude, num_bins, op_mask, seed, stream)"},
    {"randaugment_magnitude", py_randaugment_magnitude, METH_VARARGS, "(value, signed) of an op's magnitude bin"},
    {"randaugment_ops", py_randaugment_ops, METH_NOARGS, "the 14 op names in torchvision's table order"},
    {"image_op", py_image_op, METH_VARARGS, "image_op(name, image, params) -> array"},
    {NULL},
};
