/* cuda_plan.h -- host-side launch planning for the CUDA backend, in plain C.
 *
 * Everything the CUDA kernels (kernels/cuda_kernels.cu) need to know before a
 * launch -- grid, block, shared memory, the scan's tiling and thread groups --
 * and every buffer size of the device-resident forward is computed here, with
 * overflow checks and errors naming what is wrong, so that all of it is
 * unit-tested without a GPU (tests/test_cuda_plan.c).  Always built, with or
 * without CUDA; nothing here includes a CUDA header.
 *
 * Layout of a batch of nseq sequences of T tokens each (the CUDA kernels'
 * convention): activations are (nseq * T, cols) row-major, sequence-major
 * (row s*T + t); the SSM state is (nseq, D, N) and the conv state
 * (nseq, K-1, D) per layer.
 */
#ifndef COIL_CUDA_PLAN_H
#define COIL_CUDA_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define COIL_CUDA_MAX_BLOCK 1024            /* threads per block */
#define COIL_CUDA_MAX_GRID_X 2147483647LL   /* blocks along x */
#define COIL_CUDA_MAX_GRID_YZ 65535LL       /* blocks along y and z */
#define COIL_CUDA_SMEM_MAX 49152            /* dynamic shared memory without opt-in */
#define COIL_CUDA_SCAN_MAX_STATE 256        /* d_state the scan keeps in registers (32 lanes x 8) */
#define COIL_CUDA_SCAN_TILE 64              /* tokens per scan tile (fewer when shared memory is short) */
#define COIL_CUDA_MAX_CONV 64               /* d_conv (= COIL_MODEL_MAX_CONV) */
#define COIL_CUDA_EW_BLOCK 256              /* elementwise kernels' block */
#define COIL_CUDA_EW_MAX_BLOCKS 65536       /* elementwise grids are grid-stride loops */
#define COIL_CUDA_ALIGN 256                 /* sub-buffer alignment in the activation arena */
#define COIL_CUDA_DEFAULT_SMS 132           /* H100/H200 SXM */

typedef struct coil_cuda_dim3 {
    unsigned x, y, z;
} coil_cuda_dim3_t;

typedef struct coil_cuda_launch {
    coil_cuda_dim3_t grid, block; /* grid.x == 0: nothing to launch (no tokens) */
    size_t smem;                  /* dynamic shared memory, bytes */
    /* scan only */
    int tile;     /* tokens per tile */
    int group;    /* lanes per channel (power of two, <= 32) */
    int per_lane; /* states per lane (1, 2, 4 or 8): group * per_lane >= N */
    int channels; /* channels per block = block.x / group */
} coil_cuda_launch_t;

/* Matrix-product arithmetic (cuBLAS compute type). */
typedef enum coil_cuda_math {
    COIL_CUDA_MATH_F32 = 0, /* CUBLAS_COMPUTE_32F: float32 throughout */
    COIL_CUDA_MATH_TF32,    /* CUBLAS_COMPUTE_32F_FAST_TF32: tensor cores, 10-bit mantissa inputs */
    COIL_CUDA_MATH_BF16,    /* CUBLAS_COMPUTE_32F_FAST_16BF: inputs rounded to bfloat16, f32 accumulate */
} coil_cuda_math_t;

/* "f32", "tf32" or "bf16" -> *m; COIL_EINVAL naming the text otherwise. */
int coil_cuda_math_parse(const char *s, coil_cuda_math_t *m, coil_err_t *err);
const char *coil_cuda_math_name(coil_cuda_math_t m);

/* Selective scan over T tokens of nseq sequences, D channels, N states.
 * Each block owns `channels` channels; each channel is `group` lanes holding
 * `per_lane` states each in registers; the tokens are walked in tiles of
 * `tile` (B, C, u, softplus(dt), z, y staged in shared memory).  sms: the
 * device's multiprocessor count (0: COIL_CUDA_DEFAULT_SMS); the block size is
 * the largest of 512/256/128 that still gives two blocks per multiprocessor.
 * Errors: COIL_EINVAL (negative or zero dims), COIL_EUNSUPPORTED (N above
 * COIL_CUDA_SCAN_MAX_STATE), COIL_ETOOBIG (grid beyond the device limits). */
int coil_cuda_plan_scan(int64_t T, int64_t D, int64_t N, int64_t nseq, int sms, coil_cuda_launch_t *L,
                        coil_err_t *err);

/* Causal depthwise conv1d + SiLU: one thread per output (row, channel),
 * grid-stride.  K in [1, COIL_CUDA_MAX_CONV]. */
int coil_cuda_plan_conv(int64_t T, int64_t D, int64_t K, int64_t nseq, coil_cuda_launch_t *L, coil_err_t *err);

/* The conv state update: one thread per (sequence, channel). */
int coil_cuda_plan_conv_state(int64_t D, int64_t nseq, coil_cuda_launch_t *L, coil_err_t *err);

/* Row kernels (RMSNorm + residual add): one block per row, a power-of-two
 * block of 32..1024 threads, about 4 columns per thread; smem for the
 * per-warp partial sums. */
int coil_cuda_plan_rows(int64_t rows, int64_t cols, coil_cuda_launch_t *L, coil_err_t *err);

/* Elementwise kernels over n items (gate, gather, bias): grid-stride. */
int coil_cuda_plan_elementwise(int64_t n, coil_cuda_launch_t *L, coil_err_t *err);

/* A Mamba-1 shape, as in coil_model_config_t. */
typedef struct coil_cuda_shape {
    int64_t d_model, d_inner, d_state, d_conv, dt_rank, n_layer, vocab;
    int use_bias, use_conv_bias, tied;
} coil_cuda_shape_t;

/* Device memory of the forward: byte offsets of each activation buffer in one
 * arena (each COIL_CUDA_ALIGN-aligned), for rows = nseq * max_chunk. */
typedef struct coil_cuda_buffers {
    int64_t rows;                 /* nseq * max_chunk */
    size_t resid, xn, xz, u, xdbl, dt, y, out, ids, logits; /* offsets; logits only if asked */
    size_t arena;                 /* bytes of the activation arena */
    size_t conv_state, ssm_state; /* bytes of all sequences' conv / SSM states, all layers */
    size_t state;                 /* conv_state + ssm_state (one aligned allocation) */
    size_t weights;               /* the weights as float32 on the device */
    size_t total;                 /* arena + state + weights */
} coil_cuda_buffers_t;

/* Checks the shape (every dim positive, d_state <= COIL_CUDA_SCAN_MAX_STATE,
 * d_conv <= COIL_CUDA_MAX_CONV) and fills b.  with_logits adds the
 * (rows, vocab) logits buffer.  COIL_EINVAL / COIL_EUNSUPPORTED naming the
 * field, COIL_ETOOBIG if a size overflows. */
int coil_cuda_plan_buffers(const coil_cuda_shape_t *s, int64_t max_chunk, int64_t nseq, int with_logits,
                           coil_cuda_buffers_t *b, coil_err_t *err);

/* Parameters of the shape (what transformers' MambaForCausalLM counts). */
int64_t coil_cuda_shape_params(const coil_cuda_shape_t *s);

/* Matmul FLOPs per token of an ingest (no LM head): 2 x the matrix weights of
 * the layers; with_head adds the LM head. */
double coil_cuda_shape_flops_per_token(const coil_cuda_shape_t *s, int with_head);

#ifdef __cplusplus
}
#endif

#endif
