/* matrix.c -- the matrix library behind linear(): oneDNN or OpenBLAS.
 *
 * Measured on the layer shapes (README, Performance): oneDNN's dnnl_sgemm
 * picks its kernels from cpuid features, so it runs at full speed on CPUs its
 * release has never heard of; Debian 12's OpenBLAS 0.3.21 picks them from the
 * CPU model number and falls back to 'Prescott' (SSE3, about 4x slower) on a
 * model it does not know.  So: oneDNN when the build has it, OpenBLAS
 * otherwise; COIL_MATRIX=onednn|openblas forces one.
 *
 * OpenBLAS's choice is checked against cpuid at start.  When it is below what
 * the CPU runs, coil says so once on stderr, and (unless the user set
 * OPENBLAS_CORETYPE) re-runs OpenBLAS's own core selection with the right
 * core named (gotoblas_dynamic_quit/init, what OPENBLAS_CORETYPE does at load).
 *
 * Both libraries are called single-threaded, from inside coil's OpenMP
 * threads: oneDNN runs one thread when called in a parallel region, OpenBLAS
 * is set to one thread.  For a fixed library, CPU and shape the bits are fixed.
 */
#include <cblas.h>
#include <ctype.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend.h"
#include "config.h"
#include "cpu_internal.h"
#include "error.h"
#ifdef COIL_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

/* OpenBLAS's own entry points (exported by every DYNAMIC_ARCH build; the
 * Debian one is).  Weak: a static or single-arch OpenBLAS may lack them. */
char *openblas_get_corename(void) __attribute__((weak));
char *openblas_get_config(void) __attribute__((weak));
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));

static coil_matrix_lib_t active;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static char ob_note[320];
static char ob_first_core[32];

static int ob_rank(const char *core)
{
    char l[32];
    size_t i = 0;
    for (; core[i] && i + 1 < sizeof l; i++)
        l[i] = (char)tolower((unsigned char)core[i]);
    l[i] = 0;
    if (!strcmp(l, "skylakex") || !strcmp(l, "cooperlake") || !strcmp(l, "sapphirerapids"))
        return 3;
    if (!strcmp(l, "haswell") || !strncmp(l, "zen", 3) || !strcmp(l, "skylake"))
        return 2;
    if (!strcmp(l, "sandybridge") || !strcmp(l, "bulldozer") || !strcmp(l, "piledriver") ||
        !strcmp(l, "steamroller") || !strcmp(l, "excavator"))
        return 1;
    return 0;
}

/* The OpenBLAS core this CPU should get, and its rank (AMD: Zen, which is
 * what OpenBLAS runs on every AMD with AVX2). */
static const char *ob_expected(int *rank)
{
    const coil_cpu_features_t *f = coil_cpu_features();
    const bool amd = strcmp(f->vendor, "AuthenticAMD") == 0 || strcmp(f->vendor, "HygonGenuine") == 0;
    if (f->avx512f && f->avx512dq && f->avx512bw && f->avx512vl && !amd) {
        *rank = 3;
        return "SkylakeX";
    }
    if (f->avx2 && f->fma) {
        *rank = 2;
        return amd ? "Zen" : "Haswell";
    }
    *rank = 0;
    return NULL;
}

const char *coil_openblas_core(void)
{
    return openblas_get_corename ? openblas_get_corename() : "unknown";
}

int coil_openblas_check(int fix)
{
    int want_rank;
    const char *want = ob_expected(&want_rank);
    const char *core = coil_openblas_core();
    if (!ob_first_core[0])
        snprintf(ob_first_core, sizeof ob_first_core, "%s", core);
    if (!want || !openblas_get_corename || ob_rank(core) >= want_rank)
        return 0;
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (!fix || (user && *user) || !gotoblas_dynamic_init || !gotoblas_dynamic_quit) {
        snprintf(ob_note, sizeof ob_note,
                 "OpenBLAS chose its '%s' kernels but this CPU runs '%s' ones (%s); its products run several "
                 "times slower%s",
                 core, want, coil_cpu_features_string(),
                 user && *user ? " (OPENBLAS_CORETYPE is set: left as it is)" : "");
        return 1;
    }
    /* Re-run OpenBLAS's core selection with the core named, as
     * OPENBLAS_CORETYPE does at load; the caller's environment is restored. */
    char *saved = user ? strdup(user) : NULL;
    setenv("OPENBLAS_CORETYPE", want, 1);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    if (saved) {
        setenv("OPENBLAS_CORETYPE", saved, 1);
        free(saved);
    } else {
        unsetenv("OPENBLAS_CORETYPE");
    }
    snprintf(ob_note, sizeof ob_note,
             "OpenBLAS chose its '%s' kernels but this CPU runs '%s' ones (%s): coil switched it to '%s'", core,
             want, coil_cpu_features_string(), coil_openblas_core());
    return 1;
}

static void init(void)
{
    const char *env = getenv("COIL_MATRIX");
#ifdef COIL_HAVE_ONEDNN
    active = COIL_MATRIX_ONEDNN;
#else
    active = COIL_MATRIX_OPENBLAS;
#endif
    if (env && *env) {
        if (!strcmp(env, "openblas"))
            active = COIL_MATRIX_OPENBLAS;
#ifdef COIL_HAVE_ONEDNN
        else if (!strcmp(env, "onednn"))
            active = COIL_MATRIX_ONEDNN;
#endif
        else
            fprintf(stderr, "coil: COIL_MATRIX='%s' is not available in this build (have: %s): using %s\n", env,
                    coil_matrix_libs(), coil_matrix_lib_name(active));
    }
    openblas_set_num_threads(1);
    if (coil_openblas_check(1) && active == COIL_MATRIX_OPENBLAS)
        fprintf(stderr, "coil: WARNING: %s\n", ob_note); /* once per process, and only for the library in use */
#ifdef COIL_HAVE_ONEDNN
    coil_matrix_info_t mi;
    coil_matrix_info(COIL_MATRIX_ONEDNN, &mi);
    if (active == COIL_MATRIX_ONEDNN && mi.below)
        fprintf(stderr, "coil: WARNING: %s\n", mi.note);
#endif
}

coil_matrix_lib_t coil_matrix_active(void)
{
    pthread_once(&once, init);
    return active;
}

int coil_matrix_select(const char *name)
{
    pthread_once(&once, init);
    if (!strcmp(name, "openblas")) {
        active = COIL_MATRIX_OPENBLAS;
        return 0;
    }
#ifdef COIL_HAVE_ONEDNN
    if (!strcmp(name, "onednn")) {
        active = COIL_MATRIX_ONEDNN;
        return 0;
    }
#endif
    return -1;
}

int coil_matrix_ready(coil_err_t *err)
{
    if (coil_matrix_active() != COIL_MATRIX_OPENBLAS)
        return 0;
    /* room for OpenBLAS's buffer?  Reserve (not commit) the address space and give it back */
    void *p = mmap(NULL, COIL_OPENBLAS_ADDRESS_SPACE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) {
        munmap(p, COIL_OPENBLAS_ADDRESS_SPACE);
        return 0;
    }
#ifdef COIL_HAVE_ONEDNN
    (void)err;
    fprintf(stderr, "coil: the address-space limit (ulimit -v) leaves less than %zu MiB, which OpenBLAS's buffers "
                    "need: using oneDNN\n",
            COIL_OPENBLAS_ADDRESS_SPACE >> 20);
    active = COIL_MATRIX_ONEDNN;
    return 0;
#else
    return coil_err_set(err, COIL_ENOMEM,
                        "the address-space limit (ulimit -v) leaves less than %zu MiB, which OpenBLAS's buffers need "
                        "(it would wait forever for them): raise the limit",
                        COIL_OPENBLAS_ADDRESS_SPACE >> 20);
#endif
}

const char *coil_matrix_lib_name(coil_matrix_lib_t l)
{
    return l == COIL_MATRIX_ONEDNN ? "onednn" : "openblas";
}

const char *coil_matrix_libs(void)
{
#ifdef COIL_HAVE_ONEDNN
    return "onednn openblas";
#else
    return "openblas";
#endif
}

#ifdef COIL_HAVE_ONEDNN
static const char *dnnl_isa_name(dnnl_cpu_isa_t i, int *rank)
{
    switch ((int)i) {
    case dnnl_cpu_isa_avx512_core_amx: *rank = 3; return "avx512_core_amx";
    case dnnl_cpu_isa_avx512_core_bf16: *rank = 3; return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_vnni: *rank = 3; return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core: *rank = 3; return "avx512_core";
    case dnnl_cpu_isa_avx2_vnni: *rank = 2; return "avx2_vnni";
    case dnnl_cpu_isa_avx2: *rank = 2; return "avx2";
    case dnnl_cpu_isa_avx: *rank = 1; return "avx";
    case dnnl_cpu_isa_sse41: *rank = 0; return "sse41";
    default: *rank = 0; return "other";
    }
}
#endif

void coil_matrix_info(coil_matrix_lib_t l, coil_matrix_info_t *mi)
{
    memset(mi, 0, sizeof *mi);
    mi->library = l == COIL_MATRIX_ONEDNN ? "oneDNN" : "OpenBLAS";
    if (l == COIL_MATRIX_OPENBLAS) {
        pthread_once(&once, init);
        const char *cfg = openblas_get_config ? openblas_get_config() : "";
        const char *v = strstr(cfg, "OpenBLAS ");
        if (v) {
            v += 9;
            size_t n = strcspn(v, " ");
            snprintf(mi->version, sizeof mi->version, "%.*s", (int)n, v);
        } else {
            snprintf(mi->version, sizeof mi->version, "unknown");
        }
        snprintf(mi->kernel, sizeof mi->kernel, "%s", coil_openblas_core());
        if (strcmp(ob_first_core, coil_openblas_core()) != 0)
            snprintf(mi->kernel + strlen(mi->kernel), sizeof mi->kernel - strlen(mi->kernel),
                     " (it chose %s)", ob_first_core);
        mi->below = ob_note[0] != 0;
        snprintf(mi->note, sizeof mi->note, "%s", ob_note);
        return;
    }
#ifdef COIL_HAVE_ONEDNN
    const dnnl_version_t *dv = dnnl_version();
    snprintf(mi->version, sizeof mi->version, "%d.%d.%d", dv->major, dv->minor, dv->patch);
    int rank;
    snprintf(mi->kernel, sizeof mi->kernel, "%s", dnnl_isa_name(dnnl_get_effective_cpu_isa(), &rank));
    int want;
    if (ob_expected(&want) && rank < want) {
        mi->below = true;
        snprintf(mi->note, sizeof mi->note, "oneDNN runs its '%s' kernels but this CPU has %s", mi->kernel,
                 coil_cpu_features_string());
    }
#endif
}

static _Atomic uint64_t matrix_failures;

uint64_t coil_matrix_failures(void)
{
    return atomic_load(&matrix_failures);
}

void coil_matrix_sgemm(coil_matrix_lib_t l, int64_t T, int64_t n, int64_t K, const float *x, int64_t ldx,
                       const float *W, float beta, float *y, int64_t ldy)
{
#ifdef COIL_HAVE_ONEDNN
    if (l == COIL_MATRIX_ONEDNN) {
        /* oneDNN threads with OpenMP up to omp_get_max_threads(): keep it on
         * this thread (coil's pool does the threading). */
        const int saved = omp_get_max_threads();
        if (saved > 1)
            omp_set_num_threads(1);
        if (dnnl_sgemm('N', 'T', T, n, K, 1.0f, x, ldx, W, K, beta, y, ldy) != dnnl_success)
            atomic_fetch_add(&matrix_failures, 1);
        if (saved > 1)
            omp_set_num_threads(saved);
        return;
    }
#endif
    (void)l;
    if (T == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, (int)K, 1.0f, W, (int)K, x, 1, beta, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)n, (int)K, 1.0f, x, (int)ldx, W, (int)K,
                    beta, y, (int)ldy);
}
