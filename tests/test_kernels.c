/* test_kernels.c -- kernel sets and the matrix library.
 *
 *   - the kernel set chosen is the best one cpuid allows (checked against the
 *     compiler's own __builtin_cpu_supports, a second reading of cpuid), or the
 *     one COIL_KERNELS forces;
 *   - every kernel set this CPU has agrees with the portable one op by op
 *     (linear F32/F16/BF16 prefill and decode, rmsnorm, conv, scan) on shapes
 *     with odd widths, and gives the same bits when run twice;
 *   - oneDNN and OpenBLAS agree; a wrong OpenBLAS core choice is detected
 *     and corrected.
 * `test_kernels --available` prints the sets this CPU has (for
 * tests/kernel_sets.sh, which runs test_engine's golden parity under each).
 */
#include "backend.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "convert.h"
#include "cpu_internal.h"
#include "testutil.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}
static float *rand_buf(size_t n, float scale)
{
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) & ~(size_t)63);
    for (size_t i = 0; i < n; i++)
        p[i] = frand() * scale;
    return p;
}

static uint16_t to_bf16(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    return (uint16_t)(b >> 16);
}
static uint16_t to_f16(float f)
{
    _Float16 h = (_Float16)f;
    uint16_t b;
    memcpy(&b, &h, 2);
    return b;
}

static coil_kset_t builtin_best(void)
{
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    if (avx512 && coil_kernels_built(COIL_KSET_AVX512))
        return COIL_KSET_AVX512;
    if (avx2 && coil_kernels_built(COIL_KSET_AVX2))
        return COIL_KSET_AVX2;
    return COIL_KSET_PORTABLE;
}

START_TEST(test_chosen_matches_cpuid)
{
    const coil_kset_t best = builtin_best();
    ck_assert_msg(coil_kernels_best() == best, "best kernel set %s, but cpuid (compiler builtin) says %s",
                  coil_kernels_name(coil_kernels_best()), coil_kernels_name(best));
    const char *env = getenv("COIL_KERNELS");
    coil_kset_t want = best;
    if (env && *env && coil_kernels_parse(env, &want) == 0 && !coil_kernels_available(want))
        want = best;
    ck_assert_msg(coil_kernels_chosen() == want, "kernel set chosen %s, expected %s (COIL_KERNELS=%s)",
                  coil_kernels_name(coil_kernels_chosen()), coil_kernels_name(want), env ? env : "");
    ck_assert_ptr_eq(coil_backend_cpu(), coil_backend_cpu_kernels(want));
    if (best < COIL_KSET_AVX512)
        fprintf(stderr, "SKIP part: this CPU (%s) or build has no AVX-512 kernels: %s\n", coil_cpu_features_string(),
                "the avx512 set is not checked here");
    if (best < COIL_KSET_AVX2)
        fprintf(stderr, "SKIP part: no AVX2 kernel set on this CPU/build\n");
    for (int k = best + 1; k <= COIL_KSET_AVX512; k++)
        ck_assert_ptr_null(coil_backend_cpu_kernels((coil_kset_t)k));
    /* cpuid as coil reads it agrees with the compiler's reading */
    const coil_cpu_features_t *f = coil_cpu_features();
    ck_assert_int_eq(f->avx2, !!__builtin_cpu_supports("avx2"));
    ck_assert_int_eq(f->avx512f, !!__builtin_cpu_supports("avx512f"));
    ck_assert_int_eq(f->avx512bw, !!__builtin_cpu_supports("avx512bw"));
}
END_TEST

static void expect_close(const char *what, coil_kset_t k, const float *ref, const float *got, size_t n, double tol)
{
    double rel = tu_rel_l2(got, ref, n);
    fprintf(stderr, "kernels %-8s %-28s rel L2 %.3g\n", coil_kernels_name(k), what, rel);
    ck_assert_msg(rel < tol, "%s, kernel set %s: relative L2 %g >= %g", what, coil_kernels_name(k), rel, tol);
}

/* Runs op for one kernel set twice; the two runs must agree to the bit. */
#define TWICE(k, out, n, call)                                                                                     \
    do {                                                                                                         \
        float *again_ = malloc((n) * sizeof(float));                                                             \
        call;                                                                                                    \
        memcpy(again_, out, (n) * sizeof(float));                                                                \
        call;                                                                                                    \
        ck_assert_msg(memcmp(again_, out, (n) * sizeof(float)) == 0, "%s: kernel set %s is not bit-stable", #call, \
                      coil_kernels_name(k));                                                                     \
        free(again_);                                                                                            \
    } while (0)

static const int64_t widths[] = {1536, 37, 24}; /* d_inner: 130m, odd, one AVX2 group + 8 */

START_TEST(test_ops_parity)
{
    const coil_backend_ops_t *P = coil_backend_cpu_portable();
    const int64_t D = widths[_i], T = 19, N = 16, K = 4, H = D < 64 ? 29 : 768;
    const size_t nd = (size_t)(T * D);
    for (int k = COIL_KSET_AVX2; k <= COIL_KSET_AVX512; k++) {
        const coil_backend_ops_t *S = coil_backend_cpu_kernels((coil_kset_t)k);
        if (!S)
            continue;
        /* rmsnorm */
        float *x = rand_buf((size_t)(T * H), 3.0f), *w = rand_buf((size_t)H, 1.0f);
        float *ya = malloc((size_t)(T * H) * 4), *yb = malloc((size_t)(T * H) * 4);
        P->rmsnorm(x, w, 1e-5f, ya, T, H);
        TWICE(k, yb, (size_t)(T * H), S->rmsnorm(x, w, 1e-5f, yb, T, H));
        expect_close("rmsnorm", k, ya, yb, (size_t)(T * H), 1e-6);
        free(ya);
        free(yb);
        /* conv + silu, with carried state */
        float *xc = rand_buf(nd * 2, 2.0f), *cw = rand_buf((size_t)(D * K), 0.5f), *cb = rand_buf((size_t)D, 0.5f);
        float *st0 = rand_buf((size_t)((K - 1) * D), 1.0f), *sa = malloc((size_t)((K - 1) * D) * 4),
              *sb = malloc((size_t)((K - 1) * D) * 4), *ua = malloc(nd * 4), *ub = malloc(nd * 4);
        memcpy(sa, st0, (size_t)((K - 1) * D) * 4);
        P->conv_silu(xc, 2 * D, sa, cw, cb, ua, T, D, K);
        TWICE(k, ub, nd,
              (memcpy(sb, st0, (size_t)((K - 1) * D) * 4), S->conv_silu(xc, 2 * D, sb, cw, cb, ub, T, D, K)));
        expect_close("conv_silu", k, ua, ub, nd, 1e-6);
        ck_assert(memcmp(sa, sb, (size_t)((K - 1) * D) * 4) == 0);
        /* scan */
        float *dt = rand_buf(nd, 3.0f), *A = rand_buf((size_t)(D * N), 1.0f), *bc = rand_buf((size_t)(T * 2 * N), 1.0f),
              *Ds = rand_buf((size_t)D, 1.0f), *z = rand_buf(nd * 2, 2.0f), *h0 = rand_buf((size_t)(D * N), 1.0f);
        for (int64_t i = 0; i < D * N; i++)
            A[i] = -fabsf(A[i]) * 4.0f - 0.01f;
        dt[0] = 25.0f; /* the softplus threshold path */
        float *ha = malloc((size_t)(D * N) * 4), *hb = malloc((size_t)(D * N) * 4);
        memcpy(ha, h0, (size_t)(D * N) * 4);
        P->scan(T, D, N, ua, dt, A, bc, 2 * N, Ds, z + D, 2 * D, ha, ya = malloc(nd * 4));
        yb = malloc(nd * 4);
        TWICE(k, yb, nd,
              (memcpy(hb, h0, (size_t)(D * N) * 4), S->scan(T, D, N, ua, dt, A, bc, 2 * N, Ds, z + D, 2 * D, hb, yb)));
        expect_close("scan y", k, ya, yb, nd, 1e-5);
        expect_close("scan h", k, ha, hb, (size_t)(D * N), 1e-5);
        free(ya);
        free(yb);
        free(ha);
        free(hb);
        free(dt);
        free(A);
        free(bc);
        free(Ds);
        free(z);
        free(h0);
        free(xc);
        free(cw);
        free(cb);
        free(st0);
        free(sa);
        free(sb);
        free(ua);
        free(ub);
        free(x);
        free(w);
        /* linear: F32/F16/BF16 weights, decode (T=1) and prefill, with bias */
        const int64_t R = D + 3, C = H;
        float *Wf = rand_buf((size_t)(R * C), 0.1f), *bias = rand_buf((size_t)R, 0.1f),
              *xin = rand_buf((size_t)(T * C), 1.0f);
        uint16_t *Wh = malloc((size_t)(R * C) * 2);
        float *scratch = malloc((size_t)(R * C) * 4), *la = malloc((size_t)(T * R) * 4),
              *lb = malloc((size_t)(T * R) * 4);
        for (int dtype = 0; dtype < 3; dtype++) {
            if (dtype == 1)
                for (int64_t i = 0; i < R * C; i++)
                    Wh[i] = to_f16(Wf[i]);
            if (dtype == 2)
                for (int64_t i = 0; i < R * C; i++)
                    Wh[i] = to_bf16(Wf[i]);
            coil_matrix_t M = {.dtype = (coil_dtype_t)dtype, .data = dtype ? (const void *)Wh : Wf, .rows = R, .cols = C};
            for (int64_t tt = 1; tt <= T; tt += T - 1) {
                P->linear(&M, bias, xin, C, la, R, tt, scratch);
                TWICE(k, lb, (size_t)(tt * R), S->linear(&M, bias, xin, C, lb, R, tt, scratch));
                char what[64];
                snprintf(what, sizeof what, "linear %s T=%lld", dtype == 0 ? "F32" : dtype == 1 ? "F16" : "BF16",
                         (long long)tt);
                expect_close(what, k, la, lb, (size_t)(tt * R), 1e-5);
            }
        }
        free(Wf);
        free(Wh);
        free(bias);
        free(xin);
        free(scratch);
        free(la);
        free(lb);
    }
}
END_TEST

/* Tiles are fixed by the shape, so the thread count never changes the bits. */
START_TEST(test_threads_same_bits)
{
    const int64_t T = 300, R = 1000, C = 384, D = 272, N = 16;
    float *W = rand_buf((size_t)(R * C), 0.1f), *x = rand_buf((size_t)(T * C), 1.0f), *bias = rand_buf((size_t)R, 0.1f);
    float *y1 = malloc((size_t)(T * R) * 4), *y2 = malloc((size_t)(T * R) * 4);
    float *u = rand_buf((size_t)(T * D), 1.0f), *dt = rand_buf((size_t)(T * D), 2.0f), *A = rand_buf((size_t)(D * N), 1.0f),
          *bc = rand_buf((size_t)(T * 2 * N), 1.0f), *Ds = rand_buf((size_t)D, 1.0f), *z = rand_buf((size_t)(T * D), 1.0f);
    float *h1 = calloc((size_t)(D * N), 4), *h2 = calloc((size_t)(D * N), 4);
    for (int64_t i = 0; i < D * N; i++)
        A[i] = -fabsf(A[i]) - 0.01f;
    coil_matrix_t M = {.dtype = COIL_DT_F32, .data = W, .rows = R, .cols = C};
    for (int k = COIL_KSET_PORTABLE; k <= COIL_KSET_AVX512; k++) {
        const coil_backend_ops_t *S = coil_backend_cpu_kernels((coil_kset_t)k);
        if (!S)
            continue;
        for (int64_t tt = 1; tt <= T; tt += T - 1) {
            S->set_threads(1);
            S->linear(&M, bias, x, C, y1, R, tt, NULL);
            S->set_threads(3);
            S->linear(&M, bias, x, C, y2, R, tt, NULL);
            ck_assert_msg(memcmp(y1, y2, (size_t)(tt * R) * 4) == 0, "linear T=%lld, set %s: 1 and 3 threads differ",
                          (long long)tt, coil_kernels_name((coil_kset_t)k));
        }
        memset(h1, 0, (size_t)(D * N) * 4);
        memset(h2, 0, (size_t)(D * N) * 4);
        S->set_threads(1);
        S->scan(T, D, N, u, dt, A, bc, 2 * N, Ds, z, D, h1, y1);
        S->set_threads(3);
        S->scan(T, D, N, u, dt, A, bc, 2 * N, Ds, z, D, h2, y2);
        ck_assert_msg(memcmp(y1, y2, (size_t)(T * D) * 4) == 0 && memcmp(h1, h2, (size_t)(D * N) * 4) == 0,
                      "scan, set %s: 1 and 3 threads differ", coil_kernels_name((coil_kset_t)k));
    }
    coil_backend_cpu()->set_threads(0);
    free(W);
    free(x);
    free(bias);
    free(y1);
    free(y2);
    free(u);
    free(dt);
    free(A);
    free(bc);
    free(Ds);
    free(z);
    free(h1);
    free(h2);
}
END_TEST

/* COIL_BF16_DOT: BF16 decode GEMV through vdpbf16ps (x rounded to BF16).
 * Close to the exact product, not equal to it (so the path ran), bit-stable,
 * the same bits for 1 and 3 threads; off again gives the exact path's bits. */
START_TEST(test_bf16_dot)
{
    if (!coil_backend_bf16_dot_available()) {
        fprintf(stderr, "SKIP: bf16 dot: this build, CPU or kernel set lacks AVX512_BF16\n");
        return;
    }
    const coil_backend_ops_t *P = coil_backend_cpu_portable(), *S = coil_backend_cpu();
    const int64_t Ks[] = {1536, 37, 773}, R = 203;
    for (int i = 0; i < 3; i++) {
        const int64_t K = Ks[i];
        float *Wf = rand_buf((size_t)(R * K), 0.1f), *bias = rand_buf((size_t)R, 0.1f), *x = rand_buf((size_t)K, 1.0f);
        float *ref = malloc((size_t)R * 4), *got = malloc((size_t)R * 4), *got3 = malloc((size_t)R * 4),
              *exact = malloc((size_t)R * 4), *off = malloc((size_t)R * 4);
        uint16_t *Wh = malloc((size_t)(R * K) * 2);
        for (int64_t j = 0; j < R * K; j++)
            Wh[j] = to_bf16(Wf[j]);
        coil_matrix_t M = {.dtype = COIL_DT_BF16, .data = Wh, .rows = R, .cols = K};
        P->linear(&M, bias, x, K, ref, R, 1, NULL);
        S->linear(&M, bias, x, K, exact, R, 1, NULL);
        coil_backend_bf16_dot_set(true);
        ck_assert(coil_backend_bf16_dot());
        S->set_threads(1);
        TWICE(COIL_KSET_AVX512, got, (size_t)R, S->linear(&M, bias, x, K, got, R, 1, NULL));
        S->set_threads(3);
        S->linear(&M, bias, x, K, got3, R, 1, NULL);
        S->set_threads(0);
        coil_backend_bf16_dot_set(false);
        S->linear(&M, bias, x, K, off, R, 1, NULL);
        char what[64];
        snprintf(what, sizeof what, "bf16 dot K=%lld", (long long)K);
        expect_close(what, COIL_KSET_AVX512, ref, got, (size_t)R, 1e-2);
        ck_assert_msg(tu_rel_l2(got, ref, (size_t)R) > 1e-6, "bf16 dot K=%lld: the exact result (did the path run?)",
                      (long long)K);
        ck_assert_msg(memcmp(got, got3, (size_t)R * 4) == 0, "bf16 dot K=%lld: 1 and 3 threads differ", (long long)K);
        ck_assert_msg(memcmp(off, exact, (size_t)R * 4) == 0, "bf16 dot off K=%lld: not the exact path's bits",
                      (long long)K);
        free(Wf);
        free(bias);
        free(x);
        free(ref);
        free(got);
        free(got3);
        free(exact);
        free(off);
        free(Wh);
    }
}
END_TEST

/* A child forked after the pool started runs its products too (no workers of
 * the parent to wait for). */
START_TEST(test_pool_after_fork)
{
    const coil_backend_ops_t *S = coil_backend_cpu();
    const int64_t T = 64, R = 512, C = 256;
    float *W = rand_buf((size_t)(R * C), 0.1f), *x = rand_buf((size_t)(T * C), 1.0f), *y = malloc((size_t)(T * R) * 4);
    coil_matrix_t M = {.dtype = COIL_DT_F32, .data = W, .rows = R, .cols = C};
    S->set_threads(2);
    S->linear(&M, NULL, x, C, y, R, T, NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        alarm(20);
        S->linear(&M, NULL, x, C, y, R, T, NULL);
        _exit(0);
    }
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the forked child hung or failed (status %d)", st);
    S->set_threads(0);
    free(W);
    free(x);
    free(y);
}
END_TEST

START_TEST(test_matrix_libraries_agree)
{
    const int64_t T = 64, n = 200, K = 300;
    float *x = rand_buf((size_t)(T * K), 1.0f), *W = rand_buf((size_t)(n * K), 0.1f);
    float *ya = calloc((size_t)(T * n), 4), *yb = calloc((size_t)(T * n), 4);
    coil_matrix_sgemm(COIL_MATRIX_OPENBLAS, T, n, K, x, K, W, 0.0f, ya, n);
    /* naive reference in double */
    double worst = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t r = 0; r < n; r++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += (double)x[t * K + k] * W[r * K + k];
            worst = fmax(worst, fabs(s - ya[t * n + r]));
        }
    ck_assert_msg(worst < 1e-4, "OpenBLAS sgemm off by %g", worst);
#ifdef COIL_HAVE_ONEDNN
    coil_matrix_sgemm(COIL_MATRIX_ONEDNN, T, n, K, x, K, W, 0.0f, yb, n);
    expect_close("oneDNN vs OpenBLAS sgemm", COIL_KSET_PORTABLE, ya, yb, (size_t)(T * n), 1e-6);
    ck_assert_int_eq(coil_matrix_active(), getenv("COIL_MATRIX") && !strcmp(getenv("COIL_MATRIX"), "openblas")
                                               ? COIL_MATRIX_OPENBLAS
                                               : COIL_MATRIX_ONEDNN);
#else
    fprintf(stderr, "SKIP part: this build has no oneDNN\n");
#endif
    coil_matrix_info_t mi;
    coil_matrix_info(coil_matrix_active(), &mi);
    ck_assert(mi.version[0] && mi.kernel[0]);
    free(x);
    free(W);
    free(ya);
    free(yb);
}
END_TEST

void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));

START_TEST(test_openblas_core_fixed)
{
    const coil_cpu_features_t *f = coil_cpu_features();
    if (!gotoblas_dynamic_init || !f->avx2 || getenv("OPENBLAS_CORETYPE")) {
        fprintf(stderr, "SKIP part: OpenBLAS is not DYNAMIC_ARCH, the CPU has no AVX2, or OPENBLAS_CORETYPE is set\n");
        return;
    }
    coil_matrix_active();
    /* Make OpenBLAS choose its SSE3 core, as 0.3.21 does on a CPU model it
     * does not know, then let coil check it. */
    setenv("OPENBLAS_CORETYPE", "Prescott", 1);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");
    ck_assert_str_eq(coil_openblas_core(), "Prescott");
    ck_assert_int_eq(coil_openblas_check(0), 1); /* detected, not fixed */
    ck_assert_str_eq(coil_openblas_core(), "Prescott");
    ck_assert_int_eq(coil_openblas_check(1), 1); /* detected and fixed */
    const char *want = f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && strcmp(f->vendor, "AuthenticAMD")
                           ? "SkylakeX"
                           : strcmp(f->vendor, "AuthenticAMD") ? "Haswell" : "Zen";
    ck_assert_str_eq(coil_openblas_core(), want);
    ck_assert_int_eq(coil_openblas_check(0), 0);
    ck_assert_ptr_null(getenv("OPENBLAS_CORETYPE"));
}
END_TEST

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--available")) {
        for (int k = COIL_KSET_PORTABLE; k <= COIL_KSET_AVX512; k++)
            if (coil_kernels_available((coil_kset_t)k))
                printf("%s\n", coil_kernels_name((coil_kset_t)k));
        return 0;
    }
    coil_backend_print_info(stderr);
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_chosen_matches_cpuid);
    tcase_add_loop_test(tc, test_ops_parity, 0, 3);
    tcase_add_test(tc, test_threads_same_bits);
    tcase_add_test(tc, test_pool_after_fork);
    tcase_add_test(tc, test_bf16_dot);
    tcase_add_test(tc, test_matrix_libraries_agree);
    tcase_add_test(tc, test_openblas_core_fixed);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
