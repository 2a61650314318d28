/* ask.c -- question answering over a stored document: the end state, or
 * re-reading the passages that matter, or answering from the most confident
 * passage (see ask.h). */
#include "ask.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ingest.h"

#define DEFAULT_K 3
#define DEFAULT_M 4
#define DEFAULT_BUDGET 2048
#define ENTROPY_TOKENS 4 /* select: the first answer tokens whose entropy is the confidence */

static const char *const names[] = {"auto", "state", "reread", "select"};

const char *coil_ask_strategy_name(int s)
{
    return s >= 0 && s < (int)(sizeof names / sizeof names[0]) ? names[s] : NULL;
}

int coil_ask_strategy_parse(const char *s)
{
    for (int i = 0; s && i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

void coil_ask_result_free(coil_ask_result_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_evidence; i++)
        free(r->evidence[i].snippet);
    free(r->evidence);
    free(r->answer);
    free(r->answer_logprobs);
    free(r->fed);
    memset(r, 0, sizeof *r);
}

json_t *coil_ask_result_json(const coil_ask_result_t *r, const char *answer_text, size_t len, int scored)
{
    json_t *ev = json_array(), *ids = json_array();
    for (size_t i = 0; ev && i < r->n_evidence; i++) {
        const coil_ask_evidence_t *e = &r->evidence[i];
        json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:b, s:s}", "chunk", (json_int_t)e->seq, "token_start",
                              (json_int_t)e->token_start, "token_end", (json_int_t)e->token_end, "byte_start",
                              (json_int_t)e->byte_start, "byte_end", (json_int_t)e->byte_end, "bm25", e->bm25,
                              "chosen", e->chosen, "snippet", e->snippet);
        if (o && !isnan(e->entropy))
            json_object_set_new(o, "entropy", json_real(e->entropy));
        json_array_append_new(ev, o);
    }
    for (int64_t i = 0; ids && i < r->n_answer; i++)
        json_array_append_new(ids, json_integer(r->answer[i]));
    json_t *out = json_pack("{s:s, s:s, s:s, s:s%, s:o, s:o, s:I, s:f}", "strategy", coil_ask_strategy_name(r->strategy),
                            "why", r->why, "search", r->fts_query, "answer", answer_text ? answer_text : "",
                            answer_text ? len : 0, "ids", ids, "evidence", ev, "reread_tokens",
                            (json_int_t)r->reread_tokens, "seconds", r->seconds);
    if (out && scored)
        json_object_set_new(out, "answer_logprob", json_real(r->answer_logprob));
    return out;
}

/* ---- the question as an FTS5 query ------------------------------------------------ */

/* Common English function words: they match everywhere and rank nothing. */
static const char *const stop_words[] = {
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "before",
    "but", "by", "can", "could", "did", "do", "does", "doing", "for", "from", "had", "has", "have", "he", "her",
    "here", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "no", "nor", "not",
    "of", "on", "or", "our", "she", "so", "than", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "those", "to", "was", "we", "were", "what", "when", "where", "which", "who", "whom",
    "whose", "why", "will", "with", "would", "you", "your", "thee", "thou", "thy", "doth", "hath", "shall"};

static bool is_stop(const char *w, size_t n)
{
    for (size_t i = 0; i < sizeof stop_words / sizeof stop_words[0]; i++)
        if (strlen(stop_words[i]) == n && memcmp(stop_words[i], w, n) == 0)
            return true;
    return false;
}

void coil_ask_fts_query(const char *q, size_t len, char *buf, size_t cap)
{
    size_t o = 0;
    char word[128];
    if (cap == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < len;) {
        /* a word: ASCII letters/digits and any non-ASCII byte (UTF-8 letters) */
        size_t n = 0;
        bool ascii_only = true;
        while (i < len && (isalnum((unsigned char)q[i]) || (unsigned char)q[i] >= 0x80)) {
            if ((unsigned char)q[i] >= 0x80)
                ascii_only = false;
            if (n < sizeof word - 1)
                word[n++] = (char)tolower((unsigned char)q[i]);
            i++;
        }
        if (n == 0) {
            i++;
            continue;
        }
        word[n] = '\0';
        if ((ascii_only && n < 2) || is_stop(word, n))
            continue;
        /* skip a duplicate: search for "w" in what was written */
        char quoted[132];
        snprintf(quoted, sizeof quoted, "\"%s\"", word);
        if (strstr(buf, quoted))
            continue;
        size_t need = strlen(quoted) + (o ? 4 : 0);
        if (o + need + 1 > cap)
            break;
        o += (size_t)snprintf(buf + o, cap - o, "%s%s", o ? " OR " : "", quoted);
    }
}

/* ---- helpers ----------------------------------------------------------------------------- */

typedef struct {
    int32_t *v;
    size_t n, cap;
} ids_t;

static int ids_add(ids_t *a, const int32_t *ids, size_t n, coil_err_t *err)
{
    if (a->n + n > a->cap) {
        size_t cap = a->cap ? a->cap : 256;
        while (cap < a->n + n)
            cap *= 2;
        int32_t *nv = realloc(a->v, cap * sizeof *nv);
        if (!nv)
            return coil_err_set(err, COIL_ENOMEM, "out of memory");
        a->v = nv;
        a->cap = cap;
    }
    if (n)
        memcpy(a->v + a->n, ids, n * sizeof *ids);
    a->n += n;
    return 0;
}

/* Encodes text and appends its ids to a. */
static int add_text(ids_t *a, const coil_tokenizer_t *tok, const char *text, size_t len, coil_err_t *err)
{
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = coil_tokenizer_encode(tok, text, len, &ids, &n, err);
    if (!rc)
        rc = ids_add(a, ids, n, err);
    free(ids);
    return rc;
}

/* Appends the ids of the blank line "\n\n" as a document tokenizes it
 * before text.  Encoded alone it becomes the id of a blank line at the end of
 * a text (the bundled model's tokenizer: 549, where "\n\nWord" gives 200 200
 * before the word), which a model never read before a passage: after it the
 * bundled model's recall of the passage is gone (the copy gain of a planted
 * sentence re-read right before its question drops from +2.9 to -0.1 nats). */
static int add_blank_line(ids_t *a, const coil_tokenizer_t *tok, coil_err_t *err)
{
    int32_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int rc = coil_tokenizer_encode(tok, "\n\nA", 3, &x, &nx, err);
    if (!rc)
        rc = coil_tokenizer_encode(tok, "A", 1, &y, &ny, err);
    if (!rc) {
        if (nx > ny && memcmp(x + nx - ny, y, ny * sizeof *y) == 0)
            rc = ids_add(a, x, nx - ny, err);
        else /* a tokenizer that merges the line break into the word */
            rc = add_text(a, tok, "\n\n", 2, err);
    }
    free(x);
    free(y);
    return rc;
}

typedef struct {
    coil_ask_result_t *res;
    size_t cap;
    int64_t doc_id;
    int fail;
} hits_ud_t;

static int on_hit(const coil_store_hit_t *h, void *ud)
{
    hits_ud_t *hu = ud;
    coil_ask_result_t *r = hu->res;
    if (h->doc_id != hu->doc_id)
        return 0;
    if (r->n_evidence == hu->cap) {
        size_t cap = hu->cap ? 2 * hu->cap : 8;
        coil_ask_evidence_t *ne = realloc(r->evidence, cap * sizeof *ne);
        if (!ne)
            return hu->fail = 1;
        r->evidence = ne;
        hu->cap = cap;
    }
    coil_ask_evidence_t *ev = &r->evidence[r->n_evidence];
    *ev = (coil_ask_evidence_t){.seq = h->seq,
                                .token_start = h->token_start,
                                .token_end = h->token_end,
                                .byte_start = h->byte_start,
                                .byte_end = h->byte_end,
                                .bm25 = h->score,
                                .entropy = NAN,
                                .snippet = strdup(h->snippet)};
    if (!ev->snippet)
        return hu->fail = 1;
    r->n_evidence++;
    return 0;
}

typedef struct {
    int64_t id;
    char *name;
    char status[16];
} docname_ud_t;

static int on_doc(const coil_store_doc_info_t *d, void *ud)
{
    docname_ud_t *du = ud;
    if (du->id >= 0 && d->id != du->id)
        return 0;
    du->id = d->id;
    free(du->name);
    du->name = strdup(d->name);
    snprintf(du->status, sizeof du->status, "%s", d->status);
    return 1;
}

/* Mean entropy (nats) of the next ENTROPY_TOKENS greedy steps after st (st
 * unchanged: the steps run on the clone tmp). */
static int confidence(coil_engine_t *e, const coil_state_t *st, coil_state_t *tmp, float *lg, int64_t V,
                      double *mean_h, coil_err_t *err)
{
    int rc = coil_state_copy(tmp, st, err);
    double sum = 0.0;
    for (int k = 0; !rc && k < ENTROPY_TOKENS; k++) {
        if ((rc = coil_engine_next_logits(e, tmp, lg, err)))
            break;
        double mx = lg[0], z = 0.0, s = 0.0;
        int32_t best = 0;
        for (int64_t i = 1; i < V; i++)
            if (lg[i] > mx) {
                mx = lg[i];
                best = (int32_t)i;
            }
        for (int64_t i = 0; i < V; i++)
            z += exp((double)lg[i] - mx);
        for (int64_t i = 0; i < V; i++) {
            double p = exp((double)lg[i] - mx) / z;
            if (p > 0)
                s -= p * log(p);
        }
        sum += s;
        rc = coil_engine_forward(e, tmp, &best, 1, NULL, err);
    }
    *mean_h = sum / ENTROPY_TOKENS;
    return rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int by_seq(const void *a, const void *b)
{
    const coil_ask_evidence_t *x = *(coil_ask_evidence_t *const *)a, *y = *(coil_ask_evidence_t *const *)b;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* ---- ask ---------------------------------------------------------------------------------- */

/* What every phase of an ask needs: the request checked, its document, the
 * grid, the question's ids and the bounds. */
typedef struct {
    docname_ud_t du;
    int64_t grid;
    ids_t q;
    int K, M;
    int64_t budget;
} prep_t;

static void prep_free(prep_t *p)
{
    free(p->du.name);
    free(p->q.v);
    memset(p, 0, sizeof *p);
}

static int prepare(coil_store_t *store, const coil_tokenizer_t *tok, const char *session, const char *doc_name,
                   const char *question, size_t qlen, const coil_ask_options_t *opt, prep_t *p, coil_err_t *err)
{
    int rc;
    memset(p, 0, sizeof *p);
    p->du.id = -1;
    p->K = opt->evidence_k > 0 ? opt->evidence_k : DEFAULT_K;
    p->M = opt->candidates_m > 0 ? opt->candidates_m : DEFAULT_M;
    p->budget = opt->max_reread_tokens > 0 ? opt->max_reread_tokens : DEFAULT_BUDGET;
    if (!tok)
        return coil_err_set(err, COIL_EINVAL, "ask needs the model's tokenizer");
    if (!session == !doc_name)
        return coil_err_set(err, COIL_EINVAL, "ask: give exactly one of a document and a session");
    size_t blank = 0;
    while (question && blank < qlen && isspace((unsigned char)question[blank]))
        blank++;
    if (!question || blank == qlen)
        return coil_err_set(err, COIL_EINVAL, "ask: the question is empty");
    if (qlen > COIL_ASK_MAX_QUESTION_BYTES)
        return coil_err_set(err, COIL_EINVAL, "ask: the question has %zu bytes; at most %d", qlen,
                            COIL_ASK_MAX_QUESTION_BYTES);
    if (opt->strategy < COIL_ASK_AUTO || opt->strategy > COIL_ASK_SELECT)
        return coil_err_set(err, COIL_EINVAL, "ask: unknown strategy %d", opt->strategy);
    if (p->K > COIL_ASK_MAX_PASSAGES || p->M > COIL_ASK_MAX_PASSAGES)
        return coil_err_set(err, COIL_EINVAL, "ask: at most %d passages (evidence) or candidates",
                            COIL_ASK_MAX_PASSAGES);
    if (p->budget > COIL_ASK_MAX_REREAD)
        return coil_err_set(err, COIL_EINVAL, "ask: a re-read budget of at most %d tokens", COIL_ASK_MAX_REREAD);
    if (session && opt->strategy == COIL_ASK_SELECT)
        return coil_err_set(err, COIL_EINVAL,
                            "ask: select answers from a fresh state, so it cannot continue a session (use reread)");
    if (session) {
        coil_store_session_info_t si;
        if ((rc = coil_store_session_get(store, session, &si, err)))
            return rc;
        p->du.id = si.doc_id;
        rc = coil_store_doc_list(store, NULL, on_doc, &p->du, err);
    } else {
        rc = coil_store_doc_list(store, doc_name, on_doc, &p->du, err);
    }
    if (rc)
        goto fail;
    if (!p->du.name) {
        rc = coil_err_set(err, COIL_ENOTFOUND, "ask: the session's document is gone");
        goto fail;
    }
    if (!session && strcmp(p->du.status, "complete") != 0) {
        rc = coil_err_set(err, COIL_ESTATE, "ask: document '%s' is %s, not complete (ask when its ingest is done)",
                          p->du.name, p->du.status);
        goto fail;
    }
    coil_store_progress_t pr;
    if ((rc = coil_store_doc_progress(store, p->du.id, &pr, err)))
        goto fail;
    p->grid = pr.chunk_tokens > 0 ? pr.chunk_tokens : 512;
    /* the question's ids: "\n\n" + question, encoded as one text */
    char *framed = malloc(qlen + 2);
    if (!framed) {
        rc = coil_err_set(err, COIL_ENOMEM, "out of memory");
        goto fail;
    }
    memcpy(framed, "\n\n", 2);
    memcpy(framed + 2, question, qlen);
    rc = add_text(&p->q, tok, framed, qlen + 2, err);
    free(framed);
    if (rc)
        goto fail;
    return 0;
fail:
    prep_free(p);
    return rc;
}

int coil_ask_plan(coil_store_t *store, const coil_tokenizer_t *tok, const char *session, const char *doc_name,
                  const char *question, size_t qlen, const coil_ask_options_t *opt, coil_ask_result_t *res,
                  coil_err_t *err)
{
    const double t0 = now_s();
    const coil_ask_options_t dflt = {0};
    prep_t p;
    int rc;
    if (!opt)
        opt = &dflt;
    memset(res, 0, sizeof *res);
    if ((rc = prepare(store, tok, session, doc_name, question, qlen, opt, &p, err)))
        return rc;
    coil_ask_fts_query(question, qlen, res->fts_query, sizeof res->fts_query);
    if (opt->strategy != COIL_ASK_STATE && res->fts_query[0]) {
        /* the query's words (each quoted, no quote inside), ranked with the
         * document's own statistics: its passages do not depend on what else
         * the store holds */
        char words[sizeof res->fts_query];
        const char *terms[COIL_STORE_MAX_TERMS];
        size_t nt = 0;
        memcpy(words, res->fts_query, sizeof words);
        for (char *c = strchr(words, '"'); c && nt < COIL_STORE_MAX_TERMS;) {
            char *end = strchr(c + 1, '"');
            if (!end)
                break;
            *end = '\0';
            terms[nt++] = c + 1;
            c = strchr(end + 1, '"');
        }
        hits_ud_t hu = {.res = res, .doc_id = p.du.id};
        rc = coil_store_search_doc(store, p.du.id, terms, nt, opt->strategy == COIL_ASK_SELECT ? p.M : p.K, on_hit,
                                   &hu, err);
        if (!rc && hu.fail)
            rc = coil_err_set(err, COIL_ENOMEM, "out of memory");
        if (rc)
            goto out;
    }
    res->strategy = opt->strategy;
    if (res->strategy == COIL_ASK_AUTO)
        res->strategy = res->n_evidence ? COIL_ASK_REREAD : COIL_ASK_STATE;
    if (res->strategy != COIL_ASK_STATE && res->n_evidence == 0) {
        snprintf(res->why, sizeof res->why, "%s: no passage matches the question's words; answered from the end state",
                 coil_ask_strategy_name(res->strategy));
        res->strategy = COIL_ASK_STATE;
    }
out:
    prep_free(&p);
    res->seconds = now_s() - t0;
    return rc;
}

/* select: st = a fresh state after the candidate passage (within the budget)
 * and the question; *n the passage tokens read. */
static int read_candidate(coil_store_t *store, coil_engine_t *e, const prep_t *p, const coil_ask_evidence_t *ev,
                          coil_state_t *st, size_t *n, coil_err_t *err)
{
    int32_t *pids = NULL;
    int64_t to = ev->token_end - ev->token_start > p->budget ? ev->token_start + p->budget : ev->token_end;
    int rc;
    *n = 0;
    coil_state_reset(st);
    if (!(rc = coil_store_doc_tokens(store, p->du.id, ev->token_start, to, &pids, n, err)) &&
        !(rc = coil_feed_grid(e, st, pids, (int64_t)*n, p->grid, NULL, 0, err)))
        rc = coil_feed_grid(e, st, p->q.v, (int64_t)p->q.n, p->grid, NULL, 0, err);
    free(pids);
    return rc;
}

int coil_ask_candidate(coil_store_t *store, coil_engine_t *e, const coil_tokenizer_t *tok, const char *doc_name,
                       const char *question, size_t qlen, const coil_ask_options_t *opt, const coil_ask_evidence_t *ev,
                       coil_state_t *st, double *entropy, int64_t *tokens, coil_err_t *err)
{
    const coil_ask_options_t dflt = {0};
    const int64_t V = coil_model_config(coil_engine_model(e))->vocab_size;
    coil_ask_options_t o = opt ? *opt : dflt;
    coil_state_t *tmp = NULL;
    float *lg = NULL;
    prep_t p;
    size_t n = 0;
    int rc;
    o.strategy = COIL_ASK_AUTO; /* a candidate of a select, whatever the request named */
    if ((rc = prepare(store, tok, NULL, doc_name, question, qlen, &o, &p, err)))
        return rc;
    if (ev->token_start < 0 || ev->token_end <= ev->token_start) {
        rc = coil_err_set(err, COIL_EINVAL, "ask: candidate tokens [%lld, %lld) are not a passage",
                          (long long)ev->token_start, (long long)ev->token_end);
        goto out;
    }
    if (!(lg = malloc((size_t)V * sizeof *lg))) {
        rc = coil_err_set(err, COIL_ENOMEM, "out of memory");
        goto out;
    }
    if (!(tmp = coil_state_clone(st, err))) {
        rc = err->code ? err->code : COIL_ENOMEM;
        goto out;
    }
    if (!(rc = read_candidate(store, e, &p, ev, st, &n, err)))
        rc = confidence(e, st, tmp, lg, V, entropy, err);
    *tokens = (int64_t)n;
out:
    prep_free(&p);
    free(lg);
    coil_state_destroy(&tmp);
    return rc;
}

int coil_ask_answer(coil_store_t *store, coil_engine_t *e, const coil_tokenizer_t *tok, const char *session,
                    const char *doc_name, const char *question, size_t qlen, const coil_ask_options_t *opt,
                    coil_state_t *st, coil_ask_result_t *res, coil_err_t *err)
{
    const double t0 = now_s();
    const coil_ask_options_t dflt = {0};
    const int64_t V = coil_model_config(coil_engine_model(e))->vocab_size;
    ids_t fed = {0};
    int32_t *pids = NULL;
    float *lg = NULL;
    coil_state_t *tmp = NULL, *best = NULL;
    prep_t p;
    int rc;
    if (!opt)
        opt = &dflt;
    if ((rc = prepare(store, tok, session, doc_name, question, qlen, opt, &p, err)))
        goto out;
    const int K = p.K;
    const int64_t budget = p.budget, grid = p.grid;
    if (res->strategy < COIL_ASK_STATE || res->strategy > COIL_ASK_SELECT ||
        (res->strategy != COIL_ASK_STATE && res->n_evidence == 0) ||
        (res->strategy == COIL_ASK_SELECT && session)) {
        rc = coil_err_set(err, COIL_EINVAL, "ask: the plan (strategy %d, %zu passages) cannot be answered",
                          res->strategy, res->n_evidence);
        goto out;
    }

    if (!(lg = malloc((size_t)V * sizeof *lg))) {
        rc = coil_err_set(err, COIL_ENOMEM, "out of memory");
        goto out;
    }
    if (res->strategy == COIL_ASK_SELECT) {
        /* each candidate from a fresh state: passage + question; the most
         * confident answers (the first of equals, in the search's order).  A
         * candidate whose entropy is known already (NaN = not yet: the service
         * measured it on another worker, with tokens_read) is not read again. */
        if (!(tmp = coil_state_clone(st, err)) || !(best = coil_state_clone(st, err))) {
            rc = err->code ? err->code : COIL_ENOMEM;
            goto out;
        }
        double best_h = INFINITY;
        size_t best_i = 0;
        int have_best = 0; /* best holds the state of best_i */
        for (size_t i = 0; i < res->n_evidence; i++) {
            coil_ask_evidence_t *ev = &res->evidence[i];
            int here = isnan(ev->entropy);
            if (here) {
                size_t n = 0;
                if ((rc = read_candidate(store, e, &p, ev, st, &n, err)) ||
                    (rc = confidence(e, st, tmp, lg, V, &ev->entropy, err)))
                    goto out;
                ev->tokens_read = (int64_t)n;
            }
            res->reread_tokens += ev->tokens_read;
            if (ev->entropy < best_h) {
                best_h = ev->entropy;
                best_i = i;
                have_best = here;
                if (here && (rc = coil_state_copy(best, st, err)))
                    goto out;
            }
        }
        res->evidence[best_i].chosen = 1;
        size_t n = 0;
        if (have_best)
            rc = coil_state_copy(st, best, err);
        else /* measured elsewhere: the same reading again */
            rc = read_candidate(store, e, &p, &res->evidence[best_i], st, &n, err);
        if (rc)
            goto out;
        const coil_ask_evidence_t *ev = &res->evidence[best_i];
        int64_t to = ev->token_end - ev->token_start > budget ? ev->token_start + budget : ev->token_end;
        if ((rc = coil_store_doc_tokens(store, p.du.id, ev->token_start, to, &pids, &n, err)) ||
            (rc = ids_add(&fed, pids, n, err)) || (rc = ids_add(&fed, p.q.v, p.q.n, err)))
            goto out;
        if (!res->why[0])
            snprintf(res->why, sizeof res->why,
                     "select: %zu candidate passages read with the question from a fresh state; chunk %lld was "
                     "the most confident (mean entropy %.3f nats)",
                     res->n_evidence, (long long)ev->seq, ev->entropy);
    } else {
        if ((rc = coil_resume_target(store, e, session, session ? NULL : p.du.name, -1, st, NULL, err)))
            goto out;
        if (res->strategy == COIL_ASK_REREAD) {
            /* the best passages within the budget, re-read in document order */
            coil_ask_evidence_t *pick[COIL_ASK_MAX_PASSAGES];
            size_t np = 0;
            int64_t used = 0;
            for (size_t i = 0; i < res->n_evidence && np < (size_t)K; i++) {
                int64_t len = res->evidence[i].token_end - res->evidence[i].token_start;
                if (used + len > budget)
                    continue;
                used += len;
                res->evidence[i].chosen = 1;
                pick[np++] = &res->evidence[i];
            }
            qsort(pick, np, sizeof pick[0], by_seq);
            ids_t sep = {0};
            if ((rc = add_blank_line(&sep, tok, err)))
                goto out;
            for (size_t i = 0; i < np; i++) {
                size_t n = 0;
                free(pids);
                pids = NULL;
                if ((rc = coil_store_doc_tokens(store, p.du.id, pick[i]->token_start, pick[i]->token_end, &pids, &n,
                                                err)) ||
                    (rc = ids_add(&fed, sep.v, sep.n, err)) || (rc = ids_add(&fed, pids, n, err))) {
                    free(sep.v);
                    goto out;
                }
                pick[i]->tokens_read = (int64_t)n;
                res->reread_tokens += (int64_t)n;
            }
            free(sep.v);
            if (!res->why[0])
                snprintf(res->why, sizeof res->why,
                         "reread: %zu of %zu matching passages (%lld tokens, budget %lld) re-read in document order",
                         np, res->n_evidence, (long long)res->reread_tokens, (long long)budget);
        } else if (!res->why[0]) {
            snprintf(res->why, sizeof res->why, "state: the %s's end state, then the question",
                     session ? "session" : "document");
        }
        if ((rc = ids_add(&fed, p.q.v, p.q.n, err)) ||
            (rc = coil_feed_grid(e, st, fed.v, (int64_t)fed.n, grid, NULL, 0, err)))
            goto out;
    }

    /* ---- the answer: scored, or generated */
    if (opt->answer_ids && opt->n_answer) {
        if (!(res->answer_logprobs = malloc(opt->n_answer * sizeof(double)))) {
            rc = coil_err_set(err, COIL_ENOMEM, "out of memory");
            goto out;
        }
        rc = coil_query_score(e, st, opt->answer_ids, opt->n_answer, grid, res->answer_logprobs,
                              &res->answer_logprob, err);
    } else if (opt->n_new > 0) {
        if (!(res->answer = malloc((size_t)opt->n_new * sizeof(int32_t)))) {
            rc = coil_err_set(err, COIL_ENOMEM, "out of memory");
            goto out;
        }
        coil_sampler_options_t so = opt->sampler; /* zeroed options: greedy over the tokenizer's ids */
        if (so.top_p <= 0)
            so.top_p = 1.0f;
        if (so.n_valid <= 0 || so.n_valid > (int64_t)coil_tokenizer_vocab_size(tok))
            so.n_valid = (int64_t)coil_tokenizer_vocab_size(tok) < V ? (int64_t)coil_tokenizer_vocab_size(tok) : V;
        rc = coil_query_generate(e, st, tok, &so, opt->n_new, opt->on_token, opt->on_token_ud, res->answer,
                                 &res->n_answer, err);
        if (!rc)
            rc = ids_add(&fed, res->answer, (size_t)res->n_answer, err);
    }
out:
    free(res->fed);
    res->fed = fed.v;
    res->n_fed = fed.n;
    res->seconds += now_s() - t0;
    prep_free(&p);
    free(pids);
    free(lg);
    coil_state_destroy(&tmp);
    coil_state_destroy(&best);
    return rc;
}

int coil_ask(coil_store_t *store, coil_engine_t *e, const coil_tokenizer_t *tok, const char *session,
             const char *doc_name, const char *question, size_t qlen, const coil_ask_options_t *opt,
             coil_state_t *st, coil_ask_result_t *res, coil_err_t *err)
{
    int rc = coil_ask_plan(store, tok, session, doc_name, question, qlen, opt, res, err);
    return rc ? rc : coil_ask_answer(store, e, tok, session, doc_name, question, qlen, opt, st, res, err);
}

/* ---- the plan between the service's workers --------------------------------------------- */

int coil_ask_plan_from_json(const json_t *j, coil_ask_result_t *res, coil_err_t *err)
{
    const json_t *ev = json_object_get(j, "evidence"), *x;
    const char *strategy = json_string_value(json_object_get(j, "strategy"));
    const char *why = json_string_value(json_object_get(j, "why"));
    const char *search = json_string_value(json_object_get(j, "search"));
    size_t i;
    memset(res, 0, sizeof *res);
    res->strategy = coil_ask_strategy_parse(strategy);
    if (res->strategy <= COIL_ASK_AUTO || !why || !search || !json_is_array(ev) ||
        json_array_size(ev) > COIL_ASK_MAX_PASSAGES)
        return coil_err_set(err, COIL_EPROTO, "ask plan: strategy, why, search or evidence missing or wrong");
    snprintf(res->why, sizeof res->why, "%s", why);
    snprintf(res->fts_query, sizeof res->fts_query, "%s", search);
    res->seconds = json_number_value(json_object_get(j, "seconds"));
    if (json_array_size(ev) && !(res->evidence = calloc(json_array_size(ev), sizeof *res->evidence)))
        return coil_err_set(err, COIL_ENOMEM, "out of memory");
    json_array_foreach(ev, i, x)
    {
        coil_ask_evidence_t *e = &res->evidence[i];
        const json_t *f[6] = {json_object_get(x, "chunk"),      json_object_get(x, "token_start"),
                              json_object_get(x, "token_end"),  json_object_get(x, "byte_start"),
                              json_object_get(x, "byte_end"),   json_object_get(x, "bm25")};
        const char *snip = json_string_value(json_object_get(x, "snippet"));
        for (int k = 0; k < 5; k++)
            if (!json_is_integer(f[k]))
                return coil_err_set(err, COIL_EPROTO, "ask plan: evidence %zu lacks its ranges", i);
        if (!json_is_number(f[5]) || !snip)
            return coil_err_set(err, COIL_EPROTO, "ask plan: evidence %zu lacks bm25 or snippet", i);
        *e = (coil_ask_evidence_t){.seq = json_integer_value(f[0]),
                                   .token_start = json_integer_value(f[1]),
                                   .token_end = json_integer_value(f[2]),
                                   .byte_start = json_integer_value(f[3]),
                                   .byte_end = json_integer_value(f[4]),
                                   .bm25 = json_number_value(f[5]),
                                   .entropy = NAN,
                                   .snippet = strdup(snip)};
        if (!e->snippet)
            return coil_err_set(err, COIL_ENOMEM, "out of memory");
        res->n_evidence = i + 1;
    }
    return 0;
}
