/* family_mamba1.c -- Mamba-1 (MambaForCausalLM) and Falcon-Mamba
 * (FalconMambaForCausalLM): one layer layout, one forward.
 *
 * Falcon-Mamba is Mamba-1 plus weightless RMS norms on the x_proj outputs
 * dt_in, B and C before dt_proj and the scan (FalconMambaMixer:
 * dt_layernorm / b_layernorm / c_layernorm, eps = mixer_rms_eps); its
 * config and tensor names are otherwise MambaConfig's and Mamba's.  The
 * difference is the config value mixer_rms_eps (0 for Mamba-1).
 */
#include "family.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "model_internal.h"

#define MAX_DIM COIL_MODEL_MAX_DIM
#define MAX_LAYERS COIL_MODEL_MAX_LAYERS
#define MAX_ID ((int64_t)COIL_MODEL_MAX_VOCAB)

/* ---- config ------------------------------------------------------------------ */

/* MambaConfig's fields as transformers reads them (see model.h). */
static int mamba1_parse(json_t *root, const char *what, coil_model_config_t *c, coil_err_t *err)
{
    json_t *v;
    int rc = 0;
    v = json_object_get(root, "hidden_act");
    if (v && (!json_is_string(v) || strcmp(json_string_value(v), "silu") != 0)) {
        rc = coil_err_set(err, COIL_EUNSUPPORTED, "%s: hidden_act must be \"silu\"", what);
        goto out;
    }
    if (!json_object_get(root, "hidden_size") && json_object_get(root, "d_model")) {
        /* state-spaces/mamba-130m (not -hf): mamba_ssm's own config and tensor names */
        rc = coil_err_set(err, COIL_EUNSUPPORTED,
                          "%s: has 'd_model' but no 'hidden_size': this is a mamba_ssm config (state-spaces/mamba-*), "
                          "not a transformers MambaConfig; use the converted checkpoint (state-spaces/mamba-*-hf)",
                          what);
        goto out;
    }
    if ((rc = coil_cfg_int(root, "hidden_size", 0, true, 1, MAX_DIM, &c->d_model, what, err)) ||
        (rc = coil_cfg_int(root, "state_size", 16, false, 1, COIL_MODEL_MAX_STATE, &c->d_state, what, err)) ||
        (rc = coil_cfg_int(root, "conv_kernel", 4, false, 1, COIL_MODEL_MAX_CONV, &c->d_conv, what, err)) ||
        (rc = coil_cfg_int(root, "vocab_size", 0, true, 1, MAX_ID, &c->vocab_size, what, err)) ||
        (rc = coil_cfg_token_id(root, "pad_token_id", false, &c->pad_id, what, err)) ||
        (rc = coil_cfg_token_id(root, "bos_token_id", false, &c->bos_id, what, err)) ||
        (rc = coil_cfg_token_id(root, "eos_token_id", true, &c->eos_id, what, err)) ||
        (rc = coil_cfg_alias(root, "d_model", "hidden_size", c->d_model, what, err)))
        goto out;
    /* num_hidden_layers is MambaConfig's field; the published configs also
     * carry mamba_ssm's n_layer (equal), and a few hand-written ones only that. */
    if (json_object_get(root, "num_hidden_layers"))
        rc = coil_cfg_int(root, "num_hidden_layers", 0, true, 1, MAX_LAYERS, &c->n_layer, what, err);
    else if (json_object_get(root, "n_layer"))
        rc = coil_cfg_int(root, "n_layer", 0, true, 1, MAX_LAYERS, &c->n_layer, what, err);
    else
        rc = coil_err_set(err, COIL_ECONFIG, "%s: missing required field 'num_hidden_layers' (or 'n_layer')", what);
    if (rc || (rc = coil_cfg_alias(root, "n_layer", "num_hidden_layers", c->n_layer, what, err)))
        goto out;
    /* intermediate_size = int(expand * hidden_size), as MambaConfig computes it. */
    v = json_object_get(root, "expand");
    double expand = 2.0;
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) <= 0) {
            rc = coil_err_set(err, COIL_ECONFIG, "%s: field 'expand' must be a positive number", what);
            goto out;
        }
        expand = json_number_value(v);
    }
    /* MambaConfig sets intermediate_size = int(expand * hidden_size) whatever
     * the file says (expand defaults to 2), so a different one is an error. */
    int64_t from_expand = (int64_t)(expand * (double)c->d_model);
    if (from_expand < 1 || from_expand > MAX_DIM) {
        rc = coil_err_set(err, COIL_ECONFIG, "%s: expand x hidden_size = %lld outside [1, %lld]", what,
                          (long long)from_expand, (long long)MAX_DIM);
        goto out;
    }
    if ((rc = coil_cfg_int(root, "intermediate_size", from_expand, false, 1, MAX_DIM, &c->d_inner, what, err)))
        goto out;
    if (c->d_inner != from_expand) {
        rc = coil_err_set(err, COIL_ECONFIG,
                          "%s: intermediate_size %lld disagrees with expand x hidden_size = %g x %lld = %lld", what,
                          (long long)c->d_inner, expand, (long long)c->d_model, (long long)from_expand);
        goto out;
    }
    if ((rc = coil_cfg_alias(root, "d_inner", "intermediate_size", c->d_inner, what, err)))
        goto out;
    v = json_object_get(root, "time_step_rank");
    if (!v || json_is_null(v) || (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0)) {
        c->dt_rank = (c->d_model + 15) / 16; /* math.ceil(hidden_size / 16) */
    } else if (json_is_string(v)) {
        rc = coil_err_set(err, COIL_ECONFIG, "%s: field 'time_step_rank' must be an integer or \"auto\", not \"%s\"",
                          what, json_string_value(v));
        goto out;
    } else if ((rc = coil_cfg_int(root, "time_step_rank", 0, true, 1, MAX_DIM, &c->dt_rank, what, err))) {
        goto out;
    }
    v = json_object_get(root, "layer_norm_epsilon");
    c->eps = 1e-5;
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1) {
            rc = coil_err_set(err, COIL_ECONFIG, "%s: field 'layer_norm_epsilon' must be a number in [0, 1]", what);
            goto out;
        }
        c->eps = json_number_value(v);
    }
    if ((rc = coil_cfg_bool(root, "use_bias", false, &c->use_bias, what, err)) ||
        (rc = coil_cfg_bool(root, "use_conv_bias", true, &c->use_conv_bias, what, err)) ||
        (rc = coil_cfg_bool(root, "residual_in_fp32", true, &c->residual_in_fp32, what, err)) ||
        (rc = coil_cfg_bool(root, "tie_word_embeddings", true, &c->tie_embeddings, what, err)))
        goto out;
out:
    return rc;
}

/* FalconMambaConfig: MambaConfig's fields + mixer_rms_eps (default 1e-6);
 * use_falcon_mambapy / use_mambapy / use_associative_scan choose a
 * computation path in transformers, not the function: ignored. */
static int falcon_mamba_parse(json_t *root, const char *what, coil_model_config_t *c, coil_err_t *err)
{
    int rc = mamba1_parse(root, what, c, err);
    if (rc)
        return rc;
    json_t *v = json_object_get(root, "mixer_rms_eps");
    c->mixer_rms_eps = 1e-6;
    if (v && !json_is_null(v)) {
        if (!json_is_number(v) || !(json_number_value(v) > 0) || json_number_value(v) > 1)
            return coil_err_set(err, COIL_ECONFIG, "%s: field 'mixer_rms_eps' must be a number in (0, 1]", what);
        c->mixer_rms_eps = json_number_value(v);
    }
    return 0;
}

/* ---- weights ----------------------------------------------------------------- */

static int bind_failed(coil_err_t *err)
{
    return err && err->code ? err->code : COIL_EFORMAT;
}

static int mamba1_bind(coil_model_t *m, coil_err_t *err)
{
    /* the longest name is "backbone.layers.<n_layer - 1>.mixer.out_proj.weight":
     * n_layer <= COIL_MODEL_MAX_LAYERS keeps it far below 128 bytes */
    char name[128];
    const char *dir = m->dir;
    int rc;
    const coil_model_config_t *c = &m->cfg;
    int64_t H = c->d_model, D = c->d_inner, N = c->d_state, K = c->d_conv, R = c->dt_rank, V = c->vocab_size;
    /* Before sizing anything from config.json, check it against the files:
     * the embeddings (vocab, hidden), layer 0's in_proj and A_log (inner,
     * state), its conv (kernel) and the last layer's norm (layer count). */
    {
        const coil_tensor_info_t *t;
        int64_t dVH[2] = {V, H}, dIn[2] = {2 * D, H}, dDN[2] = {D, N}, dconv[3] = {D, 1, K}, dH[1] = {H};
        snprintf(name, sizeof name, "backbone.layers.%lld.norm.weight", (long long)(c->n_layer - 1));
        if (coil_model__check(m, "backbone.embeddings.weight", 2, dVH, &t, err) ||
            coil_model__check(m, "backbone.layers.0.mixer.in_proj.weight", 2, dIn, &t, err) ||
            coil_model__check(m, "backbone.layers.0.mixer.A_log", 2, dDN, &t, err) ||
            coil_model__check(m, "backbone.layers.0.mixer.conv1d.weight", 3, dconv, &t, err) || coil_model__check(m, name, 1, dH, &t, err))
            return bind_failed(err);
    }
    /* per layer: norm H, in_bias 2D, conv_w D*K, conv_b D, dt_bias D, A D*N, D D, out_bias H; + norm_f H */
    size_t per = (size_t)(H + 2 * D + D * K + D + D + D * N + D + H);
    m->pool_cap = per * (size_t)c->n_layer + (size_t)H;
    m->f32_pool = malloc(m->pool_cap * sizeof(float));
    m->layers = calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m->f32_pool || !m->layers) {
        coil_err_set(err, COIL_ENOMEM, "%s: out of memory for the model", dir);
        return bind_failed(err);
    }
    if (coil_model__need_matrix(m, "backbone.embeddings.weight", V, H, &m->embeddings, err))
        return bind_failed(err);
    for (int64_t i = 0; i < c->n_layer; i++) {
        coil_layer_t *L = &m->layers[i];
        const float *A_log;
#define NAME(fmt) (snprintf(name, sizeof name, "backbone.layers.%lld." fmt, (long long)i), name)
        int64_t dH[1] = {H}, d2D[1] = {2 * D}, dD[1] = {D}, dconv[3] = {D, 1, K}, dDN[2] = {D, N};
        if ((rc = coil_model__need_f32(m, NAME("norm.weight"), 1, dH, &L->norm, err)) ||
            (rc = coil_model__need_matrix(m, NAME("mixer.in_proj.weight"), 2 * D, H, &L->in_proj, err)) ||
            (c->use_bias && (rc = coil_model__need_f32(m, NAME("mixer.in_proj.bias"), 1, d2D, &L->in_bias, err))) ||
            (rc = coil_model__need_f32(m, NAME("mixer.conv1d.weight"), 3, dconv, &L->conv_w, err)) ||
            (c->use_conv_bias && (rc = coil_model__need_f32(m, NAME("mixer.conv1d.bias"), 1, dD, &L->conv_b, err))) ||
            (rc = coil_model__need_matrix(m, NAME("mixer.x_proj.weight"), R + 2 * N, D, &L->x_proj, err)) ||
            (rc = coil_model__need_matrix(m, NAME("mixer.dt_proj.weight"), D, R, &L->dt_proj, err)) ||
            (rc = coil_model__need_f32(m, NAME("mixer.dt_proj.bias"), 1, dD, &L->dt_bias, err)) ||
            (rc = coil_model__need_f32(m, NAME("mixer.A_log"), 2, dDN, &A_log, err)) ||
            (rc = coil_model__need_f32(m, NAME("mixer.D"), 1, dD, &L->D, err)) ||
            (rc = coil_model__need_matrix(m, NAME("mixer.out_proj.weight"), H, D, &L->out_proj, err)) ||
            (c->use_bias && (rc = coil_model__need_f32(m, NAME("mixer.out_proj.bias"), 1, dH, &L->out_bias, err))))
            return bind_failed(err);
#undef NAME
        /* A = -exp(A_log.float()), in place in the pool. */
        float *A = (float *)A_log;
        for (int64_t j = 0; j < D * N; j++)
            A[j] = -expf(A[j]);
        L->A = A;
    }
    m->dtype = m->layers[0].in_proj.dtype;
    if (coil_model__bind_head(m, err))
        return bind_failed(err);
    return 0;
}

/* ---- state, scratch ------------------------------------------------------------ */

/* conv: (d_conv - 1, d_inner) time-major; ssm: (d_inner, d_state). */
static void mamba1_state_shape(const coil_model_config_t *c, size_t *conv_per, size_t *ssm_per)
{
    *conv_per = (size_t)(c->d_conv - 1) * (size_t)c->d_inner;
    *ssm_per = (size_t)c->d_inner * (size_t)c->d_state;
}

/* The scratch, in this order (floats, each rounded up to 16 = 64 bytes):
 *   resid (C, H)   residual stream
 *   xn    (C, H)   normed input of a layer; after the loop, norm_f output
 *   xz    (C, 2D)  in_proj output: x | z
 *   u     (C, D)   conv + SiLU output
 *   xdbl  (C, R+2N) x_proj output: dt_in | B | C
 *   dt    (C, D)   dt_proj output (+ bias), before softplus
 *   y     (C, D)   gated scan output
 *   out   (C, H)   out_proj output */
#define NBUF 8
static void layout(const coil_model_config_t *c, int64_t C, size_t off[NBUF + 1])
{
    const size_t H = (size_t)c->d_model, D = (size_t)c->d_inner, XD = (size_t)(c->dt_rank + 2 * c->d_state);
    const size_t n[NBUF] = {H, H, 2 * D, D, XD, D, D, H};
    off[0] = 0;
    for (int i = 0; i < NBUF; i++)
        off[i + 1] = off[i] + (((size_t)C * n[i] + 15) & ~(size_t)15);
}

static size_t mamba1_scratch(const coil_model_t *m, int64_t C, size_t *wscratch)
{
    const coil_model_config_t *c = coil_model_config(m);
    size_t off[NBUF + 1], ws = 0;
    for (int64_t i = 0; i < c->n_layer; i++) {
        const coil_layer_t *L = coil_model_layer(m, i);
        const coil_matrix_t *mats[4] = {&L->in_proj, &L->x_proj, &L->dt_proj, &L->out_proj};
        for (int k = 0; k < 4; k++)
            if (coil_backend_linear_scratch(mats[k]) > ws)
                ws = coil_backend_linear_scratch(mats[k]);
    }
    *wscratch = ws;
    layout(c, C, off);
    return off[NBUF];
}

/* ---- forward ------------------------------------------------------------------- */

static const float *mamba1_chunk(const coil_family_run_t *r, const int32_t *ids, int64_t T)
{
    const coil_model_t *m = r->m;
    const coil_model_config_t *c = coil_model_config(m);
    const coil_backend_ops_t *ops = r->ops;
    coil_state_t *st = r->st;
    const int64_t H = c->d_model, D = c->d_inner, N = c->d_state, R = c->dt_rank, K = c->d_conv;
    const int64_t XD = R + 2 * N;
    const float eps = (float)c->eps, mixer_eps = (float)c->mixer_rms_eps;
    const coil_matrix_t *emb = coil_model_embeddings(m);
    const size_t es = coil_dtype_size(emb->dtype);
    size_t off[NBUF + 1];
    layout(c, T, off);
    float *resid = r->scratch + off[0], *xn = r->scratch + off[1], *xz = r->scratch + off[2],
          *u = r->scratch + off[3], *xdbl = r->scratch + off[4], *dt = r->scratch + off[5], *y = r->scratch + off[6],
          *out = r->scratch + off[7];
    float *ws = r->wscratch;

    for (int64_t t = 0; t < T; t++) /* hidden = embeddings(ids) */
        coil_convert_to_f32(emb->dtype, (const char *)emb->data + (size_t)ids[t] * (size_t)H * es, resid + t * H,
                            (size_t)H);
    for (int64_t l = 0; l < c->n_layer; l++) {
        const coil_layer_t *L = coil_model_layer(m, l);
        /* hidden_states = self.norm(residual) */
        ops->rmsnorm(resid, L->norm, eps, xn, T, H);
        /* projected_states = in_proj(hidden_states): x = [:, :D], gate z = [:, D:] */
        ops->linear(&L->in_proj, L->in_bias, xn, H, xz, 2 * D, T, ws);
        /* x = act(conv1d(x)[..., :T]) with the carried conv state */
        ops->conv_silu(xz, 2 * D, coil_state_conv(st, l), L->conv_w, L->conv_b, u, T, D, K);
        /* time_step, B, C = split(x_proj(x), [R, N, N]) */
        ops->linear(&L->x_proj, NULL, u, D, xdbl, XD, T, ws);
        if (mixer_eps > 0) {
            /* falcon_mamba: time_step = dt_layernorm(time_step); B = b_layernorm(B); C = c_layernorm(C) */
            ops->rmsnorm_weightless(xdbl, XD, mixer_eps, T, R);
            ops->rmsnorm_weightless(xdbl + R, XD, mixer_eps, T, N);
            ops->rmsnorm_weightless(xdbl + R + N, XD, mixer_eps, T, N);
        }
        /* dt = dt_proj.weight @ time_step + dt_proj.bias (softplus inside the scan) */
        ops->linear(&L->dt_proj, L->dt_bias, xdbl, XD, dt, D, T, ws);
        /* y = (selective_scan(x, dt, A, B, C) + D * x) * silu(z) */
        ops->scan(T, D, N, u, dt, L->A, xdbl + R, XD, L->D, xz + D, 2 * D, coil_state_ssm(st, l), y);
        /* residual + out_proj(y) */
        ops->linear(&L->out_proj, L->out_bias, y, D, out, H, T, ws);
        ops->add(resid, out, T * H);
    }
    /* hidden_states = norm_f(hidden_states) */
    ops->rmsnorm(resid, coil_model_norm_f(m), eps, xn, T, H);
    return xn;
}

const coil_family_t coil_family_mamba = {
    .model_type = "mamba",
    .architecture = "MambaForCausalLM",
    .fp_tag = "coil-mamba1",
    .blob_id = 0,
    .cuda = true,
    .parse_config = mamba1_parse,
    .bind = mamba1_bind,
    .state_shape = mamba1_state_shape,
    .scratch_floats = mamba1_scratch,
    .chunk = mamba1_chunk,
};

const coil_family_t coil_family_falcon_mamba = {
    .model_type = "falcon_mamba",
    .architecture = "FalconMambaForCausalLM",
    .fp_tag = "coil-falcon_mamba",
    .blob_id = 1,
    .cuda = false, /* kernels/cuda_engine.c has no B/C/dt norms yet */
    .parse_config = falcon_mamba_parse,
    .bind = mamba1_bind,
    .state_shape = mamba1_state_shape,
    .scratch_floats = mamba1_scratch,
    .chunk = mamba1_chunk,
};
