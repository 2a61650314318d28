/* model.h -- a Hugging Face checkpoint of a family coil runs, loaded as published.
 *
 * config.json's model_type / architectures pick the family (src/family.h:
 * mamba = MambaForCausalLM, falcon_mamba = FalconMambaForCausalLM, which
 * share the Mamba-1 layout below; mamba2; rwkv = RwkvForCausalLM, RWKV-4);
 * any other is refused by name.
 *
 * A model directory holds config.json (MambaConfig) and either
 * model.safetensors or model.safetensors.index.json + shards (any number),
 * in F32, F16 or BF16.  Large matrices stay memory-mapped in their stored
 * dtype; the small per-channel vectors (norms, biases, conv taps, A, D) are
 * converted to float32 at load, and A = -exp(A_log) is computed once in
 * float32 as the reference does.
 *
 * What the published checkpoints (state-spaces/mamba-130m-hf ... 2.8b-hf)
 * contain is accepted as transformers reads it: the mamba_ssm leftovers in
 * their config.json (d_model, d_inner, n_layer: they must agree with
 * hidden_size, intermediate_size, num_hidden_layers; fused_add_norm, rms_norm,
 * ssm_cfg, pad_vocab_size_multiple, torch_dtype, ...: ignored, as transformers
 * ignores them), eos_token_id as a list, generation_config.json,
 * tokenizer_config.json and special_tokens_map.json beside (not read here),
 * lm_head.weight present or not when tied.  intermediate_size must be
 * int(expand * hidden_size), which MambaConfig sets whatever the file says.
 * A directory with only pytorch_model.bin is refused with an error naming it
 * (safetensors only); so is a mamba_ssm config (d_model, no hidden_size).
 *
 * Limits (each an error naming it): config.json at most COIL_MODEL_MAX_CONFIG
 * bytes, the shard index at most COIL_MODEL_MAX_INDEX; the dimensions below.
 * Paths, shard names and tensor names have no length limit.
 *
 * Thread-safety: a loaded model is immutable and may be shared by threads.
 */
#ifndef COIL_MODEL_H
#define COIL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "safetensors.h"

#define COIL_MODEL_MAX_CONFIG ((size_t)1 << 20)  /* bytes of config.json */
#define COIL_MODEL_MAX_INDEX ((size_t)64 << 20)  /* bytes of model.safetensors.index.json */
#define COIL_MODEL_MAX_DIM ((int64_t)1 << 20)    /* hidden_size, intermediate_size, time_step_rank */
#define COIL_MODEL_MAX_LAYERS 4096               /* num_hidden_layers */
#define COIL_MODEL_MAX_STATE 4096                /* state_size */
#define COIL_MODEL_MAX_CONV 64                   /* conv_kernel */
#define COIL_MODEL_MAX_VOCAB ((int64_t)1 << 24)  /* vocab_size, and token ids below it */

typedef struct coil_family coil_family_t; /* src/family.h */

typedef struct coil_model_config {
    const coil_family_t *family; /* picked by model_type / architectures */
    int64_t d_model;      /* hidden_size */
    int64_t d_inner;      /* intermediate_size (= expand * hidden_size) */
    int64_t d_state;      /* state_size */
    int64_t d_conv;       /* conv_kernel */
    int64_t dt_rank;      /* time_step_rank ("auto" = ceil(hidden_size / 16)) */
    int64_t n_layer;      /* num_hidden_layers */
    int64_t vocab_size;   /* rows of the embedding (may be padded past the tokenizer) */
    double eps;           /* layer_norm_epsilon */
    bool use_bias;        /* in_proj / out_proj bias */
    bool use_conv_bias;
    bool residual_in_fp32;
    bool tie_embeddings;  /* tie_word_embeddings */
    int64_t pad_id, bos_id, eos_id; /* -1 when absent */
    double mixer_rms_eps; /* falcon_mamba: eps of the weightless RMS norms on dt, B, C; 0 = none (mamba) */
    /* mamba2 (0 for the others): num_heads x head_dim = d_inner, n_groups for B and C,
     * time_step_limit (dt clamped to [lo, hi]; hi may be +inf) */
    int64_t n_heads, head_dim, n_groups;
    double dt_limit_lo, dt_limit_hi;
    /* rwkv (0 for the others): attention_hidden_size; rescale_every (0: none; d_inner is
     * intermediate_size, d_state = attention_hidden_size, d_conv = 2: the token shift) */
    int64_t attn_dim, rescale_every;
} coil_model_config_t;

/* A matrix (rows, cols), row-major, in its stored dtype (F32, F16 or BF16). */
typedef struct coil_matrix {
    coil_dtype_t dtype;
    const void *data;     /* borrowed from the mapped file */
    int64_t rows, cols;
} coil_matrix_t;

typedef struct coil_layer {
    const float *norm;    /* (d_model) */
    coil_matrix_t in_proj;   /* (2*d_inner, d_model) */
    const float *in_bias;    /* (2*d_inner) or NULL */
    const float *conv_w;     /* (d_inner, d_conv) */
    const float *conv_b;     /* (d_inner) or NULL */
    coil_matrix_t x_proj;    /* (dt_rank + 2*d_state, d_inner) */
    coil_matrix_t dt_proj;   /* (d_inner, dt_rank) */
    const float *dt_bias;    /* (d_inner) */
    const float *A;          /* (d_inner, d_state) = -exp(A_log) */
    const float *D;          /* (d_inner) */
    coil_matrix_t out_proj;  /* (d_model, d_inner) */
    const float *out_bias;   /* (d_model) or NULL */
} coil_layer_t;

typedef struct coil_model coil_model_t;

/* Loads dir/config.json and the weights.  NULL + err on failure; every error
 * names the file and, where one is involved, the tensor or config field. */
coil_model_t *coil_model_load(const char *dir, coil_err_t *err);
void coil_model_destroy(coil_model_t **m);

/* Parses a config.json text (exposed for tests). 0 or COIL_EFORMAT/ECONFIG. */
int coil_model_config_parse(const char *json_text, const char *what, coil_model_config_t *cfg,
                            coil_err_t *err);

/* Borrowed pointers, valid until coil_model_destroy. */
const coil_model_config_t *coil_model_config(const coil_model_t *m);
const coil_layer_t *coil_model_layer(const coil_model_t *m, int64_t i);
const coil_matrix_t *coil_model_embeddings(const coil_model_t *m); /* (vocab, d_model) */
const coil_matrix_t *coil_model_lm_head(const coil_model_t *m);    /* == embeddings if tied */
const float *coil_model_norm_f(const coil_model_t *m);              /* (d_model) */
const char *coil_model_dir(const coil_model_t *m);

/* The weights' dtype (that of layer 0's in_proj). */
coil_dtype_t coil_model_dtype(const coil_model_t *m);
/* 64-bit fingerprint over the config and every tensor's name, dtype, shape and bytes. */
uint64_t coil_model_fingerprint(const coil_model_t *m);
int64_t coil_model_param_count(const coil_model_t *m);
/* The model to use when none is given: $COIL_MODEL, else the installed
 * default ($(pkgdatadir)/model), else the source tree's examples/model (for a
 * build that is not installed).  NULL if none of them has a config.json.
 * The string is static or from the environment: do not free it. */
const char *coil_model_default_dir(void);

/* The family and the dimensions as a compact JSON object (for the store's
 * models table): {"family":"mamba2","d_model":..,"n_layer":..,"d_inner":..,
 * "d_state":..,"d_conv":..,"dt_rank":..,"vocab_size":..} and the family's own:
 * mamba2 "n_heads", "head_dim", "n_groups"; falcon_mamba "mixer_rms_eps".
 * Returns the length written (< cap), or a negative code if cap is too small. */
int coil_model_dims_json(const coil_model_t *m, char *buf, size_t cap);

#endif
