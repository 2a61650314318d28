/* fuzz_search.c -- query text into FTS5 (coil_store_search) on a small store.
 *
 * The store (built once per process) holds two documents of a few chunks.
 * Byte 0 of the input picks the limit and whether to search one document;
 * the rest, up to the first NUL, is the query.
 * Properties: a malformed query is COIL_EINVAL with a message (never a
 * crash or another code); every hit has its snippet's marks inside the
 * snippet, in order, and names a document that exists; at most `limit` hits. */
#include "fuzz.h"
#include "store.h"

#include <string.h>

static coil_store_t *store;

static const char *texts[2][3] = {
    {"It was the best of times, it was the worst of times, ",
     "it was the age of wisdom, it was the age of foolishness, caf\xc3\xa9 na\xc3\xafve ",
     "Stra\xc3\x9f" "e \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e emoji \xf0\x9f\x98\x80 AND OR NOT NEAR \"quoted\" prefix*"},
    {"The quick brown fox jumps over the lazy dog. ",
     "Pack my box with five dozen liquor jugs; 12345 3.14 x_y-z ",
     "column:value ^caret (paren) {brace} [bracket] + - * / ' "}};

static void build(void)
{
    char path[4096];
    fuzz_path(path, fuzz_scratch(), "search.db");
    coil_err_t err = {0};
    coil_store_options_t opt;
    coil_store_options_default(&opt);
    opt.synchronous = COIL_STORE_SYNC_NORMAL;
    int64_t model_id, doc_id;
    int resumed;
    if (!(store = coil_store_open(path, &opt, &err)) ||
        coil_store_model_ensure(store, 0x1234, "/model", NULL, &model_id, &err) != 0)
        goto fail;
    for (int d = 0; d < 2; d++) {
        if (coil_store_doc_begin(store, d ? "fox" : "tale", model_id, 1 + d, 4, 0, &doc_id, &resumed, &err) != 0)
            goto fail;
        int64_t tok = 0, byte = 0;
        coil_store_chunk_t ch[3];
        int32_t ids[4] = {1, 2, 3, 4};
        for (int i = 0; i < 3; i++) {
            size_t len = strlen(texts[d][i]);
            ch[i] = (coil_store_chunk_t){.seq = i, .token_start = tok, .token_end = tok + 4,
                                         .byte_start = byte, .byte_end = byte + (int64_t)len,
                                         .text = texts[d][i], .text_len = len, .tokens = ids};
            tok += 4;
            byte += (int64_t)len;
        }
        if (coil_store_commit_chunks(store, doc_id, ch, 3, NULL, &err) != 0 ||
            coil_store_doc_finish(store, doc_id, byte, tok, &err) != 0)
            goto fail;
    }
    return;
fail:
    fprintf(stderr, "fuzz_search: %s\n", err.msg);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    build();
    return 0;
}

typedef struct {
    int n;
} seen_t;

static int on_hit(const coil_store_hit_t *h, void *ud)
{
    seen_t *s = ud;
    s->n++;
    FUZZ_CHECK(h->doc_name && (!strcmp(h->doc_name, "tale") || !strcmp(h->doc_name, "fox")), "doc name");
    FUZZ_CHECK(h->seq >= 0 && h->seq < 3, "seq %lld", (long long)h->seq);
    FUZZ_CHECK(h->snippet, "no snippet");
    int64_t slen = (int64_t)strlen(h->snippet), prev = 0;
    for (size_t i = 0; i < h->n_marks; i++) {
        int64_t a = h->marks[2 * i], b = h->marks[2 * i + 1];
        FUZZ_CHECK(a >= prev && a <= b && b <= slen, "mark [%lld, %lld) in a %lld-byte snippet",
                   (long long)a, (long long)b, (long long)slen);
        prev = b;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!store)
        build();
    if (size < 1)
        return 0;
    int limit = (data[0] & 7) ? (data[0] & 7) : 0;
    const char *doc = (data[0] & 8) ? ((data[0] & 16) ? "fox" : "nosuchdoc") : NULL;
    const uint8_t *nul = memchr(data + 1, 0, size - 1);
    size_t qlen = nul ? (size_t)(nul - data - 1) : size - 1;
    char *q = malloc(qlen + 1);
    if (!q)
        abort();
    memcpy(q, data + 1, qlen);
    q[qlen] = '\0';
    seen_t s = {0};
    coil_err_t err = {0};
    int rc = coil_store_search(store, q, doc, limit, on_hit, &s, &err);
    if (rc != 0)
        FUZZ_CHECK((rc == COIL_EINVAL || rc == COIL_ENOTFOUND) && err.msg[0],
                   "query '%s': %d %s", q, rc, err.msg);
    FUZZ_CHECK(s.n <= (limit > 0 ? limit : 20), "%d hits over limit %d", s.n, limit);
    free(q);
    return 0;
}
