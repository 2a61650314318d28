/* cuda_engine.c -- the device-resident Mamba-1 forward (see cuda_engine.h). */
#include "cuda_engine.h"

#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "cuda.h"

#define DEFAULT_CHUNK 256

typedef struct {
    const float *norm, *in_proj, *in_bias, *conv_w, *conv_b, *x_proj, *dt_proj, *dt_bias, *A, *D, *out_proj,
        *out_bias;
} dlayer_t;

struct coil_cuda_engine {
    const coil_model_t *m;
    coil_cuda_t *c;
    coil_cuda_shape_t shape;
    coil_cuda_buffers_t plan;
    int64_t C, S;           /* max_chunk, sequences */
    coil_cuda_buf_t *w;     /* all weights, float32 */
    coil_cuda_buf_t *act;   /* activation arena */
    coil_cuda_buf_t *st;    /* conv | ssm | hidden (nseq, H) */
    size_t hidden_off, st_bytes;
    dlayer_t *layers;
    const float *emb, *norm_f, *head;
    int64_t *pos;           /* per sequence */
    int *has_hidden;
    int64_t *ck_pos;
    int *ck_has_hidden;
    coil_cuda_ckpt_t *ck;
    coil_cuda_buf_t *ids_all; /* a forward call's ids (nseq, T), uploaded once per call */
    int with_logits;
};

static char *base(coil_cuda_buf_t *b) { return (char *)coil_cuda_ptr(b); }

/* Uploads n floats of a (possibly half-precision) tensor at *off, advancing it. */
static int put(coil_cuda_engine_t *e, const void *src, int dtype, size_t n, size_t *off, const float **dptr,
               float *tmp, coil_err_t *err)
{
    if (!src) {
        *dptr = NULL;
        return 0;
    }
    coil_convert_to_f32(dtype, src, tmp, n);
    int rc = coil_cuda_upload(e->c, e->w, *off, tmp, n * sizeof(float), err);
    *dptr = (const float *)(base(e->w) + *off);
    *off += n * sizeof(float);
    return rc;
}

static int put_matrix(coil_cuda_engine_t *e, const coil_matrix_t *M, size_t *off, const float **dptr, float *tmp,
                      coil_err_t *err)
{
    return put(e, M->data, M->dtype, (size_t)(M->rows * M->cols), off, dptr, tmp, err);
}

static int upload_weights(coil_cuda_engine_t *e, coil_err_t *err)
{
    const coil_model_config_t *cf = coil_model_config(e->m);
    const size_t H = (size_t)cf->d_model, D = (size_t)cf->d_inner, N = (size_t)cf->d_state, K = (size_t)cf->d_conv;
    const coil_matrix_t *emb = coil_model_embeddings(e->m), *head = coil_model_lm_head(e->m);
    size_t big = (size_t)(emb->rows * emb->cols);
    const size_t vecs[] = {2 * D, D * K, D * N, H};
    for (int k = 0; k < 4; k++)
        if (vecs[k] > big)
            big = vecs[k];
    for (int64_t l = 0; l < cf->n_layer; l++) {
        const coil_layer_t *L = coil_model_layer(e->m, l);
        const coil_matrix_t *ms[4] = {&L->in_proj, &L->x_proj, &L->dt_proj, &L->out_proj};
        for (int k = 0; k < 4; k++)
            if ((size_t)(ms[k]->rows * ms[k]->cols) > big)
                big = (size_t)(ms[k]->rows * ms[k]->cols);
    }
    float *tmp = malloc(big * sizeof(float));
    if (!tmp)
        return coil_err_set(err, COIL_ENOMEM, "out of host memory staging the weights (%zu floats)", big);
    size_t off = 0;
    int rc = put_matrix(e, emb, &off, &e->emb, tmp, err);
    if (!rc)
        rc = put(e, coil_model_norm_f(e->m), COIL_DT_F32, H, &off, &e->norm_f, tmp, err);
    if (!rc && head != emb)
        rc = put_matrix(e, head, &off, &e->head, tmp, err);
    if (head == emb)
        e->head = e->emb;
    for (int64_t l = 0; !rc && l < cf->n_layer; l++) {
        const coil_layer_t *L = coil_model_layer(e->m, l);
        dlayer_t *d = &e->layers[l];
        rc = put(e, L->norm, COIL_DT_F32, H, &off, &d->norm, tmp, err);
        if (!rc)
            rc = put_matrix(e, &L->in_proj, &off, &d->in_proj, tmp, err);
        if (!rc)
            rc = put(e, L->in_bias, COIL_DT_F32, 2 * D, &off, &d->in_bias, tmp, err);
        if (!rc)
            rc = put(e, L->conv_w, COIL_DT_F32, D * K, &off, &d->conv_w, tmp, err);
        if (!rc)
            rc = put(e, L->conv_b, COIL_DT_F32, D, &off, &d->conv_b, tmp, err);
        if (!rc)
            rc = put_matrix(e, &L->x_proj, &off, &d->x_proj, tmp, err);
        if (!rc)
            rc = put_matrix(e, &L->dt_proj, &off, &d->dt_proj, tmp, err);
        if (!rc)
            rc = put(e, L->dt_bias, COIL_DT_F32, D, &off, &d->dt_bias, tmp, err);
        if (!rc)
            rc = put(e, L->A, COIL_DT_F32, D * N, &off, &d->A, tmp, err);
        if (!rc)
            rc = put(e, L->D, COIL_DT_F32, D, &off, &d->D, tmp, err);
        if (!rc)
            rc = put_matrix(e, &L->out_proj, &off, &d->out_proj, tmp, err);
        if (!rc)
            rc = put(e, L->out_bias, COIL_DT_F32, H, &off, &d->out_bias, tmp, err);
    }
    free(tmp);
    if (!rc && off > e->plan.weights)
        rc = coil_err_set(err, COIL_ESHAPE, "CUDA engine: the weights took %zu bytes, %zu were planned", off,
                          e->plan.weights);
    return rc;
}

coil_cuda_engine_t *coil_cuda_engine_new(const coil_model_t *m, const coil_cuda_engine_options_t *opt,
                                         coil_err_t *err)
{
    const coil_model_config_t *cf = coil_model_config(m);
    coil_cuda_engine_t *e = calloc(1, sizeof *e);
    if (!e) {
        coil_err_set(err, COIL_ENOMEM, "out of memory for the CUDA engine");
        return NULL;
    }
    e->m = m;
    e->C = opt && opt->max_chunk > 0 ? opt->max_chunk : DEFAULT_CHUNK;
    e->S = opt && opt->nseq > 0 ? opt->nseq : 1;
    e->with_logits = opt ? opt->with_logits : 0;
    e->shape = (coil_cuda_shape_t){cf->d_model, cf->d_inner, cf->d_state, cf->d_conv, cf->dt_rank, cf->n_layer,
                                   cf->vocab_size, cf->use_bias, cf->use_conv_bias,
                                   coil_model_lm_head(m) == coil_model_embeddings(m)};
    if (coil_cuda_plan_buffers(&e->shape, e->C, e->S, e->with_logits, &e->plan, err))
        goto fail;
    const size_t H = (size_t)cf->d_model;
    e->hidden_off = e->plan.state;
    e->st_bytes = e->plan.state + (size_t)e->S * H * sizeof(float);
    e->layers = calloc((size_t)cf->n_layer, sizeof *e->layers);
    e->pos = calloc((size_t)e->S, sizeof *e->pos);
    e->ck_pos = calloc((size_t)e->S, sizeof *e->ck_pos);
    e->has_hidden = calloc((size_t)e->S, sizeof *e->has_hidden);
    e->ck_has_hidden = calloc((size_t)e->S, sizeof *e->ck_has_hidden);
    if (!e->layers || !e->pos || !e->ck_pos || !e->has_hidden || !e->ck_has_hidden) {
        coil_err_set(err, COIL_ENOMEM, "out of host memory for the CUDA engine");
        goto fail;
    }
    if (!(e->c = coil_cuda_open(opt ? opt->device : 0, err)))
        goto fail;
    coil_cuda_set_math(e->c, opt ? opt->math : COIL_CUDA_MATH_F32);
    if (!(e->w = coil_cuda_alloc(e->c, e->plan.weights, "the model weights (float32)", err)) ||
        !(e->act = coil_cuda_alloc(e->c, e->plan.arena, "the activations", err)) ||
        !(e->st = coil_cuda_alloc(e->c, e->st_bytes, "the recurrent states", err)))
        goto fail;
    if (upload_weights(e, err) || coil_cuda_zero(e->c, e->st, 0, e->st_bytes, err) || coil_cuda_sync(e->c, err))
        goto fail;
    return e;
fail:
    coil_cuda_engine_destroy(&e);
    return NULL;
}

void coil_cuda_engine_destroy(coil_cuda_engine_t **pe)
{
    coil_cuda_engine_t *e;
    if (!pe || !(e = *pe))
        return;
    coil_cuda_ckpt_free(&e->ck);
    coil_cuda_free(&e->w);
    coil_cuda_free(&e->act);
    coil_cuda_free(&e->st);
    coil_cuda_free(&e->ids_all);
    coil_cuda_close(&e->c);
    free(e->layers);
    free(e->pos);
    free(e->ck_pos);
    free(e->has_hidden);
    free(e->ck_has_hidden);
    free(e);
    *pe = NULL;
}

/* Byte offsets of sequence s's conv / ssm state of layer l in e->st. */
static size_t conv_off(const coil_cuda_engine_t *e, int64_t l, int64_t s)
{
    const coil_cuda_shape_t *p = &e->shape;
    return (size_t)(((l * e->S + s) * (p->d_conv - 1)) * p->d_inner) * sizeof(float);
}
static size_t ssm_off(const coil_cuda_engine_t *e, int64_t l, int64_t s)
{
    const coil_cuda_shape_t *p = &e->shape;
    return e->plan.conv_state + (size_t)(((l * e->S + s) * p->d_inner) * p->d_state) * sizeof(float);
}
static size_t hidden_off(const coil_cuda_engine_t *e, int64_t s)
{
    return e->hidden_off + (size_t)(s * e->shape.d_model) * sizeof(float);
}

static int check_slot(const coil_cuda_engine_t *e, int64_t slot, const coil_state_t *st, coil_err_t *err)
{
    if (slot < 0 || slot >= e->S)
        return coil_err_set(err, COIL_EINVAL, "sequence %lld is outside the CUDA engine's %lld", (long long)slot,
                            (long long)e->S);
    if (st && coil_state_fingerprint(st) != coil_model_fingerprint(e->m))
        return coil_err_set(err, COIL_EMISMATCH, "state belongs to model %016llx, the CUDA engine runs %016llx",
                            (unsigned long long)coil_state_fingerprint(st),
                            (unsigned long long)coil_model_fingerprint(e->m));
    return 0;
}

int coil_cuda_engine_load_state(coil_cuda_engine_t *e, int64_t slot, const coil_state_t *st, coil_err_t *err)
{
    int rc = check_slot(e, slot, st, err);
    if (rc)
        return rc;
    coil_state_t *s = (coil_state_t *)st; /* the views are read only here */
    const coil_cuda_shape_t *p = &e->shape;
    const size_t cb = (size_t)((p->d_conv - 1) * p->d_inner) * sizeof(float),
                 sb = (size_t)(p->d_inner * p->d_state) * sizeof(float);
    for (int64_t l = 0; !rc && l < p->n_layer; l++) {
        rc = coil_cuda_upload(e->c, e->st, conv_off(e, l, slot), coil_state_conv(s, l), cb, err);
        if (!rc)
            rc = coil_cuda_upload(e->c, e->st, ssm_off(e, l, slot), coil_state_ssm(s, l), sb, err);
    }
    if (!rc)
        rc = coil_cuda_upload(e->c, e->st, hidden_off(e, slot), coil_state_last_hidden(s),
                              (size_t)p->d_model * sizeof(float), err);
    if (rc)
        return rc;
    e->pos[slot] = coil_state_position(st);
    e->has_hidden[slot] = coil_state_has_hidden(st);
    return 0;
}

/* Fills st from a host copy of the whole state buffer. */
static void unpack(const coil_cuda_engine_t *e, const char *h, int64_t slot, coil_state_t *st, int64_t pos, int hh)
{
    const coil_cuda_shape_t *p = &e->shape;
    const size_t cb = (size_t)((p->d_conv - 1) * p->d_inner) * sizeof(float),
                 sb = (size_t)(p->d_inner * p->d_state) * sizeof(float);
    for (int64_t l = 0; l < p->n_layer; l++) {
        memcpy(coil_state_conv(st, l), h + conv_off(e, l, slot), cb);
        memcpy(coil_state_ssm(st, l), h + ssm_off(e, l, slot), sb);
    }
    memcpy(coil_state_last_hidden(st), h + hidden_off(e, slot), (size_t)p->d_model * sizeof(float));
    coil_state_set_position(st, pos);
    coil_state_set_has_hidden(st, hh);
}

int coil_cuda_engine_save_state(coil_cuda_engine_t *e, int64_t slot, coil_state_t *st, coil_err_t *err)
{
    int rc = check_slot(e, slot, st, err);
    if (rc)
        return rc;
    const coil_cuda_shape_t *p = &e->shape;
    const size_t cb = (size_t)((p->d_conv - 1) * p->d_inner) * sizeof(float),
                 sb = (size_t)(p->d_inner * p->d_state) * sizeof(float);
    for (int64_t l = 0; !rc && l < p->n_layer; l++) {
        rc = coil_cuda_download(e->c, coil_state_conv(st, l), e->st, conv_off(e, l, slot), cb, err);
        if (!rc)
            rc = coil_cuda_download(e->c, coil_state_ssm(st, l), e->st, ssm_off(e, l, slot), sb, err);
    }
    if (!rc)
        rc = coil_cuda_download(e->c, coil_state_last_hidden(st), e->st, hidden_off(e, slot),
                                (size_t)p->d_model * sizeof(float), err);
    if (rc)
        return rc;
    coil_state_set_position(st, e->pos[slot]);
    coil_state_set_has_hidden(st, e->has_hidden[slot]);
    return 0;
}

int coil_cuda_engine_reset(coil_cuda_engine_t *e, int64_t slot, coil_err_t *err)
{
    int rc = check_slot(e, slot, NULL, err);
    const coil_cuda_shape_t *p = &e->shape;
    const size_t cb = (size_t)((p->d_conv - 1) * p->d_inner) * sizeof(float),
                 sb = (size_t)(p->d_inner * p->d_state) * sizeof(float);
    for (int64_t l = 0; !rc && l < p->n_layer; l++) {
        rc = coil_cuda_zero(e->c, e->st, conv_off(e, l, slot), cb, err);
        if (!rc)
            rc = coil_cuda_zero(e->c, e->st, ssm_off(e, l, slot), sb, err);
    }
    if (!rc)
        rc = coil_cuda_zero(e->c, e->st, hidden_off(e, slot), (size_t)p->d_model * sizeof(float), err);
    if (!rc) {
        e->pos[slot] = 0;
        e->has_hidden[slot] = 0;
    }
    return rc;
}

#define A(off) ((float *)(base(e->act) + (off)))

/* One step of tokens [t0, t0+n), n <= C, of every sequence (of T in e->ids_all):
 * everything is queued on the main stream, nothing waits for the device. */
static int step(coil_cuda_engine_t *e, int64_t T, int64_t t0, int64_t n, coil_err_t *err)
{
    const coil_model_config_t *cf = coil_model_config(e->m);
    const coil_cuda_buffers_t *b = &e->plan;
    coil_cuda_t *c = e->c;
    const int64_t H = cf->d_model, D = cf->d_inner, N = cf->d_state, R = cf->dt_rank, K = cf->d_conv,
                  XD = R + 2 * N, rows = n * e->S;
    const float eps = (float)cf->eps;
    int rc = 0;
    for (int64_t s = 0; !rc && s < e->S; s++)
        rc = coil_cuda_copy(c, e->act, b->ids + (size_t)(s * n) * sizeof(int32_t), e->ids_all,
                            (size_t)(s * T + t0) * sizeof(int32_t), (size_t)n * sizeof(int32_t), err);
    if (!rc)
        rc = coil_cuda_embed(c, COIL_DT_F32, e->emb, H, (const int32_t *)A(b->ids), rows, A(b->resid), err);
    for (int64_t l = 0; !rc && l < cf->n_layer; l++) {
        const dlayer_t *L = &e->layers[l];
        float *conv = (float *)(base(e->st) + conv_off(e, l, 0)), *ssm = (float *)(base(e->st) + ssm_off(e, l, 0));
        /* residual += out_proj(previous layer); hidden = norm(residual) */
        rc = coil_cuda_rmsnorm_add(c, A(b->resid), l ? A(b->out) : NULL, L->norm, eps, A(b->xn), rows, H, err);
        if (!rc)
            rc = coil_cuda_linear(c, L->in_proj, 2 * D, H, L->in_bias, A(b->xn), H, A(b->xz), 2 * D, rows, err);
        if (!rc)
            rc = coil_cuda_conv_silu(c, A(b->xz), 2 * D, conv, L->conv_w, L->conv_b, A(b->u), n, D, K, e->S, err);
        if (!rc)
            rc = coil_cuda_linear(c, L->x_proj, XD, D, NULL, A(b->u), D, A(b->xdbl), XD, rows, err);
        if (!rc)
            rc = coil_cuda_linear(c, L->dt_proj, D, R, L->dt_bias, A(b->xdbl), XD, A(b->dt), D, rows, err);
        if (!rc)
            rc = coil_cuda_scan(c, n, D, N, e->S, A(b->u), A(b->dt), L->A, A(b->xdbl) + R, XD, L->D, A(b->xz) + D,
                                2 * D, ssm, A(b->y), err);
        if (!rc)
            rc = coil_cuda_linear(c, L->out_proj, H, D, L->out_bias, A(b->y), D, A(b->out), H, rows, err);
    }
    if (!rc)
        rc = coil_cuda_rmsnorm_add(c, A(b->resid), cf->n_layer ? A(b->out) : NULL, e->norm_f, eps, A(b->xn), rows, H,
                                   err);
    /* each sequence's last normed hidden vector goes with its state */
    for (int64_t s = 0; !rc && s < e->S; s++)
        rc = coil_cuda_copy(c, e->st, hidden_off(e, s), e->act, b->xn + (size_t)((s * n + n - 1) * H) * sizeof(float),
                            (size_t)H * sizeof(float), err);
    return rc;
}

int coil_cuda_engine_forward(coil_cuda_engine_t *e, const int32_t *ids, int64_t T, float *logits, coil_err_t *err)
{
    const coil_model_config_t *cf = coil_model_config(e->m);
    const int64_t V = cf->vocab_size;
    if (T < 0 || (T > 0 && !ids))
        return coil_err_set(err, COIL_EINVAL, "invalid token count %lld", (long long)T);
    if (logits && !e->with_logits)
        return coil_err_set(err, COIL_EINVAL, "logits asked of a CUDA engine made without a logits buffer");
    for (int64_t i = 0; i < T * e->S; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return coil_err_set(err, COIL_EINVAL,
                                "token id %d at position %lld of sequence %lld is outside the vocabulary [0, %lld)",
                                ids[i], (long long)(i % T), (long long)(i / T), (long long)V);
    if (T == 0)
        return 0;
    const size_t idb = (size_t)(T * e->S) * sizeof(int32_t);
    if (!e->ids_all || coil_cuda_size(e->ids_all) < idb) {
        coil_cuda_free(&e->ids_all); /* waits for the steps still reading it */
        if (!(e->ids_all = coil_cuda_alloc(e->c, idb, "the token ids", err)))
            return err ? err->code : COIL_ENOMEM;
    }
    int rc0 = coil_cuda_upload(e->c, e->ids_all, 0, ids, idb, err); /* in order after the previous steps */
    if (rc0)
        return rc0;
    for (int64_t t0 = 0; t0 < T; t0 += e->C) {
        const int64_t n = T - t0 < e->C ? T - t0 : e->C;
        int rc = step(e, T, t0, n, err);
        if (!rc && logits) {
            float *lg = A(e->plan.logits);
            rc = coil_cuda_linear(e->c, e->head, V, cf->d_model, NULL, A(e->plan.xn), cf->d_model, lg, V, n * e->S,
                                  err);
            for (int64_t s = 0; !rc && s < e->S; s++)
                rc = coil_cuda_download(e->c, logits + (s * T + t0) * V, e->act,
                                        e->plan.logits + (size_t)(s * n * V) * sizeof(float),
                                        (size_t)(n * V) * sizeof(float), err);
        }
        if (rc)
            return coil_err_prefix(err, "CUDA forward, tokens [%lld, %lld)", (long long)t0, (long long)(t0 + n));
        for (int64_t s = 0; s < e->S; s++) {
            e->pos[s] += n;
            e->has_hidden[s] = 1;
        }
    }
    return 0;
}

int coil_cuda_engine_checkpoint_start(coil_cuda_engine_t *e, coil_err_t *err)
{
    if (!e->ck && !(e->ck = coil_cuda_ckpt_new(e->c, e->st_bytes, err)))
        return err ? err->code : COIL_ENOMEM;
    int rc = coil_cuda_ckpt_start(e->c, e->ck, e->st, 0, e->st_bytes, err);
    if (!rc) {
        memcpy(e->ck_pos, e->pos, (size_t)e->S * sizeof *e->pos);
        memcpy(e->ck_has_hidden, e->has_hidden, (size_t)e->S * sizeof *e->has_hidden);
    }
    return rc;
}

int coil_cuda_engine_checkpoint_wait(coil_cuda_engine_t *e, coil_state_t **states, coil_err_t *err)
{
    if (!e->ck)
        return coil_err_set(err, COIL_ESTATE, "no checkpoint was started");
    for (int64_t s = 0; s < e->S; s++) {
        int rc = states[s] ? check_slot(e, s, states[s], err) : 0;
        if (rc)
            return rc;
    }
    const void *h;
    int rc = coil_cuda_ckpt_wait(e->c, e->ck, &h, NULL, err);
    if (rc)
        return rc;
    for (int64_t s = 0; s < e->S; s++)
        if (states[s])
            unpack(e, h, s, states[s], e->ck_pos[s], e->ck_has_hidden[s]);
    return 0;
}

int coil_cuda_engine_sync(coil_cuda_engine_t *e, coil_err_t *err) { return coil_cuda_sync(e->c, err); }
const char *coil_cuda_engine_device_name(const coil_cuda_engine_t *e) { return coil_cuda_device_name(e->c); }
size_t coil_cuda_engine_device_bytes(const coil_cuda_engine_t *e)
{
    return e->plan.weights + e->plan.arena + e->st_bytes;
}
int64_t coil_cuda_engine_nseq(const coil_cuda_engine_t *e) { return e->S; }
int64_t coil_cuda_engine_max_chunk(const coil_cuda_engine_t *e) { return e->C; }
