/* store_session.c -- sessions: continuations of a document that can be
 * appended to, checkpointed and forked.
 *
 * A session's timeline is its parent's (or, for a root session, its
 * document's) timeline on [0, base) followed by its own tokens on
 * [base, head).  Sessions are append-only, so a child shares its ancestors'
 * history by reference: a lookup walks up the parent chain, each level
 * contributing only positions below the point where the level below forked
 * from it.  Nothing is copied on fork.
 */
#include "store_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

/* One level of the ancestry: the session itself, then its parents. */
typedef struct level {
    char id[COIL_STORE_SESSION_ID_LEN + 1];
    int64_t base, head;
} level_t;

typedef struct chain {
    level_t *lv; /* lv[0] is the session asked for */
    size_t n;
    int64_t doc_id;
} chain_t;

/* A cycle cannot be built through this API; the cap guards hostile files. */
#define MAX_DEPTH 100000

static int bad_id(const char *id, coil_err_t *err)
{
    size_t n = id ? strspn(id, "0123456789abcdef") : 0;
    if (n != COIL_STORE_SESSION_ID_LEN || id[n] != '\0')
        return coil_err_set(err, COIL_EINVAL, "store: '%s' is not a session id",
                            id ? id : "(null)");
    return 0;
}

static int new_id(char out[COIL_STORE_SESSION_ID_LEN + 1], coil_err_t *err)
{
    unsigned char r[COIL_STORE_SESSION_ID_LEN / 2];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t k = getrandom(r + got, sizeof r - got, 0);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return coil_err_set(err, COIL_EIO, "store: getrandom failed: %s", strerror(errno));
        }
        got += (size_t)k;
    }
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
    return 0;
}

/* Loads the ancestry of id (call inside a transaction). */
static int load_chain(coil_store_t *st, const char *id, chain_t *c, coil_err_t *err)
{
    char cur[COIL_STORE_SESSION_ID_LEN + 1];
    size_t cap = 0;

    memset(c, 0, sizeof *c);
    snprintf(cur, sizeof cur, "%s", id);
    for (;;) {
        sqlite3_stmt *s = coil_store__stmt(st, COIL_STORE__SES_LINK, err);
        if (!s)
            return err->code;
        sqlite3_bind_text(s, 1, cur, -1, SQLITE_TRANSIENT);
        int rc = sqlite3_step(s);
        if (rc != SQLITE_ROW) {
            sqlite3_reset(s);
            if (rc != SQLITE_DONE)
                return coil_store__fail(st, err, rc, "reading a session");
            if (c->n)
                return coil_err_set(err, COIL_EDB, "%s: session %s: parent %s is missing",
                                    st->path, id, cur);
            return coil_err_set(err, COIL_ENOTFOUND, "%s: no session %s", st->path, id);
        }
        if (c->n == cap) {
            size_t ncap = cap ? 2 * cap : 8;
            level_t *t = c->n >= MAX_DEPTH ? NULL : realloc(c->lv, ncap * sizeof *t);
            if (!t) {
                sqlite3_reset(s);
                return coil_err_set(err, c->n >= MAX_DEPTH ? COIL_EDB : COIL_ENOMEM,
                                    "%s: session %s: ancestry too deep", st->path, id);
            }
            c->lv = t;
            cap = ncap;
        }
        level_t *l = &c->lv[c->n++];
        snprintf(l->id, sizeof l->id, "%s", cur);
        const unsigned char *parent = sqlite3_column_text(s, 0);
        c->doc_id = sqlite3_column_int64(s, 1);
        l->base = sqlite3_column_int64(s, 2);
        l->head = sqlite3_column_int64(s, 3);
        if (l->base < 0 || l->head < l->base) { /* a file someone else wrote */
            sqlite3_reset(s);
            return coil_err_set(err, COIL_EDB, "%s: session %s: base %lld and head %lld are not a range of tokens",
                                st->path, cur, (long long)l->base, (long long)l->head);
        }
        bool root = parent == NULL;
        if (!root)
            snprintf(cur, sizeof cur, "%s", (const char *)parent);
        sqlite3_reset(s);
        if (root)
            return 0;
    }
}

static void chain_free(chain_t *c)
{
    free(c->lv);
    c->lv = NULL;
    c->n = 0;
}

static int insert_session(coil_store_t *st, const char *parent, int64_t doc_id, int64_t base,
                          char id_out[COIL_STORE_SESSION_ID_LEN + 1], coil_err_t *err)
{
    sqlite3_stmt *s;
    if (new_id(id_out, err) != 0 || !(s = coil_store__stmt(st, COIL_STORE__SES_INSERT, err)))
        return err->code;
    sqlite3_bind_text(s, 1, id_out, -1, SQLITE_STATIC);
    if (parent)
        sqlite3_bind_text(s, 2, parent, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, doc_id);
    sqlite3_bind_int64(s, 4, base);
    return coil_store__exec(st, s, "inserting a session", err);
}

int coil_store_session_new(coil_store_t *st, int64_t doc_id, int64_t position,
                           char id_out[COIL_STORE_SESSION_ID_LEN + 1], coil_err_t *err)
{
    coil_store__doc_state_t ds;
    int rc;

    COIL_STORE__ERR_LOCAL(err);
    if ((rc = coil_store__begin(st, err)) != 0)
        return rc;
    if (coil_store__doc_state(st, doc_id, &ds, err) != 0)
        goto fail;
    if (coil_store__doc_history(st, doc_id, position, COIL_EINVAL, "cannot start a session",
                                err) != 0)
        goto fail;
    if (position < 0 || position > ds.token_end) {
        coil_err_set(err, COIL_EINVAL,
                     "%s: document %lld: session position %lld is outside [%lld, %lld]",
                     st->path, (long long)doc_id, (long long)position,
                     (long long)ds.base_position, (long long)ds.token_end);
        goto fail;
    }
    if (insert_session(st, NULL, doc_id, position, id_out, err) != 0)
        goto fail;
    return coil_store__commit(st, err);
fail:
    coil_store__rollback(st);
    return err->code;
}

int coil_store_session_fork(coil_store_t *st, const char *parent, int64_t position,
                            char id_out[COIL_STORE_SESSION_ID_LEN + 1], coil_err_t *err)
{
    chain_t c;
    int rc;

    COIL_STORE__ERR_LOCAL(err);
    if ((rc = bad_id(parent, err)) != 0 || (rc = coil_store__begin(st, err)) != 0)
        return rc;
    if (load_chain(st, parent, &c, err) != 0)
        goto fail;
    if (position < 0)
        position = c.lv[0].head;
    if (position > c.lv[0].head) {
        coil_err_set(err, COIL_EINVAL, "%s: cannot fork session %s at %lld: its head is %lld",
                     st->path, parent, (long long)position, (long long)c.lv[0].head);
        goto fail;
    }
    if (coil_store__doc_history(st, c.doc_id, position, COIL_EINVAL, "cannot fork a session",
                                err) != 0)
        goto fail;
    if (insert_session(st, parent, c.doc_id, position, id_out, err) != 0)
        goto fail;
    chain_free(&c);
    return coil_store__commit(st, err);
fail:
    chain_free(&c);
    coil_store__rollback(st);
    return err->code;
}

int coil_store_request_key_valid(const char *key)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-";
    size_t n = key ? strspn(key, ok) : 0;
    return n >= 1 && n <= COIL_STORE_KEY_MAX && key[n] == '\0';
}

/* Reads the request_keys row of key into out (result only if want_result):
 * 0, COIL_ENOTFOUND or an error. */
static int request_read(coil_store_t *st, const char *key, coil_store_request_info_t *out, int want_result,
                        coil_err_t *err)
{
    sqlite3_stmt *s = coil_store__stmt(st, COIL_STORE__REQ_FIND, err);
    if (!s)
        return err->code;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return coil_err_set(err, COIL_ENOTFOUND, "%s: no write used request key '%s'", st->path, key);
    }
    if (rc != SQLITE_ROW) {
        coil_store__fail(st, err, rc, "looking up a request key");
        sqlite3_reset(s);
        return err->code;
    }
    const unsigned char *sid = sqlite3_column_text(s, 0), *res = sqlite3_column_text(s, 3);
    snprintf(out->session, sizeof out->session, "%s", sid ? (const char *)sid : "");
    out->head_before = sqlite3_column_int64(s, 1);
    out->head_after = sqlite3_column_int64(s, 2);
    out->result = NULL;
    if (want_result && res && !(out->result = strdup((const char *)res))) {
        sqlite3_reset(s);
        return coil_err_set(err, COIL_ENOMEM, "out of memory");
    }
    sqlite3_reset(s);
    return 0;
}

int coil_store_request_find(coil_store_t *st, const char *key, const char *session, coil_store_request_info_t *out,
                            coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    if (!coil_store_request_key_valid(key))
        return coil_err_set(err, COIL_EINVAL, "store: '%s' is not a request key (1..%d of A-Z a-z 0-9 . _ : -)",
                            key ? key : "(null)", COIL_STORE_KEY_MAX);
    coil_store_request_info_t ri;
    int rc = request_read(st, key, &ri, 1, err);
    if (rc)
        return rc;
    if (session && strcmp(ri.session, session) != 0) {
        free(ri.result);
        return coil_err_set(err, COIL_ESTATE, "%s: request key '%s' was used for session %s, not %s", st->path, key,
                            ri.session, session);
    }
    *out = ri;
    return 0;
}

int coil_store_session_append(coil_store_t *st, const char *id, const int32_t *tokens,
                              size_t n, const coil_store_ckpt_t *ckpt, const coil_store_request_t *req,
                              coil_err_t *err)
{
    coil_store__doc_state_t ds;
    chain_t c;
    sqlite3_stmt *s;
    int rc;

    COIL_STORE__ERR_LOCAL(err);
    if ((rc = bad_id(id, err)) != 0)
        return rc;
    if ((n && !tokens) || n > (size_t)INT32_MAX / 4)
        return coil_err_set(err, COIL_EINVAL, "store: session_append: bad tokens (%zu)", n);
    if (req && !coil_store_request_key_valid(req->key))
        return coil_err_set(err, COIL_EINVAL, "store: '%s' is not a request key (1..%d of A-Z a-z 0-9 . _ : -)",
                            req->key ? req->key : "(null)", COIL_STORE_KEY_MAX);
    if (!n && !ckpt && !req)
        return 0;
    if ((rc = coil_store__begin(st, err)) != 0)
        return rc;
    if (load_chain(st, id, &c, err) != 0)
        goto fail;
    int64_t head = c.lv[0].head;
    if (head > INT64_MAX - (int64_t)n) {
        coil_err_set(err, COIL_EDB, "%s: session %s: a head of %lld has no room for %zu more tokens", st->path, id,
                     (long long)head, n);
        goto fail;
    }
    int64_t new_head = head + (int64_t)n;
    /* the session's own rows must reach exactly its head (the furthest of them, not the last begun), or
     * the new row would overlap one (or leave a gap) and read back as something else: a file someone
     * else wrote */
    if (!(s = coil_store__stmt(st, COIL_STORE__SES_TAIL, err)))
        goto fail;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    int64_t tail = rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL ? sqlite3_column_int64(s, 0)
                                                                                : c.lv[0].base;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        coil_store__fail(st, err, rc, "reading the session's last tokens");
        goto fail;
    }
    if (tail != head) {
        coil_err_set(err, COIL_EDB, "%s: session %s: its tokens end at %lld, its head is %lld", st->path, id,
                     (long long)tail, (long long)head);
        goto fail;
    }
    if (req) {
        coil_store_request_info_t prev;
        rc = request_read(st, req->key, &prev, 0, err);
        if (rc == 0) {
            coil_err_set(err, COIL_ESTATE, "%s: request key '%s' was already used (session %s, %lld -> %lld)",
                         st->path, req->key, prev.session, (long long)prev.head_before,
                         (long long)prev.head_after);
            goto fail;
        }
        if (rc != COIL_ENOTFOUND)
            goto fail;
        if (!(s = coil_store__stmt(st, COIL_STORE__REQ_INSERT, err)))
            goto fail;
        sqlite3_bind_text(s, 1, req->key, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 3, head);
        sqlite3_bind_int64(s, 4, new_head);
        if (req->result)
            sqlite3_bind_text(s, 5, req->result, -1, SQLITE_STATIC);
        if (coil_store__exec(st, s, "recording a request key", err) != 0)
            goto fail;
    }
    if (ckpt) {
        if (ckpt->position != new_head) {
            coil_err_set(err, COIL_EINVAL,
                         "%s: session %s: checkpoint at %lld is not at the new head %lld",
                         st->path, id, (long long)ckpt->position, (long long)new_head);
            goto fail;
        }
        if (coil_store__doc_state(st, c.doc_id, &ds, err) != 0)
            goto fail;
        if (ckpt->fingerprint != ds.fingerprint) {
            coil_err_set(err, COIL_EMISMATCH,
                         "%s: session %s: checkpoint made by model %016llx, document uses "
                         "%016llx",
                         st->path, id, (unsigned long long)ckpt->fingerprint,
                         (unsigned long long)ds.fingerprint);
            goto fail;
        }
    }
    if (n) {
        if (!(s = coil_store__stmt(st, COIL_STORE__SES_TOK_INSERT, err)))
            goto fail;
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, head);
        sqlite3_bind_int64(s, 3, new_head);
        sqlite3_bind_blob64(s, 4, tokens, (sqlite3_uint64)n * 4, SQLITE_STATIC);
        if (coil_store__exec(st, s, "appending session tokens", err) != 0)
            goto fail;
        if (!(s = coil_store__stmt(st, COIL_STORE__SES_SET_HEAD, err)))
            goto fail;
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, new_head);
        if (coil_store__exec(st, s, "moving the session head", err) != 0)
            goto fail;
    }
    if (ckpt && coil_store__ckpt_write(st, -1, id, ckpt, err) != 0)
        goto fail;
    chain_free(&c);
    return coil_store__commit(st, err);
fail:
    chain_free(&c);
    coil_store__rollback(st);
    return err->code;
}

static void row_info(sqlite3_stmt *s, coil_store_session_info_t *o)
{
    const unsigned char *id = sqlite3_column_text(s, 0), *parent = sqlite3_column_text(s, 1);
    snprintf(o->id, sizeof o->id, "%s", id ? (const char *)id : "");
    snprintf(o->parent, sizeof o->parent, "%s", parent ? (const char *)parent : "");
    o->doc_id = sqlite3_column_int64(s, 2);
    o->base = sqlite3_column_int64(s, 3);
    o->head = sqlite3_column_int64(s, 4);
    o->created = sqlite3_column_int64(s, 5);
    o->updated = sqlite3_column_int64(s, 6);
    o->n_checkpoints = sqlite3_column_int64(s, 7);
    o->n_children = sqlite3_column_int64(s, 8);
}

int coil_store_session_get(coil_store_t *st, const char *id, coil_store_session_info_t *out,
                           coil_err_t *err)
{
    int rc;

    COIL_STORE__ERR_LOCAL(err);
    if ((rc = bad_id(id, err)) != 0)
        return rc;
    sqlite3_stmt *s = coil_store__stmt(st, COIL_STORE__SES_GET, err);
    if (!s)
        return err->code;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        row_info(s, out);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return coil_err_set(err, COIL_ENOTFOUND, "%s: no session %s", st->path, id);
    return coil_store__fail(st, err, rc, "reading a session");
}

int coil_store_session_list(coil_store_t *st, int64_t doc_id,
                            int (*fn)(const coil_store_session_info_t *s, void *ud), void *ud,
                            coil_err_t *err)
{
    int rc;

    COIL_STORE__ERR_LOCAL(err);
    sqlite3_stmt *s = coil_store__stmt(st, COIL_STORE__SES_LIST, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, doc_id);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        coil_store_session_info_t info;
        row_info(s, &info);
        if (fn && fn(&info, ud))
            break;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return coil_store__fail(st, err, rc, "listing sessions");
    return 0;
}

int coil_store_session_tokens(coil_store_t *st, const char *id, int64_t from, int64_t to,
                              int32_t **ids, size_t *n, coil_err_t *err)
{
    int32_t *buf = NULL;
    int64_t filled = 0;
    chain_t c = {0};
    sqlite3_stmt *s;
    int rc;

    COIL_STORE__ERR_LOCAL(err);
    *ids = NULL;
    *n = 0;
    if ((rc = bad_id(id, err)) != 0)
        return rc;
    if (from < 0 || to < from || (uint64_t)(to - from) > SIZE_MAX / 4)
        return coil_err_set(err, COIL_EINVAL, "store: bad token range [%lld,%lld)",
                            (long long)from, (long long)to);
    if ((rc = coil_store__begin_read(st, err)) != 0)
        return rc;
    if (load_chain(st, id, &c, err) != 0)
        goto fail;
    if (to > c.lv[0].head) {
        coil_err_set(err, COIL_EINVAL, "%s: session %s: tokens [%lld,%lld) pass its head %lld",
                     st->path, id, (long long)from, (long long)to, (long long)c.lv[0].head);
        goto fail;
    }
    if (to - from > COIL_STORE__TOKENS_CHECKED) { /* the heads are claims: are the tokens there? */
        int64_t have = 0;
        for (size_t i = 0; i < c.n; i++)
            if (coil_store__tokens_held(st, c.doc_id, c.lv[i].id, &have, err) != 0)
                goto fail;
        if (coil_store__tokens_held(st, c.doc_id, NULL, &have, err) != 0)
            goto fail;
        if (have < to - from) {
            coil_err_set(err, COIL_EDB, "%s: session %s: tokens [%lld,%lld) asked, its rows hold %lld", st->path,
                         id, (long long)from, (long long)to, (long long)have);
            goto fail;
        }
    }
    if (to > from && !(buf = malloc((size_t)(to - from) * 4))) {
        coil_err_set(err, COIL_ENOMEM, "store: out of memory for %lld tokens",
                     (long long)(to - from));
        goto fail;
    }
    int64_t limit = to;
    for (size_t i = 0; i < c.n && from < limit; i++) {
        const level_t *l = &c.lv[i];
        int64_t lo = from > l->base ? from : l->base, hi = limit < l->head ? limit : l->head;
        if (lo < hi) {
            if (!(s = coil_store__stmt(st, COIL_STORE__SES_TOKENS, err)))
                goto fail;
            sqlite3_bind_text(s, 1, l->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, lo);
            sqlite3_bind_int64(s, 3, hi);
            if (coil_store__tokens_fill(st, s, from, lo, hi, buf, &filled, err) != 0)
                goto fail;
        }
        if (limit > l->base)
            limit = l->base;
    }
    if (from < limit) {
        if (!(s = coil_store__stmt(st, COIL_STORE__CHUNK_TOKENS, err)))
            goto fail;
        sqlite3_bind_int64(s, 1, c.doc_id);
        sqlite3_bind_int64(s, 2, from);
        sqlite3_bind_int64(s, 3, limit);
        if (coil_store__tokens_fill(st, s, from, from, limit, buf, &filled, err) != 0)
            goto fail;
    }
    if (filled != to - from) {
        if (coil_store__doc_history(st, c.doc_id, from, COIL_ENOTFOUND, "cannot read tokens",
                                    err) == 0)
            coil_err_set(err, COIL_EDB,
                         "%s: session %s: only %lld of tokens [%lld,%lld) are stored", st->path,
                         id, (long long)filled, (long long)from, (long long)to);
        goto fail;
    }
    coil_store__rollback(st); /* ends the read transaction */
    chain_free(&c);
    *ids = buf;
    *n = (size_t)(to - from);
    return 0;
fail:
    coil_store__rollback(st);
    chain_free(&c);
    free(buf);
    return err->code;
}

int coil_store_session_ckpt(coil_store_t *st, const char *id, int64_t at,
                            coil_store_blob_t *out, coil_err_t *err)
{
    chain_t c = {0};
    sqlite3_stmt *s;
    int rc;

    COIL_STORE__ERR_LOCAL(err);
    if ((rc = bad_id(id, err)) != 0)
        return rc;
    if ((rc = coil_store__begin_read(st, err)) != 0)
        return rc;
    if ((rc = load_chain(st, id, &c, err)) != 0)
        goto done;
    int64_t limit = (at < 0 || at > c.lv[0].head) ? c.lv[0].head : at;
    rc = COIL_ENOTFOUND;
    for (size_t i = 0; i < c.n && rc == COIL_ENOTFOUND; i++) {
        const level_t *l = &c.lv[i];
        if (limit >= l->base) {
            if (!(s = coil_store__stmt(st, COIL_STORE__CKPT_AT_SES, err))) {
                rc = err->code;
                goto done;
            }
            sqlite3_bind_text(s, 1, l->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(s, 2, l->base);
            sqlite3_bind_int64(s, 3, limit);
            rc = coil_store__ckpt_read(st, s, out, err);
        }
        if (limit > l->base)
            limit = l->base;
    }
    if (rc == COIL_ENOTFOUND) {
        if (!(s = coil_store__stmt(st, COIL_STORE__CKPT_AT_DOC, err))) {
            rc = err->code;
            goto done;
        }
        sqlite3_bind_int64(s, 1, c.doc_id);
        sqlite3_bind_int64(s, 2, limit);
        rc = coil_store__ckpt_read(st, s, out, err);
        if (rc == COIL_ENOTFOUND)
            coil_err_set(err, rc, "%s: session %s has no checkpoint at or before %lld",
                         st->path, id, (long long)at);
    }
done:
    coil_store__rollback(st);
    chain_free(&c);
    return rc;
}

int coil_store_session_delete(coil_store_t *st, const char *id, bool cascade, coil_err_t *err)
{
    char (*ids)[COIL_STORE_SESSION_ID_LEN + 1] = NULL;
    size_t n = 0, cap = 0;
    chain_t c = {0};
    sqlite3_stmt *s;
    int rc;

    COIL_STORE__ERR_LOCAL(err);
    if ((rc = bad_id(id, err)) != 0 || (rc = coil_store__begin(st, err)) != 0)
        return rc;
    if (load_chain(st, id, &c, err) != 0)
        goto fail;
    /* The subtree, deepest first, so every parent goes after its children. */
    if (!(s = coil_store__stmt(st, COIL_STORE__SES_SUBTREE, err)))
        goto fail;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 8;
            void *t = realloc(ids, ncap * sizeof *ids);
            if (!t) {
                sqlite3_reset(s);
                coil_err_set(err, COIL_ENOMEM, "store: out of memory deleting sessions");
                goto fail;
            }
            ids = t;
            cap = ncap;
        }
        const unsigned char *t = sqlite3_column_text(s, 0);
        snprintf(ids[n++], sizeof ids[0], "%s", t ? (const char *)t : "");
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        coil_store__fail(st, err, rc, "listing the session's children");
        goto fail;
    }
    if (n > 1 && !cascade) {
        coil_err_set(err, COIL_ESTATE,
                     "%s: session %s has %zu descendant session(s) sharing its history; delete "
                     "them first or cascade",
                     st->path, id, n - 1);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(s = coil_store__stmt(st, COIL_STORE__SES_DELETE, err)))
            goto fail;
        sqlite3_bind_text(s, 1, ids[i], -1, SQLITE_STATIC);
        if (coil_store__exec(st, s, "deleting a session", err) != 0)
            goto fail;
    }
    free(ids);
    chain_free(&c);
    return coil_store__commit(st, err);
fail:
    free(ids);
    chain_free(&c);
    coil_store__rollback(st);
    return err->code;
}
