/* test_protocol_schemas.c -- schemas/protocol/ agree with the C protocol code.
 *
 * Runs coil_proto_parse_request over tests/data/protocol/cases.json and
 * builds replies (every error code, string and integer ids, partials) and
 * every event with the C builders, writes both to a temporary directory and
 * hands them to tests/tools/check_protocol_schemas.py, which validates the
 * same corpus against the JSON Schemas and the outputs against the reply and
 * event schemas.  Exits 77 (automake: skipped) without python3 + jsonschema.
 */
#include "protocol.h"

#include "protocol_cases.h"
#include "testutil.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef COIL_PYTHON
#define COIL_PYTHON "python3"
#endif

static char srcdir[4096]; /* the source tree: $COIL_TEST_DATA/../.. */

/* Runs argv, returns its exit status (-1 if it did not exit normally). */
static int run(char *const argv[], bool quiet)
{
    pid_t pid = fork();
    int st;
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (quiet) {
            FILE *null = freopen("/dev/null", "w", stdout);
            (void)null;
            null = freopen("/dev/null", "w", stderr);
            (void)null;
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

/* Appends {"kind":kind,"topic":topic,"text":*out} to f; frees *out.  rc is
 * the builder's result: take out by address, as the builder's call that
 * fills it is another argument of the same call. */
static void put_output(FILE *f, const char *kind, const char *topic, int rc, char **out)
{
    char *text = *out;
    json_t *o;
    ck_assert_int_eq(rc, 0);
    o = json_pack("{s:s, s:s?, s:s}", "kind", kind, "topic", topic, "text", text);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_eq(json_dumpf(o, f, JSON_COMPACT), 0);
    fputc('\n', f);
    json_decref(o);
    free(text);
}

static void write_outputs(FILE *f)
{
    json_t *ids[3] = {json_string("r\xc3\xa9q-1"), json_integer(42), json_integer(-9)};
    char *out;
    size_t len;

    for (int i = 0; i < 3; i++) {
        json_t *res = json_pack("{s:f, s:[{s:i, s:f}]}", "logprob", -3.25, "tokens", "id", 11,
                                "logprob", -3.25);
        put_output(f, "reply", NULL, coil_proto_reply_ok(ids[i], &res, &out, &len, NULL), &out);
        put_output(f, "reply", NULL, coil_proto_reply_ok(ids[i], NULL, &out, &len, NULL), &out);
        res = json_pack("{s:s, s:i}", "text", " the", "token", 262);
        put_output(f, "reply", NULL, coil_proto_reply_partial(ids[i], &res, &out, &len, NULL), &out);
    }
    /* every error code, with and without an id */
    for (int code = -1; strcmp(coil_strerror(code), "unknown error") != 0; code--) {
        put_output(f, "reply", NULL,
                   coil_proto_reply_error(ids[code % 3 == 0 ? 1 : 0], code, "context: \xff bad",
                                          &out, &len, NULL), &out);
        put_output(f, "reply", NULL, coil_proto_reply_error(NULL, code, NULL, &out, &len, NULL), &out);
        put_output(f, "event", COIL_TOPIC_DOC_FAILED,
                   coil_proto_event_doc_failed("book", code, "why", &out, &len, NULL), &out);
    }
    put_output(f, "event", COIL_TOPIC_INGEST_PROGRESS,
               coil_proto_event_ingest_progress("book", 10, 20, -1, 1.5, &out, &len, NULL), &out);
    put_output(f, "event", COIL_TOPIC_INGEST_PROGRESS,
               coil_proto_event_ingest_progress("b\xc3\xa9", 0, 0, 100, 0, &out, &len, NULL), &out);
    put_output(f, "event", COIL_TOPIC_HEARTBEAT, coil_proto_event_heartbeat(12.5, 2, 1, 0, &out, &len, NULL), &out);
    put_output(f, "event", COIL_TOPIC_DOC_COMPLETE,
               coil_proto_event_doc_complete("book", 10, 20, 0.5, &out, &len, NULL), &out);
    put_output(f, "event", COIL_TOPIC_WORKER_UP,
               coil_proto_event_worker(COIL_TOPIC_WORKER_UP, "w1", 4242, NULL, &out, &len, NULL), &out);
    put_output(f, "event", COIL_TOPIC_WORKER_DOWN,
               coil_proto_event_worker(COIL_TOPIC_WORKER_DOWN, "w1", 4242, "exit status 1", &out,
                                       &len, NULL), &out);
    for (int i = 0; i < 3; i++)
        json_decref(ids[i]);
}

START_TEST(test_schemas_agree)
{
    char *dir = tu_mkdtemp();
    char verdicts[4200], outputs[4200], schemas[4200], script[4200], cases_path[4200];
    json_t *cases = pc_load(), *c;
    size_t i;
    FILE *f;
    int rc;

    ck_assert_ptr_nonnull(dir);
    ck_assert_ptr_nonnull(cases);
    snprintf(verdicts, sizeof verdicts, "%s/verdicts.jsonl", dir);
    snprintf(outputs, sizeof outputs, "%s/outputs.jsonl", dir);
    snprintf(schemas, sizeof schemas, "%s/schemas/protocol", srcdir);
    snprintf(script, sizeof script, "%s/tests/tools/check_protocol_schemas.py", srcdir);
    snprintf(cases_path, sizeof cases_path, "%s", tu_data("protocol/cases.json"));

    f = fopen(verdicts, "w");
    ck_assert_ptr_nonnull(f);
    json_array_foreach(cases, i, c) {
        coil_err_t err;
        json_t *v = json_pack("{s:O, s:b}", "name", json_object_get(c, "name"), "valid",
                              pc_parse(c, &err) == 0);
        ck_assert_int_eq(json_dumpf(v, f, JSON_COMPACT), 0);
        fputc('\n', f);
        json_decref(v);
    }
    ck_assert_int_eq(fclose(f), 0);
    f = fopen(outputs, "w");
    ck_assert_ptr_nonnull(f);
    write_outputs(f);
    ck_assert_int_eq(fclose(f), 0);

    {
        char *argv[] = {(char *)COIL_PYTHON, script, schemas, cases_path, verdicts, outputs, NULL};
        rc = run(argv, false);
    }
    tu_rm_rf(dir);
    free(dir);
    json_decref(cases);
    ck_assert_msg(rc == 0, "check_protocol_schemas.py exited %d", rc);
}
END_TEST

int main(void)
{
    const char *data = getenv("COIL_TEST_DATA");
    char *probe[] = {(char *)COIL_PYTHON, (char *)"-c", (char *)"import jsonschema", NULL};
    Suite *s;
    TCase *tc;
    SRunner *sr;
    int failed;

    snprintf(srcdir, sizeof srcdir, "%s/../..", data && *data ? data : "tests/data");
    if (strcmp(COIL_PYTHON, "none") == 0 || run(probe, true) != 0) {
        printf("SKIP: %s with the jsonschema module is needed (Debian: python3-jsonschema)\n",
               COIL_PYTHON);
        return 77;
    }
    s = suite_create("protocol_schemas");
    tc = tcase_create("agree");
    tcase_add_test(tc, test_schemas_agree);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
