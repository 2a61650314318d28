/* test_service.c -- coild and its workers, for real: processes, sockets on
 * 127.0.0.1, a SQLite file in a temp dir.
 *
 *   - ingest (streamed parts) -> doc.complete event -> search -> session ->
 *     generate / score / state export, each equal to the same operation run
 *     locally with the coil CLI on the same database (bit for bit)
 *   - the Python client (examples/client.py, Debian's python3-zmq)
 *   - SIGKILL the workers mid-ingest: the document still completes, with the
 *     same final state as an undisturbed local ingest
 *   - 1000 malformed messages: 1000 error replies, then normal service
 */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "testutil.h"

extern char **environ;
static char *dir;
static char model[4096], db[4096], doc[4096], cfg[4096], ep_clients[64], ep_events[64];
static pid_t coild_pid;
static void *ctx;
static char replies[4200]; /* every reply call() / call_err() got, for the schema check */

#ifndef COIL_PYTHON
#define COIL_PYTHON "python3"
#endif

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *build(const char *rel)
{
    static char buf[4][4096];
    static int k;
    const char *b = getenv("COIL_BUILDDIR");
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", b && *b ? b : ".", rel);
    return buf[k];
}

/* Two distinct ports on 127.0.0.1 that were free a moment ago (both probe
 * sockets stay bound until both are known, so they differ). */
static void free_ports(int *a, int *b)
{
    void *s[2];
    int *out[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        char ep[64];
        size_t l = sizeof ep;
        s[i] = zmq_socket(ctx, ZMQ_ROUTER);
        ck_assert_int_eq(zmq_bind(s[i], "tcp://127.0.0.1:*"), 0);
        zmq_getsockopt(s[i], ZMQ_LAST_ENDPOINT, ep, &l);
        *out[i] = atoi(strrchr(ep, ':') + 1);
    }
    zmq_close(s[0]);
    zmq_close(s[1]);
}

static void write_doc(const char *path, int paragraphs)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < paragraphs; i++)
        fprintf(f, "Paragraph %d: the harbour keeper counts %d lighthouses and writes it down.\n", i, i * 7 % 13);
    fprintf(f, "A zebra quartermaster appears exactly once.\n");
    fclose(f);
}

static char coild_log[4200]; /* coild's stderr (its errors, and the workers') */

static pid_t spawn_coild(void)
{
    pid_t pid;
    char *argv[] = {(char *)build("coild"), "--config", cfg, "--quiet", NULL};
    setenv("COIL_WORKER_BIN", build("workers/coil-worker"), 1);
    snprintf(coild_log, sizeof coild_log, "%s/coild.log", dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, coild_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    ck_assert_int_eq(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

/* The last lines coild wrote to stderr, for failure messages (static buffer). */
static const char *coild_tail(void)
{
    static char tail[2048];
    size_t n = 0;
    char *all = tu_read(coild_log, &n);
    if (!all || n == 0) {
        snprintf(tail, sizeof tail, "(coild wrote nothing)");
    } else {
        size_t k = n < sizeof tail - 1 ? n : sizeof tail - 1;
        memcpy(tail, all + n - k, k);
        tail[k] = '\0';
    }
    free(all);
    return tail;
}

static void stop_coild(void)
{
    if (coild_pid <= 0)
        return;
    kill(coild_pid, SIGTERM);
    int status;
    for (int i = 0; i < 300; i++) { /* 30 s */
        if (waitpid(coild_pid, &status, WNOHANG) == coild_pid) {
            coild_pid = 0;
            return;
        }
        usleep(100000);
    }
    kill(coild_pid, SIGKILL);
    waitpid(coild_pid, &status, 0);
    coild_pid = 0;
}

static char curve_yaml[1024]; /* extra config, set by the CURVE fixture */

static void setup_with(int max_message_bytes, int interval)
{
    ctx = zmq_ctx_new();
    dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(dir);
    snprintf(model, sizeof model, "%s/model", dir);
    snprintf(db, sizeof db, "%s/coil.db", dir);
    snprintf(doc, sizeof doc, "%s/doc.txt", dir);
    snprintf(cfg, sizeof cfg, "%s/coild.yaml", dir);
    snprintf(replies, sizeof replies, "%s/replies.jsonl", dir);
    tu_model_shape_t sh = {.d_model = 32, .n_layer = 2, .vocab = 1232, .d_state = 8, .d_conv = 4, .expand = 2,
                           .tied = 1, .dtype = "F32"};
    ck_assert_int_eq(tu_write_model_dir(model, &sh, 11), 0);
    write_doc(doc, 150);
    int pc, pe;
    free_ports(&pc, &pe);
    snprintf(ep_clients, sizeof ep_clients, "tcp://127.0.0.1:%d", pc);
    snprintf(ep_events, sizeof ep_events, "tcp://127.0.0.1:%d", pe);
    FILE *f = fopen(cfg, "w");
    fprintf(f,
            "endpoints:\n  clients: %s\n  events: %s\n  workers: ipc://%s/w.ipc\n"
            "database: %s\nmodel: %s\nworkers: 2\nchunk_tokens: 64\nthreads_per_worker: 1\n"
            "checkpoint:\n  interval_tokens: %d\nlimits:\n  max_message_bytes: %d\n",
            ep_clients, ep_events, dir, db, model, interval, max_message_bytes);
    fputs(curve_yaml, f);
    fclose(f);
    coild_pid = spawn_coild();
}

static void setup(void)
{
    setup_with(1 << 20, 256);
}

static void setup_sparse(void)
{
    setup_with(1 << 20, 4096);
}

static void teardown(void)
{
    stop_coild();
    zmq_ctx_term(ctx);
    tu_rm_rf(dir);
    free(dir);
}

static void *client(void)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    ck_assert_int_eq(zmq_connect(s, ep_clients), 0);
    return s;
}

static void *events(void)
{
    void *s = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0);
    ck_assert_int_eq(zmq_connect(s, ep_events), 0);
    return s;
}

/* Receives one message (JSON frame [+ blob]) within timeout_ms; NULL on timeout. */
static json_t *recv_json(void *s, int timeout_ms, void **blob, size_t *blob_len)
{
    zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return NULL;
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_ge(zmq_msg_recv(&m, s, 0), 0);
    json_t *j = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
    int more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    if (more) {
        zmq_msg_init(&m);
        zmq_msg_recv(&m, s, 0);
        if (blob) {
            *blob_len = zmq_msg_size(&m);
            *blob = malloc(*blob_len);
            memcpy(*blob, zmq_msg_data(&m), *blob_len);
        }
        zmq_msg_close(&m);
    }
    return j;
}

static char *run_local(char *const argv[], int *status);

/* Appends {"op", "reply"} to the replies file. */
static void record_reply(const json_t *rq, const json_t *reply)
{
    FILE *f = fopen(replies, "a");
    ck_assert_ptr_nonnull(f);
    json_t *rec = json_pack("{s:O, s:O}", "op", json_object_get(rq, "op"), "reply", reply);
    ck_assert_ptr_nonnull(rec);
    ck_assert_int_eq(json_dumpf(rec, f, JSON_COMPACT), 0);
    fputc('\n', f);
    fclose(f);
    json_decref(rec);
}

/* Every reply recorded so far validates against schemas/protocol: the
 * envelope (reply.schema.json) and each ok result (result.<op>.schema.json).
 * Skipped without python3 + jsonschema (test_protocol_schemas says so). */
static void check_replies(void)
{
    char *probe[] = {COIL_PYTHON, "-c", "import jsonschema", NULL};
    pid_t pid;
    int st;
    if (strcmp(COIL_PYTHON, "none") == 0 || posix_spawnp(&pid, probe[0], NULL, NULL, probe, environ) != 0 ||
        waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "replies not checked against the schemas: no python3 jsonschema\n");
        return;
    }
    char tool[4200], schemas[4200];
    const char *src = getenv("COIL_SRCDIR") && *getenv("COIL_SRCDIR") ? getenv("COIL_SRCDIR") : ".";
    snprintf(tool, sizeof tool, "%s/tests/tools/check_protocol_schemas.py", src);
    snprintf(schemas, sizeof schemas, "%s/schemas/protocol", src);
    char *argv[] = {COIL_PYTHON, tool, "--replies", schemas, replies, NULL};
    char *out = run_local(argv, &st);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "replies disagree with the schemas:\n%s", out);
    fprintf(stderr, "%s", out);
    free(out);
}

/* Sends a request and returns its final reply's result (asserting ok);
 * partial replies are counted into *partials. */
static json_t *call(void *s, const char *req, int *partials, void **blob, size_t *blob_len)
{
    json_t *rq = json_loads(req, 0, NULL), *want = json_object_get(rq, "id");
    ck_assert_int_ge(zmq_send(s, req, strlen(req), 0), 0);
    for (double t0 = mono(); mono() - t0 < 120;) {
        json_t *r = recv_json(s, 1000, blob, blob_len);
        int status;
        if (!r && coild_pid > 0 && waitpid(coild_pid, &status, WNOHANG) == coild_pid) {
            coild_pid = 0;
            ck_abort_msg("coild exited (status %d) while waiting for a reply to %s; its stderr:\n%s", status, req,
                         coild_tail());
        }
        if (!r)
            continue;
        if (want && !json_equal(json_object_get(r, "id"), want)) { /* a late answer to something else */
            json_decref(r);
            continue;
        }
        if (json_is_true(json_object_get(r, "partial"))) {
            if (partials)
                (*partials)++;
            json_decref(r);
            continue;
        }
        record_reply(rq, r);
        ck_assert_msg(json_is_true(json_object_get(r, "ok")), "request %s failed: %s", req,
                      json_string_value(json_object_get(json_object_get(r, "error"), "message")));
        json_t *res = json_incref(json_object_get(r, "result"));
        json_decref(r);
        json_decref(rq);
        return res;
    }
    ck_abort_msg("no reply to %s", req);
    return NULL;
}

/* Until coild answers health with both workers ready: asks again every second
 * (a request sent while the connection is still being made may go unanswered). */
static void wait_ready(void *s)
{
    const char *req = "{\"v\":1,\"id\":\"h\",\"op\":\"health\"}";
    for (double t0 = mono(); mono() - t0 < 60;) {
        int status;
        if (coild_pid > 0 && waitpid(coild_pid, &status, WNOHANG) == coild_pid) {
            coild_pid = 0;
            ck_abort_msg("coild exited (status %d) before it was ready; its stderr:\n%s", status, coild_tail());
        }
        zmq_send(s, req, strlen(req), ZMQ_DONTWAIT);
        json_t *r = recv_json(s, 1000, NULL, NULL);
        int w = (int)json_integer_value(json_object_get(json_object_get(r, "result"), "workers"));
        json_decref(r);
        if (w == 2) {
            while ((r = recv_json(s, 0, NULL, NULL))) /* answers to the repeated asks */
                json_decref(r);
            return;
        }
    }
    ck_abort_msg("coild never became ready");
}

static json_t *wait_event(void *sub, const char *topic, const char *docname, double timeout_s);

/* PUB/SUB joins asynchronously: wait for coild's heartbeat before relying on events. */
static void sync_events(void *sub)
{
    json_decref(wait_event(sub, "coild.heartbeat", NULL, 10));
}

static json_t *wait_event(void *sub, const char *topic, const char *docname, double timeout_s)
{
    for (double t0 = mono(); mono() - t0 < timeout_s;) {
        zmq_pollitem_t it = {.socket = sub, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 200) <= 0)
            continue;
        char t[64] = "";
        int n = zmq_recv(sub, t, sizeof t - 1, 0);
        t[n > 0 ? (n < 63 ? n : 63) : 0] = '\0';
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, sub, 0);
        json_t *ev = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
        zmq_msg_close(&m);
        const char *d = json_string_value(json_object_get(ev, "doc"));
        if (getenv("COIL_TEST_VERBOSE"))
            fprintf(stderr, "event %s %s\n", t, d ? d : "-");
        if (!strcmp(t, "doc.failed") && d && !strcmp(d, docname))
            ck_abort_msg("doc.failed: %s", json_dumps(ev, 0));
        if (!strcmp(t, topic) && (!docname || (d && !strcmp(d, docname))))
            return ev;
        json_decref(ev);
    }
    ck_abort_msg("no %s event", topic);
    return NULL;
}

/* Runs a local program, capturing stdout into a malloc'd string. */
static char *run_local(char *const argv[], int *status)
{
    char out[4300];
    snprintf(out, sizeof out, "%s/out.txt", dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    ck_assert_int_eq(posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    ck_assert_int_eq(waitpid(pid, status, 0), pid);
    size_t n;
    char *s = tu_read(out, &n);
    char *z = realloc(s, n + 1);
    z[n] = '\0';
    return z;
}

START_TEST(test_end_to_end_equals_local)
{
    void *c = client(), *sub = events();
    wait_ready(c);
    sync_events(sub);
    /* ingest in three streamed parts, cut at character boundaries */
    size_t tl;
    char *text = tu_read(doc, &tl);
    size_t cut[4] = {0, tl / 3, 2 * tl / 3, tl};
    for (int p = 1; p < 3; p++)
        while (cut[p] < tl && ((unsigned char)text[cut[p]] & 0xC0) == 0x80)
            cut[p]++;
    for (int p = 0; p < 3; p++) {
        json_t *m = json_pack("{s:i, s:i, s:s, s:s, s:i, s:b, s:s%}", "v", 1, "id", 10 + p, "op", "ingest", "name",
                              "book", "part", p, "last", p == 2, "text", text + cut[p], cut[p + 1] - cut[p]);
        char *req = json_dumps(m, JSON_COMPACT);
        json_t *r = call(c, req, NULL, NULL, NULL);
        if (p < 2)
            ck_assert_int_eq(json_integer_value(json_object_get(r, "received")), p);
        else
            ck_assert_int_gt(json_integer_value(json_object_get(r, "tokens")), 1000);
        json_decref(r);
        free(req);
        json_decref(m);
    }
    free(text);
    json_decref(wait_event(sub, "doc.complete", "book", 60));

    json_t *r = call(c, "{\"v\":1,\"id\":\"s\",\"op\":\"search\",\"query\":\"quartermaster\"}", NULL, NULL, NULL);
    json_t *hits = json_object_get(r, "hits");
    ck_assert_int_ge(json_array_size(hits), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(hits, 0), "doc")), "book");
    json_decref(r);

    r = call(c, "{\"v\":1,\"id\":\"n\",\"op\":\"session.new\",\"doc\":\"book\"}", NULL, NULL, NULL);
    char sid[32];
    snprintf(sid, sizeof sid, "%s", json_string_value(json_object_get(r, "session")));
    json_decref(r);
    char buf[512];
    snprintf(buf, sizeof buf, "{\"v\":1,\"id\":\"a\",\"op\":\"session.append\",\"session\":\"%s\",\"text\":\"What did the keeper count?\"}", sid);
    json_decref(call(c, buf, NULL, NULL, NULL));
    int partials = 0;
    snprintf(buf, sizeof buf, "{\"v\":1,\"id\":\"g\",\"op\":\"generate\",\"session\":\"%s\",\"n\":8,\"temperature\":0}", sid);
    json_t *gen = call(c, buf, &partials, NULL, NULL);
    ck_assert_int_eq(partials, 8);
    ck_assert_int_eq(json_array_size(json_object_get(gen, "ids")), 8);
    snprintf(buf, sizeof buf, "{\"v\":1,\"id\":\"c\",\"op\":\"score\",\"session\":\"%s\",\"text\":\" lighthouses\"}", sid);
    json_t *sc = call(c, buf, NULL, NULL, NULL);
    void *blob = NULL;
    size_t blob_len = 0;
    snprintf(buf, sizeof buf, "{\"v\":1,\"id\":\"e\",\"op\":\"state.export\",\"session\":\"%s\"}", sid);
    json_decref(call(c, buf, NULL, &blob, &blob_len));
    ck_assert_ptr_nonnull(blob);

    /* the same operations, locally with the CLI on the same database */
    int st;
    char *gargv[] = {(char *)build("coil"), "generate", "--db", db, "--model", model, "--session", sid, "-n", "8",
                     "--temperature", "0", "--threads", "1", "--chunk", "64", NULL};
    char *lg = run_local(gargv, &st);
    ck_assert_int_eq(st, 0);
    char expect[1024];
    snprintf(expect, sizeof expect, "%s\n", json_string_value(json_object_get(gen, "text")));
    ck_assert_str_eq(lg, expect);
    char *sargv[] = {(char *)build("coil"), "score", "--db", db, "--model", model, "--session", sid, "--text",
                     " lighthouses", "--threads", "1", "--chunk", "64", NULL};
    char *ls = run_local(sargv, &st);
    ck_assert_int_eq(st, 0);
    json_t *lsj = json_loads(ls, 0, NULL);
    ck_assert_ptr_nonnull(lsj);
    ck_assert_msg(json_real_value(json_object_get(lsj, "logprob")) == json_real_value(json_object_get(sc, "logprob")),
                  "score differs: local %s, service %s", ls, json_dumps(sc, 0));
    char state_path[4200];
    snprintf(state_path, sizeof state_path, "%s/s.state", dir);
    char *xargv[] = {(char *)build("coil"), "state", "export", "--db", db, "--model", model, "--session", sid,
                     "--out", state_path, "--threads", "1", "--chunk", "64", NULL};
    free(run_local(xargv, &st));
    ck_assert_int_eq(st, 0);
    size_t ln;
    void *local_blob = tu_read(state_path, &ln);
    ck_assert_msg(ln == blob_len && memcmp(local_blob, blob, ln) == 0, "exported states differ");
    free(local_blob);

    /* the CLI against the server (--connect) prints exactly what it prints locally */
    char *rsargv[] = {(char *)build("coil"), "--connect", ep_clients, "score", "--session", sid, "--text",
                      " lighthouses", NULL};
    char *rs = run_local(rsargv, &st);
    ck_assert_int_eq(st, 0);
    ck_assert_str_eq(rs, ls);
    free(rs);
    char *rdargv[] = {(char *)build("coil"), "--connect", ep_clients, "docs", NULL};
    char *rd = run_local(rdargv, &st);
    ck_assert_int_eq(st, 0);
    ck_assert_ptr_nonnull(strstr(rd, "book"));
    free(rd);
    char rstate[4200];
    snprintf(rstate, sizeof rstate, "%s/r.state", dir);
    char *rxargv[] = {(char *)build("coil"), "--connect", ep_clients, "state", "export", "--session", sid, "--out",
                      rstate, NULL};
    free(run_local(rxargv, &st));
    ck_assert_int_eq(st, 0);
    local_blob = tu_read(rstate, &ln);
    ck_assert_msg(ln == blob_len && memcmp(local_blob, blob, ln) == 0, "remote export differs");
    free(local_blob);
    /* import the session's state as a new document, over the wire, and score from it */
    char *riargv[] = {(char *)build("coil"), "--connect", ep_clients, "state", "import", "--in", rstate, "--name",
                      "imported", NULL};
    free(run_local(riargv, &st));
    ck_assert_int_eq(st, 0);
    char *rs2argv[] = {(char *)build("coil"), "--connect", ep_clients, "score", "--doc", "imported", "--text",
                       " lighthouses", NULL};
    char *rs2 = run_local(rs2argv, &st);
    ck_assert_int_eq(st, 0);
    ck_assert_str_eq(rs2, ls); /* the same state: the same log-probabilities */
    free(rs2);
    char *bad[] = {(char *)build("coil"), "--connect", ep_clients, "search", "AND (", NULL};
    free(run_local(bad, &st));
    ck_assert_int_eq(WEXITSTATUS(st), 1);
    free(blob);
    free(lg);
    free(ls);
    json_decref(lsj);
    json_decref(sc);
    json_decref(gen);
    /* coil --connect session append --key: done once, the repeat says so */
    char *kargv[] = {(char *)build("coil"), "--connect", ep_clients, "session", "append", sid, "--text", " Once.",
                     "--key", "cli-1", NULL};
    char *k1 = run_local(kargv, &st);
    ck_assert_int_eq(st, 0);
    ck_assert_ptr_null(strstr(k1, "already done"));
    char *k2 = run_local(kargv, &st);
    ck_assert_int_eq(st, 0);
    ck_assert_msg(strstr(k2, "(already done with this key)") != NULL, "%s", k2);
    free(k1);
    free(k2);
    /* the remaining ops, for the result schemas */
    json_decref(call(c, "{\"v\":1,\"id\":\"ds\",\"op\":\"doc.status\",\"name\":\"book\"}", NULL, NULL, NULL));
    json_decref(call(c, "{\"v\":1,\"id\":\"dl\",\"op\":\"doc.list\"}", NULL, NULL, NULL));
    snprintf(buf, sizeof buf, "{\"v\":1,\"id\":\"f\",\"op\":\"session.fork\",\"session\":\"%s\"}", sid);
    json_t *fk = call(c, buf, NULL, NULL, NULL);
    snprintf(buf, sizeof buf, "{\"v\":1,\"id\":\"d\",\"op\":\"session.delete\",\"session\":\"%s\"}",
             json_string_value(json_object_get(fk, "session")));
    json_decref(call(c, buf, NULL, NULL, NULL));
    json_decref(fk);
    json_decref(call(c, "{\"v\":1,\"id\":\"h\",\"op\":\"health\"}", NULL, NULL, NULL));
    json_decref(call(c, "{\"v\":1,\"id\":\"st\",\"op\":\"stats\"}", NULL, NULL, NULL));
    check_replies();
    zmq_close(c);
    zmq_close(sub);
}
END_TEST

START_TEST(test_python_client)
{
    void *c = client();
    wait_ready(c);
    zmq_close(c);
    char script[4096];
    snprintf(script, sizeof script, "%s/examples/client.py", getenv("COIL_SRCDIR") ? getenv("COIL_SRCDIR") : ".");
    char *argv[] = {"/usr/bin/python3", script, "--server", ep_clients, "--events", ep_events, "--name", "py",
                    "--file", doc, "--query", "zebra", "--question", "Who appears once?", "-n", "5", NULL};
    int st;
    char *out = run_local(argv, &st);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "client.py failed (python3-zmq installed?): %s", out);
    ck_assert_ptr_nonnull(strstr(out, "complete:"));
    ck_assert_ptr_nonnull(strstr(out, "hit chunk"));
    ck_assert_ptr_nonnull(strstr(out, "score of the answer"));
    free(out);
}
END_TEST

START_TEST(test_c_client)
{
    void *c = client();
    wait_ready(c);
    zmq_close(c);
    char *argv[] = {(char *)build("examples/client"), "--server", ep_clients, "--events", ep_events, "--name", "cdoc",
                    "--file", doc, "--query", "lighthouses", "--question", "How many?", "-n", "5", NULL};
    int st;
    char *out = run_local(argv, &st);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "examples/client failed: %s", out);
    ck_assert_ptr_nonnull(strstr(out, "complete:"));
    ck_assert_ptr_nonnull(strstr(out, "hit chunk"));
    ck_assert_ptr_nonnull(strstr(out, "answer: "));
    free(out);
}
END_TEST

/* pids of coild's children, from /proc */
static int children(pid_t parent, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;
    while (d && (de = readdir(d)) && n < max) {
        char p[300], line[512];
        snprintf(p, sizeof p, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        if (fgets(line, sizeof line, f)) {
            char *rp = strrchr(line, ')');
            int ppid = 0;
            if (rp && sscanf(rp + 2, "%*c %d", &ppid) == 1 && ppid == parent)
                out[n++] = (pid_t)atoi(de->d_name);
        }
        fclose(f);
    }
    if (d)
        closedir(d);
    return n;
}

START_TEST(test_worker_killed_mid_ingest)
{
    /* the reference: an undisturbed local ingest of the same text */
    char big[4200], refdb[4200], refstate[4200], state[4200];
    snprintf(big, sizeof big, "%s/big.txt", dir);
    snprintf(refdb, sizeof refdb, "%s/ref.db", dir);
    snprintf(refstate, sizeof refstate, "%s/ref.state", dir);
    snprintf(state, sizeof state, "%s/svc.state", dir);
    write_doc(big, 12000); /* ~0.9 MB: long enough to be killed mid-way */
    int st;
    char *iargv[] = {(char *)build("coil"), "ingest", "--db", refdb, "--model", model, "--name", "big", "--file", big,
                     "--chunk", "64", "--interval", "4096", "--threads", "1", "--quiet", NULL};
    free(run_local(iargv, &st));
    ck_assert_int_eq(st, 0);
    char *rargv[] = {(char *)build("coil"), "state", "export", "--db", refdb, "--model", model, "--doc", "big",
                     "--out", refstate, "--threads", "1", "--chunk", "64", NULL};
    free(run_local(rargv, &st));
    ck_assert_int_eq(st, 0);

    void *c = client(), *sub = events();
    wait_ready(c);
    sync_events(sub);
    /* streamed in parts of 256 KiB (cut at character boundaries) */
    size_t tl;
    char *text = tu_read(big, &tl);
    size_t at = 0;
    for (int p = 0; at < tl; p++) {
        size_t end = at + 262144 < tl ? at + 262144 : tl;
        while (end < tl && ((unsigned char)text[end] & 0xC0) == 0x80)
            end++;
        json_t *m = json_pack("{s:i, s:i, s:s, s:s, s:i, s:b, s:s%}", "v", 1, "id", 100 + p, "op", "ingest", "name",
                              "big", "part", p, "last", end == tl, "text", text + at, end - at);
        char *req = json_dumps(m, JSON_COMPACT);
        ck_assert_int_ge(zmq_send(c, req, strlen(req), 0), 0);
        if (end < tl) { /* a part's receipt */
            json_t *r = recv_json(c, 30000, NULL, NULL);
            ck_assert_msg(r && json_is_true(json_object_get(r, "ok")), "part %d refused", p);
            json_decref(r);
        }
        free(req);
        json_decref(m);
        at = end;
    }
    free(text);
    /* once it is under way, kill every worker (the busy one among them) */
    json_t *ev = wait_event(sub, "ingest.progress", "big", 60);
    ck_assert_int_gt(json_integer_value(json_object_get(ev, "tokens")), 0);
    json_decref(ev);
    pid_t kids[16];
    int nk = children(coild_pid, kids, 16);
    ck_assert_int_eq(nk, 2);
    for (int i = 0; i < nk; i++)
        kill(kids[i], SIGKILL);
    json_decref(wait_event(sub, "worker.down", NULL, 30));
    /* the job is re-queued on a restarted worker and resumes from its checkpoint */
    json_t *rep = recv_json(c, 120000, NULL, NULL);
    ck_assert_ptr_nonnull(rep);
    ck_assert_msg(json_is_true(json_object_get(rep, "ok")), "%s", json_dumps(rep, 0));
    ck_assert_int_gt(json_integer_value(json_object_get(json_object_get(rep, "result"), "resumed_at")), 0);
    json_decref(rep);
    char *xargv[] = {(char *)build("coil"), "state", "export", "--db", db, "--model", model, "--doc", "big", "--out",
                     state, "--threads", "1", "--chunk", "64", NULL};
    free(run_local(xargv, &st));
    ck_assert_int_eq(st, 0);
    size_t a, b;
    void *x = tu_read(refstate, &a), *y = tu_read(state, &b);
    ck_assert_msg(a == b && memcmp(x, y, a) == 0, "final state after the kill differs from the undisturbed run");
    free(x);
    free(y);
    zmq_close(c);
    zmq_close(sub);
}
END_TEST

static void setup_small_limit(void)
{
    setup_with(65536, 256);
}

START_TEST(test_malformed_messages)
{
    void *c = client();
    wait_ready(c);
    char *big = malloc(100000);
    memset(big, 'a', 99999);
    big[99999] = '\0';
    memcpy(big, "{\"v\":1,\"id\":1,\"op\":\"search\",\"query\":\"", 38);
    static const char *bad[] = {
        "{{",
        "[1,2,3]",
        "{\"v\":1,\"op\":\"health\"}",
        "{\"v\":1,\"id\":2,\"op\":\"explode\"}",
        "{\"v\":1,\"id\":3,\"op\":\"search\",\"query\":\"x\",\"limit\":\"ten\"}",
        "{\"v\":2,\"id\":4,\"op\":\"health\"}",
        "{\"v\":1,\"id\":5,\"op\":\"search\"}",
        "{\"v\":1,\"id\":6,\"op\":\"generate\",\"session\":\"0123456789abcdef\",\"doc\":\"x\"}",
        "{\"v\":1,\"id\":\"01234567890123456789012345678901234567890123456789012345678901234567890\",\"op\":\"health\"}",
        "{\"v\":1,\"id\":7,\"op\":\"search\",\"query\":\"x\",\"bogus\":1}",
        "{\"v\":1,\"id\":8,\"op\":\"session.append\",\"session\":\"nothex\",\"text\":\"x\"}",
        "{\"v\":1,\"id\":9,\"op\":\"generate\",\"doc\":\"x\",\"n\":1e300}",
        "",
    };
    const int nb = (int)(sizeof bad / sizeof bad[0]);
    int sent = 0, errors = 0;
    for (int i = 0; i < 1000; i++) {
        int kind = i % (nb + 4);
        if (kind < nb) {
            zmq_send(c, bad[kind], strlen(bad[kind]), 0);
        } else if (kind == nb) { /* invalid UTF-8 inside a string */
            const char s[] = "{\"v\":1,\"id\":10,\"op\":\"search\",\"query\":\"\xff\xfe\"}";
            zmq_send(c, s, sizeof s - 1, 0);
        } else if (kind == nb + 1) { /* three frames */
            zmq_send(c, "{}", 2, ZMQ_SNDMORE);
            zmq_send(c, "x", 1, ZMQ_SNDMORE);
            zmq_send(c, "y", 1, 0);
        } else if (kind == nb + 2) { /* a binary frame where none belongs */
            const char *h = "{\"v\":1,\"id\":11,\"op\":\"health\"}";
            zmq_send(c, h, strlen(h), ZMQ_SNDMORE);
            zmq_send(c, "blob", 4, 0);
        } else { /* larger than limits.max_message_bytes */
            zmq_send(c, big, strlen(big), 0);
        }
        sent++;
        /* read replies as we go, so nothing piles up */
        json_t *r;
        while ((r = recv_json(c, errors < sent - 50 ? 5000 : 0, NULL, NULL))) {
            ck_assert_msg(json_is_false(json_object_get(r, "ok")), "message %d was accepted: %s", i, json_dumps(r, 0));
            ck_assert(json_is_string(json_object_get(json_object_get(r, "error"), "code")));
            errors++;
            json_decref(r);
        }
    }
    json_t *r;
    while (errors < sent && (r = recv_json(c, 10000, NULL, NULL))) {
        ck_assert(json_is_false(json_object_get(r, "ok")));
        errors++;
        json_decref(r);
    }
    ck_assert_int_eq(errors, 1000);
    /* and the server still serves a valid request correctly */
    json_t *h = call(c, "{\"v\":1,\"id\":\"ok\",\"op\":\"health\"}", NULL, NULL, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(h, "status")), "ok");
    json_decref(h);
    json_t *l = call(c, "{\"v\":1,\"id\":\"l\",\"op\":\"doc.list\"}", NULL, NULL, NULL);
    ck_assert(json_is_array(json_object_get(l, "docs")));
    json_decref(l);
    free(big);
    zmq_close(c);
}
END_TEST

/* CURVE: the server's keys and an allowed client; another key and a plain client get nothing. */
static char srv_pub[41], srv_sec[41], ok_pub[41], ok_sec[41], bad_pub[41], bad_sec[41];

static void setup_curve(void)
{
    ck_assert_int_eq(zmq_curve_keypair(srv_pub, srv_sec), 0);
    ck_assert_int_eq(zmq_curve_keypair(ok_pub, ok_sec), 0);
    ck_assert_int_eq(zmq_curve_keypair(bad_pub, bad_sec), 0);
    char keyfile[64];
    snprintf(keyfile, sizeof keyfile, "/tmp/coil-curve-%ld.key", (long)getpid());
    ck_assert_int_eq(tu_write(keyfile, srv_sec, 40), 0);
    snprintf(curve_yaml, sizeof curve_yaml,
             "curve:\n  server_secret_key_file: %s\n  allowed_client_keys: [\"%s\"]\n", keyfile, ok_pub);
    setup_with(1 << 20, 256);
}

static void teardown_curve(void)
{
    char keyfile[64];
    snprintf(keyfile, sizeof keyfile, "/tmp/coil-curve-%ld.key", (long)getpid());
    unlink(keyfile);
    curve_yaml[0] = '\0';
    teardown();
}

static void send_str(void *s, const char *msg)
{
    zmq_send(s, msg, strlen(msg), 0);
}

static void *curve_client(const char *pub, const char *sec)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (pub) {
        zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, srv_pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 40);
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sec, 40);
    }
    ck_assert_int_eq(zmq_connect(s, ep_clients), 0);
    return s;
}

START_TEST(test_curve_allow_list)
{
    void *ok = curve_client(ok_pub, ok_sec);
    json_t *h = NULL;
    for (double t0 = mono(); !h && mono() - t0 < 30;) { /* coild may still be starting */
        send_str(ok, "{\"v\":1,\"id\":1,\"op\":\"health\"}");
        h = recv_json(ok, 1000, NULL, NULL);
    }
    ck_assert_msg(h != NULL, "the allowed client got no reply");
    ck_assert(json_is_true(json_object_get(h, "ok")));
    json_decref(h);
    void *bad = curve_client(bad_pub, bad_sec), *plain = curve_client(NULL, NULL);
    send_str(bad, "{\"v\":1,\"id\":2,\"op\":\"health\"}");
    send_str(plain, "{\"v\":1,\"id\":3,\"op\":\"health\"}");
    ck_assert_msg(recv_json(bad, 2000, NULL, NULL) == NULL, "a client with a key not on the list got a reply");
    ck_assert_msg(recv_json(plain, 500, NULL, NULL) == NULL, "a client without CURVE got a reply");
    /* and the allowed one is still served */
    send_str(ok, "{\"v\":1,\"id\":4,\"op\":\"health\"}");
    h = recv_json(ok, 5000, NULL, NULL);
    ck_assert_ptr_nonnull(h);
    json_decref(h);
    zmq_close(ok);
    zmq_close(bad);
    zmq_close(plain);
}
END_TEST

START_TEST(test_max_clients)
{
    /* rewrite the config with max_clients: 1 and restart coild */
    stop_coild();
    FILE *f = fopen(cfg, "r+");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    char *lim = strstr(buf, "limits:\n");
    ck_assert_ptr_nonnull(lim);
    char out[4200];
    snprintf(out, sizeof out, "%.*slimits:\n  max_clients: 1\n%s", (int)(lim - buf), buf, lim + 8);
    ck_assert_int_eq(tu_write(cfg, out, strlen(out)), 0);
    coild_pid = spawn_coild();
    void *a = client();
    wait_ready(a); /* the first client is served */
    void *b = client();
    send_str(b, "{\"v\":1,\"id\":9,\"op\":\"health\"}");
    json_t *r = recv_json(b, 10000, NULL, NULL);
    ck_assert_ptr_nonnull(r);
    ck_assert(json_is_false(json_object_get(r, "ok")));
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "error"), "code")), "COIL_EBUSY");
    json_decref(r);
    zmq_close(b);
    usleep(300000); /* the second client's disconnect reaches the monitor */
    json_decref(call(a, "{\"v\":1,\"id\":\"again\",\"op\":\"health\"}", NULL, NULL, NULL));
    zmq_close(a);
}
END_TEST

/* Sends a request that must fail; returns its error code's name (static
 * buffer) and the message in msg. */
static const char *call_err(void *s, const char *req, char *msg, size_t msg_len)
{
    ck_assert_int_ge(zmq_send(s, req, strlen(req), 0), 0);
    for (double t0 = mono(); mono() - t0 < 120;) {
        json_t *r = recv_json(s, 1000, NULL, NULL);
        if (!r || json_is_true(json_object_get(r, "partial"))) {
            json_decref(r);
            continue;
        }
        json_t *rq = json_loads(req, 0, NULL);
        record_reply(rq, r);
        json_decref(rq);
        ck_assert_msg(json_is_false(json_object_get(r, "ok")), "request %s succeeded", req);
        json_t *e = json_object_get(r, "error");
        snprintf(msg, msg_len, "%s", json_string_value(json_object_get(e, "message")));
        static char code[64];
        snprintf(code, sizeof code, "%s", json_string_value(json_object_get(e, "code")));
        json_decref(r);
        return code;
    }
    ck_abort_msg("no reply to %s", req);
    return NULL;
}

static int64_t session_head(void *c, const char *sid)
{
    char buf[256];
    void *blob = NULL;
    size_t bl = 0;
    snprintf(buf, sizeof buf, "{\"v\":1,\"id\":\"x\",\"op\":\"state.export\",\"session\":\"%s\"}", sid);
    json_t *r = call(c, buf, NULL, &blob, &bl);
    int64_t pos = (int64_t)json_integer_value(json_object_get(r, "position"));
    json_decref(r);
    free(blob);
    return pos;
}

static void setup_fault(void)
{
    /* every worker dies right after committing a keyed append, before replying */
    setenv("COIL_WORKER_FAULT", "after-append-commit", 1);
    setup();
}

/* A worker that dies after committing an append but before replying: coild
 * runs the job again, the new worker finds the request key recorded in the
 * append's transaction and replies with the first run's result -- the text
 * is appended exactly once.  Also: a client's own key makes a repeated
 * request harmless, and a key is bound to its session. */
START_TEST(test_append_exactly_once_across_worker_death)
{
    void *c = client();
    wait_ready(c);
    char buf[1024], msg[512];
    json_decref(call(c, "{\"v\":1,\"id\":\"i\",\"op\":\"ingest\",\"name\":\"book\",\"text\":\"The harbour keeper counts.\"}",
                     NULL, NULL, NULL));
    json_t *r = call(c, "{\"v\":1,\"id\":\"n\",\"op\":\"session.new\",\"doc\":\"book\"}", NULL, NULL, NULL);
    char sid[32], other[32];
    snprintf(sid, sizeof sid, "%s", json_string_value(json_object_get(r, "session")));
    int64_t h0 = (int64_t)json_integer_value(json_object_get(r, "position"));
    json_decref(r);
    r = call(c, "{\"v\":1,\"id\":\"n2\",\"op\":\"session.new\",\"doc\":\"book\"}", NULL, NULL, NULL);
    snprintf(other, sizeof other, "%s", json_string_value(json_object_get(r, "session")));
    json_decref(r);

    /* coild's own key: the worker dies after the commit, the re-run replays */
    snprintf(buf, sizeof buf,
             "{\"v\":1,\"id\":\"a1\",\"op\":\"session.append\",\"session\":\"%s\",\"text\":\" Seven lamps.\"}", sid);
    r = call(c, buf, NULL, NULL, NULL);
    ck_assert(json_is_true(json_object_get(r, "replayed")));
    int64_t n1 = (int64_t)json_integer_value(json_object_get(r, "tokens"));
    int64_t h1 = (int64_t)json_integer_value(json_object_get(r, "head"));
    ck_assert_int_gt(n1, 0);
    ck_assert_int_eq(h1, h0 + n1);
    json_decref(r);
    ck_assert_int_eq(session_head(c, sid), h1); /* appended once, not twice */

    /* the client's key: the first request dies and replays; sent again, it
     * replays again -- the session does not grow */
    snprintf(buf, sizeof buf,
             "{\"v\":1,\"id\":\"a2\",\"op\":\"session.append\",\"session\":\"%s\",\"text\":\" Nine boats.\",\"key\":\"turn-2\"}",
             sid);
    for (int k = 0; k < 2; k++) {
        r = call(c, buf, NULL, NULL, NULL);
        ck_assert(json_is_true(json_object_get(r, "replayed")));
        int64_t n2 = (int64_t)json_integer_value(json_object_get(r, "tokens"));
        ck_assert_int_eq((int64_t)json_integer_value(json_object_get(r, "head")), h1 + n2);
        ck_assert_int_eq(session_head(c, sid), h1 + n2);
        json_decref(r);
    }
    int64_t h2 = session_head(c, sid);

    /* generate with append: the replay gives the same text and ids */
    snprintf(buf, sizeof buf,
             "{\"v\":1,\"id\":\"g\",\"op\":\"generate\",\"session\":\"%s\",\"n\":5,\"temperature\":0,"
             "\"append\":true,\"key\":\"gen-1\"}", sid);
    json_t *g1 = call(c, buf, NULL, NULL, NULL);
    json_t *g2 = call(c, buf, NULL, NULL, NULL);
    ck_assert(json_is_true(json_object_get(g1, "replayed")));
    ck_assert(json_equal(json_object_get(g1, "ids"), json_object_get(g2, "ids")));
    ck_assert(json_equal(json_object_get(g1, "text"), json_object_get(g2, "text")));
    ck_assert_int_eq(json_array_size(json_object_get(g1, "ids")), 5);
    ck_assert_int_eq((int64_t)json_integer_value(json_object_get(g1, "position")), h2 + 5);
    ck_assert_int_eq(session_head(c, sid), h2 + 5);
    json_decref(g1);
    json_decref(g2);

    /* a key belongs to the session it was used on */
    snprintf(buf, sizeof buf,
             "{\"v\":1,\"id\":\"a3\",\"op\":\"session.append\",\"session\":\"%s\",\"text\":\" x\",\"key\":\"turn-2\"}",
             other);
    ck_assert_str_eq(call_err(c, buf, msg, sizeof msg), "COIL_ESTATE");
    ck_assert_msg(strstr(msg, "turn-2") != NULL, "%s", msg);

    r = call(c, "{\"v\":1,\"id\":\"st\",\"op\":\"stats\"}", NULL, NULL, NULL);
    ck_assert_int_ge(json_integer_value(json_object_get(r, "worker_deaths")), 3); /* the hook did fire */
    json_decref(r);
    zmq_close(c);
    check_replies();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("service");
    TCase *tc = tcase_create("e2e");
    tcase_set_timeout(tc, 300);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_end_to_end_equals_local);
    tcase_add_test(tc, test_python_client);
    tcase_add_test(tc, test_c_client);
    suite_add_tcase(s, tc);
    TCase *tk = tcase_create("kill");
    tcase_set_timeout(tk, 300);
    tcase_add_checked_fixture(tk, setup_sparse, teardown);
    tcase_add_test(tk, test_worker_killed_mid_ingest);
    suite_add_tcase(s, tk);
    TCase *tf = tcase_create("exactly_once");
    tcase_set_timeout(tf, 300);
    tcase_add_checked_fixture(tf, setup_fault, teardown);
    tcase_add_test(tf, test_append_exactly_once_across_worker_death);
    suite_add_tcase(s, tf);
    TCase *tcv = tcase_create("curve");
    tcase_set_timeout(tcv, 120);
    tcase_add_checked_fixture(tcv, setup_curve, teardown_curve);
    tcase_add_test(tcv, test_curve_allow_list);
    TCase *tmc = tcase_create("max_clients");
    tcase_set_timeout(tmc, 120);
    tcase_add_checked_fixture(tmc, setup, teardown);
    tcase_add_test(tmc, test_max_clients);
    suite_add_tcase(s, tmc);
    suite_add_tcase(s, tcv);
    TCase *tm = tcase_create("malformed");
    tcase_set_timeout(tm, 300);
    tcase_add_checked_fixture(tm, setup_small_limit, teardown);
    tcase_add_test(tm, test_malformed_messages);
    suite_add_tcase(s, tm);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
