/* mkmodel.c -- write a random-weight model in the Hugging Face layout.
 *
 *   tests/tools/mkmodel DIR [--d-model N] [--layers N] [--vocab N] [--d-state N]
 *                           [--dtype F32|F16|BF16] [--seed S] [--untied] [--tokenizer FILE]
 *                           [--family mamba|falcon_mamba|mamba2] [--dt-rank N]
 *                           [--head-dim N] [--n-groups N]
 *
 * For tests and benchmarks (e.g. --d-model 768 --layers 24 --vocab 50280 is the
 * mamba-130m shape).  --tokenizer copies a tokenizer.json into DIR.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

int main(int argc, char **argv)
{
    tu_model_shape_t sh = {.d_model = 64, .n_layer = 2, .vocab = 256, .d_state = 16, .d_conv = 4, .expand = 2,
                           .dt_rank = 0, .tied = 1, .dtype = "F32"};
    uint64_t seed = 1;
    const char *tok = NULL;
    static const struct option lo[] = {{"d-model", 1, 0, 'h'}, {"layers", 1, 0, 'l'}, {"vocab", 1, 0, 'v'},
                                       {"d-state", 1, 0, 'n'}, {"dtype", 1, 0, 'd'},  {"seed", 1, 0, 's'},
                                       {"untied", 0, 0, 'u'},  {"tokenizer", 1, 0, 't'}, {"family", 1, 0, 'f'},
                                       {"dt-rank", 1, 0, 'r'}, {"head-dim", 1, 0, 'p'}, {"n-groups", 1, 0, 'g'},
                                       {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'h': sh.d_model = atoll(optarg); break;
        case 'l': sh.n_layer = atoll(optarg); break;
        case 'v': sh.vocab = atoll(optarg); break;
        case 'n': sh.d_state = atoll(optarg); break;
        case 'd': sh.dtype = optarg; break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'u': sh.tied = 0; break;
        case 't': tok = optarg; break;
        case 'f': sh.family = optarg; break;
        case 'r': sh.dt_rank = atoll(optarg); break;
        case 'p': sh.head_dim = atoll(optarg); break;
        case 'g': sh.n_groups = atoll(optarg); break;
        default: goto usage;
        }
    }
    if (optind != argc - 1 || sh.d_model <= 0 || sh.n_layer <= 0 || sh.vocab <= 0 || sh.d_state <= 0 || sh.dt_rank < 0 || sh.head_dim < 0 ||
        sh.n_groups < 0 ||
        (strcmp(sh.dtype, "F32") && strcmp(sh.dtype, "F16") && strcmp(sh.dtype, "BF16")))
        goto usage;
    const char *dir = argv[optind];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "mkmodel: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (tu_write_random_model(dir, &sh, seed) != 0) {
        fprintf(stderr, "mkmodel: cannot write the model into %s\n", dir);
        return 1;
    }
    if (tok) {
        char dst[4096];
        size_t n;
        void *buf = tu_read(tok, &n);
        snprintf(dst, sizeof dst, "%s/tokenizer.json", dir);
        if (!buf || tu_write(dst, buf, n) != 0) {
            fprintf(stderr, "mkmodel: cannot copy %s\n", tok);
            free(buf);
            return 1;
        }
        free(buf);
    }
    return 0;
usage:
    fprintf(stderr, "usage: mkmodel DIR [--d-model N] [--layers N] [--vocab N] [--d-state N] "
                    "[--dtype F32|F16|BF16] [--seed S] [--untied] [--tokenizer FILE] "
                    "[--family mamba|falcon_mamba|mamba2] [--dt-rank N] [--head-dim N] [--n-groups N]\n");
    return 2;
}
