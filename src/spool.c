/* spool.c -- coild's ingest part sequencer (see spool.h). */
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

typedef struct spool {
    struct spool *next;
    unsigned char client[COIL_SPOOL_CLIENT_MAX];
    size_t client_len;
    char *name; /* the document name (owned) */
    char *path;
    int fd;
    int64_t next_part, bytes;
    int64_t last_ms; /* when its last part came */
} spool_t;

struct coil_spool_set {
    char *dir;
    coil_spool_limits_t lim;
    spool_t *spools;
    size_t n;
    uint64_t seq; /* spool files are DIR/<hash of the name>-<seq>.txt */
};

coil_spool_set_t *coil_spool_set_new(const char *dir, const coil_spool_limits_t *lim, coil_err_t *err)
{
    coil_spool_set_t *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        coil_err_set(err, COIL_ENOMEM, "spool: out of memory");
        return NULL;
    }
    if (lim)
        s->lim = *lim;
    return s;
}

static void spool_drop(coil_spool_set_t *s, spool_t **p)
{
    spool_t *sp = *p;
    *p = sp->next;
    s->n--;
    if (sp->fd >= 0)
        close(sp->fd);
    if (sp->path)
        unlink(sp->path);
    free(sp->path);
    free(sp->name);
    free(sp);
}

void coil_spool_set_free(coil_spool_set_t *s)
{
    if (!s)
        return;
    while (s->spools)
        spool_drop(s, &s->spools);
    free(s->dir);
    free(s);
}

size_t coil_spool_set_count(const coil_spool_set_t *s)
{
    return s ? s->n : 0;
}

size_t coil_spool_expire(coil_spool_set_t *s, int64_t now_ms)
{
    size_t n = 0;
    if (!s || s->lim.idle_ms <= 0)
        return 0;
    for (spool_t **p = &s->spools; *p;) {
        if (now_ms - (*p)->last_ms >= s->lim.idle_ms) {
            spool_drop(s, p);
            n++;
        } else {
            p = &(*p)->next;
        }
    }
    return n;
}

static size_t client_uploads(const coil_spool_set_t *s, const void *client, size_t client_len)
{
    size_t n = 0;
    for (const spool_t *p = s->spools; p; p = p->next)
        n += p->client_len == client_len && memcmp(p->client, client, client_len) == 0;
    return n;
}

static spool_t **find_spool(coil_spool_set_t *s, const void *client, size_t client_len, const char *name)
{
    for (spool_t **p = &s->spools; *p; p = &(*p)->next)
        if ((*p)->client_len == client_len && memcmp((*p)->client, client, client_len) == 0 &&
            strcmp((*p)->name, name) == 0)
            return p;
    return NULL;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int coil_spool_part(coil_spool_set_t *s, const void *client, size_t client_len, const char *name, int64_t part,
                    bool last, const char *text, size_t text_len, int64_t max_bytes, int64_t now_ms,
                    coil_spool_result_t *res, coil_err_t *err)
{
    memset(res, 0, sizeof *res);
    if (client_len > COIL_SPOOL_CLIENT_MAX || !name || (!text && text_len))
        return coil_err_set(err, COIL_EINVAL, "ingest: bad upload (client key of %zu bytes)", client_len);
    spool_t **pp = find_spool(s, client, client_len, name);
    spool_t *sp = pp ? *pp : NULL;
    if (part < 0)
        part = 0;
    if (!sp) {
        if (part != 0)
            return coil_err_set(err, COIL_EINVAL,
                                "ingest: part %" PRId64 " of an upload not in progress (a streamed upload starts at "
                                "part 0; one with no part for limits.upload_idle_seconds is discarded)",
                                part);
        if (!last && s->lim.max_total && s->n >= s->lim.max_total)
            return coil_err_set(err, COIL_EBUSY,
                                "ingest: %zu streamed uploads in progress, the most coild takes (limits.max_uploads); "
                                "send the document whole or try again later",
                                s->n);
        if (!last && s->lim.max_per_client) {
            size_t mine = client_uploads(s, client, client_len);
            if (mine >= s->lim.max_per_client)
                return coil_err_set(err, COIL_EBUSY,
                                    "ingest: this client has %zu streamed uploads in progress, the most it may have "
                                    "(limits.max_uploads_per_client); finish one first",
                                    mine);
        }
        if (!(sp = calloc(1, sizeof *sp)))
            return coil_err_set(err, COIL_ENOMEM, "ingest: out of memory");
        memcpy(sp->client, client, client_len);
        sp->client_len = client_len;
        sp->fd = -1;
        sp->next = s->spools;
        s->spools = sp;
        s->n++;
        pp = &s->spools;
        size_t pl = strlen(s->dir) + 64;
        if (!(sp->name = strdup(name)) || !(sp->path = malloc(pl))) {
            spool_drop(s, pp);
            return coil_err_set(err, COIL_ENOMEM, "ingest: out of memory");
        }
        snprintf(sp->path, pl, "%s/%016" PRIx64 "-%" PRIu64 ".txt", s->dir, (uint64_t)XXH3_64bits(name, strlen(name)),
                 ++s->seq);
        if ((sp->fd = open(sp->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
            free(sp->path); /* not created: nothing to remove */
            sp->path = NULL;
            spool_drop(s, pp);
            return coil_err_set(err, COIL_EIO, "cannot spool the document");
        }
    } else if (part != sp->next_part) {
        int64_t want = sp->next_part;
        spool_drop(s, pp);
        return coil_err_set(err, COIL_EINVAL, "ingest: expected part %" PRId64 ", got %" PRId64 " (the upload is discarded)",
                            want, part);
    }
    if (max_bytes < sp->bytes || text_len > (uint64_t)(max_bytes - sp->bytes)) {
        spool_drop(s, pp);
        return coil_err_set(err, COIL_ETOOBIG,
                            "ingest: the document is larger than limits.max_document_bytes (the upload is discarded)");
    }
    if (write_all(sp->fd, text, text_len) != 0) {
        int e = errno;
        spool_drop(s, pp);
        return coil_err_set(err, e == ENOSPC ? COIL_EFULL : COIL_EIO, "cannot spool the document (disk full?)");
    }
    sp->bytes += (int64_t)text_len;
    sp->next_part = part + 1;
    sp->last_ms = now_ms;
    res->part = part;
    res->bytes = sp->bytes;
    if (!last)
        return 0;
    int fd = sp->fd;
    sp->fd = -1;
    if (fsync(fd) != 0) {
        close(fd);
        spool_drop(s, pp);
        return coil_err_set(err, COIL_EIO, "cannot spool the document");
    }
    if (close(fd) != 0) {
        spool_drop(s, pp);
        return coil_err_set(err, COIL_EIO, "cannot spool the document");
    }
    res->path = sp->path; /* the caller owns the file now */
    sp->path = NULL;
    spool_drop(s, pp);
    return 1;
}
