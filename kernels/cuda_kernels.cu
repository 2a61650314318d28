/* cuda_kernels.cu -- the CUDA backend's kernels: embedding gather, RMSNorm
 * fused with the residual add, causal depthwise conv1d + SiLU with its
 * carried state, the selective scan, the SiLU gate, bias rows.  Launch
 * configurations come from kernels/cuda_plan.c (plain C, unit-tested). */
#include "cuda_internal.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define FULL_MASK 0xffffffffu

static __device__ __forceinline__ float silu(float v) { return v / (1.0f + expf(-v)); }
/* F.softplus(beta=1, threshold=20), as the CPU backend */
static __device__ __forceinline__ float softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

static int launched(coil_cuda_t *c, const char *what, coil_err_t *err)
{
    cudaError_t e = cudaGetLastError();
    (void)c;
    return e == cudaSuccess ? 0 : coil_cuda_fail(err, e, what);
}

static dim3 d3(coil_cuda_dim3_t v) { return dim3(v.x, v.y, v.z); }

/* ---- embedding gather ------------------------------------------------------------ */

template <typename T> static __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
static __global__ void embed_kernel(const T *emb, int64_t H, const int32_t *ids, int64_t n, float *out)
{
    const int64_t total = n * H;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / H, h = i - t * H;
        out[i] = to_f32<T>(emb[(int64_t)ids[t] * H + h]);
    }
}

extern "C" int coil_cuda_embed(coil_cuda_t *c, coil_dtype_t dtype, const void *emb, int64_t H, const int32_t *ids,
                               int64_t n, float *out, coil_err_t *err)
{
    coil_cuda_launch_t L;
    int64_t total;
    if (H <= 0 || n < 0 || __builtin_mul_overflow(n, H, &total))
        return coil_err_set(err, COIL_EINVAL, "embedding: invalid shape n=%lld H=%lld", (long long)n, (long long)H);
    int rc = coil_cuda_plan_elementwise(total, &L, err);
    if (rc || L.grid.x == 0)
        return rc;
    switch (dtype) {
    case COIL_DT_F32:
        embed_kernel<float><<<d3(L.grid), d3(L.block), 0, c->main>>>((const float *)emb, H, ids, n, out);
        break;
    case COIL_DT_F16:
        embed_kernel<__half><<<d3(L.grid), d3(L.block), 0, c->main>>>((const __half *)emb, H, ids, n, out);
        break;
    case COIL_DT_BF16:
        embed_kernel<__nv_bfloat16>
            <<<d3(L.grid), d3(L.block), 0, c->main>>>((const __nv_bfloat16 *)emb, H, ids, n, out);
        break;
    default:
        return coil_err_set(err, COIL_EDTYPE, "embedding: dtype %d is not F32, F16 or BF16", (int)dtype);
    }
    return launched(c, "the embedding kernel", err);
}

/* ---- RMSNorm + residual add ---------------------------------------------------------- */

/* One block per row: resid += add; y = w * resid / sqrt(mean(resid^2) + eps). */
static __global__ void rmsnorm_add_kernel(float *resid, const float *add, const float *w, float eps, float *y,
                                          int64_t H)
{
    extern __shared__ float warp_sums[];
    float *r = resid + (int64_t)blockIdx.x * H;
    const float *a = add ? add + (int64_t)blockIdx.x * H : NULL;
    float *yr = y + (int64_t)blockIdx.x * H;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x) {
        float v = r[i];
        if (a) {
            v += a[i];
            r[i] = v;
        }
        ss += v * v;
    }
    for (int off = 16; off > 0; off >>= 1)
        ss += __shfl_xor_sync(FULL_MASK, ss, off);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
    if (lane == 0)
        warp_sums[warp] = ss;
    __syncthreads();
    if (warp == 0) {
        float v = lane < nwarps ? warp_sums[lane] : 0.0f;
        for (int off = 16; off > 0; off >>= 1)
            v += __shfl_xor_sync(FULL_MASK, v, off);
        if (lane == 0)
            warp_sums[0] = v;
    }
    __syncthreads();
    const float inv = 1.0f / sqrtf(warp_sums[0] / (float)H + eps);
    for (int64_t i = threadIdx.x; i < H; i += blockDim.x)
        yr[i] = w[i] * (r[i] * inv);
}

extern "C" int coil_cuda_rmsnorm_add(coil_cuda_t *c, float *resid, const float *add, const float *w, float eps,
                                     float *y, int64_t rows, int64_t H, coil_err_t *err)
{
    coil_cuda_launch_t L;
    int rc = coil_cuda_plan_rows(rows, H, &L, err);
    if (rc || L.grid.x == 0)
        return rc;
    rmsnorm_add_kernel<<<d3(L.grid), d3(L.block), L.smem, c->main>>>(resid, add, w, eps, y, H);
    return launched(c, "the RMSNorm kernel", err);
}

/* ---- causal depthwise conv1d + SiLU ------------------------------------------------------ */

/* u[s*T+t, d] = silu(b[d] + sum_k w[d,k] * xin[t-(K-1)+k, d]); xin rows
 * before 0 come from the sequence's state (K-1, D), oldest first. */
static __global__ void conv_silu_kernel(const float *x, int64_t ldx, const float *state, const float *w,
                                        const float *b, float *u, int64_t T, int64_t D, int K, int64_t nseq)
{
    const int64_t total = nseq * T * D, S = K - 1;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = i / D, d = i - row * D, s = row / T, t = row - s * T;
        const float *st = state + s * S * D;
        float acc = b ? b[d] : 0.0f;
        for (int k = 0; k < K; k++) {
            const int64_t src = t + k - S;
            const float xv = src < 0 ? st[(S + src) * D + d] : x[(s * T + src) * ldx + d];
            acc += w[d * K + k] * xv;
        }
        u[i] = silu(acc);
    }
}

/* state <- the last K-1 rows of [state; x], per (sequence, channel).  Rows
 * are written in ascending order and row j reads row T+j > j: nothing is
 * overwritten before it is read. */
static __global__ void conv_state_kernel(const float *x, int64_t ldx, float *state, int64_t T, int64_t D, int K,
                                         int64_t nseq)
{
    const int64_t S = K - 1;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < nseq * D; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t s = i / D, d = i - s * D;
        float *st = state + s * S * D;
        for (int64_t j = 0; j < S; j++) {
            const int64_t src = T + j; /* index into [state; x] */
            st[j * D + d] = src < S ? st[src * D + d] : x[(s * T + src - S) * ldx + d];
        }
    }
}

extern "C" int coil_cuda_conv_silu(coil_cuda_t *c, const float *x, int64_t ldx, float *state, const float *w,
                                   const float *b, float *u, int64_t T, int64_t D, int64_t K, int64_t nseq,
                                   coil_err_t *err)
{
    coil_cuda_launch_t L, Ls;
    int rc = coil_cuda_plan_conv(T, D, K, nseq, &L, err);
    if (!rc)
        rc = coil_cuda_plan_conv_state(D, nseq, &Ls, err);
    if (rc || T == 0)
        return rc;
    if (ldx < D)
        return coil_err_set(err, COIL_EINVAL, "conv1d: row stride %lld below D=%lld", (long long)ldx, (long long)D);
    conv_silu_kernel<<<d3(L.grid), d3(L.block), 0, c->main>>>(x, ldx, state, w, b, u, T, D, (int)K, nseq);
    if ((rc = launched(c, "the conv1d kernel", err)))
        return rc;
    if (K > 1)
        conv_state_kernel<<<d3(Ls.grid), d3(Ls.block), 0, c->main>>>(x, ldx, state, T, D, (int)K, nseq);
    return launched(c, "the conv1d state kernel", err);
}

/* ---- selective scan ---------------------------------------------------------------- */

/* Block (channels x group lanes) owns `channels` consecutive channels of one
 * sequence (blockIdx.y); lane g of a channel keeps states n = g + j*group
 * (j < S) in registers for the whole chunk.  Tokens are walked in tiles: B, C,
 * u, softplus(dt) and z of the tile are staged in shared memory (coalesced
 * loads), the tile's y is gathered there and written out coalesced.  The sum
 * over n is a butterfly over the group's lanes. */
template <int S>
static __global__ void scan_kernel(int T, int D, int N, int group, int channels, int tile, const float *u,
                                   const float *dt, const float *A, const float *bc, int64_t ldbc,
                                   const float *Dskip, const float *z, int64_t ldz, float *h, float *y)
{
    extern __shared__ float sm[];
    float *sB = sm, *sC = sB + tile * N, *su = sC + tile * N, *sd = su + tile * channels,
          *sz = sd + tile * channels, *sy = sz + tile * channels;
    const int s = blockIdx.y, tid = threadIdx.x, ch = tid / group, g = tid % group;
    const int d0 = blockIdx.x * channels, d = d0 + ch;
    const bool dv = d < D;
    const int64_t row0 = (int64_t)s * T;
    float hs[S], As[S];
#pragma unroll
    for (int j = 0; j < S; j++) {
        const int n = g + j * group;
        const bool ok = dv && n < N;
        hs[j] = ok ? h[((int64_t)s * D + d) * N + n] : 0.0f;
        As[j] = ok ? A[(int64_t)d * N + n] : 0.0f;
    }
    const float Dd = dv ? Dskip[d] : 0.0f;
    for (int t0 = 0; t0 < T; t0 += tile) {
        const int tn = T - t0 < tile ? T - t0 : tile;
        __syncthreads(); /* the previous tile's sy has been written out */
        for (int i = tid; i < tn * N; i += blockDim.x) {
            const int tt = i / N, n = i - tt * N;
            const float *r = bc + (row0 + t0 + tt) * ldbc;
            sB[tt * N + n] = r[n];
            sC[tt * N + n] = r[N + n];
        }
        for (int i = tid; i < tn * channels; i += blockDim.x) {
            const int tt = i / channels, cc = i - tt * channels, dd = d0 + cc;
            const int64_t r = row0 + t0 + tt;
            const bool ok = dd < D;
            su[i] = ok ? u[r * D + dd] : 0.0f;
            sd[i] = ok ? softplus(dt[r * D + dd]) : 0.0f;
            sz[i] = ok && z ? z[r * ldz + dd] : 0.0f;
        }
        __syncthreads();
        for (int tt = 0; tt < tn; tt++) {
            const float delta = sd[tt * channels + ch], ut = su[tt * channels + ch], du = delta * ut;
            float acc = 0.0f;
#pragma unroll
            for (int j = 0; j < S; j++) {
                const int n = g + j * group;
                if (n < N) {
                    hs[j] = expf(delta * As[j]) * hs[j] + du * sB[tt * N + n];
                    acc += hs[j] * sC[tt * N + n];
                }
            }
            for (int off = group / 2; off > 0; off >>= 1)
                acc += __shfl_xor_sync(FULL_MASK, acc, off, group);
            if (g == 0) {
                float yv = acc + Dd * ut;
                if (z)
                    yv *= silu(sz[tt * channels + ch]);
                sy[tt * channels + ch] = yv;
            }
        }
        __syncthreads();
        for (int i = tid; i < tn * channels; i += blockDim.x) {
            const int tt = i / channels, cc = i - tt * channels, dd = d0 + cc;
            if (dd < D)
                y[(row0 + t0 + tt) * D + dd] = sy[i];
        }
    }
#pragma unroll
    for (int j = 0; j < S; j++) {
        const int n = g + j * group;
        if (dv && n < N)
            h[((int64_t)s * D + d) * N + n] = hs[j];
    }
}

extern "C" int coil_cuda_scan(coil_cuda_t *c, int64_t T, int64_t D, int64_t N, int64_t nseq, const float *u,
                              const float *dt, const float *A, const float *bc, int64_t ldbc, const float *Dskip,
                              const float *z, int64_t ldz, float *h, float *y, coil_err_t *err)
{
    coil_cuda_launch_t L;
    int rc = coil_cuda_plan_scan(T, D, N, nseq, c->sms, &L, err);
    if (rc || L.grid.x == 0)
        return rc;
    if (ldbc < 2 * N || (z && ldz < D))
        return coil_err_set(err, COIL_EINVAL, "scan: strides ldbc=%lld ldz=%lld too small for N=%lld D=%lld",
                            (long long)ldbc, (long long)ldz, (long long)N, (long long)D);
#define COIL_SCAN_LAUNCH(SS)                                                                                       \
    scan_kernel<SS><<<d3(L.grid), d3(L.block), L.smem, c->main>>>((int)T, (int)D, (int)N, L.group, L.channels,  \
                                                                  L.tile, u, dt, A, bc, ldbc, Dskip, z, ldz, h, y)
    switch (L.per_lane) {
    case 1:
        COIL_SCAN_LAUNCH(1);
        break;
    case 2:
        COIL_SCAN_LAUNCH(2);
        break;
    case 4:
        COIL_SCAN_LAUNCH(4);
        break;
    case 8:
        COIL_SCAN_LAUNCH(8);
        break;
    default:
        return coil_err_set(err, COIL_EINVAL, "scan: no kernel for %d states per lane", L.per_lane);
    }
#undef COIL_SCAN_LAUNCH
    return launched(c, "the scan kernel", err);
}

/* ---- SiLU gate, bias rows ------------------------------------------------------------ */

static __global__ void gate_kernel(float *y, int64_t ldy, const float *z, int64_t ldz, int64_t rows, int64_t cols)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < rows * cols; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / cols, k = i - r * cols;
        y[r * ldy + k] *= silu(z[r * ldz + k]);
    }
}

extern "C" int coil_cuda_silu_gate(coil_cuda_t *c, float *y, int64_t ldy, const float *z, int64_t ldz, int64_t rows,
                                   int64_t cols, coil_err_t *err)
{
    coil_cuda_launch_t L;
    int64_t n;
    if (rows < 0 || cols < 0 || ldy < cols || ldz < cols || __builtin_mul_overflow(rows, cols, &n))
        return coil_err_set(err, COIL_EINVAL, "SiLU gate: invalid shape %lld x %lld (ldy %lld, ldz %lld)",
                            (long long)rows, (long long)cols, (long long)ldy, (long long)ldz);
    int rc = coil_cuda_plan_elementwise(n, &L, err);
    if (rc || L.grid.x == 0)
        return rc;
    gate_kernel<<<d3(L.grid), d3(L.block), 0, c->main>>>(y, ldy, z, ldz, rows, cols);
    return launched(c, "the SiLU gate kernel", err);
}

static __global__ void bias_kernel(float *y, int64_t ldy, const float *bias, int64_t rows, int64_t cols)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < rows * cols; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / cols, k = i - r * cols;
        y[r * ldy + k] = bias[k];
    }
}

/* y rows = bias (then a GEMM with beta = 1 adds the product). */
extern "C" int coil_cuda_bias_rows(coil_cuda_t *c, float *y, int64_t ldy, const float *bias, int64_t rows,
                                   int64_t cols, coil_err_t *err)
{
    coil_cuda_launch_t L;
    int rc = coil_cuda_plan_elementwise(rows * cols, &L, err);
    if (rc || L.grid.x == 0)
        return rc;
    bias_kernel<<<d3(L.grid), d3(L.block), 0, c->main>>>(y, ldy, bias, rows, cols);
    return launched(c, "the bias kernel", err);
}
