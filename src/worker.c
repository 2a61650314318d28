/* worker.c -- the service worker: job loop and the operations. */
#include "worker.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "ask.h"
#include "engine.h"
#include "ingest.h"
#include "model.h"
#include "protocol.h"
#include "query.h"
#include "state.h"
#include "tokenizer.h"

typedef struct {
    const coil_worker_options_t *o;
    void *sock;
    coil_model_t *m;
    coil_engine_t *e;
    coil_tokenizer_t *tok;
    coil_store_t *st;
    coil_state_t *state;
    int64_t n_valid;
    char name[64];
    /* the job in hand */
    const void *client;
    size_t client_len;
    const coil_proto_request_t *req;
    const char *key;      /* the job's request key (coild's or the client's), or NULL */
    const char *doc_name; /* for ingest events */
    const char *spool;    /* the job's spooled text file, or NULL */
    char *db_dir;         /* the directory of o->db, for scrub() */
    int fault_after_commit; /* test hook: COIL_WORKER_FAULT=after-append-commit */
    const char *fault_subjob; /* test hook: COIL_WORKER_FAULT=subjob-once:PATH */
    const char *fault_order;  /* test hook: COIL_WORKER_FAULT=subjob-order:DIR */
    const json_t *meta;   /* what coild added to the job (worker.h) */
    int replied;          /* the operation sent its own answer (FANOUT) */
} wk_t;

_Static_assert(COIL_PROTO_KEY_MAX == COIL_STORE_KEY_MAX, "request keys: protocol and store disagree");

/* The test hook: the worker dies right after committing a keyed append,
 * before its reply, as if killed at the worst moment.  coild must re-run
 * the job, and the re-run must find the key instead of appending again. */
static void fault_point(const wk_t *w)
{
    if (w->fault_after_commit && w->key) {
        fprintf(stderr, "%s: COIL_WORKER_FAULT=after-append-commit: exiting after the commit\n", w->name);
        _exit(70);
    }
}

/* The other test hook: the first worker to create PATH (O_EXCL) dies in the
 * middle of a sub-job, after its work and before its reply, as if killed;
 * coild must run the sub-job again elsewhere and the answer must not change. */
static void fault_subjob(const wk_t *w)
{
    if (!w->fault_subjob)
        return;
    int fd = open(w->fault_subjob, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        fprintf(stderr, "%s: COIL_WORKER_FAULT=subjob-once: exiting in the middle of a sub-job\n", w->name);
        _exit(71);
    }
}

/* The third: sub-jobs finish out of the plan's order.  Sub-job 0 of a job
 * with several waits, after its work, until another sub-job of the same
 * request (its id names the marker in DIR) has finished, and then writes
 * DIR/ID.reordered; the others write DIR/ID.done before their reply.  With
 * two or more workers, sub-job 0's result comes after sub-job 1's whatever
 * the machine's speed.  (A hang guard of 120 s; then it goes on, and the
 * missing .reordered file tells the test.) */
static void fault_order(const wk_t *w, int64_t index, int64_t count)
{
    char id[96], path[4200];
    char *ids = json_dumps(w->req->id, JSON_ENCODE_ANY | JSON_COMPACT);
    size_t k = 0;
    for (const char *c = ids ? ids : "x"; *c && k < sizeof id - 1; c++) /* a file name: [A-Za-z0-9_-] */
        id[k++] = (isalnum((unsigned char)*c) || *c == '-' || *c == '_') ? *c : '_';
    id[k] = '\0';
    free(ids);
    if (count < 2)
        return;
    snprintf(path, sizeof path, "%s/%s.done", w->fault_order, id);
    if (index > 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0)
            close(fd);
        return;
    }
    for (int i = 0; i < 12000 && access(path, F_OK) != 0; i++) /* the hang guard: 120 s */
        usleep(10000);
    if (access(path, F_OK) == 0) {
        snprintf(path, sizeof path, "%s/%s.reordered", w->fault_order, id);
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0)
            close(fd);
    }
}

/* If the job's key was used already, *result gets the first run's result
 * (marked "replayed": true) and 1 is returned; 0 if the key is new or there
 * is none; an error code otherwise. */
static int replayed(wk_t *w, json_t **result, coil_err_t *err)
{
    coil_store_request_info_t ri;
    const coil_proto_request_t *r = w->req;
    if (!w->key)
        return 0;
    int rc = coil_store_request_find(w->st, w->key, r->session, &ri, err);
    if (rc)
        return rc == COIL_ENOTFOUND ? 0 : rc;
    if (ri.result) {
        *result = json_loads(ri.result, 0, NULL);
        free(ri.result);
        if (!*result || !json_is_object(*result)) {
            json_decref(*result);
            *result = NULL;
            return coil_err_set(err, COIL_EDB, "request key '%s': the recorded result is not a JSON object", w->key);
        }
    } else {
        *result = json_pack("{s:s, s:I, s:I}", "session", ri.session, "tokens",
                            (json_int_t)(ri.head_after - ri.head_before), "head", (json_int_t)ri.head_after);
    }
    json_object_set_new(*result, "replayed", json_true());
    return 1;
}

/* ---- sending ---------------------------------------------------------------- */

/* Error text for a remote client: says what was wrong with the request, not
 * where the server keeps its files.  The store and the loaders prefix their
 * messages with a file path ("/srv/coil.db: no session ..."): such a prefix
 * is dropped and any other mention becomes a neutral name.  malloc'd (NULL
 * on ENOMEM). */
static char *scrub(const wk_t *w, const char *msg)
{
    struct {
        const char *path, *label;
    } known[] = {{w->spool, "the spooled document"}, {w->o->db, "the database"},
                 {w->o->model, "the model directory"}, {w->db_dir, "the database directory"}};
    char *cur = strdup(msg ? msg : "");
    for (size_t k = 0; cur && k < sizeof known / sizeof known[0]; k++) {
        const char *p = known[k].path;
        size_t pl = p ? strlen(p) : 0;
        if (pl == 0 || (pl == 1 && p[0] == '.'))
            continue;
        for (int prefix = 1; prefix >= 0 && cur; prefix--) {
            const char *hit;
            size_t from = 0; /* past what was put in already (a label may contain the path) */
            while (cur && (hit = strstr(cur + from, p))) {
                size_t at = (size_t)(hit - cur), cut = pl;
                const char *with = known[k].label;
                if (prefix) { /* "PATH: " (or "PATH/x: ") as a message's lead: drop it */
                    const char *colon = strstr(hit + pl, ": ");
                    if (!colon || memchr(hit + pl, ' ', (size_t)(colon - hit - pl)))
                        break;
                    cut = (size_t)(colon - hit) + 2;
                    with = "";
                }
                size_t wl = strlen(with), n = strlen(cur) - cut + wl + 1;
                char *nx = malloc(n);
                if (nx)
                    snprintf(nx, n, "%.*s%s%s", (int)at, cur, with, hit + cut);
                free(cur);
                cur = nx;
                from = at + wl;
            }
        }
    }
    return cur;
}

static int send_frames(void *sock, const void *const *data, const size_t *len, int n)
{
    for (int i = 0; i < n; i++)
        if (zmq_send(sock, data[i], len[i], i + 1 < n ? ZMQ_SNDMORE : 0) < 0)
            return -1;
    return 0;
}

static void send_event(wk_t *w, const char *topic, char *json, size_t len)
{
    const void *d[3] = {"EVENT", topic, json};
    size_t l[3] = {5, strlen(topic), len};
    send_frames(w->sock, d, l, 3);
    free(json);
}

/* Sends a final reply (kind "REPLY") or a partial one; result is stolen. */
static void send_result(wk_t *w, const char *kind, json_t *result, const void *blob, size_t blob_len)
{
    char *out = NULL;
    size_t len = 0;
    coil_err_t err = {0};
    int rc = strcmp(kind, "PARTIAL") == 0 ? coil_proto_reply_partial(w->req->id, &result, &out, &len, &err)
                                          : coil_proto_reply_ok(w->req->id, &result, &out, &len, &err);
    json_decref(result);
    if (rc) {
        fprintf(stderr, "%s: cannot build a reply: %s\n", w->name, err.msg);
        return;
    }
    const void *d[4] = {kind, w->client, out, blob};
    size_t l[4] = {strlen(kind), w->client_len, len, blob_len};
    send_frames(w->sock, d, l, blob ? 4 : 3);
    free(out);
}

static void send_error(wk_t *w, const json_t *id, int code, const char *msg)
{
    char *out = NULL, *clean = scrub(w, msg);
    size_t len = 0;
    coil_err_t err = {0};
    int rc = coil_proto_reply_error(id, code, clean ? clean : coil_strerror(code), &out, &len, &err);
    free(clean);
    if (rc != 0)
        return;
    const void *d[3] = {"REPLY", w->client, out};
    size_t l[3] = {5, w->client_len, len};
    send_frames(w->sock, d, l, 3);
    free(out);
}

/* ---- operations ----------------------------------------------------------------- */


static void on_progress(const coil_ingest_progress_t *p, void *ud)
{
    wk_t *w = ud;
    char *out;
    size_t len;
    coil_err_t err = {0};
    if (coil_proto_event_ingest_progress(w->doc_name, p->tokens, p->bytes, p->total_bytes, p->tokens_per_s, &out,
                                         &len, &err) == 0)
        send_event(w, "ingest.progress", out, len);
    /* and to the client that asked, as a partial reply: it knows the ingest
     * is alive without subscribing to events (coil --connect's --timeout) */
    json_t *res = json_pack("{s:I, s:I, s:f}", "tokens", (json_int_t)p->tokens, "bytes", (json_int_t)p->bytes,
                            "tokens_per_s", p->tokens_per_s);
    if (res)
        json_object_set_new(res, "total_bytes", p->total_bytes >= 0 ? json_integer(p->total_bytes) : json_null());
    if (res)
        send_result(w, "PARTIAL", res, NULL, 0);
}

static int op_ingest(wk_t *w, const char *spool, json_t **result, coil_err_t *err)
{
    coil_ingest_result_t res;
    coil_ingest_options_t io = {.chunk_tokens = w->req->chunk > 0 ? w->req->chunk : w->o->chunk_tokens,
                                .replace = w->req->replace,
                                .stop = w->o->stop,
                                .progress = on_progress,
                                .progress_ud = w,
                                .progress_interval_s = 0.5,
                                .model_path = w->o->model};
    char *out;
    size_t len;
    if (!spool)
        return coil_err_set(err, COIL_EPROTO, "ingest job without spooled text");
    w->doc_name = w->req->name;
    int rc = coil_ingest_file(w->st, w->e, w->tok, w->req->name, spool, &io, &res, err);
    if (rc == COIL_EINTR)
        return rc;
    if (rc) {
        coil_err_t e2 = {0};
        char *clean = scrub(w, err->msg); /* events go to remote subscribers too */
        if (coil_proto_event_doc_failed(w->req->name, rc, clean ? clean : coil_strerror(rc), &out, &len, &e2) == 0)
            send_event(w, "doc.failed", out, len);
        free(clean);
        return rc;
    }
    coil_err_t e2 = {0};
    if (coil_proto_event_doc_complete(w->req->name, res.tokens, res.bytes, res.seconds, &out, &len, &e2) == 0)
        send_event(w, "doc.complete", out, len);
    *result = json_pack("{s:s, s:I, s:I, s:f, s:I, s:I, s:b}", "doc", w->req->name, "tokens", (json_int_t)res.tokens,
                        "bytes", (json_int_t)res.bytes, "seconds", res.seconds, "resumed_at",
                        (json_int_t)res.resumed_at, "checkpoints", (json_int_t)res.checkpoints, "already",
                        res.already);
    return 0;
}

static int doc_json_cb(const coil_store_doc_info_t *d, void *ud)
{
    json_t *arr = ud;
    json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I}", "name", d->name, "status", d->status, "tokens",
                          (json_int_t)d->tokens, "bytes", (json_int_t)d->bytes, "chunks", (json_int_t)d->n_chunks,
                          "checkpoints", (json_int_t)d->n_checkpoints, "checkpoint_bytes",
                          (json_int_t)d->checkpoint_bytes);
    if (o && d->error)
        json_object_set_new(o, "error", json_string(d->error));
    json_array_append_new(arr, o);
    return 0;
}

static int op_docs(wk_t *w, const char *name, json_t **result, coil_err_t *err)
{
    json_t *arr = json_array();
    int rc = coil_store_doc_list(w->st, name, doc_json_cb, arr, err);
    if (rc) {
        json_decref(arr);
        return rc;
    }
    if (name) {
        *result = json_incref(json_array_get(arr, 0));
        json_decref(arr);
    } else {
        *result = json_pack("{s:o}", "docs", arr);
    }
    return 0;
}

static int hit_cb(const coil_store_hit_t *h, void *ud)
{
    json_t *marks = json_array();
    for (size_t i = 0; marks && i < h->n_marks; i++)
        json_array_append_new(marks, json_pack("[I, I]", (json_int_t)h->marks[2 * i], (json_int_t)h->marks[2 * i + 1]));
    json_array_append_new(ud, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:s, s:o}", "doc", h->doc_name, "chunk",
                                        (json_int_t)h->seq, "token_start", (json_int_t)h->token_start, "token_end",
                                        (json_int_t)h->token_end, "byte_start", (json_int_t)h->byte_start,
                                        "byte_end", (json_int_t)h->byte_end, "score", h->score, "snippet",
                                        h->snippet, "marks", marks));
    return 0;
}

/* Resumes the request's session or document (at req->at or its end). */
static int resume_target(wk_t *w, int64_t *grid, coil_err_t *err)
{
    return coil_resume_target(w->st, w->e, w->req->session, w->req->doc, w->req->at, w->state, grid, err);
}

static int encode(wk_t *w, const char *text, size_t len, int32_t **ids, size_t *n, coil_err_t *err)
{
    int rc = coil_tokenizer_encode(w->tok, text, len, ids, n, err);
    if (!rc && *n == 0) {
        free(*ids);
        *ids = NULL;
        return coil_err_set(err, COIL_EINVAL, "the text encodes to no tokens");
    }
    return rc;
}

typedef struct {
    wk_t *w;
    json_t *text; /* accumulated */
    char *buf;
    size_t len, cap;
    int64_t k;
} gen_ctx_t;

static int on_token(int32_t id, const char *text, size_t len, void *ud)
{
    gen_ctx_t *g = ud;
    if (len) {
        if (g->len + len + 1 > g->cap) {
            size_t cap = g->cap ? 2 * g->cap : 256;
            while (cap < g->len + len + 1)
                cap *= 2;
            char *nb = realloc(g->buf, cap);
            if (!nb)
                return 1;
            g->buf = nb;
            g->cap = cap;
        }
        memcpy(g->buf + g->len, text, len);
        g->len += len;
        g->buf[g->len] = '\0';
    }
    if (id >= 0 && g->w->req->stream)
        send_result(g->w, "PARTIAL",
                    json_pack("{s:I, s:i, s:s%}", "index", (json_int_t)g->k++, "id", (int)id, "text", text ? text : "",
                              len),
                    NULL, 0);
    return 0;
}

static int op_generate(wk_t *w, json_t **result, coil_err_t *err)
{
    const coil_proto_request_t *r = w->req;
    int32_t *pids = NULL, *gen = NULL, *all = NULL;
    size_t np = 0;
    int64_t ng = 0, grid = 512;
    void *blob = NULL;
    gen_ctx_t g = {.w = w};
    int rc;
    if (r->append && !r->session)
        return coil_err_set(err, COIL_EINVAL, "append needs a session");
    if (r->append && (rc = replayed(w, result, err)))
        return rc < 0 ? rc : 0;
    if ((rc = resume_target(w, &grid, err)))
        return rc;
    if (r->prompt && r->prompt_len &&
        ((rc = encode(w, r->prompt, r->prompt_len, &pids, &np, err)) ||
         (rc = coil_feed_grid(w->e, w->state, pids, (int64_t)np, grid, NULL, 0, err))))
        goto out;
    if (!(gen = malloc((size_t)r->n * sizeof *gen))) {
        rc = coil_err_set(err, COIL_ENOMEM, "out of memory");
        goto out;
    }
    coil_sampler_options_t so = {.temperature = (float)r->temperature, .top_p = (float)r->top_p,
                                 .seed = (uint64_t)r->seed, .n_valid = w->n_valid};
    if ((rc = coil_query_generate(w->e, w->state, w->tok, &so, r->n, on_token, &g, gen, &ng, err)))
        goto out;
    if (r->append) {
        size_t bs = coil_state_blob_size(w->state);
        all = malloc((np + (size_t)ng) * sizeof *all);
        blob = malloc(bs);
        if (!all || !blob) {
            rc = coil_err_set(err, COIL_ENOMEM, "out of memory");
            goto out;
        }
        if (np)
            memcpy(all, pids, np * sizeof *all);
        memcpy(all + np, gen, (size_t)ng * sizeof *all);
        if ((rc = coil_state_serialize(w->state, blob, bs, err)))
            goto out;
    }
    json_t *ids = json_array();
    for (int64_t i = 0; i < ng; i++)
        json_array_append_new(ids, json_integer(gen[i]));
    json_t *res = json_pack("{s:s%, s:o, s:I}", "text", g.buf ? g.buf : "", g.len, "ids", ids, "position",
                            (json_int_t)coil_state_position(w->state));
    if (!res) {
        rc = coil_err_set(err, COIL_ENOMEM, "out of memory building the reply");
        goto out;
    }
    if (r->session)
        json_object_set_new(res, "session", json_string(r->session));
    if (r->append) { /* the result goes into the append's transaction, for a repeat */
        char *text = w->key ? json_dumps(res, JSON_COMPACT) : NULL;
        coil_store_request_t rq = {.key = w->key, .result = text};
        coil_store_ckpt_t ck = {.position = coil_state_position(w->state),
                                .fingerprint = coil_state_fingerprint(w->state), .data = blob,
                                .size = coil_state_blob_size(w->state)};
        if (w->key && !text)
            rc = coil_err_set(err, COIL_ENOMEM, "out of memory");
        else
            rc = coil_store_session_append(w->st, r->session, all, np + (size_t)ng, &ck, w->key ? &rq : NULL, err);
        free(text);
        if (rc) {
            json_decref(res);
            goto out;
        }
        fault_point(w);
    }
    *result = res;
out:
    free(g.buf);
    free(blob);
    free(all);
    free(gen);
    free(pids);
    return rc;
}

/* The request's ask options. */
static coil_ask_options_t ask_options(wk_t *w, const int32_t *aids, size_t na, gen_ctx_t *g)
{
    const coil_proto_request_t *r = w->req;
    return (coil_ask_options_t){.strategy = r->strategy ? coil_ask_strategy_parse(r->strategy) : COIL_ASK_AUTO,
                                .evidence_k = (int)r->evidence,
                                .candidates_m = (int)r->candidates,
                                .max_reread_tokens = r->budget,
                                .n_new = r->answer ? 0 : r->n,
                                .sampler = {.temperature = (float)r->temperature, .top_p = (float)r->top_p,
                                            .seed = (uint64_t)r->seed, .n_valid = w->n_valid},
                                .answer_ids = aids,
                                .n_answer = na,
                                .on_token = g ? on_token : NULL,
                                .on_token_ud = g};
}

static int json_int_field(const json_t *o, const char *k, int64_t *v)
{
    const json_t *x = json_object_get(o, k);
    if (!json_is_integer(x))
        return -1;
    *v = (int64_t)json_integer_value(x);
    return 0;
}

/* A sub-job of a select ask spread by coild: one candidate, meta "sub":
 * {"kind": "ask.candidate", "index", "count", "chunk", "token_start",
 * "token_end"} (index of count candidates);
 * the reply's result {"index", "chunk", "entropy", "tokens"} goes to coild,
 * which keeps it for the job's last stage. */
static int op_ask_candidate(wk_t *w, const json_t *sub, json_t **result, coil_err_t *err)
{
    const coil_proto_request_t *r = w->req;
    coil_ask_evidence_t ev = {0};
    int64_t index, count = 0, tokens = 0;
    double h = NAN;
    const char *kind = json_string_value(json_object_get(sub, "kind"));
    if (!kind || strcmp(kind, "ask.candidate") != 0 || json_int_field(sub, "index", &index) ||
        json_int_field(sub, "chunk", &ev.seq) || json_int_field(sub, "token_start", &ev.token_start) ||
        json_int_field(sub, "token_end", &ev.token_end) || json_int_field(sub, "count", &count))
        return coil_err_set(err, COIL_EPROTO, "a sub-job that is not an ask candidate");
    if (!r->doc)
        return coil_err_set(err, COIL_EPROTO, "an ask candidate without its document");
    coil_ask_options_t ao = ask_options(w, NULL, 0, NULL);
    int rc = coil_ask_candidate(w->st, w->e, w->tok, r->doc, r->question, r->question_len, &ao, &ev, w->state, &h,
                                &tokens, err);
    if (rc)
        return rc;
    fault_subjob(w);
    if (w->fault_order)
        fault_order(w, index, count);
    *result = json_pack("{s:I, s:I, s:f, s:I}", "index", (json_int_t)index, "chunk", (json_int_t)ev.seq, "entropy", h,
                        "tokens", (json_int_t)tokens);
    return 0;
}

/* The last stage of a spread select, meta "fanout": {"plan": the first
 * stage's plan, "results": the candidates' results in the plan's order}. */
static int fanned_plan(const json_t *fan, coil_ask_result_t *res, coil_err_t *err)
{
    const json_t *results = json_object_get(fan, "results"), *x;
    size_t i;
    int rc = coil_ask_plan_from_json(json_object_get(fan, "plan"), res, err);
    if (rc)
        return rc;
    if (res->strategy != COIL_ASK_SELECT || !json_is_array(results) || json_array_size(results) != res->n_evidence)
        return coil_err_set(err, COIL_EPROTO, "a spread ask whose results do not match its plan");
    json_array_foreach(results, i, x)
    {
        int64_t index, chunk, tokens;
        const json_t *h = json_object_get(x, "entropy");
        if (json_int_field(x, "index", &index) || json_int_field(x, "chunk", &chunk) ||
            json_int_field(x, "tokens", &tokens) || !json_is_number(h) || index != (int64_t)i ||
            chunk != res->evidence[i].seq)
            return coil_err_set(err, COIL_EPROTO, "a spread ask: result %zu does not match candidate %zu", i, i);
        res->evidence[i].entropy = json_number_value(h);
        res->evidence[i].tokens_read = tokens;
    }
    return 0;
}

/* Sends FANOUT: the ask goes on as one sub-job per candidate (worker.h). */
static int send_fanout(wk_t *w, const coil_ask_result_t *res, coil_err_t *err)
{
    json_t *subs = json_array(), *plan = coil_ask_result_json(res, NULL, 0, 0);
    for (size_t i = 0; subs && i < res->n_evidence; i++) {
        const coil_ask_evidence_t *e = &res->evidence[i];
        json_array_append_new(subs, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "kind", "ask.candidate", "index",
                                              (json_int_t)i, "count", (json_int_t)res->n_evidence, "chunk",
                                              (json_int_t)e->seq, "token_start", (json_int_t)e->token_start,
                                              "token_end", (json_int_t)e->token_end));
    }
    json_t *msg = subs && plan ? json_pack("{s:o, s:o}", "plan", plan, "subs", subs) : NULL;
    char *out = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    if (!msg) {
        json_decref(subs);
        json_decref(plan);
    }
    json_decref(msg);
    if (!out)
        return coil_err_set(err, COIL_ENOMEM, "out of memory");
    const void *d[3] = {"FANOUT", w->client, out};
    size_t l[3] = {6, w->client_len, strlen(out)};
    send_frames(w->sock, d, l, 3);
    free(out);
    w->replied = 1;
    return 0;
}

/* ask: coil_ask (src/ask.h) on the request's document or session; answer
 * tokens streamed as partials; an ask of a session appends what its state
 * read (passages, question, answer) with the request key, exactly once.
 * With meta "split" (coild spreads select's candidates over its workers) a
 * plan that resolves to select is handed back as a FANOUT instead; meta
 * "sub" is one candidate, meta "fanout" the last stage: the answer. */
static int op_ask(wk_t *w, json_t **result, coil_err_t *err)
{
    const coil_proto_request_t *r = w->req;
    const json_t *sub = json_object_get(w->meta, "sub"), *fan = json_object_get(w->meta, "fanout");
    coil_ask_result_t res = {0};
    int32_t *aids = NULL;
    size_t na = 0;
    void *blob = NULL;
    gen_ctx_t g = {.w = w};
    int rc;
    if (sub)
        return op_ask_candidate(w, sub, result, err);
    if (r->session && (rc = replayed(w, result, err)))
        return rc < 0 ? rc : 0;
    if (r->answer && r->session)
        return coil_err_set(err, COIL_EINVAL, "ask: 'answer' scores an answer; it does not continue a session");
    if (r->answer && (rc = encode(w, r->answer, r->answer_len, &aids, &na, err)))
        return rc;
    coil_ask_options_t ao = ask_options(w, aids, na, &g);
    if (fan) {
        if ((rc = fanned_plan(fan, &res, err)))
            goto out;
        res.seconds = json_number_value(json_object_get(w->meta, "elapsed_s")); /* the stages before */
    } else {
        if ((rc = coil_ask_plan(w->st, w->tok, r->session, r->doc, r->question, r->question_len, &ao, &res, err)))
            goto out;
        if (json_is_true(json_object_get(w->meta, "split")) && res.strategy == COIL_ASK_SELECT && !r->session) {
            rc = send_fanout(w, &res, err);
            goto out;
        }
    }
    if ((rc = coil_ask_answer(w->st, w->e, w->tok, r->session, r->doc, r->question, r->question_len, &ao, w->state,
                              &res, err)))
        goto out;
    json_t *out = coil_ask_result_json(&res, g.buf, g.len, r->answer != NULL);
    if (!out) {
        rc = coil_err_set(err, COIL_ENOMEM, "out of memory building the reply");
        goto out;
    }
    if (r->session && res.n_fed) {
        size_t bs = coil_state_blob_size(w->state);
        json_object_set_new(out, "session", json_string(r->session));
        json_object_set_new(out, "appended", json_integer((json_int_t)res.n_fed));
        json_object_set_new(out, "position", json_integer((json_int_t)coil_state_position(w->state)));
        char *text = w->key ? json_dumps(out, JSON_COMPACT) : NULL;
        coil_store_request_t rq = {.key = w->key, .result = text};
        if (!(blob = malloc(bs)) || (w->key && !text)) {
            rc = coil_err_set(err, COIL_ENOMEM, "out of memory");
        } else if (!(rc = coil_state_serialize(w->state, blob, bs, err))) {
            coil_store_ckpt_t ck = {.position = coil_state_position(w->state),
                                    .fingerprint = coil_state_fingerprint(w->state), .data = blob, .size = bs};
            rc = coil_store_session_append(w->st, r->session, res.fed, res.n_fed, &ck, w->key ? &rq : NULL, err);
        }
        free(text);
        if (rc) {
            json_decref(out);
            goto out;
        }
        fault_point(w);
    }
    *result = out;
out:
    free(g.buf);
    free(blob);
    free(aids);
    coil_ask_result_free(&res);
    return rc;
}

static int op_score(wk_t *w, json_t **result, coil_err_t *err)
{
    int32_t *ids = NULL;
    size_t n = 0;
    double *lp = NULL, total = 0;
    int64_t grid = 512;
    int rc;
    if ((rc = resume_target(w, &grid, err)) || (rc = encode(w, w->req->text, w->req->text_len, &ids, &n, err)))
        return rc;
    if (!(lp = malloc(n * sizeof *lp))) {
        free(ids);
        return coil_err_set(err, COIL_ENOMEM, "out of memory");
    }
    if (!(rc = coil_query_score(w->e, w->state, ids, n, grid, lp, &total, err))) {
        json_t *toks = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(toks, json_pack("{s:i, s:f}", "id", ids[i], "logprob", lp[i]));
        *result = json_pack("{s:f, s:o}", "logprob", total, "tokens", toks);
    }
    free(lp);
    free(ids);
    return rc;
}

/* Runs one job; sends its reply (or REQUEUE).  Returns COIL_EINTR when the
 * worker must stop. */
static int handle_job(wk_t *w, const char *spool)
{
    const coil_proto_request_t *r = w->req;
    coil_err_t err = {0};
    json_t *result = NULL;
    void *blob = NULL;
    size_t blob_len = 0;
    char id[COIL_STORE_SESSION_ID_LEN + 1];
    int64_t doc;
    int rc = 0;

    switch (r->op) {
    case COIL_OP_INGEST: rc = op_ingest(w, spool, &result, &err); break;
    case COIL_OP_DOC_STATUS: rc = op_docs(w, r->name, &result, &err); break;
    case COIL_OP_DOC_LIST: rc = op_docs(w, NULL, &result, &err); break;
    case COIL_OP_SEARCH: {
        json_t *hits = json_array();
        rc = coil_store_search(w->st, r->query, r->doc, (int)r->limit, hit_cb, hits, &err);
        if (rc)
            json_decref(hits);
        else
            result = json_pack("{s:o}", "hits", hits);
        break;
    }
    case COIL_OP_SESSION_NEW: {
        coil_store_progress_t p;
        if (!(rc = coil_store_doc_find(w->st, r->doc, &doc, &err)) &&
            !(rc = coil_store_doc_progress(w->st, doc, &p, &err)) &&
            !(rc = coil_store_session_new(w->st, doc, r->at < 0 ? p.token_end : r->at, id, &err)))
            result = json_pack("{s:s, s:s, s:I}", "session", id, "doc", r->doc, "position",
                               (json_int_t)(r->at < 0 ? p.token_end : r->at));
        break;
    }
    case COIL_OP_SESSION_APPEND: {
        int32_t *ids = NULL;
        size_t n = 0;
        coil_store_request_t rq = {.key = w->key};
        if ((rc = replayed(w, &result, &err)) != 0) {
            rc = rc < 0 ? rc : 0;
            break;
        }
        if (!(rc = encode(w, r->text, r->text_len, &ids, &n, &err)) &&
            !(rc = coil_session_append_ids(w->st, w->e, r->session, ids, n, w->key ? &rq : NULL, w->state, &err))) {
            fault_point(w);
            result = json_pack("{s:s, s:I, s:I}", "session", r->session, "tokens", (json_int_t)n, "head",
                               (json_int_t)coil_state_position(w->state));
        }
        free(ids);
        break;
    }
    case COIL_OP_SESSION_FORK:
        if (!(rc = coil_store_session_fork(w->st, r->session, r->at, id, &err)))
            result = json_pack("{s:s, s:s}", "session", id, "parent", r->session);
        break;
    case COIL_OP_SESSION_DELETE:
        if (!(rc = coil_store_session_delete(w->st, r->session, r->cascade, &err)))
            result = json_pack("{s:s}", "deleted", r->session);
        break;
    case COIL_OP_GENERATE: rc = op_generate(w, &result, &err); break;
    case COIL_OP_ASK: rc = op_ask(w, &result, &err); break;
    case COIL_OP_SCORE: rc = op_score(w, &result, &err); break;
    case COIL_OP_STATE_EXPORT: {
        int64_t grid;
        if (!(rc = resume_target(w, &grid, &err))) {
            blob_len = coil_state_blob_size(w->state);
            if (!(blob = malloc(blob_len)))
                rc = coil_err_set(&err, COIL_ENOMEM, "out of memory");
            else if (!(rc = coil_state_serialize(w->state, blob, blob_len, &err))) {
                char fp[17];
                snprintf(fp, sizeof fp, "%016" PRIx64, coil_state_fingerprint(w->state));
                result = json_pack("{s:I, s:I, s:s}", "position", (json_int_t)coil_state_position(w->state), "bytes",
                                   (json_int_t)blob_len, "fingerprint", fp);
            }
        }
        break;
    }
    case COIL_OP_STATE_IMPORT: {
        /* the blob must be a whole state of this model: read it into one */
        char dims[512];
        int64_t model_id;
        if (!(rc = coil_state_deserialize(w->state, r->blob, r->blob_len, &err)) &&
            !(rc = coil_model_dims_json(w->m, dims, sizeof dims) < 0 ? COIL_EINVAL : 0) &&
            !(rc = coil_store_model_ensure(w->st, coil_model_fingerprint(w->m), w->o->model, dims, &model_id, &err)) &&
            !(rc = coil_store_doc_import(w->st, r->name, model_id, r->blob, r->blob_len,
                                         coil_state_fingerprint(w->state), coil_state_position(w->state), 0, &doc,
                                         &err)))
            result = json_pack("{s:s, s:I}", "name", r->name, "position", (json_int_t)coil_state_position(w->state));
        break;
    }
    default:
        rc = coil_err_set(&err, COIL_EUNSUPPORTED, "operation '%s' is not served by workers", coil_proto_op_name(r->op));
        break;
    }
    if (rc == COIL_EINTR) { /* drained: hand the job back, it resumes elsewhere */
        const void *d[2] = {"REQUEUE", w->client};
        size_t l[2] = {7, w->client_len};
        send_frames(w->sock, d, l, 2);
        free(blob);
        return COIL_EINTR;
    }
    if (rc) {
        send_error(w, r->id, rc, err.msg[0] ? err.msg : coil_strerror(rc));
    } else if (w->replied) { /* FANOUT sent: the job goes on as sub-jobs */
        json_decref(result);
    } else if (!result) {
        send_error(w, r->id, COIL_ENOMEM, "out of memory building the reply");
    } else {
        send_result(w, "REPLY", result, blob, blob_len);
    }
    free(blob);
    return 0;
}

/* ---- the loop ------------------------------------------------------------------------ */

typedef struct {
    zmq_msg_t part[6];
    int n;
} frames_t;

static int recv_frames(void *sock, frames_t *f)
{
    f->n = 0;
    for (;;) {
        if (f->n == 6) { /* too many: drain and reject */
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            int more = 1;
            while (more) {
                if (zmq_msg_recv(&extra, sock, 0) < 0)
                    break;
                more = zmq_msg_more(&extra);
            }
            zmq_msg_close(&extra);
            return -1;
        }
        zmq_msg_init(&f->part[f->n]);
        if (zmq_msg_recv(&f->part[f->n], sock, 0) < 0) {
            zmq_msg_close(&f->part[f->n]);
            return -1;
        }
        int more = zmq_msg_more(&f->part[f->n]);
        f->n++;
        if (!more)
            return 0;
    }
}

static void frames_close(frames_t *f)
{
    for (int i = 0; i < f->n; i++)
        zmq_msg_close(&f->part[i]);
    f->n = 0;
}

static int frame_is(zmq_msg_t *m, const char *s)
{
    return zmq_msg_size(m) == strlen(s) && memcmp(zmq_msg_data(m), s, strlen(s)) == 0;
}

int coil_worker_run(const coil_worker_options_t *o, coil_err_t *err)
{
    wk_t w;
    void *ctx = NULL;
    int rc = 0;
    char *path = NULL;
    memset(&w, 0, sizeof w);
    w.o = o;
    if (o->db && (w.db_dir = strdup(o->db))) {
        char *sl = strrchr(w.db_dir, '/');
        if (sl && sl != w.db_dir)
            *sl = '\0';
        else
            w.db_dir[0] = '\0'; /* relative name or "/x": nothing to hide */
    }
    snprintf(w.name, sizeof w.name, "%s", o->name ? o->name : "");
    if (!w.name[0])
        snprintf(w.name, sizeof w.name, "w%ld", (long)getpid());
    const char *fault = getenv("COIL_WORKER_FAULT");
    w.fault_after_commit = fault && strcmp(fault, "after-append-commit") == 0;
    if (fault && strncmp(fault, "subjob-once:", 12) == 0 && fault[12])
        w.fault_subjob = fault + 12;
    if (fault && strncmp(fault, "subjob-order:", 13) == 0 && fault[13])
        w.fault_order = fault + 13;
    coil_engine_options_t eo = {.max_chunk = o->chunk_tokens > 0 ? o->chunk_tokens : 512, .threads = o->threads,
                                .backend = o->backend};
    size_t pl = strlen(o->model) + sizeof "/tokenizer.json";
    if (!(path = malloc(pl))) {
        rc = coil_err_set(err, COIL_ENOMEM, "out of memory");
        goto out;
    }
    snprintf(path, pl, "%s/tokenizer.json", o->model);
    if (!(w.m = coil_model_load(o->model, err)) || !(w.e = coil_engine_new(w.m, &eo, err)) ||
        !(w.state = coil_state_new(w.m, err)) || !(w.tok = coil_tokenizer_load(path, err)) ||
        !(w.st = coil_store_open(o->db, o->store, err))) {
        rc = err->code ? err->code : COIL_EIO;
        goto out;
    }
    w.n_valid = coil_model_config(w.m)->vocab_size;
    if ((int64_t)coil_tokenizer_vocab_size(w.tok) < w.n_valid)
        w.n_valid = (int64_t)coil_tokenizer_vocab_size(w.tok);
    ctx = zmq_ctx_new();
    w.sock = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    int linger = 2000;
    if (!w.sock || zmq_setsockopt(w.sock, ZMQ_ROUTING_ID, w.name, strlen(w.name)) != 0 ||
        zmq_setsockopt(w.sock, ZMQ_LINGER, &linger, sizeof linger) != 0 || zmq_connect(w.sock, o->endpoint) != 0) {
        rc = coil_err_set(err, COIL_EIO, "worker %s: cannot connect to %s: %s", w.name, o->endpoint,
                          zmq_strerror(zmq_errno()));
        goto out;
    }
    char info[256];
    snprintf(info, sizeof info, "{\"worker\":\"%s\",\"pid\":%ld}", w.name, (long)getpid());
    const void *d[2] = {"READY", info};
    size_t l[2] = {5, strlen(info)};
    send_frames(w.sock, d, l, 2);

    /* coild applied the configured limits (which may exceed the protocol's
     * defaults) before it sent the job: none again here */
    coil_proto_limits_t lim;
    lim.max_message_bytes = lim.max_text_bytes = lim.max_document_bytes = SIZE_MAX;
    while (!(o->stop && *o->stop)) {
        zmq_pollitem_t it = {.socket = w.sock, .events = ZMQ_POLLIN};
        int pr = zmq_poll(&it, 1, 200);
        if (pr < 0) {
            if (zmq_errno() == EINTR)
                continue;
            rc = coil_err_set(err, COIL_EIO, "worker %s: poll: %s", w.name, zmq_strerror(zmq_errno()));
            break;
        }
        if (pr == 0)
            continue;
        frames_t f;
        if (recv_frames(w.sock, &f) != 0) {
            frames_close(&f);
            continue;
        }
        if (f.n < 4 || !frame_is(&f.part[0], "JOB")) {
            fprintf(stderr, "%s: ignoring a malformed internal message (%d frames)\n", w.name, f.n);
            frames_close(&f);
            continue;
        }
        w.client = zmq_msg_data(&f.part[1]);
        w.client_len = zmq_msg_size(&f.part[1]);
        coil_proto_request_t *req = NULL;
        coil_err_t perr = {0};
        const void *blob = f.n > 4 ? zmq_msg_data(&f.part[4]) : NULL;
        size_t blob_len = f.n > 4 ? zmq_msg_size(&f.part[4]) : 0;
        int prc = coil_proto_parse_request(zmq_msg_data(&f.part[2]), zmq_msg_size(&f.part[2]), blob, blob_len,
                                           f.n > 4 ? 2 : 1, &lim, &req, &perr);
        if (prc) {
            json_t *rid = coil_proto_recover_id(zmq_msg_data(&f.part[2]), zmq_msg_size(&f.part[2]), 0);
            send_error(&w, rid, prc, perr.msg);
            json_decref(rid);
            frames_close(&f);
            continue;
        }
        json_t *meta = json_loadb(zmq_msg_data(&f.part[3]), zmq_msg_size(&f.part[3]), 0, NULL);
        const char *spool = meta ? json_string_value(json_object_get(meta, "spool")) : NULL;
        const char *mkey = meta ? json_string_value(json_object_get(meta, "key")) : NULL;
        w.key = req->key ? req->key : mkey;
        w.req = req;
        w.spool = spool;
        w.meta = meta;
        w.replied = 0;
        int hrc = handle_job(&w, spool);
        w.req = NULL;
        w.spool = NULL;
        w.meta = NULL;
        json_decref(meta);
        coil_proto_request_free(&req);
        frames_close(&f);
        if (hrc == COIL_EINTR)
            break;
    }
out:
    free(path);
    free(w.db_dir);
    if (w.sock)
        zmq_close(w.sock);
    if (ctx)
        zmq_ctx_term(ctx);
    coil_store_close(&w.st);
    coil_tokenizer_destroy(&w.tok);
    coil_state_destroy(&w.state);
    coil_engine_destroy(&w.e);
    coil_model_destroy(&w.m);
    return rc;
}
