/* test_tokenizer.c -- parity of the tokenizer with Hugging Face `tokenizers`.
 *
 * Fixtures (tests/data/tokenizer, made by tests/tools/make_tokenizer_golden.py):
 * tokenizer.json, a small GPT-NeoX-style byte-level BPE, and golden.json with
 * the ids and decoded text `tokenizers` gives for each corpus case, plus
 * pipeline variants expressed as patches to tokenizer.json; neox/ holds the
 * same for a tokenizer in the GPT-NeoX-20B shape (50,277 ids, whitespace-run
 * merges up to 512 characters), with decode cases for its longest tokens.
 */
#include "tokenizer.h"

#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_tok_path[4096], g_golden_path[4096];
static char g_neox_path[4096], g_neox_golden_path[4096];

/* Sizes of the golden files, asserted exactly (README quotes them). */
#define BASE_CASES 184
#define BASE_VARIANTS 7
#define NEOX_CASES 111
#define NEOX_DECODE_CASES 9
#define NEOX_VARIANTS 1
#define NEOX_IDS 50277

static void setup_paths(void)
{
    const char *d = getenv("COIL_TEST_DATA");
    if (!d)
        d = "tests/data";
    snprintf(g_tok_path, sizeof g_tok_path, "%s/tokenizer/tokenizer.json", d);
    snprintf(g_golden_path, sizeof g_golden_path, "%s/tokenizer/golden.json", d);
    snprintf(g_neox_path, sizeof g_neox_path, "%s/tokenizer/neox/tokenizer.json", d);
    snprintf(g_neox_golden_path, sizeof g_neox_golden_path, "%s/tokenizer/neox/golden.json", d);
}

static json_t *load_json(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &e);
    ck_assert_msg(j != NULL, "%s: %s", path, e.text);
    return j;
}

static coil_tokenizer_t *load_tok_path(const char *path)
{
    coil_err_t err;
    coil_tokenizer_t *t = coil_tokenizer_load(path, &err);
    ck_assert_msg(t != NULL, "load: %s", err.msg);
    return t;
}

static coil_tokenizer_t *load_tok(void)
{
    return load_tok_path(g_tok_path);
}

/* ---- helpers ---------------------------------------------------------------- */

static size_t b64_decode(const char *in, uint8_t *out)
{
    static const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (; *in && *in != '='; in++) {
        const char *p = strchr(alpha, *in);
        ck_assert(p != NULL);
        acc = (acc << 6) | (uint32_t)(p - alpha);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return n;
}

/* Case text into a malloc'd buffer (raw bytes for the invalid-UTF-8 cases). */
static char *case_text(json_t *c, size_t *len)
{
    const char *b64 = json_string_value(json_object_get(c, "bytes_b64"));
    char *buf;
    if (b64) {
        buf = malloc(strlen(b64) + 1);
        *len = b64_decode(b64, (uint8_t *)buf);
        return buf;
    }
    json_t *t = json_object_get(c, "text");
    *len = json_string_length(t);
    buf = malloc(*len + 1);
    memcpy(buf, json_string_value(t), *len + 1);
    return buf;
}

static void assert_ids_eq(const char *what, const int32_t *got, size_t ng, json_t *want)
{
    size_t nw = json_array_size(want);
    size_t i = 0;
    while (i < ng && i < nw && got[i] == (int32_t)json_integer_value(json_array_get(want, i)))
        i++;
    ck_assert_msg(i == ng && i == nw,
                  "%s: ids differ at %zu (got %zu ids, want %zu; got %d want %d)", what, i, ng,
                  nw, i < ng ? got[i] : -1,
                  i < nw ? (int)json_integer_value(json_array_get(want, i)) : -1);
}

static int valid_complete_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t b = s[i];
        size_t need = b < 0x80 ? 1 : b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3
                      : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
        if (!need || i + need > n)
            return 0;
        for (size_t k = 1; k < need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += need;
    }
    return 1;
}

/* Writes j to a fresh temp file; returns its path in a static buffer. */
static const char *write_temp_json(json_t *j, char *path, size_t cap)
{
    snprintf(path, cap, "/tmp/coil_tok_test_XXXXXX");
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    ck_assert(f != NULL);
    ck_assert_int_eq(json_dumpf(j, f, 0), 0);
    fclose(f);
    return path;
}

static void apply_patch(json_t *root, json_t *patch)
{
    const char *key;
    json_t *v;
    json_object_foreach(patch, key, v) {
        json_t *model = json_object_get(root, "model");
        if (strcmp(key, "ignore_merges") == 0) {
            json_object_set(model, key, v);
        } else if (strcmp(key, "add_vocab") == 0) {
            ck_assert_int_eq(json_object_update(json_object_get(model, "vocab"), v), 0);
        } else if (strcmp(key, "reverse_first_merges") == 0) {
            json_t *merges = json_object_get(model, "merges");
            size_t n = (size_t)json_integer_value(v);
            ck_assert(n <= json_array_size(merges));
            for (size_t a = 0, b = n ? n - 1 : 0; a < b; a++, b--) {
                json_t *x = json_incref(json_array_get(merges, a));
                json_array_set(merges, a, json_array_get(merges, b));
                json_array_set_new(merges, b, x);
            }
        } else if (strcmp(key, "merges_as_arrays") == 0) {
            json_t *merges = json_object_get(json_object_get(root, "model"), "merges");
            size_t i;
            json_t *m;
            json_array_foreach(merges, i, m) {
                if (!json_is_string(m))
                    continue;
                const char *s = json_string_value(m), *sp = strchr(s, ' ');
                json_t *pair = json_pack("[s#s]", s, (int)(sp - s), sp + 1);
                json_array_set_new(merges, i, pair);
            }
        } else {
            json_object_set(root, key, v);
        }
    }
}

/* Loads a tokenizer.json with patch applied (NULL tokenizer + err on failure). */
static coil_tokenizer_t *load_patched_path(const char *tok_path, json_t *patch, coil_err_t *err)
{
    char path[64];
    json_t *root = load_json(tok_path);
    apply_patch(root, patch);
    write_temp_json(root, path, sizeof path);
    json_decref(root);
    coil_tokenizer_t *t = coil_tokenizer_load(path, err);
    unlink(path);
    return t;
}

static coil_tokenizer_t *load_patched(json_t *patch, coil_err_t *err)
{
    return load_patched_path(g_tok_path, patch, err);
}

/* Deterministic PRNG (splitmix64). */
static uint64_t g_rng;
static uint64_t rnd(void)
{
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A multi-MB document mixing all corpus cases, random byte slices of them
 * (which cut UTF-8 sequences and added tokens) and added tokens. */
static char *build_document_from(const char *golden, size_t target, size_t *len)
{
    json_t *g = load_json(golden), *cases = json_object_get(g, "cases");
    size_t nc = json_array_size(cases), n = 0, cap = target + 70000;
    char *doc = malloc(cap);
    static const char *extra[] = {"<|endoftext|>", "<|padding|>", "MAMBA", " <mask> ", "zork",
                                  "caf\xc3\xa9", "cafe\xcc\x81", "    ", "\n\n", "'s", " 'll"};
    g_rng = 42;
    while (n < target) {
        size_t tl;
        char *t = case_text(json_array_get(cases, rnd() % nc), &tl);
        size_t r = rnd() % 4;
        if (r == 0 && tl > 0) {
            size_t a = rnd() % tl, b = a + rnd() % (tl - a + 1);
            memcpy(doc + n, t + a, b - a);
            n += b - a;
        } else if (r == 1) {
            const char *e = extra[rnd() % (sizeof extra / sizeof *extra)];
            memcpy(doc + n, e, strlen(e));
            n += strlen(e);
        } else {
            memcpy(doc + n, t, tl);
            n += tl;
        }
        free(t);
    }
    json_decref(g);
    *len = n;
    return doc;
}

static char *build_document(size_t target, size_t *len)
{
    return build_document_from(g_golden_path, target, len);
}

/* Streams doc through tok with random piece sizes (1-byte pieces for the
 * first stretch) and checks the ids equal whole-document encoding, that
 * committed offsets are consistent, and that the held-back tail stays small. */
static void check_stream(const coil_tokenizer_t *tok, const char *doc, size_t len,
                         uint64_t seed, int check_prefixes)
{
    coil_err_t err;
    int32_t *whole = NULL, *ids = NULL;
    size_t nwhole = 0, nids;
    size_t got_cap = 1024, ngot = 0;
    int32_t *got = malloc(got_cap * sizeof *got);
    uint64_t last_committed = 0;
    size_t max_hold = 0;

    ck_assert_int_eq(coil_tokenizer_encode(tok, doc, len, &whole, &nwhole, &err), 0);
    coil_tokenizer_stream_t *s = coil_tokenizer_stream_new(tok, &err);
    ck_assert_ptr_nonnull(s);
    g_rng = seed;
    size_t pos = 0, checks = 0;
    while (pos < len) {
        size_t piece;
        if (pos < 20000)
            piece = 1;
        else if (rnd() % 8 == 0)
            piece = 1 + rnd() % 7;
        else
            piece = 1 + rnd() % 65536;
        if (piece > len - pos)
            piece = len - pos;
        ck_assert_int_eq(coil_tokenizer_stream_feed(s, doc + pos, piece, &ids, &nids, &err), 0);
        pos += piece;
        if (ngot + nids > got_cap) {
            while (ngot + nids > got_cap)
                got_cap *= 2;
            got = realloc(got, got_cap * sizeof *got);
        }
        if (nids)
            memcpy(got + ngot, ids, nids * sizeof *ids);
        ngot += nids;
        free(ids);
        uint64_t c = coil_tokenizer_stream_committed(s);
        ck_assert(c >= last_committed && c <= pos);
        ck_assert_uint_eq(coil_tokenizer_stream_pending(s), pos - c);
        last_committed = c;
        if (pos - c > piece && pos - c - piece > max_hold)
            max_hold = pos - c - piece;
        ck_assert_msg(ngot <= nwhole && (ngot == 0 || memcmp(got, whole, ngot * sizeof *got) == 0),
                      "stream ids diverge by input byte %zu", pos);
        if (check_prefixes && nids && checks < 25 && rnd() % 16 == 0) {
            /* the emitted ids are exactly the encoding of input [0, committed) */
            int32_t *pre = NULL;
            size_t npre = 0;
            checks++;
            ck_assert_int_eq(coil_tokenizer_encode(tok, doc, (size_t)c, &pre, &npre, &err), 0);
            ck_assert_msg(npre == ngot && memcmp(pre, got, npre * sizeof *pre) == 0,
                          "prefix [0,%llu) encodes differently", (unsigned long long)c);
            free(pre);
        }
    }
    ck_assert_int_eq(coil_tokenizer_stream_finish(s, &ids, &nids, &err), 0);
    if (nids) {
        got = realloc(got, (ngot + nids) * sizeof *got);
        memcpy(got + ngot, ids, nids * sizeof *ids);
        ngot += nids;
    }
    free(ids);
    ck_assert_uint_eq(coil_tokenizer_stream_committed(s), len);
    ck_assert_int_eq(coil_tokenizer_stream_feed(s, "x", 1, &ids, &nids, &err), COIL_ESTATE);
    ck_assert_uint_eq(ngot, nwhole);
    ck_assert(ngot == 0 || memcmp(got, whole, ngot * sizeof *got) == 0);
    if (check_prefixes)
        ck_assert_msg(max_hold < 8192, "stream held back %zu bytes", max_hold);
    coil_tokenizer_stream_destroy(&s);
    ck_assert_ptr_null(s);
    free(got);
    free(whole);
}

/* ---- tests --------------------------------------------------------------- */

static void assert_text_eq(const char *what, const char *got, size_t n, json_t *want)
{
    ck_assert_msg(n == json_string_length(want) && memcmp(got, json_string_value(want), n) == 0,
                  "%s differs: got %zu bytes \"%.200s\", want %zu", what, n, got,
                  json_string_length(want));
}

/* Every golden case: ids equal, decode (with and without specials) equal;
 * every decode case: decode equal, and the raw token lengths add up to the
 * decoded length (its tokens are whole characters). */
static void check_golden(const char *tok_path, const char *golden_path, size_t want_cases)
{
    coil_tokenizer_t *tok = load_tok_path(tok_path);
    json_t *g = load_json(golden_path), *cases = json_object_get(g, "cases"), *c;
    size_t i;
    coil_err_t err;
    ck_assert_uint_eq(json_array_size(cases), want_cases);
    json_array_foreach(cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        size_t len, n, tl;
        char *text = case_text(c, &len), *dec, what[160];
        int32_t *ids;
        ck_assert_int_eq(coil_tokenizer_encode(tok, text, len, &ids, &n, &err), 0);
        assert_ids_eq(name, ids, n, json_object_get(c, "ids"));
        ck_assert_int_eq(coil_tokenizer_decode(tok, ids, n, 0, &dec, &tl, &err), 0);
        snprintf(what, sizeof what, "%s: decode", name);
        assert_text_eq(what, dec, tl, json_object_get(c, "decoded"));
        free(dec);
        ck_assert_int_eq(coil_tokenizer_decode(tok, ids, n, 1, &dec, &tl, &err), 0);
        snprintf(what, sizeof what, "%s: decode(skip_special)", name);
        assert_text_eq(what, dec, tl, json_object_get(c, "decoded_skip"));
        free(dec);
        free(ids);
        free(text);
    }
    /* Decode-only cases: ids given, text wanted (the longest tokens). */
    json_t *dcases = json_object_get(g, "decode_cases");
    json_array_foreach(dcases, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *jids = json_object_get(c, "ids"), *id;
        size_t n = json_array_size(jids), k, tl, sum = 0;
        int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
        char *dec, what[160];
        json_array_foreach(jids, k, id) {
            ids[k] = (int32_t)json_integer_value(id);
            sum += coil_tokenizer_token_len(tok, ids[k]);
        }
        ck_assert_int_eq(coil_tokenizer_decode(tok, ids, n, 0, &dec, &tl, &err), 0);
        snprintf(what, sizeof what, "%s: decode", name);
        assert_text_eq(what, dec, tl, json_object_get(c, "decoded"));
        ck_assert_msg(sum == tl, "%s: token lengths sum to %zu, decoded %zu", name, sum, tl);
        free(dec);
        ck_assert_int_eq(coil_tokenizer_decode(tok, ids, n, 1, &dec, &tl, &err), 0);
        snprintf(what, sizeof what, "%s: decode(skip_special)", name);
        assert_text_eq(what, dec, tl, json_object_get(c, "decoded_skip"));
        free(dec);
        free(ids);
    }
    json_decref(g);
    coil_tokenizer_destroy(&tok);
    ck_assert_ptr_null(tok);
    coil_tokenizer_destroy(&tok); /* NULL-safe */
    coil_tokenizer_destroy(NULL);
}

START_TEST(test_golden_cases)
{
    check_golden(g_tok_path, g_golden_path, BASE_CASES);
}
END_TEST

START_TEST(test_neox_golden_cases)
{
    check_golden(g_neox_path, g_neox_golden_path, NEOX_CASES);
    json_t *g = load_json(g_neox_golden_path);
    ck_assert_uint_eq(json_array_size(json_object_get(g, "decode_cases")), NEOX_DECODE_CASES);
    json_decref(g);
}
END_TEST

/* Every variant: ids equal to `tokenizers` with the patch applied, the
 * stream agrees, and the golden script's "differ" cases really differ from
 * the unpatched pipeline (so a variant whose handling is lost fails). */
static void check_variants(const char *tok_path, const char *golden_path, size_t want_variants)
{
    json_t *g = load_json(golden_path), *vars = json_object_get(g, "variants"), *v;
    size_t i;
    coil_err_t err;
    coil_tokenizer_t *base = load_tok_path(tok_path);
    ck_assert_uint_eq(json_array_size(vars), want_variants);
    json_array_foreach(vars, i, v) {
        const char *vname = json_string_value(json_object_get(v, "name"));
        coil_tokenizer_t *tok = load_patched_path(tok_path, json_object_get(v, "patch"), &err);
        ck_assert_msg(tok != NULL, "variant %s: %s", vname, err.msg);
        json_t *cases = json_object_get(v, "cases"), *c, *differ = json_object_get(v, "differ");
        size_t k, n_differ = 0;
        ck_assert_msg(json_array_size(differ) > 0, "variant %s: no case differs from the base",
                      vname);
        json_array_foreach(cases, k, c) {
            char what[128];
            size_t len, n, nb, d;
            char *text = case_text(c, &len);
            int32_t *ids, *bids;
            const char *cname = json_string_value(json_object_get(c, "name"));
            snprintf(what, sizeof what, "%s/%s", vname, cname);
            ck_assert_int_eq(coil_tokenizer_encode(tok, text, len, &ids, &n, &err), 0);
            assert_ids_eq(what, ids, n, json_object_get(c, "ids"));
            json_t *dn;
            json_array_foreach(differ, d, dn) {
                if (strcmp(json_string_value(dn), cname) != 0)
                    continue;
                ck_assert_int_eq(coil_tokenizer_encode(base, text, len, &bids, &nb, &err), 0);
                ck_assert_msg(nb != n || memcmp(bids, ids, n * sizeof *ids) != 0,
                              "%s: same ids as the base pipeline", what);
                free(bids);
                n_differ++;
            }
            /* the incremental encoder agrees, post-processor included */
            check_stream(tok, text, len, 7 + k, 0);
            free(ids);
            free(text);
        }
        ck_assert_uint_eq(n_differ, json_array_size(differ));
        coil_tokenizer_destroy(&tok);
    }
    coil_tokenizer_destroy(&base);
    json_decref(g);
}

START_TEST(test_variants)
{
    check_variants(g_tok_path, g_golden_path, BASE_VARIANTS);
}
END_TEST

START_TEST(test_neox_variants)
{
    check_variants(g_neox_path, g_neox_golden_path, NEOX_VARIANTS);
}
END_TEST

/* The NeoX-20B shape: ids, specials and NeoX's added space tokens. */
START_TEST(test_neox_shape)
{
    coil_tokenizer_t *tok = load_tok_path(g_neox_path);
    char spaces[25];
    ck_assert_uint_eq(coil_tokenizer_vocab_size(tok), NEOX_IDS);
    ck_assert_int_eq(coil_tokenizer_token_id(tok, "<|endoftext|>"), 0);
    ck_assert_int_eq(coil_tokenizer_token_id(tok, "<|padding|>"), 1);
    for (int k = 24; k >= 2; k--) {
        memset(spaces, ' ', (size_t)k);
        spaces[k] = 0;
        ck_assert_int_eq(coil_tokenizer_token_id(tok, spaces), 50254 + 24 - k);
        ck_assert_uint_eq(coil_tokenizer_token_len(tok, 50254 + 24 - k), (size_t)k);
    }
    /* the merge of two 256-space runs: 512 "Ġ" (1,024 bytes) */
    char *g512 = malloc(1025);
    for (int k = 0; k < 512; k++)
        memcpy(g512 + 2 * k, "\xc4\xa0", 2);
    g512[1024] = 0;
    int32_t id = coil_tokenizer_token_id(tok, g512);
    ck_assert_int_ge(id, 2);
    ck_assert_uint_eq(coil_tokenizer_token_len(tok, id), 512);
    free(g512);
    /* streaming == whole on a document of NeoX cases (long whitespace runs) */
    size_t len;
    char *doc = build_document_from(g_neox_golden_path, 1u << 20, &len);
    check_stream(tok, doc, len, 4321, 0);
    free(doc);
    coil_tokenizer_destroy(&tok);
}
END_TEST

START_TEST(test_queries)
{
    coil_tokenizer_t *tok = load_tok();
    json_t *j = load_json(g_tok_path);
    size_t maxid = 0, i;
    json_t *a;
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(json_object_get(j, "model"), "vocab"), k, v)
        if ((size_t)json_integer_value(v) > maxid)
            maxid = (size_t)json_integer_value(v);
    json_array_foreach(json_object_get(j, "added_tokens"), i, a)
        if ((size_t)json_integer_value(json_object_get(a, "id")) > maxid)
            maxid = (size_t)json_integer_value(json_object_get(a, "id"));
    ck_assert_uint_eq(coil_tokenizer_vocab_size(tok), maxid + 1);
    ck_assert_int_eq(coil_tokenizer_token_id(tok, "<|endoftext|>"), 0);
    ck_assert_int_eq(coil_tokenizer_token_id(tok, "<|padding|>"), 1);
    ck_assert_int_eq(coil_tokenizer_token_id(tok, "<mask>"),
                     (int)json_integer_value(json_object_get(
                         json_array_get(json_object_get(j, "added_tokens"),
                                        json_array_size(json_object_get(j, "added_tokens")) - 1),
                         "id")));
    ck_assert_int_eq(coil_tokenizer_token_id(tok, "\xc4\xa0"), /* "Ġ" = byte ' ' */
                     (int)json_integer_value(json_object_get(
                         json_object_get(json_object_get(j, "model"), "vocab"), "\xc4\xa0")));
    ck_assert_int_eq(coil_tokenizer_token_id(tok, "no such token here"), -1);
    json_decref(j);
    coil_tokenizer_destroy(&tok);
}
END_TEST

START_TEST(test_stream_whole_equivalence)
{
    coil_tokenizer_t *tok = load_tok();
    size_t len;
    char *doc = build_document(3u << 20, &len);
    check_stream(tok, doc, len, 1234, 1);
    check_stream(tok, doc, len / 4, 99, 0);
    free(doc);
    coil_tokenizer_destroy(&tok);
}
END_TEST

START_TEST(test_stream_edges)
{
    coil_tokenizer_t *tok = load_tok();
    coil_err_t err;
    coil_tokenizer_stream_t *s = coil_tokenizer_stream_new(tok, &err);
    int32_t *ids, *whole;
    size_t n, nw;
    /* empty document */
    ck_assert_int_eq(coil_tokenizer_stream_finish(s, &ids, &n, &err), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(ids);
    ck_assert_int_eq(coil_tokenizer_stream_finish(s, &ids, &n, &err), COIL_ESTATE);
    coil_tokenizer_stream_destroy(&s);
    coil_tokenizer_stream_destroy(&s);
    /* an incomplete UTF-8 sequence at the very end becomes U+FFFD */
    static const char text[] = "word \xe6\x97";
    ck_assert_int_eq(coil_tokenizer_encode(tok, text, sizeof text - 1, &whole, &nw, &err), 0);
    s = coil_tokenizer_stream_new(tok, &err);
    int32_t all[64];
    size_t na = 0;
    for (size_t i = 0; i < sizeof text - 1; i++) {
        ck_assert_int_eq(coil_tokenizer_stream_feed(s, text + i, 1, &ids, &n, &err), 0);
        if (n)
            memcpy(all + na, ids, n * sizeof *ids);
        na += n;
        free(ids);
    }
    ck_assert_int_eq(coil_tokenizer_stream_finish(s, &ids, &n, &err), 0);
    if (n)
        memcpy(all + na, ids, n * sizeof *ids);
    na += n;
    free(ids);
    ck_assert_uint_eq(na, nw);
    ck_assert(memcmp(all, whole, na * sizeof *all) == 0);
    free(whole);
    coil_tokenizer_stream_destroy(&s);
    coil_tokenizer_destroy(&tok);
}
END_TEST

START_TEST(test_bytes_tokenizer)
{
    coil_err_t err;
    coil_tokenizer_t *tok = coil_tokenizer_new_bytes(&err);
    static const char text[] = "ab<|endoftext|>\xff\xc3\xa9<|endof";
    int32_t *ids;
    size_t n, tl;
    char *dec;
    ck_assert_ptr_nonnull(tok);
    ck_assert_uint_eq(coil_tokenizer_vocab_size(tok), 257);
    ck_assert_int_eq(coil_tokenizer_token_id(tok, "<|endoftext|>"), 256);
    ck_assert_int_eq(coil_tokenizer_encode(tok, text, sizeof text - 1, &ids, &n, &err), 0);
    ck_assert_uint_eq(n, 2 + 1 + 3 + 7);
    ck_assert_int_eq(ids[0], 'a');
    ck_assert_int_eq(ids[2], 256);
    ck_assert_int_eq(ids[3], 0xff);
    ck_assert_int_eq(ids[4], 0xc3);
    ck_assert_int_eq(coil_tokenizer_decode(tok, ids, n, 0, &dec, &tl, &err), 0);
    ck_assert_str_eq(dec, "ab<|endoftext|>\xef\xbf\xbd\xc3\xa9<|endof");
    free(dec);
    ck_assert_int_eq(coil_tokenizer_decode(tok, ids, n, 1, &dec, &tl, &err), 0);
    ck_assert_str_eq(dec, "ab\xef\xbf\xbd\xc3\xa9<|endof");
    free(dec);
    free(ids);
    /* bytes round-trip: the token lengths cover the input exactly, decode
     * gives it back (valid UTF-8 as it is); streams agree */
    size_t len, sum = 0;
    char *doc = build_document(300000, &len);
    ck_assert_int_eq(coil_tokenizer_encode(tok, doc, len, &ids, &n, &err), 0);
    for (size_t k = 0; k < n; k++)
        sum += coil_tokenizer_token_len(tok, ids[k]);
    ck_assert_uint_eq(sum, len);
    check_stream(tok, doc, len, 5, 1);
    free(ids);
    free(doc);
    json_t *g = load_json(g_golden_path), *c;
    size_t i;
    json_array_foreach(json_object_get(g, "cases"), i, c) {
        if (json_object_get(c, "bytes_b64"))
            continue; /* invalid UTF-8: decode repairs it */
        char *t = case_text(c, &len);
        ck_assert_int_eq(coil_tokenizer_encode(tok, t, len, &ids, &n, &err), 0);
        ck_assert_int_eq(coil_tokenizer_decode(tok, ids, n, 0, &dec, &tl, &err), 0);
        ck_assert_msg(tl == len && memcmp(dec, t, len) == 0, "byte round trip of %s",
                      json_string_value(json_object_get(c, "name")));
        free(dec);
        free(ids);
        free(t);
    }
    json_decref(g);
    coil_tokenizer_destroy(&tok);
}
END_TEST

START_TEST(test_detok)
{
    coil_tokenizer_t *tok = load_tok();
    json_t *g = load_json(g_golden_path), *cases = json_object_get(g, "cases"), *c;
    coil_err_t err;
    size_t i;
    json_array_foreach(cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        for (int skip = 0; skip < 2; skip++) {
            json_t *ids = json_object_get(c, "ids"), *want;
            coil_detok_t *d = coil_detok_new(tok, skip, &err);
            size_t k, cap = 4096, n = 0, bl;
            char *out = malloc(cap);
            const char *b;
            json_t *id;
            ck_assert_ptr_nonnull(d);
            json_array_foreach(ids, k, id) {
                ck_assert_int_eq(coil_detok_push(d, (int32_t)json_integer_value(id), &b, &bl, &err),
                                 0);
                ck_assert_msg(valid_complete_utf8((const uint8_t *)b, bl),
                              "%s: detok emitted a partial character", name);
                ck_assert(n + bl < cap);
                if (bl)
                    memcpy(out + n, b, bl);
                n += bl;
            }
            ck_assert_int_eq(coil_detok_flush(d, &b, &bl, &err), 0);
            if (bl)
                memcpy(out + n, b, bl);
            n += bl;
            want = json_object_get(c, skip ? "decoded_skip" : "decoded");
            ck_assert_msg(n == json_string_length(want) &&
                              memcmp(out, json_string_value(want), n) == 0,
                          "%s: streamed decode differs", name);
            free(out);
            coil_detok_destroy(&d);
            ck_assert_ptr_null(d);
        }
    }
    json_decref(g);
    /* a 4-byte emoji spread over byte tokens: nothing until it completes */
    coil_tokenizer_t *bt = coil_tokenizer_new_bytes(&err);
    coil_detok_t *d = coil_detok_new(bt, 0, &err);
    const char *b;
    size_t bl;
    static const uint8_t emoji[4] = {0xF0, 0x9F, 0x98, 0x80};
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(coil_detok_push(d, emoji[k], &b, &bl, &err), 0);
        ck_assert_uint_eq(bl, 0);
    }
    ck_assert_int_eq(coil_detok_push(d, emoji[3], &b, &bl, &err), 0);
    ck_assert_uint_eq(bl, 4);
    ck_assert(memcmp(b, emoji, 4) == 0);
    /* a truncated sequence is U+FFFD, once invalidated or at flush */
    ck_assert_int_eq(coil_detok_push(d, 0xE6, &b, &bl, &err), 0);
    ck_assert_uint_eq(bl, 0);
    ck_assert_int_eq(coil_detok_push(d, 'x', &b, &bl, &err), 0);
    ck_assert_uint_eq(bl, 4);
    ck_assert(memcmp(b, "\xef\xbf\xbdx", 4) == 0);
    ck_assert_int_eq(coil_detok_push(d, 0xE6, &b, &bl, &err), 0);
    ck_assert_int_eq(coil_detok_push(d, 99999, &b, &bl, &err), 0); /* unknown id: skipped */
    ck_assert_uint_eq(bl, 0);
    ck_assert_int_eq(coil_detok_flush(d, &b, &bl, &err), 0);
    ck_assert_uint_eq(bl, 3);
    coil_detok_destroy(&d);
    coil_detok_destroy(&d);
    coil_tokenizer_destroy(&bt);
    coil_tokenizer_destroy(&tok);
}
END_TEST

/* Loads tokenizer.json patched with one JSON snippet and expects failure. */
static void expect_load_error(const char *patch_json, int code, const char *needle)
{
    json_error_t je;
    coil_err_t err;
    json_t *patch = json_loads(patch_json, 0, &je);
    ck_assert_msg(patch != NULL, "bad test patch: %s", je.text);
    coil_err_clear(&err);
    coil_tokenizer_t *t = load_patched(patch, &err);
    json_decref(patch);
    ck_assert_msg(t == NULL, "patch %s loaded", patch_json);
    ck_assert_msg(err.code == code, "patch %s: code %s, want %s (%s)", patch_json,
                  coil_err_name(err.code), coil_err_name(code), err.msg);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "message \"%s\" lacks \"%s\"", err.msg, needle);
}

START_TEST(test_errors)
{
    coil_err_t err;
    char path[64];
    coil_tokenizer_t *t = coil_tokenizer_load("/nonexistent/dir/tokenizer.json", &err);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(err.code, COIL_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/dir/tokenizer.json"));

    snprintf(path, sizeof path, "/tmp/coil_tok_test_XXXXXX");
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    ck_assert(write(fd, "{\"model\": {\"type\": \"BPE\",,}}", 28) == 28);
    close(fd);
    t = coil_tokenizer_load(path, &err);
    unlink(path);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(err.code, COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "malformed JSON"));
    ck_assert_ptr_nonnull(strstr(err.msg, path));

    expect_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", COIL_EUNSUPPORTED,
                      "WordPiece");
    expect_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", COIL_EUNSUPPORTED,
                      "Unigram");
    expect_load_error("{\"normalizer\": {\"type\": \"NFKC\"}}", COIL_EUNSUPPORTED, "NFKC");
    expect_load_error("{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": "
                      "[{\"type\": \"NFC\"}, {\"type\": \"Lowercase\"}]}}",
                      COIL_EUNSUPPORTED, "Lowercase");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Metaspace\"}}", COIL_EUNSUPPORTED,
                      "Metaspace");
    expect_load_error("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                      "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}{1,3}\"}, "
                      "\"behavior\": \"Isolated\", \"invert\": false}, "
                      "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                      "\"use_regex\": false}]}}",
                      COIL_EUNSUPPORTED, "Split pattern");
    expect_load_error("{\"decoder\": {\"type\": \"WordPiece\"}}", COIL_EUNSUPPORTED, "decoder");
    expect_load_error("{\"post_processor\": {\"type\": \"RobertaProcessing\"}}",
                      COIL_EUNSUPPORTED, "RobertaProcessing");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], "
                      "\"continuing_subword_prefix\": \"##\"}}",
                      COIL_EUNSUPPORTED, "continuing_subword_prefix");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], "
                      "\"byte_fallback\": true}}",
                      COIL_EUNSUPPORTED, "byte_fallback");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
                      "\"merges\": [\"a b\"]}}",
                      COIL_EFORMAT, "merge 0");
    /* ids: a documented maximum, named in the error */
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 2097152}, "
                      "\"merges\": []}}",
                      COIL_EFORMAT, "COIL_TOKENIZER_MAX_ID");
    expect_load_error("{\"added_tokens\": [{\"id\": -1, \"content\": \"x\"}]}",
                      COIL_EFORMAT, "added_tokens[0] needs id and content");
    expect_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
                      "\"merges\": [\"a a a\"]}}",
                      COIL_EFORMAT, "is not \"a b\"");
}
END_TEST

/* Tokens, merges and added tokens of any length, in both merge forms: "a"
 * runs of 2^k made by merging two 2^(k-1) runs up to 8192 (16 KiB merged),
 * and a 10,000-character added token (expected ids from `tokenizers`). */
START_TEST(test_long_tokens)
{
    for (int arrays = 0; arrays < 2; arrays++) {
        json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
        char *run = malloc(10001);
        memset(run, 'a', 8192);
        json_object_set_new(vocab, "a", json_integer(0));
        json_object_set_new(vocab, "b", json_integer(1));
        for (int k = 1; k <= 13; k++) {
            size_t h = (size_t)1 << (k - 1);
            run[2 * h] = 0; /* the 2^k run */
            json_object_set_new(vocab, run, json_integer(k + 1));
            run[2 * h] = 'a';
            if (arrays) {
                json_array_append_new(merges, json_pack("[s#s#]", run, (int)h, run, (int)h));
            } else {
                char *m = malloc(2 * h + 2);
                memcpy(m, run, h);
                m[h] = ' ';
                memcpy(m + h + 1, run, h);
                m[2 * h + 1] = 0;
                json_array_append_new(merges, json_string(m));
                free(m);
            }
        }
        memset(run, 'b', 10000);
        run[10000] = 0;
        json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b}", "id", 15, "content", run,
                                               "special", 0, "normalized", 0));
        json_t *root = json_pack(
            "{s:o, s:{s:s, s:b, s:b}, s:{s:s}, s:{s:s, s:o, s:o}}", "added_tokens", added,
            "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0, "use_regex", 1,
            "decoder", "type", "ByteLevel", "model", "type", "BPE", "vocab", vocab, "merges",
            merges);
        char path[64];
        coil_err_t err;
        write_temp_json(root, path, sizeof path);
        json_decref(root);
        coil_tokenizer_t *tok = coil_tokenizer_load(path, &err);
        unlink(path);
        ck_assert_msg(tok != NULL, "long tokens (%s merges): %s", arrays ? "array" : "string",
                      err.msg);
        static const struct {
            char ch;
            size_t n;
            int32_t ids[3];
            size_t nids;
        } cases[] = {{'a', 8192, {14}, 1}, {'a', 8193, {14, 0}, 2},
                     {'a', 12289, {14, 13, 0}, 3}, {'b', 10002, {15, 1, 1}, 3}};
        char *text = malloc(12289);
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
            int32_t *ids;
            size_t n, tl;
            char *dec;
            memset(text, cases[c].ch, cases[c].n);
            ck_assert_int_eq(coil_tokenizer_encode(tok, text, cases[c].n, &ids, &n, &err), 0);
            ck_assert_uint_eq(n, cases[c].nids);
            ck_assert(memcmp(ids, cases[c].ids, n * sizeof *ids) == 0);
            ck_assert_int_eq(coil_tokenizer_decode(tok, ids, n, 0, &dec, &tl, &err), 0);
            ck_assert_uint_eq(tl, cases[c].n);
            ck_assert(memcmp(dec, text, tl) == 0);
            free(dec);
            free(ids);
        }
        ck_assert_uint_eq(coil_tokenizer_token_len(tok, 14), 8192);
        ck_assert_uint_eq(coil_tokenizer_token_len(tok, 15), 10000);
        free(text);
        free(run);
        coil_tokenizer_destroy(&tok);
    }
}
END_TEST

/* A merge listed twice takes the rank of its last occurrence, as in
 * `tokenizers` ("a b","b c","a b": "abc" is a + bc; ids from `tokenizers`). */
START_TEST(test_duplicate_merges)
{
    static const char *lists[] = {"[\"a b\", \"b c\"]", "[\"a b\", \"b c\", \"a b\"]",
                                  "[\"b c\", \"a b\", \"b c\"]"};
    static const int32_t want[3][2] = {{3, 2}, {0, 4}, {3, 2}};
    for (int k = 0; k < 3; k++) {
        char js[512], path[64];
        json_error_t je;
        coil_err_t err;
        int32_t *ids;
        size_t n;
        snprintf(js, sizeof js,
                 "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false},"
                 " \"decoder\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\","
                 " \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, \"bc\": 4},"
                 " \"merges\": %s}}", lists[k]);
        json_t *root = json_loads(js, 0, &je);
        ck_assert_msg(root != NULL, "%s", je.text);
        write_temp_json(root, path, sizeof path);
        json_decref(root);
        coil_tokenizer_t *tok = coil_tokenizer_load(path, &err);
        unlink(path);
        ck_assert_msg(tok != NULL, "%s", err.msg);
        ck_assert_int_eq(coil_tokenizer_encode(tok, "abc", 3, &ids, &n, &err), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_msg(ids[0] == want[k][0] && ids[1] == want[k][1], "merges %s: got %d %d",
                      lists[k], ids[0], ids[1]);
        free(ids);
        coil_tokenizer_destroy(&tok);
    }
}
END_TEST

/* Added tokens take the ids `tokenizers` gives them, not the file's "id"
 * (files saved by `tokenizers` agree; these do not).  Vocab a 0, b 1, ab 2;
 * expected ids from `tokenizers` 0.23.3. */
START_TEST(test_added_ids)
{
#define TOK(id, c, extra) "{\"id\": " #id ", \"content\": \"" c "\", \"special\": true" extra "}"
    static const struct {
        const char *added, *text;
        int32_t ids[2];
        size_t vocab_size;
    } cases[] = {
        {TOK(10, "<x>", ""), "a<x>", {0, 3}, 4},                       /* a gap: next id */
        {TOK(7, "ab", ""), "ab", {2, -1}, 3},                          /* in the vocab */
        {TOK(5, "<y>", "") ", " TOK(3, "<x>", ""), "<x><y>", {4, 3}, 5}, /* in order */
        {TOK(3, "<x>", "") ", " TOK(4, "<x>", ", \"rstrip\": true"), "<x>  a", {3, 0}, 4},
        {TOK(1, "a", "") ", " TOK(9, "<x>", ""), "a<x>", {0, 3}, 4},   /* vocab id wins */
    };
#undef TOK
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        char js[1024], path[64];
        json_error_t je;
        coil_err_t err;
        int32_t *ids;
        size_t n;
        snprintf(js, sizeof js,
                 "{\"added_tokens\": [%s], \"pre_tokenizer\": {\"type\": \"ByteLevel\","
                 " \"add_prefix_space\": false}, \"decoder\": {\"type\": \"ByteLevel\"},"
                 " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2},"
                 " \"merges\": [\"a b\"]}}", cases[k].added);
        json_t *root = json_loads(js, 0, &je);
        ck_assert_msg(root != NULL, "%s", je.text);
        write_temp_json(root, path, sizeof path);
        json_decref(root);
        coil_tokenizer_t *tok = coil_tokenizer_load(path, &err);
        unlink(path);
        ck_assert_msg(tok != NULL, "%s", err.msg);
        ck_assert_int_eq(coil_tokenizer_encode(tok, cases[k].text, strlen(cases[k].text), &ids,
                                               &n, &err), 0);
        size_t want_n = cases[k].ids[1] < 0 ? 1 : 2;
        ck_assert_msg(n == want_n && ids[0] == cases[k].ids[0] &&
                          (want_n == 1 || ids[1] == cases[k].ids[1]),
                      "case %zu: got %zu ids (%d %d)", k, n, n ? ids[0] : -1,
                      n > 1 ? ids[1] : -1);
        ck_assert_uint_eq(coil_tokenizer_vocab_size(tok), cases[k].vocab_size);
        free(ids);
        if (k == 4) { /* id 1 is still the vocab's "b"; id 0 is the special "a" */
            char *dec;
            size_t tl;
            int32_t one = 1, zero = 0;
            ck_assert_int_eq(coil_tokenizer_decode(tok, &one, 1, 1, &dec, &tl, &err), 0);
            ck_assert_str_eq(dec, "b");
            free(dec);
            ck_assert_int_eq(coil_tokenizer_decode(tok, &zero, 1, 1, &dec, &tl, &err), 0);
            ck_assert_str_eq(dec, "");
            free(dec);
        }
        coil_tokenizer_destroy(&tok);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    setup_paths();
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_golden_cases);
    tcase_add_test(tc, test_variants);
    tcase_add_test(tc, test_neox_golden_cases);
    tcase_add_test(tc, test_neox_variants);
    tcase_add_test(tc, test_neox_shape);
    tcase_add_test(tc, test_queries);
    tcase_add_test(tc, test_stream_whole_equivalence);
    tcase_add_test(tc, test_stream_edges);
    tcase_add_test(tc, test_bytes_tokenizer);
    tcase_add_test(tc, test_detok);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_long_tokens);
    tcase_add_test(tc, test_duplicate_merges);
    tcase_add_test(tc, test_added_ids);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
