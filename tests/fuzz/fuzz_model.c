/* fuzz_model.c -- config.json + the model loader on a small directory, every family.
 * The input is config.json, written beside a valid small model's
 * model.safetensors (tests/testutil.h's random models: d_model 16, 2 layers,
 * vocab 64).  The family's weights are chosen by what the input names:
 * "rwkv" -> an RWKV-4 model, "mamba2" -> Mamba-2, "falcon" -> Falcon-Mamba,
 * else Mamba-1 (so each family's config reading is reached with weights it
 * can bind, and a config naming one family beside another's weights is
 * reached through the mismatched words).
 * Properties: coil_model_config_parse never crashes; coil_model_load either
 * fails with a message or gives a model whose dimensions are those the
 * config parse gave, whose Mamba-1-layout layers (mamba, falcon_mamba) have
 * every pointer set, and that runs: an engine over it feeds 3 tokens and
 * gives next-token logits (or refuses with a message), never a crash. */
#include "fuzz.h"
#include "engine.h"
#include "model.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define N_FAM 4
static const char *const fam_names[N_FAM] = {"mamba", "rwkv", "mamba2", "falcon_mamba"};
static char dirs[N_FAM][4096];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (int f = 0; f < N_FAM; f++) {
        char sub[64];
        snprintf(sub, sizeof sub, "model-%s", fam_names[f]);
        fuzz_path(dirs[f], fuzz_scratch(), sub);
        tu_model_shape_t shape = {.d_model = 16, .n_layer = 2, .vocab = 64, .d_state = 4, .d_conv = 4,
                                  .expand = 2, .dt_rank = 0, .tied = 1, .dtype = "F32", .family = fam_names[f]};
        if ((mkdir(dirs[f], 0700) != 0 && errno != EEXIST) || tu_write_random_model(dirs[f], &shape, 16) != 0) {
            fprintf(stderr, "fuzz_model: cannot write the %s model in %s\n", fam_names[f], dirs[f]);
            abort();
        }
    }
    return 0;
}

static int names(const uint8_t *data, size_t size, const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i + n <= size; i++)
        if (memcmp(data + i, word, n) == 0)
            return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[4096];
    if (!dirs[0][0])
        LLVMFuzzerInitialize(NULL, NULL);
    int f = names(data, size, "rwkv") ? 1 : names(data, size, "mamba2") ? 2 : names(data, size, "falcon") ? 3 : 0;
    const char *dir = dirs[f];
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
    char dims[1024];
    FUZZ_CHECK(coil_model_dims_json(m, dims, sizeof dims) > 0, "dims_json");
    int mamba1_layout = strstr(dims, "\"family\":\"mamba\"") || strstr(dims, "\"family\":\"falcon_mamba\"");
    for (int64_t i = 0; mamba1_layout && i < c->n_layer; i++) {
        const coil_layer_t *l = coil_model_layer(m, i);
        FUZZ_CHECK(l && l->norm && l->A && l->D && l->conv_w && l->dt_bias, "layer %lld", (long long)i);
    }
    FUZZ_CHECK(coil_model_embeddings(m) && coil_model_norm_f(m), "embeddings");

    /* the model that loaded runs: 3 tokens, then the next token's logits */
    coil_engine_options_t eo = {.max_chunk = 2, .threads = 1, .backend = "cpu"};
    coil_err_clear(&err);
    coil_engine_t *e = coil_engine_new(m, &eo, &err);
    if (e) {
        coil_state_t *st = coil_state_new(m, &err);
        float *logits = calloc((size_t)c->vocab_size, sizeof *logits);
        if (st && logits) {
            const int32_t ids[3] = {1, (int32_t)(c->vocab_size - 1), 0};
            int rc = coil_engine_forward(e, st, ids, 3, NULL, &err);
            FUZZ_CHECK(rc == 0 || (err.code == rc && err.msg[0]), "forward rc %d without a message", rc);
            if (rc == 0) {
                rc = coil_engine_next_logits(e, st, logits, &err);
                FUZZ_CHECK(rc == 0 || (err.code == rc && err.msg[0]), "logits rc %d without a message", rc);
            }
        } else {
            FUZZ_CHECK(logits == NULL || err.msg[0], "state refused without a message");
        }
        free(logits);
        coil_state_destroy(&st);
        coil_engine_destroy(&e);
    } else {
        FUZZ_CHECK(err.code < 0 && err.msg[0], "engine refused (%d) without a message", err.code);
    }
    coil_model_destroy(&m);
    return 0;
}
