/* cpu.c -- the CPU backend: portable kernels, AVX2 / AVX-512 dispatch, linear
 * through the matrix library (kernels/matrix.c).
 *
 * Threading: coil's own pool (kernels/pool.c: short spin, then sleep) inside
 * each op; the matrix library is kept single-threaded and called once per
 * tile.  Each output element is computed by exactly one thread, in an order
 * fixed by the shape alone: same inputs, same bits, for any thread count.
 */
#include "backend.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "convert.h"
#include "cpu_internal.h"
#include "cpu_rwkv.h"
#include "cpu_simd.h"
#include "pool.h"

/* ---- parallel ranges over the pool ------------------------------------------- */

typedef void (*range_body)(void *c, int64_t i0, int64_t i1);
typedef struct {
    range_body body;
    void *c;
    int64_t n, grain;
} range_t;

static void range_item(void *ctx, int64_t it)
{
    const range_t *r = ctx;
    const int64_t i0 = it * r->grain, i1 = i0 + r->grain < r->n ? i0 + r->grain : r->n;
    r->body(r->c, i0, i1);
}

/* body(c, i0, i1) over [0, n) in pieces of grain, on the pool when parallel. */
static void par_range(int64_t n, int64_t grain, int parallel, range_body body, void *c)
{
    if (!parallel || n <= grain) {
        body(c, 0, n);
        return;
    }
    range_t r = {body, c, n, grain};
    coil_pool_for((n + grain - 1) / grain, range_item, &r);
}

/* ---- conversions ------------------------------------------------------------- */

/* Conversions are exact, so any SIMD set gives the bits of the portable one. */
static int have_avx2(void)
{
    return coil_kernels_chosen() >= COIL_KSET_AVX2;
}

void coil_convert_to_f32(int dtype, const void *src, float *dst, size_t n)
{
    const uint16_t *h = src;
    if (dtype == 0) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
#ifdef COIL_HAVE_AVX2
    if (have_avx2()) {
        if (dtype == 1)
            coil_avx2_f16_to_f32(h, dst, n);
        else
            coil_avx2_bf16_to_f32(h, dst, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++)
        dst[i] = dtype == 1 ? coil_f16_to_f32(h[i]) : coil_bf16_to_f32(h[i]);
}

size_t coil_backend_linear_scratch(const coil_matrix_t *W)
{
    return W->dtype == COIL_DT_F32 ? 0 : (size_t)W->rows * (size_t)W->cols;
}

/* ---- linear ------------------------------------------------------------------ */

/* linear() is cut into tiles (rows of x, rows of W) fixed by the shape alone,
 * never by the thread count, and threads take tiles as they come free
 * (schedule dynamic): a thread that lost its core to another process does
 * fewer tiles instead of holding up the rest, and every output element comes
 * out of the same library call whatever the number of threads (same bits for
 * 1 or 16 threads). */
#define TILE_TARGET 4 /* tiles per product: enough to balance 2 threads, few enough to pack x rarely */

static int64_t round16(int64_t v)
{
    return (v + 15) & ~(int64_t)15;
}

static void linear_tiles(int64_t T, int64_t N, int64_t *bt, int64_t *bn)
{
    if (T == 1) { /* GEMV: memory-bound rows */
        *bt = 1;
        *bn = 64;
        return;
    }
    *bn = N < 128 ? N : round16((N + TILE_TARGET - 1) / TILE_TARGET);
    if (*bn > 1024)
        *bn = 1024;
    int64_t nn = (N + *bn - 1) / *bn;
    *bt = T;
    if (nn < TILE_TARGET) {
        int64_t parts = (TILE_TARGET + nn - 1) / nn;
        *bt = round16((T + parts - 1) / parts);
        if (*bt < 64)
            *bt = 64;
    }
}

static void gemv_half_portable(const uint16_t *W, int64_t K, int is_bf16, const float *x, float *y, int64_t r0,
                               int64_t r1)
{
    for (int64_t r = r0; r < r1; r++) {
        float acc = 0.0f;
        for (int64_t k = 0; k < K; k++)
            acc += (is_bf16 ? coil_bf16_to_f32(W[r * K + k]) : coil_f16_to_f32(W[r * K + k])) * x[k];
        y[r] = acc;
    }
}

/* -1: COIL_BF16_DOT not read yet */
static _Atomic int bf16_dot = -1;

bool coil_backend_bf16_dot_available(void)
{
#if defined(COIL_HAVE_AVX512) && defined(COIL_HAVE_BF16_DOT)
    return coil_kernels_chosen() == COIL_KSET_AVX512 && coil_cpu_features()->avx512_bf16;
#else
    return false;
#endif
}

bool coil_backend_bf16_dot(void)
{
    int v = atomic_load(&bf16_dot);
    if (v < 0) {
        const char *e = getenv("COIL_BF16_DOT");
        v = e && strcmp(e, "1") == 0 && coil_backend_bf16_dot_available();
        atomic_store(&bf16_dot, v);
    }
    return v;
}

void coil_backend_bf16_dot_set(bool on)
{
    atomic_store(&bf16_dot, on && coil_backend_bf16_dot_available());
}

static void linear_slice(const coil_matrix_t *W, const float *bias, const float *x, int64_t ldx, float *y,
                         int64_t ldy, int64_t T, float *scratch, int64_t r0, int64_t r1, int simd,
                         coil_matrix_lib_t lib)
{
    const int64_t K = W->cols, n = r1 - r0;
    float beta = 0.0f;

    if (n <= 0)
        return;
    if (bias) {
        for (int64_t t = 0; t < T; t++)
            memcpy(y + t * ldy + r0, bias + r0, (size_t)n * sizeof(float));
        beta = 1.0f;
    }
    if (W->dtype == COIL_DT_F32) {
        const float *Wf = (const float *)W->data + r0 * K;
        if (T == 1 && simd) {
#ifdef COIL_HAVE_AVX512
            if (simd == COIL_KSET_AVX512)
                coil_avx512_gemv_f32((const float *)W->data, K, x, y, r0, r1);
#endif
#ifdef COIL_HAVE_AVX2
            if (simd == COIL_KSET_AVX2)
                coil_avx2_gemv_f32((const float *)W->data, K, x, y, r0, r1);
#endif
            if (bias)
                for (int64_t r = r0; r < r1; r++)
                    y[r] += bias[r];
            return;
        }
        coil_matrix_sgemm(lib, T, n, K, x, ldx, Wf, beta, y + r0, ldy);
        return;
    }
    const uint16_t *Wh = W->data;
    const int bf = W->dtype == COIL_DT_BF16;
    if (T == 1) {
        /* Decode: read the half-precision weights once, no conversion pass. */
        if (simd == COIL_KSET_AVX512) {
#ifdef COIL_HAVE_AVX512
#ifdef COIL_HAVE_BF16_DOT
            if (bf && coil_backend_bf16_dot())
                coil_avx512_gemv_bf16_dot(Wh, K, x, y, r0, r1);
            else
#endif
                coil_avx512_gemv_half(Wh, K, bf, x, y, r0, r1);
#endif
        } else if (simd == COIL_KSET_AVX2) {
#ifdef COIL_HAVE_AVX2
            coil_avx2_gemv_half(Wh, K, bf, x, y, r0, r1);
#endif
        } else {
            gemv_half_portable(Wh, K, bf, x, y, r0, r1);
        }
        if (bias)
            for (int64_t r = r0; r < r1; r++)
                y[r] += bias[r];
        return;
    }
    float *Wf = scratch + r0 * K;
    coil_convert_to_f32(W->dtype, Wh + r0 * K, Wf, (size_t)(n * K));
    coil_matrix_sgemm(lib, T, n, K, x, ldx, Wf, beta, y + r0, ldy);
}

typedef struct {
    const coil_matrix_t *W;
    const float *bias, *x;
    int64_t ldx, ldy, T, bt, bn, nn;
    float *y, *scratch;
    int simd;
    coil_matrix_lib_t lib;
} linear_job_t;

static void convert_rows(void *c, int64_t r0, int64_t r1)
{
    const linear_job_t *j = c;
    const int64_t K = j->W->cols;
    coil_convert_to_f32(j->W->dtype, (const uint16_t *)j->W->data + r0 * K, j->scratch + r0 * K,
                        (size_t)((r1 - r0) * K));
}

static void linear_tile(void *c, int64_t i)
{
    const linear_job_t *j = c;
    const int64_t t0 = (i / j->nn) * j->bt, r0 = (i % j->nn) * j->bn, N = j->W->rows;
    const int64_t tn = j->T - t0 < j->bt ? j->T - t0 : j->bt, r1 = r0 + j->bn < N ? r0 + j->bn : N;
    linear_slice(j->W, j->bias, j->x + t0 * j->ldx, j->ldx, j->y + t0 * j->ldy, j->ldy, tn, j->scratch, r0, r1,
                 j->simd, j->lib);
}

static void linear_impl(const coil_matrix_t *W, const float *bias, const float *x, int64_t ldx, float *y,
                        int64_t ldy, int64_t T, float *scratch, int simd)
{
    const int64_t N = W->rows, K = W->cols;
    const coil_matrix_lib_t lib = coil_matrix_active();
    /* Small products are not worth waking the other threads for. */
    if (T * N * K < (int64_t)1 << 16) {
        linear_slice(W, bias, x, ldx, y, ldy, T, scratch, 0, N, simd, lib);
        return;
    }
    coil_matrix_t Wf = *W;
    linear_job_t j = {.W = W, .bias = bias, .x = x, .ldx = ldx, .ldy = ldy, .T = T, .y = y, .scratch = scratch,
                      .simd = simd, .lib = lib};
    if (W->dtype != COIL_DT_F32 && T > 1) {
        /* Prefill with half-precision weights: convert once (exact), then
         * the F32 product; tiles along T must not convert rows twice. */
        par_range(N, 64, 1, convert_rows, &j);
        Wf.dtype = COIL_DT_F32;
        Wf.data = scratch;
        j.W = &Wf;
    }
    linear_tiles(T, N, &j.bt, &j.bn);
    j.nn = (N + j.bn - 1) / j.bn;
    coil_pool_for(((T + j.bt - 1) / j.bt) * j.nn, linear_tile, &j);
}

static void linear_portable(const coil_matrix_t *W, const float *bias, const float *x, int64_t ldx, float *y,
                            int64_t ldy, int64_t T, float *scratch)
{
    linear_impl(W, bias, x, ldx, y, ldy, T, scratch, 0);
}

static void linear_avx2(const coil_matrix_t *W, const float *bias, const float *x, int64_t ldx, float *y,
                        int64_t ldy, int64_t T, float *scratch)
{
    linear_impl(W, bias, x, ldx, y, ldy, T, scratch, COIL_KSET_AVX2);
}

static void linear_avx512(const coil_matrix_t *W, const float *bias, const float *x, int64_t ldx, float *y,
                          int64_t ldy, int64_t T, float *scratch)
{
    linear_impl(W, bias, x, ldx, y, ldy, T, scratch, COIL_KSET_AVX512);
}

/* ---- rmsnorm, add ------------------------------------------------------------ */

typedef struct {
    const float *x, *w;
    float eps, *y;
    int64_t H;
} norm_job_t;

static void rmsnorm_rows(void *c, int64_t t0, int64_t t1)
{
    const norm_job_t *j = c;
    const int64_t H = j->H;
    for (int64_t t = t0; t < t1; t++) {
        const float *xr = j->x + t * H;
        float *yr = j->y + t * H;
        double ss = 0.0;
        for (int64_t i = 0; i < H; i++)
            ss += (double)xr[i] * xr[i];
        float r = 1.0f / sqrtf((float)(ss / (double)H) + j->eps);
        for (int64_t i = 0; i < H; i++)
            yr[i] = j->w[i] * (xr[i] * r);
    }
}

static void rmsnorm(const float *x, const float *w, float eps, float *y, int64_t T, int64_t H)
{
    norm_job_t j = {x, w, eps, y, H};
    par_range(T, 16, T * H > 65536, rmsnorm_rows, &j);
}

/* x(T, H), row stride ldx, in place: x / sqrt(mean(x^2) + eps), float32 out
 * (FalconMambaWeightlessRMSNorm: x * rsqrt(x.pow(2).mean(-1) + eps)).  Rows
 * are short (d_state, dt_rank): one thread; the SIMD sets run each row in
 * vectors (the sum of squares in double in every set). */
static void rmsnorm_weightless_impl(float *x, int64_t ldx, float eps, int64_t T, int64_t H, int simd)
{
    for (int64_t t = 0; t < T; t++) {
        float *xr = x + t * ldx;
#ifdef COIL_HAVE_AVX512
        if (simd == COIL_KSET_AVX512) {
            coil_avx512_rmsnorm_weightless_row(xr, eps, H);
            continue;
        }
#endif
#ifdef COIL_HAVE_AVX2
        if (simd == COIL_KSET_AVX2) {
            coil_avx2_rmsnorm_weightless_row(xr, eps, H);
            continue;
        }
#endif
        (void)simd;
        double ss = 0.0;
        for (int64_t i = 0; i < H; i++)
            ss += (double)xr[i] * xr[i];
        float r = 1.0f / sqrtf((float)(ss / (double)H) + eps);
        for (int64_t i = 0; i < H; i++)
            xr[i] = xr[i] * r;
    }
}

static void rmsnorm_weightless(float *x, int64_t ldx, float eps, int64_t T, int64_t H)
{
    rmsnorm_weightless_impl(x, ldx, eps, T, H, 0);
}

static void rmsnorm_weightless_avx2(float *x, int64_t ldx, float eps, int64_t T, int64_t H)
{
    rmsnorm_weightless_impl(x, ldx, eps, T, H, COIL_KSET_AVX2);
}

static void rmsnorm_weightless_avx512(float *x, int64_t ldx, float eps, int64_t T, int64_t H)
{
    rmsnorm_weightless_impl(x, ldx, eps, T, H, COIL_KSET_AVX512);
}

/* ---- Mamba-2: multi-head scan, gated norm -------------------------------------- */

/* The scan's work items: (head, block of M2_ROWS state rows), fixed by the
 * shape.  Each item runs all T steps of its rows with their state in L1
 * (a block is M2_ROWS x d_state floats), and every output element and state
 * row belongs to one item: same bits for any thread count and any split of
 * the sequence into chunks. */
#define M2_ROWS 16

typedef struct {
    int64_t T, H, P, N, G, ldx, ldbc, lddt, blocks;
    const float *x, *bc, *dtr, *dt_bias, *A, *Dskip;
    float dt_lo, dt_hi, *st, *y;
    int simd;
} heads_job_t;

static void scan_head_portable(int64_t T, int64_t p0, int64_t p1, int64_t N, const float *x, int64_t ldx,
                               const float *B, const float *C, int64_t ldbc, const float *dtr, int64_t lddt,
                               float dt_bias, float dt_lo, float dt_hi, float A, float Dh, float *st, float *y,
                               int64_t ldy)
{
    for (int64_t t = 0; t < T; t++) {
        float dA;
        const float dt = coil_m2_dt(dtr[t * lddt], dt_bias, dt_lo, dt_hi, A, &dA);
        const float *Bt = B + t * ldbc, *Ct = C + t * ldbc;
        for (int64_t p = p0; p < p1; p++) {
            const float xv = x[t * ldx + p], dx = dt * xv;
            float *s = st + p * N, acc = 0.0f;
            for (int64_t n = 0; n < N; n++) {
                s[n] = s[n] * dA + dx * Bt[n];
                acc += s[n] * Ct[n];
            }
            y[t * ldy + p] = acc + Dh * xv;
        }
    }
}

static void scan_heads_items(void *c, int64_t i0, int64_t i1)
{
    const heads_job_t *j = c;
    const int64_t hpg = j->H / j->G, P = j->P, N = j->N;
    for (int64_t it = i0; it < i1; it++) {
        const int64_t h = it / j->blocks, g = h / hpg, p0 = (it % j->blocks) * M2_ROWS,
                      p1 = p0 + M2_ROWS < P ? p0 + M2_ROWS : P;
        const float *x = j->x + h * P, *B = j->bc + g * N, *C = j->bc + (j->G + g) * N, *dtr = j->dtr + h;
        float *st = j->st + h * P * N, *y = j->y + h * P;
#ifdef COIL_HAVE_AVX512
        if (j->simd == COIL_KSET_AVX512) {
            coil_avx512_scan_head(j->T, p0, p1, N, x, j->ldx, B, C, j->ldbc, dtr, j->lddt, j->dt_bias[h], j->dt_lo,
                                  j->dt_hi, j->A[h], j->Dskip[h], st, y, j->H * P);
            continue;
        }
#endif
#ifdef COIL_HAVE_AVX2
        if (j->simd == COIL_KSET_AVX2) {
            coil_avx2_scan_head(j->T, p0, p1, N, x, j->ldx, B, C, j->ldbc, dtr, j->lddt, j->dt_bias[h], j->dt_lo,
                                j->dt_hi, j->A[h], j->Dskip[h], st, y, j->H * P);
            continue;
        }
#endif
        scan_head_portable(j->T, p0, p1, N, x, j->ldx, B, C, j->ldbc, dtr, j->lddt, j->dt_bias[h], j->dt_lo,
                           j->dt_hi, j->A[h], j->Dskip[h], st, y, j->H * P);
    }
}

static void scan_heads_impl(int64_t T, int64_t H, int64_t P, int64_t N, int64_t G, const float *x, int64_t ldx,
                            const float *bc, int64_t ldbc, const float *dtr, int64_t lddt, const float *dt_bias,
                            float dt_lo, float dt_hi, const float *A, const float *Dskip, float *st, float *y,
                            int simd)
{
    heads_job_t j = {.T = T, .H = H, .P = P, .N = N, .G = G, .ldx = ldx, .ldbc = ldbc, .lddt = lddt,
                     .blocks = (P + M2_ROWS - 1) / M2_ROWS, .x = x, .bc = bc, .dtr = dtr, .dt_bias = dt_bias,
                     .A = A, .Dskip = Dskip, .dt_lo = dt_lo, .dt_hi = dt_hi, .st = st, .y = y, .simd = simd};
    par_range(H * j.blocks, 1, T * H * P * N > 32768, scan_heads_items, &j);
}

static void scan_heads(int64_t T, int64_t H, int64_t P, int64_t N, int64_t G, const float *x, int64_t ldx,
                       const float *bc, int64_t ldbc, const float *dtr, int64_t lddt, const float *dt_bias,
                       float dt_lo, float dt_hi, const float *A, const float *Dskip, float *st, float *y)
{
    scan_heads_impl(T, H, P, N, G, x, ldx, bc, ldbc, dtr, lddt, dt_bias, dt_lo, dt_hi, A, Dskip, st, y, 0);
}

static void scan_heads_avx2(int64_t T, int64_t H, int64_t P, int64_t N, int64_t G, const float *x, int64_t ldx,
                            const float *bc, int64_t ldbc, const float *dtr, int64_t lddt, const float *dt_bias,
                            float dt_lo, float dt_hi, const float *A, const float *Dskip, float *st, float *y)
{
    scan_heads_impl(T, H, P, N, G, x, ldx, bc, ldbc, dtr, lddt, dt_bias, dt_lo, dt_hi, A, Dskip, st, y,
                    COIL_KSET_AVX2);
}

static void scan_heads_avx512(int64_t T, int64_t H, int64_t P, int64_t N, int64_t G, const float *x, int64_t ldx,
                              const float *bc, int64_t ldbc, const float *dtr, int64_t lddt, const float *dt_bias,
                              float dt_lo, float dt_hi, const float *A, const float *Dskip, float *st, float *y)
{
    scan_heads_impl(T, H, P, N, G, x, ldx, bc, ldbc, dtr, lddt, dt_bias, dt_lo, dt_hi, A, Dskip, st, y,
                    COIL_KSET_AVX512);
}

typedef struct {
    float *y;
    const float *z, *w;
    float eps;
    int64_t ldz, gs, D;
    int simd;
} gated_job_t;

static void rmsnorm_gated_rows(void *c, int64_t t0, int64_t t1)
{
    const gated_job_t *j = c;
    const int64_t D = j->D, gs = j->gs;
    const float *w = j->w;
    for (int64_t t = t0; t < t1; t++) {
        float *yr = j->y + t * D;
        const float *zr = j->z + t * j->ldz;
#ifdef COIL_HAVE_AVX512
        if (j->simd == COIL_KSET_AVX512) {
            coil_avx512_rmsnorm_gated_row(yr, zr, w, j->eps, gs, D);
            continue;
        }
#endif
#ifdef COIL_HAVE_AVX2
        if (j->simd == COIL_KSET_AVX2) {
            coil_avx2_rmsnorm_gated_row(yr, zr, w, j->eps, gs, D);
            continue;
        }
#endif
        for (int64_t i = 0; i < D; i++)
            yr[i] = yr[i] * (zr[i] / (1.0f + expf(-zr[i])));
        for (int64_t g0 = 0; g0 < D; g0 += gs) {
            double ss = 0.0;
            for (int64_t i = g0; i < g0 + gs; i++)
                ss += (double)yr[i] * yr[i];
            float r = 1.0f / sqrtf((float)(ss / (double)gs) + j->eps);
            for (int64_t i = g0; i < g0 + gs; i++)
                yr[i] = w[i] * (yr[i] * r);
        }
    }
}

static void rmsnorm_gated_impl(float *y, const float *z, int64_t ldz, const float *w, float eps, int64_t gs,
                               int64_t T, int64_t D, int simd)
{
    gated_job_t j = {.y = y, .z = z, .w = w, .eps = eps, .ldz = ldz, .gs = gs, .D = D, .simd = simd};
    par_range(T, 16, T * D > 65536, rmsnorm_gated_rows, &j);
}

static void rmsnorm_gated(float *y, const float *z, int64_t ldz, const float *w, float eps, int64_t gs, int64_t T,
                          int64_t D)
{
    rmsnorm_gated_impl(y, z, ldz, w, eps, gs, T, D, 0);
}

static void rmsnorm_gated_avx2(float *y, const float *z, int64_t ldz, const float *w, float eps, int64_t gs,
                               int64_t T, int64_t D)
{
    rmsnorm_gated_impl(y, z, ldz, w, eps, gs, T, D, COIL_KSET_AVX2);
}

static void rmsnorm_gated_avx512(float *y, const float *z, int64_t ldz, const float *w, float eps, int64_t gs,
                                 int64_t T, int64_t D)
{
    rmsnorm_gated_impl(y, z, ldz, w, eps, gs, T, D, COIL_KSET_AVX512);
}

#ifdef COIL_HAVE_AVX512
static void rmsnorm_rows_avx512(void *c, int64_t t0, int64_t t1)
{
    const norm_job_t *j = c;
    for (int64_t t = t0; t < t1; t++)
        coil_avx512_rmsnorm_row(j->x + t * j->H, j->w, j->eps, j->y + t * j->H, j->H);
}
#endif

static void rmsnorm_avx512(const float *x, const float *w, float eps, float *y, int64_t T, int64_t H)
{
#ifdef COIL_HAVE_AVX512
    norm_job_t j = {x, w, eps, y, H};
    par_range(T, 16, T * H > 65536, rmsnorm_rows_avx512, &j);
#else
    rmsnorm(x, w, eps, y, T, H);
#endif
}

typedef struct {
    float *y;
    const float *x;
} add_job_t;

static void add_range(void *c, int64_t i0, int64_t i1)
{
    const add_job_t *j = c;
    for (int64_t i = i0; i < i1; i++)
        j->y[i] += j->x[i];
}

static void add(float *y, const float *x, int64_t n)
{
    add_job_t j = {y, x};
    par_range(n, 16384, n > 65536, add_range, &j);
}

/* ---- conv + silu ------------------------------------------------------------- */

#define MAX_CONV 64

static float silu_ref(float v)
{
    return v / (1.0f + expf(-v));
}

typedef struct {
    const float *x, *w, *b;
    float *state, *u;
    int64_t ldx, D, K;
    int simd;
} conv_job_t;

static void conv_rows(void *c, int64_t t0, int64_t t1)
{
    const conv_job_t *j = c;
    const int64_t D = j->D, K = j->K, S = K - 1, ldx = j->ldx;
    const float *x = j->x, *w = j->w, *b = j->b, *state = j->state;
    float *u = j->u;
    for (int64_t t = t0; t < t1; t++) {
        const float *rows[MAX_CONV];
        for (int64_t k = 0; k < K; k++) {
            int64_t src = t + k - S; /* input index; < 0 reads the carried state */
            rows[k] = src < 0 ? state + (S + src) * D : x + src * ldx;
        }
#ifdef COIL_HAVE_AVX512
        if (j->simd == COIL_KSET_AVX512) {
            coil_avx512_conv_silu_rows(rows, w, b, u + t * D, D, K);
            continue;
        }
#endif
#ifdef COIL_HAVE_AVX2
        if (j->simd == COIL_KSET_AVX2) {
            coil_avx2_conv_silu_rows(rows, w, b, u + t * D, D, K);
            continue;
        }
#endif
        for (int64_t d = 0; d < D; d++) {
            float acc = b ? b[d] : 0.0f;
            for (int64_t k = 0; k < K; k++)
                acc += w[d * K + k] * rows[k][d];
            u[t * D + d] = silu_ref(acc);
        }
    }
}

static void conv_silu_impl(const float *x, int64_t ldx, float *state, const float *w, const float *b, float *u,
                           int64_t T, int64_t D, int64_t K, int simd)
{
    const int64_t S = K - 1; /* state rows */
    conv_job_t j = {.x = x, .w = w, .b = b, .state = state, .u = u, .ldx = ldx, .D = D, .K = K, .simd = simd};
    par_range(T, 16, T * D > 32768, conv_rows, &j);
    /* New state: the last S rows of [state; x]. */
    if (S == 0)
        return;
    if (T >= S) {
        for (int64_t r = 0; r < S; r++)
            memcpy(state + r * D, x + (T - S + r) * ldx, (size_t)D * sizeof(float));
    } else {
        memmove(state, state + T * D, (size_t)((S - T) * D) * sizeof(float));
        for (int64_t r = 0; r < T; r++)
            memcpy(state + (S - T + r) * D, x + r * ldx, (size_t)D * sizeof(float));
    }
}

static void conv_silu_portable(const float *x, int64_t ldx, float *state, const float *w, const float *b,
                               float *u, int64_t T, int64_t D, int64_t K)
{
    conv_silu_impl(x, ldx, state, w, b, u, T, D, K, 0);
}

static void conv_silu_avx2(const float *x, int64_t ldx, float *state, const float *w, const float *b, float *u,
                           int64_t T, int64_t D, int64_t K)
{
    conv_silu_impl(x, ldx, state, w, b, u, T, D, K, COIL_KSET_AVX2);
}

static void conv_silu_avx512(const float *x, int64_t ldx, float *state, const float *w, const float *b,
                             float *u, int64_t T, int64_t D, int64_t K)
{
    conv_silu_impl(x, ldx, state, w, b, u, T, D, K, COIL_KSET_AVX512);
}

/* ---- selective scan ---------------------------------------------------------- */

static float softplus_ref(float v)
{
    return v > 20.0f ? v : log1pf(expf(v)); /* F.softplus(beta=1, threshold=20) */
}

static void scan_channel(int64_t T, int64_t D, int64_t N, int64_t d, const float *u, const float *dt,
                         const float *A, const float *bc, int64_t ldbc, const float *Dskip, const float *z,
                         int64_t ldz, float *h, float *y)
{
    float *hd = h + d * N;
    const float *Ad = A + d * N;
    for (int64_t t = 0; t < T; t++) {
        const float *Bt = bc + t * ldbc, *Ct = Bt + N;
        float delta = softplus_ref(dt[t * D + d]), ut = u[t * D + d], du = delta * ut, acc = 0.0f;
        for (int64_t n = 0; n < N; n++) {
            hd[n] = expf(delta * Ad[n]) * hd[n] + du * Bt[n];
            acc += hd[n] * Ct[n];
        }
        y[t * D + d] = (acc + Dskip[d] * ut) * silu_ref(z[t * ldz + d]);
    }
}

typedef struct {
    int64_t T, D, N, ldbc, ldz, base;
    const float *u, *dt, *A, *bc, *Dskip, *z;
    float *h, *y;
} scan_job_t;

static void scan_channels(void *c, int64_t d0, int64_t d1)
{
    const scan_job_t *j = c;
    for (int64_t d = d0; d < d1; d++)
        scan_channel(j->T, j->D, j->N, d, j->u, j->dt, j->A, j->bc, j->ldbc, j->Dskip, j->z, j->ldz, j->h, j->y);
}

static void scan_portable(int64_t T, int64_t D, int64_t N, const float *u, const float *dt, const float *A,
                          const float *bc, int64_t ldbc, const float *Dskip, const float *z, int64_t ldz,
                          float *h, float *y)
{
    scan_job_t j = {T, D, N, ldbc, ldz, 0, u, dt, A, bc, Dskip, z, h, y};
    par_range(D, 8, T * D * N > 32768, scan_channels, &j);
}

#ifdef COIL_HAVE_AVX2
static void scan_groups8(void *c, int64_t g0, int64_t g1)
{
    const scan_job_t *j = c;
    for (int64_t g = g0; g < g1; g++)
        coil_avx2_scan_group(j->T, j->D, j->N, j->base + g * 8, j->u, j->dt, j->A, j->bc, j->ldbc, j->Dskip, j->z,
                             j->ldz, j->h, j->y);
}
#endif

static void scan_avx2(int64_t T, int64_t D, int64_t N, const float *u, const float *dt, const float *A,
                      const float *bc, int64_t ldbc, const float *Dskip, const float *z, int64_t ldz, float *h,
                      float *y)
{
#ifdef COIL_HAVE_AVX2
    const int64_t groups = N <= 256 ? D / 8 : 0;
    scan_job_t j = {T, D, N, ldbc, ldz, 0, u, dt, A, bc, Dskip, z, h, y};
    par_range(groups, 1, T * D * N > 8192, scan_groups8, &j);
    scan_channels(&j, groups * 8, D);
#else
    scan_portable(T, D, N, u, dt, A, bc, ldbc, Dskip, z, ldz, h, y);
#endif
}

#ifdef COIL_HAVE_AVX512
static void scan_groups16(void *c, int64_t g0, int64_t g1)
{
    const scan_job_t *j = c;
    for (int64_t g = g0; g < g1; g++)
        coil_avx512_scan_group(j->T, j->D, j->N, g * 16, j->u, j->dt, j->A, j->bc, j->ldbc, j->Dskip, j->z, j->ldz,
                               j->h, j->y);
}
#endif

static void scan_avx512(int64_t T, int64_t D, int64_t N, const float *u, const float *dt, const float *A,
                        const float *bc, int64_t ldbc, const float *Dskip, const float *z, int64_t ldz, float *h,
                        float *y)
{
#ifdef COIL_HAVE_AVX512
    /* 16 channels a group; a remainder of 8 or more goes through the AVX2
     * group, the last few through the portable channel (fixed by D). */
    const int64_t g16 = N <= 256 ? D / 16 : 0, g8 = N <= 256 ? (D - g16 * 16) / 8 : 0;
    scan_job_t j = {T, D, N, ldbc, ldz, g16 * 16, u, dt, A, bc, Dskip, z, h, y};
    par_range(g16, 1, T * D * N > 8192, scan_groups16, &j);
    scan_groups8(&j, 0, g8);
    scan_channels(&j, g16 * 16 + g8 * 8, D);
#else
    scan_avx2(T, D, N, u, dt, A, bc, ldbc, Dskip, z, ldz, h, y);
#endif
}

static void set_threads(int n)
{
    coil_pool_set_threads(n);
    coil_matrix_active(); /* the library is chosen, set single-threaded and checked now */
}

/* RWKV-4's ops (kernels/cpu_rwkv.c); wkv and sigmoid_mul_add have AVX2 versions */
#define COIL_CPU_RWKV_OPS_(wkv_, sma_)                                                                         \
    .layernorm = coil_cpu_layernorm, .token_mix = coil_cpu_token_mix, .wkv = wkv_, .relu_sq = coil_cpu_relu_sq, \
    .sigmoid_mul_add = sma_, .scale = coil_cpu_scale

static const coil_backend_ops_t cpu_portable = {
    .name = "cpu",
    .linear = linear_portable,
    .rmsnorm = rmsnorm,
    .rmsnorm_weightless = rmsnorm_weightless,
    .conv_silu = conv_silu_portable,
    .scan_heads = scan_heads,
    .rmsnorm_gated = rmsnorm_gated,
    .scan = scan_portable,
    .add = add,
    COIL_CPU_RWKV_OPS_(coil_cpu_wkv, coil_cpu_sigmoid_mul_add),
    .set_threads = set_threads,
};

static const coil_backend_ops_t cpu_avx2 = {
    .name = "cpu-avx2",
    .linear = linear_avx2,
    .rmsnorm = rmsnorm,
    .rmsnorm_weightless = rmsnorm_weightless_avx2,
    .conv_silu = conv_silu_avx2,
    .scan_heads = scan_heads_avx2,
    .rmsnorm_gated = rmsnorm_gated_avx2,
    .scan = scan_avx2,
    .add = add,
    COIL_CPU_RWKV_OPS_(coil_cpu_wkv_avx2, coil_cpu_sigmoid_mul_add_avx2),
    .set_threads = set_threads,
};

static const coil_backend_ops_t cpu_avx512 = {
    .name = "cpu-avx512",
    .linear = linear_avx512,
    .rmsnorm = rmsnorm_avx512,
    .rmsnorm_weightless = rmsnorm_weightless_avx512,
    .conv_silu = conv_silu_avx512,
    .scan_heads = scan_heads_avx512,
    .rmsnorm_gated = rmsnorm_gated_avx512,
    .scan = scan_avx512,
    .add = add,
    COIL_CPU_RWKV_OPS_(coil_cpu_wkv_avx2, coil_cpu_sigmoid_mul_add_avx2),
    .set_threads = set_threads,
};

const coil_backend_ops_t *coil_backend_cpu_portable(void)
{
    return &cpu_portable;
}

const coil_backend_ops_t *coil_backend_cpu_kernels(coil_kset_t k)
{
    if (!coil_kernels_available(k))
        return NULL;
    return k == COIL_KSET_AVX512 ? &cpu_avx512 : k == COIL_KSET_AVX2 ? &cpu_avx2 : &cpu_portable;
}

const coil_backend_ops_t *coil_backend_cpu(void)
{
    return coil_backend_cpu_kernels(coil_kernels_chosen());
}

void coil_backend_print_info(FILE *f)
{
    const coil_cpu_features_t *cf = coil_cpu_features();
    const coil_kset_t k = coil_kernels_chosen(), best = coil_kernels_best();
    const coil_matrix_lib_t lib = coil_matrix_active();
    coil_matrix_info_t mi;
    fprintf(f, "cpu:              %s (%s family %d model %d)\n", cf->brand, cf->vendor, cf->family, cf->model);
    fprintf(f, "cpu features:     %s (cpuid)\n", coil_cpu_features_string());
    fprintf(f, "kernel set:       %s%s%s (built:", coil_kernels_name(k), k == best ? "" : ", forced; best here is ",
            k == best ? "" : coil_kernels_name(best));
    for (int s = COIL_KSET_PORTABLE; s <= COIL_KSET_AVX512; s++)
        if (coil_kernels_built((coil_kset_t)s))
            fprintf(f, " %s", coil_kernels_name((coil_kset_t)s));
    fprintf(f, ")\n");
    coil_matrix_info(lib, &mi);
    fprintf(f, "matrix library:   %s %s, kernels %s (built: %s)\n", mi.library, mi.version, mi.kernel,
            coil_matrix_libs());
    if (mi.below)
        fprintf(f, "matrix warning:   %s\n", mi.note);
    if (coil_backend_bf16_dot_available())
        fprintf(f, "bf16 dot:         %s\n",
                coil_backend_bf16_dot() ? "on: BF16 decode GEMV through vdpbf16ps, x rounded to BF16 (COIL_BF16_DOT=1)"
                                        : "off (COIL_BF16_DOT=1: BF16 decode GEMV through vdpbf16ps)");
    for (int l = COIL_MATRIX_OPENBLAS; l <= COIL_MATRIX_ONEDNN; l++) {
        if (l == (int)lib || !strstr(coil_matrix_libs(), coil_matrix_lib_name((coil_matrix_lib_t)l)))
            continue;
        coil_matrix_info((coil_matrix_lib_t)l, &mi);
        fprintf(f, "also linked:      %s %s, kernels %s%s%s\n", mi.library, mi.version, mi.kernel,
                mi.below ? "; " : "", mi.below ? mi.note : "");
    }
}
