/* test_allocfail.c -- allocation failures injected into every parser of
 * outside bytes (issue 16): the safetensors reader, config.json and the
 * model loader (every family), tokenizer.json, coild's YAML config,
 * protocol request decoding and state blob import; and the engine: a new
 * engine and state over a loaded model, 3 tokens, the next token's logits.
 *
 * This program defines malloc, calloc, realloc, free, posix_memalign,
 * aligned_alloc, strdup and strndup itself (they forward to the next
 * definition: libc's, or ASan's under --enable-sanitizers), so every
 * allocation of libcoil and of the libraries it calls (jansson, libyaml,
 * utf8proc, SQLite is not involved) made by the test's thread passes through
 * a counter.  For each workload: a run without failures counts A
 * allocations; then for N = 1, 2, ... the Nth allocation fails, until a run
 * no longer reaches N.  Every run that had a failure must end in an error
 * with its code and a message (COIL_ENOMEM, or the module's own code where
 * the failure surfaced through a library, e.g. jansson's parse error), or
 * succeed with the same result as the clean run (a failure the code
 * tolerated); none may crash, and the allocations still live at the end
 * must be those of the clean run (no leak; under ASan LeakSanitizer checks
 * the same at exit).
 */
#include <check.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "coild_config.h"
#include "engine.h"
#include "error.h"
#include "model.h"
#include "protocol.h"
#include "safetensors.h"
#include "state.h"
#include "testutil.h"
#include "tokenizer.h"

/* ---- the allocation counter ---------------------------------------------------------- */

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);

/* dlsym may allocate (calloc) before the real functions are known */
static _Alignas(16) char boot[8192];
static size_t boot_used;
static int resolving;

static __thread int armed;     /* count this thread's allocations */
static __thread long n_allocs; /* allocations while armed */
static __thread long live;     /* allocations - frees while armed */
static __thread long fail_at;  /* 0 = none */
static __thread int injected;  /* the fail_at'th allocation failed */

static void *boot_alloc(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (boot_used + n > sizeof boot)
        return NULL;
    void *p = boot + boot_used;
    boot_used += n;
    return p;
}

static void resolve(void)
{
    if (real_malloc || resolving)
        return;
    resolving = 1;
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    resolving = 0;
    if (!real_malloc || !real_calloc || !real_realloc || !real_free || !real_posix_memalign || !real_aligned_alloc)
        abort();
}

static int fail_now(void)
{
    if (!armed)
        return 0;
    if (++n_allocs == fail_at) {
        injected = 1;
        errno = ENOMEM; /* as malloc does */
        return 1;
    }
    return 0;
}

static int is_boot(const void *p)
{
    return (const char *)p >= boot && (const char *)p < boot + sizeof boot;
}

void *malloc(size_t n)
{
    if (!real_malloc) {
        if (resolving)
            return boot_alloc(n);
        resolve();
    }
    if (fail_now())
        return NULL;
    void *p = real_malloc(n);
    if (p && armed)
        live++;
    return p;
}

void *calloc(size_t a, size_t b)
{
    if (!real_calloc) {
        if (resolving)
            return boot_alloc(a * b); /* zeroed: static storage */
        resolve();
    }
    if (fail_now())
        return NULL;
    void *p = real_calloc(a, b);
    if (p && armed)
        live++;
    return p;
}

void *realloc(void *old, size_t n)
{
    if (!real_realloc)
        resolve();
    if (old && is_boot(old)) { /* never happens in practice; keep it correct */
        void *p = malloc(n);
        if (p)
            memcpy(p, old, n < (size_t)(boot + sizeof boot - (char *)old) ? n : (size_t)(boot + sizeof boot - (char *)old));
        return p;
    }
    if (fail_now())
        return NULL;
    void *p = real_realloc(old, n);
    if (armed) {
        if (!old && p)
            live++;
        else if (old && n == 0 && !p)
            live--;
    }
    return p;
}

void free(void *p)
{
    if (!p || is_boot(p))
        return;
    if (!real_free)
        resolve();
    if (armed)
        live--;
    real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (!real_posix_memalign)
        resolve();
    if (fail_now())
        return ENOMEM;
    int rc = real_posix_memalign(out, align, n);
    if (rc == 0 && armed)
        live++;
    return rc;
}

void *aligned_alloc(size_t align, size_t n)
{
    if (!real_aligned_alloc)
        resolve();
    if (fail_now())
        return NULL;
    void *p = real_aligned_alloc(align, n);
    if (p && armed)
        live++;
    return p;
}

char *strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

char *strndup(const char *s, size_t max)
{
    size_t n = strnlen(s, max);
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static void arm(void)
{
    armed = 1;
}
static void disarm(void)
{
    armed = 0;
}

/* ---- workloads ---------------------------------------------------------------------- */

/* A workload runs one parse with the counter armed around the library's
 * calls only (its own checks disarmed), frees what it made, and returns 0
 * when the result is right or the library's error code (err filled). */
typedef int (*workload_fn)(coil_err_t *err);

static char *scratch;
static char st_path[4096], model_dir[4096], tok_path[4096];
#define N_FAM 3
static const char *const fam_names[N_FAM] = {"rwkv", "mamba2", "falcon_mamba"};
static char fam_dir[N_FAM][4096];
static int cur_fam;
static float ref_logits[64]; /* the engine workload's clean result */
static coil_model_t *state_model;
static void *state_blob;
static size_t state_blob_len;

static void setup(void)
{
    ck_assert_ptr_nonnull(scratch = tu_mkdtemp());
    snprintf(st_path, sizeof st_path, "%s/t.safetensors", scratch);
    static const float w[6] = {1, 2, 3, 4, 5, 6};
    ck_assert_int_eq(tu_write_st_raw(st_path,
                                     "{\"__metadata__\":{\"format\":\"pt\"},"
                                     "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
                                     w, sizeof w),
                     0);
    snprintf(model_dir, sizeof model_dir, "%s/model", scratch);
    ck_assert_int_eq(mkdir(model_dir, 0700), 0);
    tu_model_shape_t shape = {.d_model = 16, .n_layer = 2, .vocab = 64, .d_state = 4,
                              .d_conv = 4, .expand = 2, .dt_rank = 0, .tied = 1, .dtype = "F32"};
    ck_assert_int_eq(tu_write_random_model(model_dir, &shape, 7), 0);
    for (int f = 0; f < N_FAM; f++) {
        snprintf(fam_dir[f], sizeof fam_dir[f], "%s/model-%s", scratch, fam_names[f]);
        ck_assert_int_eq(mkdir(fam_dir[f], 0700), 0);
        tu_model_shape_t fs = shape;
        fs.family = fam_names[f];
        ck_assert_int_eq(tu_write_random_model(fam_dir[f], &fs, 7), 0);
    }
    snprintf(tok_path, sizeof tok_path, "%s/tests/fuzz/corpus/tokenizer_load/seed-bytelevel-small",
             COIL_ALLOCFAIL_SRCDIR);
    coil_err_t err = {0};
    state_model = coil_model_load(model_dir, &err);
    ck_assert_msg(state_model != NULL, "%s", err.msg);
    coil_state_t *st = coil_state_new(state_model, &err);
    ck_assert_ptr_nonnull(st);
    coil_state_conv(st, 1)[2] = 0.75f;
    coil_state_ssm(st, 0)[5] = -2.5f;
    coil_state_set_position(st, 99);
    state_blob_len = coil_state_blob_size(st);
    ck_assert_ptr_nonnull(state_blob = malloc(state_blob_len));
    ck_assert_int_eq(coil_state_serialize(st, state_blob, state_blob_len, &err), 0);
    coil_state_destroy(&st);
}

static void teardown(void)
{
    coil_model_destroy(&state_model);
    free(state_blob);
    tu_rm_rf(scratch);
    free(scratch);
}

static int wl_safetensors(coil_err_t *err)
{
    arm();
    coil_safetensors_t *st = coil_safetensors_open(st_path, err);
    disarm();
    if (!st)
        return err->code;
    int ok = coil_safetensors_count(st) == 2;
    const coil_tensor_info_t *t = ok ? coil_safetensors_find(st, "b") : NULL;
    ok = ok && t && t->nbytes == 8 && ((const float *)t->data)[1] == 6.0f;
    arm();
    coil_safetensors_close(&st);
    disarm();
    return ok ? 0 : coil_err_set(err, COIL_EINVAL, "safetensors: a wrong result after an allocation failure");
}

static int wl_model(coil_err_t *err)
{
    arm();
    coil_model_t *m = coil_model_load(model_dir, err);
    disarm();
    if (!m)
        return err->code;
    const coil_model_config_t *c = coil_model_config(m);
    int ok = c->n_layer == 2 && c->d_model == 16 && c->vocab_size == 64;
    arm();
    coil_model_destroy(&m);
    disarm();
    return ok ? 0 : coil_err_set(err, COIL_EINVAL, "model: a wrong config after an allocation failure");
}

static int wl_model_family(coil_err_t *err)
{
    arm();
    coil_model_t *m = coil_model_load(fam_dir[cur_fam], err);
    disarm();
    if (!m)
        return err->code;
    const coil_model_config_t *c = coil_model_config(m);
    char dims[512];
    int ok = c->n_layer == 2 && c->d_model == 16 && c->vocab_size == 64 &&
             coil_model_dims_json(m, dims, sizeof dims) > 0 && strstr(dims, fam_names[cur_fam]) != NULL;
    arm();
    coil_model_destroy(&m);
    disarm();
    return ok ? 0 : coil_err_set(err, COIL_EINVAL, "model: a wrong config after an allocation failure");
}

/* engine + state over the loaded Mamba-1 model, 3 tokens, next-token logits;
 * out: the logits (the clean run's are the reference) */
static int engine_run(float *out, coil_err_t *err)
{
    coil_engine_options_t eo = {.max_chunk = 2, .threads = 1, .backend = "cpu"};
    static const int32_t ids[3] = {5, 63, 0};
    coil_state_t *st = NULL;
    coil_engine_t *e = coil_engine_new(state_model, &eo, err);
    int rc = e ? 0 : err->code;
    if (!rc && !(st = coil_state_new(state_model, err)))
        rc = err->code;
    if (!rc && (rc = coil_engine_forward(e, st, ids, 3, NULL, err)) == COIL_ENOMEM &&
        strstr(err->msg, "matrix library")) {
        /* a forward pass that failed midway left a poisoned state: it must not be saved */
        static unsigned char blob[1 << 16];
        coil_err_t serr = {0};
        if (coil_state_blob_size(st) > sizeof blob || coil_state_serialize(st, blob, sizeof blob, &serr) != COIL_ESTATE)
            rc = coil_err_set(err, COIL_EINVAL, "engine: a wrong result: the state of a failed forward pass could "
                                                "be saved (%s)", serr.msg);
    }
    if (!rc)
        rc = coil_engine_next_logits(e, st, out, err);
    coil_state_destroy(&st);
    coil_engine_destroy(&e);
    return rc;
}

static int wl_engine(coil_err_t *err)
{
    float got[64];
    memset(got, 0, sizeof got);
    arm();
    int rc = engine_run(got, err);
    disarm();
    if (rc)
        return rc;
    return memcmp(got, ref_logits, sizeof got) == 0
               ? 0
               : coil_err_set(err, COIL_EINVAL, "engine: a wrong result (logits differ) after an allocation failure");
}

static const char tok_text[] = "hello the world, in there\n<|endoftext|> caf\xc3\xa9";
static int32_t tok_want[64];
static size_t tok_n_want;

static int wl_tokenizer(coil_err_t *err)
{
    arm();
    coil_tokenizer_t *tok = coil_tokenizer_load(tok_path, err);
    disarm();
    if (!tok)
        return err->code;
    int32_t *ids = NULL;
    size_t n = 0;
    arm();
    int rc = coil_tokenizer_encode(tok, tok_text, sizeof tok_text - 1, &ids, &n, err);
    disarm();
    int ok = 1;
    if (rc == 0) {
        if (tok_n_want == 0 && n <= 64) { /* the clean run sets the expectation */
            memcpy(tok_want, ids, n * sizeof *ids);
            tok_n_want = n;
        }
        ok = n == tok_n_want && memcmp(ids, tok_want, n * sizeof *ids) == 0;
    }
    arm();
    free(ids);
    coil_tokenizer_destroy(&tok);
    disarm();
    if (rc != 0)
        return rc;
    return ok ? 0 : coil_err_set(err, COIL_EINVAL, "tokenizer: different ids after an allocation failure");
}

static const char yaml_text[] =
    "# a small coild config\n"
    "endpoints:\n"
    "  clients: \"tcp://127.0.0.1:7555\"\n"
    "  events: 'ipc:///tmp/coil-ev'\n"
    "database: store.db\n"
    "workers: 3\n"
    "checkpoint: {interval_tokens: 512, dense: 2}\n"
    "limits:\n"
    "  max_text_bytes: 4096\n"
    "log_level: debug\n";

static int wl_config(coil_err_t *err)
{
    arm();
    coil_config_t *c = coil_config_load_string(yaml_text, sizeof yaml_text - 1, "t.yaml", "/model", err);
    disarm();
    if (!c)
        return err->code;
    int ok = c->workers == 3 && strcmp(c->database, "store.db") == 0 && c->limits.max_text_bytes == 4096 &&
             strcmp(c->endpoints.events, "ipc:///tmp/coil-ev") == 0 && c->checkpoint.interval_tokens == 512;
    arm();
    coil_config_destroy(&c);
    disarm();
    return ok ? 0 : coil_err_set(err, COIL_EINVAL, "config: a wrong value after an allocation failure");
}

static const char proto_text[] =
    "{\"v\":1,\"id\":\"req-1\",\"op\":\"ingest\",\"name\":\"doc \\u00e9\",\"text\":\"one two three\","
    "\"part\":2,\"last\":false}";

static int wl_protocol(coil_err_t *err)
{
    coil_proto_limits_t lim;
    coil_proto_limits_default(&lim);
    coil_proto_request_t *r = NULL;
    arm();
    int rc = coil_proto_parse_request(proto_text, sizeof proto_text - 1, NULL, 0, 1, &lim, &r, err);
    disarm();
    if (rc != 0)
        return rc;
    int ok = r->op == COIL_OP_INGEST && r->part == 2 && !r->last && r->text_len == 13 &&
             memcmp(r->text, "one two three", 13) == 0 && strcmp(r->name, "doc \xc3\xa9") == 0;
    arm();
    coil_proto_request_free(&r);
    disarm();
    return ok ? 0 : coil_err_set(err, COIL_EINVAL, "protocol: a wrong request after an allocation failure");
}

static int wl_state(coil_err_t *err)
{
    arm();
    coil_state_t *st = coil_state_new(state_model, err);
    int rc = st ? coil_state_deserialize(st, state_blob, state_blob_len, err) : err->code;
    disarm();
    int ok = 1;
    if (rc == 0)
        ok = coil_state_position(st) == 99 && coil_state_conv(st, 1)[2] == 0.75f &&
             coil_state_ssm(st, 0)[5] == -2.5f;
    arm();
    coil_state_destroy(&st);
    disarm();
    if (rc != 0)
        return rc;
    return ok ? 0 : coil_err_set(err, COIL_EINVAL, "state: a wrong state after an allocation failure");
}

/* ---- the sweep ---------------------------------------------------------------------- */

static void sweep(const char *what, workload_fn fn)
{
    coil_err_t err = {0};
    /* twice clean: the second run is the reference (one-time set-up in the first) */
    long base_live = 0, base_allocs = 0;
    for (int i = 0; i < 2; i++) {
        n_allocs = live = 0;
        fail_at = 0;
        injected = 0;
        int rc = fn(&err);
        ck_assert_msg(rc == 0, "%s: clean run failed: %s", what, err.msg);
        base_live = live;
        base_allocs = n_allocs;
    }
    ck_assert_msg(base_allocs > 0, "%s: no allocation counted (is the interposer in use?)", what);
    long n_err = 0, n_enomem = 0, n_tolerated = 0, n;
    int verbose = getenv("COIL_ALLOCFAIL_VERBOSE") != NULL;
    for (n = 1; n < 1000000; n++) {
        n_allocs = live = 0;
        fail_at = n;
        injected = 0;
        coil_err_clear(&err);
        int rc = fn(&err);
        fail_at = 0;
        if (!injected) {
            ck_assert_msg(rc == 0, "%s: a run without a failure failed: %s", what, err.msg);
            break;
        }
        if (verbose && rc != COIL_ENOMEM)
            fprintf(stderr, "test_allocfail: %s: allocation %ld failed: %s (%s)\n", what, n,
                    rc ? coil_err_name(rc) : "tolerated, same result", err.msg);
        if (rc == 0) {
            n_tolerated++;
        } else {
            ck_assert_msg(rc < 0 && err.code == rc && err.msg[0],
                          "%s: allocation %ld failed: code %d, err.code %d, message \"%s\"", what, n, rc,
                          err.code, err.msg);
            ck_assert_msg(strstr(err.msg, "a wrong") == NULL && strstr(err.msg, "different ids") == NULL,
                          "%s: allocation %ld: %s", what, n, err.msg);
            n_err++;
            n_enomem += rc == COIL_ENOMEM;
        }
        ck_assert_msg(live == base_live, "%s: allocation %ld failed: %ld allocations left live (clean run: %ld)",
                      what, n, live, base_live);
    }
    ck_assert_msg(n > base_allocs, "%s: the sweep stopped at %ld of %ld allocations", what, n, base_allocs);
    fprintf(stderr, "test_allocfail: %s: %ld allocations failed one at a time: %ld errors (%ld COIL_ENOMEM), "
                    "%ld tolerated\n",
            what, n - 1, n_err, n_enomem, n_tolerated);
}

START_TEST(test_safetensors)
{
    sweep("safetensors", wl_safetensors);
}
END_TEST

START_TEST(test_model)
{
    sweep("model", wl_model);
}
END_TEST

START_TEST(test_model_families)
{
    for (cur_fam = 0; cur_fam < N_FAM; cur_fam++) {
        char what[64];
        snprintf(what, sizeof what, "model (%s)", fam_names[cur_fam]);
        sweep(what, wl_model_family);
    }
}
END_TEST

START_TEST(test_engine)
{
    coil_err_t err = {0};
    ck_assert_msg(engine_run(ref_logits, &err) == 0, "%s", err.msg);
    sweep("engine", wl_engine);
}
END_TEST

START_TEST(test_tokenizer)
{
    sweep("tokenizer", wl_tokenizer);
}
END_TEST

START_TEST(test_config)
{
    sweep("config", wl_config);
}
END_TEST

START_TEST(test_protocol)
{
    sweep("protocol", wl_protocol);
}
END_TEST

START_TEST(test_state)
{
    sweep("state", wl_state);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("allocfail");
    TCase *tc = tcase_create("parsers");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_safetensors);
    tcase_add_test(tc, test_model);
    tcase_add_test(tc, test_model_families);
    tcase_add_test(tc, test_engine);
    tcase_add_test(tc, test_tokenizer);
    tcase_add_test(tc, test_config);
    tcase_add_test(tc, test_protocol);
    tcase_add_test(tc, test_state);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
