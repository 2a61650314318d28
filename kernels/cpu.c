/* cpu.c -- the CPU backend: portable kernels, AVX2 / AVX-512 dispatch, linear
 * through the matrix library (kernels/matrix.c).
 *
 * Threading: OpenMP inside each op; the matrix library is kept single-threaded
 * and called once per thread on a slice of output rows, so only one thread
 * pool ever spins.  Each output element is computed by exactly one thread, in an
 * order fixed by (shape, thread count): same inputs, same threads, same bits.
 */
#include "backend.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "convert.h"
#include "cpu_internal.h"
#include "cpu_simd.h"

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

static void slice_rows(int64_t N, int id, int nt, int64_t *r0, int64_t *r1)
{
    int64_t per = (N + nt - 1) / nt;
    per = (per + 15) & ~(int64_t)15;
    *r0 = per * id < N ? per * id : N;
    *r1 = per * (id + 1) < N ? per * (id + 1) : N;
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

static void linear_impl(const coil_matrix_t *W, const float *bias, const float *x, int64_t ldx, float *y,
                        int64_t ldy, int64_t T, float *scratch, int simd)
{
    const int64_t N = W->rows;
    const coil_matrix_lib_t lib = coil_matrix_active();
    /* Small products are not worth waking the other threads for. */
    if (T * N * W->cols < (int64_t)1 << 16) {
        linear_slice(W, bias, x, ldx, y, ldy, T, scratch, 0, N, simd, lib);
        return;
    }
#pragma omp parallel
    {
        int64_t r0, r1;
        slice_rows(N, omp_get_thread_num(), omp_get_num_threads(), &r0, &r1);
        linear_slice(W, bias, x, ldx, y, ldy, T, scratch, r0, r1, simd, lib);
    }
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

static void rmsnorm(const float *x, const float *w, float eps, float *y, int64_t T, int64_t H)
{
#pragma omp parallel for schedule(static) if (T * H > 65536)
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * H;
        float *yr = y + t * H;
        double ss = 0.0;
        for (int64_t i = 0; i < H; i++)
            ss += (double)xr[i] * xr[i];
        float r = 1.0f / sqrtf((float)(ss / (double)H) + eps);
        for (int64_t i = 0; i < H; i++)
            yr[i] = w[i] * (xr[i] * r);
    }
}

static void rmsnorm_avx512(const float *x, const float *w, float eps, float *y, int64_t T, int64_t H)
{
#ifdef COIL_HAVE_AVX512
#pragma omp parallel for schedule(static) if (T * H > 65536)
    for (int64_t t = 0; t < T; t++)
        coil_avx512_rmsnorm_row(x + t * H, w, eps, y + t * H, H);
#else
    rmsnorm(x, w, eps, y, T, H);
#endif
}

static void add(float *y, const float *x, int64_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

/* ---- conv + silu ------------------------------------------------------------- */

#define MAX_CONV 64

static float silu_ref(float v)
{
    return v / (1.0f + expf(-v));
}

static void conv_silu_impl(const float *x, int64_t ldx, float *state, const float *w, const float *b, float *u,
                           int64_t T, int64_t D, int64_t K, int simd)
{
    const int64_t S = K - 1; /* state rows */
#pragma omp parallel for schedule(static) if (T * D > 32768)
    for (int64_t t = 0; t < T; t++) {
        const float *rows[MAX_CONV];
        for (int64_t k = 0; k < K; k++) {
            int64_t src = t + k - S; /* input index; < 0 reads the carried state */
            rows[k] = src < 0 ? state + (S + src) * D : x + src * ldx;
        }
#ifdef COIL_HAVE_AVX512
        if (simd == COIL_KSET_AVX512) {
            coil_avx512_conv_silu_rows(rows, w, b, u + t * D, D, K);
            continue;
        }
#endif
#ifdef COIL_HAVE_AVX2
        if (simd == COIL_KSET_AVX2) {
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

static void scan_portable(int64_t T, int64_t D, int64_t N, const float *u, const float *dt, const float *A,
                          const float *bc, int64_t ldbc, const float *Dskip, const float *z, int64_t ldz,
                          float *h, float *y)
{
#pragma omp parallel for schedule(static) if (T * D * N > 32768)
    for (int64_t d = 0; d < D; d++)
        scan_channel(T, D, N, d, u, dt, A, bc, ldbc, Dskip, z, ldz, h, y);
}

static void scan_avx2(int64_t T, int64_t D, int64_t N, const float *u, const float *dt, const float *A,
                      const float *bc, int64_t ldbc, const float *Dskip, const float *z, int64_t ldz, float *h,
                      float *y)
{
#ifdef COIL_HAVE_AVX2
    const int64_t groups = N <= 256 ? D / 8 : 0;
#pragma omp parallel for schedule(static) if (T * D * N > 8192)
    for (int64_t g = 0; g < groups; g++)
        coil_avx2_scan_group(T, D, N, g * 8, u, dt, A, bc, ldbc, Dskip, z, ldz, h, y);
    for (int64_t d = groups * 8; d < D; d++)
        scan_channel(T, D, N, d, u, dt, A, bc, ldbc, Dskip, z, ldz, h, y);
#else
    scan_portable(T, D, N, u, dt, A, bc, ldbc, Dskip, z, ldz, h, y);
#endif
}

static void scan_avx512(int64_t T, int64_t D, int64_t N, const float *u, const float *dt, const float *A,
                        const float *bc, int64_t ldbc, const float *Dskip, const float *z, int64_t ldz, float *h,
                        float *y)
{
#ifdef COIL_HAVE_AVX512
    /* 16 channels a group; a remainder of 8 or more goes through the AVX2
     * group, the last few through the portable channel (fixed by D). */
    const int64_t g16 = N <= 256 ? D / 16 : 0, g8 = N <= 256 ? (D - g16 * 16) / 8 : 0;
#pragma omp parallel for schedule(static) if (T * D * N > 8192)
    for (int64_t g = 0; g < g16; g++)
        coil_avx512_scan_group(T, D, N, g * 16, u, dt, A, bc, ldbc, Dskip, z, ldz, h, y);
    for (int64_t g = 0; g < g8; g++)
        coil_avx2_scan_group(T, D, N, g16 * 16 + g * 8, u, dt, A, bc, ldbc, Dskip, z, ldz, h, y);
    for (int64_t d = g16 * 16 + g8 * 8; d < D; d++)
        scan_channel(T, D, N, d, u, dt, A, bc, ldbc, Dskip, z, ldz, h, y);
#else
    scan_avx2(T, D, N, u, dt, A, bc, ldbc, Dskip, z, ldz, h, y);
#endif
}

static void set_threads(int n)
{
    if (n > 0)
        omp_set_num_threads(n);
    coil_matrix_active(); /* the library is chosen, set single-threaded and checked now */
}

static const coil_backend_ops_t cpu_portable = {
    .name = "cpu",
    .linear = linear_portable,
    .rmsnorm = rmsnorm,
    .conv_silu = conv_silu_portable,
    .scan = scan_portable,
    .add = add,
    .set_threads = set_threads,
};

static const coil_backend_ops_t cpu_avx2 = {
    .name = "cpu-avx2",
    .linear = linear_avx2,
    .rmsnorm = rmsnorm,
    .conv_silu = conv_silu_avx2,
    .scan = scan_avx2,
    .add = add,
    .set_threads = set_threads,
};

static const coil_backend_ops_t cpu_avx512 = {
    .name = "cpu-avx512",
    .linear = linear_avx512,
    .rmsnorm = rmsnorm_avx512,
    .conv_silu = conv_silu_avx512,
    .scan = scan_avx512,
    .add = add,
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
    for (int l = COIL_MATRIX_OPENBLAS; l <= COIL_MATRIX_ONEDNN; l++) {
        if (l == (int)lib || !strstr(coil_matrix_libs(), coil_matrix_lib_name((coil_matrix_lib_t)l)))
            continue;
        coil_matrix_info((coil_matrix_lib_t)l, &mi);
        fprintf(f, "also linked:      %s %s, kernels %s%s%s\n", mi.library, mi.version, mi.kernel,
                mi.below ? "; " : "", mi.below ? mi.note : "");
    }
}
