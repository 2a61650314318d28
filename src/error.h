/* error.h -- coil's error codes and the error-message carrier.
 *
 * Every fallible function returns int: 0 (COIL_OK) on success or a negative
 * COIL_E* code.  Functions that can say more take a coil_err_t * (may be NULL)
 * and fill it with the code and a message carrying context (file, tensor,
 * line/column, SQL).  Constructors return NULL on failure and fill the err.
 */
#ifndef COIL_ERROR_H
#define COIL_ERROR_H

#include <stddef.h>

/* X-macro: one table gives the enum, coil_strerror() and coil_err_name(). */
#define COIL_ERRORS(X)                                                        \
    X(COIL_OK, 0, "success")                                                  \
    X(COIL_ENOMEM, -1, "out of memory")                                       \
    X(COIL_EINVAL, -2, "invalid argument")                                    \
    X(COIL_EIO, -3, "input/output error")                                     \
    X(COIL_EFORMAT, -4, "malformed input")                                    \
    X(COIL_EDTYPE, -5, "unsupported data type")                               \
    X(COIL_ESHAPE, -6, "tensor shape mismatch")                               \
    X(COIL_ENOTFOUND, -7, "not found")                                        \
    X(COIL_EMISMATCH, -8, "does not belong to this model")                    \
    X(COIL_ECHECKSUM, -9, "checksum mismatch")                                \
    X(COIL_EVERSION, -10, "unsupported version")                              \
    X(COIL_EUNSUPPORTED, -11, "unsupported feature")                          \
    X(COIL_ETOOBIG, -12, "too large")                                         \
    X(COIL_EDB, -13, "database error")                                        \
    X(COIL_EFULL, -14, "disk full")                                           \
    X(COIL_EBUSY, -15, "resource busy")                                       \
    X(COIL_EPROTO, -16, "protocol error")                                     \
    X(COIL_ESTATE, -17, "invalid state for this operation")                   \
    X(COIL_ETIMEOUT, -18, "timed out")                                        \
    X(COIL_ECONFIG, -19, "invalid configuration")                             \
    X(COIL_EINTR, -20, "interrupted")

enum coil_error_code {
#define COIL_X_ENUM(name, value, text) name = value,
    COIL_ERRORS(COIL_X_ENUM)
#undef COIL_X_ENUM
};

#define COIL_ERR_MSG_MAX 512

/* Filled by a failing call; code is 0 and msg empty after coil_err_clear. */
typedef struct coil_err {
    int code;
    char msg[COIL_ERR_MSG_MAX];
} coil_err_t;

/* Static text for a code; never NULL ("unknown error" for unknown codes). */
const char *coil_strerror(int code);
/* Symbolic name, e.g. "COIL_EFORMAT"; never NULL. */
const char *coil_err_name(int code);

/* Sets err (if not NULL) to code and a printf-formatted message.
 * Returns code, so callers can write `return coil_err_set(err, ...)`. */
int coil_err_set(coil_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends "prefix: " to an already set message (adds context on the way up).
 * Returns err->code (0 if err is NULL). */
int coil_err_prefix(coil_err_t *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void coil_err_clear(coil_err_t *err);

/* Warnings: something went wrong and was worked around (a damaged checkpoint
 * skipped, say).  The default handler writes "coil: warning: MSG" to stderr;
 * a program may route them elsewhere (NULL restores the default).  The
 * handler is process-wide: set it before starting threads. */
typedef void (*coil_warn_fn)(const char *msg, void *ud);
void coil_warn_set_handler(coil_warn_fn fn, void *ud);
void coil_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
