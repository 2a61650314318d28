/* bench_cuda.c -- the CUDA backend's throughput against a roofline measured
 * in the same run (built with --with-cuda only; tests/gpu/run.sh runs it).
 *
 *   tests/bench/bench_cuda --write-model DIR --shape 130m|370m|790m|1.4b|2.8b [--dtype BF16]
 *   tests/bench/bench_cuda --model DIR [--tokens N] [--chunk C] [--nseq S] [--math f32|tf32|bf16]
 *
 * The first writes a random-weight model of a published Mamba-1 shape (vocab
 * 50280, d_state 16, d_conv 4, expand 2) for this and for transformers.  The
 * second ingests N tokens (LM head skipped, as ingest does) per sequence in
 * steps of C tokens x S sequences and prints one line of key=value pairs:
 * tok/s, ms per step, device memory, the measured matmul rate (a GEMM of the
 * model's in_proj shape, same arithmetic) and device copy bandwidth, the
 * roofline tok/s (min of matmul-bound and weight-traffic-bound), and the scan
 * kernel's effective bandwidth as a share of the copy bandwidth.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda.h"
#include "cuda_engine.h"
#include "model.h"
#include "testutil.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int die(const char *what, const coil_err_t *err)
{
    fprintf(stderr, "bench_cuda: %s: %s\n", what, err->msg);
    return 1;
}

static int write_model(const char *dir, const char *shape, const char *dtype)
{
    static const struct {
        const char *name;
        int64_t d_model, n_layer;
    } shapes[] = {{"130m", 768, 24}, {"370m", 1024, 48}, {"790m", 1536, 48}, {"1.4b", 2048, 48}, {"2.8b", 2560, 64}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (strcmp(shape, shapes[i].name) == 0) {
            tu_model_shape_t s = {shapes[i].d_model, shapes[i].n_layer, 50280, 16, 4, 2, 0, 1, dtype, NULL, 0, 0};
            if (tu_write_model_dir(dir, &s, 17) != 0) {
                fprintf(stderr, "bench_cuda: cannot write the model to %s\n", dir);
                return 1;
            }
            return 0;
        }
    fprintf(stderr, "bench_cuda: unknown shape '%s' (have: 130m, 370m, 790m, 1.4b, 2.8b)\n", shape);
    return 2;
}

/* GFLOP/s of y(T, M) = x(T, K) W^T with the given arithmetic. */
static double gemm_rate(coil_cuda_t *c, int64_t M, int64_t K, int64_t T, coil_err_t *err)
{
    coil_cuda_buf_t *w = coil_cuda_alloc(c, (size_t)(M * K) * 4, "gemm W", err),
                    *x = coil_cuda_alloc(c, (size_t)(T * K) * 4, "gemm x", err),
                    *y = coil_cuda_alloc(c, (size_t)(T * M) * 4, "gemm y", err);
    double rate = -1.0;
    if (w && x && y && !coil_cuda_zero(c, w, 0, (size_t)(M * K) * 4, err) &&
        !coil_cuda_zero(c, x, 0, (size_t)(T * K) * 4, err)) {
        const int reps = 20;
        coil_cuda_linear(c, coil_cuda_ptr(w), M, K, NULL, coil_cuda_ptr(x), K, coil_cuda_ptr(y), M, T, err);
        coil_cuda_sync(c, err);
        double t0 = now();
        for (int r = 0; r < reps; r++)
            coil_cuda_linear(c, coil_cuda_ptr(w), M, K, NULL, coil_cuda_ptr(x), K, coil_cuda_ptr(y), M, T, err);
        if (!coil_cuda_sync(c, err))
            rate = 2.0 * (double)M * (double)K * (double)T * reps / (now() - t0) / 1e9;
    }
    coil_cuda_free(&w), coil_cuda_free(&x), coil_cuda_free(&y);
    return rate;
}

/* GB/s of a device-to-device copy (bytes read + written). */
static double copy_bw(coil_cuda_t *c, size_t bytes, coil_err_t *err)
{
    coil_cuda_buf_t *a = coil_cuda_alloc(c, bytes, "copy a", err), *b = coil_cuda_alloc(c, bytes, "copy b", err);
    double bw = -1.0;
    if (a && b) {
        const int reps = 10;
        coil_cuda_copy(c, b, 0, a, 0, bytes, err);
        coil_cuda_sync(c, err);
        double t0 = now();
        for (int r = 0; r < reps; r++)
            coil_cuda_copy(c, b, 0, a, 0, bytes, err);
        if (!coil_cuda_sync(c, err))
            bw = 2.0 * (double)bytes * reps / (now() - t0) / 1e9;
    }
    coil_cuda_free(&a), coil_cuda_free(&b);
    return bw;
}

/* Effective GB/s of the scan alone on (T, D, N): u, dt, z read, y written
 * (T x D floats each), B and C read (T x 2N), the state in and out. */
static double scan_bw(coil_cuda_t *c, int64_t T, int64_t D, int64_t N, coil_err_t *err)
{
    const size_t td = (size_t)(T * D) * 4;
    coil_cuda_buf_t *u = coil_cuda_alloc(c, td, "scan u", err), *dt = coil_cuda_alloc(c, td, "scan dt", err),
                    *z = coil_cuda_alloc(c, td, "scan z", err), *y = coil_cuda_alloc(c, td, "scan y", err),
                    *bc = coil_cuda_alloc(c, (size_t)(T * 2 * N) * 4, "scan bc", err),
                    *A = coil_cuda_alloc(c, (size_t)(D * N) * 4, "scan A", err),
                    *Dk = coil_cuda_alloc(c, (size_t)D * 4, "scan D", err),
                    *h = coil_cuda_alloc(c, (size_t)(D * N) * 4, "scan h", err);
    double bw = -1.0;
    if (u && dt && z && y && bc && A && Dk && h) {
        coil_cuda_buf_t *all[] = {u, dt, z, bc, A, Dk, h};
        for (int i = 0; i < 7; i++)
            coil_cuda_zero(c, all[i], 0, coil_cuda_size(all[i]), err);
        const int reps = 10;
        double t0 = 0.0;
        for (int r = 0; r <= reps; r++) {
            if (r == 1) {
                coil_cuda_sync(c, err);
                t0 = now();
            }
            coil_cuda_scan(c, T, D, N, 1, coil_cuda_ptr(u), coil_cuda_ptr(dt), coil_cuda_ptr(A), coil_cuda_ptr(bc),
                           2 * N, coil_cuda_ptr(Dk), coil_cuda_ptr(z), D, coil_cuda_ptr(h), coil_cuda_ptr(y), err);
        }
        if (!coil_cuda_sync(c, err))
            bw = (4.0 * (double)td + (double)(T * 2 * N) * 4 + 2.0 * (double)(D * N) * 4) * reps / (now() - t0) / 1e9;
    }
    coil_cuda_free(&u), coil_cuda_free(&dt), coil_cuda_free(&z), coil_cuda_free(&y), coil_cuda_free(&bc);
    coil_cuda_free(&A), coil_cuda_free(&Dk), coil_cuda_free(&h);
    return bw;
}

int main(int argc, char **argv)
{
    const char *model = NULL, *wdir = NULL, *shape = "130m", *dtype = "BF16", *math_s = "f32";
    int64_t tokens = 1 << 20, chunk = 2048, nseq = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_cuda: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--model"))
            model = v;
        else if (!strcmp(a, "--write-model"))
            wdir = v;
        else if (!strcmp(a, "--shape"))
            shape = v;
        else if (!strcmp(a, "--dtype"))
            dtype = v;
        else if (!strcmp(a, "--math"))
            math_s = v;
        else if (!strcmp(a, "--tokens"))
            tokens = atoll(v);
        else if (!strcmp(a, "--chunk"))
            chunk = atoll(v);
        else if (!strcmp(a, "--nseq"))
            nseq = atoll(v);
        else {
            fprintf(stderr, "bench_cuda: unknown option %s\n", a);
            return 2;
        }
        i++;
    }
    if (wdir)
        return write_model(wdir, shape, dtype);
    if (!model || tokens <= 0 || chunk <= 0 || nseq <= 0) {
        fprintf(stderr, "usage: bench_cuda --model DIR [--tokens N] [--chunk C] [--nseq S] [--math f32|tf32|bf16]\n"
                        "       bench_cuda --write-model DIR --shape 130m|370m|790m|1.4b|2.8b [--dtype BF16]\n");
        return 2;
    }
    coil_err_t err = {0};
    coil_cuda_math_t math;
    if (coil_cuda_math_parse(math_s, &math, &err))
        return die("--math", &err);
    coil_model_t *m = coil_model_load(model, &err);
    if (!m)
        return die(model, &err);
    const coil_model_config_t *cf = coil_model_config(m);
    coil_cuda_shape_t sh = {cf->d_model, cf->d_inner, cf->d_state, cf->d_conv, cf->dt_rank, cf->n_layer,
                            cf->vocab_size, cf->use_bias, cf->use_conv_bias, 1};
    double t_load = now();
    coil_cuda_engine_options_t o = {.max_chunk = chunk, .nseq = nseq, .math = math};
    coil_cuda_engine_t *e = coil_cuda_engine_new(m, &o, &err);
    if (!e)
        return die("engine", &err);
    t_load = now() - t_load;
    int32_t *ids = malloc((size_t)(nseq * tokens) * sizeof(int32_t));
    if (!ids) {
        fprintf(stderr, "bench_cuda: out of memory for %lld ids\n", (long long)(nseq * tokens));
        return 1;
    }
    uint64_t r = 88172645463325252ull;
    for (int64_t i = 0; i < nseq * tokens; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        ids[i] = (int32_t)(r % (uint64_t)cf->vocab_size);
    }
    /* warm-up step, then the timed ingest */
    if (coil_cuda_engine_forward(e, ids, chunk < tokens ? chunk : tokens, NULL, &err) ||
        coil_cuda_engine_sync(e, &err))
        return die("warm-up", &err);
    for (int64_t s = 0; s < nseq; s++)
        coil_cuda_engine_reset(e, s, &err);
    double t0 = now();
    if (coil_cuda_engine_forward(e, ids, tokens, NULL, &err) || coil_cuda_engine_sync(e, &err))
        return die("ingest", &err);
    double secs = now() - t0;
    const double total = (double)tokens * (double)nseq, steps = (double)((tokens + chunk - 1) / chunk);
    /* the ceilings, measured now on this device */
    coil_cuda_t *c = coil_cuda_open(0, &err);
    if (!c)
        return die("open", &err);
    coil_cuda_set_math(c, math);
    size_t fr = 0, tot = 0;
    coil_cuda_mem_info(c, &fr, &tot, &err);
    double gflops = gemm_rate(c, 2 * cf->d_model * 2, cf->d_model, chunk * nseq, &err);
    double gbs = copy_bw(c, (size_t)1 << 30, &err);
    double scan = scan_bw(c, chunk * nseq < 4096 ? 4096 : chunk * nseq, cf->d_inner, cf->d_state, &err);
    const double fpt = coil_cuda_shape_flops_per_token(&sh, 0);
    coil_cuda_buffers_t pb;
    coil_cuda_plan_buffers(&sh, chunk, nseq, 0, &pb, &err);
    const double flops_bound = gflops * 1e9 / fpt;
    const double bytes_per_step = (double)pb.weights + 2.0 * (double)pb.arena;
    const double bytes_bound = gbs * 1e9 / bytes_per_step * (double)(chunk * nseq);
    const double roof = flops_bound < bytes_bound ? flops_bound : bytes_bound;
    printf("device=\"%s\" model=%s d_model=%lld layers=%lld math=%s tokens=%lld nseq=%lld chunk=%lld "
           "seconds=%.3f tok_per_s=%.0f ms_per_step=%.3f device_mib=%.0f load_s=%.2f "
           "gemm_gflops=%.0f copy_gbs=%.0f roofline_tok_per_s=%.0f of_roofline=%.2f "
           "scan_gbs=%.0f scan_of_copy=%.2f\n",
           coil_cuda_engine_device_name(e), model, (long long)cf->d_model, (long long)cf->n_layer, math_s,
           (long long)tokens, (long long)nseq, (long long)chunk, secs, total / secs, 1e3 * secs / steps,
           (double)coil_cuda_engine_device_bytes(e) / 1048576.0, t_load, gflops, gbs, roof, total / secs / roof,
           scan, scan / gbs);
    coil_cuda_close(&c);
    coil_cuda_engine_destroy(&e);
    coil_model_destroy(&m);
    free(ids);
    return 0;
}
