/* bench_tokenizer.c -- single-core tokenizer throughput (built by make, not run by tests).
 *
 *   bench_tokenizer [tokenizer.json [text-file [MB]]]
 *
 * Defaults: $COIL_TEST_DATA/tokenizer/tokenizer.json (or tests/data/...),
 * /usr/share/common-licenses/GPL-3 as English text, repeated to 20 MB.
 * Prints MB/s and tokens/s for whole-document encode, the incremental
 * encoder (64 KiB pieces) and decode.
 */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0, r;
    if (!f)
        return NULL;
    do {
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = p;
        }
        r = fread(buf + n, 1, cap - n, f);
        n += r;
    } while (r > 0);
    fclose(f);
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    char default_tok[4096];
    const char *data = getenv("COIL_TEST_DATA");
    snprintf(default_tok, sizeof default_tok, "%s/tokenizer/tokenizer.json",
             data ? data : "tests/data");
    const char *tok_path = argc > 1 ? argv[1] : default_tok;
    const char *text_path = argc > 2 ? argv[2] : "/usr/share/common-licenses/GPL-3";
    double mb = argc > 3 ? atof(argv[3]) : 20.0;
    coil_err_t err;
    size_t src_len, len = 0, n = 0, total = 0;
    int32_t *ids = NULL;

    coil_tokenizer_t *tok = coil_tokenizer_load(tok_path, &err);
    if (!tok) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    char *src = read_file(text_path, &src_len);
    if (!src || src_len == 0) {
        fprintf(stderr, "bench_tokenizer: cannot read %s\n", text_path);
        coil_tokenizer_destroy(&tok);
        free(src);
        return 1;
    }
    size_t target = mb > 0 ? (size_t)(mb * 1e6) : src_len;
    if (target < src_len)
        target = src_len;
    char *text = malloc(target);
    if (!text) {
        fprintf(stderr, "bench_tokenizer: out of memory\n");
        return 1;
    }
    while (len < target) {
        size_t k = src_len < target - len ? src_len : target - len;
        memcpy(text + len, src, k);
        len += k;
    }
    free(src);
    printf("tokenizer %s (vocab %zu), text %s x -> %.1f MB\n", tok_path,
           coil_tokenizer_vocab_size(tok), text_path, (double)len / 1e6);

    double t0 = now();
    if (coil_tokenizer_encode(tok, text, len, &ids, &n, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    double t1 = now();
    printf("encode:  %8.1f MB/s  %10.0f tokens/s  (%zu tokens, %.2f bytes/token)\n",
           (double)len / 1e6 / (t1 - t0), (double)n / (t1 - t0), n, (double)len / (double)n);

    coil_tokenizer_stream_t *s = coil_tokenizer_stream_new(tok, &err);
    t0 = now();
    for (size_t pos = 0; pos < len; pos += 65536) {
        int32_t *piece;
        size_t np, k = len - pos < 65536 ? len - pos : 65536;
        if (coil_tokenizer_stream_feed(s, text + pos, k, &piece, &np, &err)) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 1;
        }
        total += np;
        free(piece);
    }
    {
        int32_t *piece;
        size_t np;
        coil_tokenizer_stream_finish(s, &piece, &np, &err);
        total += np;
        free(piece);
    }
    t1 = now();
    coil_tokenizer_stream_destroy(&s);
    printf("stream:  %8.1f MB/s  %10.0f tokens/s  (%zu tokens%s)\n",
           (double)len / 1e6 / (t1 - t0), (double)total / (t1 - t0), total,
           total == n ? "" : ", MISMATCH");

    char *dec;
    size_t dl;
    t0 = now();
    coil_tokenizer_decode(tok, ids, n, 0, &dec, &dl, &err);
    t1 = now();
    printf("decode:  %8.1f MB/s  %10.0f tokens/s  (round trip %s)\n",
           (double)dl / 1e6 / (t1 - t0), (double)n / (t1 - t0),
           dl == len && memcmp(dec, text, len) == 0 ? "exact" : "differs (NFC/U+FFFD)");
    free(dec);
    free(ids);
    free(text);
    coil_tokenizer_destroy(&tok);
    return total == n ? 0 : 1;
}
