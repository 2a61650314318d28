/* backend.h -- the compute backend interface the engine runs on.
 *
 * A backend is a table of operations on float32 activations.  The engine owns
 * the layer loop and the buffers; a backend supplies the math.  The CPU
 * backend (kernels/cpu.c) is always built and is the numerical reference; it
 * picks AVX2/FMA/F16C kernels (kernels/cpu_avx2.c) at run time when the CPU
 * has them, or the portable C ones (forced with COIL_KERNELS=portable).
 * A device backend implements the same table on device pointers; no file
 * outside kernels/ includes a device header.
 *
 * Shapes are written (rows, cols), row-major; ld* are row strides in floats.
 * All ops are synchronous and may use the backend's threads internally.
 */
#ifndef COIL_BACKEND_H
#define COIL_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

typedef struct coil_backend_ops {
    const char *name;

    /* y(T, W.rows) = x(T, W.cols) . W^T (+ bias).  W in F32/F16/BF16.
     * scratch: at least coil_backend_linear_scratch(W) floats, or NULL when
     * W is F32. */
    void (*linear)(const coil_matrix_t *W, const float *bias, const float *x, int64_t ldx, float *y,
                   int64_t ldy, int64_t T, float *scratch);

    /* y(T, H) = x / sqrt(mean(x^2) + eps) * w   (MambaRMSNorm, float32) */
    void (*rmsnorm)(const float *x, const float *w, float eps, float *y, int64_t T, int64_t H);

    /* Causal depthwise conv1d with carried state, then SiLU:
     *   u[t,d] = silu(b[d] + sum_k w[d,k] * xin[t-(K-1)+k, d])
     * where xin rows before 0 come from state (K-1, D), oldest first.
     * x: (T, D) with row stride ldx.  state is updated to the last K-1 rows
     * of [state; x].  b may be NULL. */
    void (*conv_silu)(const float *x, int64_t ldx, float *state, const float *w, const float *b, float *u,
                      int64_t T, int64_t D, int64_t K);

    /* Selective scan with the D skip and the SiLU(z) gate (reference:
     * transformers' mamba_selective_scan, sequential form):
     *   delta = softplus(dt[t,d])            (threshold 20, like F.softplus)
     *   h[d,n] = exp(delta * A[d,n]) * h[d,n] + delta * B[t,n] * u[t,d]
     *   y[t,d] = (sum_n h[d,n] * C[t,n] + Dskip[d] * u[t,d]) * silu(z[t,d])
     * u, dt, y: (T, D); bc: B at bc[t*ldbc + n], C at bc[t*ldbc + N + n];
     * z: (T, D) with stride ldz; h: (D, N) in/out. */
    void (*scan)(int64_t T, int64_t D, int64_t N, const float *u, const float *dt, const float *A,
                 const float *bc, int64_t ldbc, const float *Dskip, const float *z, int64_t ldz, float *h,
                 float *y);

    /* y(T, H) += x(T, H) */
    void (*add)(float *y, const float *x, int64_t n);

    /* Threads the backend uses for the ops above. */
    void (*set_threads)(int n);
} coil_backend_ops_t;

/* The CPU backend (portable or AVX2 kernels, chosen once at first call). */
const coil_backend_ops_t *coil_backend_cpu(void);
/* The portable-C CPU backend, whatever the CPU supports (tests compare both). */
const coil_backend_ops_t *coil_backend_cpu_portable(void);

/* Floats of scratch linear() needs for W (0 for F32). */
size_t coil_backend_linear_scratch(const coil_matrix_t *W);

#endif
