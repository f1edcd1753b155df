#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char af_error_text[1024];
static _Thread_local char af_error_where[256];
static af_interrupt_fn af_interrupt_checker;

af_status af_error_set(af_status status, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(af_error_text, sizeof af_error_text, fmt, ap);
    va_end(ap);
    /* Keep the path from csrc/ on: the build directory prefix says nothing to a user. */
    const char *rel = strstr(file, "csrc/");
    snprintf(af_error_where, sizeof af_error_where, "%s:%d", rel ? rel : file, line);
    return status;
}

const char *af_error_message(void) { return af_error_text; }
const char *af_error_location(void) { return af_error_where; }

void af_error_clear(void) {
    af_error_text[0] = '\0';
    af_error_where[0] = '\0';
}

void af_set_interrupt_checker(af_interrupt_fn fn) { af_interrupt_checker = fn; }
int af_interrupted(void) { return af_interrupt_checker ? af_interrupt_checker() : 0; }
