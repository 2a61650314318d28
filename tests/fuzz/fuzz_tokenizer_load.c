/* fuzz_tokenizer_load.c -- coil_tokenizer_load on arbitrary tokenizer.json.
 * Property: an error with a message, or a tokenizer that encodes a fixed
 * text, decodes the ids back without crashing, and whose incremental
 * encoder gives the same ids as the one-shot one. */
#include "fuzz.h"
#include "tokenizer.h"

#include <string.h>

static const char sample[] = "Hello, world! <|endoftext|> caf\xc3\xa9  \t\n12345 don't\xff\xfe";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[4096];
    fuzz_path(path, fuzz_scratch(), "tokenizer.json");
    if (tu_write(path, data, size) != 0)
        abort();
    coil_err_t err = {0};
    coil_tokenizer_t *tok = coil_tokenizer_load(path, &err);
    if (!tok) {
        FUZZ_CHECK(err.code < 0 && err.msg[0], "error %d without a message", err.code);
        return 0;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (coil_tokenizer_encode(tok, sample, sizeof sample - 1, &ids, &n, &err) == 0) {
        char *text = NULL;
        size_t len = 0;
        if (coil_tokenizer_decode(tok, ids, n, 0, &text, &len, &err) == 0)
            /* NUL-terminated at len; a token's content may hold U+0000, so the text may hold NULs */
            FUZZ_CHECK(text && text[len] == '\0' && strlen(text) <= len, "decode length");
        free(text);
        coil_tokenizer_stream_t *s = coil_tokenizer_stream_new(tok, &err);
        if (s) {
            int32_t *all = NULL, *got = NULL;
            size_t n_all = 0, n_got = 0;
            int ok = 1;
            for (size_t i = 0; i < sizeof sample - 1 && ok; i += 3) {
                size_t k = sizeof sample - 1 - i < 3 ? sizeof sample - 1 - i : 3;
                if (coil_tokenizer_stream_feed(s, sample + i, k, &got, &n_got, &err) != 0) {
                    ok = 0;
                    break;
                }
                if (n_got) {
                    int32_t *na = realloc(all, (n_all + n_got) * sizeof *all);
                    if (!na)
                        abort();
                    all = na;
                    memcpy(all + n_all, got, n_got * sizeof *got);
                    n_all += n_got;
                }
                free(got);
                got = NULL;
            }
            if (ok && coil_tokenizer_stream_finish(s, &got, &n_got, &err) == 0) {
                if (n_got) {
                    int32_t *na = realloc(all, (n_all + n_got) * sizeof *all);
                    if (!na)
                        abort();
                    all = na;
                    memcpy(all + n_all, got, n_got * sizeof *got);
                    n_all += n_got;
                }
                FUZZ_CHECK(n_all == n && (n == 0 || memcmp(all, ids, n * sizeof *ids) == 0),
                           "incremental (%zu ids) != one-shot (%zu ids)", n_all, n);
            }
            free(got);
            free(all);
            coil_tokenizer_stream_destroy(&s);
        }
    }
    free(ids);
    coil_tokenizer_destroy(&tok);
    return 0;
}
