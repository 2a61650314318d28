/* error.c -- coil_strerror() and the coil_err_t helpers. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *coil_strerror(int code)
{
    switch (code) {
#define COIL_X_TEXT(name, value, text) case name: return text;
        COIL_ERRORS(COIL_X_TEXT)
#undef COIL_X_TEXT
    }
    return "unknown error";
}

const char *coil_err_name(int code)
{
    switch (code) {
#define COIL_X_NAME(name, value, text) case name: return #name;
        COIL_ERRORS(COIL_X_NAME)
#undef COIL_X_NAME
    }
    return "COIL_E?";
}

int coil_err_set(coil_err_t *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

int coil_err_prefix(coil_err_t *err, const char *fmt, ...)
{
    char prefix[COIL_ERR_MSG_MAX], old[COIL_ERR_MSG_MAX];
    va_list ap;

    if (!err)
        return 0;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Truncation is acceptable: the message is advisory text. */
    size_t n = strlen(prefix);
    if (n > sizeof err->msg - 3)
        n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    memcpy(err->msg + n, ": ", 2);
    n += 2;
    size_t m = strlen(old);
    if (m > sizeof err->msg - 1 - n)
        m = sizeof err->msg - 1 - n;
    memcpy(err->msg + n, old, m);
    err->msg[n + m] = '\0';
    return err->code;
}

void coil_err_clear(coil_err_t *err)
{
    if (err) {
        err->code = 0;
        err->msg[0] = '\0';
    }
}

static coil_warn_fn warn_fn;
static void *warn_ud;

void coil_warn_set_handler(coil_warn_fn fn, void *ud)
{
    warn_fn = fn;
    warn_ud = ud;
}

void coil_warn(const char *fmt, ...)
{
    char msg[COIL_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (warn_fn)
        warn_fn(msg, warn_ud);
    else
        fprintf(stderr, "coil: warning: %s\n", msg);
}
