/* engine.h -- the model family's forward pass over a chunk of tokens, with state.
 *
 *   state_in + ids[0..T) -> state_out (+ logits for each position if asked)
 *
 * The layers are the family's (src/family.h); for Mamba-1 numerically the same
 * function as transformers' MambaForCausalLM (Falcon-Mamba: + the B/C/dt norms): RMSNorm,
 * in_proj, causal depthwise conv1d + SiLU, x_proj, dt_proj + softplus, the
 * selective scan with A = -exp(A_log) and the D skip, the SiLU(z) gate,
 * out_proj, residual, norm_f, LM head.  T may be 1 (a recurrent step) or any
 * length: the engine walks it in pieces of at most max_chunk tokens, so memory
 * is bounded by max_chunk, never by the document.
 *
 * Thread-safety: one engine per thread (it owns scratch buffers); many engines
 * may share one model.  Each call is deterministic for a given (model, state,
 * ids, max_chunk, kernel set, matrix library): the same inputs give the same
 * bits, whatever the thread count (kernels/cpu.c cuts work by shape alone).
 */
#ifndef COIL_ENGINE_H
#define COIL_ENGINE_H

#include <stdint.h>

#include "error.h"
#include "model.h"
#include "state.h"

typedef struct coil_engine_options {
    int64_t max_chunk; /* tokens per internal step; 0 = default (256) */
    int threads;       /* 0 = OMP_NUM_THREADS, else the CPUs usable / COIL_WORKERS */
    const char *backend; /* NULL or "cpu" (the chosen kernel set), "cpu-portable", "cuda[:f32|tf32|bf16]"
                            (with --with-cuda; COIL_ENOTFOUND "no CUDA device" without a GPU) */
} coil_engine_options_t;

typedef struct coil_engine coil_engine_t;

/* The model is borrowed and must outlive the engine. opt may be NULL. */
coil_engine_t *coil_engine_new(const coil_model_t *m, const coil_engine_options_t *opt, coil_err_t *err);
void coil_engine_destroy(coil_engine_t **e);

/* Feeds ids[0..T) to the model, advancing st.  logits: NULL (ingest: the LM
 * head is skipped) or room for T x vocab_size floats, row t = the
 * distribution after ids[t].  Errors (state of another model, id out of range)
 * leave st unchanged; COIL_ENOMEM from the matrix library midway leaves it
 * poisoned (coil_state_poison: it cannot be saved; reset or reload it). */
int coil_engine_forward(coil_engine_t *e, coil_state_t *st, const int32_t *ids, int64_t T, float *logits,
                        coil_err_t *err);

/* Logits (vocab_size floats) for the token after st, from the final hidden
 * vector the state carries; COIL_ESTATE if the state has read no token. */
int coil_engine_next_logits(coil_engine_t *e, const coil_state_t *st, float *logits, coil_err_t *err);

const char *coil_engine_backend_name(const coil_engine_t *e);
/* The model the engine runs (borrowed). */
const coil_model_t *coil_engine_model(const coil_engine_t *e);
int64_t coil_engine_max_chunk(const coil_engine_t *e);
/* Bytes of scratch the engine holds (the bound on ingest memory besides the model). */
size_t coil_engine_scratch_bytes(const coil_engine_t *e);

#endif
