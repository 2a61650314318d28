/* cuda_engine.h -- the Mamba-1 forward, device-resident, on the CUDA kernels.
 *
 * Plain C over kernels/cuda.h.  The engine uploads the weights once (as
 * float32), owns every activation and the recurrent state of `nseq`
 * sequences on the device (sizes: coil_cuda_plan_buffers), and computes
 * exactly src/engine.c's step() for all sequences at once: each forward call
 * reads T tokens of every sequence (a batch of documents, several sequences
 * per chunk; nseq = 1 for one long document).  States move in and out in
 * coil_state_t form, synchronously (load/save) or, for checkpoints, through a
 * side-stream download into pinned memory that overlaps the next chunks.
 */
#ifndef COIL_CUDA_ENGINE_H
#define COIL_CUDA_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_plan.h"
#include "error.h"
#include "model.h"
#include "state.h"

typedef struct coil_cuda_engine coil_cuda_engine_t;

typedef struct coil_cuda_engine_options {
    int device;            /* CUDA device index */
    int64_t max_chunk;     /* tokens per sequence per step; 0 = 256 */
    int64_t nseq;          /* sequences in the batch; 0 = 1 */
    coil_cuda_math_t math; /* matrix-product arithmetic */
    int with_logits;       /* reserve the (nseq * max_chunk, vocab) logits buffer */
} coil_cuda_engine_options_t;

/* COIL_ENOTFOUND ("no CUDA device ...") without a device, COIL_ENOMEM
 * naming the buffer when device memory is short, COIL_EUNSUPPORTED for a
 * shape the kernels cannot run. */
coil_cuda_engine_t *coil_cuda_engine_new(const coil_model_t *m, const coil_cuda_engine_options_t *opt,
                                         coil_err_t *err);
void coil_cuda_engine_destroy(coil_cuda_engine_t **e);

/* Sequence `slot`'s device state <- st (fingerprint checked) / -> st. */
int coil_cuda_engine_load_state(coil_cuda_engine_t *e, int64_t slot, const coil_state_t *st, coil_err_t *err);
int coil_cuda_engine_save_state(coil_cuda_engine_t *e, int64_t slot, coil_state_t *st, coil_err_t *err);
/* Sequence `slot` back to the empty state. */
int coil_cuda_engine_reset(coil_cuda_engine_t *e, int64_t slot, coil_err_t *err);

/* Feeds T tokens to each sequence: ids (nseq, T), sequence-major.  logits:
 * NULL, or room for (nseq, T, vocab) floats (the engine must have been made
 * with_logits).  Any T; steps of max_chunk.  Invalid ids: COIL_EINVAL, no
 * state changed. */
int coil_cuda_engine_forward(coil_cuda_engine_t *e, const int32_t *ids, int64_t T, float *logits, coil_err_t *err);

/* Starts the asynchronous download of every sequence's state (returns at
 * once); _wait blocks until it is on the host and writes the sequences whose
 * states[s] is not NULL (positions as of the _start). */
int coil_cuda_engine_checkpoint_start(coil_cuda_engine_t *e, coil_err_t *err);
int coil_cuda_engine_checkpoint_wait(coil_cuda_engine_t *e, coil_state_t **states, coil_err_t *err);

/* Waits for the queued work (timing). */
int coil_cuda_engine_sync(coil_cuda_engine_t *e, coil_err_t *err);
const char *coil_cuda_engine_device_name(const coil_cuda_engine_t *e);
size_t coil_cuda_engine_device_bytes(const coil_cuda_engine_t *e);
int64_t coil_cuda_engine_nseq(const coil_cuda_engine_t *e);
int64_t coil_cuda_engine_max_chunk(const coil_cuda_engine_t *e);

#endif
