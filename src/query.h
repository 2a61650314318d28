/* query.h -- questions asked of a state: score a continuation, generate.
 *
 * Shared by the CLI and the service workers, so a query gives the same bits
 * locally and over ZeroMQ.
 */
#ifndef COIL_QUERY_H
#define COIL_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "error.h"
#include "sampling.h"
#include "state.h"
#include "tokenizer.h"

/* Log-probabilities (natural log, softmax over the full vocabulary as
 * transformers computes it) of ids[0..n) following st: the first from the
 * state's final hidden vector, the others after feeding ids[0..n-2] on the
 * chunk grid.  st advances by n - 1 tokens.  logprobs has room for n. */
int coil_query_score(coil_engine_t *e, coil_state_t *st, const int32_t *ids, size_t n, int64_t grid,
                     double *logprobs, double *total, coil_err_t *err);

/* Called for each generated token with the bytes that became complete
 * characters (may be empty; NULL/0 without a tokenizer).  Nonzero stops. */
typedef int (*coil_query_token_fn)(int32_t id, const char *text, size_t len, void *ud);

/* Samples up to n tokens after st; st reads each sampled token, so it ends
 * after the last one.  ids_out (room for n) receives them, *n_out how many.
 * tok may be NULL (no text).  At the end fn is called once more with id -1
 * and the flushed tail of the text. */
int coil_query_generate(coil_engine_t *e, coil_state_t *st, const coil_tokenizer_t *tok,
                        const coil_sampler_options_t *so, int64_t n, coil_query_token_fn fn, void *ud,
                        int32_t *ids_out, int64_t *n_out, coil_err_t *err);

#endif
