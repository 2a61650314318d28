/* test_faults.c -- crash and I/O-error testing of the store, the SQLite way
 * (issue 16).
 *
 * Every workload runs through tests/faultvfs.c, once to count its writes,
 * syncs and truncates (T), then once per N in 1..T with a fault at the N-th:
 *   ioerr      that operation fails with SQLITE_IOERR (transient)
 *   ioerr-p    it and every later one fail (a dead disk)
 *   full       the N-th write fails with SQLITE_FULL, and every later one
 *              (a full disk; only writes are counted)
 *   crash      a power cut there: every write not synced is dropped
 *   kill       the process dies there: later writes never happen, those
 *              already made stay (the OS writes its cache out)
 * After each fault, with the default VFS:
 *   - coil_store_verify passes (integrity_check, FTS, invariants I1-I4);
 *   - the error the caller got is the right one: COIL_EIO / COIL_EDB for
 *     I/O errors, COIL_EFULL for a full disk (any error for a crash);
 *   - nothing acknowledged is lost: a call that returned 0 is all there,
 *     even after a crash (synchronous = FULL);
 *   - nothing half-written is visible: a one-transaction call that failed
 *     left the database exactly as before (same signature: every
 *     document, session, their tokens and resumed states); an ingest left
 *     a committed prefix (I1-I4) that resumes;
 *   - a rerun completes to the bit-identical final state of an uninterrupted
 *     run (the states resumed from the store, serialised, compared byte for
 *     byte); a keyed append is applied exactly once.
 * Workloads: an ingest (coil_ingest_file, a small random model), a session
 * append without and with a request key, a fork, a state import.
 *
 * COIL_FAULT_STRIDE=K tries every K-th N only (default 1: all of them);
 * each test prints "faults: WORKLOAD MODE: T ops, F injected, F survived".
 */
#include <check.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "engine.h"
#include "faultvfs.h"
#include "ingest.h"
#include "model.h"
#include "state.h"
#include "store.h"
#include "testutil.h"
#include "tokenizer.h"

#define CHUNK 16
#define INTERVAL 32

static char *dir;
static char model_dir[4200], base_db[4200], work_db[4200], doc1[4200], doc2[4200];
static coil_model_t *model;
static coil_engine_t *engine;
static coil_tokenizer_t *tok;
static coil_state_t *scratch;
static char session_id[COIL_STORE_SESSION_ID_LEN + 1];
static int32_t *append_ids;
static size_t n_append_ids;
static unsigned char *import_blob;
static size_t import_len;
static int64_t import_pos;

static void write_text(const char *path, int words, unsigned seed)
{
    static const char *w[] = {"the", "river", "ran", "past", "old", "mills,", "and", "every", "stone",
                              "remembered", "caf\xc3\xa9", "winter;", "lanterns", "glowed", "42", "times."};
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < words; i++) {
        seed = seed * 1103515245u + 12345u;
        fprintf(f, "%s%s", w[(seed >> 16) % 16], i % 12 == 11 ? "\n" : " ");
    }
    fclose(f);
}

static coil_store_t *open_store(const char *path, const char *vfs, coil_err_t *err)
{
    coil_store_options_t so;
    coil_store_options_default(&so);
    so.policy.interval = INTERVAL;
    so.policy.dense = 2;
    so.vfs = vfs;
    return coil_store_open(path, &so, err);
}

static void copy_db(const char *from, const char *to)
{
    char p[4300];
    const char *suf[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", to, suf[i]);
        unlink(p);
    }
    size_t n;
    void *b = tu_read(from, &n);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(tu_write(to, b, n), 0);
    free(b);
}

static int ingest(coil_store_t *st, const char *name, const char *path, coil_err_t *err)
{
    coil_ingest_options_t io = {.chunk_tokens = CHUNK};
    coil_ingest_result_t res;
    return coil_ingest_file(st, engine, tok, name, path, &io, &res, err);
}

/* --- the signature of a database: everything a user can see ---------------- */

typedef struct {
    char *buf;
    size_t len, cap;
} sb_t;

static void sb_add(sb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sb_t *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    ck_assert(n >= 0 && (size_t)n < sizeof tmp);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->buf = realloc(b->buf, b->cap);
        ck_assert_ptr_nonnull(b->buf);
    }
    memcpy(b->buf + b->len, tmp, (size_t)n + 1);
    b->len += (size_t)n;
}

static uint64_t state_hash(const coil_state_t *s)
{
    size_t n = coil_state_blob_size(s);
    unsigned char *b = malloc(n);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(coil_state_serialize(s, b, n, NULL), 0);
    uint64_t h = XXH3_64bits(b, n);
    free(b);
    return h;
}

typedef struct {
    coil_store_t *st;
    sb_t *sb;
} walk_t;

static int on_doc(const coil_store_doc_info_t *d, void *ud)
{
    walk_t *w = ud;
    sb_add(w->sb, "doc %s %s tok=%lld bytes=%lld chunks=%lld base=%lld %s", d->name, d->status,
           (long long)d->tokens, (long long)d->bytes, (long long)d->n_chunks, (long long)d->base_position,
           d->origin);
    coil_err_t err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    if (d->tokens > d->base_position) {
        ck_assert_msg(coil_store_doc_tokens(w->st, d->id, d->base_position, d->tokens, &ids, &n, &err) == 0,
                      "%s", err.msg);
        sb_add(w->sb, " ids=%016llx", (unsigned long long)XXH3_64bits(ids, n * sizeof *ids));
        free(ids);
    }
    coil_state_reset(scratch);
    int rc = coil_resume_doc(w->st, engine, d->id, -1, scratch, &err);
    if (rc == 0)
        sb_add(w->sb, " state=%016llx@%lld", (unsigned long long)state_hash(scratch),
               (long long)coil_state_position(scratch));
    else
        sb_add(w->sb, " state=%s", coil_err_name(rc));
    sb_add(w->sb, "\n");
    return 0;
}

typedef struct {
    char (*lines)[512];
    size_t n;
    coil_store_t *st;
} sess_t;

static int on_session(const coil_store_session_info_t *s, void *ud)
{
    sess_t *ss = ud;
    ss->lines = realloc(ss->lines, (ss->n + 1) * sizeof *ss->lines);
    ck_assert_ptr_nonnull(ss->lines);
    coil_err_t err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    ck_assert_msg(coil_store_session_tokens(ss->st, s->id, 0, s->head, &ids, &n, &err) == 0, "%s", err.msg);
    coil_state_reset(scratch);
    int rc = coil_resume_session(ss->st, engine, s->id, -1, scratch, &err);
    ck_assert_msg(rc == 0, "resume session %s: %s", s->id, err.msg);
    /* ids are random: a session is what it holds, and whether it is a fork */
    snprintf(ss->lines[ss->n++], 512, "session doc=%lld base=%lld head=%lld fork=%d children=%lld ids=%016llx state=%016llx\n",
             (long long)s->doc_id, (long long)s->base, (long long)s->head, s->parent[0] != 0,
             (long long)s->n_children, (unsigned long long)XXH3_64bits(ids, n * sizeof *ids),
             (unsigned long long)state_hash(scratch));
    free(ids);
    return 0;
}

static int cmp_line(const void *a, const void *b) { return strcmp(a, b); }

/* Opens path with the default VFS, checks it, returns its signature. */
static char *signature(const char *path)
{
    coil_err_t err = {0};
    coil_store_t *st = open_store(path, "faultvfs", &err);
    ck_assert_msg(st != NULL, "reopen: %s", err.msg);
    ck_assert_msg(coil_store_verify(st, &err) == 0, "verify after the fault: %s", err.msg);
    sb_t sb = {0};
    walk_t w = {st, &sb};
    sb_add(&sb, "--\n");
    ck_assert_msg(coil_store_doc_list(st, NULL, on_doc, &w, &err) == 0, "%s", err.msg);
    sess_t ss = {NULL, 0, st};
    ck_assert_msg(coil_store_session_list(st, -1, on_session, &ss, &err) == 0, "%s", err.msg);
    qsort(ss.lines, ss.n, sizeof *ss.lines, cmp_line);
    for (size_t i = 0; i < ss.n; i++)
        sb_add(&sb, "%s", ss.lines[i]);
    free(ss.lines);
    coil_store_request_info_t ri = {0};
    int rc = coil_store_request_find(st, "fault-key-1", NULL, &ri, &err);
    if (rc == 0)
        sb_add(&sb, "key %lld->%lld %s\n", (long long)ri.head_before, (long long)ri.head_after,
               ri.result ? ri.result : "null");
    else
        sb_add(&sb, "key %s\n", coil_err_name(rc));
    free(ri.result);
    coil_store_close(&st);
    return sb.buf;
}

/* --- workloads --------------------------------------------------------------- */

typedef enum { W_INGEST, W_APPEND, W_APPEND_KEY, W_FORK, W_IMPORT } workload_t;
static const char *wname[] = {"ingest", "append", "append-key", "fork", "import"};

static int run_workload(workload_t w, coil_store_t *st, coil_err_t *err)
{
    char child[COIL_STORE_SESSION_ID_LEN + 1];
    coil_store_request_t req = {"fault-key-1", "{\"tokens\":37}"};
    switch (w) {
    case W_INGEST:
        return ingest(st, "second", doc2, err);
    case W_APPEND:
        return coil_session_append_ids(st, engine, session_id, append_ids, n_append_ids, NULL, scratch, err);
    case W_APPEND_KEY:
        return coil_session_append_ids(st, engine, session_id, append_ids, n_append_ids, &req, scratch, err);
    case W_FORK:
        return coil_store_session_fork(st, session_id, 40, child, err);
    case W_IMPORT: {
        int64_t model_id, doc_id;
        int rc = coil_store_model_ensure(st, coil_model_fingerprint(model), model_dir, NULL, &model_id, err);
        if (rc)
            return rc;
        return coil_store_doc_import(st, "imported", model_id, import_blob, import_len,
                                     coil_model_fingerprint(model), import_pos, 0, &doc_id, err);
    }
    }
    return COIL_EINVAL;
}

/* The rerun after a fault: what a client does when it does not know
 * whether its call went through.  `done`: the database already shows the
 * whole call (it returned 0, or a process crash hit after its commit). */
static int rerun(workload_t w, int done, coil_err_t *err)
{
    coil_store_t *st = open_store(work_db, "faultvfs", err);
    ck_assert_msg(st != NULL, "%s", err->msg);
    int rc = 0;
    if (w == W_APPEND_KEY) {
        /* the same key again: applied if the first try was not, refused if it was */
        rc = run_workload(w, st, err);
        if (rc == COIL_ESTATE)
            rc = 0;
    } else if (!done || w == W_INGEST) {
        rc = run_workload(w, st, err); /* an ingest resumes, or finds it done */
    }
    coil_store_close(&st);
    return rc;
}

/* Every connection of the test gets a tiny page cache, so a transaction
 * spills dirty pages into the WAL before COMMIT: faults then hit the
 * statements in the middle of a transaction too, not only the COMMIT. */
static int tiny_cache(sqlite3 *db, char **msg, const struct sqlite3_api_routines *api)
{
    (void)msg;
    (void)api;
    return sqlite3_exec(db, "PRAGMA cache_size = 1; PRAGMA cache_spill = 1", NULL, NULL, NULL);
}

static void setup(void)
{
    coil_err_t err = {0};
    ck_assert_int_eq(fv_register(), 0);
    if (!getenv("COIL_FAULT_BIG_CACHE"))
        ck_assert_int_eq(sqlite3_auto_extension((void (*)(void))tiny_cache), SQLITE_OK);
    dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(dir);
    snprintf(model_dir, sizeof model_dir, "%s/model", dir);
    snprintf(base_db, sizeof base_db, "%s/base.db", dir);
    snprintf(work_db, sizeof work_db, "%s/work.db", dir);
    snprintf(doc1, sizeof doc1, "%s/doc1.txt", dir);
    snprintf(doc2, sizeof doc2, "%s/doc2.txt", dir);
    tu_model_shape_t sh = {.d_model = 16, .n_layer = 2, .vocab = 1232, .d_state = 4, .d_conv = 4,
                           .expand = 2, .tied = 1, .dtype = "F32"};
    ck_assert_int_eq(tu_write_model_dir(model_dir, &sh, 11), 0);
    write_text(doc1, 60, 1);
    write_text(doc2, 40, 2);
    char tp[4300];
    snprintf(tp, sizeof tp, "%s/tokenizer.json", model_dir);
    coil_engine_options_t eo = {.threads = 1};
    model = coil_model_load(model_dir, &err);
    ck_assert_msg(model != NULL, "%s", err.msg);
    engine = coil_engine_new(model, &eo, &err);
    tok = coil_tokenizer_load(tp, &err);
    scratch = coil_state_new(model, &err);
    ck_assert(engine && tok && scratch);

    /* base.db: one complete document and a session on it at token 48 */
    coil_store_t *st = open_store(base_db, "faultvfs", &err);
    ck_assert_msg(st != NULL, "%s", err.msg);
    ck_assert_msg(ingest(st, "first", doc1, &err) == 0, "%s", err.msg);
    int64_t doc_id;
    ck_assert_int_eq(coil_store_doc_find(st, "first", &doc_id, &err), 0);
    ck_assert_msg(coil_store_session_new(st, doc_id, 48, session_id, &err) == 0, "%s", err.msg);
    /* what the appends add, and the state the import brings in */
    ck_assert_int_eq(coil_tokenizer_encode(tok, " and the lanterns glowed past the old mills, every winter", 58,
                                           &append_ids, &n_append_ids, &err), 0);
    ck_assert_int_eq(coil_resume_doc(st, engine, doc_id, 32, scratch, &err), 0);
    import_pos = coil_state_position(scratch);
    import_len = coil_state_blob_size(scratch);
    import_blob = malloc(import_len);
    ck_assert_int_eq(coil_state_serialize(scratch, import_blob, import_len, &err), 0);
    coil_store_close(&st);
}

static void teardown(void)
{
    free(import_blob);
    free(append_ids);
    coil_state_destroy(&scratch);
    coil_tokenizer_destroy(&tok);
    coil_engine_destroy(&engine);
    coil_model_destroy(&model);
    tu_rm_rf(dir);
    free(dir);
}

static const char *mode_name(fv_mode_t m, int persist)
{
    return m == FV_IOERR ? (persist ? "ioerr-p" : "ioerr") : m == FV_FULL ? "full" : persist ? "kill" : "crash";
}

/* persist for FV_CRASH: keep the unsynced writes (a process crash) */
static void sweep(workload_t w, fv_mode_t mode, int persist)
{
    coil_err_t err = {0};
    long stride = getenv("COIL_FAULT_STRIDE") ? atol(getenv("COIL_FAULT_STRIDE")) : 1;
    if (stride < 1)
        stride = 1;

    /* before and after an uninterrupted run */
    copy_db(base_db, work_db);
    char *before = signature(work_db);
    fv_reset();
    coil_store_t *st = open_store(work_db, "faultvfs", &err);
    ck_assert_msg(st != NULL, "%s", err.msg);
    fv_arm(mode, 0, 0);
    int rc = run_workload(w, st, &err);
    long total = fv_count();
    coil_store_close(&st);
    fv_reset();
    ck_assert_msg(rc == 0, "%s without a fault: %s", wname[w], err.msg);
    ck_assert_msg(total > 0, "%s: no write counted", wname[w]);
    char *after = signature(work_db);
    ck_assert_msg(strcmp(before, after) != 0, "%s changed nothing", wname[w]);

    /* a power cut just after the call returned 0: all of it is there */
    copy_db(base_db, work_db);
    fv_reset();
    st = open_store(work_db, "faultvfs", &err);
    ck_assert_msg(st != NULL, "%s", err.msg);
    rc = run_workload(w, st, &err);
    ck_assert_msg(rc == 0, "%s: %s", wname[w], err.msg);
    fv_crash_now();
    coil_store_close(&st);
    ck_assert_int_eq(fv_crash_restore(0), 0);
    char *cut = signature(work_db);
    ck_assert_msg(strcmp(cut, after) == 0, "%s: acknowledged, then lost in a power cut:\n%s\nexpected\n%s",
                  wname[w], cut, after);
    free(cut);

    long injected = 0, survived = 0, acked = 0;
    for (long n = 1; n <= total; n += stride) {
        copy_db(base_db, work_db);
        fv_reset();
        st = open_store(work_db, "faultvfs", &err);
        ck_assert_msg(st != NULL, "%s", err.msg);
        fv_arm(mode, n, mode == FV_CRASH ? 0 : persist);
        coil_err_clear(&err);
        rc = run_workload(w, st, &err);
        long fired = fv_fired();
        coil_store_close(&st);
        if (mode == FV_CRASH)
            ck_assert_int_eq(fv_crash_restore(persist), 0);
        fv_reset();
        if (!fired)
            continue;
        injected++;
        const char *what = mode_name(mode, persist);
        if (rc == 0) {
            acked++;
        } else if (mode == FV_FULL) {
            ck_assert_msg(rc == COIL_EFULL, "%s %s #%ld: %s, expected COIL_EFULL: %s", wname[w], what, n,
                          coil_err_name(rc), err.msg);
        } else {
            ck_assert_msg(rc == COIL_EIO || rc == COIL_EDB, "%s %s #%ld: %s, expected COIL_EIO/COIL_EDB: %s",
                          wname[w], what, n, coil_err_name(rc), err.msg);
        }
        char *now = signature(work_db); /* verifies */
        if (rc == 0)
            ck_assert_msg(strcmp(now, after) == 0, "%s %s #%ld: acknowledged but lost:\n%s\nexpected\n%s",
                          wname[w], what, n, now, after);
        else if (w != W_INGEST && mode == FV_CRASH && persist) /* the process died: either way */
            ck_assert_msg(strcmp(now, before) == 0 || strcmp(now, after) == 0,
                          "%s %s #%ld: half-written after a process crash:\n%s", wname[w], what, n, now);
        else if (w != W_INGEST)
            ck_assert_msg(strcmp(now, before) == 0, "%s %s #%ld: failed (%s) but changed the database:\n%s\nbefore\n%s",
                          wname[w], what, n, coil_err_name(rc), now, before);
        int done = rc == 0 || strcmp(now, after) == 0;
        free(now);
        coil_err_clear(&err);
        int rrc = rerun(w, done, &err);
        ck_assert_msg(rrc == 0, "%s %s #%ld: the rerun failed: %s", wname[w], what, n, err.msg);
        now = signature(work_db);
        ck_assert_msg(strcmp(now, after) == 0, "%s %s #%ld: the rerun's final state differs:\n%s\nexpected\n%s",
                      wname[w], what, n, now, after);
        free(now);
        survived++;
    }
    printf("faults: %-10s %-7s %4ld ops, %4ld injected, %4ld survived (%ld acknowledged before the fault hit)%s\n",
           wname[w], mode_name(mode, persist), total, injected, survived, acked,
           stride > 1 ? " [strided]" : "");
    fflush(stdout);
    ck_assert_int_gt(injected, 0);
    free(before);
    free(after);
}

#define SWEEP_TEST(W, name)                  \
    START_TEST(test_##name)                  \
    {                                        \
        sweep(W, FV_IOERR, 0);               \
        sweep(W, FV_IOERR, 1);               \
        sweep(W, FV_FULL, 1);                \
        sweep(W, FV_CRASH, 0);               \
        sweep(W, FV_CRASH, 1);               \
    }                                        \
    END_TEST

SWEEP_TEST(W_INGEST, ingest)
SWEEP_TEST(W_APPEND, append)
SWEEP_TEST(W_APPEND_KEY, append_key)
SWEEP_TEST(W_FORK, fork)
SWEEP_TEST(W_IMPORT, import)

/* The fault VFS itself: a crash drops exactly the writes not synced. */
static long count_rows(const char *path)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, "faultvfs"), SQLITE_OK);
    sqlite3_stmt *s = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &s, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    long n = (long)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA integrity_check", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    return n;
}

START_TEST(test_vfs_crash_drops_unsynced)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/vfs.db", dir);
    for (int crash = 0; crash < 2; crash++) {
        copy_db(base_db, path); /* any file; replaced below */
        unlink(path);
        fv_reset();
        sqlite3 *db = NULL;
        ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "faultvfs"),
                         SQLITE_OK);
        ck_assert_int_eq(sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                                          "CREATE TABLE t(x); INSERT INTO t VALUES (1);", NULL, NULL, NULL),
                         SQLITE_OK);
        /* synchronous=OFF: this commit is written to the WAL, never synced */
        ck_assert_int_eq(sqlite3_exec(db, "PRAGMA synchronous=OFF; INSERT INTO t VALUES (2);", NULL, NULL, NULL),
                         SQLITE_OK);
        if (crash) {
            fv_arm(FV_CRASH, 1, 0);
            ck_assert_int_ne(sqlite3_exec(db, "INSERT INTO t VALUES (3);", NULL, NULL, NULL), SQLITE_OK);
            ck_assert_int_eq(fv_fired(), 1);
        }
        sqlite3_close(db);
        if (crash)
            ck_assert_int_eq(fv_crash_restore(0), 0);
        fv_reset();
        /* no crash: both rows; a crash: only the synced one */
        ck_assert_int_eq(count_rows(path), crash ? 1 : 2);
    }
    /* an I/O error fails that write only */
    fv_reset();
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, "faultvfs"), SQLITE_OK);
    fv_arm(FV_IOERR, 1, 0);
    ck_assert_int_eq(sqlite3_exec(db, "INSERT INTO t VALUES (4);", NULL, NULL, NULL) & 0xff, SQLITE_IOERR);
    ck_assert_int_eq(sqlite3_exec(db, "INSERT INTO t VALUES (5);", NULL, NULL, NULL), SQLITE_OK);
    fv_arm(FV_FULL, 1, 1);
    ck_assert_int_eq(sqlite3_exec(db, "INSERT INTO t VALUES (6);", NULL, NULL, NULL), SQLITE_FULL);
    ck_assert_int_eq(sqlite3_exec(db, "INSERT INTO t VALUES (7);", NULL, NULL, NULL), SQLITE_FULL);
    fv_disarm();
    sqlite3_close(db);
    fv_reset();
    ck_assert_int_eq(count_rows(path), 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("store");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_vfs_crash_drops_unsynced);
    tcase_add_test(tc, test_ingest);
    tcase_add_test(tc, test_append);
    tcase_add_test(tc, test_append_key);
    tcase_add_test(tc, test_fork);
    tcase_add_test(tc, test_import);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
