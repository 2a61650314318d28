/* test_state.c -- the state blob: round trip, damage, wrong model. */
#include "state.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <xxhash.h>

#include "engine.h"
#include "testutil.h"

static coil_model_t *m;
static coil_state_t *st;
static void *blob;
static size_t n;

static void setup(void)
{
    coil_err_t err = {0};
    m = coil_model_load(tu_data("models/tied_f32"), &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    st = coil_state_new(m, &err);
    coil_engine_t *e = coil_engine_new(m, NULL, &err);
    int32_t ids[5] = {1, 2, 3, 4, 5};
    ck_assert_int_eq(coil_engine_forward(e, st, ids, 5, NULL, &err), 0);
    coil_engine_destroy(&e);
    n = coil_state_blob_size(st);
    blob = malloc(n);
    ck_assert_int_eq(coil_state_serialize(st, blob, n, &err), 0);
}

static void teardown(void)
{
    free(blob);
    coil_state_destroy(&st);
    coil_model_destroy(&m);
}

START_TEST(test_round_trip_and_layout)
{
    coil_err_t err = {0};
    const coil_model_config_t *c = coil_model_config(m);
    size_t floats = (size_t)(c->n_layer * ((c->d_conv - 1) * c->d_inner + c->d_inner * c->d_state) + c->d_model);
    ck_assert_uint_eq(n, COIL_STATE_HEADER_SIZE + floats * 4 + 8);
    ck_assert_int_eq(memcmp(blob, "COILSTAT", 8), 0);
    coil_state_t *s2 = coil_state_new(m, &err);
    ck_assert_int_eq(coil_state_deserialize(s2, blob, n, &err), 0);
    ck_assert_int_eq(coil_state_position(s2), 5);
    ck_assert(coil_state_has_hidden(s2));
    void *b2 = malloc(n);
    ck_assert_int_eq(coil_state_serialize(s2, b2, n, &err), 0);
    ck_assert_int_eq(memcmp(blob, b2, n), 0);
    uint64_t fp;
    int64_t pos;
    ck_assert_int_eq(coil_state_blob_peek(blob, n, &fp, &pos, &err), 0);
    ck_assert(fp == coil_model_fingerprint(m));
    ck_assert_int_eq(pos, 5);
    ck_assert_int_eq(coil_state_serialize(s2, b2, n - 1, &err), COIL_EINVAL);
    /* clone and copy */
    coil_state_t *s3 = coil_state_clone(s2, &err);
    coil_state_reset(s2);
    ck_assert_int_eq(coil_state_position(s2), 0);
    ck_assert_int_eq(coil_state_copy(s2, s3, &err), 0);
    ck_assert_int_eq(coil_state_serialize(s2, b2, n, &err), 0);
    ck_assert_int_eq(memcmp(blob, b2, n), 0);
    free(b2);
    coil_state_destroy(&s2);
    coil_state_destroy(&s3);
}
END_TEST

/* A poisoned state (a forward pass failed on it) is never saved; reset or a
 * deserialize make it usable again.  So is a state that overflowed. */
START_TEST(test_poisoned_state_is_not_saved)
{
    coil_err_t err = {0};
    coil_state_t *s2 = coil_state_clone(st, &err);
    ck_assert_ptr_nonnull(s2);
    void *b2 = malloc(n);
    coil_state_poison(s2);
    ck_assert_int_eq(coil_state_serialize(s2, b2, n, &err), COIL_ESTATE);
    ck_assert_msg(strstr(err.msg, "a NaN") != NULL, "%s", err.msg);
    ck_assert_int_eq(coil_state_deserialize(s2, blob, n, &err), 0);
    ck_assert_int_eq(coil_state_serialize(s2, b2, n, &err), 0);
    ck_assert_int_eq(memcmp(blob, b2, n), 0);
    coil_state_ssm(s2, 1)[3] = INFINITY;
    ck_assert_int_eq(coil_state_serialize(s2, b2, n, &err), COIL_ESTATE);
    ck_assert_msg(strstr(err.msg, "an infinity") != NULL, "%s", err.msg);
    coil_state_reset(s2);
    ck_assert_int_eq(coil_state_serialize(s2, b2, n, &err), 0);
    free(b2);
    coil_state_destroy(&s2);
}
END_TEST

/* Every damaged blob is an error and leaves the target state unchanged. */
static void expect_error(const void *b, size_t len, int code)
{
    coil_err_t err = {0};
    coil_state_t *s2 = coil_state_new(m, &err);
    ck_assert_int_eq(coil_state_deserialize(s2, b, len, &err), code);
    ck_assert_int_eq(coil_state_position(s2), 0);
    ck_assert(!coil_state_has_hidden(s2));
    ck_assert(strlen(err.msg) > 0);
    coil_state_destroy(&s2);
}

START_TEST(test_damaged_blobs)
{
    unsigned char *b = malloc(n);
    /* a flipped bit anywhere: payload, header, trailer */
    size_t where[] = {n / 2, 20, 60, n - 3};
    for (int i = 0; i < 4; i++) {
        memcpy(b, blob, n);
        b[where[i]] ^= 0x10;
        expect_error(b, n, COIL_ECHECKSUM);
    }
    expect_error(blob, n - 1, COIL_EFORMAT);  /* truncated */
    expect_error(blob, 50, COIL_EFORMAT);     /* shorter than a header */
    memcpy(b, blob, n);
    memcpy(b, "COILSTAX", 8);
    expect_error(b, n, COIL_EFORMAT);         /* bad magic */
    memcpy(b, blob, n);
    b[8] = 9;                                 /* a future format version */
    expect_error(b, n, COIL_EVERSION);
    /* a NaN or an infinity in the payload, under a valid checksum: refused by name */
    const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++) {
        memcpy(b, blob, n);
        memcpy(b + COIL_STATE_HEADER_SIZE + 4 * (size_t)(7 + i), &bad[i], 4);
        uint64_t h = XXH3_64bits(b, n - 8);
        memcpy(b + n - 8, &h, 8);
        expect_error(b, n, COIL_EFORMAT);
        coil_err_t err = {0};
        coil_state_t *s2 = coil_state_new(m, &err);
        ck_assert_int_eq(coil_state_deserialize(s2, b, n, &err), COIL_EFORMAT);
        ck_assert_msg(strstr(err.msg, i ? "infinite" : "NaN") && strstr(err.msg, i == 0 ? "value 7 " : "value "), "%s",
                      err.msg);
        coil_state_destroy(&s2);
    }
    free(b);
}
END_TEST

/* Format v2 records the family; v1 blobs (before families: Mamba-1, offset 72
 * zero) still load; a state of one family is refused by another by name. */
static void make_v1(unsigned char *b, size_t len)
{
    uint32_t v1 = 1, zero = 0;
    memcpy(b + 8, &v1, 4);
    memcpy(b + 72, &zero, 4);
    uint64_t h = XXH3_64bits(b, len - 8);
    memcpy(b + len - 8, &h, 8);
}

START_TEST(test_families_and_v1)
{
    coil_err_t err = {0};
    const unsigned char *b = blob;
    uint32_t ver, fam;
    memcpy(&ver, b + 8, 4);
    memcpy(&fam, b + 72, 4);
    ck_assert_uint_eq(ver, 2);
    ck_assert_uint_eq(fam, 0); /* mamba */
    /* a version-1 blob of the same state loads to the same bits */
    unsigned char *v1 = malloc(n), *again = malloc(n);
    memcpy(v1, blob, n);
    make_v1(v1, n);
    coil_state_t *s2 = coil_state_new(m, &err);
    ck_assert_msg(coil_state_deserialize(s2, v1, n, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(coil_state_position(s2), 5);
    ck_assert_int_eq(coil_state_serialize(s2, again, n, &err), 0);
    ck_assert_int_eq(memcmp(again, blob, n), 0);
    coil_state_destroy(&s2);

    /* falcon_tied_f32 has tied_f32's shapes exactly: only the family tells them apart */
    coil_model_t *fm = coil_model_load(tu_data("models/falcon_tied_f32"), &err);
    ck_assert_msg(fm != NULL, "%s", err.msg);
    ck_assert(coil_model_fingerprint(fm) != coil_model_fingerprint(m));
    coil_state_t *fs = coil_state_new(fm, &err);
    ck_assert_int_eq(coil_state_deserialize(fs, blob, n, &err), COIL_EMISMATCH);
    ck_assert_msg(strstr(err.msg, "state blob is for model family 'mamba', the loaded model is a 'falcon_mamba' "
                                  "(FalconMambaForCausalLM)"), "%s", err.msg);
    ck_assert_int_eq(coil_state_deserialize(fs, v1, n, &err), COIL_EMISMATCH); /* v1 = mamba */
    ck_assert_ptr_nonnull(strstr(err.msg, "family 'mamba'"));
    coil_engine_t *e = coil_engine_new(fm, NULL, &err);
    int32_t ids[5] = {1, 2, 3, 4, 5};
    ck_assert_int_eq(coil_engine_forward(e, fs, ids, 5, NULL, &err), 0);
    ck_assert_uint_eq(coil_state_blob_size(fs), n);
    void *fb = malloc(n);
    ck_assert_int_eq(coil_state_serialize(fs, fb, n, &err), 0);
    memcpy(&fam, (unsigned char *)fb + 72, 4);
    ck_assert_uint_eq(fam, 1); /* falcon_mamba */
    ck_assert_int_eq(coil_state_deserialize(st, fb, n, &err), COIL_EMISMATCH);
    ck_assert_msg(strstr(err.msg, "state blob is for model family 'falcon_mamba', the loaded model is a 'mamba' "
                                  "(MambaForCausalLM)"), "%s", err.msg);
    /* the engine refuses a state of the other family too */
    ck_assert_int_eq(coil_engine_forward(e, st, ids, 1, NULL, &err), COIL_EMISMATCH);
    /* a Mamba-2 state (family id 2, its own tensor sizes) is refused by family first */
    coil_model_t *m2 = coil_model_load(tu_data("models/mamba2_groups_f32"), &err);
    ck_assert_msg(m2 != NULL, "%s", err.msg);
    coil_state_t *s2b = coil_state_new(m2, &err);
    size_t n2 = coil_state_blob_size(s2b);
    void *b2 = malloc(n2);
    ck_assert_int_eq(coil_state_serialize(s2b, b2, n2, &err), 0);
    ck_assert_int_eq(coil_state_deserialize(st, b2, n2, &err), COIL_EMISMATCH);
    ck_assert_msg(strstr(err.msg, "state blob is for model family 'mamba2', the loaded model is a 'mamba'"), "%s",
                  err.msg);
    free(b2);
    coil_state_destroy(&s2b);
    coil_model_destroy(&m2);
    free(fb);
    free(v1);
    free(again);
    coil_engine_destroy(&e);
    coil_state_destroy(&fs);
    coil_model_destroy(&fm);
}
END_TEST

/* RWKV-4's state: its tensors (shifts; num, den and max at -1e38 at position 0,
 * again after a reset), family id 3 in the blob, and a state of another family
 * refused in both directions, by name. */
START_TEST(test_rwkv_state)
{
    coil_err_t err = {0};
    coil_model_t *rm = coil_model_load(tu_data("models/rwkv_odd_f32"), &err);
    ck_assert_msg(rm != NULL, "%s", err.msg);
    const int64_t H = 27, A = 21;
    coil_state_t *rs = coil_state_new(rm, &err);
    ck_assert_ptr_nonnull(rs);
    size_t rn = coil_state_blob_size(rs);
    ck_assert_uint_eq(rn, 96 + 4 * (size_t)(5 * (2 * H + 3 * A) + H) + 8);
    for (int64_t l = 0; l < 5; l++)
        for (int64_t a = 0; a < 3 * A; a++)
            ck_assert_msg(coil_state_ssm(rs, l)[a] == (a < 2 * A ? 0.0f : -1e38f), "layer %lld ssm[%lld]",
                          (long long)l, (long long)a);
    coil_engine_t *e = coil_engine_new(rm, NULL, &err);
    int32_t ids[4] = {7, 8, 9, 10};
    ck_assert_int_eq(coil_engine_forward(e, rs, ids, 4, NULL, &err), 0);
    ck_assert(coil_state_ssm(rs, 0)[2 * A] > -1e30f); /* the max has moved */
    void *rb = malloc(rn);
    ck_assert_int_eq(coil_state_serialize(rs, rb, rn, &err), 0);
    uint32_t fam;
    memcpy(&fam, (unsigned char *)rb + 72, 4);
    ck_assert_uint_eq(fam, 3); /* rwkv */
    coil_state_reset(rs);
    ck_assert(coil_state_ssm(rs, 4)[2 * A] == -1e38f && coil_state_ssm(rs, 4)[0] == 0.0f);
    ck_assert(coil_state_conv(rs, 4)[0] == 0.0f);
    ck_assert_int_eq(coil_state_deserialize(rs, rb, rn, &err), 0);
    ck_assert_int_eq(coil_state_position(rs), 4);
    /* an RWKV state offered to a Mamba model, and a Mamba one to RWKV */
    ck_assert_int_eq(coil_state_deserialize(st, rb, rn, &err), COIL_EMISMATCH);
    ck_assert_msg(strstr(err.msg, "state blob is for model family 'rwkv', the loaded model is a 'mamba' "
                                  "(MambaForCausalLM)"), "%s", err.msg);
    ck_assert_int_eq(coil_state_deserialize(rs, blob, n, &err), COIL_EMISMATCH);
    ck_assert_msg(strstr(err.msg, "state blob is for model family 'mamba', the loaded model is a 'rwkv' "
                                  "(RwkvForCausalLM)"), "%s", err.msg);
    ck_assert_int_eq(coil_engine_forward(e, st, ids, 1, NULL, &err), COIL_EMISMATCH); /* the engine too */
    ck_assert_int_eq(coil_state_position(rs), 4); /* unchanged by the refusals */
    free(rb);
    coil_engine_destroy(&e);
    coil_state_destroy(&rs);
    coil_model_destroy(&rm);
}
END_TEST

START_TEST(test_other_model)
{
    coil_err_t err = {0};
    /* different shape */
    coil_model_t *m2 = coil_model_load(tu_data("models/tied_bf16"), &err);
    coil_state_t *s2 = coil_state_new(m2, &err);
    ck_assert_int_eq(coil_state_deserialize(s2, blob, n, &err), COIL_EMISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "shape"));
    coil_state_destroy(&s2);
    coil_model_destroy(&m2);
    /* same shape, other weights: told apart by the fingerprint */
    char *dir = tu_mkdtemp();
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/m", dir);
    ck_assert_int_eq(tu_copy_dir(tu_data("models/tied_f32"), sub), 0);
    char p[4200];
    snprintf(p, sizeof p, "%s/model.safetensors", sub);
    size_t len;
    unsigned char *w = tu_read(p, &len);
    w[len - 1] ^= 1; /* one bit of one weight */
    ck_assert_int_eq(tu_write(p, w, len), 0);
    free(w);
    m2 = coil_model_load(sub, &err);
    ck_assert_msg(m2 != NULL, "%s", err.msg);
    s2 = coil_state_new(m2, &err);
    ck_assert_int_eq(coil_state_deserialize(s2, blob, n, &err), COIL_EMISMATCH);
    ck_assert_ptr_nonnull(strstr(err.msg, "belongs to model"));
    coil_state_destroy(&s2);
    coil_model_destroy(&m2);
    tu_rm_rf(dir);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("state");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_round_trip_and_layout);
    tcase_add_test(tc, test_damaged_blobs);
    tcase_add_test(tc, test_poisoned_state_is_not_saved);
    tcase_add_test(tc, test_rwkv_state);
    tcase_add_test(tc, test_other_model);
    tcase_add_test(tc, test_families_and_v1);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
