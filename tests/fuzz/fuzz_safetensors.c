/* fuzz_safetensors.c -- coil_safetensors_open on arbitrary file contents.
 * Property: either an error with a message, or a file whose every tensor
 * lies inside the mapping with nbytes == numel * dtype size (ASan checks the
 * reads of the first and last byte). */
#include "fuzz.h"
#include "safetensors.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[4096];
    fuzz_path(path, fuzz_scratch(), "model.safetensors");
    if (tu_write(path, data, size) != 0)
        abort();
    coil_err_t err = {0};
    coil_safetensors_t *st = coil_safetensors_open(path, &err);
    if (!st) {
        FUZZ_CHECK(err.code < 0 && err.msg[0], "error %d without a message", err.code);
        return 0;
    }
    size_t n = coil_safetensors_count(st);
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i++) {
        const coil_tensor_info_t *t = coil_safetensors_at(st, i);
        FUZZ_CHECK(t && t->name, "tensor %zu missing", i);
        FUZZ_CHECK(t->dtype >= 0 && t->dtype < COIL_DT_COUNT, "dtype %d", (int)t->dtype);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= COIL_ST_MAX_DIMS, "ndim %d", t->ndim);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            FUZZ_CHECK(t->shape[d] >= 0, "negative dim");
            numel *= t->shape[d];
        }
        FUZZ_CHECK(numel == t->numel, "numel %lld != product %lld", (long long)t->numel,
                   (long long)numel);
        FUZZ_CHECK(t->nbytes == (size_t)t->numel * coil_dtype_size(t->dtype), "nbytes");
        FUZZ_CHECK(coil_safetensors_find(st, t->name) == t, "find(%s)", t->name);
        if (t->nbytes) {
            const uint8_t *p = t->data;
            FUZZ_CHECK(((uintptr_t)p % coil_dtype_size(t->dtype)) == 0, "misaligned data");
            sink ^= p[0];
            sink ^= p[t->nbytes - 1];
        }
    }
    (void)sink;
    coil_safetensors_close(&st);
    return 0;
}
