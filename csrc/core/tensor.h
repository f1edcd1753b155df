/* af_tensor: the one array type of the core.
 *
 * A tensor is a small refcounted header (dtype, device, shape) over a refcounted storage (the
 * bytes). Tensors are always contiguous in row-major order of `shape`; `memory_format` only records
 * whether a 4-D tensor's dims are to be read as NCHW (the default) or NHWC. Several headers may
 * share one storage: a reshape is a new header over the same bytes, and autograd keeps "aliases"
 * of outputs (headers without graph links) so that saved outputs never form reference cycles.
 *
 * Storage comes from its device's allocator (csrc/core/alloc.h), or wraps foreign memory (a NumPy
 * array, a DLPack producer) with a release callback that the owner supplied. This file never
 * touches the bytes itself: zero-filling, clones and transfers go through the allocator, so the
 * same code serves every device.
 *
 * `version` counts in-place writes to the storage (the tape bumps it for every in-place op; see
 * csrc/autograd/tape.h): backward compares it with the value recorded at forward time and refuses
 * to use data that changed since. Writes that bypass the ops (NumPy writing into memory shared
 * through from_numpy or DLPack) cannot be seen.
 *
 * Autograd fields live here because a leaf's gradient belongs to the tensor; the graph itself is in
 * csrc/autograd/tape.h. */
#ifndef AF_TENSOR_H
#define AF_TENSOR_H

#include <stdint.h>
#ifdef __cplusplus
#include <atomic>
/* .cu files are C++; C++23's <stdatomic.h> makes the same choices */
typedef std::atomic<long> atomic_long;
typedef std::atomic<unsigned long> atomic_ulong;
using std::atomic_fetch_add;
using std::atomic_load;
#else
#include <stdatomic.h>
#endif

#include "alloc.h"
#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AF_MAX_DIMS 5

typedef enum af_memory_format { AF_FORMAT_NCHW = 0, AF_FORMAT_NHWC = 1 } af_memory_format;

typedef struct af_storage {
    atomic_long refcount;
    void *data;
    size_t nbytes;
    af_device device;
    const af_allocator *allocator; /* of `device`: frees `data` unless `release` is set */
    atomic_ulong version;          /* in-place writes so far */
    /* Foreign memory: release(owner) is called instead of freeing `data`. May run on any thread. */
    void (*release)(void *owner);
    void *owner;
} af_storage;

struct af_node;

typedef struct af_tensor {
    atomic_long refcount;
    af_dtype dtype;
    af_device device;
    int ndim;
    int64_t shape[AF_MAX_DIMS];
    int64_t numel;
    af_memory_format memory_format;
    af_storage *storage;
    size_t offset; /* bytes from storage->data */
    int readonly;  /* set for views of read-only foreign memory */

    /* autograd */
    int requires_grad;        /* a leaf that wants .grad, or a result of such a computation */
    struct af_tensor *grad;   /* leaf gradient, accumulated by backward */
    struct af_tensor *grad_slot; /* a leaf's view into a gradient arena (core/arena.h): backward
                                    adopts it, zeroed, as .grad when .grad is None */
    unsigned long version_base;  /* added to the storage's version: af_tensor_set_data keeps a
                                    re-pointed tensor's version where it was (packing copies the
                                    values, so a graph that saved the tensor stays valid) */
    struct af_node *grad_fn;  /* the node that produced this tensor; NULL for leaves */
    int grad_fn_output;       /* which output of grad_fn this tensor is */
    struct af_tensor *release_next; /* af_tensor_release's worklist, see tensor.c */
} af_tensor;

/* Uninitialised contents. `shape` has `ndim` entries, each >= 0. Fails with AF_ERR_DEVICE when this
 * build has no allocator for the device (a CUDA tensor in a CPU-only build). */
af_status af_tensor_new(af_dtype dtype, af_device device, int ndim, const int64_t *shape,
                        af_tensor **out);
af_status af_tensor_zeros(af_dtype dtype, af_device device, int ndim, const int64_t *shape,
                          af_tensor **out);
/* Same dtype/device/shape as `like`, zero-filled. */
af_status af_tensor_zeros_like(const af_tensor *like, af_tensor **out);
af_status af_tensor_empty_like(const af_tensor *like, af_tensor **out);
/* A tensor over memory somebody else owns; release(owner) runs when the last reference drops. */
af_status af_tensor_wrap(af_dtype dtype, af_device device, int ndim, const int64_t *shape,
                         void *data, void (*release)(void *owner), void *owner, af_tensor **out);
/* A new header over the same bytes with another shape of the same numel; no autograd links. */
af_status af_tensor_view(const af_tensor *t, int ndim, const int64_t *shape, af_tensor **out);
/* A new header over the same bytes and shape; no autograd links. */
af_status af_tensor_alias(const af_tensor *t, af_tensor **out);
/* A deep copy into fresh storage; no autograd links. */
af_status af_tensor_clone(const af_tensor *t, af_tensor **out);
af_status af_tensor_fill_zero(af_tensor *t);
/* Every byte of t's elements set to `byte` (0xFF makes float NaNs: poisoned buffers in tests). */
af_status af_tensor_fill_bytes(af_tensor *t, int byte);
/* A copy on `device` (any device with an allocator, the same one included); no autograd links. */
af_status af_tensor_copy_to(const af_tensor *t, af_device device, af_tensor **out);
/* All af_tensor_nbytes(t) bytes into host memory `dst`, whatever t's device: how device-neutral code
 * reads a result (e.g. one flag) without touching a device pointer. */
af_status af_tensor_read(const af_tensor *t, void *dst);

/* Set by csrc/autograd/tape.c when it creates its first node: the core does not depend on the
 * autograd layer, but a tensor dropping its producer node must release it. */
extern void (*af_grad_fn_release)(struct af_node *node);

void af_tensor_retain(af_tensor *t);
void af_tensor_release(af_tensor *t); /* NULL is fine */

int64_t af_shape_numel(int ndim, const int64_t *shape);
int af_tensor_same_shape(const af_tensor *a, const af_tensor *b);
/* "(2, 3, 4)" into buf, for error messages. */
const char *af_shape_str(int ndim, const int64_t *shape, char *buf, size_t size);

static inline void *af_tensor_data(const af_tensor *t) {
    return (char *)t->storage->data + t->offset;
}
static inline size_t af_tensor_nbytes(const af_tensor *t) {
    return (size_t)t->numel * af_dtype_size(t->dtype);
}
static inline unsigned long af_tensor_version(const af_tensor *t) {
    return atomic_load(&t->storage->version) + t->version_base;
}
static inline void af_tensor_bump_version(af_tensor *t) { atomic_fetch_add(&t->storage->version, 1); }

#ifdef __cplusplus
}
#endif

#endif
