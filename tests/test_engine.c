/* test_engine.c -- parity with transformers, chunk invariance, exact resume.
 *
 * Golden data: tests/data/models/<case>/ made by tests/tools/make_golden.py
 * (transformers' MambaForCausalLM, float32 reference) and, for falcon_*, by
 * tests/tools/make_golden_families.py (FalconMambaForCausalLM, Mamba2ForCausalLM,
 * RwkvForCausalLM).  Every golden sequence
 * is longer than the largest chunk size cut below (so each cut really splits
 * it), and odd_dinner has d_model 27, d_inner 81, d_state 7 (the SIMD
 * kernels' scalar tails run).
 *
 * Every test runs per case x backend: a kernel set added to the engine is
 * tested by adding its backend name to backends[].
 */
#include "engine.h"

#include "config.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const char *cases[] = {"tied_f32",   "untied_bias_sharded",  "tied_bf16",
                              "untied_f16", "odd_dinner",           "published_130m_shape",
                              "published_sharded_shape", "falcon_tied_f32", "falcon_untied_odd_f32",
                              "falcon_untied_bf16", "mamba2_groups_f32", "mamba2_tied_bf16",
                              "mamba2_odd_f16", "rwkv_odd_f32", "rwkv_tied_bf16", "rwkv_untied_f16"};
static const char *backends[] = {"cpu", "cpu-portable"};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))
#define NBACKENDS ((int)(sizeof backends / sizeof backends[0]))
#define CASE(i) cases[(i) / NBACKENDS]
#define BACKEND(i) backends[(i) % NBACKENDS]
#define MAX_T 1024

/* The chunkings tested: sizes of the pieces (cycled), both as forward calls
 * and as the engine's max_chunk.  LARGEST_CHUNK must stay below every golden T. */
static const int64_t cut1[] = {1}, cut7[] = {7}, cut64[] = {64}, cut_odd[] = {3, 1, 11, 2, 5},
                     cut_irregular[] = {64, 1, 63, 17, 9};
static const int64_t *chunkings[] = {cut1, cut7, cut64, cut_odd, cut_irregular};
static const int nchunk[] = {1, 1, 1, 5, 5};
#define NCHUNKINGS 5
#define LARGEST_CHUNK 64

typedef struct {
    coil_model_t *m;
    int32_t ids[MAX_T];
    int64_t T, V;
    int32_t greedy[32];
    int n_greedy;
    float *ref; /* (T, V) */
} golden_t;

static void golden_load(const char *name, golden_t *g)
{
    char rel[256];
    coil_err_t err = {0};
    json_error_t je;

    memset(g, 0, sizeof *g);
    snprintf(rel, sizeof rel, "models/%s", name);
    g->m = coil_model_load(tu_data(rel), &err);
    ck_assert_msg(g->m != NULL, "load %s: %s", name, err.msg);
    snprintf(rel, sizeof rel, "models/%s/golden.json", name);
    json_t *root = json_load_file(tu_data(rel), 0, &je);
    ck_assert_msg(root != NULL, "golden.json: %s", je.text);
    json_t *ids = json_object_get(root, "ids"), *gr = json_object_get(root, "greedy");
    g->T = (int64_t)json_array_size(ids);
    g->V = json_integer_value(json_object_get(root, "vocab"));
    ck_assert_int_le(g->T, MAX_T);
    ck_assert_msg(g->T > 2 * LARGEST_CHUNK, "%s: golden sequence of %lld tokens, not longer than 2 x the largest "
                  "chunk tested (%d): regenerate with tests/tools/make_golden.py", name, (long long)g->T,
                  LARGEST_CHUNK);
    for (int64_t i = 0; i < g->T; i++)
        g->ids[i] = (int32_t)json_integer_value(json_array_get(ids, (size_t)i));
    g->n_greedy = (int)json_array_size(gr);
    for (int i = 0; i < g->n_greedy && i < 32; i++)
        g->greedy[i] = (int32_t)json_integer_value(json_array_get(gr, (size_t)i));
    json_decref(root);
    ck_assert_int_eq(g->V, coil_model_config(g->m)->vocab_size);
    snprintf(rel, sizeof rel, "models/%s/logits.f32", name);
    size_t len = 0;
    g->ref = tu_read(tu_data(rel), &len);
    ck_assert_ptr_nonnull(g->ref);
    ck_assert_uint_eq(len, (size_t)(g->T * g->V) * sizeof(float));
}

static void golden_free(golden_t *g)
{
    coil_model_destroy(&g->m);
    free(g->ref);
}

/* Runs ids through a fresh state in pieces given by cuts (chunk sizes, cycled). */
static float *run_pieces(golden_t *g, const char *backend, int64_t max_chunk, const int64_t *sizes, int nsizes,
                         coil_state_t **st_out)
{
    coil_err_t err = {0};
    coil_engine_options_t opt = {.max_chunk = max_chunk, .backend = backend};
    coil_engine_t *e = coil_engine_new(g->m, &opt, &err);
    ck_assert_msg(e != NULL, "%s", err.msg);
    ck_assert_ptr_nonnull(coil_engine_backend_name(e));
    coil_state_t *st = coil_state_new(g->m, &err);
    float *logits = malloc((size_t)(g->T * g->V) * sizeof(float));
    int64_t t = 0;
    for (int i = 0; t < g->T; i++) {
        int64_t n = sizes[i % nsizes];
        if (n > g->T - t)
            n = g->T - t;
        ck_assert_int_eq(coil_engine_forward(e, st, g->ids + t, n, logits + t * g->V, &err), 0);
        t += n;
    }
    ck_assert_int_eq(coil_state_position(st), g->T);
    coil_engine_destroy(&e);
    if (st_out)
        *st_out = st;
    else
        coil_state_destroy(&st);
    return logits;
}

START_TEST(test_parity_whole)
{
    golden_t g;
    golden_load(CASE(_i), &g);
    int64_t whole[1] = {g.T};
    float *lg = run_pieces(&g, BACKEND(_i), 0, whole, 1, NULL);
    double rel = tu_rel_l2(lg, g.ref, (size_t)(g.T * g.V));
    fprintf(stderr, "parity %-24s %-13s T %lld rel L2 %.3g\n", CASE(_i), BACKEND(_i), (long long)g.T, rel);
    ck_assert_msg(rel < 1e-5, "%s/%s: relative L2 %g >= 1e-5", CASE(_i), BACKEND(_i), rel);
    free(lg);
    golden_free(&g);
}
END_TEST

START_TEST(test_chunk_invariance)
{
    golden_t g;
    golden_load(CASE(_i), &g);
    const char *be = BACKEND(_i);
    int64_t whole[1] = {g.T};
    size_t n = (size_t)(g.T * g.V);
    float *base = run_pieces(&g, be, 0, whole, 1, NULL);
    for (int k = 0; k < NCHUNKINGS; k++) {
        const int64_t *sz = chunkings[k];
        ck_assert_int_lt(sz[0], g.T);
        /* the chunking outside (forward calls), inside (max_chunk), and both */
        float *a = run_pieces(&g, be, 0, sz, nchunk[k], NULL);
        float *b = run_pieces(&g, be, sz[0], whole, 1, NULL);
        float *c = run_pieces(&g, be, 5, sz, nchunk[k], NULL);
        double ra = tu_rel_l2(a, g.ref, n), rb = tu_rel_l2(b, g.ref, n), rc = tu_rel_l2(c, g.ref, n);
        double rab = tu_rel_l2(b, base, n);
        fprintf(stderr, "chunking %-24s %-13s cut %d (first piece %lld): rel L2 %.3g / max_chunk %.3g / both %.3g\n",
                CASE(_i), be, k, (long long)sz[0], ra, rb, rc);
        ck_assert_msg(ra < 1e-5, "%s/%s chunking %d: rel L2 vs reference %g", CASE(_i), be, k, ra);
        ck_assert_msg(rb < 1e-5, "%s/%s max_chunk %lld: rel L2 vs reference %g", CASE(_i), be, (long long)sz[0], rb);
        ck_assert_msg(rc < 1e-5, "%s/%s chunking %d, max_chunk 5: rel L2 vs reference %g", CASE(_i), be, k, rc);
        ck_assert_msg(rab < 1e-5, "%s/%s max_chunk %lld: rel L2 vs whole %g", CASE(_i), be, (long long)sz[0], rab);
        free(a);
        free(b);
        free(c);
    }
    free(base);
    golden_free(&g);
}
END_TEST

/* The golden set keeps a shape whose dimensions are no multiple of 8 or 16. */
START_TEST(test_golden_shapes)
{
    int odd = 0;
    for (int i = 0; i < NCASES; i++) {
        golden_t g;
        golden_load(cases[i], &g);
        const coil_model_config_t *c = coil_model_config(g.m);
        if (c->d_inner % 8 && c->d_inner % 16 && c->d_model % 8 && c->d_state % 8)
            odd++;
        golden_free(&g);
    }
    ck_assert_msg(odd >= 1, "no golden case with d_inner, d_model, d_state off multiples of 8");
}
END_TEST

START_TEST(test_exact_resume)
{
    golden_t g;
    coil_err_t err = {0};
    golden_load(CASE(_i), &g);
    coil_engine_options_t opt = {.backend = BACKEND(_i), .max_chunk = 16};
    coil_engine_t *e = coil_engine_new(g.m, &opt, &err);
    ck_assert_ptr_nonnull(e);
    const int64_t A = 77, B = g.T - A; /* A and B both span several internal chunks */
    coil_state_t *s1 = coil_state_new(g.m, &err), *s2 = coil_state_new(g.m, &err);
    float *l1 = malloc((size_t)(B * g.V) * 4), *l2 = malloc((size_t)(B * g.V) * 4);
    /* uninterrupted: A then B on one state */
    ck_assert_int_eq(coil_engine_forward(e, s1, g.ids, A, NULL, &err), 0);
    ck_assert_int_eq(coil_engine_forward(e, s1, g.ids + A, B, l1, &err), 0);
    /* A, serialise, read back into a fresh state, then B */
    ck_assert_int_eq(coil_engine_forward(e, s2, g.ids, A, NULL, &err), 0);
    size_t n = coil_state_blob_size(s2);
    void *blob = malloc(n);
    ck_assert_int_eq(coil_state_serialize(s2, blob, n, &err), 0);
    coil_state_destroy(&s2);
    s2 = coil_state_new(g.m, &err);
    ck_assert_int_eq(coil_state_deserialize(s2, blob, n, &err), 0);
    ck_assert_int_eq(coil_state_position(s2), A);
    ck_assert_int_eq(coil_engine_forward(e, s2, g.ids + A, B, l2, &err), 0);
    ck_assert_msg(memcmp(l1, l2, (size_t)(B * g.V) * 4) == 0, "logits after resume differ in some bit");
    void *b1 = malloc(n), *b2 = malloc(n);
    coil_state_serialize(s1, b1, n, &err);
    coil_state_serialize(s2, b2, n, &err);
    ck_assert_msg(memcmp(b1, b2, n) == 0, "final state after resume differs in some bit");
    /* next-token logits from the state alone equal the last row of the forward */
    float *nl = malloc((size_t)g.V * 4);
    ck_assert_int_eq(coil_engine_next_logits(e, s2, nl, &err), 0);
    ck_assert_msg(tu_rel_l2(nl, l1 + (B - 1) * g.V, (size_t)g.V) < 1e-6, "next_logits differs from last row");
    free(nl);
    free(b1);
    free(b2);
    free(blob);
    free(l1);
    free(l2);
    coil_state_destroy(&s1);
    coil_state_destroy(&s2);
    coil_engine_destroy(&e);
    golden_free(&g);
}
END_TEST

START_TEST(test_greedy_matches_reference)
{
    golden_t g;
    coil_err_t err = {0};
    golden_load(CASE(_i), &g);
    coil_engine_options_t opt = {.backend = BACKEND(_i)};
    coil_engine_t *e = coil_engine_new(g.m, &opt, &err);
    coil_state_t *st = coil_state_new(g.m, &err);
    float *lg = malloc((size_t)g.V * 4);
    ck_assert_int_eq(coil_engine_forward(e, st, g.ids, g.T, NULL, &err), 0);
    for (int i = 0; i < g.n_greedy; i++) {
        ck_assert_int_eq(coil_engine_next_logits(e, st, lg, &err), 0);
        int32_t best = 0;
        for (int32_t v = 1; v < g.V; v++)
            if (lg[v] > lg[best])
                best = v;
        ck_assert_msg(best == g.greedy[i], "%s/%s step %d: got %d, reference %d", CASE(_i), BACKEND(_i), i, best,
                      g.greedy[i]);
        ck_assert_int_eq(coil_engine_forward(e, st, &best, 1, NULL, &err), 0);
    }
    free(lg);
    coil_state_destroy(&st);
    coil_engine_destroy(&e);
    golden_free(&g);
}
END_TEST

START_TEST(test_errors)
{
    golden_t g1, g2;
    coil_err_t err = {0};
    golden_load("tied_f32", &g1);
    golden_load("tied_bf16", &g2);
    coil_engine_t *e = coil_engine_new(g1.m, NULL, &err);
    coil_state_t *other = coil_state_new(g2.m, &err), *st = coil_state_new(g1.m, &err);
    int32_t id = 5, bad = (int32_t)g1.V;
    ck_assert_int_eq(coil_engine_forward(e, other, &id, 1, NULL, &err), COIL_EMISMATCH);
    ck_assert_int_eq(coil_engine_forward(e, st, &bad, 1, NULL, &err), COIL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "outside the vocabulary"));
    ck_assert_int_eq(coil_state_position(st), 0);
    float lg[512];
    ck_assert_int_eq(coil_engine_next_logits(e, st, lg, &err), COIL_ESTATE);
    coil_engine_options_t opt = {.backend = "metal"}; /* cuda: test_backend_cuda */
    ck_assert_ptr_null(coil_engine_new(g1.m, &opt, &err));
    ck_assert_int_eq(err.code, COIL_EUNSUPPORTED);
    /* the CUDA forward is Mamba-1's: another family is refused by name (or the build has no CUDA) */
    golden_t gf;
    golden_load("falcon_tied_f32", &gf);
    coil_engine_options_t cu = {.backend = "cuda"};
    ck_assert_ptr_null(coil_engine_new(gf.m, &cu, &err));
    ck_assert_int_eq(err.code, COIL_EUNSUPPORTED);
#ifdef COIL_HAVE_CUDA
    ck_assert_msg(strstr(err.msg, "does not run model family 'falcon_mamba' (FalconMambaForCausalLM)"), "%s", err.msg);
#endif
    golden_free(&gf);
    coil_state_destroy(&other);
    coil_state_destroy(&st);
    coil_engine_destroy(&e);
    golden_free(&g1);
    golden_free(&g2);
}
END_TEST

/* --backend cuda runs where the build has CUDA and a GPU is there (its
 * parity is tests/test_cuda's); anywhere else it is a clear error. */
START_TEST(test_backend_cuda)
{
    coil_err_t err = {0};
    coil_model_t *m = coil_model_load(tu_data("models/odd_dinner"), &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    coil_engine_options_t opt = {.backend = "cuda"};
    coil_engine_t *e = coil_engine_new(m, &opt, &err);
#ifdef COIL_HAVE_CUDA
    if (e)
        ck_assert_str_eq(coil_engine_backend_name(e), "cuda");
    else
        ck_assert_msg(err.code == COIL_ENOTFOUND && strstr(err.msg, "backend 'cuda' is not available: no CUDA device"),
                      "%d %s", err.code, err.msg);
    coil_engine_destroy(&e);
    opt.backend = "cuda:fp8";
    ck_assert_ptr_null(coil_engine_new(m, &opt, &err));
    ck_assert_int_eq(err.code, COIL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "unknown CUDA matrix arithmetic 'fp8'"));
#else
    ck_assert_ptr_null(e);
    ck_assert_int_eq(err.code, COIL_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "backend 'cuda' is not available: this build has no CUDA backend"));
#endif
    opt.backend = "tpu";
    ck_assert_ptr_null(coil_engine_new(m, &opt, &err));
    ck_assert_int_eq(err.code, COIL_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "backend 'tpu' is not available"));
    coil_model_destroy(&m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_parity_whole, 0, NCASES * NBACKENDS);
    tcase_add_loop_test(tc, test_chunk_invariance, 0, NCASES * NBACKENDS);
    tcase_add_loop_test(tc, test_exact_resume, 0, NCASES * NBACKENDS);
    tcase_add_loop_test(tc, test_greedy_matches_reference, 0, NCASES * NBACKENDS);
    tcase_add_test(tc, test_golden_shapes);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_backend_cuda);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
