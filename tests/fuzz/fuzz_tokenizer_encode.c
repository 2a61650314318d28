/* fuzz_tokenizer_encode.c -- encoding arbitrary bytes with a fixed tokenizer
 * (tests/data/tokenizer/tokenizer.json: byte-level BPE, NFC, added tokens).
 * The first byte of the input picks the piece sizes for the incremental
 * encoder; the rest is the text.  Properties: encode succeeds on any bytes
 * (or fails with a message, e.g. a pre-token over the length limit); every
 * id is in the vocabulary; the incremental encoder, fed in pieces whose
 * boundaries fall anywhere (inside UTF-8 sequences, added tokens), gives
 * exactly the one-shot ids and commits every byte; decoding the ids gives
 * valid UTF-8, and the text itself back when the input is NFC-stable ASCII. */
#include "fuzz.h"
#include "tokenizer.h"

#include <string.h>

static coil_tokenizer_t *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer/tokenizer.json", fuzz_test_data());
    coil_err_t err = {0};
    if (!(tok = coil_tokenizer_load(path, &err))) {
        fprintf(stderr, "fuzz_tokenizer_encode: %s\n", err.msg);
        abort();
    }
    return 0;
}

static int append(int32_t **all, size_t *n_all, int32_t *got, size_t n_got)
{
    if (n_got) {
        int32_t *na = realloc(*all, (*n_all + n_got) * sizeof **all);
        if (!na)
            abort();
        *all = na;
        memcpy(na + *n_all, got, n_got * sizeof *got);
        *n_all += n_got;
    }
    free(got);
    return 0;
}

static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n)
            return 0;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
        i += k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok)
        LLVMFuzzerInitialize(NULL, NULL);
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    int32_t *ids = NULL;
    size_t n = 0;
    coil_err_t err = {0};
    int rc = coil_tokenizer_encode(tok, text, len, &ids, &n, &err);
    if (rc != 0) {
        FUZZ_CHECK(err.msg[0] && ids == NULL && n == 0, "encode error %d", rc);
        return 0;
    }
    size_t vocab = coil_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] >= 0 && (size_t)ids[i] < vocab, "id %d outside the vocabulary", ids[i]);

    /* Incremental: piece sizes 1..16 cycling from a seed, or whole bytes. */
    coil_tokenizer_stream_t *s = coil_tokenizer_stream_new(tok, &err);
    FUZZ_CHECK(s, "stream_new: %s", err.msg);
    int32_t *all = NULL, *got = NULL;
    size_t n_all = 0, n_got = 0, off = 0;
    unsigned step = (mode & 15) + 1;
    while (off < len) {
        size_t k = (mode & 0x80) ? step : ((off * 7 + mode) % step) + 1;
        if (k > len - off)
            k = len - off;
        rc = coil_tokenizer_stream_feed(s, text + off, k, &got, &n_got, &err);
        FUZZ_CHECK(rc == 0, "feed failed where encode succeeded: %s", err.msg);
        append(&all, &n_all, got, n_got);
        off += k;
        FUZZ_CHECK(coil_tokenizer_stream_committed(s) + coil_tokenizer_stream_pending(s) == off,
                   "committed + pending != fed");
    }
    rc = coil_tokenizer_stream_finish(s, &got, &n_got, &err);
    FUZZ_CHECK(rc == 0, "finish failed where encode succeeded: %s", err.msg);
    append(&all, &n_all, got, n_got);
    FUZZ_CHECK(coil_tokenizer_stream_committed(s) == len, "committed %llu of %zu bytes",
               (unsigned long long)coil_tokenizer_stream_committed(s), len);
    FUZZ_CHECK(n_all == n && (n == 0 || memcmp(all, ids, n * sizeof *ids) == 0),
               "incremental (%zu ids) != one-shot (%zu ids), piece mode %u", n_all, n, mode);
    free(all);
    coil_tokenizer_stream_destroy(&s);

    char *out = NULL;
    size_t out_len = 0;
    rc = coil_tokenizer_decode(tok, ids, n, 0, &out, &out_len, &err);
    FUZZ_CHECK(rc == 0, "decode: %s", err.msg);
    FUZZ_CHECK(valid_utf8((const unsigned char *)out, out_len), "decode gave invalid UTF-8");
    /* Printable ASCII without '<' (no added token can match) is NFC-stable
     * and must round-trip exactly. */
    int plain = 1;
    for (size_t i = 0; i < len && plain; i++)
        plain = text[i] >= 0x20 && text[i] < 0x7f && text[i] != '<';
    if (plain)
        FUZZ_CHECK(out_len == len && memcmp(out, text, len) == 0, "decode(encode(x)) != x");
    free(out);
    free(ids);
    return 0;
}
