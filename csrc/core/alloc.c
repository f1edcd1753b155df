#include "alloc.h"

#include <stdlib.h>
#include <string.h>

void *af_alloc_host(size_t nbytes) {
    void *p = NULL;
    /* posix_memalign needs a non-zero size multiple of the alignment for portable behaviour. */
    size_t rounded = (nbytes + 63) & ~(size_t)63;
    if (rounded < nbytes) return NULL; /* nbytes within 63 of SIZE_MAX */
    if (rounded == 0) rounded = 64;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    return p;
}

void af_free_host(void *p) { free(p); }

static void *cpu_alloc(af_device device, size_t nbytes) {
    (void)device;
    return af_alloc_host(nbytes);
}

static void cpu_free(af_device device, void *p) {
    (void)device;
    af_free_host(p);
}

static af_status cpu_memset(af_device device, void *p, int value, size_t nbytes) {
    (void)device;
    if (nbytes) memset(p, value, nbytes);
    return AF_OK;
}

static af_status cpu_memcpy(af_device device, void *dst, const void *src, size_t nbytes) {
    (void)device;
    if (nbytes && dst != src) memmove(dst, src, nbytes);
    return AF_OK;
}

static af_status cpu_copy_to(af_device to, void *dst, af_device from, const void *src, size_t nbytes) {
    if (to.type != AF_DEVICE_CPU || from.type != AF_DEVICE_CPU)
        return AF_FAIL(AF_ERR_DEVICE, "the CPU allocator copies only between host buffers");
    return cpu_memcpy(to, dst, src, nbytes);
}

static const af_allocator cpu_allocator = {.name = "cpu", .alloc = cpu_alloc, .free = cpu_free,
                                           .memset = cpu_memset, .memcpy = cpu_memcpy, .copy_to = cpu_copy_to};

static const af_allocator *_Atomic registry[AF_DEVICE_TYPE_COUNT] = {[AF_DEVICE_CPU] = &cpu_allocator};

af_status af_allocator_register(af_device_type type, const af_allocator *allocator) {
    if ((unsigned)type >= AF_DEVICE_TYPE_COUNT)
        return AF_FAIL(AF_ERR_DEVICE, "invalid device type %d", (int)type);
    if (!allocator || !allocator->alloc || !allocator->free || !allocator->memset || !allocator->memcpy ||
        !allocator->copy_to)
        return AF_FAIL(AF_ERR_INTERNAL, "an allocator must provide every function of af_allocator");
    registry[type] = allocator;
    return AF_OK;
}

const af_allocator *af_allocator_get(af_device_type type) {
    return (unsigned)type < AF_DEVICE_TYPE_COUNT ? registry[type] : NULL;
}
