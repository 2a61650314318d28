/* query.c -- scoring and generation from a state. */
#include "query.h"

#include <math.h>
#include <stdlib.h>

#include "ingest.h"

/* log-softmax of logits[id] over V entries, in double */
static double log_prob(const float *lg, int64_t V, int32_t id)
{
    double mx = lg[0], s = 0.0;
    for (int64_t i = 1; i < V; i++)
        if (lg[i] > mx)
            mx = lg[i];
    for (int64_t i = 0; i < V; i++)
        s += exp((double)lg[i] - mx);
    return (double)lg[id] - mx - log(s);
}

int coil_query_score(coil_engine_t *e, coil_state_t *st, const int32_t *ids, size_t n, int64_t grid,
                     double *logprobs, double *total, coil_err_t *err)
{
    const int64_t V = coil_model_config(coil_engine_model(e))->vocab_size;
    const int64_t step = grid > 0 ? grid : 512;
    int rc;
    if (n == 0)
        return coil_err_set(err, COIL_EINVAL, "nothing to score");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return coil_err_set(err, COIL_EINVAL, "token id %d is outside the vocabulary", ids[i]);
    /* rows for at most one grid step at a time: memory bounded by the grid */
    float *lg = malloc((size_t)V * (size_t)(step < (int64_t)n ? step : (int64_t)n) * sizeof(float));
    if (!lg)
        return coil_err_set(err, COIL_ENOMEM, "out of memory for %zu x %lld logits", n, (long long)V);
    *total = 0.0;
    if ((rc = coil_engine_next_logits(e, st, lg, err)))
        goto out;
    logprobs[0] = log_prob(lg, V, ids[0]);
    *total += logprobs[0];
    for (size_t i = 0; i + 1 < n;) {
        int64_t pos = coil_state_position(st), room = step - pos % step;
        size_t k = n - 1 - i < (size_t)room ? n - 1 - i : (size_t)room;
        if ((rc = coil_engine_forward(e, st, ids + i, (int64_t)k, lg, err)))
            goto out;
        for (size_t j = 0; j < k; j++) { /* row j predicts ids[i + j + 1] */
            logprobs[i + j + 1] = log_prob(lg + (int64_t)j * V, V, ids[i + j + 1]);
            *total += logprobs[i + j + 1];
        }
        i += k;
    }
out:
    free(lg);
    return rc;
}

int coil_query_generate(coil_engine_t *e, coil_state_t *st, const coil_tokenizer_t *tok,
                        const coil_sampler_options_t *so, int64_t n, coil_query_token_fn fn, void *ud,
                        int32_t *ids_out, int64_t *n_out, coil_err_t *err)
{
    const int64_t V = coil_model_config(coil_engine_model(e))->vocab_size;
    coil_sampler_t *s = coil_sampler_new(so, V, err);
    coil_detok_t *dt = tok ? coil_detok_new(tok, 0, err) : NULL;
    float *lg = malloc((size_t)V * sizeof(float));
    int rc = 0;
    int64_t k = 0;
    *n_out = 0;
    if (!s || (tok && !dt) || !lg) {
        rc = err && err->code ? err->code : coil_err_set(err, COIL_ENOMEM, "out of memory");
        goto out;
    }
    for (; k < n; k++) {
        const char *b = NULL;
        size_t bl = 0;
        if ((rc = coil_engine_next_logits(e, st, lg, err)))
            goto out;
        int32_t next = coil_sampler_sample(s, lg);
        ids_out[k] = next;
        if ((rc = coil_engine_forward(e, st, &next, 1, NULL, err)))
            goto out;
        if (dt && (rc = coil_detok_push(dt, next, &b, &bl, err)))
            goto out;
        if (fn && fn(next, b, bl, ud)) {
            k++;
            break;
        }
    }
    if (dt) {
        const char *b;
        size_t bl;
        if ((rc = coil_detok_flush(dt, &b, &bl, err)))
            goto out;
        if (fn)
            fn(-1, b, bl, ud);
    } else if (fn) {
        fn(-1, NULL, 0, ud);
    }
out:
    *n_out = k;
    free(lg);
    coil_detok_destroy(&dt);
    coil_sampler_destroy(&s);
    return rc;
}
