/* fuzz_state.c -- state blob import (coil_state_blob_peek, coil_state_deserialize).
 *
 * The state is shaped for a small random model (2 layers, d_model 16).  When
 * bit 0 of the input's first byte is set the harness first writes the right
 * XXH3-64 into the last 8 bytes, so the fuzzer gets past the checksum and
 * reaches the header and payload checks.
 * Properties: an error with a message and the state unchanged, or a state
 * that serialises back to exactly the input bytes (the format is canonical:
 * a blob that is accepted is the one coil would have written). */
#include "fuzz.h"
#include "model.h"
#include "state.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

static coil_model_t *model;
static coil_state_t *state;
static unsigned char *zero_blob;
static size_t zero_len;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[4096];
    fuzz_path(dir, fuzz_scratch(), "model");
    tu_model_shape_t shape = {.d_model = 16, .n_layer = 2, .vocab = 64, .d_state = 4,
                              .d_conv = 4, .expand = 2, .dt_rank = 0, .tied = 1, .dtype = "F32"};
    coil_err_t err = {0};
    if ((mkdir(dir, 0700) != 0 && errno != EEXIST) || tu_write_random_model(dir, &shape, 16) != 0 || !(model = coil_model_load(dir, &err)) ||
        !(state = coil_state_new(model, &err))) {
        fprintf(stderr, "fuzz_state: %s\n", err.msg);
        abort();
    }
    zero_len = coil_state_blob_size(state);
    if (!(zero_blob = malloc(zero_len)) || coil_state_serialize(state, zero_blob, zero_len, &err) != 0)
        abort();
    /* COIL_FUZZ_WRITE_SEEDS=DIR: write the seed blobs (tests/fuzz/make_seeds.py says so). */
    const char *seeds = getenv("COIL_FUZZ_WRITE_SEEDS");
    if (seeds) {
        char p[4096];
        if (tu_write(fuzz_path(p, seeds, "seed-zero"), zero_blob, zero_len) != 0)
            abort();
        int64_t nl = coil_model_config(model)->n_layer;
        for (int64_t l = 0; l < nl; l++) {
            coil_state_conv(state, l)[0] = 0.5f * (float)(l + 1);
            coil_state_ssm(state, l)[3] = -1.25f;
        }
        coil_state_last_hidden(state)[0] = 3.0f;
        coil_state_set_has_hidden(state, 1);
        coil_state_set_position(state, 1234);
        unsigned char *b = malloc(zero_len);
        if (!b || coil_state_serialize(state, b, zero_len, &err) != 0 ||
            tu_write(fuzz_path(p, seeds, "seed-hidden"), b, zero_len) != 0)
            abort();
        free(b);
        coil_state_reset(state);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!state)
        LLVMFuzzerInitialize(NULL, NULL);
    unsigned char *blob = malloc(size ? size : 1);
    if (!blob)
        abort();
    memcpy(blob, data, size);
    if (size >= 9 && (data[0] & 1)) {
        uint64_t h = XXH3_64bits(blob, size - 8);
        memcpy(blob + size - 8, &h, 8);
    }
    coil_err_t err = {0};
    uint64_t fp = 0;
    int64_t pos = 0;
    int prc = coil_state_blob_peek(blob, size, &fp, &pos, &err);
    FUZZ_CHECK(prc == 0 || (err.code == prc && err.msg[0]), "peek %d without a message", prc);

    coil_state_reset(state);
    coil_err_clear(&err);
    int rc = coil_state_deserialize(state, blob, size, &err);
    if (rc != 0) {
        FUZZ_CHECK(err.code == rc && err.msg[0], "deserialize %d without a message", rc);
        /* unchanged: still the zero state */
        unsigned char *now = malloc(zero_len);
        if (!now || coil_state_serialize(state, now, zero_len, &err) != 0)
            abort();
        FUZZ_CHECK(memcmp(now, zero_blob, zero_len) == 0, "a failed import changed the state");
        free(now);
    } else {
        FUZZ_CHECK(prc == 0 && pos == coil_state_position(state), "peek and deserialize disagree");
        size_t need = coil_state_blob_size(state);
        FUZZ_CHECK(need == size, "accepted a %zu-byte blob, the state's is %zu", size, need);
        unsigned char *again = malloc(need);
        if (!again || coil_state_serialize(state, again, need, &err) != 0)
            abort();
        /* canonical: what coil writes, except that a version-1 blob (before
         * families: Mamba-1, offset 72 zero) is written back as version 2 */
        if (size >= 12 && blob[8] == 1 && !blob[9] && !blob[10] && !blob[11]) {
            blob[8] = 2;
            memcpy(blob + size - 8, again + size - 8, 8); /* the checksum covers the version */
        }
        FUZZ_CHECK(memcmp(again, blob, size) == 0, "an accepted blob is not what coil writes");
        free(again);
    }
    free(blob);
    return 0;
}
