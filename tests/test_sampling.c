/* test_sampling.c -- coil's sampler against reference distributions.
 *
 * tests/data/sampling/golden.json (tests/tools/make_sampling_golden.py) holds
 * next-token logits computed by transformers and, for each (temperature,
 * top_p, n_valid), the distribution softmax(logits / T) restricted to the
 * top-p nucleus, checked there against transformers' own warpers.
 *
 * The frequency test: N draws with a fixed seed; for every id,
 * |count / N - p| <= eps(p), where eps is the Bernstein bound
 *   P(|f - p| >= eps) <= 2 exp(-N eps^2 / (2 p (1 - p) + 2 eps / 3))
 * solved for a per-id failure probability delta / V (union bound over the V
 * ids): a correct sampler fails a case with probability at most delta =
 * 1e-6 over the choice of seed.  Given the seed the test is deterministic.
 * Ids outside the nucleus (p = 0) must never be drawn, and each nucleus id
 * with N p >= 30 must be (a correct sampler misses one with probability
 * below e^-30).
 */
#include "sampling.h"

#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define N_DRAWS 200000
#define DELTA 1e-6

typedef struct {
    float temperature, top_p;
    int64_t n_valid, V;
    int32_t argmax;
    float *logits;
    double *probs;
    int n_nucleus;
} scase_t;

static scase_t *cases;
static int n_cases;

/* Outside any test: plain checks, 0 or -1 with a message. */
static int load_golden(void)
{
    json_error_t je;
    json_t *root = json_load_file(tu_data("sampling/golden.json"), 0, &je);
    if (!root) {
        fprintf(stderr, "sampling/golden.json: %s\n", je.text);
        return -1;
    }
    json_t *arr = json_object_get(root, "cases");
    n_cases = (int)json_array_size(arr);
    if (n_cases < 6) {
        fprintf(stderr, "sampling/golden.json: %d cases, expected at least 6\n", n_cases);
        json_decref(root);
        return -1;
    }
    cases = calloc((size_t)n_cases, sizeof *cases);
    for (int i = 0; i < n_cases; i++) {
        json_t *c = json_array_get(arr, (size_t)i), *lg = json_object_get(c, "logits"),
               *pr = json_object_get(c, "probs");
        scase_t *s = &cases[i];
        s->temperature = (float)json_number_value(json_object_get(c, "temperature"));
        s->top_p = (float)json_number_value(json_object_get(c, "top_p"));
        s->n_valid = json_integer_value(json_object_get(c, "n_valid"));
        s->argmax = (int32_t)json_integer_value(json_object_get(c, "argmax"));
        s->n_nucleus = (int)json_array_size(json_object_get(c, "nucleus"));
        s->V = (int64_t)json_array_size(lg);
        if (s->V < 2 || s->V != (int64_t)json_array_size(pr) || s->n_valid < 1 || s->n_valid > s->V) {
            fprintf(stderr, "sampling/golden.json: case %d is malformed\n", i);
            json_decref(root);
            return -1;
        }
        s->logits = malloc((size_t)s->V * sizeof *s->logits);
        s->probs = malloc((size_t)s->V * sizeof *s->probs);
        for (int64_t v = 0; v < s->V; v++) {
            s->logits[v] = (float)json_number_value(json_array_get(lg, (size_t)v));
            s->probs[v] = json_number_value(json_array_get(pr, (size_t)v));
        }
    }
    json_decref(root);
    return 0;
}

static void free_golden(void)
{
    for (int i = 0; i < n_cases; i++) {
        free(cases[i].logits);
        free(cases[i].probs);
    }
    free(cases);
    cases = NULL;
}

static coil_sampler_t *make(const scase_t *c, float temperature, float top_p, uint64_t seed)
{
    coil_err_t err = {0};
    coil_sampler_options_t o = {.temperature = temperature, .top_p = top_p, .seed = seed, .n_valid = c->n_valid};
    coil_sampler_t *s = coil_sampler_new(&o, c->V, &err);
    ck_assert_msg(s != NULL, "%s", err.msg);
    return s;
}

/* Bernstein deviation bound for one id (see the top of the file). */
static double bound(double p, double n, double delta_id)
{
    double L = log(2.0 / delta_id);
    return (L / 3.0 + sqrt(L * L / 9.0 + 2.0 * n * L * p * (1.0 - p))) / n;
}

START_TEST(test_frequencies_match_reference)
{
    static const uint64_t seeds[] = {12345, 987654321};
    const scase_t *c = &cases[_i / 2];
    uint64_t seed = seeds[_i % 2];
    coil_sampler_t *s = make(c, c->temperature, c->top_p, seed);
    int64_t *count = calloc((size_t)c->V, sizeof *count);
    for (int k = 0; k < N_DRAWS; k++) {
        int32_t id = coil_sampler_sample(s, c->logits);
        ck_assert_msg(id >= 0 && id < c->V, "id %d outside [0, %lld)", id, (long long)c->V);
        count[id]++;
    }
    double worst = 0.0, tv = 0.0;
    for (int64_t v = 0; v < c->V; v++) {
        double p = c->probs[v], f = (double)count[v] / N_DRAWS;
        tv += fabs(f - p) / 2;
        if (p == 0.0) {
            ck_assert_msg(count[v] == 0, "T %g top_p %g: id %lld is outside the nucleus (or >= n_valid %lld) "
                          "but was drawn %lld times", (double)c->temperature, (double)c->top_p, (long long)v,
                          (long long)c->n_valid, (long long)count[v]);
            continue;
        }
        if (p * N_DRAWS >= 30)
            ck_assert_msg(count[v] > 0, "T %g top_p %g: nucleus id %lld (p %.4g) never drawn",
                          (double)c->temperature, (double)c->top_p, (long long)v, p);
        double eps = bound(p, N_DRAWS, DELTA / (double)c->V);
        if (fabs(f - p) / eps > worst)
            worst = fabs(f - p) / eps;
        ck_assert_msg(fabs(f - p) <= eps, "T %g top_p %g n_valid %lld seed %llu: id %lld drawn with frequency %.5f, "
                      "reference p %.5f (bound %.5f)", (double)c->temperature, (double)c->top_p,
                      (long long)c->n_valid, (unsigned long long)seed, (long long)v, f, p, eps);
    }
    fprintf(stderr, "sampling T %.2f top_p %.2f n_valid %lld (nucleus %d) seed %llu: total variation %.4f, "
            "worst |f - p| / bound %.2f\n", (double)c->temperature, (double)c->top_p, (long long)c->n_valid,
            c->n_nucleus, (unsigned long long)seed, tv, worst);
    free(count);
    coil_sampler_destroy(&s);
}
END_TEST

START_TEST(test_seeds)
{
    const scase_t *c = &cases[0];
    int32_t a[64], b[64], d[64];
    coil_sampler_t *s1 = make(c, 1.0f, 1.0f, 7), *s2 = make(c, 1.0f, 1.0f, 7), *s3 = make(c, 1.0f, 1.0f, 8);
    int same_ad = 0;
    for (int i = 0; i < 64; i++) {
        a[i] = coil_sampler_sample(s1, c->logits);
        b[i] = coil_sampler_sample(s2, c->logits);
        d[i] = coil_sampler_sample(s3, c->logits);
        same_ad += a[i] == d[i];
    }
    ck_assert_msg(memcmp(a, b, sizeof a) == 0, "the same seed gave two sequences");
    /* with max p ~ 0.03, two independent sequences agree in about 2 of 64 places */
    ck_assert_msg(same_ad < 16, "seeds 7 and 8 agree in %d of 64 draws", same_ad);
    /* a sampler's draws are not all the same token */
    int distinct = 0;
    for (int i = 1; i < 64; i++)
        distinct += a[i] != a[0];
    ck_assert_int_gt(distinct, 32);
    coil_sampler_destroy(&s1);
    coil_sampler_destroy(&s2);
    coil_sampler_destroy(&s3);
}
END_TEST

START_TEST(test_greedy)
{
    for (int i = 0; i < n_cases; i++) {
        const scase_t *c = &cases[i];
        coil_sampler_t *s0 = make(c, 0.0f, c->top_p, 1), *sn = make(c, -1.0f, 1.0f, 2);
        for (int k = 0; k < 50; k++) {
            ck_assert_int_eq(coil_sampler_sample(s0, c->logits), c->argmax);
            ck_assert_int_eq(coil_sampler_sample(sn, c->logits), c->argmax);
        }
        coil_sampler_destroy(&s0);
        coil_sampler_destroy(&sn);
        /* a nucleus so small it is one token: the argmax, whatever the seed */
        coil_sampler_t *st = make(c, 1.0f, 1e-6f, 3);
        for (int k = 0; k < 50; k++)
            ck_assert_int_eq(coil_sampler_sample(st, c->logits), c->argmax);
        coil_sampler_destroy(&st);
    }
    /* ties go to the lowest id; ids >= n_valid are never chosen */
    float lg[16];
    for (int v = 0; v < 16; v++)
        lg[v] = (float)(v % 3);
    lg[15] = 100.0f;
    scase_t c = {.V = 16, .n_valid = 15};
    coil_sampler_t *s = make(&c, 0.0f, 1.0f, 1);
    ck_assert_int_eq(coil_sampler_sample(s, lg), 2); /* 2, 5, 8, 11, 14 tie at 2.0 */
    coil_sampler_destroy(&s);
    s = make(&c, 1.0f, 1.0f, 1);
    for (int k = 0; k < 2000; k++)
        ck_assert_int_lt(coil_sampler_sample(s, lg), 15);
    coil_sampler_destroy(&s);
}
END_TEST

/* --- the nucleus as a sort of the whole vocabulary takes it ---------------------
 * The reference the sampler must match draw for draw: softmax, a sort of
 * every id by (p descending, id ascending), the shortest prefix reaching
 * top_p, a draw from it -- with the sampler's own PRNG (xoshiro256**
 * seeded by splitmix64).  The sampler sorts only the nucleus. */
typedef struct {
    float p;
    int32_t id;
} ref_cand_t;

static int ref_cmp(const void *a, const void *b)
{
    const ref_cand_t *x = a, *y = b;
    if (x->p != y->p)
        return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

static uint64_t ref_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static int32_t ref_sample(uint64_t rng[4], const float *logits, int64_t n, float temperature, float top_p,
                          ref_cand_t *c)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    double inv_t = 1.0 / temperature, sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double p = exp(((double)logits[i] - logits[best]) * inv_t);
        c[i].p = (float)p;
        c[i].id = (int32_t)i;
        sum += p;
    }
    int64_t keep = n;
    if (top_p < 1.0f) {
        qsort(c, (size_t)n, sizeof *c, ref_cmp);
        double acc = 0.0;
        for (keep = 0; keep < n;) {
            acc += c[keep++].p / sum;
            if (acc >= top_p)
                break;
        }
        sum = 0.0;
        for (int64_t i = 0; i < keep; i++)
            sum += c[i].p;
    }
    uint64_t *r4 = rng, r = ref_rotl(r4[1] * 5, 7) * 9, t = r4[1] << 17;
    r4[2] ^= r4[0], r4[3] ^= r4[1], r4[1] ^= r4[2], r4[0] ^= r4[3], r4[2] ^= t, r4[3] = ref_rotl(r4[3], 45);
    double u = (double)(r >> 11) * 0x1.0p-53 * sum, acc = 0.0;
    for (int64_t i = 0; i < keep; i++) {
        acc += c[i].p;
        if (u < acc)
            return c[i].id;
    }
    return c[keep - 1].id;
}

START_TEST(test_nucleus_equals_full_sort)
{
    enum { V = 8192, DRAWS = 60 };
    float *lg = malloc(V * sizeof *lg);
    ref_cand_t *c = malloc(V * sizeof *c);
    ck_assert_ptr_nonnull(lg);
    ck_assert_ptr_nonnull(c);
    /* logits peaked (a language model's), flat, and
     * rounded to a few values (ties everywhere, at the nucleus' edge too) */
    static const float top_ps[] = {0.05f, 0.5f, 0.9f, 0.95f, 0.999f};
    uint64_t g = 42;
    for (int shape = 0; shape < 3; shape++) {
        for (int64_t v = 0; v < V; v++) {
            g ^= g << 13, g ^= g >> 7, g ^= g << 17;
            double u = ((double)(g >> 11) + 0.5) * 0x1.0p-53;
            double gumbel = -log(-log(u));
            lg[v] = shape == 0 ? (float)(4.0 * gumbel) : shape == 1 ? (float)(0.1 * gumbel) : (float)floor(gumbel);
        }
        for (size_t k = 0; k < sizeof top_ps / sizeof top_ps[0]; k++) {
            scase_t sc = {.V = V, .n_valid = V - 3};
            const uint64_t seed = 1000 + (uint64_t)(10 * shape + (int)k);
            coil_sampler_t *s = make(&sc, 0.8f, top_ps[k], seed);
            uint64_t rng[4], x = seed;
            for (int i = 0; i < 4; i++) {
                uint64_t z = (x += 0x9e3779b97f4a7c15ull);
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
                rng[i] = z ^ (z >> 31);
            }
            for (int d = 0; d < DRAWS; d++) {
                int32_t want = ref_sample(rng, lg, V - 3, 0.8f, top_ps[k], c), got = coil_sampler_sample(s, lg);
                ck_assert_msg(got == want, "shape %d top_p %g draw %d: id %d, a full sort gives %d", shape,
                              (double)top_ps[k], d, got, want);
            }
            coil_sampler_destroy(&s);
        }
    }
    free(lg);
    free(c);
}
END_TEST

START_TEST(test_bad_options)
{
    coil_err_t err = {0};
    coil_sampler_options_t o = {.temperature = 1.0f, .top_p = 0.0f, .seed = 1, .n_valid = 10};
    ck_assert_ptr_null(coil_sampler_new(&o, 10, &err));
    ck_assert_int_eq(err.code, COIL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "top_p"));
    o.top_p = 1.5f;
    ck_assert_ptr_null(coil_sampler_new(&o, 10, &err));
    o.top_p = NAN;
    ck_assert_ptr_null(coil_sampler_new(&o, 10, &err));
}
END_TEST

int main(void)
{
    if (load_golden() != 0)
        return 1;
    Suite *su = suite_create("sampling");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_frequencies_match_reference, 0, n_cases * 2);
    tcase_add_test(tc, test_seeds);
    tcase_add_test(tc, test_greedy);
    tcase_add_test(tc, test_nucleus_equals_full_sort);
    tcase_add_test(tc, test_bad_options);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free_golden();
    return failed ? 1 : 0;
}
