/* store.c -- the state store: open, errors, transactions, documents,
 * chunks, checkpoints, search and checks.  Sessions are in store_session.c,
 * migrations in store_migrate.c, the checkpoint policy in store_policy.c.
 *
 * Concurrency design
 *   Each thread or process opens its own coil_store_t (its own sqlite3 *).
 *   The file is in WAL mode: readers see a consistent snapshot and never
 *   block or are blocked by the writer.  Every write is one BEGIN IMMEDIATE
 *   transaction: it takes the single write lock up front (so it can never
 *   deadlock by upgrading a read lock), waits up to busy_timeout_ms for it,
 *   and fails with COIL_EBUSY -- having written nothing -- when the wait runs
 *   out.  Writers therefore take turns; a transaction is short (one chunk
 *   batch plus at most one checkpoint blob), so turns are milliseconds.
 *   Statements are prepared once per handle and always reset after use, so
 *   no read transaction is left open between calls.
 *
 * What a crash can lose
 *   synchronous=FULL (default): the WAL is fsynced before COMMIT returns.  A
 *     process crash (SIGKILL, abort) or a power cut / OS crash loses nothing
 *     that was reported committed; an interrupted transaction disappears as
 *     a whole.
 *   synchronous=NORMAL: the WAL is fsynced only when it is checkpointed into
 *     the database.  A process crash still loses nothing committed (the data
 *     is in the OS page cache); a power cut or OS crash may lose the last
 *     committed transactions -- each one entirely -- but cannot corrupt the
 *     file.  Good for re-creatable data; checkpoints default to FULL.
 *   Either way a resumed ingest restarts from the newest checkpoint that
 *   survived, and the chunk rows it needs are guaranteed to be there (I2).
 *
 * SQLite's WAL-reset bug (we build against Debian 12's 3.40.1)
 *   SQLite 3.7.0 through 3.51.2 have a race, fixed in 3.51.3 (2026-03), that
 *   can corrupt a WAL database when two or more connections write and/or
 *   checkpoint at the same moment just as the WAL is being reset after a
 *   complete checkpoint: a second checkpoint running concurrently with a
 *   commit that restarts the WAL can record frames as backfilled that were
 *   not.  The SQLite developers rate it rarer than SSD faults, and it needs
 *   concurrent writers.  Our exposure: only when several processes write the
 *   same file (BEGIN IMMEDIATE serialises commits, but each writer's
 *   automatic checkpoint can still overlap another's commit).  Mitigations:
 *   we never enable mmap (which turns the race into structural damage), a
 *   deployment with one writer process per database file is not exposed at
 *   all, and coil_store_verify runs integrity_check for monitoring.  Link
 *   against SQLite >= 3.51.3 where possible.
 */
#include "store_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

static const char *const stmt_sql[COIL_STORE__NSTMT] = {
#define COIL_X_STMT_SQL(name, sql) sql,
    COIL_STORE_STMTS(COIL_X_STMT_SQL)
#undef COIL_X_STMT_SQL
};

void coil_store_options_default(coil_store_options_t *o)
{
    memset(o, 0, sizeof *o);
    o->synchronous = COIL_STORE_SYNC_FULL;
    o->busy_timeout_ms = 5000;
    o->max_db_bytes = 0;
    coil_store_policy_default(&o->policy);
}

/* --- errors, statements, transactions -------------------------------------- */

int coil_store__fail(coil_store_t *st, coil_err_t *err, int rc, const char *op)
{
    int code;
    switch (rc & 0xff) {
    case SQLITE_FULL:
        code = COIL_EFULL;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        code = COIL_EBUSY;
        break;
    case SQLITE_NOMEM:
        code = COIL_ENOMEM;
        break;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
        code = COIL_EIO;
        break;
    case SQLITE_CONSTRAINT:
        code = COIL_EINVAL; /* bad input: the schema's CHECKs and keys */
        break;
    default: /* SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_ERROR, ... */
        code = COIL_EDB;
        break;
    }
    const char *msg = (st && st->db) ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);
    return coil_err_set(err, code, "%s: %s: %s (sqlite %d)", st && st->path ? st->path : "store",
                        op, msg, rc);
}

sqlite3_stmt *coil_store__stmt(coil_store_t *st, int id, coil_err_t *err)
{
    sqlite3_stmt *s = st->stmt[id];
    if (!s) {
        int rc = sqlite3_prepare_v3(st->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &s,
                                    NULL);
        if (rc != SQLITE_OK) {
            char op[128];
            snprintf(op, sizeof op, "preparing \"%.100s\"", stmt_sql[id]);
            coil_store__fail(st, err, rc, op);
            return NULL;
        }
        st->stmt[id] = s;
    } else {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
    return s;
}

int coil_store__exec(coil_store_t *st, sqlite3_stmt *s, const char *op, coil_err_t *err)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        int code = coil_store__fail(st, err, rc, op);
        sqlite3_reset(s);
        return code;
    }
    sqlite3_reset(s);
    return 0;
}

static int run(coil_store_t *st, int id, const char *op, coil_err_t *err)
{
    sqlite3_stmt *s = coil_store__stmt(st, id, err);
    return s ? coil_store__exec(st, s, op, err) : err->code;
}

int coil_store__begin(coil_store_t *st, coil_err_t *err)
{
    return run(st, COIL_STORE__BEGIN, "BEGIN IMMEDIATE (waiting for the write lock)", err);
}

int coil_store__commit(coil_store_t *st, coil_err_t *err)
{
    int rc = run(st, COIL_STORE__COMMIT, "COMMIT", err);
    if (rc)
        coil_store__rollback(st);
    return rc;
}

void coil_store__rollback(coil_store_t *st)
{
    if (sqlite3_get_autocommit(st->db))
        return;
    sqlite3_stmt *s = coil_store__stmt(st, COIL_STORE__ROLLBACK, NULL);
    if (!s || sqlite3_step(s) != SQLITE_DONE)
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    if (s)
        sqlite3_reset(s);
}

int coil_store__begin_read(coil_store_t *st, coil_err_t *err)
{
    return run(st, COIL_STORE__BEGIN_READ, "BEGIN", err);
}

/* --- open / close ------------------------------------------------------------ */

static int pragma(coil_store_t *st, const char *sql, char *out, size_t outsz, coil_err_t *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW && out) {
            const unsigned char *t = sqlite3_column_text(s, 0);
            snprintf(out, outsz, "%s", t ? (const char *)t : "");
        }
        if (rc == SQLITE_ROW || rc == SQLITE_DONE)
            rc = SQLITE_OK;
    }
    if (rc != SQLITE_OK)
        coil_store__fail(st, err, rc, sql);
    sqlite3_finalize(s);
    return rc == SQLITE_OK ? 0 : err->code;
}

static int check_options(const coil_store_options_t *o, coil_err_t *err)
{
    if (o->synchronous != COIL_STORE_SYNC_FULL && o->synchronous != COIL_STORE_SYNC_NORMAL)
        return coil_err_set(err, COIL_EINVAL, "store: synchronous must be FULL or NORMAL");
    if (o->busy_timeout_ms < 0)
        return coil_err_set(err, COIL_EINVAL, "store: busy_timeout_ms must be >= 0");
    if (o->max_db_bytes < 0)
        return coil_err_set(err, COIL_EINVAL, "store: max_db_bytes must be >= 0");
    if (o->policy.interval <= 0 || o->policy.dense < 0)
        return coil_err_set(err, COIL_EINVAL,
                            "store: checkpoint policy needs interval > 0 and dense >= 0");
    return 0;
}

static int configure(coil_store_t *st, coil_err_t *err)
{
    char buf[64];
    int version, rc;

    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, st->opt.busy_timeout_ms);
    /* Refuse a newer schema before anything (WAL included) touches the file. */
    if ((rc = coil_store__version_check(st, &version, err)) != 0)
        return rc;
    /* A new file gets 16 KiB pages: a 2.8 MB state spans ~170 overflow pages
     * instead of ~690, which halves resume latency and triples checkpoint
     * write speed against 4 KiB (tests/bench/bench_store).  No effect on an
     * existing file. */
    if (version == 0 && (rc = pragma(st, "PRAGMA page_size = 16384", NULL, 0, err)) != 0)
        return rc;
    /* Switching a new file to WAL needs an exclusive lock, and SQLite answers
     * SQLITE_BUSY here without calling the busy handler while another
     * connection is doing the same switch: retry with backoff, bounded by
     * the busy timeout. */
    for (int waited_ms = 0, step = 1;; waited_ms += step, step = step < 32 ? 2 * step : 32) {
        rc = pragma(st, "PRAGMA journal_mode = WAL", buf, sizeof buf, err);
        if (rc != COIL_EBUSY || waited_ms >= st->opt.busy_timeout_ms)
            break;
        struct timespec ts = {0, (long)step * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc != 0)
        return rc;
    if (strcmp(buf, "wal") != 0)
        return coil_err_set(err, COIL_EDB, "%s: cannot switch to WAL mode (journal_mode is %s)",
                            st->path, buf);
    rc = pragma(st,
                st->opt.synchronous == COIL_STORE_SYNC_FULL ? "PRAGMA synchronous = FULL"
                                                            : "PRAGMA synchronous = NORMAL",
                NULL, 0, err);
    if (rc || (rc = pragma(st, "PRAGMA foreign_keys = ON", NULL, 0, err)) != 0)
        return rc;
    if (st->opt.max_db_bytes > 0) {
        char sql[64];
        if ((rc = pragma(st, "PRAGMA page_size", buf, sizeof buf, err)) != 0)
            return rc;
        long long pages = st->opt.max_db_bytes / atoll(buf);
        snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", pages > 0 ? pages : 1);
        if ((rc = pragma(st, sql, NULL, 0, err)) != 0)
            return rc;
    }
    return coil_store__migrate(st, err);
}

coil_store_t *coil_store_open(const char *path, const coil_store_options_t *opt,
                              coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    coil_store_t *st;
    int rc;

    if (!path || !*path) {
        coil_err_set(err, COIL_EINVAL, "store: empty database path");
        return NULL;
    }
    st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        coil_err_set(err, COIL_ENOMEM, "store: out of memory opening %s", path);
        return NULL;
    }
    if (opt)
        st->opt = *opt;
    else
        coil_store_options_default(&st->opt);
    if (check_options(&st->opt, err) != 0)
        goto fail;
    if (st->opt.must_exist && access(path, F_OK) != 0) {
        coil_err_set(err, errno == ENOENT ? COIL_ENOTFOUND : COIL_EIO, "%s: %s", path,
                     errno == ENOENT ? "no such database (only ingest and state import create one)"
                                     : strerror(errno));
        goto fail;
    }
    rc = sqlite3_open_v2(path, &st->db,
                         SQLITE_OPEN_READWRITE | (st->opt.must_exist ? 0 : SQLITE_OPEN_CREATE) |
                             SQLITE_OPEN_NOMUTEX,
                         st->opt.vfs);
    if (rc != SQLITE_OK) {
        coil_store__fail(st, err, rc, "opening the database");
        goto fail;
    }
    if (configure(st, err) != 0)
        goto fail;
    return st;
fail:
    coil_store_close(&st);
    return NULL;
}

void coil_store_close(coil_store_t **pst)
{
    if (!pst || !*pst)
        return;
    coil_store_t *st = *pst;
    for (int i = 0; i < COIL_STORE__NSTMT; i++)
        sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    free(st->path);
    free(st);
    *pst = NULL;
}

/* --- models ----------------------------------------------------------------- */

int coil_store_model_ensure(coil_store_t *st, uint64_t fingerprint, const char *path,
                            const char *dims_json, int64_t *model_id, coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    sqlite3_stmt *s;
    int rc;

    if (!path || !model_id)
        return coil_err_set(err, COIL_EINVAL, "store: model_ensure needs a path and model_id");
    if ((rc = coil_store__begin(st, err)) != 0)
        return rc;
    if (!(s = coil_store__stmt(st, COIL_STORE__MODEL_FIND, err)))
        goto fail;
    sqlite3_bind_int64(s, 1, coil_store__i64(fingerprint));
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *model_id = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        return coil_store__commit(st, err);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        coil_store__fail(st, err, rc, "looking up the model");
        goto fail;
    }
    if (!(s = coil_store__stmt(st, COIL_STORE__MODEL_INSERT, err)))
        goto fail;
    sqlite3_bind_int64(s, 1, coil_store__i64(fingerprint));
    sqlite3_bind_text(s, 2, path, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, dims_json ? dims_json : "{}", -1, SQLITE_STATIC);
    if (coil_store__exec(st, s, "inserting the model (dims must be JSON)", err) != 0)
        goto fail;
    *model_id = sqlite3_last_insert_rowid(st->db);
    return coil_store__commit(st, err);
fail:
    coil_store__rollback(st);
    return err->code;
}

/* --- documents ---------------------------------------------------------------- */

int coil_store__doc_state(coil_store_t *st, int64_t doc_id, coil_store__doc_state_t *ds,
                          coil_err_t *err)
{
    sqlite3_stmt *s = coil_store__stmt(st, COIL_STORE__DOC_STATE, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, doc_id);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        int code = rc == SQLITE_DONE
                       ? coil_err_set(err, COIL_ENOTFOUND, "%s: no document with id %lld",
                                      st->path, (long long)doc_id)
                       : coil_store__fail(st, err, rc, "reading the document's state");
        sqlite3_reset(s);
        return code;
    }
    const unsigned char *status = sqlite3_column_text(s, 0);
    snprintf(ds->status, sizeof ds->status, "%s", status ? (const char *)status : "");
    ds->chunk_tokens = sqlite3_column_int64(s, 1);
    ds->source_hash = coil_store__u64(sqlite3_column_int64(s, 2));
    ds->fingerprint = coil_store__u64(sqlite3_column_int64(s, 3));
    bool any = sqlite3_column_type(s, 4) != SQLITE_NULL;
    const int64_t last_seq = any ? sqlite3_column_int64(s, 4) : -1;
    ds->base_position = sqlite3_column_int64(s, 8);
    /* the grid is seq 0..n-1; a file someone else wrote can hold any seq */
    if (any && (last_seq < 0 || last_seq == INT64_MAX)) {
        sqlite3_reset(s);
        return coil_err_set(err, COIL_EDB, "%s: document %lld: its last chunk has seq %lld, not a position in a grid",
                            st->path, (long long)doc_id, (long long)last_seq);
    }
    ds->n_chunks = last_seq + 1;
    ds->token_end = any ? sqlite3_column_int64(s, 5) : ds->base_position;
    ds->byte_end = any ? sqlite3_column_int64(s, 6) : 0;
    /* positions an ingest can go on from (it adds a chunk's length to them) */
    if (ds->base_position < 0 || ds->token_end < ds->base_position || ds->token_end > COIL_STORE__POS_MAX ||
        ds->byte_end < 0 || ds->byte_end > COIL_STORE__POS_MAX) {
        sqlite3_reset(s);
        return coil_err_set(err, COIL_EDB, "%s: document %lld: its grid ends at token %lld, byte %lld (base %lld): "
                            "not positions in a document", st->path, (long long)doc_id, (long long)ds->token_end,
                            (long long)ds->byte_end, (long long)ds->base_position);
    }
    ds->ckpt_position = sqlite3_column_type(s, 7) == SQLITE_NULL ? -1
                                                                  : sqlite3_column_int64(s, 7);
    const unsigned char *origin = sqlite3_column_text(s, 9), *name = sqlite3_column_text(s, 10);
    snprintf(ds->origin, sizeof ds->origin, "%s", origin ? (const char *)origin : "");
    snprintf(ds->name, sizeof ds->name, "%s", name ? (const char *)name : "");
    sqlite3_reset(s);
    return 0;
}

int coil_store__doc_history(coil_store_t *st, int64_t doc_id, int64_t from, int code,
                            const char *what, coil_err_t *err)
{
    coil_store__doc_state_t ds;
    coil_err_t quiet = {0};
    if (from < 0 || coil_store__doc_state(st, doc_id, &ds, &quiet) != 0 ||
        from >= ds.base_position)
        return 0;
    return coil_err_set(err, code,
                        "%s: document '%s': %s from position %lld: its history before %lld was "
                        "imported (coil state import) and is not in this database",
                        st->path, ds.name, what, (long long)from, (long long)ds.base_position);
}

/* Deletes document id (named name) with its chunks and checkpoints, for
 * COIL_STORE_DOC_REPLACE: COIL_ESTATE if sessions continue it.  Call inside
 * a write transaction. */
static int drop_doc(coil_store_t *st, int64_t id, const char *name, coil_err_t *err)
{
    sqlite3_stmt *s = coil_store__stmt(st, COIL_STORE__DOC_SESSIONS, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    int64_t sessions = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW)
        return coil_store__fail(st, err, rc, "counting the document's sessions");
    if (sessions)
        return coil_err_set(err, COIL_ESTATE,
                            "%s: cannot replace document '%s': %lld session(s) continue it",
                            st->path, name, (long long)sessions);
    if (!(s = coil_store__stmt(st, COIL_STORE__DOC_DELETE, err)))
        return err->code;
    sqlite3_bind_int64(s, 1, id);
    return coil_store__exec(st, s, "replacing the document", err);
}

/* `name` belongs to document id (status borrowed from s, detail appended to
 * the message): COIL_ESTATE unless flags has COIL_STORE_DOC_REPLACE, which
 * deletes that document instead.  Always resets s.  Inside a transaction. */
static int release_name(coil_store_t *st, sqlite3_stmt *s, int64_t id, const char *name, const char *status,
                        const char *detail, unsigned flags, coil_err_t *err)
{
    if (!(flags & COIL_STORE_DOC_REPLACE)) {
        coil_err_set(err, COIL_ESTATE, "%s: document '%s' already exists (%s%s); ask to replace it", st->path,
                     name, status ? status : "?", detail);
        sqlite3_reset(s);
        return COIL_ESTATE;
    }
    sqlite3_reset(s);
    return drop_doc(st, id, name, err);
}

int coil_store_doc_begin(coil_store_t *st, const char *name, int64_t model_id,
                         uint64_t source_hash, int64_t chunk_tokens, unsigned flags,
                         int64_t *doc_id, int *resumed, coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    sqlite3_stmt *s;
    int rc;

    if (!name || !*name || chunk_tokens <= 0 || !doc_id)
        return coil_err_set(err, COIL_EINVAL,
                            "store: doc_begin needs a name, chunk_tokens > 0 and doc_id");
    if ((rc = coil_store__begin(st, err)) != 0)
        return rc;
    if (!(s = coil_store__stmt(st, COIL_STORE__DOC_BY_NAME, err)))
        goto fail;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(s, 0);
        int64_t mid = sqlite3_column_int64(s, 1);
        uint64_t hash = coil_store__u64(sqlite3_column_int64(s, 2));
        const char *status = (const char *)sqlite3_column_text(s, 3);
        int64_t ct = sqlite3_column_int64(s, 4);
        bool same = mid == model_id && hash == source_hash && ct == chunk_tokens;
        bool ingesting = status && strcmp(status, "ingesting") == 0;
        bool complete = status && strcmp(status, "complete") == 0;
        if (same && (ingesting || (complete && !(flags & COIL_STORE_DOC_REPLACE)))) {
            sqlite3_reset(s);
            *doc_id = id;
            if (resumed)
                *resumed = ingesting ? COIL_STORE_DOC_RESUMED : COIL_STORE_DOC_DONE;
            return coil_store__commit(st, err);
        }
        /* name what differs, so the caller knows whether --replace is what it wants */
        char detail[160];
        if (mid != model_id)
            snprintf(detail, sizeof detail, ", made with another model");
        else if (ct != chunk_tokens)
            snprintf(detail, sizeof detail, ", chunks of %lld tokens, not %lld", (long long)ct,
                     (long long)chunk_tokens);
        else if (hash != source_hash)
            snprintf(detail, sizeof detail, ", from a different input (content hash %016llx, not %016llx)",
                     (unsigned long long)hash, (unsigned long long)source_hash);
        else
            detail[0] = '\0';
        if (release_name(st, s, id, name, status, detail, flags, err) != 0)
            goto fail;
    } else {
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            coil_store__fail(st, err, rc, "looking up the document");
            goto fail;
        }
    }
    if (!(s = coil_store__stmt(st, COIL_STORE__DOC_INSERT, err)))
        goto fail;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, model_id);
    sqlite3_bind_int64(s, 3, coil_store__i64(source_hash));
    sqlite3_bind_int64(s, 4, chunk_tokens);
    if (coil_store__exec(st, s, "inserting the document (unknown model id?)", err) != 0)
        goto fail;
    *doc_id = sqlite3_last_insert_rowid(st->db);
    if (resumed)
        *resumed = COIL_STORE_DOC_NEW;
    return coil_store__commit(st, err);
fail:
    coil_store__rollback(st);
    return err ? err->code : COIL_EDB;
}

int coil_store_doc_import(coil_store_t *st, const char *name, int64_t model_id, const void *blob,
                          size_t size, uint64_t fingerprint, int64_t position, unsigned flags,
                          int64_t *doc_id, coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    sqlite3_stmt *s;
    int rc;

    if (!name || !*name || !blob || !size || position < 0 || position > COIL_STORE__POS_MAX || !doc_id)
        return coil_err_set(err, COIL_EINVAL,
                            "store: doc_import needs a name, a non-empty blob, 0 <= position <= 2^62 "
                            "and doc_id");
    if ((rc = coil_store__begin(st, err)) != 0)
        return rc;
    if (!(s = coil_store__stmt(st, COIL_STORE__MODEL_FP, err)))
        goto fail;
    sqlite3_bind_int64(s, 1, model_id);
    rc = sqlite3_step(s);
    uint64_t model_fp = rc == SQLITE_ROW ? coil_store__u64(sqlite3_column_int64(s, 0)) : 0;
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) {
        if (rc == SQLITE_DONE)
            coil_err_set(err, COIL_ENOTFOUND, "%s: importing '%s': no model with id %lld",
                         st->path, name, (long long)model_id);
        else
            coil_store__fail(st, err, rc, "looking up the model");
        goto fail;
    }
    if (model_fp != fingerprint) {
        coil_err_set(err, COIL_EMISMATCH,
                     "%s: importing '%s': state made by model %016llx, not by model %lld "
                     "(%016llx)",
                     st->path, name, (unsigned long long)fingerprint, (long long)model_id,
                     (unsigned long long)model_fp);
        goto fail;
    }
    if (!(s = coil_store__stmt(st, COIL_STORE__DOC_BY_NAME, err)))
        goto fail;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(s, 0);
        const unsigned char *status = sqlite3_column_text(s, 3);
        if (release_name(st, s, id, name, (const char *)status, "", flags, err) != 0)
            goto fail;
    } else {
        sqlite3_reset(s);
        if (rc != SQLITE_DONE) {
            coil_store__fail(st, err, rc, "looking up the document");
            goto fail;
        }
    }
    if (!(s = coil_store__stmt(st, COIL_STORE__DOC_INSERT_IMPORT, err)))
        goto fail;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, model_id);
    /* The imported state is the document's only "source". */
    sqlite3_bind_int64(s, 3, coil_store__i64(XXH3_64bits(blob, size)));
    sqlite3_bind_int64(s, 4, COIL_STORE_IMPORT_CHUNK_TOKENS);
    sqlite3_bind_int64(s, 5, position);
    if (coil_store__exec(st, s, "inserting the imported document", err) != 0)
        goto fail;
    int64_t id = sqlite3_last_insert_rowid(st->db);
    coil_store_ckpt_t ck = {
        .position = position, .fingerprint = fingerprint, .data = blob, .size = size};
    if (coil_store__ckpt_write(st, id, NULL, &ck, err) != 0 ||
        coil_store__commit(st, err) != 0)
        goto fail;
    *doc_id = id;
    return 0;
fail:
    coil_store__rollback(st);
    return err->code;
}

static int insert_chunk(coil_store_t *st, int64_t doc_id, const coil_store_chunk_t *c,
                        coil_err_t *err)
{
    sqlite3_stmt *s = coil_store__stmt(st, COIL_STORE__CHUNK_INSERT, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, doc_id);
    sqlite3_bind_int64(s, 2, c->seq);
    sqlite3_bind_int64(s, 3, c->token_start);
    sqlite3_bind_int64(s, 4, c->token_end);
    sqlite3_bind_int64(s, 5, c->byte_start);
    sqlite3_bind_int64(s, 6, c->byte_end);
    sqlite3_bind_text64(s, 7, c->text ? c->text : "", c->text_len, SQLITE_STATIC, SQLITE_UTF8);
    /* int32 little-endian: the host order (configure refuses big-endian). */
    sqlite3_bind_blob64(s, 8, c->tokens ? (const void *)c->tokens : (const void *)"",
                        (sqlite3_uint64)(c->token_end - c->token_start) * 4, SQLITE_STATIC);
    return coil_store__exec(st, s, "inserting a chunk", err);
}

static int check_chunk(coil_store_t *st, const coil_store_chunk_t *c, int64_t seq, int64_t tok,
                       int64_t byte, coil_err_t *err)
{
    if (c->seq != seq || c->token_start != tok || c->byte_start != byte)
        return coil_err_set(err, COIL_EINVAL,
                            "%s: chunk seq %lld tokens @%lld bytes @%lld does not continue the "
                            "grid (next: seq %lld, token %lld, byte %lld)",
                            st->path, (long long)c->seq, (long long)c->token_start,
                            (long long)c->byte_start, (long long)seq, (long long)tok,
                            (long long)byte);
    if (c->token_end <= c->token_start || c->byte_end < c->byte_start || !c->tokens ||
        c->token_end > COIL_STORE__POS_MAX || c->byte_end > COIL_STORE__POS_MAX ||
        (uint64_t)(c->byte_end - c->byte_start) != (uint64_t)c->text_len ||
        (c->text_len && !c->text) || c->token_end - c->token_start > INT32_MAX / 4)
        return coil_err_set(err, COIL_EINVAL,
                            "%s: chunk %lld: bad ranges (tokens [%lld,%lld), bytes [%lld,%lld), "
                            "text %zu bytes)",
                            st->path, (long long)c->seq, (long long)c->token_start,
                            (long long)c->token_end, (long long)c->byte_start,
                            (long long)c->byte_end, c->text_len);
    return 0;
}

int coil_store_commit_chunks(coil_store_t *st, int64_t doc_id, const coil_store_chunk_t *chunks,
                             size_t n, const coil_store_ckpt_t *ckpt, coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    coil_store__doc_state_t ds;
    int rc;

    if (n && !chunks)
        return coil_err_set(err, COIL_EINVAL, "store: commit_chunks: chunks is NULL");
    if (!n && !ckpt)
        return 0;
    if ((rc = coil_store__begin(st, err)) != 0)
        return rc;
    if (coil_store__doc_state(st, doc_id, &ds, err) != 0)
        goto fail;
    if (strcmp(ds.status, "ingesting") != 0) {
        coil_err_set(err, COIL_ESTATE, "%s: document %lld is %s, not ingesting", st->path,
                     (long long)doc_id, ds.status);
        goto fail;
    }
    /* The grid must end where its last chunk says before anything goes on it (a file someone else
     * wrote): no chunk reaching past that end, no checkpoint past it (the thinning keeps the newest,
     * so a new one would not be the latest). */
    sqlite3_stmt *me = coil_store__stmt(st, COIL_STORE__DOC_MAX_END, err);
    if (!me)
        goto fail;
    sqlite3_bind_int64(me, 1, doc_id);
    rc = sqlite3_step(me);
    const int64_t max_end = rc == SQLITE_ROW && sqlite3_column_type(me, 0) != SQLITE_NULL
                                ? sqlite3_column_int64(me, 0)
                                : ds.token_end;
    sqlite3_reset(me);
    if (rc != SQLITE_ROW) {
        coil_store__fail(st, err, rc, "reading the grid's end");
        goto fail;
    }
    if (max_end > ds.token_end || ds.ckpt_position > ds.token_end) {
        coil_err_set(err, COIL_EDB, "%s: document %lld: its grid ends at %lld, but a chunk reaches %lld and "
                     "a checkpoint sits at %lld", st->path, (long long)doc_id, (long long)ds.token_end,
                     (long long)max_end, (long long)ds.ckpt_position);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const coil_store_chunk_t *c = &chunks[i];
        if (check_chunk(st, c, ds.n_chunks, ds.token_end, ds.byte_end, err) != 0 ||
            insert_chunk(st, doc_id, c, err) != 0)
            goto fail;
        ds.n_chunks++;
        ds.token_end = c->token_end;
        ds.byte_end = c->byte_end;
    }
    if (ckpt) {
        if (ckpt->position != ds.token_end) {
            coil_err_set(err, COIL_EINVAL,
                         "%s: checkpoint at %lld is not at the end of the committed chunks (%lld)",
                         st->path, (long long)ckpt->position, (long long)ds.token_end);
            goto fail;
        }
        if (ckpt->fingerprint != ds.fingerprint) {
            coil_err_set(err, COIL_EMISMATCH,
                         "%s: checkpoint made by model %016llx, document %lld uses %016llx",
                         st->path, (unsigned long long)ckpt->fingerprint, (long long)doc_id,
                         (unsigned long long)ds.fingerprint);
            goto fail;
        }
        if (coil_store__ckpt_write(st, doc_id, NULL, ckpt, err) != 0)
            goto fail;
    }
    sqlite3_stmt *s = coil_store__stmt(st, COIL_STORE__DOC_TOUCH, err);
    if (!s)
        goto fail;
    sqlite3_bind_int64(s, 1, doc_id);
    if (coil_store__exec(st, s, "updating the document", err) != 0)
        goto fail;
    return coil_store__commit(st, err);
fail:
    coil_store__rollback(st);
    return err ? err->code : COIL_EDB;
}

int coil_store_doc_progress(coil_store_t *st, int64_t doc_id, coil_store_progress_t *out,
                            coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    coil_store__doc_state_t ds;
    int rc = coil_store__doc_state(st, doc_id, &ds, err);
    if (rc)
        return rc;
    out->n_chunks = ds.n_chunks;
    out->token_end = ds.token_end;
    out->byte_end = ds.byte_end;
    out->ckpt_position = ds.ckpt_position;
    out->chunk_tokens = ds.chunk_tokens;
    out->source_hash = ds.source_hash;
    out->fingerprint = ds.fingerprint;
    out->base_position = ds.base_position;
    return 0;
}

int coil_store_doc_finish(coil_store_t *st, int64_t doc_id, int64_t bytes, int64_t tokens,
                          coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    coil_store__doc_state_t ds;
    sqlite3_stmt *s;
    int rc;

    if ((rc = coil_store__begin(st, err)) != 0)
        return rc;
    if (coil_store__doc_state(st, doc_id, &ds, err) != 0)
        goto fail;
    if (strcmp(ds.status, "ingesting") != 0 || tokens != ds.token_end || bytes != ds.byte_end) {
        coil_err_set(err, COIL_ESTATE,
                     "%s: cannot finish document %lld (%s): %lld tokens / %lld bytes given, "
                     "%lld / %lld stored",
                     st->path, (long long)doc_id, ds.status, (long long)tokens,
                     (long long)bytes, (long long)ds.token_end, (long long)ds.byte_end);
        goto fail;
    }
    if (!(s = coil_store__stmt(st, COIL_STORE__DOC_FINISH, err)))
        goto fail;
    sqlite3_bind_int64(s, 1, doc_id);
    sqlite3_bind_int64(s, 2, bytes);
    sqlite3_bind_int64(s, 3, tokens);
    if (coil_store__exec(st, s, "finishing the document", err) != 0)
        goto fail;
    return coil_store__commit(st, err);
fail:
    coil_store__rollback(st);
    return err ? err->code : COIL_EDB;
}

int coil_store_doc_fail(coil_store_t *st, int64_t doc_id, const char *message, coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    sqlite3_stmt *s;
    int rc;

    if ((rc = coil_store__begin(st, err)) != 0)
        return rc;
    if (!(s = coil_store__stmt(st, COIL_STORE__DOC_FAIL, err)))
        goto fail;
    sqlite3_bind_int64(s, 1, doc_id);
    sqlite3_bind_text(s, 2, message ? message : "", -1, SQLITE_STATIC);
    if (coil_store__exec(st, s, "marking the document failed", err) != 0)
        goto fail;
    if (sqlite3_changes(st->db) == 0) {
        coil_err_set(err, COIL_ENOTFOUND, "%s: no document with id %lld", st->path,
                     (long long)doc_id);
        goto fail;
    }
    return coil_store__commit(st, err);
fail:
    coil_store__rollback(st);
    return err ? err->code : COIL_EDB;
}

int coil_store_doc_find(coil_store_t *st, const char *name, int64_t *doc_id, coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    sqlite3_stmt *s = coil_store__stmt(st, COIL_STORE__DOC_BY_NAME, err);
    if (!s)
        return err->code;
    sqlite3_bind_text(s, 1, name ? name : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *doc_id = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return coil_err_set(err, COIL_ENOTFOUND, "%s: no document named '%s'", st->path,
                            name ? name : "");
    return coil_store__fail(st, err, rc, "looking up the document");
}

int coil_store__tokens_fill(coil_store_t *st, sqlite3_stmt *s, int64_t origin, int64_t lo,
                            int64_t hi, int32_t *ids, int64_t *filled, coil_err_t *err)
{
    int rc;
    int64_t next = lo; /* rows must tile [lo, hi): an overlap or a gap ends the fill (the caller sees it short) */
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t a = sqlite3_column_int64(s, 0), b = sqlite3_column_int64(s, 1);
        const unsigned char *blob = sqlite3_column_blob(s, 2);
        int64_t len = sqlite3_column_bytes(s, 2);
        /* the row may come from a file someone else wrote: no arithmetic on
         * its numbers before they are known sane (a < 0 or b - a past the
         * blob would overflow, or index outside it) */
        if (a < 0 || b < a || len % 4 || b - a != len / 4 || (len && !blob)) {
            sqlite3_reset(s);
            return coil_err_set(err, COIL_EDB, "%s: token row [%lld,%lld) has %lld bytes",
                                st->path, (long long)a, (long long)b, (long long)len);
        }
        int64_t x = a > lo ? a : lo, y = b < hi ? b : hi;
        if (y > x) {
            if (x != next) {
                rc = SQLITE_DONE;
                break;
            }
            memcpy(ids + (x - origin), blob + 4 * (x - a), (size_t)(y - x) * 4);
            *filled += y - x;
            next = y;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : coil_store__fail(st, err, rc, "reading tokens");
}

int coil_store__tokens_held(coil_store_t *st, int64_t doc_id, const char *sid, int64_t *have, coil_err_t *err)
{
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(st->db,
                                sid ? "SELECT coalesce(sum(length(tokens)), 0) / 4 FROM session_tokens "
                                      "WHERE session_id = ?1"
                                    : "SELECT coalesce(sum(length(tokens)), 0) / 4 FROM chunks WHERE doc_id = ?1",
                                -1, &s, NULL);
    if (rc != SQLITE_OK)
        return coil_store__fail(st, err, rc, "counting tokens");
    if (sid)
        sqlite3_bind_text(s, 1, sid, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(s, 1, doc_id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *have += sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : coil_store__fail(st, err, rc, "counting tokens");
}

int coil_store_doc_tokens(coil_store_t *st, int64_t doc_id, int64_t from, int64_t to,
                          int32_t **ids, size_t *n, coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    int64_t filled = 0;
    sqlite3_stmt *s;

    *ids = NULL;
    *n = 0;
    if (from < 0 || to < from)
        return coil_err_set(err, COIL_EINVAL, "store: bad token range [%lld,%lld)",
                            (long long)from, (long long)to);
    if (to == from)
        return 0;
    if ((uint64_t)(to - from) > SIZE_MAX / 4)
        return coil_err_set(err, COIL_ETOOBIG, "store: token range too large");
    if (to - from > COIL_STORE__TOKENS_CHECKED) {
        int64_t have = 0;
        int rc = coil_store__tokens_held(st, doc_id, NULL, &have, err);
        if (rc)
            return rc;
        if (have < to - from)
            return coil_err_set(err, COIL_EDB, "%s: document %lld: tokens [%lld,%lld) asked, its chunks hold %lld",
                                st->path, (long long)doc_id, (long long)from, (long long)to, (long long)have);
    }
    int32_t *buf = malloc((size_t)(to - from) * 4);
    if (!buf)
        return coil_err_set(err, COIL_ENOMEM, "store: out of memory for %lld tokens",
                            (long long)(to - from));
    if (!(s = coil_store__stmt(st, COIL_STORE__CHUNK_TOKENS, err)))
        goto fail;
    sqlite3_bind_int64(s, 1, doc_id);
    sqlite3_bind_int64(s, 2, from);
    sqlite3_bind_int64(s, 3, to);
    if (coil_store__tokens_fill(st, s, from, from, to, buf, &filled, err) != 0)
        goto fail;
    if (filled != to - from) {
        if (coil_store__doc_history(st, doc_id, from, COIL_ENOTFOUND, "cannot read tokens",
                                    err) == 0)
            coil_err_set(err, COIL_EINVAL,
                         "%s: document %lld: tokens [%lld,%lld) are not all in the stored grid",
                         st->path, (long long)doc_id, (long long)from, (long long)to);
        goto fail;
    }
    *ids = buf;
    *n = (size_t)(to - from);
    return 0;
fail:
    free(buf);
    return err ? err->code : COIL_EDB;
}

/* --- checkpoints ------------------------------------------------------------- */

void coil_store_blob_clear(coil_store_blob_t *b)
{
    if (b) {
        free(b->data);
        memset(b, 0, sizeof *b);
    }
}

/* Collects the ids of the owner's checkpoints the policy drops, then deletes
 * them (not while the SELECT runs). */
static int thin(coil_store_t *st, int64_t doc_id, const char *sid, int64_t newest,
                coil_err_t *err)
{
    int64_t *drop = NULL;
    size_t n = 0, cap = 0;
    int rc;

    if (st->opt.policy.dense <= 0)
        return 0;
    sqlite3_stmt *s = coil_store__stmt(st, sid ? COIL_STORE__CKPT_LIST_SES
                                               : COIL_STORE__CKPT_LIST_DOC, err);
    if (!s)
        return err->code;
    if (sid)
        sqlite3_bind_text(s, 1, sid, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(s, 1, doc_id);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (coil_store_policy_keep(&st->opt.policy, sqlite3_column_int64(s, 1), newest))
            continue;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            int64_t *t = realloc(drop, ncap * sizeof *t);
            if (!t) {
                sqlite3_reset(s);
                free(drop);
                return coil_err_set(err, COIL_ENOMEM, "store: out of memory thinning");
            }
            drop = t;
            cap = ncap;
        }
        drop[n++] = sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        free(drop);
        return coil_store__fail(st, err, rc, "listing checkpoints to thin");
    }
    rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (!(s = coil_store__stmt(st, COIL_STORE__CKPT_DELETE_ID, err))) {
            rc = err->code;
            break;
        }
        sqlite3_bind_int64(s, 1, drop[i]);
        rc = coil_store__exec(st, s, "deleting a thinned checkpoint", err);
    }
    free(drop);
    return rc;
}

int coil_store__ckpt_write(coil_store_t *st, int64_t doc_id, const char *sid,
                           const coil_store_ckpt_t *ck, coil_err_t *err)
{
    sqlite3_stmt *s;
    int rc;

    if ((ck->size && !ck->data) || ck->position < 0 || ck->size > (size_t)INT_MAX)
        return coil_err_set(err, ck->size > (size_t)INT_MAX ? COIL_ETOOBIG : COIL_EINVAL,
                            "%s: bad checkpoint (position %lld, %zu bytes)", st->path,
                            (long long)ck->position, ck->size);
    s = coil_store__stmt(st, sid ? COIL_STORE__CKPT_DELETE_SES_AT : COIL_STORE__CKPT_DELETE_DOC_AT,
                         err);
    if (!s)
        return err->code;
    if (sid)
        sqlite3_bind_text(s, 1, sid, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(s, 1, doc_id);
    sqlite3_bind_int64(s, 2, ck->position);
    if ((rc = coil_store__exec(st, s, "replacing a checkpoint", err)) != 0)
        return rc;
    if (!(s = coil_store__stmt(st, COIL_STORE__CKPT_INSERT, err)))
        return err->code;
    if (sid) {
        sqlite3_bind_null(s, 1);
        sqlite3_bind_text(s, 2, sid, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_int64(s, 1, doc_id);
        sqlite3_bind_null(s, 2);
    }
    sqlite3_bind_int64(s, 3, ck->position);
    sqlite3_bind_int64(s, 4, coil_store__i64(ck->fingerprint));
    sqlite3_bind_int64(s, 5, coil_store__i64(XXH3_64bits(ck->data, ck->size)));
    sqlite3_bind_int64(s, 6, (sqlite3_int64)ck->size);
    if (ck->size)
        sqlite3_bind_blob64(s, 7, ck->data, ck->size, SQLITE_STATIC);
    else
        sqlite3_bind_zeroblob(s, 7, 0);
    if ((rc = coil_store__exec(st, s, "writing a checkpoint", err)) != 0)
        return rc;
    return thin(st, doc_id, sid, ck->position, err);
}

/* Reads the blob of checkpoint row `id` (size bytes, checksum cks) into out,
 * inside the caller's read transaction. */
static int read_blob(coil_store_t *st, int64_t id, int64_t size, uint64_t cks,
                     coil_store_blob_t *out, coil_err_t *err)
{
    sqlite3_blob *b = NULL;
    int rc;

    if (size < 0 || size > INT_MAX)
        return coil_err_set(err, COIL_EDB, "%s: checkpoint %lld: bad size %lld", st->path,
                            (long long)id, (long long)size);
    rc = sqlite3_blob_open(st->db, "main", "checkpoints", "state", id, 0, &b);
    if (rc != SQLITE_OK) {
        coil_store__fail(st, err, rc, "opening a checkpoint blob");
        sqlite3_blob_close(b);
        return err->code;
    }
    /* the size column is a claim: the blob's own length first, then a buffer */
    if (sqlite3_blob_bytes(b) != size) {
        int have = sqlite3_blob_bytes(b);
        sqlite3_blob_close(b);
        return coil_err_set(err, COIL_EDB, "%s: checkpoint %lld: blob has %d bytes, row says %lld",
                            st->path, (long long)id, have, (long long)size);
    }
    if ((size_t)size > out->cap) {
        void *p = realloc(out->data, (size_t)size);
        if (!p) {
            sqlite3_blob_close(b);
            return coil_err_set(err, COIL_ENOMEM, "store: out of memory for a %lld-byte state",
                                (long long)size);
        }
        out->data = p;
        out->cap = (size_t)size;
    }
    rc = size ? sqlite3_blob_read(b, out->data, (int)size, 0) : SQLITE_OK;
    if (rc != SQLITE_OK) {
        coil_store__fail(st, err, rc, "reading a checkpoint blob");
        sqlite3_blob_close(b);
        return err->code;
    }
    sqlite3_blob_close(b);
    out->size = (size_t)size;
    uint64_t got = XXH3_64bits(out->data, out->size);
    if (got != cks)
        return coil_err_set(err, COIL_ECHECKSUM,
                            "%s: checkpoint %lld (position %lld): checksum %016llx, stored "
                            "%016llx",
                            st->path, (long long)id, (long long)out->position,
                            (unsigned long long)got, (unsigned long long)cks);
    return 0;
}

int coil_store__ckpt_read(coil_store_t *st, sqlite3_stmt *s, coil_store_blob_t *out,
                          coil_err_t *err)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        if (rc == SQLITE_DONE)
            return COIL_ENOTFOUND; /* the caller words the message */
        return coil_store__fail(st, err, rc, "looking up a checkpoint");
    }
    /* The statement stays active, so the blob is read in the same snapshot. */
    int64_t id = sqlite3_column_int64(s, 0);
    out->position = sqlite3_column_int64(s, 1);
    out->fingerprint = coil_store__u64(sqlite3_column_int64(s, 2));
    out->checksum = coil_store__u64(sqlite3_column_int64(s, 3));
    rc = read_blob(st, id, sqlite3_column_int64(s, 4), out->checksum, out, err);
    sqlite3_reset(s);
    return rc;
}

int coil_store_ckpt_latest(coil_store_t *st, int64_t doc_id, int64_t at, coil_store_blob_t *out,
                           coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    sqlite3_stmt *s = coil_store__stmt(st, COIL_STORE__CKPT_AT_DOC, err);
    if (!s)
        return err->code;
    sqlite3_bind_int64(s, 1, doc_id);
    sqlite3_bind_int64(s, 2, at < 0 ? INT64_MAX : at);
    int rc = coil_store__ckpt_read(st, s, out, err);
    if (rc == COIL_ENOTFOUND)
        coil_err_set(err, rc, "%s: document %lld has no checkpoint at or before %lld", st->path,
                     (long long)doc_id, (long long)at);
    return rc;
}

int coil_store_ckpt_check_model(const coil_store_blob_t *b, uint64_t expected, coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    if (b->fingerprint == expected)
        return 0;
    return coil_err_set(err, COIL_EMISMATCH,
                        "checkpoint at position %lld was made by model %016llx, not %016llx",
                        (long long)b->position, (unsigned long long)b->fingerprint,
                        (unsigned long long)expected);
}

/* --- search --------------------------------------------------------------------- */

/* FTS5's snippet() wraps the matches in U+E000 ... U+E001 (private-use
 * characters, which the SQL asks for because no text means them): this turns
 * it into plain text and the byte ranges that matched.  A private-use
 * U+E000/U+E001 in a document itself would read as a marker. */
static int split_snippet(const char *raw, char **plain, int64_t **marks, size_t *cap, size_t *n_marks)
{
    static const char open_m[] = "\xee\x80\x80", close_m[] = "\xee\x80\x81";
    size_t len = strlen(raw), o = 0, k = 0;
    char *p = malloc(len + 1);
    if (!p)
        return -1;
    int64_t start = -1;
    for (size_t i = 0; i < len;) {
        bool is_open = len - i >= 3 && memcmp(raw + i, open_m, 3) == 0;
        bool is_close = len - i >= 3 && memcmp(raw + i, close_m, 3) == 0;
        if (is_open) {
            start = (int64_t)o;
            i += 3;
        } else if (is_close) {
            if (start >= 0) {
                if (2 * (k + 1) > *cap) {
                    size_t nc = *cap ? 2 * *cap : 16;
                    int64_t *nm = realloc(*marks, nc * sizeof *nm);
                    if (!nm) {
                        free(p);
                        return -1;
                    }
                    *marks = nm;
                    *cap = nc;
                }
                (*marks)[2 * k] = start;
                (*marks)[2 * k + 1] = (int64_t)o;
                k++;
            }
            start = -1;
            i += 3;
        } else {
            p[o++] = raw[i++];
        }
    }
    p[o] = '\0';
    *plain = p;
    *n_marks = k;
    return 0;
}

/* A search hit from a result row (doc name, doc id, seq, token and byte
 * ranges, -, snippet with FTS5's marks), with the given score; the snippet is
 * split into *plain and *marks (reused buffers, see split_snippet).  -1: out
 * of memory. */
static int hit_from_row(sqlite3_stmt *s, double score, char **plain, int64_t **marks, size_t *cap,
                        coil_store_hit_t *h)
{
    const char *name = (const char *)sqlite3_column_text(s, 0), *raw = (const char *)sqlite3_column_text(s, 8);
    h->doc_name = name ? name : "";
    h->doc_id = sqlite3_column_int64(s, 1);
    h->seq = sqlite3_column_int64(s, 2);
    h->token_start = sqlite3_column_int64(s, 3);
    h->token_end = sqlite3_column_int64(s, 4);
    h->byte_start = sqlite3_column_int64(s, 5);
    h->byte_end = sqlite3_column_int64(s, 6);
    h->score = score;
    if (split_snippet(raw ? raw : "", plain, marks, cap, &h->n_marks) != 0)
        return -1;
    h->snippet = *plain;
    h->marks = *marks;
    return 0;
}

int coil_store_search(coil_store_t *st, const char *query, const char *doc_name, int limit,
                      coil_store_hit_fn fn, void *ud, coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    sqlite3_stmt *s;
    int rc;

    char *plain = NULL;
    int64_t *marks = NULL;
    size_t cap_marks = 0;

    if (!query || !fn)
        return coil_err_set(err, COIL_EINVAL, "store: search needs a query and a callback");
    if (!(s = coil_store__stmt(st, COIL_STORE__SEARCH, err)))
        return err->code;
    sqlite3_bind_text(s, 1, query, -1, SQLITE_STATIC);
    if (doc_name)
        sqlite3_bind_text(s, 2, doc_name, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, limit > 0 ? limit : 20);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        coil_store_hit_t h;
        if (hit_from_row(s, -sqlite3_column_double(s, 7), &plain, &marks, &cap_marks, &h) != 0) {
            sqlite3_reset(s);
            free(plain);
            free(marks);
            return coil_err_set(err, COIL_ENOMEM, "store: out of memory for a search snippet");
        }
        int stop = fn(&h, ud);
        free(plain);
        plain = NULL;
        if (stop)
            break;
    }
    free(marks);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return 0;
    }
    /* The SQL is fixed, so a plain SQLITE_ERROR here comes from the FTS5
     * query (syntax error, unknown column filter, ...). */
    if (rc == SQLITE_ERROR)
        coil_err_set(err, COIL_EINVAL, "bad search query \"%.200s\": %s", query, sqlite3_errmsg(st->db));
    else
        coil_store__fail(st, err, rc, "searching");
    sqlite3_reset(s);
    return err ? err->code : COIL_EDB;
}

/* --- search within a document: BM25 with the document's own statistics ---------- */

/* coil_bm25doc(chunks_fts, stats): stats is a blob of doubles, the mean
 * chunk length (FTS tokens) of the document, then one idf per phrase of the
 * query, in order.  The score is FTS5's bm25() with those statistics, with
 * the opposite sign (higher is better). */
static void bm25doc_fn(const Fts5ExtensionApi *api, Fts5Context *fc, sqlite3_context *ctx, int nv,
                       sqlite3_value **v)
{
    const double k1 = 1.2, b = 0.75;
    int np = api->xPhraseCount(fc), ninst = 0, dl = 0;
    if (nv != 1 || sqlite3_value_type(v[0]) != SQLITE_BLOB || np < 1 || np > COIL_STORE_MAX_TERMS ||
        sqlite3_value_bytes(v[0]) != (int)((size_t)(np + 1) * sizeof(double))) {
        sqlite3_result_error(ctx, "coil_bm25doc: a statistics blob of 1 + one double per phrase", -1);
        return;
    }
    double stats[COIL_STORE_MAX_TERMS + 1], tf[COIL_STORE_MAX_TERMS] = {0};
    memcpy(stats, sqlite3_value_blob(v[0]), (size_t)(np + 1) * sizeof(double));
    int rc = api->xInstCount(fc, &ninst);
    for (int i = 0; rc == SQLITE_OK && i < ninst; i++) {
        int ip, ic, io;
        if ((rc = api->xInst(fc, i, &ip, &ic, &io)) == SQLITE_OK && ip >= 0 && ip < np)
            tf[ip] += 1.0;
    }
    if (rc == SQLITE_OK)
        rc = api->xColumnSize(fc, -1, &dl);
    if (rc != SQLITE_OK) {
        sqlite3_result_error_code(ctx, rc);
        return;
    }
    double score = 0.0, avgdl = stats[0] > 0 ? stats[0] : 1.0;
    for (int i = 0; i < np; i++)
        score += stats[1 + i] * (tf[i] * (k1 + 1.0)) / (tf[i] + k1 * (1.0 - b + b * (double)dl / avgdl));
    sqlite3_result_double(ctx, score);
}

static int bm25doc_register(coil_store_t *st, coil_err_t *err)
{
    fts5_api *api = NULL;
    sqlite3_stmt *s = NULL;
    if (st->bm25_doc)
        return 0;
    if (sqlite3_prepare_v2(st->db, "SELECT fts5(?1)", -1, &s, NULL) == SQLITE_OK) {
        sqlite3_bind_pointer(s, 1, (void *)&api, "fts5_api_ptr", NULL);
        sqlite3_step(s);
    }
    sqlite3_finalize(s);
    if (!api || api->iVersion < 2 ||
        api->xCreateFunction(api, "coil_bm25doc", NULL, bm25doc_fn, NULL) != SQLITE_OK)
        return coil_err_set(err, COIL_EDB, "store: cannot register a ranking function with FTS5");
    st->bm25_doc = 1;
    return 0;
}

/* A term as an FTS5 phrase: in double quotes, its own quotes doubled. */
static int append_phrase(char **q, size_t *len, size_t *cap, const char *term, int or)
{
    size_t need = *len + 2 * strlen(term) + 8;
    if (need > *cap) {
        size_t nc = *cap ? *cap : 128;
        while (nc < need)
            nc *= 2;
        char *nq = realloc(*q, nc);
        if (!nq)
            return -1;
        *q = nq;
        *cap = nc;
    }
    if (or) {
        memcpy(*q + *len, " OR ", 4);
        *len += 4;
    }
    (*q)[(*len)++] = '"';
    for (const char *t = term; *t; t++) {
        if (*t == '"')
            (*q)[(*len)++] = '"';
        (*q)[(*len)++] = *t;
    }
    (*q)[(*len)++] = '"';
    (*q)[*len] = '\0';
    return 0;
}

/* FTS5's varint (SQLite's: big-endian 7-bit groups, the 9th byte whole). */
static uint64_t get_varint(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n && i < 9; i++) {
        if (i == 8)
            return (v << 8) | p[i];
        v = (v << 7) | (p[i] & 0x7f);
        if (!(p[i] & 0x80))
            break;
    }
    return v;
}

int coil_store_search_doc(coil_store_t *st, int64_t doc_id, const char *const *terms, size_t n_terms, int limit,
                          coil_store_hit_fn fn, void *ud, coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    sqlite3_stmt *s = NULL;
    char *q = NULL, *plain = NULL;
    int64_t *marks = NULL;
    size_t qlen = 0, qcap = 0, cap_marks = 0;
    double stats[COIL_STORE_MAX_TERMS + 1];
    int rc = 0, src;
    const char *op = "searching a document";
    if (!fn || !terms || n_terms < 1 || n_terms > COIL_STORE_MAX_TERMS)
        return coil_err_set(err, COIL_EINVAL, "store: a document search needs 1 to %d terms and a callback",
                            COIL_STORE_MAX_TERMS);
    for (size_t i = 0; i < n_terms; i++)
        if (!terms[i] || !terms[i][0])
            return coil_err_set(err, COIL_EINVAL, "store: search term %zu is empty", i + 1);
    if ((rc = bm25doc_register(st, err)))
        return rc;
    /* one snapshot: the statistics and the ranking see the same index */
    if ((rc = coil_store__begin_read(st, err)))
        return rc;
    /* the document's chunk count and mean length (FTS5's own token counts) */
    double n_chunks = 0, total = 0;
    src = sqlite3_prepare_v2(st->db,
                             "SELECT z.sz FROM chunks c JOIN chunks_fts_docsize z ON z.id = c.id WHERE c.doc_id = ?1",
                             -1, &s, NULL);
    if (src == SQLITE_OK) {
        sqlite3_bind_int64(s, 1, doc_id);
        while ((src = sqlite3_step(s)) == SQLITE_ROW) {
            n_chunks += 1;
            total += (double)get_varint(sqlite3_column_blob(s, 0), sqlite3_column_bytes(s, 0));
        }
        if (src == SQLITE_DONE)
            src = SQLITE_OK;
    }
    sqlite3_finalize(s);
    s = NULL;
    if (src != SQLITE_OK)
        goto db_fail;
    stats[0] = n_chunks > 0 ? total / n_chunks : 0;
    /* each term's idf from the chunks of this document that hold it */
    src = sqlite3_prepare_v2(st->db,
                             "SELECT count(*) FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
                             "WHERE chunks_fts MATCH ?1 AND c.doc_id = ?2",
                             -1, &s, NULL);
    for (size_t i = 0; src == SQLITE_OK && i < n_terms; i++) {
        qlen = 0;
        if (append_phrase(&q, &qlen, &qcap, terms[i], 0) != 0) {
            rc = coil_err_set(err, COIL_ENOMEM, "store: out of memory");
            goto out;
        }
        sqlite3_reset(s);
        sqlite3_bind_text(s, 1, q, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 2, doc_id);
        if ((src = sqlite3_step(s)) != SQLITE_ROW)
            break;
        double nq = (double)sqlite3_column_int64(s, 0);
        double idf = log((n_chunks - nq + 0.5) / (nq + 0.5));
        stats[1 + i] = idf <= 0.0 ? 1e-6 : idf;
        src = SQLITE_OK;
    }
    sqlite3_finalize(s);
    s = NULL;
    if (src != SQLITE_OK)
        goto db_fail;
    qlen = 0;
    for (size_t i = 0; i < n_terms; i++)
        if (append_phrase(&q, &qlen, &qcap, terms[i], i > 0) != 0) {
            rc = coil_err_set(err, COIL_ENOMEM, "store: out of memory");
            goto out;
        }
    src = sqlite3_prepare_v2(st->db,
                             "SELECT d.name, c.doc_id, c.seq, c.token_start, c.token_end, c.byte_start, c.byte_end, "
                             "coil_bm25doc(chunks_fts, ?3) AS score, "
                             "snippet(chunks_fts, 0, char(57344), char(57345), '...', 16) "
                             "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
                             "JOIN documents d ON d.id = c.doc_id "
                             "WHERE chunks_fts MATCH ?1 AND c.doc_id = ?2 ORDER BY score DESC, c.seq LIMIT ?4",
                             -1, &s, NULL);
    if (src != SQLITE_OK)
        goto db_fail;
    sqlite3_bind_text(s, 1, q, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, doc_id);
    sqlite3_bind_blob(s, 3, stats, (int)((n_terms + 1) * sizeof(double)), SQLITE_STATIC);
    sqlite3_bind_int(s, 4, limit > 0 ? limit : 20);
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        coil_store_hit_t h;
        if (hit_from_row(s, sqlite3_column_double(s, 7), &plain, &marks, &cap_marks, &h) != 0) {
            rc = coil_err_set(err, COIL_ENOMEM, "store: out of memory for a search snippet");
            goto out;
        }
        int stop = fn(&h, ud);
        free(plain);
        plain = NULL;
        if (stop)
            break;
    }
    if (src == SQLITE_ROW || src == SQLITE_DONE)
        goto out;
db_fail:
    rc = coil_store__fail(st, err, src, op);
out:
    sqlite3_finalize(s);
    coil_store__rollback(st);
    free(q);
    free(plain);
    free(marks);
    return rc;
}

/* --- listings ------------------------------------------------------------------- */

int coil_store_doc_list(coil_store_t *st, const char *name,
                        int (*fn)(const coil_store_doc_info_t *d, void *ud), void *ud,
                        coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    sqlite3_stmt *s = coil_store__stmt(st, COIL_STORE__DOC_LIST, err);
    int rc, rows = 0;
    if (!s)
        return err->code;
    if (name)
        sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        coil_store_doc_info_t d;
        rows++;
        d.id = sqlite3_column_int64(s, 0);
        d.name = (const char *)sqlite3_column_text(s, 1);
        d.status = (const char *)sqlite3_column_text(s, 2);
        d.error = (const char *)sqlite3_column_text(s, 3);
        d.created = sqlite3_column_int64(s, 4);
        d.updated = sqlite3_column_int64(s, 5);
        d.n_chunks = sqlite3_column_int64(s, 6);
        d.tokens = sqlite3_column_int64(s, 7);
        d.bytes = sqlite3_column_int64(s, 8);
        d.n_checkpoints = sqlite3_column_int64(s, 9);
        d.checkpoint_bytes = sqlite3_column_int64(s, 10);
        d.base_position = sqlite3_column_int64(s, 11);
        d.origin = (const char *)sqlite3_column_text(s, 12);
        if (fn && fn(&d, ud))
            break;
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return coil_store__fail(st, err, rc, "listing documents");
    if (name && rows == 0)
        return coil_err_set(err, COIL_ENOTFOUND, "%s: no document named '%s'", st->path, name);
    return 0;
}

/* --- verify ----------------------------------------------------------------------- */

/* Runs sql; if it yields a row, formats its first column into a COIL_EDB
 * error "what: <value>". */
static int expect_no_row(coil_store_t *st, const char *sql, const char *what, coil_err_t *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(s, 0);
        coil_err_set(err, COIL_EDB, "%s: %s: %s", st->path, what, t ? (const char *)t : "?");
    } else if (rc != SQLITE_DONE) {
        coil_store__fail(st, err, rc, what);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : err ? err->code : COIL_EDB;
}

static int verify_blobs(coil_store_t *st, coil_err_t *err)
{
    coil_store_blob_t b = {0};
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db,
                                "SELECT id, position, fingerprint, checksum, size FROM checkpoints",
                                -1, &s, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(s);
        return coil_store__fail(st, err, rc, "listing checkpoints");
    }
    int code = 0;
    while (!code && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        b.position = sqlite3_column_int64(s, 1);
        code = read_blob(st, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 4),
                         coil_store__u64(sqlite3_column_int64(s, 3)), &b, err);
    }
    if (!code && rc != SQLITE_DONE)
        code = coil_store__fail(st, err, rc, "listing checkpoints");
    sqlite3_finalize(s);
    coil_store_blob_clear(&b);
    return code;
}

int coil_store_verify(coil_store_t *st, coil_err_t *err)
{
    COIL_STORE__ERR_LOCAL(err);
    char buf[256];
    int rc;

    if ((rc = pragma(st, "PRAGMA integrity_check", buf, sizeof buf, err)) != 0)
        return rc;
    if (strcmp(buf, "ok") != 0)
        return coil_err_set(err, COIL_EDB, "%s: integrity_check: %s", st->path, buf);
    /* The FTS5 check is an INSERT: run it in a write transaction we undo. */
    if ((rc = coil_store__begin(st, err)) != 0)
        return rc;
    rc = sqlite3_exec(st->db, "INSERT INTO chunks_fts(chunks_fts) VALUES ('integrity-check')",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        coil_store__fail(st, err, rc, "FTS5 integrity-check");
    coil_store__rollback(st);
    if (rc != SQLITE_OK)
        return err ? err->code : COIL_EDB;
    if ((rc = coil_store__begin_read(st, err)) != 0)
        return rc;
    /* Read everything below in one snapshot. */
    static const struct {
        const char *what, *sql;
    } checks[] = {
        {"I1: chunk grid not contiguous at (doc, seq)",
         "SELECT c.doc_id || ', ' || c.seq FROM (SELECT doc_id, seq, token_start, byte_start, "
         "row_number() OVER w - 1 AS want_seq, lag(token_end) OVER w AS prev_tok, "
         "lag(byte_end, 1, 0) OVER w AS want_byte FROM chunks "
         "WINDOW w AS (PARTITION BY doc_id ORDER BY seq)) c JOIN documents d ON d.id = c.doc_id "
         "WHERE c.seq <> c.want_seq OR c.token_start <> coalesce(c.prev_tok, d.base_position) "
         "OR c.byte_start <> c.want_byte LIMIT 1"},
        {"I2: checkpoint without its chunks at (doc, position)",
         "SELECT k.doc_id || ', ' || k.position FROM checkpoints k JOIN documents d "
         "ON d.id = k.doc_id WHERE k.position <> d.base_position AND NOT EXISTS (SELECT 1 "
         "FROM chunks c WHERE c.doc_id = k.doc_id AND c.token_end = k.position) LIMIT 1"},
        {"I2: imported document without its checkpoint at base_position",
         "SELECT d.name FROM documents d WHERE d.origin = 'import' AND NOT EXISTS (SELECT 1 "
         "FROM checkpoints k WHERE k.doc_id = d.id AND k.position = d.base_position) LIMIT 1"},
        {"I4: complete document's lengths differ from its grid",
         "SELECT d.name FROM documents d LEFT JOIN chunks l ON l.doc_id = d.id AND l.seq = "
         "(SELECT max(seq) FROM chunks WHERE doc_id = d.id) WHERE d.status = 'complete' AND "
         "(d.token_len <> coalesce(l.token_end, d.base_position) OR "
         "d.byte_len <> coalesce(l.byte_end, 0)) LIMIT 1"},
        {"session reaches below its document's imported base_position",
         "SELECT s.id FROM sessions s JOIN documents d ON d.id = s.doc_id "
         "WHERE s.base < d.base_position LIMIT 1"},
        {"session tokens do not fill [base, head)",
         "SELECT s.id FROM sessions s WHERE s.head - s.base <> coalesce((SELECT "
         "sum(t.pos_end - t.pos_start) FROM session_tokens t WHERE t.session_id = s.id), 0) "
         "OR EXISTS (SELECT 1 FROM session_tokens t WHERE t.session_id = s.id AND "
         "(t.pos_start < s.base OR t.pos_end > s.head)) LIMIT 1"},
        {"session checkpoint outside [base, head]",
         "SELECT k.session_id || ', ' || k.position FROM checkpoints k JOIN sessions s "
         "ON s.id = k.session_id WHERE k.position < s.base OR k.position > s.head LIMIT 1"},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
        if ((rc = expect_no_row(st, checks[i].sql, checks[i].what, err)) != 0)
            break;
    if (!rc)
        rc = verify_blobs(st, err);
    coil_store__rollback(st); /* ends the read transaction */
    return rc;
}

const coil_store_policy_t *coil_store_get_policy(const coil_store_t *st)
{
    return &st->opt.policy;
}
