/* test_kernels.c -- kernel sets and the matrix library.
 *
 *   - the kernel set chosen is the best one cpuid allows (checked against the
 *     compiler's own __builtin_cpu_supports, a second reading of cpuid), or the
 *     one COIL_KERNELS forces;
 *   - every kernel set this CPU has agrees with the portable one op by op
 *     (linear F32/F16/BF16 prefill and decode, rmsnorm, conv, scan; Mamba-2's
 *     scan_heads and gated norm, Falcon-Mamba's weightless norm) on shapes
 *     with odd widths, and gives the same bits when run twice (scan_heads:
 *     also with 1 and 3 threads and cut into pieces);
 *   - RWKV-4's wkv and layernorm match a double-precision reference, and
 *     wkv / token_mix carry their state across calls to the bit;
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

/* Mamba-2's multi-head scan, its gated RMSNorm and Falcon-Mamba's weightless
 * norm: every SIMD set against the portable one on odd shapes (head_dim,
 * d_state and group widths off multiples of 8 and 16; n_groups > 1; a clamp
 * that bites), bit-stable run twice, with 1 and 3 threads, and cut in pieces. */
static const int64_t m2_shapes[][4] = {{6, 10, 9, 3}, {4, 64, 128, 1}, {3, 17, 20, 1}, {2, 5, 3, 2}}; /* H P N G */

static void scan_heads_pieces(const coil_backend_ops_t *S, int64_t T, int64_t H, int64_t P, int64_t N, int64_t G,
                              const float *x, const float *bc, const float *dtr, const float *dtb, float lo, float hi,
                              const float *A, const float *Ds, float *st, float *y, const int64_t *cut, int ncut)
{
    const int64_t ldx = H * P + 5, ldbc = 2 * G * N + 3, lddt = H + 2;
    for (int64_t t = 0, i = 0; t < T; i++) {
        int64_t n = cut[i % ncut] < T - t ? cut[i % ncut] : T - t;
        S->scan_heads(n, H, P, N, G, x + t * ldx, ldx, bc + t * ldbc, ldbc, dtr + t * lddt, lddt, dtb, lo, hi, A, Ds,
                      st, y + t * H * P);
        t += n;
    }
}

START_TEST(test_mamba2_ops_parity)
{
    const coil_backend_ops_t *P0 = coil_backend_cpu_portable();
    const int64_t H = m2_shapes[_i][0], P = m2_shapes[_i][1], N = m2_shapes[_i][2], G = m2_shapes[_i][3], T = 23;
    const int64_t D = H * P, ldx = D + 5, ldbc = 2 * G * N + 3, lddt = H + 2;
    const size_t nst = (size_t)(D * N), ny = (size_t)(T * D);
    float *x = rand_buf((size_t)(T * ldx), 2.0f), *bc = rand_buf((size_t)(T * ldbc), 1.0f),
          *dtr = rand_buf((size_t)(T * lddt), 3.0f), *dtb = rand_buf((size_t)H, 1.0f), *A = rand_buf((size_t)H, 1.0f),
          *Ds = rand_buf((size_t)H, 1.0f), *st0 = rand_buf(nst, 1.0f);
    for (int64_t h = 0; h < H; h++)
        A[h] = -fabsf(A[h]) * 4.0f - 0.01f;
    dtr[0] = 25.0f; /* softplus's threshold path */
    const float lo = 0.05f, hi = _i % 2 ? 1.5f : INFINITY;
    float *ya = malloc(ny * 4), *yb = malloc(ny * 4), *sa = malloc(nst * 4), *sb = malloc(nst * 4);
    memcpy(sa, st0, nst * 4);
    P0->scan_heads(T, H, P, N, G, x, ldx, bc, ldbc, dtr, lddt, dtb, lo, hi, A, Ds, sa, ya);
    /* gated norm input: the scan's output; z with a row stride */
    const int64_t ldz = D + 7, gs = D / G;
    float *z = rand_buf((size_t)(T * ldz), 3.0f), *w = rand_buf((size_t)D, 1.0f), *ga = malloc(ny * 4),
          *gb = malloc(ny * 4);
    memcpy(ga, ya, ny * 4);
    P0->rmsnorm_gated(ga, z, ldz, w, 1e-5f, gs, T, D);
    /* weightless norm on strided rows (Falcon-Mamba: dt_rank, then d_state columns) */
    const int64_t XD = P + 2 * N;
    float *wl0 = rand_buf((size_t)(T * XD), 3.0f), *wla = malloc((size_t)(T * XD) * 4),
          *wlb = malloc((size_t)(T * XD) * 4);
    memcpy(wla, wl0, (size_t)(T * XD) * 4);
    P0->rmsnorm_weightless(wla, XD, 1e-6f, T, P);
    P0->rmsnorm_weightless(wla + P, XD, 1e-6f, T, N);
    for (int k = COIL_KSET_PORTABLE; k <= COIL_KSET_AVX512; k++) {
        const coil_backend_ops_t *S = coil_backend_cpu_kernels((coil_kset_t)k);
        if (!S)
            continue;
        TWICE(k, yb, ny,
              (memcpy(sb, st0, nst * 4),
               S->scan_heads(T, H, P, N, G, x, ldx, bc, ldbc, dtr, lddt, dtb, lo, hi, A, Ds, sb, yb)));
        expect_close("scan_heads y", k, ya, yb, ny, 1e-5);
        expect_close("scan_heads state", k, sa, sb, nst, 1e-5);
        /* the same bits with 1 and 3 threads, and cut into pieces */
        float *yc = malloc(ny * 4), *sc = malloc(nst * 4);
        static const int64_t cut1[] = {1}, cut_odd[] = {3, 1, 11, 2, 5};
        for (int th = 1; th <= 3; th += 2)
            for (int c = 0; c < 2; c++) {
                S->set_threads(th);
                memcpy(sc, st0, nst * 4);
                scan_heads_pieces(S, T, H, P, N, G, x, bc, dtr, dtb, lo, hi, A, Ds, sc, yc, c ? cut_odd : cut1,
                                  c ? 5 : 1);
                ck_assert_msg(memcmp(yc, yb, ny * 4) == 0 && memcmp(sc, sb, nst * 4) == 0,
                              "scan_heads, set %s, %d threads, cut %d: bits differ from one call",
                              coil_kernels_name((coil_kset_t)k), th, c);
            }
        S->set_threads(0);
        free(yc);
        free(sc);
        TWICE(k, gb, ny, (memcpy(gb, ya, ny * 4), S->rmsnorm_gated(gb, z, ldz, w, 1e-5f, gs, T, D)));
        expect_close("rmsnorm_gated", k, ga, gb, ny, 1e-6);
        TWICE(k, wlb, (size_t)(T * XD),
              (memcpy(wlb, wl0, (size_t)(T * XD) * 4), S->rmsnorm_weightless(wlb, XD, 1e-6f, T, P),
               S->rmsnorm_weightless(wlb + P, XD, 1e-6f, T, N)));
        expect_close("rmsnorm_weightless", k, wla, wlb, (size_t)(T * XD), 1e-6);
    }
    free(x);
    free(bc);
    free(dtr);
    free(dtb);
    free(A);
    free(Ds);
    free(st0);
    free(ya);
    free(yb);
    free(sa);
    free(sb);
    free(z);
    free(w);
    free(ga);
    free(gb);
    free(wl0);
    free(wla);
    free(wlb);
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

/* RWKV-4's ops: wkv against a double-precision reference of the same
 * recurrence (keys past exp's float32 range, where only the max form
 * survives), one call equal to the bit to two calls carrying the state, the
 * same bits on 1 and 3 threads, each kernel set within 1e-6 of the portable
 * one (AVX2 wkv / sigmoid_mul_add); layernorm against double; the token shift
 * carried across calls. */
static double wkv_ref(int64_t T, int64_t A, const float *k, const float *v, const float *r, const float *w,
                      const float *u, int64_t t_out, int64_t a)
{
    /* sum over s <= t of e^(k_s + (t - 1 - s) w) v_s with e^(k_t + u) for s = t, normalised; in double
     * relative to the largest exponent */
    double mx = -1e300;
    for (int64_t s = 0; s <= t_out; s++) {
        double e = s == t_out ? (double)k[s * 3 * A + a] + u[a] : (double)k[s * 3 * A + a] + (double)(t_out - 1 - s) * w[a];
        mx = e > mx ? e : mx;
    }
    double num = 0, den = 0;
    for (int64_t s = 0; s <= t_out; s++) {
        double e = s == t_out ? (double)k[s * 3 * A + a] + u[a] : (double)k[s * 3 * A + a] + (double)(t_out - 1 - s) * w[a];
        num += exp(e - mx) * v[s * 3 * A + a];
        den += exp(e - mx);
    }
    (void)T;
    return 1.0 / (1.0 + exp(-(double)r[t_out * 3 * A + a])) * num / den;
}

START_TEST(test_rwkv_ops)
{
    const int64_t T = 300, A = 272, H = 272;
    float *kvr = rand_buf((size_t)(T * 3 * A), 1.0f), *w = rand_buf((size_t)A, 1.0f), *u = rand_buf((size_t)A, 1.0f);
    for (int64_t i = 0; i < T * 3 * A; i += 3 * A)
        for (int64_t a = 0; a < A; a++)
            kvr[i + a] *= 150.0f; /* keys to +-150: e^k overflows float32 */
    for (int64_t a = 0; a < A; a++)
        w[a] = -expf(3.0f * w[a]);
    float *st = malloc((size_t)(3 * A) * 4), *st2 = malloc((size_t)(3 * A) * 4), *y1 = malloc((size_t)(T * A) * 4),
          *y2 = malloc((size_t)(T * A) * 4);
    const coil_backend_ops_t *P = coil_backend_cpu_portable();
#define WKV_FRESH(s)                                                                                               \
    do {                                                                                                         \
        memset(s, 0, (size_t)(2 * A) * 4);                                                                       \
        for (int64_t a_ = 0; a_ < A; a_++)                                                                       \
            (s)[2 * A + a_] = -1e38f;                                                                            \
    } while (0)
    WKV_FRESH(st);
    P->set_threads(1);
    P->wkv(T, A, kvr, kvr + A, kvr + 2 * A, 3 * A, w, u, st, 0.5f, y1);
    double worst = 0;
    for (int64_t t = 0; t < T; t += 37)
        for (int64_t a = 0; a < A; a += 5) {
            double ref = 0.5 * wkv_ref(T, A, kvr, kvr + A, kvr + 2 * A, w, u, t, a);
            double d = fabs(ref - y1[t * A + a]);
            worst = d > worst ? d : worst;
        }
    fprintf(stderr, "kernels wkv vs double reference: max abs diff %.3g\n", worst);
    /* k + u and mx + w round at 150 to about 1e-5 in float32: that much, not more */
    ck_assert_msg(worst < 5e-5, "wkv off the double reference by %g", worst);
    /* two calls carrying the state = one call, to the bit */
    WKV_FRESH(st2);
    P->wkv(113, A, kvr, kvr + A, kvr + 2 * A, 3 * A, w, u, st2, 0.5f, y2);
    P->wkv(T - 113, A, kvr + 113 * 3 * A, kvr + 113 * 3 * A + A, kvr + 113 * 3 * A + 2 * A, 3 * A, w, u, st2, 0.5f,
           y2 + 113 * A);
    ck_assert_msg(memcmp(y1, y2, (size_t)(T * A) * 4) == 0 && memcmp(st, st2, (size_t)(3 * A) * 4) == 0,
                  "wkv in two calls differs from one");
    /* layernorm against double */
    float *x = rand_buf((size_t)(T * H), 4.0f), *g = rand_buf((size_t)H, 1.0f), *b = rand_buf((size_t)H, 1.0f);
    float *l1 = malloc((size_t)(T * H) * 4), *l2 = malloc((size_t)(T * H) * 4);
    for (int64_t i = 0; i < T * H; i++)
        x[i] += 3.0f; /* a mean far from 0 */
    P->layernorm(x, g, b, 1e-5f, l1, T, H);
    worst = 0;
    for (int64_t t = 0; t < T; t += 7) {
        double m = 0, var = 0;
        for (int64_t i = 0; i < H; i++)
            m += x[t * H + i];
        m /= (double)H;
        for (int64_t i = 0; i < H; i++)
            var += (x[t * H + i] - m) * (x[t * H + i] - m);
        var /= (double)H;
        for (int64_t i = 0; i < H; i++) {
            double d = fabs((x[t * H + i] - m) / sqrt(var + 1e-5) * g[i] + b[i] - l1[t * H + i]);
            worst = d > worst ? d : worst;
        }
    }
    ck_assert_msg(worst < 1e-5, "layernorm off the double reference by %g", worst);
    /* token shift: one call = two calls, the shift carried */
    float *sh1 = calloc((size_t)H, 4), *sh2 = calloc((size_t)H, 4), *o1 = malloc((size_t)(T * H) * 4),
          *o2 = malloc((size_t)(T * H) * 4);
    const float *mix[1] = {g};
    float *out1[1] = {o1}, *out2a[1] = {o2}, *out2b[1] = {o2 + 50 * H};
    P->token_mix(x, sh1, 1, mix, out1, T, H);
    P->token_mix(x, sh2, 1, mix, out2a, 50, H);
    P->token_mix(x + 50 * H, sh2, 1, mix, out2b, T - 50, H);
    ck_assert_msg(memcmp(o1, o2, (size_t)(T * H) * 4) == 0 && memcmp(sh1, sh2, (size_t)H * 4) == 0 &&
                  memcmp(sh1, x + (T - 1) * H, (size_t)H * 4) == 0, "token_mix in two calls differs from one");
    ck_assert(o1[0] == x[0] * g[0]); /* t = 0 mixes with the (zero) carried shift */
    /* every kernel set: close to the portable one (the same bits for the ops it shares), the
     * same bits on 1 and on 3 threads and in two calls carrying the state */
    float *y3 = malloc((size_t)(T * A) * 4), *st3 = malloc((size_t)(3 * A) * 4), *r3 = malloc((size_t)(T * H) * 4);
    float *acc1 = malloc((size_t)(T * H) * 4), *acc2 = malloc((size_t)(T * H) * 4);
    memcpy(acc1, b, (size_t)H * 4);
    for (int64_t i = H; i < T * H; i++)
        acc1[i] = x[i - H];
    P->sigmoid_mul_add(acc1, x, o1, T * H);
    for (int k = COIL_KSET_PORTABLE; k <= COIL_KSET_AVX512; k++) {
        const coil_backend_ops_t *S = coil_backend_cpu_kernels((coil_kset_t)k);
        if (!S)
            continue;
        S->set_threads(1);
        WKV_FRESH(st2);
        S->wkv(T, A, kvr, kvr + A, kvr + 2 * A, 3 * A, w, u, st2, 0.5f, y2);
        if (k == COIL_KSET_PORTABLE)
            ck_assert(memcmp(y1, y2, (size_t)(T * A) * 4) == 0 && memcmp(st, st2, (size_t)(3 * A) * 4) == 0);
        expect_close("wkv y", (coil_kset_t)k, y1, y2, (size_t)(T * A), 1e-6);
        expect_close("wkv state", (coil_kset_t)k, st, st2, (size_t)(2 * A), 1e-6);
        S->set_threads(3);
        WKV_FRESH(st3);
        S->wkv(T, A, kvr, kvr + A, kvr + 2 * A, 3 * A, w, u, st3, 0.5f, y3);
        ck_assert_msg(memcmp(y2, y3, (size_t)(T * A) * 4) == 0 && memcmp(st2, st3, (size_t)(3 * A) * 4) == 0,
                      "wkv, set %s: 1 and 3 threads differ", coil_kernels_name((coil_kset_t)k));
        WKV_FRESH(st3);
        S->wkv(113, A, kvr, kvr + A, kvr + 2 * A, 3 * A, w, u, st3, 0.5f, y3);
        S->wkv(T - 113, A, kvr + 113 * 3 * A, kvr + 113 * 3 * A + A, kvr + 113 * 3 * A + 2 * A, 3 * A, w, u, st3,
               0.5f, y3 + 113 * A);
        ck_assert_msg(memcmp(y2, y3, (size_t)(T * A) * 4) == 0 && memcmp(st2, st3, (size_t)(3 * A) * 4) == 0,
                      "wkv, set %s: two calls differ from one", coil_kernels_name((coil_kset_t)k));
        S->layernorm(x, g, b, 1e-5f, l2, T, H);
        ck_assert_msg(memcmp(l1, l2, (size_t)(T * H) * 4) == 0, "layernorm, set %s, 3 threads: other bits",
                      coil_kernels_name((coil_kset_t)k));
        memcpy(acc2, b, (size_t)H * 4);
        for (int64_t i = H; i < T * H; i++)
            acc2[i] = x[i - H];
        S->sigmoid_mul_add(acc2, x, o1, T * H - 3); /* a tail off 8 */
        acc2[T * H - 3] = acc1[T * H - 3], acc2[T * H - 2] = acc1[T * H - 2], acc2[T * H - 1] = acc1[T * H - 1];
        expect_close("sigmoid_mul_add", (coil_kset_t)k, acc1, acc2, (size_t)(T * H), 1e-6);
    }
    free(y3);
    free(st3);
    free(r3);
    free(acc1);
    free(acc2);
#undef WKV_FRESH
    coil_backend_cpu()->set_threads(0);
    free(kvr);
    free(w);
    free(u);
    free(st);
    free(st2);
    free(y1);
    free(y2);
    free(x);
    free(g);
    free(b);
    free(l1);
    free(l2);
    free(sh1);
    free(sh2);
    free(o1);
    free(o2);
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
    tcase_add_loop_test(tc, test_mamba2_ops_parity, 0, (int)(sizeof m2_shapes / sizeof m2_shapes[0]));
    tcase_add_test(tc, test_threads_same_bits);
    tcase_add_test(tc, test_rwkv_ops);
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
