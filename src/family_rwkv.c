/* family_rwkv.c -- RWKV-4 (RwkvForCausalLM, model_type "rwkv"), as transformers'
 * modeling_rwkv.py computes it at inference (model.eval()), in float32.
 *
 * Per block l (H = hidden_size, A = attention_hidden_size, F = intermediate_size),
 * on T tokens, from the residual x (T, H):
 *   l == 0:  x = pre_ln(x)                                 (LayerNorm with bias)
 *   time mix:  a = ln1(x); prev = a shifted one token (the carried shift first)
 *     xk|xv|xr = a * time_mix_k|v|r + prev * (1 - time_mix_k|v|r)
 *     k, v, r = key(xk), value(xv), receptance(xr)          (T, A)
 *     wkv = rwkv_linear_attention_cpu(time_decay, time_first, k, v; num, den, max)
 *     x += output(sigmoid(r) * wkv)
 *   channel mix:  b = ln2(x); prev likewise (its own carried shift)
 *     xk|xr = b * time_mix_k|r + prev * (1 - time_mix_k|r)
 *     x += sigmoid(receptance(xr)) * value(relu(key(xk))^2)
 *   rescale_every = R > 0: attention.output and feed_forward.value act as if
 *     divided by 2^(l / R) (transformers divides the weights at eval; a power of
 *     two, so coil scales their inputs instead: the same bits), and x is halved
 *     after every block with (l + 1) % R == 0.
 * then ln_out (nn.LayerNorm(hidden_size): eps 1e-5 whatever layer_norm_epsilon
 * says, as transformers builds it); the head is the engine's.
 *
 * State per layer (blob: "conv" and "ssm" tensors): conv = the time-mix shift
 * (H) | the channel-mix shift (H), the last ln1 / ln2 output; ssm = num (A) |
 * den (A) | max (A), max starting at -1e38 like rwkv_linear_attention_cpu
 * (RwkvModel's own use_cache state starts at -1e30: the same bits after the
 * first token, as exp(-1e30 - k) and exp(-1e38 - k) are both 0).  In the blob
 * header d_inner = intermediate_size, d_state = attention_hidden_size and
 * d_conv = 2 (the token shift: a width-2 causal window).
 *
 * RWKV-5/6/7 (Rwkv5/6ForCausalLM, RWKV7: other model_types) are other
 * architectures and are refused by name (src/family.c).
 */
#include "family.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "model_internal.h"

#define MAX_DIM COIL_MODEL_MAX_DIM
#define LN_OUT_EPS 1e-5f /* nn.LayerNorm(config.hidden_size): torch's default eps */
#define MAX_INIT -1e38f  /* rwkv_linear_attention_cpu's max_state at position 0 */

typedef struct rwkv_layer {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;    /* (H) */
    const float *decay;                            /* (A) = -exp(time_decay) */
    const float *first;                            /* (A) time_first */
    const float *mix_k, *mix_v, *mix_r;            /* (H) time mix of the attention */
    const float *fmix_k, *fmix_r;                  /* (H) time mix of the feed forward */
    coil_matrix_t key, value, receptance, output;  /* (A, H) x 3, (H, A) */
    coil_matrix_t fkey, freceptance, fvalue;       /* (F, H), (H, H), (H, F) */
} rwkv_layer_t;

typedef struct rwkv_weights {
    const float *pre_ln_w, *pre_ln_b, *ln_out_b; /* (H); ln_out's weight is m->norm_f */
    rwkv_layer_t layers[];
} rwkv_weights_t;

/* ---- config ------------------------------------------------------------------ */

/* RwkvConfig's fields (defaults as transformers'); context_length (the CUDA
 * kernel's chunk limit, nothing to the recurrence) and use_cache: ignored. */
static int rwkv_parse(json_t *root, const char *what, coil_model_config_t *c, coil_err_t *err)
{
    int rc;
    int64_t re;
    json_t *v;
    if ((rc = coil_cfg_int(root, "hidden_size", 0, true, 1, MAX_DIM, &c->d_model, what, err)) ||
        (rc = coil_cfg_int(root, "num_hidden_layers", 0, true, 1, COIL_MODEL_MAX_LAYERS, &c->n_layer, what, err)) ||
        (rc = coil_cfg_int(root, "vocab_size", 0, true, 1, COIL_MODEL_MAX_VOCAB, &c->vocab_size, what, err)) ||
        (rc = coil_cfg_int(root, "attention_hidden_size", c->d_model, false, 1, MAX_DIM, &c->attn_dim, what, err)) ||
        (rc = coil_cfg_int(root, "intermediate_size", 4 * c->d_model, false, 1, MAX_DIM, &c->d_inner, what, err)) ||
        (rc = coil_cfg_int(root, "rescale_every", 6, false, -((int64_t)1 << 30), (int64_t)1 << 30, &re, what,
                           err)) ||
        (rc = coil_cfg_token_id(root, "pad_token_id", false, &c->pad_id, what, err)) ||
        (rc = coil_cfg_token_id(root, "bos_token_id", false, &c->bos_id, what, err)) ||
        (rc = coil_cfg_token_id(root, "eos_token_id", true, &c->eos_id, what, err)) ||
        (rc = coil_cfg_bool(root, "tie_word_embeddings", false, &c->tie_embeddings, what, err)))
        return rc;
    if (c->d_inner > MAX_DIM) /* the 4 x hidden_size default */
        return coil_err_set(err, COIL_ECONFIG, "%s: intermediate_size 4 x hidden_size = %lld is above %lld", what,
                            (long long)c->d_inner, (long long)MAX_DIM);
    c->eps = 1e-5;
    v = json_object_get(root, "layer_norm_epsilon");
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || !(json_number_value(v) >= 0) || json_number_value(v) > 1)
            return coil_err_set(err, COIL_ECONFIG, "%s: field 'layer_norm_epsilon' must be a number in [0, 1]", what);
        c->eps = json_number_value(v);
    }
    c->rescale_every = re > 0 ? re : 0; /* 0 or negative: no rescale */
    c->d_state = c->attn_dim;          /* the blob header's shape fields */
    c->d_conv = 2;
    return 0;
}

/* ---- weights ----------------------------------------------------------------- */

static int failed(coil_err_t *err)
{
    return err && err->code ? err->code : COIL_EFORMAT;
}

static int rwkv_bind(coil_model_t *m, coil_err_t *err)
{
    char name[128]; /* "rwkv.blocks.<n>.feed_forward.time_mix_receptance", n < 4096 */
    const coil_model_config_t *c = &m->cfg;
    const int64_t H = c->d_model, A = c->attn_dim, F = c->d_inner, V = c->vocab_size, L = c->n_layer;
    int64_t dH[1] = {H}, dA[1] = {A}, dmix[3] = {1, 1, H};
    {   /* config.json against the files before sizing anything from it */
        const coil_tensor_info_t *t;
        int64_t dVH[2] = {V, H}, dAH[2] = {A, H}, dFH[2] = {F, H};
        snprintf(name, sizeof name, "rwkv.blocks.%lld.ln1.weight", (long long)(L - 1));
        if (coil_model__check(m, "rwkv.embeddings.weight", 2, dVH, &t, err) ||
            coil_model__check(m, "rwkv.blocks.0.attention.key.weight", 2, dAH, &t, err) ||
            coil_model__check(m, "rwkv.blocks.0.feed_forward.key.weight", 2, dFH, &t, err) ||
            coil_model__check(m, name, 1, dH, &t, err))
            return failed(err);
    }
    /* per layer: ln1, ln2 (4 H), decay and first (2 A), 5 mixes (5 H); pre_ln, ln_out (4 H) */
    m->pool_cap = (size_t)(9 * H + 2 * A) * (size_t)L + (size_t)(4 * H);
    m->f32_pool = malloc(m->pool_cap * sizeof(float));
    rwkv_weights_t *W = calloc(1, sizeof *W + (size_t)L * sizeof(rwkv_layer_t));
    m->fam_layers = W;
    if (!m->f32_pool || !W)
        return coil_err_set(err, COIL_ENOMEM, "%s: out of memory for the model", m->dir);
    if (coil_model__need_matrix(m, "rwkv.embeddings.weight", V, H, &m->embeddings, err) ||
        coil_model__need_f32(m, "rwkv.blocks.0.pre_ln.weight", 1, dH, &W->pre_ln_w, err) ||
        coil_model__need_f32(m, "rwkv.blocks.0.pre_ln.bias", 1, dH, &W->pre_ln_b, err))
        return failed(err);
    for (int64_t i = 0; i < L; i++) {
        rwkv_layer_t *Y = &W->layers[i];
#define NAME(fmt) (snprintf(name, sizeof name, "rwkv.blocks.%lld." fmt, (long long)i), name)
        if (coil_model__need_f32(m, NAME("ln1.weight"), 1, dH, &Y->ln1_w, err) ||
            coil_model__need_f32(m, NAME("ln1.bias"), 1, dH, &Y->ln1_b, err) ||
            coil_model__need_f32(m, NAME("ln2.weight"), 1, dH, &Y->ln2_w, err) ||
            coil_model__need_f32(m, NAME("ln2.bias"), 1, dH, &Y->ln2_b, err) ||
            coil_model__need_f32(m, NAME("attention.time_decay"), 1, dA, &Y->decay, err) ||
            coil_model__need_f32(m, NAME("attention.time_first"), 1, dA, &Y->first, err) ||
            coil_model__need_f32(m, NAME("attention.time_mix_key"), 3, dmix, &Y->mix_k, err) ||
            coil_model__need_f32(m, NAME("attention.time_mix_value"), 3, dmix, &Y->mix_v, err) ||
            coil_model__need_f32(m, NAME("attention.time_mix_receptance"), 3, dmix, &Y->mix_r, err) ||
            coil_model__need_matrix(m, NAME("attention.key.weight"), A, H, &Y->key, err) ||
            coil_model__need_matrix(m, NAME("attention.value.weight"), A, H, &Y->value, err) ||
            coil_model__need_matrix(m, NAME("attention.receptance.weight"), A, H, &Y->receptance, err) ||
            coil_model__need_matrix(m, NAME("attention.output.weight"), H, A, &Y->output, err) ||
            coil_model__need_f32(m, NAME("feed_forward.time_mix_key"), 3, dmix, &Y->fmix_k, err) ||
            coil_model__need_f32(m, NAME("feed_forward.time_mix_receptance"), 3, dmix, &Y->fmix_r, err) ||
            coil_model__need_matrix(m, NAME("feed_forward.key.weight"), F, H, &Y->fkey, err) ||
            coil_model__need_matrix(m, NAME("feed_forward.receptance.weight"), H, H, &Y->freceptance, err) ||
            coil_model__need_matrix(m, NAME("feed_forward.value.weight"), H, F, &Y->fvalue, err))
            return failed(err);
#undef NAME
        float *w = (float *)Y->decay; /* time_decay = -torch.exp(time_decay), float32, in place in the pool */
        for (int64_t j = 0; j < A; j++)
            w[j] = -expf(w[j]);
    }
    if (coil_model__need_f32(m, "rwkv.ln_out.weight", 1, dH, &m->norm_f, err) ||
        coil_model__need_f32(m, "rwkv.ln_out.bias", 1, dH, &W->ln_out_b, err))
        return failed(err);
    m->dtype = W->layers[0].key.dtype;
    if (!c->tie_embeddings)
        return coil_model__need_matrix(m, "head.weight", V, H, &m->lm_head, err) ? failed(err) : 0;
    m->lm_head = m->embeddings; /* tied: transformers ties a head.weight present anyway; a copy is accepted */
    if (coil_model__lookup(m, "head.weight", NULL)) {
        const coil_tensor_info_t *t;
        int64_t dVH[2] = {V, H};
        if (coil_model__need(m, "head.weight", 2, dVH, &t, err))
            return failed(err);
        m->params -= t->numel;
    }
    return 0;
}

/* ---- state, scratch ------------------------------------------------------------ */

static void rwkv_state_shape(const coil_model_config_t *c, size_t *conv_per, size_t *ssm_per)
{
    *conv_per = 2 * (size_t)c->d_model;  /* time-mix shift | channel-mix shift */
    *ssm_per = 3 * (size_t)c->attn_dim;  /* num | den | max */
}

static void rwkv_state_init(const coil_model_config_t *c, float *conv, float *ssm)
{
    (void)conv;
    for (int64_t a = 0; a < c->attn_dim; a++)
        ssm[2 * c->attn_dim + a] = MAX_INIT;
}

/* Scratch (floats, each rounded up to 16):
 *   resid (C, H); a (C, H) ln1 / ln2 output, after the loop ln_out's;
 *   xk, xv, xr (C, H) mixed inputs (xv: the channel mix's receptance output);
 *   kvr (C, 3A) k | v | r; y (C, A) gated wkv; out (C, H); fk (C, F) */
#define NBUF 9
static void layout(const coil_model_config_t *c, int64_t C, size_t off[NBUF + 1])
{
    const size_t H = (size_t)c->d_model, A = (size_t)c->attn_dim, F = (size_t)c->d_inner;
    const size_t n[NBUF] = {H, H, H, H, H, 3 * A, A, H, F};
    off[0] = 0;
    for (int i = 0; i < NBUF; i++)
        off[i + 1] = off[i] + (((size_t)C * n[i] + 15) & ~(size_t)15);
}

static size_t rwkv_scratch(const coil_model_t *m, int64_t C, size_t *wscratch)
{
    const coil_model_config_t *c = coil_model_config(m);
    const rwkv_weights_t *W = m->fam_layers;
    size_t off[NBUF + 1], ws = 0;
    for (int64_t i = 0; i < c->n_layer; i++) {
        const rwkv_layer_t *Y = &W->layers[i];
        const coil_matrix_t *mats[7] = {&Y->key, &Y->value, &Y->receptance, &Y->output,
                                        &Y->fkey, &Y->freceptance, &Y->fvalue};
        for (int k = 0; k < 7; k++)
            if (coil_backend_linear_scratch(mats[k]) > ws)
                ws = coil_backend_linear_scratch(mats[k]);
    }
    *wscratch = ws;
    layout(c, C, off);
    return off[NBUF];
}

/* ---- forward ------------------------------------------------------------------- */

static const float *rwkv_chunk(const coil_family_run_t *r, const int32_t *ids, int64_t T)
{
    const coil_model_t *m = r->m;
    const coil_model_config_t *c = coil_model_config(m);
    const coil_backend_ops_t *ops = r->ops;
    const rwkv_weights_t *W = m->fam_layers;
    coil_state_t *st = r->st;
    const int64_t H = c->d_model, A = c->attn_dim, F = c->d_inner, R = c->rescale_every;
    const float eps = (float)c->eps;
    const coil_matrix_t *emb = coil_model_embeddings(m);
    const size_t es = coil_dtype_size(emb->dtype);
    size_t off[NBUF + 1];
    layout(c, T, off);
    float *resid = r->scratch + off[0], *a = r->scratch + off[1], *xk = r->scratch + off[2],
          *xv = r->scratch + off[3], *xr = r->scratch + off[4], *kvr = r->scratch + off[5], *y = r->scratch + off[6],
          *out = r->scratch + off[7], *fk = r->scratch + off[8];
    float *ws = r->wscratch;

    for (int64_t t = 0; t < T; t++) /* hidden = embeddings(ids) */
        coil_convert_to_f32(emb->dtype, (const char *)emb->data + (size_t)ids[t] * (size_t)H * es, resid + t * H,
                            (size_t)H);
    for (int64_t l = 0; l < c->n_layer; l++) {
        const rwkv_layer_t *Y = &W->layers[l];
        float *shift = coil_state_conv(st, l);
        /* weights of attention.output / feed_forward.value / 2 ** (block_id // rescale_every) */
        const float sc = R > 0 ? ldexpf(1.0f, -(int)(l / R > 200 ? 200 : l / R)) : 1.0f;
        if (l == 0) /* hidden = self.pre_ln(hidden) */
            ops->layernorm(resid, W->pre_ln_w, W->pre_ln_b, eps, resid, T, H);
        /* attention(self.ln1(hidden)) */
        ops->layernorm(resid, Y->ln1_w, Y->ln1_b, eps, a, T, H);
        const float *amix[3] = {Y->mix_k, Y->mix_v, Y->mix_r};
        float *const aout[3] = {xk, xv, xr};
        ops->token_mix(a, shift, 3, amix, aout, T, H);
        ops->linear(&Y->key, NULL, xk, H, kvr, 3 * A, T, ws);
        ops->linear(&Y->value, NULL, xv, H, kvr + A, 3 * A, T, ws);
        ops->linear(&Y->receptance, NULL, xr, H, kvr + 2 * A, 3 * A, T, ws);
        ops->wkv(T, A, kvr, kvr + A, kvr + 2 * A, 3 * A, Y->decay, Y->first, coil_state_ssm(st, l), sc, y);
        ops->linear(&Y->output, NULL, y, A, out, H, T, ws);
        ops->add(resid, out, T * H);
        /* feed_forward(self.ln2(hidden)) */
        ops->layernorm(resid, Y->ln2_w, Y->ln2_b, eps, a, T, H);
        const float *fmix[2] = {Y->fmix_k, Y->fmix_r};
        float *const fout[2] = {xk, xr};
        ops->token_mix(a, shift + H, 2, fmix, fout, T, H);
        ops->linear(&Y->fkey, NULL, xk, H, fk, F, T, ws);
        ops->relu_sq(fk, T * F, sc);
        ops->linear(&Y->fvalue, NULL, fk, F, out, H, T, ws);
        ops->linear(&Y->freceptance, NULL, xr, H, xv, H, T, ws);
        ops->sigmoid_mul_add(resid, xv, out, T * H);
        if (R > 0 && (l + 1) % R == 0) /* hidden_states = hidden_states / 2 */
            ops->scale(resid, T * H, 0.5f);
    }
    ops->layernorm(resid, m->norm_f, W->ln_out_b, LN_OUT_EPS, a, T, H); /* ln_out */
    return a;
}

const coil_family_t coil_family_rwkv = {
    .model_type = "rwkv",
    .architecture = "RwkvForCausalLM",
    .fp_tag = "coil-rwkv4",
    .blob_id = 3,
    .cuda = false, /* kernels/cuda_engine.c runs Mamba-1 only */
    .parse_config = rwkv_parse,
    .bind = rwkv_bind,
    .state_shape = rwkv_state_shape,
    .state_init = rwkv_state_init,
    .scratch_floats = rwkv_scratch,
    .chunk = rwkv_chunk,
};
