/* bench_engine.c -- engine throughput on a published model's shape, with ceilings.
 *
 *   tests/bench/bench_engine [--shape NAME] [--layers N] [--dtype F32|F16|BF16] [--threads N]
 *                            [--tokens N] [--decode N] [--model DIR] [--no-ceilings]
 *
 * Without --model it writes a random-weight model of the shape NAME to a temp
 * dir (--layers N keeps the layer shape, changes the depth):
 *   mamba-130m       state-spaces/mamba-130m-hf: d_model 768, 24 layers, vocab 50280,
 *                    d_state 16, d_conv 4, expand 2 (the default)
 *   mamba2-130m      state-spaces/mamba2-130m: d_model 768, 24 layers, vocab 50288
 *                    (50277 padded to 16), d_state 128, head_dim 64, n_groups 1, expand 2, conv 4
 *   mamba2-780m      the same with d_model 1536, 48 layers
 *   falcon-mamba-7b  tiiuae/falcon-mamba-7b: d_model 4096, 64 layers, d_state 16, expand 2,
 *                    conv 4, dt_rank 256, vocab 65024, untied
 * Reports: prefill tokens/s at chunks of
 * 512 and 2048 (LM head skipped, as in ingest), decode tokens/s (one token in,
 * next-token logits out) with p50/p99 step latency, peak RSS; and the
 * machine's ceilings: sgemm GFLOP/s on the model's own shapes (same threads,
 * through the backend's own linear(), once per matrix library built) and
 * memory read bandwidth.  First it prints what runs: CPU, cpuid features,
 * kernel set, matrix library (backend.h: coil_backend_print_info).
 */
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "backend.h"
#include "engine.h"
#include "family.h"
#include "testutil.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* sgemm GFLOP/s for y(T,N) = x(T,K) W(N,K)^T through the backend's linear()
 * (F32 weights: the engine's own split over threads and library call). */
static double sgemm_gflops(int64_t T, int64_t N, int64_t K, int reps)
{
    float *x = aligned_alloc(64, (size_t)(T * K) * 4), *w = aligned_alloc(64, (size_t)(N * K) * 4),
          *y = aligned_alloc(64, (size_t)(T * N) * 4);
    for (int64_t i = 0; i < T * K; i++)
        x[i] = (float)(i % 7) * 0.1f;
    for (int64_t i = 0; i < N * K; i++)
        w[i] = (float)(i % 5) * 0.1f;
    const coil_backend_ops_t *ops = coil_backend_cpu();
    coil_matrix_t W = {.dtype = COIL_DT_F32, .data = w, .rows = N, .cols = K};
    ops->linear(&W, NULL, x, K, y, N, T, NULL); /* warm-up */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        ops->linear(&W, NULL, x, K, y, N, T, NULL);
        double dt = now() - t0;
        if (dt < best)
            best = dt;
    }
    free(x);
    free(w);
    free(y);
    return 2.0 * (double)T * (double)N * (double)K / best / 1e9;
}

/* Read bandwidth: sum a buffer much larger than the caches. */
static double read_gbps(size_t bytes, int reps)
{
    size_t n = bytes / sizeof(float);
    float *a = aligned_alloc(64, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        a[i] = 1.0f;
    double best = 1e30, sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now(), s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
        for (size_t i = 0; i < n; i += 16) {
            float acc = 0;
            for (int j = 0; j < 16; j++)
                acc += a[i + j];
            s += acc;
        }
        double dt = now() - t0;
        sink += s;
        if (dt < best)
            best = dt;
    }
    free(a);
    return sink > 0 ? (double)bytes / best / 1e9 : 0;
}

typedef struct {
    const char *name, *family;
    int64_t d_model, n_layer, vocab, d_state, dt_rank, head_dim, n_groups;
    int tied;
} bench_shape_t;

static const bench_shape_t shapes_known[] = {
    {"mamba-130m", "mamba", 768, 24, 50280, 16, 0, 0, 0, 1},
    {"mamba2-130m", "mamba2", 768, 24, 50288, 128, 0, 64, 1, 1},
    {"mamba2-780m", "mamba2", 1536, 48, 50288, 128, 0, 64, 1, 1},
    {"falcon-mamba-7b", "falcon_mamba", 4096, 64, 65024, 16, 256, 0, 0, 0},
};

/* The family's own steps on one layer's shape, T tokens, per kernel set this
 * CPU has: best of reps, ms (each set against the portable one, same run).
 * Mamba-2: scan_heads, rmsnorm_gated; Falcon-Mamba: the three weightless norms;
 * Mamba-1: scan. */
static void family_ops_table(const coil_model_config_t *cf, int64_t T, int threads, int reps)
{
    const int64_t D = cf->d_inner, N = cf->d_state, H = cf->n_heads, P = cf->head_dim, G = cf->n_groups,
                  R = cf->dt_rank;
    const int m2 = H > 0, falcon = cf->mixer_rms_eps > 0;
    const int64_t ldx = m2 ? 2 * D + 2 * G * N + H : R + 2 * N, nx = T * (ldx > D ? ldx : D);
    float *x = aligned_alloc(64, (size_t)nx * 4 + 64), *z = aligned_alloc(64, (size_t)(T * D) * 4 + 64),
          *y = aligned_alloc(64, (size_t)(T * D) * 4 + 64), *w = aligned_alloc(64, (size_t)(D * N + D) * 4 + 64),
          *st = aligned_alloc(64, (size_t)(D * N) * 4 + 64), *x2 = aligned_alloc(64, (size_t)nx * 4 + 64);
    for (int64_t i = 0; i < nx; i++)
        x[i] = (float)((i * 7919) % 2001) / 1000.0f - 1.0f;
    for (int64_t i = 0; i < T * D; i++)
        z[i] = (float)((i * 104729) % 2001) / 1000.0f - 1.0f;
    for (int64_t i = 0; i < D * N + D; i++)
        w[i] = -0.5f - (float)(i % 13) / 13.0f; /* A (negative), D, norm weights */
    printf("the family's own steps, one layer, T=%lld, %d threads, best of %d (ms):\n", (long long)T, threads, reps);
    double base[3] = {0};
    for (int k = COIL_KSET_PORTABLE; k <= COIL_KSET_AVX512; k++) {
        const coil_backend_ops_t *ops = coil_backend_cpu_kernels((coil_kset_t)k);
        if (!ops)
            continue;
        ops->set_threads(threads);
        double best[3] = {1e30, 1e30, 1e30};
        for (int r = 0; r < reps; r++) {
            memset(st, 0, (size_t)(D * N) * 4);
            double t0 = now();
            if (m2)
                ops->scan_heads(T, H, P, N, G, x, ldx, x + D, ldx, x + D + D + 2 * G * N, ldx, w, 0.0f, INFINITY, w,
                                w + H, st, y);
            else
                ops->scan(T, D, N, x, z, w, x + R, ldx, w + D * N, z, D, st, y);
            double t1 = now();
            if (m2) {
                memcpy(y, z, (size_t)(T * D) * 4);
                t1 = now();
                ops->rmsnorm_gated(y, z, D, w, 1e-5f, D / G, T, D);
            } else if (falcon) {
                memcpy(x2, x, (size_t)(T * ldx) * 4);
                t1 = now();
                ops->rmsnorm_weightless(x2, ldx, 1e-6f, T, R);
                ops->rmsnorm_weightless(x2 + R, ldx, 1e-6f, T, N);
                ops->rmsnorm_weightless(x2 + R + N, ldx, 1e-6f, T, N);
            }
            double t2 = now();
            if (t1 - t0 < best[0])
                best[0] = t1 - t0;
            if (t2 - t1 < best[1])
                best[1] = t2 - t1;
        }
        if (k == COIL_KSET_PORTABLE)
            memcpy(base, best, sizeof base);
        printf("  %-8s %s %8.3f (%.2fx)", coil_kernels_name((coil_kset_t)k), m2 ? "scan_heads" : "scan",
               1e3 * best[0], base[0] / best[0]);
        if (m2 || falcon)
            printf("; %s %8.3f (%.2fx)", m2 ? "rmsnorm_gated" : "weightless norms x3", 1e3 * best[1],
                   base[1] / best[1]);
        printf("\n");
    }
    coil_backend_cpu()->set_threads(threads);
    free(x);
    free(x2);
    free(z);
    free(y);
    free(w);
    free(st);
}

int main(int argc, char **argv)
{
    const char *dtype = "F32", *model_dir = NULL, *shape_arg = "mamba-130m";
    int64_t layers = 0;
    int threads = 2, ceilings = 1;
    int64_t tokens = 4096, n_decode = 64;
    static const struct option lo[] = {{"dtype", 1, 0, 'd'},  {"threads", 1, 0, 't'}, {"tokens", 1, 0, 'n'},
                                       {"decode", 1, 0, 'g'}, {"model", 1, 0, 'm'},   {"no-ceilings", 0, 0, 'C'},
                                       {"shape", 1, 0, 's'},  {"layers", 1, 0, 'l'},   {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'd': dtype = optarg; break;
        case 't': threads = atoi(optarg); break;
        case 'n': tokens = atoll(optarg); break;
        case 'g': n_decode = atoll(optarg); break;
        case 'm': model_dir = optarg; break;
        case 'C': ceilings = 0; break;
        case 's': shape_arg = optarg; break;
        case 'l': layers = atoll(optarg); break;
        default:
        usage:
            fprintf(stderr, "usage: bench_engine [--shape mamba-130m|mamba2-130m|mamba2-780m|falcon-mamba-7b] "
                            "[--layers N] [--dtype F32|F16|BF16] [--threads N] [--tokens N] [--decode N] "
                            "[--model DIR] [--no-ceilings]\n");
            return 2;
        }
    }
    const bench_shape_t *bs = NULL;
    for (size_t i = 0; i < sizeof shapes_known / sizeof shapes_known[0]; i++)
        if (strcmp(shape_arg, shapes_known[i].name) == 0)
            bs = &shapes_known[i];
    if (!bs || layers < 0 || tokens < 16 || n_decode < 1)
        goto usage;
    char shape_desc[128];
    snprintf(shape_desc, sizeof shape_desc, "%s shape%s", model_dir ? "--model" : bs->name,
             !model_dir && layers && layers != bs->n_layer ? " (layers reduced)" : "");
    char *tmp = NULL;
    if (!model_dir) {
        tu_model_shape_t sh = {.d_model = bs->d_model, .n_layer = layers ? layers : bs->n_layer, .vocab = bs->vocab,
                               .d_state = bs->d_state, .d_conv = 4, .expand = 2, .dt_rank = bs->dt_rank,
                               .tied = bs->tied, .dtype = dtype, .family = bs->family, .head_dim = bs->head_dim,
                               .n_groups = bs->n_groups};
        tmp = tu_mkdtemp();
        fprintf(stderr, "writing a random %s model of the %s shape, %lld layers, to %s ...\n", dtype, bs->name,
                (long long)sh.n_layer, tmp);
        if (!tmp || tu_write_random_model(tmp, &sh, 42) != 0) {
            fprintf(stderr, "bench_engine: cannot write the model\n");
            return 1;
        }
        model_dir = tmp;
    }
    coil_err_t err = {0};
    coil_model_t *m = coil_model_load(model_dir, &err);
    if (!m) {
        fprintf(stderr, "bench_engine: %s\n", err.msg);
        return 1;
    }
    const coil_model_config_t *cf = coil_model_config(m);
    const int64_t H = cf->d_model, D = cf->d_inner, N = cf->d_state, R = cf->dt_rank, V = cf->vocab_size;
    /* the layer's products (T = 512; the first once more at T = 2048): Mamba-1 and Falcon-Mamba
     * in_proj, out_proj, x_proj, dt_proj; Mamba-2 in_proj (z | xBC | dt), out_proj */
    const int m2 = cf->n_heads > 0;
    const int64_t PR = 2 * D + 2 * cf->n_groups * N + cf->n_heads;
    int64_t shapes[5][3] = {{512, 2 * D, H}, {512, H, D}, {512, R + 2 * N, D}, {512, D, R}, {2048, 2 * D, H}};
    const char *shape_name[5] = {"in_proj", "out_proj", "x_proj", "dt_proj", "in_proj"};
    int nsh = 5, nsh512 = 4;
    if (m2) {
        shapes[0][1] = PR;
        shapes[2][0] = 2048, shapes[2][1] = PR, shapes[2][2] = H;
        shape_name[2] = "in_proj";
        nsh = 3, nsh512 = 2;
    }
    double flop_tok = 0;
    for (int sh = 0; sh < nsh512; sh++)
        flop_tok += 2.0 * (double)cf->n_layer * (double)(shapes[sh][1] * shapes[sh][2]);
    int32_t *ids = malloc((size_t)tokens * sizeof *ids);
    for (int64_t i = 0; i < tokens; i++)
        ids[i] = (int32_t)((i * 7919) % (V - 3));

    coil_backend_print_info(stdout);
    printf("model: %s, family %s, %lld layers, %s weights, %lld params; threads %d; backend ", shape_desc,
           cf->family->model_type, (long long)cf->n_layer, dtype, (long long)coil_model_param_count(m), threads);
    const int64_t chunks[2] = {512, 2048};
    double prefill[2];
    for (int k = 0; k < 2; k++) {
        coil_engine_options_t eo = {.max_chunk = chunks[k], .threads = threads};
        coil_engine_t *e = coil_engine_new(m, &eo, &err);
        coil_state_t *st = coil_state_new(m, &err);
        if (!e || !st) {
            fprintf(stderr, "bench_engine: %s\n", err.msg);
            return 1;
        }
        if (k == 0)
            printf("%s\n", coil_engine_backend_name(e));
        coil_engine_forward(e, st, ids, chunks[k] < tokens ? chunks[k] : tokens, NULL, &err); /* warm-up: page in the weights */
        coil_state_reset(st);
        double t0 = now();
        coil_engine_forward(e, st, ids, tokens, NULL, &err);
        prefill[k] = (double)tokens / (now() - t0);
        coil_state_destroy(&st);
        coil_engine_destroy(&e);
    }
    /* decode: feed one token, compute next-token logits, repeat */
    coil_engine_options_t eo = {.max_chunk = 512, .threads = threads};
    coil_engine_t *e = coil_engine_new(m, &eo, &err);
    coil_state_t *st = coil_state_new(m, &err);
    float *lg = malloc((size_t)V * sizeof(float));
    double *lat = malloc((size_t)n_decode * sizeof(double));
    coil_engine_forward(e, st, ids, 16, NULL, &err);
    for (int64_t i = 0; i < 4; i++) { /* warm-up */
        coil_engine_next_logits(e, st, lg, &err);
        coil_engine_forward(e, st, ids + i, 1, NULL, &err);
    }
    double t0 = now();
    for (int64_t i = 0; i < n_decode; i++) {
        double s = now();
        coil_engine_next_logits(e, st, lg, &err);
        coil_engine_forward(e, st, ids + (i % tokens), 1, NULL, &err);
        lat[i] = now() - s;
    }
    double decode = (double)n_decode / (now() - t0);
    qsort(lat, (size_t)n_decode, sizeof *lat, cmp_d);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    size_t wbytes = (size_t)coil_model_param_count(m) * (strcmp(dtype, "F32") == 0 ? 4 : 2);

    /* ceilings: every matrix library on the layer shapes, T = 512 and 2048 */
    omp_set_num_threads(threads);
    const coil_matrix_lib_t in_use = coil_matrix_active();
    double sgemm = 0, sgemm_best = 0;
    const char *best_lib = "";
    /* Libraries in turn, shape by shape, 3 rounds, best of each: a shared
     * machine's drift then hits every library alike. */
    const char *lib_names[2];
    int nlib = 0;
    if (ceilings) {
        lib_names[nlib++] = "openblas";
        if (strstr(coil_matrix_libs(), "onednn"))
            lib_names[nlib++] = "onednn";
    }
    double gfs[2][5] = {{0}};
    for (int round = 0; round < 3; round++)
        for (int sh = 0; sh < nsh; sh++)
            for (int li = 0; li < nlib; li++) {
                coil_matrix_select(lib_names[li]);
                double gf = sgemm_gflops(shapes[sh][0], shapes[sh][1], shapes[sh][2], 3);
                if (gf > gfs[li][sh])
                    gfs[li][sh] = gf;
            }
    if (ceilings)
        printf("sgemm through linear(), %d threads, GFLOP/s, best of 3 rounds (T x N x K):\n", threads);
    for (int li = 0; li < nlib; li++) {
        coil_matrix_select(lib_names[li]);
        coil_matrix_info_t mi;
        coil_matrix_info(coil_matrix_active(), &mi);
        printf("  %-8s %-6s %-24s", mi.library, mi.version, mi.kernel);
        double fl = 0, tm = 0; /* time-weighted over the T=512 layer products */
        for (int sh = 0; sh < nsh; sh++) {
            printf(" %s %lldx%lldx%lld %.0f;", shape_name[sh], (long long)shapes[sh][0], (long long)shapes[sh][1],
                   (long long)shapes[sh][2], gfs[li][sh]);
            if (sh < nsh512) {
                double f = 2.0 * (double)shapes[sh][0] * (double)shapes[sh][1] * (double)shapes[sh][2];
                fl += f;
                tm += f / gfs[li][sh];
            }
        }
        printf(" layer mix %.1f%s\n", fl / tm, coil_matrix_active() == in_use ? "  <- in use" : "");
        if (coil_matrix_active() == in_use)
            sgemm = fl / tm;
        if (fl / tm > sgemm_best) {
            sgemm_best = fl / tm;
            best_lib = mi.library;
        }
    }
    coil_matrix_select(coil_matrix_lib_name(in_use));
    double bw = ceilings ? read_gbps((size_t)1 << 30, 3) : 0;
    family_ops_table(cf, 512, threads, 5);

    printf("prefill chunk  512: %8.1f tok/s\n", prefill[0]);
    printf("prefill chunk 2048: %8.1f tok/s\n", prefill[1]);
    printf("decode:             %8.1f tok/s  (step p50 %.2f ms, p99 %.2f ms)\n", decode,
           1e3 * lat[n_decode / 2], 1e3 * lat[(n_decode * 99) / 100]);
    printf("peak RSS:           %8.1f MiB (weights mapped %.1f MiB, engine scratch at chunk 512 %.1f MiB)\n",
           (double)ru.ru_maxrss / 1024.0, (double)wbytes / 1048576.0,
           (double)coil_engine_scratch_bytes(e) / 1048576.0);
    if (ceilings) {
        printf("ceiling: sgemm on the layer shapes, T=512: %.1f GFLOP/s in use (best %.1f, %s; in use at %.0f%%); "
               "%.3f GFLOP/token -> %.0f tok/s\n",
               sgemm, sgemm_best, best_lib, 100.0 * sgemm / sgemm_best, flop_tok / 1e9, sgemm_best * 1e9 / flop_tok);
        printf("ceiling: memory read %.1f GB/s; %.1f MB of weights per decoded token -> %.1f tok/s\n", bw,
               (double)wbytes / 1e6, bw * 1e9 / (double)wbytes);
        printf("prefill at %.0f%% of the sgemm ceiling; decode at %.0f%% of the bandwidth ceiling\n",
               100.0 * prefill[0] / (sgemm_best * 1e9 / flop_tok), 100.0 * decode / (bw * 1e9 / (double)wbytes));
    }
    free(lat);
    free(lg);
    free(ids);
    coil_state_destroy(&st);
    coil_engine_destroy(&e);
    coil_model_destroy(&m);
    if (tmp) {
        tu_rm_rf(tmp);
        free(tmp);
    }
    return 0;
}
