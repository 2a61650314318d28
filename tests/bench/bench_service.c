/* bench_service.c -- load on one coild: concurrent clients issue score,
 * search and generate while a document is being ingested.
 *
 *   tests/bench/bench_service [--clients N] [--requests N] [--seconds S]
 *                             [--workers N] [--model DIR] [--doc-kb N]
 *
 * Starts its own coild (from the build tree) on 127.0.0.1 ports with a temp
 * database.  Without --model it writes a small random model with the test
 * tokenizer (the service overhead is what is measured, not the model).
 * First ingests a base document, then starts a second, large ingest and, at
 * the same time, N client threads each sending requests one at a time
 * (round-robin score / search / generate n=8) until --requests in total or
 * --seconds have passed.  Prints requests/s and p50/p99 latency per op.
 * Bounded in count and time; loopback only.
 */
#include <jansson.h>
#include <pthread.h>
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

#include "backend.h"
#include "testutil.h"

extern char **environ;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *g_ctx;
static char g_ep[64], g_session[32];
static int g_total, g_issued;
static double g_deadline;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

enum { OP_SCORE, OP_SEARCH, OP_GEN, N_OPS };
static const char *op_names[N_OPS] = {"score", "search", "generate"};
static double *g_lat[N_OPS];
static int g_n[N_OPS], g_fail;

static json_t *call(void *s, const char *req, double timeout_s)
{
    zmq_send(s, req, strlen(req), 0);
    for (double t0 = now(); now() - t0 < timeout_s;) {
        zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 200) <= 0)
            continue;
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, s, 0);
        json_t *r = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
        zmq_msg_close(&m);
        if (r && json_is_true(json_object_get(r, "partial"))) {
            json_decref(r);
            continue;
        }
        return r;
    }
    return NULL;
}

static void *client_thread(void *arg)
{
    int k = (int)(long)arg;
    void *s = zmq_socket(g_ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_connect(s, g_ep);
    char req[512];
    for (int i = 0;; i++) {
        pthread_mutex_lock(&g_mu);
        int go = g_issued < g_total && now() < g_deadline;
        g_issued += go;
        pthread_mutex_unlock(&g_mu);
        if (!go)
            break;
        int op = (k + i) % N_OPS;
        if (op == OP_SCORE)
            snprintf(req, sizeof req, "{\"v\":1,\"id\":%d,\"op\":\"score\",\"session\":\"%s\",\"text\":\" the harbour keeper\"}", i, g_session);
        else if (op == OP_SEARCH)
            snprintf(req, sizeof req, "{\"v\":1,\"id\":%d,\"op\":\"search\",\"query\":\"lighthouses\",\"limit\":5}", i);
        else
            snprintf(req, sizeof req, "{\"v\":1,\"id\":%d,\"op\":\"generate\",\"session\":\"%s\",\"n\":8,\"seed\":%d,\"stream\":false}", i, g_session, i);
        double t0 = now();
        json_t *r = call(s, req, 120);
        double dt = now() - t0;
        pthread_mutex_lock(&g_mu);
        if (r && json_is_true(json_object_get(r, "ok")))
            g_lat[op][g_n[op]++] = dt;
        else
            g_fail++;
        pthread_mutex_unlock(&g_mu);
        json_decref(r);
    }
    zmq_close(s);
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void write_doc(const char *path, int paragraphs)
{
    FILE *f = fopen(path, "w");
    for (int i = 0; i < paragraphs; i++)
        fprintf(f, "Paragraph %d: the harbour keeper counts %d lighthouses and writes it down.\n", i, i * 7 % 13);
    fclose(f);
}

int main(int argc, char **argv)
{
    int clients = 8, workers = 2, doc_kb = 2048;
    double seconds = 30;
    const char *model = NULL;
    g_total = 600;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--clients")) clients = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--requests")) g_total = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--workers")) workers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--model")) model = argv[i + 1];
        else if (!strcmp(argv[i], "--doc-kb")) doc_kb = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_service [--clients N] [--requests N] [--seconds S] [--workers N] "
                            "[--model DIR] [--doc-kb N]\n");
            return 2;
        }
    }
    if (clients < 1 || clients > 256 || g_total < 1 || workers < 1 || workers > 64)
        return 2;
    char *dir = tu_mkdtemp(), mdir[4200], cfg[4200], db[4200], doc[4200], big[4200], bindir[4096];
    snprintf(mdir, sizeof mdir, "%s/model", dir);
    snprintf(cfg, sizeof cfg, "%s/coild.yaml", dir);
    snprintf(db, sizeof db, "%s/coil.db", dir);
    snprintf(doc, sizeof doc, "%s/doc.txt", dir);
    snprintf(big, sizeof big, "%s/big.txt", dir);
    const char *b = getenv("COIL_BUILDDIR");
    snprintf(bindir, sizeof bindir, "%s", b && *b ? b : ".");
    if (!model) {
        tu_model_shape_t sh = {.d_model = 256, .n_layer = 4, .vocab = 1232, .d_state = 16, .d_conv = 4,
                               .expand = 2, .tied = 1, .dtype = "F32"};
        if (tu_write_model_dir(mdir, &sh, 5) != 0) {
            fprintf(stderr, "bench_service: cannot write the model (COIL_TEST_DATA?)\n");
            return 1;
        }
        model = mdir;
    }
    write_doc(doc, 200);
    write_doc(big, doc_kb * 1024 / 75);
    srand((unsigned)getpid());
    int port = 20000 + rand() % 20000;
    snprintf(g_ep, sizeof g_ep, "tcp://127.0.0.1:%d", port);
    FILE *f = fopen(cfg, "w");
    fprintf(f, "endpoints:\n  clients: %s\n  events: tcp://127.0.0.1:%d\n  workers: ipc://%s/w.ipc\n"
               "database: %s\nmodel: %s\nworkers: %d\nthreads_per_worker: 1\nlimits:\n  max_concurrent_jobs: 1024\n",
            g_ep, port + 1, dir, db, model, workers);
    fclose(f);
    char coild[4200], wbin[4200];
    snprintf(coild, sizeof coild, "%s/coild", bindir);
    snprintf(wbin, sizeof wbin, "%s/workers/coil-worker", bindir);
    setenv("COIL_WORKER_BIN", wbin, 1);
    char *cargv[] = {coild, "--config", cfg, "--quiet", NULL};
    pid_t pid;
    if (posix_spawn(&pid, coild, NULL, NULL, cargv, environ) != 0) {
        fprintf(stderr, "bench_service: cannot start %s\n", coild);
        return 1;
    }
    g_ctx = zmq_ctx_new();
    void *s = zmq_socket(g_ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_connect(s, g_ep);
    for (double t0 = now(); now() - t0 < 60;) { /* workers ready */
        json_t *h = call(s, "{\"v\":1,\"id\":0,\"op\":\"health\"}", 5);
        int w = h ? (int)json_integer_value(json_object_get(json_object_get(h, "result"), "workers")) : 0;
        json_decref(h);
        if (w == workers)
            break;
        usleep(100000);
    }
    /* the base document and a session on it */
    size_t n;
    char *text = tu_read(doc, &n);
    json_t *m = json_pack("{s:i, s:i, s:s, s:s, s:s%}", "v", 1, "id", 1, "op", "ingest", "name", "base", "text", text, n);
    char *req = json_dumps(m, JSON_COMPACT);
    json_decref(call(s, req, 300));
    free(req);
    json_decref(m);
    free(text);
    json_t *r = call(s, "{\"v\":1,\"id\":2,\"op\":\"session.new\",\"doc\":\"base\"}", 30);
    snprintf(g_session, sizeof g_session, "%s",
             json_string_value(json_object_get(json_object_get(r, "result"), "session")));
    json_decref(r);
    /* the big ingest, in the background of the load */
    text = tu_read(big, &n);
    m = json_pack("{s:i, s:i, s:s, s:s, s:s%}", "v", 1, "id", 3, "op", "ingest", "name", "big", "text", text, n);
    req = json_dumps(m, JSON_COMPACT);
    zmq_send(s, req, strlen(req), 0);
    free(req);
    json_decref(m);
    free(text);
    for (int k = 0; k < N_OPS; k++)
        g_lat[k] = malloc((size_t)g_total * sizeof(double));
    pthread_t th[256];
    double t0 = now();
    g_deadline = t0 + seconds;
    for (int k = 0; k < clients; k++)
        pthread_create(&th[k], NULL, client_thread, (void *)(long)k);
    for (int k = 0; k < clients; k++)
        pthread_join(th[k], NULL);
    double wall = now() - t0;
    int done = 0;
    for (int k = 0; k < N_OPS; k++)
        done += g_n[k];
    coil_backend_print_info(stdout); /* what the workers (same build, same machine) run on */
    printf("coild with %d workers, %d concurrent clients, a %d KiB document ingesting meanwhile\n", workers, clients,
           doc_kb);
    printf("%d requests in %.2f s: %.1f requests/s, %d failed\n", done, wall, done / wall, g_fail);
    for (int k = 0; k < N_OPS; k++) {
        if (!g_n[k])
            continue;
        qsort(g_lat[k], (size_t)g_n[k], sizeof(double), cmp_d);
        printf("  %-9s n=%4d  p50 %8.2f ms  p99 %8.2f ms\n", op_names[k], g_n[k], 1e3 * g_lat[k][g_n[k] / 2],
               1e3 * g_lat[k][(g_n[k] * 99) / 100]);
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    zmq_close(s);
    zmq_ctx_term(g_ctx);
    tu_rm_rf(dir);
    free(dir);
    for (int k = 0; k < N_OPS; k++)
        free(g_lat[k]);
    return 0;
}
