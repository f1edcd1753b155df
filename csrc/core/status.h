/* Error handling for the whole C core.
 *
 * Every function that can fail returns af_status. The human-readable message (with the C file and
 * line that failed) goes to a thread-local buffer, so the Python binding can turn it into the right
 * exception class after the call returns. Nothing in the core calls exit() or abort() on bad input:
 * a Jupyter kernel must survive every error we can detect. */
#ifndef AF_STATUS_H
#define AF_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum af_status {
    AF_OK = 0,
    AF_ERR_VALUE,     /* bad value or shape             -> ValueError */
    AF_ERR_TYPE,      /* wrong dtype or kind of object   -> TypeError */
    AF_ERR_INDEX,     /* index out of range              -> IndexError */
    AF_ERR_OOM,       /* allocation failed               -> affectfer.OutOfMemoryError */
    AF_ERR_IO,        /* file missing, unreadable        -> OSError */
    AF_ERR_FLOAT,     /* NaN/Inf where forbidden         -> FloatingPointError */
    AF_ERR_DEVICE,    /* wrong or unavailable device     -> ValueError */
    AF_ERR_CUDA,      /* CUDA/cuDNN/cuBLAS failure       -> affectfer.CudaError */
    AF_ERR_INTERRUPT, /* Ctrl-C seen by a long loop      -> KeyboardInterrupt */
    AF_ERR_RUNTIME,   /* misuse of state (backward twice)-> RuntimeError */
    AF_ERR_INTERNAL,  /* a bug in affectfer              -> RuntimeError */
    AF_STATUS_COUNT
} af_status;

/* Records the message for the calling thread and returns `status`, so a failing check reads
 * `return AF_FAIL(AF_ERR_VALUE, "x must be 4-D, got %d-D", nd);` */
af_status af_error_set(af_status status, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define AF_FAIL(status, ...) af_error_set((status), __FILE__, __LINE__, __VA_ARGS__)

const char *af_error_message(void); /* message of the last failure on this thread */
const char *af_error_location(void); /* "csrc/ops/conv2d.c:120" of that failure */
void af_error_clear(void);

/* Propagate a failure from a callee without touching its message. */
#define AF_TRY(expr)                                                                             \
    do {                                                                                         \
        af_status af_try_status_ = (expr);                                                       \
        if (af_try_status_ != AF_OK) return af_try_status_;                                      \
    } while (0)

/* The same inside a function with one `fail:` cleanup label and a local `af_status st`. */
#define AF_CHECK(expr)                                                                           \
    do {                                                                                         \
        st = (expr);                                                                             \
        if (st != AF_OK) goto fail;                                                              \
    } while (0)
#define AF_CHECK_FAIL(status, ...)                                                               \
    do {                                                                                         \
        st = AF_FAIL(status, __VA_ARGS__);                                                       \
        goto fail;                                                                               \
    } while (0)

/* Ctrl-C: the Python binding installs a checker; long C loops poll it between work items. */
typedef int (*af_interrupt_fn)(void);
void af_set_interrupt_checker(af_interrupt_fn fn);
int af_interrupted(void);

#ifdef __cplusplus
}
#endif

#endif
