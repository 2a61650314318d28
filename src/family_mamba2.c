/* family_mamba2.c -- Mamba-2 (Mamba2ForCausalLM), as transformers' Mamba2Mixer computes it.
 *
 * Per layer, on T tokens (the recurrent form, sequential in t; the
 * reference's chunked SSD form computes the same function):
 *   x  = RMSNorm(residual)                              (T, d_model)
 *   zxbcdt = x . in_proj^T (+ b)                        (T, D + Dc + NH)  z | xBC | dt
 *   xBC = SiLU(causal depthwise conv1d(xBC) + b)         (T, Dc), Dc = D + 2 G N; carried conv state
 *   x | B | C = split(xBC, [D, G N, G N])               x (T, NH, P); B, C (T, G, N)
 *   dt = clamp(softplus(dt + dt_bias), time_step_limit)  (T, NH)
 *   h[h] = exp(dt A[h]) h[h] + dt x[h] (x) B[g(h)],  A = -exp(A_log)  carried state (NH, P, N)
 *   y  = h[h] . C[g(h)] + D[h] x[h]                      g(h) = h / (NH / G)
 *   y  = MambaRMSNormGated(y, z): y * SiLU(z), RMS-normed in G groups of D / G, * norm.weight
 *   residual += y . out_proj^T (+ b)
 * then norm_f; the LM head is the engine's.
 */
#include "family.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "model_internal.h"

#define MAX_DIM COIL_MODEL_MAX_DIM

/* One layer's tensors. */
typedef struct m2_layer {
    const float *norm;       /* (d_model) */
    coil_matrix_t in_proj;   /* (D + Dc + NH, d_model) */
    const float *in_bias;    /* (D + Dc + NH) or NULL */
    const float *conv_w;     /* (Dc, K) */
    const float *conv_b;     /* (Dc) or NULL */
    const float *dt_bias;    /* (NH) */
    const float *A;          /* (NH) = -exp(A_log) */
    const float *D;          /* (NH) */
    const float *gnorm;      /* (D) gated RMSNorm weight */
    coil_matrix_t out_proj;  /* (d_model, D) */
    const float *out_bias;   /* (d_model) or NULL */
} m2_layer_t;

static int64_t conv_dim(const coil_model_config_t *c)
{
    return c->d_inner + 2 * c->n_groups * c->d_state;
}

static int64_t proj_dim(const coil_model_config_t *c)
{
    return c->d_inner + conv_dim(c) + c->n_heads;
}

/* ---- config ------------------------------------------------------------------ */

static int get_num(json_t *root, const char *key, double dflt, double lo, double hi, double *out, const char *what,
                   coil_err_t *err)
{
    json_t *v = json_object_get(root, key);
    *out = dflt;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi)
        return coil_err_set(err, COIL_ECONFIG, "%s: field '%s' must be a number in [%g, %g]", what, key, lo, hi);
    *out = json_number_value(v);
    return 0;
}

/* A number of time_step_limit: a JSON number, a bare Infinity (older
 * transformers; read as COIL_CFG_INF), or {"__float__": "Infinity"} as
 * transformers 5 writes float("inf").  0, or -1 for anything else. */
static int limit_value(json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v) >= COIL_CFG_INF ? INFINITY : json_number_value(v);
        return 0;
    }
    json_t *f = json_is_object(v) && json_object_size(v) == 1 ? json_object_get(v, "__float__") : NULL;
    if (json_is_string(f) && strcmp(json_string_value(f), "Infinity") == 0) {
        *out = INFINITY;
        return 0;
    }
    return -1;
}

/* Mamba2Config's fields (defaults as transformers'); chunk_size, time_step_rank,
 * time_step_min/max/floor, rescale_prenorm_residual: init or kernel choices, ignored. */
static int mamba2_parse(json_t *root, const char *what, coil_model_config_t *c, coil_err_t *err)
{
    json_t *v = json_object_get(root, "hidden_act");
    int rc;
    double expand;
    if (v && (!json_is_string(v) || strcmp(json_string_value(v), "silu") != 0))
        return coil_err_set(err, COIL_EUNSUPPORTED, "%s: hidden_act must be \"silu\"", what);
    if ((rc = coil_cfg_int(root, "hidden_size", 0, true, 1, MAX_DIM, &c->d_model, what, err)) ||
        (rc = coil_cfg_int(root, "state_size", 128, false, 1, COIL_MODEL_MAX_STATE, &c->d_state, what, err)) ||
        (rc = coil_cfg_int(root, "conv_kernel", 4, false, 1, COIL_MODEL_MAX_CONV, &c->d_conv, what, err)) ||
        (rc = coil_cfg_int(root, "num_hidden_layers", 0, true, 1, COIL_MODEL_MAX_LAYERS, &c->n_layer, what, err)) ||
        (rc = coil_cfg_int(root, "vocab_size", 0, true, 1, COIL_MODEL_MAX_VOCAB, &c->vocab_size, what, err)) ||
        (rc = coil_cfg_int(root, "num_heads", 128, false, 1, MAX_DIM, &c->n_heads, what, err)) ||
        (rc = coil_cfg_int(root, "head_dim", 64, false, 1, MAX_DIM, &c->head_dim, what, err)) ||
        (rc = coil_cfg_int(root, "n_groups", 8, false, 1, MAX_DIM, &c->n_groups, what, err)) ||
        (rc = coil_cfg_token_id(root, "pad_token_id", false, &c->pad_id, what, err)) ||
        (rc = coil_cfg_token_id(root, "bos_token_id", false, &c->bos_id, what, err)) ||
        (rc = coil_cfg_token_id(root, "eos_token_id", true, &c->eos_id, what, err)) ||
        (rc = get_num(root, "expand", 2, 1e-9, MAX_DIM, &expand, what, err)) ||
        (rc = get_num(root, "layer_norm_epsilon", 1e-5, 0, 1, &c->eps, what, err)) ||
        (rc = coil_cfg_bool(root, "use_bias", false, &c->use_bias, what, err)) ||
        (rc = coil_cfg_bool(root, "use_conv_bias", true, &c->use_conv_bias, what, err)) ||
        (rc = coil_cfg_bool(root, "residual_in_fp32", true, &c->residual_in_fp32, what, err)) ||
        (rc = coil_cfg_bool(root, "tie_word_embeddings", false, &c->tie_embeddings, what, err)))
        return rc;
    /* Mamba2Mixer: intermediate_size = int(expand * hidden_size) = num_heads * head_dim */
    c->d_inner = (int64_t)(expand * (double)c->d_model);
    if (c->d_inner < 1 || c->d_inner > MAX_DIM)
        return coil_err_set(err, COIL_ECONFIG, "%s: expand x hidden_size = %lld outside [1, %lld]", what,
                            (long long)c->d_inner, (long long)MAX_DIM);
    if (c->n_heads * c->head_dim != c->d_inner)
        return coil_err_set(err, COIL_ECONFIG,
                            "%s: num_heads x head_dim = %lld x %lld must equal expand x hidden_size = %lld", what,
                            (long long)c->n_heads, (long long)c->head_dim, (long long)c->d_inner);
    if (c->n_heads % c->n_groups != 0)
        return coil_err_set(err, COIL_ECONFIG, "%s: num_heads %lld is not a multiple of n_groups %lld", what,
                            (long long)c->n_heads, (long long)c->n_groups);
    if (conv_dim(c) > MAX_DIM || proj_dim(c) > 4 * MAX_DIM)
        return coil_err_set(err, COIL_ECONFIG, "%s: n_groups x state_size too large", what);
    c->dt_rank = 0; /* time_step_rank: unused by Mamba-2 */
    c->dt_limit_lo = 0.0;
    c->dt_limit_hi = INFINITY;
    v = json_object_get(root, "time_step_limit");
    if (v && !json_is_null(v)) {
        if (!json_is_array(v) || json_array_size(v) != 2 || limit_value(json_array_get(v, 0), &c->dt_limit_lo) ||
            limit_value(json_array_get(v, 1), &c->dt_limit_hi))
            return coil_err_set(err, COIL_ECONFIG, "%s: field 'time_step_limit' must be a list of two numbers", what);
        if (!(c->dt_limit_lo >= 0) || !(c->dt_limit_hi >= c->dt_limit_lo))
            return coil_err_set(err, COIL_ECONFIG, "%s: field 'time_step_limit' must be [lo, hi] with 0 <= lo <= hi",
                                what);
    }
    return 0;
}

/* ---- weights ----------------------------------------------------------------- */

static int failed(coil_err_t *err)
{
    return err && err->code ? err->code : COIL_EFORMAT;
}

static int mamba2_bind(coil_model_t *m, coil_err_t *err)
{
    char name[128]; /* "backbone.layers.<n>.mixer.out_proj.weight", n < 4096 */
    const coil_model_config_t *c = &m->cfg;
    const int64_t H = c->d_model, D = c->d_inner, K = c->d_conv, V = c->vocab_size, NH = c->n_heads,
                  Dc = conv_dim(c), PR = proj_dim(c);
    int rc;
    {   /* check config.json against the files before sizing anything from it */
        const coil_tensor_info_t *t;
        int64_t dVH[2] = {V, H}, dIn[2] = {PR, H}, dNH[1] = {NH}, dconv[3] = {Dc, 1, K}, dH[1] = {H};
        snprintf(name, sizeof name, "backbone.layers.%lld.norm.weight", (long long)(c->n_layer - 1));
        if (coil_model__check(m, "backbone.embeddings.weight", 2, dVH, &t, err) ||
            coil_model__check(m, "backbone.layers.0.mixer.in_proj.weight", 2, dIn, &t, err) ||
            coil_model__check(m, "backbone.layers.0.mixer.A_log", 1, dNH, &t, err) ||
            coil_model__check(m, "backbone.layers.0.mixer.conv1d.weight", 3, dconv, &t, err) ||
            coil_model__check(m, name, 1, dH, &t, err))
            return failed(err);
    }
    /* per layer: norm H, in_bias PR, conv_w Dc*K, conv_b Dc, dt_bias/A/D 3 NH, gnorm D, out_bias H; + norm_f H */
    size_t per = (size_t)(H + PR + Dc * K + Dc + 3 * NH + D + H);
    m->pool_cap = per * (size_t)c->n_layer + (size_t)H;
    m->f32_pool = malloc(m->pool_cap * sizeof(float));
    m2_layer_t *layers = calloc((size_t)c->n_layer, sizeof *layers);
    m->fam_layers = layers;
    if (!m->f32_pool || !layers)
        return coil_err_set(err, COIL_ENOMEM, "%s: out of memory for the model", m->dir);
    if (coil_model__need_matrix(m, "backbone.embeddings.weight", V, H, &m->embeddings, err))
        return failed(err);
    for (int64_t i = 0; i < c->n_layer; i++) {
        m2_layer_t *L = &layers[i];
        const float *A_log;
#define NAME(fmt) (snprintf(name, sizeof name, "backbone.layers.%lld." fmt, (long long)i), name)
        int64_t dH[1] = {H}, dPR[1] = {PR}, dD[1] = {D}, dDc[1] = {Dc}, dNH[1] = {NH}, dconv[3] = {Dc, 1, K};
        if ((rc = coil_model__need_f32(m, NAME("norm.weight"), 1, dH, &L->norm, err)) ||
            (rc = coil_model__need_matrix(m, NAME("mixer.in_proj.weight"), PR, H, &L->in_proj, err)) ||
            (c->use_bias && (rc = coil_model__need_f32(m, NAME("mixer.in_proj.bias"), 1, dPR, &L->in_bias, err))) ||
            (rc = coil_model__need_f32(m, NAME("mixer.conv1d.weight"), 3, dconv, &L->conv_w, err)) ||
            (c->use_conv_bias && (rc = coil_model__need_f32(m, NAME("mixer.conv1d.bias"), 1, dDc, &L->conv_b, err))) ||
            (rc = coil_model__need_f32(m, NAME("mixer.dt_bias"), 1, dNH, &L->dt_bias, err)) ||
            (rc = coil_model__need_f32(m, NAME("mixer.A_log"), 1, dNH, &A_log, err)) ||
            (rc = coil_model__need_f32(m, NAME("mixer.D"), 1, dNH, &L->D, err)) ||
            (rc = coil_model__need_f32(m, NAME("mixer.norm.weight"), 1, dD, &L->gnorm, err)) ||
            (rc = coil_model__need_matrix(m, NAME("mixer.out_proj.weight"), H, D, &L->out_proj, err)) ||
            (c->use_bias && (rc = coil_model__need_f32(m, NAME("mixer.out_proj.bias"), 1, dH, &L->out_bias, err))))
            return failed(err);
#undef NAME
        float *A = (float *)A_log; /* A = -exp(A_log.float()), in place in the pool */
        for (int64_t j = 0; j < NH; j++)
            A[j] = -expf(A[j]);
        L->A = A;
    }
    m->dtype = layers[0].in_proj.dtype;
    return coil_model__bind_head(m, err) ? failed(err) : 0;
}

/* ---- state, scratch ------------------------------------------------------------ */

/* conv: (d_conv - 1, D + 2 G N) time-major (the x|B|C channels); ssm: (NH, head_dim, N). */
static void mamba2_state_shape(const coil_model_config_t *c, size_t *conv_per, size_t *ssm_per)
{
    *conv_per = (size_t)(c->d_conv - 1) * (size_t)conv_dim(c);
    *ssm_per = (size_t)c->n_heads * (size_t)c->head_dim * (size_t)c->d_state;
}

/* Scratch (floats, each rounded up to 16):
 *   resid (C, H) residual; xn (C, H) normed input, after the loop norm_f's output;
 *   zx (C, PR) in_proj output z | xBC | dt; u (C, Dc) conv + SiLU output x | B | C;
 *   y (C, D) scan output, then gated-normed; out (C, H) out_proj output */
#define NBUF 6
static void layout(const coil_model_config_t *c, int64_t C, size_t off[NBUF + 1])
{
    const size_t H = (size_t)c->d_model;
    const size_t n[NBUF] = {H, H, (size_t)proj_dim(c), (size_t)conv_dim(c), (size_t)c->d_inner, H};
    off[0] = 0;
    for (int i = 0; i < NBUF; i++)
        off[i + 1] = off[i] + (((size_t)C * n[i] + 15) & ~(size_t)15);
}

static size_t mamba2_scratch(const coil_model_t *m, int64_t C, size_t *wscratch)
{
    const coil_model_config_t *c = coil_model_config(m);
    const m2_layer_t *layers = m->fam_layers;
    size_t off[NBUF + 1], ws = 0;
    for (int64_t i = 0; i < c->n_layer; i++) {
        if (coil_backend_linear_scratch(&layers[i].in_proj) > ws)
            ws = coil_backend_linear_scratch(&layers[i].in_proj);
        if (coil_backend_linear_scratch(&layers[i].out_proj) > ws)
            ws = coil_backend_linear_scratch(&layers[i].out_proj);
    }
    *wscratch = ws;
    layout(c, C, off);
    return off[NBUF];
}

/* ---- forward ------------------------------------------------------------------- */

static const float *mamba2_chunk(const coil_family_run_t *r, const int32_t *ids, int64_t T)
{
    const coil_model_t *m = r->m;
    const coil_model_config_t *c = coil_model_config(m);
    const coil_backend_ops_t *ops = r->ops;
    const m2_layer_t *layers = m->fam_layers;
    coil_state_t *st = r->st;
    const int64_t H = c->d_model, D = c->d_inner, N = c->d_state, K = c->d_conv, G = c->n_groups,
                  NH = c->n_heads, P = c->head_dim, Dc = conv_dim(c), PR = proj_dim(c);
    const float eps = (float)c->eps, lo = (float)c->dt_limit_lo, hi = (float)c->dt_limit_hi;
    const coil_matrix_t *emb = coil_model_embeddings(m);
    const size_t es = coil_dtype_size(emb->dtype);
    size_t off[NBUF + 1];
    layout(c, T, off);
    float *resid = r->scratch + off[0], *xn = r->scratch + off[1], *zx = r->scratch + off[2],
          *u = r->scratch + off[3], *y = r->scratch + off[4], *out = r->scratch + off[5];

    for (int64_t t = 0; t < T; t++) /* hidden = embeddings(ids) */
        coil_convert_to_f32(emb->dtype, (const char *)emb->data + (size_t)ids[t] * (size_t)H * es, resid + t * H,
                            (size_t)H);
    for (int64_t l = 0; l < c->n_layer; l++) {
        const m2_layer_t *L = &layers[l];
        /* hidden_states = self.norm(residual) */
        ops->rmsnorm(resid, L->norm, eps, xn, T, H);
        /* gate, xBC, dt = in_proj(hidden_states).split([D, Dc, NH]) */
        ops->linear(&L->in_proj, L->in_bias, xn, H, zx, PR, T, r->wscratch);
        /* xBC = act(conv1d(xBC)[..., :T]) with the carried conv state */
        ops->conv_silu(zx + D, PR, coil_state_conv(st, l), L->conv_w, L->conv_b, u, T, Dc, K);
        /* x, B, C = split(xBC, [D, G N, G N]); the scan with dt, A, D (dt_limit clamp) */
        ops->scan_heads(T, NH, P, N, G, u, Dc, u + D, Dc, zx + D + Dc, PR, L->dt_bias, lo, hi, L->A, L->D,
                        coil_state_ssm(st, l), y);
        /* scan_output = self.norm(scan_output, gate) */
        ops->rmsnorm_gated(y, zx, PR, L->gnorm, eps, D / G, T, D);
        /* residual + out_proj(y) */
        ops->linear(&L->out_proj, L->out_bias, y, D, out, H, T, r->wscratch);
        ops->add(resid, out, T * H);
    }
    ops->rmsnorm(resid, coil_model_norm_f(m), eps, xn, T, H); /* norm_f */
    return xn;
}

const coil_family_t coil_family_mamba2 = {
    .model_type = "mamba2",
    .architecture = "Mamba2ForCausalLM",
    .fp_tag = "coil-mamba2",
    .blob_id = 2,
    .cuda = false, /* kernels/cuda_engine.c runs Mamba-1 only */
    .parse_config = mamba2_parse,
    .bind = mamba2_bind,
    .state_shape = mamba2_state_shape,
    .scratch_floats = mamba2_scratch,
    .chunk = mamba2_chunk,
};
