/* cpu_rwkv.h -- internal to kernels/: RWKV-4's CPU kernels (kernels/cpu_rwkv.c),
 * the contracts of the backend ops of the same names (kernels/backend.h). */
#ifndef COIL_CPU_RWKV_H
#define COIL_CPU_RWKV_H

#include <stdint.h>

void coil_cpu_layernorm(const float *x, const float *w, const float *b, float eps, float *y, int64_t T, int64_t H);
void coil_cpu_token_mix(const float *x, float *shift, int nmix, const float *const *mix, float *const *out,
                        int64_t T, int64_t H);
void coil_cpu_wkv(int64_t T, int64_t A, const float *k, const float *v, const float *r, int64_t ld,
                  const float *decay, const float *first, float *state, float scale, float *y);
void coil_cpu_relu_sq(float *x, int64_t n, float scale);
void coil_cpu_sigmoid_mul_add(float *y, const float *r, const float *v, int64_t n);
void coil_cpu_scale(float *x, int64_t n, float s);

/* The AVX2 / AVX-512 sets' versions (the AVX2 code of kernels/cpu_rwkv_avx2.c
 * where the build has it, else the portable one). */
void coil_cpu_wkv_avx2(int64_t T, int64_t A, const float *k, const float *v, const float *r, int64_t ld,
                       const float *decay, const float *first, float *state, float scale, float *y);
void coil_cpu_sigmoid_mul_add_avx2(float *y, const float *r, const float *v, int64_t n);

/* kernels/cpu_rwkv_avx2.c: channels a0 .. a0 + 7 of wkv over all T (state: num | den | max,
 * 3 x A); y[0, n) += sigmoid(r) * v for the largest multiple of 8 <= n, returned. */
void coil_avx2_wkv_group(int64_t T, int64_t A, int64_t a0, const float *k, const float *v, const float *r,
                         int64_t ld, const float *decay, const float *first, float *state, float scale, float *y);
int64_t coil_avx2_sigmoid_mul_add(float *y, const float *r, const float *v, int64_t n);

#endif
