/* cpu_rwkv_avx2.c -- AVX2 versions of RWKV-4's exp-bound ops (wkv,
 * sigmoid_mul_add), 8 channels at a time; compiled with -mavx2 -mfma -mf16c
 * into libcoil_avx2.a and called only from the AVX2 / AVX-512 kernel sets
 * (kernels/cpu_rwkv.c).  The products and sums are in the reference's order
 * with no fused multiply-add; exp is the Cephes polynomial of
 * kernels/cpu_avx2_math.h, shared with kernels/cpu_avx2.c (about 1 ulp; 0 below -87.3), so results agree with the
 * portable set to ~1e-7 and are bit-stable for this set.
 */
#include "cpu_rwkv.h"

#include <immintrin.h>

#include "cpu_avx2_math.h"

/* 1 / (1 + exp(-x)) */
static inline __m256 sigmoid256(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

void coil_avx2_wkv_group(int64_t T, int64_t A, int64_t a0, const float *k, const float *v, const float *r,
                         int64_t ld, const float *decay, const float *first, float *state, float scale, float *y)
{
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f), sc = _mm256_set1_ps(scale);
    const __m256 w = _mm256_loadu_ps(decay + a0), u = _mm256_loadu_ps(first + a0);
    __m256 num = _mm256_loadu_ps(state + a0), den = _mm256_loadu_ps(state + A + a0),
           mx = _mm256_loadu_ps(state + 2 * A + a0);
    for (int64_t t = 0; t < T; t++) {
        const __m256 kk = _mm256_loadu_ps(k + t * ld + a0), vv = _mm256_loadu_ps(v + t * ld + a0),
                     rr = _mm256_loadu_ps(r + t * ld + a0);
        /* q = max(mx, k + u): one of e^(mx - q), e^(k + u - q) is e^0 = 1, the other e^-|mx - k - u| */
        const __m256 ku = _mm256_add_ps(kk, u), big = _mm256_cmp_ps(mx, ku, _CMP_GT_OQ);
        __m256 es = exp256(_mm256_or_ps(_mm256_sub_ps(mx, ku), neg));
        __m256 e1 = _mm256_blendv_ps(es, one, big), e2 = _mm256_blendv_ps(one, es, big);
        const __m256 wkv = _mm256_div_ps(_mm256_add_ps(_mm256_mul_ps(e1, num), _mm256_mul_ps(e2, vv)),
                                         _mm256_add_ps(_mm256_mul_ps(e1, den), e2));
        _mm256_storeu_ps(y + t * A + a0, _mm256_mul_ps(_mm256_mul_ps(sigmoid256(rr), wkv), sc));
        /* q = max(mx + w, k) */
        const __m256 mw = _mm256_add_ps(mx, w), big2 = _mm256_cmp_ps(mw, kk, _CMP_GT_OQ);
        es = exp256(_mm256_or_ps(_mm256_sub_ps(mw, kk), neg));
        e1 = _mm256_blendv_ps(es, one, big2);
        e2 = _mm256_blendv_ps(one, es, big2);
        num = _mm256_add_ps(_mm256_mul_ps(e1, num), _mm256_mul_ps(e2, vv));
        den = _mm256_add_ps(_mm256_mul_ps(e1, den), e2);
        mx = _mm256_blendv_ps(kk, mw, big2);
    }
    _mm256_storeu_ps(state + a0, num);
    _mm256_storeu_ps(state + A + a0, den);
    _mm256_storeu_ps(state + 2 * A + a0, mx);
}

int64_t coil_avx2_sigmoid_mul_add(float *y, const float *r, const float *v, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 p = _mm256_mul_ps(sigmoid256(_mm256_loadu_ps(r + i)), _mm256_loadu_ps(v + i));
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), p));
    }
    return i;
}
