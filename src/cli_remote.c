/* cli_remote.c -- `coil --connect ENDPOINT ...`: the store commands run
 * against a coild server instead of a local database, printing what the
 * local commands print.
 *
 * Nothing waits forever: a request that gets no message at all (reply or
 * partial) within --timeout seconds (default 10) fails with COIL_ETIMEOUT
 * naming the endpoint.  Every partial reply -- a generated token, an
 * ingest's progress -- starts the wait again, so a long ingest goes on as
 * long as it makes progress. */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "store.h"

#define PART_BYTES 262144
#define DEFAULT_TIMEOUT_S 10.0
#define MAX_TIMEOUT_S 86400.0 * 365

typedef struct {
    void *ctx, *sock;
    const char *endpoint;
    int next_id;
    double timeout_s;
} remote_t;

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int remote_open(remote_t *r, const char *endpoint, double timeout_s, coil_err_t *err)
{
    int zero = 0;
    memset(r, 0, sizeof r[0]);
    r->endpoint = endpoint;
    r->timeout_s = timeout_s;
    r->ctx = zmq_ctx_new();
    r->sock = r->ctx ? zmq_socket(r->ctx, ZMQ_DEALER) : NULL;
    if (!r->sock || zmq_setsockopt(r->sock, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_connect(r->sock, endpoint) != 0)
        return coil_err_set(err, COIL_EIO, "%s: %s", endpoint, zmq_strerror(zmq_errno()));
    return 0;
}

static void remote_close(remote_t *r)
{
    if (r->sock)
        zmq_close(r->sock);
    if (r->ctx)
        zmq_ctx_term(r->ctx);
}

static int code_of(const char *name)
{
    static const int codes[] = {
#define COIL_X_CODE(n, v, t) n,
        COIL_ERRORS(COIL_X_CODE)
#undef COIL_X_CODE
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (name && strcmp(coil_err_name(codes[i]), name) == 0)
            return codes[i];
    return COIL_EPROTO;
}

/* Sends op with fields (stolen) and an optional blob; returns the result.
 * Partial replies go to on_partial.  A received blob is returned in *blob. */
static int remote_call(remote_t *r, const char *op, json_t *fields, const void *blob, size_t blob_len,
                       void (*on_partial)(json_t *res), json_t **result, void **out_blob, size_t *out_len,
                       coil_err_t *err)
{
    int id = ++r->next_id;
    json_object_set_new(fields, "v", json_integer(1));
    json_object_set_new(fields, "id", json_integer(id));
    json_object_set_new(fields, "op", json_string(op));
    char *msg = json_dumps(fields, JSON_COMPACT);
    json_decref(fields);
    if (!msg)
        return coil_err_set(err, COIL_ENOMEM, "out of memory");
    int sent = zmq_send(r->sock, msg, strlen(msg), blob ? ZMQ_SNDMORE : 0) >= 0 &&
               (!blob || zmq_send(r->sock, blob, blob_len, 0) >= 0);
    free(msg);
    if (!sent)
        return coil_err_set(err, COIL_EIO, "send: %s", zmq_strerror(zmq_errno()));
    double deadline = mono_s() + r->timeout_s, left;
    int heard = 0; /* a message of this request came: the server is there */
    while ((left = deadline - mono_s()) > 0) {
        zmq_pollitem_t it = {.socket = r->sock, .events = ZMQ_POLLIN};
        long ms = (long)(left * 1000.0) + 1;
        int pr = zmq_poll(&it, 1, ms < 1000 ? ms : 1000);
        if (pr < 0 && zmq_errno() != EINTR)
            return coil_err_set(err, COIL_EIO, "poll: %s", zmq_strerror(zmq_errno()));
        if (pr <= 0)
            continue;
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, r->sock, 0);
        json_t *rep = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        if (more) {
            zmq_msg_init(&m);
            zmq_msg_recv(&m, r->sock, 0);
            if (out_blob && rep && json_integer_value(json_object_get(rep, "id")) == id) {
                *out_len = zmq_msg_size(&m);
                *out_blob = malloc(*out_len ? *out_len : 1);
                if (*out_blob)
                    memcpy(*out_blob, zmq_msg_data(&m), *out_len);
            }
            zmq_msg_close(&m);
        }
        if (!rep || json_integer_value(json_object_get(rep, "id")) != id) {
            json_decref(rep);
            continue;
        }
        heard = 1;
        deadline = mono_s() + r->timeout_s; /* alive: wait again */
        if (json_is_true(json_object_get(rep, "partial"))) {
            if (on_partial)
                on_partial(json_object_get(rep, "result"));
            json_decref(rep);
            continue;
        }
        int rc = 0;
        if (!json_is_true(json_object_get(rep, "ok"))) {
            json_t *e = json_object_get(rep, "error");
            const char *msg2 = json_string_value(json_object_get(e, "message"));
            rc = coil_err_set(err, code_of(json_string_value(json_object_get(e, "code"))), "server: %s",
                              msg2 ? msg2 : "error");
        } else if (result) {
            *result = json_incref(json_object_get(rep, "result"));
        }
        json_decref(rep);
        return rc;
    }
    if (heard)
        return coil_err_set(err, COIL_ETIMEOUT,
                            "%s: %s: no further reply or progress within %g s (--timeout SECONDS waits longer)",
                            r->endpoint, op, r->timeout_s);
    return coil_err_set(err, COIL_ETIMEOUT,
                        "%s: no reply to %s within %g s: is coild running and listening there? "
                        "(--timeout SECONDS waits longer)",
                        r->endpoint, op, r->timeout_s);
}

static void print_text_partial(json_t *res)
{
    const char *t = json_string_value(json_object_get(res, "text"));
    if (t) {
        cli_put_text(stdout, t, strlen(t));
        fflush(stdout);
    }
}

static int r_ingest(remote_t *r, const cli_opts_t *o, coil_err_t *err)
{
    const char *src = o->file ? o->file : (o->n_pos == 1 && strcmp(o->pos[0], "-") == 0 ? "-" : NULL);
    char *text = NULL;
    size_t len = 0;
    json_t *res = NULL;
    int rc;
    if (!o->name || !src)
        return coil_err_set(err, COIL_EINVAL, "ingest needs --name NAME and --file PATH or -");
    if ((rc = cli_read_all(src, (size_t)1 << 34, &text, &len, err)))
        return rc;
    size_t at = 0;
    for (int part = 0; !rc && (at < len || part == 0); part++) {
        size_t end = at + PART_BYTES < len ? at + PART_BYTES : len;
        while (end < len && ((unsigned char)text[end] & 0xC0) == 0x80)
            end++;
        json_t *f = json_pack("{s:s, s:s%, s:I, s:b, s:b}", "name", o->name, "text", text + at, end - at, "part",
                              (json_int_t)part, "last", end == len, "replace", o->replace);
        if (o->chunk)
            json_object_set_new(f, "chunk", json_integer(o->chunk));
        json_decref(res);
        res = NULL;
        rc = remote_call(r, "ingest", f, NULL, 0, NULL, &res, NULL, NULL, err);
        at = end;
    }
    if (!rc && !o->quiet && json_is_true(json_object_get(res, "already"))) {
        printf("already ingested %s: %" JSON_INTEGER_FORMAT " tokens, %" JSON_INTEGER_FORMAT
               " bytes (same input, model and chunking; nothing to do)\n",
               o->name, json_integer_value(json_object_get(res, "tokens")),
               json_integer_value(json_object_get(res, "bytes")));
    } else if (!rc && !o->quiet) {
        printf("ingested %s: %" JSON_INTEGER_FORMAT " tokens, %" JSON_INTEGER_FORMAT " bytes in %.2f s",
               o->name, json_integer_value(json_object_get(res, "tokens")),
               json_integer_value(json_object_get(res, "bytes")), json_number_value(json_object_get(res, "seconds")));
        if (json_integer_value(json_object_get(res, "resumed_at")) >= 0)
            printf(", resumed from token %" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(res, "resumed_at")));
        printf(", %" JSON_INTEGER_FORMAT " checkpoints written\n", json_integer_value(json_object_get(res, "checkpoints")));
    }
    json_decref(res);
    free(text);
    return rc;
}

/* --session or --doc into fields */
static int target(const cli_opts_t *o, json_t *f, coil_err_t *err)
{
    if (!!o->session == !!o->doc) {
        json_decref(f);
        return coil_err_set(err, COIL_EINVAL, "give exactly one of --session ID and --doc NAME");
    }
    json_object_set_new(f, o->session ? "session" : "doc", json_string(o->session ? o->session : o->doc));
    if (o->at >= 0)
        json_object_set_new(f, "at", json_integer(o->at));
    return 0;
}

int cli_remote(const char *cmd, const cli_opts_t *o)
{
    remote_t r;
    coil_err_t err = {0};
    json_t *res = NULL;
    void *blob = NULL;
    size_t blob_len = 0;
    int rc;
    double timeout = DEFAULT_TIMEOUT_S;
    memset(&r, 0, sizeof r);
    if (o->timeout) {
        char *end = NULL;
        errno = 0;
        timeout = strtod(o->timeout, &end);
        if (errno || end == o->timeout || *end || !(timeout > 0 && timeout <= MAX_TIMEOUT_S)) {
            fprintf(stderr, "coil: --timeout: expected seconds, a number in (0, %.0f], got '%s'\n", MAX_TIMEOUT_S,
                    o->timeout);
            return 2;
        }
    }
    /* the server has its own database: one given here would be silently
     * ignored, so it is an error */
    if (o->db) {
        fprintf(stderr, "coil: --db names a local database, but with --connect the command runs on the server's "
                        "(coild --config FILE / --db FILE chooses it): drop --db, or drop --connect to use it "
                        "locally\n");
        return 2;
    }
    if ((rc = remote_open(&r, o->connect, timeout, &err)))
        goto out;
    if (!strcmp(cmd, "ingest")) {
        rc = r_ingest(&r, o, &err);
    } else if (!strcmp(cmd, "docs")) {
        if (!(rc = remote_call(&r, "doc.list", json_object(), NULL, 0, NULL, &res, NULL, NULL, &err))) {
            json_t *d;
            size_t i;
            printf("%-24s %-10s %10s %12s %7s %6s %9s\n", "name", "status", "tokens", "bytes", "chunks", "ckpts",
                   "ckpt MiB");
            json_array_foreach(json_object_get(res, "docs"), i, d)
            printf("%-24s %-10s %10" JSON_INTEGER_FORMAT " %12" JSON_INTEGER_FORMAT " %7" JSON_INTEGER_FORMAT
                   " %6" JSON_INTEGER_FORMAT " %9.1f\n",
                   json_string_value(json_object_get(d, "name")), json_string_value(json_object_get(d, "status")),
                   json_integer_value(json_object_get(d, "tokens")), json_integer_value(json_object_get(d, "bytes")),
                   json_integer_value(json_object_get(d, "chunks")), json_integer_value(json_object_get(d, "checkpoints")),
                   (double)json_integer_value(json_object_get(d, "checkpoint_bytes")) / 1048576.0);
        }
    } else if (!strcmp(cmd, "search")) {
        if (o->n_pos != 1) {
            rc = coil_err_set(&err, COIL_EINVAL, "search needs one QUERY argument");
            goto out;
        }
        json_t *f = json_pack("{s:s}", "query", o->pos[0]);
        if (o->doc)
            json_object_set_new(f, "doc", json_string(o->doc));
        if (o->limit)
            json_object_set_new(f, "limit", json_integer(o->limit));
        if (!(rc = remote_call(&r, "search", f, NULL, 0, NULL, &res, NULL, NULL, &err))) {
            json_t *h;
            size_t i;
            json_array_foreach(json_object_get(res, "hits"), i, h)
            {
                json_t *jm = json_object_get(h, "marks");
                size_t nm = json_array_size(jm);
                int64_t *marks = nm ? calloc(2 * nm, sizeof *marks) : NULL;
                for (size_t j = 0; marks && j < nm; j++) {
                    marks[2 * j] = json_integer_value(json_array_get(json_array_get(jm, j), 0));
                    marks[2 * j + 1] = json_integer_value(json_array_get(json_array_get(jm, j), 1));
                }
                const char *doc = json_string_value(json_object_get(h, "doc")),
                           *snip = json_string_value(json_object_get(h, "snippet"));
                cli_print_hit((int)i + 1, doc ? doc : "", json_integer_value(json_object_get(h, "chunk")),
                              json_integer_value(json_object_get(h, "token_start")),
                              json_integer_value(json_object_get(h, "token_end")),
                              json_integer_value(json_object_get(h, "byte_start")),
                              json_integer_value(json_object_get(h, "byte_end")),
                              json_number_value(json_object_get(h, "score")), snip ? snip : "", marks,
                              marks ? nm : 0);
                free(marks);
            }
            if (json_array_size(json_object_get(res, "hits")) == 0)
                printf(CLI_NO_MATCHES "\n");
        }
    } else if (!strcmp(cmd, "session")) {
        const char *sub = o->pos[0];
        if (!strcmp(sub, "new")) {
            json_t *f = json_pack("{s:s}", "doc", o->doc ? o->doc : "");
            if (o->at >= 0)
                json_object_set_new(f, "at", json_integer(o->at));
            if (!(rc = remote_call(&r, "session.new", f, NULL, 0, NULL, &res, NULL, NULL, &err)))
                printf("%s\n", json_string_value(json_object_get(res, "session")));
        } else if (!strcmp(sub, "append") && o->n_pos == 2) {
            char *text = NULL;
            size_t len;
            json_t *f = NULL;
            if (!(rc = cli_text_arg(o, &text, &len, &err))) {
                f = json_pack("{s:s, s:s%}", "session", o->pos[1], "text", text, len);
                if (f && o->key)
                    json_object_set_new(f, "key", json_string(o->key));
            }
            if (!rc && !(rc = remote_call(&r, "session.append", f, NULL, 0, NULL, &res, NULL, NULL, &err)) && !o->quiet)
                printf("%s: appended %" JSON_INTEGER_FORMAT " tokens, head %" JSON_INTEGER_FORMAT "%s\n", o->pos[1],
                       json_integer_value(json_object_get(res, "tokens")), json_integer_value(json_object_get(res, "head")),
                       json_is_true(json_object_get(res, "replayed")) ? " (already done with this key)" : "");
            free(text);
        } else if (!strcmp(sub, "fork") && o->n_pos == 2) {
            json_t *f = json_pack("{s:s}", "session", o->pos[1]);
            if (o->at >= 0)
                json_object_set_new(f, "at", json_integer(o->at));
            if (!(rc = remote_call(&r, "session.fork", f, NULL, 0, NULL, &res, NULL, NULL, &err)))
                printf("%s\n", json_string_value(json_object_get(res, "session")));
        } else if (!strcmp(sub, "delete") && o->n_pos == 2) {
            rc = remote_call(&r, "session.delete", json_pack("{s:s, s:b}", "session", o->pos[1], "cascade", o->cascade),
                             NULL, 0, NULL, &res, NULL, NULL, &err);
        } else {
            rc = coil_err_set(&err, COIL_EINVAL, "session over --connect: new | append ID | fork ID | delete ID");
        }
    } else if (!strcmp(cmd, "generate")) {
        json_t *f = json_pack("{s:I, s:f, s:f, s:I, s:b}", "n", (json_int_t)(o->n_new ? o->n_new : 1), "temperature",
                              o->temperature, "top_p", o->top_p, "seed", (json_int_t)o->seed, "append", o->append);
        if (o->prompt)
            json_object_set_new(f, "prompt", json_string(o->prompt));
        if (!(rc = target(o, f, &err)) &&
            !(rc = remote_call(&r, "generate", f, NULL, 0, print_text_partial, &res, NULL, NULL, &err)))
            printf("\n");
    } else if (!strcmp(cmd, "ask")) {
        json_t *f = o->n_pos == 1 ? json_pack("{s:s}", "question", o->pos[0]) : NULL;
        if (!f) {
            rc = coil_err_set(&err, COIL_EINVAL, "ask needs one QUESTION argument");
        } else {
            if (o->answer)
                json_object_set_new(f, "answer", json_string(o->answer));
            else
                json_object_set_new(f, "n", json_integer(o->n_new));
            if (o->strategy)
                json_object_set_new(f, "strategy", json_string(o->strategy));
            if (o->evidence)
                json_object_set_new(f, "evidence", json_integer(o->evidence));
            if (o->candidates)
                json_object_set_new(f, "candidates", json_integer(o->candidates));
            if (o->budget)
                json_object_set_new(f, "budget", json_integer(o->budget));
            if (o->temperature_set)
                json_object_set_new(f, "temperature", json_real(o->temperature));
            if (o->key)
                json_object_set_new(f, "key", json_string(o->key));
            json_object_set_new(f, "seed", json_integer((json_int_t)o->seed));
            if (!o->answer)
                printf("answer: ");
            fflush(stdout);
            if (!(rc = target(o, f, &err)) &&
                !(rc = remote_call(&r, "ask", f, NULL, 0, print_text_partial, &res, NULL, NULL, &err))) {
                if (json_is_true(json_object_get(res, "replayed"))) {
                    const char *a = json_string_value(json_object_get(res, "answer"));
                    cli_put_text(stdout, a ? a : "", a ? strlen(a) : 0);
                }
                cli_print_ask_tail(res, o->answer != NULL);
            } else if (!o->answer) {
                printf("\n");
            }
        }
    } else if (!strcmp(cmd, "score")) {
        char *text = NULL;
        size_t len;
        json_t *f = NULL;
        if (!(rc = cli_text_arg(o, &text, &len, &err))) {
            f = json_pack("{s:s%}", "text", text, len);
            if (!(rc = target(o, f, &err)) &&
                !(rc = remote_call(&r, "score", f, NULL, 0, NULL, &res, NULL, NULL, &err))) {
                json_t *t;
                size_t i;
                printf("{\"tokens\": [");
                json_array_foreach(json_object_get(res, "tokens"), i, t)
                printf("%s{\"id\": %" JSON_INTEGER_FORMAT ", \"logprob\": %.17g}", i ? ", " : "",
                       json_integer_value(json_object_get(t, "id")), json_number_value(json_object_get(t, "logprob")));
                printf("], \"logprob\": %.17g, \"n\": %zu}\n", json_number_value(json_object_get(res, "logprob")),
                       json_array_size(json_object_get(res, "tokens")));
            }
        }
        free(text);
    } else if (!strcmp(cmd, "state") && !strcmp(o->pos[0], "export")) {
        json_t *f = json_object();
        if (!o->out)
            rc = coil_err_set(&err, COIL_EINVAL, "state export needs --out FILE");
        else if (!(rc = target(o, f, &err)) &&
                 !(rc = remote_call(&r, "state.export", f, NULL, 0, NULL, &res, &blob, &blob_len, &err))) {
            if (!blob)
                rc = coil_err_set(&err, COIL_EPROTO, "the server sent no state");
            else if (!(rc = cli_write_atomic(o->out, blob, blob_len, &err)) && !o->quiet)
                printf("wrote %s: %zu bytes, position %" JSON_INTEGER_FORMAT "\n", o->out, blob_len,
                       json_integer_value(json_object_get(res, "position")));
        } else if (rc) {
            f = NULL;
        }
    } else if (!strcmp(cmd, "state") && !strcmp(o->pos[0], "import")) {
        char *data = NULL;
        size_t len = 0;
        if (!o->in || !o->name)
            rc = coil_err_set(&err, COIL_EINVAL, "state import needs --in FILE and --name NAME");
        else if (!(rc = cli_read_all(o->in, (size_t)1 << 31, &data, &len, &err)) &&
                 !(rc = remote_call(&r, "state.import", json_pack("{s:s}", "name", o->name), data, len, NULL, &res,
                                    NULL, NULL, &err)) &&
                 !o->quiet)
            printf("imported %s: position %" JSON_INTEGER_FORMAT "\n", o->name,
                   json_integer_value(json_object_get(res, "position")));
        free(data);
    } else {
        rc = coil_err_set(&err, COIL_EINVAL, "'%s' needs a local model or database; it does not run over --connect",
                          cmd);
    }
out:
    json_decref(res);
    free(blob);
    remote_close(&r);
    return rc ? cli_fail(&err) : 0;
}
