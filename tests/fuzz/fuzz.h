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
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* A new directory for a harness's databases and spools, on tmpfs when
 * /dev/shm is writable (every input writes files), else in fuzz_scratch():
 * BASE/coil-fuzz-KIND-PID-XXXXXX into out (4096 bytes).  A libFuzzer process
 * that found something leaves by _Exit, without running atexit handlers,
 * so first the directories of KIND whose process is gone are removed. */
static inline void fuzz_shm_dir(const char *kind, char *out)
{
    static const char *base;
    if (!base) {
        struct stat sb;
        base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) && access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                                                                 : fuzz_scratch();
        char prefix[128];
        int plen = snprintf(prefix, sizeof prefix, "coil-fuzz-%s-", kind);
        DIR *d = opendir(base);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            char *end;
            if (strncmp(e->d_name, prefix, (size_t)plen) != 0)
                continue;
            long pid = strtol(e->d_name + plen, &end, 10);
            if (end == e->d_name + plen || *end != '-' || pid <= 0 || pid == (long)getpid())
                continue;
            if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
                continue; /* its process is alive (or not ours to ask) */
            char stale[4096];
            if (snprintf(stale, sizeof stale, "%s/%s", base, e->d_name) < (int)sizeof stale)
                tu_rm_rf(stale);
        }
        if (d)
            closedir(d);
    }
    if (snprintf(out, 4096, "%s/coil-fuzz-%s-%ld-XXXXXX", base, kind, (long)getpid()) >= 4096 || !mkdtemp(out)) {
        perror("fuzz: mkdtemp");
        abort();
    }
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
