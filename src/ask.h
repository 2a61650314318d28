/* ask.h -- answer a question about a stored document by re-reading what
 * matters.
 *
 * A Mamba state keeps the gist of a long document but loses specifics; the
 * remedies measured in the literature are re-reading the relevant context
 * before the question ("Just read twice", Arora et al. 2024) and answering
 * from the single most relevant chunk, chosen by the model's confidence
 * ("Overflow Prevention", Ben-Kish et al. 2025).  coil has every part they
 * need -- a fixed chunk grid, an FTS5 index over the chunks, checkpoints --
 * and this module puts them together.  Strategies:
 *
 *   state   the document's end state, then the question (the baseline)
 *   reread  the end state, then the top-K passages of an FTS5/BM25 search
 *           for the question's words re-read verbatim (their stored token
 *           ids) in document order, then the question
 *   select  for each of the top-M candidate passages: a fresh state reads
 *           the passage and the question; the candidate whose first answer
 *           tokens have the lowest mean entropy answers
 *   auto    reread when the search finds passages, else state
 *
 * What is fed after the state, as token ids (tok = the model's tokenizer):
 *     [for each passage: blank + passage ids]  tok("\n\n" + question)
 * and the answer follows; blank is "\n\n" as the tokenizer encodes it
 * before a word (tok("\n\nA") less tok("A")), not tok("\n\n") alone, which
 * is the id of a trailing blank line that never precedes text.  The document is never changed: every strategy
 * works on a private copy of a state.
 */
#ifndef COIL_ASK_H
#define COIL_ASK_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "error.h"
#include "query.h"
#include "sampling.h"
#include "state.h"
#include "store.h"
#include "tokenizer.h"

enum coil_ask_strategy {
    COIL_ASK_AUTO = 0,
    COIL_ASK_STATE,
    COIL_ASK_REREAD,
    COIL_ASK_SELECT,
};
/* "auto", "state", "reread", "select"; NULL for an unknown value. */
const char *coil_ask_strategy_name(int strategy);
/* The strategy named s, or -1. */
int coil_ask_strategy_parse(const char *s);

/* Bounds: a question re-reads at most COIL_ASK_MAX_REREAD tokens of passages
 * whatever the document's length. */
#define COIL_ASK_MAX_PASSAGES 16
#define COIL_ASK_MAX_REREAD 8192
#define COIL_ASK_MAX_QUESTION_BYTES 8192

typedef struct coil_ask_options {
    int strategy;              /* enum coil_ask_strategy */
    int evidence_k;            /* reread: passages re-read (0 = 3; 1..COIL_ASK_MAX_PASSAGES) */
    int candidates_m;          /* select: candidates tried (0 = 4; 1..COIL_ASK_MAX_PASSAGES) */
    int64_t max_reread_tokens; /* re-read budget (0 = 2048; at most COIL_ASK_MAX_REREAD) */
    int64_t n_new;             /* answer tokens to generate (0 = none; with answer_ids: scored instead) */
    coil_sampler_options_t sampler; /* zeroed: greedy; top_p 0 means 1, n_valid 0 the tokenizer's ids */
    const int32_t *answer_ids; /* if not NULL: score this answer (n_answer ids) instead of generating */
    size_t n_answer;
    coil_query_token_fn on_token; /* generated tokens as they come (may be NULL) */
    void *on_token_ud;
} coil_ask_options_t;

typedef struct coil_ask_evidence {
    int64_t seq, token_start, token_end, byte_start, byte_end;
    double bm25;        /* the search's score (higher is better) */
    double entropy;     /* select: mean entropy (nats) of the first answer tokens; NaN otherwise */
    int chosen;         /* select: the candidate that answered; reread: 1 for every passage re-read */
    int64_t tokens_read; /* passage tokens read for it (select: every candidate; reread: those re-read) */
    char *snippet;      /* the passage around the matches (plain text), owned */
} coil_ask_evidence_t;

typedef struct coil_ask_result {
    int strategy;                  /* the one used (auto resolved) */
    char why[160];                 /* why that strategy / those passages */
    char fts_query[512];           /* the FTS5 query made from the question ("" if none) */
    coil_ask_evidence_t *evidence; /* the passages considered, best first; owned */
    size_t n_evidence;
    int64_t reread_tokens;         /* passage tokens fed (all candidates, for select) */
    int32_t *answer;               /* generated ids (n_answer); owned */
    int64_t n_answer;
    double answer_logprob;         /* with opt->answer_ids: total log-probability of it */
    double *answer_logprobs;       /* per token (opt->n_answer); owned */
    int32_t *fed;                  /* everything read after the starting state (n_fed); owned */
    size_t n_fed;
    double seconds;
} coil_ask_result_t;

void coil_ask_result_free(coil_ask_result_t *r);

/* The result as the protocol's ask reply carries it (schemas/protocol/
 * result.ask.schema.json): strategy, why, search, answer (answer_text, len
 * bytes), ids, evidence [{chunk, token_start, token_end, byte_start,
 * byte_end, bm25, chosen, snippet[, entropy]}], reread_tokens, seconds, and
 * answer_logprob when an answer was scored.  NULL when out of memory. */
struct json_t;
struct json_t *coil_ask_result_json(const coil_ask_result_t *r, const char *answer_text, size_t len, int scored);

/* Turns question text into a safe FTS5 query: its words (letters and
 * digits; ASCII folded to lower case), stop-words and 1-letter words
 * dropped, duplicates removed, each quoted, joined by OR.  Never a syntax
 * error whatever the text.  "" when no word is left.  buf has cap bytes;
 * words that do not fit are left out. */
void coil_ask_fts_query(const char *question, size_t len, char *buf, size_t cap);

/* Asks a question of document doc_name (complete: COIL_ESTATE while it is
 * still ingesting) or, if session is not NULL, of that session's head (its
 * document's passages; not with select: COIL_EINVAL).  st is scratch shaped
 * for the engine's model; on return it holds the state the answer was read
 * from (after the answer when one was generated), and res->fed the ids it
 * read after the starting state (passages, question, answer: what a session
 * appends to keep its timeline equal to its state).  Nothing in the store
 * changes.  res is filled (free with coil_ask_result_free, also after an
 * error).  An empty question or one over COIL_ASK_MAX_QUESTION_BYTES is
 * COIL_EINVAL; an unknown document or session COIL_ENOTFOUND. */
int coil_ask(coil_store_t *store, coil_engine_t *e, const coil_tokenizer_t *tok, const char *session,
             const char *doc_name, const char *question, size_t qlen, const coil_ask_options_t *opt,
             coil_state_t *st, coil_ask_result_t *res, coil_err_t *err);

/* The phases of coil_ask, for the service, which spreads select's candidates
 * over its workers (coild's fan-out, worker.h):
 *
 *   coil_ask_plan       checks the request, finds the document and the
 *                       passages (res: strategy resolved, search, why when
 *                       it falls back, evidence with entropy NaN); no model
 *                       work, nothing read but the store's index
 *   coil_ask_candidate  one select candidate: a fresh state (st) reads the
 *                       passage (within the budget) and the question; its
 *                       confidence (*entropy) and the passage tokens read
 *   coil_ask_answer     from a plan: reads what the strategy reads and
 *                       answers.  select: a candidate whose entropy is NaN is
 *                       measured here, one with an entropy (and tokens_read)
 *                       is taken as measured; the lowest entropy answers, the
 *                       first of equals in the plan's order, its state read
 *                       again when it was measured elsewhere.  Adds its time
 *                       to res->seconds.
 *
 * coil_ask is coil_ask_plan then coil_ask_answer, so a select spread over
 * any number of workers gives the result a local one gives (the engine is
 * deterministic: the same ids from a fresh state give the same state). */
int coil_ask_plan(coil_store_t *store, const coil_tokenizer_t *tok, const char *session, const char *doc_name,
                  const char *question, size_t qlen, const coil_ask_options_t *opt, coil_ask_result_t *res,
                  coil_err_t *err);
int coil_ask_candidate(coil_store_t *store, coil_engine_t *e, const coil_tokenizer_t *tok, const char *doc_name,
                       const char *question, size_t qlen, const coil_ask_options_t *opt, const coil_ask_evidence_t *ev,
                       coil_state_t *st, double *entropy, int64_t *tokens, coil_err_t *err);
int coil_ask_answer(coil_store_t *store, coil_engine_t *e, const coil_tokenizer_t *tok, const char *session,
                    const char *doc_name, const char *question, size_t qlen, const coil_ask_options_t *opt,
                    coil_state_t *st, coil_ask_result_t *res, coil_err_t *err);

/* A plan back from coil_ask_result_json's form (strategy, why, search,
 * evidence; entropies NaN): what the worker that planned hands to the one
 * that answers.  COIL_EPROTO when a field is missing. */
int coil_ask_plan_from_json(const struct json_t *j, coil_ask_result_t *res, coil_err_t *err);

#endif
