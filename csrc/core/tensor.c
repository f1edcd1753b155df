#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>

int64_t af_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

int af_tensor_same_shape(const af_tensor *a, const af_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

const char *af_shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t used = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (ndim == 1 && used < size) used += (size_t)snprintf(buf + used, size - used, ",");
    if (used < size) snprintf(buf + used, size - used, ")");
    return buf;
}

static af_status check_shape(int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > AF_MAX_DIMS)
        return AF_FAIL(AF_ERR_VALUE, "tensors have 0 to %d dims, got %d", AF_MAX_DIMS, ndim);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return AF_FAIL(AF_ERR_VALUE, "negative dimension %lld", (long long)shape[i]);
        if (shape[i] > 0 && n > INT64_MAX / 16 / shape[i])
            return AF_FAIL(AF_ERR_VALUE, "tensor of this shape would overflow 64-bit sizes");
        n *= shape[i];
    }
    return AF_OK;
}

static af_tensor *header_new(af_dtype dtype, af_device device, int ndim, const int64_t *shape) {
    af_tensor *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    atomic_init(&t->refcount, 1);
    t->dtype = dtype;
    t->device = device;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = af_shape_numel(ndim, shape);
    return t;
}

static void storage_release(af_storage *s) {
    if (!s || atomic_fetch_sub(&s->refcount, 1) != 1) return;
    if (s->release)
        s->release(s->owner);
    else
        s->allocator->free(s->device, s->data);
    free(s);
}

static af_status device_allocator(af_device device, const af_allocator **out) {
    *out = NULL;
    if ((unsigned)device.type >= AF_DEVICE_TYPE_COUNT || device.index < 0)
        return AF_FAIL(AF_ERR_DEVICE, "invalid device (type %d, index %d)", (int)device.type, device.index);
    *out = af_allocator_get(device.type);
    if (!*out) {
        if (device.type == AF_DEVICE_CUDA)
            return AF_FAIL(AF_ERR_DEVICE, "this build of affectfer has no CUDA support");
        return AF_FAIL(AF_ERR_DEVICE, "this build of affectfer has no allocator for device type %d", (int)device.type);
    }
    return (*out)->check_device ? (*out)->check_device(device) : AF_OK;
}

static af_storage *storage_new(af_device device, const af_allocator *allocator, void *data, size_t nbytes) {
    af_storage *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    atomic_init(&s->refcount, 1);
    atomic_init(&s->version, 0);
    s->data = data;
    s->nbytes = nbytes;
    s->device = device;
    s->allocator = allocator;
    return s;
}

af_status af_tensor_new(af_dtype dtype, af_device device, int ndim, const int64_t *shape,
                        af_tensor **out) {
    *out = NULL;
    if ((unsigned)dtype >= AF_DTYPE_COUNT) return AF_FAIL(AF_ERR_TYPE, "invalid dtype %d", dtype);
    const af_allocator *allocator;
    AF_TRY(device_allocator(device, &allocator));
    AF_TRY(check_shape(ndim, shape));
    size_t nbytes = (size_t)af_shape_numel(ndim, shape) * af_dtype_size(dtype);
    af_tensor *t = header_new(dtype, device, ndim, shape);
    void *data = allocator->alloc(device, nbytes);
    af_storage *s = data ? storage_new(device, allocator, data, nbytes) : NULL;
    if (!t || !s) {
        free(t);
        if (data) allocator->free(device, data);
        return AF_FAIL(AF_ERR_OOM, "out of memory allocating %zu bytes on %s", nbytes, allocator->name);
    }
    t->storage = s;
    *out = t;
    return AF_OK;
}

af_status af_tensor_zeros(af_dtype dtype, af_device device, int ndim, const int64_t *shape,
                          af_tensor **out) {
    AF_TRY(af_tensor_new(dtype, device, ndim, shape, out));
    return af_tensor_fill_zero(*out);
}

af_status af_tensor_zeros_like(const af_tensor *like, af_tensor **out) {
    return af_tensor_zeros(like->dtype, like->device, like->ndim, like->shape, out);
}

af_status af_tensor_empty_like(const af_tensor *like, af_tensor **out) {
    return af_tensor_new(like->dtype, like->device, like->ndim, like->shape, out);
}

af_status af_tensor_wrap(af_dtype dtype, af_device device, int ndim, const int64_t *shape,
                         void *data, void (*release)(void *owner), void *owner, af_tensor **out) {
    *out = NULL;
    if ((unsigned)dtype >= AF_DTYPE_COUNT) return AF_FAIL(AF_ERR_TYPE, "invalid dtype %d", dtype);
    const af_allocator *allocator;
    AF_TRY(device_allocator(device, &allocator));
    AF_TRY(check_shape(ndim, shape));
    af_tensor *t = header_new(dtype, device, ndim, shape);
    af_storage *s = t ? storage_new(device, allocator, data, (size_t)t->numel * af_dtype_size(dtype)) : NULL;
    if (!t || !s) {
        free(t);
        return AF_FAIL(AF_ERR_OOM, "out of memory allocating a tensor header");
    }
    s->release = release;
    s->owner = owner;
    t->storage = s;
    *out = t;
    return AF_OK;
}

af_status af_tensor_view(const af_tensor *t, int ndim, const int64_t *shape, af_tensor **out) {
    *out = NULL;
    AF_TRY(check_shape(ndim, shape));
    if (af_shape_numel(ndim, shape) != t->numel) {
        char a[96], b[96];
        return AF_FAIL(AF_ERR_VALUE, "cannot view a tensor of shape %s as shape %s",
                       af_shape_str(t->ndim, t->shape, a, sizeof a), af_shape_str(ndim, shape, b, sizeof b));
    }
    af_tensor *v = header_new(t->dtype, t->device, ndim, shape);
    if (!v) return AF_FAIL(AF_ERR_OOM, "out of memory allocating a tensor header");
    v->storage = t->storage;
    atomic_fetch_add(&t->storage->refcount, 1);
    v->offset = t->offset;
    v->readonly = t->readonly;
    if (ndim == t->ndim) v->memory_format = t->memory_format;
    *out = v;
    return AF_OK;
}

af_status af_tensor_alias(const af_tensor *t, af_tensor **out) {
    return af_tensor_view(t, t->ndim, t->shape, out);
}

af_status af_tensor_clone(const af_tensor *t, af_tensor **out) {
    return af_tensor_copy_to(t, t->device, out);
}

af_status af_tensor_copy_to(const af_tensor *t, af_device device, af_tensor **out) {
    AF_TRY(af_tensor_new(t->dtype, device, t->ndim, t->shape, out));
    af_tensor *c = *out;
    c->memory_format = t->memory_format;
    size_t nbytes = af_tensor_nbytes(t);
    af_status st;
    if (af_device_equal(device, t->device))
        st = c->storage->allocator->memcpy(device, af_tensor_data(c), af_tensor_data(t), nbytes);
    else /* the non-CPU side's allocator knows how to move bytes to and from the host */
        st = (device.type != AF_DEVICE_CPU ? c->storage->allocator : t->storage->allocator)
                 ->copy_to(device, af_tensor_data(c), t->device, af_tensor_data(t), nbytes);
    if (st != AF_OK) {
        af_tensor_release(c);
        *out = NULL;
    }
    return st;
}

af_status af_tensor_read(const af_tensor *t, void *dst) {
    return t->storage->allocator->copy_to(AF_CPU, dst, t->device, af_tensor_data(t), af_tensor_nbytes(t));
}

af_status af_tensor_fill_bytes(af_tensor *t, int byte) {
    af_status st = t->storage->allocator->memset(t->device, af_tensor_data(t), byte, af_tensor_nbytes(t));
    if (st == AF_OK) af_tensor_bump_version(t);
    return st;
}

af_status af_tensor_fill_zero(af_tensor *t) { return af_tensor_fill_bytes(t, 0); }

void af_tensor_retain(af_tensor *t) {
    if (t) atomic_fetch_add(&t->refcount, 1);
}

void (*af_grad_fn_release)(struct af_node *node);

/* Dropping a tensor can drop its producer node, whose inputs can drop their nodes, and so on down a
 * graph of any depth (a 10^5-step chain). Recursion would overflow the C stack there, so releases
 * are queued on a per-thread worklist and the outermost af_tensor_release of the thread drains it:
 * the stack depth stays constant whatever the graph. */
static _Thread_local af_tensor *release_pending;
static _Thread_local int release_draining;

static void tensor_destroy(af_tensor *t) {
    af_tensor_release(t->grad);
    af_tensor_release(t->grad_slot);
    if (t->grad_fn) af_grad_fn_release(t->grad_fn);
    storage_release(t->storage);
    free(t);
}

void af_tensor_release(af_tensor *t) {
    if (!t || atomic_fetch_sub(&t->refcount, 1) != 1) return;
    t->release_next = release_pending;
    release_pending = t;
    if (release_draining) return;
    release_draining = 1;
    while (release_pending) {
        af_tensor *next = release_pending;
        release_pending = next->release_next;
        tensor_destroy(next);
    }
    release_draining = 0;
}
