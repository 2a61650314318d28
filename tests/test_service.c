/* test_service.c -- coild and its workers, for real: processes, sockets on
 * 127.0.0.1, a SQLite file in a temp dir.
 *
 *   - ingest (streamed parts) -> doc.complete event -> search -> session ->
 *     generate / score / state export, each equal to the same operation run
 *     locally with the coil CLI on the same database (bit for bit)
 *   - the Python client (examples/client.py, Debian's python3-zmq)
 *   - SIGKILL the workers mid-ingest: the document still completes, with the
 *     same final state as an undisturbed local ingest
 *   - 1000 malformed messages: 1000 error replies, then normal service;
 *     every error reply to a request whose id can be read carries that id
 *   - SIGTERM to the workers, and to coild, mid-ingest: drained, handed back,
 *     the same final state
 *   - coild binds tcp://127.0.0.1:* itself and reports the ports in its
 *     --ready-file (no port picked here and bound later: no race)
 *
 * Every reply and event received is checked for the server's paths (the
 * temp dir: database, model, spool), and recorded in
 * $COIL_BUILDDIR/tests/test_service.replies.jsonl with the test it came
 * from (test_service.$COIL_TEST_FAMILY.replies.jsonl when that is set, as
 * tests/families.sh does); tests/test_service_schemas validates them against
 * the schemas.
 */
#include <check.h>
#include <dirent.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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

#include "config.h"
#include "ask.h"
#include "testutil.h"

extern char **environ;
static char *dir;
static char model[4096], db[4096], doc[4096], cfg[4096], ep_clients[1100], ep_events[1100], ep_workers[1100];
static char ready[4096];    /* coild --ready-file */
static char extra_yaml[1024]; /* more config (limits), set by a fixture */
static const char *cur_case = "?"; /* the running test, recorded with each reply */
#define CASE(name) cur_case = (name)
static pid_t coild_pid;
static int n_workers = 2; /* the workers setting, set by a fixture */
static void *ctx;
static char replies[4200]; /* every reply received, for tests/test_service_schemas */

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

/* Requests sent, so a reply's op is known when it is recorded. */
static struct {
    json_t *id;
    char op[32];
} sent_ops[512];
static int n_sent;

static void track(const char *req, size_t len)
{
    json_t *j = json_loadb(req, len, 0, NULL);
    const char *op = json_string_value(json_object_get(j, "op"));
    json_t *id = json_object_get(j, "id");
    if (op && id && (json_is_string(id) || json_is_integer(id))) {
        int k = n_sent++ % 512;
        json_decref(sent_ops[k].id);
        sent_ops[k].id = json_incref(id);
        snprintf(sent_ops[k].op, sizeof sent_ops[k].op, "%s", op);
    }
    json_decref(j);
}

static const char *op_of(const json_t *id)
{
    for (int i = n_sent - 1; id && i >= 0 && i >= n_sent - 512; i--)
        if (json_equal(sent_ops[i % 512].id, (json_t *)id))
            return sent_ops[i % 512].op;
    return NULL;
}

static void send_raw(void *s, const char *msg, size_t len, int flags)
{
    track(msg, len);
    ck_assert_int_ge(zmq_send(s, msg, len, flags), 0);
}

/* Nothing a client receives names where the server keeps its files. */
static void assert_no_paths(const void *data, size_t len, const char *what)
{
    ck_assert_msg(!memmem(data, len, dir, strlen(dir)), "%s names a server path (%s): %.*s", what, dir,
                  (int)(len < 600 ? len : 600), (const char *)data);
}

/* Appends {"case", "op", "reply"} to the replies file. */
static void record(const json_t *reply)
{
    FILE *f = fopen(replies, "a");
    ck_assert_ptr_nonnull(f);
    const char *op = op_of(json_object_get(reply, "id"));
    json_t *rec = json_pack("{s:s, s:s?, s:O}", "case", cur_case, "op", op, "reply", reply);
    ck_assert_ptr_nonnull(rec);
    ck_assert_int_eq(json_dumpf(rec, f, JSON_COMPACT), 0);
    fputc('\n', f);
    fclose(f);
    json_decref(rec);
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

static const char *coild_tail(void);

/* Starts coild (extra: more arguments, NULL-terminated list or NULL) and
 * waits for its ready file: every socket bound (the ports it chose) and
 * every worker ready. */
static pid_t spawn_coild_with(char *const *extra)
{
    pid_t pid;
    char *argv[16] = {(char *)build("coild"), "--config", cfg, "--ready-file", ready, "--quiet"};
    int n = 6;
    for (int i = 0; extra && extra[i] && n < 15; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    setenv("COIL_WORKER_BIN", build("workers/coil-worker"), 1);
    snprintf(coild_log, sizeof coild_log, "%s/coild.log", dir);
    snprintf(ready, sizeof ready, "%s/ready.json", dir);
    unlink(ready);
    /* coild gets SIGTERM when this test's process ends, however it ends (a
     * failed check exits without the teardown): it drains and cleans up */
    pid_t parent = getpid();
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(coild_log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || dup2(fd, 2) < 0 || prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
            _exit(127);
        execve(argv[0], argv, environ);
        _exit(127);
    }
    for (double t0 = mono(); mono() - t0 < 60; usleep(20000)) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            ck_abort_msg("coild exited (status %d) before it was ready; its stderr:\n%s", status, coild_tail());
        json_t *r = json_load_file(ready, 0, NULL);
        if (!r)
            continue;
        snprintf(ep_clients, sizeof ep_clients, "%s", json_string_value(json_object_get(r, "clients")));
        snprintf(ep_events, sizeof ep_events, "%s", json_string_value(json_object_get(r, "events")));
        snprintf(ep_workers, sizeof ep_workers, "%s", json_string_value(json_object_get(r, "workers")));
        ck_assert_int_eq(json_integer_value(json_object_get(r, "pid")), pid);
        json_decref(r);
        ck_assert_msg(strncmp(ep_clients, "tcp://127.0.0.1:", 16) == 0 && atoi(ep_clients + 16) > 0, "%s", ep_clients);
        return pid;
    }
    ck_abort_msg("coild wrote no ready file in 60 s; its stderr:\n%s", coild_tail());
    return -1;
}

static pid_t spawn_coild(void)
{
    return spawn_coild_with(NULL);
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

/* SIGTERM and wait (30 s, then SIGKILL); coild's wait status, -1 if none ran. */
static int stop_coild(void)
{
    if (coild_pid <= 0)
        return -1;
    kill(coild_pid, SIGTERM);
    int status;
    for (int i = 0; i < 300; i++) { /* 30 s */
        if (waitpid(coild_pid, &status, WNOHANG) == coild_pid) {
            coild_pid = 0;
            return status;
        }
        usleep(100000);
    }
    kill(coild_pid, SIGKILL);
    waitpid(coild_pid, &status, 0);
    coild_pid = 0;
    return status;
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
    tu_model_shape_t sh = {.d_model = 32, .n_layer = 2, .vocab = 1232, .d_state = 8, .d_conv = 4, .expand = 2,
                           .tied = 1, .dtype = "F32"};
    ck_assert_int_eq(tu_write_model_dir(model, &sh, 11), 0);
    write_doc(doc, 150);
    /* the ports: coild binds port "*" itself and says which in its ready file;
     * the worker socket: the default, a private directory coild makes */
    FILE *f = fopen(cfg, "w");
    fprintf(f,
            "endpoints:\n  clients: tcp://127.0.0.1:*\n  events: tcp://127.0.0.1:*\n"
            "database: %s\nmodel: %s\nworkers: %d\nchunk_tokens: 64\nthreads_per_worker: 1\n"
            "checkpoint:\n  interval_tokens: %d\nlimits:\n  max_message_bytes: %d\n%s",
            db, model, n_workers, interval, max_message_bytes, extra_yaml);
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
    for (int i = 0; i < 512; i++) {
        json_decref(sent_ops[i].id);
        sent_ops[i].id = NULL;
    }
    n_sent = 0;
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
    assert_no_paths(zmq_msg_data(&m), zmq_msg_size(&m), "a reply");
    json_t *j = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
    ck_assert_msg(j != NULL, "a reply is not JSON: %.*s", (int)zmq_msg_size(&m), (const char *)zmq_msg_data(&m));
    record(j);
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


/* Sends a request and returns its final reply's result (asserting ok);
 * partial replies are counted into *partials. */
static json_t *call(void *s, const char *req, int *partials, void **blob, size_t *blob_len)
{
    json_t *rq = json_loads(req, 0, NULL), *want = json_object_get(rq, "id");
    send_raw(s, req, strlen(req), 0);
    for (double t0 = mono(); mono() - t0 < 120;) {
        json_t *r = recv_json(s, 1000, blob, blob_len);
        int status;
        if (!r && coild_pid > 0 && waitpid(coild_pid, &status, WNOHANG) == coild_pid) {
            coild_pid = 0;
            ck_abort_msg("coild exited (status %d) while waiting for a reply to %.300s; its stderr:\n%s", status, req,
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
        ck_assert_msg(json_is_true(json_object_get(r, "ok")), "request %.300s failed: %s", req,
                      json_string_value(json_object_get(json_object_get(r, "error"), "message")));
        json_t *res = json_incref(json_object_get(r, "result"));
        json_decref(r);
        json_decref(rq);
        return res;
    }
    ck_abort_msg("no reply to %.300s", req);
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
        track(req, strlen(req));
        zmq_send(s, req, strlen(req), ZMQ_DONTWAIT);
        json_t *r = recv_json(s, 1000, NULL, NULL);
        int w = (int)json_integer_value(json_object_get(json_object_get(r, "result"), "workers"));
        json_decref(r);
        if (w == n_workers) {
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
        assert_no_paths(zmq_msg_data(&m), zmq_msg_size(&m), "an event");
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

static char *run_local_err(char *const argv[], int *status, char **err_out);

/* Runs a local program, capturing stdout into a malloc'd string. */
static char *run_local(char *const argv[], int *status)
{
    return run_local_err(argv, status, NULL);
}

/* The same; stderr into *err_out (malloc'd) unless err_out is NULL. */
static char *run_local_err(char *const argv[], int *status, char **err_out)
{
    char out[4300], errf[4300];
    snprintf(out, sizeof out, "%s/out.txt", dir);
    snprintf(errf, sizeof errf, "%s/err.txt", dir);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (err_out)
        posix_spawn_file_actions_addopen(&fa, 2, errf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    ck_assert_int_eq(posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    ck_assert_int_eq(waitpid(pid, status, 0), pid);
    size_t n = 0;
    char *s = tu_read(out, &n);
    char *z = realloc(s, n + 1);
    z[n] = '\0';
    if (err_out) {
        size_t en = 0;
        char *e = tu_read(errf, &en);
        *err_out = realloc(e, en + 1);
        (*err_out)[en] = '\0';
    }
    return z;
}

static const char *call_err(void *s, const char *req, char *msg, size_t msg_len);
static int children(pid_t parent, pid_t *out, int max);
static json_t *final_reply(void *c, double timeout_s);

START_TEST(test_end_to_end_equals_local)
{
    CASE("e2e");
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
    /* a bad query: the error says what is wrong with it, not where the database is */
    char *bad[] = {(char *)build("coil"), "--connect", ep_clients, "search", "AND (", NULL};
    char *berr = NULL;
    free(run_local_err(bad, &st, &berr));
    ck_assert_int_eq(WEXITSTATUS(st), 1);
    ck_assert_msg(strstr(berr, "bad search query") != NULL, "%s", berr);
    ck_assert_msg(strstr(berr, dir) == NULL, "the error names a server path: %s", berr);
    free(berr);
    char msg[1024];
    ck_assert_str_eq(call_err(c, "{\"v\":1,\"id\":\"bq\",\"op\":\"search\",\"query\":\"AND (\"}", msg, sizeof msg),
                     "COIL_EINVAL");
    ck_assert_msg(strstr(msg, "bad search query \"AND (\"") != NULL && !strstr(msg, dir), "%s", msg);
    snprintf(buf, sizeof buf, "{\"v\":1,\"id\":\"nd\",\"op\":\"session.new\",\"doc\":\"nope\"}");
    ck_assert_str_eq(call_err(c, buf, msg, sizeof msg), "COIL_ENOTFOUND");
    ck_assert_msg(strstr(msg, "no document named 'nope'") != NULL, "%s", msg);
    /* search over --connect prints what the local search prints, byte for byte */
    static const char *queries[] = {"quartermaster", "lighthouses", "xyzzyplugh"};
    for (int q = 0; q < 3; q++) {
        char *lsa[] = {(char *)build("coil"), "search", "--db", db, (char *)queries[q], NULL};
        char *rsa[] = {(char *)build("coil"), "--connect", ep_clients, "search", (char *)queries[q], NULL};
        int st2;
        char *lo = run_local(lsa, &st), *ro = run_local(rsa, &st2);
        ck_assert_int_eq(st, 0);
        ck_assert_int_eq(st2, 0);
        ck_assert_msg(strcmp(lo, ro) == 0, "search '%s': local\n%s\nremote\n%s", queries[q], lo, ro);
        if (q == 2)
            ck_assert_str_eq(ro, "no matches\n");
        free(lo);
        free(ro);
    }
    /* ask over --connect prints what the local ask prints, byte for byte */
    static const char *strategies[] = {"reread", "select", "state"};
    for (int k = 0; k < 3; k++) {
        char *la[] = {(char *)build("coil"), "ask", "--db", db, "--model", model, "--doc", "book",
                      "Where is the zebra quartermaster?", "-n", "6", "--strategy", (char *)strategies[k], NULL};
        char *ra[] = {(char *)build("coil"), "--connect", ep_clients, "ask", "--doc", "book",
                      "Where is the zebra quartermaster?", "-n", "6", "--strategy", (char *)strategies[k], NULL};
        int st2;
        char *lo = run_local(la, &st), *ro = run_local(ra, &st2);
        ck_assert_int_eq(st, 0);
        ck_assert_int_eq(st2, 0);
        ck_assert_msg(strcmp(lo, ro) == 0, "ask %s: local\n%s\nremote\n%s", strategies[k], lo, ro);
        ck_assert_ptr_nonnull(strstr(ro, strategies[k]));
        free(lo);
        free(ro);
    }
    /* the reply itself, for the result schema (evidence, search, answer ids) */
    json_t *ask = call(c, "{\"v\":1,\"id\":\"ask\",\"op\":\"ask\",\"doc\":\"book\",\"question\":\"the zebra "
                          "quartermaster?\",\"n\":3,\"strategy\":\"select\",\"candidates\":2}",
                       NULL, NULL, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(ask, "strategy")), "select");
    ck_assert_int_eq(json_array_size(json_object_get(ask, "ids")), 3);
    ck_assert_int_ge(json_array_size(json_object_get(ask, "evidence")), 1);
    json_decref(ask);
    json_decref(call(c, "{\"v\":1,\"id\":\"ask2\",\"op\":\"ask\",\"doc\":\"book\",\"question\":\"zebra?\","
                        "\"answer\":\" quartermaster\"}",
                     NULL, NULL, NULL));
    ck_assert_str_eq(call_err(c, "{\"v\":1,\"id\":\"ask3\",\"op\":\"ask\",\"doc\":\"nope\",\"question\":\"q\"}",
                              msg, sizeof msg),
                     "COIL_ENOTFOUND");
    /* --db (or --model) with --connect would be ignored: an error */
    char *dbc[] = {(char *)build("coil"), "--connect", ep_clients, "search", "ghost", "--db", db, NULL};
    char *dberr = NULL;
    free(run_local_err(dbc, &st, &dberr));
    ck_assert_int_eq(WEXITSTATUS(st), 2);
    ck_assert_msg(strstr(dberr, "--db names a local database") != NULL, "%s", dberr);
    free(dberr);
    /* an ingest longer than --timeout goes on: its progress keeps it alive */
    char slow[4200];
    snprintf(slow, sizeof slow, "%s/slow.txt", dir);
    write_doc(slow, 15000); /* ~1.1 MB: a few seconds, several times --timeout */
    char *ting[] = {(char *)build("coil"), "--connect", ep_clients, "ingest", "--name", "slow", "--file", slow,
                    "--timeout", "1", NULL};
    double t0 = mono();
    char *terr = NULL;
    char *tout = run_local_err(ting, &st, &terr);
    double took = mono() - t0;
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a remote ingest with --timeout 1 failed: %s", terr);
    ck_assert_msg(took > 2.0, "the ingest took %.2f s: too short to show --timeout 1 is extended", took);
    fprintf(stderr, "remote ingest with --timeout 1: %.2f s\n", took);
    free(tout);
    free(terr);
    /* a write waiting behind another is told its place in the queue every second */
    size_t sl2;
    char *stext = tu_read(slow, &sl2);
    while (sl2 > 900000 || (sl2 > 0 && stext[sl2 - 1] != '\n')) /* under limits.max_message_bytes */
        sl2--;
    json_t *sm = json_pack("{s:i, s:s, s:s, s:s, s:s%}", "v", 1, "id", "slow2", "op", "ingest", "name", "slow2",
                           "text", stext, sl2);
    char *sreq = json_dumps(sm, JSON_COMPACT);
    send_raw(c, sreq, strlen(sreq), 0);
    snprintf(buf, sizeof buf,
             "{\"v\":1,\"id\":\"behind\",\"op\":\"session.append\",\"session\":\"%s\",\"text\":\" Then.\"}", sid);
    send_raw(c, buf, strlen(buf), 0);
    int queued = 0, finals = 0;
    for (double q0 = mono(); finals < 2 && mono() - q0 < 60;) {
        json_t *qr = recv_json(c, 1000, NULL, NULL);
        if (!qr)
            continue;
        const char *rid = json_string_value(json_object_get(qr, "id"));
        if (json_is_true(json_object_get(qr, "partial"))) {
            json_t *qn = json_object_get(json_object_get(qr, "result"), "queued");
            if (rid && !strcmp(rid, "behind")) {
                ck_assert_int_eq(json_integer_value(qn), 1);
                queued++;
            }
        } else {
            ck_assert_msg(json_is_true(json_object_get(qr, "ok")), "%s", json_dumps(qr, 0));
            if (rid && !strcmp(rid, "behind"))
                ck_assert_msg(finals == 1, "the append overtook the ingest it waited for");
            finals++;
        }
        json_decref(qr);
    }
    ck_assert_int_eq(finals, 2);
    ck_assert_msg(queued >= 1, "the queued append got no queued partial");
    free(sreq);
    free(stext);
    json_decref(sm);
    /* state.import over the wire, from the test's own socket */
    const char *imp = "{\"v\":1,\"id\":\"imp\",\"op\":\"state.import\",\"name\":\"imported2\"}";
    track(imp, strlen(imp));
    ck_assert_int_ge(zmq_send(c, imp, strlen(imp), ZMQ_SNDMORE), 0);
    ck_assert_int_ge(zmq_send(c, blob, blob_len, 0), 0);
    json_t *ir = final_reply(c, 60);
    ck_assert_msg(ir && json_is_true(json_object_get(ir, "ok")), "%s", ir ? json_dumps(ir, 0) : "no reply");
    json_decref(ir);
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
    /* an ask of a session with a key appends once; the repeat says so and changes nothing */
    char *aargv[] = {(char *)build("coil"), "--connect", ep_clients, "ask", "--session", sid, "the quartermaster?",
                     "-n", "3", "--strategy", "reread", "--key", "ask-1", NULL};
    char *a1 = run_local(aargv, &st);
    ck_assert_int_eq(st, 0);
    ck_assert_msg(strstr(a1, ": appended ") != NULL, "%s", a1);
    snprintf(buf, sizeof buf, "{\"v\":1,\"id\":\"sg\",\"op\":\"generate\",\"session\":\"%s\",\"n\":1,\"temperature\":0}",
             sid);
    json_t *g1 = call(c, buf, NULL, NULL, NULL);
    char *a2 = run_local(aargv, &st);
    ck_assert_int_eq(st, 0);
    ck_assert_msg(strstr(a2, "(already asked with this request key") != NULL, "%s", a2);
    json_t *g2 = call(c, buf, NULL, NULL, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(g1, "position")), json_integer_value(json_object_get(g2, "position")));
    json_decref(g1);
    json_decref(g2);
    free(a1);
    free(a2);
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
    zmq_close(c);
    zmq_close(sub);
}
END_TEST

START_TEST(test_python_client)
{
    CASE("python_client");
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
    ck_assert_ptr_nonnull(strstr(out, "score of the continuation"));
    ck_assert_ptr_nonnull(strstr(out, "health: ok, 2 of 2 workers ready"));
    free(out);
}
END_TEST

START_TEST(test_c_client)
{
    CASE("c_client");
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
    ck_assert_ptr_nonnull(strstr(out, "continuation: "));
    ck_assert_msg(strstr(out, "health: ok, 2 of 2 workers ready") != NULL, "%s", out);
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
    CASE("worker_kill");
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
        send_raw(c, req, strlen(req), 0);
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
    json_t *rep = final_reply(c, 120); /* after the ingest's progress partials */
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
    CASE("malformed");
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
            send_raw(c, bad[kind], strlen(bad[kind]), 0);
        } else if (kind == nb) { /* invalid UTF-8 inside a string */
            const char s[] = "{\"v\":1,\"id\":10,\"op\":\"search\",\"query\":\"\xff\xfe\"}";
            send_raw(c, s, sizeof s - 1, 0);
        } else if (kind == nb + 1) { /* three frames */
            zmq_send(c, "{}", 2, ZMQ_SNDMORE);
            zmq_send(c, "x", 1, ZMQ_SNDMORE);
            zmq_send(c, "y", 1, 0);
        } else if (kind == nb + 2) { /* a binary frame where none belongs */
            const char *h = "{\"v\":1,\"id\":11,\"op\":\"health\"}";
            send_raw(c, h, strlen(h), ZMQ_SNDMORE);
            zmq_send(c, "blob", 4, 0);
        } else { /* larger than limits.max_message_bytes */
            send_raw(c, big, strlen(big), 0);
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
    send_raw(s, msg, strlen(msg), 0);
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
    CASE("curve");
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
    CASE("max_clients");
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
    /* The limit counts connections from coild's socket monitor, whose events
     * travel apart from the requests: a new client's first requests may be
     * admitted before coild has seen its connection (under load: 1 run in ~10
     * of make -j2 check), and the first client's may be refused until its
     * partner's disconnect is seen.  Neither wait is timed: each client asks
     * again until the answer the limit implies comes (the bound is a hang
     * guard only); every refusal must be COIL_EBUSY. */
    json_t *r = NULL;
    int admitted = 0;
    for (double t0 = mono();; usleep(20000)) {
        send_str(b, "{\"v\":1,\"id\":9,\"op\":\"health\"}");
        r = recv_json(b, 30000, NULL, NULL);
        ck_assert_msg(r != NULL, "no reply to the second client");
        if (json_is_false(json_object_get(r, "ok")))
            break;
        json_decref(r);
        r = NULL;
        admitted++;
        ck_assert_msg(mono() - t0 < 60, "the second client was served %d times over max_clients 1", admitted);
    }
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "error"), "code")), "COIL_EBUSY");
    json_decref(r);
    zmq_close(b);
    /* once coild has seen the second client leave, the first is served again */
    for (double t0 = mono();; usleep(20000)) {
        send_str(a, "{\"v\":1,\"id\":\"again\",\"op\":\"health\"}");
        r = recv_json(a, 30000, NULL, NULL);
        ck_assert_msg(r != NULL, "no reply to the first client");
        if (json_is_true(json_object_get(r, "ok")))
            break;
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "error"), "code")), "COIL_EBUSY");
        json_decref(r);
        ck_assert_msg(mono() - t0 < 60, "the first client was still refused 60 s after the second left");
    }
    json_decref(r);
    zmq_close(a);
}
END_TEST

/* Sends a request that must fail; returns its error code's name (static
 * buffer) and the message in msg. */
static const char *call_err(void *s, const char *req, char *msg, size_t msg_len)
{
    send_raw(s, req, strlen(req), 0);
    for (double t0 = mono(); mono() - t0 < 120;) {
        json_t *r = recv_json(s, 1000, NULL, NULL);
        if (!r || json_is_true(json_object_get(r, "partial"))) {
            json_decref(r);
            continue;
        }
        ck_assert_msg(json_is_false(json_object_get(r, "ok")), "request %.300s succeeded", req);
        json_t *e = json_object_get(r, "error");
        snprintf(msg, msg_len, "%s", json_string_value(json_object_get(e, "message")));
        static char code[64];
        snprintf(code, sizeof code, "%s", json_string_value(json_object_get(e, "code")));
        json_decref(r);
        return code;
    }
    ck_abort_msg("no reply to %.300s", req);
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

/* ---- select spread over the workers ------------------------------------------------ */

static char fault_dir[4200];    /* the fault hooks' files */
static char fault_marker[4300]; /* COIL_WORKER_FAULT=subjob-once:PATH */
static int fault_order;         /* COIL_WORKER_FAULT=subjob-order:DIR */

static void setup_fanout1(void)
{
    n_workers = 1;
    setup();
}

static void setup_fanout3(void)
{
    n_workers = 3;
    setup();
}

/* COIL_WORKER_FAULT=KIND:PATH for the workers coild is about to start, PATH
 * in a new directory of its own (fault_dir): the directory itself, or with
 * marker, the file "died" in it (fault_marker). */
static void set_subjob_fault(const char *kind, int marker)
{
    char *d = tu_mkdtemp();
    ck_assert_ptr_nonnull(d);
    snprintf(fault_dir, sizeof fault_dir, "%s", d);
    if (marker)
        snprintf(fault_marker, sizeof fault_marker, "%s/died", d);
    free(d);
    char env[4400];
    snprintf(env, sizeof env, "%s:%s", kind, marker ? fault_marker : fault_dir);
    setenv("COIL_WORKER_FAULT", env, 1);
}

static void setup_fanout_kill(void)
{
    /* the first worker to start a sub-job dies in it, after its work and
     * before its reply: the marker (in a directory of its own, made before
     * coild starts the workers) says who was first */
    set_subjob_fault("subjob-once", 1);
    n_workers = 3;
    setup();
}

static void setup_fanout_order(void)
{
    /* sub-job 0 of each ask waits until another of its sub-jobs is done:
     * results arrive out of the plan's order, whatever the machine's speed */
    set_subjob_fault("subjob-order", 0);
    fault_order = 1;
    n_workers = 3;
    setup();
}

static void teardown_fanout(void)
{
    teardown();
    unsetenv("COIL_WORKER_FAULT");
    if (fault_dir[0])
        tu_rm_rf(fault_dir);
    fault_dir[0] = fault_marker[0] = '\0';
    fault_order = 0;
    n_workers = 2;
}

typedef struct {
    char buf[4096];
    size_t len;
} text_acc_t;

static int acc_token(int32_t id, const char *text, size_t len, void *ud)
{
    text_acc_t *a = ud;
    (void)id;
    if (text && a->len + len < sizeof a->buf) {
        memcpy(a->buf + a->len, text, len);
        a->len += len;
    }
    return 0;
}

/* The result as JSON with sorted keys, without "seconds" (malloc'd). */
static char *canonical(json_t *res)
{
    json_t *c = json_deep_copy(res);
    json_object_del(c, "seconds");
    char *out = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(c);
    return out;
}

/* A worker's "subjobs" in a stats result (0 if it is not listed). */
static int64_t worker_subjobs(const json_t *st, const char *name)
{
    size_t i;
    json_t *pw;
    json_array_foreach(json_object_get(st, "per_worker"), i, pw)
    {
        if (name && !strcmp(json_string_value(json_object_get(pw, "name")), name))
            return (int64_t)json_integer_value(json_object_get(pw, "subjobs"));
    }
    return 0;
}

static json_t *stats(void *c)
{
    return call(c, "{\"v\":1,\"id\":\"st\",\"op\":\"stats\"}", NULL, NULL, NULL);
}

/* A select ask through coild -- its candidates spread over the workers as
 * sub-jobs -- gives the local coil_ask's result byte for byte (evidence,
 * entropies to the last bit, chosen, answer), whatever the number of workers
 * and the order the sub-jobs finish in; each answer token streams once; with
 * several workers free, the candidates run on more than one (the workers'
 * own counters, in stats); with a worker killed in a sub-job, the answer is
 * the same and no sub-job counts twice. */
START_TEST(test_select_spread_equals_local)
{
    CASE("select_spread");
    void *c = client();
    wait_ready(c);
    char *ing[] = {(char *)build("coil"), "--connect", ep_clients, "ingest", "--name", "book", "--file", doc, "--quiet",
                   NULL};
    int st;
    free(run_local(ing, &st));
    ck_assert_int_eq(st, 0);

    /* the local side: the library, as `coil ask --db` runs it */
    coil_err_t err = {0};
    char tp[4200];
    snprintf(tp, sizeof tp, "%s/tokenizer.json", model);
    coil_model_t *m = coil_model_load(model, &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    coil_engine_t *e = coil_engine_new(m, NULL, &err);
    coil_tokenizer_t *tok = coil_tokenizer_load(tp, &err);
    coil_state_t *state = coil_state_new(m, &err);
    coil_store_t *store = coil_store_open(db, NULL, &err);
    ck_assert_msg(e && tok && state && store, "%s", err.msg);

    static const struct {
        const char *q;
        int m, n;
    } asks[] = {{"How many lighthouses does the harbour keeper count?", 6, 5},
                {"Paragraph 7: what does the keeper write down?", 5, 4},
                {"Where is the zebra quartermaster?", 4, 3},
                {"What does the keeper count?", 16, 2}};
    int64_t candidates = 0;
    json_t *s0 = stats(c);
    for (size_t k = 0; k < sizeof asks / sizeof asks[0]; k++) {
        text_acc_t acc = {.len = 0};
        coil_ask_options_t ao = {.strategy = COIL_ASK_SELECT, .candidates_m = asks[k].m, .n_new = asks[k].n,
                                 .on_token = acc_token, .on_token_ud = &acc};
        coil_ask_result_t lr;
        int rc = coil_ask(store, e, tok, NULL, "book", asks[k].q, strlen(asks[k].q), &ao, state, &lr, &err);
        ck_assert_msg(rc == 0, "local ask: %s", err.msg);
        ck_assert_int_eq(lr.strategy, COIL_ASK_SELECT);
        ck_assert_uint_ge(lr.n_evidence, 1);
        candidates += (int64_t)lr.n_evidence;
        json_t *lj = coil_ask_result_json(&lr, acc.buf, acc.len, 0);
        char *want = canonical(lj);
        json_decref(lj);
        coil_ask_result_free(&lr);

        char req[1024];
        snprintf(req, sizeof req,
                 "{\"v\":1,\"id\":\"sel%zu\",\"op\":\"ask\",\"doc\":\"book\",\"question\":\"%s\",\"strategy\":\"select\","
                 "\"candidates\":%d,\"n\":%d}",
                 k, asks[k].q, asks[k].m, asks[k].n);
        int partials = 0;
        json_t *rr = call(c, req, &partials, NULL, NULL);
        char *got = canonical(rr);
        ck_assert_msg(strcmp(want, got) == 0, "select %zu over %d workers:\nlocal  %s\nremote %s", k, n_workers, want,
                      got);
        ck_assert_int_eq(partials, (int)json_array_size(json_object_get(rr, "ids"))); /* each token once */
        if (fault_order && json_array_size(json_object_get(rr, "evidence")) > 1) {
            char path[4400];
            snprintf(path, sizeof path, "%s/_sel%zu_.reordered", fault_dir, k);
            ck_assert_msg(access(path, F_OK) == 0, "ask %zu: sub-job 0 did not finish after another", k);
        }
        json_decref(rr);
        free(want);
        free(got);
    }
    json_t *s1 = stats(c);
    int64_t fan = json_integer_value(json_object_get(s1, "fanouts")) - json_integer_value(json_object_get(s0, "fanouts"));
    int64_t subs =
        json_integer_value(json_object_get(s1, "subjobs")) - json_integer_value(json_object_get(s0, "subjobs"));
    ck_assert_int_eq(fan, (int64_t)(sizeof asks / sizeof asks[0])); /* every select ask was spread */
    ck_assert_int_eq(subs, candidates);                              /* one replied sub-job per candidate, no more */
    int busy_workers = 0;
    int64_t sum = 0;
    size_t i;
    json_t *pw;
    json_array_foreach(json_object_get(s1, "per_worker"), i, pw)
    {
        const char *name = json_string_value(json_object_get(pw, "name"));
        int64_t d = json_integer_value(json_object_get(pw, "subjobs")) - worker_subjobs(s0, name);
        busy_workers += d > 0;
        sum += d;
    }
    ck_assert_int_eq(sum, candidates);
    if (n_workers > 1) /* every worker free when each ask fans out: its candidates go to more than one */
        ck_assert_msg(busy_workers >= 2, "candidates ran on %d of %d workers", busy_workers, n_workers);
    int64_t deaths = json_integer_value(json_object_get(s1, "worker_deaths"));
    if (fault_marker[0]) {
        ck_assert_msg(access(fault_marker, F_OK) == 0, "no worker died in a sub-job");
        ck_assert_int_eq(deaths, 1);
    } else {
        ck_assert_int_eq(deaths, 0);
    }
    json_decref(s0);
    json_decref(s1);
    coil_store_close(&store);
    coil_state_destroy(&state);
    coil_tokenizer_destroy(&tok);
    coil_engine_destroy(&e);
    coil_model_destroy(&m);
    zmq_close(c);
}
END_TEST

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
    CASE("exactly_once");
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
}
END_TEST


/* ---- SIGTERM mid-ingest: to the workers, and to coild ------------------------------------ */

/* The undisturbed reference: a local ingest of big (n paragraphs) into refdb,
 * its final state exported to refstate. */
static void reference_ingest(const char *big, int paragraphs, const char *refdb, const char *refstate)
{
    int st;
    write_doc(big, paragraphs);
    char *iargv[] = {(char *)build("coil"), "ingest", "--db", (char *)refdb, "--model", model, "--name", "big",
                     "--file", (char *)big, "--chunk", "64", "--interval", "4096", "--threads", "1", "--quiet", NULL};
    free(run_local(iargv, &st));
    ck_assert_int_eq(st, 0);
    char *rargv[] = {(char *)build("coil"), "state", "export", "--db", (char *)refdb, "--model", model, "--doc", "big",
                     "--out", (char *)refstate, "--threads", "1", "--chunk", "64", NULL};
    free(run_local(rargv, &st));
    ck_assert_int_eq(st, 0);
}

/* Sends big as an ingest in 256 KiB parts, ids first_id.., waiting for each
 * part's receipt but not for the last part's reply. */
static void send_ingest(void *c, const char *big, int first_id)
{
    size_t tl;
    char *text = tu_read(big, &tl);
    size_t at = 0;
    for (int p = 0; at < tl; p++) {
        size_t end = at + 262144 < tl ? at + 262144 : tl;
        while (end < tl && ((unsigned char)text[end] & 0xC0) == 0x80)
            end++;
        json_t *m = json_pack("{s:i, s:i, s:s, s:s, s:i, s:b, s:s%}", "v", 1, "id", first_id + p, "op", "ingest",
                              "name", "big", "part", p, "last", end == tl, "text", text + at, end - at);
        char *req = json_dumps(m, JSON_COMPACT);
        send_raw(c, req, strlen(req), 0);
        if (end < tl) {
            json_t *r = recv_json(c, 30000, NULL, NULL);
            ck_assert_msg(r && json_is_true(json_object_get(r, "ok")), "part %d refused", p);
            json_decref(r);
        }
        free(req);
        json_decref(m);
        at = end;
    }
    free(text);
}

/* The final (non-partial) reply on c within timeout_s; NULL if none. */
static json_t *final_reply(void *c, double timeout_s)
{
    for (double t0 = mono(); mono() - t0 < timeout_s;) {
        json_t *r = recv_json(c, 1000, NULL, NULL);
        if (r && !json_is_true(json_object_get(r, "partial")))
            return r;
        json_decref(r);
    }
    return NULL;
}

/* The document's final state in the service's database equals the reference. */
static void assert_same_state(const char *refstate)
{
    char state[4200];
    int st;
    snprintf(state, sizeof state, "%s/svc.state", dir);
    char *xargv[] = {(char *)build("coil"), "state", "export", "--db", db, "--model", model, "--doc", "big", "--out",
                     state, "--threads", "1", "--chunk", "64", NULL};
    free(run_local(xargv, &st));
    ck_assert_int_eq(st, 0);
    size_t a, b;
    void *x = tu_read(refstate, &a), *y = tu_read(state, &b);
    ck_assert_msg(x && y && a == b && memcmp(x, y, a) == 0, "the final state differs from the undisturbed run");
    free(x);
    free(y);
}

/* The tokens of the latest ingest.progress event of "big" seen within
 * timeout_s (waiting for at least one above min). */
static int64_t progress_above(void *sub, int64_t min, double timeout_s)
{
    int64_t tokens = -1;
    for (double t0 = mono(); tokens <= min && mono() - t0 < timeout_s;) {
        json_t *ev = wait_event(sub, "ingest.progress", "big", timeout_s);
        tokens = (int64_t)json_integer_value(json_object_get(ev, "tokens"));
        json_decref(ev);
    }
    ck_assert_int_gt(tokens, min);
    return tokens;
}

START_TEST(test_worker_sigterm_drains)
{
    CASE("sigterm_worker");
    char big[4200], refdb[4200], refstate[4200];
    snprintf(big, sizeof big, "%s/big.txt", dir);
    snprintf(refdb, sizeof refdb, "%s/ref.db", dir);
    snprintf(refstate, sizeof refstate, "%s/ref.state", dir);
    reference_ingest(big, 12000, refdb, refstate);
    void *c = client(), *sub = events();
    wait_ready(c);
    sync_events(sub);
    send_ingest(c, big, 100);
    /* well past the first checkpoint interval (4096), so a drain checkpoint
     * is told apart from the interval ones */
    int64_t at_signal = progress_above(sub, 5000, 60);
    pid_t kids[16];
    int nk = children(coild_pid, kids, 16);
    ck_assert_int_eq(nk, 2);
    for (int i = 0; i < nk; i++)
        kill(kids[i], SIGTERM);
    /* both workers drain and exit 0 (the busy one after handing its job back) */
    for (int k = 0; k < 2; k++) {
        json_t *ev = wait_event(sub, "worker.down", NULL, 30);
        ck_assert_str_eq(json_string_value(json_object_get(ev, "reason")), "exited with status 0");
        json_decref(ev);
    }
    json_t *rep = final_reply(c, 120);
    ck_assert_msg(rep && json_is_true(json_object_get(rep, "ok")), "%s", rep ? json_dumps(rep, 0) : "no reply");
    ck_assert_int_eq(json_integer_value(json_object_get(rep, "id")), 100 + 3); /* the last part's id */
    /* resumed where the drain stopped: the checkpoint of the chunk after the
     * signal, not the last interval checkpoint before it */
    int64_t resumed = (int64_t)json_integer_value(json_object_get(json_object_get(rep, "result"), "resumed_at"));
    ck_assert_msg(resumed >= at_signal, "resumed at %lld, before the progress seen at the signal (%lld)",
                  (long long)resumed, (long long)at_signal);
    json_decref(rep);
    json_t *stats = call(c, "{\"v\":1,\"id\":\"st\",\"op\":\"stats\"}", NULL, NULL, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(stats, "worker_deaths")), 2);
    /* the busy worker handed its job back itself (not re-queued as a death's;
     * the other, also draining, may take it and hand it back too) */
    ck_assert_int_ge(json_integer_value(json_object_get(stats, "jobs_handed_back")), 1);
    json_decref(stats);
    assert_same_state(refstate);
    zmq_close(c);
    zmq_close(sub);
}
END_TEST

START_TEST(test_coild_sigterm_drains)
{
    CASE("sigterm_coild");
    char big[4200], refdb[4200], refstate[4200];
    snprintf(big, sizeof big, "%s/big.txt", dir);
    snprintf(refdb, sizeof refdb, "%s/ref.db", dir);
    snprintf(refstate, sizeof refstate, "%s/ref.state", dir);
    reference_ingest(big, 12000, refdb, refstate);
    void *c = client(), *sub = events();
    wait_ready(c);
    sync_events(sub);
    send_ingest(c, big, 200);
    int64_t at_signal = progress_above(sub, 5000, 60);
    kill(coild_pid, SIGTERM);
    /* the waiting client is told, with its request's id, to send it again */
    json_t *rep = final_reply(c, 60);
    ck_assert_ptr_nonnull(rep);
    ck_assert(json_is_false(json_object_get(rep, "ok")));
    ck_assert_int_eq(json_integer_value(json_object_get(rep, "id")), 203);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(rep, "error"), "code")), "COIL_EINTR");
    json_decref(rep);
    int status = stop_coild(); /* already stopping: reaps it */
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "coild exited with status %d", status);
    ck_assert_msg(access(ready, F_OK) != 0, "the ready file is left behind");
    zmq_close(c);
    zmq_close(sub);
    /* back up: the same request again resumes from the drain's checkpoint */
    coild_pid = spawn_coild();
    c = client();
    wait_ready(c);
    send_ingest(c, big, 300);
    rep = final_reply(c, 120);
    ck_assert_msg(rep && json_is_true(json_object_get(rep, "ok")), "%s", rep ? json_dumps(rep, 0) : "no reply");
    int64_t resumed = (int64_t)json_integer_value(json_object_get(json_object_get(rep, "result"), "resumed_at"));
    ck_assert_msg(resumed >= at_signal, "resumed at %lld, before the progress seen at the signal (%lld)",
                  (long long)resumed, (long long)at_signal);
    json_decref(rep);
    assert_same_state(refstate);
    zmq_close(c);
}
END_TEST

/* ---- a clean exit leaves no socket file; the worker socket is private ----------------------- */

START_TEST(test_clean_exit_removes_sockets)
{
    CASE("sockets");
    void *c = client();
    /* the ready file means ready: the first health answered already counts every worker */
    json_t *h = NULL;
    for (int k = 0; !h && k < 20; k++) {
        send_str(c, "{\"v\":1,\"id\":\"first\",\"op\":\"health\"}");
        h = recv_json(c, 500, NULL, NULL);
    }
    ck_assert_ptr_nonnull(h);
    json_t *hr = json_object_get(h, "result");
    ck_assert_int_eq(json_integer_value(json_object_get(hr, "workers_configured")), 2);
    ck_assert_msg(json_integer_value(json_object_get(hr, "workers")) == 2, "ready, with %lld of 2 workers",
                  (long long)json_integer_value(json_object_get(hr, "workers")));
    json_decref(h);
    wait_ready(c);
    zmq_close(c);
    /* the default worker endpoint: a socket in a private directory of this instance */
    ck_assert_msg(strncmp(ep_workers, "ipc://", 6) == 0, "%s", ep_workers);
    const char *sock = ep_workers + 6;
    char sdir[1100];
    snprintf(sdir, sizeof sdir, "%s", sock);
    *strrchr(sdir, '/') = '\0';
    struct stat sb;
    ck_assert_int_eq(stat(sock, &sb), 0);
    ck_assert(S_ISSOCK(sb.st_mode));
    ck_assert_int_eq(stat(sdir, &sb), 0);
    ck_assert_msg((sb.st_mode & 0777) == 0700, "the socket's directory has mode %o", sb.st_mode & 0777);
    int status = stop_coild();
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "coild exited with status %d", status);
    ck_assert_msg(access(sock, F_OK) != 0, "%s is left behind", sock);
    ck_assert_msg(access(sdir, F_OK) != 0, "%s is left behind", sdir);
    ck_assert_msg(access(ready, F_OK) != 0, "the ready file is left behind");

    /* a configured ipc path, and --db over the config's database */
    char wsock[4200], other[4200], yaml[8192];
    snprintf(wsock, sizeof wsock, "%s/w.ipc", dir);
    snprintf(other, sizeof other, "%s/other.db", dir);
    size_t n;
    char *cur = tu_read(cfg, &n);
    snprintf(yaml, sizeof yaml, "%.*s", (int)n, cur);
    free(cur);
    char *ep = strstr(yaml, "endpoints:\n");
    ck_assert_ptr_nonnull(ep);
    char out[8400];
    snprintf(out, sizeof out, "%.*sendpoints:\n  workers: ipc://%s\n%s", (int)(ep - yaml), yaml, wsock, ep + 11);
    ck_assert_int_eq(tu_write(cfg, out, strlen(out)), 0);
    char *extra[] = {"--db", other, NULL};
    coild_pid = spawn_coild_with(extra);
    ck_assert_msg(strcmp(ep_workers + 6, wsock) == 0, "%s", ep_workers);
    c = client();
    wait_ready(c);
    json_decref(call(c, "{\"v\":1,\"id\":\"i\",\"op\":\"ingest\",\"name\":\"o\",\"text\":\"The harbour keeper.\"}",
                     NULL, NULL, NULL));
    zmq_close(c);
    ck_assert_msg(access(other, F_OK) == 0, "--db was not used");
    status = stop_coild();
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "coild exited with status %d", status);
    ck_assert_msg(access(wsock, F_OK) != 0, "%s is left behind", wsock);
    /* the documents went to --db, not to the config's database */
    char *dargv[] = {(char *)build("coil"), "docs", "--db", other, NULL};
    int st;
    char *d = run_local(dargv, &st);
    ck_assert_int_eq(st, 0);
    ck_assert_msg(strstr(d, "\no ") != NULL, "%s", d);
    free(d);
}
END_TEST

/* ---- no server: coil --connect gives up, naming the endpoint ---------------------------- */

static void setup_dir(void)
{
    ctx = zmq_ctx_new();
    dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(dir);
}

static void teardown_dir(void)
{
    zmq_ctx_term(ctx);
    tu_rm_rf(dir);
    free(dir);
}

START_TEST(test_connect_timeout)
{
    CASE("timeout");
    /* a port held (bound, not listening) so nobody serves it during the test */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", ntohs(sa.sin_port));
    static const struct {
        const char *timeout;
        double lo, hi;
    } cases[] = {{"1", 0.9, 6.0}, {NULL, 9.9, 16.0}}; /* NULL: the default, 10 s */
    for (int k = 0; k < 2; k++) {
        char *argv[] = {(char *)build("coil"), "--connect", ep, "search", "ghost",
                        cases[k].timeout ? "--timeout" : NULL, (char *)cases[k].timeout, NULL};
        int st;
        char *err = NULL;
        double t0 = mono();
        char *out = run_local_err(argv, &st, &err);
        double took = mono() - t0;
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d", st);
        ck_assert_msg(took >= cases[k].lo && took <= cases[k].hi, "gave up after %.2f s (expected %.1f..%.1f)", took,
                      cases[k].lo, cases[k].hi);
        ck_assert_msg(strstr(err, ep) != NULL && strstr(err, "no reply") != NULL, "%s", err);
        ck_assert_str_eq(out, "");
        fprintf(stderr, "no server, --timeout %s: gave up after %.2f s: %s", cases[k].timeout ? cases[k].timeout : "(10)",
                took, err);
        free(out);
        free(err);
    }
    /* the programs' own help and version: stdout, status 0 */
    static const char *progs[][2] = {{"coild", "--ready-file FILE"}, {"workers/coil-worker", "--connect ENDPOINT"}};
    for (int k = 0; k < 2; k++) {
        char *hargv[] = {(char *)build(progs[k][0]), "--help", NULL}, *vargv[] = {(char *)build(progs[k][0]), "--version", NULL};
        int hst;
        char *hout = run_local(hargv, &hst);
        ck_assert_msg(WIFEXITED(hst) && WEXITSTATUS(hst) == 0 && strstr(hout, progs[k][1]) && strstr(hout, "--version"),
                      "%s --help: status %d: %s", progs[k][0], hst, hout);
        free(hout);
        hout = run_local(vargv, &hst);
        ck_assert_msg(WIFEXITED(hst) && WEXITSTATUS(hst) == 0 && strstr(hout, PACKAGE_VERSION), "%s --version: %s",
                      progs[k][0], hout);
        free(hout);
    }
    /* a --config that does not exist is an error naming it (not the defaults) */
    char nocfg[4200];
    snprintf(nocfg, sizeof nocfg, "%s/none.yaml", dir);
    char *cargv[] = {(char *)build("coild"), "--config", nocfg, NULL};
    int cst;
    char *cerr = NULL;
    free(run_local_err(cargv, &cst, &cerr));
    ck_assert_msg(WIFEXITED(cst) && WEXITSTATUS(cst) == 1 && strstr(cerr, "none.yaml: cannot open"), "%d %s", cst, cerr);
    free(cerr);
    char *bad[] = {(char *)build("coil"), "--connect", ep, "search", "ghost", "--timeout", "soon", NULL};
    int st;
    char *err = NULL;
    free(run_local_err(bad, &st, &err));
    ck_assert_int_eq(WEXITSTATUS(st), 2);
    ck_assert_msg(strstr(err, "--timeout") != NULL, "%s", err);
    free(err);
    close(fd);
}
END_TEST

/* ---- every error reply to a request whose id can be read carries it ---------------------- */

static void setup_small_text(void)
{
    snprintf(extra_yaml, sizeof extra_yaml, "  max_text_bytes: 1000\n");
    setup_with(1 << 20, 256);
}

static void teardown_small_text(void)
{
    extra_yaml[0] = '\0';
    teardown();
}

/* Sends frames (n of them, lens given) and returns the one reply. */
static json_t *send_frames_reply(void *c, const char *const *frames, const size_t *lens, int n)
{
    track(frames[0], lens[0]);
    for (int i = 0; i < n; i++)
        ck_assert_int_ge(zmq_send(c, frames[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0), 0);
    json_t *r = recv_json(c, 10000, NULL, NULL);
    ck_assert_msg(r != NULL, "no reply to %.80s", frames[0]);
    return r;
}

START_TEST(test_error_replies_carry_the_id)
{
    CASE("ids");
    void *c = client();
    wait_ready(c);
    /* sizes: frames above 64 KiB (the old bound on reading an id) */
    size_t tn = 600000;
    char *long_text = malloc(tn + 1), *huge = malloc(2 * tn + 200);
    memset(long_text, 'a', tn);
    long_text[tn] = '\0';
    char *text_over = malloc(tn / 4 + 200);
    /* text over limits.max_text_bytes (1000) in a message under max_message_bytes (1 MiB) */
    snprintf(text_over, tn / 4 + 200,
             "{\"v\":1,\"id\":\"text-over\",\"op\":\"session.append\",\"session\":\"0123456789abcdef\",\"text\":\"%.*s\"}",
             (int)(tn / 4), long_text);
    /* a message over max_message_bytes, its frame 0 valid JSON */
    snprintf(huge, 2 * tn + 200, "{\"v\":1,\"id\":77,\"op\":\"score\",\"doc\":\"d\",\"text\":\"%s%s\"}", long_text,
             long_text);
    char *huge2 = malloc(2 * tn + 200);
    snprintf(huge2, 2 * tn + 200, "{\"v\":1,\"id\":\"big-query\",\"op\":\"search\",\"query\":\"%s%s\"}", long_text,
             long_text);
    static const char h[] = "{\"v\":1,\"id\":\"three-frames\",\"op\":\"health\"}";
    static const char im[] = "{\"v\":1,\"id\":-5,\"op\":\"state.import\",\"name\":\"x\"}";
    static const char ex[] = "{\"v\":1,\"id\":\"bin\",\"op\":\"health\"}";
    static const char nine[] = "{\"v\":1,\"id\":9,\"op\":\"doc.list\"}";
    const struct {
        const char *frames[9];
        int n;
        json_t *want;
        const char *code;
    } cases[] = {
        {{text_over}, 1, json_string("text-over"), "COIL_ETOOBIG"},
        {{huge}, 1, json_integer(77), "COIL_ETOOBIG"},
        {{huge2}, 1, json_string("big-query"), "COIL_ETOOBIG"},
        {{h, "x", "y"}, 3, json_string("three-frames"), "COIL_EPROTO"},
        {{nine, "1", "2", "3", "4", "5", "6", "7", "8"}, 9, json_integer(9), "COIL_EPROTO"},
        {{ex, "blob"}, 2, json_string("bin"), "COIL_EPROTO"},
        {{im}, 1, json_integer(-5), NULL}, /* state.import without its blob frame */
        {{"{\"v\":1,\"id\":\"u\",\"op\":\"explode\"}"}, 1, json_string("u"), "COIL_EPROTO"},
        {{"{\"v\":1,\"id\":31,\"op\":\"search\",\"query\":\"x\",\"limit\":0}"}, 1, json_integer(31), "COIL_EINVAL"},
        {{"{\"v\":1,\"id\":\"x\",\"op\":\"generate\",\"doc\":\"d\",\"n\":1e300}"}, 1, json_string("x"), "COIL_EINVAL"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t lens[9];
        for (int i = 0; i < cases[k].n; i++)
            lens[i] = strlen(cases[k].frames[i]);
        json_t *r = send_frames_reply(c, cases[k].frames, lens, cases[k].n);
        ck_assert_msg(json_is_false(json_object_get(r, "ok")), "case %zu accepted", k);
        ck_assert_msg(json_equal(json_object_get(r, "id"), cases[k].want), "case %zu (%.60s): the reply's id is %s: %.300s",
                      k, cases[k].frames[0], json_dumps(json_object_get(r, "id"), JSON_ENCODE_ANY), json_dumps(r, 0));
        const char *code = json_string_value(json_object_get(json_object_get(r, "error"), "code"));
        if (cases[k].code)
            ck_assert_msg(strcmp(code, cases[k].code) == 0, "case %zu: %s", k, code);
        json_decref(r);
        json_decref(cases[k].want);
    }
    /* an id that cannot be read gets null */
    const char *nf[] = {"{\"v\":1,\"op\":\"health\"}"};
    size_t nl = strlen(nf[0]);
    json_t *r = send_frames_reply(c, nf, &nl, 1);
    ck_assert(json_is_null(json_object_get(r, "id")));
    json_decref(r);
    free(long_text);
    free(huge);
    free(huge2);
    free(text_over);
    zmq_close(c);
}
END_TEST

/* ---- a configured limit above the protocol's default holds end to end ------------------- */

static void setup_big_text(void)
{
    snprintf(extra_yaml, sizeof extra_yaml, "  max_text_bytes: 2097152\n");
    setup_with(4 << 20, 256);
}

START_TEST(test_configured_text_limit)
{
    CASE("limits");
    void *c = client();
    wait_ready(c);
    json_decref(call(c, "{\"v\":1,\"id\":\"i\",\"op\":\"ingest\",\"name\":\"d\",\"text\":\"The keeper.\"}", NULL,
                     NULL, NULL));
    /* 1.2 MB: over the protocol's default text limit (1 MiB), under the configured 2 MiB */
    size_t n = 1200000;
    char *t = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        t[i] = "the keeper counts lamps "[i % 24];
    t[n] = '\0';
    /* as a prompt (a text field under the same limit): the reply is one token
     * and the position says the whole text was read; a score's reply would be
     * 24 MB of per-token log-probabilities for the schema check to walk */
    json_t *m = json_pack("{s:i, s:s, s:s, s:s, s:s, s:i, s:f}", "v", 1, "id", "big-prompt", "op", "generate", "doc",
                          "d", "prompt", t, "n", 1, "temperature", 0.0);
    char *req = json_dumps(m, JSON_COMPACT);
    json_t *r = call(c, req, NULL, NULL, NULL);
    ck_assert_int_gt(json_integer_value(json_object_get(r, "position")), 100000);
    json_decref(r);
    free(req);
    json_decref(m);
    free(t);
    /* a streamed document whose name is 256 code points of 2 bytes each (coild
     * kept a spooled upload's name in 300 bytes: part 1 found no upload) */
    char name[600] = "";
    for (int i = 0; i < 256; i++)
        strcat(name, "\xc3\xa9");
    for (int p = 0; p < 2; p++) {
        json_t *pm = json_pack("{s:i, s:i, s:s, s:s, s:i, s:b, s:s}", "v", 1, "id", 500 + p, "op", "ingest", "name",
                               name, "part", p, "last", p == 1, "text", p ? " counts lamps." : "The keeper");
        char *preq = json_dumps(pm, JSON_COMPACT);
        json_decref(call(c, preq, NULL, NULL, NULL));
        free(preq);
        json_decref(pm);
    }
    zmq_close(c);
}
END_TEST

/* --- streamed uploads in progress are bounded (limits.max_uploads*) --------- */

static void setup_uploads(void)
{
    snprintf(extra_yaml, sizeof extra_yaml, "  max_uploads_per_client: 2\n  max_uploads: 3\n  upload_idle_seconds: 0\n");
    setup();
}

static void setup_uploads_idle(void)
{
    snprintf(extra_yaml, sizeof extra_yaml, "  upload_idle_seconds: 1\n");
    setup();
}

/* Sends part `part` of the upload `name` and returns the reply's error code,
 * or "" when it was taken; the message goes to msg. */
static const char *send_part(void *c, const char *name, int part, int last, char *msg, size_t msg_len)
{
    static int seq;
    json_t *m = json_pack("{s:i, s:i, s:s, s:s, s:i, s:b, s:s}", "v", 1, "id", 9000 + seq++, "op", "ingest", "name",
                          name, "part", part, "last", last, "text", part ? " counts the lamps." : "The keeper");
    char *req = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    send_raw(c, req, strlen(req), 0);
    static char code[64];
    code[0] = msg[0] = '\0';
    for (double t0 = mono(); mono() - t0 < 120;) {
        json_t *r = recv_json(c, 1000, NULL, NULL);
        if (!r || json_is_true(json_object_get(r, "partial"))) {
            json_decref(r);
            continue;
        }
        if (!json_is_true(json_object_get(r, "ok"))) {
            json_t *e = json_object_get(r, "error");
            snprintf(code, sizeof code, "%s", json_string_value(json_object_get(e, "code")));
            snprintf(msg, msg_len, "%s", json_string_value(json_object_get(e, "message")));
        }
        json_decref(r);
        free(req);
        return code;
    }
    ck_abort_msg("no reply to %.300s", req);
    return NULL;
}

static int64_t stat_int(void *c, const char *key)
{
    json_t *st = stats(c);
    ck_assert_msg(json_is_integer(json_object_get(st, key)), "stats has no %s", key);
    int64_t v = json_integer_value(json_object_get(st, key));
    json_decref(st);
    return v;
}

/* Files in coild's spool directory (DATABASE.spool). */
/* Entries of directory path, "." and ".." not counted; -1 if it cannot be read. */
static int dir_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Files in coild's upload spool (the directory exists while coild runs). */
static int spool_files(void)
{
    char sp[4200];
    snprintf(sp, sizeof sp, "%s.spool", db);
    int n = dir_entries(sp);
    ck_assert_int_ge(n, 0);
    return n;
}

/* A client may hold max_uploads_per_client streamed uploads in progress and
 * all clients max_uploads; past either a new one is COIL_EBUSY naming the
 * limit, a whole document is still taken, the uploads already in progress
 * are untouched, and finishing one makes room.  (Each upload holds a file and
 * a descriptor: without the limits one client could exhaust coild's.) */
START_TEST(test_upload_limits)
{
    CASE("uploads");
    char msg[1024];
    void *a = client(), *b = client();
    wait_ready(a);
    wait_ready(b);
    ck_assert_str_eq(send_part(a, "a1", 0, 0, msg, sizeof msg), "");
    ck_assert_str_eq(send_part(a, "a2", 0, 0, msg, sizeof msg), "");
    ck_assert_str_eq(send_part(a, "a3", 0, 0, msg, sizeof msg), "COIL_EBUSY");
    ck_assert_msg(strstr(msg, "limits.max_uploads_per_client") != NULL, "%s", msg);
    /* a whole document does not stay in progress: taken */
    json_decref(call(a, "{\"v\":1,\"id\":\"whole\",\"op\":\"ingest\",\"name\":\"w\",\"text\":\"The keeper.\"}", NULL,
                     NULL, NULL));
    ck_assert_int_eq(stat_int(a, "uploads"), 2);
    ck_assert_int_eq(spool_files(), 2);
    ck_assert_str_eq(send_part(b, "b1", 0, 0, msg, sizeof msg), "");
    ck_assert_str_eq(send_part(b, "b2", 0, 0, msg, sizeof msg), "COIL_EBUSY");
    ck_assert_msg(strstr(msg, "limits.max_uploads)") != NULL, "%s", msg);
    ck_assert_int_eq(stat_int(b, "uploads"), 3);
    /* the refusals changed nothing: a1 goes on, and its end makes room */
    ck_assert_str_eq(send_part(a, "a1", 1, 0, msg, sizeof msg), "");
    ck_assert_str_eq(send_part(a, "a1", 2, 1, msg, sizeof msg), "");
    ck_assert_str_eq(send_part(a, "a3", 0, 0, msg, sizeof msg), "");
    ck_assert_int_eq(stat_int(a, "uploads"), 3);
    ck_assert_str_eq(send_part(a, "a3", 1, 1, msg, sizeof msg), "");
    ck_assert_str_eq(send_part(a, "a2", 1, 1, msg, sizeof msg), "");
    ck_assert_str_eq(send_part(b, "b1", 1, 1, msg, sizeof msg), "");
    ck_assert_int_eq(stat_int(a, "uploads"), 0);
    for (double t0 = mono(); spool_files() > 0; usleep(50000)) /* the jobs remove their files when done */
        ck_assert_msg(mono() - t0 < 60, "%d spool files left", spool_files());
    json_t *l = call(a, "{\"v\":1,\"id\":\"ls\",\"op\":\"doc.list\"}", NULL, NULL, NULL);
    ck_assert_int_eq(json_array_size(json_object_get(l, "docs")), 5); /* a1 a2 a3 b1 w */
    json_decref(l);
    ck_assert_int_eq(stat_int(a, "uploads_expired"), 0);
    zmq_close(a);
    zmq_close(b);
}
END_TEST

/* Descriptors process pid holds open. */
static int open_fds(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/fd", (int)pid);
    return dir_entries(p);
}

/* An upload with no part for limits.upload_idle_seconds is discarded: its
 * file removed, its descriptor closed, counted in stats; a later part of it
 * is refused with an error that says why; the name can be uploaded anew. */
START_TEST(test_upload_idle_expires)
{
    CASE("uploads");
    char msg[1024];
    void *c = client();
    wait_ready(c);
    int fds0 = open_fds(coild_pid);
    ck_assert_str_eq(send_part(c, "left", 0, 0, msg, sizeof msg), "");
    ck_assert_int_eq(open_fds(coild_pid), fds0 + 1);
    ck_assert_int_eq(spool_files(), 1);
    for (double t0 = mono(); stat_int(c, "uploads_expired") < 1; usleep(100000))
        ck_assert_msg(mono() - t0 < 60, "an upload idle for 60 s was not discarded (upload_idle_seconds: 1)");
    ck_assert_int_eq(stat_int(c, "uploads"), 0);
    ck_assert_int_eq(spool_files(), 0);
    ck_assert_int_eq(open_fds(coild_pid), fds0);
    ck_assert_str_eq(send_part(c, "left", 1, 1, msg, sizeof msg), "COIL_EINVAL");
    ck_assert_msg(strstr(msg, "limits.upload_idle_seconds") != NULL, "%s", msg);
    ck_assert_str_eq(send_part(c, "left", 0, 0, msg, sizeof msg), "");
    ck_assert_str_eq(send_part(c, "left", 1, 1, msg, sizeof msg), "");
    json_t *st = call(c, "{\"v\":1,\"id\":\"ds\",\"op\":\"doc.status\",\"name\":\"left\"}", NULL, NULL, NULL);
    json_decref(st);
    zmq_close(c);
}
END_TEST

int main(void)
{
    const char *b = getenv("COIL_BUILDDIR"), *fam = getenv("COIL_TEST_FAMILY");
    /* a run of tests/families.sh (beside make check's own run) records apart */
    snprintf(replies, sizeof replies, "%s/tests/test_service%s%s.replies.jsonl", b && *b ? b : ".",
             fam && *fam ? "." : "", fam && *fam ? fam : "");
    FILE *rf = fopen(replies, "w"); /* this run's replies only */
    if (rf)
        fclose(rf);
    /* Everything a test makes -- its temp dir, coild's private socket
     * directory -- goes under one directory removed here, in the parent:
     * a failed test's child (and the coild in it) is killed by Check with
     * SIGKILL, which no cleanup survives. */
    char *base = tu_mkdtemp();
    if (!base) {
        perror("test_service: mkdtemp");
        return 1;
    }
    setenv("TMPDIR", base, 1);
    unsetenv("XDG_RUNTIME_DIR");
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
    tcase_add_test(tk, test_worker_sigterm_drains);
    tcase_add_test(tk, test_coild_sigterm_drains);
    suite_add_tcase(s, tk);
    TCase *tso = tcase_create("sockets");
    tcase_set_timeout(tso, 120);
    tcase_add_checked_fixture(tso, setup, teardown);
    tcase_add_test(tso, test_clean_exit_removes_sockets);
    suite_add_tcase(s, tso);
    TCase *tto = tcase_create("timeout");
    tcase_set_timeout(tto, 60);
    tcase_add_checked_fixture(tto, setup_dir, teardown_dir);
    tcase_add_test(tto, test_connect_timeout);
    suite_add_tcase(s, tto);
    TCase *tid = tcase_create("ids");
    tcase_set_timeout(tid, 120);
    tcase_add_checked_fixture(tid, setup_small_text, teardown_small_text);
    tcase_add_test(tid, test_error_replies_carry_the_id);
    suite_add_tcase(s, tid);
    TCase *tl = tcase_create("limits");
    tcase_set_timeout(tl, 120);
    tcase_add_checked_fixture(tl, setup_big_text, teardown_small_text);
    tcase_add_test(tl, test_configured_text_limit);
    suite_add_tcase(s, tl);
    static void (*const fan_setups[4])(void) = {setup_fanout1, setup_fanout3, setup_fanout_kill, setup_fanout_order};
    static const char *const fan_names[4] = {"select_spread_1", "select_spread_3", "select_spread_kill",
                                             "select_spread_order"};
    for (int k = 0; k < 4; k++) {
        TCase *tsp = tcase_create(fan_names[k]);
        tcase_set_timeout(tsp, 300);
        tcase_add_checked_fixture(tsp, fan_setups[k], teardown_fanout);
        tcase_add_test(tsp, test_select_spread_equals_local);
        suite_add_tcase(s, tsp);
    }
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
    tcase_set_timeout(tmc, 300); /* above the test's own hang guards (2 x 60 s) */
    tcase_add_checked_fixture(tmc, setup, teardown);
    tcase_add_test(tmc, test_max_clients);
    suite_add_tcase(s, tmc);
    suite_add_tcase(s, tcv);
    TCase *tup = tcase_create("uploads");
    tcase_set_timeout(tup, 180);
    tcase_add_checked_fixture(tup, setup_uploads, teardown_small_text);
    tcase_add_test(tup, test_upload_limits);
    suite_add_tcase(s, tup);
    TCase *tui = tcase_create("uploads_idle");
    tcase_set_timeout(tui, 180);
    tcase_add_checked_fixture(tui, setup_uploads_idle, teardown_small_text);
    tcase_add_test(tui, test_upload_idle_expires);
    suite_add_tcase(s, tui);
    TCase *tm = tcase_create("malformed");
    tcase_set_timeout(tm, 300);
    tcase_add_checked_fixture(tm, setup_small_limit, teardown);
    tcase_add_test(tm, test_malformed_messages);
    suite_add_tcase(s, tm);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tu_rm_rf(base);
    free(base);
    return failed ? 1 : 0;
}
