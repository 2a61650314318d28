/* test_cuda_plan.c -- the CUDA backend's host-side launch planning and buffer
 * sizing (kernels/cuda_plan.c), for every Mamba-1 shape; no GPU needed. */
#include "cuda_plan.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    coil_cuda_shape_t s;
    int64_t params; /* transformers' MambaForCausalLM parameter count */
} shape_case_t;

/* The published state-spaces/mamba-*-hf shapes (vocab 50280, tied), whose
 * parameter counts are sum(p.numel()) of MambaForCausalLM(MambaConfig(...))
 * built on the meta device with transformers; and the test models of
 * tests/data/models (odd d_inner 81, d_state 7; untied with biases, d_conv 3),
 * counted from their safetensors files. */
static const shape_case_t shapes[] = {
    {"130m", {768, 1536, 16, 4, 48, 24, 50280, 0, 1, 1}, 129135360},
    {"370m", {1024, 2048, 16, 4, 64, 48, 50280, 0, 1, 1}, 371516416},
    {"790m", {1536, 3072, 16, 4, 96, 48, 50280, 0, 1, 1}, 793204224},
    {"1.4b", {2048, 4096, 16, 4, 128, 48, 50280, 0, 1, 1}, 1372178432},
    {"2.8b", {2560, 5120, 16, 4, 160, 64, 50280, 0, 1, 1}, 2768345600},
    {"odd_dinner", {27, 81, 7, 4, 2, 2, 203, 0, 1, 1}, 23868},
    {"untied_bias_sharded", {32, 64, 8, 3, 5, 2, 200, 1, 1, 0}, 30624},
};
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static const int64_t chunk_lengths[] = {1, 3, 64, 65, 256, 4097};
static const int64_t seq_counts[] = {1, 3, 16};

START_TEST(test_math_names)
{
    coil_cuda_math_t m;
    coil_err_t err;
    ck_assert_int_eq(coil_cuda_math_parse("tf32", &m, &err), 0);
    ck_assert_int_eq(m, COIL_CUDA_MATH_TF32);
    ck_assert_int_eq(coil_cuda_math_parse("BF16", &m, &err), 0);
    ck_assert_int_eq(m, COIL_CUDA_MATH_BF16);
    ck_assert_int_eq(coil_cuda_math_parse("f32", &m, &err), 0);
    ck_assert_str_eq(coil_cuda_math_name(m), "f32");
    ck_assert_int_eq(coil_cuda_math_parse("fp8", &m, &err), COIL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "'fp8'"));
    ck_assert_ptr_nonnull(strstr(err.msg, "tf32"));
}
END_TEST

/* Every scan plan covers every channel and state exactly, fits the device's
 * limits, and its shared memory is what the kernel carves out of it. */
static void check_scan(const char *what, int64_t T, int64_t D, int64_t N, int64_t nseq, int sms)
{
    coil_cuda_launch_t L;
    coil_err_t err;
    ck_assert_msg(coil_cuda_plan_scan(T, D, N, nseq, sms, &L, &err) == 0, "%s: %s", what, err.msg);
    ck_assert_msg(L.group >= 1 && L.group <= 32 && (L.group & (L.group - 1)) == 0, "%s: group %d", what, L.group);
    ck_assert_msg(L.per_lane == 1 || L.per_lane == 2 || L.per_lane == 4 || L.per_lane == 8, "%s", what);
    ck_assert_msg((int64_t)L.group * L.per_lane >= N, "%s: %d x %d lanes for %lld states", what, L.group,
                  L.per_lane, (long long)N);
    ck_assert_msg((int64_t)L.group * L.per_lane < 2 * N || N == 1, "%s: more than twice the lanes needed", what);
    ck_assert_msg(L.block.x % 32 == 0 && L.block.x <= COIL_CUDA_MAX_BLOCK && L.block.y == 1, "%s", what);
    ck_assert_int_eq(L.channels * L.group, (int)L.block.x);
    ck_assert_msg((int64_t)L.grid.x * L.channels >= D && ((int64_t)L.grid.x - 1) * L.channels < D,
                  "%s: %u blocks x %d channels for D=%lld", what, L.grid.x, L.channels, (long long)D);
    ck_assert_int_eq(L.grid.y, (unsigned)nseq);
    ck_assert_msg(L.tile >= 1 && L.tile <= COIL_CUDA_SCAN_TILE && L.tile <= T, "%s: tile %d", what, L.tile);
    ck_assert_msg(L.smem == (size_t)L.tile * (size_t)(2 * N + 4 * L.channels) * sizeof(float), "%s", what);
    ck_assert_msg(L.smem <= COIL_CUDA_SMEM_MAX, "%s: %zu bytes of shared memory", what, L.smem);
}

START_TEST(test_scan_all_shapes)
{
    char what[128];
    for (int i = 0; i < NSHAPES; i++)
        for (size_t t = 0; t < sizeof chunk_lengths / sizeof chunk_lengths[0]; t++)
            for (size_t q = 0; q < sizeof seq_counts / sizeof seq_counts[0]; q++) {
                snprintf(what, sizeof what, "%s T=%lld nseq=%lld", shapes[i].name, (long long)chunk_lengths[t],
                         (long long)seq_counts[q]);
                check_scan(what, chunk_lengths[t], shapes[i].s.d_inner, shapes[i].s.d_state, seq_counts[q], 0);
                check_scan(what, chunk_lengths[t], shapes[i].s.d_inner, shapes[i].s.d_state, seq_counts[q], 8);
            }
    /* the published shapes: 16 lanes per channel, one state each */
    coil_cuda_launch_t L;
    ck_assert_int_eq(coil_cuda_plan_scan(256, 1536, 16, 1, 132, &L, NULL), 0);
    ck_assert_int_eq(L.group, 16);
    ck_assert_int_eq(L.per_lane, 1);
    ck_assert_int_eq(L.tile, 64);
    /* small grids keep small blocks so that every multiprocessor has work */
    ck_assert_int_eq(L.block.x, 128);
    ck_assert_int_eq(coil_cuda_plan_scan(256, 5120, 16, 16, 132, &L, NULL), 0);
    ck_assert_int_eq(L.block.x, 512);
}
END_TEST

START_TEST(test_scan_state_sizes)
{
    for (int64_t N = 1; N <= COIL_CUDA_SCAN_MAX_STATE; N++) {
        char what[64];
        snprintf(what, sizeof what, "N=%lld", (long long)N);
        check_scan(what, 100, 81, N, 2, 0);
    }
    coil_cuda_launch_t L;
    ck_assert_int_eq(coil_cuda_plan_scan(10, 81, 33, 1, 0, &L, NULL), 0);
    ck_assert_int_eq(L.group, 32);
    ck_assert_int_eq(L.per_lane, 2);
    ck_assert_int_eq(coil_cuda_plan_scan(10, 81, 256, 1, 0, &L, NULL), 0);
    ck_assert_int_eq(L.per_lane, 8);
    ck_assert_msg(L.tile < COIL_CUDA_SCAN_TILE, "N=256 must shrink the tile to fit shared memory");
}
END_TEST

START_TEST(test_scan_errors)
{
    coil_cuda_launch_t L;
    coil_err_t err;
    ck_assert_int_eq(coil_cuda_plan_scan(10, 81, 257, 1, 0, &L, &err), COIL_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "d_state 257"));
    ck_assert_int_eq(coil_cuda_plan_scan(10, 0, 16, 1, 0, &L, &err), COIL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "D=0"));
    ck_assert_int_eq(coil_cuda_plan_scan(-1, 64, 16, 1, 0, &L, &err), COIL_EINVAL);
    ck_assert_int_eq(coil_cuda_plan_scan(10, 64, 16, 0, 0, &L, &err), COIL_EINVAL);
    ck_assert_int_eq(coil_cuda_plan_scan(10, 64, 16, 65536, 0, &L, &err), COIL_ETOOBIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "65536 sequences"));
    ck_assert_int_eq(coil_cuda_plan_scan(10, 64, 16, 65535, 0, &L, &err), 0);
    /* no tokens: nothing to launch */
    ck_assert_int_eq(coil_cuda_plan_scan(0, 64, 16, 1, 0, &L, &err), 0);
    ck_assert_int_eq(L.grid.x, 0);
}
END_TEST

START_TEST(test_conv_and_rows)
{
    coil_cuda_launch_t L;
    coil_err_t err;
    for (int i = 0; i < NSHAPES; i++) {
        const coil_cuda_shape_t *s = &shapes[i].s;
        ck_assert_int_eq(coil_cuda_plan_conv(256, s->d_inner, s->d_conv, 4, &L, &err), 0);
        ck_assert_int_eq(L.block.x, COIL_CUDA_EW_BLOCK);
        int64_t n = 256 * s->d_inner * 4;
        ck_assert_msg((int64_t)L.grid.x * L.block.x >= n || L.grid.x == COIL_CUDA_EW_MAX_BLOCKS, "%s",
                      shapes[i].name);
        ck_assert_int_eq(coil_cuda_plan_conv_state(s->d_inner, 4, &L, &err), 0);
        ck_assert_int_ge((int64_t)L.grid.x * L.block.x, s->d_inner * 4);
        ck_assert_int_eq(coil_cuda_plan_rows(256 * 4, s->d_model, &L, &err), 0);
        ck_assert_int_eq(L.grid.x, 1024);
        ck_assert_int_ge((int64_t)L.block.x * 4, s->d_model < 4096 ? s->d_model : 4096);
        ck_assert_int_eq(L.smem, L.block.x / 32 * sizeof(float));
    }
    ck_assert_int_eq(coil_cuda_plan_rows(3, 768, &L, &err), 0);
    ck_assert_int_eq(L.block.x, 256);
    ck_assert_int_eq(coil_cuda_plan_rows(3, 5, &L, &err), 0);
    ck_assert_int_eq(L.block.x, 32);
    ck_assert_int_eq(coil_cuda_plan_rows(3, 1 << 20, &L, &err), 0);
    ck_assert_int_eq(L.block.x, 1024);
    ck_assert_int_eq(coil_cuda_plan_rows(3, 0, &L, &err), COIL_EINVAL);
    ck_assert_int_eq(coil_cuda_plan_conv(10, 64, 0, 1, &L, &err), COIL_EUNSUPPORTED);
    ck_assert_int_eq(coil_cuda_plan_conv(10, 64, 65, 1, &L, &err), COIL_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "d_conv 65"));
    ck_assert_int_eq(coil_cuda_plan_conv(INT64_MAX / 2, 64, 4, 1, &L, &err), COIL_ETOOBIG);
    /* grid-stride: a huge elementwise op is capped, an empty one launches nothing */
    ck_assert_int_eq(coil_cuda_plan_elementwise((int64_t)1 << 40, &L, &err), 0);
    ck_assert_int_eq(L.grid.x, COIL_CUDA_EW_MAX_BLOCKS);
    ck_assert_int_eq(coil_cuda_plan_elementwise(0, &L, &err), 0);
    ck_assert_int_eq(L.grid.x, 0);
    ck_assert_int_eq(coil_cuda_plan_elementwise(-1, &L, &err), COIL_EINVAL);
}
END_TEST

static size_t align(size_t v) { return (v + COIL_CUDA_ALIGN - 1) / COIL_CUDA_ALIGN * COIL_CUDA_ALIGN; }

START_TEST(test_buffers_all_shapes)
{
    coil_err_t err;
    for (int i = 0; i < NSHAPES; i++)
        for (size_t q = 0; q < sizeof seq_counts / sizeof seq_counts[0]; q++)
            for (int lg = 0; lg < 2; lg++) {
                const coil_cuda_shape_t *s = &shapes[i].s;
                const int64_t C = 256, S = seq_counts[q], rows = C * S;
                const int64_t H = s->d_model, D = s->d_inner, N = s->d_state, R = s->dt_rank;
                coil_cuda_buffers_t b;
                ck_assert_msg(coil_cuda_plan_buffers(s, C, S, lg, &b, &err) == 0, "%s: %s", shapes[i].name, err.msg);
                ck_assert_int_eq(coil_cuda_shape_params(s), shapes[i].params);
                ck_assert_int_eq(b.weights, (size_t)shapes[i].params * 4);
                ck_assert_int_eq(b.rows, rows);
                /* in order, aligned, each as large as its tensor */
                const size_t off[] = {b.resid, b.xn, b.xz, b.u, b.xdbl, b.dt, b.y, b.out, b.ids};
                const int64_t len[] = {rows * H, rows * H, rows * 2 * D, rows * D, rows * (R + 2 * N),
                                       rows * D, rows * D, rows * H, rows};
                ck_assert_int_eq(off[0], 0);
                for (int k = 0; k < 9; k++) {
                    ck_assert_int_eq(off[k] % COIL_CUDA_ALIGN, 0);
                    size_t end = k < 8 ? off[k + 1] : (lg ? b.logits : b.arena);
                    ck_assert_msg(end - off[k] == align((size_t)len[k] * 4), "%s: buffer %d", shapes[i].name, k);
                }
                if (lg)
                    ck_assert_int_eq(b.arena - b.logits, align((size_t)(rows * s->vocab) * 4));
                ck_assert_int_eq(b.conv_state, align((size_t)(s->n_layer * S * (s->d_conv - 1) * D) * 4));
                ck_assert_int_eq(b.ssm_state, align((size_t)(s->n_layer * S * D * N) * 4));
                ck_assert_int_eq(b.state, b.conv_state + b.ssm_state);
                ck_assert_int_eq(b.total, b.arena + b.state + b.weights);
            }
    /* the 130m shape at the default chunk: about 20 MiB of activations */
    coil_cuda_buffers_t b;
    ck_assert_int_eq(coil_cuda_plan_buffers(&shapes[0].s, 512, 1, 0, &b, &err), 0);
    ck_assert_int_lt(b.arena, (size_t)24 << 20);
    ck_assert_int_gt(b.arena, (size_t)18 << 20);
    /* 2.8b: 11 GB of float32 weights */
    ck_assert_int_eq(coil_cuda_plan_buffers(&shapes[4].s, 256, 1, 0, &b, &err), 0);
    ck_assert_int_eq(b.weights, (size_t)2768345600 * 4);
    /* matmul FLOPs of one ingested token, 130m: 2 x 24 x 3,735,552 */
    ck_assert(coil_cuda_shape_flops_per_token(&shapes[0].s, 0) == 179306496.0);
    ck_assert(coil_cuda_shape_flops_per_token(&shapes[0].s, 1) == 179306496.0 + 2.0 * 50280 * 768);
}
END_TEST

START_TEST(test_buffers_errors)
{
    coil_err_t err;
    coil_cuda_buffers_t b;
    coil_cuda_shape_t s = shapes[0].s;
    s.d_model = 0;
    ck_assert_int_eq(coil_cuda_plan_buffers(&s, 256, 1, 0, &b, &err), COIL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "d_model is 0"));
    s = shapes[0].s;
    ck_assert_int_eq(coil_cuda_plan_buffers(&s, 0, 1, 0, &b, &err), COIL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "max_chunk"));
    ck_assert_int_eq(coil_cuda_plan_buffers(&s, 256, -2, 0, &b, &err), COIL_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "sequences"));
    s.d_state = 300;
    ck_assert_int_eq(coil_cuda_plan_buffers(&s, 256, 1, 0, &b, &err), COIL_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "d_state 300"));
    s = shapes[0].s;
    s.d_conv = 65;
    ck_assert_int_eq(coil_cuda_plan_buffers(&s, 256, 1, 0, &b, &err), COIL_EUNSUPPORTED);
    s = shapes[0].s;
    ck_assert_int_eq(coil_cuda_plan_buffers(&s, (int64_t)1 << 40, (int64_t)1 << 20, 1, &b, &err), COIL_ETOOBIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "overflow"));
    ck_assert_int_eq(coil_cuda_plan_buffers(&s, (int64_t)1 << 32, (int64_t)1 << 16, 1, &b, &err), COIL_ETOOBIG);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cuda_plan");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_math_names);
    tcase_add_test(tc, test_scan_all_shapes);
    tcase_add_test(tc, test_scan_state_sizes);
    tcase_add_test(tc, test_scan_errors);
    tcase_add_test(tc, test_conv_and_rows);
    tcase_add_test(tc, test_buffers_all_shapes);
    tcase_add_test(tc, test_buffers_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
