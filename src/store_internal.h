/* store_internal.h -- what the store's .c files share; not a public API.
 *
 * Names with a double underscore (coil_store__*) are internal to
 * src/store*.c and the generated store_schema.c.
 */
#ifndef COIL_STORE_INTERNAL_H
#define COIL_STORE_INTERNAL_H

#include "store.h"

#include <sqlite3.h>
#include <stdint.h>
#include <string.h>

/* One embedded migration: schemas/NNN_name.sql (generated store_schema.c). */
typedef struct coil_store__migration {
    int version;
    const char *name;
    const char *sql;
} coil_store__migration_t;
extern const coil_store__migration_t coil_store__migrations[];
extern const size_t coil_store__n_migrations;

/* Every statement the store runs more than once, prepared on first use and
 * kept on the handle. */
#define COIL_STORE_STMTS(X)                                                                     \
    X(BEGIN, "BEGIN IMMEDIATE")                                                                 \
    X(BEGIN_READ, "BEGIN")                                                                      \
    X(COMMIT, "COMMIT")                                                                         \
    X(ROLLBACK, "ROLLBACK")                                                                     \
    X(MODEL_FIND, "SELECT id FROM models WHERE fingerprint = ?1")                               \
    X(MODEL_INSERT, "INSERT INTO models(fingerprint, path, dims) VALUES (?1, ?2, ?3)")          \
    X(DOC_BY_NAME, "SELECT id, model_id, source_hash, status, chunk_tokens FROM documents "     \
                   "WHERE name = ?1")                                                          \
    X(DOC_INSERT, "INSERT INTO documents(name, model_id, source_hash, chunk_tokens) "           \
                  "VALUES (?1, ?2, ?3, ?4)")                                                   \
    X(DOC_INSERT_IMPORT, "INSERT INTO documents(name, model_id, source_hash, chunk_tokens, "    \
                         "status, token_len, byte_len, base_position, origin) "                \
                         "VALUES (?1, ?2, ?3, ?4, 'complete', ?5, 0, ?5, 'import')")            \
    X(MODEL_FP, "SELECT fingerprint FROM models WHERE id = ?1")                                 \
    X(DOC_SESSIONS, "SELECT count(*) FROM sessions WHERE doc_id = ?1")                          \
    X(DOC_DELETE, "DELETE FROM documents WHERE id = ?1")                                        \
    X(DOC_TOUCH, "UPDATE documents SET updated = CAST(strftime('%s','now') AS INTEGER) "       \
                 "WHERE id = ?1")                                                              \
    X(DOC_STATE, "SELECT d.status, d.chunk_tokens, d.source_hash, m.fingerprint, "              \
                 "l.seq, l.token_end, l.byte_end, "                                            \
                 "(SELECT max(position) FROM checkpoints WHERE doc_id = d.id), "               \
                 "d.base_position, d.origin, d.name "                                          \
                 "FROM documents d JOIN models m ON m.id = d.model_id "                        \
                 "LEFT JOIN (SELECT seq, token_end, byte_end FROM chunks WHERE doc_id = ?1 "   \
                 "ORDER BY seq DESC LIMIT 1) l WHERE d.id = ?1")                               \
    X(DOC_FINISH, "UPDATE documents SET status = 'complete', byte_len = ?2, token_len = ?3, "  \
                  "error = NULL, updated = CAST(strftime('%s','now') AS INTEGER) WHERE id = ?1") \
    X(DOC_FAIL, "UPDATE documents SET status = 'failed', error = ?2, "                         \
                "updated = CAST(strftime('%s','now') AS INTEGER) WHERE id = ?1")               \
    X(CHUNK_INSERT, "INSERT INTO chunks(doc_id, seq, token_start, token_end, byte_start, "      \
                    "byte_end, text, tokens) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")         \
    X(CHUNK_TOKENS, "SELECT token_start, token_end, tokens FROM chunks "                        \
                    "WHERE doc_id = ?1 AND token_end > ?2 AND token_start < ?3 "              \
                    "ORDER BY token_end")                                                      \
    X(CKPT_DELETE_DOC_AT, "DELETE FROM checkpoints WHERE doc_id = ?1 AND position = ?2")        \
    X(CKPT_DELETE_SES_AT, "DELETE FROM checkpoints WHERE session_id = ?1 AND position = ?2")    \
    X(CKPT_INSERT, "INSERT INTO checkpoints(doc_id, session_id, position, fingerprint, "        \
                   "checksum, size, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")               \
    X(CKPT_LIST_DOC, "SELECT id, position FROM checkpoints WHERE doc_id = ?1")                  \
    X(CKPT_LIST_SES, "SELECT id, position FROM checkpoints WHERE session_id = ?1")              \
    X(CKPT_DELETE_ID, "DELETE FROM checkpoints WHERE id = ?1")                                  \
    X(CKPT_AT_DOC, "SELECT id, position, fingerprint, checksum, size FROM checkpoints "         \
                   "WHERE doc_id = ?1 AND position <= ?2 ORDER BY position DESC LIMIT 1")      \
    X(CKPT_AT_SES, "SELECT id, position, fingerprint, checksum, size FROM checkpoints "         \
                   "WHERE session_id = ?1 AND position >= ?2 AND position <= ?3 "             \
                   "ORDER BY position DESC LIMIT 1")                                           \
    X(SEARCH, "SELECT d.name, c.doc_id, c.seq, c.token_start, c.token_end, c.byte_start, "     \
              "c.byte_end, bm25(chunks_fts) AS score, "                                        \
              "snippet(chunks_fts, 0, char(57344), char(57345), '...', 16) "                   \
              "FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "                      \
              "JOIN documents d ON d.id = c.doc_id "                                           \
              "WHERE chunks_fts MATCH ?1 AND (?2 IS NULL OR d.name = ?2) "                     \
              "ORDER BY score LIMIT ?3")                                                       \
    X(DOC_LIST, "SELECT d.id, d.name, d.status, d.error, d.created, d.updated, "               \
                "coalesce(l.seq + 1, 0), coalesce(l.token_end, d.base_position), "            \
                "coalesce(l.byte_end, 0), "                                                    \
                "(SELECT count(*) FROM checkpoints WHERE doc_id = d.id), "                     \
                "(SELECT coalesce(sum(size), 0) FROM checkpoints WHERE doc_id = d.id), "       \
                "d.base_position, d.origin "                                                   \
                "FROM documents d LEFT JOIN chunks l ON l.doc_id = d.id AND l.seq = "          \
                "(SELECT max(seq) FROM chunks WHERE doc_id = d.id) "                           \
                "WHERE ?1 IS NULL OR d.name = ?1 ORDER BY d.name")                             \
    X(SES_INSERT, "INSERT INTO sessions(id, parent_id, doc_id, base, head) "                    \
                  "VALUES (?1, ?2, ?3, ?4, ?4)")                                               \
    X(SES_GET, "SELECT s.id, s.parent_id, s.doc_id, s.base, s.head, s.created, s.updated, "    \
               "(SELECT count(*) FROM checkpoints WHERE session_id = s.id), "                  \
               "(SELECT count(*) FROM sessions c WHERE c.parent_id = s.id) "                   \
               "FROM sessions s WHERE s.id = ?1")                                              \
    X(SES_LIST, "SELECT s.id, s.parent_id, s.doc_id, s.base, s.head, s.created, s.updated, "   \
                "(SELECT count(*) FROM checkpoints WHERE session_id = s.id), "                 \
                "(SELECT count(*) FROM sessions c WHERE c.parent_id = s.id) "                  \
                "FROM sessions s WHERE ?1 < 0 OR s.doc_id = ?1 ORDER BY s.created, s.rowid")   \
    X(SES_SET_HEAD, "UPDATE sessions SET head = ?2, "                                           \
                    "updated = CAST(strftime('%s','now') AS INTEGER) WHERE id = ?1")           \
    X(SES_TOK_INSERT, "INSERT INTO session_tokens(session_id, pos_start, pos_end, tokens) "     \
                      "VALUES (?1, ?2, ?3, ?4)")                                               \
    X(SES_TOKENS, "SELECT pos_start, pos_end, tokens FROM session_tokens "                      \
                  "WHERE session_id = ?1 AND pos_end > ?2 AND pos_start < ?3 "                \
                  "ORDER BY pos_start")                                                        \
    X(SES_LINK, "SELECT parent_id, doc_id, base, head FROM sessions WHERE id = ?1")             \
    X(SES_TAIL, "SELECT max(pos_end) FROM session_tokens WHERE session_id = ?1")                \
    X(DOC_MAX_END, "SELECT max(token_end) FROM chunks WHERE doc_id = ?1")                       \
    X(SES_SUBTREE, "WITH RECURSIVE sub(id, depth) AS (SELECT ?1, 0 UNION ALL "                  \
                   "SELECT s.id, sub.depth + 1 FROM sessions s JOIN sub ON s.parent_id = sub.id) " \
                   "SELECT id FROM sub ORDER BY depth DESC")                                   \
    X(SES_DELETE, "DELETE FROM sessions WHERE id = ?1")                                        \
    X(REQ_INSERT, "INSERT INTO request_keys(key, session_id, head_before, head_after, result) " \
                  "VALUES (?1, ?2, ?3, ?4, ?5)")                                               \
    X(REQ_FIND, "SELECT session_id, head_before, head_after, result FROM request_keys "         \
                "WHERE key = ?1")

enum coil_store__stmt_id {
#define COIL_X_STMT_ENUM(name, sql) COIL_STORE__##name,
    COIL_STORE_STMTS(COIL_X_STMT_ENUM)
#undef COIL_X_STMT_ENUM
    COIL_STORE__NSTMT
};

struct coil_store {
    sqlite3 *db;
    char *path;
    coil_store_options_t opt;
    sqlite3_stmt *stmt[COIL_STORE__NSTMT];
    int bm25_doc; /* coil_bm25doc() is registered with FTS5 on db */
};

/* The prepared statement `id`, reset and unbound, or NULL with err set. */
sqlite3_stmt *coil_store__stmt(coil_store_t *st, int id, coil_err_t *err);
/* Translates SQLite result rc into a COIL_E* code and sets err to
 * "<op>: <sqlite3_errmsg> (<path>)".  Returns the code. */
int coil_store__fail(coil_store_t *st, coil_err_t *err, int rc, const char *op);
/* BEGIN IMMEDIATE / COMMIT / ROLLBACK (rollback is a no-op outside a
 * transaction and never fails the caller). */
int coil_store__begin(coil_store_t *st, coil_err_t *err);
int coil_store__commit(coil_store_t *st, coil_err_t *err);
void coil_store__rollback(coil_store_t *st);
/* BEGIN (deferred): several reads in one snapshot; end it with rollback. */
int coil_store__begin_read(coil_store_t *st, coil_err_t *err);
/* Steps a statement that returns no rows; resets it.  0 or an error. */
int coil_store__exec(coil_store_t *st, sqlite3_stmt *s, const char *op, coil_err_t *err);

/* Inserts a checkpoint row for a document (doc_id >= 0) or a session (sid),
 * replacing one at the same position, then thins that owner's checkpoints
 * by the store's policy.  Call inside a write transaction. */
int coil_store__ckpt_write(coil_store_t *st, int64_t doc_id, const char *sid,
                           const coil_store_ckpt_t *ck, coil_err_t *err);
/* Reads the checkpoint row selected by `s` (already bound; columns id,
 * position, fingerprint, checksum, size) into out.  Returns 0, COIL_ENOTFOUND
 * when s yields no row, or an error.  Resets s. */
int coil_store__ckpt_read(coil_store_t *st, sqlite3_stmt *s, coil_store_blob_t *out,
                          coil_err_t *err);
/* Copies the tokens of the rows of `s` (columns start, end, int32 blob),
 * clipped to positions [lo, hi), into ids[pos - origin]; adds the count
 * copied to *filled.  Resets s. */
/* Ranges of more tokens than this are first checked against the token bytes
 * the rows really hold before a buffer is allocated for them: a file
 * someone else wrote can claim any head or grid end. */
#define COIL_STORE__TOKENS_CHECKED ((int64_t)1 << 20)
/* Adds to *have the tokens the rows of one owner hold (a document's chunks:
 * sid NULL; else session sid's own tokens); 0 or an error. */
int coil_store__tokens_held(coil_store_t *st, int64_t doc_id, const char *sid, int64_t *have, coil_err_t *err);
int coil_store__tokens_fill(coil_store_t *st, sqlite3_stmt *s, int64_t origin, int64_t lo,
                            int64_t hi, int32_t *ids, int64_t *filled, coil_err_t *err);
/* The largest token or byte position a document can reach (2^62: no file
 * holds that much; a larger one is a damaged or hostile row, and adding a
 * chunk's length to it must not overflow). */
#define COIL_STORE__POS_MAX ((int64_t)1 << 62)
/* Document state as DOC_STATE reads it (-1 for "none" fields).  token_end
 * is the grid's end: the last chunk's token_end, else base_position. */
typedef struct coil_store__doc_state {
    char status[16];
    char origin[8];   /* "ingest" or "import" */
    char name[128];   /* for messages; truncated if longer */
    int64_t chunk_tokens;
    uint64_t source_hash, fingerprint;
    int64_t n_chunks, token_end, byte_end, ckpt_position;
    int64_t base_position; /* history before it is not in this database */
} coil_store__doc_state_t;
/* COIL_ENOTFOUND if there is no document doc_id. */
int coil_store__doc_state(coil_store_t *st, int64_t doc_id, coil_store__doc_state_t *ds,
                          coil_err_t *err);
/* `code` with a message naming the document and saying its history was
 * imported ("<what> from position <from>: ...") if from is below document
 * doc_id's base_position; 0 otherwise (also when the document is not found:
 * the caller's own check reports that).  For token reads and session starts. */
int coil_store__doc_history(coil_store_t *st, int64_t doc_id, int64_t from, int code,
                            const char *what, coil_err_t *err);
/* Reads PRAGMA user_version into *version; COIL_EVERSION (with the file
 * untouched) if it is newer than the embedded migrations (store_migrate.c). */
int coil_store__version_check(coil_store_t *st, int *version, coil_err_t *err);
/* Applies the embedded migrations the file lacks, in one BEGIN IMMEDIATE
 * transaction (store_migrate.c). */
int coil_store__migrate(coil_store_t *st, coil_err_t *err);

/* Public entry points accept err == NULL; this gives them a local one so
 * the code below can always read err->code. */
#define COIL_STORE__ERR_LOCAL(err)                                                              \
    coil_err_t err##_local_;                                                                    \
    if (!(err))                                                                                 \
    (err) = &err##_local_

/* uint64 <-> the INTEGER column with the same bits. */
static inline int64_t coil_store__i64(uint64_t u)
{
    int64_t i;
    memcpy(&i, &u, sizeof i);
    return i;
}
static inline uint64_t coil_store__u64(int64_t i)
{
    uint64_t u;
    memcpy(&u, &i, sizeof u);
    return u;
}

#endif
