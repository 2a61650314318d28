/* spool.h -- coild's ingest part sequencer: streamed uploads spooled to files.
 *
 * A client streams a long document as ingest requests carrying "part" 0, 1,
 * 2, ... and "last"; coild appends each part's text to a spool file of its
 * own and hands the file to a worker once the last part is in.  An upload is
 * keyed by (client, document name): the client is an opaque byte string
 * (coild's routing id).  A part out of order, or one that would make the
 * document larger than the limit, discards the upload (its file is removed)
 * and the client starts again from part 0.  A whole document (part -1) is an
 * upload of one part.
 *
 * Uploads in progress are bounded (coil_spool_limits_t): each holds a file
 * descriptor and a file of up to max_document_bytes, so without bounds one
 * client could exhaust coild's descriptors or its disk.  A new streamed
 * upload past max_per_client (this client's) or max_total (everyone's) is
 * refused with COIL_EBUSY; a whole document is never refused for it (it does
 * not stay).  An upload without a part for idle_ms is discarded by
 * coil_spool_expire (a client that crashed mid-upload leaves nothing
 * behind).  Time is the caller's (now_ms, any monotonic clock).
 *
 * Internal to coild (src/server.c); its own module so that
 * tests/fuzz/fuzz_sequencer.c can drive it without sockets.  Not thread-safe.
 */
#ifndef COIL_SPOOL_H
#define COIL_SPOOL_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COIL_SPOOL_CLIENT_MAX 300 /* longest client key (coild: 1 + a routing id) */

typedef struct coil_spool_set coil_spool_set_t;

typedef struct {
    size_t max_per_client; /* streamed uploads in progress per client; 0 = unlimited */
    size_t max_total;      /* for all clients together; 0 = unlimited */
    int64_t idle_ms;       /* coil_spool_expire discards an upload idle this long; 0 = never */
} coil_spool_limits_t;

/* A set of uploads in progress, spooling into dir (which must exist; the
 * path is copied), within lim (NULL: unlimited; copied).  NULL on failure
 * (err set). */
coil_spool_set_t *coil_spool_set_new(const char *dir, const coil_spool_limits_t *lim, coil_err_t *err);
/* Discards every upload still in progress (files removed); NULL is a no-op. */
void coil_spool_set_free(coil_spool_set_t *s);
/* Uploads in progress. */
size_t coil_spool_set_count(const coil_spool_set_t *s);
/* Discards every upload whose last part came idle_ms or more before now_ms
 * (files removed, descriptors closed); returns how many. */
size_t coil_spool_expire(coil_spool_set_t *s, int64_t now_ms);

typedef struct {
    int64_t part;  /* the part taken (0 for a whole document) */
    int64_t bytes; /* bytes of the document so far */
    char *path;    /* complete: the spooled file, synced and closed; the caller owns it and the string */
} coil_spool_result_t;

/* Takes one part of the upload (client, name): part >= 0 with last, or -1 for
 * a whole document, at now_ms.  Returns 0 when the part is taken and more
 * are expected, 1 when it was the last (res->path is the complete file: the
 * upload is over), or a negative code with err set when the upload is
 * discarded: COIL_EINVAL (part out of order; a streamed upload starts at
 * part 0), COIL_ETOOBIG (more than max_bytes in all), COIL_EIO / COIL_EFULL
 * (the spool file could not be written), COIL_ENOMEM; or COIL_EBUSY when a
 * new streamed upload is over the limits (nothing was started, nothing of
 * the client's other uploads changes). */
int coil_spool_part(coil_spool_set_t *s, const void *client, size_t client_len, const char *name, int64_t part,
                    bool last, const char *text, size_t text_len, int64_t max_bytes, int64_t now_ms,
                    coil_spool_result_t *res, coil_err_t *err);

#endif
