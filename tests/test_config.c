/* test_config.c -- coild's YAML configuration: defaults, the annotated
 * example (must equal the defaults), overrides and a write/read round trip,
 * and every kind of error with its FILE:LINE:COLUMN: key.path.
 */
#include "coild_config.h"

#include "testutil.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_A "rq2[Hx!M#vV>}H-Gx8.c:sD-/N%NKZ^e@L@(Sb-v" /* 40 Z85 characters */
#define KEY_B "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"

/* The config as YAML text (malloc'd). */
static char *as_yaml(const coil_config_t *c)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(coil_config_write(c, f, NULL), 0);
    fclose(f);
    return buf;
}

static coil_config_t *load(const char *yaml, coil_err_t *err)
{
    coil_err_clear(err);
    return coil_config_load_string(yaml, strlen(yaml), "t.yaml", "/opt/model", err);
}

START_TEST(test_defaults)
{
    coil_err_t err;
    coil_config_t *c = coil_config_defaults("/opt/model", &err);
    coil_proto_limits_t lim;

    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(c->source);
    ck_assert_str_eq(c->endpoints.clients, "tcp://127.0.0.1:5555");
    ck_assert_str_eq(c->endpoints.events, "tcp://127.0.0.1:5556");
    ck_assert_str_eq(c->endpoints.workers, "ipc://*");
    ck_assert_str_eq(c->database, "coil.db");
    ck_assert_str_eq(c->model, "/opt/model");
    ck_assert_int_eq(c->workers, 1);
    ck_assert_int_eq(c->chunk_tokens, 512);
    ck_assert_int_eq(c->checkpoint.interval_tokens, 4096);
    ck_assert_int_eq(c->checkpoint.dense, 8);
    ck_assert_int_eq(c->limits.max_message_bytes, 64 << 20);
    ck_assert_int_eq(c->limits.max_text_bytes, 1 << 20);
    ck_assert_int_eq(c->limits.max_document_bytes, 256 << 20);
    ck_assert_int_eq(c->limits.max_concurrent_jobs, 16);
    ck_assert_int_eq(c->limits.max_clients, 0);
    ck_assert_int_eq(c->limits.max_uploads, 64);
    ck_assert_int_eq(c->limits.max_uploads_per_client, 4);
    ck_assert_int_eq(c->limits.upload_idle_seconds, 900);
    ck_assert_int_eq(c->threads_per_worker, 0);
    ck_assert_str_eq(c->device, "cpu");
    ck_assert_int_eq(c->log_level, COIL_LOG_INFO);
    ck_assert(!c->curve.enabled);
    coil_config_proto_limits(c, &lim);
    ck_assert_uint_eq(lim.max_message_bytes, 64u << 20);
    ck_assert_uint_eq(lim.max_document_bytes, 256u << 20);
    coil_config_destroy(&c);
    ck_assert_ptr_null(c);
    coil_config_destroy(&c);
    coil_config_destroy(NULL);

    c = coil_config_defaults(NULL, &err);
    ck_assert_str_eq(c->model, "");
    coil_config_destroy(&c);
    ck_assert_str_eq(coil_log_level_name(COIL_LOG_DEBUG), "debug");
    ck_assert_ptr_null(coil_log_level_name((coil_log_level_t)9));
}
END_TEST

START_TEST(test_example_equals_defaults)
{
    coil_err_t err;
    const char *path = tu_data("../../schemas/coild.example.yaml");
    coil_config_t *ex = coil_config_load(path, "/opt/model", &err);
    coil_config_t *def = coil_config_defaults("/opt/model", NULL);
    char *a, *b;

    ck_assert_msg(ex != NULL, "%s", err.msg);
    ck_assert_str_eq(ex->source, path);
    a = as_yaml(ex);
    b = as_yaml(def);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    coil_config_destroy(&ex);
    coil_config_destroy(&def);
}
END_TEST

START_TEST(test_empty_documents)
{
    static const char *const empties[] = {"", "# only a comment\n", "---\n", "--- ~\n",
                                          "---\n...\n", "limits:\nendpoints: ~\n", "{}\n"};
    coil_config_t *def = coil_config_defaults("/opt/model", NULL);
    char *want = as_yaml(def);
    coil_err_t err;

    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        coil_config_t *c = load(empties[i], &err);
        char *got;
        ck_assert_msg(c != NULL, "'%s': %s", empties[i], err.msg);
        got = as_yaml(c);
        ck_assert_str_eq(got, want);
        free(got);
        coil_config_destroy(&c);
    }
    free(want);
    coil_config_destroy(&def);
}
END_TEST

START_TEST(test_overrides_round_trip)
{
    const char *yaml = "endpoints:\n"
                       "  clients: tcp://0.0.0.0:7000\n"
                       "  events: 'ipc:///run/coil/events'\n"
                       "  workers: \"tcp://10.0.0.1:7002\"\n"
                       "database: /var/lib/coil/db.sqlite\n"
                       "model: \"\"\n"
                       "workers: 64\n"
                       "chunk_tokens: 65536\n"
                       "checkpoint: {interval_tokens: 1024, dense: 0}\n"
                       "limits:\n"
                       "  max_message_bytes: 1024\n"
                       "  max_text_bytes: 1\n"
                       "  max_document_bytes: 1125899906842624\n"
                       "  max_concurrent_jobs: 4096\n"
                       "  max_clients: 1048576\n"
                       "  max_uploads: 65536\n"
                       "  max_uploads_per_client: 1\n"
                       "  upload_idle_seconds: 0\n"
                       "threads_per_worker: 256\n"
                       "device: cuda:bf16\n"
                       "log_level: debug\n"
                       "curve:\n"
                       "  server_secret_key_file: /etc/coild/server.key\n"
                       "  server_public_key: \"" KEY_A "\"\n"
                       "  allowed_client_keys:\n"
                       "    - \"" KEY_A "\"\n"
                       "    - '" KEY_B "'\n"
                       "  allowed_client_keys_file: /etc/coild/clients\n";
    coil_err_t err;
    coil_config_t *c = load(yaml, &err), *back;
    char *a, *b;

    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert_str_eq(c->endpoints.clients, "tcp://0.0.0.0:7000");
    ck_assert_str_eq(c->endpoints.events, "ipc:///run/coil/events");
    ck_assert_str_eq(c->endpoints.workers, "tcp://10.0.0.1:7002");
    ck_assert_str_eq(c->database, "/var/lib/coil/db.sqlite");
    ck_assert_str_eq(c->model, "/opt/model"); /* "" = the caller's default */
    ck_assert_int_eq(c->workers, 64);
    ck_assert_int_eq(c->chunk_tokens, 65536);
    ck_assert_int_eq(c->checkpoint.interval_tokens, 1024);
    ck_assert_int_eq(c->checkpoint.dense, 0);
    ck_assert_int_eq(c->limits.max_message_bytes, 1024);
    ck_assert_int_eq(c->limits.max_text_bytes, 1);
    ck_assert_int_eq(c->limits.max_document_bytes, 1125899906842624LL);
    ck_assert_int_eq(c->limits.max_concurrent_jobs, 4096);
    ck_assert_int_eq(c->limits.max_clients, 1048576);
    ck_assert_int_eq(c->limits.max_uploads, 65536);
    ck_assert_int_eq(c->limits.max_uploads_per_client, 1);
    ck_assert_int_eq(c->limits.upload_idle_seconds, 0);
    ck_assert_int_eq(c->threads_per_worker, 256);
    ck_assert_str_eq(c->device, "cuda:bf16");
    ck_assert_int_eq(c->log_level, COIL_LOG_DEBUG);
    ck_assert(c->curve.enabled);
    ck_assert_str_eq(c->curve.server_secret_key_file, "/etc/coild/server.key");
    ck_assert_str_eq(c->curve.server_public_key, KEY_A);
    ck_assert_uint_eq(c->curve.n_allowed_client_keys, 2);
    ck_assert_str_eq(c->curve.allowed_client_keys[0], KEY_A);
    ck_assert_str_eq(c->curve.allowed_client_keys[1], KEY_B);
    ck_assert_str_eq(c->curve.allowed_client_keys_file, "/etc/coild/clients");

    a = as_yaml(c);
    back = coil_config_load_string(a, strlen(a), "written", "/opt/model", &err);
    ck_assert_msg(back != NULL, "%s\n%s", err.msg, a);
    b = as_yaml(back);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    coil_config_destroy(&back);
    coil_config_destroy(&c);

    /* a path with quotes, backslashes and a control character survives too */
    c = load("database: \"a \\\"b\\\" \\\\ \\t\"\nmodel: x\n", &err);
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert_str_eq(c->database, "a \"b\" \\ \t");
    ck_assert_str_eq(c->model, "x");
    a = as_yaml(c);
    back = coil_config_load_string(a, strlen(a), "written", "/opt/model", &err);
    ck_assert_msg(back != NULL, "%s\n%s", err.msg, a);
    ck_assert_str_eq(back->database, c->database);
    free(a);
    coil_config_destroy(&back);
    coil_config_destroy(&c);
}
END_TEST

typedef struct bad_case {
    const char *yaml;
    const char *want; /* must appear in the message */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    /* unknown keys */
    {"foo: 1\n", "t.yaml:1:1: foo: unknown key (expected one of: endpoints, database"},
    {"limits:\n  max_foo: 3\n", "t.yaml:2:3: limits.max_foo: unknown key"},
    {"checkpoint:\n  interval: 5\n", "t.yaml:2:3: checkpoint.interval: unknown key"},
    /* wrong types */
    {"workers: many\n", "t.yaml:1:10: workers: expected an integer in [1, 64], got 'many'"},
    {"workers: \"2\"\n", "t.yaml:1:10: workers: expected an integer"},
    {"workers: 2.0\n", "t.yaml:1:10: workers: expected an integer"},
    {"workers: 0x10\n", "workers: expected an integer"},
    {"workers:\n", "t.yaml:1:9: workers: expected an integer"},
    {"workers: [1]\n", "t.yaml:1:10: workers: expected a scalar, got a sequence"},
    {"database: {a: 1}\n", "t.yaml:1:11: database: expected a scalar, got a mapping"},
    {"endpoints: tcp://x:1\n", "t.yaml:1:12: endpoints: expected a mapping, got a scalar"},
    {"limits: [1, 2]\n", "t.yaml:1:9: limits: expected a mapping, got a sequence"},
    {"log_level: verbose\n", "t.yaml:1:12: log_level: expected error, warn, info or debug"},
    {"[1, 2]\n", "t.yaml:1:1: the top level must be a mapping, got a sequence"},
    {"hello\n", "t.yaml:1:1: the top level must be a mapping, got a scalar"},
    {"? [a]\n: 1\n", "t.yaml:1:3: expected a key, got a sequence"},
    /* out of range, huge numbers */
    {"workers: 65\n", "t.yaml:1:10: workers: expected an integer in [1, 64], got '65' (out of range)"},
    {"workers: 0\n", "workers: expected an integer in [1, 64], got '0' (out of range)"},
    {"chunk_tokens: 65537\n", "t.yaml:1:15: chunk_tokens: expected an integer in [1, 65536]"},
    {"limits:\n  max_message_bytes: 99999999999999999999999\n",
     "t.yaml:2:22: limits.max_message_bytes: expected an integer in [1024, 1099511627776], got "
     "'99999999999999999999999' (out of range)"},
    {"limits:\n  max_document_bytes: 9223372036854775807\n",
     "t.yaml:2:23: limits.max_document_bytes: expected an integer in [1, 1125899906842624]"},
    {"limits:\n  max_clients: -1\n", "t.yaml:2:16: limits.max_clients: expected an integer"},
    {"limits:\n  max_uploads: 0\n", "t.yaml:2:16: limits.max_uploads: expected an integer"},
    {"limits:\n  max_uploads_per_client: 65537\n", "t.yaml:2:27: limits.max_uploads_per_client: expected an integer"},
    {"limits:\n  max_message_bytes: 1023\n", "limits.max_message_bytes: expected an integer"},
    {"checkpoint:\n  interval_tokens: 0\n", "t.yaml:2:20: checkpoint.interval_tokens:"},
    {"threads_per_worker: -9223372036854775809\n", "threads_per_worker: expected an integer"},
    {"device: gpu\n", "t.yaml:1:9: device: expected cpu, cpu-portable, cuda, cuda:f32, cuda:tf32 or cuda:bf16, got 'gpu'"},
    {"device: cuda:fp8\n", "device: expected cpu, cpu-portable, cuda"},
    /* strings and endpoints */
    {"database: \"\"\n", "t.yaml:1:11: database: expected a non-empty path"},
    {"database: ~\n", "t.yaml:1:11: database: expected a non-empty path"},
    {"endpoints:\n  clients: http://x\n",
     "t.yaml:2:12: endpoints.clients: expected a ZeroMQ endpoint"},
    {"endpoints:\n  workers: tcp://\n", "t.yaml:2:12: endpoints.workers: expected a ZeroMQ"},
    {"endpoints:\n  events: tcp://127.0.0.1:5555\n",
     "t.yaml:2:11: endpoints.events: the same endpoint as endpoints.clients"},
    {"endpoints:\n  clients: tcp://127.0.0.1:5556\n",
     "t.yaml:2:12: endpoints.clients: the same endpoint as endpoints.events"},
    /* curve */
    {"curve:\n  allowed_client_keys: []\n",
     "t.yaml:2:3: curve: server_secret_key_file is required with curve"},
    {"curve:\n  server_secret_key_file: /k\n  allowed_client_keys: [abc]\n",
     "t.yaml:3:25: curve.allowed_client_keys[0]: expected a 40-character Z85 CURVE key"},
    {"curve:\n  server_secret_key_file: /k\n  allowed_client_keys: \"" KEY_A "\"\n",
     "t.yaml:3:24: curve.allowed_client_keys: expected a sequence of Z85 keys, got a scalar"},
    {"curve:\n  server_secret_key_file: /k\n  server_public_key: short\n",
     "t.yaml:3:22: curve.server_public_key: expected a 40-character Z85 CURVE key"},
    /* YAML features we refuse */
    {"limits: &l\n  max_clients: 3\n", "t.yaml:1:9: limits: anchors are not supported"},
    {"database: *x\n", "t.yaml:1:11: database: aliases are not supported"},
    {"workers: !!int 3\n", "t.yaml:1:10: workers: tags are not supported"},
    {"workers: 2\n---\nworkers: 3\n", "t.yaml:2:1: only one YAML document is allowed"},
    {"workers: 2\nworkers: 3\n", "t.yaml:2:1: workers: duplicate key"},
    {"limits:\n  max_clients: 1\n  max_clients: 2\n", "t.yaml:3:3: limits.max_clients: duplicate key"},
    /* syntax errors */
    {"workers: 1\nlimits: {max_clients: 1\n", "t.yaml:3:1: YAML syntax error: did not find expected"},
    {"database: a: b\n", "t.yaml:1:12: YAML syntax error: mapping values are not allowed"},
    {"limits:\n\tmax_clients: 1\n", "t.yaml:2:1: YAML syntax error: found character that cannot start any token"},
    {"database: \"unterminated\n", "t.yaml:2:1: YAML syntax error: found unexpected end of stream"},
    {"database: \xff\xfe\n", "t.yaml: byte 10: YAML error: invalid leading UTF-8 octet"},
};

START_TEST(test_errors)
{
    const bad_case_t *b = &bad_cases[_i];
    coil_err_t err;
    coil_config_t *c = load(b->yaml, &err);
    ck_assert_msg(c == NULL, "'%s' should fail", b->yaml);
    ck_assert_msg(err.code == COIL_ECONFIG, "'%s': %s", b->yaml, coil_err_name(err.code));
    ck_assert_msg(strstr(err.msg, b->want), "'%s':\n got  %s\n want %s", b->yaml, err.msg,
                  b->want);
}
END_TEST

START_TEST(test_files)
{
    char *dir = tu_mkdtemp(), path[4200];
    const char *yaml = "workers: 3\nlimits:\n  max_clients: x\n";
    coil_err_t err;
    coil_config_t *c;

    ck_assert_ptr_nonnull(dir);
    snprintf(path, sizeof path, "%s/missing.yaml", dir);
    c = coil_config_load(path, NULL, &err);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(err.code, COIL_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "missing.yaml"));

    snprintf(path, sizeof path, "%s/coild.yaml", dir);
    ck_assert_int_eq(tu_write(path, yaml, strlen(yaml)), 0);
    c = coil_config_load(path, NULL, &err);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(err.code, COIL_ECONFIG);
    {
        char want[4300];
        snprintf(want, sizeof want, "%s:3:16: limits.max_clients: expected an integer", path);
        ck_assert_msg(strstr(err.msg, want), "%s", err.msg);
    }
    ck_assert_int_eq(tu_write(path, "workers: 3\n", 11), 0);
    c = coil_config_load(path, NULL, &err);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->workers, 3);
    ck_assert_str_eq(c->model, "");
    coil_config_destroy(&c);

    /* an empty file is the defaults */
    ck_assert_int_eq(tu_write(path, "", 0), 0);
    c = coil_config_load(path, "m", &err);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->model, "m");
    coil_config_destroy(&c);
    /* a directory is not a config file */
    c = coil_config_load(dir, NULL, &err);
    ck_assert_ptr_null(c);
    ck_assert(err.code == COIL_EIO || err.code == COIL_ECONFIG);
    tu_rm_rf(dir);
    free(dir);
}
END_TEST

START_TEST(test_big_and_odd_input)
{
    coil_err_t err;
    coil_config_t *c;
    size_t n = (1u << 20) + 1;
    char *big = malloc(n + 1);

    ck_assert_ptr_nonnull(big);
    memset(big, '#', n);
    big[n] = '\0';
    c = coil_config_load_string(big, n, "big.yaml", NULL, &err);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(err.code, COIL_ECONFIG);
    ck_assert_msg(strstr(err.msg, "more than a config file may have (1048576)") != NULL, "%s", err.msg);
    free(big);

    /* every documented limit is an error naming it (schemas/coild.example.yaml) */
    char *lng = malloc(9000);
    ck_assert_ptr_nonnull(lng);
    memset(lng, 'p', 4097);
    snprintf(lng + 4097, 100, "\n");
    char *y = malloc(9100);
    snprintf(y, 9100, "database: %s", lng);
    c = load(y, &err);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err.msg, "database: expected a string without NUL of at most 4096 bytes") != NULL, "%s",
                  err.msg);
    memset(lng, 'p', 4096); /* exactly the limit: fine */
    snprintf(lng + 4096, 100, "\n");
    snprintf(y, 9100, "database: %s", lng);
    c = load(y, &err);
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert_int_eq(strlen(c->database), 4096);
    coil_config_destroy(&c);
    memset(lng, 'h', 260);
    lng[260] = '\0';
    snprintf(y, 9100, "endpoints:\n  clients: tcp://%s:1\n", lng);
    c = load(y, &err);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err.msg, "(at most 256 bytes)") != NULL, "%s", err.msg);
    free(y);
    free(lng);

    /* a NUL byte inside the text */
    c = coil_config_load_string("workers: 2\0\n", 12, "nul.yaml", NULL, &err);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(err.code, COIL_ECONFIG);
    /* deep nesting under a known key is refused at the first level */
    c = load("limits: {a: {b: {c: {d: 1}}}}\n", &err);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(err.msg, "limits.a: unknown key"));
}
END_TEST

/* Endpoints the system completes (a free port, a private socket) never
 * collide, so two of them are not "the same endpoint". */
START_TEST(test_wildcard_endpoints)
{
    coil_err_t err;
    coil_config_t *c = load("endpoints:\n  clients: tcp://127.0.0.1:*\n  events: tcp://127.0.0.1:*\n", &err);
    ck_assert_msg(c != NULL, "%s", err.msg);
    ck_assert_str_eq(c->endpoints.workers, "ipc://*");
    coil_config_destroy(&c);
    c = load("endpoints:\n  clients: tcp://127.0.0.1:0\n  events: tcp://127.0.0.1:0\n", &err);
    ck_assert_msg(c != NULL, "%s", err.msg);
    coil_config_destroy(&c);
    c = load("endpoints:\n  clients: tcp://127.0.0.1:10\n  events: tcp://127.0.0.1:10\n", &err);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(err.msg, "the same endpoint"));
}
END_TEST

/* 1000 mutations of the example file: never a crash, always a config or ECONFIG. */
START_TEST(test_fuzz)
{
    size_t n;
    char *ex = tu_read(tu_data("../../schemas/coild.example.yaml"), &n);
    uint64_t st = 0x2545F4914F6CDD1Dull;
    int n_ok = 0;

    ck_assert_ptr_nonnull(ex);
    for (int it = 0; it < 1000; it++) {
        char *buf = malloc(n + 1);
        size_t len = n;
        coil_err_t err;
        coil_config_t *c;

        memcpy(buf, ex, n);
        for (int k = 1 + it % 4; k > 0; k--) {
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            if (it % 5 == 0)
                len = st % (n + 1); /* truncate */
            else if (it % 5 == 1)
                buf[st % n] = (char)(st >> 32); /* random byte */
            else
                buf[st % n] = ":-[]{}&*!|>'\"#,? \n\t0"[(st >> 24) % 19]; /* YAML syntax */
        }
        coil_err_clear(&err);
        c = coil_config_load_string(buf, len, "fuzz.yaml", NULL, &err);
        if (c)
            n_ok++;
        else
            ck_assert_msg(err.code == COIL_ECONFIG && strncmp(err.msg, "fuzz.yaml", 9) == 0,
                          "%s: %s", coil_err_name(err.code), err.msg);
        coil_config_destroy(&c);
        free(buf);
    }
    ck_assert_int_gt(n_ok, 0); /* mutations inside comments still load */
    free(ex);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_example_equals_defaults);
    tcase_add_test(tc, test_empty_documents);
    tcase_add_test(tc, test_overrides_round_trip);
    tcase_add_loop_test(tc, test_errors, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
    tcase_add_test(tc, test_files);
    tcase_add_test(tc, test_big_and_odd_input);
    tcase_add_test(tc, test_fuzz);
    tcase_add_test(tc, test_wildcard_endpoints);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
