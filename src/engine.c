/* engine.c -- a model family's chunk forward over a compute backend, chunked, + the LM head. */
#include "engine.h"

#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "convert.h"
#include "family.h"
#ifdef COIL_HAVE_CUDA
#include "cuda_engine.h"
#endif

#define DEFAULT_CHUNK 256
#define LM_HEAD_BLOCK 4096 /* rows of a half-precision LM head converted at a time */

struct coil_engine {
    const coil_model_t *m;
    const coil_family_t *fam;
    const coil_backend_ops_t *ops;
    int64_t C;          /* max tokens per step */
    float *scratch;     /* the family's activations for C tokens (family.h) */
    float *wscratch;    /* float32 copy of a half-precision matrix (or NULL) */
    size_t scratch_bytes;
#ifdef COIL_HAVE_CUDA
    coil_cuda_engine_t *cuda; /* backend "cuda": the whole forward runs there */
#endif
};

static void *xalloc(size_t n, size_t *total)
{
    *total += n;
    return aligned_alloc(64, (n + 63) & ~(size_t)63);
}

coil_engine_t *coil_engine_new(const coil_model_t *m, const coil_engine_options_t *opt, coil_err_t *err)
{
    const coil_model_config_t *c = coil_model_config(m);
    coil_engine_t *e = calloc(1, sizeof *e);
    if (!e) {
        coil_err_set(err, COIL_ENOMEM, "out of memory for the engine");
        return NULL;
    }
    e->m = m;
    e->fam = c->family;
    e->C = opt && opt->max_chunk > 0 ? opt->max_chunk : DEFAULT_CHUNK;
    if (e->C > ((int64_t)1 << 20)) {
        free(e);
        coil_err_set(err, COIL_EINVAL, "max_chunk %lld is larger than 1048576", (long long)opt->max_chunk);
        return NULL;
    }
    if (coil_matrix_ready(err)) { /* the matrix library can run under this process's limits */
        free(e);
        return NULL;
    }
    const char *b = opt && opt->backend ? opt->backend : "cpu";
    if (strcmp(b, "cpu") == 0) {
        e->ops = coil_backend_cpu();
    } else if (strcmp(b, "cpu-portable") == 0) {
        e->ops = coil_backend_cpu_portable();
    } else if (strcmp(b, "cuda") == 0 || strncmp(b, "cuda:", 5) == 0) {
#ifdef COIL_HAVE_CUDA
        if (!e->fam->cuda) {
            free(e);
            coil_err_set(err, COIL_EUNSUPPORTED,
                         "backend '%s' does not run model family '%s' (%s) yet: use cpu or cpu-portable", b,
                         c->family->model_type, c->family->architecture);
            return NULL;
        }
        /* "cuda" or "cuda:MATH" (f32, tf32, bf16): device-resident, one
         * sequence; next_logits from a state's hidden vector stays on the CPU */
        coil_cuda_engine_options_t co = {.device = 0, .max_chunk = e->C, .nseq = 1, .with_logits = 1};
        if (b[4] == ':' && coil_cuda_math_parse(b + 5, &co.math, err)) {
            free(e);
            coil_err_prefix(err, "backend '%s'", b);
            return NULL;
        }
        if (!(e->cuda = coil_cuda_engine_new(m, &co, err))) {
            free(e);
            coil_err_prefix(err, "backend '%s' is not available", b);
            return NULL;
        }
        e->ops = coil_backend_cpu();
#else
        free(e);
        coil_err_set(err, COIL_EUNSUPPORTED,
                     "backend '%s' is not available: this build has no CUDA backend (./configure --with-cuda; have: "
                     "cpu, cpu-portable)",
                     b);
        return NULL;
#endif
    } else {
        free(e);
        coil_err_set(err, COIL_EUNSUPPORTED, "backend '%s' is not available in this build (have: cpu, cpu-portable%s)",
                     b,
#ifdef COIL_HAVE_CUDA
                     ", cuda"
#else
                     ""
#endif
        );
        return NULL;
    }
    e->ops->set_threads(opt ? opt->threads : 0);

    const size_t C = (size_t)e->C, H = (size_t)c->d_model, F = sizeof(float);
    size_t ws = 0, n = e->fam->scratch_floats(m, e->C, &ws);
    if (coil_model_lm_head(m)->dtype != COIL_DT_F32 && (size_t)LM_HEAD_BLOCK * H > ws)
        ws = (size_t)LM_HEAD_BLOCK * H;
    e->scratch = xalloc(n * F, &e->scratch_bytes);
    e->wscratch = ws ? xalloc(ws * F, &e->scratch_bytes) : NULL;
    if (!e->scratch || (ws && !e->wscratch)) {
        coil_engine_destroy(&e);
        coil_err_set(err, COIL_ENOMEM, "out of memory for engine buffers (max_chunk %lld)", (long long)C);
        return NULL;
    }
    return e;
}

void coil_engine_destroy(coil_engine_t **pe)
{
    coil_engine_t *e;
    if (!pe || !(e = *pe))
        return;
    free(e->scratch);
    free(e->wscratch);
#ifdef COIL_HAVE_CUDA
    coil_cuda_engine_destroy(&e->cuda);
#endif
    free(e);
    *pe = NULL;
}

/* logits (T, V) = xn (T, H) . lm_head^T, in row blocks for half-precision heads. */
static void lm_head(coil_engine_t *e, const float *xn, int64_t T, float *logits)
{
    const coil_matrix_t *W = coil_model_lm_head(e->m);
    const int64_t V = W->rows, H = W->cols;
    if (W->dtype == COIL_DT_F32 || T == 1) {
        e->ops->linear(W, NULL, xn, H, logits, V, T, e->wscratch);
        return;
    }
    const size_t es = coil_dtype_size(W->dtype);
    for (int64_t r0 = 0; r0 < V; r0 += LM_HEAD_BLOCK) {
        coil_matrix_t blk = *W;
        blk.rows = V - r0 < LM_HEAD_BLOCK ? V - r0 : LM_HEAD_BLOCK;
        blk.data = (const char *)W->data + (size_t)r0 * (size_t)H * es;
        e->ops->linear(&blk, NULL, xn, H, logits + r0, V, T, e->wscratch);
    }
}

/* One step of at most C tokens: the family's chunk forward, then the LM head. */
static void step(coil_engine_t *e, coil_state_t *st, const int32_t *ids, int64_t T, float *logits)
{
    const int64_t H = coil_model_config(e->m)->d_model;
    const coil_family_run_t r = {e->ops, e->m, st, e->scratch, e->wscratch};
    const float *xn = e->fam->chunk(&r, ids, T); /* (T, H) after norm_f */
    memcpy(coil_state_last_hidden(st), xn + (T - 1) * H, (size_t)H * sizeof(float));
    coil_state_set_has_hidden(st, 1);
    coil_state_set_position(st, coil_state_position(st) + T);
    if (logits)
        lm_head(e, xn, T, logits);
}

int coil_engine_forward(coil_engine_t *e, coil_state_t *st, const int32_t *ids, int64_t T, float *logits,
                        coil_err_t *err)
{
    const coil_model_config_t *c = coil_model_config(e->m);
    if (coil_state_fingerprint(st) != coil_model_fingerprint(e->m))
        return coil_err_set(err, COIL_EMISMATCH, "state belongs to model %016llx, engine runs %016llx",
                            (unsigned long long)coil_state_fingerprint(st),
                            (unsigned long long)coil_model_fingerprint(e->m));
    if (T < 0 || (T > 0 && !ids))
        return coil_err_set(err, COIL_EINVAL, "invalid token count %lld", (long long)T);
    for (int64_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab_size)
            return coil_err_set(err, COIL_EINVAL, "token id %d at position %lld is outside the vocabulary [0, %lld)",
                                ids[t], (long long)t, (long long)c->vocab_size);
#ifdef COIL_HAVE_CUDA
    if (e->cuda) { /* the state goes to the device and back around each call */
        int rc = coil_cuda_engine_load_state(e->cuda, 0, st, err);
        if (!rc)
            rc = coil_cuda_engine_forward(e->cuda, ids, T, logits, err);
        if (!rc)
            rc = coil_cuda_engine_save_state(e->cuda, 0, st, err);
        return rc;
    }
#endif
    const uint64_t failed0 = coil_matrix_failures();
    for (int64_t t0 = 0; t0 < T; t0 += e->C) {
        int64_t n = T - t0 < e->C ? T - t0 : e->C;
        step(e, st, ids + t0, n, logits ? logits + t0 * c->vocab_size : NULL);
        if (coil_matrix_failures() != failed0) {
            coil_state_poison(st);
            return coil_err_set(err, COIL_ENOMEM,
                                "out of memory in the matrix library (a product failed at token %lld): the state "
                                "is unusable now; resume from a checkpoint",
                                (long long)t0);
        }
    }
    return 0;
}

int coil_engine_next_logits(coil_engine_t *e, const coil_state_t *st, float *logits, coil_err_t *err)
{
    if (coil_state_fingerprint(st) != coil_model_fingerprint(e->m))
        return coil_err_set(err, COIL_EMISMATCH, "state belongs to another model");
    if (!coil_state_has_hidden(st))
        return coil_err_set(err, COIL_ESTATE, "the state has read no token yet: nothing to predict from");
    const uint64_t failed0 = coil_matrix_failures();
    lm_head(e, coil_state_last_hidden((coil_state_t *)st), 1, logits);
    if (coil_matrix_failures() != failed0)
        return coil_err_set(err, COIL_ENOMEM, "out of memory in the matrix library: no logits");
    return 0;
}

const char *coil_engine_backend_name(const coil_engine_t *e)
{
#ifdef COIL_HAVE_CUDA
    if (e->cuda)
        return "cuda";
#endif
    return e->ops->name;
}
const coil_model_t *coil_engine_model(const coil_engine_t *e) { return e->m; }
int64_t coil_engine_max_chunk(const coil_engine_t *e) { return e->C; }
size_t coil_engine_scratch_bytes(const coil_engine_t *e) { return e->scratch_bytes; }
