/* sampling.c -- greedy, temperature and top-p sampling with a seeded PRNG. */
#include "sampling.h"

#include <math.h>
#include <stdlib.h>

struct coil_sampler {
    coil_sampler_options_t opt;
    int64_t n;             /* ids considered */
    uint64_t rng[4];       /* xoshiro256** state */
    struct cand { float p; int32_t id; } *cand;
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(uint64_t *s)
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* uniform in [0, 1) with 53 random bits */
static double next_unit(uint64_t *s)
{
    return (double)(next_u64(s) >> 11) * 0x1.0p-53;
}

coil_sampler_t *coil_sampler_new(const coil_sampler_options_t *opt, int64_t vocab, coil_err_t *err)
{
    coil_sampler_t *s = calloc(1, sizeof *s);
    if (!s) {
        coil_err_set(err, COIL_ENOMEM, "out of memory");
        return NULL;
    }
    s->opt = *opt;
    if (!(s->opt.top_p > 0.0f) || s->opt.top_p > 1.0f) {
        free(s);
        coil_err_set(err, COIL_EINVAL, "top_p must be in (0, 1], got %g", (double)opt->top_p);
        return NULL;
    }
    s->n = opt->n_valid > 0 && opt->n_valid < vocab ? opt->n_valid : vocab;
    uint64_t x = opt->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    s->cand = malloc((size_t)s->n * sizeof *s->cand);
    if (!s->cand) {
        free(s);
        coil_err_set(err, COIL_ENOMEM, "out of memory");
        return NULL;
    }
    return s;
}

void coil_sampler_destroy(coil_sampler_t **ps)
{
    if (!ps || !*ps)
        return;
    free((*ps)->cand);
    free(*ps);
    *ps = NULL;
}

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->p != y->p)
        return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

/* The nucleus without sorting the whole vocabulary: cand[0..n) is
 * rearranged so that cand[0..m) holds exactly the candidates with p >= some
 * tau (every tie of tau inside) and their mass is at least `target`; m is
 * returned (n when target is beyond the total).  Sorted by cmp_cand, that
 * prefix is then the sorted order's own first m entries, so what is drawn
 * from it is what a sort of all n would give.  A three-way quickselect on
 * mass: cand[0..lo) is in (and above everything in [lo, hi)), cand[hi..n)
 * is out (below everything in [lo, hi)). */
static int64_t nucleus_prefix(struct cand *c, int64_t n, double target)
{
    int64_t lo = 0, hi = n;
    double in = 0.0;
    uint64_t x = 0x9e3779b97f4a7c15ull ^ (uint64_t)n; /* pivots: fixed, so a run is reproducible */
    while (hi - lo > 32) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        const float pv = c[lo + (int64_t)(x % (uint64_t)(hi - lo))].p;
        /* [lo, a) > pv, [a, i) == pv, [b, hi) < pv */
        int64_t a = lo, i = lo, b = hi;
        double gt = 0.0, eq = 0.0;
        while (i < b) {
            struct cand t = c[i];
            if (t.p > pv) {
                gt += t.p;
                c[i++] = c[a];
                c[a++] = t;
            } else if (t.p < pv) {
                c[i] = c[--b];
                c[b] = t;
            } else {
                eq += t.p;
                i++;
            }
        }
        if (in + gt >= target)
            hi = a; /* the nucleus ends among the larger ones */
        else if (in + gt + eq >= target)
            return b; /* it ends among the ties of pv: all of them in */
        else {
            in += gt + eq;
            lo = b;
        }
    }
    return hi;
}

int32_t coil_sampler_sample(coil_sampler_t *s, const float *logits)
{
    int64_t best = 0;
    for (int64_t i = 1; i < s->n; i++)
        if (logits[i] > logits[best])
            best = i;
    if (s->opt.temperature <= 0.0f)
        return (int32_t)best;
    double inv_t = 1.0 / s->opt.temperature, sum = 0.0;
    for (int64_t i = 0; i < s->n; i++) {
        double p = exp(((double)logits[i] - logits[best]) * inv_t);
        s->cand[i].p = (float)p;
        s->cand[i].id = (int32_t)i;
        sum += p;
    }
    int64_t keep = s->n;
    if (s->opt.top_p < 1.0f) {
        /* Only the nucleus is sorted: a prefix with a little more than top_p of the mass (the margin covers
         * the summation order), then the same walk as over a sort of everything.  Should the walk not reach
         * top_p inside the prefix, everything is sorted after all. */
        const double target = (double)s->opt.top_p * sum * (1.0 + 1e-9);
        int64_t m = target < sum ? nucleus_prefix(s->cand, s->n, target) : s->n;
        for (int pass = 0; pass < 2; pass++) {
            qsort(s->cand, (size_t)m, sizeof *s->cand, cmp_cand);
            double acc = 0.0;
            for (keep = 0; keep < m;) {
                acc += s->cand[keep++].p / sum;
                if (acc >= s->opt.top_p)
                    break;
            }
            if (acc >= s->opt.top_p || m == s->n)
                break;
            m = s->n;
        }
        sum = 0.0;
        for (int64_t i = 0; i < keep; i++)
            sum += s->cand[i].p;
    }
    double r = next_unit(s->rng) * sum, acc = 0.0;
    for (int64_t i = 0; i < keep; i++) {
        acc += s->cand[i].p;
        if (r < acc)
            return s->cand[i].id;
    }
    return s->cand[keep - 1].id;
}
