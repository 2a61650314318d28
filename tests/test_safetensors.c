/* test_safetensors.c -- the safetensors reader on good and malformed files. */
#include "safetensors.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

static char *dir;
static char path[4096];

static void setup(void)
{
    dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(dir);
    snprintf(path, sizeof path, "%s/t.safetensors", dir);
}

static void teardown(void)
{
    tu_rm_rf(dir);
    free(dir);
}

static int open_err(const char *header, const void *data, size_t n, coil_err_t *err)
{
    ck_assert_int_eq(tu_write_st_raw(path, header, data, n), 0);
    coil_safetensors_t *st = coil_safetensors_open(path, err);
    if (st) {
        coil_safetensors_close(&st);
        return 0;
    }
    ck_assert_ptr_nonnull(strstr(err->msg, path)); /* every error names the file */
    return err->code;
}

START_TEST(test_valid)
{
    float data[6] = {1, 2, 3, 4, 5, 6};
    coil_err_t err = {0};
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}   ";
    ck_assert_int_eq(tu_write_st_raw(path, h, data, sizeof data), 0);
    coil_safetensors_t *st = coil_safetensors_open(path, &err);
    ck_assert_msg(st != NULL, "%s", err.msg);
    ck_assert_uint_eq(coil_safetensors_count(st), 2);
    const coil_tensor_info_t *a = coil_safetensors_find(st, "a"), *b = coil_safetensors_find(st, "b");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_null(coil_safetensors_find(st, "c"));
    ck_assert_int_eq(a->ndim, 2);
    ck_assert_int_eq(a->shape[1], 2);
    ck_assert_int_eq(a->numel, 4);
    ck_assert(((const float *)a->data)[3] == 4.0f);
    ck_assert(((const float *)b->data)[1] == 6.0f);
    ck_assert_str_eq(coil_safetensors_at(st, 0)->name, "a"); /* file order = offset order */
    coil_safetensors_close(&st);
    ck_assert_ptr_null(st);
    coil_safetensors_close(&st); /* NULL-safe */
}
END_TEST

START_TEST(test_misaligned_data_is_copied)
{
    float data[2] = {1.5f, -2.5f};
    coil_err_t err = {0};
    /* header length 59: data starts at byte 67, not a multiple of 4 */
    const char *h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}     ";
    ck_assert_int_eq(strlen(h) % 4 != 0, 1);
    ck_assert_int_eq(tu_write_st_raw(path, h, data, sizeof data), 0);
    coil_safetensors_t *st = coil_safetensors_open(path, &err);
    ck_assert_msg(st != NULL, "%s", err.msg);
    const coil_tensor_info_t *x = coil_safetensors_find(st, "x");
    ck_assert_uint_eq((uintptr_t)x->data % 4, 0);
    ck_assert(((const float *)x->data)[1] == -2.5f);
    coil_safetensors_close(&st);
}
END_TEST

START_TEST(test_bad_inputs)
{
    coil_err_t err = {0};
    float d[4] = {0};

    /* missing file */
    ck_assert_ptr_null(coil_safetensors_open("/nonexistent/x.safetensors", &err));
    ck_assert_int_eq(err.code, COIL_ENOTFOUND);
    /* shorter than the length field */
    ck_assert_int_eq(tu_write(path, "abc", 3), 0);
    ck_assert_ptr_null(coil_safetensors_open(path, &err));
    ck_assert_int_eq(err.code, COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated"));
    /* header length beyond the file, and beyond the cap */
    unsigned char big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, '{', '}'};
    ck_assert_int_eq(tu_write(path, big, sizeof big), 0);
    ck_assert_ptr_null(coil_safetensors_open(path, &err));
    ck_assert_int_eq(err.code, COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "header length"));
    /* not JSON */
    ck_assert_int_eq(open_err("{\"a\": [1,2", NULL, 0, &err), COIL_EFORMAT);
    ck_assert_int_eq(open_err("[1,2]", NULL, 0, &err), COIL_EFORMAT);
    /* unknown dtype, naming the tensor */
    ck_assert_int_eq(open_err("{\"w\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", d, 16, &err),
                     COIL_EDTYPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "'w'"));
    /* shape x dtype disagrees with the byte range */
    ck_assert_int_eq(open_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", d, 16, &err),
                     COIL_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "'w'"));
    /* offsets outside the data section */
    ck_assert_int_eq(open_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", d, 16, &err),
                     COIL_EFORMAT);
    ck_assert_int_eq(open_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[9,8]}}", d, 16, &err),
                     COIL_EFORMAT);
    /* negative / non-integer shape, missing fields */
    ck_assert_int_eq(open_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", d, 16, &err),
                     COIL_EFORMAT);
    ck_assert_int_eq(open_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", d, 16, &err), COIL_EFORMAT);
    /* overflowing element count */
    ck_assert_int_eq(open_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
                              d, 16, &err),
                     COIL_ETOOBIG);
    /* overlapping tensors, both named */
    ck_assert_int_eq(open_err("{\"p\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                              "\"q\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                              d, 16, &err),
                     COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "overlap"));
    /* duplicate keys */
    ck_assert_int_eq(open_err("{\"p\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                              "\"p\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                              d, 16, &err),
                     COIL_EFORMAT);
}
END_TEST

/* What real files hold, and what the reference reader (safetensors) refuses. */
START_TEST(test_format_details)
{
    coil_err_t err = {0};
    float d[4] = {1, 2, 3, 4};
    /* HF's header: {"__metadata__":{"format":"pt"}, ...} padded with spaces */
    ck_assert_int_eq(open_err("{\"__metadata__\":{\"format\":\"pt\"},"
                              "\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}      ",
                              d, 16, &err), 0);
    /* metadata values are strings */
    ck_assert_int_eq(open_err("{\"__metadata__\":{\"format\":1},"
                              "\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d, 16, &err),
                     COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "__metadata__ 'format'"));
    ck_assert_int_eq(open_err("{\"__metadata__\":[],\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                              d, 16, &err), COIL_EFORMAT);
    /* a hole before a tensor, and bytes after the last one */
    ck_assert_int_eq(open_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]}}", d, 16, &err),
                     COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "4 bytes of the data section before tensor 'w'"));
    ck_assert_int_eq(open_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", d, 16, &err),
                     COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "4 bytes after the last tensor"));
    ck_assert_int_eq(open_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", d, 16, &err),
                     COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "before tensor 'b'"));
    /* zero-size tensors and an empty file (no tensors) are valid */
    ck_assert_int_eq(open_err("{\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
                              "\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d, 16, &err), 0);
    ck_assert_int_eq(open_err("{}", NULL, 0, &err), 0);
    /* a NUL inside a name is refused by the JSON parser, naming the file */
    ck_assert_int_eq(open_err("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", d, 16,
                              &err), COIL_EFORMAT);
    /* too many dimensions: the documented maximum is named */
    ck_assert_int_eq(open_err("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,4],\"data_offsets\":[0,16]}}",
                              d, 16, &err), COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "(max 8)"));
    /* a header just over the documented maximum, in a (sparse) file long enough to hold it */
    unsigned char le[8];
    uint64_t h = COIL_ST_MAX_HEADER + 1;
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(h >> (8 * i));
    ck_assert_int_eq(tu_write(path, le, 8), 0);
    ck_assert_int_eq(truncate(path, (off_t)(COIL_ST_MAX_HEADER + 64)), 0);
    ck_assert_ptr_null(coil_safetensors_open(path, &err));
    ck_assert_int_eq(err.code, COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "100 MiB limit"));
}
END_TEST

/* Tensor names of any length load and are found (no fixed name buffer). */
START_TEST(test_long_names)
{
    coil_err_t err = {0};
    float d[2] = {7, 8};
    size_t L = 20000;
    char *name = malloc(L + 1), *h = malloc(L + 256);
    for (size_t i = 0; i < L; i++)
        name[i] = (char)('a' + i % 26);
    name[L] = '\0';
    snprintf(h, L + 256, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", name);
    ck_assert_int_eq(tu_write_st_raw(path, h, d, sizeof d), 0);
    coil_safetensors_t *st = coil_safetensors_open(path, &err);
    ck_assert_msg(st != NULL, "%s", err.msg);
    const coil_tensor_info_t *t = coil_safetensors_find(st, name);
    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(strlen(t->name), L);
    ck_assert(((const float *)t->data)[0] == 7.0f);
    ck_assert(((const float *)coil_safetensors_find(st, "b")->data)[0] == 8.0f);
    name[L - 1] = '!';
    ck_assert_ptr_null(coil_safetensors_find(st, name));
    coil_safetensors_close(&st);
    free(name);
    free(h);
}
END_TEST

START_TEST(test_truncated_real_file)
{
    coil_err_t err = {0};
    size_t n;
    void *buf = tu_read(tu_data("models/tied_f32/model.safetensors"), &n);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(tu_write(path, buf, n - 100), 0);
    free(buf);
    ck_assert_ptr_null(coil_safetensors_open(path, &err));
    ck_assert_int_eq(err.code, COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "tensor '")); /* names the tensor that runs off the end */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_valid);
    tcase_add_test(tc, test_misaligned_data_is_copied);
    tcase_add_test(tc, test_bad_inputs);
    tcase_add_test(tc, test_truncated_real_file);
    tcase_add_test(tc, test_format_details);
    tcase_add_test(tc, test_long_names);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
