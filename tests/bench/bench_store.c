/* bench_store.c -- state store figures: what a 1M-token document costs on
 * disk at the default checkpoint policy, checkpoint write time (synchronous
 * FULL and NORMAL) and resume latency (open the database and load the
 * newest checkpoint, warm cache).  Never run by `make check`.
 *
 *   tests/bench/bench_store [DIR] [RUNS] [TOKENS]
 *
 * DIR (default $TMPDIR or /tmp) gets a scratch database that is removed at
 * the end; RUNS (default 200) resume measurements; TOKENS (default 1000000)
 * the document length.  The state blob is 2,801,728 bytes: a 130m Mamba's
 * conv + ssm state in float32 (24 layers x 1536 x (3 + 16) x 4 bytes) plus a
 * 64-byte header.  Chunk text is synthetic (~4.3 bytes per token).
 */
#include "store.h"

#include <sqlite3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATE_BYTES ((size_t)24 * 1536 * (3 + 16) * 4 + 64)
#define CHUNK 256

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void stats(const char *what, double *v, size_t n)
{
    if (!n)
        return;
    qsort(v, n, sizeof *v, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
    printf("%-44s n=%-4zu p50 %8.3f ms  p99 %8.3f ms  mean %8.3f ms  max %8.3f ms\n", what, n,
           v[n / 2], v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], sum / (double)n, v[n - 1]);
}

static void die(const char *what, const coil_err_t *err)
{
    fprintf(stderr, "bench_store: %s: %s\n", what, err->msg);
    exit(1);
}

static long long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : 0;
}

/* Where the bytes are, by table (needs SQLite's dbstat, as Debian's has). */
static void breakdown(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *s;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT CASE WHEN name LIKE 'chunks_fts%' THEN 'chunks_fts (FTS5)' "
                           "ELSE name END AS n, sum(pgsize) FROM dbstat GROUP BY n "
                           "UNION ALL SELECT 'free pages', (SELECT freelist_count FROM "
                           "pragma_freelist_count) * (SELECT page_size FROM pragma_page_size) "
                           "ORDER BY 2 DESC",
                           -1, &s, NULL) != SQLITE_OK) {
        printf("  (no dbstat: %s)\n", sqlite3_errmsg(db));
        sqlite3_close(db);
        return;
    }
    while (sqlite3_step(s) == SQLITE_ROW)
        if (sqlite3_column_int64(s, 1) > 0)
            printf("  %-28s %11lld bytes\n", (const char *)sqlite3_column_text(s, 0),
                   (long long)sqlite3_column_int64(s, 1));
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static const char *const words[] = {"the", "state", "of", "a", "recurrent", "model", "is",
                                    "compact", "and", "documents", "are", "long", "so",
                                    "we", "checkpoint", "it", "often", "enough"};

/* Ingests `tokens` tokens into document `name`; checkpoint commits are timed
 * into *ck_ms (capacity cap). */
static size_t ingest(coil_store_t *st, int64_t model, const char *name, int64_t tokens,
                     unsigned char *state, double *ck_ms, size_t cap)
{
    coil_err_t err = {0};
    coil_store_policy_t pol;
    coil_store_policy_default(&pol);
    int64_t doc, byte = 0, last_ck = -1;
    int resumed;
    size_t nck = 0;
    static char text[CHUNK * 16];
    static int32_t ids[CHUNK];
    unsigned seed = 1;

    if (coil_store_doc_begin(st, name, model, 1234, CHUNK, COIL_STORE_DOC_REPLACE, &doc,
                             &resumed, &err))
        die("doc_begin", &err);
    for (int64_t seq = 0, pos = 0; pos < tokens; seq++) {
        int n = tokens - pos < CHUNK ? (int)(tokens - pos) : CHUNK;
        size_t len = 0;
        for (int i = 0; i < n; i++) {
            const char *w = words[rand_r(&seed) % (sizeof words / sizeof words[0])];
            len += (size_t)snprintf(text + len, sizeof text - len, "%s ", w);
            ids[i] = (int32_t)(rand_r(&seed) % 50280);
        }
        coil_store_chunk_t c = {.seq = seq,
                                .token_start = pos,
                                .token_end = pos + n,
                                .byte_start = byte,
                                .byte_end = byte + (int64_t)len,
                                .text = text,
                                .text_len = len,
                                .tokens = ids};
        pos += n;
        byte += (int64_t)len;
        bool due = coil_store_policy_due(&pol, last_ck, pos) || pos == tokens;
        coil_store_ckpt_t ck = {.position = pos, .fingerprint = 0xC011, .data = state,
                                .size = STATE_BYTES};
        memcpy(state, &pos, sizeof pos); /* make each blob differ */
        double t0 = now_ms();
        if (coil_store_commit_chunks(st, doc, &c, 1, due ? &ck : NULL, &err))
            die("commit_chunks", &err);
        if (due) {
            if (nck < cap)
                ck_ms[nck++] = now_ms() - t0;
            last_ck = pos;
        }
    }
    if (coil_store_doc_finish(st, doc, byte, tokens, &err))
        die("doc_finish", &err);
    return nck;
}

static int on_doc(const coil_store_doc_info_t *d, void *ud)
{
    (void)ud;
    printf("  %-10s %8lld tokens %9lld bytes  %4lld chunks  %3lld checkpoints (%lld bytes)\n",
           d->name, (long long)d->tokens, (long long)d->bytes, (long long)d->n_chunks,
           (long long)d->n_checkpoints, (long long)d->checkpoint_bytes);
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    int runs = argc > 2 ? atoi(argv[2]) : 200;
    int64_t tokens = argc > 3 ? atoll(argv[3]) : 1000000;
    char tmpl[512], path[600], wal[620], shm[620];
    coil_err_t err = {0};
    coil_store_options_t o;
    coil_store_policy_t pol;
    int64_t model;

    snprintf(tmpl, sizeof tmpl, "%s/coil-bench-store-XXXXXX", dir);
    if (!mkdtemp(tmpl)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/bench.sqlite", tmpl);
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    unsigned char *state = malloc(STATE_BYTES);
    double *ms = malloc(sizeof *ms * (size_t)(runs > 4096 ? runs : 4096));
    if (!state || !ms)
        return 1;
    for (size_t i = 0; i < STATE_BYTES; i++)
        state[i] = (unsigned char)(i * 131 + 7);
    coil_store_policy_default(&pol);
    printf("state blob %zu bytes, chunk %d tokens, policy interval %lld dense %lld, %lld tokens\n",
           STATE_BYTES, CHUNK, (long long)pol.interval, (long long)pol.dense,
           (long long)tokens);

    /* 1. ingest at synchronous = FULL */
    coil_store_options_default(&o);
    coil_store_t *st = coil_store_open(path, &o, &err);
    if (!st || coil_store_model_ensure(st, 0xC011, "/bench", NULL, &model, &err))
        die("open", &err);
    double t0 = now_ms();
    size_t n = ingest(st, model, "doc", tokens, state, ms, 4096);
    printf("ingest (FULL) %.1f s\n", (now_ms() - t0) / 1e3);
    stats("checkpoint commit, synchronous=FULL", ms, n);
    coil_store_doc_list(st, NULL, on_doc, NULL, &err);
    coil_store_close(&st);

    /* 2. sizes, with the WAL folded into the main file */
    long long db = file_size(path);
    int64_t kept = coil_store_policy_count(&pol, tokens);
    printf("database file %lld bytes (+ WAL %lld); policy keeps %lld checkpoints = %lld bytes\n",
           db, file_size(wal), (long long)kept, (long long)kept * (long long)STATE_BYTES);
    printf("=> %.1f MB per %lld tokens; without checkpoints %.1f MB\n", (double)db / 1e6,
           (long long)tokens, (double)(db - kept * (long long)STATE_BYTES) / 1e6);
    breakdown(path);

    /* 3. resume latency: open + newest checkpoint, fresh handle each time */
    int64_t doc;
    for (int i = 0; i <= runs; i++) {
        coil_store_blob_t b = {0};
        double a = now_ms();
        st = coil_store_open(path, NULL, &err);
        if (!st || coil_store_doc_find(st, "doc", &doc, &err) ||
            coil_store_ckpt_latest(st, doc, -1, &b, &err))
            die("resume", &err);
        double z = now_ms();
        if (i)
            ms[i - 1] = z - a; /* run 0 warms the cache */
        coil_store_blob_clear(&b);
        coil_store_close(&st);
    }
    stats("resume: open + load newest checkpoint", ms, (size_t)runs);
    st = coil_store_open(path, NULL, &err);
    coil_store_blob_t b = {0};
    for (int i = 0; i <= runs; i++) {
        double a = now_ms();
        if (coil_store_ckpt_latest(st, doc, -1, &b, &err))
            die("load", &err);
        if (i)
            ms[i - 1] = now_ms() - a;
    }
    stats("load newest checkpoint (open handle, buffer)", ms, (size_t)runs);
    coil_store_blob_clear(&b);
    coil_store_close(&st);

    /* 4. checkpoint writes at synchronous = NORMAL */
    o.synchronous = COIL_STORE_SYNC_NORMAL;
    st = coil_store_open(path, &o, &err);
    if (!st)
        die("open NORMAL", &err);
    n = ingest(st, model, "normal", 100 * pol.interval, state, ms, 4096);
    stats("checkpoint commit, synchronous=NORMAL", ms, n);
    coil_store_close(&st);

    /* 5. session appends (16 tokens + a checkpoint at the new head, FULL),
     * without and with a request key, interleaved */
    st = coil_store_open(path, NULL, &err);
    char plain[COIL_STORE_SESSION_ID_LEN + 1], keyed[COIL_STORE_SESSION_ID_LEN + 1];
    if (!st || coil_store_doc_find(st, "doc", &doc, &err) || coil_store_session_new(st, doc, tokens, plain, &err) ||
        coil_store_session_new(st, doc, tokens, keyed, &err))
        die("sessions", &err);
    double *ms_key = malloc(sizeof *ms_key * (size_t)runs);
    int32_t turn[16];
    for (int k = 0; k < 16; k++)
        turn[k] = k + 2;
    for (int i = 0; i < runs && ms_key; i++) {
        coil_store_ckpt_t ck = {.position = tokens + 16 * (int64_t)(i + 1), .fingerprint = 0xC011, .data = state,
                                .size = STATE_BYTES};
        char key[64];
        snprintf(key, sizeof key, "bench.%d", i);
        coil_store_request_t rq = {.key = key, .result = "{\"session\":\"0123456789abcdef\",\"tokens\":16}"};
        for (int j = 0; j < 2; j++) { /* alternate the order: WAL checkpoints land on either */
            int with_key = (i + j) % 2;
            double a = now_ms();
            if (coil_store_session_append(st, with_key ? keyed : plain, turn, 16, &ck, with_key ? &rq : NULL, &err))
                die(with_key ? "append with key" : "append", &err);
            (with_key ? ms_key : ms)[i] = now_ms() - a;
        }
    }
    stats("session append + checkpoint", ms, (size_t)runs);
    if (ms_key)
        stats("session append + checkpoint, with request key", ms_key, (size_t)runs);
    free(ms_key);
    coil_store_close(&st);

    unlink(path);
    unlink(wal);
    unlink(shm);
    rmdir(tmpl);
    free(state);
    free(ms);
    return 0;
}
