#include "arena.h"

#include <stdlib.h>

af_status af_tensor_view_at(const af_tensor *base, int64_t start, int ndim, const int64_t *shape,
                            af_tensor **out) {
    *out = NULL;
    if (ndim < 0 || ndim > AF_MAX_DIMS)
        return AF_FAIL(AF_ERR_VALUE, "tensors have 0 to %d dims, got %d", AF_MAX_DIMS, ndim);
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0) return AF_FAIL(AF_ERR_VALUE, "negative dimension %lld", (long long)shape[d]);
    int64_t numel = af_shape_numel(ndim, shape);
    if (start < 0 || start > base->numel || numel > base->numel - start) {
        char buf[96];
        return AF_FAIL(AF_ERR_VALUE, "a view of shape %s at element %lld does not fit in a tensor of %lld elements",
                       af_shape_str(ndim, shape, buf, sizeof buf), (long long)start, (long long)base->numel);
    }
    /* af_tensor_view checks numel against its source: view the base whole, then narrow */
    AF_TRY(af_tensor_view(base, 1, &base->numel, out));
    af_tensor *v = *out;
    v->offset += (size_t)start * af_dtype_size(base->dtype);
    v->ndim = ndim;
    for (int d = 0; d < ndim; d++) v->shape[d] = shape[d];
    v->numel = numel;
    v->memory_format = AF_FORMAT_NCHW;
    return AF_OK;
}

af_status af_tensor_set_data(af_tensor *t, const af_tensor *src) {
    if (t == src) return AF_OK;
    int relayout = t->dtype != src->dtype || !af_tensor_same_shape(t, src);
    if (relayout && atomic_load(&t->refcount) > 1)
        return AF_FAIL(AF_ERR_RUNTIME,
                       "cannot change the dtype or shape of a tensor that a recorded graph still holds; "
                       "run backward() or drop the graph first");
    if (!af_device_equal(t->device, src->device) && t->grad)
        return AF_FAIL(AF_ERR_DEVICE, "cannot move a tensor that has a .grad to another device; set .grad = None first");
    /* `keep` holds the old storage so that t's own reference can be dropped here and the storage
     * freed (the way tensor.c frees storages) when keep goes */
    af_tensor *keep = NULL;
    AF_TRY(af_tensor_alias(t, &keep));
    unsigned long version = af_tensor_version(t);
    atomic_fetch_sub(&t->storage->refcount, 1);
    atomic_fetch_add(&src->storage->refcount, 1);
    t->storage = src->storage;
    /* unsigned wrap-around is intended: the sum with the new storage's count is `version` */
    t->version_base = version - atomic_load(&src->storage->version);
    t->offset = src->offset;
    t->readonly = src->readonly;
    t->device = src->device;
    if (relayout) {
        t->dtype = src->dtype;
        t->ndim = src->ndim;
        for (int d = 0; d < src->ndim; d++) t->shape[d] = src->shape[d];
        t->numel = src->numel;
        af_tensor_release(t->grad);
        af_tensor_release(t->grad_slot);
        t->grad = t->grad_slot = NULL;
    }
    t->memory_format = src->memory_format;
    af_tensor_release(keep);
    return AF_OK;
}

/* dst's bytes = src's, same device and size, through the device's allocator (never a raw memcpy). */
static af_status copy_bytes(af_tensor *dst, const af_tensor *src) {
    return dst->storage->allocator->memcpy(dst->device, af_tensor_data(dst), af_tensor_data(src), af_tensor_nbytes(src));
}

af_status af_arena_pack(af_tensor *const *members, int64_t n, af_tensor **out) {
    *out = NULL;
    int64_t total = 0;
    for (int64_t k = 0; k < n; k++) {
        const af_tensor *m = members[k];
        if (m->dtype != members[0]->dtype || !af_device_equal(m->device, members[0]->device))
            return AF_FAIL(AF_ERR_TYPE, "an arena holds one dtype on one device: member %lld is %s, member 0 is %s",
                           (long long)k, af_dtype_name(m->dtype), af_dtype_name(members[0]->dtype));
        for (int64_t j = 0; j < k; j++)
            if (members[j] == m)
                return AF_FAIL(AF_ERR_VALUE, "an arena cannot hold the same tensor twice (members %lld and %lld)",
                               (long long)j, (long long)k);
        total += m->numel;
    }
    af_dtype dtype = n ? members[0]->dtype : AF_DTYPE_F32;
    af_device device = n ? members[0]->device : AF_CPU;
    AF_TRY(af_tensor_new(dtype, device, 1, &total, out));
    int64_t start = 0;
    for (int64_t k = 0; k < n; k++) {
        af_tensor *m = members[k], *slice = NULL;
        af_status st = af_tensor_view_at(*out, start, m->ndim, m->shape, &slice);
        if (st == AF_OK) st = copy_bytes(slice, m);
        if (st == AF_OK) {
            slice->memory_format = m->memory_format;
            st = af_tensor_set_data(m, slice);
        }
        af_tensor_release(slice);
        if (st != AF_OK) { /* members already moved keep valid bytes in the arena they share */
            af_tensor_release(*out);
            *out = NULL;
            return st;
        }
        start += m->numel;
    }
    return AF_OK;
}

/* Element index of member m inside arena, or -1 when it lives elsewhere. */
static int64_t place_in(const af_tensor *m, const af_tensor *arena) {
    if (m->storage != arena->storage || m->dtype != arena->dtype || m->offset < arena->offset) return -1;
    size_t bytes = m->offset - arena->offset, size = af_dtype_size(arena->dtype);
    if (bytes % size) return -1;
    int64_t start = (int64_t)(bytes / size);
    return start + m->numel <= arena->numel ? start : -1;
}

af_status af_arena_attach_grads(af_tensor *const *members, int64_t n, const af_tensor *arena,
                                af_tensor **grad_arena_out) {
    *grad_arena_out = NULL;
    for (int64_t k = 0; k < n; k++)
        if (place_in(members[k], arena) < 0)
            return AF_FAIL(AF_ERR_VALUE, "member %lld does not live in this arena", (long long)k);
    af_tensor *grads = NULL;
    AF_TRY(af_tensor_zeros_like(arena, &grads));
    af_tensor **slots = calloc(n > 0 ? (size_t)n : 1, sizeof *slots);
    if (!slots) {
        af_tensor_release(grads);
        return AF_FAIL(AF_ERR_OOM, "out of memory attaching gradient slots");
    }
    af_status st = AF_OK;
    for (int64_t k = 0; k < n; k++)
        AF_CHECK(af_tensor_view_at(grads, place_in(members[k], arena), members[k]->ndim, members[k]->shape, &slots[k]));
    for (int64_t k = 0; k < n; k++)
        if (members[k]->grad) AF_CHECK(copy_bytes(slots[k], members[k]->grad));
    /* nothing below fails: members change only once every slot is filled */
    for (int64_t k = 0; k < n; k++) {
        af_tensor *m = members[k];
        if (m->grad) {
            af_tensor_release(m->grad);
            af_tensor_retain(slots[k]);
            m->grad = slots[k];
        }
        af_tensor_release(m->grad_slot);
        m->grad_slot = slots[k];
        slots[k] = NULL;
    }
    *grad_arena_out = grads;
    grads = NULL;
fail:
    for (int64_t k = 0; k < n; k++) af_tensor_release(slots[k]);
    free(slots);
    af_tensor_release(grads);
    return st;
}

int af_arena_status(af_tensor *const *members, int64_t n, const af_tensor *arena, const af_tensor *grad_arena) {
    int status = AF_ARENA_INTACT;
    int64_t start = 0;
    for (int64_t k = 0; k < n; k++) {
        const af_tensor *m = members[k];
        if (place_in(m, arena) != start) return AF_ARENA_MOVED;
        if (grad_arena) {
            if (!m->grad) status |= AF_ARENA_NO_GRAD;
            else if (m->grad != m->grad_slot || place_in(m->grad, grad_arena) != start) status |= AF_ARENA_FOREIGN_GRAD;
        }
        start += m->numel;
    }
    return start == arena->numel ? status : AF_ARENA_MOVED;
}
