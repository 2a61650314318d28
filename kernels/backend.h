/* backend.h -- the compute backend interface the engine runs on.
 *
 * A backend is a table of operations on float32 activations.  The engine owns
 * the layer loop and the buffers; a backend supplies the math.  The CPU
 * backend (kernels/cpu.c) is always built and is the numerical reference; it
 * picks AVX2/FMA/F16C kernels (kernels/cpu_avx2.c) at run time when the CPU
 * has them, or the portable C ones (forced with COIL_KERNELS=portable).
 * The CUDA backend (--with-cuda) does not go through this table: per-op
 * host pointers would copy every activation across PCIe.  src/engine.c hands
 * the whole forward to kernels/cuda_engine.h (device-resident weights,
 * activations and state) when the backend is "cuda"; no file outside kernels/
 * includes a device header.
 *
 * Shapes are written (rows, cols), row-major; ld* are row strides in floats.
 * All ops are synchronous and may use the backend's threads internally.
 */
#ifndef COIL_BACKEND_H
#define COIL_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
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

    /* In place, rows of x(T, H) with row stride ldx: x / sqrt(mean(x^2) + eps)
     * (the weightless RMS norm Falcon-Mamba applies to dt, B and C). */
    void (*rmsnorm_weightless)(float *x, int64_t ldx, float eps, int64_t T, int64_t H);

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

    /* Mamba-2's multi-head selective scan with the D skip (reference:
     * transformers' Mamba2Mixer, recurrent form), sequential in t:
     *   dt  = clamp(softplus(dtr[t,h] + dt_bias[h]), dt_lo, dt_hi)
     *   h[h,p,n] = exp(dt * A[h]) * h[h,p,n] + dt * B[t,g,n] * x[t,h,p]
     *   y[t,h,p] = sum_n h[h,p,n] * C[t,g,n] + Dskip[h] * x[t,h,p]
     * with g = h / (H / G).  x: (T, H*P) stride ldx; B at bc[t*ldbc + g*N + n],
     * C at bc[t*ldbc + G*N + g*N + n]; dtr: (T, H) stride lddt; st: (H, P, N)
     * in/out; y: (T, H*P). */
    void (*scan_heads)(int64_t T, int64_t H, int64_t P, int64_t N, int64_t G, const float *x, int64_t ldx,
                       const float *bc, int64_t ldbc, const float *dtr, int64_t lddt, const float *dt_bias,
                       float dt_lo, float dt_hi, const float *A, const float *Dskip, float *st, float *y);

    /* Gated RMSNorm in groups (MambaRMSNormGated, gate before norm):
     *   v = y[t,:] * silu(z[t,:]);  per group of gs: v / sqrt(mean(v^2) + eps) * w
     * y: (T, D) in place; z: (T, D) stride ldz. */
    void (*rmsnorm_gated)(float *y, const float *z, int64_t ldz, const float *w, float eps, int64_t gs, int64_t T,
                          int64_t D);

    /* y(T, H) += x(T, H) */
    void (*add)(float *y, const float *x, int64_t n);

    /* ---- RWKV-4 (transformers' RwkvForCausalLM), float32 as modeling_rwkv.py ----
     * nn.LayerNorm: y = (x - mean) / sqrt(var + eps) * w + b, biased variance,
     * per row of x(T, H); y may be x. */
    void (*layernorm)(const float *x, const float *w, const float *b, float eps, float *y, int64_t T, int64_t H);

    /* Token shift and mix: prev = x[t-1], and the carried shift(H) for t = 0;
     *   out[j][t,i] = x[t,i] * mix[j][i] + prev[i] * (1 - mix[j][i]),  j < nmix
     * then shift := x[T-1].  x, out[j]: (T, H). */
    void (*token_mix)(const float *x, float *shift, int nmix, const float *const *mix, float *const *out,
                      int64_t T, int64_t H);

    /* Time mix (rwkv_linear_attention_cpu's numerically stable form) and the
     * receptance gate, per channel a with w = decay[a] (= -exp(time_decay)),
     * u = first[a] and the state (num, den, mx):
     *   q = max(mx, k+u);  wkv = (e^(mx-q) num + e^(k+u-q) v) / (e^(mx-q) den + e^(k+u-q))
     *   y[t,a] = sigmoid(r[t,a]) * wkv * scale
     *   q = max(mx+w, k);  num = e^(mx+w-q) num + e^(k-q) v;  den = e^(mx+w-q) den + e^(k-q);  mx = q
     * k, v, r: (T, A) with row stride ld; state: num | den | mx, 3 x A, in/out; y: (T, A). */
    void (*wkv)(int64_t T, int64_t A, const float *k, const float *v, const float *r, int64_t ld,
                const float *decay, const float *first, float *state, float scale, float *y);

    /* x(n) = relu(x)^2 * scale (the channel mix key) */
    void (*relu_sq)(float *x, int64_t n, float scale);
    /* y(n) += sigmoid(r) * v (the channel mix output into the residual) */
    void (*sigmoid_mul_add)(float *y, const float *r, const float *v, int64_t n);
    /* x(n) *= s */
    void (*scale)(float *x, int64_t n, float s);

    /* Threads the backend uses for the ops above. */
    void (*set_threads)(int n);
} coil_backend_ops_t;

/* ---- kernel sets ------------------------------------------------------------
 * coil's own kernels come in sets, chosen once per process: the best one that
 * this build compiled and the CPU (cpuid + OS register support) runs, or the
 * one COIL_KERNELS=portable|avx2|avx512 names (a set the CPU lacks is said on
 * stderr and not used).  Each set is bit-stable: same inputs, same threads,
 * same bits. */
typedef enum { COIL_KSET_PORTABLE = 0, COIL_KSET_AVX2 = 1, COIL_KSET_AVX512 = 2 } coil_kset_t;

/* The CPU backend with the chosen kernel set (coil_kernels_chosen()). */
const coil_backend_ops_t *coil_backend_cpu(void);
/* The portable-C CPU backend, whatever the CPU supports (tests compare both). */
const coil_backend_ops_t *coil_backend_cpu_portable(void);
/* The CPU backend with kernel set k, or NULL when this build or CPU lacks it. */
const coil_backend_ops_t *coil_backend_cpu_kernels(coil_kset_t k);

const char *coil_kernels_name(coil_kset_t k);          /* "portable", "avx2", "avx512" */
int coil_kernels_parse(const char *name, coil_kset_t *k); /* 0, or -1 for an unknown name */
bool coil_kernels_cpu_has(coil_kset_t k);  /* the CPU (and OS) runs it */
bool coil_kernels_built(coil_kset_t k);    /* this build compiled it */
bool coil_kernels_available(coil_kset_t k); /* both */
coil_kset_t coil_kernels_best(void);        /* the best available set */
coil_kset_t coil_kernels_chosen(void);      /* the set in use (COIL_KERNELS applied) */

/* What cpuid says (coil's own reading, not a library's). */
typedef struct coil_cpu_features {
    char vendor[13], brand[49];
    int family, model;
    bool os_avx, os_avx512; /* XGETBV: the OS saves the AVX / AVX-512 registers */
    bool avx, avx2, fma, f16c, avx512f, avx512dq, avx512bw, avx512vl, avx512_vnni, avx512_bf16, avx512_fp16, amx;
} coil_cpu_features_t;
const coil_cpu_features_t *coil_cpu_features(void);
const char *coil_cpu_features_string(void); /* "avx avx2 fma ... avx512f ..." */

/* ---- matrix library -----------------------------------------------------------
 * linear() runs its products through one library per process: oneDNN when the
 * build has it, else OpenBLAS; COIL_MATRIX=onednn|openblas forces one.  A
 * library whose kernel choice is below what the CPU runs is said once on
 * stderr (and OpenBLAS's is corrected where it can be). */
typedef enum { COIL_MATRIX_OPENBLAS = 0, COIL_MATRIX_ONEDNN = 1 } coil_matrix_lib_t;
typedef struct coil_matrix_info {
    const char *library; /* "oneDNN", "OpenBLAS" */
    char version[32];    /* "2.6.3" */
    char kernel[64];     /* the kernels it runs: "avx512_core_amx", "SkylakeX" */
    bool below;          /* its choice is below what the CPU runs */
    char note[320];      /* why, and what coil did about it ("" when fine) */
} coil_matrix_info_t;
coil_matrix_lib_t coil_matrix_active(void);
const char *coil_matrix_lib_name(coil_matrix_lib_t l); /* "onednn", "openblas" */
const char *coil_matrix_libs(void);                    /* the ones built, space-separated */
void coil_matrix_info(coil_matrix_lib_t l, coil_matrix_info_t *mi);
/* Switches the library for the whole process (benchmarks): 0, or -1 when the
 * build lacks it.  Not while another thread runs linear(). */
int coil_matrix_select(const char *name);
/* 0 when the active library can run here.  OpenBLAS maps a buffer of about
 * 128 MiB on its first product and, when a limit on the address space
 * (ulimit -v) refuses it, retries forever: with less than
 * COIL_OPENBLAS_ADDRESS_SPACE bytes of room it is not used -- oneDNN instead
 * when the build has it (said on stderr), else COIL_ENOMEM with err saying so. */
#define COIL_OPENBLAS_ADDRESS_SPACE ((size_t)256 << 20)
struct coil_err;
int coil_matrix_ready(struct coil_err *err);
/* Products the matrix library failed (oneDNN's sgemm returns a status: its
 * scratch allocation can fail under memory pressure, and then y is not
 * written), counted since the process started, over every thread.  The
 * engine compares it around each call and turns an increase into COIL_ENOMEM
 * instead of going on with garbage. */
uint64_t coil_matrix_failures(void);

/* Prints the lines `coil info` and the benchmarks show: CPU, features, kernel
 * set, matrix library with version and kernels, and any warning. */
void coil_backend_print_info(FILE *f);

/* BF16 weights through the CPU's BF16 dot products (AVX512_BF16 vdpbf16ps) in
 * the decode GEMV (T = 1) of the avx512 kernel set: x is rounded to BF16
 * first, so results are not those of the exact path (README: measured
 * accuracy and speed).  Off by default; COIL_BF16_DOT=1 turns it on where
 * available (this build, this CPU, kernel set avx512). */
bool coil_backend_bf16_dot_available(void);
bool coil_backend_bf16_dot(void);          /* in use */
void coil_backend_bf16_dot_set(bool on);   /* tests, benchmarks; on only where available */

/* Floats of scratch linear() needs for W (0 for F32). */
size_t coil_backend_linear_scratch(const coil_matrix_t *W);

#endif
