/* sampling.h -- choosing the next token from logits.
 *
 * temperature <= 0 is greedy (argmax, lowest id on ties); otherwise softmax
 * at that temperature, restricted to the smallest set of tokens whose
 * probability reaches top_p (nucleus sampling), drawn with a seeded PRNG so a
 * run is reproducible.  Only ids below n_valid are ever chosen: a model's
 * vocabulary is often padded past the tokenizer's (mamba-130m: 50280 rows,
 * 50277 tokens).
 */
#ifndef COIL_SAMPLING_H
#define COIL_SAMPLING_H

#include <stdint.h>

#include "error.h"

typedef struct coil_sampler_options {
    float temperature; /* <= 0: greedy */
    float top_p;       /* (0, 1]; 1 = no truncation */
    uint64_t seed;
    int64_t n_valid;   /* ids >= n_valid are never sampled */
} coil_sampler_options_t;

typedef struct coil_sampler coil_sampler_t;

coil_sampler_t *coil_sampler_new(const coil_sampler_options_t *opt, int64_t vocab, coil_err_t *err);
void coil_sampler_destroy(coil_sampler_t **s);
/* Picks an id in [0, min(n_valid, vocab)) from logits (vocab floats). */
int32_t coil_sampler_sample(coil_sampler_t *s, const float *logits);

#endif
