/* testutil.h -- helpers shared by the tests and benchmarks (not part of libcoil). */
#ifndef COIL_TESTUTIL_H
#define COIL_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* $COIL_TEST_DATA/rel (or tests/data/rel); static buffer, overwritten by the next call. */
const char *tu_data(const char *rel);
/* mkdtemp under $TMPDIR; returns a malloc'd path. */
char *tu_mkdtemp(void);
/* rm -rf path (files and directories below it). */
void tu_rm_rf(const char *path);
/* Reads a whole file; NULL on error. Caller frees. */
void *tu_read(const char *path, size_t *len);
int tu_write(const char *path, const void *data, size_t len);
/* Writes a safetensors file from a literal JSON header and raw data bytes. */
int tu_write_st_raw(const char *path, const char *header, const void *data, size_t data_len);
/* Copies every regular file of src into dst (created). */
int tu_copy_dir(const char *src, const char *dst);

typedef struct tu_model_shape {
    int64_t d_model, n_layer, vocab, d_state, d_conv, expand, dt_rank; /* dt_rank 0 = auto */
    int tied;
    const char *dtype; /* "F32", "F16", "BF16" */
    const char *family; /* NULL: $COIL_TEST_FAMILY, else "mamba"; or "mamba", "falcon_mamba", "mamba2"
                           (mamba2: head_dim 8, n_groups 2 unless set below; expand x d_model a multiple
                           of head_dim x n_groups), "rwkv" (attention = d_model, intermediate = expand x
                           d_model, rescale_every 2) */
    int64_t head_dim, n_groups; /* mamba2 only; 0: 8 and 2 */
} tu_model_shape_t;

/* Writes dir/config.json + dir/model.safetensors of a model of family
 * mamba, falcon_mamba, mamba2 or rwkv (see shape->family) with seeded random
 * weights in the Hugging Face layout.  0 on success. */
int tu_write_random_model(const char *dir, const tu_model_shape_t *shape, uint64_t seed);

/* mkdir dir, write a random model into it (as above) and copy the test
 * tokenizer ($COIL_TEST_DATA/tokenizer/tokenizer.json, 1227 ids: use a vocab
 * of at least that) beside it.  0 on success. */
int tu_write_model_dir(const char *dir, const tu_model_shape_t *shape, uint64_t seed);

/* ||a - b|| / ||b|| */
double tu_rel_l2(const float *a, const float *b, size_t n);

#endif
