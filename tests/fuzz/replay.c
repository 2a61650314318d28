/* replay.c -- runs saved inputs through one harness's LLVMFuzzerTestOneInput
 * without libFuzzer (so gcc builds and `make check` need no clang).
 *
 *   replay_NAME [FILE|DIR]...   each file, and each regular file of each dir
 *   replay_NAME                 $COIL_SRCDIR/tests/fuzz/corpus/NAME (the seeds,
 *                               the campaign's minimised corpus and every past
 *                               crash: crash-* files live there too)
 *
 * Exit 0 when every input ran (a harness signals a failed property by
 * aborting, which fails the test); 1 if no input was found.  Under
 * ./configure --enable-sanitizers the same run is checked by ASan + UBSan.
 */
#include "fuzz.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#ifndef FUZZ_NAME
#error "FUZZ_NAME must be defined"
#endif

/* Harnesses that need no set-up do not define it. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static long n_run;

static int run_file(const char *path)
{
    size_t n = 0;
    void *buf = tu_read(path, &n);
    if (!buf) {
        fprintf(stderr, "replay_%s: cannot read %s\n", FUZZ_NAME, path);
        return -1;
    }
    /* A private copy of exactly n bytes, so ASan sees reads past the end. */
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy) {
        free(buf);
        return -1;
    }
    if (n)
        memcpy(copy, buf, n);
    free(buf);
    if (getenv("COIL_REPLAY_VERBOSE"))
        fprintf(stderr, "replay_%s: %s (%zu bytes)\n", FUZZ_NAME, path, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
    n_run++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "replay_%s: %s: no such file or directory\n", FUZZ_NAME, path);
        return -1;
    }
    if (!S_ISDIR(sb.st_mode))
        return run_file(path);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn)
                abort();
            names = nn;
        }
        if (!(names[n++] = strdup(e->d_name)))
            abort();
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", path, names[i]);
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && run_file(p) != 0)
            rc = -1;
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    LLVMFuzzerInitialize(&argc, &argv);
    int rc = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            if (run_path(argv[i]) != 0)
                rc = 1;
    } else {
        const char *src = getenv("COIL_SRCDIR");
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", src && *src ? src : ".", FUZZ_NAME);
        if (run_path(dir) != 0)
            rc = 1;
    }
    if (n_run == 0) {
        fprintf(stderr, "replay_%s: no inputs\n", FUZZ_NAME);
        return 1;
    }
    printf("replay_%s: %ld inputs, no failure\n", FUZZ_NAME, n_run);
    return rc;
}
