/* test_cuda.c -- the CUDA backend on a GPU: each kernel against the CPU
 * backend (kernels/cpu.c, the numerical reference), the matrix products in
 * F32/TF32/BF16, device memory errors, the asynchronous checkpoint download,
 * and the device-resident forward against the CPU engine and the golden
 * logits of tests/data/models (transformers).  Where no GPU is usable
 * (cudaGetDeviceCount fails or reports none) it checks that every entry
 * point says "no CUDA device" cleanly, then exits 77 (skip). */
#include "backend.h"
#include "cuda.h"
#include "cuda_engine.h"
#include "engine.h"
#include "model.h"
#include "state.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static coil_cuda_t *ctx;

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}
static float *randv(size_t n, float scale)
{
    float *v = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        v[i] = frand() * scale;
    return v;
}

/* A device copy of n floats (or bytes when bytes != 0). */
static coil_cuda_buf_t *dev(const void *host, size_t bytes)
{
    coil_err_t err = {0};
    coil_cuda_buf_t *b = coil_cuda_alloc(ctx, bytes, "a test buffer", &err);
    ck_assert_msg(b != NULL, "%s", err.msg);
    if (host)
        ck_assert_msg(coil_cuda_upload(ctx, b, 0, host, bytes, &err) == 0, "%s", err.msg);
    return b;
}
static float *P(coil_cuda_buf_t *b) { return (float *)coil_cuda_ptr(b); }
static void back(float *host, coil_cuda_buf_t *b, size_t n)
{
    coil_err_t err = {0};
    ck_assert_msg(coil_cuda_sync(ctx, &err) == 0, "%s", err.msg);
    ck_assert_msg(coil_cuda_download(ctx, host, b, 0, n * sizeof(float), &err) == 0, "%s", err.msg);
}
#define OK(call)                                                                                                   \
    do {                                                                                                           \
        coil_err_t e_ = {0};                                                                                       \
        int rc_ = (call);                                                                                          \
        ck_assert_msg(rc_ == 0, "%s: %s", #call, e_.msg);                                                          \
    } while (0)
#define ERR (&e_)

START_TEST(test_rmsnorm_add)
{
    const int64_t R = 5, H = 771;
    const coil_backend_ops_t *cpu = coil_backend_cpu_portable();
    float *res = randv((size_t)(R * H), 2.0f), *add = randv((size_t)(R * H), 1.0f), *w = randv((size_t)H, 1.0f);
    float *ref = malloc((size_t)(R * H) * 4), *got = malloc((size_t)(R * H) * 4), *gres = malloc((size_t)(R * H) * 4);
    coil_cuda_buf_t *dres = dev(res, (size_t)(R * H) * 4), *dadd = dev(add, (size_t)(R * H) * 4), *dw = dev(w, (size_t)H * 4),
                    *dy = dev(NULL, (size_t)(R * H) * 4);
    OK(coil_cuda_rmsnorm_add(ctx, P(dres), P(dadd), P(dw), 1e-5f, P(dy), R, H, ERR));
    back(got, dy, (size_t)(R * H));
    back(gres, dres, (size_t)(R * H));
    cpu->add(res, add, R * H);
    cpu->rmsnorm(res, w, 1e-5f, ref, R, H);
    ck_assert_double_lt(tu_rel_l2(gres, res, (size_t)(R * H)), 1e-7);
    ck_assert_double_lt(tu_rel_l2(got, ref, (size_t)(R * H)), 1e-6);
    /* without the add */
    OK(coil_cuda_rmsnorm_add(ctx, P(dres), NULL, P(dw), 1e-5f, P(dy), R, H, ERR));
    back(got, dy, (size_t)(R * H));
    ck_assert_double_lt(tu_rel_l2(got, ref, (size_t)(R * H)), 1e-6);
    coil_cuda_free(&dres), coil_cuda_free(&dadd), coil_cuda_free(&dw), coil_cuda_free(&dy);
    free(res), free(add), free(w), free(ref), free(got), free(gres);
}
END_TEST

/* conv1d over chunks of 5, 2 (fewer than K-1) and 1 tokens, three sequences
 * at once, each against the CPU op on its own. */
START_TEST(test_conv_silu)
{
    const int64_t D = 81, K = 4, S = 3, chunks[] = {5, 2, 1}, ldx = 2 * D;
    const coil_backend_ops_t *cpu = coil_backend_cpu_portable();
    float *w = randv((size_t)(D * K), 0.5f), *b = randv((size_t)D, 0.5f);
    float *st = randv((size_t)(S * (K - 1) * D), 1.0f);
    coil_cuda_buf_t *dw = dev(w, (size_t)(D * K) * 4), *db = dev(b, (size_t)D * 4),
                    *dst = dev(st, (size_t)(S * (K - 1) * D) * 4);
    for (int c = 0; c < 3; c++) {
        const int64_t T = chunks[c];
        float *x = randv((size_t)(S * T * ldx), 1.0f), *u = malloc((size_t)(S * T * D) * 4),
              *got = malloc((size_t)(S * T * D) * 4), *gst = malloc((size_t)(S * (K - 1) * D) * 4);
        coil_cuda_buf_t *dx = dev(x, (size_t)(S * T * ldx) * 4), *du = dev(NULL, (size_t)(S * T * D) * 4);
        OK(coil_cuda_conv_silu(ctx, P(dx), ldx, P(dst), P(dw), P(db), P(du), T, D, K, S, ERR));
        back(got, du, (size_t)(S * T * D));
        back(gst, dst, (size_t)(S * (K - 1) * D));
        for (int64_t s = 0; s < S; s++)
            cpu->conv_silu(x + s * T * ldx, ldx, st + s * (K - 1) * D, w, b, u + s * T * D, T, D, K);
        ck_assert_msg(tu_rel_l2(got, u, (size_t)(S * T * D)) < 1e-6, "chunk %d", c);
        ck_assert_msg(tu_rel_l2(gst, st, (size_t)(S * (K - 1) * D)) == 0.0, "state after chunk %d", c);
        coil_cuda_free(&dx), coil_cuda_free(&du);
        free(x), free(u), free(got), free(gst);
    }
    coil_cuda_free(&dw), coil_cuda_free(&db), coil_cuda_free(&dst);
    free(w), free(b), free(st);
}
END_TEST

/* The scan for d_state 16 (the published models), 7 (odd) and 40 (two states
 * per lane), odd D, two sequences, over a chunk longer than a tile and a
 * short one: y and the carried state against the CPU op. */
static void scan_case(int64_t N)
{
    const int64_t D = 81, S = 2, chunks[] = {70, 3}, ldbc = 2 * N + 5, ldz = 2 * D;
    const coil_backend_ops_t *cpu = coil_backend_cpu_portable();
    float *A = randv((size_t)(D * N), 1.0f), *Dk = randv((size_t)D, 1.0f), *h = randv((size_t)(S * D * N), 0.5f);
    for (int64_t i = 0; i < D * N; i++)
        A[i] = -expf(A[i]); /* A = -exp(A_log) */
    coil_cuda_buf_t *dA = dev(A, (size_t)(D * N) * 4), *dD = dev(Dk, (size_t)D * 4), *dh = dev(h, (size_t)(S * D * N) * 4);
    for (int c = 0; c < 2; c++) {
        const int64_t T = chunks[c], R = S * T;
        float *u = randv((size_t)(R * D), 1.0f), *dt = randv((size_t)(R * D), 3.0f), *bc = randv((size_t)(R * ldbc), 1.0f),
              *z = randv((size_t)(R * ldz), 2.0f), *y = malloc((size_t)(R * D) * 4), *got = malloc((size_t)(R * D) * 4),
              *gh = malloc((size_t)(S * D * N) * 4);
        dt[0] = 25.0f; /* past softplus' threshold */
        coil_cuda_buf_t *du = dev(u, (size_t)(R * D) * 4), *ddt = dev(dt, (size_t)(R * D) * 4),
                        *dbc = dev(bc, (size_t)(R * ldbc) * 4), *dz = dev(z, (size_t)(R * ldz) * 4),
                        *dy = dev(NULL, (size_t)(R * D) * 4);
        OK(coil_cuda_scan(ctx, T, D, N, S, P(du), P(ddt), P(dA), P(dbc), ldbc, P(dD), P(dz), ldz, P(dh), P(dy), ERR));
        back(got, dy, (size_t)(R * D));
        back(gh, dh, (size_t)(S * D * N));
        for (int64_t s = 0; s < S; s++)
            cpu->scan(T, D, N, u + s * T * D, dt + s * T * D, A, bc + s * T * ldbc, ldbc, Dk, z + s * T * ldz, ldz,
                      h + s * D * N, y + s * T * D);
        ck_assert_msg(tu_rel_l2(got, y, (size_t)(R * D)) < 1e-5, "N=%lld chunk %d: y rel %g", (long long)N, c,
                      tu_rel_l2(got, y, (size_t)(R * D)));
        ck_assert_msg(tu_rel_l2(gh, h, (size_t)(S * D * N)) < 1e-5, "N=%lld chunk %d: state", (long long)N, c);
        coil_cuda_free(&du), coil_cuda_free(&ddt), coil_cuda_free(&dbc), coil_cuda_free(&dz), coil_cuda_free(&dy);
        free(u), free(dt), free(bc), free(z), free(y), free(got), free(gh);
    }
    coil_cuda_free(&dA), coil_cuda_free(&dD), coil_cuda_free(&dh);
    free(A), free(Dk), free(h);
}

START_TEST(test_scan)
{
    scan_case(16);
    scan_case(7);
    scan_case(40);
}
END_TEST

START_TEST(test_gate_and_embed)
{
    const int64_t R = 7, C = 33, ld = 40, V = 11, H = 9;
    float *y = randv((size_t)(R * ld), 1.0f), *z = randv((size_t)(R * ld), 3.0f), *got = malloc((size_t)(R * ld) * 4);
    coil_cuda_buf_t *dy = dev(y, (size_t)(R * ld) * 4), *dz = dev(z, (size_t)(R * ld) * 4);
    OK(coil_cuda_silu_gate(ctx, P(dy), ld, P(dz), ld, R, C, ERR));
    back(got, dy, (size_t)(R * ld));
    for (int64_t r = 0; r < R; r++)
        for (int64_t k = 0; k < ld; k++) {
            float want = k < C ? y[r * ld + k] * (z[r * ld + k] / (1.0f + expf(-z[r * ld + k]))) : y[r * ld + k];
            ck_assert_float_eq_tol(got[r * ld + k], want, 1e-6f * (1.0f + fabsf(want)));
        }
    float *emb = randv((size_t)(V * H), 1.0f), *out = malloc((size_t)(4 * H) * 4);
    uint16_t bf[11 * 9];
    for (int64_t i = 0; i < V * H; i++) {
        uint32_t u;
        memcpy(&u, &emb[i], 4);
        bf[i] = (uint16_t)(u >> 16);
    }
    int32_t ids[4] = {3, 0, 10, 3};
    coil_cuda_buf_t *de = dev(emb, (size_t)(V * H) * 4), *dbf = dev(bf, sizeof bf), *di = dev(ids, sizeof ids),
                    *dout = dev(NULL, (size_t)(4 * H) * 4);
    OK(coil_cuda_embed(ctx, COIL_DT_F32, P(de), H, (const int32_t *)coil_cuda_ptr(di), 4, P(dout), ERR));
    back(out, dout, (size_t)(4 * H));
    for (int t = 0; t < 4; t++)
        ck_assert(memcmp(out + t * H, emb + ids[t] * H, (size_t)H * 4) == 0);
    OK(coil_cuda_embed(ctx, COIL_DT_BF16, coil_cuda_ptr(dbf), H, (const int32_t *)coil_cuda_ptr(di), 4, P(dout), ERR));
    back(out, dout, (size_t)(4 * H));
    for (int t = 0; t < 4; t++)
        for (int64_t k = 0; k < H; k++) {
            uint32_t u = (uint32_t)bf[ids[t] * H + k] << 16;
            float want;
            memcpy(&want, &u, 4);
            ck_assert(out[t * H + k] == want);
        }
    coil_err_t err;
    ck_assert_int_eq(coil_cuda_embed(ctx, COIL_DT_I8, P(de), H, (const int32_t *)coil_cuda_ptr(di), 4, P(dout), &err),
                     COIL_EDTYPE);
    coil_cuda_free(&dy), coil_cuda_free(&dz), coil_cuda_free(&de), coil_cuda_free(&dbf), coil_cuda_free(&di),
        coil_cuda_free(&dout);
    free(y), free(z), free(got), free(emb), free(out);
}
END_TEST

START_TEST(test_linear_math)
{
    const int64_t M = 97, K = 81, T = 33, ldx = 90, ldy = 100;
    const coil_backend_ops_t *cpu = coil_backend_cpu_portable();
    float *W = randv((size_t)(M * K), 0.2f), *b = randv((size_t)M, 1.0f), *x = randv((size_t)(T * ldx), 1.0f);
    float *ref = calloc((size_t)(T * ldy), 4), *got = calloc((size_t)(T * ldy), 4);
    coil_matrix_t Wm = {COIL_DT_F32, W, M, K};
    cpu->linear(&Wm, b, x, ldx, ref, ldy, T, NULL);
    coil_cuda_buf_t *dW = dev(W, (size_t)(M * K) * 4), *db = dev(b, (size_t)M * 4), *dx = dev(x, (size_t)(T * ldx) * 4),
                    *dy = dev(got, (size_t)(T * ldy) * 4);
    const coil_cuda_math_t maths[] = {COIL_CUDA_MATH_F32, COIL_CUDA_MATH_TF32, COIL_CUDA_MATH_BF16};
    const double tol[] = {1e-6, 5e-3, 2e-2};
    for (int i = 0; i < 3; i++) {
        coil_cuda_set_math(ctx, maths[i]);
        OK(coil_cuda_linear(ctx, P(dW), M, K, P(db), P(dx), ldx, P(dy), ldy, T, ERR));
        back(got, dy, (size_t)(T * ldy));
        double r = tu_rel_l2(got, ref, (size_t)(T * ldy));
        ck_assert_msg(r < tol[i], "%s: rel L2 %g", coil_cuda_math_name(maths[i]), r);
        if (i == 0) {
            for (int64_t t = 0; t < T; t++) /* the gaps between rows are left alone */
                for (int64_t k = M; k < ldy; k++)
                    ck_assert(got[t * ldy + k] == 0.0f);
        }
    }
    coil_cuda_set_math(ctx, COIL_CUDA_MATH_F32);
    coil_err_t err;
    ck_assert_int_eq(coil_cuda_linear(ctx, P(dW), M, K, NULL, P(dx), K - 1, P(dy), ldy, T, &err), COIL_EINVAL);
    coil_cuda_free(&dW), coil_cuda_free(&db), coil_cuda_free(&dx), coil_cuda_free(&dy);
    free(W), free(b), free(x), free(ref), free(got);
}
END_TEST

/* Out of device memory: a clear error naming the buffer, and nothing lost. */
START_TEST(test_memory_errors)
{
    coil_err_t err;
    float keep[64], back64[64];
    for (int i = 0; i < 64; i++)
        keep[i] = (float)i;
    coil_cuda_buf_t *b = dev(keep, sizeof keep);
    coil_cuda_buf_t *huge = coil_cuda_alloc(ctx, (size_t)1 << 52, "a 4 PiB test buffer", &err);
    ck_assert_ptr_null(huge);
    ck_assert_int_eq(err.code, COIL_ENOMEM);
    ck_assert_ptr_nonnull(strstr(err.msg, "out of device memory: a 4 PiB test buffer"));
    ck_assert_ptr_nonnull(strstr(err.msg, "MiB free of"));
    ck_assert_int_eq(coil_cuda_download(ctx, back64, b, 0, sizeof back64, &err), 0);
    ck_assert(memcmp(keep, back64, sizeof keep) == 0);
    ck_assert_int_eq(coil_cuda_upload(ctx, b, 8, keep, sizeof keep, &err), COIL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "outside the 256-byte device buffer"));
    ck_assert_int_eq(coil_cuda_download(ctx, back64, b, 300, 4, &err), COIL_EINVAL);
    /* the context still works */
    coil_cuda_buf_t *c2 = dev(keep, sizeof keep);
    ck_assert_int_eq(coil_cuda_sync(ctx, &err), 0);
    coil_cuda_free(&c2);
    coil_cuda_free(&b);
}
END_TEST

/* The side-stream checkpoint is the state as of its start, whatever the main
 * stream does to the source afterwards. */
START_TEST(test_checkpoint_async)
{
    coil_err_t err = {0};
    const size_t n = 1 << 20;
    float *a = randv(n, 1.0f), *zero = calloc(n, 4);
    coil_cuda_buf_t *src = dev(a, n * 4);
    coil_cuda_ckpt_t *k = coil_cuda_ckpt_new(ctx, n * 4, &err);
    ck_assert_msg(k != NULL, "%s", err.msg);
    const void *host;
    size_t bytes;
    ck_assert_int_eq(coil_cuda_ckpt_wait(ctx, k, &host, &bytes, &err), COIL_ESTATE);
    for (int round = 0; round < 3; round++) {
        OK(coil_cuda_ckpt_start(ctx, k, src, 0, n * 4, ERR));
        OK(coil_cuda_upload(ctx, src, 0, round % 2 ? a : zero, n * 4, ERR)); /* overwrite the source */
        OK(coil_cuda_ckpt_wait(ctx, k, &host, &bytes, ERR));
        ck_assert_uint_eq(bytes, n * 4);
        ck_assert(memcmp(host, round % 2 ? zero : a, n * 4) == 0);
    }
    ck_assert_int_eq(coil_cuda_ckpt_start(ctx, k, src, 0, n * 4 + 4, &err), COIL_EINVAL);
    coil_cuda_ckpt_free(&k);
    coil_cuda_free(&src);
    free(a), free(zero);
}
END_TEST

/* ---- the device-resident forward ------------------------------------------------ */

static const char *models[] = {"tied_f32",   "untied_bias_sharded",  "tied_bf16",
                               "untied_f16", "odd_dinner",           "published_130m_shape",
                               "published_sharded_shape"};
#define NMODELS ((int)(sizeof models / sizeof models[0]))

typedef struct {
    coil_model_t *m;
    int32_t *ids;
    int64_t T, V;
    float *golden;
} gold_t;

static void gold_load(const char *name, gold_t *g)
{
    char rel[256];
    coil_err_t err = {0};
    memset(g, 0, sizeof *g);
    snprintf(rel, sizeof rel, "models/%s", name);
    g->m = coil_model_load(tu_data(rel), &err);
    ck_assert_msg(g->m != NULL, "%s: %s", name, err.msg);
    g->V = coil_model_config(g->m)->vocab_size;
    snprintf(rel, sizeof rel, "models/%s/logits.f32", name);
    size_t len = 0;
    g->golden = tu_read(tu_data(rel), &len);
    ck_assert_ptr_nonnull(g->golden);
    g->T = (int64_t)(len / sizeof(float)) / g->V;
    /* the ids: golden.json's "ids" array */
    snprintf(rel, sizeof rel, "models/%s/golden.json", name);
    char *js = tu_read(tu_data(rel), &len);
    ck_assert_ptr_nonnull(js);
    char *p = strstr(js, "\"ids\"");
    ck_assert_ptr_nonnull(p);
    p = strchr(p, '[');
    g->ids = malloc((size_t)g->T * sizeof(int32_t));
    for (int64_t t = 0; t < g->T; t++) {
        g->ids[t] = (int32_t)strtol(p + 1, &p, 10);
        ck_assert(*p == ',' || *p == '\n' || *p == ' ' || *p == ']');
        while (*p == ' ' || *p == '\n')
            p++;
    }
    free(js);
}

static void gold_free(gold_t *g)
{
    coil_model_destroy(&g->m);
    free(g->ids);
    free(g->golden);
}

static float *cuda_logits(gold_t *g, int64_t chunk, int64_t piece, coil_cuda_math_t math)
{
    coil_err_t err = {0};
    coil_cuda_engine_options_t o = {.max_chunk = chunk, .nseq = 1, .math = math, .with_logits = 1};
    coil_cuda_engine_t *e = coil_cuda_engine_new(g->m, &o, &err);
    ck_assert_msg(e != NULL, "%s", err.msg);
    float *lg = malloc((size_t)(g->T * g->V) * 4);
    for (int64_t t = 0; t < g->T; t += piece) {
        int64_t n = g->T - t < piece ? g->T - t : piece;
        ck_assert_msg(coil_cuda_engine_forward(e, g->ids + t, n, lg + t * g->V, &err) == 0, "%s", err.msg);
    }
    coil_cuda_engine_destroy(&e);
    return lg;
}

static float *cpu_logits(gold_t *g, int64_t T, coil_state_t *st)
{
    coil_err_t err = {0};
    coil_engine_t *e = coil_engine_new(g->m, NULL, &err);
    ck_assert_msg(e != NULL, "%s", err.msg);
    float *lg = malloc((size_t)(T * g->V) * 4);
    ck_assert_msg(coil_engine_forward(e, st, g->ids + (g->T - T), T, lg, &err) == 0, "%s", err.msg);
    coil_engine_destroy(&e);
    return lg;
}

START_TEST(test_engine_parity)
{
    gold_t g;
    gold_load(models[_i], &g);
    const size_t n = (size_t)(g.T * g.V);
    float *f32 = cuda_logits(&g, 256, g.T, COIL_CUDA_MATH_F32);
    double r = tu_rel_l2(f32, g.golden, n);
    ck_assert_msg(r < 1e-4, "%s: F32 logits vs transformers: rel L2 %g", models[_i], r);
    coil_err_t err = {0};
    coil_state_t *st = coil_state_new(g.m, &err);
    float *cpu = cpu_logits(&g, g.T, st);
    r = tu_rel_l2(f32, cpu, n);
    ck_assert_msg(r < 1e-4, "%s: F32 logits vs the CPU backend: rel L2 %g", models[_i], r);
    float *bf = cuda_logits(&g, 256, g.T, COIL_CUDA_MATH_BF16);
    r = tu_rel_l2(bf, g.golden, n);
    ck_assert_msg(r < 2e-2, "%s: BF16 logits: rel L2 %g", models[_i], r);
    /* chunk invariance: max_chunk 7, forward pieces of 13 */
    float *c7 = cuda_logits(&g, 7, 13, COIL_CUDA_MATH_F32);
    r = tu_rel_l2(c7, f32, n);
    ck_assert_msg(r < 1e-5, "%s: chunked 7/13 vs whole: rel L2 %g", models[_i], r);
    coil_state_destroy(&st);
    free(f32), free(cpu), free(bf), free(c7);
    gold_free(&g);
}
END_TEST

/* A GPU state resumed on the CPU, and a CPU state resumed on the GPU. */
START_TEST(test_state_round_trip)
{
    gold_t g;
    gold_load(models[_i], &g);
    coil_err_t err = {0};
    const int64_t half = g.T / 2, rest = g.T - half;
    coil_cuda_engine_options_t o = {.max_chunk = 64, .nseq = 1, .with_logits = 1};
    coil_cuda_engine_t *e = coil_cuda_engine_new(g.m, &o, &err);
    ck_assert_msg(e != NULL, "%s", err.msg);
    ck_assert_int_eq(coil_cuda_engine_forward(e, g.ids, half, NULL, &err), 0);
    coil_state_t *st = coil_state_new(g.m, &err), *ck = coil_state_new(g.m, &err);
    ck_assert_int_eq(coil_cuda_engine_save_state(e, 0, st, &err), 0);
    ck_assert_int_eq(coil_state_position(st), half);
    /* the asynchronous checkpoint gives the same state */
    ck_assert_int_eq(coil_cuda_engine_checkpoint_start(e, &err), 0);
    coil_state_t *arr[1] = {ck};
    ck_assert_int_eq(coil_cuda_engine_checkpoint_wait(e, arr, &err), 0);
    size_t bl = coil_state_blob_size(st);
    char *b1 = malloc(bl), *b2 = malloc(bl);
    coil_state_serialize(st, b1, bl, &err);
    coil_state_serialize(ck, b2, bl, &err);
    ck_assert(memcmp(b1, b2, bl) == 0);
    /* GPU -> CPU: the rest on the CPU matches the golden tail */
    float *cpu = cpu_logits(&g, rest, st);
    double r = tu_rel_l2(cpu, g.golden + half * g.V, (size_t)(rest * g.V));
    ck_assert_msg(r < 1e-4, "%s: GPU state resumed on the CPU: rel L2 %g", models[_i], r);
    /* CPU -> GPU: a CPU state after the first half, continued on the GPU */
    coil_state_t *cs = coil_state_new(g.m, &err);
    coil_engine_t *ce = coil_engine_new(g.m, NULL, &err);
    ck_assert_int_eq(coil_engine_forward(ce, cs, g.ids, half, NULL, &err), 0);
    coil_engine_destroy(&ce);
    ck_assert_int_eq(coil_cuda_engine_load_state(e, 0, cs, &err), 0);
    float *gpu = malloc((size_t)(rest * g.V) * 4);
    ck_assert_int_eq(coil_cuda_engine_forward(e, g.ids + half, rest, gpu, &err), 0);
    r = tu_rel_l2(gpu, g.golden + half * g.V, (size_t)(rest * g.V));
    ck_assert_msg(r < 1e-4, "%s: CPU state resumed on the GPU: rel L2 %g", models[_i], r);
    ck_assert_int_eq(coil_cuda_engine_save_state(e, 0, st, &err), 0);
    ck_assert_int_eq(coil_state_position(st), g.T);
    /* bad input changes nothing */
    int32_t bad = (int32_t)g.V;
    ck_assert_int_eq(coil_cuda_engine_forward(e, &bad, 1, NULL, &err), COIL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "outside the vocabulary"));
    ck_assert_int_eq(coil_cuda_engine_save_state(e, 1, st, &err), COIL_EINVAL);
    coil_cuda_engine_destroy(&e);
    coil_state_destroy(&st), coil_state_destroy(&ck), coil_state_destroy(&cs);
    free(b1), free(b2), free(cpu), free(gpu);
    gold_free(&g);
}
END_TEST

/* A batch of three documents in one engine == each alone. */
START_TEST(test_batch)
{
    gold_t g;
    gold_load("odd_dinner", &g);
    coil_err_t err = {0};
    const int64_t S = 3, T = 40;
    int32_t *ids = malloc((size_t)(S * T) * 4);
    for (int64_t s = 0; s < S; s++)
        for (int64_t t = 0; t < T; t++)
            ids[s * T + t] = g.ids[(s * 17 + t) % g.T];
    coil_cuda_engine_options_t o = {.max_chunk = 16, .nseq = S, .with_logits = 1};
    coil_cuda_engine_t *e = coil_cuda_engine_new(g.m, &o, &err);
    ck_assert_msg(e != NULL, "%s", err.msg);
    float *all = malloc((size_t)(S * T * g.V) * 4);
    ck_assert_int_eq(coil_cuda_engine_forward(e, ids, T, all, &err), 0);
    coil_cuda_engine_destroy(&e);
    o.nseq = 1;
    for (int64_t s = 0; s < S; s++) {
        e = coil_cuda_engine_new(g.m, &o, &err);
        float *one = malloc((size_t)(T * g.V) * 4);
        ck_assert_int_eq(coil_cuda_engine_forward(e, ids + s * T, T, one, &err), 0);
        double r = tu_rel_l2(all + s * T * g.V, one, (size_t)(T * g.V));
        ck_assert_msg(r < 1e-6, "sequence %lld of the batch vs alone: rel L2 %g", (long long)s, r);
        coil_cuda_engine_destroy(&e);
        free(one);
    }
    free(ids), free(all);
    gold_free(&g);
}
END_TEST

/* The engine's "cuda" backend (src/engine.c over the device-resident
 * forward): logits of the golden sequence in uneven calls, and the state it
 * leaves resumed by the CPU backend. */
START_TEST(test_engine_backend)
{
    gold_t g;
    gold_load(models[_i], &g);
    coil_err_t err = {0};
    coil_engine_options_t o = {.max_chunk = 32, .backend = "cuda"};
    coil_engine_t *e = coil_engine_new(g.m, &o, &err);
    ck_assert_msg(e != NULL, "%s", err.msg);
    ck_assert_str_eq(coil_engine_backend_name(e), "cuda");
    coil_state_t *st = coil_state_new(g.m, &err);
    const int64_t half = g.T / 2, rest = g.T - half;
    float *lg = malloc((size_t)(g.T * g.V) * 4);
    ck_assert_int_eq(coil_engine_forward(e, st, g.ids, 5, lg, &err), 0);
    ck_assert_int_eq(coil_engine_forward(e, st, g.ids + 5, half - 5, lg + 5 * g.V, &err), 0);
    ck_assert_int_eq(coil_state_position(st), half);
    float *cpu = cpu_logits(&g, rest, st); /* the CPU continues the GPU's state */
    memcpy(lg + half * g.V, cpu, (size_t)(rest * g.V) * 4);
    double r = tu_rel_l2(lg, g.golden, (size_t)(g.T * g.V));
    ck_assert_msg(r < 1e-4, "%s: engine backend cuda, then cpu: rel L2 %g", models[_i], r);
    float *next = malloc((size_t)g.V * 4);
    ck_assert_int_eq(coil_engine_next_logits(e, st, next, &err), 0);
    ck_assert_double_lt(tu_rel_l2(next, g.golden + (g.T - 1) * g.V, (size_t)g.V), 1e-4);
    coil_engine_destroy(&e);
    coil_state_destroy(&st);
    free(lg), free(cpu), free(next);
    gold_free(&g);
}
END_TEST

/* Without a usable device every entry point fails cleanly. */
static int no_device_checks(const coil_err_t *why)
{
    coil_err_t err;
    int bad = 0;
    if (why->code != COIL_ENOTFOUND || strncmp(why->msg, "no CUDA device", 14) != 0) {
        fprintf(stderr, "FAIL: coil_cuda_device_count: %d %s\n", why->code, why->msg);
        bad = 1;
    }
    if (coil_cuda_open(0, &err) != NULL || err.code != COIL_ENOTFOUND || !strstr(err.msg, "no CUDA device")) {
        fprintf(stderr, "FAIL: coil_cuda_open without a device: %d %s\n", err.code, err.msg);
        bad = 1;
    }
    coil_model_t *m = coil_model_load(tu_data("models/odd_dinner"), &err);
    if (!m) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        return 1;
    }
    coil_cuda_engine_t *e = coil_cuda_engine_new(m, NULL, &err);
    if (e != NULL || err.code != COIL_ENOTFOUND || !strstr(err.msg, "no CUDA device")) {
        fprintf(stderr, "FAIL: coil_cuda_engine_new without a device: %d %s\n", err.code, err.msg);
        bad = 1;
    }
    coil_engine_options_t eo = {.backend = "cuda"};
    coil_engine_t *ce = coil_engine_new(m, &eo, &err);
    if (ce != NULL || err.code != COIL_ENOTFOUND || !strstr(err.msg, "backend 'cuda' is not available: no CUDA device")) {
        fprintf(stderr, "FAIL: coil_engine_new(backend cuda) without a device: %d %s\n", err.code, err.msg);
        bad = 1;
    }
    coil_model_destroy(&m);
    return bad;
}

int main(void)
{
    int n = 0;
    coil_err_t err = {0};
    if (coil_cuda_device_count(&n, &err) != 0) {
        if (no_device_checks(&err))
            return 1;
        printf("SKIP: %s\n", err.msg);
        return 77;
    }
    if (!(ctx = coil_cuda_open(0, &err))) {
        fprintf(stderr, "coil_cuda_open: %s\n", err.msg);
        return 1;
    }
    printf("device: %s\n", coil_cuda_device_name(ctx));
    Suite *s = suite_create("cuda");
    TCase *tk = tcase_create("kernels"), *te = tcase_create("engine");
    tcase_add_test(tk, test_rmsnorm_add);
    tcase_add_test(tk, test_conv_silu);
    tcase_add_test(tk, test_scan);
    tcase_add_test(tk, test_gate_and_embed);
    tcase_add_test(tk, test_linear_math);
    tcase_add_test(tk, test_memory_errors);
    tcase_add_test(tk, test_checkpoint_async);
    tcase_add_loop_test(te, test_engine_parity, 0, NMODELS);
    tcase_add_loop_test(te, test_state_round_trip, 0, NMODELS);
    tcase_add_test(te, test_batch);
    tcase_add_loop_test(te, test_engine_backend, 0, NMODELS);
    suite_add_tcase(s, tk);
    suite_add_tcase(s, te);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK); /* CUDA does not survive fork() */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    coil_cuda_close(&ctx);
    return failed ? 1 : 0;
}
