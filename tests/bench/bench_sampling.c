/* bench_sampling.c -- one draw of the sampler on a real vocabulary's size (built by make, not run by tests).
 *
 *   bench_sampling [VOCAB [DRAWS]]          (defaults: 50280, mamba-130m's padded vocabulary; 400)
 *
 * Logits are Gumbel noise at two scales: peaked (scale 4: a few ids hold
 * most of the mass, as after a language model's last layer) and flat
 * (scale 0.5: the nucleus is a large part of the vocabulary).  For each, at
 * temperature 0.8 and top_p 1 (no nucleus), 0.95 and 0.9, it prints the time
 * of one coil_sampler_sample and, measured in the same run, the time of the
 * full sort of the vocabulary that a nucleus by sorting needs (qsort of
 * (p, id) pairs): the ceiling the selection removes.  One thread.
 */
#include "sampling.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct {
    float p;
    int32_t id;
} pair_t;

static int cmp_pair(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    if (x->p != y->p)
        return x->p > y->p ? -1 : 1;
    return x->id - y->id;
}

int main(int argc, char **argv)
{
    const long V = argc > 1 ? atol(argv[1]) : 50280, draws = argc > 2 ? atol(argv[2]) : 400;
    if (V < 2 || draws < 1) {
        fprintf(stderr, "usage: bench_sampling [VOCAB >= 2 [DRAWS >= 1]]\n");
        return 2;
    }
    char cpu[512] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            const char *c = strchr(line, ':');
            snprintf(cpu, sizeof cpu, "%s", c ? c + 2 : line);
            cpu[strcspn(cpu, "\n")] = '\0';
            break;
        }
    if (f)
        fclose(f);
    printf("bench_sampling: %s; vocabulary %ld, %ld draws per setting, temperature 0.8, one thread\n", cpu, V,
           draws);
    float *lg = malloc((size_t)V * sizeof *lg);
    pair_t *pairs = malloc((size_t)V * sizeof *pairs);
    if (!lg || !pairs) {
        fprintf(stderr, "bench_sampling: out of memory\n");
        return 1;
    }
    static const struct {
        const char *name;
        double scale;
    } shapes[2] = {{"peaked", 4.0}, {"flat", 0.5}};
    static const float top_ps[3] = {1.0f, 0.95f, 0.9f};
    printf("%-7s %6s %14s %16s\n", "logits", "top_p", "ms per draw", "full sort, ms");
    uint64_t g = 7;
    for (int s = 0; s < 2; s++) {
        for (long v = 0; v < V; v++) {
            g ^= g << 13, g ^= g >> 7, g ^= g << 17;
            double u = ((double)(g >> 11) + 0.5) * 0x1.0p-53;
            lg[v] = (float)(shapes[s].scale * -log(-log(u)));
        }
        for (int k = 0; k < 3; k++) {
            coil_err_t err = {0};
            coil_sampler_options_t o = {.temperature = 0.8f, .top_p = top_ps[k], .seed = 1, .n_valid = V};
            coil_sampler_t *smp = coil_sampler_new(&o, V, &err);
            if (!smp) {
                fprintf(stderr, "bench_sampling: %s\n", err.msg);
                return 1;
            }
            long sink = 0;
            double t0 = now();
            for (long d = 0; d < draws; d++)
                sink += coil_sampler_sample(smp, lg);
            double per = (now() - t0) / (double)draws;
            coil_sampler_destroy(&smp);
            /* the sort a nucleus by sorting makes on every draw */
            const long sorts = draws / 8 + 1;
            t0 = now();
            for (long d = 0; d < sorts; d++) {
                for (long v = 0; v < V; v++)
                    pairs[v] = (pair_t){(float)exp((lg[v] - lg[d % V]) * 1.25), (int32_t)v};
                qsort(pairs, (size_t)V, sizeof *pairs, cmp_pair);
                sink += pairs[0].id;
            }
            double sort = (now() - t0) / (double)sorts;
            printf("%-7s %6.2f %14.3f %16.3f%s\n", shapes[s].name, (double)top_ps[k], per * 1e3, sort * 1e3,
                   sink == -1 ? " " : "");
        }
    }
    free(lg);
    free(pairs);
    return 0;
}
