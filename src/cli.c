/* cli.c -- `coil`, the command-line front end: dispatch, options, and the
 * commands that need only a model (info, logits, generate, tokenize).
 * The store-backed commands live in cli_store.c.
 *
 * Errors go to stderr as "coil: <message>" with exit status 1 (2 for usage).
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest.h"
#include "query.h"
#include "sampling.h"

#define MAX_IDS ((size_t)1 << 26)
#define MAX_TEXT ((size_t)1 << 30)

int cli_usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "coil: %s\n", msg);
    fprintf(stderr,
            "usage: coil <command> [options]\n"
            "model commands (--model DIR; default $COIL_MODEL, else the bundled model):\n"
            "  info      the config as understood, parameter count, state size\n"
            "  logits    --ids 1,2,3 --out FILE [--chunk N]   float32 LE logits, T x vocab, row-major\n"
            "  generate  (--ids 1,2,3 | --prompt TEXT) -n N [--temperature T] [--top-p P] [--seed S]\n"
            "  tokenize  [--decode]      stdin text -> comma-separated ids (or ids -> text)\n"
            "store commands (--db FILE):\n"
            "  ingest    --model DIR --name NAME (--file PATH | -) [--chunk N] [--interval N] [--replace]\n"
            "  docs                      documents with status, tokens, checkpoints\n"
            "  search    QUERY [--doc NAME] [--limit N]\n"
            "  session   new --doc NAME [--at TOKEN] | append ID (--text T | --file F) [--key K] --model DIR\n"
            "            | fork ID [--at TOKEN] | delete ID [--cascade] | list [--doc NAME]\n"
            "  sessions  [--doc NAME]\n"
            "  generate  (--session ID | --doc NAME) [--prompt TEXT] -n N [--append] --model DIR\n"
            "  score     (--session ID | --doc NAME) --text T --model DIR\n"
            "  score     (--text T | --file F) without --db: bits per byte of a text from scratch\n"
            "  state     export (--doc NAME | --session ID) [--at TOKEN] --out FILE --model DIR\n"
            "            | import --in FILE --name NAME [--replace] --model DIR\n"
            "common: --threads N  --backend cpu|cpu-portable  --sync full|normal  --quiet\n"
            "remote: --connect tcp://HOST:PORT runs ingest, docs, search, session, generate, score and\n"
            "        state against a coild server (its database and model; --timeout SECONDS, default 10)\n");
    return 2;
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
        {"connect", 1, 0, 'Z'}, {"key", 1, 0, 'k'},       {"timeout", 1, 0, 'W'},
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
        case 'W': o->timeout = optarg; break; /* checked by cli_remote */
        case 'k': o->key = optarg; break;
        case 'R': o->replace = true; break;
        case 'A': o->append = true; break;
        case 'E': o->decode = true; break;
        case 'C': o->cascade = true; break;
        case 'q': o->quiet = true; break;
        case 'K': o->skip_special = true; break;
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

static int print_token(int32_t id, const char *text, size_t len, void *ud)
{
    int *k = ud;
    if (text)
        fwrite(text, 1, len, stdout);
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
    printf("architecture:     Mamba-1 (MambaForCausalLM)\n");
    printf("d_model:          %" PRId64 "\n", c->d_model);
    printf("n_layer:          %" PRId64 "\n", c->n_layer);
    printf("d_inner:          %" PRId64 "\n", c->d_inner);
    printf("d_state:          %" PRId64 "\n", c->d_state);
    printf("d_conv:           %" PRId64 "\n", c->d_conv);
    printf("dt_rank:          %" PRId64 "\n", c->dt_rank);
    printf("vocab_size:       %" PRId64 "\n", c->vocab_size);
    printf("layer_norm_eps:   %g\n", c->eps);
    printf("use_bias:         %s\n", c->use_bias ? "true" : "false");
    printf("use_conv_bias:    %s\n", c->use_conv_bias ? "true" : "false");
    printf("tied lm_head:     %s\n", c->tie_embeddings ? "true" : "false");
    printf("weights dtype:    %s\n", coil_dtype_name(coil_model_dtype(m)));
    printf("parameters:       %" PRId64 "\n", coil_model_param_count(m));
    printf("fingerprint:      %016" PRIx64 "\n", coil_model_fingerprint(m));
    size_t floats = (size_t)(c->n_layer * ((c->d_conv - 1) * c->d_inner + c->d_inner * c->d_state) + c->d_model);
    printf("state:            %zu bytes float32 (conv %" PRId64 " x %" PRId64 " x %" PRId64 ", ssm %" PRId64
           " x %" PRId64 " x %" PRId64 ", hidden %" PRId64 ")\n",
           floats * 4, c->n_layer, c->d_conv - 1, c->d_inner, c->n_layer, c->d_inner, c->d_state, c->d_model);
    printf("state blob:       %zu bytes\n", coil_state_blob_size(st));
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
                {"score", cli_cmd_score, 0},    {"state", cli_cmd_state, 1}};
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
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        cli_usage(NULL);
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0) {
            int rc = parse_opts(argc, argv, cmds[i].sub, &o);
            if (rc)
                return rc;
            if (cmds[i].sub) { /* the sub-command word is positional 0 */
                if (argc < 3 || argv[2][0] == '-')
                    return cli_usage("missing sub-command");
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
