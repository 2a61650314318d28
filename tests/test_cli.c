/* test_cli.c -- the `coil` binary: parity contract, generation, errors.
 *
 * Runs $COIL_BUILDDIR/coil as a child process with real files in a temp dir.
 */
#include <check.h>
#include <fcntl.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "testutil.h"
#include "tokenizer.h"

extern char **environ;
static char *dir;
static char out_path[4096], err_path[4096];

static void setup(void)
{
    dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(dir);
    snprintf(out_path, sizeof out_path, "%s/stdout", dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", dir);
}

static void teardown(void)
{
    tu_rm_rf(dir);
    free(dir);
}

/* Runs coil with args (NULL-terminated); returns the exit status. */
static int run(const char *const *args)
{
    char bin[4096];
    const char *b = getenv("COIL_BUILDDIR");
    snprintf(bin, sizeof bin, "%s/coil", b && *b ? b : ".");
    char *argv[32];
    int n = 0;
    argv[n++] = bin;
    for (; args[n - 1] && n < 31; n++)
        argv[n] = (char *)args[n - 1];
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    ck_assert_int_eq(posix_spawn(&pid, bin, &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "coil died by a signal");
    return WEXITSTATUS(status);
}

static char *slurp(const char *p)
{
    size_t n;
    char *s = tu_read(p, &n);
    ck_assert_ptr_nonnull(s);
    char *z = realloc(s, n + 1);
    z[n] = '\0';
    return z;
}

static json_t *golden(const char *name, char *ids, size_t cap)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s/golden.json", name);
    json_t *g = json_load_file(tu_data(rel), 0, NULL);
    ck_assert_ptr_nonnull(g);
    json_t *a = json_object_get(g, "ids");
    size_t k = 0;
    for (size_t i = 0; i < json_array_size(a); i++)
        k += (size_t)snprintf(ids + k, cap - k, "%s%lld", i ? "," : "", (long long)json_integer_value(json_array_get(a, i)));
    return g;
}

START_TEST(test_logits_contract)
{
    static const char *names[] = {"tied_f32", "untied_bias_sharded", "tied_bf16", "untied_f16"};
    char ids[4096], model[4096], out[4096], rel[256];
    json_t *g = golden(names[_i], ids, sizeof ids);
    snprintf(model, sizeof model, "%s", tu_data(""));
    snprintf(model + strlen(model), sizeof model - strlen(model), "models/%s", names[_i]);
    snprintf(out, sizeof out, "%s/logits.f32", dir);
    const char *args[] = {"logits", "--model", model, "--ids", ids, "--chunk", "7", "--out", out, NULL};
    ck_assert_int_eq(run(args), 0);
    size_t n1, n2;
    float *a = tu_read(out, &n1);
    snprintf(rel, sizeof rel, "models/%s/logits.f32", names[_i]);
    float *b = tu_read(tu_data(rel), &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_msg(tu_rel_l2(a, b, n1 / 4) < 1e-5, "rel L2 %g", tu_rel_l2(a, b, n1 / 4));
    free(a);
    free(b);
    json_decref(g);
}
END_TEST

START_TEST(test_generate)
{
    char ids[4096], model[4096], expect[256] = "";
    json_t *g = golden("tied_f32", ids, sizeof ids);
    json_t *gr = json_object_get(g, "greedy");
    for (size_t i = 0; i < json_array_size(gr); i++)
        snprintf(expect + strlen(expect), sizeof expect - strlen(expect), "%s%lld", i ? "," : "",
                 (long long)json_integer_value(json_array_get(gr, i)));
    strcat(expect, "\n");
    snprintf(model, sizeof model, "%s", tu_data("models/tied_f32"));
    const char *greedy[] = {"generate", "--model", model, "--ids", ids, "-n", "8", "--temperature", "0", NULL};
    ck_assert_int_eq(run(greedy), 0);
    char *got = slurp(out_path);
    ck_assert_str_eq(got, expect);
    free(got);
    /* sampling is reproducible for a seed */
    const char *s1[] = {"generate", "--model", model, "--ids", ids, "-n", "12", "--seed", "7", "--top-p", "0.9", NULL};
    ck_assert_int_eq(run(s1), 0);
    char *a = slurp(out_path);
    ck_assert_int_eq(run(s1), 0);
    char *b = slurp(out_path);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    json_decref(g);
}
END_TEST

START_TEST(test_info)
{
    char model[4096];
    snprintf(model, sizeof model, "%s", tu_data("models/untied_bias_sharded"));
    const char *args[] = {"info", "--model", model, NULL};
    ck_assert_int_eq(run(args), 0);
    char *s = slurp(out_path);
    ck_assert_ptr_nonnull(strstr(s, "dt_rank:          5\n"));
    ck_assert_ptr_nonnull(strstr(s, "tied lm_head:     false"));
    ck_assert_ptr_nonnull(strstr(s, "state blob:       5352 bytes"));
    ck_assert_ptr_nonnull(strstr(s, "family:           mamba\n"));
    free(s);
    /* the family, and its own dimensions */
    snprintf(model, sizeof model, "%s", tu_data("models/mamba2_groups_f32"));
    ck_assert_int_eq(run(args), 0);
    s = slurp(out_path);
    ck_assert_ptr_nonnull(strstr(s, "family:           mamba2\n"));
    ck_assert_ptr_nonnull(strstr(s, "heads:            6 x head_dim 10, n_groups 2, time_step_limit [0, inf]\n"));
    free(s);
    snprintf(model, sizeof model, "%s", tu_data("models/falcon_untied_odd_f32"));
    ck_assert_int_eq(run(args), 0);
    s = slurp(out_path);
    ck_assert_ptr_nonnull(strstr(s, "family:           falcon_mamba\n"));
    ck_assert_ptr_nonnull(strstr(s, "mixer_rms_eps:    0.0001\n"));
    free(s);
}
END_TEST

static void expect_fail(const char *const *args, int code, const char *needle)
{
    ck_assert_int_eq(run(args), code);
    char *e = slurp(err_path);
    ck_assert_msg(strstr(e, needle) != NULL, "stderr lacks '%s': %s", needle, e);
    free(e);
}

START_TEST(test_errors)
{
    char model[4096], out[4096];
    snprintf(model, sizeof model, "%s", tu_data("models/tied_f32"));
    snprintf(out, sizeof out, "%s/no/such/dir/x.f32", dir);
    const char *a1[] = {"logits", "--model", "/nonexistent", "--ids", "1", "--out", "x", NULL};
    expect_fail(a1, 1, "/nonexistent/config.json");
    const char *a2[] = {"logits", "--model", model, "--ids", "1,x", "--out", "x", NULL};
    expect_fail(a2, 1, "ids: expected comma-separated");
    char good[4096];
    snprintf(good, sizeof good, "%s/l.f32", dir);
    const char *a3[] = {"logits", "--model", model, "--ids", "1,2,99999", "--out", good, NULL};
    expect_fail(a3, 1, "outside the vocabulary");
    struct stat sb;
    ck_assert_int_ne(stat(good, &sb), 0); /* no partial output left behind */
    const char *a4[] = {"logits", "--model", model, "--ids", "1", "--out", out, NULL};
    expect_fail(a4, 1, "no/such/dir");
    const char *a5[] = {"frobnicate", NULL};
    expect_fail(a5, 2, "unknown command");
    const char *a6[] = {"logits", "--model", model, NULL};
    expect_fail(a6, 2, "--ids and --out");
    const char *a7[] = {"generate", "--model", model, "--ids", "1", "--top-p", "1.5", NULL};
    expect_fail(a7, 2, "--top-p");
    const char *a8[] = {"logits", "--model", model, "--ids", "1", "--backend", "metal", "--out", "x", NULL};
    expect_fail(a8, 1, "backend 'metal'");
}
END_TEST

/* A small random model with the test tokenizer in model_dir (d_model 32
 * unless d_model is given), weights from seed. */
static void make_model(const char *model_dir, int64_t d_model, unsigned seed)
{
    tu_model_shape_t sh = {.d_model = d_model, .n_layer = 2, .vocab = 1232, .d_state = 8, .d_conv = 4,
                           .expand = 2, .tied = 1, .dtype = "BF16"};
    ck_assert_int_eq(tu_write_model_dir(model_dir, &sh, seed), 0);
}

/* The test document: 200 paragraphs and one rare phrase. */
static void make_doc(const char *path)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 200; i++)
        fprintf(f, "Paragraph %d talks about harbours and lighthouses. ", i);
    fprintf(f, "The zebra quartermaster appears exactly once.\n");
    fclose(f);
}

/* The store commands end to end: ingest, docs, search, sessions, score, export. */
START_TEST(test_store_commands)
{
    char model[4096], db[4096], doc[4096], state[4096];
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(db, sizeof db, "%s/c.db", dir);
    snprintf(doc, sizeof doc, "%s/doc.txt", dir);
    snprintf(state, sizeof state, "%s/doc.state", dir);
    make_model(model, 32, 3);
    make_doc(doc);

    const char *ingest[] = {"ingest", "--db", db, "--model", model, "--name", "book", "--file", doc,
                            "--chunk", "64", "--interval", "256", NULL};
    ck_assert_int_eq(run(ingest), 0);
    char *o = slurp(out_path);
    ck_assert_ptr_nonnull(strstr(o, "ingested book:"));
    free(o);
    ck_assert_int_eq(run(ingest), 0); /* complete already with this input: nothing to do */
    o = slurp(out_path);
    ck_assert_ptr_nonnull(strstr(o, "already ingested book:"));
    free(o);
    const char *docs[] = {"docs", "--db", db, NULL};
    ck_assert_int_eq(run(docs), 0);
    o = slurp(out_path);
    ck_assert_ptr_nonnull(strstr(o, "book"));
    ck_assert_ptr_nonnull(strstr(o, "complete"));
    free(o);
    const char *search[] = {"search", "--db", db, "zebra quartermaster", NULL};
    ck_assert_int_eq(run(search), 0);
    o = slurp(out_path);
    ck_assert_ptr_nonnull(strstr(o, "\xc2\xabzebra\xc2\xbb \xc2\xabquartermaster\xc2\xbb"));
    free(o);
    const char *bad_search[] = {"search", "--db", db, "AND OR (", NULL};
    expect_fail(bad_search, 1, "");

    const char *snew[] = {"session", "new", "--db", db, "--doc", "book", NULL};
    ck_assert_int_eq(run(snew), 0);
    char *sid = slurp(out_path);
    sid[strcspn(sid, "\n")] = '\0';
    ck_assert_uint_eq(strlen(sid), 16);
    const char *app[] = {"session", "append", sid, "--db", db, "--model", model, "--text", "A question?", NULL};
    ck_assert_int_eq(run(app), 0);
    /* with --key a repeated append is done once: the second run reports the first */
    const char *kapp[] = {"session", "append", sid, "--db", db, "--model", model, "--text", " Again?", "--key",
                          "q-2", NULL};
    ck_assert_int_eq(run(kapp), 0);
    char *k1 = slurp(out_path);
    ck_assert_ptr_null(strstr(k1, "already done"));
    ck_assert_int_eq(run(kapp), 0);
    char *k2 = slurp(out_path);
    ck_assert_ptr_nonnull(strstr(k2, "(already done with this key)"));
    k1[strcspn(k1, "\n")] = '\0';
    ck_assert_msg(strncmp(k1, k2, strlen(k1)) == 0, "first: %s, again: %s", k1, k2); /* same tokens and head */
    free(k1);
    free(k2);
    const char *bad_key[] = {"session", "append", sid, "--db", db, "--model", model, "--text", "x", "--key", "a b",
                             NULL};
    expect_fail(bad_key, 1, "not a request key");
    const char *fork_[] = {"session", "fork", sid, "--db", db, NULL};
    ck_assert_int_eq(run(fork_), 0);
    char *kid = slurp(out_path);
    kid[strcspn(kid, "\n")] = '\0';
    /* generating from the parent without --append leaves it unchanged: same output twice */
    const char *gen[] = {"generate", "--db", db, "--model", model, "--session", sid, "-n", "6", "--seed", "5", NULL};
    ck_assert_int_eq(run(gen), 0);
    char *g1 = slurp(out_path);
    ck_assert_int_eq(run(gen), 0);
    char *g2 = slurp(out_path);
    ck_assert_str_eq(g1, g2);
    free(g2);
    /* --append: the fork's head advances by exactly n (+ the prompt's tokens),
     * and the appended ids are the prompt's and those generate printed */
    coil_err_t serr = {0};
    char tokpath[4200];
    snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", model);
    coil_tokenizer_t *tok = coil_tokenizer_load(tokpath, &serr);
    ck_assert_msg(tok != NULL, "%s", serr.msg);
    /* round 0 runs the same model without its tokenizer, so generate prints
     * ids (exact); round 1 has a prompt and prints text */
    char bare[4200], a_[4400], b_[4400];
    snprintf(bare, sizeof bare, "%s/model-ids", dir);
    ck_assert_int_eq(mkdir(bare, 0755), 0);
    static const char *files[] = {"config.json", "model.safetensors"};
    for (int f = 0; f < 2; f++) {
        size_t fl;
        snprintf(a_, sizeof a_, "%s/%s", model, files[f]);
        snprintf(b_, sizeof b_, "%s/%s", bare, files[f]);
        void *fb = tu_read(a_, &fl);
        ck_assert_ptr_nonnull(fb);
        ck_assert_int_eq(tu_write(b_, fb, fl), 0);
        free(fb);
    }
    static const char *prompts[] = {NULL, " Tell me about harbours."};
    for (int round = 0; round < 2; round++) {
        coil_store_session_info_t before, after;
        coil_store_t *sdb = coil_store_open(db, NULL, &serr);
        ck_assert_msg(sdb != NULL, "%s", serr.msg);
        ck_assert_int_eq(coil_store_session_get(sdb, kid, &before, &serr), 0);
        coil_store_close(&sdb);
        const char *gen_app[] = {"generate", "--db", db, "--model", round ? model : bare, "--session", kid, "-n", "6",
                                 "--seed", "5", "--append", prompts[round] ? "--prompt" : NULL, prompts[round], NULL};
        ck_assert_int_eq(run(gen_app), 0);
        char *printed = slurp(out_path);
        size_t plen = strlen(printed);
        ck_assert_msg(plen > 0 && printed[plen - 1] == '\n', "generate printed '%s'", printed);
        printed[--plen] = '\0';
        int32_t *pids = NULL, *got = NULL;
        size_t np = 0, ng = 0;
        if (prompts[round])
            ck_assert_int_eq(coil_tokenizer_encode(tok, prompts[round], strlen(prompts[round]), &pids, &np, &serr), 0);
        sdb = coil_store_open(db, NULL, &serr);
        ck_assert_ptr_nonnull(sdb);
        ck_assert_int_eq(coil_store_session_get(sdb, kid, &after, &serr), 0);
        ck_assert_msg(after.head == before.head + (int64_t)np + 6, "round %d: head %lld -> %lld, expected +%zu", round,
                      (long long)before.head, (long long)after.head, np + 6);
        ck_assert_int_eq(coil_store_session_tokens(sdb, kid, before.head, after.head, &got, &ng, &serr), 0);
        coil_store_close(&sdb);
        ck_assert_uint_eq(ng, np + 6);
        if (np)
            ck_assert_msg(memcmp(got, pids, np * sizeof *got) == 0, "the prompt's ids were not appended first");
        char *text = NULL;
        size_t tlen = 0;
        if (round == 0) { /* ids, exactly */
            char want[256] = "";
            for (size_t i = 0; i < ng; i++)
                snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? "," : "", got[i]);
            ck_assert_str_eq(printed, want);
        }
        ck_assert_int_eq(coil_tokenizer_decode(tok, got + np, 6, 0, &text, &tlen, &serr), 0);
        if (round == 0) /* the fork was at the parent's head: the same seed gives what the parent printed */
            ck_assert_msg(strncmp(g1, text, tlen) == 0 && g1[tlen] == '\n', "parent printed '%s', fork's ids are '%s'",
                          g1, text);
        else
            ck_assert_msg(tlen == plen && memcmp(text, printed, plen) == 0,
                          "appended ids decode to '%s', generate printed '%s'", text, printed);
        free(text);
        free(got);
        free(pids);
        free(printed);
    }
    coil_tokenizer_destroy(&tok);
    free(g1);
    const char *score[] = {"score", "--db", db, "--model", model, "--session", sid, "--text", " harbours", NULL};
    ck_assert_int_eq(run(score), 0);
    o = slurp(out_path);
    ck_assert_ptr_nonnull(strstr(o, "\"logprob\": -"));
    free(o);
    const char *list[] = {"sessions", "--db", db, NULL};
    ck_assert_int_eq(run(list), 0);
    o = slurp(out_path);
    ck_assert_ptr_nonnull(strstr(o, kid));
    ck_assert_ptr_nonnull(strstr(o, sid));
    free(o);
    const char *del[] = {"session", "delete", sid, "--db", db, NULL};
    expect_fail(del, 1, "descendant"); /* has a fork */
    const char *exp_[] = {"state", "export", "--db", db, "--model", model, "--doc", "book", "--out", state, NULL};
    ck_assert_int_eq(run(exp_), 0);
    size_t blen;
    char *blob = tu_read(state, &blen);
    ck_assert_ptr_nonnull(blob);
    ck_assert_int_eq(memcmp(blob, "COILSTAT", 8), 0);
    free(blob);
    const char *nodb[] = {"docs", NULL};
    expect_fail(nodb, 1, "--db");
    const char *missing[] = {"ingest", "--db", db, "--model", model, "--name", "x", "--file", "/nonexistent", NULL};
    expect_fail(missing, 1, "/nonexistent");
    free(sid);
    free(kid);
}
END_TEST

/* Runs args, expects success and returns stdout (caller frees). */
static char *run_ok(const char *const *args)
{
    int rc = run(args);
    if (rc != 0) {
        char *e = slurp(err_path);
        ck_abort_msg("coil %s %s failed (%d): %s", args[0], args[1] ? args[1] : "", rc, e);
    }
    return slurp(out_path);
}

/* state export from one database, state import into another: the imported
 * document behaves exactly like the original at that point. */
START_TEST(test_state_export_import)
{
    char model[4096], other[4096], small[4096], dba[4096], dbb[4096], doc[4096], state[4096], bad[4096];
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(other, sizeof other, "%s/other", dir);
    snprintf(small, sizeof small, "%s/small", dir);
    snprintf(dba, sizeof dba, "%s/a.db", dir);
    snprintf(dbb, sizeof dbb, "%s/b.db", dir);
    snprintf(doc, sizeof doc, "%s/doc.txt", dir);
    snprintf(state, sizeof state, "%s/book.state", dir);
    snprintf(bad, sizeof bad, "%s/bad.state", dir);
    make_model(model, 32, 3);
    make_model(other, 32, 4); /* same shape, other weights */
    make_model(small, 16, 3); /* other shape */
    make_doc(doc);

    const char *ingest[] = {"ingest", "--db", dba, "--model", model, "--name", "book", "--file", doc, NULL};
    free(run_ok(ingest));
    const char *exp_[] = {"state", "export", "--db", dba, "--model", model, "--doc", "book", "--out", state, NULL};
    char *o = run_ok(exp_);
    long long pos = -1;
    char *at = strstr(o, "position ");
    ck_assert_ptr_nonnull(at);
    pos = atoll(at + strlen("position "));
    ck_assert_int_gt(pos, 100);
    free(o);

    const char *imp[] = {"state", "import", "--db", dbb, "--model", model, "--in", state, "--name", "copy", NULL};
    o = run_ok(imp);
    char want[256];
    snprintf(want, sizeof want, "imported copy: position %lld\n", pos);
    ck_assert_str_eq(o, want);
    free(o);
    const char *docs[] = {"docs", "--db", dbb, NULL};
    o = run_ok(docs);
    snprintf(want, sizeof want, " %lld ", pos);
    ck_assert_ptr_nonnull(strstr(o, "copy"));
    ck_assert_ptr_nonnull(strstr(o, "complete"));
    ck_assert_ptr_nonnull(strstr(o, want));
    ck_assert_ptr_nonnull(strstr(o, "imported state"));
    free(o);

    /* Same state, same scores, to the last printed digit. */
    const char *score_a[] = {"score", "--db", dba, "--model", model, "--doc", "book", "--text", " harbours and", NULL};
    const char *score_b[] = {"score", "--db", dbb, "--model", model, "--doc", "copy", "--text", " harbours and", NULL};
    char *sa = run_ok(score_a), *sb = run_ok(score_b);
    ck_assert_str_eq(sa, sb);
    free(sa);
    free(sb);

    /* A session on the imported document: append, then greedy generation
     * equals generating from the original with the same text as prompt. */
    const char *snew[] = {"session", "new", "--db", dbb, "--doc", "copy", NULL};
    char *sid = run_ok(snew);
    sid[strcspn(sid, "\n")] = '\0';
    ck_assert_uint_eq(strlen(sid), 16);
    const char *app[] = {"session", "append", sid, "--db", dbb, "--model", model, "--text", " The lighthouse", NULL};
    free(run_ok(app));
    const char *gen_b[] = {"generate", "--db", dbb, "--model", model, "--session", sid, "--temperature", "0", "-n", "5",
                           NULL};
    const char *gen_a[] = {"generate", "--db",   dba, "--model", model, "--doc", "book", "--prompt", " The lighthouse",
                           "--temperature", "0", "-n", "5", NULL};
    char *ga = run_ok(gen_a), *gb = run_ok(gen_b);
    ck_assert_str_eq(ga, gb);
    free(ga);
    free(gb);
    const char *fork_[] = {"session", "fork", sid, "--db", dbb, NULL};
    free(run_ok(fork_));
    char below[32];
    snprintf(below, sizeof below, "%lld", pos - 1);
    const char *snew_below[] = {"session", "new", "--db", dbb, "--doc", "copy", "--at", below, NULL};
    expect_fail(snew_below, 1, "imported");
    const char *score_below[] = {"score", "--db", dbb, "--model", model, "--doc", "copy", "--at", below,
                                 "--text", " harbours", NULL};
    expect_fail(score_below, 1, "imported");
    /* The imported state exports again, byte for byte. */
    char again[4096];
    snprintf(again, sizeof again, "%s/again.state", dir);
    const char *exp_b[] = {"state", "export", "--db", dbb, "--model", model, "--doc", "copy", "--out", again, NULL};
    free(run_ok(exp_b));
    size_t n1, n2;
    char *b1 = tu_read(state, &n1), *b2 = tu_read(again, &n2);
    ck_assert_uint_eq(n1, n2);
    ck_assert_int_eq(memcmp(b1, b2, n1), 0);
    free(b2);

    /* Refusals, none of which changes db B. */
    expect_fail(imp, 1, "already exists");
    const char *imp_rep[] = {"state", "import", "--db", dbb, "--model", model, "--in", state, "--name", "copy",
                             "--replace", NULL};
    expect_fail(imp_rep, 1, "session(s) continue it");
    const char *imp_other[] = {"state", "import", "--db", dbb, "--model", other, "--in", state, "--name", "x", NULL};
    expect_fail(imp_other, 1, "not a state of model");
    const char *imp_small[] = {"state", "import", "--db", dbb, "--model", small, "--in", state, "--name", "x", NULL};
    expect_fail(imp_small, 1, "not a state of model");
    b1[n1 / 2] ^= 0x40; /* one flipped bit in the payload */
    ck_assert_int_eq(tu_write(bad, b1, n1), 0);
    const char *imp_bad[] = {"state", "import", "--db", dbb, "--model", model, "--in", bad, "--name", "x", NULL};
    expect_fail(imp_bad, 1, "checksum");
    ck_assert_int_eq(tu_write(bad, b1, 20), 0); /* truncated */
    expect_fail(imp_bad, 1, bad);
    free(b1);
    const char *imp_none[] = {"state", "import", "--db", dbb, "--model", model, "--in", "/nonexistent.state",
                              "--name", "x", NULL};
    expect_fail(imp_none, 1, "/nonexistent.state");
    const char *imp_usage[] = {"state", "import", "--db", dbb, "--model", model, "--in", state, NULL};
    expect_fail(imp_usage, 2, "--name");
    const char *docs_x[] = {"docs", "--db", dbb, "--doc", "x", NULL};
    expect_fail(docs_x, 1, "no document named 'x'");
    /* --replace on a name without sessions works. */
    const char *imp2[] = {"state", "import", "--db", dbb, "--model", model, "--in", state, "--name", "copy2", NULL};
    free(run_ok(imp2));
    const char *imp2r[] = {"state", "import", "--db", dbb, "--model", model, "--in", state, "--name", "copy2",
                           "--replace", "--quiet", NULL};
    o = run_ok(imp2r);
    ck_assert_str_eq(o, "");
    free(o);
    free(sid);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_logits_contract, 0, 4);
    tcase_add_test(tc, test_generate);
    tcase_add_test(tc, test_info);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_store_commands);
    tcase_add_test(tc, test_state_export_import);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
