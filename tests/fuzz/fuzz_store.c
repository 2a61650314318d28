/* fuzz_store.c -- rows of a database someone else wrote (coil_store_*, coil_resume_*).
 *
 * A valid store is built once per process with a small random model: a
 * document of 3 chunks with checkpoints (the real engine's states), a
 * session with appended tokens and its checkpoint, a fork of it, a keyed
 * append.  Each input is a script of edits to a copy of that file, made
 * with SQLite directly and CHECK constraints off (as a hostile writer
 * could), 4+ bytes an edit:
 *   byte  table    models, documents, chunks, checkpoints, sessions,
 *                  session_tokens, request_keys, chunks_fts_data (the
 *                  search index's own pages) (mod 8)
 *   byte  column   (mod the table's columns)
 *   byte  row      (mod the table's rows; 255 deletes the row)
 *   byte  kind     0 NULL, 1 an 8-byte integer, 2 a double, 3 text, 4 blob,
 *                  5 the value +-1, 6 the value x 2, 7 a small integer
 *   then the value's bytes (kinds 1, 2: 8 bytes; 3, 4: a length byte and that
 *   many bytes; 7: one byte)
 * Then coil opens the file and reads everything a user can ask of it: the
 * schema check (coil_store_verify), the document list, each document's
 * tokens, checkpoint and state rebuilt through the engine (coil_resume_doc),
 * each session's info, tokens and state (coil_resume_session), the request
 * key, a search.  Then it writes, as a resumed ingest or a client would:
 * the next chunk (with a checkpoint) onto each document, one keyed token
 * onto each session, a fork of each at its head.
 * Properties: every call returns 0 or a negative code with a message (never
 * a crash, a hang or a sanitizer report); a state that was rebuilt is finite
 * and of the model's shape (it serializes); a write that succeeded reads
 * back as written; a store that verified before the writes still verifies
 * after them. */
#include "fuzz.h"
#include "engine.h"
#include "ingest.h"
#include "model.h"
#include "state.h"
#include "store.h"

#include <errno.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[4096], tmpl[4096], db[4096];
static coil_model_t *model;
static coil_engine_t *engine;
static coil_state_t *state;
static void *blobbuf;
static size_t blobcap;

#define DIE(...)                                                                                                       \
    do {                                                                                                               \
        fprintf(stderr, "fuzz_store: " __VA_ARGS__);                                                                   \
        fputc('\n', stderr);                                                                                           \
        abort();                                                                                                       \
    } while (0)

static const char *const tables[8] = {"models",   "documents",      "chunks",       "checkpoints",
                                      "sessions", "session_tokens", "request_keys", "chunks_fts_data"};

/* The template store: a document of 3 chunks of 4 tokens with a checkpoint
 * after each commit, a session of 3 appended tokens (checkpointed), a fork,
 * a keyed append. */
static void build(void)
{
    coil_err_t err = {0};
    char mdir[4096];
    fuzz_path(mdir, dir, "model");
    tu_model_shape_t shape = {.d_model = 16, .n_layer = 2, .vocab = 64, .d_state = 4, .d_conv = 4,
                              .expand = 2, .dt_rank = 0, .tied = 1, .dtype = "F32", .family = "mamba"};
    if (mkdir(mdir, 0700) != 0 || tu_write_random_model(mdir, &shape, 5) != 0)
        DIE("cannot write the model");
    if (!(model = coil_model_load(mdir, &err)))
        DIE("%s", err.msg);
    coil_engine_options_t eo = {.max_chunk = 4, .threads = 1, .backend = "cpu"};
    if (!(engine = coil_engine_new(model, &eo, &err)) || !(state = coil_state_new(model, &err)))
        DIE("%s", err.msg);
    blobcap = coil_state_blob_size(state);
    if (!(blobbuf = malloc(blobcap)))
        DIE("out of memory");
    coil_store_options_t opt;
    coil_store_options_default(&opt);
    opt.synchronous = COIL_STORE_SYNC_NORMAL;
    coil_store_t *st = coil_store_open(tmpl, &opt, &err);
    if (!st)
        DIE("%s", err.msg);
    char dims[1024];
    int64_t model_id, doc_id;
    int resumed;
    const uint64_t fp = coil_model_fingerprint(model);
    if (coil_model_dims_json(model, dims, sizeof dims) <= 0 ||
        coil_store_model_ensure(st, fp, mdir, dims, &model_id, &err) ||
        coil_store_doc_begin(st, "doc", model_id, 7, 4, 0, &doc_id, &resumed, &err))
        DIE("%s", err.msg);
    static const char *const text[3] = {"The keeper ", "counts the ", "lamps."};
    int64_t byte = 0;
    for (int i = 0; i < 3; i++) {
        int32_t ids[4] = {(int32_t)(1 + i), (int32_t)(9 + i), 33, (int32_t)(60 - i)};
        if (coil_engine_forward(engine, state, ids, 4, NULL, &err) ||
            coil_state_serialize(state, blobbuf, blobcap, &err))
            DIE("%s", err.msg);
        size_t len = strlen(text[i]);
        coil_store_chunk_t ch = {.seq = i, .token_start = 4 * i, .token_end = 4 * i + 4, .byte_start = byte,
                                 .byte_end = byte + (int64_t)len, .text = text[i], .text_len = len, .tokens = ids};
        coil_store_ckpt_t ck = {.position = 4 * i + 4, .fingerprint = fp, .data = blobbuf, .size = blobcap};
        byte += (int64_t)len;
        if (coil_store_commit_chunks(st, doc_id, &ch, 1, &ck, &err))
            DIE("%s", err.msg);
    }
    char sid[COIL_STORE_SESSION_ID_LEN + 1], fid[COIL_STORE_SESSION_ID_LEN + 1];
    int32_t more[3] = {5, 6, 7};
    coil_store_request_t req = {.key = "k-1", .result = "{\"tokens\":1}"};
    if (coil_store_doc_finish(st, doc_id, byte, 12, &err) || coil_store_session_new(st, doc_id, 12, sid, &err) ||
        coil_engine_forward(engine, state, more, 3, NULL, &err) || coil_state_serialize(state, blobbuf, blobcap, &err))
        DIE("%s", err.msg);
    coil_store_ckpt_t ck = {.position = 15, .fingerprint = fp, .data = blobbuf, .size = blobcap};
    if (coil_store_session_append(st, sid, more, 3, &ck, NULL, &err) ||
        coil_store_session_fork(st, sid, 14, fid, &err) ||
        coil_store_session_append(st, fid, more, 1, NULL, &req, &err))
        DIE("%s", err.msg);
    coil_store_close(&st);
}

static void rm_dir(void)
{
    tu_rm_rf(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_shm_dir("store", dir); /* tmpfs when there is one: every input copies and opens a database */
    atexit(rm_dir);
    fuzz_path(tmpl, dir, "template.db");
    fuzz_path(db, dir, "t.db");
    build();
    return 0;
}

static sqlite3_int64 get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return (sqlite3_int64)v;
}

/* Applies the input's edits to db (a copy of the template). */
static void edit(const uint8_t *data, size_t size)
{
    sqlite3 *h;
    if (sqlite3_open(db, &h) != SQLITE_OK)
        DIE("open %s", db);
    sqlite3_exec(h, "PRAGMA ignore_check_constraints = ON; PRAGMA foreign_keys = OFF; PRAGMA synchronous = OFF; BEGIN",
                 NULL, NULL, NULL);
    size_t at = 0;
    for (int n = 0; n < 32 && at + 4 <= size; n++) {
        const char *t = tables[data[at] % 8];
        uint8_t colb = data[at + 1], rowb = data[at + 2], kind = data[at + 3] % 8;
        at += 4;
        char sql[512], col[64] = "";
        sqlite3_stmt *q;
        /* the column, by index */
        snprintf(sql, sizeof sql, "SELECT name FROM pragma_table_info('%s')", t);
        if (sqlite3_prepare_v2(h, sql, -1, &q, NULL) != SQLITE_OK)
            DIE("%s", sqlite3_errmsg(h));
        int ncol = 0;
        while (sqlite3_step(q) == SQLITE_ROW)
            ncol++;
        sqlite3_reset(q);
        for (int c = 0; ncol && sqlite3_step(q) == SQLITE_ROW; c++)
            if (c == colb % ncol)
                snprintf(col, sizeof col, "%s", (const char *)sqlite3_column_text(q, 0));
        sqlite3_finalize(q);
        /* the row, by position */
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", t);
        sqlite3_int64 nrow = 0;
        if (sqlite3_prepare_v2(h, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
            nrow = sqlite3_column_int64(q, 0);
        sqlite3_finalize(q);
        const uint8_t *val = data + at;
        size_t vlen = 0;
        if (kind == 1 || kind == 2)
            vlen = 8;
        else if (kind == 3 || kind == 4)
            vlen = at < size ? 1 + (size_t)data[at] : 0;
        else if (kind == 7)
            vlen = 1;
        if (vlen > size - at)
            vlen = size - at;
        at += vlen;
        if (!nrow || !col[0])
            continue;
        sqlite3_int64 off = rowb % nrow;
        if (rowb == 255)
            snprintf(sql, sizeof sql, "DELETE FROM %s WHERE rowid = (SELECT rowid FROM %s LIMIT 1 OFFSET %lld)", t, t,
                     (long long)off);
        else if (kind == 5 || kind == 6)
            snprintf(sql, sizeof sql,
                     "UPDATE %s SET \"%s\" = \"%s\" %s WHERE rowid = (SELECT rowid FROM %s LIMIT 1 OFFSET %lld)", t,
                     col, col, kind == 5 ? (colb & 0x80 ? "- 1" : "+ 1") : "* 2", t, (long long)off);
        else
            snprintf(sql, sizeof sql, "UPDATE %s SET \"%s\" = ?1 WHERE rowid = (SELECT rowid FROM %s LIMIT 1 OFFSET %lld)",
                     t, col, t, (long long)off);
        if (sqlite3_prepare_v2(h, sql, -1, &q, NULL) != SQLITE_OK)
            continue;
        switch (kind) {
        case 1: sqlite3_bind_int64(q, 1, vlen == 8 ? get64(val) : 0); break;
        case 2: {
            double d = 0;
            if (vlen == 8)
                memcpy(&d, val, 8);
            sqlite3_bind_double(q, 1, d);
            break;
        }
        case 3: sqlite3_bind_text(q, 1, (const char *)val + (vlen > 0), vlen ? (int)vlen - 1 : 0, SQLITE_TRANSIENT); break;
        case 4: sqlite3_bind_blob(q, 1, val + (vlen > 0), vlen ? (int)vlen - 1 : 0, SQLITE_TRANSIENT); break;
        case 7: sqlite3_bind_int(q, 1, vlen ? (int)(int8_t)val[0] : 0); break;
        default: break; /* NULL, or an expression */
        }
        sqlite3_step(q); /* a UNIQUE or NOT NULL conflict just fails */
        sqlite3_finalize(q);
    }
    sqlite3_exec(h, "COMMIT", NULL, NULL, NULL);
    if (sqlite3_close(h) != SQLITE_OK)
        DIE("close");
}

#define OK_OR_ERR(rc, err, what)                                                                                       \
    FUZZ_CHECK((rc) == 0 || ((rc) < 0 && (err).code == (rc) && (err).msg[0]), "%s: rc %d, err %d \"%s\"", what, rc,  \
               (err).code, (err).msg)

static void check_state(const char *what)
{
    coil_err_t err = {0};
    int rc = coil_state_serialize(state, blobbuf, blobcap, &err);
    FUZZ_CHECK(rc == 0, "%s: a rebuilt state does not serialize: %s", what, err.msg);
}

/* The documents and sessions the reads saw (the writes come after the
 * lists, not inside their callbacks). */
#define WALK_MAX 8
typedef struct {
    coil_store_t *st;
    int n;
    int64_t ids[WALK_MAX];
    char sids[WALK_MAX][COIL_STORE_SESSION_ID_LEN + 1];
} walk_t;

/* Tokens [0, to) of a document or session (capped at 64), then its state
 * rebuilt through the engine, which must serialize. */
static void read_back(const char *what, int (*tokens)(coil_store_t *, int64_t, const char *, int64_t, int32_t **,
                                                      size_t *, coil_err_t *),
                      int (*resume)(coil_store_t *, int64_t, const char *, coil_err_t *), coil_store_t *st,
                      int64_t id, const char *sid, int64_t end)
{
    coil_err_t err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    int64_t to = end < 0 ? 0 : end > 64 ? 64 : end;
    int rc = tokens(st, id, sid, to, &ids, &n, &err);
    OK_OR_ERR(rc, err, what);
    FUZZ_CHECK(rc != 0 || n == (size_t)to, "%s gave %zu ids for [0, %lld)", what, n, (long long)to);
    free(ids);
    coil_err_clear(&err);
    coil_state_reset(state);
    rc = resume(st, id, sid, &err);
    OK_OR_ERR(rc, err, what);
    if (rc == 0)
        check_state(what);
}

static int doc_tokens(coil_store_t *st, int64_t id, const char *sid, int64_t to, int32_t **ids, size_t *n,
                      coil_err_t *err)
{
    (void)sid;
    return coil_store_doc_tokens(st, id, 0, to, ids, n, err);
}

static int doc_resume(coil_store_t *st, int64_t id, const char *sid, coil_err_t *err)
{
    (void)sid;
    return coil_resume_doc(st, engine, id, -1, state, err);
}

static int ses_tokens(coil_store_t *st, int64_t id, const char *sid, int64_t to, int32_t **ids, size_t *n,
                      coil_err_t *err)
{
    (void)id;
    return coil_store_session_tokens(st, sid, 0, to, ids, n, err);
}

static int ses_resume(coil_store_t *st, int64_t id, const char *sid, coil_err_t *err)
{
    (void)id;
    return coil_resume_session(st, engine, sid, -1, state, err);
}

static int on_doc(const coil_store_doc_info_t *d, void *ud)
{
    walk_t *w = ud;
    coil_err_t err = {0};
    FUZZ_CHECK(d->name && d->status, "a document without a name or status");
    if (w->n >= WALK_MAX)
        return 1;
    w->ids[w->n++] = d->id;
    read_back("doc", doc_tokens, doc_resume, w->st, d->id, NULL, d->tokens);
    coil_store_blob_t b = {0};
    int rc = coil_store_ckpt_latest(w->st, d->id, -1, &b, &err);
    OK_OR_ERR(rc, err, "ckpt_latest");
    coil_store_blob_clear(&b);
    return 0;
}

static int on_session(const coil_store_session_info_t *s, void *ud)
{
    walk_t *w = ud;
    coil_err_t err = {0};
    if (w->n >= WALK_MAX)
        return 1;
    snprintf(w->sids[w->n++], sizeof w->sids[0], "%s", s->id);
    coil_store_session_info_t info;
    int rc = coil_store_session_get(w->st, s->id, &info, &err);
    OK_OR_ERR(rc, err, "session_get");
    read_back("session", ses_tokens, ses_resume, w->st, -1, s->id, s->head);
    return 0;
}

/* A write that was taken reads back as written: on a store that verified,
 * the read must succeed; on a damaged one it may fail with a clear error
 * (the damage is elsewhere in what it reads), but what it returns must be
 * what was written -- never other data. */
#define READS_BACK(rc, err, same, ...)                                                                                 \
    do {                                                                                                               \
        if ((rc) != 0 && !verified)                                                                                    \
            OK_OR_ERR(rc, err, "a read-back on a damaged store");                                                      \
        else                                                                                                           \
            FUZZ_CHECK((rc) == 0 && (same), __VA_ARGS__);                                                              \
    } while (0)

/* The next chunk of 4 tokens onto document id, with a checkpoint at its end,
 * as a resumed ingest writes it; read back if it was taken. */
static void write_doc(coil_store_t *st, int64_t id, bool verified)
{
    coil_err_t err = {0};
    coil_store_progress_t p;
    int rc = coil_store_doc_progress(st, id, &p, &err);
    OK_OR_ERR(rc, err, "doc_progress");
    if (rc != 0)
        return;
    FUZZ_CHECK(p.n_chunks >= 0 && p.token_end >= 0 && p.byte_end >= 0 && p.token_end <= INT64_MAX / 2 &&
                   p.byte_end <= INT64_MAX / 2,
               "doc_progress gave a grid no ingest can continue: %lld chunks, tokens to %lld, bytes to %lld",
               (long long)p.n_chunks, (long long)p.token_end, (long long)p.byte_end);
    static const char text[] = "Lamps.";
    int32_t ids[4] = {2, 4, 8, 16};
    coil_store_chunk_t ch = {.seq = p.n_chunks, .token_start = p.token_end, .token_end = p.token_end + 4,
                             .byte_start = p.byte_end, .byte_end = p.byte_end + 6, .text = text, .text_len = 6,
                             .tokens = ids};
    coil_store_ckpt_t ck = {.position = p.token_end + 4, .fingerprint = coil_model_fingerprint(model),
                            .data = blobbuf, .size = blobcap};
    coil_err_clear(&err);
    rc = coil_store_commit_chunks(st, id, &ch, 1, &ck, &err);
    OK_OR_ERR(rc, err, "commit_chunks");
    if (rc != 0)
        return;
    int32_t *back = NULL;
    size_t n = 0;
    coil_err_clear(&err);
    rc = coil_store_doc_tokens(st, id, p.token_end, p.token_end + 4, &back, &n, &err);
    READS_BACK(rc, err, n == 4 && memcmp(back, ids, sizeof ids) == 0, "a committed chunk reads back as %d (%s)", rc,
               err.msg);
    free(back);
    coil_store_blob_t b = {0};
    coil_err_clear(&err);
    rc = coil_store_ckpt_latest(st, id, -1, &b, &err);
    READS_BACK(rc, err, b.position == p.token_end + 4 && b.size == blobcap,
               "the committed checkpoint reads back as %d at %lld (%s)", rc, (long long)b.position, err.msg);
    coil_store_blob_clear(&b);
}

/* One token with a request key onto session sid, then a fork at its head. */
static void write_session(coil_store_t *st, const char *sid, int k, bool verified)
{
    coil_err_t err = {0};
    coil_store_session_info_t before, after;
    int rc = coil_store_session_get(st, sid, &before, &err);
    OK_OR_ERR(rc, err, "session_get");
    if (rc != 0)
        return;
    char key[32];
    snprintf(key, sizeof key, "w-%d", k);
    const int32_t tok = 42;
    coil_store_request_t req = {.key = key, .result = "{\"w\":1}"};
    coil_err_clear(&err);
    rc = coil_store_session_append(st, sid, &tok, 1, NULL, &req, &err);
    OK_OR_ERR(rc, err, "session_append");
    if (rc == 0) {
        coil_err_clear(&err);
        rc = coil_store_session_get(st, sid, &after, &err);
        READS_BACK(rc, err, after.head == before.head + 1,
                   "an append of 1 token moved the head %lld -> %lld (%s)", (long long)before.head,
                   (long long)after.head, err.msg);
        int32_t *back = NULL;
        size_t n = 0;
        coil_err_clear(&err);
        rc = coil_store_session_tokens(st, sid, before.head, before.head + 1, &back, &n, &err);
        READS_BACK(rc, err, n == 1 && back[0] == tok, "an appended token reads back as %d (%s)", rc, err.msg);
        free(back);
        coil_store_request_info_t ri = {0};
        coil_err_clear(&err);
        rc = coil_store_request_find(st, key, sid, &ri, &err);
        READS_BACK(rc, err, ri.head_before == before.head && ri.head_after == before.head + 1,
                   "request key %s reads back as %d: %lld -> %lld (%s)", key, rc, (long long)ri.head_before,
                   (long long)ri.head_after, err.msg);
        free(ri.result);
    }
    char fid[COIL_STORE_SESSION_ID_LEN + 1];
    coil_err_clear(&err);
    rc = coil_store_session_fork(st, sid, -1, fid, &err);
    OK_OR_ERR(rc, err, "session_fork");
}

static int on_hit(const coil_store_hit_t *h, void *ud)
{
    (void)ud;
    FUZZ_CHECK(h->doc_name && h->snippet, "a hit without a document or snippet");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!model)
        LLVMFuzzerInitialize(NULL, NULL);
    size_t tlen = 0;
    void *t = tu_read(tmpl, &tlen);
    if (!t || tu_write(db, t, tlen) != 0)
        DIE("cannot copy the template");
    free(t);
    char side[4200];
    snprintf(side, sizeof side, "%s-wal", db);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", db);
    unlink(side);
    edit(data, size);

    coil_err_t err = {0};
    coil_store_options_t opt;
    coil_store_options_default(&opt);
    opt.synchronous = COIL_STORE_SYNC_NORMAL;
    opt.must_exist = true;
    coil_store_t *st = coil_store_open(db, &opt, &err);
    if (!st) {
        FUZZ_CHECK(err.code < 0 && err.msg[0], "open failed (%d) without a message", err.code);
        return 0;
    }
    int rc = coil_store_verify(st, &err);
    OK_OR_ERR(rc, err, "verify");
    const bool verified = rc == 0;
    walk_t docs = {.st = st}, sessions = {.st = st};
    coil_err_clear(&err);
    rc = coil_store_doc_list(st, NULL, on_doc, &docs, &err);
    OK_OR_ERR(rc, err, "doc_list");
    coil_err_clear(&err);
    rc = coil_store_session_list(st, -1, on_session, &sessions, &err);
    OK_OR_ERR(rc, err, "session_list");
    coil_store_request_info_t ri = {0};
    coil_err_clear(&err);
    rc = coil_store_request_find(st, "k-1", NULL, &ri, &err);
    OK_OR_ERR(rc, err, "request_find");
    free(ri.result);
    coil_err_clear(&err);
    rc = coil_store_search(st, "lamps", NULL, 5, on_hit, NULL, &err);
    OK_OR_ERR(rc, err, "search");
    for (int i = 0; i < docs.n; i++)
        write_doc(st, docs.ids[i], verified);
    for (int i = 0; i < sessions.n; i++)
        write_session(st, sessions.sids[i], i, verified);
    coil_err_clear(&err);
    rc = coil_store_verify(st, &err);
    OK_OR_ERR(rc, err, "verify after the writes");
    FUZZ_CHECK(!verified || rc == 0, "a store that verified does not after coil's own writes: %s", err.msg);
    coil_store_close(&st);
    return 0;
}
