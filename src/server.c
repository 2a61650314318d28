/* server.c -- coild: routing, scheduling, worker supervision, spooling. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <zmq.h>

#include "protocol.h"
#include "spool.h"

#define MAX_WORKERS 64
#define MAX_JOB_DEATHS 3 /* a job is given up after this many workers died running it */
#define MAX_CLIENT_FRAMES 2
#define ROUTE_MAX 300 /* 1 + a ZeroMQ routing id (at most 255 bytes) */
#define EP_MAX 1100      /* a bound endpoint: the configured one (<= 256 bytes) or a private ipc path */

typedef struct job {
    struct job *next;
    unsigned char route[ROUTE_MAX]; /* byte 0: 1 = REQ client (empty delimiter), then the identity */
    size_t route_len;
    char *req;          /* frame 0 as received */
    size_t req_len;
    void *blob;         /* frame 1 or NULL */
    size_t blob_len;
    char *spool;        /* ingest: the spooled text file (owned, removed when done) */
    json_t *id;         /* for error replies */
    coil_proto_op_t op;
    int write;          /* a write job: one at a time */
    int retry;          /* safe to run again after a worker death */
    int deaths;         /* workers that died running it */
    char key[COIL_PROTO_KEY_MAX + 1]; /* session appends: the request key ("" = none) */
    double arrived;     /* when the request came */
    /* fan-out (worker.h FANOUT): a job whose worker handed it back as sub-jobs */
    struct job *parent; /* a sub-job: the job it is part of (never answers a client itself) */
    int sub_index;      /* a sub-job: its place among the parent's */
    json_t *sub_spec;   /* a sub-job: what to do (meta "sub"), opaque to coild */
    json_t *fan_plan;   /* the parent: the plan its first stage made, opaque */
    json_t *fan_results; /* the parent: the sub-jobs' results, in order (null until in) */
    int fan_pending;    /* results still missing */
    int fan_refs;       /* its sub-jobs alive (queued or running) */
    int fan_failed;     /* answered with an error; freed when fan_refs is 0 */
    struct job *fan_next; /* in srv_t.fanning while its sub-jobs run */
} job_t;

typedef struct {
    char name[32];
    pid_t pid;          /* 0 for a worker started by hand */
    int ready;          /* connected and said READY */
    int present;        /* slot in use */
    job_t *job;         /* in flight */
    double idle_since;
    double respawn_at;  /* when a dead local worker is started again */
    int restarts;       /* deaths in a row without a READY in between (the backoff) */
    int start_failures; /* of those, exits with an error status (not kills) */
    int gave_up;        /* MAX_START_FAILURES of them: not started again */
    char why[64];       /* how it last ended */
    uint64_t jobs, subjobs; /* replied (stats: per_worker) */
} worker_t;

/* A local worker that exits with an error this many times in a row before it
 * is ready (a model it cannot load, a device it does not have, a store it
 * cannot open) is not started again: the same error would repeat forever.
 * (A worker killed by a signal is always restarted.)  When no local worker is
 * left, coild exits with an error, for its supervisor to see. */
#define MAX_START_FAILURES 5

typedef struct {
    const coil_server_options_t *o;
    const coil_config_t *cfg;
    void *ctx, *clients, *events, *workers, *zap, *monitor;
    int64_t live_clients;  /* connections to the clients socket (socket monitor) */
    worker_t w[MAX_WORKERS];
    job_t *head, *tail;
    job_t *fanning;     /* jobs waiting for their sub-jobs (on no worker and in no queue) */
    int n_jobs;         /* queued + running + fanning (sub-jobs are part of their job) */
    int write_busy;
    coil_spool_set_t *spools; /* streamed ingests in progress */
    char *spool_dir;    /* DATABASE.spool */
    char ep[3][EP_MAX]; /* the bound endpoints: clients, events, workers */
    char ipc_dir[512];  /* the private directory of the default workers endpoint, or "" */
    int ready_written;  /* the --ready-file is written */
    coil_proto_limits_t lim;
    uint64_t run_nonce, key_seq; /* request keys coild gives appends: "coild.<nonce>.<seq>" */
    double started, last_heartbeat;
    /* stats */
    uint64_t n_requests, n_errors, n_dropped, n_worker_deaths, n_handed_back, n_fanouts, n_subjobs;
    uint64_t n_uploads_expired; /* streamed ingests discarded after limits.upload_idle_seconds */
} srv_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void logf_(srv_t *s, coil_log_level_t lv, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(srv_t *s, coil_log_level_t lv, const char *fmt, ...)
{
    if (s->o->quiet || lv > s->cfg->log_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "coild: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* ---- sending to clients (never blocks: a full or vanished client is dropped) ---- */

static void send_client(srv_t *s, const unsigned char *route, size_t route_len, const void *json, size_t len,
                        const void *blob, size_t blob_len)
{
    int flags = ZMQ_DONTWAIT;
    if (route_len < 2)
        return;
    if (zmq_send(s->clients, route + 1, route_len - 1, flags | ZMQ_SNDMORE) < 0)
        goto drop;
    if (route[0] == 1 && zmq_send(s->clients, "", 0, flags | ZMQ_SNDMORE) < 0)
        goto drop;
    if (zmq_send(s->clients, json, len, flags | (blob ? ZMQ_SNDMORE : 0)) < 0)
        goto drop;
    if (blob && zmq_send(s->clients, blob, blob_len, flags) < 0)
        goto drop;
    return;
drop:
    s->n_dropped++;
}

static void reply_error(srv_t *s, const unsigned char *route, size_t route_len, const json_t *id, int code,
                        const char *msg)
{
    char *out = NULL;
    size_t len = 0;
    coil_err_t err = {0};
    s->n_errors++;
    if (coil_proto_reply_error(id, code, msg, &out, &len, &err) == 0)
        send_client(s, route, route_len, out, len, NULL, 0);
    free(out);
}

static void reply_ok(srv_t *s, const unsigned char *route, size_t route_len, const json_t *id, json_t *result)
{
    char *out = NULL;
    size_t len = 0;
    coil_err_t err = {0};
    if (coil_proto_reply_ok(id, &result, &out, &len, &err) == 0)
        send_client(s, route, route_len, out, len, NULL, 0);
    json_decref(result);
    free(out);
}

static void publish(srv_t *s, const char *topic, const void *json, size_t len)
{
    if (zmq_send(s->events, topic, strlen(topic), ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0 ||
        zmq_send(s->events, json, len, ZMQ_DONTWAIT) < 0)
        s->n_dropped++;
}

static void publish_worker(srv_t *s, const char *topic, const worker_t *w, const char *reason)
{
    char *out;
    size_t len;
    coil_err_t err = {0};
    if (coil_proto_event_worker(topic, w->name, w->pid, reason, &out, &len, &err) == 0) {
        publish(s, topic, out, len);
        free(out);
    }
}

/* ---- jobs ------------------------------------------------------------------------ */

static void job_free(job_t *j)
{
    if (!j)
        return;
    if (j->spool) {
        unlink(j->spool);
        free(j->spool);
    }
    free(j->req);
    free(j->blob);
    json_decref(j->id);
    json_decref(j->sub_spec);
    json_decref(j->fan_plan);
    json_decref(j->fan_results);
    free(j);
}

/* ---- fan-out: one job as sub-jobs on the free workers, then a last stage ---- */

static void fanning_remove(srv_t *s, job_t *j)
{
    for (job_t **p = &s->fanning; *p; p = &(*p)->fan_next)
        if (*p == j) {
            *p = j->fan_next;
            j->fan_next = NULL;
            return;
        }
}

/* A sub-job is over (its result kept, or its job failed): the parent is
 * freed once it has failed and no sub-job of it is left. */
static void sub_done(srv_t *s, job_t *sub)
{
    job_t *p = sub->parent;
    job_free(sub);
    if (--p->fan_refs == 0 && p->fan_failed) {
        fanning_remove(s, p);
        s->n_jobs--;
        job_free(p);
    }
}

/* The fanned-out job fails: its client gets the error (a reply made here, or
 * raw: a sub-job's own error reply, which carries the request's id); sub-jobs
 * still queued are dropped, running ones' results ignored. */
static void reply_error(srv_t *s, const unsigned char *route, size_t route_len, const json_t *id, int code,
                        const char *msg);
static void send_client(srv_t *s, const unsigned char *route, size_t route_len, const void *json, size_t len,
                        const void *blob, size_t blob_len);
static void fan_fail(srv_t *s, job_t *p, int code, const char *msg, const void *raw, size_t raw_len)
{
    if (p->fan_failed)
        return;
    p->fan_failed = 1;
    if (raw) {
        s->n_errors++;
        send_client(s, p->route, p->route_len, raw, raw_len, NULL, 0);
    } else {
        reply_error(s, p->route, p->route_len, p->id, code, msg);
    }
}

static void enqueue(srv_t *s, job_t *j, int front);

/* A sub-job's reply (reply-json: ok with its result, or an error). */
static void fan_result(srv_t *s, job_t *sub, const void *reply, size_t len)
{
    job_t *p = sub->parent;
    json_t *r = json_loadb(reply, len, 0, NULL);
    json_t *res = json_object_get(r, "result");
    if (!p->fan_failed) {
        if (!json_is_true(json_object_get(r, "ok")) || !res)
            fan_fail(s, p, COIL_EPROTO, "a part of this operation failed", r ? reply : NULL, len);
        else if (json_is_null(json_array_get(p->fan_results, (size_t)sub->sub_index))) {
            /* the first result of each sub-job counts: one that ran twice is not counted twice */
            json_array_set(p->fan_results, (size_t)sub->sub_index, res);
            if (--p->fan_pending == 0) { /* all in: the last stage runs next */
                fanning_remove(s, p);
                enqueue(s, p, 1);
            }
        }
    }
    json_decref(r);
    sub_done(s, sub);
}

/* FANOUT from the worker running j: {"plan": ..., "subs": [spec, ...]}.  The
 * sub-jobs go to the front of the queue in order (each to the worker idle the
 * longest, so free workers take one each); 0, or -1 when the message is bad. */
static int fan_out(srv_t *s, job_t *j, const void *msg, size_t len)
{
    json_t *m = json_loadb(msg, len, 0, NULL);
    json_t *plan = json_object_get(m, "plan"), *subs = json_object_get(m, "subs");
    size_t n = json_array_size(subs);
    if (!plan || n == 0 || n > 64 || j->parent || j->fan_results) {
        json_decref(m);
        return -1;
    }
    j->fan_plan = json_incref(plan);
    j->fan_results = json_array();
    for (size_t i = 0; j->fan_results && i < n; i++)
        json_array_append_new(j->fan_results, json_null());
    j->fan_pending = (int)n;
    j->fan_next = s->fanning;
    s->fanning = j;
    s->n_fanouts++;
    for (size_t k = n; k-- > 0;) {
        job_t *sub = calloc(1, sizeof *sub);
        if (!sub || !(sub->req = malloc(j->req_len ? j->req_len : 1))) {
            free(sub);
            fan_fail(s, j, COIL_ENOMEM, "out of memory", NULL, 0);
            break;
        }
        memcpy(sub->route, j->route, j->route_len);
        sub->route_len = j->route_len;
        memcpy(sub->req, j->req, j->req_len);
        sub->req_len = j->req_len;
        sub->id = json_incref(j->id);
        sub->op = j->op;
        sub->retry = 1; /* a sub-job only reads */
        sub->parent = j;
        sub->sub_index = (int)k;
        sub->sub_spec = json_incref(json_array_get(subs, k));
        sub->arrived = now_s();
        j->fan_refs++;
        enqueue(s, sub, 1);
    }
    if (j->fan_failed && j->fan_refs == 0) {
        fanning_remove(s, j);
        s->n_jobs--;
        job_free(j);
    }
    json_decref(m);
    return 0;
}

/* What coild adds to a job (worker.h: meta-json). */
static json_t *job_meta(srv_t *s, const job_t *j)
{
    if (j->parent)
        return json_pack("{s:O}", "sub", j->sub_spec);
    if (j->fan_results)
        return json_pack("{s:{s:O, s:O}, s:f}", "fanout", "plan", j->fan_plan, "results", j->fan_results,
                         "elapsed_s", now_s() - j->arrived);
    if (j->spool)
        return json_pack("{s:s}", "spool", j->spool);
    if (j->key[0])
        return json_pack("{s:s}", "key", j->key);
    if (j->op == COIL_OP_ASK && s->cfg->workers > 0) /* a select may be spread over the workers */
        return json_pack("{s:b}", "split", 1);
    return json_object();
}

static void enqueue(srv_t *s, job_t *j, int front)
{
    if (front) {
        j->next = s->head;
        s->head = j;
        if (!s->tail)
            s->tail = j;
    } else {
        j->next = NULL;
        if (s->tail)
            s->tail->next = j;
        else
            s->head = j;
        s->tail = j;
    }
}

static worker_t *idle_worker(srv_t *s)
{
    worker_t *best = NULL;
    for (int i = 0; i < MAX_WORKERS; i++) {
        worker_t *w = &s->w[i];
        if (w->present && w->ready && !w->job && (!best || w->idle_since < best->idle_since))
            best = w;
    }
    return best;
}

static void dispatch(srv_t *s)
{
    job_t *prev = NULL, *j = s->head;
    while (j) {
        worker_t *w = idle_worker(s);
        if (!w)
            return;
        if (j->write && s->write_busy) { /* one writer at a time; reads may pass */
            prev = j;
            j = j->next;
            continue;
        }
        job_t *next = j->next;
        if (prev)
            prev->next = next;
        else
            s->head = next;
        if (s->tail == j)
            s->tail = prev;
        if (j->parent && j->parent->fan_failed) { /* its job was answered already */
            sub_done(s, j);
            j = next;
            continue;
        }
        json_t *mj = job_meta(s, j);
        char *meta = mj ? json_dumps(mj, JSON_COMPACT) : NULL;
        json_decref(mj);
        if (!meta) {
            logf_(s, COIL_LOG_ERROR, "out of memory dispatching a job");
            enqueue(s, j, 1);
            return;
        }
        int fl = ZMQ_DONTWAIT | ZMQ_SNDMORE;
        if (zmq_send(s->workers, w->name, strlen(w->name), fl) < 0 || zmq_send(s->workers, "JOB", 3, fl) < 0 ||
            zmq_send(s->workers, j->route, j->route_len, fl) < 0 ||
            zmq_send(s->workers, j->req, j->req_len, fl) < 0 ||
            zmq_send(s->workers, meta, strlen(meta), j->blob ? fl : ZMQ_DONTWAIT) < 0 ||
            (j->blob && zmq_send(s->workers, j->blob, j->blob_len, ZMQ_DONTWAIT) < 0)) {
            logf_(s, COIL_LOG_WARN, "cannot send a job to %s: %s", w->name, zmq_strerror(zmq_errno()));
            free(meta);
            w->ready = 0;
            enqueue(s, j, 1);
            return;
        }
        free(meta);
        w->job = j;
        if (j->write)
            s->write_busy = 1;
        j = next;
    }
}

/* The worker's job is over (replied, or the worker died). */
static void finish_job(srv_t *s, worker_t *w)
{
    job_t *j = w->job;
    w->job = NULL;
    w->idle_since = now_s();
    if (!j)
        return;
    if (j->write)
        s->write_busy = 0;
    s->n_jobs--;
    job_free(j);
}

/* ---- workers ------------------------------------------------------------------------ */

static int spawn(srv_t *s, worker_t *w)
{
    const coil_config_t *c = s->cfg;
    char threads[32], chunk[32], interval[32], dense[32];
    snprintf(threads, sizeof threads, "%" PRId64, c->threads_per_worker);
    snprintf(chunk, sizeof chunk, "%" PRId64, c->chunk_tokens);
    snprintf(interval, sizeof interval, "%" PRId64, c->checkpoint.interval_tokens);
    snprintf(dense, sizeof dense, "%" PRId64, c->checkpoint.dense);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        char *argv[] = {(char *)s->o->worker_bin, "--connect", s->ep[2], "--db", c->database,
                        "--model", c->model, "--name", w->name, "--threads", threads, "--chunk", chunk,
                        "--interval", interval, "--dense", dense, "--backend", c->device, NULL};
        execv(s->o->worker_bin, argv);
        fprintf(stderr, "coild: cannot run %s: %s\n", s->o->worker_bin, strerror(errno));
        _exit(127);
    }
    w->pid = pid;
    w->ready = 0;
    w->present = 1;
    logf_(s, COIL_LOG_INFO, "started worker %s (pid %ld)", w->name, (long)pid);
    return 0;
}

static void reap(srv_t *s)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < MAX_WORKERS; i++) {
            worker_t *w = &s->w[i];
            if (!w->present || w->pid != pid)
                continue;
            char why[64];
            if (WIFSIGNALED(status))
                snprintf(why, sizeof why, "killed by signal %d", WTERMSIG(status));
            else
                snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(status));
            s->n_worker_deaths++;
            logf_(s, COIL_LOG_WARN, "worker %s %s", w->name, why);
            publish_worker(s, "worker.down", w, why);
            job_t *j = w->job;
            if (j && j->parent) { /* a sub-job: run again elsewhere, or its job fails */
                w->job = NULL;
                if (++j->deaths < MAX_JOB_DEATHS && !j->parent->fan_failed) {
                    enqueue(s, j, 1);
                } else {
                    char msg[112];
                    snprintf(msg, sizeof msg, "%d workers died running a part of this operation; giving up", j->deaths);
                    fan_fail(s, j->parent, COIL_EIO, msg, NULL, 0);
                    sub_done(s, j);
                }
            } else if (j) {
                w->job = NULL;
                if (j->write)
                    s->write_busy = 0;
                if (j->retry && ++j->deaths < MAX_JOB_DEATHS) {
                    /* ingest resumes from its checkpoint, appends carry a request
                     * key, reads are repeatable: the job runs again */
                    enqueue(s, j, 1);
                } else if (j->retry) { /* a job that kills every worker is not run forever */
                    char msg[96];
                    snprintf(msg, sizeof msg, "%d workers died running this operation; giving up", j->deaths);
                    reply_error(s, j->route, j->route_len, j->id, COIL_EIO, msg);
                    s->n_jobs--;
                    job_free(j);
                } else {
                    reply_error(s, j->route, j->route_len, j->id, COIL_EIO,
                                "the worker died during this operation; check its effect before retrying");
                    s->n_jobs--;
                    job_free(j);
                }
            }
            w->ready = 0;
            w->pid = 0;
            double backoff = 0.1 * (double)(1 << (w->restarts < 6 ? w->restarts : 6));
            w->respawn_at = now_s() + backoff;
            w->restarts++;
            snprintf(w->why, sizeof w->why, "%s", why);
            if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && ++w->start_failures >= MAX_START_FAILURES) {
                w->respawn_at = 0;
                w->gave_up = 1;
                logf_(s, COIL_LOG_ERROR,
                      "worker %s %s %d times in a row before it was ready; not starting it again (its own "
                      "error is above)",
                      w->name, why, w->start_failures);
            }
        }
    }
}

/* ---- client requests ------------------------------------------------------------------ */

/* Ingest: spool the text (whole, or part by part); returns 1 when a job is ready. */
static int spool_ingest(srv_t *s, job_t *j, const coil_proto_request_t *r)
{
    coil_spool_result_t res;
    coil_err_t err = {0};
    int rc = coil_spool_part(s->spools, j->route, j->route_len, r->name, r->part, r->last, r->text, r->text_len,
                             s->cfg->limits.max_document_bytes, (int64_t)(now_s() * 1000.0), &res, &err);
    if (rc < 0) {
        reply_error(s, j->route, j->route_len, j->id, rc, err.msg);
        return -1;
    }
    if (rc == 0) {
        reply_ok(s, j->route, j->route_len, j->id,
                 json_pack("{s:I, s:I}", "received", (json_int_t)res.part, "bytes", (json_int_t)res.bytes));
        return 0;
    }
    j->spool = res.path; /* the job owns the file now */
    return 1;
}

static json_t *health(srv_t *s)
{
    int ready = 0, busy = 0;
    for (int i = 0; i < MAX_WORKERS; i++)
        if (s->w[i].present && s->w[i].ready) {
            ready++;
            busy += s->w[i].job != NULL;
        }
    int queued = 0;
    for (job_t *j = s->head; j; j = j->next)
        queued += !j->parent;
    return json_pack("{s:s, s:i, s:I, s:i, s:i, s:f}", "status", ready ? "ok" : "degraded", "workers", ready,
                     "workers_configured", (json_int_t)s->cfg->workers, "busy", busy, "queued", queued, "uptime_s",
                     now_s() - s->started);
}

static void on_client(srv_t *s)
{
    zmq_msg_t fr[8];
    int n = 0, more = 1;
    size_t total = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->clients, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 8)
            fr[n++] = m;
        else {
            total += zmq_msg_size(&m);
            zmq_msg_close(&m);
            n++;
        }
    }
    if (n == 0)
        return;
    s->n_requests++;
    unsigned char route[ROUTE_MAX];
    size_t route_len = 0;
    int first = 1; /* frame index of the payload */
    size_t idl = zmq_msg_size(&fr[0]);
    if (idl + 1 <= ROUTE_MAX) {
        route[0] = 0;
        memcpy(route + 1, zmq_msg_data(&fr[0]), idl);
        route_len = idl + 1;
    }
    if (n > 2 && zmq_msg_size(&fr[1]) == 0) { /* a REQ client: empty delimiter, then the payload */
        route[0] = 1;
        first = 2;
    }
    int payload = n - first, nf = n < 8 ? n : 8;
    for (int i = first; i < nf; i++)
        total += zmq_msg_size(&fr[i]);
    coil_proto_request_t *r = NULL;
    coil_err_t err = {0};
    job_t *j = NULL;
    if (route_len == 0)
        goto done;
    if (payload < 1 || payload > MAX_CLIENT_FRAMES || n > 8) {
        /* frame 0 may still carry a readable id: echo it */
        json_t *id = payload < 1 ? NULL : coil_proto_recover_id(zmq_msg_data(&fr[first]), zmq_msg_size(&fr[first]), 0);
        reply_error(s, route, route_len, id, COIL_EPROTO,
                    payload < 1 ? "empty message" : "too many frames: a request is 1 JSON frame and at most 1 binary frame");
        json_decref(id);
        goto done;
    }
    const void *json = zmq_msg_data(&fr[first]);
    size_t jl = zmq_msg_size(&fr[first]);
    /* An error reply echoes the request's id whenever frame 0 can be read,
     * however large it is (libzmq's ZMQ_MAXMSGSIZE bounds what arrives). */
    if (total > s->lim.max_message_bytes) {
        json_t *id = coil_proto_recover_id(json, jl, 0);
        reply_error(s, route, route_len, id, COIL_ETOOBIG, "message larger than limits.max_message_bytes");
        json_decref(id);
        goto done;
    }
    const void *blob = payload == 2 ? zmq_msg_data(&fr[first + 1]) : NULL;
    size_t bl = payload == 2 ? zmq_msg_size(&fr[first + 1]) : 0;
    int rc = coil_proto_parse_request(json, jl, blob, bl, (size_t)payload, &s->lim, &r, &err);
    if (rc) {
        json_t *id = coil_proto_recover_id(json, jl, 0);
        reply_error(s, route, route_len, id, rc, err.msg);
        json_decref(id);
        goto done;
    }
    if (s->cfg->limits.max_clients > 0 && s->live_clients > s->cfg->limits.max_clients) {
        reply_error(s, route, route_len, r->id, COIL_EBUSY, "too many clients connected (limits.max_clients)");
        goto done;
    }
    if (r->op == COIL_OP_HEALTH) {
        reply_ok(s, route, route_len, r->id, health(s));
        goto done;
    }
    if (r->op == COIL_OP_STATS) {
        json_t *h = health(s);
        json_object_set_new(h, "requests", json_integer((json_int_t)s->n_requests));
        json_object_set_new(h, "errors", json_integer((json_int_t)s->n_errors));
        json_object_set_new(h, "dropped_sends", json_integer((json_int_t)s->n_dropped));
        json_object_set_new(h, "worker_deaths", json_integer((json_int_t)s->n_worker_deaths));
        json_object_set_new(h, "jobs_handed_back", json_integer((json_int_t)s->n_handed_back));
        json_object_set_new(h, "jobs", json_integer(s->n_jobs));
        json_object_set_new(h, "fanouts", json_integer((json_int_t)s->n_fanouts));
        json_object_set_new(h, "subjobs", json_integer((json_int_t)s->n_subjobs));
        json_object_set_new(h, "uploads", json_integer((json_int_t)coil_spool_set_count(s->spools)));
        json_object_set_new(h, "uploads_expired", json_integer((json_int_t)s->n_uploads_expired));
        json_t *pw = json_array();
        for (int i = 0; pw && i < MAX_WORKERS; i++)
            if (s->w[i].present)
                json_array_append_new(pw, json_pack("{s:s, s:I, s:I}", "name", s->w[i].name, "jobs",
                                                    (json_int_t)s->w[i].jobs, "subjobs", (json_int_t)s->w[i].subjobs));
        json_object_set_new(h, "per_worker", pw);
        reply_ok(s, route, route_len, r->id, h);
        goto done;
    }
    if (s->n_jobs >= s->cfg->limits.max_concurrent_jobs) {
        reply_error(s, route, route_len, r->id, COIL_EBUSY, "too many jobs queued or running; retry later");
        goto done;
    }
    j = calloc(1, sizeof *j);
    if (!j || !(j->req = malloc(jl ? jl : 1)) || (blob && !(j->blob = malloc(bl ? bl : 1)))) {
        reply_error(s, route, route_len, r->id, COIL_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(j->route, route, route_len);
    j->route_len = route_len;
    memcpy(j->req, json, jl);
    j->req_len = jl;
    if (blob) {
        memcpy(j->blob, blob, bl);
        j->blob_len = bl;
    }
    j->id = json_deep_copy(r->id);
    j->op = r->op;
    j->arrived = now_s();
    switch (r->op) {
    case COIL_OP_INGEST:
        j->write = 1;
        j->retry = 1;
        break;
    case COIL_OP_SESSION_NEW:
    case COIL_OP_SESSION_FORK:
    case COIL_OP_SESSION_DELETE:
    case COIL_OP_STATE_IMPORT: j->write = 1; break;
    case COIL_OP_SESSION_APPEND:
    case COIL_OP_GENERATE:
    case COIL_OP_ASK:
        /* an append carries a request key (the client's, or one coild makes
         * up), recorded in the append's transaction: after a worker death the
         * job runs again and finds the key if the first run committed (an ask
         * of a session appends what it read and answered) */
        j->write = r->op == COIL_OP_SESSION_APPEND || (r->op == COIL_OP_GENERATE && r->append) ||
                   (r->op == COIL_OP_ASK && r->session);
        j->retry = 1;
        if (j->write) {
            if (r->key)
                snprintf(j->key, sizeof j->key, "%s", r->key);
            else
                snprintf(j->key, sizeof j->key, "coild.%016" PRIx64 ".%" PRIu64, s->run_nonce, ++s->key_seq);
        }
        break;
    default: j->retry = 1; break;
    }
    if (r->op == COIL_OP_INGEST) {
        int sr = spool_ingest(s, j, r);
        if (sr <= 0) {
            job_free(j);
            j = NULL;
            goto done;
        }
    }
    s->n_jobs++;
    enqueue(s, j, 0);
    j = NULL;
    dispatch(s);
done:
    job_free(j);
    coil_proto_request_free(&r);
    for (int i = 0; i < nf; i++)
        zmq_msg_close(&fr[i]);
}

/* ---- worker messages ------------------------------------------------------------------ */

static worker_t *worker_by_name(srv_t *s, const void *id, size_t len, int create)
{
    for (int i = 0; i < MAX_WORKERS; i++)
        if (s->w[i].present && strlen(s->w[i].name) == len && memcmp(s->w[i].name, id, len) == 0)
            return &s->w[i];
    if (!create || len == 0 || len >= sizeof s->w[0].name)
        return NULL;
    for (int i = 0; i < MAX_WORKERS; i++)
        if (!s->w[i].present) { /* a worker started by hand */
            memset(&s->w[i], 0, sizeof s->w[i]);
            memcpy(s->w[i].name, id, len);
            s->w[i].present = 1;
            return &s->w[i];
        }
    return NULL;
}

static void on_worker(srv_t *s)
{
    zmq_msg_t fr[6];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->workers, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < 6)
            fr[n++] = m;
        else
            zmq_msg_close(&m);
    }
    if (n < 2)
        goto done;
    const char *kind = zmq_msg_data(&fr[1]);
    size_t kl = zmq_msg_size(&fr[1]);
#define IS(k) (kl == strlen(k) && memcmp(kind, k, kl) == 0)
    worker_t *w = worker_by_name(s, zmq_msg_data(&fr[0]), zmq_msg_size(&fr[0]), IS("READY"));
    if (!w)
        goto done;
    if (IS("READY")) {
        w->ready = 1;
        w->idle_since = now_s();
        w->restarts = 0;
        w->start_failures = 0;
        logf_(s, COIL_LOG_INFO, "worker %s ready", w->name);
        publish_worker(s, "worker.up", w, NULL);
    } else if (IS("EVENT") && n >= 4) {
        char topic[64];
        size_t tl = zmq_msg_size(&fr[2]) < sizeof topic - 1 ? zmq_msg_size(&fr[2]) : sizeof topic - 1;
        memcpy(topic, zmq_msg_data(&fr[2]), tl);
        topic[tl] = '\0';
        publish(s, topic, zmq_msg_data(&fr[3]), zmq_msg_size(&fr[3]));
    } else if (IS("PARTIAL") && n >= 4) {
        const unsigned char *route = zmq_msg_data(&fr[2]);
        if (zmq_msg_size(&fr[2]) >= 2 && route[0] == 0) /* REQ clients take one reply only */
            send_client(s, route, zmq_msg_size(&fr[2]), zmq_msg_data(&fr[3]), zmq_msg_size(&fr[3]), NULL, 0);
    } else if (IS("REPLY") && n >= 4 && w->job && w->job->parent) { /* a sub-job's: for its job */
        job_t *sub = w->job;
        w->job = NULL;
        w->idle_since = now_s();
        w->subjobs++;
        s->n_subjobs++;
        fan_result(s, sub, zmq_msg_data(&fr[3]), zmq_msg_size(&fr[3]));
    } else if (IS("REPLY") && n >= 4) {
        send_client(s, zmq_msg_data(&fr[2]), zmq_msg_size(&fr[2]), zmq_msg_data(&fr[3]), zmq_msg_size(&fr[3]),
                    n >= 5 ? zmq_msg_data(&fr[4]) : NULL, n >= 5 ? zmq_msg_size(&fr[4]) : 0);
        w->jobs += w->job != NULL;
        finish_job(s, w);
    } else if (IS("FANOUT") && n >= 4 && w->job) { /* the job goes on as sub-jobs (worker.h) */
        job_t *j = w->job;
        w->job = NULL;
        w->idle_since = now_s();
        w->jobs++;
        if (j->write)
            s->write_busy = 0;
        if (j->parent) { /* a sub-job does not split again */
            fan_fail(s, j->parent, COIL_EPROTO, "a worker split a part of this operation", NULL, 0);
            sub_done(s, j);
        } else if (fan_out(s, j, zmq_msg_data(&fr[3]), zmq_msg_size(&fr[3])) != 0) {
            reply_error(s, j->route, j->route_len, j->id, COIL_EPROTO, "a worker split this operation wrongly");
            s->n_jobs--;
            job_free(j);
        }
    } else if (IS("REQUEUE")) { /* drained mid-job: it runs again on another worker */
        job_t *j = w->job;
        w->job = NULL;
        w->ready = 0;
        if (j) {
            s->n_handed_back++;
            if (j->write)
                s->write_busy = 0;
            enqueue(s, j, 1);
        }
    }
#undef IS
    dispatch(s);
done:
    for (int i = 0; i < n; i++)
        zmq_msg_close(&fr[i]);
}

/* ---- CURVE + ZAP ---------------------------------------------------------------------- */

static int key_allowed(srv_t *s, const unsigned char *key32)
{
    char z85[41];
    if (!zmq_z85_encode(z85, key32, 32))
        return 0;
    const coil_config_t *c = s->cfg;
    if (c->curve.n_allowed_client_keys == 0 && !c->curve.allowed_client_keys_file)
        return 1; /* no allow-list: any client with a valid CURVE key (documented) */
    for (size_t i = 0; i < c->curve.n_allowed_client_keys; i++)
        if (strcmp(c->curve.allowed_client_keys[i], z85) == 0)
            return 1;
    if (c->curve.allowed_client_keys_file) {
        FILE *f = fopen(c->curve.allowed_client_keys_file, "r");
        char *line = NULL;
        size_t cap = 0;
        int ok = 0;
        while (f && !ok && getline(&line, &cap, f) >= 0) { /* lines of any length */
            line[strcspn(line, " \t\r\n")] = '\0';
            ok = strcmp(line, z85) == 0;
        }
        free(line);
        if (f)
            fclose(f);
        return ok;
    }
    return 0;
}

/* ZAP request: version, request id, domain, address, identity, mechanism, credentials... */
static void on_zap(srv_t *s)
{
    zmq_msg_t fr[8];
    int n = 0, more = 1;
    while (more && n < 8) {
        zmq_msg_init(&fr[n]);
        if (zmq_msg_recv(&fr[n], s->zap, 0) < 0) {
            zmq_msg_close(&fr[n]);
            return;
        }
        more = zmq_msg_more(&fr[n]);
        n++;
    }
    int ok = n >= 7 && zmq_msg_size(&fr[5]) == 5 && memcmp(zmq_msg_data(&fr[5]), "CURVE", 5) == 0 &&
             zmq_msg_size(&fr[6]) == 32 && key_allowed(s, zmq_msg_data(&fr[6]));
    if (n >= 2) {
        zmq_send(s->zap, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(s->zap, zmq_msg_data(&fr[1]), zmq_msg_size(&fr[1]), ZMQ_SNDMORE);
        zmq_send(s->zap, ok ? "200" : "400", 3, ZMQ_SNDMORE);
        zmq_send(s->zap, ok ? "OK" : "client key not allowed", ok ? 2 : 22, ZMQ_SNDMORE);
        zmq_send(s->zap, "", 0, ZMQ_SNDMORE);
        zmq_send(s->zap, "", 0, 0);
    }
    if (!ok)
        logf_(s, COIL_LOG_WARN, "refused a client without an allowed CURVE key");
    for (int i = 0; i < n; i++)
        zmq_msg_close(&fr[i]);
}

static int setup_curve(srv_t *s, coil_err_t *err)
{
    const coil_config_t *c = s->cfg;
    char secret[64] = "";
    FILE *f = fopen(c->curve.server_secret_key_file, "r");
    if (!f || !fgets(secret, sizeof secret, f)) {
        if (f)
            fclose(f);
        return coil_err_set(err, COIL_ECONFIG, "%s: cannot read the server secret key", c->curve.server_secret_key_file);
    }
    fclose(f);
    secret[strcspn(secret, " \t\r\n")] = '\0';
    if (strlen(secret) != 40)
        return coil_err_set(err, COIL_ECONFIG, "%s: expected a 40-character Z85 secret key",
                            c->curve.server_secret_key_file);
    s->zap = zmq_socket(s->ctx, ZMQ_REP);
    if (!s->zap || zmq_bind(s->zap, "inproc://zeromq.zap.01") != 0)
        return coil_err_set(err, COIL_EIO, "cannot start the ZAP handler: %s", zmq_strerror(zmq_errno()));
    int one = 1;
    void *socks[2] = {s->clients, s->events};
    for (int i = 0; i < 2; i++)
        if (zmq_setsockopt(socks[i], ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
            zmq_setsockopt(socks[i], ZMQ_CURVE_SECRETKEY, secret, 40) != 0 ||
            zmq_setsockopt(socks[i], ZMQ_ZAP_DOMAIN, "coil", 4) != 0)
            return coil_err_set(err, COIL_ECONFIG, "CURVE setup failed: %s", zmq_strerror(zmq_errno()));
    return 0;
}

/* Socket monitor events: frame 1 = u16 event + u32 value, frame 2 = address. */
static void on_monitor(srv_t *s)
{
    zmq_msg_t a, b;
    zmq_msg_init(&a);
    zmq_msg_init(&b);
    if (zmq_msg_recv(&a, s->monitor, 0) >= 0 && zmq_msg_more(&a) && zmq_msg_recv(&b, s->monitor, 0) >= 0 &&
        zmq_msg_size(&a) >= 2) {
        uint16_t ev;
        memcpy(&ev, zmq_msg_data(&a), 2);
        if (ev == ZMQ_EVENT_ACCEPTED)
            s->live_clients++;
        else if (ev == ZMQ_EVENT_DISCONNECTED && s->live_clients > 0)
            s->live_clients--;
    }
    zmq_msg_close(&a);
    zmq_msg_close(&b);
}

/* Every second, a job still waiting for a worker tells its (DEALER) client
 * so with a partial reply {"queued": its place, 1 = next}: a client with a
 * timeout knows the request is alive (REQ clients take one reply only). */
static void tell_queued(srv_t *s)
{
    int k = 0;
    for (job_t *j = s->head; j; j = j->next) {
        if (j->parent) /* a part of a job already running */
            continue;
        char *out = NULL;
        size_t len = 0;
        coil_err_t err = {0};
        json_t *res = json_pack("{s:i}", "queued", ++k);
        if (j->route[0] == 0 && coil_proto_reply_partial(j->id, &res, &out, &len, &err) == 0)
            send_client(s, j->route, j->route_len, out, len, NULL, 0);
        json_decref(res);
        free(out);
    }
}

/* ---- endpoints and the ready file ----------------------------------------------------------- */

/* The default workers endpoint ("ipc:" "//" "*"): a directory only this user can enter, made for this instance
 * under $XDG_RUNTIME_DIR (or $TMPDIR, or /tmp), removed at exit. */
static int private_ipc(srv_t *s, char *ep, size_t cap, coil_err_t *err)
{
    const char *base = getenv("XDG_RUNTIME_DIR");
    struct stat sb;
    if (!base || !*base || stat(base, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(base, W_OK) != 0)
        base = getenv("TMPDIR");
    if (!base || !*base || stat(base, &sb) != 0 || !S_ISDIR(sb.st_mode))
        base = "/tmp";
    /* sockaddr_un holds 107 bytes: "ipc://" + dir + "/workers" must fit */
    if (snprintf(s->ipc_dir, sizeof s->ipc_dir, "%s/coild-XXXXXX", base) >= 90)
        return coil_err_set(err, COIL_ECONFIG,
                            "endpoints.workers \"ipc://*\": the runtime directory path is too long for a socket "
                            "(more than 80 bytes); set endpoints.workers to an ipc:// path");
    if (!mkdtemp(s->ipc_dir)) {
        int e = errno;
        s->ipc_dir[0] = '\0';
        return coil_err_set(err, COIL_EIO, "cannot make a private directory for the worker socket in %s: %s", base,
                            strerror(e));
    }
    snprintf(ep, cap, "ipc://%s/workers", s->ipc_dir);
    return 0;
}

/* At exit: the worker socket file (libzmq leaves it) and its private directory. */
static void remove_ipc(srv_t *s)
{
    if (strncmp(s->ep[2], "ipc://", 6) == 0 && s->ep[2][6] && s->ep[2][6] != '*' && s->ep[2][6] != '@')
        unlink(s->ep[2] + 6);
    if (s->ipc_dir[0])
        rmdir(s->ipc_dir);
}

static int all_ready(srv_t *s)
{
    int ready = 0;
    for (int i = 0; i < MAX_WORKERS; i++)
        ready += s->w[i].present && s->w[i].ready;
    return ready >= s->cfg->workers;
}

/* --ready-file: {"clients","events","workers","pid"} written (atomically) once
 * every socket is bound and every configured worker is ready. */
static int write_ready(srv_t *s, coil_err_t *err)
{
    s->ready_written = 1;
    if (!s->o->ready_file)
        return 0;
    json_t *j = json_pack("{s:s, s:s, s:s, s:I}", "clients", s->ep[0], "events", s->ep[1], "workers", s->ep[2],
                          "pid", (json_int_t)getpid());
    size_t tl = strlen(s->o->ready_file) + 16;
    char *tmp = malloc(tl);
    int ok = j && tmp;
    if (ok) {
        snprintf(tmp, tl, "%s.tmp", s->o->ready_file);
        FILE *f = fopen(tmp, "w");
        ok = f && json_dumpf(j, f, JSON_COMPACT) == 0 && fputc('\n', f) != EOF;
        ok = f && fclose(f) == 0 && ok;
        ok = ok && rename(tmp, s->o->ready_file) == 0;
        if (!ok)
            unlink(tmp);
    }
    json_decref(j);
    free(tmp);
    if (!ok) {
        s->ready_written = 0;
        return coil_err_set(err, COIL_EIO, "%s: cannot write the ready file: %s", s->o->ready_file, strerror(errno));
    }
    logf_(s, COIL_LOG_INFO, "ready (%s)", s->o->ready_file);
    return 0;
}

/* ---- main loop ---------------------------------------------------------------------------- */

int coil_server_run(const coil_server_options_t *o, coil_err_t *err)
{
    srv_t s;
    int rc = 0;
    memset(&s, 0, sizeof s);
    s.o = o;
    s.cfg = o->cfg;
    s.started = now_s();
    if (getrandom(&s.run_nonce, sizeof s.run_nonce, 0) != (ssize_t)sizeof s.run_nonce) /* keys of this run */
        s.run_nonce = XXH3_64bits_withSeed(&s.started, sizeof s.started, (uint64_t)getpid());
    coil_config_proto_limits(s.cfg, &s.lim);
    size_t sdl = strlen(s.cfg->database) + sizeof ".spool";
    if (!(s.spool_dir = malloc(sdl)))
        return coil_err_set(err, COIL_ENOMEM, "out of memory");
    snprintf(s.spool_dir, sdl, "%s.spool", s.cfg->database);
    if (mkdir(s.spool_dir, 0700) != 0 && errno != EEXIST) {
        rc = coil_err_set(err, COIL_EIO, "%s: %s", s.spool_dir, strerror(errno));
        free(s.spool_dir);
        return rc;
    }
    coil_spool_limits_t spl = {.max_per_client = (size_t)s.cfg->limits.max_uploads_per_client,
                               .max_total = (size_t)s.cfg->limits.max_uploads,
                               .idle_ms = s.cfg->limits.upload_idle_seconds * 1000};
    if (!(s.spools = coil_spool_set_new(s.spool_dir, &spl, err))) {
        free(s.spool_dir);
        return err ? err->code : COIL_ENOMEM;
    }
    s.ctx = zmq_ctx_new();
    s.clients = zmq_socket(s.ctx, ZMQ_ROUTER);
    s.events = zmq_socket(s.ctx, ZMQ_PUB);
    s.workers = zmq_socket(s.ctx, ZMQ_ROUTER);
    int64_t hard = s.cfg->limits.max_message_bytes * 2 + 4096; /* above it libzmq drops the peer */
    int hwm = 1000, zero = 0, one = 1;
    if (!s.clients || !s.events || !s.workers ||
        zmq_setsockopt(s.clients, ZMQ_MAXMSGSIZE, &hard, sizeof hard) != 0 ||
        zmq_setsockopt(s.clients, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(s.clients, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(s.events, ZMQ_SNDHWM, &hwm, sizeof hwm) != 0 ||
        zmq_setsockopt(s.events, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(s.workers, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(s.workers, ZMQ_ROUTER_MANDATORY, &one, sizeof one) != 0) {
        rc = coil_err_set(err, COIL_EIO, "cannot create sockets: %s", zmq_strerror(zmq_errno()));
        goto out;
    }
    if (s.cfg->curve.enabled && (rc = setup_curve(&s, err)))
        goto out;
    if (s.cfg->limits.max_clients > 0) {
        char mon[64];
        snprintf(mon, sizeof mon, "inproc://coild-clients-%p", (void *)&s);
        s.monitor = zmq_socket(s.ctx, ZMQ_PAIR);
        if (!s.monitor || zmq_socket_monitor(s.clients, mon, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) != 0 ||
            zmq_connect(s.monitor, mon) != 0) {
            rc = coil_err_set(err, COIL_EIO, "cannot monitor the client socket: %s", zmq_strerror(zmq_errno()));
            goto out;
        }
    }
    const char *eps[3] = {s.cfg->endpoints.clients, s.cfg->endpoints.events, s.cfg->endpoints.workers};
    void *socks[3] = {s.clients, s.events, s.workers};
    char wep[EP_MAX];
    if (strcmp(eps[2], "ipc://*") == 0) { /* the default: a private directory of this instance */
        if ((rc = private_ipc(&s, wep, sizeof wep, err)))
            goto out;
        eps[2] = wep;
    }
    for (int i = 0; i < 3; i++) {
        size_t l = sizeof s.ep[i];
        if (zmq_bind(socks[i], eps[i]) != 0) {
            rc = coil_err_set(err, COIL_EIO, "cannot bind %s: %s", eps[i], zmq_strerror(zmq_errno()));
            goto out;
        }
        /* port 0 / "*": what was actually bound */
        if (zmq_getsockopt(socks[i], ZMQ_LAST_ENDPOINT, s.ep[i], &l) != 0)
            snprintf(s.ep[i], sizeof s.ep[i], "%s", eps[i]);
    }
    if (o->worker_bin)
        for (int i = 0; i < s.cfg->workers && i < MAX_WORKERS; i++) {
            snprintf(s.w[i].name, sizeof s.w[i].name, "w%d", i);
            s.w[i].present = 1;
            if (spawn(&s, &s.w[i]) != 0) {
                rc = coil_err_set(err, COIL_EIO, "cannot start worker %d: %s", i, strerror(errno));
                goto out;
            }
        }
    logf_(&s, COIL_LOG_INFO, "serving clients on %s, events on %s, %" PRId64 " workers", s.ep[0], s.ep[1],
          s.cfg->workers);
    if (!o->worker_bin && (rc = write_ready(&s, err)))
        goto out;
    while (!(o->stop && *o->stop)) {
        zmq_pollitem_t it[4] = {{.socket = s.clients, .events = ZMQ_POLLIN},
                                {.socket = s.workers, .events = ZMQ_POLLIN},
                                {.socket = s.monitor, .events = ZMQ_POLLIN},
                                {.socket = s.zap, .events = ZMQ_POLLIN}};
        int n_it = s.zap ? 4 : 3;
        if (!s.monitor) { /* keep the array dense */
            it[2] = it[3];
            n_it--;
        }
        int pr = zmq_poll(it, n_it, 100);
        if (pr < 0 && zmq_errno() != EINTR) {
            rc = coil_err_set(err, COIL_EIO, "poll: %s", zmq_strerror(zmq_errno()));
            break;
        }
        if (pr > 0) {
            for (int k = 0; k < 64 && (it[1].revents & ZMQ_POLLIN); k++) { /* workers first: they free capacity */
                int ev;
                size_t evl = sizeof ev;
                on_worker(&s);
                if (zmq_getsockopt(s.workers, ZMQ_EVENTS, &ev, &evl) != 0 || !(ev & ZMQ_POLLIN))
                    break;
            }
            if (s.monitor) { /* connections first: a request is judged by max_clients as of its arrival */
                zmq_pollitem_t mi = {.socket = s.monitor, .events = ZMQ_POLLIN};
                while (zmq_poll(&mi, 1, 0) > 0)
                    on_monitor(&s);
            }
            for (int k = 0; k < 64 && (it[0].revents & ZMQ_POLLIN); k++) {
                int ev;
                size_t evl = sizeof ev;
                on_client(&s);
                if (zmq_getsockopt(s.clients, ZMQ_EVENTS, &ev, &evl) != 0 || !(ev & ZMQ_POLLIN))
                    break;
            }
            for (int k = 2; k < n_it; k++) {
                if (!(it[k].revents & ZMQ_POLLIN))
                    continue;
                if (it[k].socket == s.monitor)
                    while (zmq_poll(&it[k], 1, 0) > 0)
                        on_monitor(&s);
                else if (it[k].socket == s.zap)
                    on_zap(&s);
            }
        }
        reap(&s);
        if (!s.ready_written && all_ready(&s) && (rc = write_ready(&s, err)))
            break;
        double t = now_s();
        if (t - s.last_heartbeat >= 1.0) {
            json_t *h = health(&s);
            char *out;
            size_t len;
            coil_err_t herr = {0};
            s.last_heartbeat = t;
            if (coil_proto_event_heartbeat(t - s.started, json_integer_value(json_object_get(h, "workers")),
                                           json_integer_value(json_object_get(h, "busy")),
                                           json_integer_value(json_object_get(h, "queued")), &out, &len, &herr) == 0) {
                publish(&s, COIL_TOPIC_HEARTBEAT, out, len);
                free(out);
            }
            json_decref(h);
            tell_queued(&s);
            size_t gone = coil_spool_expire(s.spools, (int64_t)(t * 1000.0));
            if (gone) {
                s.n_uploads_expired += gone;
                logf_(&s, COIL_LOG_INFO, "discarded %zu streamed upload%s with no part for %" PRId64 " s "
                      "(limits.upload_idle_seconds)", gone, gone == 1 ? "" : "s", s.cfg->limits.upload_idle_seconds);
            }
        }
        int local = 0, given_up = 0;
        const worker_t *last = NULL;
        for (int i = 0; o->worker_bin && i < MAX_WORKERS; i++) {
            if (!s.w[i].present)
                continue;
            local++;
            if (s.w[i].gave_up) {
                given_up++;
                last = &s.w[i];
            }
            if (s.w[i].pid == 0 && s.w[i].respawn_at > 0 && t >= s.w[i].respawn_at) {
                s.w[i].respawn_at = 0;
                spawn(&s, &s.w[i]);
            }
        }
        if (local > 0 && given_up == local) {
            rc = coil_err_set(err, COIL_ECONFIG,
                              "no worker could start: every worker exited with an error %d times in a row "
                              "before it was ready (%s: %s); the workers' own error is above",
                              MAX_START_FAILURES, last->name, last->why);
            break;
        }
    }
    /* shutdown: workers drain (checkpoint) and exit; waiting clients are told */
    logf_(&s, COIL_LOG_INFO, "shutting down");
    for (int i = 0; i < MAX_WORKERS; i++)
        if (s.w[i].present && s.w[i].pid > 0)
            kill(s.w[i].pid, SIGTERM);
    for (double t0 = now_s(); now_s() - t0 < 20.0;) {
        int alive = 0;
        for (int i = 0; i < MAX_WORKERS; i++)
            if (s.w[i].present && s.w[i].pid > 0 && waitpid(s.w[i].pid, NULL, WNOHANG) == 0)
                alive++;
            else
                s.w[i].pid = 0;
        if (!alive)
            break;
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < MAX_WORKERS; i++)
        if (s.w[i].present && s.w[i].job) {
            job_t *j = s.w[i].job;
            s.w[i].job = NULL;
            enqueue(&s, j, 0);
        }
    static const char bye[] = "the server is shutting down; send the request again when it is back (an ingest "
                              "resumes from its last checkpoint)";
    while (s.head) {
        job_t *j = s.head;
        s.head = j->next;
        if (!j->parent) /* a sub-job's client is its job's: told below */
            reply_error(&s, j->route, j->route_len, j->id, COIL_EINTR, bye);
        job_free(j);
    }
    while (s.fanning) {
        job_t *j = s.fanning;
        s.fanning = j->fan_next;
        if (!j->fan_failed)
            reply_error(&s, j->route, j->route_len, j->id, COIL_EINTR, bye);
        job_free(j);
    }
out:
    remove_ipc(&s);
    if (o->ready_file && s.ready_written)
        unlink(o->ready_file);
    free(s.spool_dir);
    coil_spool_set_free(s.spools);
    if (s.zap)
        zmq_close(s.zap);
    if (s.monitor) {
        zmq_socket_monitor(s.clients, NULL, 0);
        zmq_close(s.monitor);
    }
    if (s.clients)
        zmq_close(s.clients);
    if (s.events)
        zmq_close(s.events);
    if (s.workers)
        zmq_close(s.workers);
    if (s.ctx)
        zmq_ctx_term(s.ctx);
    return rc;
}
