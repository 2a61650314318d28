/* protocol.c -- decode/validate requests and encode replies and events.
 *
 * Validation is table driven: each op lists its fields (kind, bounds, where
 * the value lands in coil_proto_request_t) plus two group rules (exactly one
 * of session/doc; part and last together).  The JSON Schemas in
 * schemas/protocol/ mirror these tables; keep them in step (make check
 * compares both on tests/data/protocol/cases.json).
 */
#include "protocol.h"
#include "jsonload.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --- ops ------------------------------------------------------------------ */

static const char *const op_names[COIL_OP_COUNT_] = {
    [COIL_OP_INGEST] = "ingest",
    [COIL_OP_DOC_STATUS] = "doc.status",
    [COIL_OP_DOC_LIST] = "doc.list",
    [COIL_OP_SEARCH] = "search",
    [COIL_OP_SESSION_NEW] = "session.new",
    [COIL_OP_SESSION_APPEND] = "session.append",
    [COIL_OP_SESSION_FORK] = "session.fork",
    [COIL_OP_SESSION_DELETE] = "session.delete",
    [COIL_OP_GENERATE] = "generate",
    [COIL_OP_SCORE] = "score",
    [COIL_OP_STATE_EXPORT] = "state.export",
    [COIL_OP_STATE_IMPORT] = "state.import",
    [COIL_OP_HEALTH] = "health",
    [COIL_OP_STATS] = "stats",
    [COIL_OP_ASK] = "ask",
};

const char *coil_proto_op_name(coil_proto_op_t op)
{
    if ((int)op <= (int)COIL_OP_NONE || (int)op >= (int)COIL_OP_COUNT_)
        return NULL;
    return op_names[op];
}

coil_proto_op_t coil_proto_op_from_name(const char *name)
{
    if (!name)
        return COIL_OP_NONE;
    for (int i = COIL_OP_NONE + 1; i < COIL_OP_COUNT_; i++)
        if (strcmp(op_names[i], name) == 0)
            return (coil_proto_op_t)i;
    return COIL_OP_NONE;
}

void coil_proto_limits_default(coil_proto_limits_t *lim)
{
    lim->max_message_bytes = (size_t)64 << 20;
    lim->max_text_bytes = (size_t)1 << 20;
    lim->max_document_bytes = (size_t)64 << 20;
}

/* --- field tables ------------------------------------------------------------ */

enum fkind {
    F_NAME,    /* string, 1..COIL_PROTO_NAME_MAX code points */
    F_DOCTEXT, /* string, <= max_document_bytes */
    F_TEXT0,   /* string, <= max_text_bytes (may be empty) */
    F_TEXT1,   /* string, 1 code point .. max_text_bytes */
    F_QUERY,   /* string, 1..COIL_PROTO_QUERY_MAX code points */
    F_SESSION, /* 16 lowercase hex chars */
    F_KEY,     /* 1..COIL_PROTO_KEY_MAX chars of A-Z a-z 0-9 . _ : - */
    F_INT,     /* integer in [imin, imax] */
    F_NUM,     /* number in [dmin, dmax] (dmin exclusive if excl_min) */
    F_BOOL,
    F_STRATEGY, /* "auto", "state", "reread" or "select" */
};

typedef struct fspec {
    const char *key;
    enum fkind kind;
    bool required;
    int64_t imin, imax;
    double dmin, dmax;
    bool excl_min;
    size_t off;     /* offset of the member in coil_proto_request_t */
    size_t len_off; /* strings: offset of the size_t length member, or NO_LEN */
} fspec_t;

#define NO_LEN ((size_t)-1)
#define OFF(m) offsetof(coil_proto_request_t, m)
#define STR(k, kind, req, m) {k, kind, req, 0, 0, 0, 0, false, OFF(m), NO_LEN}
#define STRL(k, kind, req, m, l) {k, kind, req, 0, 0, 0, 0, false, OFF(m), OFF(l)}
#define INT(k, req, lo, hi, m) {k, F_INT, req, lo, hi, 0, 0, false, OFF(m), NO_LEN}
#define NUM(k, lo, hi, excl, m) {k, F_NUM, false, 0, 0, lo, hi, excl, OFF(m), NO_LEN}
#define BOOL(k, req, m) {k, F_BOOL, req, 0, 0, 0, 0, false, OFF(m), NO_LEN}
#define END {NULL, F_BOOL, false, 0, 0, 0, 0, false, 0, NO_LEN}
#define I64MAX INT64_MAX

enum { RULE_SESSION_XOR_DOC = 1, RULE_PART_WITH_LAST = 2 };

typedef struct opspec {
    int rules;
    int frames; /* frames this op's request has: 1, or 2 for state.import */
    fspec_t fields[16];
} opspec_t;

static const opspec_t op_specs[COIL_OP_COUNT_] = {
    [COIL_OP_INGEST] = {RULE_PART_WITH_LAST, 1,
                        {STR("name", F_NAME, true, name),
                         STRL("text", F_DOCTEXT, true, text, text_len),
                         INT("part", false, 0, I64MAX, part), BOOL("last", false, last),
                         BOOL("replace", false, replace), INT("chunk", false, 1, 65536, chunk),
                         END}},
    [COIL_OP_DOC_STATUS] = {0, 1, {STR("name", F_NAME, true, name), END}},
    [COIL_OP_DOC_LIST] = {0, 1, {END}},
    [COIL_OP_SEARCH] = {0, 1,
                        {STR("query", F_QUERY, true, query), STR("doc", F_NAME, false, doc),
                         INT("limit", false, 1, 1000, limit), END}},
    [COIL_OP_SESSION_NEW] = {0, 1,
                             {STR("doc", F_NAME, true, doc), INT("at", false, 0, I64MAX, at),
                              END}},
    [COIL_OP_SESSION_APPEND] = {0, 1,
                                {STR("session", F_SESSION, true, session),
                                 STRL("text", F_TEXT1, true, text, text_len), STR("key", F_KEY, false, key),
                                 END}},
    [COIL_OP_SESSION_FORK] = {0, 1,
                              {STR("session", F_SESSION, true, session),
                               INT("at", false, 0, I64MAX, at), END}},
    [COIL_OP_SESSION_DELETE] = {0, 1,
                                {STR("session", F_SESSION, true, session),
                                 BOOL("cascade", false, cascade), END}},
    [COIL_OP_GENERATE] = {RULE_SESSION_XOR_DOC, 1,
                          {STR("session", F_SESSION, false, session),
                           STR("doc", F_NAME, false, doc),
                           STRL("prompt", F_TEXT0, false, prompt, prompt_len),
                           INT("n", false, 1, 4096, n), NUM("temperature", 0, 10, false, temperature),
                           NUM("top_p", 0, 1, true, top_p), INT("seed", false, 0, I64MAX, seed),
                           BOOL("append", false, append), BOOL("stream", false, stream),
                           STR("key", F_KEY, false, key), END}},
    [COIL_OP_SCORE] = {RULE_SESSION_XOR_DOC, 1,
                       {STR("session", F_SESSION, false, session), STR("doc", F_NAME, false, doc),
                        STRL("text", F_TEXT1, true, text, text_len), END}},
    [COIL_OP_STATE_EXPORT] = {RULE_SESSION_XOR_DOC, 1,
                              {STR("session", F_SESSION, false, session),
                               STR("doc", F_NAME, false, doc), INT("at", false, 0, I64MAX, at),
                               END}},
    [COIL_OP_STATE_IMPORT] = {0, 2, {STR("name", F_NAME, true, name), END}},
    [COIL_OP_HEALTH] = {0, 1, {END}},
    [COIL_OP_STATS] = {0, 1, {END}},
    [COIL_OP_ASK] = {RULE_SESSION_XOR_DOC, 1,
                     {STR("session", F_SESSION, false, session), STR("doc", F_NAME, false, doc),
                      STRL("question", F_TEXT1, true, question, question_len),
                      STRL("answer", F_TEXT1, false, answer, answer_len), STR("strategy", F_STRATEGY, false, strategy),
                      INT("n", false, 0, 4096, n), INT("evidence", false, 1, 16, evidence),
                      INT("candidates", false, 1, 16, candidates), INT("budget", false, 1, 8192, budget),
                      NUM("temperature", 0, 10, false, temperature), NUM("top_p", 0, 1, true, top_p),
                      INT("seed", false, 0, I64MAX, seed), BOOL("stream", false, stream),
                      STR("key", F_KEY, false, key), END}},
};

/* --- value helpers ----------------------------------------------------------- */

/* Code points of valid UTF-8 (jansson guarantees validity). */
static size_t utf8_len(const char *s, size_t n)
{
    size_t cp = 0;
    for (size_t i = 0; i < n; i++)
        cp += ((unsigned char)s[i] & 0xC0) != 0x80;
    return cp;
}

/* JSON Schema integer: an integer, or a finite real with no fraction that
 * fits int64. */
static bool get_int(const json_t *v, int64_t *out)
{
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d != floor(d) || d < -9223372036854775808.0 ||
            d >= 9223372036854775808.0)
            return false;
        *out = (int64_t)d;
        return true;
    }
    return false;
}

static bool get_num(const json_t *v, double *out)
{
    if (json_is_integer(v)) {
        *out = (double)json_integer_value(v);
        return true;
    }
    if (json_is_real(v) && isfinite(json_real_value(v))) {
        *out = json_real_value(v);
        return true;
    }
    return false;
}

static bool valid_id(const json_t *id)
{
    int64_t i;
    if (json_is_string(id)) {
        size_t cp = utf8_len(json_string_value(id), json_string_length(id));
        return cp >= 1 && cp <= COIL_PROTO_ID_MAX;
    }
    return get_int(id, &i);
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

static const fspec_t *find_field(const opspec_t *os, const char *key)
{
    for (const fspec_t *f = os->fields; f->key; f++)
        if (strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

/* Checks one present field and stores it into r. */
static int check_field(const char *opn, const fspec_t *f, const json_t *v,
                       const coil_proto_limits_t *lim, coil_proto_request_t *r, coil_err_t *err)
{
    char *base = (char *)r;
    switch (f->kind) {
    case F_INT: {
        int64_t i;
        if (!get_int(v, &i))
            return coil_err_set(err, COIL_EINVAL, "%s: field '%s': expected an integer, got %s",
                                opn, f->key, type_name(v));
        if (i < f->imin || i > f->imax)
            return coil_err_set(err, COIL_EINVAL,
                                "%s: field '%s': expected an integer in [%lld, %lld], got %lld",
                                opn, f->key, (long long)f->imin, (long long)f->imax, (long long)i);
        memcpy(base + f->off, &i, sizeof i);
        return 0;
    }
    case F_NUM: {
        double d;
        if (!get_num(v, &d))
            return coil_err_set(err, COIL_EINVAL, "%s: field '%s': expected a number, got %s", opn,
                                f->key, type_name(v));
        if ((f->excl_min ? d <= f->dmin : d < f->dmin) || d > f->dmax)
            return coil_err_set(err, COIL_EINVAL, "%s: field '%s': expected a number in %c%g, %g], got %g",
                                opn, f->key, f->excl_min ? '(' : '[', f->dmin, f->dmax, d);
        memcpy(base + f->off, &d, sizeof d);
        return 0;
    }
    case F_BOOL: {
        bool b;
        if (!json_is_boolean(v))
            return coil_err_set(err, COIL_EINVAL, "%s: field '%s': expected a boolean, got %s", opn,
                                f->key, type_name(v));
        b = json_is_true(v);
        memcpy(base + f->off, &b, sizeof b);
        return 0;
    }
    default:
        break;
    }

    /* strings */
    if (!json_is_string(v))
        return coil_err_set(err, COIL_EINVAL, "%s: field '%s': expected a string, got %s", opn,
                            f->key, type_name(v));
    const char *s = json_string_value(v);
    size_t n = json_string_length(v), cp;
    switch (f->kind) {
    case F_NAME:
    case F_QUERY: {
        size_t max = f->kind == F_NAME ? COIL_PROTO_NAME_MAX : COIL_PROTO_QUERY_MAX;
        cp = utf8_len(s, n);
        if (cp < 1 || cp > max)
            return coil_err_set(err, COIL_EINVAL,
                                "%s: field '%s': expected a string of 1..%zu characters, got %zu",
                                opn, f->key, max, cp);
        break;
    }
    case F_SESSION:
        if (n != COIL_PROTO_SESSION_LEN || strspn(s, "0123456789abcdef") != n)
            return coil_err_set(err, COIL_EINVAL,
                                "%s: field '%s': expected a session id of %d lowercase hex "
                                "characters",
                                opn, f->key, COIL_PROTO_SESSION_LEN);
        break;
    case F_STRATEGY:
        if (strcmp(s, "auto") && strcmp(s, "state") && strcmp(s, "reread") && strcmp(s, "select"))
            return coil_err_set(err, COIL_EINVAL,
                                "%s: field '%s': expected one of \"auto\", \"state\", \"reread\", \"select\"", opn,
                                f->key);
        break;
    case F_KEY:
        if (n < 1 || n > COIL_PROTO_KEY_MAX ||
            strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") != n)
            return coil_err_set(err, COIL_EINVAL,
                                "%s: field '%s': expected 1..%d characters of A-Z a-z 0-9 . _ : -", opn, f->key,
                                COIL_PROTO_KEY_MAX);
        break;
    case F_DOCTEXT:
        if (n > lim->max_document_bytes)
            return coil_err_set(err, COIL_ETOOBIG, "%s: field '%s': %zu bytes, limit %zu", opn,
                                f->key, n, lim->max_document_bytes);
        break;
    case F_TEXT1:
        if (n == 0)
            return coil_err_set(err, COIL_EINVAL, "%s: field '%s': expected a non-empty string",
                                opn, f->key);
        /* fall through */
    case F_TEXT0:
        if (n > lim->max_text_bytes)
            return coil_err_set(err, COIL_ETOOBIG, "%s: field '%s': %zu bytes, limit %zu", opn,
                                f->key, n, lim->max_text_bytes);
        break;
    default:
        break;
    }
    memcpy(base + f->off, &s, sizeof s);
    if (f->len_off != NO_LEN)
        memcpy(base + f->len_off, &n, sizeof n);
    return 0;
}

static void set_defaults(coil_proto_request_t *r)
{
    memset(r, 0, sizeof *r);
    r->part = -1;
    r->last = true;
    r->at = -1;
    r->limit = 20;
    r->n = 32;
    r->temperature = 0.8;
    r->top_p = 0.95;
    r->stream = true;
}

/* Validates the envelope and the fields of root; fills r (borrowing from
 * root).  n_frames: the frames that came with it (checked against the op). */
static int validate(const json_t *root, size_t n_frames, const coil_proto_limits_t *lim,
                    coil_proto_request_t *r, coil_err_t *err)
{
    const json_t *v, *id, *op;
    const char *key, *opn;
    json_t *val;
    int64_t ver;

    set_defaults(r);
    if (!json_is_object(root))
        return coil_err_set(err, COIL_EPROTO, "request: expected a JSON object, got %s",
                            type_name(root));
    v = json_object_get(root, "v");
    if (!v)
        return coil_err_set(err, COIL_EPROTO, "request: missing field 'v' (protocol version)");
    if (!get_int(v, &ver) || ver != COIL_PROTO_VERSION)
        return coil_err_set(err, COIL_EPROTO, "request: field 'v': expected %d",
                            COIL_PROTO_VERSION);
    id = json_object_get(root, "id");
    if (!id)
        return coil_err_set(err, COIL_EPROTO, "request: missing field 'id'");
    if (!valid_id(id))
        return coil_err_set(err, COIL_EPROTO,
                            "request: field 'id': expected a string of 1..%d characters or an "
                            "integer",
                            COIL_PROTO_ID_MAX);
    r->id = id;
    op = json_object_get(root, "op");
    if (!op)
        return coil_err_set(err, COIL_EPROTO, "request: missing field 'op'");
    if (!json_is_string(op))
        return coil_err_set(err, COIL_EPROTO, "request: field 'op': expected a string, got %s",
                            type_name(op));
    r->op = coil_proto_op_from_name(json_string_value(op));
    if (r->op == COIL_OP_NONE)
        return coil_err_set(err, COIL_EPROTO, "request: field 'op': unknown op '%.64s'",
                            json_string_value(op));
    opn = op_names[r->op];
    const opspec_t *os = &op_specs[r->op];

    if (n_frames != (size_t)os->frames) {
        if (os->frames == 2)
            return coil_err_set(err, COIL_EPROTO,
                                "%s: needs the state blob as binary frame 1 (2 frames, got %zu)",
                                opn, n_frames);
        return coil_err_set(err, COIL_EPROTO, "%s: binary frame not allowed (got %zu frames)",
                            opn, n_frames);
    }

    json_object_foreach((json_t *)root, key, val) {
        if (strcmp(key, "v") == 0 || strcmp(key, "id") == 0 || strcmp(key, "op") == 0)
            continue;
        if (!find_field(os, key))
            return coil_err_set(err, COIL_EINVAL, "%s: unknown field '%.64s'", opn, key);
    }
    for (const fspec_t *f = os->fields; f->key; f++) {
        const json_t *fv = json_object_get(root, f->key);
        int rc;
        if (!fv) {
            if (f->required)
                return coil_err_set(err, COIL_EINVAL, "%s: missing required field '%s'", opn,
                                    f->key);
            continue;
        }
        if ((rc = check_field(opn, f, fv, lim, r, err)) < 0)
            return rc;
    }
    if (os->rules & RULE_SESSION_XOR_DOC) {
        if (r->session && r->doc)
            return coil_err_set(err, COIL_EINVAL,
                                "%s: fields 'session' and 'doc': exactly one is allowed, got both",
                                opn);
        if (!r->session && !r->doc)
            return coil_err_set(err, COIL_EINVAL,
                                "%s: missing required field: one of 'session' or 'doc'", opn);
    }
    if (r->key && r->op == COIL_OP_GENERATE && !r->append)
        return coil_err_set(err, COIL_EINVAL, "%s: field 'key' is only allowed with \"append\": true", opn);
    if (r->op == COIL_OP_ASK) {
        if (r->key && !r->session)
            return coil_err_set(err, COIL_EINVAL, "%s: field 'key' is only allowed with 'session'", opn);
        /* ask's own defaults: a short greedy answer */
        if (!json_object_get(root, "n"))
            r->n = 16;
        if (!json_object_get(root, "temperature"))
            r->temperature = 0;
        if (!json_object_get(root, "top_p"))
            r->top_p = 1;
    }
    if (os->rules & RULE_PART_WITH_LAST) {
        bool has_part = json_object_get(root, "part") != NULL;
        bool has_last = json_object_get(root, "last") != NULL;
        if (has_part != has_last)
            return coil_err_set(err, COIL_EINVAL, "%s: field '%s' is required with '%s'", opn,
                                has_part ? "last" : "part", has_part ? "part" : "last");
    }
    return 0;
}

/* --- parse ------------------------------------------------------------------- */

/* The request handed out is the first member, so a pointer to it is a
 * pointer to the box that owns the JSON tree. */
typedef struct req_box {
    coil_proto_request_t pub;
    json_t *root;
} req_box_t;

int coil_proto_parse_request(const void *json, size_t len, const void *bin, size_t bin_len,
                             size_t n_frames, const coil_proto_limits_t *lim,
                             coil_proto_request_t **out, coil_err_t *err)
{
    coil_proto_limits_t dflt;
    json_error_t jerr;
    req_box_t *box;
    int rc;

    if (!out)
        return coil_err_set(err, COIL_EINVAL, "coil_proto_parse_request: out is NULL");
    *out = NULL;
    if ((!json && len) || (!bin && bin_len) || (n_frames < 2 && bin_len))
        return coil_err_set(err, COIL_EINVAL, "coil_proto_parse_request: inconsistent arguments");
    if (!lim) {
        coil_proto_limits_default(&dflt);
        lim = &dflt;
    }
    if (n_frames < 1 || n_frames > COIL_PROTO_MAX_FRAMES)
        return coil_err_set(err, COIL_EPROTO, "request: expected 1 or %d frames, got %zu",
                            COIL_PROTO_MAX_FRAMES, n_frames);
    if (len > lim->max_message_bytes || bin_len > lim->max_message_bytes - len)
        return coil_err_set(err, COIL_ETOOBIG, "request: message of %zu bytes, limit %zu",
                            len + bin_len > len ? len + bin_len : len, lim->max_message_bytes);

    box = calloc(1, sizeof *box);
    if (!box)
        return coil_err_set(err, COIL_ENOMEM, "request: out of memory");
    int nomem = 0;
    box->root = coil_jsonload_buf(json ? json : "", len, JSON_REJECT_DUPLICATES, &jerr, &nomem);
    if (nomem) {
        free(box);
        return coil_err_set(err, COIL_ENOMEM, "request: out of memory");
    }
    if (!box->root) {
        free(box);
        return coil_err_set(err, COIL_EPROTO, "request: not JSON: %s at line %d column %d",
                            jerr.text, jerr.line, jerr.column);
    }
    rc = validate(box->root, n_frames, lim, &box->pub, err);
    if (rc < 0) {
        json_decref(box->root);
        free(box);
        return rc;
    }
    box->pub.json = box->root;
    if (box->pub.op == COIL_OP_STATE_IMPORT) {
        if (bin_len == 0) {
            json_decref(box->root);
            free(box);
            return coil_err_set(err, COIL_EPROTO, "state.import: binary frame 1 is empty");
        }
        box->pub.blob = bin;
        box->pub.blob_len = bin_len;
    }
    *out = &box->pub;
    return 0;
}

void coil_proto_request_free(coil_proto_request_t **req)
{
    req_box_t *box;
    if (!req || !*req)
        return;
    box = (req_box_t *)*req;
    json_decref(box->root);
    free(box);
    *req = NULL;
}

json_t *coil_proto_recover_id(const void *json, size_t len, size_t max_bytes)
{
    json_t *root, *id = NULL;
    if (!json || (max_bytes && len > max_bytes))
        return NULL;
    root = coil_jsonload_buf(json, len, JSON_REJECT_DUPLICATES, NULL, NULL);
    if (json_is_object(root)) {
        id = json_object_get(root, "id");
        if (id && valid_id(id))
            json_incref(id);
        else
            id = NULL;
    }
    json_decref(root);
    return id;
}

/* --- builders ---------------------------------------------------------------- */

/* Decodes one UTF-8 sequence at s[0..n): its length, or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    uint32_t c;
    size_t len;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        len = 2, c = s[0] & 0x1F;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        len = 3, c = s[0] & 0x0F;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        len = 4, c = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (c < 0x800 || (c >= 0xD800 && c <= 0xDFFF))) ||
        (len == 4 && (c < 0x10000 || c > 0x10FFFF)))
        return 0;
    return len;
}

/* A JSON string of s with invalid UTF-8 (and NUL) replaced by U+FFFD. */
static json_t *string_sanitized(const char *s)
{
    size_t n = strlen(s), o = 0;
    char *buf;
    json_t *j;
    if (n > (SIZE_MAX - 1) / 3)
        return NULL;
    buf = malloc(3 * n + 1);
    if (!buf)
        return NULL;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq((const unsigned char *)s + i, n - i);
        if (l) {
            memcpy(buf + o, s + i, l);
            o += l;
            i += l;
        } else {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    j = json_stringn(buf, o);
    free(buf);
    return j;
}

/* Serialises obj (consumed) to *out and *len. */
static int dump(json_t *obj, char **out, size_t *len, coil_err_t *err)
{
    char *s;
    if (!obj)
        return coil_err_set(err, COIL_ENOMEM, "protocol: out of memory");
    s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s)
        return coil_err_set(err, COIL_ENOMEM, "protocol: out of memory");
    *out = s;
    if (len)
        *len = strlen(s);
    return 0;
}

/* Adds key: value (value consumed); false on failure (value NULL included). */
static bool put(json_t *obj, const char *key, json_t *value)
{
    return value && json_object_set_new(obj, key, value) == 0;
}

/* {"v":1,"id":id|null}; NULL on ENOMEM. */
static json_t *envelope(const json_t *id)
{
    json_t *o = json_object();
    if (!o || !put(o, "v", json_integer(COIL_PROTO_VERSION)) ||
        !put(o, "id", id ? json_deep_copy(id) : json_null())) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int reply_result(const json_t *id, const char *flag, json_t **result, char **out,
                        size_t *len, coil_err_t *err)
{
    json_t *res = result ? *result : NULL, *o;
    if (result)
        *result = NULL;
    if (out)
        *out = NULL;
    if (!out || !id || !valid_id(id) || (res && !json_is_object(res))) {
        json_decref(res);
        return coil_err_set(err, COIL_EINVAL,
                            "protocol: reply needs a valid id, an object result and out");
    }
    if (!res && !(res = json_object()))
        return coil_err_set(err, COIL_ENOMEM, "protocol: out of memory");
    o = envelope(id);
    if (!o || !put(o, flag, json_true()) || json_object_set_new(o, "result", res) != 0) {
        if (!o)
            json_decref(res);
        json_decref(o);
        return coil_err_set(err, COIL_ENOMEM, "protocol: out of memory");
    }
    return dump(o, out, len, err);
}

int coil_proto_reply_ok(const json_t *id, json_t **result, char **out, size_t *len,
                        coil_err_t *err)
{
    return reply_result(id, "ok", result, out, len, err);
}

int coil_proto_reply_partial(const json_t *id, json_t **result, char **out, size_t *len,
                             coil_err_t *err)
{
    return reply_result(id, "partial", result, out, len, err);
}

/* Whether code is one of the negative COIL_E* codes. */
static bool error_code_valid(int code)
{
    return code < 0 && strcmp(coil_strerror(code), "unknown error") != 0;
}

/* {"code":..., "message":...}; NULL on ENOMEM. */
static json_t *error_object(int code, const char *message)
{
    json_t *e = json_object();
    if (!e || !put(e, "code", json_string(coil_err_name(code))) ||
        !put(e, "message", string_sanitized(message ? message : coil_strerror(code)))) {
        json_decref(e);
        return NULL;
    }
    return e;
}

int coil_proto_reply_error(const json_t *id, int code, const char *message, char **out,
                           size_t *len, coil_err_t *err)
{
    json_t *o, *e;
    if (out)
        *out = NULL;
    if (!out || (id && !valid_id(id)) || !error_code_valid(code))
        return coil_err_set(err, COIL_EINVAL,
                            "protocol: error reply needs a valid id or NULL, a COIL_E* code and "
                            "out");
    o = envelope(id);
    e = error_object(code, message);
    if (!o || !e || !put(o, "ok", json_false()) || json_object_set_new(o, "error", e) != 0) {
        if (!o)
            json_decref(e);
        json_decref(o);
        return coil_err_set(err, COIL_ENOMEM, "protocol: out of memory");
    }
    return dump(o, out, len, err);
}

int coil_proto_request_build(coil_proto_op_t op, const json_t *id, json_t **fields, char **out,
                             size_t *len, coil_err_t *err)
{
    json_t *f = fields ? *fields : NULL, *o;
    const char *key;
    json_t *val;
    coil_proto_request_t r;
    coil_proto_limits_t lim;
    int rc;

    if (fields)
        *fields = NULL;
    if (out)
        *out = NULL;
    if (!out || !coil_proto_op_name(op) || (f && !json_is_object(f))) {
        json_decref(f);
        return coil_err_set(err, COIL_EINVAL,
                            "protocol: request needs a known op, an object of fields and out");
    }
    o = envelope(id);
    if (!o || !put(o, "op", json_string(op_names[op]))) {
        json_decref(o);
        json_decref(f);
        return coil_err_set(err, COIL_ENOMEM, "protocol: out of memory");
    }
    if (f) {
        json_object_foreach(f, key, val) {
            if (json_object_get(o, key)) {
                coil_err_set(err, COIL_EINVAL, "%s: field '%s' is part of the envelope, not a field",
                             op_names[op], key); /* before key is freed with f */
                json_decref(o);
                json_decref(f);
                return COIL_EINVAL;
            }
        }
        if (json_object_update(o, f) != 0) {
            json_decref(o);
            json_decref(f);
            return coil_err_set(err, COIL_ENOMEM, "protocol: out of memory");
        }
        json_decref(f);
    }
    /* Sizes are the server's business; validate the shape only. */
    lim.max_message_bytes = lim.max_text_bytes = lim.max_document_bytes = SIZE_MAX;
    rc = validate(o, (size_t)op_specs[op].frames, &lim, &r, err);
    if (rc < 0) {
        json_decref(o);
        return rc;
    }
    return dump(o, out, len, err);
}

/* --- events ------------------------------------------------------------------ */

static const char *const topics[] = {COIL_TOPIC_INGEST_PROGRESS, COIL_TOPIC_DOC_COMPLETE,
                                     COIL_TOPIC_DOC_FAILED, COIL_TOPIC_WORKER_UP,
                                     COIL_TOPIC_WORKER_DOWN, COIL_TOPIC_HEARTBEAT};

int coil_proto_event(const char *topic, json_t **body, char **out, size_t *len, coil_err_t *err)
{
    json_t *b = body ? *body : NULL;
    bool known = false;
    if (body)
        *body = NULL;
    if (out)
        *out = NULL;
    for (size_t i = 0; topic && i < sizeof topics / sizeof topics[0]; i++)
        known = known || strcmp(topic, topics[i]) == 0;
    if (!known || !json_is_object(b) || !out) {
        json_decref(b);
        return coil_err_set(err, COIL_EINVAL, "protocol: event '%s': unknown topic or no body",
                            topic ? topic : "(null)");
    }
    return dump(b, out, len, err);
}

/* Body builders share this: b (consumed) must be complete, or NULL on ENOMEM. */
static int event_body(const char *topic, json_t *b, bool ok, char **out, size_t *len,
                      coil_err_t *err)
{
    if (!ok) {
        json_decref(b);
        if (out)
            *out = NULL;
        return coil_err_set(err, COIL_ENOMEM, "protocol: event '%s': out of memory", topic);
    }
    return coil_proto_event(topic, &b, out, len, err);
}

static json_t *doc_string(const char *doc)
{
    return string_sanitized(doc ? doc : "");
}

int coil_proto_event_ingest_progress(const char *doc, int64_t tokens, int64_t bytes,
                                     int64_t total_bytes, double tokens_per_s, char **out,
                                     size_t *len, coil_err_t *err)
{
    json_t *b = json_object();
    bool ok = b && put(b, "doc", doc_string(doc)) && put(b, "tokens", json_integer(tokens)) &&
              put(b, "bytes", json_integer(bytes)) &&
              put(b, "total_bytes", total_bytes < 0 ? json_null() : json_integer(total_bytes)) &&
              put(b, "tokens_per_s", json_real(isfinite(tokens_per_s) ? tokens_per_s : 0.0));
    return event_body(COIL_TOPIC_INGEST_PROGRESS, b, ok, out, len, err);
}

int coil_proto_event_doc_complete(const char *doc, int64_t tokens, int64_t bytes, double seconds,
                                  char **out, size_t *len, coil_err_t *err)
{
    json_t *b = json_object();
    bool ok = b && put(b, "doc", doc_string(doc)) && put(b, "tokens", json_integer(tokens)) &&
              put(b, "bytes", json_integer(bytes)) &&
              put(b, "seconds", json_real(isfinite(seconds) ? seconds : 0.0));
    return event_body(COIL_TOPIC_DOC_COMPLETE, b, ok, out, len, err);
}

int coil_proto_event_doc_failed(const char *doc, int code, const char *message, char **out,
                                size_t *len, coil_err_t *err)
{
    json_t *b;
    bool ok;
    if (!error_code_valid(code)) {
        if (out)
            *out = NULL;
        return coil_err_set(err, COIL_EINVAL, "protocol: doc.failed needs a COIL_E* code, got %d",
                            code);
    }
    b = json_object();
    ok = b && put(b, "doc", doc_string(doc)) && put(b, "error", error_object(code, message));
    return event_body(COIL_TOPIC_DOC_FAILED, b, ok, out, len, err);
}

int coil_proto_event_heartbeat(double uptime_s, int64_t workers, int64_t busy, int64_t queued, char **out,
                               size_t *len, coil_err_t *err)
{
    json_t *b = json_object();
    bool ok = b && put(b, "uptime_s", json_real(uptime_s)) && put(b, "workers", json_integer(workers)) &&
              put(b, "busy", json_integer(busy)) && put(b, "queued", json_integer(queued));
    return event_body(COIL_TOPIC_HEARTBEAT, b, ok, out, len, err);
}

int coil_proto_event_worker(const char *topic, const char *worker, int64_t pid,
                            const char *reason, char **out, size_t *len, coil_err_t *err)
{
    json_t *b;
    bool ok;
    if (!topic || (strcmp(topic, COIL_TOPIC_WORKER_UP) != 0 &&
                   strcmp(topic, COIL_TOPIC_WORKER_DOWN) != 0)) {
        if (out)
            *out = NULL;
        return coil_err_set(err, COIL_EINVAL, "protocol: not a worker topic: '%s'",
                            topic ? topic : "(null)");
    }
    b = json_object();
    ok = b && put(b, "worker", string_sanitized(worker ? worker : "")) &&
         put(b, "pid", json_integer(pid)) &&
         put(b, "reason", reason ? string_sanitized(reason) : json_null());
    return event_body(topic, b, ok, out, len, err);
}
