/* fuzz.h -- shared by the libFuzzer harnesses in tests/fuzz/ (issue 16).
 *
 * Each fuzz_NAME.c defines LLVMFuzzerTestOneInput (and may define
 * LLVMFuzzerInitialize).  It is linked two ways:
 *   tests/fuzz/fuzz_NAME    with clang's libFuzzer (./configure --enable-fuzzing)
 *   tests/fuzz/replay_NAME  with tests/fuzz/replay.c (every build; `make check`
 *                           runs tests/fuzz/corpus/NAME/ through it)
 * A harness calls abort() (through FUZZ_CHECK) when a property fails, so the
 * fuzzer reports it like a crash and the replay test fails.
 */
#ifndef COIL_FUZZ_H
#define COIL_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                                     \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "%s:%d: fuzz property failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
            abort();                                                              \
        }                                                                         \
    } while (0)

/* The test data directory: $COIL_TEST_DATA, else the source tree's (baked in
 * at build time), else tests/data. */
static inline const char *fuzz_test_data(void)
{
    const char *d = getenv("COIL_TEST_DATA");
    if (d && *d)
        return d;
#ifdef COIL_FUZZ_TEST_DATA
    return COIL_FUZZ_TEST_DATA;
#else
    return "tests/data";
#endif
}

/* A private scratch directory for this process, removed at exit. */
static char *fuzz_scratch_dir;
static inline void fuzz_scratch_rm(void)
{
    if (fuzz_scratch_dir)
        tu_rm_rf(fuzz_scratch_dir);
}
static inline const char *fuzz_scratch(void)
{
    if (!fuzz_scratch_dir) {
        if (!(fuzz_scratch_dir = tu_mkdtemp())) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(fuzz_scratch_rm);
    }
    return fuzz_scratch_dir;
}

/* dir/name, in a static buffer per call site's choice (buf of 4096). */
static inline const char *fuzz_path(char *buf, const char *dir, const char *name)
{
    int n = snprintf(buf, 4096, "%s/%s", dir, name);
    if (n < 0 || n >= 4096)
        abort();
    return buf;
}
#endif
