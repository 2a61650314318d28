/* cpu_avx512.c -- AVX-512 (F/DQ/BW/VL) kernels for the CPU backend.
 *
 * Compiled with -mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma
 * -mf16c into its own library and called only when cpuid (and XGETBV) say
 * the CPU and OS run them (kernels/cpu_info.c).  The same Cephes polynomials
 * as cpu_avx2.c, 16 lanes wide; tails use masked loads and stores, so every
 * element goes through the same math.  Reductions (rmsnorm, GEMV) sum in a
 * fixed order: bit-stable for this kernel set, not bit-equal to the others.
 */
#include "cpu_simd.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

static inline __m512 exp512(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    x = _mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f));
    x = _mm512_max_ps(x, _mm512_set1_ps(-88.3762626647949f));
    __m512 fx = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f));
    fx = _mm512_roundscale_ps(fx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 z = _mm512_mul_ps(x, x);
    __m512 y = _mm512_set1_ps(1.9875691500E-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507E-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073E-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894E-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459E-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201E-1f));
    y = _mm512_fmadd_ps(y, z, x);
    y = _mm512_add_ps(y, one);
    __m512i n = _mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127));
    n = _mm512_max_epi32(n, _mm512_setzero_si512());
    __m512 pow2n = _mm512_castsi512_ps(_mm512_slli_epi32(n, 23));
    return _mm512_mul_ps(y, pow2n);
}

static inline __m512 log512(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512i bits = _mm512_castps_si512(x);
    __m512i ei = _mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(127));
    __m512 e = _mm512_add_ps(_mm512_cvtepi32_ps(ei), one);
    x = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(~0x7f800000)));
    x = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(x), _mm512_castps_si512(_mm512_set1_ps(0.5f))));
    __mmask16 mask = _mm512_cmp_ps_mask(x, _mm512_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
    __m512 tmp = _mm512_maskz_mov_ps(mask, x);
    x = _mm512_sub_ps(x, one);
    e = _mm512_sub_ps(e, _mm512_maskz_mov_ps(mask, one));
    x = _mm512_add_ps(x, tmp);
    __m512 z = _mm512_mul_ps(x, x);
    __m512 y = _mm512_set1_ps(7.0376836292E-2f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(-1.1514610310E-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.1676998740E-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(-1.2420140846E-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.4249322787E-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(-1.6668057665E-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(2.0000714765E-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(-2.4999993993E-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(3.3333331174E-1f));
    y = _mm512_mul_ps(_mm512_mul_ps(y, x), z);
    y = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.12194440e-4f), y);
    y = _mm512_fnmadd_ps(z, _mm512_set1_ps(0.5f), y);
    x = _mm512_add_ps(x, y);
    return _mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), x);
}

static inline __m512 softplus512(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 e = exp512(_mm512_min_ps(x, _mm512_set1_ps(20.0f)));
    __m512 w = _mm512_add_ps(one, e);
    __m512 wm1 = _mm512_sub_ps(w, one);
    __mmask16 is1 = _mm512_cmp_ps_mask(wm1, _mm512_setzero_ps(), _CMP_EQ_OQ);
    __m512 safe = _mm512_mask_blend_ps(is1, wm1, one);
    __m512 r = _mm512_div_ps(_mm512_mul_ps(log512(w), e), safe);
    r = _mm512_mask_blend_ps(is1, r, e);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(20.0f), _CMP_GT_OQ), r, x);
}

static inline __m512 silu512(__m512 x)
{
    __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), exp512(_mm512_sub_ps(_mm512_setzero_ps(), x)));
    return _mm512_div_ps(x, d);
}

#define SCAN_MAX_N 256

void coil_avx512_scan_group(int64_t T, int64_t D, int64_t N, int64_t d0, const float *u, const float *dt,
                            const float *A, const float *bc, int64_t ldbc, const float *Dskip, const float *z,
                            int64_t ldz, float *h, float *y)
{
    /* Channels d0..d0+15 in the 16 lanes; h and A transposed to (N, 16). */
    float hl[SCAN_MAX_N * 16] __attribute__((aligned(64)));
    float al[SCAN_MAX_N * 16] __attribute__((aligned(64)));
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < 16; j++) {
            hl[n * 16 + j] = h[(d0 + j) * N + n];
            al[n * 16 + j] = A[(d0 + j) * N + n];
        }
    const __m512 Dv = _mm512_loadu_ps(Dskip + d0);
    for (int64_t t = 0; t < T; t++) {
        const float *Bt = bc + t * ldbc, *Ct = Bt + N;
        __m512 delta = softplus512(_mm512_loadu_ps(dt + t * D + d0));
        __m512 uv = _mm512_loadu_ps(u + t * D + d0);
        __m512 du = _mm512_mul_ps(delta, uv);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t n = 0; n < N; n++) {
            __m512 dA = exp512(_mm512_mul_ps(delta, _mm512_load_ps(al + n * 16)));
            __m512 hv = _mm512_fmadd_ps(dA, _mm512_load_ps(hl + n * 16), _mm512_mul_ps(du, _mm512_set1_ps(Bt[n])));
            _mm512_store_ps(hl + n * 16, hv);
            acc = _mm512_fmadd_ps(hv, _mm512_set1_ps(Ct[n]), acc);
        }
        __m512 out = _mm512_fmadd_ps(Dv, uv, acc);
        out = _mm512_mul_ps(out, silu512(_mm512_loadu_ps(z + t * ldz + d0)));
        _mm512_storeu_ps(y + t * D + d0, out);
    }
    for (int64_t n = 0; n < N; n++)
        for (int j = 0; j < 16; j++)
            h[(d0 + j) * N + n] = hl[n * 16 + j];
}

void coil_avx512_conv_silu_rows(const float *const *rows, const float *w, const float *b, float *u, int64_t D,
                                int64_t K)
{
    /* rows[k] is the input row for tap k (oldest first); w is (D, K). */
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i idx0 = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)K));
    for (int64_t d = 0; d < D; d += 16) {
        const __mmask16 m = D - d >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (D - d)) - 1);
        __m512 acc = b ? _mm512_maskz_loadu_ps(m, b + d) : _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k++) {
            __m512 wk = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx0, w + d * K + k, 4);
            acc = _mm512_fmadd_ps(wk, _mm512_maskz_loadu_ps(m, rows[k] + d), acc);
        }
        _mm512_mask_storeu_ps(u + d, m, silu512(acc));
    }
}

static inline __mmask16 tail_mask(int64_t left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

void coil_avx512_gemv_f32(const float *W, int64_t K, const float *x, float *y, int64_t r0, int64_t r1)
{
    for (int64_t r = r0; r < r1; r++) {
        const float *w = W + r * K;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
               a3 = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 64 <= K; k += 64) {
            coil_prefetch128(w + k);
            coil_prefetch128(w + k + 32);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(x + k), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 16), _mm512_loadu_ps(x + k + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 32), _mm512_loadu_ps(x + k + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 48), _mm512_loadu_ps(x + k + 48), a3);
        }
        for (; k < K; k += 16) {
            const __mmask16 m = tail_mask(K - k);
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + k), _mm512_maskz_loadu_ps(m, x + k), a0);
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
}

static inline __m512 load16_half(const uint16_t *p, __mmask16 m, int is_bf16)
{
    __m256i v = _mm256_maskz_loadu_epi16(m, p);
    if (is_bf16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
    return _mm512_cvtph_ps(v);
}

/* is_bf16 is a constant in each of the two calls below: no test in the loop. */
static inline __attribute__((always_inline)) void gemv_half_rows(const uint16_t *W, int64_t K, const int is_bf16,
                                                                 const float *x, float *y, int64_t r0, int64_t r1)
{
    const __mmask16 all = 0xffff;
    for (int64_t r = r0; r < r1; r++) {
        const uint16_t *row = W + r * K;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
               a3 = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 64 <= K; k += 64) {
            coil_prefetch128(row + k);
            a0 = _mm512_fmadd_ps(load16_half(row + k, all, is_bf16), _mm512_loadu_ps(x + k), a0);
            a1 = _mm512_fmadd_ps(load16_half(row + k + 16, all, is_bf16), _mm512_loadu_ps(x + k + 16), a1);
            a2 = _mm512_fmadd_ps(load16_half(row + k + 32, all, is_bf16), _mm512_loadu_ps(x + k + 32), a2);
            a3 = _mm512_fmadd_ps(load16_half(row + k + 48, all, is_bf16), _mm512_loadu_ps(x + k + 48), a3);
        }
        for (; k < K; k += 16) {
            const __mmask16 m = tail_mask(K - k);
            a0 = _mm512_fmadd_ps(load16_half(row + k, m, is_bf16), _mm512_maskz_loadu_ps(m, x + k), a0);
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
}

void coil_avx512_gemv_half(const uint16_t *W, int64_t K, int is_bf16, const float *x, float *y, int64_t r0,
                           int64_t r1)
{
    if (is_bf16)
        gemv_half_rows(W, K, 1, x, y, r0, r1);
    else
        gemv_half_rows(W, K, 0, x, y, r0, r1);
}

#ifdef COIL_HAVE_BF16_DOT
__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) void
coil_avx512_gemv_bf16_dot(const uint16_t *W, int64_t K, const float *x, float *y, int64_t r0, int64_t r1)
{
    for (int64_t r = r0; r < r1; r++) {
        const uint16_t *row = W + r * K;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 64 <= K; k += 64) {
            coil_prefetch128(row + k);
            /* element i of x0 is x[k + i]: the low half from the second operand */
            __m512bh x0 = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(x + k));
            __m512bh x1 = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 48), _mm512_loadu_ps(x + k + 32));
            a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(row + k), x0);
            a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(row + k + 32), x1);
        }
        for (; k < K; k += 32) {
            const int64_t left = K - k;
            const __mmask32 m = left >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << left) - 1);
            __m512bh xv = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(tail_mask(left - 16 > 0 ? left - 16 : 0), x + k + 16),
                                              _mm512_maskz_loadu_ps(tail_mask(left), x + k));
            a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_maskz_loadu_epi16(m, row + k), xv);
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    }
}
#endif

void coil_avx512_rmsnorm_row(const float *x, const float *w, float eps, float *y, int64_t H)
{
    /* Sum of squares in double like the portable kernel (a float product is
     * exact in double), 16 at a time in two 8-double accumulators. */
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int64_t i = 0; i < H; i += 16) {
        __m512 v = _mm512_maskz_loadu_ps(tail_mask(H - i), x + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v)), hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
        s0 = _mm512_fmadd_pd(lo, lo, s0);
        s1 = _mm512_fmadd_pd(hi, hi, s1);
    }
    double ss = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    const __m512 r = _mm512_set1_ps(1.0f / sqrtf((float)(ss / (double)H) + eps));
    for (int64_t i = 0; i < H; i += 16) {
        const __mmask16 m = tail_mask(H - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), r);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + i), v));
    }
}

/* ---- Mamba-2 ---------------------------------------------------------------- */

/* Four state rows at a time share the loads of B and C and keep four
 * independent accumulator chains; the last rows one at a time. */
void coil_avx512_scan_head(int64_t T, int64_t p0, int64_t p1, int64_t N, const float *x, int64_t ldx, const float *B,
                           const float *C, int64_t ldbc, const float *dtr, int64_t lddt, float dt_bias, float dt_lo,
                           float dt_hi, float A, float Dh, float *st, float *y, int64_t ldy)
{
    for (int64_t t = 0; t < T; t++) {
        float dA;
        const float dt = coil_m2_dt(dtr[t * lddt], dt_bias, dt_lo, dt_hi, A, &dA);
        const __m512 dAv = _mm512_set1_ps(dA);
        const float *Bt = B + t * ldbc, *Ct = C + t * ldbc, *xt = x + t * ldx;
        float *yt = y + t * ldy;
        int64_t p = p0;
        for (; p + 4 <= p1; p += 4) {
            const __m512 d0 = _mm512_set1_ps(dt * xt[p]), d1 = _mm512_set1_ps(dt * xt[p + 1]),
                         d2 = _mm512_set1_ps(dt * xt[p + 2]), d3 = _mm512_set1_ps(dt * xt[p + 3]);
            float *s0 = st + p * N, *s1 = s0 + N, *s2 = s1 + N, *s3 = s2 + N;
            __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
                   a3 = _mm512_setzero_ps();
            for (int64_t n = 0; n < N; n += 16) {
                const __mmask16 m = tail_mask(N - n);
                const __m512 Bv = _mm512_maskz_loadu_ps(m, Bt + n), Cv = _mm512_maskz_loadu_ps(m, Ct + n);
                __m512 h0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, s0 + n), dAv, _mm512_mul_ps(d0, Bv));
                __m512 h1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, s1 + n), dAv, _mm512_mul_ps(d1, Bv));
                __m512 h2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, s2 + n), dAv, _mm512_mul_ps(d2, Bv));
                __m512 h3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, s3 + n), dAv, _mm512_mul_ps(d3, Bv));
                _mm512_mask_storeu_ps(s0 + n, m, h0);
                _mm512_mask_storeu_ps(s1 + n, m, h1);
                _mm512_mask_storeu_ps(s2 + n, m, h2);
                _mm512_mask_storeu_ps(s3 + n, m, h3);
                a0 = _mm512_fmadd_ps(h0, Cv, a0);
                a1 = _mm512_fmadd_ps(h1, Cv, a1);
                a2 = _mm512_fmadd_ps(h2, Cv, a2);
                a3 = _mm512_fmadd_ps(h3, Cv, a3);
            }
            yt[p] = _mm512_reduce_add_ps(a0) + Dh * xt[p];
            yt[p + 1] = _mm512_reduce_add_ps(a1) + Dh * xt[p + 1];
            yt[p + 2] = _mm512_reduce_add_ps(a2) + Dh * xt[p + 2];
            yt[p + 3] = _mm512_reduce_add_ps(a3) + Dh * xt[p + 3];
        }
        for (; p < p1; p++) {
            const __m512 d0 = _mm512_set1_ps(dt * xt[p]);
            float *s0 = st + p * N;
            __m512 a0 = _mm512_setzero_ps();
            for (int64_t n = 0; n < N; n += 16) {
                const __mmask16 m = tail_mask(N - n);
                const __m512 Bv = _mm512_maskz_loadu_ps(m, Bt + n), Cv = _mm512_maskz_loadu_ps(m, Ct + n);
                __m512 h0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, s0 + n), dAv, _mm512_mul_ps(d0, Bv));
                _mm512_mask_storeu_ps(s0 + n, m, h0);
                a0 = _mm512_fmadd_ps(h0, Cv, a0);
            }
            yt[p] = _mm512_reduce_add_ps(a0) + Dh * xt[p];
        }
    }
}

/* Sum of squares of v[0..n) in double, 16 at a time in two accumulators. */
static inline double sumsq512(const float *v, int64_t n)
{
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 16) {
        __m512 a = _mm512_maskz_loadu_ps(tail_mask(n - i), v + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(a)), hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1));
        s0 = _mm512_fmadd_pd(lo, lo, s0);
        s1 = _mm512_fmadd_pd(hi, hi, s1);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

void coil_avx512_rmsnorm_gated_row(float *y, const float *z, const float *w, float eps, int64_t gs, int64_t D)
{
    for (int64_t i = 0; i < D; i += 16) {
        const __mmask16 m = tail_mask(D - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), silu512(_mm512_maskz_loadu_ps(m, z + i)));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
    for (int64_t g0 = 0; g0 < D; g0 += gs) {
        float *yg = y + g0;
        const __m512 r = _mm512_set1_ps(1.0f / sqrtf((float)(sumsq512(yg, gs) / (double)gs) + eps));
        for (int64_t i = 0; i < gs; i += 16) {
            const __mmask16 m = tail_mask(gs - i);
            __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, yg + i), r);
            _mm512_mask_storeu_ps(yg + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + g0 + i), v));
        }
    }
}

void coil_avx512_rmsnorm_weightless_row(float *x, float eps, int64_t H)
{
    const __m512 r = _mm512_set1_ps(1.0f / sqrtf((float)(sumsq512(x, H) / (double)H) + eps));
    for (int64_t i = 0; i < H; i += 16) {
        const __mmask16 m = tail_mask(H - i);
        _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), r));
    }
}
