/* test_bundled_model.c -- the model shipped in examples/model.
 *
 *   - it loads, and its greedy continuation of a prompt is the one
 *     transformers produced when the model was trained (examples/model/eval.json)
 *   - its held-out loss on examples/sample.txt (Hamlet, Act I) computed by
 *     coil equals transformers' and is far below a random-weights model's
 *   - in-context recall through the store: after a document that mentions an
 *     unusual phrase four times is ingested and resumed, the phrase is far
 *     more likely than after the same document without it, or after no
 *     document (tests/data/bundled_model_incontext.json, made by
 *     tests/tools/eval_incontext.py --out)
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest.h"
#include "query.h"
#include "testutil.h"


static char model_dir[4096];
static char *dir;

static void setup(void)
{
    const char *src = getenv("COIL_SRCDIR");
    snprintf(model_dir, sizeof model_dir, "%s/examples/model", src && *src ? src : ".");
    dir = tu_mkdtemp();
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
    coil_state_t *st;
} rt_t;

static void rt_open(rt_t *r)
{
    coil_err_t err = {0};
    char tok[4200];
    snprintf(tok, sizeof tok, "%s/tokenizer.json", model_dir);
    r->m = coil_model_load(model_dir, &err);
    ck_assert_msg(r->m != NULL, "%s", err.msg);
    r->e = coil_engine_new(r->m, NULL, &err);
    r->tok = coil_tokenizer_load(tok, &err);
    ck_assert_msg(r->tok != NULL, "%s", err.msg);
    r->st = coil_state_new(r->m, &err);
}

static void rt_close(rt_t *r)
{
    coil_state_destroy(&r->st);
    coil_tokenizer_destroy(&r->tok);
    coil_engine_destroy(&r->e);
    coil_model_destroy(&r->m);
}

START_TEST(test_greedy_matches_transformers)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/eval.json", model_dir);
    json_t *ev = json_load_file(p, 0, NULL);
    ck_assert_ptr_nonnull(ev);
    json_t *g = json_object_get(ev, "greedy");
    const char *prompt = json_string_value(json_object_get(ev, "prompt"));
    json_t *all = json_object_get(g, "ids"); /* the prompt's ids, then the continuation */
    size_t np = json_array_size(json_object_get(ev, "prompt_ids"));
    ck_assert_msg(prompt && json_is_array(all) && json_array_size(all) > np, "eval.json has no greedy sample");
    rt_t r;
    coil_err_t err = {0};
    rt_open(&r);
    int32_t *ids = NULL;
    size_t n = 0;
    ck_assert_int_eq(coil_tokenizer_encode(r.tok, prompt, strlen(prompt), &ids, &n, &err), 0);
    ck_assert_int_eq(coil_engine_forward(r.e, r.st, ids, (int64_t)n, NULL, &err), 0);
    ck_assert_uint_eq(n, np); /* coil's tokenizer agrees on the prompt */
    size_t k = json_array_size(all) - np;
    int32_t *got = malloc(k * sizeof *got);
    int64_t ng = 0;
    coil_sampler_options_t so = {.temperature = 0, .top_p = 1, .n_valid = (int64_t)coil_tokenizer_vocab_size(r.tok)};
    ck_assert_int_eq(coil_query_generate(r.e, r.st, r.tok, &so, (int64_t)k, NULL, NULL, got, &ng, &err), 0);
    for (size_t i = 0; i < k; i++)
        ck_assert_msg(got[i] == json_integer_value(json_array_get(all, np + i)), "token %zu: coil %d, transformers %lld",
                      i, got[i], (long long)json_integer_value(json_array_get(all, np + i)));
    free(got);
    free(ids);
    json_decref(ev);
    rt_close(&r);
}
END_TEST

/* Held-out loss: coil's log-probability of examples/sample.txt (Hamlet, Act I,
 * not seen in training) equals transformers' (tests/data/bundled_model_bpb.json,
 * made by tests/tools/eval_bpb.py --out). */
START_TEST(test_heldout_logprob_matches_transformers)
{
    char p[4200];
    const char *src = getenv("COIL_SRCDIR");
    json_t *g = json_load_file(tu_data("bundled_model_bpb.json"), 0, NULL);
    ck_assert_ptr_nonnull(g);
    snprintf(p, sizeof p, "%s/%s", src && *src ? src : ".", json_string_value(json_object_get(g, "text")));
    size_t len;
    char *text = tu_read(p, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq((int64_t)len, json_integer_value(json_object_get(g, "bytes")));
    rt_t r;
    coil_err_t err = {0};
    rt_open(&r);
    int32_t *ids = NULL;
    size_t n = 0;
    ck_assert_int_eq(coil_tokenizer_encode(r.tok, text, len, &ids, &n, &err), 0);
    ck_assert_int_eq((int64_t)n, json_integer_value(json_object_get(g, "tokens")));
    double *lp = malloc(n * sizeof *lp), total;
    ck_assert_int_eq(coil_engine_forward(r.e, r.st, ids, 1, NULL, &err), 0);
    ck_assert_int_eq(coil_query_score(r.e, r.st, ids + 1, n - 1, 256, lp, &total, &err), 0);
    double ref = json_number_value(json_object_get(g, "transformers_logprob"));
    double bpb = -total / log(2.0) / (double)len, rnd = json_number_value(json_object_get(g, "random_bits_per_byte"));
    fprintf(stderr, "held-out: coil %.6f bits/byte, transformers %.6f, random weights %.6f\n", bpb,
            json_number_value(json_object_get(g, "transformers_bits_per_byte")), rnd);
    ck_assert_msg(fabs(total - ref) / fabs(ref) < 1e-6, "sum log p: coil %.6f, transformers %.6f", total, ref);
    ck_assert_msg(bpb < 0.6 * rnd, "the shipped model is not clearly better than random weights");
    free(lp);
    free(ids);
    free(text);
    json_decref(g);
    rt_close(&r);
}
END_TEST

/* Ingests `text` as document `name` into the store at db (chunk grid 64, so
 * resuming restores a checkpoint and replays tokens), resumes it and scores
 * the phrase after it. */
static double score_after_stored_doc(rt_t *r, const char *db, const char *name, const char *text,
                                     const int32_t *phrase, size_t np)
{
    coil_err_t err = {0};
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.txt", dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    ck_assert_int_eq(fclose(f), 0);
    coil_store_t *store = coil_store_open(db, NULL, &err);
    ck_assert_msg(store != NULL, "%s", err.msg);
    coil_ingest_options_t io = {.chunk_tokens = 64};
    coil_ingest_result_t res;
    ck_assert_msg(coil_ingest_file(store, r->e, r->tok, name, path, &io, &res, &err) == 0, "%s", err.msg);
    coil_state_destroy(&r->st);
    r->st = coil_state_new(r->m, &err);
    int64_t grid = 0;
    ck_assert_msg(coil_resume_target(store, r->e, NULL, name, -1, r->st, &grid, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(coil_state_position(r->st), res.tokens);
    double *lp = malloc(np * sizeof *lp), total = 0;
    ck_assert_msg(coil_query_score(r->e, r->st, phrase, np, grid, lp, &total, &err) == 0, "%s", err.msg);
    free(lp);
    coil_store_close(&store);
    return total;
}

START_TEST(test_incontext_recall)
{
    json_t *g = json_load_file(tu_data("bundled_model_incontext.json"), 0, NULL);
    ck_assert_ptr_nonnull(g);
    const char *phrase = json_string_value(json_object_get(g, "phrase"));
    json_t *ref_ids = json_object_get(g, "phrase_ids"), *docs = json_object_get(g, "documents");
    ck_assert_msg(phrase && json_is_array(ref_ids) && json_is_object(docs), "malformed golden file");
    rt_t r;
    coil_err_t err = {0};
    rt_open(&r);
    int32_t *ids = NULL;
    size_t np = 0;
    ck_assert_int_eq(coil_tokenizer_encode(r.tok, phrase, strlen(phrase), &ids, &np, &err), 0);
    ck_assert_uint_eq(np, json_array_size(ref_ids));
    for (size_t i = 0; i < np; i++)
        ck_assert_int_eq(ids[i], json_integer_value(json_array_get(ref_ids, i)));
    char db[4200];
    snprintf(db, sizeof db, "%s/incontext.db", dir);
    static const char *const names[] = {"with", "control", "none"};
    double lp[3];
    for (int k = 0; k < 3; k++) {
        json_t *d = json_object_get(docs, names[k]);
        const char *text = json_string_value(json_object_get(d, "text"));
        ck_assert_ptr_nonnull(text);
        lp[k] = score_after_stored_doc(&r, db, names[k], text, ids, np);
        double ref = json_number_value(json_object_get(d, "logprob"));
        fprintf(stderr, "in-context: log p(\"%s\") after document '%s': coil %.4f, transformers %.4f\n", phrase,
                names[k], lp[k], ref);
        ck_assert_msg(fabs(lp[k] - ref) < 1e-3, "'%s': coil %.6f, transformers %.6f", names[k], lp[k], ref);
    }
    /* The resumed state makes the phrase much more likely.  Shipped model
     * (transformers, float32): 5.64 nats (~280x) above no document, 3.50 nats
     * (~33x) above the control document that has the same speeches, cue and
     * question.  The model before its copy fine-tune had 1.94 and 1.23 and
     * fails both bounds; so does any model whose state does not carry the
     * document.  The bounds leave ~1 nat for a retrained model's spread. */
    ck_assert_msg(lp[0] - lp[2] >= 4.5, "margin over no document only %.2f nats", lp[0] - lp[2]);
    ck_assert_msg(lp[0] - lp[1] >= 2.5, "margin over the control document only %.2f nats", lp[0] - lp[1]);
    free(ids);
    json_decref(g);
    rt_close(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bundled_model");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_greedy_matches_transformers);
    tcase_add_test(tc, test_heldout_logprob_matches_transformers);
    tcase_add_test(tc, test_incontext_recall);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
