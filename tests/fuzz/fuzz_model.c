/* fuzz_model.c -- config.json + the model loader on a small directory.
 * The input is config.json, written beside a valid small model's
 * model.safetensors (tests/testutil.h's random model: d_model 16, 2 layers).
 * Properties: coil_model_config_parse never crashes; coil_model_load either
 * fails with a message or gives a model whose dimensions are those the
 * config parse gave and whose every layer pointer is set. */
#include "fuzz.h"
#include "model.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static char dir[4096];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_path(dir, fuzz_scratch(), "model");
    tu_model_shape_t shape = {.d_model = 16, .n_layer = 2, .vocab = 64, .d_state = 4,
                              .d_conv = 4, .expand = 2, .dt_rank = 0, .tied = 1, .dtype = "F32"};
    if ((mkdir(dir, 0700) != 0 && errno != EEXIST) || tu_write_random_model(dir, &shape, 16) != 0) {
        fprintf(stderr, "fuzz_model: cannot write the model in %s\n", dir);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[4096];
    if (!dir[0])
        LLVMFuzzerInitialize(NULL, NULL);
    fuzz_path(path, dir, "config.json");
    if (tu_write(path, data, size) != 0)
        abort();

    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    coil_model_config_t cfg;
    coil_err_t err = {0};
    int prc = coil_model_config_parse(text, "config.json", &cfg, &err);
    FUZZ_CHECK(prc == 0 || (err.code == prc && err.msg[0]), "parse rc %d without message", prc);
    free(text);

    coil_err_clear(&err);
    coil_model_t *m = coil_model_load(dir, &err);
    if (!m) {
        FUZZ_CHECK(err.code < 0 && err.msg[0], "load error %d without a message", err.code);
        return 0;
    }
    const coil_model_config_t *c = coil_model_config(m);
    /* A config with a NUL in it is read up to the NUL by the parse above;
     * the loader reads the file, so compare only when there is none. */
    if (prc == 0 && !memchr(data, 0, size))
        FUZZ_CHECK(c->d_model == cfg.d_model && c->n_layer == cfg.n_layer &&
                       c->d_inner == cfg.d_inner && c->vocab_size == cfg.vocab_size,
                   "loaded dims differ from the parsed config");
    for (int64_t i = 0; i < c->n_layer; i++) {
        const coil_layer_t *l = coil_model_layer(m, i);
        FUZZ_CHECK(l && l->norm && l->A && l->D && l->conv_w && l->dt_bias, "layer %lld", (long long)i);
    }
    FUZZ_CHECK(coil_model_embeddings(m) && coil_model_norm_f(m), "embeddings");
    char dims[1024];
    FUZZ_CHECK(coil_model_dims_json(m, dims, sizeof dims) > 0, "dims_json");
    coil_model_destroy(&m);
    return 0;
}
