/* store.h -- coil's SQLite state store: documents, chunks, checkpoints,
 * sessions and keyword search in one database file.
 *
 * The ingest loop streams a document chunk by chunk; after some chunks it
 * hands the store the engine's recurrent state as an opaque blob.  The store
 * keeps the chunk grid (text, byte ranges, token ids for replay), an FTS5
 * index over the text and the checkpoints, so a document can be resumed
 * after a crash, continued in sessions, forked and searched.
 *
 * Threads and processes: one coil_store_t per thread (or process); a handle
 * is not thread-safe and must not cross fork().  Any number of handles, in
 * any processes, may open the same file: readers never block, writers take
 * turns (BEGIN IMMEDIATE + busy timeout; COIL_EBUSY when the timeout runs
 * out, with nothing written).
 *
 * Durability (the `synchronous` option; the database is always in WAL mode):
 *   FULL (default)  the WAL is fsynced at every commit: a call that returned
 *                   0 survives a process crash and a power cut.
 *   NORMAL          fsync only at WAL checkpoints: a process crash loses
 *                   nothing committed; a power cut or OS crash may lose the
 *                   last transactions (they roll back as a whole) but never
 *                   corrupts the database.
 *
 * Atomicity: every call that writes is one transaction.  On any error the
 * transaction is rolled back: nothing half-done is ever visible and the
 * database keeps passing PRAGMA integrity_check.
 *
 * Imported documents (coil_store_doc_import, `coil state import`): a
 * document can start from a state made elsewhere, after P tokens whose text
 * and ids are not in this database.  Its base_position is P (0 for every
 * ingested document); it has no chunks and one checkpoint at P, is
 * 'complete' with P tokens and 0 bytes, and positions below P cannot be
 * read, resumed or branched from (COIL_ENOTFOUND / COIL_EINVAL saying so).
 *
 * Invariants kept for every document (checked by coil_store_verify):
 *   I1  chunks are contiguous: seq 0..n-1, chunk 0 starts at token
 *       base_position and byte 0, each chunk starts where the previous one
 *       ended.
 *   I2  every document checkpoint sits at a chunk boundary that is
 *       committed: base_position or the token_end of one of its chunks.  A
 *       checkpoint never exists without all the chunks it covers.  An
 *       imported document has its checkpoint at base_position.
 *   I3  every checkpoint blob has the recorded size and XXH3-64 checksum.
 *   I4  a 'complete' document's token/byte lengths equal its last chunk's
 *       ends (base_position and 0 when it has no chunks).
 * Sessions never start or fork below their document's base_position.
 * Chunks beyond the newest checkpoint exist only when the caller committed
 * them without one; resuming replays their tokens from the checkpoint.
 */
#ifndef COIL_STORE_H
#define COIL_STORE_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct coil_store coil_store_t;

/* --- checkpoint retention policy -------------------------------------------
 * Checkpoints are taken every `interval` tokens (plus wherever the caller
 * wants one, e.g. at the end of a document or a session turn).  Young
 * checkpoints -- younger than dense * interval tokens behind the newest --
 * are all kept.  Older ones thin out by powers of two: a checkpoint of age
 * a >= dense * interval is kept only if its position is a multiple of
 * interval * 2^k, k = floor(log2(a / (dense * interval))) + 1.  So about
 * dense/2 checkpoints survive per doubling of age: O(dense * log N) in all,
 * and resuming at age a replays at most ~2a/dense tokens.  A checkpoint
 * thinned once stays thinned (the rule only gets stricter with age), and
 * position 0 is always "kept".  dense == 0 disables thinning. */
typedef struct coil_store_policy {
    int64_t interval; /* tokens between checkpoints; > 0; default 4096 */
    int64_t dense;    /* intervals kept at full density; default 8 */
} coil_store_policy_t;

/* Fills the default policy (interval 4096, dense 8). */
void coil_store_policy_default(coil_store_policy_t *p);
/* Pure: whether the checkpoint at `pos` is kept while the newest checkpoint
 * is at `newest` (pos <= newest).  Always true for pos == newest. */
bool coil_store_policy_keep(const coil_store_policy_t *p, int64_t pos, int64_t newest);
/* Pure: whether a checkpoint is due at `pos` given the previous one at
 * `last` (-1 if none): true when [last, pos] crosses a multiple of
 * interval.  The ingest loop also checkpoints at the end of a document. */
bool coil_store_policy_due(const coil_store_policy_t *p, int64_t last, int64_t pos);
/* Pure: how many checkpoints at multiples of interval in (0, newest], plus
 * the one at newest, the policy keeps.  For sizing estimates. */
int64_t coil_store_policy_count(const coil_store_policy_t *p, int64_t newest);

/* --- open / close ----------------------------------------------------------- */
enum coil_store_sync {
    COIL_STORE_SYNC_FULL = 0,   /* default; see the header comment */
    COIL_STORE_SYNC_NORMAL = 1,
};

typedef struct coil_store_options {
    int synchronous;          /* enum coil_store_sync */
    int busy_timeout_ms;      /* how long a write waits for the lock; default 5000 */
    int64_t max_db_bytes;     /* quota on the main file, 0 = none; writes that
                                 would pass it fail with COIL_EFULL */
    coil_store_policy_t policy; /* checkpoint thinning, applied at each commit */
    bool must_exist;          /* a missing file is COIL_ENOTFOUND instead of a new database */
    const char *vfs;          /* SQLite VFS name (sqlite3_vfs_register); NULL = the default.
                                 For tests: tests/faultvfs.h injects I/O errors and crashes */
} coil_store_options_t;

/* Fills the defaults (FULL, 5000 ms, no quota, default policy). */
void coil_store_options_default(coil_store_options_t *o);

/* Opens (creating if needed, unless opt->must_exist) the database at `path`, switches it to WAL and
 * applies any pending schema migrations in one transaction.  opt NULL means
 * the defaults.  Returns NULL on failure with err set: COIL_EVERSION when the
 * file's schema is newer than this build (the file is left untouched),
 * COIL_EBUSY when a migration could not get the write lock, COIL_EDB for a
 * file that is not a database, COIL_ENOTFOUND for a missing file when
 * opt->must_exist. */
coil_store_t *coil_store_open(const char *path, const coil_store_options_t *opt,
                              coil_err_t *err);
/* Closes the handle and sets *st to NULL; NULL and *st == NULL accepted. */
void coil_store_close(coil_store_t **st);
/* The schema version this build creates / the file has after open. */
int coil_store_schema_version(void);
/* The checkpoint policy this handle applies (borrowed, valid until close). */
const coil_store_policy_t *coil_store_get_policy(const coil_store_t *st);

/* --- models --------------------------------------------------------------- */
/* Finds the model with this fingerprint or inserts it (path, dims_json: a
 * JSON object with the model's dimensions, NULL = "{}").  An existing row is
 * not changed.  *model_id gets its id. */
int coil_store_model_ensure(coil_store_t *st, uint64_t fingerprint, const char *path,
                            const char *dims_json, int64_t *model_id, coil_err_t *err);

/* --- documents ------------------------------------------------------------ */
enum coil_store_doc_flags {
    COIL_STORE_DOC_REPLACE = 1, /* drop an existing document of that name */
};

/* What coil_store_doc_begin found under the name. */
enum coil_store_doc_begun {
    COIL_STORE_DOC_NEW = 0,     /* a new row was created */
    COIL_STORE_DOC_RESUMED = 1, /* an interrupted ingest of the same model, source and grid */
    COIL_STORE_DOC_DONE = 2,    /* a complete document of the same model, source and grid */
};

/* Starts ingesting document `name`.  If an 'ingesting' document with the same
 * name, model, source hash and chunk grid exists (a crashed ingest), it is
 * resumed: *resumed = COIL_STORE_DOC_RESUMED and *doc_id is the existing one
 * -- use coil_store_doc_progress and coil_store_ckpt_latest to continue.  A
 * 'complete' one with all four the same is COIL_STORE_DOC_DONE (nothing to do,
 * unless flags has COIL_STORE_DOC_REPLACE).  Otherwise a new row is created
 * (COIL_STORE_DOC_NEW).  Any other existing document with that name is
 * COIL_ESTATE, the message naming what differs (model, chunk grid, input),
 * unless flags has COIL_STORE_DOC_REPLACE, which deletes it with its chunks
 * and checkpoints first (COIL_ESTATE if sessions still use it).  Standard
 * input has no hash (0): the caller must compare the tokens itself.
 * chunk_tokens > 0 is the grid size recorded for the document. */
int coil_store_doc_begin(coil_store_t *st, const char *name, int64_t model_id,
                         uint64_t source_hash, int64_t chunk_tokens, unsigned flags,
                         int64_t *doc_id, int *resumed, coil_err_t *err);

/* The grid size recorded for an imported document (it has no chunks; this
 * is the chunking later feeds from it use). */
#define COIL_STORE_IMPORT_CHUNK_TOKENS 512

/* Creates document `name` from a state made elsewhere: the blob (size > 0
 * bytes, copied; its checksum is computed like any checkpoint's) becomes
 * the document's checkpoint at `position` and the document is 'complete'
 * with `position` tokens, no chunks and base_position = position (see the
 * header comment).  fingerprint must be model model_id's (COIL_EMISMATCH;
 * COIL_ENOTFOUND for no such model).  The store does not parse the blob:
 * the caller checks that it is a valid state of that model at `position`
 * (coil_state_deserialize).  A document of that name is COIL_ESTATE unless
 * flags has COIL_STORE_DOC_REPLACE, which deletes it first under the rules
 * of coil_store_doc_begin.  One transaction; *doc_id gets the new id. */
int coil_store_doc_import(coil_store_t *st, const char *name, int64_t model_id, const void *blob,
                          size_t size, uint64_t fingerprint, int64_t position, unsigned flags,
                          int64_t *doc_id, coil_err_t *err);

/* One chunk of the grid.  tokens has token_end - token_start ids; text has
 * text_len bytes (UTF-8, the source bytes [byte_start, byte_end)). */
typedef struct coil_store_chunk {
    int64_t seq;
    int64_t token_start, token_end;
    int64_t byte_start, byte_end;
    const char *text;
    size_t text_len;
    const int32_t *tokens;
} coil_store_chunk_t;

/* A checkpoint to write: the engine's state after `position` tokens.  The
 * store computes the checksum (XXH3-64) and copies the bytes. */
typedef struct coil_store_ckpt {
    int64_t position;
    uint64_t fingerprint;
    const void *data;
    size_t size;
} coil_store_ckpt_t;

/* The atomic unit of ingest: appends chunks[0..n) to document doc_id and,
 * if ckpt is not NULL, writes that checkpoint and thins older ones by the
 * store's policy -- all in ONE transaction.  The chunks must continue the
 * stored grid (I1) and the checkpoint must sit at the new end of the grid
 * (I2; n may be 0 to checkpoint the current end again, replacing a
 * checkpoint at the same position).  The checkpoint's fingerprint must be
 * the document's model fingerprint (COIL_EMISMATCH otherwise).  The document
 * must be 'ingesting' (COIL_ESTATE).  On error nothing is written. */
int coil_store_commit_chunks(coil_store_t *st, int64_t doc_id,
                             const coil_store_chunk_t *chunks, size_t n,
                             const coil_store_ckpt_t *ckpt, coil_err_t *err);

/* Where a document's stored grid ends. */
typedef struct coil_store_progress {
    int64_t n_chunks;      /* committed chunks (next seq) */
    int64_t token_end;     /* end of the last chunk, base_position if none */
    int64_t byte_end;
    int64_t ckpt_position; /* newest checkpoint, -1 if none */
    int64_t chunk_tokens;
    uint64_t source_hash;
    uint64_t fingerprint;  /* the document's model */
    int64_t base_position; /* > 0 only for an imported document: the grid
                              starts there, earlier tokens are not stored */
} coil_store_progress_t;
int coil_store_doc_progress(coil_store_t *st, int64_t doc_id, coil_store_progress_t *out,
                            coil_err_t *err);

/* Marks the document complete.  bytes/tokens must equal the grid's end (I4),
 * else COIL_ESTATE. */
int coil_store_doc_finish(coil_store_t *st, int64_t doc_id, int64_t bytes, int64_t tokens,
                          coil_err_t *err);
/* Marks the document failed with a message (kept in documents.error). */
int coil_store_doc_fail(coil_store_t *st, int64_t doc_id, const char *message,
                        coil_err_t *err);
/* Finds a document by name: COIL_ENOTFOUND if there is none. */
int coil_store_doc_find(coil_store_t *st, const char *name, int64_t *doc_id, coil_err_t *err);

/* Token ids of document positions [from, to) for replay, read from the chunk
 * grid (crossing chunk boundaries as needed).  *ids is malloc'd (free() it;
 * NULL when *n == 0).  COIL_EINVAL if [from, to) is not inside the grid;
 * COIL_ENOTFOUND (naming the document) if from is below an imported
 * document's base_position. */
int coil_store_doc_tokens(coil_store_t *st, int64_t doc_id, int64_t from, int64_t to,
                          int32_t **ids, size_t *n, coil_err_t *err);

/* --- checkpoints ---------------------------------------------------------- */
/* A checkpoint read back.  Zero-initialise before the first use; data is
 * reused when cap is large enough, else realloc'd.  Free with
 * coil_store_blob_clear. */
typedef struct coil_store_blob {
    int64_t position;
    uint64_t fingerprint;
    uint64_t checksum;
    size_t size;
    void *data; /* owned by the struct */
    size_t cap;
} coil_store_blob_t;
void coil_store_blob_clear(coil_store_blob_t *b);

/* Newest checkpoint of document doc_id at or before position at (-1 = the
 * newest).  COIL_ENOTFOUND if none; COIL_ECHECKSUM if the stored bytes do not
 * match the stored checksum (out->data then holds the bad bytes). */
int coil_store_ckpt_latest(coil_store_t *st, int64_t doc_id, int64_t at,
                           coil_store_blob_t *out, coil_err_t *err);
/* COIL_EMISMATCH (with both fingerprints in the message) unless the blob was
 * made by the model with fingerprint `expected`. */
int coil_store_ckpt_check_model(const coil_store_blob_t *b, uint64_t expected,
                                coil_err_t *err);

/* --- search --------------------------------------------------------------- */
/* One hit; strings are borrowed and valid only during the callback. */
typedef struct coil_store_hit {
    const char *doc_name;
    int64_t doc_id, seq;
    int64_t token_start, token_end;
    int64_t byte_start, byte_end;
    double score;          /* BM25, higher is better */
    const char *snippet;   /* the chunk's text around the matches, gaps as "..." (plain text) */
    const int64_t *marks;  /* n_marks [start, end) byte ranges of snippet that matched, in order */
    size_t n_marks;
} coil_store_hit_t;
/* Return nonzero to stop early. */
typedef int (*coil_store_hit_fn)(const coil_store_hit_t *hit, void *ud);

/* FTS5 keyword search over chunk text, best first, at most `limit` hits
 * (limit <= 0: 20), optionally within one document (doc_name NULL = all).
 * query uses FTS5 syntax (words, "phrases", AND/OR/NOT, prefix*); a malformed
 * query is COIL_EINVAL.  Returns 0 or an error. */
int coil_store_search(coil_store_t *st, const char *query, const char *doc_name, int limit,
                      coil_store_hit_fn fn, void *ud, coil_err_t *err);

/* The same search within one document, ranked by BM25 with that document's
 * own statistics -- its chunk count, mean chunk length and each term's
 * chunk frequency in it -- so the ranking of a document's chunks does not
 * change when other documents are stored (FTS5's bm25() uses the whole
 * index's).  terms: n_terms words (1..COIL_STORE_MAX_TERMS), each searched
 * as one quoted phrase, joined by OR: plain text, never FTS5 syntax.  The
 * formula is FTS5's (k1 1.2, b 0.75; an idf <= 0 counts 1e-6), so a store
 * holding only this document gives FTS5's scores.  Best first, ties by
 * chunk order; hit->score is the BM25 score (higher is better). */
#define COIL_STORE_MAX_TERMS 64
int coil_store_search_doc(coil_store_t *st, int64_t doc_id, const char *const *terms, size_t n_terms, int limit,
                          coil_store_hit_fn fn, void *ud, coil_err_t *err);

/* --- sessions ------------------------------------------------------------- */
#define COIL_STORE_SESSION_ID_LEN 16 /* hex chars; buffers need +1 */

/* Starts a session on document doc_id at position (base_position <=
 * position <= the grid's end; COIL_EINVAL otherwise, saying so when the
 * position is in an imported document's missing history): its timeline is
 * the document's first `position` tokens.  The new id (16 random hex
 * chars, NUL-terminated) goes to id_out. */
int coil_store_session_new(coil_store_t *st, int64_t doc_id, int64_t position,
                           char id_out[COIL_STORE_SESSION_ID_LEN + 1], coil_err_t *err);
/* Forks session parent at position (-1 = its head; <= its head, >= the
 * document's base_position): the child shares the parent's history up to
 * position without copying it.  The parent
 * is unchanged by anything later done to the child. */
int coil_store_session_fork(coil_store_t *st, const char *parent, int64_t position,
                            char id_out[COIL_STORE_SESSION_ID_LEN + 1], coil_err_t *err);
/* A session write made at most once.  key: 1..COIL_STORE_KEY_MAX
 * characters of [A-Za-z0-9._:-], chosen by the sender; result: JSON text (or
 * NULL) to give a repeat of the request. */
#define COIL_STORE_KEY_MAX 128
typedef struct coil_store_request {
    const char *key;
    const char *result;
} coil_store_request_t;
/* 1 if key is a well-formed request key, else 0. */
int coil_store_request_key_valid(const char *key);

/* Appends n tokens at the session's head and, if ckpt is not NULL, a
 * checkpoint at the new head (COIL_EINVAL otherwise; COIL_EMISMATCH for the
 * wrong model), thinning the session's older checkpoints: one transaction.
 * With req (may be NULL) the key is recorded in that transaction; a key
 * already used is COIL_ESTATE and nothing is written. */
int coil_store_session_append(coil_store_t *st, const char *id, const int32_t *tokens,
                              size_t n, const coil_store_ckpt_t *ckpt,
                              const coil_store_request_t *req, coil_err_t *err);

/* What the append that used a request key did. */
typedef struct coil_store_request_info {
    char session[COIL_STORE_SESSION_ID_LEN + 1];
    int64_t head_before, head_after;
    char *result; /* the recorded JSON text (malloc'd; the caller frees) or NULL */
} coil_store_request_info_t;
/* Looks key up: 0 and *out filled, or COIL_ENOTFOUND if no write used it
 * (or its session was deleted since).  With session not NULL, a key used
 * for another session is COIL_ESTATE (*out untouched). */
int coil_store_request_find(coil_store_t *st, const char *key, const char *session,
                            coil_store_request_info_t *out, coil_err_t *err);

typedef struct coil_store_session_info {
    char id[COIL_STORE_SESSION_ID_LEN + 1];
    char parent[COIL_STORE_SESSION_ID_LEN + 1]; /* "" for a root session */
    int64_t doc_id;
    int64_t base;   /* where the session's own tokens start */
    int64_t head;   /* position after its last token */
    int64_t n_checkpoints; /* its own */
    int64_t n_children;
    int64_t created, updated;
} coil_store_session_info_t;
int coil_store_session_get(coil_store_t *st, const char *id, coil_store_session_info_t *out,
                           coil_err_t *err);
/* Calls fn for every session (of document doc_id, or all if doc_id < 0),
 * oldest first; a nonzero return stops. */
int coil_store_session_list(coil_store_t *st, int64_t doc_id,
                            int (*fn)(const coil_store_session_info_t *s, void *ud), void *ud,
                            coil_err_t *err);
/* Token ids of positions [from, to) of the session's timeline (its own
 * tokens, its ancestors' and the document's), as coil_store_doc_tokens. */
int coil_store_session_tokens(coil_store_t *st, const char *id, int64_t from, int64_t to,
                              int32_t **ids, size_t *n, coil_err_t *err);
/* Newest checkpoint on the session's timeline at or before `at` (-1 = head),
 * looking at its own checkpoints, then its ancestors' up to the fork points,
 * then the document's.  Errors as coil_store_ckpt_latest. */
int coil_store_session_ckpt(coil_store_t *st, const char *id, int64_t at,
                            coil_store_blob_t *out, coil_err_t *err);
/* Deletes a session with its tokens and checkpoints.  A session with
 * children is refused with COIL_ESTATE unless `cascade`, which deletes the
 * whole subtree. */
int coil_store_session_delete(coil_store_t *st, const char *id, bool cascade, coil_err_t *err);

/* --- listings and checks -------------------------------------------------- */
typedef struct coil_store_doc_info {
    int64_t id;
    const char *name;   /* borrowed: valid during the callback */
    const char *status; /* "ingesting", "complete" or "failed" */
    const char *error;  /* NULL unless failed */
    int64_t tokens, bytes; /* the grid's end (== the totals once complete);
                              an imported document: its position, 0 */
    int64_t n_chunks, n_checkpoints;
    int64_t checkpoint_bytes;
    int64_t created, updated;
    int64_t base_position; /* 0 unless imported */
    const char *origin;    /* "ingest" or "import" (borrowed, as name) */
} coil_store_doc_info_t;
/* Calls fn for every document (or only `name` if not NULL), by name; a
 * nonzero return stops.  COIL_ENOTFOUND if name is given and absent. */
int coil_store_doc_list(coil_store_t *st, const char *name,
                        int (*fn)(const coil_store_doc_info_t *d, void *ud), void *ud,
                        coil_err_t *err);

/* Full check: PRAGMA integrity_check, the FTS index against its content,
 * invariants I1-I4 for every document and the sessions' token ranges (reads
 * every blob; O(database size)).  Takes the write lock briefly for the FTS5
 * check, so it can return COIL_EBUSY.  0 if all hold, COIL_EDB /
 * COIL_ECHECKSUM with the first problem in err otherwise. */
int coil_store_verify(coil_store_t *st, coil_err_t *err);

#endif
