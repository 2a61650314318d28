/* cpu_avx2_math.h -- AVX2 + FMA vector math shared by the AVX2 kernel files
 * (kernels/cpu_avx2.c, kernels/cpu_rwkv_avx2.c): include only from code
 * compiled with -mavx2 -mfma.  One definition, so every AVX2 kernel rounds
 * exp the same way. */
#ifndef COIL_CPU_AVX2_MATH_H
#define COIL_CPU_AVX2_MATH_H

#include <immintrin.h>

/* exp(x), x clamped to [-88.38, 88.38]; underflows to 0 below ~-87.3. */
static inline __m256 exp256(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f));
    __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
    fx = _mm256_floor_ps(fx);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, z, x);
    y = _mm256_add_ps(y, one);
    __m256i n = _mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127));
    n = _mm256_max_epi32(n, _mm256_setzero_si256());
    __m256 pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(n, 23));
    return _mm256_mul_ps(y, pow2n);
}

#endif
