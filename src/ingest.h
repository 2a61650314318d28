/* ingest.h -- stream a document through the model into the store, and
 * rebuild states from the store.
 *
 *   text -> tokenizer (incremental) -> fixed grid of chunk_tokens tokens ->
 *   engine (state only) -> store: chunk rows + FTS5 + checkpoint, one
 *   transaction per checkpoint
 *
 * The chunk grid is fixed by the document's chunk_tokens: chunk k is tokens
 * [k*C, (k+1)*C).  Checkpoints sit on grid boundaries (every policy interval,
 * which must be a multiple of C, and at the end).  Crash resume re-tokenizes
 * the input from the start (checking the prefix against the stored token ids,
 * so a changed input is an error), restores the newest checkpoint, replays
 * the stored tokens after it chunk by chunk on the same grid and continues:
 * the final state is bit-identical to an uninterrupted run.  Memory is
 * bounded by the chunk size and the checkpoint interval, never by the
 * document.
 */
#ifndef COIL_INGEST_H
#define COIL_INGEST_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "error.h"
#include "model.h"
#include "state.h"
#include "store.h"
#include "tokenizer.h"

typedef struct coil_ingest_progress {
    int64_t tokens, bytes;  /* done so far (including a resumed prefix) */
    int64_t total_bytes;    /* -1 if unknown (stdin) */
    double seconds;         /* since the start of this run */
    double tokens_per_s;    /* model tokens processed by this run per second */
    int64_t resumed_at;     /* checkpoint position this run resumed from, -1 if fresh */
    int64_t checkpoints;    /* written by this run */
} coil_ingest_progress_t;

typedef void (*coil_ingest_progress_fn)(const coil_ingest_progress_t *p, void *ud);

typedef struct coil_ingest_options {
    int64_t chunk_tokens;           /* the grid; 0 = 512 */
    bool replace;                   /* replace a complete document of that name */
    const volatile sig_atomic_t *stop; /* set (e.g. by SIGTERM): finish the chunk, checkpoint, COIL_EINTR */
    coil_ingest_progress_fn progress;  /* may be NULL */
    void *progress_ud;
    double progress_interval_s;     /* 0 = 0.5 s */
    const char *model_path;         /* recorded in the models table; may be NULL */
    bool allow_binary;              /* ingest input that does not look like text (see below) */
} coil_ingest_options_t;

typedef struct coil_ingest_result {
    int64_t doc_id;
    int64_t tokens, bytes;
    int64_t resumed_at;     /* -1 if this was a fresh ingest */
    int64_t checkpoints;
    double seconds;
    bool already;           /* the document was complete with this input, model and grid: nothing done */
} coil_ingest_result_t;

/* Ingests the file at path ("-" = standard input) as document `name`.
 * The engine's model must be the one the tokenizer belongs to.  Resumes a
 * crashed ingest of the same name/model/input.  On COIL_EINTR the document
 * stays 'ingesting' with a checkpoint at the last chunk, ready to resume.
 * Other errors leave the committed prefix intact (also resumable).
 * A complete document of the same name, model, chunk grid and input is left
 * as it is (res->already; standard input is read and compared token by token
 * first), and a complete one that differs is COIL_ESTATE naming what differs,
 * unless opt->replace.  Input that is not text -- a NUL byte, or more than one
 * byte in 8 not valid UTF-8 -- is COIL_EINVAL before any work unless
 * opt->allow_binary (for standard input: at the first such piece read). */
int coil_ingest_file(coil_store_t *st, coil_engine_t *e, const coil_tokenizer_t *tok, const char *name,
                     const char *path, const coil_ingest_options_t *opt, coil_ingest_result_t *res,
                     coil_err_t *err);

/* Rebuilds the state of document doc_id after `at` tokens (-1 = its end):
 * the newest checkpoint at or before `at`, then the stored tokens up to `at`
 * replayed on the document's chunk grid.  st must be shaped for the engine's
 * model; a checkpoint of another model is COIL_EMISMATCH. */
int coil_resume_doc(coil_store_t *store, coil_engine_t *e, int64_t doc_id, int64_t at, coil_state_t *st,
                    coil_err_t *err);

/* The same for a session's timeline (its own tokens, its ancestors', the
 * document's), `at` = -1 for its head. */
int coil_resume_session(coil_store_t *store, coil_engine_t *e, const char *session, int64_t at,
                        coil_state_t *st, coil_err_t *err);

/* The state a query starts from: session `session` if not NULL, else
 * document `doc_name`, at token `at` (-1 = its head / end), rebuilt into st.
 * *grid (may be NULL) gets the document's chunk grid, for feeding more tokens
 * the way ingest does.  Exactly one of session / doc_name (COIL_EINVAL). */
int coil_resume_target(coil_store_t *store, coil_engine_t *e, const char *session, const char *doc_name,
                       int64_t at, coil_state_t *st, int64_t *grid, coil_err_t *err);

/* Appends ids to a session's timeline: resumes its head, feeds the ids on the
 * document's grid, and commits the tokens with a checkpoint at the new head
 * in one transaction (recording req's key in it if req is not NULL; see
 * coil_store_session_append).  st (scratch, shaped for the engine's model)
 * ends holding the new head state.  Nothing is written on error. */
int coil_session_append_ids(coil_store_t *store, coil_engine_t *e, const char *session, const int32_t *ids,
                            size_t n, const coil_store_request_t *req, coil_state_t *st, coil_err_t *err);

/* Feeds ids through the engine in pieces that follow a grid of `grid` tokens
 * anchored at 0: a piece never crosses a multiple of grid.  The state's
 * position decides where the grid stands.  logits as coil_engine_forward. */
int coil_feed_grid(coil_engine_t *e, coil_state_t *st, const int32_t *ids, int64_t n, int64_t grid,
                   float *logits, int64_t vocab, coil_err_t *err);

#endif
