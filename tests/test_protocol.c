/* test_protocol.c -- the wire protocol: request validation (the corpus of
 * tests/data/protocol/cases.json plus typed values, limits, frames, id
 * recovery), 1000 random mutations, and the exact JSON of every builder.
 * The JSON Schema side of the corpus is tests/test_protocol_schemas.c.
 */
#include "protocol.h"

#include "protocol_cases.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- helpers ------------------------------------------------------------- */

static int parse_str(const char *s, size_t frames, const coil_proto_limits_t *lim,
                     coil_proto_request_t **req, coil_err_t *err)
{
    static const char blob[3] = {1, 2, 3};
    coil_err_clear(err);
    return coil_proto_parse_request(s, strlen(s), frames > 1 ? blob : NULL,
                                    frames > 1 ? sizeof blob : 0, frames, lim, req, err);
}

/* Parses s (one frame), expecting failure with code and msg containing what. */
static void expect_fail(const char *s, int code, const char *what)
{
    coil_proto_request_t *req = (coil_proto_request_t *)1;
    coil_err_t err;
    int rc = parse_str(s, 1, NULL, &req, &err);
    ck_assert_msg(rc == code, "%s: rc %s, want %s (%s)", s, coil_err_name(rc),
                  coil_err_name(code), err.msg);
    ck_assert_ptr_null(req);
    ck_assert_msg(strstr(err.msg, what), "%s: message '%s' lacks '%s'", s, err.msg, what);
}

static coil_proto_request_t *expect_ok(const char *s)
{
    coil_proto_request_t *req = NULL;
    coil_err_t err;
    int rc = parse_str(s, 1, NULL, &req, &err);
    ck_assert_msg(rc == 0, "%s: %s", s, err.msg);
    ck_assert_ptr_nonnull(req);
    return req;
}

/* --- the corpus ------------------------------------------------------------ */

START_TEST(test_corpus)
{
    json_t *cases = pc_load();
    size_t i, n_valid = 0, n_invalid = 0;
    json_t *c;
    bool seen[COIL_OP_COUNT_] = {false};

    ck_assert_msg(cases != NULL, "cannot read protocol/cases.json");
    json_array_foreach(cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        bool valid = json_is_true(json_object_get(c, "valid"));
        coil_err_t err;
        int rc;

        coil_err_clear(&err);
        rc = pc_parse(c, &err);
        if (valid) {
            const json_t *op = json_object_get(json_object_get(c, "json"), "op");
            ck_assert_msg(rc == 0, "%s: should be valid: %s", name, err.msg);
            seen[coil_proto_op_from_name(json_string_value(op))] = true;
            n_valid++;
        } else {
            const char *code = json_string_value(json_object_get(c, "code"));
            const char *field = json_string_value(json_object_get(c, "field"));
            ck_assert_msg(rc < 0, "%s: should be invalid", name);
            ck_assert_msg(strcmp(coil_err_name(rc), code) == 0, "%s: %s, want %s (%s)", name,
                          coil_err_name(rc), code, err.msg);
            ck_assert_msg(strstr(err.msg, field), "%s: message '%s' lacks '%s'", name, err.msg,
                          field);
            n_invalid++;
        }
    }
    for (int op = COIL_OP_NONE + 1; op < COIL_OP_COUNT_; op++)
        ck_assert_msg(seen[op], "no valid case for op %s", coil_proto_op_name(op));
    ck_assert_uint_ge(n_valid, 30);
    ck_assert_uint_ge(n_invalid, 100);
    json_decref(cases);
}
END_TEST

/* --- typed values ------------------------------------------------------------ */

START_TEST(test_op_names)
{
    for (int op = COIL_OP_NONE + 1; op < COIL_OP_COUNT_; op++)
        ck_assert_int_eq(coil_proto_op_from_name(coil_proto_op_name(op)), op);
    ck_assert_ptr_null(coil_proto_op_name(COIL_OP_NONE));
    ck_assert_ptr_null(coil_proto_op_name(COIL_OP_COUNT_));
    ck_assert_int_eq(coil_proto_op_from_name("nope"), COIL_OP_NONE);
    ck_assert_int_eq(coil_proto_op_from_name(NULL), COIL_OP_NONE);
}
END_TEST

START_TEST(test_generate_defaults_and_values)
{
    coil_proto_request_t *r =
        expect_ok("{\"v\":1,\"id\":\"g1\",\"op\":\"generate\",\"session\":\"00112233aabbccdd\"}");
    ck_assert_int_eq(r->op, COIL_OP_GENERATE);
    ck_assert_str_eq(json_string_value(r->id), "g1");
    ck_assert_str_eq(r->session, "00112233aabbccdd");
    ck_assert_ptr_null(r->doc);
    ck_assert_ptr_null(r->prompt);
    ck_assert_int_eq(r->n, 32);
    ck_assert_double_eq(r->temperature, 0.8);
    ck_assert_double_eq(r->top_p, 0.95);
    ck_assert_int_eq(r->seed, 0);
    ck_assert(!r->append);
    ck_assert(r->stream);
    ck_assert_ptr_null(r->blob);
    coil_proto_request_free(&r);
    ck_assert_ptr_null(r);
    coil_proto_request_free(&r); /* NULL-safe */
    coil_proto_request_free(NULL);

    r = expect_ok("{\"v\":1,\"id\":7,\"op\":\"generate\",\"doc\":\"d\",\"prompt\":\"h\\u00e9\","
                  "\"n\":5,\"temperature\":0,\"top_p\":0.5,\"seed\":9007199254740993,"
                  "\"append\":true,\"stream\":false}");
    ck_assert_int_eq(json_integer_value(r->id), 7);
    ck_assert_str_eq(r->doc, "d");
    ck_assert_str_eq(r->prompt, "h\xc3\xa9");
    ck_assert_uint_eq(r->prompt_len, 3);
    ck_assert_int_eq(r->n, 5);
    ck_assert_double_eq(r->temperature, 0.0);
    ck_assert_double_eq(r->top_p, 0.5);
    ck_assert_int_eq(r->seed, 9007199254740993LL); /* exact beyond 2^53 */
    ck_assert(r->append);
    ck_assert(!r->stream);
    coil_proto_request_free(&r);
}
END_TEST

START_TEST(test_ingest_values)
{
    coil_proto_request_t *r =
        expect_ok("{\"v\":1,\"id\":1,\"op\":\"ingest\",\"name\":\"b\",\"text\":\"abc\"}");
    ck_assert_str_eq(r->name, "b");
    ck_assert_str_eq(r->text, "abc");
    ck_assert_uint_eq(r->text_len, 3);
    ck_assert_int_eq(r->part, -1);
    ck_assert(r->last);
    ck_assert(!r->replace);
    ck_assert_int_eq(r->chunk, 0);
    coil_proto_request_free(&r);

    r = expect_ok("{\"v\":1,\"id\":1,\"op\":\"ingest\",\"name\":\"b\",\"text\":\"\",\"part\":2,"
                  "\"last\":false,\"replace\":true,\"chunk\":64}");
    ck_assert_int_eq(r->part, 2);
    ck_assert(!r->last);
    ck_assert(r->replace);
    ck_assert_int_eq(r->chunk, 64);
    ck_assert_uint_eq(r->text_len, 0);
    coil_proto_request_free(&r);

    r = expect_ok("{\"v\":1,\"id\":1,\"op\":\"search\",\"query\":\"q\"}");
    ck_assert_int_eq(r->limit, 20);
    coil_proto_request_free(&r);
    r = expect_ok("{\"v\":1,\"id\":1,\"op\":\"session.fork\",\"session\":\"0123456789abcdef\"}");
    ck_assert_int_eq(r->at, -1);
    coil_proto_request_free(&r);
    r = expect_ok("{\"v\":1,\"id\":1,\"op\":\"session.new\",\"doc\":\"d\",\"at\":1e3}");
    ck_assert_int_eq(r->at, 1000);
    coil_proto_request_free(&r);
}
END_TEST

START_TEST(test_frames_and_blob)
{
    static const char blob[5] = "STATE";
    const char *imp = "{\"v\":1,\"id\":1,\"op\":\"state.import\",\"name\":\"f\"}";
    coil_proto_request_t *r = NULL;
    coil_err_t err;

    ck_assert_int_eq(coil_proto_parse_request(imp, strlen(imp), blob, sizeof blob, 2, NULL, &r,
                                              &err),
                     0);
    ck_assert_ptr_eq(r->blob, blob); /* borrowed, not copied */
    ck_assert_uint_eq(r->blob_len, sizeof blob);
    ck_assert_int_eq(r->op, COIL_OP_STATE_IMPORT);
    coil_proto_request_free(&r);

    /* an empty blob, no blob, too many frames, zero frames */
    ck_assert_int_eq(coil_proto_parse_request(imp, strlen(imp), blob, 0, 2, NULL, &r, &err),
                     COIL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err.msg, "frame 1"));
    ck_assert_int_eq(parse_str(imp, 1, NULL, &r, &err), COIL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err.msg, "frame 1"));
    ck_assert_int_eq(parse_str(imp, 3, NULL, &r, &err), COIL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err.msg, "frames"));
    ck_assert_int_eq(parse_str(imp, 0, NULL, &r, &err), COIL_EPROTO);
    ck_assert_int_eq(parse_str("{\"v\":1,\"id\":1,\"op\":\"health\"}", 2, NULL, &r, &err),
                     COIL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err.msg, "binary frame not allowed"));
    ck_assert_ptr_null(r);

    /* programmer errors */
    ck_assert_int_eq(coil_proto_parse_request(imp, strlen(imp), NULL, 4, 2, NULL, &r, &err),
                     COIL_EINVAL);
    ck_assert_int_eq(coil_proto_parse_request(imp, strlen(imp), blob, 4, 1, NULL, &r, &err),
                     COIL_EINVAL);
    ck_assert_int_eq(coil_proto_parse_request(imp, strlen(imp), NULL, 0, 1, NULL, NULL, &err),
                     COIL_EINVAL);
    ck_assert_int_eq(coil_proto_parse_request(NULL, 0, NULL, 0, 1, NULL, &r, &err), COIL_EPROTO);
}
END_TEST

START_TEST(test_not_nul_terminated)
{
    /* frame 0 is a length, not a C string: bytes after len are ignored */
    const char buf[] = "{\"v\":1,\"id\":1,\"op\":\"health\"}GARBAGE";
    coil_proto_request_t *r = NULL;
    ck_assert_int_eq(coil_proto_parse_request(buf, sizeof buf - 1 - 7, NULL, 0, 1, NULL, &r, NULL),
                     0);
    coil_proto_request_free(&r);
    ck_assert_int_eq(coil_proto_parse_request(buf, sizeof buf - 1, NULL, 0, 1, NULL, &r, NULL),
                     COIL_EPROTO);
}
END_TEST

START_TEST(test_limits)
{
    coil_proto_limits_t lim;
    coil_proto_request_t *r = NULL;
    coil_err_t err;
    char msg[512];
    char text[201];

    coil_proto_limits_default(&lim);
    ck_assert_uint_eq(lim.max_message_bytes, 64u << 20);
    lim.max_message_bytes = 300;
    lim.max_text_bytes = 100;
    lim.max_document_bytes = 150;
    memset(text, 'x', 200);
    text[200] = '\0';

    /* the whole message */
    snprintf(msg, sizeof msg, "{\"v\":1,\"id\":1,\"op\":\"ingest\",\"name\":\"d\",\"text\":\"%s%s\"}",
             text, text);
    ck_assert_int_eq(parse_str(msg, 1, &lim, &r, &err), COIL_ETOOBIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "limit 300"));
    /* the blob counts too */
    {
        static char big[290];
        const char *imp = "{\"v\":1,\"id\":1,\"op\":\"state.import\",\"name\":\"f\"}";
        ck_assert_int_eq(coil_proto_parse_request(imp, strlen(imp), big, sizeof big, 2, &lim, &r,
                                                  &err),
                         COIL_ETOOBIG);
    }
    /* a document text */
    text[151] = '\0';
    snprintf(msg, sizeof msg, "{\"v\":1,\"id\":1,\"op\":\"ingest\",\"name\":\"d\",\"text\":\"%s\"}",
             text);
    ck_assert_int_eq(parse_str(msg, 1, &lim, &r, &err), COIL_ETOOBIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'text'"));
    text[150] = '\0';
    snprintf(msg, sizeof msg, "{\"v\":1,\"id\":1,\"op\":\"ingest\",\"name\":\"d\",\"text\":\"%s\"}",
             text);
    ck_assert_int_eq(parse_str(msg, 1, &lim, &r, &err), 0);
    coil_proto_request_free(&r);
    /* prompt, score and session texts */
    text[101] = '\0';
    snprintf(msg, sizeof msg, "{\"v\":1,\"id\":1,\"op\":\"generate\",\"doc\":\"d\",\"prompt\":\"%s\"}",
             text);
    ck_assert_int_eq(parse_str(msg, 1, &lim, &r, &err), COIL_ETOOBIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'prompt'"));
    snprintf(msg, sizeof msg, "{\"v\":1,\"id\":1,\"op\":\"score\",\"doc\":\"d\",\"text\":\"%s\"}",
             text);
    ck_assert_int_eq(parse_str(msg, 1, &lim, &r, &err), COIL_ETOOBIG);
    snprintf(msg, sizeof msg,
             "{\"v\":1,\"id\":1,\"op\":\"session.append\",\"session\":\"0123456789abcdef\","
             "\"text\":\"%s\"}",
             text);
    ck_assert_int_eq(parse_str(msg, 1, &lim, &r, &err), COIL_ETOOBIG);
    text[100] = '\0';
    snprintf(msg, sizeof msg, "{\"v\":1,\"id\":1,\"op\":\"score\",\"doc\":\"d\",\"text\":\"%s\"}",
             text);
    ck_assert_int_eq(parse_str(msg, 1, &lim, &r, &err), 0);
    coil_proto_request_free(&r);
}
END_TEST

START_TEST(test_field_messages)
{
    /* the message names the op, the field and what was expected */
    expect_fail("{\"v\":1,\"id\":1,\"op\":\"generate\",\"doc\":\"d\",\"n\":5000}", COIL_EINVAL,
                "generate: field 'n': expected an integer in [1, 4096], got 5000");
    expect_fail("{\"v\":1,\"id\":1,\"op\":\"generate\",\"doc\":\"d\",\"top_p\":0}", COIL_EINVAL,
                "field 'top_p': expected a number in (0, 1], got 0");
    expect_fail("{\"v\":1,\"id\":1,\"op\":\"search\",\"query\":5}", COIL_EINVAL,
                "search: field 'query': expected a string, got an integer");
    expect_fail("{\"v\":1,\"id\":1,\"op\":\"ingest\",\"name\":\"d\",\"text\":\"t\",\"last\":1}",
                COIL_EINVAL, "field 'last': expected a boolean, got an integer");
    expect_fail("{\"v\":1,\"id\":1,\"op\":\"health\",\"x\":1}", COIL_EINVAL,
                "health: unknown field 'x'");
    expect_fail("{\"v\":1,\"id\":1,\"op\":\"doc.status\"}", COIL_EINVAL,
                "doc.status: missing required field 'name'");
    expect_fail("{\"v\":1,\"id\":1,\"op\":\"nope\"}", COIL_EPROTO, "unknown op 'nope'");
    expect_fail("[]", COIL_EPROTO, "expected a JSON object, got an array");
    expect_fail("{\"v\":1,\"id\":1,\"op\":\"generate\",\"doc\":\"d\",\"temperature\":1e400}",
                COIL_EPROTO, "not JSON");
}
END_TEST

START_TEST(test_recover_id)
{
    const char *bad_v = "{\"v\":2,\"id\":\"abc\",\"op\":\"health\"}";
    const char *bad_field = "{\"v\":1,\"id\":17,\"op\":\"generate\"}";
    json_t *id;

    id = coil_proto_recover_id(bad_v, strlen(bad_v), 0);
    ck_assert_str_eq(json_string_value(id), "abc");
    json_decref(id);
    id = coil_proto_recover_id(bad_field, strlen(bad_field), 0);
    ck_assert_int_eq(json_integer_value(id), 17);
    json_decref(id);
    ck_assert_ptr_null(coil_proto_recover_id(bad_field, strlen(bad_field), 10)); /* too big */
    ck_assert_ptr_null(coil_proto_recover_id("{\"id\":", 6, 0));
    ck_assert_ptr_null(coil_proto_recover_id("{\"id\":null}", 11, 0));
    ck_assert_ptr_null(coil_proto_recover_id("{\"id\":\"\"}", 9, 0));
    ck_assert_ptr_null(coil_proto_recover_id("[1]", 3, 0));
    ck_assert_ptr_null(coil_proto_recover_id(NULL, 0, 0));
}
END_TEST

/* --- fuzz ------------------------------------------------------------------------ */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static json_t *random_json(int depth)
{
    static const char *const keys[] = {"v", "id", "op", "name", "text", "doc", "session",
                                       "part", "last", "n", "at", "top_p", "x"};
    static const char *const strs[] = {"generate", "ingest", "0123456789abcdef", "", "\xc3\xa9",
                                       "health", "state.import", "score", "d"};
    switch (rnd() % (depth > 3 ? 6 : 8)) {
    case 0: return json_integer((json_int_t)(rnd() % 5) - 1);
    case 1: return json_integer((json_int_t)rnd());
    case 2: return json_real((double)(int64_t)rnd() / 1e3);
    case 3: return json_string(strs[rnd() % (sizeof strs / sizeof strs[0])]);
    case 4: return json_boolean(rnd() & 1);
    case 5: return json_null();
    case 6: {
        json_t *a = json_array();
        for (int i = (int)(rnd() % 4); i > 0; i--)
            json_array_append_new(a, random_json(depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (int i = (int)(rnd() % 7); i > 0; i--)
            json_object_set_new(o, keys[rnd() % (sizeof keys / sizeof keys[0])],
                                random_json(depth + 1));
        return o;
    }
    }
}

START_TEST(test_fuzz)
{
    json_t *cases = pc_load();
    size_t n_cases, n_ok = 0;
    coil_proto_limits_t lim;

    ck_assert_ptr_nonnull(cases);
    n_cases = json_array_size(cases);
    coil_proto_limits_default(&lim);
    lim.max_text_bytes = 64; /* make the size checks reachable too */
    rng_state = 0x9E3779B97F4A7C15ull;
    for (int it = 0; it < 1000; it++) {
        const json_t *c = json_array_get(cases, rnd() % n_cases);
        const json_t *raw = json_object_get(c, "raw");
        char *text;
        size_t len, frames = 1 + (rnd() % 8 == 0);
        coil_proto_request_t *req = NULL;
        coil_err_t err;
        int rc;

        if (it % 4 == 3) {
            json_t *j = random_json(0);
            if (rnd() & 1) { /* mostly well-formed envelopes around random fields */
                json_object_set_new(j, "v", json_integer(1));
                json_object_set_new(j, "id", json_integer(it));
            }
            text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
            json_decref(j);
        } else {
            text = raw ? strdup(json_string_value(raw))
                       : json_dumps(json_object_get(c, "json"), JSON_COMPACT);
        }
        ck_assert_ptr_nonnull(text);
        len = strlen(text);
        switch (it % 4) {
        case 0: /* truncate */
            len = len ? rnd() % len : 0;
            break;
        case 1: /* flip bytes */
            for (int k = 1 + (int)(rnd() % 4); k > 0 && len; k--)
                text[rnd() % len] ^= (char)(1u << (rnd() % 8));
            break;
        case 2: /* overwrite with random bytes */
            for (int k = 1 + (int)(rnd() % 3); k > 0 && len; k--)
                text[rnd() % len] = (char)(rnd() & 0xFF);
            break;
        default:
            break;
        }
        coil_err_clear(&err);
        rc = coil_proto_parse_request(text, len, frames > 1 ? "ab" : NULL, frames > 1 ? 2 : 0,
                                      frames, &lim, &req, &err);
        if (rc == 0) {
            ck_assert_ptr_nonnull(req);
            ck_assert_ptr_nonnull(coil_proto_op_name(req->op));
            ck_assert_ptr_nonnull(req->id);
            n_ok++;
        } else {
            ck_assert_ptr_null(req);
            ck_assert_msg(rc == COIL_EPROTO || rc == COIL_EINVAL || rc == COIL_ETOOBIG,
                          "unexpected %s: %s", coil_err_name(rc), err.msg);
            ck_assert_msg(err.code == rc && err.msg[0], "no message for %s", coil_err_name(rc));
        }
        coil_proto_request_free(&req);
        free(text);
    }
    ck_assert_uint_gt(n_ok, 0); /* some mutations survive (e.g. ids, texts) */
    json_decref(cases);
}
END_TEST

/* --- builders ---------------------------------------------------------------------- */

/* Checks a builder's output and frees it. */
static void expect_out(int rc, char *out, size_t len, const char *want)
{
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out, want);
    ck_assert_uint_eq(len, strlen(want));
    free(out);
}

/* call (a builder writing out and len), then its output must equal want. */
#define EXPECT_OUT(call, want)                                                                   \
    do {                                                                                         \
        int rc_ = (call);                                                                        \
        expect_out(rc_, out, len, want);                                                         \
    } while (0)

START_TEST(test_replies)
{
    json_t *sid = json_string("req-1"), *iid = json_integer(-3), *res;
    char *out;
    size_t len;
    coil_err_t err;
    int rc;

    res = json_pack("{s:i, s:[{s:i, s:f}]}", "logprob", 0, "tokens", "id", 7, "logprob", -1.5);
    rc = coil_proto_reply_ok(sid, &res, &out, &len, &err);
    ck_assert_ptr_null(res); /* consumed */
    expect_out(rc, out, len,
               "{\"v\":1,\"id\":\"req-1\",\"ok\":true,\"result\":{\"logprob\":0,\"tokens\":"
               "[{\"id\":7,\"logprob\":-1.5}]}}");
    rc = coil_proto_reply_ok(iid, NULL, &out, &len, &err);
    expect_out(rc, out, len, "{\"v\":1,\"id\":-3,\"ok\":true,\"result\":{}}");

    res = json_pack("{s:s}", "text", "h\xc3\xa9");
    rc = coil_proto_reply_partial(sid, &res, &out, &len, &err);
    expect_out(rc, out, len,
               "{\"v\":1,\"id\":\"req-1\",\"partial\":true,\"result\":{\"text\":\"h\xc3\xa9\"}}");

    rc = coil_proto_reply_error(sid, COIL_ENOTFOUND, "no document 'x'", &out, &len, &err);
    expect_out(rc, out, len,
               "{\"v\":1,\"id\":\"req-1\",\"ok\":false,\"error\":{\"code\":\"COIL_ENOTFOUND\","
               "\"message\":\"no document 'x'\"}}");
    rc = coil_proto_reply_error(NULL, COIL_EPROTO, NULL, &out, &len, &err);
    expect_out(rc, out, len,
               "{\"v\":1,\"id\":null,\"ok\":false,\"error\":{\"code\":\"COIL_EPROTO\","
               "\"message\":\"protocol error\"}}");
    /* invalid UTF-8 and a control character in a message */
    rc = coil_proto_reply_error(iid, COIL_EIO, "bad \xff\xc3 \"q\"\n", &out, &len, &err);
    expect_out(rc, out, len,
               "{\"v\":1,\"id\":-3,\"ok\":false,\"error\":{\"code\":\"COIL_EIO\",\"message\":"
               "\"bad \xef\xbf\xbd\xef\xbf\xbd \\\"q\\\"\\n\"}}");

    /* misuse: not an object, no id, bad code; the result is consumed anyway */
    res = json_array();
    ck_assert_int_eq(coil_proto_reply_ok(sid, &res, &out, &len, &err), COIL_EINVAL);
    ck_assert_ptr_null(res);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(coil_proto_reply_ok(NULL, NULL, &out, &len, &err), COIL_EINVAL);
    ck_assert_int_eq(coil_proto_reply_error(sid, 0, "x", &out, &len, &err), COIL_EINVAL);
    ck_assert_int_eq(coil_proto_reply_error(sid, -999, "x", &out, &len, &err), COIL_EINVAL);
    {
        json_t *bad = json_real(0.5);
        ck_assert_int_eq(coil_proto_reply_error(bad, COIL_EIO, "x", &out, &len, &err),
                         COIL_EINVAL);
        json_decref(bad);
    }
    json_decref(sid);
    json_decref(iid);
}
END_TEST

START_TEST(test_events)
{
    char *out;
    size_t len;
    coil_err_t err;
    json_t *b;

    EXPECT_OUT(coil_proto_event_ingest_progress("book", 1000, 4096, -1, 250.5, &out, &len, &err),
               "{\"doc\":\"book\",\"tokens\":1000,\"bytes\":4096,\"total_bytes\":null,"
               "\"tokens_per_s\":250.5}");
    EXPECT_OUT(coil_proto_event_ingest_progress("book", 0, 0, 10, 0, &out, &len, &err),
               "{\"doc\":\"book\",\"tokens\":0,\"bytes\":0,\"total_bytes\":10,"
               "\"tokens_per_s\":0.0}");
    EXPECT_OUT(coil_proto_event_doc_complete("book", 7, 8, 1.25, &out, &len, &err),
               "{\"doc\":\"book\",\"tokens\":7,\"bytes\":8,\"seconds\":1.25}");
    EXPECT_OUT(coil_proto_event_doc_failed("book", COIL_EFULL, "disk full", &out, &len, &err),
               "{\"doc\":\"book\",\"error\":{\"code\":\"COIL_EFULL\",\"message\":\"disk full\"}}");
    EXPECT_OUT(coil_proto_event_worker(COIL_TOPIC_WORKER_UP, "w0", 1234, NULL, &out, &len, &err), "{\"worker\":\"w0\",\"pid\":1234,\"reason\":null}");
    EXPECT_OUT(coil_proto_event_worker(COIL_TOPIC_WORKER_DOWN, "w0", 1234, "killed by signal 9",
                                       &out, &len, &err), "{\"worker\":\"w0\",\"pid\":1234,\"reason\":\"killed by signal 9\"}");
    b = json_pack("{s:s}", "doc", "x");
    EXPECT_OUT(coil_proto_event(COIL_TOPIC_DOC_COMPLETE, &b, &out, &len, &err),
               "{\"doc\":\"x\"}");
    ck_assert_ptr_null(b);

    b = json_object();
    ck_assert_int_eq(coil_proto_event("doc.exploded", &b, &out, &len, &err), COIL_EINVAL);
    ck_assert_ptr_null(b);
    ck_assert_int_eq(coil_proto_event_worker("doc.complete", "w", 1, NULL, &out, &len, &err),
                     COIL_EINVAL);
    ck_assert_int_eq(coil_proto_event_doc_failed("d", 3, "x", &out, &len, &err), COIL_EINVAL);
}
END_TEST

START_TEST(test_request_build)
{
    json_t *id = json_string("c-1"), *f;
    coil_proto_request_t *r = NULL;
    char *out;
    size_t len;
    coil_err_t err;

    f = json_pack("{s:s, s:i, s:f, s:b}", "doc", "book", "n", 3, "temperature", 0.5, "stream", 0);
    ck_assert_int_eq(coil_proto_request_build(COIL_OP_GENERATE, id, &f, &out, &len, &err), 0);
    ck_assert_ptr_null(f);
    ck_assert_str_eq(out, "{\"v\":1,\"id\":\"c-1\",\"op\":\"generate\",\"doc\":\"book\",\"n\":3,"
                          "\"temperature\":0.5,\"stream\":false}");
    ck_assert_int_eq(coil_proto_parse_request(out, len, NULL, 0, 1, NULL, &r, &err), 0);
    ck_assert_int_eq(r->n, 3);
    ck_assert(!r->stream);
    coil_proto_request_free(&r);
    free(out);

    ck_assert_int_eq(coil_proto_request_build(COIL_OP_HEALTH, id, NULL, &out, &len, &err), 0);
    ck_assert_str_eq(out, "{\"v\":1,\"id\":\"c-1\",\"op\":\"health\"}");
    free(out);
    f = json_pack("{s:s}", "name", "frozen");
    ck_assert_int_eq(coil_proto_request_build(COIL_OP_STATE_IMPORT, id, &f, &out, &len, &err), 0);
    free(out);

    /* what the server would refuse is refused here */
    f = json_pack("{s:s, s:s}", "doc", "book", "session", "0123456789abcdef");
    ck_assert_int_eq(coil_proto_request_build(COIL_OP_GENERATE, id, &f, &out, &len, &err),
                     COIL_EINVAL);
    ck_assert_ptr_null(f);
    ck_assert_ptr_null(out);
    f = json_pack("{s:i}", "v", 2);
    ck_assert_int_eq(coil_proto_request_build(COIL_OP_HEALTH, id, &f, &out, &len, &err),
                     COIL_EINVAL);
    ck_assert_int_eq(coil_proto_request_build(COIL_OP_HEALTH, NULL, NULL, &out, &len, &err),
                     COIL_EPROTO);
    ck_assert_int_eq(coil_proto_request_build(COIL_OP_NONE, id, NULL, &out, &len, &err),
                     COIL_EINVAL);
    f = json_array();
    ck_assert_int_eq(coil_proto_request_build(COIL_OP_HEALTH, id, &f, &out, &len, &err),
                     COIL_EINVAL);
    ck_assert_ptr_null(f);
    json_decref(id);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("protocol");
    TCase *tc = tcase_create("parse");
    TCase *tb = tcase_create("build");
    SRunner *sr;
    int failed;

    tcase_add_test(tc, test_corpus);
    tcase_add_test(tc, test_op_names);
    tcase_add_test(tc, test_generate_defaults_and_values);
    tcase_add_test(tc, test_ingest_values);
    tcase_add_test(tc, test_frames_and_blob);
    tcase_add_test(tc, test_not_nul_terminated);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_field_messages);
    tcase_add_test(tc, test_recover_id);
    tcase_add_test(tc, test_fuzz);
    tcase_add_test(tb, test_replies);
    tcase_add_test(tb, test_events);
    tcase_add_test(tb, test_request_build);
    suite_add_tcase(s, tc);
    suite_add_tcase(s, tb);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
