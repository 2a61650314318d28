/* cpu_simd.h -- internal: the AVX2 (kernels/cpu_avx2.c) and AVX-512
 * (kernels/cpu_avx512.c) kernel entry points. */
#ifndef COIL_CPU_SIMD_H
#define COIL_CPU_SIMD_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* Mamba-2's step size for one (t, head): clamp(softplus(raw + bias), lo, hi)
 * (F.softplus, threshold 20), and *dA = exp(dt * A).  Scalar libm math, the
 * same in every kernel set. */
static inline float coil_m2_dt(float raw, float bias, float lo, float hi, float A, float *dA)
{
    float v = raw + bias;
    float dt = v > 20.0f ? v : log1pf(expf(v));
    dt = dt < lo ? lo : dt > hi ? hi : dt;
    *dA = expf(dt * A);
    return dt;
}

/* Software prefetch for the decode GEMVs, which read every weight once per
 * token from memory: for each 128 bytes a GEMV consumes, the two lines
 * COIL_PF_L1 bytes ahead into L1 and the two COIL_PF_L2 bytes ahead into L2
 * (across row ends: W's rows are contiguous).  Measured on one core of the
 * Xeon of README's Performance section, a 77 MB F16 matrix, thread CPU time,
 * best of 12: 9.9-11.0 GB/s without, 11.8-15.0 with (a plain read: 15-16.7).
 * A prefetch never faults and never changes a result.  Addresses are formed
 * as integers: they may lie past the end of W. */
#define COIL_PF_L1 2048
#define COIL_PF_L2 16384
static inline void coil_prefetch128(const void *p)
{
    const uintptr_t a = (uintptr_t)p;
    __builtin_prefetch((const void *)(a + COIL_PF_L1), 0, 3);
    __builtin_prefetch((const void *)(a + COIL_PF_L1 + 64), 0, 3);
    __builtin_prefetch((const void *)(a + COIL_PF_L2), 0, 2);
    __builtin_prefetch((const void *)(a + COIL_PF_L2 + 64), 0, 2);
}

void coil_avx2_scan_group(int64_t T, int64_t D, int64_t N, int64_t d0, const float *u, const float *dt,
                          const float *A, const float *bc, int64_t ldbc, const float *Dskip, const float *z,
                          int64_t ldz, float *h, float *y);
void coil_avx2_conv_silu_rows(const float *const *rows, const float *w, const float *b, float *u, int64_t D,
                              int64_t K);
void coil_avx2_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void coil_avx2_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/* y[r] = dot(W[r, :], x) for r in [r0, r1); W F16 (is_bf16 = 0) or BF16. */
/* y[r] = dot(W[r, :], x) for r in [r0, r1), W float32 (K columns). */
void coil_avx2_gemv_f32(const float *W, int64_t K, const float *x, float *y, int64_t r0, int64_t r1);
void coil_avx2_gemv_half(const uint16_t *W, int64_t K, int is_bf16, const float *x, float *y, int64_t r0,
                         int64_t r1);

/* Mamba-2's scan for rows p0..p1 of one head (backend.h: scan_heads), sequential in t:
 * x, y: that head's columns (x[t*ldx + p], y[t*ldy + p]); B, C: its group's (B[t*ldbc + n]);
 * dtr[t*lddt]: its raw dt; st: its (P, N) state.  dt, its clamp and exp(dt A) are the
 * scalar libm math of every kernel set; the state rows run n in vectors. */
void coil_avx2_scan_head(int64_t T, int64_t p0, int64_t p1, int64_t N, const float *x, int64_t ldx, const float *B,
                         const float *C, int64_t ldbc, const float *dtr, int64_t lddt, float dt_bias, float dt_lo,
                         float dt_hi, float A, float Dh, float *st, float *y, int64_t ldy);
/* One row of MambaRMSNormGated: y = y * silu(z), then per group of gs
 * y / sqrt(mean(y^2) + eps) * w (sum of squares in double). */
void coil_avx2_rmsnorm_gated_row(float *y, const float *z, const float *w, float eps, int64_t gs, int64_t D);
/* In place: x / sqrt(mean(x^2) + eps) (Falcon-Mamba's weightless norm; double sum). */
void coil_avx2_rmsnorm_weightless_row(float *x, float eps, int64_t H);

/* AVX-512: the same contracts, 16 channels / lanes at a time. */
void coil_avx512_scan_head(int64_t T, int64_t p0, int64_t p1, int64_t N, const float *x, int64_t ldx, const float *B,
                           const float *C, int64_t ldbc, const float *dtr, int64_t lddt, float dt_bias, float dt_lo,
                           float dt_hi, float A, float Dh, float *st, float *y, int64_t ldy);
void coil_avx512_rmsnorm_gated_row(float *y, const float *z, const float *w, float eps, int64_t gs, int64_t D);
void coil_avx512_rmsnorm_weightless_row(float *x, float eps, int64_t H);
void coil_avx512_scan_group(int64_t T, int64_t D, int64_t N, int64_t d0, const float *u, const float *dt,
                            const float *A, const float *bc, int64_t ldbc, const float *Dskip, const float *z,
                            int64_t ldz, float *h, float *y);
void coil_avx512_conv_silu_rows(const float *const *rows, const float *w, const float *b, float *u, int64_t D,
                                int64_t K);
void coil_avx512_gemv_f32(const float *W, int64_t K, const float *x, float *y, int64_t r0, int64_t r1);
void coil_avx512_gemv_half(const uint16_t *W, int64_t K, int is_bf16, const float *x, float *y, int64_t r0,
                           int64_t r1);
/* BF16 weights with the CPU's BF16 dot products (AVX512_BF16, vdpbf16ps):
 * x is rounded to BF16 (nearest even), pairs of products summed in float32.
 * Only where cpuid says avx512_bf16; not the bits of coil_avx512_gemv_half. */
#if defined(__clang__) ? __clang_major__ >= 9 : (defined(__GNUC__) && __GNUC__ >= 10)
#define COIL_HAVE_BF16_DOT 1
void coil_avx512_gemv_bf16_dot(const uint16_t *W, int64_t K, const float *x, float *y, int64_t r0, int64_t r1);
#endif
/* One row of MambaRMSNorm: y = x / sqrt(mean(x^2) + eps) * w. */
void coil_avx512_rmsnorm_row(const float *x, const float *w, float eps, float *y, int64_t H);

#endif
