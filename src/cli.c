/* cli.c -- `coil`, the command-line front end: dispatch, options, and the
 * commands that need only a model (info, logits, generate, tokenize).
 * The store-backed commands live in cli_store.c.
 *
 * Errors go to stderr as "coil: <message>" with exit status 1 (2 for usage).
 */
#include "cli.h"

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "family.h"
#include "ingest.h"
#include "query.h"
#include "sampling.h"

#define MAX_IDS ((size_t)1 << 26)
#define MAX_TEXT ((size_t)1 << 30)

/* ---- usage and help ------------------------------------------------------------ */

static const char usage_text[] =
    "usage: coil <command> [options]        (coil <command> --help: that command in full)\n"
    "model commands (--model DIR, default $COIL_MODEL, else the bundled model):\n"
    "  info      the model as understood: config, parameters, state size, CPU and kernels\n"
    "  logits    --ids 1,2,3 --out FILE     float32 logits, T x vocab\n"
    "  generate  (--ids 1,2,3 | --prompt TEXT) [-n N] [--temperature T] [--top-p P] [--seed S]\n"
    "  tokenize  [--decode]                 stdin text -> ids (or ids -> text)\n"
    "  score     (--text T | --file F)      bits per byte of a text, from scratch\n"
    "store commands (--db FILE):\n"
    "  ingest    --name NAME (--file PATH | -)      read a document into the store (resumable)\n"
    "  docs                                         documents with status, tokens, checkpoints\n"
    "  search    QUERY [--doc NAME] [--limit N]     full-text search over the chunks\n"
    "  session   new | append | fork | delete | list\n"
    "  sessions  [--doc NAME]                       the sessions\n"
    "  generate  (--session ID | --doc NAME) [-n N] [--append]   continue a stored state\n"
    "  score     (--session ID | --doc NAME) --text T            log-probs after a stored state\n"
    "  state     export | import                    states as files\n"
    "  check                                        verify the database, every checkpoint and the index\n"
    "  ask       --doc NAME QUESTION [--strategy auto|state|reread|select]   answer by re-reading\n"
    "common: --model DIR  --threads N  --backend cpu|cpu-portable|cuda[:f32|tf32|bf16]  --sync full|normal  --quiet\n"
    "remote: --connect tcp://HOST:PORT [--timeout S] runs ingest, docs, search, session, generate, ask,\n"
    "        score and state against a coild server (no --db or --model)\n"
    "also:   coil --version, coil help COMMAND\n";

/* Each command's full help (stdout, status 0, for `coil CMD --help`). */
static const struct cmd_help {
    const char *name, *text;
} cmd_helps[] = {
    {"info", "usage: coil info [--model DIR]\n"
             "Prints the model's config as coil understands it, its parameter count, fingerprint and state size,\n"
             "and the CPU features, kernel set and matrix library in use.\n"},
    {"logits", "usage: coil logits --ids 1,2,3 --out FILE [--model DIR] [--chunk N]\n"
               "Runs the ids through the model and writes float32 little-endian logits, T x vocab, row-major,\n"
               "to FILE (atomically). --chunk N: tokens per engine step (default 256).\n"},
    {"generate",
     "usage: coil generate (--ids 1,2,3 | --prompt TEXT) [-n N] [--temperature T] [--top-p P] [--seed S]\n"
     "       coil generate --db FILE (--session ID | --doc NAME) [--at TOKEN] [--prompt TEXT] [-n N] [--append]\n"
     "Samples N tokens (default 16): greedy at --temperature 0, else temperature / nucleus (--top-p, in (0,1])\n"
     "sampling with a seeded generator (--seed, default 0: the same seed gives the same text).\n"
     "With --db, continues the stored state of a session or document (at its end, or at --at TOKEN);\n"
     "--append adds the prompt and the generated tokens to the session (--session only).\n"},
    {"tokenize", "usage: coil tokenize [--model DIR] [--file F] [--decode [--skip-special]]\n"
                 "Reads text (stdin or --file) and prints comma-separated token ids; with --decode reads ids and\n"
                 "prints the text.\n"},
    {"score", "usage: coil score --db FILE (--session ID | --doc NAME) [--at TOKEN] (--text T | --file F)\n"
              "       coil score (--text T | --file F)\n"
              "With --db: the log-probability of each token of the text after the stored state (JSON).\n"
              "Without: the text's own log-probability from a fresh state, in nats and bits per byte (JSON).\n"},
    {"ingest",
     "usage: coil ingest --db FILE --name NAME (--file PATH | -) [--chunk N] [--interval N] [--replace]\n"
     "                   [--binary] [--sync full|normal] [--model DIR] [--threads N] [--quiet]\n"
     "Reads a document (a file, or - for standard input) into the store: chunks of --chunk tokens (default\n"
     "512), full-text indexed, with a checkpoint of the model state every --interval tokens (default 4096,\n"
     "a multiple of the chunk) and at the end. Creates the database if needed.\n"
     "Ctrl-C (SIGINT) or SIGTERM checkpoints at the next chunk and exits with status 130; running the same\n"
     "command again resumes. Run again on a complete document with the same input, model and chunk size,\n"
     "it says \"already ingested\" and exits 0; a different input, model or chunk size is an error unless\n"
     "--replace. Input that is not text (NUL bytes, mostly invalid UTF-8) is refused unless --binary.\n"
     "Progress goes to stderr: a live line on a terminal, else a line every 5 seconds (--progress S to\n"
     "change; --quiet: none), with tokens, tok/s, and the percentage and ETA when the size is known.\n"},
    {"docs", "usage: coil docs --db FILE [--doc NAME]\n"
             "Lists the documents: status, tokens, bytes, chunks, checkpoints and their size.\n"},
    {"search", "usage: coil search --db FILE QUERY [--doc NAME] [--limit N]\n"
               "Full-text search (SQLite FTS5 syntax, BM25-ranked) over the chunks; prints each hit's chunk,\n"
               "token and byte ranges and a snippet with the matches highlighted (bold on a terminal,\n"
               "\xc2\xabthus\xc2\xbb otherwise). --limit: at most N hits (default 20, at most 1000).\n"},
    {"session",
     "usage: coil session new --db FILE --doc NAME [--at TOKEN]     start a session from a document's state\n"
     "       coil session append ID --db FILE (--text T | --file F) [--key K]   read more text into it\n"
     "       coil session fork ID --db FILE [--at TOKEN]            a new session sharing ID's history\n"
     "       coil session delete ID --db FILE [--cascade]           (--cascade: with its forks)\n"
     "       coil session list --db FILE [--doc NAME]\n"
     "new and fork print the new session's id. append --key K happens at most once for a given K.\n"},
    {"sessions", "usage: coil sessions --db FILE [--doc NAME]\n"
                 "Lists the sessions: parent, document, base, head, checkpoints, children.\n"},
    {"state", "usage: coil state export --db FILE (--doc NAME | --session ID) [--at TOKEN] --out FILE\n"
              "       coil state import --db FILE --in FILE --name NAME [--replace]\n"
              "export writes the model state at a position as a checksummed blob; import makes it a complete\n"
              "document of the database (created if needed), for sessions and queries.\n"},
    {"ask",
     "usage: coil ask --db FILE (--doc NAME | --session ID) QUESTION [-n N] [--strategy S] [--evidence K]\n"
     "                [--candidates M] [--budget T] [--answer TEXT] [--key K] [--temperature T] [--seed S]\n"
     "Answers a question about a stored document and shows the evidence: the passages read.\n"
     "  --strategy state    the document's end state, then the question\n"
     "  --strategy reread   the end state, then the K passages (--evidence, default 3) that a search for the\n"
     "                      question's words ranks best, re-read in document order, then the question\n"
     "  --strategy select   M candidate passages (--candidates, default 4), each read with the question from a\n"
     "                      fresh state; the one whose first answer tokens are the most confident answers\n"
     "  --strategy auto     (the default) reread when passages match, else state\n"
     "--budget T: at most T passage tokens re-read (default 2048, at most 8192), whatever the document's size.\n"
     "-n N: answer tokens (default 16; greedy unless --temperature). --answer TEXT: score that answer instead\n"
     "(its log-probability). The document never changes; --session ID asks a session and appends what was\n"
     "read and answered to it (exactly once with --key K).\n"},
    {"check", "usage: coil check --db FILE\n"
              "Verifies the database: SQLite's integrity_check, the full-text index, every checkpoint's\n"
              "checksum and the chunk grid. Prints what it checked; exits 1 naming the first problem.\n"},
};

static const struct cmd_help *find_help(const char *cmd)
{
    for (size_t i = 0; i < sizeof cmd_helps / sizeof cmd_helps[0]; i++)
        if (strcmp(cmd_helps[i].name, cmd) == 0)
            return &cmd_helps[i];
    return NULL;
}

int cli_usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "coil: %s\n", msg);
    fputs(usage_text, stderr);
    return 2;
}

/* `coil CMD --help`, `coil help [CMD]`: to stdout, status 0 (2 for an unknown command). */
static int cli_help(const char *cmd)
{
    if (!cmd) {
        fputs(usage_text, stdout);
        return 0;
    }
    const struct cmd_help *h = find_help(cmd);
    if (!h) {
        fprintf(stderr, "coil: unknown command '%s'\n", cmd);
        return cli_usage(NULL);
    }
    fputs(h->text, stdout);
    return 0;
}

int cli_fail(const coil_err_t *err)
{
    fprintf(stderr, "coil: %s\n", err->msg[0] ? err->msg : coil_strerror(err->code));
    return 1;
}

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_f64(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return (errno || end == s || *end) ? -1 : 0;
}

/* "1,2,3" -> ids. Strict: digits and single commas (whitespace at the ends ok). */
static int parse_ids(const char *s, int32_t **ids, size_t *n, coil_err_t *err)
{
    size_t cap = 64, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    const char *p = s;
    if (!v)
        return coil_err_set(err, COIL_ENOMEM, "out of memory");
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    while (*p) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        const char *q = end;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
            q++;
        if (end == p || errno || x < 0 || x > INT32_MAX || (*q && *end != ',') || (*end == ',' && !end[1])) {
            free(v);
            return coil_err_set(err, COIL_EINVAL, "ids: expected comma-separated non-negative integers near \"%.20s\"",
                                p);
        }
        if (k == cap) {
            int32_t *nv = cap >= MAX_IDS ? NULL : realloc(v, 2 * cap * sizeof *v);
            if (!nv) {
                free(v);
                return coil_err_set(err, cap >= MAX_IDS ? COIL_ETOOBIG : COIL_ENOMEM, "ids: more than %zu", cap);
            }
            v = nv;
            cap *= 2;
        }
        v[k++] = (int32_t)x;
        p = *q ? end + 1 : q;
    }
    if (k == 0) {
        free(v);
        return coil_err_set(err, COIL_EINVAL, "ids: none given");
    }
    *ids = v;
    *n = k;
    return 0;
}

static int parse_opts(int argc, char **argv, int n_sub, cli_opts_t *o)
{
    static const struct option lo[] = {
        {"model", 1, 0, 'm'},   {"ids", 1, 0, 'i'},       {"out", 1, 0, 'o'},     {"in", 1, 0, 'I'},
        {"chunk", 1, 0, 'c'},   {"threads", 1, 0, 't'},   {"backend", 1, 0, 'b'}, {"prompt", 1, 0, 'p'},
        {"temperature", 1, 0, 'T'}, {"top-p", 1, 0, 'P'}, {"seed", 1, 0, 's'},    {"db", 1, 0, 'd'},
        {"name", 1, 0, 'N'},    {"file", 1, 0, 'f'},      {"text", 1, 0, 'x'},    {"session", 1, 0, 'S'},
        {"doc", 1, 0, 'D'},     {"at", 1, 0, 'a'},        {"interval", 1, 0, 'V'}, {"limit", 1, 0, 'l'},
        {"sync", 1, 0, 'y'},    {"replace", 0, 0, 'R'},   {"append", 0, 0, 'A'},  {"decode", 0, 0, 'E'},
        {"cascade", 0, 0, 'C'}, {"quiet", 0, 0, 'q'},     {"skip-special", 0, 0, 'K'}, {"help", 0, 0, 'h'},
        {"connect", 1, 0, 'Z'}, {"key", 1, 0, 'k'},       {"binary", 0, 0, 'B'},
        {"progress", 1, 0, 'G'},   {"strategy", 1, 0, 'Y'},  {"evidence", 1, 0, 'e'}, {"candidates", 1, 0, 'M'},
        {"budget", 1, 0, 'U'},     {"answer", 1, 0, 'W'},     {"timeout", 1, 0, 'O'},
        {0, 0, 0, 0}};
    int c;
    int64_t v;
    memset(o, 0, sizeof *o);
    o->n_new = 16;
    o->temperature = 1.0;
    o->top_p = 1.0;
    o->at = -1;
    optind = 2 + n_sub; /* argv[1] is the command, argv[2] a sub-command if any */
    while ((c = getopt_long(argc, argv, "n:hq", lo, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'i': o->ids = optarg; break;
        case 'o': o->out = optarg; break;
        case 'I': o->in = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'b': o->backend = optarg; break;
        case 'd': o->db = optarg; break;
        case 'N': o->name = optarg; break;
        case 'f': o->file = optarg; break;
        case 'x': o->text = optarg; break;
        case 'S': o->session = optarg; break;
        case 'D': o->doc = optarg; break;
        case 'y': o->sync = optarg; break;
        case 'Z': o->connect = optarg; break;
        case 'O': o->timeout = optarg; break; /* checked by cli_remote */
        case 'k': o->key = optarg; break;
        case 'R': o->replace = true; break;
        case 'A': o->append = true; break;
        case 'E': o->decode = true; break;
        case 'C': o->cascade = true; break;
        case 'q': o->quiet = true; break;
        case 'K': o->skip_special = true; break;
        case 'h': o->help = true; break;
        case 'B': o->binary = true; break;
        case 'Y': o->strategy = optarg; break;
        case 'W': o->answer = optarg; break;
        case 'e':
            if (parse_i64(optarg, 1, 16, &o->evidence))
                return cli_usage("--evidence: expected a passage count in [1, 16]");
            break;
        case 'M':
            if (parse_i64(optarg, 1, 16, &o->candidates))
                return cli_usage("--candidates: expected a count in [1, 16]");
            break;
        case 'U':
            if (parse_i64(optarg, 1, 8192, &o->budget))
                return cli_usage("--budget: expected a token count in [1, 8192]");
            break;
        case 'G':
            if (parse_f64(optarg, &o->progress_s) || !(o->progress_s > 0 && o->progress_s <= 86400))
                return cli_usage("--progress: expected seconds in (0, 86400]");
            break;
        case 'c':
            if (parse_i64(optarg, 1, 1 << 20, &o->chunk))
                return cli_usage("--chunk: expected an integer in [1, 1048576]");
            break;
        case 'V':
            if (parse_i64(optarg, 1, (int64_t)1 << 40, &o->interval))
                return cli_usage("--interval: expected a positive token count");
            break;
        case 'a':
            if (parse_i64(optarg, 0, INT64_MAX, &o->at))
                return cli_usage("--at: expected a token position >= 0");
            break;
        case 'l':
            if (parse_i64(optarg, 1, 1000, &o->limit))
                return cli_usage("--limit: expected an integer in [1, 1000]");
            break;
        case 't':
            if (parse_i64(optarg, 1, 1024, &v))
                return cli_usage("--threads: expected an integer in [1, 1024]");
            o->threads = (int)v;
            break;
        case 'n':
            if (parse_i64(optarg, 0, 1 << 24, &o->n_new))
                return cli_usage("-n: expected a token count in [0, 16777216]");
            break;
        case 'T':
            if (parse_f64(optarg, &o->temperature) || o->temperature < 0)
                return cli_usage("--temperature: expected a number >= 0");
            o->temperature_set = true;
            break;
        case 'P':
            if (parse_f64(optarg, &o->top_p) || !(o->top_p > 0 && o->top_p <= 1))
                return cli_usage("--top-p: expected a number in (0, 1]");
            break;
        case 's':
            if (parse_i64(optarg, 0, INT64_MAX, &v))
                return cli_usage("--seed: expected a non-negative integer");
            o->seed = (uint64_t)v;
            break;
        default: return cli_usage(NULL);
        }
    }
    for (; optind < argc; optind++) {
        if (o->n_pos == CLI_MAX_POS)
            return cli_usage("too many arguments");
        o->pos[o->n_pos++] = argv[optind];
    }
    /* options that belong to the other side of --connect are errors, not ignored */
    if (o->connect && o->model)
        return cli_usage("--model names a local model, but with --connect the server's model runs (coild's "
                         "config chooses it): drop --model, or drop --connect");
    if (!o->connect && o->timeout)
        return cli_usage("--timeout is for --connect (how long to wait for the server)");
    if (!o->model)
        o->model = coil_model_default_dir();
    return 0;
}

/* ---- shared helpers ------------------------------------------------------------ */

void cli_rt_free(cli_rt_t *r)
{
    coil_tokenizer_destroy(&r->tok);
    coil_state_destroy(&r->st);
    coil_engine_destroy(&r->e);
    coil_model_destroy(&r->m);
}

int cli_rt_open(const cli_opts_t *o, cli_rt_t *r, coil_err_t *err)
{
    coil_engine_options_t eo = {.max_chunk = o->chunk, .threads = o->threads, .backend = o->backend};
    char path[4096];
    memset(r, 0, sizeof *r);
    if (!o->model)
        return coil_err_set(err, COIL_EINVAL, "no model: give --model DIR or set COIL_MODEL (no default model is installed)");
    if (!(r->m = coil_model_load(o->model, err)) || !(r->e = coil_engine_new(r->m, &eo, err)) ||
        !(r->st = coil_state_new(r->m, err)))
        goto fail;
    r->n_valid = coil_model_config(r->m)->vocab_size;
    snprintf(path, sizeof path, "%s/tokenizer.json", o->model);
    if (access(path, F_OK) == 0) {
        if (!(r->tok = coil_tokenizer_load(path, err)))
            goto fail;
        if ((int64_t)coil_tokenizer_vocab_size(r->tok) < r->n_valid)
            r->n_valid = (int64_t)coil_tokenizer_vocab_size(r->tok); /* padded rows are never sampled */
    }
    return 0;
fail:
    cli_rt_free(r);
    return err->code ? err->code : COIL_EIO;
}

int cli_need_tokenizer(const cli_rt_t *r, coil_err_t *err)
{
    if (r->tok)
        return 0;
    return coil_err_set(err, COIL_ENOTFOUND, "%s has no tokenizer.json: text input needs one (use --ids)",
                        coil_model_dir(r->m));
}

int cli_read_all(const char *path, size_t max, char **buf, size_t *len, coil_err_t *err)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    size_t cap = 1 << 16, n = 0;
    char *b = NULL;
    if (!f)
        return coil_err_set(err, errno == ENOENT ? COIL_ENOTFOUND : COIL_EIO, "%s: %s", path, strerror(errno));
    b = malloc(cap + 1);
    while (b) {
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
        if (n == cap) {
            if (cap >= max) {
                free(b);
                b = NULL;
                if (f != stdin)
                    fclose(f);
                return coil_err_set(err, COIL_ETOOBIG, "%s: larger than %zu bytes", path, max);
            }
            char *nb = realloc(b, 2 * cap + 1);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (!b)
        return coil_err_set(err, COIL_ENOMEM, "%s: out of memory", path);
    if (bad) {
        free(b);
        return coil_err_set(err, COIL_EIO, "%s: read error", path);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

int cli_text_arg(const cli_opts_t *o, char **buf, size_t *len, coil_err_t *err)
{
    if (!!o->text == !!o->file)
        return coil_err_set(err, COIL_EINVAL, "give exactly one of --text and --file");
    if (o->file)
        return cli_read_all(o->file, MAX_TEXT, buf, len, err);
    *len = strlen(o->text);
    *buf = strdup(o->text);
    return *buf ? 0 : coil_err_set(err, COIL_ENOMEM, "out of memory");
}

int cli_write_atomic(const char *path, const void *data, size_t len, coil_err_t *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return coil_err_set(err, COIL_EIO, "%s: %s", path, strerror(errno));
    int ok = fwrite(data, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        e = ok ? errno : e;
        unlink(tmp);
        return coil_err_set(err, e == ENOSPC ? COIL_EFULL : COIL_EIO, "%s: %s", path, strerror(e));
    }
    return 0;
}

void cli_put_text(FILE *f, const char *s, size_t n)
{
    if (!isatty(fileno(f))) {
        fwrite(s, 1, n, f);
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned c = p[i];
        /* C1 controls are U+0080..U+009F: UTF-8 C2 80 .. C2 9F */
        int c1 = c == 0xC2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9F;
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7F || c1 || c == '\\') {
            fwrite(s + from, 1, i - from, f);
            if (c == '\\')
                fputs("\\\\", f);
            else if (c1)
                fprintf(f, "\\u%04x", p[++i]);
            else
                fprintf(f, "\\x%02x", c);
            from = i + 1;
        }
    }
    fwrite(s + from, 1, n - from, f);
}

void cli_print_hit(int k, const char *doc, int64_t chunk, int64_t token_start, int64_t token_end,
                   int64_t byte_start, int64_t byte_end, double score, const char *snippet, const int64_t *marks,
                   size_t n_marks)
{
    const int tty = isatty(STDOUT_FILENO);
    const char *on = tty ? "\033[1m" : "\xc2\xab", *off = tty ? "\033[22m" : "\xc2\xbb";
    size_t len = strlen(snippet), at = 0;
    printf("%d. ", k);
    cli_put_text(stdout, doc, strlen(doc));
    printf("  chunk %" PRId64 "  tokens [%" PRId64 ", %" PRId64 ")  bytes [%" PRId64 ", %" PRId64
           ")  score %.3f\n   ",
           chunk, token_start, token_end, byte_start, byte_end, score);
    for (size_t i = 0; i < n_marks; i++) {
        int64_t a = marks[2 * i], b = marks[2 * i + 1];
        if (a < (int64_t)at || b < a || b > (int64_t)len)
            continue; /* out of order or out of range: leave unmarked */
        cli_put_text(stdout, snippet + at, (size_t)a - at);
        fputs(on, stdout);
        cli_put_text(stdout, snippet + a, (size_t)(b - a));
        fputs(off, stdout);
        at = (size_t)b;
    }
    cli_put_text(stdout, snippet + at, len - at);
    printf("\n");
}

void cli_print_ask_tail(const json_t *res, int scored)
{
    const json_t *ev;
    size_t i;
    const char *strategy = json_string_value(json_object_get(res, "strategy"));
    if (scored)
        printf("answer logprob: %.6f", json_number_value(json_object_get(res, "answer_logprob")));
    printf("\nstrategy: %s\n%s\n", strategy ? strategy : "?", json_string_value(json_object_get(res, "why")));
    const char *search = json_string_value(json_object_get(res, "search"));
    if (search && *search)
        printf("search: %s\n", search);
    json_array_foreach(json_object_get(res, "evidence"), i, ev)
    {
        const json_t *h = json_object_get(ev, "entropy");
        const char *snip = json_string_value(json_object_get(ev, "snippet"));
        printf("evidence %zu: chunk %" JSON_INTEGER_FORMAT "  tokens [%" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT
               ")  bytes [%" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT ")  bm25 %.3f",
               i + 1, json_integer_value(json_object_get(ev, "chunk")),
               json_integer_value(json_object_get(ev, "token_start")),
               json_integer_value(json_object_get(ev, "token_end")),
               json_integer_value(json_object_get(ev, "byte_start")),
               json_integer_value(json_object_get(ev, "byte_end")), json_number_value(json_object_get(ev, "bm25")));
        if (h)
            printf("  entropy %.3f", json_number_value(h));
        if (json_is_true(json_object_get(ev, "chosen")))
            printf(strategy && !strcmp(strategy, "select") ? "  (answered)" : "  (re-read)");
        printf("\n   ");
        cli_put_text(stdout, snip ? snip : "", snip ? strlen(snip) : 0);
        printf("\n");
    }
    if (json_object_get(res, "appended"))
        printf("%s: appended %" JSON_INTEGER_FORMAT " tokens, head %" JSON_INTEGER_FORMAT "\n",
               json_string_value(json_object_get(res, "session")), json_integer_value(json_object_get(res, "appended")),
               json_integer_value(json_object_get(res, "position")));
    if (json_is_true(json_object_get(res, "replayed")))
        printf("(already asked with this request key: nothing appended again)\n");
    printf("read %" JSON_INTEGER_FORMAT " passage tokens\n", json_integer_value(json_object_get(res, "reread_tokens")));
}

static int print_token(int32_t id, const char *text, size_t len, void *ud)
{
    int *k = ud;
    if (text)
        cli_put_text(stdout, text, len);
    else if (id >= 0)
        printf("%s%d", (*k)++ ? "," : "", id);
    fflush(stdout);
    return 0;
}

int cli_generate_from(const cli_opts_t *o, cli_rt_t *r, int64_t grid, int32_t **out, int64_t *n_out,
                      coil_err_t *err)
{
    coil_sampler_options_t so = {.temperature = (float)o->temperature, .top_p = (float)o->top_p, .seed = o->seed,
                                 .n_valid = r->n_valid};
    int32_t *ids = malloc((size_t)(o->n_new ? o->n_new : 1) * sizeof(int32_t));
    int k = 0;
    (void)grid; /* sampled tokens are fed one at a time */
    if (!ids)
        return coil_err_set(err, COIL_ENOMEM, "out of memory");
    int rc = coil_query_generate(r->e, r->st, r->tok, &so, o->n_new, print_token, &k, ids, n_out, err);
    printf("\n");
    if (rc || !out)
        free(ids);
    else
        *out = ids;
    return rc;
}

/* ---- model commands ---------------------------------------------------------------- */

static int cmd_info(const cli_opts_t *o)
{
    coil_err_t err = {0};
    if (!o->model)
        return cli_usage("info needs --model DIR (or COIL_MODEL)");
    coil_model_t *m = coil_model_load(o->model, &err);
    if (!m)
        return cli_fail(&err);
    const coil_model_config_t *c = coil_model_config(m);
    coil_state_t *st = coil_state_new(m, &err);
    if (!st) {
        coil_model_destroy(&m);
        return cli_fail(&err);
    }
    printf("model:            %s\n", coil_model_dir(m));
    printf("family:           %s\n", c->family->model_type);
    printf("architecture:     %s (model_type %s)\n", c->family->architecture, c->family->model_type);
    printf("d_model:          %" PRId64 "\n", c->d_model);
    printf("n_layer:          %" PRId64 "\n", c->n_layer);
    printf("d_inner:          %" PRId64 "\n", c->d_inner);
    printf("d_state:          %" PRId64 "\n", c->d_state);
    printf("d_conv:           %" PRId64 "\n", c->d_conv);
    printf("dt_rank:          %" PRId64 "\n", c->dt_rank);
    printf("vocab_size:       %" PRId64 "\n", c->vocab_size);
    if (c->n_heads > 0) /* mamba2 */
        printf("heads:            %" PRId64 " x head_dim %" PRId64 ", n_groups %" PRId64 ", time_step_limit [%g, %g]\n",
               c->n_heads, c->head_dim, c->n_groups, c->dt_limit_lo, c->dt_limit_hi);
    if (c->mixer_rms_eps > 0) /* falcon_mamba */
        printf("mixer_rms_eps:    %g\n", c->mixer_rms_eps);
    printf("layer_norm_eps:   %g\n", c->eps);
    printf("use_bias:         %s\n", c->use_bias ? "true" : "false");
    printf("use_conv_bias:    %s\n", c->use_conv_bias ? "true" : "false");
    printf("tied lm_head:     %s\n", c->tie_embeddings ? "true" : "false");
    printf("weights dtype:    %s\n", coil_dtype_name(coil_model_dtype(m)));
    printf("parameters:       %" PRId64 "\n", coil_model_param_count(m));
    printf("fingerprint:      %016" PRIx64 "\n", coil_model_fingerprint(m));
    size_t conv_per, ssm_per; /* the family's state tensors, floats per layer */
    c->family->state_shape(c, &conv_per, &ssm_per);
    size_t floats = (size_t)c->n_layer * (conv_per + ssm_per) + (size_t)c->d_model;
    printf("state:            %zu bytes float32 (conv %" PRId64 " x %zu, ssm %" PRId64 " x %zu, hidden %" PRId64
           ")\n",
           floats * 4, c->n_layer, conv_per, c->n_layer, ssm_per, c->d_model);
    printf("state blob:       %zu bytes\n", coil_state_blob_size(st));
    coil_backend_print_info(stdout); /* cpu, cpuid features, kernel set, matrix library */
    coil_state_destroy(&st);
    coil_model_destroy(&m);
    return 0;
}

static int cmd_logits(const cli_opts_t *o)
{
    coil_err_t err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    cli_rt_t r;
    if (!o->ids || !o->out)
        return cli_usage("logits needs --ids and --out");
    if (parse_ids(o->ids, &ids, &n, &err))
        return cli_fail(&err);
    if (cli_rt_open(o, &r, &err)) {
        free(ids);
        return cli_fail(&err);
    }
    const int64_t V = coil_model_config(r.m)->vocab_size, C = coil_engine_max_chunk(r.e);
    int rc = 1;
    char tmp[4200];
    FILE *f = NULL;
    float *lg = malloc((size_t)V * sizeof(float) * (size_t)C);
    for (size_t i = 0; i < n; i++) /* check every id before creating the file */
        if (ids[i] >= V) {
            coil_err_set(&err, COIL_EINVAL, "token id %d at position %zu is outside the vocabulary [0, %lld)", ids[i],
                         i, (long long)V);
            goto out;
        }
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", o->out, (long)getpid());
    if (!lg || !(f = fopen(tmp, "wb"))) {
        coil_err_set(&err, COIL_EIO, "%s: %s", o->out, lg ? strerror(errno) : "out of memory");
        goto out;
    }
    /* Stream one engine step of rows at a time: memory stays bounded. */
    for (size_t t0 = 0; t0 < n;) {
        int64_t k = (int64_t)(n - t0) < C ? (int64_t)(n - t0) : C;
        if (coil_engine_forward(r.e, r.st, ids + t0, k, lg, &err))
            goto out;
        if (fwrite(lg, sizeof(float) * (size_t)V, (size_t)k, f) != (size_t)k) {
            coil_err_set(&err, COIL_EIO, "%s: write: %s", o->out, strerror(errno));
            goto out;
        }
        t0 += (size_t)k;
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
        coil_err_set(&err, COIL_EIO, "%s: %s", o->out, strerror(errno));
        goto out;
    }
    int cl = fclose(f);
    f = NULL;
    if (cl != 0 || rename(tmp, o->out) != 0) {
        coil_err_set(&err, COIL_EIO, "%s: %s", o->out, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (f)
        fclose(f);
    if (rc) {
        if (f || lg)
            unlink(tmp);
        cli_fail(&err);
    }
    free(lg);
    free(ids);
    cli_rt_free(&r);
    return rc;
}

static int cmd_generate(const cli_opts_t *o)
{
    coil_err_t err = {0};
    int32_t *ids = NULL, *gen = NULL;
    size_t n = 0;
    int64_t ng = 0;
    cli_rt_t r;
    if (o->db || o->session || o->doc)
        return cli_cmd_generate_stored(o);
    if (!!o->ids == !!o->prompt)
        return cli_usage("generate needs exactly one of --ids and --prompt (or --db with --session/--doc)");
    if (o->ids && parse_ids(o->ids, &ids, &n, &err))
        return cli_fail(&err);
    if (cli_rt_open(o, &r, &err)) {
        free(ids);
        return cli_fail(&err);
    }
    int rc = 1;
    if (o->prompt && (cli_need_tokenizer(&r, &err) ||
                      coil_tokenizer_encode(r.tok, o->prompt, strlen(o->prompt), &ids, &n, &err)))
        goto out;
    if (n == 0) {
        coil_err_set(&err, COIL_EINVAL, "the prompt encodes to no tokens");
        goto out;
    }
    if (coil_engine_forward(r.e, r.st, ids, (int64_t)n, NULL, &err) ||
        cli_generate_from(o, &r, coil_engine_max_chunk(r.e), &gen, &ng, &err))
        goto out;
    rc = 0;
out:
    if (rc)
        cli_fail(&err);
    free(gen);
    free(ids);
    cli_rt_free(&r);
    return rc;
}

static int cmd_tokenize(const cli_opts_t *o)
{
    coil_err_t err = {0};
    char path[4096], *in = NULL, *text = NULL;
    size_t len = 0, n = 0, tl = 0;
    int32_t *ids = NULL;
    int rc = 1;
    if (!o->model)
        return cli_usage("tokenize needs --model DIR (a directory with tokenizer.json)");
    snprintf(path, sizeof path, "%s/tokenizer.json", o->model);
    coil_tokenizer_t *tok = coil_tokenizer_load(path, &err);
    if (!tok)
        return cli_fail(&err);
    if (cli_read_all(o->file ? o->file : "-", MAX_TEXT, &in, &len, &err))
        goto out;
    if (o->decode) {
        if (parse_ids(in, &ids, &n, &err) || coil_tokenizer_decode(tok, ids, n, o->skip_special, &text, &tl, &err))
            goto out;
        fwrite(text, 1, tl, stdout);
    } else {
        if (coil_tokenizer_encode(tok, in, len, &ids, &n, &err))
            goto out;
        for (size_t i = 0; i < n; i++)
            printf("%s%d", i ? "," : "", ids[i]);
        printf("\n");
    }
    rc = 0;
out:
    if (rc)
        cli_fail(&err);
    free(text);
    free(ids);
    free(in);
    coil_tokenizer_destroy(&tok);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(const cli_opts_t *);
        int sub; /* takes a sub-command word */
    } cmds[] = {{"info", cmd_info, 0},          {"logits", cmd_logits, 0},       {"generate", cmd_generate, 0},
                {"tokenize", cmd_tokenize, 0},  {"ingest", cli_cmd_ingest, 0},   {"docs", cli_cmd_docs, 0},
                {"search", cli_cmd_search, 0},  {"session", cli_cmd_session, 1}, {"sessions", cli_cmd_sessions, 0},
                {"score", cli_cmd_score, 0},    {"state", cli_cmd_state, 1},     {"check", cli_cmd_check, 0},
                {"ask", cli_cmd_ask, 0}};
    cli_opts_t o;
    char *moved[64];
    /* `coil --connect EP cmd ...` == `coil cmd ... --connect EP` */
    if (argc > 3 && argc < 62 && strcmp(argv[1], "--connect") == 0) {
        int k = 0;
        moved[k++] = argv[0];
        for (int i = 3; i < argc; i++)
            moved[k++] = argv[i];
        moved[k++] = argv[1];
        moved[k++] = argv[2];
        moved[k] = NULL;
        argv = moved;
    }
    if (argc < 2)
        return cli_usage(NULL);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
        return cli_help(NULL);
    if (!strcmp(argv[1], "help"))
        return cli_help(argc > 2 ? argv[2] : NULL);
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("coil %s\n", PACKAGE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0) {
            for (int j = 2; j < argc; j++) /* --help anywhere: the command's help, nothing else checked */
                if (!strcmp(argv[j], "--help") || !strcmp(argv[j], "-h"))
                    return cli_help(cmds[i].name);
            if (cmds[i].sub && (argc < 3 || argv[2][0] == '-')) {
                fprintf(stderr, "coil: %s: missing sub-command\n", cmds[i].name);
                fputs(find_help(cmds[i].name)->text, stderr);
                return 2;
            }
            int rc = parse_opts(argc, argv, cmds[i].sub, &o);
            if (rc)
                return rc;
            if (cmds[i].sub) { /* the sub-command word is positional 0 */
                memmove(o.pos + 1, o.pos, sizeof o.pos[0] * (CLI_MAX_POS - 1));
                o.pos[0] = argv[2];
                if (o.n_pos < CLI_MAX_POS)
                    o.n_pos++;
            }
            if (o.connect)
                return cli_remote(cmds[i].name, &o);
            return cmds[i].fn(&o);
        }
    fprintf(stderr, "coil: unknown command '%s'\n", argv[1]);
    return cli_usage(NULL);
}
