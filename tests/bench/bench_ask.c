/* bench_ask.c -- the recall benchmark of `ask` (issue 14): does re-reading
 * what matters recall a fact the end state has lost, and at what latency?
 * Never run by `make check`.
 *
 *   tests/bench/bench_ask [--model DIR] [--text FILE] [--sizes 4k,32k,256k,1m]
 *                         [--db FILE] [--chunk N] [--threads N]
 *                         [--evidence K] [--candidates M]
 *
 * --threads defaults to 1: the bundled model's matrices (d_model 192) are
 * too small to split, and on the loaded 2-core development machine 2 OpenMP
 * threads ingested Act I at 700-1300 tok/s against 6,000-8,000 with one.
 *
 * Documents: held-out text (the bundled model never trained on Hamlet;
 * examples/sample.txt is Act I, 14,817 tokens), cut into speeches at blank
 * lines and concatenated pass after pass -- each pass rotated to start 37
 * speeches later than the one before -- until the document has about the
 * size asked for (4k = 4096 tokens, 1m = 1,048,576).  Into each, at 10%, 50%
 * and 90% of its tokens (between two speeches), three different invented
 * facts are planted, each with its own rare place word:
 *
 *     HAMLET.
 *     At Wittenmoor I dream'd of the quicksilver orchard of Zembla.
 *
 * The question for that fact is "HAMLET.\nAgain at Wittenmoor I dream'd of"
 * (its words find the fact: "wittenmoor" is in no other chunk) and the
 * answer scored is " the quicksilver orchard of Zembla".  Each document is
 * ingested once (all three depths in it) into a store: --db FILE keeps the
 * store (a second run finds the documents already ingested and skips the
 * ingest: the documents are rebuilt byte for byte), else a temp file is used
 * and removed.
 *
 * For each document, depth and strategy (state, reread, select; the
 * library's defaults unless --evidence / --candidates) the benchmark asks the
 * question once per candidate answer, scoring it (coil_ask with answer_ids):
 * the true answer, the two other planted facts' answers and seven more of
 * the same shape (" the ADJ NOUN of NAME", never planted).  It prints the
 * true answer's log-probability and its rank among the 10; its gain (log p
 * minus its log p after the question alone from a fresh state: the answer's
 * prior, which differs by word far more than recall moves it), its rank by
 * gain (1 = recalled) and the margin of its gain over the best distractor's;
 * whether the evidence held the fact (the planted sentence inside a re-read
 * passage / the chosen passage); the passage tokens read; and the ask
 * latency: p50 and max over the 10 asks, after the document is stored (each
 * ask resumes the document's end state from its checkpoint, searches,
 * re-reads and scores one answer).  A "copy ceiling" line comes first: the
 * gain after the planted sentence alone, right before the question, from a
 * fresh state -- the most any re-reading can give.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "ask.h"
#include "ingest.h"
#include "testutil.h"

#define N_DEPTHS 3
#define N_ANSWERS 10
#define N_STRATEGIES 3
#define ROTATE 37

static const double depths[N_DEPTHS] = {0.10, 0.50, 0.90};
static const char *const places[N_DEPTHS] = {"Wittenmoor", "Quellenby", "Brackenfold"};
/* answer i = " the adj[i] noun[i] of name[i]"; 0..2 are planted (depth 10/50/90%), 3..9 distractors.
 * Every answer is 14 tokens with the bundled model's tokenizer, so that no
 * answer wins by being shorter (checked at start: a tokenizer that makes
 * them differ is reported). */
static const char *const adjs[N_ANSWERS] = {"quicksilver", "porphyry", "saffron", "velvet", "crimson",
                                            "copper", "ivory", "cobalt", "pewter", "russet"};
static const char *const nouns[N_ANSWERS] = {"orchard", "lantern", "bridle", "cistern", "mitre",
                                             "lattice", "chalice", "gazebo", "turret", "fountain"};
static const char *const names[N_ANSWERS] = {"Zembla", "Marodine", "Ostravel", "Pellucor", "Tarrowin",
                                             "Drumavon", "Quorlith", "Velmire", "Ilbrecht", "Isfandel"};
static const int strategies[N_STRATEGIES] = {COIL_ASK_STATE, COIL_ASK_REREAD, COIL_ASK_SELECT};

static void die(const char *what, const coil_err_t *err)
{
    fprintf(stderr, "bench_ask: %s: %s\n", what, err && err->msg[0] ? err->msg : strerror(errno));
    exit(1);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- growing strings ------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t n, cap;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        if (!(b->s = realloc(b->s, cap)))
            die("out of memory", NULL);
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
}

/* ---- the documents ---------------------------------------------------------------- */

typedef struct {
    const char *label;
    int64_t target;                /* tokens asked for */
    buf_t text;
    int64_t fact_byte[N_DEPTHS][2]; /* the planted sentence's bytes [start, end) (no blank line) */
    int64_t fact_token[N_DEPTHS];   /* tokens before it */
    int64_t tokens;                 /* ingested */
    double ingest_s;
    int already;
} doc_t;

typedef struct {
    char **s;     /* speeches, each ending "\n\n" */
    int64_t *ntok; /* tokens of each, encoded alone (an estimate of its share) */
    size_t n;
} speeches_t;

static void load_speeches(const char *path, const coil_tokenizer_t *tok, speeches_t *sp)
{
    coil_err_t err = {0};
    size_t len;
    char *t = tu_read(path, &len);
    if (!t)
        die(path, NULL);
    memset(sp, 0, sizeof *sp);
    size_t cap = 0;
    for (size_t i = 0; i < len;) {
        while (i < len && t[i] == '\n')
            i++;
        size_t j = i;
        while (j < len && !(t[j] == '\n' && j + 1 < len && t[j + 1] == '\n'))
            j++;
        if (j > len)
            j = len;
        size_t n = j - i;
        while (n && (t[i + n - 1] == '\n' || t[i + n - 1] == ' '))
            n--;
        if (n) {
            if (sp->n == cap) {
                cap = cap ? 2 * cap : 256;
                sp->s = realloc(sp->s, cap * sizeof *sp->s);
                sp->ntok = realloc(sp->ntok, cap * sizeof *sp->ntok);
                if (!sp->s || !sp->ntok)
                    die("out of memory", NULL);
            }
            char *s = malloc(n + 3);
            if (!s)
                die("out of memory", NULL);
            memcpy(s, t + i, n);
            memcpy(s + n, "\n\n", 3);
            int32_t *ids = NULL;
            size_t nid = 0;
            if (coil_tokenizer_encode(tok, s, n + 2, &ids, &nid, &err))
                die("encode", &err);
            free(ids);
            sp->s[sp->n] = s;
            sp->ntok[sp->n++] = (int64_t)nid;
        }
        i = j;
    }
    free(t);
    if (sp->n < 2 * ROTATE)
        die("the text has too few speeches (blank-line separated paragraphs)", NULL);
}

static void fact_text(int d, char *buf, size_t cap)
{
    snprintf(buf, cap, "HAMLET.\nAt %s I dream'd of the %s %s of %s.\n\n", places[d], adjs[d], nouns[d], names[d]);
}

static void question_text(int d, char *buf, size_t cap)
{
    snprintf(buf, cap, "HAMLET.\nAgain at %s I dream'd of", places[d]);
}

static void answer_text(int i, char *buf, size_t cap)
{
    snprintf(buf, cap, " the %s %s of %s", adjs[i], nouns[i], names[i]);
}

/* Builds the document: speeches pass after pass (each pass rotated by
 * ROTATE), the facts planted at their depths, until ~target tokens. */
static void build_doc(doc_t *d, const speeches_t *sp, const coil_tokenizer_t *tok)
{
    coil_err_t err = {0};
    int64_t est = 0;
    int planted = 0;
    for (size_t pass = 0; est < d->target; pass++) {
        for (size_t k = 0; k < sp->n && est < d->target; k++) {
            size_t i = (pass * ROTATE + k) % sp->n;
            /* plant before this speech if that is the boundary nearest the depth */
            while (planted < N_DEPTHS && est + sp->ntok[i] / 2 >= (int64_t)(depths[planted] * (double)d->target)) {
                char f[256];
                fact_text(planted, f, sizeof f);
                d->fact_byte[planted][0] = (int64_t)d->text.n;
                d->fact_byte[planted][1] = (int64_t)(d->text.n + strlen(f) - 2);
                int32_t *ids = NULL;
                size_t n = 0;
                if (coil_tokenizer_encode(tok, d->text.s ? d->text.s : "", d->text.n, &ids, &n, &err))
                    die("encode", &err);
                free(ids);
                d->fact_token[planted] = (int64_t)n;
                put(&d->text, f, strlen(f));
                planted++;
            }
            put(&d->text, sp->s[i], strlen(sp->s[i]));
            est += sp->ntok[i];
        }
    }
}

static int64_t parse_size(const char *s, const char **label)
{
    static const struct {
        const char *name;
        int64_t tokens;
    } known[] = {{"4k", 4096}, {"32k", 32768}, {"256k", 262144}, {"1m", 1048576}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcasecmp(s, known[i].name) == 0) {
            *label = known[i].name;
            return known[i].tokens;
        }
    return -1;
}

/* ---- the machine ------------------------------------------------------------------ */

static void print_machine(int threads)
{
    char model[256] = "unknown", line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ')
                    c++;
                c[strcspn(c, "\n")] = '\0';
                snprintf(model, sizeof model, "%s", c);
            }
            break;
        }
    if (f)
        fclose(f);
    long mem = 0;
    f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemTotal: %ld kB", &mem) == 1)
            break;
    if (f)
        fclose(f);
    double load[3] = {0};
    f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
            load[0] = load[1] = load[2] = -1;
        fclose(f);
    }
    int eng_threads = threads;
#ifdef _OPENMP
    if (!eng_threads)
        eng_threads = omp_get_max_threads();
#endif
    struct utsname u;
    uname(&u);
    printf("machine: %s, %ld online CPUs, %.1f GiB, %s %s; engine threads %d; load average %.2f %.2f %.2f\n",
           model, sysconf(_SC_NPROCESSORS_ONLN), (double)mem / (1024.0 * 1024.0), u.sysname, u.machine,
           eng_threads, load[0], load[1], load[2]);
}

/* ---- asking ------------------------------------------------------------------------ */

typedef struct {
    double lp[N_ANSWERS]; /* log p of each answer */
    double lat[N_ANSWERS]; /* seconds of each ask */
    int evidence;          /* 0 no, 1 the fact was read, 2 part of it, -1 n/a (state) */
    int candidate;         /* select: the fact's passage was among the candidates */
    int64_t read_tokens;
    int used;              /* the strategy ask used (a fallback to state shows here) */
} cell_t;

/* Does passage [b0, b1) hold the fact [f0, f1)? 1 whole, 2 part, 0 no. */
static int holds(int64_t b0, int64_t b1, const int64_t f[2])
{
    if (b0 <= f[0] && f[1] <= b1)
        return 1;
    if (b0 < f[1] && f[0] < b1)
        return 2;
    return 0;
}

static void run_cell(coil_store_t *store, coil_engine_t *e, const coil_tokenizer_t *tok, coil_state_t *st,
                     const doc_t *d, int depth, int strategy, const int32_t *const *ans, const size_t *nans, int K,
                     int M, cell_t *c)
{
    coil_err_t err = {0};
    char q[256];
    question_text(depth, q, sizeof q);
    memset(c, 0, sizeof *c);
    c->evidence = -1;
    for (int a = 0; a < N_ANSWERS; a++) {
        /* the planted answer of this depth is scored first */
        int i = a == 0 ? depth : a == depth ? 0 : a;
        coil_ask_options_t o = {.strategy = strategy,
                                .evidence_k = K,
                                .candidates_m = M,
                                .answer_ids = ans[i],
                                .n_answer = nans[i]};
        coil_ask_result_t r;
        double t0 = now_s();
        if (coil_ask(store, e, tok, NULL, d->label, q, strlen(q), &o, st, &r, &err))
            die("ask", &err);
        c->lat[a] = now_s() - t0;
        c->lp[i] = r.answer_logprob;
        if (a == 0) {
            c->used = r.strategy;
            c->read_tokens = r.reread_tokens;
            if (r.strategy != COIL_ASK_STATE) {
                c->evidence = 0;
                for (size_t k = 0; k < r.n_evidence; k++) {
                    int h = holds(r.evidence[k].byte_start, r.evidence[k].byte_end, d->fact_byte[depth]);
                    if (h && r.strategy == COIL_ASK_SELECT)
                        c->candidate = 1;
                    if (h && r.evidence[k].chosen && (c->evidence == 0 || h == 1))
                        c->evidence = h;
                }
            }
        }
        coil_ask_result_free(&r);
    }
}

/* log p of each answer from a fresh state after the question alone (no
 * document: the answers' prior, which the gain columns subtract) or, with
 * with_fact, after the planted sentence alone and then the question, framed
 * as ask frames a re-read passage -- tok("\n\n" + fact), i.e. the blank
 * line as tokenized before a word and the sentence's ids, then
 * tok("\n\n" + question) -- the best any re-reading can do. */
static void fresh_scores(coil_engine_t *e, const coil_tokenizer_t *tok, coil_state_t *st, int depth, int with_fact,
                         int64_t grid, const int32_t *const *ans, const size_t *nans, double *lp)
{
    coil_err_t err = {0};
    char f[260] = "\n\n", q[260] = "\n\n";
    question_text(depth, q + 2, sizeof q - 2);
    fact_text(depth, f + 2, sizeof f - 2);
    f[strlen(f) - 2] = '\0'; /* the sentence, without its own blank line */
    const char *parts[2] = {f, q};
    for (int i = 0; i < N_ANSWERS; i++) {
        double per[64];
        coil_state_reset(st);
        for (int p = with_fact ? 0 : 1; p < 2; p++) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (coil_tokenizer_encode(tok, parts[p], strlen(parts[p]), &ids, &n, &err) ||
                coil_feed_grid(e, st, ids, (int64_t)n, grid, NULL, 0, &err))
                die("fresh score", &err);
            free(ids);
        }
        if (nans[i] > sizeof per / sizeof per[0] || coil_query_score(e, st, ans[i], nans[i], grid, per, &lp[i], &err))
            die("fresh score", &err);
    }
}

/* rank of answer `dep` by gain (lp - lp0) among all; *margin = its gain - the best other's */
static int rank_by_gain(const double *lp, const double *lp0, int dep, double *margin)
{
    double best = -INFINITY, g = lp[dep] - lp0[dep];
    int r = 1;
    for (int i = 0; i < N_ANSWERS; i++)
        if (i != dep) {
            double gi = lp[i] - lp0[i];
            if (gi > best)
                best = gi;
            r += gi >= g;
        }
    *margin = g - best;
    return r;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_ask [--model DIR] [--text FILE] [--sizes 4k,32k,256k,1m] [--db FILE] "
                    "[--chunk N] [--threads N] [--evidence K] [--candidates M]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *src = getenv("COIL_SRCDIR");
    char model_dir[4096], text_path[4096], sizes[256] = "4k,32k,256k,1m";
    const char *db_arg = NULL;
    int64_t chunk = 256;
    int threads = 1, K = 0, M = 0;
    snprintf(model_dir, sizeof model_dir, "%s/examples/model", src && *src ? src : ".");
    snprintf(text_path, sizeof text_path, "%s/examples/sample.txt", src && *src ? src : ".");
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (strcmp(argv[i], "--model") == 0)
            snprintf(model_dir, sizeof model_dir, "%s", v);
        else if (strcmp(argv[i], "--text") == 0)
            snprintf(text_path, sizeof text_path, "%s", v);
        else if (strcmp(argv[i], "--sizes") == 0)
            snprintf(sizes, sizeof sizes, "%s", v);
        else if (strcmp(argv[i], "--db") == 0)
            db_arg = v;
        else if (strcmp(argv[i], "--chunk") == 0)
            chunk = atoll(v);
        else if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(v);
        else if (strcmp(argv[i], "--evidence") == 0)
            K = atoi(v);
        else if (strcmp(argv[i], "--candidates") == 0)
            M = atoi(v);
        else
            usage();
        i++;
    }
    if (chunk < 16 || chunk > 4096 || threads < 0 || K < 0 || K > COIL_ASK_MAX_PASSAGES || M < 0 ||
        M > COIL_ASK_MAX_PASSAGES) {
        fprintf(stderr, "bench_ask: --chunk in [16, 4096], --threads >= 0, --evidence and --candidates in [0, %d]\n",
                COIL_ASK_MAX_PASSAGES);
        return 2;
    }

    /* the sizes */
    doc_t docs[8];
    size_t nd = 0;
    for (char *s = strtok(sizes, ","); s; s = strtok(NULL, ",")) {
        const char *label;
        int64_t t = parse_size(s, &label);
        if (t < 0 || nd == sizeof docs / sizeof docs[0]) {
            fprintf(stderr, "bench_ask: --sizes: '%s' is not one of 4k, 32k, 256k, 1m\n", s);
            return 2;
        }
        docs[nd] = (doc_t){.label = label, .target = t};
        nd++;
    }

    coil_err_t err = {0};
    char tp[4200];
    snprintf(tp, sizeof tp, "%s/tokenizer.json", model_dir);
    coil_model_t *m = coil_model_load(model_dir, &err);
    if (!m)
        die("model", &err);
    coil_engine_options_t eo = {.threads = threads};
    coil_engine_t *e = coil_engine_new(m, &eo, &err);
    coil_tokenizer_t *tok = e ? coil_tokenizer_load(tp, &err) : NULL;
    coil_state_t *st = tok ? coil_state_new(m, &err) : NULL;
    if (!st)
        die("engine", &err);
    char *tmp = tu_mkdtemp();
    char db[4300];
    if (db_arg)
        snprintf(db, sizeof db, "%s", db_arg);
    else
        snprintf(db, sizeof db, "%s/ask.db", tmp);
    coil_store_t *store = coil_store_open(db, NULL, &err);
    if (!store)
        die(db, &err);

    print_machine(threads);
    const coil_model_config_t *cfg = coil_model_config(m);
    printf("model: %s (d_model %lld, %lld layers, vocab %lld); text: %s; chunk grid %lld tokens; store %s%s\n",
           model_dir, (long long)cfg->d_model, (long long)cfg->n_layer, (long long)cfg->vocab_size, text_path,
           (long long)chunk, db, db_arg ? "" : " (temporary)");
    printf("ask options: evidence K %d, candidates M %d (0 = the library's default: K 3, M 4), re-read budget "
           "2048 tokens\n",
           K, M);

    /* the answers' ids */
    int32_t *ans[N_ANSWERS];
    size_t nans[N_ANSWERS];
    for (int i = 0; i < N_ANSWERS; i++) {
        char a[128];
        answer_text(i, a, sizeof a);
        if (coil_tokenizer_encode(tok, a, strlen(a), &ans[i], &nans[i], &err))
            die("encode", &err);
    }

    for (int i = 1; i < N_ANSWERS; i++)
        if (nans[i] != nans[0])
            printf("note: answer %d has %zu tokens, answer 0 %zu: ranks are biased by length\n", i, nans[i], nans[0]);
    printf("answers: %zu tokens each; planted at 10%%, 50%%, 90%% depth:", nans[0]);
    for (int dd = 0; dd < N_DEPTHS; dd++) {
        char f[256];
        question_text(dd, f, sizeof f);
        printf(" \"%s\" ->", f);
        answer_text(dd, f, sizeof f);
        printf(" \"%s\"%s", f, dd + 1 < N_DEPTHS ? ";" : "\n");
    }

    /* the documents, ingested once each */
    speeches_t sp;
    load_speeches(text_path, tok, &sp);
    for (size_t k = 0; k < nd; k++) {
        doc_t *d = &docs[k];
        build_doc(d, &sp, tok);
        char path[4400];
        snprintf(path, sizeof path, "%s/%s.txt", tmp, d->label);
        if (tu_write(path, d->text.s, d->text.n))
            die(path, NULL);
        coil_ingest_options_t io = {.chunk_tokens = chunk, .model_path = model_dir};
        coil_ingest_result_t res;
        fprintf(stderr, "bench_ask: ingesting %s (%zu bytes)...\n", d->label, d->text.n);
        double t0 = now_s();
        if (coil_ingest_file(store, e, tok, d->label, path, &io, &res, &err))
            die("ingest", &err);
        d->ingest_s = now_s() - t0;
        d->tokens = res.tokens;
        d->already = res.already;
        if (res.already)
            printf("document %-4s %8lld tokens %9zu bytes: already in the store\n", d->label, (long long)d->tokens,
                   d->text.n);
        else
            printf("document %-4s %8lld tokens %9zu bytes: ingested in %.1f s (%.0f tok/s)\n", d->label,
                   (long long)d->tokens, d->text.n, d->ingest_s, (double)d->tokens / d->ingest_s);
        fflush(stdout);
    }

    printf("\n| size | tokens | depth | strategy | log p(answer) | rank /%d | gain | rank by gain | gain margin "
           "| evidence | passage tokens | latency p50 / max |\n",
           N_ANSWERS);
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    int recalled[N_STRATEGIES] = {0}, recalled_gain[N_STRATEGIES] = {0}, cells = 0, beat_state[N_STRATEGIES] = {0};
    double over_state[N_STRATEGIES] = {0};
    double lat_by[N_STRATEGIES][8];
    double lp0[N_DEPTHS][N_ANSWERS];
    for (int dep = 0; dep < N_DEPTHS; dep++)
        fresh_scores(e, tok, st, dep, 0, chunk, (const int32_t *const *)ans, nans, lp0[dep]);
    printf("copy ceiling (fresh state, the planted sentence alone, then the question):");
    for (int dep = 0; dep < N_DEPTHS; dep++) {
        double lpc[N_ANSWERS], mg;
        fresh_scores(e, tok, st, dep, 1, chunk, (const int32_t *const *)ans, nans, lpc);
        int r = rank_by_gain(lpc, lp0[dep], dep, &mg);
        printf(" %s: log p %.2f, gain %+.2f, rank by gain %d, gain margin %+.2f%s", places[dep], lpc[dep],
               lpc[dep] - lp0[dep][dep], r, mg, dep + 1 < N_DEPTHS ? ";" : "\n");
    }
    for (size_t k = 0; k < nd; k++) {
        const doc_t *d = &docs[k];
        double lat_all[N_STRATEGIES][N_DEPTHS * N_ANSWERS];
        for (int dep = 0; dep < N_DEPTHS; dep++) {
            double lp_state = NAN;
            cells++;
            for (int s = 0; s < N_STRATEGIES; s++) {
                cell_t c;
                run_cell(store, e, tok, st, d, dep, strategies[s], (const int32_t *const *)ans, nans, K, M, &c);
                double g = c.lp[dep] - lp0[dep][dep], gmargin;
                int rank = 1, rank_g = rank_by_gain(c.lp, lp0[dep], dep, &gmargin);
                for (int i = 0; i < N_ANSWERS; i++)
                    rank += i != dep && c.lp[i] >= c.lp[dep];
                recalled[s] += rank == 1;
                recalled_gain[s] += rank_g == 1;
                if (s == 0)
                    lp_state = c.lp[dep];
                else {
                    beat_state[s] += c.lp[dep] > lp_state;
                    over_state[s] += c.lp[dep] - lp_state;
                }
                double lat[N_ANSWERS];
                memcpy(lat, c.lat, sizeof lat);
                memcpy(lat_all[s] + dep * N_ANSWERS, c.lat, sizeof lat);
                qsort(lat, N_ANSWERS, sizeof lat[0], cmp_double);
                const char *ev = c.evidence < 0   ? "n/a"
                                 : c.evidence == 1 ? "yes"
                                 : c.evidence == 2 ? "part"
                                 : c.candidate     ? "no (a candidate)"
                                                   : "no";
                char sname[40];
                snprintf(sname, sizeof sname, "%s%s", coil_ask_strategy_name(strategies[s]),
                         c.used != strategies[s] ? " (fell back to state)" : "");
                printf("| %s | %lld | %.0f%% | %s | %.2f | %d | %+.2f | %d | %+.2f | %s | %lld | %.0f / %.0f ms |\n",
                       d->label, (long long)d->tokens, 100.0 * (double)d->fact_token[dep] / (double)d->tokens, sname,
                       c.lp[dep], rank, g, rank_g, gmargin, ev, (long long)c.read_tokens,
                       1e3 * lat[N_ANSWERS / 2], 1e3 * lat[N_ANSWERS - 1]);
                fflush(stdout);
            }
        }
        for (int s = 0; s < N_STRATEGIES; s++) {
            qsort(lat_all[s], N_DEPTHS * N_ANSWERS, sizeof(double), cmp_double);
            lat_by[s][k] = lat_all[s][N_DEPTHS * N_ANSWERS / 2];
        }
    }
    printf("\nrank 1 of %d in %d (size, depth) cells, by log p / by gain:", N_ANSWERS, cells);
    for (int s = 0; s < N_STRATEGIES; s++)
        printf(" %s %d / %d%s", coil_ask_strategy_name(strategies[s]), recalled[s], recalled_gain[s],
               s + 1 < N_STRATEGIES ? "," : "\n");
    printf("log p(answer) above state's: reread in %d of %d cells (mean %+.2f nats), select in %d of %d (mean %+.2f)\n",
           beat_state[1], cells, over_state[1] / cells, beat_state[2], cells, over_state[2] / cells);
    printf("ask latency p50 by size (all %d asks of each size):", N_DEPTHS * N_ANSWERS);
    for (size_t k = 0; k < nd; k++) {
        printf("  %s:", docs[k].label);
        for (int s = 0; s < N_STRATEGIES; s++)
            printf(" %s %.0f ms", coil_ask_strategy_name(strategies[s]), 1e3 * lat_by[s][k]);
    }
    printf("\n");

    for (int i = 0; i < N_ANSWERS; i++)
        free(ans[i]);
    for (size_t k = 0; k < nd; k++)
        free(docs[k].text.s);
    for (size_t i = 0; i < sp.n; i++)
        free(sp.s[i]);
    free(sp.s);
    free(sp.ntok);
    coil_store_close(&store);
    coil_state_destroy(&st);
    coil_tokenizer_destroy(&tok);
    coil_engine_destroy(&e);
    coil_model_destroy(&m);
    tu_rm_rf(tmp);
    free(tmp);
    return 0;
}
