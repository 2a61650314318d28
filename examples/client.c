/* client.c -- a small C client for coild (libzmq + jansson).
 *
 *   examples/client [--server tcp://127.0.0.1:5555] [--events tcp://127.0.0.1:5556]
 *                   --name NAME --file DOC.txt --query WORDS --question TEXT [-n N] [--seed S]
 *
 * Ingests a document (streamed in 256 KiB parts), waits for its doc.complete
 * event, searches it, starts a session from its saved state, appends the
 * question (a prompt) and generates its continuation (tokens stream in as
 * partial replies).
 * Build: cc client.c $(pkg-config --cflags --libs libzmq jansson)
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

static int next_id = 1;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Sends {v, id, op, fields...} and waits for the final reply.  Partial
 * replies' "text" is printed as it arrives.  Returns the result (new ref) or
 * NULL after printing the error. */
static json_t *request(void *sock, const char *op, json_t *fields, int timeout_s)
{
    int id = next_id++;
    json_object_set_new(fields, "v", json_integer(1));
    json_object_set_new(fields, "id", json_integer(id));
    json_object_set_new(fields, "op", json_string(op));
    char *msg = json_dumps(fields, JSON_COMPACT);
    json_decref(fields);
    if (!msg || zmq_send(sock, msg, strlen(msg), 0) < 0) {
        fprintf(stderr, "client: cannot send %s\n", op);
        free(msg);
        return NULL;
    }
    free(msg);
    for (double t0 = now(); now() - t0 < timeout_s;) {
        zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 500) <= 0)
            continue;
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, sock, 0);
        json_t *rep = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        while (more) { /* a binary frame (state export): not used here */
            zmq_msg_init(&m);
            zmq_msg_recv(&m, sock, 0);
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        if (!rep || json_integer_value(json_object_get(rep, "id")) != id) {
            json_decref(rep);
            continue;
        }
        json_t *res = json_object_get(rep, "result");
        if (json_is_true(json_object_get(rep, "partial"))) {
            const char *t = json_string_value(json_object_get(res, "text"));
            if (t) {
                fputs(t, stdout);
                fflush(stdout);
            }
            json_decref(rep);
            continue;
        }
        if (!json_is_true(json_object_get(rep, "ok"))) {
            json_t *e = json_object_get(rep, "error");
            fprintf(stderr, "client: %s failed: %s: %s\n", op, json_string_value(json_object_get(e, "code")),
                    json_string_value(json_object_get(e, "message")));
            json_decref(rep);
            return NULL;
        }
        json_incref(res);
        json_decref(rep);
        return res;
    }
    fprintf(stderr, "client: no reply to %s within %d s\n", op, timeout_s);
    return NULL;
}

static int wait_complete(void *sub, const char *name, int timeout_s)
{
    for (double t0 = now(); now() - t0 < timeout_s;) {
        zmq_pollitem_t it = {.socket = sub, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 500) <= 0)
            continue;
        char topic[64] = "";
        int n = zmq_recv(sub, topic, sizeof topic - 1, 0);
        topic[n > 0 && n < 63 ? n : 0] = '\0';
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, sub, 0);
        json_t *ev = json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL);
        zmq_msg_close(&m);
        const char *doc = json_string_value(json_object_get(ev, "doc"));
        int mine = doc && strcmp(doc, name) == 0;
        if (mine && !strcmp(topic, "ingest.progress"))
            fprintf(stderr, "  progress: %lld tokens, %.0f tok/s\n",
                    (long long)json_integer_value(json_object_get(ev, "tokens")),
                    json_number_value(json_object_get(ev, "tokens_per_s")));
        if (mine && !strcmp(topic, "doc.complete")) {
            printf("complete: %lld tokens in %.2f s\n", (long long)json_integer_value(json_object_get(ev, "tokens")),
                   json_number_value(json_object_get(ev, "seconds")));
            json_decref(ev);
            return 0;
        }
        if (mine && !strcmp(topic, "doc.failed")) {
            fprintf(stderr, "client: ingest failed: %s\n",
                    json_string_value(json_object_get(json_object_get(ev, "error"), "message")));
            json_decref(ev);
            return -1;
        }
        json_decref(ev);
    }
    fprintf(stderr, "client: no doc.complete event within %d s\n", timeout_s);
    return -1;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = '\0';
        *len = (size_t)n;
    }
    return b;
}

int main(int argc, char **argv)
{
    const char *server = "tcp://127.0.0.1:5555", *events = "tcp://127.0.0.1:5556", *name = NULL, *file = NULL,
               *query = NULL, *question = NULL;
    int n_new = 40, seed = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--server")) server = argv[i + 1];
        else if (!strcmp(argv[i], "--events")) events = argv[i + 1];
        else if (!strcmp(argv[i], "--name")) name = argv[i + 1];
        else if (!strcmp(argv[i], "--file")) file = argv[i + 1];
        else if (!strcmp(argv[i], "--query")) query = argv[i + 1];
        else if (!strcmp(argv[i], "--question")) question = argv[i + 1];
        else if (!strcmp(argv[i], "-n")) n_new = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed")) seed = atoi(argv[i + 1]);
        else name = NULL, i = argc;
    }
    if (!name || !file || !query || !question) {
        fprintf(stderr, "usage: client [--server EP] [--events EP] --name NAME --file DOC --query WORDS "
                        "--question TEXT [-n N] [--seed S]\n");
        return 2;
    }
    size_t len;
    int ingest_id = 0;
    char *text = slurp(file, &len);
    if (!text) {
        fprintf(stderr, "client: cannot read %s\n", file);
        return 1;
    }
    void *ctx = zmq_ctx_new(), *sock = zmq_socket(ctx, ZMQ_DEALER), *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0, rc = 1;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    zmq_connect(sock, server);
    zmq_connect(sub, events);
    json_t *r = NULL; /* first contact: ask again if the connection was still being made */
    for (int tries = 0; !r && tries < 15; tries++)
        r = request(sock, "health", json_object(), 2);
    /* right after coild starts, its workers may still be loading the model */
    for (double t0 = now(); r && now() - t0 < 30 &&
                            json_integer_value(json_object_get(r, "workers")) <
                                json_integer_value(json_object_get(r, "workers_configured"));) {
        json_decref(r);
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
        r = request(sock, "health", json_object(), 2);
    }
    if (!r)
        goto out;
    /* PUB/SUB joins asynchronously: the first heartbeat says the subscription is live */
    for (double t0 = now(); now() - t0 < 10;) {
        zmq_pollitem_t it = {.socket = sub, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 200) <= 0)
            continue;
        char topic[64];
        int tn = zmq_recv(sub, topic, sizeof topic, 0);
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_recv(&m, sub, 0);
        zmq_msg_close(&m);
        if (tn == 15 && memcmp(topic, "coild.heartbeat", 15) == 0)
            break;
    }
    printf("health: %s, %lld of %lld workers ready\n", json_string_value(json_object_get(r, "status")),
           (long long)json_integer_value(json_object_get(r, "workers")),
           (long long)json_integer_value(json_object_get(r, "workers_configured")));
    json_decref(r);
    /* ingest, streamed in parts cut at character boundaries */
    size_t at = 0;
    for (int part = 0; at < len || part == 0; part++) {
        size_t end = at + 262144 < len ? at + 262144 : len;
        while (end < len && ((unsigned char)text[end] & 0xC0) == 0x80)
            end++;
        json_t *f = json_pack("{s:s, s:s%, s:i, s:b, s:b}", "name", name, "text", text + at, end - at, "part", part,
                              "last", end == len, "replace", 1);
        ingest_id = next_id;
        if (end < len) {
            if (!(r = request(sock, "ingest", f, 60)))
                goto out;
            json_decref(r);
        } else { /* the last part's reply comes when the ingest is done; the event says so too */
            json_object_set_new(f, "v", json_integer(1));
            json_object_set_new(f, "id", json_integer(next_id++));
            json_object_set_new(f, "op", json_string("ingest"));
            char *msg = json_dumps(f, JSON_COMPACT);
            json_decref(f);
            zmq_send(sock, msg, strlen(msg), 0);
            free(msg);
        }
        at = end;
    }
    if (wait_complete(sub, name, 3600) != 0)
        goto out;
    for (int done = 0; !done;) { /* the ingest's own reply (after its progress partials) */
        zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 60000) <= 0) {
            fprintf(stderr, "client: no reply to the ingest\n");
            goto out;
        }
        int more = 1;
        for (int k = 0; more; k++) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            zmq_msg_recv(&m, sock, 0);
            more = zmq_msg_more(&m);
            json_t *rep = k == 0 ? json_loadb(zmq_msg_data(&m), zmq_msg_size(&m), 0, NULL) : NULL;
            if (rep && json_integer_value(json_object_get(rep, "id")) == ingest_id &&
                !json_is_true(json_object_get(rep, "partial")))
                done = 1;
            json_decref(rep);
            zmq_msg_close(&m);
        }
    }
    if (!(r = request(sock, "search", json_pack("{s:s, s:s, s:i}", "query", query, "doc", name, "limit", 3), 60)))
        goto out;
    json_t *hits = json_object_get(r, "hits");
    for (size_t i = 0; i < json_array_size(hits); i++) {
        json_t *h = json_array_get(hits, i);
        printf("  hit chunk %lld tokens [%lld, %lld): %s\n", (long long)json_integer_value(json_object_get(h, "chunk")),
               (long long)json_integer_value(json_object_get(h, "token_start")),
               (long long)json_integer_value(json_object_get(h, "token_end")),
               json_string_value(json_object_get(h, "snippet")));
    }
    json_decref(r);
    if (!(r = request(sock, "session.new", json_pack("{s:s}", "doc", name), 60)))
        goto out;
    char session[32];
    snprintf(session, sizeof session, "%s", json_string_value(json_object_get(r, "session")));
    printf("session: %s at token %lld\n", session, (long long)json_integer_value(json_object_get(r, "position")));
    json_decref(r);
    if (!(r = request(sock, "session.append", json_pack("{s:s, s:s}", "session", session, "text", question), 60)))
        goto out;
    json_decref(r);
    printf("continuation: ");
    if (!(r = request(sock, "generate", json_pack("{s:s, s:i, s:i, s:f}", "session", session, "n", n_new, "seed",
                                                  seed, "temperature", 0.8),
                      300)))
        goto out;
    printf("\n");
    json_decref(r);
    rc = 0;
out:
    free(text);
    zmq_close(sock);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return rc;
}
