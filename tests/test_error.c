/* test_error.c -- the error table and message helpers. */
#include "error.h"

#include <check.h>
#include <string.h>

START_TEST(test_strerror_table)
{
    ck_assert_str_eq(coil_strerror(COIL_OK), "success");
    ck_assert_str_eq(coil_strerror(COIL_EFORMAT), "malformed input");
    ck_assert_str_eq(coil_err_name(COIL_ECHECKSUM), "COIL_ECHECKSUM");
    ck_assert_str_eq(coil_strerror(12345), "unknown error");
}
END_TEST

START_TEST(test_set_and_prefix)
{
    coil_err_t err;
    coil_err_clear(&err);
    ck_assert_int_eq(coil_err_set(&err, COIL_ESHAPE, "tensor %s", "x"), COIL_ESHAPE);
    ck_assert_int_eq(coil_err_prefix(&err, "file %d", 3), COIL_ESHAPE);
    ck_assert_str_eq(err.msg, "file 3: tensor x");
    ck_assert_int_eq(coil_err_set(NULL, COIL_EIO, "ignored"), COIL_EIO);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("error");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_strerror_table);
    tcase_add_test(tc, test_set_and_prefix);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
