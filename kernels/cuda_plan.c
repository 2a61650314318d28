/* cuda_plan.c -- launch configuration and buffer sizing for the CUDA backend. */
#include "cuda_plan.h"

#include <string.h>
#include <strings.h>

int coil_cuda_math_parse(const char *s, coil_cuda_math_t *m, coil_err_t *err)
{
    static const char *names[] = {"f32", "tf32", "bf16"};
    for (int i = 0; s && i < 3; i++)
        if (strcasecmp(s, names[i]) == 0) {
            *m = (coil_cuda_math_t)i;
            return 0;
        }
    return coil_err_set(err, COIL_EINVAL, "unknown CUDA matrix arithmetic '%s' (have: f32, tf32, bf16)",
                        s ? s : "(null)");
}

const char *coil_cuda_math_name(coil_cuda_math_t m)
{
    switch (m) {
    case COIL_CUDA_MATH_F32:
        return "f32";
    case COIL_CUDA_MATH_TF32:
        return "tf32";
    case COIL_CUDA_MATH_BF16:
        return "bf16";
    }
    return "unknown";
}

static void zero(coil_cuda_launch_t *L)
{
    memset(L, 0, sizeof *L);
    L->grid.y = L->grid.z = L->block.y = L->block.z = 1;
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

static int pow2ceil(int64_t v)
{
    int p = 1;
    while (p < v)
        p <<= 1;
    return p;
}

static int check_grid(const char *what, int64_t gx, int64_t gy, coil_err_t *err)
{
    if (gx > COIL_CUDA_MAX_GRID_X)
        return coil_err_set(err, COIL_ETOOBIG, "%s: %lld blocks along x exceed the device limit %lld", what,
                            (long long)gx, (long long)COIL_CUDA_MAX_GRID_X);
    if (gy > COIL_CUDA_MAX_GRID_YZ)
        return coil_err_set(err, COIL_ETOOBIG, "%s: %lld sequences exceed the grid limit %lld", what,
                            (long long)gy, (long long)COIL_CUDA_MAX_GRID_YZ);
    return 0;
}

int coil_cuda_plan_scan(int64_t T, int64_t D, int64_t N, int64_t nseq, int sms, coil_cuda_launch_t *L,
                        coil_err_t *err)
{
    zero(L);
    if (T < 0 || D <= 0 || N <= 0 || nseq <= 0)
        return coil_err_set(err, COIL_EINVAL, "scan: invalid shape T=%lld D=%lld N=%lld sequences=%lld",
                            (long long)T, (long long)D, (long long)N, (long long)nseq);
    if (N > COIL_CUDA_SCAN_MAX_STATE)
        return coil_err_set(err, COIL_EUNSUPPORTED,
                            "scan: d_state %lld is above the %d states the CUDA scan keeps in registers", (long long)N,
                            COIL_CUDA_SCAN_MAX_STATE);
    if (T > INT32_MAX || D > INT32_MAX)
        return coil_err_set(err, COIL_ETOOBIG, "scan: T=%lld or D=%lld above 2^31-1", (long long)T, (long long)D);
    if (sms <= 0)
        sms = COIL_CUDA_DEFAULT_SMS;
    int group, per_lane;
    if (N <= 32) {
        group = pow2ceil(N);
        per_lane = 1;
    } else {
        group = 32;
        per_lane = pow2ceil(cdiv(N, 32));
    }
    int block = 128;
    for (int b = 512; b > 128; b >>= 1)
        if (cdiv(D, b / group) * nseq >= 2 * (int64_t)sms) {
            block = b;
            break;
        }
    int channels = block / group;
    int64_t gx = cdiv(D, channels);
    int rc = check_grid("scan", gx, nseq, err);
    if (rc)
        return rc;
    /* shared: B and C (tile x N each), u, delta, z, y (tile x channels each) */
    int tile = COIL_CUDA_SCAN_TILE;
    size_t per_token = (size_t)(2 * N + 4 * channels) * sizeof(float);
    while (tile > 1 && (size_t)tile * per_token > COIL_CUDA_SMEM_MAX)
        tile >>= 1;
    if (T > 0 && T < tile)
        tile = (int)T;
    L->tile = tile;
    L->group = group;
    L->per_lane = per_lane;
    L->channels = channels;
    L->block.x = (unsigned)block;
    L->smem = (size_t)tile * per_token;
    L->grid.x = T == 0 ? 0 : (unsigned)gx;
    L->grid.y = (unsigned)nseq;
    return 0;
}

static int plan_1d(const char *what, int64_t n, coil_cuda_launch_t *L, coil_err_t *err)
{
    zero(L);
    if (n < 0)
        return coil_err_set(err, COIL_EINVAL, "%s: negative size %lld", what, (long long)n);
    int64_t g = cdiv(n, COIL_CUDA_EW_BLOCK);
    if (g > COIL_CUDA_EW_MAX_BLOCKS)
        g = COIL_CUDA_EW_MAX_BLOCKS; /* grid-stride loop covers the rest */
    L->block.x = COIL_CUDA_EW_BLOCK;
    L->grid.x = (unsigned)g;
    return 0;
}

int coil_cuda_plan_conv(int64_t T, int64_t D, int64_t K, int64_t nseq, coil_cuda_launch_t *L, coil_err_t *err)
{
    zero(L);
    if (T < 0 || D <= 0 || nseq <= 0)
        return coil_err_set(err, COIL_EINVAL, "conv1d: invalid shape T=%lld D=%lld sequences=%lld", (long long)T,
                            (long long)D, (long long)nseq);
    if (K < 1 || K > COIL_CUDA_MAX_CONV)
        return coil_err_set(err, COIL_EUNSUPPORTED, "conv1d: d_conv %lld outside [1, %d]", (long long)K,
                            COIL_CUDA_MAX_CONV);
    int64_t n;
    if (__builtin_mul_overflow(T, D, &n) || __builtin_mul_overflow(n, nseq, &n))
        return coil_err_set(err, COIL_ETOOBIG, "conv1d: T x D x sequences overflows");
    return plan_1d("conv1d", n, L, err);
}

int coil_cuda_plan_conv_state(int64_t D, int64_t nseq, coil_cuda_launch_t *L, coil_err_t *err)
{
    zero(L);
    if (D <= 0 || nseq <= 0)
        return coil_err_set(err, COIL_EINVAL, "conv state: invalid shape D=%lld sequences=%lld", (long long)D,
                            (long long)nseq);
    return plan_1d("conv state", D * nseq, L, err);
}

int coil_cuda_plan_rows(int64_t rows, int64_t cols, coil_cuda_launch_t *L, coil_err_t *err)
{
    zero(L);
    if (rows < 0 || cols <= 0)
        return coil_err_set(err, COIL_EINVAL, "rmsnorm: invalid shape rows=%lld cols=%lld", (long long)rows,
                            (long long)cols);
    if (rows > COIL_CUDA_MAX_GRID_X)
        return coil_err_set(err, COIL_ETOOBIG, "rmsnorm: %lld rows exceed the grid limit", (long long)rows);
    int b = pow2ceil(cdiv(cols, 4));
    if (b < 32)
        b = 32;
    if (b > COIL_CUDA_MAX_BLOCK)
        b = COIL_CUDA_MAX_BLOCK;
    L->block.x = (unsigned)b;
    L->grid.x = (unsigned)rows;
    L->smem = (size_t)(b / 32) * sizeof(float);
    return 0;
}

int coil_cuda_plan_elementwise(int64_t n, coil_cuda_launch_t *L, coil_err_t *err)
{
    return plan_1d("elementwise", n, L, err);
}

/* ---- buffers ----------------------------------------------------------------- */

typedef struct {
    size_t off;
    int overflow;
} arena_t;

/* Reserves count floats (elem bytes each); returns the offset. */
static size_t take(arena_t *a, int64_t count, size_t elem)
{
    size_t bytes, off = a->off;
    if (count < 0 || __builtin_mul_overflow((size_t)count, elem, &bytes) ||
        __builtin_add_overflow(bytes, (size_t)COIL_CUDA_ALIGN - 1, &bytes)) {
        a->overflow = 1;
        return 0;
    }
    bytes &= ~(size_t)(COIL_CUDA_ALIGN - 1);
    if (__builtin_add_overflow(a->off, bytes, &a->off))
        a->overflow = 1;
    return off;
}

static int64_t mul(int64_t a, int64_t b, int *ovf)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) {
        *ovf = 1;
        return 0;
    }
    return r;
}

int64_t coil_cuda_shape_params(const coil_cuda_shape_t *s)
{
    const int64_t H = s->d_model, D = s->d_inner, N = s->d_state, K = s->d_conv, R = s->dt_rank, V = s->vocab;
    int64_t layer = H                              /* norm */
                    + 2 * D * H + (s->use_bias ? 2 * D : 0) /* in_proj */
                    + D * K + (s->use_conv_bias ? D : 0)    /* conv1d */
                    + (R + 2 * N) * D                       /* x_proj */
                    + D * R + D                             /* dt_proj + bias */
                    + D * N + D                             /* A_log, D */
                    + H * D + (s->use_bias ? H : 0);        /* out_proj */
    return s->n_layer * layer + V * H + H + (s->tied ? 0 : V * H);
}

double coil_cuda_shape_flops_per_token(const coil_cuda_shape_t *s, int with_head)
{
    const double H = (double)s->d_model, D = (double)s->d_inner, N = (double)s->d_state, R = (double)s->dt_rank;
    double layer = 2.0 * (2 * D * H + (R + 2 * N) * D + D * R + H * D);
    return (double)s->n_layer * layer + (with_head ? 2.0 * (double)s->vocab * H : 0.0);
}

int coil_cuda_plan_buffers(const coil_cuda_shape_t *s, int64_t max_chunk, int64_t nseq, int with_logits,
                           coil_cuda_buffers_t *b, coil_err_t *err)
{
    memset(b, 0, sizeof *b);
    const struct {
        const char *name;
        int64_t v;
    } dims[] = {{"d_model", s->d_model}, {"d_inner", s->d_inner}, {"d_state", s->d_state},
                {"d_conv", s->d_conv},   {"dt_rank", s->dt_rank}, {"n_layer", s->n_layer},
                {"vocab", s->vocab},     {"max_chunk", max_chunk}, {"sequences", nseq}};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].v <= 0)
            return coil_err_set(err, COIL_EINVAL, "CUDA buffers: %s is %lld, must be positive", dims[i].name,
                                (long long)dims[i].v);
    if (s->d_state > COIL_CUDA_SCAN_MAX_STATE)
        return coil_err_set(err, COIL_EUNSUPPORTED, "CUDA buffers: d_state %lld is above %d", (long long)s->d_state,
                            COIL_CUDA_SCAN_MAX_STATE);
    if (s->d_conv > COIL_CUDA_MAX_CONV)
        return coil_err_set(err, COIL_EUNSUPPORTED, "CUDA buffers: d_conv %lld is above %d", (long long)s->d_conv,
                            COIL_CUDA_MAX_CONV);
    int ovf = 0;
    const int64_t H = s->d_model, D = s->d_inner, N = s->d_state, R = s->dt_rank;
    const int64_t rows = mul(max_chunk, nseq, &ovf);
    arena_t a = {0, 0};
    b->rows = rows;
    b->resid = take(&a, mul(rows, H, &ovf), 4);
    b->xn = take(&a, mul(rows, H, &ovf), 4);
    b->xz = take(&a, mul(rows, 2 * D, &ovf), 4);
    b->u = take(&a, mul(rows, D, &ovf), 4);
    b->xdbl = take(&a, mul(rows, R + 2 * N, &ovf), 4);
    b->dt = take(&a, mul(rows, D, &ovf), 4);
    b->y = take(&a, mul(rows, D, &ovf), 4);
    b->out = take(&a, mul(rows, H, &ovf), 4);
    b->ids = take(&a, rows, 4);
    if (with_logits)
        b->logits = take(&a, mul(rows, s->vocab, &ovf), 4);
    b->arena = a.off;
    int64_t conv = mul(mul(mul(s->n_layer, nseq, &ovf), s->d_conv - 1, &ovf), D, &ovf);
    int64_t ssm = mul(mul(mul(s->n_layer, nseq, &ovf), D, &ovf), N, &ovf);
    arena_t st = {0, 0};
    take(&st, conv, 4);
    b->conv_state = st.off;
    take(&st, ssm, 4);
    b->ssm_state = st.off - b->conv_state;
    b->state = st.off;
    int64_t params = coil_cuda_shape_params(s);
    if (params <= 0 || (uint64_t)params > SIZE_MAX / 4)
        ovf = 1;
    b->weights = (size_t)params * 4;
    if (ovf || a.overflow || st.overflow || __builtin_add_overflow(b->arena, b->state, &b->total) ||
        __builtin_add_overflow(b->total, b->weights, &b->total))
        return coil_err_set(err, COIL_ETOOBIG,
                            "CUDA buffers: sizes overflow for max_chunk %lld x %lld sequences (d_model %lld, vocab %lld)",
                            (long long)max_chunk, (long long)nseq, (long long)H, (long long)s->vocab);
    return 0;
}
