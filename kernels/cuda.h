/* cuda.h -- the CUDA backend's C interface (kernels/cuda_runtime.cu,
 * kernels/cuda_kernels.cu; built with ./configure --with-cuda).
 *
 * Opaque handles, return codes and coil_err_t messages like the rest of coil;
 * no CUDA header leaks out of kernels/.  A context owns one device, its main
 * stream (every kernel and matrix product is enqueued there, in order), a
 * side stream for checkpoint downloads and a cuBLAS handle.
 *
 * Errors: no device (no driver, no GPU, or an index past the last one) is
 * COIL_ENOTFOUND with "no CUDA device" and the runtime's reason; out of device
 * memory is COIL_ENOMEM naming what was asked, how much, and what is free --
 * the context stays usable and nothing it held is lost.  Kernel launches are
 * asynchronous: a fault inside a kernel is reported by the next
 * coil_cuda_sync() (COIL_EIO with the runtime's message).
 *
 * Device pointers below are coil_cuda_ptr(buf) plus byte offsets; shapes and
 * the batch layout (nseq sequences of T tokens, rows s*T + t) are those of
 * kernels/cuda_plan.h and, per sequence, exactly those of the CPU backend's
 * ops in kernels/backend.h (same formulas, float32).
 */
#ifndef COIL_CUDA_H
#define COIL_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_plan.h"
#include "error.h"
#include "safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_cuda coil_cuda_t;           /* a device context */
typedef struct coil_cuda_buf coil_cuda_buf_t;   /* device memory */
typedef struct coil_cuda_ckpt coil_cuda_ckpt_t; /* an asynchronous download into pinned memory */

/* Usable devices: 0 and *n > 0, or COIL_ENOTFOUND ("no CUDA device: ...") */
int coil_cuda_device_count(int *n, coil_err_t *err);

/* Opens device `device` (0-based). */
coil_cuda_t *coil_cuda_open(int device, coil_err_t *err);
void coil_cuda_close(coil_cuda_t **c);
const char *coil_cuda_device_name(const coil_cuda_t *c);
int coil_cuda_sm_count(const coil_cuda_t *c);
int coil_cuda_mem_info(coil_cuda_t *c, size_t *free_bytes, size_t *total_bytes, coil_err_t *err);
/* Matrix-product arithmetic for coil_cuda_linear (default F32). */
void coil_cuda_set_math(coil_cuda_t *c, coil_cuda_math_t m);
coil_cuda_math_t coil_cuda_get_math(const coil_cuda_t *c);

/* ---- memory ------------------------------------------------------------- */

/* bytes of device memory; `what` names it in the out-of-memory message. */
coil_cuda_buf_t *coil_cuda_alloc(coil_cuda_t *c, size_t bytes, const char *what, coil_err_t *err);
void coil_cuda_free(coil_cuda_buf_t **b);
void *coil_cuda_ptr(const coil_cuda_buf_t *b);
size_t coil_cuda_size(const coil_cuda_buf_t *b);

/* Host -> device at dst+off (returns when src may be reused); device ->
 * host (returns when the bytes are there, after all work queued before).
 * COIL_EINVAL if off + bytes is past the buffer. */
int coil_cuda_upload(coil_cuda_t *c, coil_cuda_buf_t *dst, size_t off, const void *src, size_t bytes,
                     coil_err_t *err);
int coil_cuda_download(coil_cuda_t *c, void *dst, const coil_cuda_buf_t *src, size_t off, size_t bytes,
                       coil_err_t *err);
/* Device-to-device on the main stream, in order with the kernels. */
int coil_cuda_copy(coil_cuda_t *c, coil_cuda_buf_t *dst, size_t doff, const coil_cuda_buf_t *src, size_t soff,
                   size_t bytes, coil_err_t *err);
/* Zeroes dst[off, off+bytes) on the main stream. */
int coil_cuda_zero(coil_cuda_t *c, coil_cuda_buf_t *dst, size_t off, size_t bytes, coil_err_t *err);
/* Waits for everything queued on the main stream; reports kernel faults. */
int coil_cuda_sync(coil_cuda_t *c, coil_err_t *err);

/* Page-locked host memory (fast, asynchronous copies); free with coil_cuda_host_free. */
void *coil_cuda_host_alloc(coil_cuda_t *c, size_t bytes, coil_err_t *err);
void coil_cuda_host_free(void *p);

/* Checkpoints without stalling the main stream: _start snapshots
 * src[off, off+bytes) on the main stream (a device copy, in order with the
 * kernels before it), then the side stream downloads the snapshot into pinned
 * memory while later kernels run; _wait returns the host copy.  A _start
 * while a previous download of the same ckpt is in flight waits for it
 * first (on the device, not the host). */
coil_cuda_ckpt_t *coil_cuda_ckpt_new(coil_cuda_t *c, size_t bytes, coil_err_t *err);
void coil_cuda_ckpt_free(coil_cuda_ckpt_t **k);
int coil_cuda_ckpt_start(coil_cuda_t *c, coil_cuda_ckpt_t *k, const coil_cuda_buf_t *src, size_t off, size_t bytes,
                         coil_err_t *err);
/* *host: the pinned bytes, valid until the next _start or _free. */
int coil_cuda_ckpt_wait(coil_cuda_t *c, coil_cuda_ckpt_t *k, const void **host, size_t *bytes, coil_err_t *err);

/* ---- kernels (enqueued on the main stream) -------------------------------- */

/* out(n, H) float32 = emb[ids[i]] (emb: (vocab, H) in F32, F16 or BF16).
 * ids are device int32 and must be valid (the engine checks them). */
int coil_cuda_embed(coil_cuda_t *c, coil_dtype_t dtype, const void *emb, int64_t H, const int32_t *ids, int64_t n,
                    float *out, coil_err_t *err);

/* resid += add (when add is not NULL), then y = rmsnorm(resid) * w:
 * the residual add fused with the next norm.  (rows, H), contiguous. */
int coil_cuda_rmsnorm_add(coil_cuda_t *c, float *resid, const float *add, const float *w, float eps, float *y,
                          int64_t rows, int64_t H, coil_err_t *err);

/* backend.h conv_silu for nseq sequences: x rows s*T+t with stride ldx,
 * state (nseq, K-1, D) updated, u (nseq*T, D).  b may be NULL. */
int coil_cuda_conv_silu(coil_cuda_t *c, const float *x, int64_t ldx, float *state, const float *w, const float *b,
                        float *u, int64_t T, int64_t D, int64_t K, int64_t nseq, coil_err_t *err);

/* backend.h scan for nseq sequences: h (nseq, D, N) carried in and out;
 * softplus(dt) and exp(delta*A) fused; z may be NULL (no gate). */
int coil_cuda_scan(coil_cuda_t *c, int64_t T, int64_t D, int64_t N, int64_t nseq, const float *u, const float *dt,
                   const float *A, const float *bc, int64_t ldbc, const float *Dskip, const float *z, int64_t ldz,
                   float *h, float *y, coil_err_t *err);

/* y(rows, cols) *= silu(z), strides ldy, ldz. */
int coil_cuda_silu_gate(coil_cuda_t *c, float *y, int64_t ldy, const float *z, int64_t ldz, int64_t rows,
                        int64_t cols, coil_err_t *err);

/* y(T, M) = x(T, K) . W^T (+ bias(M)), W (M, K) float32 row-major, through
 * cuBLAS with the context's arithmetic. */
int coil_cuda_linear(coil_cuda_t *c, const float *W, int64_t M, int64_t K, const float *bias, const float *x,
                     int64_t ldx, float *y, int64_t ldy, int64_t T, coil_err_t *err);

#ifdef __cplusplus
}
#endif

#endif
