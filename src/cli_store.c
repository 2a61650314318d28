/* cli_store.c -- the store-backed commands of `coil`: ingest, docs, search,
 * sessions, generate/score from stored state, state export and import. */
#include "cli.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ask.h"
#include "ingest.h"
#include "query.h"
#include "store.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* Opens --db.  Only the commands that write a document (ingest, state
 * import) may create the file: for the others a missing one is an error. */
static coil_store_t *open_store_ex(const cli_opts_t *o, bool create, coil_err_t *err)
{
    coil_store_options_t so;
    coil_store_options_default(&so);
    so.must_exist = !create;
    if (!o->db) {
        coil_err_set(err, COIL_EINVAL, "this command needs --db FILE");
        return NULL;
    }
    if (o->sync && strcmp(o->sync, "normal") == 0)
        so.synchronous = COIL_STORE_SYNC_NORMAL;
    else if (o->sync && strcmp(o->sync, "full") != 0) {
        coil_err_set(err, COIL_EINVAL, "--sync: expected full or normal");
        return NULL;
    }
    if (o->interval > 0)
        so.policy.interval = o->interval;
    return coil_store_open(o->db, &so, err);
}

static coil_store_t *open_store(const cli_opts_t *o, coil_err_t *err)
{
    return open_store_ex(o, false, err);
}

/* ---- ingest ---------------------------------------------------------------------- */

static void fmt_eta(double s, char *buf, size_t n)
{
    if (s < 0 || !isfinite(s))
        snprintf(buf, n, "--:--");
    else if (s >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", (int)(s / 3600), (int)fmod(s / 60, 60), (int)fmod(s, 60));
    else
        snprintf(buf, n, "%d:%02d", (int)(s / 60), (int)fmod(s, 60));
}

typedef struct {
    const char *name;
    bool tty; /* a live line on a terminal, else a line each time */
} progress_ud_t;

static void show_progress(const coil_ingest_progress_t *p, void *ud)
{
    const progress_ud_t *pu = ud;
    const char *name = pu->name;
    const char *lead = pu->tty ? "\r" : "coil: ", *trail = pu->tty ? "   " : "\n";
    char eta[32] = "--:--";
    double pct = p->total_bytes > 0 ? 100.0 * (double)p->bytes / (double)p->total_bytes : -1;
    if (p->total_bytes > 0 && p->tokens_per_s > 0 && p->bytes > 0) {
        double bytes_per_s = (double)p->bytes / p->seconds;
        fmt_eta((double)(p->total_bytes - p->bytes) / bytes_per_s, eta, sizeof eta);
    }
    if (pct >= 0)
        fprintf(stderr, "%s%s: %5.1f%%  %" PRId64 " tokens  %.0f tok/s  ETA %s%s", lead, name, pct, p->tokens,
                p->tokens_per_s, eta, trail);
    else
        fprintf(stderr, "%s%s: %" PRId64 " tokens  %.0f tok/s%s", lead, name, p->tokens, p->tokens_per_s, trail);
    fflush(stderr);
}

int cli_cmd_ingest(const cli_opts_t *o)
{
    coil_err_t err = {0};
    cli_rt_t r;
    coil_store_t *st = NULL;
    coil_ingest_result_t res;
    const char *src = o->file ? o->file : (o->n_pos == 1 && strcmp(o->pos[0], "-") == 0 ? "-" : NULL);
    if (!o->name || !src || (o->file && o->n_pos))
        return cli_usage("ingest needs --db FILE --model DIR --name NAME and --file PATH or -");
    cli_opts_t eo = *o;
    if (!eo.chunk)
        eo.chunk = 512;
    if (cli_rt_open(&eo, &r, &err))
        return cli_fail(&err);
    int rc = 1;
    if (cli_need_tokenizer(&r, &err) || !(st = open_store_ex(o, true, &err)))
        goto out;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    coil_ingest_options_t io = {.chunk_tokens = eo.chunk, .replace = o->replace, .stop = &g_stop,
                                .model_path = o->model, .allow_binary = o->binary};
    progress_ud_t pu = {.name = o->name, .tty = isatty(STDERR_FILENO) != 0};
    if (!o->quiet) {
        io.progress = show_progress;
        io.progress_ud = &pu;
        io.progress_interval_s = o->progress_s > 0 ? o->progress_s : pu.tty ? 0.5 : 5.0; /* a log: every 5 s */
    }
    int irc = coil_ingest_file(st, r.e, r.tok, o->name, src, &io, &res, &err);
    if (io.progress && pu.tty)
        fprintf(stderr, "\n");
    if (irc) {
        if (irc == COIL_EINTR && !o->quiet)
            fprintf(stderr, "coil: %s\n", err.msg);
        else
            cli_fail(&err);
        rc = irc == COIL_EINTR ? 130 : 1;
        goto out;
    }
    if (res.already) {
        if (!o->quiet)
            printf("already ingested %s: %" PRId64 " tokens, %" PRId64 " bytes (same input, model and chunking; "
                   "nothing to do)\n",
                   o->name, res.tokens, res.bytes);
    } else if (!o->quiet) {
        printf("ingested %s: %" PRId64 " tokens, %" PRId64 " bytes in %.2f s (%.0f tok/s)", o->name, res.tokens,
               res.bytes, res.seconds, res.seconds > 0 ? (double)res.tokens / res.seconds : 0.0);
        if (res.resumed_at >= 0)
            printf(", resumed from token %" PRId64, res.resumed_at);
        printf(", %" PRId64 " checkpoints written\n", res.checkpoints);
    }
    rc = 0;
out:
    coil_store_close(&st);
    cli_rt_free(&r);
    return rc;
}

/* ---- listings, search ---------------------------------------------------------------- */

static int print_doc(const coil_store_doc_info_t *d, void *ud)
{
    (void)ud;
    printf("%-24s %-10s %10" PRId64 " %12" PRId64 " %7" PRId64 " %6" PRId64 " %9.1f%s%s", d->name, d->status,
           d->tokens, d->bytes, d->n_chunks, d->n_checkpoints, (double)d->checkpoint_bytes / 1048576.0,
           d->error ? "  " : "", d->error ? d->error : "");
    if (d->origin && strcmp(d->origin, "import") == 0)
        printf("  (imported state; history before %" PRId64 " not stored)", d->base_position);
    printf("\n");
    return 0;
}

int cli_cmd_docs(const cli_opts_t *o)
{
    coil_err_t err = {0};
    coil_store_t *st = open_store(o, &err);
    if (!st)
        return cli_fail(&err);
    printf("%-24s %-10s %10s %12s %7s %6s %9s\n", "name", "status", "tokens", "bytes", "chunks", "ckpts", "ckpt MiB");
    int rc = coil_store_doc_list(st, o->doc ? o->doc : o->name, print_doc, NULL, &err);
    coil_store_close(&st);
    return rc ? cli_fail(&err) : 0;
}

static int print_hit(const coil_store_hit_t *h, void *ud)
{
    int *k = ud;
    cli_print_hit(++*k, h->doc_name, h->seq, h->token_start, h->token_end, h->byte_start, h->byte_end, h->score,
                  h->snippet, h->marks, h->n_marks);
    return 0;
}

int cli_cmd_search(const cli_opts_t *o)
{
    coil_err_t err = {0};
    if (o->n_pos != 1)
        return cli_usage("search needs --db FILE and one QUERY argument");
    coil_store_t *st = open_store(o, &err);
    if (!st)
        return cli_fail(&err);
    int k = 0;
    int rc = coil_store_search(st, o->pos[0], o->doc, (int)o->limit, print_hit, &k, &err);
    coil_store_close(&st);
    if (rc)
        return cli_fail(&err);
    if (k == 0)
        printf(CLI_NO_MATCHES "\n");
    return 0;
}

/* ---- sessions --------------------------------------------------------------------------- */

static int print_session(const coil_store_session_info_t *s, void *ud)
{
    (void)ud;
    printf("%s  parent %-16s  doc %" PRId64 "  base %" PRId64 "  head %" PRId64 "  checkpoints %" PRId64
           "  children %" PRId64 "\n",
           s->id, s->parent[0] ? s->parent : "-", s->doc_id, s->base, s->head, s->n_checkpoints, s->n_children);
    return 0;
}

int cli_cmd_sessions(const cli_opts_t *o)
{
    coil_err_t err = {0};
    coil_store_t *st = open_store(o, &err);
    if (!st)
        return cli_fail(&err);
    int64_t doc = -1;
    int rc = o->doc ? coil_store_doc_find(st, o->doc, &doc, &err) : 0;
    if (!rc)
        rc = coil_store_session_list(st, doc, print_session, NULL, &err);
    coil_store_close(&st);
    return rc ? cli_fail(&err) : 0;
}

/* Appends --text/--file to a session (coil_session_append_ids). */
static int session_append(const cli_opts_t *o, coil_store_t *st, const char *id, coil_err_t *err)
{
    cli_rt_t r;
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    coil_store_request_t rq = {.key = o->key};
    coil_store_request_info_t ri;
    int rc = cli_text_arg(o, &text, &len, err);
    if (rc)
        return rc;
    if (o->key && (rc = coil_store_request_find(st, o->key, id, &ri, err)) != COIL_ENOTFOUND) {
        free(text); /* done before with this key (0), or an error */
        if (!rc) {
            free(ri.result);
            if (!o->quiet)
                printf("%s: appended %" PRId64 " tokens, head %" PRId64 " (already done with this key)\n", id,
                       ri.head_after - ri.head_before, ri.head_after);
        }
        return rc;
    }
    if ((rc = cli_rt_open(o, &r, err))) {
        free(text);
        return rc;
    }
    if (!(rc = cli_need_tokenizer(&r, err)) && !(rc = coil_tokenizer_encode(r.tok, text, len, &ids, &n, err))) {
        if (n == 0)
            rc = coil_err_set(err, COIL_EINVAL, "the text encodes to no tokens");
        else
            rc = coil_session_append_ids(st, r.e, id, ids, n, o->key ? &rq : NULL, r.st, err);
    }
    if (!rc && !o->quiet)
        printf("%s: appended %zu tokens, head %" PRId64 "\n", id, n, coil_state_position(r.st));
    free(ids);
    free(text);
    cli_rt_free(&r);
    return rc;
}

int cli_cmd_session(const cli_opts_t *o)
{
    coil_err_t err = {0};
    const char *sub = o->pos[0];
    char id[COIL_STORE_SESSION_ID_LEN + 1];
    int rc;
    if (!strcmp(sub, "list"))
        return cli_cmd_sessions(o);
    coil_store_t *st = open_store(o, &err);
    if (!st)
        return cli_fail(&err);
    if (!strcmp(sub, "new")) {
        int64_t doc;
        if (!o->doc) {
            coil_store_close(&st);
            return cli_usage("session new needs --doc NAME");
        }
        coil_store_progress_t p;
        if (!(rc = coil_store_doc_find(st, o->doc, &doc, &err)) &&
            !(rc = coil_store_doc_progress(st, doc, &p, &err)) &&
            !(rc = coil_store_session_new(st, doc, o->at < 0 ? p.token_end : o->at, id, &err)))
            printf("%s\n", id);
    } else if (!strcmp(sub, "fork") && o->n_pos == 2) {
        if (!(rc = coil_store_session_fork(st, o->pos[1], o->at, id, &err)))
            printf("%s\n", id);
    } else if (!strcmp(sub, "append") && o->n_pos == 2) {
        rc = session_append(o, st, o->pos[1], &err);
    } else if (!strcmp(sub, "delete") && o->n_pos == 2) {
        rc = coil_store_session_delete(st, o->pos[1], o->cascade, &err);
    } else {
        coil_store_close(&st);
        return cli_usage("session: new | append ID | fork ID | delete ID | list");
    }
    coil_store_close(&st);
    return rc ? cli_fail(&err) : 0;
}

/* Resumes --session ID or --doc NAME (at --at or the end) into r->st. */
static int resume_target(const cli_opts_t *o, coil_store_t *st, cli_rt_t *r, int64_t *grid, coil_err_t *err)
{
    if (!!o->session == !!o->doc)
        return coil_err_set(err, COIL_EINVAL, "give exactly one of --session ID and --doc NAME");
    return coil_resume_target(st, r->e, o->session, o->doc, o->at, r->st, grid, err);
}

int cli_cmd_generate_stored(const cli_opts_t *o)
{
    coil_err_t err = {0};
    cli_rt_t r;
    coil_store_t *st = NULL;
    int32_t *pids = NULL, *gen = NULL, *all = NULL;
    size_t np = 0;
    int64_t ng = 0, grid = 512;
    void *blob = NULL;
    if (o->ids)
        return cli_usage("generate from a store takes --prompt, not --ids");
    if (o->append && !o->session)
        return cli_usage("--append needs --session");
    if (cli_rt_open(o, &r, &err))
        return cli_fail(&err);
    int rc = 1;
    if (!(st = open_store(o, &err)) || resume_target(o, st, &r, &grid, &err))
        goto out;
    if (o->prompt) {
        if (cli_need_tokenizer(&r, &err) || coil_tokenizer_encode(r.tok, o->prompt, strlen(o->prompt), &pids, &np, &err) ||
            coil_feed_grid(r.e, r.st, pids, (int64_t)np, grid, NULL, 0, &err))
            goto out;
    }
    if (cli_generate_from(o, &r, grid, &gen, &ng, &err))
        goto out;
    if (o->append && np + (size_t)ng > 0) {
        /* the session's timeline gains the prompt and the generated tokens (the
         * state has read them all: each sampled token is fed as it is drawn) */
        all = malloc((np + (size_t)ng) * sizeof *all);
        size_t bs = coil_state_blob_size(r.st);
        blob = malloc(bs);
        if (!all || !blob) {
            coil_err_set(&err, COIL_ENOMEM, "out of memory");
            goto out;
        }
        if (np) /* pids is NULL without --prompt */
            memcpy(all, pids, np * sizeof *all);
        if (ng)
            memcpy(all + np, gen, (size_t)ng * sizeof *all);
        if (coil_state_serialize(r.st, blob, bs, &err))
            goto out;
        coil_store_ckpt_t ck = {.position = coil_state_position(r.st), .fingerprint = coil_state_fingerprint(r.st),
                                .data = blob, .size = bs};
        if (coil_store_session_append(st, o->session, all, np + (size_t)ng, &ck, NULL, &err))
            goto out;
    }
    rc = 0;
out:
    if (rc)
        cli_fail(&err);
    free(blob);
    free(all);
    free(gen);
    free(pids);
    coil_store_close(&st);
    cli_rt_free(&r);
    return rc;
}

/* coil score --file F (no --db): every token of the text after the first,
 * from a fresh state -- a language model's held-out loss, in bits per byte. */
static int score_text(const cli_opts_t *o)
{
    coil_err_t err = {0};
    cli_rt_t r;
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    double *lp = NULL, total = 0.0;
    if (cli_rt_open(o, &r, &err))
        return cli_fail(&err);
    int rc = 1;
    if (cli_text_arg(o, &text, &len, &err) || cli_need_tokenizer(&r, &err) ||
        coil_tokenizer_encode(r.tok, text, len, &ids, &n, &err))
        goto out;
    if (n < 2) {
        coil_err_set(&err, COIL_EINVAL, "the text needs at least two tokens");
        goto out;
    }
    int64_t grid = coil_engine_max_chunk(r.e);
    if (!(lp = malloc(n * sizeof *lp))) {
        coil_err_set(&err, COIL_ENOMEM, "out of memory");
        goto out;
    }
    if (coil_engine_forward(r.e, r.st, ids, 1, NULL, &err) ||
        coil_query_score(r.e, r.st, ids + 1, n - 1, grid, lp, &total, &err))
        goto out;
    printf("{\"tokens_scored\": %zu, \"bytes\": %zu, \"logprob\": %.17g, \"nats_per_token\": %.6f, "
           "\"bits_per_byte\": %.6f}\n",
           n - 1, len, total, -total / (double)(n - 1), -total / log(2.0) / (double)len);
    rc = 0;
out:
    if (rc)
        cli_fail(&err);
    free(lp);
    free(ids);
    free(text);
    cli_rt_free(&r);
    return rc;
}

int cli_cmd_score(const cli_opts_t *o)
{
    if (!o->db && !o->session && !o->doc)
        return score_text(o);
    coil_err_t err = {0};
    cli_rt_t r;
    coil_store_t *st = NULL;
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    double *lp = NULL;
    int64_t grid = 512;
    if (cli_rt_open(o, &r, &err))
        return cli_fail(&err);
    int rc = 1;
    if (cli_text_arg(o, &text, &len, &err) || cli_need_tokenizer(&r, &err) || !(st = open_store(o, &err)) ||
        resume_target(o, st, &r, &grid, &err) || coil_tokenizer_encode(r.tok, text, len, &ids, &n, &err))
        goto out;
    if (n == 0) {
        coil_err_set(&err, COIL_EINVAL, "the text encodes to no tokens");
        goto out;
    }
    if (!(lp = malloc(n * sizeof *lp))) {
        coil_err_set(&err, COIL_ENOMEM, "out of memory");
        goto out;
    }
    double total;
    if (coil_query_score(r.e, r.st, ids, n, grid, lp, &total, &err))
        goto out;
    printf("{\"tokens\": [");
    for (size_t i = 0; i < n; i++)
        printf("%s{\"id\": %d, \"logprob\": %.17g}", i ? ", " : "", ids[i], lp[i]);
    printf("], \"logprob\": %.17g, \"n\": %zu}\n", total, n);
    rc = 0;
out:
    if (rc)
        cli_fail(&err);
    free(lp);
    free(ids);
    free(text);
    coil_store_close(&st);
    cli_rt_free(&r);
    return rc;
}

/* Upper bound on a state file read by `state import` (a state is a few MB). */
#define MAX_STATE_FILE ((size_t)1 << 31)

/* state import: the blob must deserialize into a state of the loaded model
 * (so a wrong model, a damaged or truncated file never reaches the store);
 * it then becomes document --name, complete at the blob's position. */
static int state_import(const cli_opts_t *o)
{
    coil_err_t err = {0};
    cli_rt_t r;
    coil_store_t *st = NULL;
    char *blob = NULL;
    size_t len = 0;
    int64_t model_id, doc_id;
    if (!o->in || !o->name)
        return cli_usage("state import needs --db FILE --model DIR --in FILE --name NAME");
    if (cli_rt_open(o, &r, &err))
        return cli_fail(&err);
    int rc = 1;
    if (cli_read_all(o->in, MAX_STATE_FILE, &blob, &len, &err))
        goto out;
    if (coil_state_deserialize(r.st, blob, len, &err)) {
        coil_err_t e2 = err;
        coil_err_set(&err, e2.code, "%s: not a state of model %s: %s", o->in,
                     o->model ? o->model : "(default)", e2.msg);
        goto out;
    }
    char dims[512];
    coil_model_dims_json(r.m, dims, sizeof dims);
    int64_t pos = coil_state_position(r.st);
    if (!(st = open_store_ex(o, true, &err)) ||
        coil_store_model_ensure(st, coil_state_fingerprint(r.st), o->model ? o->model : "", dims, &model_id,
                                &err) ||
        coil_store_doc_import(st, o->name, model_id, blob, len, coil_state_fingerprint(r.st), pos,
                              o->replace ? COIL_STORE_DOC_REPLACE : 0, &doc_id, &err))
        goto out;
    if (!o->quiet)
        printf("imported %s: position %" PRId64 "\n", o->name, pos);
    rc = 0;
out:
    if (rc)
        cli_fail(&err);
    free(blob);
    coil_store_close(&st);
    cli_rt_free(&r);
    return rc;
}

int cli_cmd_state(const cli_opts_t *o)
{
    coil_err_t err = {0};
    cli_rt_t r;
    coil_store_t *st = NULL;
    void *blob = NULL;
    int64_t grid;
    if (strcmp(o->pos[0], "import") == 0)
        return state_import(o);
    if (strcmp(o->pos[0], "export") != 0)
        return cli_usage("state: export (--doc NAME | --session ID) [--at TOKEN] --out FILE | "
                         "import --in FILE --name NAME [--replace]");
    if (!o->out)
        return cli_usage("state export needs --out FILE");
    if (cli_rt_open(o, &r, &err))
        return cli_fail(&err);
    int rc = 1;
    if (!(st = open_store(o, &err)) || resume_target(o, st, &r, &grid, &err))
        goto out;
    size_t bs = coil_state_blob_size(r.st);
    if (!(blob = malloc(bs))) {
        coil_err_set(&err, COIL_ENOMEM, "out of memory");
        goto out;
    }
    if (coil_state_serialize(r.st, blob, bs, &err) || cli_write_atomic(o->out, blob, bs, &err))
        goto out;
    if (!o->quiet)
        printf("wrote %s: %zu bytes, position %" PRId64 "\n", o->out, bs, coil_state_position(r.st));
    rc = 0;
out:
    if (rc)
        cli_fail(&err);
    free(blob);
    coil_store_close(&st);
    cli_rt_free(&r);
    return rc;
}

/* ---- check ------------------------------------------------------------------------------ */

int cli_cmd_check(const cli_opts_t *o)
{
    coil_err_t err = {0};
    if (o->n_pos)
        return cli_usage("check takes no arguments: coil check --db FILE");
    coil_store_t *st = open_store(o, &err);
    if (!st)
        return cli_fail(&err);
    int rc = coil_store_verify(st, &err);
    coil_store_close(&st);
    if (rc)
        return cli_fail(&err);
    if (!o->quiet)
        printf("%s: ok (integrity_check, full-text index, every checkpoint's checksum, chunk grid, sessions)\n",
               o->db);
    return 0;
}

/* ---- ask -------------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
} text_acc_t;

/* Prints each answer token as it comes and keeps the text for the reply. */
static int print_answer_token(int32_t id, const char *text, size_t len, void *ud)
{
    text_acc_t *t = ud;
    (void)id;
    if (!text || !len)
        return 0;
    cli_put_text(stdout, text, len);
    fflush(stdout);
    if (t->len + len + 1 > t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        while (cap < t->len + len + 1)
            cap *= 2;
        char *nb = realloc(t->buf, cap);
        if (!nb)
            return 1;
        t->buf = nb;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, text, len);
    t->len += len;
    return 0;
}

int cli_cmd_ask(const cli_opts_t *o)
{
    coil_err_t err = {0};
    cli_rt_t r;
    coil_store_t *st = NULL;
    coil_ask_result_t res = {0};
    int32_t *aids = NULL;
    size_t na = 0;
    void *blob = NULL;
    json_t *reply = NULL;
    text_acc_t acc = {0};
    if (o->n_pos != 1 || !!o->doc == !!o->session)
        return cli_usage("ask needs --db FILE, one of --doc NAME and --session ID, and one QUESTION argument");
    int strategy = o->strategy ? coil_ask_strategy_parse(o->strategy) : COIL_ASK_AUTO;
    if (strategy < 0)
        return cli_usage("--strategy: expected auto, state, reread or select");
    if (o->answer && o->session)
        return cli_usage("--answer scores an answer; it does not continue a session (drop --session or --answer)");
    if (o->key && !o->session)
        return cli_usage("--key makes a session's ask happen once: it needs --session");
    if (cli_rt_open(o, &r, &err))
        return cli_fail(&err);
    int rc = 1;
    if (cli_need_tokenizer(&r, &err) || !(st = open_store(o, &err)))
        goto out;
    if (o->answer && coil_tokenizer_encode(r.tok, o->answer, strlen(o->answer), &aids, &na, &err))
        goto out;
    if (o->answer && na == 0) {
        coil_err_set(&err, COIL_EINVAL, "--answer encodes to no tokens");
        goto out;
    }
    if (o->session && o->key) { /* asked before with this key: that reply, nothing appended again */
        coil_store_request_info_t ri;
        int frc = coil_store_request_find(st, o->key, o->session, &ri, &err);
        if (frc != COIL_ENOTFOUND) {
            if (frc)
                goto out;
            reply = ri.result ? json_loads(ri.result, 0, NULL) : NULL;
            free(ri.result);
            if (!reply) {
                coil_err_set(&err, COIL_EDB, "request key '%s': no ask reply was recorded with it", o->key);
                goto out;
            }
            json_object_set_new(reply, "replayed", json_true());
            const char *a = json_string_value(json_object_get(reply, "answer"));
            printf("answer: ");
            cli_put_text(stdout, a ? a : "", a ? strlen(a) : 0);
            cli_print_ask_tail(reply, 0);
            rc = 0;
            goto out;
        }
        coil_err_clear(&err);
    }
    coil_ask_options_t ao = {.strategy = strategy,
                             .evidence_k = (int)o->evidence,
                             .candidates_m = (int)o->candidates,
                             .max_reread_tokens = o->budget,
                             .n_new = o->answer ? 0 : o->n_new,
                             .sampler = {.temperature = o->temperature_set ? (float)o->temperature : 0.0f,
                                         .top_p = (float)o->top_p,
                                         .seed = o->seed,
                                         .n_valid = r.n_valid},
                             .answer_ids = aids,
                             .n_answer = na,
                             .on_token = print_answer_token,
                             .on_token_ud = &acc};
    const char *q = o->pos[0];
    if (!o->answer)
        printf("answer: ");
    fflush(stdout);
    if (coil_ask(st, r.e, r.tok, o->session, o->doc, q, strlen(q), &ao, r.st, &res, &err)) {
        if (!o->answer)
            printf("\n");
        goto out;
    }
    if (!(reply = coil_ask_result_json(&res, acc.buf, acc.len, o->answer != NULL))) {
        coil_err_set(&err, COIL_ENOMEM, "out of memory");
        goto out;
    }
    if (o->session && res.n_fed) {
        /* the session's timeline gains what its state read: passages, question, answer */
        size_t bs = coil_state_blob_size(r.st);
        json_object_set_new(reply, "session", json_string(o->session));
        json_object_set_new(reply, "appended", json_integer((json_int_t)res.n_fed));
        json_object_set_new(reply, "position", json_integer((json_int_t)coil_state_position(r.st)));
        char *text = json_dumps(reply, JSON_COMPACT);
        coil_store_request_t rq = {.key = o->key, .result = text};
        coil_store_ckpt_t ck = {.position = coil_state_position(r.st), .fingerprint = coil_state_fingerprint(r.st),
                                .size = bs};
        int arc = !text || !(blob = malloc(bs)) ? coil_err_set(&err, COIL_ENOMEM, "out of memory")
                                                : coil_state_serialize(r.st, blob, bs, &err);
        ck.data = blob;
        if (!arc)
            arc = coil_store_session_append(st, o->session, res.fed, res.n_fed, &ck, o->key ? &rq : NULL, &err);
        free(text);
        if (arc)
            goto out;
    }
    cli_print_ask_tail(reply, o->answer != NULL);
    rc = 0;
out:
    if (rc)
        cli_fail(&err);
    json_decref(reply);
    free(acc.buf);
    free(blob);
    free(aids);
    coil_ask_result_free(&res);
    coil_store_close(&st);
    cli_rt_free(&r);
    return rc;
}
