/* cli.c -- `coil`, the command-line front end.
 *
 *   coil info     --model DIR
 *   coil logits   --model DIR --ids 1,2,3 [--chunk N] --out FILE
 *   coil generate --model DIR (--ids ... | --prompt TEXT) -n N [--temperature T] [--top-p P] [--seed S]
 *
 * Common options: --threads N, --backend cpu|cpu-portable.
 * Errors go to stderr as "coil: <message>" with exit status 1 (2 for usage).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "model.h"
#include "sampling.h"
#include "state.h"

#define MAX_IDS ((size_t)1 << 26)

typedef struct {
    const char *model, *ids, *out, *prompt, *backend;
    int64_t chunk, n_new;
    int threads;
    double temperature, top_p;
    uint64_t seed;
} opts_t;

static int usage(const char *msg)
{
    if (msg)
        fprintf(stderr, "coil: %s\n", msg);
    fprintf(stderr,
            "usage: coil <command> [options]\n"
            "  info      --model DIR                         the config as understood, sizes\n"
            "  logits    --model DIR --ids 1,2,3 --out FILE  float32 LE logits, T x vocab, row-major\n"
            "            [--chunk N]\n"
            "  generate  --model DIR (--ids 1,2,3 | --prompt TEXT) -n N\n"
            "            [--temperature T (0 = greedy)] [--top-p P] [--seed S]\n"
            "common: --threads N  --backend cpu|cpu-portable\n");
    return 2;
}

static int fail(const coil_err_t *err)
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

/* "1,2,3" -> ids. Strict: digits and single commas only. */
static int parse_ids(const char *s, int32_t **ids, size_t *n, coil_err_t *err)
{
    size_t cap = 64, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    const char *p = s;
    if (!v)
        return coil_err_set(err, COIL_ENOMEM, "out of memory");
    while (*p) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX || (*end && *end != ',') || (*end == ',' && !end[1])) {
            free(v);
            return coil_err_set(err, COIL_EINVAL, "--ids: expected comma-separated non-negative integers near \"%.20s\"", p);
        }
        if (k == cap) {
            if (cap >= MAX_IDS) {
                free(v);
                return coil_err_set(err, COIL_ETOOBIG, "--ids: more than %zu ids", MAX_IDS);
            }
            int32_t *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) {
                free(v);
                return coil_err_set(err, COIL_ENOMEM, "out of memory");
            }
            v = nv;
            cap *= 2;
        }
        v[k++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (k == 0) {
        free(v);
        return coil_err_set(err, COIL_EINVAL, "--ids: no ids given");
    }
    *ids = v;
    *n = k;
    return 0;
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},   {"ids", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'},     {"chunk", required_argument, 0, 'c'},
        {"threads", required_argument, 0, 't'}, {"backend", required_argument, 0, 'b'},
        {"prompt", required_argument, 0, 'p'},  {"temperature", required_argument, 0, 'T'},
        {"top-p", required_argument, 0, 'P'},   {"seed", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    int c;
    int64_t v;
    memset(o, 0, sizeof *o);
    o->n_new = 16;
    o->temperature = 1.0;
    o->top_p = 1.0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:h", lo, NULL)) != -1) {
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'i': o->ids = optarg; break;
        case 'o': o->out = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'b': o->backend = optarg; break;
        case 'c':
            if (parse_i64(optarg, 1, 1 << 20, &o->chunk))
                return usage("--chunk: expected an integer in [1, 1048576]");
            break;
        case 't':
            if (parse_i64(optarg, 1, 1024, &v))
                return usage("--threads: expected an integer in [1, 1024]");
            o->threads = (int)v;
            break;
        case 'n':
            if (parse_i64(optarg, 0, 1 << 24, &o->n_new))
                return usage("-n: expected a token count in [0, 16777216]");
            break;
        case 'T':
            if (parse_f64(optarg, &o->temperature) || o->temperature < 0)
                return usage("--temperature: expected a number >= 0");
            break;
        case 'P':
            if (parse_f64(optarg, &o->top_p) || !(o->top_p > 0 && o->top_p <= 1))
                return usage("--top-p: expected a number in (0, 1]");
            break;
        case 's':
            if (parse_i64(optarg, 0, INT64_MAX, &v))
                return usage("--seed: expected a non-negative integer");
            o->seed = (uint64_t)v;
            break;
        case 'h': return usage(NULL);
        default: return usage(NULL);
        }
    }
    if (optind < argc)
        return usage("unexpected argument");
    if (!o->model)
        return usage("--model DIR is required");
    return 0;
}

typedef struct {
    coil_model_t *m;
    coil_engine_t *e;
    coil_state_t *st;
} rt_t;

static void rt_free(rt_t *r)
{
    coil_state_destroy(&r->st);
    coil_engine_destroy(&r->e);
    coil_model_destroy(&r->m);
}

static int rt_open(const opts_t *o, rt_t *r, coil_err_t *err)
{
    coil_engine_options_t eo = {.max_chunk = o->chunk, .threads = o->threads, .backend = o->backend};
    memset(r, 0, sizeof *r);
    if (!(r->m = coil_model_load(o->model, err)) || !(r->e = coil_engine_new(r->m, &eo, err)) ||
        !(r->st = coil_state_new(r->m, err))) {
        rt_free(r);
        return err->code;
    }
    return 0;
}

static int cmd_info(const opts_t *o)
{
    coil_err_t err = {0};
    coil_model_t *m = coil_model_load(o->model, &err);
    if (!m)
        return fail(&err);
    const coil_model_config_t *c = coil_model_config(m);
    coil_state_t *st = coil_state_new(m, &err);
    if (!st) {
        coil_model_destroy(&m);
        return fail(&err);
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
    printf("state:            %zu bytes float32 (conv %" PRId64 " x %" PRId64 " x %" PRId64
           ", ssm %" PRId64 " x %" PRId64 " x %" PRId64 ", hidden %" PRId64 ")\n",
           floats * 4, c->n_layer, c->d_conv - 1, c->d_inner, c->n_layer, c->d_inner, c->d_state, c->d_model);
    printf("state blob:       %zu bytes\n", coil_state_blob_size(st));
    coil_state_destroy(&st);
    coil_model_destroy(&m);
    return 0;
}

static int cmd_logits(const opts_t *o)
{
    coil_err_t err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    rt_t r;
    if (!o->ids || !o->out)
        return usage("logits needs --ids and --out");
    if (parse_ids(o->ids, &ids, &n, &err))
        return fail(&err);
    if (rt_open(o, &r, &err)) {
        free(ids);
        return fail(&err);
    }
    const int64_t V = coil_model_config(r.m)->vocab_size;
    int rc = 1;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", o->out, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    float *lg = malloc((size_t)V * sizeof(float) * (size_t)(r.e ? coil_engine_max_chunk(r.e) : 1));
    if (!f || !lg) {
        coil_err_set(&err, COIL_EIO, "%s: %s", o->out, f ? "out of memory" : strerror(errno));
        goto out;
    }
    /* Stream: one engine step's rows at a time, so memory stays bounded. */
    for (size_t t0 = 0; t0 < n;) {
        int64_t k = (int64_t)(n - t0) < coil_engine_max_chunk(r.e) ? (int64_t)(n - t0) : coil_engine_max_chunk(r.e);
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
    if (fclose(f) != 0) {
        f = NULL;
        coil_err_set(&err, COIL_EIO, "%s: %s", o->out, strerror(errno));
        goto out;
    }
    f = NULL;
    if (rename(tmp, o->out) != 0) {
        coil_err_set(&err, COIL_EIO, "%s: rename: %s", o->out, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (f)
        fclose(f);
    if (rc) {
        unlink(tmp);
        fail(&err);
    }
    free(lg);
    free(ids);
    rt_free(&r);
    return rc;
}

static int cmd_generate(const opts_t *o)
{
    coil_err_t err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    rt_t r;
    if (!!o->ids == !!o->prompt)
        return usage("generate needs exactly one of --ids and --prompt");
    if (o->prompt)
        return usage("--prompt needs a tokenizer, which this build does not have yet; use --ids");
    if (parse_ids(o->ids, &ids, &n, &err))
        return fail(&err);
    if (rt_open(o, &r, &err)) {
        free(ids);
        return fail(&err);
    }
    const int64_t V = coil_model_config(r.m)->vocab_size;
    coil_sampler_options_t so = {.temperature = (float)o->temperature, .top_p = (float)o->top_p, .seed = o->seed,
                                 .n_valid = V};
    coil_sampler_t *s = coil_sampler_new(&so, V, &err);
    float *lg = malloc((size_t)V * sizeof(float));
    int rc = 1;
    if (!s || !lg) {
        if (!s)
            fail(&err);
        goto out;
    }
    if (coil_engine_forward(r.e, r.st, ids, (int64_t)n, NULL, &err)) {
        fail(&err);
        goto out;
    }
    for (int64_t i = 0; i < o->n_new; i++) {
        if (coil_engine_next_logits(r.e, r.st, lg, &err)) {
            fail(&err);
            goto out;
        }
        int32_t next = coil_sampler_sample(s, lg);
        printf("%s%d", i ? "," : "", next);
        fflush(stdout);
        if (coil_engine_forward(r.e, r.st, &next, 1, NULL, &err)) {
            fail(&err);
            goto out;
        }
    }
    printf("\n");
    rc = 0;
out:
    free(lg);
    coil_sampler_destroy(&s);
    free(ids);
    rt_free(&r);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(const opts_t *);
    } cmds[] = {{"info", cmd_info}, {"logits", cmd_logits}, {"generate", cmd_generate}};
    opts_t o;
    if (argc < 2)
        return usage(NULL);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(argv[1], cmds[i].name) == 0) {
            int rc = parse_opts(argc - 1, argv + 1, &o);
            return rc ? rc : cmds[i].fn(&o);
        }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))
        return usage(NULL), 0;
    fprintf(stderr, "coil: unknown command '%s'\n", argv[1]);
    return usage(NULL);
}
