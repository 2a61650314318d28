/* coild_config.c -- coild's YAML configuration, read with libyaml's event API.
 *
 * One table per mapping names its keys, their kinds, ranges and where each
 * value lands in coil_config_t; a small recursive reader walks the event
 * stream against it.  The event API (rather than the document API) lets us
 * refuse anchors, aliases, tags and a second document before acting on them.
 */
#include "coild_config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define CONFIG_MAX_FILE_BYTES ((size_t)1 << 20)
#define CONFIG_MAX_STRING 4096
#define ENDPOINT_MAX 256
#define Z85_KEY_LEN 40
#define MAX_CLIENT_KEYS 100000

static const char *const level_names[] = {"error", "warn", "info", "debug"};

const char *coil_log_level_name(coil_log_level_t level)
{
    if ((int)level < 0 || (size_t)level >= sizeof level_names / sizeof level_names[0])
        return NULL;
    return level_names[level];
}

/* --- defaults ----------------------------------------------------------------- */

static char *dupstr(const char *s)
{
    return strdup(s ? s : "");
}

void coil_config_destroy(coil_config_t **cfg)
{
    coil_config_t *c;
    if (!cfg || !*cfg)
        return;
    c = *cfg;
    free(c->source);
    free(c->endpoints.clients);
    free(c->endpoints.events);
    free(c->endpoints.workers);
    free(c->database);
    free(c->model);
    free(c->device);
    free(c->curve.server_secret_key_file);
    free(c->curve.server_public_key);
    for (size_t i = 0; i < c->curve.n_allowed_client_keys; i++)
        free(c->curve.allowed_client_keys[i]);
    free(c->curve.allowed_client_keys);
    free(c->curve.allowed_client_keys_file);
    free(c);
    *cfg = NULL;
}

coil_config_t *coil_config_defaults(const char *default_model, coil_err_t *err)
{
    coil_config_t *c = calloc(1, sizeof *c);
    if (!c) {
        coil_err_set(err, COIL_ENOMEM, "config: out of memory");
        return NULL;
    }
    c->endpoints.clients = dupstr("tcp://127.0.0.1:5555");
    c->endpoints.events = dupstr("tcp://127.0.0.1:5556");
    c->endpoints.workers = dupstr("ipc://*"); /* a private directory per instance */
    c->database = dupstr("coil.db");
    c->model = dupstr(default_model);
    c->device = dupstr("cpu");
    c->workers = 1;
    c->chunk_tokens = 512; /* the grid `coil ingest` uses: one grid for both */
    c->checkpoint.interval_tokens = 4096;
    c->checkpoint.dense = 8;
    c->limits.max_message_bytes = (int64_t)64 << 20;
    c->limits.max_text_bytes = (int64_t)1 << 20;
    c->limits.max_document_bytes = (int64_t)256 << 20;
    c->limits.max_concurrent_jobs = 16;
    c->limits.max_clients = 0;
    c->limits.max_uploads = 64;
    c->limits.max_uploads_per_client = 4;
    c->limits.upload_idle_seconds = 900;
    c->threads_per_worker = 0;
    c->log_level = COIL_LOG_INFO;
    if (!c->endpoints.clients || !c->endpoints.events || !c->endpoints.workers || !c->database ||
        !c->model || !c->device) {
        coil_config_destroy(&c);
        coil_err_set(err, COIL_ENOMEM, "config: out of memory");
        return NULL;
    }
    return c;
}

void coil_config_proto_limits(const coil_config_t *c, coil_proto_limits_t *lim)
{
    lim->max_message_bytes = (size_t)c->limits.max_message_bytes;
    lim->max_text_bytes = (size_t)c->limits.max_text_bytes;
    lim->max_document_bytes = (size_t)c->limits.max_document_bytes;
}

/* --- key tables ------------------------------------------------------------------ */

typedef enum kind {
    K_MAP,       /* a nested mapping (sub) */
    K_PATH,      /* non-empty string */
    K_PATH0,     /* string, "" allowed (model: "" = the caller's default) */
    K_ENDPOINT,  /* tcp://... or ipc://... */
    K_INT,       /* decimal integer in [min, max] */
    K_LOGLEVEL,  /* error | warn | info | debug */
    K_DEVICE,    /* cpu | cpu-portable | cuda | cuda:f32 | cuda:tf32 | cuda:bf16 */
    K_Z85,       /* a 40-character Z85 CURVE key */
    K_Z85_LIST,  /* a sequence of Z85 keys */
} kind_t;

typedef struct ckey {
    const char *name;
    kind_t kind;
    int64_t min, max;
    size_t off; /* offset of the member in coil_config_t */
    const struct ckey *sub;
} ckey_t;

#define CK(n, k, m) {n, k, 0, 0, offsetof(coil_config_t, m), NULL}
#define CKI(n, lo, hi, m) {n, K_INT, lo, hi, offsetof(coil_config_t, m), NULL}
#define CKM(n, s) {n, K_MAP, 0, 0, 0, s}
#define CKEND {NULL, K_MAP, 0, 0, 0, NULL}

static const ckey_t endpoint_keys[] = {
    CK("clients", K_ENDPOINT, endpoints.clients),
    CK("events", K_ENDPOINT, endpoints.events),
    CK("workers", K_ENDPOINT, endpoints.workers),
    CKEND,
};
static const ckey_t checkpoint_keys[] = {
    CKI("interval_tokens", 1, (int64_t)1 << 40, checkpoint.interval_tokens),
    CKI("dense", 0, (int64_t)1 << 20, checkpoint.dense),
    CKEND,
};
static const ckey_t limit_keys[] = {
    CKI("max_message_bytes", 1024, (int64_t)1 << 40, limits.max_message_bytes),
    CKI("max_text_bytes", 1, (int64_t)1 << 40, limits.max_text_bytes),
    CKI("max_document_bytes", 1, (int64_t)1 << 50, limits.max_document_bytes),
    CKI("max_concurrent_jobs", 1, 4096, limits.max_concurrent_jobs),
    CKI("max_clients", 0, (int64_t)1 << 20, limits.max_clients),
    CKI("max_uploads", 1, 65536, limits.max_uploads),
    CKI("max_uploads_per_client", 1, 65536, limits.max_uploads_per_client),
    CKI("upload_idle_seconds", 0, (int64_t)1 << 31, limits.upload_idle_seconds),
    CKEND,
};
static const ckey_t curve_keys[] = {
    CK("server_secret_key_file", K_PATH, curve.server_secret_key_file),
    CK("server_public_key", K_Z85, curve.server_public_key),
    CK("allowed_client_keys", K_Z85_LIST, curve.allowed_client_keys),
    CK("allowed_client_keys_file", K_PATH, curve.allowed_client_keys_file),
    CKEND,
};
static const ckey_t root_keys[] = {
    CKM("endpoints", endpoint_keys),
    CK("database", K_PATH, database),
    CK("model", K_PATH0, model),
    CKI("workers", 1, 64, workers),
    CKI("chunk_tokens", 1, 65536, chunk_tokens),
    CKM("checkpoint", checkpoint_keys),
    CKM("limits", limit_keys),
    CKI("threads_per_worker", 0, 256, threads_per_worker),
    CK("device", K_DEVICE, device),
    CK("log_level", K_LOGLEVEL, log_level),
    CKM("curve", curve_keys),
    CKEND,
};

/* --- the reader ---------------------------------------------------------------------- */

typedef struct pctx {
    yaml_parser_t p;
    const char *name;  /* for messages */
    const char *model; /* the caller's default model */
    coil_config_t *c;
    coil_err_t *err;
    char path[192]; /* key path of what is being read, e.g. "limits.max_clients" */
    yaml_mark_t curve_mark;
    bool ep_set[3];
    yaml_mark_t ep_mark[3];
} pctx_t;

/* COIL_ECONFIG "NAME:LINE:COL: PATH: message" at mark m (0-based in libyaml). */
__attribute__((format(printf, 3, 4))) static int errat(pctx_t *x, yaml_mark_t m,
                                                       const char *fmt, ...)
{
    char msg[COIL_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return coil_err_set(x->err, COIL_ECONFIG, "%s:%zu:%zu: %s%s%s", x->name, m.line + 1,
                        m.column + 1, x->path, x->path[0] ? ": " : "", msg);
}

static const char *event_what(const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_SCALAR_EVENT: return "a scalar";
    case YAML_SEQUENCE_START_EVENT: return "a sequence";
    case YAML_MAPPING_START_EVENT: return "a mapping";
    default: return "something else";
    }
}

/* The next event; refuses syntax errors, aliases, anchors and tags.  On
 * error nothing is left to delete. */
static int next(pctx_t *x, yaml_event_t *ev)
{
    const yaml_char_t *anchor = NULL, *tag = NULL;
    if (!yaml_parser_parse(&x->p, ev)) {
        const yaml_parser_t *p = &x->p;
        if (p->error == YAML_MEMORY_ERROR)
            return coil_err_set(x->err, COIL_ENOMEM, "%s: out of memory", x->name);
        if (p->error == YAML_READER_ERROR)
            return coil_err_set(x->err, COIL_ECONFIG, "%s: byte %zu: YAML error: %s", x->name,
                                p->problem_offset, p->problem ? p->problem : "unreadable");
        return coil_err_set(x->err, COIL_ECONFIG, "%s:%zu:%zu: YAML syntax error: %s%s%s",
                            x->name, p->problem_mark.line + 1, p->problem_mark.column + 1,
                            p->problem ? p->problem : "unknown", p->context ? " " : "",
                            p->context ? p->context : "");
    }
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        anchor = ev->data.alias.anchor;
        break;
    case YAML_SCALAR_EVENT:
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
        break;
    case YAML_SEQUENCE_START_EVENT:
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
        break;
    case YAML_MAPPING_START_EVENT:
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
        break;
    default:
        break;
    }
    if (anchor || tag) {
        yaml_mark_t m = ev->start_mark;
        bool alias = ev->type == YAML_ALIAS_EVENT;
        yaml_event_delete(ev);
        return errat(x, m, "%s are not supported in the configuration",
                     alias ? "aliases" : anchor ? "anchors" : "tags");
    }
    return 0;
}

static bool is_null(const yaml_event_t *ev)
{
    const char *s = (const char *)ev->data.scalar.value;
    if (ev->type != YAML_SCALAR_EVENT || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

static int set_string(pctx_t *x, char **slot, const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        return coil_err_set(x->err, COIL_ENOMEM, "config: out of memory");
    memcpy(d, s, n);
    d[n] = '\0';
    free(*slot);
    *slot = d;
    return 0;
}

static bool is_z85_key(const char *s, size_t n)
{
    static const char z85[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              ".-:+=^!/*?&<>()[]{}@%$#";
    return n == Z85_KEY_LEN && strspn(s, z85) == n;
}

/* Parses a decimal integer (optional sign, digits only); false if not one. */
static bool parse_int(const char *s, int64_t *out, bool *range)
{
    const char *p = s + (*s == '-' || *s == '+');
    char *end;
    long long v;
    *range = false;
    if (*p < '0' || *p > '9' || strspn(p, "0123456789") != strlen(p))
        return false;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno == ERANGE) {
        *range = true;
        return false;
    }
    *out = v;
    return true;
}

static int read_z85_list(pctx_t *x, yaml_event_t *start);

/* Reads the value of key k (the next event) into the config. */
static int read_map(pctx_t *x, const ckey_t *keys);

static int read_value(pctx_t *x, const ckey_t *k)
{
    yaml_event_t ev;
    int rc = next(x, &ev);
    char *slot_base = (char *)x->c;
    const char *s;
    size_t n;

    if (rc < 0)
        return rc;
    if (k->kind == K_MAP) {
        if (ev.type == YAML_MAPPING_START_EVENT) {
            if (k->sub == curve_keys) {
                x->c->curve.enabled = true;
                x->curve_mark = ev.start_mark;
            }
            yaml_event_delete(&ev);
            return read_map(x, k->sub);
        }
        if (is_null(&ev)) { /* "limits:" with nothing under it */
            yaml_event_delete(&ev);
            return 0;
        }
        rc = errat(x, ev.start_mark, "expected a mapping, got %s", event_what(&ev));
        yaml_event_delete(&ev);
        return rc;
    }
    if (k->kind == K_Z85_LIST) {
        rc = read_z85_list(x, &ev);
        yaml_event_delete(&ev);
        return rc;
    }
    if (ev.type != YAML_SCALAR_EVENT) {
        rc = errat(x, ev.start_mark, "expected a scalar, got %s", event_what(&ev));
        yaml_event_delete(&ev);
        return rc;
    }
    s = (const char *)ev.data.scalar.value;
    n = ev.data.scalar.length;
    if (memchr(s, '\0', n) || n > CONFIG_MAX_STRING) {
        rc = errat(x, ev.start_mark, "expected a string without NUL of at most %d bytes",
                   CONFIG_MAX_STRING);
        yaml_event_delete(&ev);
        return rc;
    }
    if (is_null(&ev))
        s = "", n = 0;

    switch (k->kind) {
    case K_INT: {
        int64_t v = 0;
        bool range = false;
        bool parsed = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && parse_int(s, &v, &range);
        if (!parsed || v < k->min || v > k->max) {
            rc = errat(x, ev.start_mark, "expected an integer in [%lld, %lld], got '%.40s'%s",
                       (long long)k->min, (long long)k->max, s,
                       parsed || range ? " (out of range)" : "");
            break;
        }
        memcpy(slot_base + k->off, &v, sizeof v);
        break;
    }
    case K_LOGLEVEL: {
        coil_log_level_t lv;
        size_t i, nl = sizeof level_names / sizeof level_names[0];
        for (i = 0; i < nl && strcmp(s, level_names[i]) != 0; i++)
            ;
        if (i == nl) {
            rc = errat(x, ev.start_mark, "expected error, warn, info or debug, got '%.40s'", s);
            break;
        }
        lv = (coil_log_level_t)i;
        memcpy(slot_base + k->off, &lv, sizeof lv);
        break;
    }
    case K_ENDPOINT: {
        size_t which = (size_t)(k - endpoint_keys);
        if (n > ENDPOINT_MAX ||
            !((strncmp(s, "tcp://", 6) == 0 && n > 6) || (strncmp(s, "ipc://", 6) == 0 && n > 6))) {
            rc = errat(x, ev.start_mark,
                       "expected a ZeroMQ endpoint tcp://HOST:PORT or ipc://PATH (at most %d "
                       "bytes), got '%.60s'",
                       ENDPOINT_MAX, s);
            break;
        }
        x->ep_set[which] = true;
        x->ep_mark[which] = ev.start_mark;
        rc = set_string(x, (char **)(void *)(slot_base + k->off), s, n);
        break;
    }
    case K_Z85:
        if (!is_z85_key(s, n)) {
            rc = errat(x, ev.start_mark, "expected a %d-character Z85 CURVE key", Z85_KEY_LEN);
            break;
        }
        rc = set_string(x, (char **)(void *)(slot_base + k->off), s, n);
        break;
    case K_PATH:
        if (n == 0) {
            rc = errat(x, ev.start_mark, "expected a non-empty path");
            break;
        }
        rc = set_string(x, (char **)(void *)(slot_base + k->off), s, n);
        break;
    case K_DEVICE: {
        static const char *devices[] = {"cpu", "cpu-portable", "cuda", "cuda:f32", "cuda:tf32", "cuda:bf16"};
        size_t i, nd = sizeof devices / sizeof devices[0];
        for (i = 0; i < nd && strcmp(s, devices[i]) != 0; i++)
            ;
        if (i == nd) {
            rc = errat(x, ev.start_mark, "expected cpu, cpu-portable, cuda, cuda:f32, cuda:tf32 or cuda:bf16, got '%.40s'",
                       s);
            break;
        }
        rc = set_string(x, (char **)(void *)(slot_base + k->off), s, n);
        break;
    }
    case K_PATH0:
        if (n == 0)
            s = x->model ? x->model : "", n = strlen(s);
        rc = set_string(x, (char **)(void *)(slot_base + k->off), s, n);
        break;
    default:
        break;
    }
    yaml_event_delete(&ev);
    return rc;
}

static int read_z85_list(pctx_t *x, yaml_event_t *start)
{
    coil_config_t *c = x->c;
    size_t plen = strlen(x->path);
    yaml_event_t ev;
    int rc;

    if (is_null(start))
        return 0;
    if (start->type != YAML_SEQUENCE_START_EVENT)
        return errat(x, start->start_mark, "expected a sequence of Z85 keys, got %s",
                     event_what(start));
    for (size_t i = 0;; i++) {
        if ((rc = next(x, &ev)) < 0)
            return rc;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        snprintf(x->path + plen, sizeof x->path - plen, "[%zu]", i);
        if (ev.type != YAML_SCALAR_EVENT ||
            !is_z85_key((const char *)ev.data.scalar.value, ev.data.scalar.length) ||
            i >= MAX_CLIENT_KEYS) {
            rc = errat(x, ev.start_mark, "expected a %d-character Z85 CURVE key (at most %d keys)",
                       Z85_KEY_LEN, MAX_CLIENT_KEYS);
            yaml_event_delete(&ev);
            return rc;
        }
        x->path[plen] = '\0';
        char **grown = realloc(c->curve.allowed_client_keys, (i + 1) * sizeof *grown);
        if (!grown) {
            yaml_event_delete(&ev);
            return coil_err_set(x->err, COIL_ENOMEM, "config: out of memory");
        }
        c->curve.allowed_client_keys = grown;
        grown[i] = NULL;
        c->curve.n_allowed_client_keys = i + 1;
        rc = set_string(x, &grown[i], (const char *)ev.data.scalar.value, ev.data.scalar.length);
        yaml_event_delete(&ev);
        if (rc < 0)
            return rc;
    }
}

/* Reads the entries of a mapping whose start was consumed, up to its end. */
static int read_map(pctx_t *x, const ckey_t *keys)
{
    size_t plen = strlen(x->path);
    uint64_t seen = 0;
    yaml_event_t ev;
    int rc;

    for (;;) {
        const ckey_t *k;
        const char *name;
        if ((rc = next(x, &ev)) < 0)
            return rc;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (ev.type != YAML_SCALAR_EVENT) {
            rc = errat(x, ev.start_mark, "expected a key, got %s", event_what(&ev));
            yaml_event_delete(&ev);
            return rc;
        }
        name = (const char *)ev.data.scalar.value;
        for (k = keys; k->name && strcmp(k->name, name) != 0; k++)
            ;
        snprintf(x->path + plen, sizeof x->path - plen, "%s%.60s", plen ? "." : "", name);
        if (!k->name || (seen >> (k - keys) & 1)) {
            char known[256] = "";
            for (const ckey_t *o = keys; o->name; o++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                         o == keys ? "" : ", ", o->name);
            rc = k->name ? errat(x, ev.start_mark, "duplicate key")
                         : errat(x, ev.start_mark, "unknown key (expected one of: %s)", known);
            yaml_event_delete(&ev);
            return rc;
        }
        seen |= (uint64_t)1 << (k - keys);
        yaml_event_delete(&ev);
        if ((rc = read_value(x, k)) < 0)
            return rc;
        x->path[plen] = '\0';
    }
}

/* tcp://HOST:* and tcp://HOST:0 (the system picks a free port), ipc: + // + *
 * (coild makes a private path): two of them never collide. */
static bool wildcard(const char *ep)
{
    size_t n = strlen(ep);
    if (strcmp(ep, "ipc://*") == 0)
        return true;
    return strncmp(ep, "tcp://", 6) == 0 && n > 8 &&
           (strcmp(ep + n - 2, ":*") == 0 || strcmp(ep + n - 2, ":0") == 0);
}

/* Checks that need the whole file. */
static int check_whole(pctx_t *x)
{
    coil_config_t *c = x->c;
    const char *ep[3] = {c->endpoints.clients, c->endpoints.events, c->endpoints.workers};

    if (c->curve.enabled && !c->curve.server_secret_key_file) {
        snprintf(x->path, sizeof x->path, "curve");
        return errat(x, x->curve_mark, "server_secret_key_file is required with curve");
    }
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++)
            if (strcmp(ep[i], ep[j]) == 0 && !wildcard(ep[i])) { /* each "*" binds its own */
                int at = x->ep_set[j] ? j : i;
                snprintf(x->path, sizeof x->path, "endpoints.%s", endpoint_keys[at].name);
                return errat(x, x->ep_mark[at], "the same endpoint as endpoints.%s",
                             endpoint_keys[at == j ? i : j].name);
            }
    return 0;
}

/* The whole stream: nothing, or one document holding a mapping (or null). */
static int read_stream(pctx_t *x)
{
    yaml_event_t ev;
    int rc;

    if ((rc = next(x, &ev)) < 0) /* STREAM-START */
        return rc;
    yaml_event_delete(&ev);
    if ((rc = next(x, &ev)) < 0)
        return rc;
    if (ev.type == YAML_STREAM_END_EVENT) { /* empty file */
        yaml_event_delete(&ev);
        return 0;
    }
    yaml_event_delete(&ev); /* DOCUMENT-START */
    if ((rc = next(x, &ev)) < 0)
        return rc;
    if (ev.type == YAML_MAPPING_START_EVENT) {
        yaml_event_delete(&ev);
        if ((rc = read_map(x, root_keys)) < 0)
            return rc;
    } else if (is_null(&ev)) {
        yaml_event_delete(&ev);
    } else {
        rc = errat(x, ev.start_mark, "the top level must be a mapping, got %s", event_what(&ev));
        yaml_event_delete(&ev);
        return rc;
    }
    if ((rc = next(x, &ev)) < 0) /* DOCUMENT-END */
        return rc;
    yaml_event_delete(&ev);
    if ((rc = next(x, &ev)) < 0)
        return rc;
    if (ev.type != YAML_STREAM_END_EVENT) {
        rc = errat(x, ev.start_mark, "only one YAML document is allowed");
        yaml_event_delete(&ev);
        return rc;
    }
    yaml_event_delete(&ev);
    return check_whole(x);
}

coil_config_t *coil_config_load_string(const char *yaml, size_t len, const char *name,
                                       const char *default_model, coil_err_t *err)
{
    pctx_t x;
    int rc;

    memset(&x, 0, sizeof x);
    x.name = name ? name : "<string>";
    x.model = default_model;
    x.err = err;
    if (!yaml && len) {
        coil_err_set(err, COIL_EINVAL, "config: NULL text");
        return NULL;
    }
    if (len > CONFIG_MAX_FILE_BYTES) {
        coil_err_set(err, COIL_ECONFIG, "%s: %zu bytes, more than a config file may have (%zu)",
                     x.name, len, CONFIG_MAX_FILE_BYTES);
        return NULL;
    }
    if (!(x.c = coil_config_defaults(default_model, err)))
        return NULL;
    if (name && !(x.c->source = strdup(name))) {
        coil_config_destroy(&x.c);
        coil_err_set(err, COIL_ENOMEM, "config: out of memory");
        return NULL;
    }
    if (!yaml_parser_initialize(&x.p)) {
        coil_config_destroy(&x.c);
        coil_err_set(err, COIL_ENOMEM, "config: out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&x.p, (const unsigned char *)(yaml ? yaml : ""), len);
    rc = read_stream(&x);
    yaml_parser_delete(&x.p);
    if (rc < 0)
        coil_config_destroy(&x.c);
    return x.c;
}

coil_config_t *coil_config_load(const char *path, const char *default_model, coil_err_t *err)
{
    FILE *f;
    char *buf;
    size_t n;
    coil_config_t *c;

    if (!path) {
        coil_err_set(err, COIL_EINVAL, "config: NULL path");
        return NULL;
    }
    if (!(f = fopen(path, "rb"))) {
        coil_err_set(err, COIL_EIO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(CONFIG_MAX_FILE_BYTES + 1);
    if (!buf) {
        fclose(f);
        coil_err_set(err, COIL_ENOMEM, "config: out of memory");
        return NULL;
    }
    n = fread(buf, 1, CONFIG_MAX_FILE_BYTES + 1, f);
    if (ferror(f)) {
        fclose(f);
        free(buf);
        coil_err_set(err, COIL_EIO, "%s: read error", path);
        return NULL;
    }
    fclose(f);
    c = coil_config_load_string(buf, n, path, default_model, err);
    free(buf);
    return c;
}

/* --- writing ------------------------------------------------------------------------------ */

/* A YAML double-quoted scalar. */
static void put_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        /* YAML reads U+0085, U+2028 and U+2029 as line breaks even inside
         * quotes: write them as its escapes \N, \L, \P */
        else if (p[0] == 0xc2 && p[1] == 0x85)
            fputs("\\N", f), p++;
        else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
            fputs(p[2] == 0xa8 ? "\\L" : "\\P", f), p += 2;
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void put_kv(FILE *f, const char *indent, const char *key, const char *s)
{
    fprintf(f, "%s%s: ", indent, key);
    put_quoted(f, s);
    fputc('\n', f);
}

int coil_config_write(const coil_config_t *c, FILE *f, coil_err_t *err)
{
    fputs("endpoints:\n", f);
    put_kv(f, "  ", "clients", c->endpoints.clients);
    put_kv(f, "  ", "events", c->endpoints.events);
    put_kv(f, "  ", "workers", c->endpoints.workers);
    put_kv(f, "", "database", c->database);
    put_kv(f, "", "model", c->model);
    fprintf(f, "workers: %lld\nchunk_tokens: %lld\n", (long long)c->workers,
            (long long)c->chunk_tokens);
    fprintf(f, "checkpoint:\n  interval_tokens: %lld\n  dense: %lld\n",
            (long long)c->checkpoint.interval_tokens, (long long)c->checkpoint.dense);
    fprintf(f,
            "limits:\n  max_message_bytes: %lld\n  max_text_bytes: %lld\n"
            "  max_document_bytes: %lld\n  max_concurrent_jobs: %lld\n  max_clients: %lld\n"
            "  max_uploads: %lld\n  max_uploads_per_client: %lld\n  upload_idle_seconds: %lld\n",
            (long long)c->limits.max_message_bytes, (long long)c->limits.max_text_bytes,
            (long long)c->limits.max_document_bytes, (long long)c->limits.max_concurrent_jobs,
            (long long)c->limits.max_clients, (long long)c->limits.max_uploads,
            (long long)c->limits.max_uploads_per_client, (long long)c->limits.upload_idle_seconds);
    fprintf(f, "threads_per_worker: %lld\ndevice: %s\nlog_level: %s\n", (long long)c->threads_per_worker, c->device,
            coil_log_level_name(c->log_level) ? coil_log_level_name(c->log_level) : "info");
    if (c->curve.enabled) {
        fputs("curve:\n", f);
        if (c->curve.server_secret_key_file)
            put_kv(f, "  ", "server_secret_key_file", c->curve.server_secret_key_file);
        if (c->curve.server_public_key)
            put_kv(f, "  ", "server_public_key", c->curve.server_public_key);
        fputs("  allowed_client_keys: [", f);
        for (size_t i = 0; i < c->curve.n_allowed_client_keys; i++) {
            fputs(i ? ", " : "", f);
            put_quoted(f, c->curve.allowed_client_keys[i]);
        }
        fputs("]\n", f);
        if (c->curve.allowed_client_keys_file)
            put_kv(f, "  ", "allowed_client_keys_file", c->curve.allowed_client_keys_file);
    }
    if (fflush(f) != 0 || ferror(f))
        return coil_err_set(err, COIL_EIO, "config: write error");
    return 0;
}
