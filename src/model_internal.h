/* model_internal.h -- what a model family's file sees of the loader (libcoil only).
 *
 * A family (src/family.h) binds its tensors through these: each checks the
 * name, dtype (F32/F16/BF16) and exact shape against config.json and records
 * the tensor as used (the loader refuses any tensor left unbound, and the
 * fingerprint covers every bound one in binding order).  Errors name the
 * file and the tensor.
 */
#ifndef COIL_MODEL_INTERNAL_H
#define COIL_MODEL_INTERNAL_H

#include <jansson.h>

#include "model.h"

struct coil_model {
    char *dir;
    coil_model_config_t cfg;
    coil_safetensors_t **files;    /* every weight file (no limit on the count) */
    int n_files, cap_files;
    coil_layer_t *layers;          /* (n_layer), Mamba-1 layout families */
    void *fam_layers;              /* another family's per-layer tensors (malloc'd by its bind, freed here) */
    coil_dtype_t dtype;            /* set by the family's bind: layer 0's in_proj */
    coil_matrix_t embeddings;
    coil_matrix_t lm_head;
    const float *norm_f;
    float *f32_pool;               /* owned storage for the small vectors */
    size_t pool_used, pool_cap;
    const coil_tensor_info_t **bound; /* every tensor used, to find unexpected ones */
    size_t n_bound, cap_bound;
    uint64_t fingerprint;
    int64_t params;
};

/* A tensor by name across the weight files, or NULL; *file_idx its file. */
const coil_tensor_info_t *coil_model__lookup(const coil_model_t *m, const char *name, int *file_idx);
/* Checks name's dtype and shape (dims[0..ndim)); does not bind it. */
int coil_model__check(const coil_model_t *m, const char *name, int ndim, const int64_t *dims,
                      const coil_tensor_info_t **out, coil_err_t *err);
/* coil_model__check, then binds it. */
int coil_model__need(coil_model_t *m, const char *name, int ndim, const int64_t *dims,
                     const coil_tensor_info_t **out, coil_err_t *err);
/* A matrix (rows, cols) left mapped in its stored dtype. */
int coil_model__need_matrix(coil_model_t *m, const char *name, int64_t rows, int64_t cols, coil_matrix_t *mat,
                            coil_err_t *err);
/* A small tensor converted to float32 into m->f32_pool (sized by the family). */
int coil_model__need_f32(coil_model_t *m, const char *name, int ndim, const int64_t *dims, const float **out,
                         coil_err_t *err);

/* Binds backbone.norm_f.weight (d_model) into the pool and the LM head:
 * lm_head.weight (vocab, d_model), or the embeddings when tied (a copy of
 * the right shape is accepted, as transformers ties it anyway). */
int coil_model__bind_head(coil_model_t *m, coil_err_t *err);

/* A bare Infinity in config.json reads as this (see coil_model_config_parse). */
#define COIL_CFG_INF 1e308

/* config.json fields (what: the file, for messages).  An absent or null
 * field takes dflt (or is an error when required); see model.c. */
int coil_cfg_int(json_t *root, const char *key, int64_t dflt, bool required, int64_t lo, int64_t hi,
                 int64_t *out, const char *what, coil_err_t *err);
int coil_cfg_token_id(json_t *root, const char *key, bool list_ok, int64_t *out, const char *what,
                      coil_err_t *err);
int coil_cfg_alias(json_t *root, const char *alias, const char *field, int64_t value, const char *what,
                   coil_err_t *err);
int coil_cfg_bool(json_t *root, const char *key, bool dflt, bool *out, const char *what, coil_err_t *err);

#endif
