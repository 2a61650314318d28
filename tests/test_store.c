/* test_store.c -- the SQLite state store: schema and migrations, chunk and
 * checkpoint commits, crash safety under SIGKILL, concurrent writers, error
 * mapping (checksum, model, disk full, busy), FTS5 search, sessions.
 *
 * Every test works on real database files in its own directory under one
 * mkdtemp() root; the root must be empty at the end (checked in main).
 * State blobs are random bytes made from their position, with a made-up
 * model fingerprint.
 */
#include "store.h"
#include "store_internal.h" /* coil_store__migrations: the v1 schema */

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define FP 0xC011C011DEADBEEFull /* > INT64_MAX: checks the bit-pattern round trip */
#define CT 8                     /* tokens per chunk in these tests */

static char root[256];   /* made in the parent before the tests fork */
static int root_dirty;   /* set by the teardown if a test left files */

/* --- helpers ------------------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(p);
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory for one test; *path gets dir/db.sqlite. */
static void tdir(char *dir, size_t dsz, char *path, size_t psz)
{
    snprintf(dir, dsz, "%s/t-XXXXXX", root);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, psz, "%s/db.sqlite", dir);
}

/* Deterministic stand-in for an engine state blob at `pos`. */
static void fill_blob(unsigned char *b, size_t n, int64_t pos)
{
    uint64_t x = 0x9E3779B97F4A7C15ull ^ (uint64_t)pos * 0xBF58476D1CE4E5B9ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (unsigned char)x;
    }
}

static int32_t tok_at(int64_t pos)
{
    return (int32_t)((uint64_t)pos * 7u + 1u); /* unsigned: positions near 2^62 are tested too */
}

/* Builds a chunk: CT tokens from tok0, text "seq<n> " + words. */
typedef struct chunkbuf {
    coil_store_chunk_t c;
    char text[128];
    int32_t toks[CT];
} chunkbuf_t;

static void mk_chunk(chunkbuf_t *cb, int64_t seq, int64_t tok0, int64_t byte0, const char *words)
{
    int n = snprintf(cb->text, sizeof cb->text, "seq%lld %s ", (long long)seq,
                     words ? words : "lorem ipsum");
    for (int i = 0; i < CT; i++)
        cb->toks[i] = tok_at(tok0 + i);
    cb->c = (coil_store_chunk_t){.seq = seq,
                                 .token_start = tok0,
                                 .token_end = tok0 + CT,
                                 .byte_start = byte0,
                                 .byte_end = byte0 + n,
                                 .text = cb->text,
                                 .text_len = (size_t)n,
                                 .tokens = cb->toks};
}

/* Appends n chunks (and a checkpoint of ck_size bytes at the end if ck_size
 * > 0) to doc; returns the store's result. */
static int append(coil_store_t *st, int64_t doc, int n, size_t ck_size, const char *words,
                  coil_err_t *err)
{
    coil_store_progress_t p;
    chunkbuf_t cb[4];
    int rc = coil_store_doc_progress(st, doc, &p, err);
    if (rc)
        return rc;
    ck_assert_int_le(n, 4);
    int64_t seq = p.n_chunks, tok = p.token_end, byte = p.byte_end;
    coil_store_chunk_t cs[4];
    for (int i = 0; i < n; i++) {
        mk_chunk(&cb[i], seq + i, tok, byte, words);
        cs[i] = cb[i].c;
        tok = cs[i].token_end;
        byte = cs[i].byte_end;
    }
    if (!ck_size)
        return coil_store_commit_chunks(st, doc, cs, (size_t)n, NULL, err);
    unsigned char *blob = malloc(ck_size);
    ck_assert_ptr_nonnull(blob);
    fill_blob(blob, ck_size, tok);
    coil_store_ckpt_t ck = {.position = tok, .fingerprint = FP, .data = blob, .size = ck_size};
    rc = coil_store_commit_chunks(st, doc, cs, (size_t)n, &ck, err);
    free(blob);
    return rc;
}

static void blob_is(const coil_store_blob_t *b, int64_t pos, size_t size)
{
    unsigned char *want = malloc(size);
    ck_assert_ptr_nonnull(want);
    fill_blob(want, size, pos);
    ck_assert_int_eq(b->position, pos);
    ck_assert_uint_eq(b->size, size);
    ck_assert(b->fingerprint == FP);
    ck_assert_int_eq(memcmp(b->data, want, size), 0);
    free(want);
}

static coil_store_t *open_ok(const char *path, const coil_store_options_t *o)
{
    coil_err_t err = {0};
    coil_store_t *st = coil_store_open(path, o, &err);
    ck_assert_msg(st != NULL, "open %s: %s", path, err.msg);
    return st;
}

static int64_t new_doc(coil_store_t *st, const char *name, uint64_t hash)
{
    coil_err_t err = {0};
    int64_t model, doc;
    int resumed = -1;
    ck_assert_int_eq(coil_store_model_ensure(st, FP, "/models/made-up", "{\"d_model\":8}", &model,
                                             &err), 0);
    ck_assert_msg(coil_store_doc_begin(st, name, model, hash, CT, 0, &doc, &resumed, &err) == 0,
                  "%s", err.msg);
    ck_assert_int_eq(resumed, 0);
    return doc;
}

static void assert_verify(coil_store_t *st)
{
    coil_err_t err = {0};
    int rc = coil_store_verify(st, &err);
    ck_assert_msg(rc == 0, "verify: %s", err.msg);
}

static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_close(db);
}

/* Damages the store at path as a hostile writer can (CHECK constraints off):
 * runs the SQL printed from fmt, then reopens it (the store must open). */
static coil_store_t *damaged(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static coil_store_t *damaged(const char *path, const char *fmt, ...)
{
    char sql[512] = "PRAGMA ignore_check_constraints = ON; ";
    size_t k = strlen(sql);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sql + k, sizeof sql - k, fmt, ap);
    va_end(ap);
    ck_assert_msg(n >= 0 && (size_t)n < sizeof sql - k, "damage SQL too long");
    raw_exec(path, sql);
    return open_ok(path, NULL);
}

/* A call on a damaged store gave code, with text in its message (in e). */
#define ck_assert_refused(call, e, code, text)                                                                         \
    do {                                                                                                               \
        coil_err_clear(&(e));                                                                                          \
        int rc_ = (call);                                                                                              \
        ck_assert_msg(rc_ == (code) && strstr((e).msg, (text)) != NULL, "%s: %d (%s), expected %d with \"%s\"",      \
                      #call, rc_, (e).msg, (code), (text));                                                            \
    } while (0)

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    ck_assert_uint_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

/* --- schema ---------------------------------------------------------------- */

START_TEST(test_schema_reopen)
{
    char dir[300], path[340];
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_t *st = open_ok(path, NULL);
    int64_t doc = new_doc(st, "a", 1);
    coil_err_t err = {0};
    ck_assert_int_eq(append(st, doc, 2, 100, NULL, &err), 0);
    coil_store_close(&st);
    ck_assert_ptr_null(st);
    coil_store_close(&st); /* NULL-safe */
    coil_store_close(NULL);

    for (int i = 0; i < 2; i++) { /* reopening migrates nothing and loses nothing */
        st = open_ok(path, NULL);
        coil_store_progress_t p;
        ck_assert_int_eq(coil_store_doc_progress(st, doc, &p, &err), 0);
        ck_assert_int_eq(p.token_end, 2 * CT);
        ck_assert(p.fingerprint == FP);
        coil_store_close(&st);
    }
    ck_assert_int_eq(raw_int(path, "PRAGMA user_version"), coil_store_schema_version());
    ck_assert_int_ge(coil_store_schema_version(), 1);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM sqlite_schema WHERE name IN "
                                   "('models','documents','chunks','chunks_fts','sessions',"
                                   "'session_tokens','checkpoints')"),
                     7);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);

    /* Bad options and paths are errors, not crashes. */
    coil_store_options_t o;
    coil_store_options_default(&o);
    o.synchronous = 7;
    ck_assert_ptr_null(coil_store_open(path, &o, &err));
    ck_assert_int_eq(err.code, COIL_EINVAL);
    ck_assert_ptr_null(coil_store_open("", NULL, &err));
    char notdb[360];
    snprintf(notdb, sizeof notdb, "%s/not-a-db", dir);
    FILE *f = fopen(notdb, "w");
    fputs("this is not an SQLite database, just some text that is long enough......"
          "................................................................",
          f);
    fclose(f);
    ck_assert_ptr_null(coil_store_open(notdb, NULL, &err));
    ck_assert_int_eq(err.code, COIL_EDB);
    ck_assert_ptr_nonnull(strstr(err.msg, "not-a-db"));
    rm_tree(dir);
}
END_TEST

START_TEST(test_schema_newer_refused)
{
    char dir[300], path[340], wal[360];
    tdir(dir, sizeof dir, path, sizeof path);
    raw_exec(path, "CREATE TABLE future(x); INSERT INTO future VALUES (1); "
                   "PRAGMA user_version = 999;");
    size_t n0, n1;
    char *before = slurp(path, &n0);
    coil_err_t err = {0};
    ck_assert_ptr_null(coil_store_open(path, NULL, &err));
    ck_assert_int_eq(err.code, COIL_EVERSION);
    ck_assert_ptr_nonnull(strstr(err.msg, "999"));
    char *after = slurp(path, &n1);
    ck_assert_uint_eq(n0, n1);
    ck_assert_int_eq(memcmp(before, after, n0), 0);
    snprintf(wal, sizeof wal, "%s-wal", path);
    ck_assert_int_ne(access(wal, F_OK), 0); /* not even switched to WAL */
    free(before);
    free(after);
    rm_tree(dir);
}
END_TEST

/* --- documents, chunks, checkpoints ------------------------------------------- */

START_TEST(test_commit_and_lookup)
{
    char dir[300], path[340];
    coil_err_t err = {0};
    coil_store_blob_t b = {0};
    coil_store_progress_t p;
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_t *st = open_ok(path, NULL);
    int64_t doc = new_doc(st, "book", 42);

    ck_assert_int_eq(coil_store_ckpt_latest(st, doc, -1, &b, &err), COIL_ENOTFOUND);
    ck_assert_int_eq(append(st, doc, 3, 0, NULL, &err), 0);      /* chunks only: 0..24 */
    ck_assert_int_eq(append(st, doc, 2, 1000, NULL, &err), 0);   /* + ckpt @40 */
    ck_assert_int_eq(append(st, doc, 1, 1000, NULL, &err), 0);   /* + ckpt @48 */
    ck_assert_int_eq(append(st, doc, 1, 0, NULL, &err), 0);      /* chunk 48..56 */
    ck_assert_int_eq(coil_store_doc_progress(st, doc, &p, &err), 0);
    ck_assert_int_eq(p.n_chunks, 7);
    ck_assert_int_eq(p.token_end, 56);
    ck_assert_int_eq(p.ckpt_position, 48);

    ck_assert_int_eq(coil_store_ckpt_latest(st, doc, -1, &b, &err), 0);
    blob_is(&b, 48, 1000);
    ck_assert_int_eq(coil_store_ckpt_latest(st, doc, 47, &b, &err), 0);
    blob_is(&b, 40, 1000);
    ck_assert_int_eq(coil_store_ckpt_latest(st, doc, 1000, &b, &err), 0);
    blob_is(&b, 48, 1000);
    ck_assert_int_eq(coil_store_ckpt_latest(st, doc, 39, &b, &err), COIL_ENOTFOUND);
    ck_assert_int_eq(coil_store_ckpt_check_model(&b, FP, &err), 0);

    /* Replay across chunk boundaries. */
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(coil_store_doc_tokens(st, doc, 5, 43, &ids, &n, &err), 0);
    ck_assert_uint_eq(n, 38);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(ids[i], tok_at(5 + (int64_t)i));
    free(ids);
    ck_assert_int_eq(coil_store_doc_tokens(st, doc, 40, 40, &ids, &n, &err), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(coil_store_doc_tokens(st, doc, 50, 57, &ids, &n, &err), COIL_EINVAL);
    ck_assert_ptr_null(ids);

    /* Bad commits write nothing. */
    chunkbuf_t cb;
    mk_chunk(&cb, 9, 56, p.byte_end, NULL); /* wrong seq */
    ck_assert_int_eq(coil_store_commit_chunks(st, doc, &cb.c, 1, NULL, &err), COIL_EINVAL);
    mk_chunk(&cb, 7, 57, p.byte_end, NULL); /* gap in tokens */
    ck_assert_int_eq(coil_store_commit_chunks(st, doc, &cb.c, 1, NULL, &err), COIL_EINVAL);
    mk_chunk(&cb, 7, 56, p.byte_end, NULL);
    unsigned char blob[64];
    fill_blob(blob, sizeof blob, 64);
    coil_store_ckpt_t ck = {.position = 60, .fingerprint = FP, .data = blob, .size = sizeof blob};
    ck_assert_int_eq(coil_store_commit_chunks(st, doc, &cb.c, 1, &ck, &err), COIL_EINVAL);
    ck.position = 64;
    ck.fingerprint = FP ^ 1;
    ck_assert_int_eq(coil_store_commit_chunks(st, doc, &cb.c, 1, &ck, &err), COIL_EMISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "c011c011deadbeee"));
    coil_store_progress_t p2;
    ck_assert_int_eq(coil_store_doc_progress(st, doc, &p2, &err), 0);
    ck_assert_int_eq(p2.n_chunks, 7);
    ck_assert_int_eq(p2.ckpt_position, 48);
    /* Checkpoint the current end again (n == 0) replaces in place. */
    ck.fingerprint = FP;
    ck.position = 56;
    ck_assert_int_eq(coil_store_commit_chunks(st, doc, NULL, 0, &ck, &err), 0);
    ck_assert_int_eq(coil_store_commit_chunks(st, doc, NULL, 0, &ck, &err), 0);

    /* Crash resume: same name, model, hash -> the same document. */
    int64_t model, again;
    int resumed = 0;
    ck_assert_int_eq(coil_store_model_ensure(st, FP, "/elsewhere", NULL, &model, &err), 0);
    ck_assert_int_eq(coil_store_doc_begin(st, "book", model, 42, CT, 0, &again, &resumed, &err),
                     0);
    ck_assert_int_eq(resumed, 1);
    ck_assert_int_eq(again, doc);
    ck_assert_int_eq(coil_store_doc_begin(st, "book", model, 43, CT, 0, &again, &resumed, &err),
                     COIL_ESTATE);
    ck_assert_int_eq(coil_store_model_ensure(st, 5, "/m", "{not json", &model, &err),
                     COIL_EINVAL);

    /* Finish: the totals must match the grid. */
    ck_assert_int_eq(coil_store_doc_finish(st, doc, p.byte_end, 55, &err), COIL_ESTATE);
    ck_assert_int_eq(coil_store_doc_finish(st, doc, p.byte_end, 56, &err), 0);
    ck_assert_int_eq(append(st, doc, 1, 0, NULL, &err), COIL_ESTATE);
    /* complete: the same model, source and grid is "done", anything else is refused by name */
    ck_assert_int_eq(coil_store_doc_begin(st, "book", model, 42, CT, 0, &again, &resumed, &err), 0);
    ck_assert_int_eq(resumed, COIL_STORE_DOC_DONE);
    ck_assert_int_eq(again, doc);
    ck_assert_int_eq(coil_store_doc_begin(st, "book", model, 43, CT, 0, &again, &resumed, &err),
                     COIL_ESTATE);
    ck_assert_ptr_nonnull(strstr(err.msg, "different input"));
    ck_assert_int_eq(coil_store_doc_begin(st, "book", model, 42, CT + 1, 0, &again, &resumed, &err),
                     COIL_ESTATE);
    ck_assert_ptr_nonnull(strstr(err.msg, "chunks of"));
    int64_t found;
    ck_assert_int_eq(coil_store_doc_find(st, "book", &found, &err), 0);
    ck_assert_int_eq(found, doc);
    ck_assert_int_eq(coil_store_doc_find(st, "nope", &found, &err), COIL_ENOTFOUND);
    assert_verify(st);

    /* Replace drops chunks, checkpoints and FTS rows of the old one. */
    ck_assert_int_eq(coil_store_doc_begin(st, "book", model, 42, CT, COIL_STORE_DOC_REPLACE,
                                          &again, &resumed, &err),
                     0);
    ck_assert_int_ne(again, doc);
    ck_assert_int_eq(resumed, 0);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM chunks"), 0);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM checkpoints"), 0);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH 'lorem'"),
                     0);
    ck_assert_int_eq(coil_store_doc_fail(st, again, "tokenizer exploded", &err), 0);
    ck_assert_int_eq(coil_store_doc_fail(st, 999, "x", &err), COIL_ENOTFOUND);
    assert_verify(st);
    coil_store_blob_clear(&b);
    coil_store_close(&st);
    rm_tree(dir);
}
END_TEST

static int count_docs(const coil_store_doc_info_t *d, void *ud)
{
    int *n = ud;
    ck_assert_str_eq(d->name, "listed");
    ck_assert_str_eq(d->status, "ingesting");
    ck_assert_int_eq(d->tokens, 3 * CT);
    ck_assert_int_eq(d->n_chunks, 3);
    ck_assert_int_eq(d->n_checkpoints, 1);
    ck_assert_int_eq(d->checkpoint_bytes, 500);
    ck_assert_ptr_null(d->error);
    ck_assert_int_gt(d->created, 1600000000);
    (*n)++;
    return 0;
}

START_TEST(test_doc_list)
{
    char dir[300], path[340];
    coil_err_t err = {0};
    int n = 0;
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_t *st = open_ok(path, NULL);
    int64_t doc = new_doc(st, "listed", 1);
    ck_assert_int_eq(append(st, doc, 3, 500, NULL, &err), 0);
    ck_assert_int_eq(coil_store_doc_list(st, NULL, count_docs, &n, &err), 0);
    ck_assert_int_eq(coil_store_doc_list(st, "listed", count_docs, &n, &err), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(coil_store_doc_list(st, "other", count_docs, &n, &err), COIL_ENOTFOUND);
    coil_store_close(&st);
    rm_tree(dir);
}
END_TEST

/* --- retention policy ------------------------------------------------------------ */

START_TEST(test_policy)
{
    coil_store_policy_t p = {.interval = 8, .dense = 2};
    /* young: all kept; old: only multiples of growing powers of two */
    ck_assert(coil_store_policy_keep(&p, 100, 100));
    ck_assert(coil_store_policy_keep(&p, 0, 1000000));
    ck_assert(coil_store_policy_keep(&p, 99, 110));  /* age 11 < 16 */
    ck_assert(!coil_store_policy_keep(&p, 99, 120)); /* age 21, not a multiple of 16 */
    ck_assert(!coil_store_policy_keep(&p, 104, 120)); /* 104 = 8 * 13 */
    ck_assert(coil_store_policy_keep(&p, 96, 120));  /* 96 = 16 * 6, age 24 -> k = 1 */
    ck_assert(!coil_store_policy_keep(&p, 96, 160)); /* age 64 -> k = 3 -> 64 | 96? no */
    ck_assert(coil_store_policy_keep(&p, 128, 200)); /* age 72 -> k = 3, 64 | 128 */
    /* Monotone: once dropped, dropped for every later newest. */
    for (int64_t pos = 8; pos < 1000; pos += 8)
        for (int64_t h = pos; h < 2000; h += 8)
            if (!coil_store_policy_keep(&p, pos, h)) {
                for (int64_t h2 = h; h2 < 4000; h2 += 56)
                    ck_assert(!coil_store_policy_keep(&p, pos, h2));
                break;
            }
    /* O(dense * log N) survivors */
    coil_store_policy_t d;
    coil_store_policy_default(&d);
    int64_t kept = coil_store_policy_count(&d, 1000000);
    ck_assert_int_gt(kept, 8);
    ck_assert_int_lt(kept, 40);
    ck_assert(coil_store_policy_due(&d, -1, 4096));
    ck_assert(!coil_store_policy_due(&d, -1, 4095));
    ck_assert(coil_store_policy_due(&d, 4000, 8200));
    ck_assert(!coil_store_policy_due(&d, 4096, 8000));
    coil_store_policy_t off = {.interval = 8, .dense = 0};
    ck_assert(coil_store_policy_keep(&off, 8, 1 << 20));
}
END_TEST

START_TEST(test_thinning_applied)
{
    char dir[300], path[340];
    coil_err_t err = {0};
    coil_store_options_t o;
    coil_store_blob_t b = {0};
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_options_default(&o);
    o.policy = (coil_store_policy_t){.interval = CT, .dense = 2};
    o.synchronous = COIL_STORE_SYNC_NORMAL;
    coil_store_t *st = open_ok(path, &o);
    int64_t doc = new_doc(st, "thin", 1);
    for (int i = 0; i < 64; i++) /* a checkpoint at every chunk */
        ck_assert_int_eq(append(st, doc, 1, 256, NULL, &err), 0);
    int64_t newest = 64 * CT;
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM checkpoints"),
                     coil_store_policy_count(&o.policy, newest));
    sqlite3 *db;
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT position FROM checkpoints", -1, &s, NULL),
                     SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW)
        ck_assert(coil_store_policy_keep(&o.policy, sqlite3_column_int64(s, 0), newest));
    sqlite3_finalize(s);
    sqlite3_close(db);
    /* Lookups still find the nearest survivor at or before. */
    ck_assert_int_eq(coil_store_ckpt_latest(st, doc, 300, &b, &err), 0);
    ck_assert_int_le(b.position, 300);
    ck_assert(coil_store_policy_keep(&o.policy, b.position, newest));
    blob_is(&b, b.position, 256);
    coil_store_blob_clear(&b);
    assert_verify(st);
    coil_store_close(&st);
    rm_tree(dir);
}
END_TEST

/* --- crash safety ------------------------------------------------------------------ */

#define CRASH_GAP (3 * CT) /* the most tokens a chunks-only transaction adds */

/* Child: resume the document and commit forever until SIGKILLed. */
static void crash_writer(const char *path, unsigned seed)
{
    coil_err_t err = {0};
    coil_store_options_t o;
    coil_store_options_default(&o); /* synchronous = FULL */
    o.policy = (coil_store_policy_t){.interval = 16, .dense = 2};
    coil_store_t *st = coil_store_open(path, &o, &err);
    int64_t model, doc;
    int resumed = 0;
    if (!st || coil_store_model_ensure(st, FP, "/m", NULL, &model, &err) ||
        coil_store_doc_begin(st, "crash", model, 7, CT, 0, &doc, &resumed, &err) || !resumed)
        _exit(3);
    for (unsigned i = 0;; i++) {
        int n = 1 + (int)(rand_r(&seed) % 3);
        /* Every fourth transaction: chunks without a checkpoint. */
        size_t size = (i % 4 == 3) ? 0 : 4096 + rand_r(&seed) % (96 * 1024);
        if (append(st, doc, n, size, "crash test words", &err) != 0)
            _exit(2);
    }
}

/* The checkpoints' bytes are exactly what the writer wrote at that position. */
static void check_blobs_content(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT position, state FROM checkpoints", -1, &s,
                                        NULL),
                     SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW) {
        int64_t pos = sqlite3_column_int64(s, 0);
        size_t n = (size_t)sqlite3_column_bytes(s, 1);
        unsigned char *want = malloc(n);
        fill_blob(want, n, pos);
        ck_assert_int_eq(memcmp(sqlite3_column_blob(s, 1), want, n), 0);
        free(want);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
}

START_TEST(test_crash_safety)
{
    char dir[300], path[340];
    coil_err_t err = {0};
    coil_store_progress_t p;
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_t *st = open_ok(path, NULL);
    int64_t doc = new_doc(st, "crash", 7);
    coil_store_close(&st);

    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    int64_t last_end = 0, kills = 0;
    for (int iter = 0; iter < 24; iter++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0)
            crash_writer(path, seed + (unsigned)iter);
        struct timespec ts = {0, (long)(2 + rand_r(&seed) % 40) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status), "writer exited %d (seed %u)", WEXITSTATUS(status),
                      seed);
        kills++;

        st = open_ok(path, NULL);
        assert_verify(st); /* integrity_check, FTS, I1-I4, every checksum */
        ck_assert_int_eq(coil_store_doc_progress(st, doc, &p, &err), 0);
        ck_assert_int_ge(p.token_end, last_end); /* committed data never goes away */
        last_end = p.token_end;
        if (p.token_end > 0) {
            /* I2 + the writer's pattern: checkpoints trail the grid by at
             * most one chunks-only transaction. */
            ck_assert_int_ge(p.ckpt_position, p.token_end - CRASH_GAP);
            ck_assert_int_le(p.ckpt_position, p.token_end);
        }
        coil_store_close(&st);
        ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM pragma_integrity_check "
                                       "WHERE integrity_check <> 'ok'"),
                         0);
        check_blobs_content(path);
    }
    ck_assert_int_eq(kills, 24);
    ck_assert_int_gt(last_end, 0);
    rm_tree(dir);
}
END_TEST

/* --- concurrency ------------------------------------------------------------------- */

static void concurrent_writer(const char *path, const char *name)
{
    coil_err_t err = {0};
    coil_store_t *st = coil_store_open(path, NULL, &err); /* both may migrate a new file */
    int64_t model, doc;
    int resumed;
    if (!st || coil_store_model_ensure(st, FP, "/m", NULL, &model, &err) ||
        coil_store_doc_begin(st, name, model, 1, CT, 0, &doc, &resumed, &err))
        goto fail;
    for (int i = 0; i < 30; i++)
        if (append(st, doc, 2, 32 * 1024, name, &err) != 0)
            goto fail;
    coil_store_progress_t p;
    if (coil_store_doc_progress(st, doc, &p, &err) ||
        coil_store_doc_finish(st, doc, p.byte_end, p.token_end, &err))
        goto fail;
    coil_store_close(&st);
    _exit(0);
fail:
    fprintf(stderr, "writer %s: %s\n", name, err.msg);
    _exit(1);
}

static int count_complete(const coil_store_doc_info_t *d, void *ud)
{
    int *n = ud;
    *n += strcmp(d->status, "complete") == 0 && d->tokens == 60 * CT;
    return 0;
}

START_TEST(test_concurrent_writers)
{
    char dir[300], path[340];
    coil_err_t err = {0};
    pid_t pid[2];
    tdir(dir, sizeof dir, path, sizeof path);
    for (int i = 0; i < 2; i++) {
        pid[i] = fork();
        ck_assert_int_ge(pid[i], 0);
        if (pid[i] == 0)
            concurrent_writer(path, i ? "left" : "right");
    }
    for (int i = 0; i < 2; i++) {
        int status;
        ck_assert_int_eq(waitpid(pid[i], &status, 0), pid[i]);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 0);
    }
    coil_store_t *st = open_ok(path, NULL);
    int n = 0;
    ck_assert_int_eq(coil_store_doc_list(st, NULL, count_complete, &n, &err), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM models"), 1);
    assert_verify(st);
    coil_store_close(&st);
    rm_tree(dir);
}
END_TEST

START_TEST(test_busy)
{
    char dir[300], path[340];
    coil_err_t err = {0};
    coil_store_options_t o;
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_options_default(&o);
    o.busy_timeout_ms = 50;
    coil_store_t *st = open_ok(path, &o);
    int64_t doc = new_doc(st, "busy", 1);
    ck_assert_int_eq(append(st, doc, 1, 100, NULL, &err), 0);

    sqlite3 *other;
    ck_assert_int_eq(sqlite3_open(path, &other), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    ck_assert_int_eq(append(st, doc, 1, 100, NULL, &err), COIL_EBUSY);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    ck_assert_msg(ms >= 40 && ms < 2000, "waited %.1f ms", ms);
    ck_assert_ptr_nonnull(strstr(err.msg, "BEGIN IMMEDIATE"));
    /* Reads still work while another connection writes. */
    coil_store_progress_t p;
    ck_assert_int_eq(coil_store_doc_progress(st, doc, &p, &err), 0);
    ck_assert_int_eq(p.n_chunks, 1);
    ck_assert_int_eq(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    ck_assert_int_eq(append(st, doc, 1, 100, NULL, &err), 0);
    ck_assert_int_eq(coil_store_doc_progress(st, doc, &p, &err), 0);
    ck_assert_int_eq(p.n_chunks, 2);
    assert_verify(st);
    coil_store_close(&st);
    rm_tree(dir);
}
END_TEST

/* --- damaged data ------------------------------------------------------------------ */

START_TEST(test_checksum_and_model)
{
    char dir[300], path[340];
    coil_err_t err = {0};
    coil_store_blob_t b = {0};
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_t *st = open_ok(path, NULL);
    int64_t doc = new_doc(st, "damaged", 1);
    ck_assert_int_eq(append(st, doc, 1, 4096, NULL, &err), 0);
    ck_assert_int_eq(coil_store_ckpt_latest(st, doc, -1, &b, &err), 0);
    ck_assert_int_eq(coil_store_ckpt_check_model(&b, FP ^ 0xff, &err), COIL_EMISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "c011c011deadbeef"));

    /* Flip one byte of the stored state behind the store's back. */
    sqlite3 *db;
    sqlite3_blob *bl;
    unsigned char byte;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_blob_open(db, "main", "checkpoints", "state",
                                       raw_int(path, "SELECT id FROM checkpoints"), 1, &bl),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_blob_read(bl, &byte, 1, 100), SQLITE_OK);
    byte ^= 0x10;
    ck_assert_int_eq(sqlite3_blob_write(bl, &byte, 1, 100), SQLITE_OK);
    sqlite3_blob_close(bl);
    sqlite3_close(db);
    ck_assert_int_eq(coil_store_ckpt_latest(st, doc, -1, &b, &err), COIL_ECHECKSUM);
    ck_assert_ptr_nonnull(strstr(err.msg, "checksum"));
    ck_assert_int_eq(coil_store_verify(st, &err), COIL_ECHECKSUM);
    /* A size that lies is caught too. */
    raw_exec(path, "UPDATE checkpoints SET size = size + 1");
    ck_assert_int_eq(coil_store_ckpt_latest(st, doc, -1, &b, &err), COIL_EDB);
    coil_store_blob_clear(&b);
    coil_store_close(&st);
    rm_tree(dir);
}
END_TEST

START_TEST(test_disk_full)
{
    char dir[300], path[340];
    coil_err_t err = {0};
    coil_store_options_t o;
    coil_store_blob_t b = {0};
    coil_store_progress_t p;
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_options_default(&o);
    o.max_db_bytes = 1024 * 1024; /* 64 pages of 16 KiB */
    coil_store_t *st = open_ok(path, &o);
    int64_t doc = new_doc(st, "full", 1);
    ck_assert_int_eq(append(st, doc, 2, 64 * 1024, NULL, &err), 0);
    int rc = append(st, doc, 1, 2 * 1024 * 1024, NULL, &err);
    ck_assert_msg(rc == COIL_EFULL, "got %s: %s", coil_err_name(rc), err.msg);
    ck_assert_ptr_nonnull(strstr(err.msg, "checkpoint"));
    ck_assert_int_eq(coil_store_doc_progress(st, doc, &p, &err), 0);
    ck_assert_int_eq(p.n_chunks, 2); /* the chunk of the failed transaction is gone too */
    ck_assert_int_eq(p.ckpt_position, 2 * CT);
    ck_assert_int_eq(coil_store_ckpt_latest(st, doc, -1, &b, &err), 0);
    blob_is(&b, 2 * CT, 64 * 1024);
    assert_verify(st);
    /* Small writes still fit afterwards. */
    ck_assert_int_eq(append(st, doc, 1, 1024, NULL, &err), 0);
    coil_store_blob_clear(&b);
    coil_store_close(&st);
    rm_tree(dir);
}
END_TEST

/* --- search ------------------------------------------------------------------------ */

typedef struct hits {
    int n;
    char first_doc[32];
    int64_t first_seq;
    char first_snippet[256], first_marked[320];
    double last_score;
    int ordered;
} hits_t;

static int on_hit(const coil_store_hit_t *h, void *ud)
{
    hits_t *hs = ud;
    if (hs->n == 0) {
        snprintf(hs->first_doc, sizeof hs->first_doc, "%s", h->doc_name);
        hs->first_seq = h->seq;
        snprintf(hs->first_snippet, sizeof hs->first_snippet, "%s", h->snippet);
        /* the marked ranges, each in [ ], for the assertions below */
        char *o = hs->first_marked;
        size_t at = 0, len = strlen(h->snippet), room = sizeof hs->first_marked;
        for (size_t i = 0; i <= h->n_marks && room > 1; i++) {
            size_t a = i < h->n_marks ? (size_t)h->marks[2 * i] : len;
            ck_assert_uint_ge(a, at);
            ck_assert_uint_le(a, len);
            int k = snprintf(o, room, "%.*s", (int)(a - at), h->snippet + at);
            o += k, room -= (size_t)k;
            if (i < h->n_marks) {
                size_t b = (size_t)h->marks[2 * i + 1];
                ck_assert_uint_le(b, len);
                k = snprintf(o, room, "[%.*s]", (int)(b - a), h->snippet + a);
                o += k, room -= (size_t)k;
                at = b;
            }
        }
        hs->ordered = 1;
    } else if (h->score > hs->last_score) {
        hs->ordered = 0;
    }
    ck_assert_int_eq(h->token_end - h->token_start, CT);
    ck_assert_int_gt(h->byte_end, h->byte_start);
    hs->last_score = h->score;
    hs->n++;
    return 0;
}

START_TEST(test_search)
{
    char dir[300], path[340];
    coil_err_t err = {0};
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_t *st = open_ok(path, NULL);
    int64_t a = new_doc(st, "alpha", 1), b = new_doc(st, "beta", 2);
    ck_assert_int_eq(append(st, a, 2, 0, "the quick brown fox", &err), 0);
    ck_assert_int_eq(append(st, a, 1, 0, "fox fox fox jumps over the fox", &err), 0);
    ck_assert_int_eq(append(st, a, 1, 0, "nothing to see here", &err), 0);
    ck_assert_int_eq(append(st, b, 1, 0, "a lazy dog and a fox", &err), 0);

    hits_t h = {0};
    ck_assert_int_eq(coil_store_search(st, "fox", NULL, 10, on_hit, &h, &err), 0);
    ck_assert_int_eq(h.n, 4);
    ck_assert(h.ordered);
    ck_assert_str_eq(h.first_doc, "alpha");
    ck_assert_int_eq(h.first_seq, 2); /* the fox-heavy chunk ranks first */
    ck_assert_str_eq(h.first_snippet, "seq2 fox fox fox jumps over the fox "); /* plain text */
    ck_assert_str_eq(h.first_marked, "seq2 [fox] [fox] [fox] jumps over the [fox] ");

    memset(&h, 0, sizeof h);
    ck_assert_int_eq(coil_store_search(st, "fox", "beta", 10, on_hit, &h, &err), 0);
    ck_assert_int_eq(h.n, 1);
    ck_assert_str_eq(h.first_doc, "beta");
    memset(&h, 0, sizeof h);
    ck_assert_int_eq(coil_store_search(st, "fox", NULL, 2, on_hit, &h, &err), 0);
    ck_assert_int_eq(h.n, 2);
    memset(&h, 0, sizeof h);
    ck_assert_int_eq(coil_store_search(st, "\"lazy dog\" OR jum*", NULL, 0, on_hit, &h, &err), 0);
    ck_assert_int_eq(h.n, 2);
    memset(&h, 0, sizeof h);
    ck_assert_int_eq(coil_store_search(st, "zebra", NULL, 10, on_hit, &h, &err), 0);
    ck_assert_int_eq(h.n, 0);

    static const char *bad[] = {"\"unterminated", "fox AND", "nosuchcolumn: fox", "(fox",
                                "AND OR NOT", "fox NEAR(", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = coil_store_search(st, bad[i], NULL, 10, on_hit, &h, &err);
        ck_assert_msg(rc == COIL_EINVAL || (rc == 0 && bad[i][0] == '\0'),
                      "query '%s' gave %s: %s", bad[i], coil_err_name(rc), err.msg);
    }
    /* The handle is still usable after a bad query. */
    ck_assert_int_eq(append(st, b, 1, 100, "after the error", &err), 0);
    assert_verify(st);
    coil_store_close(&st);
    rm_tree(dir);
}
END_TEST

/* --- sessions ------------------------------------------------------------------------ */

static void session_ckpt(coil_store_t *st, const char *id, int64_t head, const void *blob,
                         size_t size, const int32_t *toks, size_t n)
{
    coil_err_t err = {0};
    coil_store_ckpt_t ck = {.position = head, .fingerprint = FP, .data = blob, .size = size};
    ck_assert_msg(coil_store_session_append(st, id, toks, n, &ck, NULL, &err) == 0, "%s", err.msg);
}

static int count_sessions(const coil_store_session_info_t *s, void *ud)
{
    (void)s;
    (*(int *)ud)++;
    return 0;
}

START_TEST(test_sessions)
{
    char dir[300], path[340];
    char root_s[17], child[17], child2[17];
    coil_err_t err = {0};
    coil_store_blob_t b = {0};
    coil_store_session_info_t info;
    int32_t *ids;
    size_t n;
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_t *st = open_ok(path, NULL);
    int64_t doc = new_doc(st, "convo", 1);
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(append(st, doc, 2, 300, NULL, &err), 0); /* ckpts @16..80 */

    ck_assert_int_eq(coil_store_session_new(st, doc, 81, root_s, &err), COIL_EINVAL);
    ck_assert_int_eq(coil_store_session_new(st, doc, 60, root_s, &err), 0);
    ck_assert_uint_eq(strlen(root_s), 16);
    ck_assert_int_eq(coil_store_session_get(st, root_s, &info, &err), 0);
    ck_assert_int_eq(info.head, 60);
    ck_assert_int_eq(info.base, 60);
    ck_assert_str_eq(info.parent, "");
    ck_assert_int_eq(coil_store_session_ckpt(st, root_s, -1, &b, &err), 0);
    blob_is(&b, 48, 300); /* the document's, at or before 60 */
    ck_assert_int_eq(coil_store_session_tokens(st, root_s, 0, 60, &ids, &n, &err), 0);
    ck_assert_uint_eq(n, 60);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(ids[i], tok_at((int64_t)i));
    free(ids);

    /* Append 10 tokens + a checkpoint at 70. */
    int32_t t1[10], t2[5];
    unsigned char pblob[200], cblob[200];
    for (int i = 0; i < 10; i++)
        t1[i] = 1000 + i;
    for (int i = 0; i < 5; i++)
        t2[i] = 2000 + i;
    fill_blob(pblob, sizeof pblob, 70);
    memset(cblob, 0xCC, sizeof cblob);
    session_ckpt(st, root_s, 70, pblob, sizeof pblob, t1, 10);
    ck_assert_int_eq(coil_store_session_ckpt(st, root_s, -1, &b, &err), 0);
    blob_is(&b, 70, 200);
    ck_assert_int_eq(coil_store_session_ckpt(st, root_s, 69, &b, &err), 0);
    ck_assert_int_eq(b.position, 48);
    ck_assert_int_eq(coil_store_session_tokens(st, root_s, 55, 70, &ids, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(ids[i], 55 + (int64_t)i < 60 ? tok_at(55 + (int64_t)i) : 1000 + (int)i - 5);
    free(ids);
    ck_assert_int_eq(coil_store_session_tokens(st, root_s, 55, 71, &ids, &n, &err), COIL_EINVAL);
    coil_store_ckpt_t wrong = {.position = 70, .fingerprint = 1, .data = pblob, .size = 10};
    ck_assert_int_eq(coil_store_session_append(st, root_s, NULL, 0, &wrong, NULL, &err), COIL_EMISMATCH);
    wrong.position = 71;
    wrong.fingerprint = FP;
    ck_assert_int_eq(coil_store_session_append(st, root_s, NULL, 0, &wrong, NULL, &err), COIL_EINVAL);

    /* Fork at 65: the child sees the parent's history up to 65 only. */
    ck_assert_int_eq(coil_store_session_fork(st, root_s, 71, child, &err), COIL_EINVAL);
    ck_assert_int_eq(coil_store_session_fork(st, root_s, 65, child, &err), 0);
    ck_assert_int_eq(coil_store_session_ckpt(st, child, -1, &b, &err), 0);
    ck_assert_int_eq(b.position, 48); /* the parent's @70 is past the fork */
    session_ckpt(st, child, 70, cblob, sizeof cblob, t2, 5);
    ck_assert_int_eq(coil_store_session_tokens(st, child, 58, 70, &ids, &n, &err), 0);
    ck_assert_uint_eq(n, 12);
    ck_assert_int_eq(ids[0], tok_at(58));
    ck_assert_int_eq(ids[1], tok_at(59));
    for (int i = 2; i < 7; i++)
        ck_assert_int_eq(ids[i], 1000 + i - 2); /* the parent's, 60..65 */
    for (int i = 7; i < 12; i++)
        ck_assert_int_eq(ids[i], 2000 + i - 7); /* the child's own */
    free(ids);
    ck_assert_int_eq(coil_store_session_ckpt(st, child, -1, &b, &err), 0);
    ck_assert_int_eq(b.position, 70);
    ck_assert_int_eq(((unsigned char *)b.data)[0], 0xCC);
    /* ... and the parent is unchanged: head, tokens, checkpoints. */
    ck_assert_int_eq(coil_store_session_get(st, root_s, &info, &err), 0);
    ck_assert_int_eq(info.head, 70);
    ck_assert_int_eq(info.n_checkpoints, 1);
    ck_assert_int_eq(info.n_children, 1);
    ck_assert_int_eq(coil_store_session_ckpt(st, root_s, -1, &b, &err), 0);
    blob_is(&b, 70, 200);
    ck_assert_int_eq(coil_store_session_tokens(st, root_s, 60, 70, &ids, &n, &err), 0);
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(ids[i], 1000 + i);
    free(ids);

    /* A grandchild forked at the child's base walks two levels up. */
    ck_assert_int_eq(coil_store_session_fork(st, child, -1, child2, &err), 0);
    ck_assert_int_eq(coil_store_session_ckpt(st, child2, -1, &b, &err), 0);
    ck_assert_int_eq(((unsigned char *)b.data)[0], 0xCC);
    ck_assert_int_eq(coil_store_session_tokens(st, child2, 0, 70, &ids, &n, &err), 0);
    ck_assert_int_eq(ids[64], 1000 + 4);
    ck_assert_int_eq(ids[65], 2000);
    free(ids);

    int count = 0;
    ck_assert_int_eq(coil_store_session_list(st, doc, count_sessions, &count, &err), 0);
    ck_assert_int_eq(count, 3);
    assert_verify(st);

    /* Deleting: refused while descendants share the history, else cascades. */
    int64_t model, again;
    int resumed;
    ck_assert_int_eq(coil_store_model_ensure(st, FP, "/m", NULL, &model, &err), 0);
    ck_assert_int_eq(coil_store_doc_begin(st, "convo", model, 99, CT, COIL_STORE_DOC_REPLACE,
                                          &again, &resumed, &err),
                     COIL_ESTATE);
    ck_assert_int_eq(coil_store_session_delete(st, root_s, false, &err), COIL_ESTATE);
    ck_assert_int_eq(coil_store_session_delete(st, child2, false, &err), 0);
    ck_assert_int_eq(coil_store_session_get(st, child2, &info, &err), COIL_ENOTFOUND);
    ck_assert_int_eq(coil_store_session_delete(st, root_s, true, &err), 0);
    count = 0;
    ck_assert_int_eq(coil_store_session_list(st, -1, count_sessions, &count, &err), 0);
    ck_assert_int_eq(count, 0);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM session_tokens"), 0);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM checkpoints WHERE session_id IS NOT NULL"),
                     0);
    ck_assert_int_eq(coil_store_session_get(st, "not-a-session-id", &info, &err), COIL_EINVAL);
    assert_verify(st);
    coil_store_blob_clear(&b);
    coil_store_close(&st);
    rm_tree(dir);
}
END_TEST

/* --- imported documents and migrations ---------------------------------------- */

#define IMP_POS 40     /* position of the imported state */
#define IMP_SIZE 1500  /* its size */

static int64_t import_doc(coil_store_t *st, const char *name, unsigned flags, coil_err_t *err,
                          int *rc)
{
    int64_t model, doc = -1;
    unsigned char blob[IMP_SIZE];
    fill_blob(blob, sizeof blob, IMP_POS);
    ck_assert_int_eq(coil_store_model_ensure(st, FP, "/models/made-up", NULL, &model, err), 0);
    *rc = coil_store_doc_import(st, name, model, blob, sizeof blob, FP, IMP_POS, flags, &doc, err);
    return doc;
}

static int check_imported(const coil_store_doc_info_t *d, void *ud)
{
    (void)ud;
    ck_assert_str_eq(d->name, "imported");
    ck_assert_str_eq(d->status, "complete");
    ck_assert_str_eq(d->origin, "import");
    ck_assert_int_eq(d->tokens, IMP_POS);
    ck_assert_int_eq(d->base_position, IMP_POS);
    ck_assert_int_eq(d->bytes, 0);
    ck_assert_int_eq(d->n_chunks, 0);
    ck_assert_int_eq(d->n_checkpoints, 1);
    ck_assert_int_eq(d->checkpoint_bytes, IMP_SIZE);
    return 0;
}

/* Request keys: an append made with a key is recorded in its transaction; a
 * second append with the same key writes nothing; keys go with their session. */
START_TEST(test_request_keys)
{
    char dir[300], path[340], sid[17], sid2[17];
    coil_err_t err = {0};
    coil_store_session_info_t info;
    coil_store_request_info_t ri;
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_t *st = open_ok(path, NULL);
    int64_t doc = new_doc(st, "convo", 1);
    ck_assert_int_eq(append(st, doc, 2, 300, NULL, &err), 0); /* tokens 0..16 */
    ck_assert_int_eq(coil_store_session_new(st, doc, 16, sid, &err), 0);
    ck_assert_int_eq(coil_store_session_new(st, doc, 16, sid2, &err), 0);

    ck_assert(coil_store_request_key_valid("client-7:turn.3_a"));
    ck_assert(!coil_store_request_key_valid(""));
    ck_assert(!coil_store_request_key_valid("a b"));
    ck_assert(!coil_store_request_key_valid(NULL));
    char long_key[COIL_STORE_KEY_MAX + 2];
    memset(long_key, 'k', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    ck_assert(!coil_store_request_key_valid(long_key));
    long_key[COIL_STORE_KEY_MAX] = '\0';
    ck_assert(coil_store_request_key_valid(long_key));

    ck_assert_int_eq(coil_store_request_find(st, "k1", NULL, &ri, &err), COIL_ENOTFOUND);
    int32_t t[4] = {7, 8, 9, 10};
    unsigned char blob[64];
    fill_blob(blob, sizeof blob, 20);
    coil_store_ckpt_t ck = {.position = 20, .fingerprint = FP, .data = blob, .size = sizeof blob};
    coil_store_request_t rq = {.key = "k1", .result = "{\"answer\":42}"};
    ck_assert_msg(coil_store_session_append(st, sid, t, 4, &ck, &rq, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(coil_store_request_find(st, "k1", NULL, &ri, &err), 0);
    ck_assert_str_eq(ri.session, sid);
    ck_assert_int_eq(ri.head_before, 16);
    ck_assert_int_eq(ri.head_after, 20);
    ck_assert_str_eq(ri.result, "{\"answer\":42}");
    free(ri.result);
    ck_assert_int_eq(coil_store_request_find(st, "k1", sid, &ri, &err), 0); /* its own session */
    free(ri.result);
    ck_assert_int_eq(coil_store_request_find(st, "k1", sid2, &ri, &err), COIL_ESTATE); /* another one */
    ck_assert_msg(strstr(err.msg, sid) != NULL, "%s", err.msg);

    /* the same key again (on any session): refused, nothing written */
    ck.position = 24;
    ck_assert_int_eq(coil_store_session_append(st, sid, t, 4, &ck, &rq, &err), COIL_ESTATE);
    ck_assert_msg(strstr(err.msg, "k1") != NULL, "%s", err.msg);
    ck_assert_int_eq(coil_store_session_get(st, sid, &info, &err), 0);
    ck_assert_int_eq(info.head, 20);
    ck.position = 20;
    ck_assert_int_eq(coil_store_session_append(st, sid2, t, 4, &ck, &rq, &err), COIL_ESTATE);
    ck_assert_int_eq(coil_store_session_get(st, sid2, &info, &err), 0);
    ck_assert_int_eq(info.head, 16);

    /* a failed append records no key */
    coil_store_request_t rq2 = {.key = "k2"};
    ck.position = 99; /* not the new head */
    ck_assert_int_eq(coil_store_session_append(st, sid2, t, 4, &ck, &rq2, &err), COIL_EINVAL);
    ck_assert_int_eq(coil_store_request_find(st, "k2", NULL, &ri, &err), COIL_ENOTFOUND);
    ck.position = 20;
    ck_assert_int_eq(coil_store_session_append(st, sid2, t, 4, &ck, &rq2, &err), 0);
    ck_assert_int_eq(coil_store_request_find(st, "k2", NULL, &ri, &err), 0);
    ck_assert_ptr_null(ri.result);

    /* malformed keys */
    coil_store_request_t bad = {.key = "no spaces"};
    ck_assert_int_eq(coil_store_session_append(st, sid, t, 4, NULL, &bad, &err), COIL_EINVAL);
    ck_assert_int_eq(coil_store_request_find(st, "no spaces", NULL, &ri, &err), COIL_EINVAL);

    /* keys go with their session */
    ck_assert_int_eq(coil_store_session_delete(st, sid, false, &err), 0);
    ck_assert_int_eq(coil_store_request_find(st, "k1", NULL, &ri, &err), COIL_ENOTFOUND);
    ck_assert_int_eq(coil_store_request_find(st, "k2", NULL, &ri, &err), 0);
    assert_verify(st);
    coil_store_close(&st);
    rm_tree(dir);
}
END_TEST

START_TEST(test_import)
{
    char dir[300], path[340], sid[17], kid[17], other[17];
    coil_err_t err = {0};
    coil_store_blob_t b = {0};
    coil_store_progress_t p;
    int32_t *ids;
    size_t n;
    int rc;
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_t *st = open_ok(path, NULL);
    int64_t doc = import_doc(st, "imported", 0, &err, &rc);
    ck_assert_msg(rc == 0, "%s", err.msg);
    assert_verify(st);

    /* The state at P is the checkpoint; the grid is empty and ends at P. */
    ck_assert_int_eq(coil_store_doc_progress(st, doc, &p, &err), 0);
    ck_assert_int_eq(p.n_chunks, 0);
    ck_assert_int_eq(p.token_end, IMP_POS);
    ck_assert_int_eq(p.byte_end, 0);
    ck_assert_int_eq(p.ckpt_position, IMP_POS);
    ck_assert_int_eq(p.base_position, IMP_POS);
    ck_assert_int_eq(p.chunk_tokens, COIL_STORE_IMPORT_CHUNK_TOKENS);
    ck_assert(p.fingerprint == FP);
    ck_assert_int_eq(coil_store_ckpt_latest(st, doc, -1, &b, &err), 0);
    blob_is(&b, IMP_POS, IMP_SIZE);
    ck_assert_int_eq(coil_store_ckpt_latest(st, doc, IMP_POS - 1, &b, &err), COIL_ENOTFOUND);
    ck_assert_int_eq(coil_store_doc_list(st, "imported", check_imported, NULL, &err), 0);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM documents WHERE origin = 'import' "
                                   "AND token_len = 40 AND status = 'complete'"),
                     1);

    /* Tokens: [P, P) is empty; anything below P names the document. */
    ck_assert_int_eq(coil_store_doc_tokens(st, doc, IMP_POS, IMP_POS, &ids, &n, &err), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(coil_store_doc_tokens(st, doc, 0, IMP_POS, &ids, &n, &err), COIL_ENOTFOUND);
    ck_assert_ptr_null(ids);
    ck_assert_ptr_nonnull(strstr(err.msg, "'imported'"));
    ck_assert_ptr_nonnull(strstr(err.msg, "imported (coil state import)"));
    ck_assert_int_eq(coil_store_doc_tokens(st, doc, IMP_POS, IMP_POS + 1, &ids, &n, &err),
                     COIL_EINVAL);
    /* Nothing can be ingested into it. */
    chunkbuf_t cb;
    mk_chunk(&cb, 0, IMP_POS, 0, NULL);
    ck_assert_int_eq(coil_store_commit_chunks(st, doc, &cb.c, 1, NULL, &err), COIL_ESTATE);

    /* Sessions start at P (not below), resume from the imported checkpoint,
     * append and fork. */
    ck_assert_int_eq(coil_store_session_new(st, doc, IMP_POS - 8, other, &err), COIL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "imported"));
    ck_assert_int_eq(coil_store_session_new(st, doc, IMP_POS + 1, other, &err), COIL_EINVAL);
    ck_assert_int_eq(coil_store_session_new(st, doc, IMP_POS, sid, &err), 0);
    ck_assert_int_eq(coil_store_session_ckpt(st, sid, -1, &b, &err), 0);
    blob_is(&b, IMP_POS, IMP_SIZE);
    int32_t toks[6] = {11, 12, 13, 14, 15, 16};
    unsigned char blob[300];
    fill_blob(blob, sizeof blob, IMP_POS + 6);
    session_ckpt(st, sid, IMP_POS + 6, blob, sizeof blob, toks, 6);
    ck_assert_int_eq(coil_store_session_tokens(st, sid, IMP_POS, IMP_POS + 6, &ids, &n, &err), 0);
    ck_assert_uint_eq(n, 6);
    ck_assert_int_eq(memcmp(ids, toks, sizeof toks), 0);
    free(ids);
    ck_assert_int_eq(coil_store_session_tokens(st, sid, 0, IMP_POS + 6, &ids, &n, &err),
                     COIL_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "'imported'"));
    ck_assert_int_eq(coil_store_session_fork(st, sid, IMP_POS + 3, kid, &err), 0);
    ck_assert_int_eq(coil_store_session_ckpt(st, kid, -1, &b, &err), 0);
    blob_is(&b, IMP_POS, IMP_SIZE); /* the child replays 3 tokens from P */
    ck_assert_int_eq(coil_store_session_tokens(st, kid, IMP_POS, IMP_POS + 3, &ids, &n, &err), 0);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[2], 13);
    free(ids);
    ck_assert_int_eq(coil_store_session_fork(st, sid, IMP_POS - 1, other, &err), COIL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "imported"));
    assert_verify(st);

    /* Names: taken is COIL_ESTATE; REPLACE follows doc_begin's rules. */
    import_doc(st, "imported", 0, &err, &rc);
    ck_assert_int_eq(rc, COIL_ESTATE);
    ck_assert_ptr_nonnull(strstr(err.msg, "already exists"));
    import_doc(st, "imported", COIL_STORE_DOC_REPLACE, &err, &rc);
    ck_assert_int_eq(rc, COIL_ESTATE); /* sessions continue it */
    ck_assert_ptr_nonnull(strstr(err.msg, "session"));
    ck_assert_int_eq(coil_store_session_delete(st, sid, true, &err), 0);
    int64_t doc2 = import_doc(st, "imported", COIL_STORE_DOC_REPLACE, &err, &rc);
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert_int_ne(doc2, doc);
    int64_t book = new_doc(st, "book", 7);
    ck_assert_int_eq(append(st, book, 2, 100, NULL, &err), 0);
    import_doc(st, "book", 0, &err, &rc);
    ck_assert_int_eq(rc, COIL_ESTATE);
    int64_t book2 = import_doc(st, "book", COIL_STORE_DOC_REPLACE, &err, &rc);
    ck_assert_msg(rc == 0, "%s", err.msg);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM chunks"), 0);
    /* ...and an imported name is taken for ingest too. */
    int64_t model, d;
    int resumed;
    ck_assert_int_eq(coil_store_model_ensure(st, FP, "/m", NULL, &model, &err), 0);
    ck_assert_int_eq(coil_store_doc_begin(st, "book", model, 7, CT, 0, &d, &resumed, &err),
                     COIL_ESTATE);

    /* Bad imports write nothing. */
    unsigned char one = 1;
    ck_assert_int_eq(coil_store_doc_import(st, "x", model, &one, 1, FP ^ 1, 5, 0, &d, &err),
                     COIL_EMISMATCH);
    ck_assert_int_eq(coil_store_doc_import(st, "x", model + 100, &one, 1, FP, 5, 0, &d, &err),
                     COIL_ENOTFOUND);
    ck_assert_int_eq(coil_store_doc_import(st, "x", model, &one, 0, FP, 5, 0, &d, &err),
                     COIL_EINVAL);
    ck_assert_int_eq(coil_store_doc_import(st, "x", model, &one, 1, FP, -1, 0, &d, &err),
                     COIL_EINVAL);
    ck_assert_int_eq(coil_store_doc_import(st, "", model, &one, 1, FP, 5, 0, &d, &err),
                     COIL_EINVAL);
    ck_assert_int_eq(coil_store_doc_find(st, "x", &d, &err), COIL_ENOTFOUND);
    ck_assert_int_eq(coil_store_doc_find(st, "book", &d, &err), 0);
    ck_assert_int_eq(d, book2);
    assert_verify(st);

    /* verify sees a broken imported document. */
    raw_exec(path, "DELETE FROM checkpoints WHERE doc_id = (SELECT id FROM documents "
                   "WHERE name = 'book')");
    ck_assert_int_eq(coil_store_verify(st, &err), COIL_EDB);
    ck_assert_ptr_nonnull(strstr(err.msg, "base_position"));
    coil_store_blob_clear(&b);
    coil_store_close(&st);
    rm_tree(dir);
}
END_TEST

/* A file made by schema version 1 (migration 001 only, as the v1 store
 * wrote it) opens as version 2 with its data intact, verifies, resumes and
 * takes imports. */
/* Rows written by someone else: a head or a token range that claims more
 * tokens than the rows hold is an error before a buffer is sized by the
 * claim; overlapping token rows never give a position that no row filled. */
START_TEST(test_hostile_token_rows)
{
    char dir[300], path[340], sql[512];
    char sid[17];
    coil_err_t err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_t *st = open_ok(path, NULL);
    int64_t doc = new_doc(st, "d", 1);
    ck_assert_int_eq(append(st, doc, 2, 300, NULL, &err), 0); /* tokens [0, 16) */
    ck_assert_int_eq(coil_store_session_new(st, doc, 16, sid, &err), 0);
    int32_t more[3] = {1, 2, 3};
    ck_assert_int_eq(coil_store_session_append(st, sid, more, 3, NULL, NULL, &err), 0);
    coil_store_close(&st);
    /* a session head of 2^40 tokens: 4 TiB if a buffer were sized by it */
    snprintf(sql, sizeof sql, "PRAGMA ignore_check_constraints = ON; UPDATE sessions SET head = %lld WHERE id = '%s'",
             1LL << 40, sid);
    raw_exec(path, sql);
    st = open_ok(path, NULL);
    ck_assert_int_eq(coil_store_session_tokens(st, sid, 0, 1LL << 40, &ids, &n, &err), COIL_EDB);
    ck_assert_msg(strstr(err.msg, "its rows hold 19") != NULL, "%s", err.msg);
    ck_assert_ptr_null(ids);
    /* a document range past what its chunks hold */
    ck_assert_int_eq(coil_store_doc_tokens(st, doc, 0, 1LL << 40, &ids, &n, &err), COIL_EDB);
    ck_assert_msg(strstr(err.msg, "its chunks hold 16") != NULL, "%s", err.msg);
    coil_store_close(&st);
    /* the second chunk moved onto the first ([0, 8) twice): [0, 16) is not all there */
    raw_exec(path, "PRAGMA ignore_check_constraints = ON; "
                   "UPDATE chunks SET token_start = 0, token_end = 8 WHERE seq = 1");
    st = open_ok(path, NULL);
    ck_assert_int_ne(coil_store_doc_tokens(st, doc, 0, 16, &ids, &n, &err), 0);
    ck_assert_ptr_null(ids);
    ck_assert_int_eq(coil_store_doc_tokens(st, doc, 0, 8, &ids, &n, &err), 0);
    ck_assert_uint_eq(n, 8);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(ids[i], tok_at(i));
    free(ids);
    coil_store_close(&st);
    /* a last chunk seq of 2^63 - 1 (fuzz_store's crash-e396a26e: "seq + 1" overflowed) and a negative one */
    static const char *const seqs[2] = {"UPDATE chunks SET seq = 9223372036854775807 WHERE seq = 1",
                                        "UPDATE chunks SET seq = -seq - 1 WHERE seq = 0; "
                                        "UPDATE chunks SET seq = -3 WHERE seq = 9223372036854775807"};
    for (int i = 0; i < 2; i++) {
        coil_store_progress_t p;
        st = damaged(path, "%s", seqs[i]);
        ck_assert_refused(coil_store_doc_progress(st, doc, &p, &err), err, COIL_EDB, "its last chunk has seq");
        coil_store_close(&st);
    }
    /* a session head of 2^63 - 1 ("head + n" would overflow), one below the session's base, one inside its
     * last row (an append there overlapped the row and read back the old token: fuzz_store 26e973e2) */
    /* and a row [17, 18) inside the row [16, 19) with the head at 18: the row begun last ends at the head, the
     * furthest does not */
    static const struct {
        const char *sql, *msg;
    } heads[4] = {{"UPDATE sessions SET head = 9223372036854775807", "has no room for 1 more"},
                  {"UPDATE sessions SET head = 3", "are not a range of tokens"},
                  {"UPDATE sessions SET head = 18", "its tokens end at 19, its head is 18"},
                  {"INSERT INTO session_tokens SELECT id, 17, 18, x'2a000000' FROM sessions; "
                   "UPDATE sessions SET head = 18",
                   "its tokens end at 19, its head is 18"}};
    for (int i = 0; i < 4; i++) {
        st = damaged(path, "%s WHERE id = '%s'", heads[i].sql, sid);
        ck_assert_refused(coil_store_session_append(st, sid, more, 1, NULL, NULL, &err), err, COIL_EDB, heads[i].msg);
        coil_store_close(&st);
    }
    rm_tree(dir);
}
END_TEST

/* Nothing goes onto a grid whose end is not where its last chunk says: a chunk reaching past it, or a
 * checkpoint past it (the thinning keeps the newest, so the new one would not be the latest). */
START_TEST(test_commit_onto_damaged_grid)
{
    char dir[300], path[340];
    coil_err_t err = {0};
    static const struct {
        const char *sql, *msg;
    } damage[2] = {{"UPDATE checkpoints SET position = 100", "a checkpoint sits at 100"},
                   {"UPDATE chunks SET token_end = 100 WHERE seq = 0", "a chunk reaches 100"}};
    for (int i = 0; i < 2; i++) {
        tdir(dir, sizeof dir, path, sizeof path);
        coil_store_t *st = open_ok(path, NULL);
        int64_t doc = new_doc(st, "d", 1);
        ck_assert_int_eq(append(st, doc, 2, 300, NULL, &err), 0);
        coil_store_close(&st);
        st = damaged(path, "%s", damage[i].sql);
        ck_assert_refused(append(st, doc, 1, 300, NULL, &err), err, COIL_EDB, damage[i].msg);
        coil_store_close(&st);
        rm_tree(dir);
    }
    /* the writes themselves stay inside 2^62: a grid ending at 2^62 takes no more chunks */
    tdir(dir, sizeof dir, path, sizeof path);
    coil_store_t *st = open_ok(path, NULL);
    int64_t edge = new_doc(st, "edge", 1);
    ck_assert_int_eq(append(st, edge, 2, 0, NULL, &err), 0);
    coil_store_close(&st);
    st = damaged(path, "UPDATE chunks SET token_end = 4611686018427387904 WHERE seq = 1");
    ck_assert_refused(append(st, edge, 1, 0, NULL, &err), err, COIL_EINVAL, "bad ranges");
    coil_store_close(&st);
    rm_tree(dir);
    tdir(dir, sizeof dir, path, sizeof path);
    st = open_ok(path, NULL);
    int64_t doc = new_doc(st, "d", 1), model = 0, imported;
    chunkbuf_t cb;
    mk_chunk(&cb, 0, 0, 0, NULL);
    cb.c.token_end = ((int64_t)1 << 62) + 1;
    ck_assert_int_eq(coil_store_commit_chunks(st, doc, &cb.c, 1, NULL, &err), COIL_EINVAL);
    mk_chunk(&cb, 0, 0, 0, NULL);
    cb.c.byte_end = ((int64_t)1 << 62) + 1;
    cb.c.text_len = (size_t)cb.c.byte_end;
    ck_assert_int_eq(coil_store_commit_chunks(st, doc, &cb.c, 1, NULL, &err), COIL_EINVAL);
    unsigned char blob[16] = {1};
    ck_assert_int_eq(coil_store_model_ensure(st, FP, "/models/made-up", "{\"d_model\":8}", &model, &err), 0);
    ck_assert_int_eq(coil_store_doc_import(st, "imp", model, blob, sizeof blob, FP, ((int64_t)1 << 62) + 1, 0,
                                           &imported, &err),
                     COIL_EINVAL);
    coil_store_close(&st);
    rm_tree(dir);
}
END_TEST

/* A document's grid must end at positions an ingest can go on from: it adds a chunk's length to them. */
START_TEST(test_hostile_grid_end)
{
    char dir[300], path[340];
    coil_err_t err = {0};
    coil_store_progress_t p;
    static const char *const sets[3] = {"token_end = 4611686018427387905", "byte_end = -1",
                                        "byte_end = 9223372036854775807"};
    for (int i = 0; i < 3; i++) { /* one damage at a time, each on a new store */
        tdir(dir, sizeof dir, path, sizeof path);
        coil_store_t *st = open_ok(path, NULL);
        int64_t doc = new_doc(st, "d", 1);
        ck_assert_int_eq(append(st, doc, 2, 300, NULL, &err), 0);
        coil_store_close(&st);
        st = damaged(path, "UPDATE chunks SET %s WHERE seq = 1", sets[i]);
        ck_assert_refused(coil_store_doc_progress(st, doc, &p, &err), err, COIL_EDB, "not positions in a document");
        coil_store_close(&st);
        rm_tree(dir);
    }
}
END_TEST

START_TEST(test_migrate_v1)
{
    char dir[300], path[340], sid[17];
    coil_err_t err = {0};
    coil_store_blob_t b = {0};
    coil_store_progress_t p;
    coil_store_session_info_t si;
    int rc;
    tdir(dir, sizeof dir, path, sizeof path);
    ck_assert_int_ge(coil_store_schema_version(), 2);
    ck_assert_str_eq(coil_store__migrations[0].name, "001_init");
    raw_exec(path, coil_store__migrations[0].sql);
    raw_exec(path, "PRAGMA user_version = 1");
    /* v1 rows as the v1 store wrote them: a complete document of two
     * chunks with a checkpoint at its end, a session with one token. */
    unsigned char blob[700];
    fill_blob(blob, sizeof blob, 2 * CT);
    sqlite3 *db;
    sqlite3_stmt *s;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "INSERT INTO models(id, fingerprint, path) "
                                            "VALUES (1, ?1, '/m')",
                                        -1, &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)FP);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    ck_assert_int_eq(sqlite3_exec(db, "INSERT INTO documents(id, name, model_id, source_hash, "
                                      "chunk_tokens) VALUES (1, 'old', 1, 5, 8)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    int64_t byte = 0;
    for (int i = 0; i < 2; i++) {
        chunkbuf_t cb;
        mk_chunk(&cb, i, i * CT, byte, NULL);
        ck_assert_int_eq(sqlite3_prepare_v2(db,
                                            "INSERT INTO chunks(doc_id, seq, token_start, "
                                            "token_end, byte_start, byte_end, text, tokens) "
                                            "VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                            -1, &s, NULL),
                         SQLITE_OK);
        sqlite3_bind_int64(s, 1, cb.c.seq);
        sqlite3_bind_int64(s, 2, cb.c.token_start);
        sqlite3_bind_int64(s, 3, cb.c.token_end);
        sqlite3_bind_int64(s, 4, cb.c.byte_start);
        sqlite3_bind_int64(s, 5, cb.c.byte_end);
        sqlite3_bind_text(s, 6, cb.text, (int)cb.c.text_len, SQLITE_TRANSIENT);
        sqlite3_bind_blob(s, 7, cb.toks, (int)sizeof cb.toks, SQLITE_TRANSIENT);
        ck_assert_int_eq(sqlite3_step(s), SQLITE_DONE);
        sqlite3_finalize(s);
        byte = cb.c.byte_end;
    }
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "INSERT INTO checkpoints(doc_id, position, fingerprint, "
                                        "checksum, size, state) VALUES (1, 16, ?1, ?2, ?3, ?4)",
                                        -1, &s, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(s, 1, (sqlite3_int64)FP);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)XXH3_64bits(blob, sizeof blob));
    sqlite3_bind_int64(s, 3, (sqlite3_int64)sizeof blob);
    sqlite3_bind_blob(s, 4, blob, (int)sizeof blob, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(s), SQLITE_DONE);
    sqlite3_finalize(s);
    char sql[300];
    snprintf(sql, sizeof sql,
             "UPDATE documents SET status = 'complete', token_len = 16, byte_len = %lld;"
             "INSERT INTO sessions(id, doc_id, base, head) VALUES ('00112233445566aa', 1, 16, 17);"
             "INSERT INTO session_tokens VALUES ('00112233445566aa', 16, 17, x'07000000');",
             (long long)byte);
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM pragma_table_info('documents') "
                                   "WHERE name IN ('base_position', 'origin')"),
                     0);

    coil_store_t *st = open_ok(path, NULL);
    ck_assert_int_eq(raw_int(path, "PRAGMA user_version"), coil_store_schema_version());
    ck_assert_int_eq(raw_int(path, "SELECT count(*) FROM documents WHERE name = 'old' AND "
                                   "base_position = 0 AND origin = 'ingest' AND "
                                   "status = 'complete' AND token_len = 16"),
                     1);
    assert_verify(st);
    ck_assert_int_eq(coil_store_doc_progress(st, 1, &p, &err), 0);
    ck_assert_int_eq(p.n_chunks, 2);
    ck_assert_int_eq(p.token_end, 2 * CT);
    ck_assert_int_eq(p.byte_end, byte);
    ck_assert_int_eq(p.base_position, 0);
    ck_assert_int_eq(p.ckpt_position, 2 * CT);
    ck_assert(p.fingerprint == FP);
    ck_assert_int_eq(coil_store_ckpt_latest(st, 1, -1, &b, &err), 0);
    blob_is(&b, 2 * CT, sizeof blob);
    int32_t *ids;
    size_t n;
    ck_assert_int_eq(coil_store_doc_tokens(st, 1, 3, 2 * CT, &ids, &n, &err), 0);
    ck_assert_uint_eq(n, 2 * CT - 3);
    ck_assert_int_eq(ids[0], tok_at(3));
    free(ids);
    ck_assert_int_eq(coil_store_session_get(st, "00112233445566aa", &si, &err), 0);
    ck_assert_int_eq(si.head, 17);
    ck_assert_int_eq(coil_store_session_tokens(st, "00112233445566aa", 14, 17, &ids, &n, &err),
                     0);
    ck_assert_int_eq(ids[2], 7);
    free(ids);
    ck_assert_int_eq(coil_store_session_new(st, 1, 8, sid, &err), 0);
    import_doc(st, "new", 0, &err, &rc);
    ck_assert_msg(rc == 0, "%s", err.msg);
    assert_verify(st);
    coil_store_blob_clear(&b);
    coil_store_close(&st);
    /* Reopening migrates nothing more. */
    st = open_ok(path, NULL);
    assert_verify(st);
    coil_store_close(&st);
    rm_tree(dir);
}
END_TEST

/* --- main ---------------------------------------------------------------------------- */

static void root_setup(void)
{
    snprintf(root, sizeof root, "%s/coil-test-store-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR")
                                                                             : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        abort();
    }
}

static void root_teardown(void)
{
    DIR *d = opendir(root);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            root_dirty = 1, fprintf(stderr, "left behind: %s/%s\n", root, e->d_name);
    if (d)
        closedir(d);
    rm_tree(root);
}

int main(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_schema_reopen);
    tcase_add_test(tc, test_schema_newer_refused);
    tcase_add_test(tc, test_commit_and_lookup);
    tcase_add_test(tc, test_doc_list);
    tcase_add_test(tc, test_policy);
    tcase_add_test(tc, test_thinning_applied);
    tcase_add_test(tc, test_crash_safety);
    tcase_add_test(tc, test_concurrent_writers);
    tcase_add_test(tc, test_busy);
    tcase_add_test(tc, test_checksum_and_model);
    tcase_add_test(tc, test_disk_full);
    tcase_add_test(tc, test_search);
    tcase_add_test(tc, test_sessions);
    tcase_add_test(tc, test_request_keys);
    tcase_add_test(tc, test_import);
    tcase_add_test(tc, test_migrate_v1);
    tcase_add_test(tc, test_hostile_token_rows);
    tcase_add_test(tc, test_hostile_grid_end);
    tcase_add_test(tc, test_commit_onto_damaged_grid);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return (failed || root_dirty) ? 1 : 0;
}
