/* Element types and devices. */
#ifndef AF_DTYPE_H
#define AF_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum af_dtype {
    AF_DTYPE_F32 = 0,
    AF_DTYPE_F64, /* for float64 gradient checks and reference math */
    AF_DTYPE_F16,
    AF_DTYPE_BF16,
    AF_DTYPE_U8,
    AF_DTYPE_I32,
    AF_DTYPE_I64,
    AF_DTYPE_BOOL,
    AF_DTYPE_COUNT
} af_dtype;

static inline size_t af_dtype_size(af_dtype d) {
    static const size_t sizes[AF_DTYPE_COUNT] = {4, 8, 2, 2, 1, 4, 8, 1};
    return sizes[d];
}

static inline const char *af_dtype_name(af_dtype d) {
    static const char *names[AF_DTYPE_COUNT] = {"float32", "float64", "float16", "bfloat16",
                                                "uint8",   "int32",   "int64",   "bool"};
    return (unsigned)d < AF_DTYPE_COUNT ? names[d] : "invalid";
}

static inline int af_dtype_is_float(af_dtype d) {
    return d == AF_DTYPE_F32 || d == AF_DTYPE_F64 || d == AF_DTYPE_F16 || d == AF_DTYPE_BF16;
}

typedef enum af_device_type { AF_DEVICE_CPU = 0, AF_DEVICE_CUDA = 1, AF_DEVICE_TYPE_COUNT } af_device_type;

typedef struct af_device {
    af_device_type type;
    int index; /* CUDA ordinal; 0 for the CPU */
} af_device;

static inline int af_device_equal(af_device a, af_device b) {
    return a.type == b.type && a.index == b.index;
}

#define AF_CPU ((af_device){AF_DEVICE_CPU, 0})

#endif
