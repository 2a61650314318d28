/* cpu_avx2.c -- AVX2 + FMA + F16C kernels for the CPU backend.
 *
 * Compiled with -mavx2 -mfma -mf16c into its own library and called only after
 * __builtin_cpu_supports said yes (kernels/cpu.c).  The math functions follow
 * the Cephes single-precision polynomials (exp, log): about 1 ulp on the
 * ranges used here, so results agree with transformers' float32 to ~1e-7.
 */
#include "cpu_avx2_math.h"
#include "cpu_simd.h"

#include <immintrin.h>
#include <string.h>

/* log(x) for finite x > 0. */
static inline __m256 log256(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256i bits = _mm256_castps_si256(x);
    __m256i ei = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127));
    __m256 e = _mm256_add_ps(_mm256_cvtepi32_ps(ei), one);
    x = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(~0x7f800000)));
    x = _mm256_or_ps(x, _mm256_set1_ps(0.5f));
    __m256 mask = _mm256_cmp_ps(x, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
    __m256 tmp = _mm256_and_ps(x, mask);
    x = _mm256_sub_ps(x, one);
    e = _mm256_sub_ps(e, _mm256_and_ps(one, mask));
    x = _mm256_add_ps(x, tmp);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 y = _mm256_set1_ps(7.0376836292E-2f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(-1.1514610310E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.1676998740E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(-1.2420140846E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.4249322787E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(-1.6668057665E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(2.0000714765E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(-2.4999993993E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(3.3333331174E-1f));
    y = _mm256_mul_ps(_mm256_mul_ps(y, x), z);
    y = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), y);
    y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
    x = _mm256_add_ps(x, y);
    return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), x);
}

/* softplus(x) = x > 20 ? x : log1p(exp(x))  (torch's threshold).  log1p via
 * log(w) * e / (w - 1), w = 1 + e, exact when w rounds to 1. */
static inline __m256 softplus256(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp256(_mm256_min_ps(x, _mm256_set1_ps(20.0f)));
    __m256 w = _mm256_add_ps(one, e);
    __m256 wm1 = _mm256_sub_ps(w, one);
    __m256 is1 = _mm256_cmp_ps(wm1, _mm256_setzero_ps(), _CMP_EQ_OQ);
    __m256 safe = _mm256_blendv_ps(wm1, one, is1);
    __m256 r = _mm256_div_ps(_mm256_mul_ps(log256(w), e), safe);
    r = _mm256_blendv_ps(r, e, is1);
    return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, _mm256_set1_ps(20.0f), _CMP_GT_OQ));
}

/* x * sigmoid(x) = x / (1 + exp(-x)) */
static inline __m256 silu256(__m256 x)
{
    __m256 d = _mm256_add_ps(_mm256_set1_ps(1.0f), exp256(_mm256_sub_ps(_mm256_setzero_ps(), x)));
    return _mm256_div_ps(x, d);
}

#define SCAN_MAX_N 256

void coil_avx2_scan_group(int64_t T, int64_t D, int64_t N, int64_t d0, const float *u, const float *dt,
                          const float *A, const float *bc, int64_t ldbc, const float *Dskip, const float *z,
                          int64_t ldz, float *h, float *y)
{
    /* Channels d0..d0+7 in the 8 lanes; h and A transposed to (N, 8) in L1. */
    float hl[SCAN_MAX_N * 8] __attribute__((aligned(32)));
    float al[SCAN_MAX_N * 8] __attribute__((aligned(32)));
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < 8; j++) {
            hl[n * 8 + j] = h[(d0 + j) * N + n];
            al[n * 8 + j] = A[(d0 + j) * N + n];
        }
    const __m256 Dv = _mm256_loadu_ps(Dskip + d0);
    for (int64_t t = 0; t < T; t++) {
        const float *Bt = bc + t * ldbc, *Ct = Bt + N;
        __m256 delta = softplus256(_mm256_loadu_ps(dt + t * D + d0));
        __m256 uv = _mm256_loadu_ps(u + t * D + d0);
        __m256 du = _mm256_mul_ps(delta, uv);
        __m256 acc = _mm256_setzero_ps();
        for (int64_t n = 0; n < N; n++) {
            __m256 dA = exp256(_mm256_mul_ps(delta, _mm256_load_ps(al + n * 8)));
            __m256 hv = _mm256_fmadd_ps(dA, _mm256_load_ps(hl + n * 8), _mm256_mul_ps(du, _mm256_set1_ps(Bt[n])));
            _mm256_store_ps(hl + n * 8, hv);
            acc = _mm256_fmadd_ps(hv, _mm256_set1_ps(Ct[n]), acc);
        }
        __m256 out = _mm256_fmadd_ps(Dv, uv, acc);
        out = _mm256_mul_ps(out, silu256(_mm256_loadu_ps(z + t * ldz + d0)));
        _mm256_storeu_ps(y + t * D + d0, out);
    }
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < 8; j++)
            h[(d0 + j) * N + n] = hl[n * 8 + j];
}

void coil_avx2_conv_silu_rows(const float *const *rows, const float *w, const float *b, float *u, int64_t D,
                              int64_t K)
{
    /* rows[k] is the input row for tap k (oldest first); w is (D, K). */
    int64_t d = 0;
    for (; d + 8 <= D; d += 8) {
        __m256 acc = b ? _mm256_loadu_ps(b + d) : _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k++) {
            __m256 wk = _mm256_set_ps(w[(d + 7) * K + k], w[(d + 6) * K + k], w[(d + 5) * K + k],
                                      w[(d + 4) * K + k], w[(d + 3) * K + k], w[(d + 2) * K + k],
                                      w[(d + 1) * K + k], w[d * K + k]);
            acc = _mm256_fmadd_ps(wk, _mm256_loadu_ps(rows[k] + d), acc);
        }
        _mm256_storeu_ps(u + d, silu256(acc));
    }
    for (; d < D; d++) { /* tail, same math lane by lane */
        float lanes[8] __attribute__((aligned(32))) = {0};
        float acc = b ? b[d] : 0.0f;
        for (int64_t k = 0; k < K; k++)
            acc = __builtin_fmaf(w[d * K + k], rows[k][d], acc);
        lanes[0] = acc;
        _mm256_store_ps(lanes, silu256(_mm256_load_ps(lanes)));
        u[d] = lanes[0];
    }
}

void coil_avx2_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) {
        uint16_t tmp[8] = {0};
        tmp[0] = src[i];
        float out[8];
        _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)tmp)));
        dst[i] = out[0];
    }
}

void coil_avx2_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
    for (; i < n; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(dst + i, &bits, 4);
    }
}

static inline __m256 load8_half(const uint16_t *p, int is_bf16)
{
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    if (is_bf16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
    return _mm256_cvtph_ps(v);
}

/* is_bf16 is a constant in each of the two calls below: no test in the loop. */
static inline __attribute__((always_inline)) void gemv_half_rows(const uint16_t *W, int64_t K, const int is_bf16,
                                                                 const float *x, float *y, int64_t r0, int64_t r1)
{
    for (int64_t r = r0; r < r1; r++) {
        const uint16_t *row = W + r * K;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
               a3 = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 32 <= K; k += 32) {
            if (!(k & 32)) /* every 128 bytes */
                coil_prefetch128(row + k);
            a0 = _mm256_fmadd_ps(load8_half(row + k, is_bf16), _mm256_loadu_ps(x + k), a0);
            a1 = _mm256_fmadd_ps(load8_half(row + k + 8, is_bf16), _mm256_loadu_ps(x + k + 8), a1);
            a2 = _mm256_fmadd_ps(load8_half(row + k + 16, is_bf16), _mm256_loadu_ps(x + k + 16), a2);
            a3 = _mm256_fmadd_ps(load8_half(row + k + 24, is_bf16), _mm256_loadu_ps(x + k + 24), a3);
        }
        for (; k + 8 <= K; k += 8)
            a0 = _mm256_fmadd_ps(load8_half(row + k, is_bf16), _mm256_loadu_ps(x + k), a0);
        __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        q = _mm_add_ss(q, _mm_movehdup_ps(q));
        float acc = _mm_cvtss_f32(q);
        for (; k < K; k++) {
            float wv;
            if (is_bf16) {
                uint32_t bits = (uint32_t)row[k] << 16;
                memcpy(&wv, &bits, 4);
            } else {
                wv = _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16((short)row[k])));
            }
            acc += wv * x[k];
        }
        y[r] = acc;
    }
}

void coil_avx2_gemv_half(const uint16_t *W, int64_t K, int is_bf16, const float *x, float *y, int64_t r0,
                         int64_t r1)
{
    if (is_bf16)
        gemv_half_rows(W, K, 1, x, y, r0, r1);
    else
        gemv_half_rows(W, K, 0, x, y, r0, r1);
}

static inline float hsum256(__m256 s)
{
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

void coil_avx2_gemv_f32(const float *W, int64_t K, const float *x, float *y, int64_t r0, int64_t r1)
{
    /* One row at a time, four accumulators: a single sequential stream per
     * core reads at the machine's full bandwidth (measured: 38 GB/s on 2
     * cores, vs 30 GB/s for four interleaved row streams). */
    for (int64_t r = r0; r < r1; r++) {
        const float *w = W + r * K;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
               a3 = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 32 <= K; k += 32) {
            coil_prefetch128(w + k);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 8), _mm256_loadu_ps(x + k + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 16), _mm256_loadu_ps(x + k + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k + 24), _mm256_loadu_ps(x + k + 24), a3);
        }
        for (; k + 8 <= K; k += 8)
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + k), _mm256_loadu_ps(x + k), a0);
        float acc = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; k < K; k++)
            acc += w[k] * x[k];
        y[r] = acc;
    }
}

/* ---- Mamba-2 ---------------------------------------------------------------- */

/* Lanes i < left set (the last, partial vector of a row: masked loads read 0). */
static inline __m256i lanes_below(int64_t left)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left >= 8 ? 8 : (int)left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Four state rows at a time share the loads of B and C and keep four
 * independent accumulator chains; the last rows one at a time. */
void coil_avx2_scan_head(int64_t T, int64_t p0, int64_t p1, int64_t N, const float *x, int64_t ldx, const float *B,
                         const float *C, int64_t ldbc, const float *dtr, int64_t lddt, float dt_bias, float dt_lo,
                         float dt_hi, float A, float Dh, float *st, float *y, int64_t ldy)
{
    for (int64_t t = 0; t < T; t++) {
        float dA;
        const float dt = coil_m2_dt(dtr[t * lddt], dt_bias, dt_lo, dt_hi, A, &dA);
        const __m256 dAv = _mm256_set1_ps(dA);
        const float *Bt = B + t * ldbc, *Ct = C + t * ldbc, *xt = x + t * ldx;
        float *yt = y + t * ldy;
        int64_t p = p0;
        for (; p + 4 <= p1; p += 4) {
            const __m256 d0 = _mm256_set1_ps(dt * xt[p]), d1 = _mm256_set1_ps(dt * xt[p + 1]),
                         d2 = _mm256_set1_ps(dt * xt[p + 2]), d3 = _mm256_set1_ps(dt * xt[p + 3]);
            float *s0 = st + p * N, *s1 = s0 + N, *s2 = s1 + N, *s3 = s2 + N;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
                   a3 = _mm256_setzero_ps();
            for (int64_t n = 0; n < N; n += 8) {
                const __m256i m = lanes_below(N - n);
                const __m256 Bv = _mm256_maskload_ps(Bt + n, m), Cv = _mm256_maskload_ps(Ct + n, m);
                __m256 h0 = _mm256_fmadd_ps(_mm256_maskload_ps(s0 + n, m), dAv, _mm256_mul_ps(d0, Bv));
                __m256 h1 = _mm256_fmadd_ps(_mm256_maskload_ps(s1 + n, m), dAv, _mm256_mul_ps(d1, Bv));
                __m256 h2 = _mm256_fmadd_ps(_mm256_maskload_ps(s2 + n, m), dAv, _mm256_mul_ps(d2, Bv));
                __m256 h3 = _mm256_fmadd_ps(_mm256_maskload_ps(s3 + n, m), dAv, _mm256_mul_ps(d3, Bv));
                _mm256_maskstore_ps(s0 + n, m, h0);
                _mm256_maskstore_ps(s1 + n, m, h1);
                _mm256_maskstore_ps(s2 + n, m, h2);
                _mm256_maskstore_ps(s3 + n, m, h3);
                a0 = _mm256_fmadd_ps(h0, Cv, a0);
                a1 = _mm256_fmadd_ps(h1, Cv, a1);
                a2 = _mm256_fmadd_ps(h2, Cv, a2);
                a3 = _mm256_fmadd_ps(h3, Cv, a3);
            }
            yt[p] = hsum256(a0) + Dh * xt[p];
            yt[p + 1] = hsum256(a1) + Dh * xt[p + 1];
            yt[p + 2] = hsum256(a2) + Dh * xt[p + 2];
            yt[p + 3] = hsum256(a3) + Dh * xt[p + 3];
        }
        for (; p < p1; p++) {
            const __m256 d0 = _mm256_set1_ps(dt * xt[p]);
            float *s0 = st + p * N;
            __m256 a0 = _mm256_setzero_ps();
            for (int64_t n = 0; n < N; n += 8) {
                const __m256i m = lanes_below(N - n);
                const __m256 Bv = _mm256_maskload_ps(Bt + n, m), Cv = _mm256_maskload_ps(Ct + n, m);
                __m256 h0 = _mm256_fmadd_ps(_mm256_maskload_ps(s0 + n, m), dAv, _mm256_mul_ps(d0, Bv));
                _mm256_maskstore_ps(s0 + n, m, h0);
                a0 = _mm256_fmadd_ps(h0, Cv, a0);
            }
            yt[p] = hsum256(a0) + Dh * xt[p];
        }
    }
}

/* Sum of squares of v[0..n) in double, 8 at a time in two accumulators. */
static inline double sumsq256(const float *v, int64_t n)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (int64_t i = 0; i < n; i += 8) {
        __m256 a = _mm256_maskload_ps(v + i, lanes_below(n - i));
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(a)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
        s0 = _mm256_fmadd_pd(lo, lo, s0);
        s1 = _mm256_fmadd_pd(hi, hi, s1);
    }
    __m256d s = _mm256_add_pd(s0, s1);
    __m128d q = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
}

void coil_avx2_rmsnorm_gated_row(float *y, const float *z, const float *w, float eps, int64_t gs, int64_t D)
{
    for (int64_t i = 0; i < D; i += 8) {
        const __m256i m = lanes_below(D - i);
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(y + i, m), silu256(_mm256_maskload_ps(z + i, m)));
        _mm256_maskstore_ps(y + i, m, v);
    }
    for (int64_t g0 = 0; g0 < D; g0 += gs) {
        float *yg = y + g0;
        const __m256 r = _mm256_set1_ps(1.0f / sqrtf((float)(sumsq256(yg, gs) / (double)gs) + eps));
        for (int64_t i = 0; i < gs; i += 8) {
            const __m256i m = lanes_below(gs - i);
            __m256 v = _mm256_mul_ps(_mm256_maskload_ps(yg + i, m), r);
            _mm256_maskstore_ps(yg + i, m, _mm256_mul_ps(_mm256_maskload_ps(w + g0 + i, m), v));
        }
    }
}

void coil_avx2_rmsnorm_weightless_row(float *x, float eps, int64_t H)
{
    const __m256 r = _mm256_set1_ps(1.0f / sqrtf((float)(sumsq256(x, H) / (double)H) + eps));
    for (int64_t i = 0; i < H; i += 8) {
        const __m256i m = lanes_below(H - i);
        _mm256_maskstore_ps(x + i, m, _mm256_mul_ps(_mm256_maskload_ps(x + i, m), r));
    }
}
