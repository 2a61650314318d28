/* state.h -- the recurrent state of a Mamba model after some tokens, as a value.
 *
 * Its two tensors per layer are sized by the model family (src/family.h,
 * state_shape); for Mamba-1 and Falcon-Mamba they are as below; Mamba-2's
 * conv state covers its x|B|C channels, (d_conv - 1, d_inner + 2 n_groups
 * d_state), and its SSM state is (num_heads, head_dim, d_state).  RWKV-4's
 * "conv" tensor is its two shifted tokens (time mix | channel mix, 2 x d_model)
 * and its "ssm" tensor num | den | max (3 x attention_hidden_size), the max
 * starting at -1e38 (the family's state_init, also on reset).
 *
 * Per layer: the conv state, the last (d_conv - 1) inputs of the causal conv,
 * time-major (d_conv - 1, d_inner); and the SSM state (d_inner, d_state).
 * Plus the final hidden vector (after norm_f) of the last token read, so the
 * next token can be predicted from a resumed state without re-reading.
 * Always float32, whatever the weights' dtype.
 *
 * Blob format v2 (all little-endian), see coil_state_serialize():
 *   0   char[8]  magic "COILSTAT"
 *   8   u32      format version (2; 1 is still read: the same layout, from
 *                before families, always Mamba-1, offset 72 zero)
 *   12  u32      header size in bytes (96)
 *   16  u64      model fingerprint
 *   24  u32 x 6  n_layer, d_model, d_inner, d_state, d_conv, conv_cols (= d_conv-1)
 *   48  u32      dtype (0 = float32)
 *   52  u32      flags (bit 0: last_hidden valid)
 *   56  i64      position (tokens consumed)
 *   64  u64      payload bytes
 *   72  u32      model family (coil_family_t.blob_id: 0 mamba, 1 falcon_mamba, 2 mamba2, 3 rwkv)
 *   76  u8[20]   reserved, zero
 *   96  payload: conv (n_layer, conv_cols, d_inner) f32, ssm (n_layer, d_inner,
 *                d_state) f32, last_hidden (d_model) f32
 *   end u64      XXH3-64 of every byte before it
 */
#ifndef COIL_STATE_H
#define COIL_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "model.h"

#define COIL_STATE_MAGIC "COILSTAT"
#define COIL_STATE_VERSION 2u
#define COIL_STATE_HEADER_SIZE 96u

typedef struct coil_state coil_state_t;

/* A zero state (position 0) shaped for model m. NULL + err on failure. */
coil_state_t *coil_state_new(const coil_model_t *m, coil_err_t *err);
void coil_state_destroy(coil_state_t **st);
/* Deep copy. NULL + err on failure. */
coil_state_t *coil_state_clone(const coil_state_t *st, coil_err_t *err);
/* dst := src; both must have the same shape (COIL_ESHAPE otherwise). */
int coil_state_copy(coil_state_t *dst, const coil_state_t *src, coil_err_t *err);
/* Back to position 0, all zero. */
void coil_state_reset(coil_state_t *st);
/* Makes st unusable after a forward pass failed midway (out of memory in the
 * matrix library): every value NaN, so coil_state_serialize and checkpoints
 * refuse it; coil_state_reset or a deserialize make it usable again. */
void coil_state_poison(coil_state_t *st);

int64_t coil_state_position(const coil_state_t *st);
void coil_state_set_position(coil_state_t *st, int64_t pos);
uint64_t coil_state_fingerprint(const coil_state_t *st);
/* Mutable views, valid until destroy: (d_conv-1, d_inner), (d_inner, d_state), (d_model). */
float *coil_state_conv(coil_state_t *st, int64_t layer);
float *coil_state_ssm(coil_state_t *st, int64_t layer);
float *coil_state_last_hidden(coil_state_t *st);
/* 1 when last_hidden holds the final hidden vector of the token at position-1. */
int coil_state_has_hidden(const coil_state_t *st);
void coil_state_set_has_hidden(coil_state_t *st, int has);

/* Exact size of the blob coil_state_serialize() writes. */
size_t coil_state_blob_size(const coil_state_t *st);
/* Writes the blob into buf (cap >= coil_state_blob_size). 0 or COIL_EINVAL. */
int coil_state_serialize(const coil_state_t *st, void *buf, size_t cap, coil_err_t *err);
/* Reads a blob into st, which must be shaped for the same model: a damaged
 * blob is COIL_ECHECKSUM / COIL_EFORMAT / COIL_EVERSION, another model's is
 * COIL_EMISMATCH (another family's is said by name); st is unchanged on any error. */
int coil_state_deserialize(coil_state_t *st, const void *blob, size_t len, coil_err_t *err);
/* Reads only the header fields of a blob (validates magic, version, size and
 * checksum).  Any out-pointer may be NULL. */
int coil_state_blob_peek(const void *blob, size_t len, uint64_t *fingerprint, int64_t *position,
                         coil_err_t *err);

#endif
