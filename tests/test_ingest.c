/* test_ingest.c -- the ingest loop against real SQLite files and real
 * processes: crash resume under SIGKILL, drain, changed input, concurrent
 * ingest, wrong model, session fork isolation.
 *
 * The model is a small random Mamba with the test tokenizer; the document is
 * generated (deterministic) text of a few tens of KB.
 */
#include "ingest.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define CHUNK 64
#define INTERVAL 256

static char *dir;
static char model_dir[4096], model2_dir[4096], doc_path[4096], db_path[4096];

static void write_doc(const char *path, uint64_t seed, size_t bytes)
{
    static const char *words[] = {"the", "state", "of", "a", "long", "document", "is", "small", "and", "Mamba",
                                  "reads", "it", "once;", "coil", "keeps", "checkpoints", "in", "SQLite.",
                                  "Résumé", "naïve", "日本語", "🙂", "1234", "don't", "\n\n", "    "};
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    size_t n = 0;
    uint64_t s = seed;
    while (n < bytes) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        const char *w = words[(s >> 33) % (sizeof words / sizeof words[0])];
        n += (size_t)fprintf(f, "%s ", w);
    }
    fclose(f);
}

static void setup(void)
{
    dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(dir);
    tu_model_shape_t sh = {.d_model = 32, .n_layer = 2, .vocab = 1232, .d_state = 8, .d_conv = 4, .expand = 2,
                           .tied = 1, .dtype = "F32"};
    snprintf(model_dir, sizeof model_dir, "%s/model", dir);
    snprintf(model2_dir, sizeof model2_dir, "%s/model2", dir);
    snprintf(doc_path, sizeof doc_path, "%s/doc.txt", dir);
    snprintf(db_path, sizeof db_path, "%s/coil.db", dir);
    const char *dirs[2] = {model_dir, model2_dir};
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(tu_write_model_dir(dirs[i], &sh, 7 + (uint64_t)i), 0);
    write_doc(doc_path, 1, 48000);
}

static void teardown(void)
{
    tu_rm_rf(dir);
    free(dir);
}

typedef struct {
    coil_model_t *m;
    coil_engine_t *e;
    coil_tokenizer_t *tok;
    coil_store_t *st;
    coil_state_t *s;
} rt_t;

static void rt_open(rt_t *r, const char *mdir, const char *db)
{
    coil_err_t err = {0};
    char tok[4200];
    coil_store_options_t so;
    coil_store_options_default(&so);
    so.policy.interval = INTERVAL;
    snprintf(tok, sizeof tok, "%s/tokenizer.json", mdir);
    coil_engine_options_t eo = {.max_chunk = CHUNK, .threads = 1};
    r->m = coil_model_load(mdir, &err);
    ck_assert_msg(r->m != NULL, "%s", err.msg);
    r->e = coil_engine_new(r->m, &eo, &err);
    r->tok = coil_tokenizer_load(tok, &err);
    r->st = coil_store_open(db, &so, &err);
    ck_assert_msg(r->st != NULL, "%s", err.msg);
    r->s = coil_state_new(r->m, &err);
    ck_assert(r->e && r->tok && r->s);
}

static void rt_close(rt_t *r)
{
    coil_state_destroy(&r->s);
    coil_store_close(&r->st);
    coil_tokenizer_destroy(&r->tok);
    coil_engine_destroy(&r->e);
    coil_model_destroy(&r->m);
}

static int ingest(rt_t *r, const char *name, const char *path, const volatile sig_atomic_t *stop,
                  coil_ingest_result_t *res, coil_err_t *err)
{
    coil_ingest_options_t io = {.chunk_tokens = CHUNK, .stop = stop};
    return coil_ingest_file(r->st, r->e, r->tok, name, path, &io, res, err);
}

/* The final state of document name, serialised. Caller frees. */
static void *final_blob(rt_t *r, const char *name, size_t *n)
{
    coil_err_t err = {0};
    int64_t doc;
    ck_assert_int_eq(coil_store_doc_find(r->st, name, &doc, &err), 0);
    ck_assert_int_eq(coil_resume_doc(r->st, r->e, doc, -1, r->s, &err), 0);
    *n = coil_state_blob_size(r->s);
    void *b = malloc(*n);
    ck_assert_int_eq(coil_state_serialize(r->s, b, *n, &err), 0);
    return b;
}



/* Reference: one uninterrupted ingest into its own database. */
static void *reference(size_t *n, int64_t *tokens)
{
    char db[4200];
    coil_err_t err = {0};
    coil_ingest_result_t res;
    rt_t r;
    snprintf(db, sizeof db, "%s/ref.db", dir);
    rt_open(&r, model_dir, db);
    ck_assert_msg(ingest(&r, "doc", doc_path, NULL, &res, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(res.resumed_at, -1);
    *tokens = res.tokens;
    void *b = final_blob(&r, "doc", n);
    rt_close(&r);
    return b;
}

/* Committed progress of "doc" (-1 if it does not exist yet). */
static int64_t committed(coil_store_t *st, int *unused)
{
    coil_err_t err = {0};
    int64_t doc;
    coil_store_progress_t p;
    (void)unused;
    if (coil_store_doc_find(st, "doc", &doc, &err) != 0 || coil_store_doc_progress(st, doc, &p, &err) != 0)
        return -1;
    return p.token_end;
}

static int doc_complete_cb(const coil_store_doc_info_t *d, void *ud)
{
    *(int *)ud = strcmp(d->status, "complete") == 0;
    return 0;
}

START_TEST(test_crash_resume_bit_identical)
{
    enum { KILLS = 24 };
    size_t nref, n;
    int64_t ref_tokens;
    void *ref = reference(&nref, &ref_tokens);
    ck_assert_int_gt(ref_tokens, 20 * INTERVAL); /* long enough to be killed in many places */
    srand(12345);
    coil_err_t err = {0};
    coil_store_t *watch = coil_store_open(db_path, NULL, &err); /* a reader beside the writer (WAL) */
    ck_assert_msg(watch != NULL, "%s", err.msg);
    int kills = 0, advanced = 0, complete = 0;
    int64_t last_end = 0;
    for (int round = 0; round < KILLS && !complete; round++) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            coil_ingest_result_t res;
            rt_t r;
            rt_open(&r, model_dir, db_path);
            int rc = ingest(&r, "doc", doc_path, NULL, &res, &err);
            if (rc)
                fprintf(stderr, "ingest child: %s\n", err.msg);
            rt_close(&r);
            _exit(rc == 0 ? 0 : 3);
        }
        /* where to kill: a random point past the last commit, the rounds left
         * spread over the rest of the document (chosen from where the last
         * kill left off, so a fast machine that overshoots one point does not
         * make the later ones moot); wait until the child has committed past
         * it, then kill it a random 0-2 ms later: mid-chunk, mid-commit or
         * mid-fsync */
        int64_t span = (int64_t)(0.95 * (double)ref_tokens) - last_end, step = span / (KILLS - round);
        if (step < 1)
            step = 1;
        const int64_t target = last_end + 1 + rand() % step;
        int status, exited = 0, dummy;
        for (int polls = 0; polls < 200000; polls++) {
            if (waitpid(pid, &status, WNOHANG) == pid) {
                exited = 1;
                break;
            }
            if (committed(watch, &dummy) >= target)
                break;
            struct timespec ts = {0, 200000L};
            nanosleep(&ts, NULL);
        }
        if (!exited) {
            struct timespec ts = {0, (long)(rand() % 2000) * 1000L};
            nanosleep(&ts, NULL);
            kill(pid, SIGKILL);
            ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        }
        if (WIFSIGNALED(status))
            kills++;
        else
            ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "ingest child failed");
        /* after every kill: the database is whole and progress never goes back */
        ck_assert_msg(coil_store_verify(watch, &err) == 0, "after kill %d: %s", kills, err.msg);
        int64_t end = committed(watch, &dummy);
        ck_assert_int_ge(end, last_end);
        advanced += end > last_end;
        last_end = end;
        complete = 0;
        coil_store_doc_list(watch, "doc", doc_complete_cb, &complete, &err);
    }
    coil_store_close(&watch);
    ck_assert_msg(kills >= 20, "only %d of %d runs were killed before the document was complete", kills, KILLS);
    ck_assert_msg(advanced >= kills - 1, "only %d of the %d killed runs had committed new chunks", advanced, kills);
    /* finish (resuming) and compare with the uninterrupted run */
    rt_t r;
    coil_ingest_result_t res;
    rt_open(&r, model_dir, db_path);
    if (!complete) {
        ck_assert_msg(ingest(&r, "doc", doc_path, NULL, &res, &err) == 0, "%s", err.msg);
        ck_assert_int_gt(res.resumed_at, 0);
    }
    fprintf(stderr, "crash test: %d kills, %d of them after new commits, last at token %lld of %lld\n", kills,
            advanced, (long long)last_end, (long long)ref_tokens);
    void *got = final_blob(&r, "doc", &n);
    ck_assert_uint_eq(n, nref);
    ck_assert_msg(memcmp(got, ref, n) == 0, "final state differs from the uninterrupted run");
    ck_assert_int_eq(coil_store_verify(r.st, &err), 0);
    rt_close(&r);
    free(got);
    free(ref);
}
END_TEST

START_TEST(test_drain_and_changed_input)
{
    size_t nref, n;
    int64_t ref_tokens;
    void *ref = reference(&nref, &ref_tokens);
    coil_err_t err = {0};
    coil_ingest_result_t res;
    volatile sig_atomic_t stop = 1; /* as if SIGTERM arrived at once: finish the chunk, checkpoint */
    rt_t r;
    rt_open(&r, model_dir, db_path);
    ck_assert_int_eq(ingest(&r, "doc", doc_path, &stop, &res, &err), COIL_EINTR);
    const int64_t doc_id = res.doc_id;
    coil_store_progress_t p;
    ck_assert_int_eq(coil_store_doc_progress(r.st, doc_id, &p, &err), 0);
    ck_assert_int_eq(p.token_end, CHUNK);
    ck_assert_int_eq(p.ckpt_position, CHUNK);
    /* the same name with a different text: refused, nothing changed */
    char other[4200];
    snprintf(other, sizeof other, "%s/other.txt", dir);
    write_doc(other, 2, 24000);
    ck_assert_int_eq(ingest(&r, "doc", other, NULL, &res, &err), COIL_ESTATE);
    /* stdin-like input that differs inside the stored prefix is caught token by token */
    ck_assert_int_eq(coil_store_doc_progress(r.st, doc_id, &p, &err), 0);
    ck_assert_int_eq(p.token_end, CHUNK);
    /* resume with the original input: completes, same bits */
    ck_assert_msg(ingest(&r, "doc", doc_path, NULL, &res, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(res.resumed_at, CHUNK);
    void *got = final_blob(&r, "doc", &n);
    ck_assert_msg(n == nref && memcmp(got, ref, n) == 0, "resumed state differs");
    /* once complete: the same input is already done, another is refused unless replaced */
    ck_assert_int_eq(ingest(&r, "doc", doc_path, NULL, &res, &err), 0);
    ck_assert(res.already);
    ck_assert_int_eq(res.checkpoints, 0);
    ck_assert_int_eq(ingest(&r, "doc", other, NULL, &res, &err), COIL_ESTATE);
    ck_assert_ptr_nonnull(strstr(err.msg, "different input"));
    coil_ingest_options_t io = {.chunk_tokens = CHUNK, .replace = true};
    ck_assert_int_eq(coil_ingest_file(r.st, r.e, r.tok, "doc", other, &io, &res, &err), 0);
    ck_assert_int_eq(coil_store_verify(r.st, &err), 0);
    rt_close(&r);
    free(got);
    free(ref);
}
END_TEST

START_TEST(test_concurrent_ingest)
{
    char doc2[4200];
    snprintf(doc2, sizeof doc2, "%s/doc2.txt", dir);
    write_doc(doc2, 3, 12000);
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        pid[i] = fork();
        ck_assert_int_ge(pid[i], 0);
        if (pid[i] == 0) {
            coil_err_t err = {0};
            coil_ingest_result_t res;
            rt_t r;
            rt_open(&r, model_dir, db_path);
            int rc = ingest(&r, i ? "two" : "one", i ? doc2 : doc_path, NULL, &res, &err);
            if (rc)
                fprintf(stderr, "child %d: %s\n", i, err.msg);
            rt_close(&r);
            _exit(rc == 0 ? 0 : 3);
        }
    }
    for (int i = 0; i < 2; i++) {
        int status;
        ck_assert_int_eq(waitpid(pid[i], &status, 0), pid[i]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %d failed", i);
    }
    rt_t r;
    coil_err_t err = {0};
    rt_open(&r, model_dir, db_path);
    int64_t d;
    ck_assert_int_eq(coil_store_doc_find(r.st, "one", &d, &err), 0);
    ck_assert_int_eq(coil_store_doc_find(r.st, "two", &d, &err), 0);
    ck_assert_int_eq(coil_store_verify(r.st, &err), 0);
    rt_close(&r);
}
END_TEST

START_TEST(test_wrong_model_and_sessions)
{
    coil_err_t err = {0};
    coil_ingest_result_t res;
    rt_t r, r2;
    rt_open(&r, model_dir, db_path);
    ck_assert_int_eq(ingest(&r, "doc", doc_path, NULL, &res, &err), 0);
    /* a checkpoint of another model is refused */
    rt_open(&r2, model2_dir, db_path);
    ck_assert_int_eq(coil_resume_doc(r2.st, r2.e, res.doc_id, -1, r2.s, &err), COIL_EMISMATCH);
    rt_close(&r2);
    /* sessions: a child's turns never change the parent */
    char sid[COIL_STORE_SESSION_ID_LEN + 1], kid[COIL_STORE_SESSION_ID_LEN + 1];
    ck_assert_int_eq(coil_store_session_new(r.st, res.doc_id, res.tokens, sid, &err), 0);
    int32_t turn[5] = {10, 20, 30, 40, 50};
    ck_assert_int_eq(coil_session_append_ids(r.st, r.e, sid, turn, 5, NULL, r.s, &err), 0);
    ck_assert_int_eq(coil_state_position(r.s), res.tokens + 5);
    size_t n = coil_state_blob_size(r.s);
    void *before = malloc(n), *after = malloc(n);
    ck_assert_int_eq(coil_resume_session(r.st, r.e, sid, -1, r.s, &err), 0);
    coil_state_serialize(r.s, before, n, &err);
    ck_assert_int_eq(coil_store_session_fork(r.st, sid, -1, kid, &err), 0);
    ck_assert_int_eq(coil_session_append_ids(r.st, r.e, kid, turn, 3, NULL, r.s, &err), 0);
    ck_assert_int_eq(coil_resume_session(r.st, r.e, sid, -1, r.s, &err), 0);
    coil_state_serialize(r.s, after, n, &err);
    ck_assert_msg(memcmp(before, after, n) == 0, "the parent session changed");
    /* the child's history includes the parent's turn: replaying from the document gives the same state */
    ck_assert_int_eq(coil_resume_session(r.st, r.e, kid, res.tokens + 5, r.s, &err), 0);
    coil_state_serialize(r.s, after, n, &err);
    ck_assert_msg(memcmp(before, after, n) == 0, "the fork point state differs");
    ck_assert_int_eq(coil_store_verify(r.st, &err), 0);
    free(before);
    free(after);
    rt_close(&r);
}
END_TEST

START_TEST(test_resume_at_position)
{
    coil_err_t err = {0};
    coil_ingest_result_t res;
    rt_t r;
    rt_open(&r, model_dir, db_path);
    ck_assert_int_eq(ingest(&r, "doc", doc_path, NULL, &res, &err), 0);
    /* the state at token t rebuilt from a checkpoint + replay equals feeding the first t tokens */
    int64_t t = 3 * INTERVAL + 2 * CHUNK + 17;
    int32_t *ids = NULL;
    size_t n = 0;
    ck_assert_int_eq(coil_store_doc_tokens(r.st, res.doc_id, 0, t, &ids, &n, &err), 0);
    coil_state_t *direct = coil_state_new(r.m, &err);
    ck_assert_int_eq(coil_feed_grid(r.e, direct, ids, t, CHUNK, NULL, 0, &err), 0);
    ck_assert_int_eq(coil_resume_doc(r.st, r.e, res.doc_id, t, r.s, &err), 0);
    size_t bn = coil_state_blob_size(r.s);
    void *a = malloc(bn), *b = malloc(bn);
    coil_state_serialize(direct, a, bn, &err);
    coil_state_serialize(r.s, b, bn, &err);
    ck_assert_msg(memcmp(a, b, bn) == 0, "state at %lld differs", (long long)t);
    ck_assert_int_eq(coil_resume_doc(r.st, r.e, res.doc_id, res.tokens + 1, r.s, &err), COIL_EINVAL);
    free(a);
    free(b);
    free(ids);
    coil_state_destroy(&direct);
    rt_close(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ingest");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_crash_resume_bit_identical);
    tcase_add_test(tc, test_drain_and_changed_input);
    tcase_add_test(tc, test_concurrent_ingest);
    tcase_add_test(tc, test_wrong_model_and_sessions);
    tcase_add_test(tc, test_resume_at_position);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
