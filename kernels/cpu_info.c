/* cpu_info.c -- what the CPU has (read with cpuid, not taken from a library),
 * and which of coil's kernel sets runs on it.
 *
 * A kernel set is usable when the CPU reports the instructions AND the OS
 * saves their registers (XGETBV), AND this build compiled it.  COIL_KERNELS
 * (portable | avx2 | avx512) forces a lower set; asking for one the CPU or the
 * build lacks is said on stderr and the best usable one is taken instead.
 */
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "config.h"
#include "cpu_internal.h"

static coil_cpu_features_t feat;
static char feat_str[256];

#if defined(__x86_64__) || defined(__i386__)
static unsigned long long xgetbv0(void)
{
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
#endif

static void append(const char *name, bool on)
{
    if (!on)
        return;
    size_t l = strlen(feat_str);
    snprintf(feat_str + l, sizeof feat_str - l, "%s%s", l ? " " : "", name);
}

static void detect(void)
{
    coil_cpu_features_t *f = &feat;
    memset(f, 0, sizeof *f);
    strcpy(f->vendor, "unknown");
    strcpy(f->brand, "unknown");
#if defined(__x86_64__) || defined(__i386__)
    unsigned a = 0, b = 0, c = 0, d = 0, max = 0;
    if (!__get_cpuid(0, &max, &b, &c, &d))
        return;
    memcpy(f->vendor, &b, 4);
    memcpy(f->vendor + 4, &d, 4);
    memcpy(f->vendor + 8, &c, 4);
    f->vendor[12] = 0;
    __get_cpuid(1, &a, &b, &c, &d);
    f->family = (int)((a >> 8) & 0xf);
    f->model = (int)((a >> 4) & 0xf);
    if (f->family == 6 || f->family == 15)
        f->model |= (int)((a >> 12) & 0xf0);
    if (f->family == 15)
        f->family += (int)((a >> 20) & 0xff);
    f->fma = (c >> 12) & 1;
    f->f16c = (c >> 29) & 1;
    const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    f->os_avx = osxsave && avx && (xcr0 & 0x6) == 0x6;
    f->os_avx512 = f->os_avx && (xcr0 & 0xe0) == 0xe0;
    f->avx = avx && f->os_avx;
    if (max >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2 = (b >> 5) & 1;
        f->avx512f = (b >> 16) & 1;
        f->avx512dq = (b >> 17) & 1;
        f->avx512bw = (b >> 30) & 1;
        f->avx512vl = (b >> 31) & 1;
        f->avx512_vnni = (c >> 11) & 1;
        f->avx512_fp16 = (d >> 23) & 1;
        f->amx = (d >> 24) & 1;
        unsigned a1 = 0, b1, c1, d1;
        if (a >= 1)
            __cpuid_count(7, 1, a1, b1, c1, d1);
        f->avx512_bf16 = (a1 >> 5) & 1;
    }
    if (!f->os_avx)
        f->avx2 = f->fma = f->f16c = false;
    if (!f->os_avx512)
        f->avx512f = f->avx512dq = f->avx512bw = f->avx512vl = f->avx512_vnni = f->avx512_bf16 =
            f->avx512_fp16 = false;
    unsigned ext = 0;
    __get_cpuid(0x80000000, &ext, &b, &c, &d);
    if (ext >= 0x80000004) {
        unsigned r[12];
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
        char br[49];
        memcpy(br, r, 48);
        br[48] = 0;
        const char *p = br;
        while (*p == ' ')
            p++;
        snprintf(f->brand, sizeof f->brand, "%s", p);
    }
#endif
    append("avx", f->avx);
    append("avx2", f->avx2);
    append("fma", f->fma);
    append("f16c", f->f16c);
    append("avx512f", f->avx512f);
    append("avx512dq", f->avx512dq);
    append("avx512bw", f->avx512bw);
    append("avx512vl", f->avx512vl);
    append("avx512_vnni", f->avx512_vnni);
    append("avx512_bf16", f->avx512_bf16);
    append("avx512_fp16", f->avx512_fp16);
    append("amx", f->amx);
    if (!feat_str[0])
        strcpy(feat_str, "none of avx/avx2/avx512");
}

const coil_cpu_features_t *coil_cpu_features(void)
{
    static int done;
    if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        detect(); /* idempotent: a race writes the same values */
        __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    }
    return &feat;
}

const char *coil_cpu_features_string(void)
{
    coil_cpu_features();
    return feat_str;
}

const char *coil_kernels_name(coil_kset_t k)
{
    switch (k) {
    case COIL_KSET_AVX2: return "avx2";
    case COIL_KSET_AVX512: return "avx512";
    default: return "portable";
    }
}

bool coil_kernels_cpu_has(coil_kset_t k)
{
    const coil_cpu_features_t *f = coil_cpu_features();
    switch (k) {
    case COIL_KSET_PORTABLE: return true;
    case COIL_KSET_AVX2: return f->avx2 && f->fma && f->f16c;
    case COIL_KSET_AVX512:
        return f->avx2 && f->fma && f->f16c && f->avx512f && f->avx512dq && f->avx512bw && f->avx512vl;
    }
    return false;
}

bool coil_kernels_built(coil_kset_t k)
{
    switch (k) {
    case COIL_KSET_PORTABLE: return true;
#ifdef COIL_HAVE_AVX2
    case COIL_KSET_AVX2: return true;
#endif
#ifdef COIL_HAVE_AVX512
    case COIL_KSET_AVX512: return true;
#endif
    default: return false;
    }
}

bool coil_kernels_available(coil_kset_t k)
{
    return coil_kernels_built(k) && coil_kernels_cpu_has(k);
}

coil_kset_t coil_kernels_best(void)
{
    for (int k = COIL_KSET_AVX512; k > COIL_KSET_PORTABLE; k--)
        if (coil_kernels_available((coil_kset_t)k))
            return (coil_kset_t)k;
    return COIL_KSET_PORTABLE;
}

int coil_kernels_parse(const char *s, coil_kset_t *out)
{
    for (int k = COIL_KSET_PORTABLE; k <= COIL_KSET_AVX512; k++)
        if (strcmp(s, coil_kernels_name((coil_kset_t)k)) == 0) {
            *out = (coil_kset_t)k;
            return 0;
        }
    return -1;
}

coil_kset_t coil_kernels_chosen(void)
{
    static int cached = -1;
    int c = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
    if (c >= 0)
        return (coil_kset_t)c;
    coil_kset_t best = coil_kernels_best(), k = best;
    const char *env = getenv("COIL_KERNELS");
    if (env && *env) {
        coil_kset_t want;
        if (coil_kernels_parse(env, &want) != 0)
            fprintf(stderr, "coil: COIL_KERNELS='%s' is not one of portable, avx2, avx512: using %s\n", env,
                    coil_kernels_name(best));
        else if (!coil_kernels_available(want))
            fprintf(stderr, "coil: COIL_KERNELS=%s but %s lacks it: using %s\n", env,
                    coil_kernels_cpu_has(want) ? "this build" : "this CPU", coil_kernels_name(best));
        else
            k = want;
    }
    __atomic_store_n(&cached, (int)k, __ATOMIC_RELEASE);
    return k;
}
