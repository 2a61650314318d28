/* cpu_rwkv.c -- the CPU kernels of RWKV-4's ops (kernels/backend.h: layernorm,
 * token_mix, wkv, relu_sq, sigmoid_mul_add, scale), portable C, as
 * transformers' modeling_rwkv.py computes them in float32 op by op (no
 * fused multiply-add: the build is -std=c11, whose default is
 * -ffp-contract=off).  The AVX2 and AVX-512 sets run wkv and sigmoid_mul_add
 * through kernels/cpu_rwkv_avx2.c (8 channels at a time); the rest is the
 * same code in every set.
 *
 * Threading: rows (layernorm) or channels (wkv) are split over the pool in
 * pieces fixed by the shape; each output element is computed by one thread
 * in one order, so the bits do not depend on the thread count.
 */
#include "cpu_rwkv.h"

#include "config.h"

#include <math.h>
#include <string.h>

#include "pool.h"

typedef void (*piece_fn)(const void *job, int64_t i0, int64_t i1);
typedef struct {
    piece_fn fn;
    const void *job;
    int64_t n, grain;
} pieces_t;

static void piece(void *ctx, int64_t it)
{
    const pieces_t *p = ctx;
    const int64_t i0 = it * p->grain, i1 = i0 + p->grain < p->n ? i0 + p->grain : p->n;
    p->fn(p->job, i0, i1);
}

static void over(int64_t n, int64_t grain, int parallel, piece_fn fn, const void *job)
{
    if (!parallel || n <= grain) {
        fn(job, 0, n);
        return;
    }
    pieces_t p = {fn, job, n, grain};
    coil_pool_for((n + grain - 1) / grain, piece, &p);
}

/* ---- nn.LayerNorm ------------------------------------------------------------- */

typedef struct {
    const float *x, *w, *b;
    float eps, *y;
    int64_t H;
} ln_job_t;

static void ln_rows(const void *job, int64_t t0, int64_t t1)
{
    const ln_job_t *j = job;
    const int64_t H = j->H;
    for (int64_t t = t0; t < t1; t++) {
        const float *xr = j->x + t * H;
        float *yr = j->y + t * H;
        double s = 0.0, ss = 0.0;
        for (int64_t i = 0; i < H; i++)
            s += xr[i];
        const double mean = s / (double)H;
        for (int64_t i = 0; i < H; i++)
            ss += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        /* biased variance, as torch.layer_norm */
        const float m = (float)mean, r = 1.0f / sqrtf((float)(ss / (double)H) + j->eps);
        for (int64_t i = 0; i < H; i++)
            yr[i] = (xr[i] - m) * r * j->w[i] + j->b[i];
    }
}

void coil_cpu_layernorm(const float *x, const float *w, const float *b, float eps, float *y, int64_t T, int64_t H)
{
    ln_job_t j = {x, w, b, eps, y, H};
    over(T, 16, T * H > 65536, ln_rows, &j);
}

/* ---- token shift + mix ---------------------------------------------------------- */

void coil_cpu_token_mix(const float *x, float *shift, int nmix, const float *const *mix, float *const *out,
                        int64_t T, int64_t H)
{
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * H, *prev = t ? x + (t - 1) * H : shift;
        for (int j = 0; j < nmix; j++) {
            const float *m = mix[j];
            float *o = out[j] + t * H;
            /* hidden * time_mix + shifted * (1 - time_mix) */
            for (int64_t i = 0; i < H; i++)
                o[i] = xr[i] * m[i] + prev[i] * (1.0f - m[i]);
        }
    }
    if (T > 0)
        memcpy(shift, x + (T - 1) * H, (size_t)H * sizeof(float));
}

/* ---- WKV (rwkv_linear_attention_cpu) -------------------------------------------- */

typedef struct {
    int64_t T, A, ld;
    const float *k, *v, *r, *decay, *first;
    float *num, *den, *mx, scale, *y;
} wkv_job_t;

static float sigmoid_ref(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

static void wkv_channels(const void *job, int64_t a0, int64_t a1)
{
    const wkv_job_t *j = job;
    for (int64_t a = a0; a < a1; a++) {
        const float w = j->decay[a], u = j->first[a];
        float num = j->num[a], den = j->den[a], mx = j->mx[a];
        for (int64_t t = 0; t < j->T; t++) {
            const float k = j->k[t * j->ld + a], v = j->v[t * j->ld + a];
            /* wkv at time t: q = max(mx, k + u); one of e^(mx - q), e^(k + u - q) is
             * e^0 = 1 exactly, so only the other is computed (the same bits) */
            const float ku = k + u;
            float e1 = 1.0f, e2 = 1.0f;
            if (mx > ku)
                e2 = expf(ku - mx);
            else
                e1 = expf(mx - ku);
            const float wkv = (e1 * num + e2 * v) / (e1 * den + e2);
            j->y[t * j->A + a] = sigmoid_ref(j->r[t * j->ld + a]) * wkv * j->scale;
            /* the state for t + 1 */
            const float mw = mx + w, qs = mw > k ? mw : k;
            e1 = e2 = 1.0f;
            if (mw > k)
                e2 = expf(k - mw);
            else
                e1 = expf(mw - k);
            num = e1 * num + e2 * v;
            den = e1 * den + e2;
            mx = qs;
        }
        j->num[a] = num;
        j->den[a] = den;
        j->mx[a] = mx;
    }
}

void coil_cpu_wkv(int64_t T, int64_t A, const float *k, const float *v, const float *r, int64_t ld,
                  const float *decay, const float *first, float *state, float scale, float *y)
{
    wkv_job_t j = {T, A, ld, k, v, r, decay, first, state, state + A, state + 2 * A, scale, y};
    over(A, 64, T * A > 16384, wkv_channels, &j);
}

#ifdef COIL_HAVE_AVX2
static void wkv_groups_avx2(const void *job, int64_t g0, int64_t g1)
{
    const wkv_job_t *j = job;
    for (int64_t g = g0; g < g1; g++)
        coil_avx2_wkv_group(j->T, j->A, g * 8, j->k, j->v, j->r, j->ld, j->decay, j->first, j->num, j->scale, j->y);
}
#endif

/* 8 channels a group (each on one thread), the last A % 8 through the portable loop. */
void coil_cpu_wkv_avx2(int64_t T, int64_t A, const float *k, const float *v, const float *r, int64_t ld,
                       const float *decay, const float *first, float *state, float scale, float *y)
{
#ifdef COIL_HAVE_AVX2
    wkv_job_t j = {T, A, ld, k, v, r, decay, first, state, state + A, state + 2 * A, scale, y};
    over(A / 8, 8, T * A > 16384, wkv_groups_avx2, &j);
    wkv_channels(&j, A / 8 * 8, A);
#else
    coil_cpu_wkv(T, A, k, v, r, ld, decay, first, state, scale, y);
#endif
}

/* ---- channel mix ------------------------------------------------------------------ */

void coil_cpu_relu_sq(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++) {
        const float p = x[i] > 0.0f ? x[i] : 0.0f; /* torch.square(torch.relu(key)) */
        x[i] = p * p * scale;
    }
}

void coil_cpu_sigmoid_mul_add(float *y, const float *r, const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += sigmoid_ref(r[i]) * v[i];
}

void coil_cpu_sigmoid_mul_add_avx2(float *y, const float *r, const float *v, int64_t n)
{
#ifdef COIL_HAVE_AVX2
    const int64_t done = coil_avx2_sigmoid_mul_add(y, r, v, n);
    coil_cpu_sigmoid_mul_add(y + done, r + done, v + done, n - done);
#else
    coil_cpu_sigmoid_mul_add(y, r, v, n);
#endif
}

void coil_cpu_scale(float *x, int64_t n, float s)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= s;
}
