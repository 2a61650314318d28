/* ingest.c -- the ingest loop (text -> tokens -> chunk grid -> engine ->
 * store) and state rebuilding from checkpoints. */
#include "ingest.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define DEFAULT_CHUNK 512
#define READ_PIECE 65536
#define VERIFY_BLOCK 65536

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- feeding on a grid ------------------------------------------------------- */

int coil_feed_grid(coil_engine_t *e, coil_state_t *st, const int32_t *ids, int64_t n, int64_t grid,
                   float *logits, int64_t vocab, coil_err_t *err)
{
    if (grid <= 0)
        return coil_err_set(err, COIL_EINVAL, "chunk grid must be positive");
    for (int64_t i = 0; i < n;) {
        int64_t pos = coil_state_position(st);
        int64_t room = grid - pos % grid, k = n - i < room ? n - i : room;
        int rc = coil_engine_forward(e, st, ids + i, k, logits ? logits + i * vocab : NULL, err);
        if (rc)
            return rc;
        i += k;
    }
    return 0;
}

/* ---- resume -------------------------------------------------------------------- */

/* Loads blob into st, or zeroes st if there is no checkpoint (rc ENOTFOUND). */
static int restore(coil_state_t *st, int rc, coil_store_blob_t *b, coil_err_t *err)
{
    if (rc == COIL_ENOTFOUND) {
        coil_state_reset(st);
        return 0;
    }
    if (rc)
        return rc;
    if ((rc = coil_store_ckpt_check_model(b, coil_state_fingerprint(st), err)))
        return rc;
    return coil_state_deserialize(st, b->data, b->size, err);
}

/* The newest good checkpoint at or before `at` of a document (session NULL)
 * or a session, into st (zeroed when there is none).  A checkpoint that fails
 * its checksum, or does not deserialize, is never used: it is named in a
 * warning and the next older one is tried (the caller then replays more). */
static int restore_good(coil_store_t *store, int64_t doc_id, const char *session, int64_t at, coil_state_t *st,
                        coil_store_blob_t *b, coil_err_t *err)
{
    for (;;) {
        int rc = session ? coil_store_session_ckpt(store, session, at, b, err)
                         : coil_store_ckpt_latest(store, doc_id, at, b, err);
        bool damaged = rc == COIL_ECHECKSUM;
        if (!rc && !(rc = restore(st, rc, b, err)))
            return 0;
        if (!damaged && (rc == COIL_ENOTFOUND || rc == COIL_EMISMATCH || rc == COIL_ENOMEM || rc == COIL_EDB ||
                         rc == COIL_EBUSY || rc == COIL_EIO))
            return rc == COIL_ENOTFOUND ? restore(st, rc, b, err) : rc;
        /* damaged: its checksum failed, or its bytes are not a state of this model */
        coil_warn("%s; not using it: resuming from an earlier checkpoint and replaying from there", err->msg);
        coil_err_clear(err);
        if (b->position <= 0)
            return restore(st, COIL_ENOTFOUND, b, err);
        at = b->position - 1;
    }
}

int coil_resume_doc(coil_store_t *store, coil_engine_t *e, int64_t doc_id, int64_t at, coil_state_t *st,
                    coil_err_t *err)
{
    coil_store_progress_t p;
    coil_store_blob_t b = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = coil_store_doc_progress(store, doc_id, &p, err);
    if (rc)
        return rc;
    if (at < 0)
        at = p.token_end;
    if (at > p.token_end)
        return coil_err_set(err, COIL_EINVAL, "position %lld is past the document's %lld tokens", (long long)at,
                            (long long)p.token_end);
    rc = restore_good(store, doc_id, NULL, at, st, &b, err);
    if (!rc && coil_state_position(st) < at)
        rc = coil_store_doc_tokens(store, doc_id, coil_state_position(st), at, &ids, &n, err);
    if (!rc && n)
        rc = coil_feed_grid(e, st, ids, (int64_t)n, p.chunk_tokens > 0 ? p.chunk_tokens : DEFAULT_CHUNK, NULL, 0,
                            err);
    free(ids);
    coil_store_blob_clear(&b);
    return rc;
}

int coil_resume_session(coil_store_t *store, coil_engine_t *e, const char *session, int64_t at,
                        coil_state_t *st, coil_err_t *err)
{
    coil_store_session_info_t si;
    coil_store_progress_t p;
    coil_store_blob_t b = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = coil_store_session_get(store, session, &si, err);
    if (!rc)
        rc = coil_store_doc_progress(store, si.doc_id, &p, err);
    if (rc)
        return rc;
    if (at < 0)
        at = si.head;
    if (at > si.head)
        return coil_err_set(err, COIL_EINVAL, "position %lld is past session %s's head %lld", (long long)at, session,
                            (long long)si.head);
    rc = restore_good(store, -1, session, at, st, &b, err);
    if (!rc && coil_state_position(st) < at)
        rc = coil_store_session_tokens(store, session, coil_state_position(st), at, &ids, &n, err);
    if (!rc && n)
        rc = coil_feed_grid(e, st, ids, (int64_t)n, p.chunk_tokens > 0 ? p.chunk_tokens : DEFAULT_CHUNK, NULL, 0,
                            err);
    free(ids);
    coil_store_blob_clear(&b);
    return rc;
}

int coil_resume_target(coil_store_t *store, coil_engine_t *e, const char *session, const char *doc_name,
                       int64_t at, coil_state_t *st, int64_t *grid, coil_err_t *err)
{
    int64_t doc;
    coil_store_progress_t p;
    int rc;
    if (!session == !doc_name)
        return coil_err_set(err, COIL_EINVAL, "give exactly one of a session and a document");
    if (session) {
        coil_store_session_info_t si;
        if ((rc = coil_store_session_get(store, session, &si, err)))
            return rc;
        doc = si.doc_id;
    } else if ((rc = coil_store_doc_find(store, doc_name, &doc, err))) {
        return rc;
    }
    if ((rc = coil_store_doc_progress(store, doc, &p, err)))
        return rc;
    if (grid)
        *grid = p.chunk_tokens > 0 ? p.chunk_tokens : DEFAULT_CHUNK;
    return session ? coil_resume_session(store, e, session, at, st, err) : coil_resume_doc(store, e, doc, at, st, err);
}

int coil_session_append_ids(coil_store_t *store, coil_engine_t *e, const char *session, const int32_t *ids,
                            size_t n, const coil_store_request_t *req, coil_state_t *st, coil_err_t *err)
{
    coil_store_session_info_t si;
    coil_store_progress_t p;
    void *blob = NULL;
    int rc;
    if (n == 0)
        return coil_err_set(err, COIL_EINVAL, "nothing to append");
    if ((rc = coil_store_session_get(store, session, &si, err)) ||
        (rc = coil_store_doc_progress(store, si.doc_id, &p, err)) ||
        (rc = coil_resume_session(store, e, session, -1, st, err)) ||
        (rc = coil_feed_grid(e, st, ids, (int64_t)n, p.chunk_tokens > 0 ? p.chunk_tokens : DEFAULT_CHUNK, NULL, 0,
                             err)))
        return rc;
    size_t bs = coil_state_blob_size(st);
    if (!(blob = malloc(bs)))
        return coil_err_set(err, COIL_ENOMEM, "out of memory");
    if (!(rc = coil_state_serialize(st, blob, bs, err))) {
        coil_store_ckpt_t ck = {.position = coil_state_position(st), .fingerprint = coil_state_fingerprint(st),
                                .data = blob, .size = bs};
        rc = coil_store_session_append(store, session, ids, n, &ck, req, err);
    }
    free(blob);
    return rc;
}

/* ---- the ingest loop ------------------------------------------------------------ */

typedef struct {
    coil_store_chunk_t c;
    int32_t *tokens;
    char *text;
} pend_t;

typedef struct {
    coil_store_t *st;
    coil_engine_t *e;
    const coil_tokenizer_t *tok;
    const coil_ingest_options_t *opt;
    const coil_store_policy_t *pol;
    int64_t doc_id, C;
    coil_state_t *state;
    unsigned char *blob;
    size_t blob_size;
    /* source window: bytes [win_off, win_off + win_len) of the input */
    char *win;
    size_t win_len, win_cap;
    int64_t win_off;
    int64_t fed;           /* bytes read from the input so far */
    int64_t total_bytes;   /* -1 if unknown */
    /* token stream */
    int64_t tok_pos;       /* tokens produced by the tokenizer so far */
    int64_t skip;          /* [0, skip) are already stored (resume) */
    int32_t *vbuf;         /* stored ids [vbuf_from, vbuf_from + vbuf_n) for checking the prefix */
    size_t vbuf_n;
    int64_t vbuf_from;
    /* the chunk being filled and the chunks waiting for the next commit */
    int32_t *cur;
    int64_t cur_n, cur_byte_start, seq;
    pend_t *pend;
    size_t n_pend, cap_pend;
    int64_t last_ckpt;
    /* progress */
    coil_ingest_result_t *res;
    double t0, last_report;
    int64_t model_tokens;  /* tokens run through the model by this run */
    bool done;             /* the document is complete: only compare the input with it */
    const char *name;      /* the document's */
} ing_t;

static void pend_free(ing_t *g)
{
    for (size_t i = 0; i < g->n_pend; i++) {
        free(g->pend[i].tokens);
        free(g->pend[i].text);
    }
    g->n_pend = 0;
}

static void report(ing_t *g, int force)
{
    double t = now_s();
    double iv = g->opt && g->opt->progress_interval_s > 0 ? g->opt->progress_interval_s : 0.5;
    if (!g->opt || !g->opt->progress || (!force && t - g->last_report < iv))
        return;
    g->last_report = t;
    coil_ingest_progress_t p = {
        .tokens = g->tok_pos,
        .bytes = g->cur_byte_start,
        .total_bytes = g->total_bytes,
        .seconds = t - g->t0,
        .tokens_per_s = t > g->t0 ? (double)g->model_tokens / (t - g->t0) : 0.0,
        .resumed_at = g->res->resumed_at,
        .checkpoints = g->res->checkpoints,
    };
    g->opt->progress(&p, g->opt->progress_ud);
}

/* Commits the pending chunks with a checkpoint at the current end. */
static int commit(ing_t *g, coil_err_t *err)
{
    int rc = coil_state_serialize(g->state, g->blob, g->blob_size, err);
    if (rc)
        return rc;
    coil_store_chunk_t *cs = malloc((g->n_pend ? g->n_pend : 1) * sizeof *cs);
    if (!cs)
        return coil_err_set(err, COIL_ENOMEM, "out of memory");
    for (size_t i = 0; i < g->n_pend; i++)
        cs[i] = g->pend[i].c;
    coil_store_ckpt_t ck = {.position = coil_state_position(g->state),
                            .fingerprint = coil_state_fingerprint(g->state),
                            .data = g->blob,
                            .size = g->blob_size};
    rc = coil_store_commit_chunks(g->st, g->doc_id, cs, g->n_pend, &ck, err);
    free(cs);
    if (rc)
        return rc;
    pend_free(g);
    g->last_ckpt = ck.position;
    g->res->checkpoints++;
    return 0;
}

/* The current chunk is complete up to source byte `end`: run it, queue it,
 * checkpoint if due. */
static int close_chunk(ing_t *g, int64_t end, coil_err_t *err)
{
    /* a chunk's text ends on a UTF-8 character boundary */
    while (end < g->win_off + (int64_t)g->win_len && end < g->fed &&
           ((unsigned char)g->win[end - g->win_off] & 0xC0) == 0x80)
        end++;
    if (end < g->cur_byte_start)
        end = g->cur_byte_start;
    int rc = coil_engine_forward(g->e, g->state, g->cur, g->cur_n, NULL, err);
    if (rc)
        return rc;
    g->model_tokens += g->cur_n;
    if (g->n_pend == g->cap_pend) {
        size_t cap = g->cap_pend ? 2 * g->cap_pend : 16;
        pend_t *np = realloc(g->pend, cap * sizeof *np);
        if (!np)
            return coil_err_set(err, COIL_ENOMEM, "out of memory");
        g->pend = np;
        g->cap_pend = cap;
    }
    pend_t *p = &g->pend[g->n_pend];
    size_t tl = (size_t)(end - g->cur_byte_start);
    p->tokens = malloc((size_t)g->cur_n * sizeof(int32_t));
    p->text = malloc(tl ? tl : 1);
    if (!p->tokens || !p->text) {
        free(p->tokens);
        free(p->text);
        return coil_err_set(err, COIL_ENOMEM, "out of memory");
    }
    g->n_pend++;
    memcpy(p->tokens, g->cur, (size_t)g->cur_n * sizeof(int32_t));
    memcpy(p->text, g->win + (g->cur_byte_start - g->win_off), tl);
    p->c = (coil_store_chunk_t){.seq = g->seq,
                                .token_start = g->tok_pos - g->cur_n,
                                .token_end = g->tok_pos,
                                .byte_start = g->cur_byte_start,
                                .byte_end = end,
                                .text = p->text,
                                .text_len = tl,
                                .tokens = p->tokens};
    g->seq++;
    g->cur_n = 0;
    g->cur_byte_start = end;
    /* drop source bytes no chunk needs any more */
    size_t drop = (size_t)(end - g->win_off);
    memmove(g->win, g->win + drop, g->win_len - drop);
    g->win_len -= drop;
    g->win_off = end;
    if (coil_store_policy_due(g->pol, g->last_ckpt, g->tok_pos)) {
        if ((rc = commit(g, err)))
            return rc;
    }
    report(g, 0);
    return 0;
}

/* Checks id against the stored token at position pos (< skip). */
static int verify(ing_t *g, int64_t pos, int32_t id, coil_err_t *err)
{
    if (pos >= g->vbuf_from + (int64_t)g->vbuf_n) {
        free(g->vbuf);
        g->vbuf = NULL;
        g->vbuf_n = 0;
        int64_t to = pos + VERIFY_BLOCK < g->skip ? pos + VERIFY_BLOCK : g->skip;
        int rc = coil_store_doc_tokens(g->st, g->doc_id, pos, to, &g->vbuf, &g->vbuf_n, err);
        if (rc)
            return rc;
        g->vbuf_from = pos;
        if (g->vbuf_n != (size_t)(to - pos))
            return coil_err_set(err, COIL_EDB, "stored tokens [%lld, %lld) are incomplete", (long long)pos,
                                (long long)to);
    }
    if (g->vbuf[pos - g->vbuf_from] != id)
        return coil_err_set(err, COIL_ESTATE,
                            "the input differs from the %s at token %lld; use --replace to start over",
                            g->done ? "complete document" : "interrupted ingest", (long long)pos);
    return 0;
}

/* A batch of ids from the tokenizer covering source bytes [c0, c1). */
static int take(ing_t *g, const int32_t *ids, size_t n, int64_t c0, int64_t c1, coil_err_t *err)
{
    int64_t sum = 0;
    for (size_t j = 0; j < n; j++)
        sum += (int64_t)coil_tokenizer_token_len(g->tok, ids[j]);
    int exact = sum == c1 - c0;
    int64_t cum = 0;
    for (size_t j = 0; j < n; j++) {
        int rc;
        int64_t pos = g->tok_pos;
        cum += (int64_t)coil_tokenizer_token_len(g->tok, ids[j]);
        /* source offset after this token: exact when the normalizer left the
         * bytes alone, else clamped into the batch (the last id ends at c1) */
        int64_t end = j + 1 == n ? c1 : (exact ? c0 + cum : c0 + (cum < c1 - c0 ? cum : c1 - c0));
        if (pos < g->skip || g->done) {
            if (pos >= g->skip) /* a complete document: the input goes on past it */
                return coil_err_set(err, COIL_ESTATE,
                                    "document '%s' is complete and this input is longer (more than %lld tokens); use "
                                    "--replace to ingest it again",
                                    g->name, (long long)g->skip);
            if ((rc = verify(g, pos, ids[j], err)))
                return rc;
            g->tok_pos++;
            continue;
        }
        g->cur[g->cur_n++] = ids[j];
        g->tok_pos++;
        if (g->cur_n == g->C) {
            if ((rc = close_chunk(g, end, err)))
                return rc;
            if (g->opt && g->opt->stop && *g->opt->stop) {
                if (g->n_pend && (rc = commit(g, err)))
                    return rc;
                return coil_err_set(err, COIL_EINTR, "ingest stopped at token %lld (checkpointed; run again to resume)",
                                    (long long)g->tok_pos);
            }
        }
    }
    return 0;
}

/* ---- is it text? ------------------------------------------------------------ */

/* Running counts of the bytes seen and of those that are not part of valid
 * UTF-8; a sequence cut by the end of a piece is carried to the next one. */
typedef struct {
    int64_t seen, invalid, nul_at;
    int carry;  /* continuation bytes still expected by a sequence cut at the end of a piece */
} textcheck_t;

static void textcheck_feed(textcheck_t *tc, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == 0 && tc->nul_at < 0)
            tc->nul_at = tc->seen + (int64_t)i;
        if (tc->carry > 0) {
            if ((c & 0xC0) == 0x80) {
                tc->carry--;
                continue;
            }
            tc->invalid++; /* the cut sequence was invalid after all */
            tc->carry = 0;
        }
        if (c < 0x80)
            continue;
        int need = c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : -1;
        if (need < 0) {
            tc->invalid++;
            continue;
        }
        size_t k = 1;
        while (k <= (size_t)need && i + k < n && (p[i + k] & 0xC0) == 0x80)
            k++;
        if (k == (size_t)need + 1)
            i += (size_t)need;
        else if (i + k == n)
            tc->carry = need - (int)(k - 1), i = n - 1; /* cut by the end of the piece */
        else
            tc->invalid++;
    }
    tc->seen += (int64_t)n;
}

/* COIL_EINVAL if what was seen so far does not look like text. */
static int textcheck_verdict(const textcheck_t *tc, const char *path, coil_err_t *err)
{
    if (tc->nul_at >= 0)
        return coil_err_set(err, COIL_EINVAL,
                            "%s does not look like text (a NUL byte at offset %lld); ingest it anyway with --binary",
                            path, (long long)tc->nul_at);
    if (tc->invalid * 8 > tc->seen)
        return coil_err_set(err, COIL_EINVAL,
                            "%s does not look like text (%lld of its first %lld bytes are not valid UTF-8); "
                            "ingest it anyway with --binary",
                            path, (long long)tc->invalid, (long long)tc->seen);
    return 0;
}

static int hash_file(const char *path, textcheck_t *tc, uint64_t *hash, int64_t *size, coil_err_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0)
        return coil_err_set(err, errno == ENOENT ? COIL_ENOTFOUND : COIL_EIO, "%s: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return coil_err_set(err, COIL_EIO, "%s: not a regular file", path);
    }
    XXH3_state_t *h = XXH3_createState();
    char *buf = malloc(1 << 20);
    int rc = 0;
    if (!h || !buf) {
        rc = coil_err_set(err, COIL_ENOMEM, "out of memory");
    } else {
        XXH3_64bits_reset(h);
        ssize_t r;
        while ((r = read(fd, buf, 1 << 20)) > 0) {
            XXH3_64bits_update(h, buf, (size_t)r);
            if (tc)
                textcheck_feed(tc, (const unsigned char *)buf, (size_t)r);
        }
        if (r < 0)
            rc = coil_err_set(err, COIL_EIO, "%s: read: %s", path, strerror(errno));
        *hash = XXH3_64bits_digest(h);
        *size = (int64_t)sb.st_size;
    }
    XXH3_freeState(h);
    free(buf);
    close(fd);
    return rc;
}

int coil_ingest_file(coil_store_t *st, coil_engine_t *e, const coil_tokenizer_t *tok, const char *name,
                     const char *path, const coil_ingest_options_t *opt, coil_ingest_result_t *res,
                     coil_err_t *err)
{
    ing_t g;
    coil_store_blob_t b = {0};
    coil_tokenizer_stream_t *ts = NULL;
    int32_t *ids = NULL;
    char *piece = NULL;
    int fd = -1, rc, resumed = 0;
    uint64_t hash = 0;
    int64_t model_id;

    memset(&g, 0, sizeof g);
    memset(res, 0, sizeof *res);
    res->resumed_at = -1;
    g.st = st;
    g.e = e;
    g.tok = tok;
    g.name = name;
    g.opt = opt;
    g.res = res;
    g.pol = coil_store_get_policy(st);
    g.C = opt && opt->chunk_tokens > 0 ? opt->chunk_tokens : DEFAULT_CHUNK;
    g.total_bytes = -1;
    g.last_ckpt = -1;
    g.t0 = g.last_report = now_s();
    if (g.pol->interval % g.C != 0)
        return coil_err_set(err, COIL_EINVAL,
                            "the checkpoint interval (%lld tokens) must be a multiple of the chunk size (%lld)",
                            (long long)g.pol->interval, (long long)g.C);
    const int is_stdin = strcmp(path, "-") == 0;
    const bool check_text = !(opt && opt->allow_binary);
    textcheck_t tc = {.nul_at = -1};
    if (!is_stdin && ((rc = hash_file(path, check_text ? &tc : NULL, &hash, &g.total_bytes, err)) ||
                      (check_text && (rc = textcheck_verdict(&tc, path, err)))))
        return rc;
    const coil_model_t *m = coil_engine_model(e);
    char dims[512];
    coil_model_dims_json(m, dims, sizeof dims);
    if ((rc = coil_store_model_ensure(st, coil_model_fingerprint(m), opt && opt->model_path ? opt->model_path : "",
                                      dims, &model_id, err)) ||
        (rc = coil_store_doc_begin(st, name, model_id, hash, g.C, opt && opt->replace ? COIL_STORE_DOC_REPLACE : 0,
                                   &g.doc_id, &resumed, err)))
        return rc;
    res->doc_id = g.doc_id;
    g.state = coil_state_new(m, err);
    g.blob_size = g.state ? coil_state_blob_size(g.state) : 0;
    g.blob = g.state ? malloc(g.blob_size) : NULL;
    g.cur = malloc((size_t)g.C * sizeof(int32_t));
    piece = malloc(READ_PIECE);
    ts = coil_tokenizer_stream_new(tok, err);
    if (!g.state || !g.blob || !g.cur || !piece || !ts) {
        rc = err && err->code ? err->code : coil_err_set(err, COIL_ENOMEM, "out of memory");
        goto out;
    }
    if (resumed == COIL_STORE_DOC_DONE) {
        /* complete with the same model and grid: a file's hash says it is the
         * same input; standard input is compared token by token below */
        coil_store_progress_t p;
        if ((rc = coil_store_doc_progress(st, g.doc_id, &p, err)))
            goto out;
        res->already = true;
        res->tokens = p.token_end;
        res->bytes = p.byte_end;
        if (!is_stdin)
            goto out;
        g.done = true;
        g.skip = p.token_end;
        g.cur_byte_start = p.byte_end;
    } else if (resumed) {
        coil_store_progress_t p;
        if ((rc = coil_store_doc_progress(st, g.doc_id, &p, err)))
            goto out;
        if (p.chunk_tokens != g.C) {
            rc = coil_err_set(err, COIL_ESTATE,
                              "document '%s' was started with chunks of %lld tokens, not %lld; resume with the "
                              "same --chunk",
                              name, (long long)p.chunk_tokens, (long long)g.C);
            goto out;
        }
        /* newest checkpoint, then replay the stored chunks after it on the grid */
        if ((rc = coil_resume_doc(st, e, g.doc_id, p.token_end, g.state, err)))
            goto out;
        res->resumed_at = p.ckpt_position < 0 ? 0 : p.ckpt_position;
        g.skip = p.token_end;
        g.seq = p.n_chunks;
        g.cur_byte_start = p.byte_end;
        g.last_ckpt = p.ckpt_position;
    }
    if (is_stdin) {
        fd = STDIN_FILENO;
    } else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = coil_err_set(err, COIL_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    struct stat fsb;
    const bool is_regular = fstat(fd, &fsb) == 0 && S_ISREG(fsb.st_mode);
    for (int eof = 0; !eof;) {
        /* A pipe or a terminal can keep us waiting: wait in short polls and look
         * at the stop flag between them (the signal that set it may have been
         * delivered to another thread, leaving this read() uninterrupted). */
        ssize_t r = -1;
        if (!is_regular) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            int pr = poll(&pfd, 1, 200);
            if (pr < 0 && errno != EINTR) {
                rc = coil_err_set(err, COIL_EIO, "%s: poll: %s", path, strerror(errno));
                goto out;
            }
            if (pr <= 0)
                errno = EINTR; /* nothing yet: check the flag, then wait again */
            else
                r = read(fd, piece, READ_PIECE);
        } else {
            r = read(fd, piece, READ_PIECE);
        }
        if (r < 0 && errno == EINTR) {
            if (opt && opt->stop && *opt->stop) { /* stopped while waiting for input (a pipe, a terminal) */
                if (g.n_pend && (rc = commit(&g, err)))
                    goto out;
                rc = coil_err_set(err, COIL_EINTR,
                                  "ingest stopped at token %lld while reading its input (checkpointed at %lld; run "
                                  "again to resume)",
                                  (long long)g.tok_pos, (long long)(g.last_ckpt < 0 ? 0 : g.last_ckpt));
                goto out;
            }
            continue;
        }
        if (r < 0) {
            rc = coil_err_set(err, COIL_EIO, "%s: read: %s", path, strerror(errno));
            goto out;
        }
        eof = r == 0;
        /* keep the bytes a future chunk's text will need */
        if (g.fed + r > g.cur_byte_start) {
            int64_t from = g.fed > g.cur_byte_start ? g.fed : g.cur_byte_start;
            size_t add = (size_t)(g.fed + r - from);
            if (g.win_len == 0)
                g.win_off = from;
            if (g.win_len + add > g.win_cap) {
                size_t cap = g.win_cap ? g.win_cap : READ_PIECE;
                while (cap < g.win_len + add)
                    cap *= 2;
                char *nw = realloc(g.win, cap);
                if (!nw) {
                    rc = coil_err_set(err, COIL_ENOMEM, "out of memory");
                    goto out;
                }
                g.win = nw;
                g.win_cap = cap;
            }
            memcpy(g.win + g.win_len, piece + (from - g.fed), add);
            g.win_len += add;
        }
        if (is_stdin && check_text) {
            textcheck_feed(&tc, (const unsigned char *)piece, (size_t)r);
            if ((rc = textcheck_verdict(&tc, "standard input", err)))
                goto out;
        }
        int64_t c0 = (int64_t)coil_tokenizer_stream_committed(ts);
        size_t n = 0;
        rc = eof ? coil_tokenizer_stream_finish(ts, &ids, &n, err)
                 : coil_tokenizer_stream_feed(ts, piece, (size_t)r, &ids, &n, err);
        g.fed += r;
        if (rc)
            goto out;
        if (n && (rc = take(&g, ids, n, c0, (int64_t)coil_tokenizer_stream_committed(ts), err)))
            goto out;
        free(ids);
        ids = NULL;
    }
    if (g.done) {
        if (g.tok_pos != g.skip)
            rc = coil_err_set(err, COIL_ESTATE,
                              "document '%s' is complete and this input differs from it (%lld tokens, not %lld); "
                              "use --replace to ingest it again",
                              name, (long long)g.tok_pos, (long long)g.skip);
        goto out;
    }
    if (g.tok_pos < g.skip) {
        rc = coil_err_set(err, COIL_ESTATE,
                          "the input is shorter than the interrupted ingest (%lld tokens < %lld stored); use "
                          "--replace to start over",
                          (long long)g.tok_pos, (long long)g.skip);
        goto out;
    }
    if (g.cur_n > 0 && (rc = close_chunk(&g, g.fed, err)))
        goto out;
    if (g.last_ckpt != g.tok_pos && (rc = commit(&g, err)))
        goto out;
    if ((rc = coil_store_doc_finish(st, g.doc_id, g.cur_byte_start, g.tok_pos, err)))
        goto out;
    report(&g, 1);
    res->tokens = g.tok_pos;
    res->bytes = g.cur_byte_start;
out:
    res->seconds = now_s() - g.t0;
    if (fd >= 0 && !is_stdin)
        close(fd);
    free(ids);
    free(piece);
    coil_tokenizer_stream_destroy(&ts);
    pend_free(&g);
    free(g.pend);
    free(g.cur);
    free(g.win);
    free(g.vbuf);
    free(g.blob);
    coil_state_destroy(&g.state);
    coil_store_blob_clear(&b);
    return rc;
}
