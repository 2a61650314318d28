/* convert.h -- F16 / BF16 <-> F32 conversion (IEEE 754 binary16, bfloat16).
 * Exact: every F16/BF16 value is representable in F32; NaN payloads keep quiet. */
#ifndef COIL_CONVERT_H
#define COIL_CONVERT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float coil_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float coil_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        u = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        u = sign;
    } else { /* subnormal: normalise */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400u));
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* dst[i] = float(src[i]) for n elements of dtype (0 = F32, 1 = F16, 2 = BF16,
 * matching coil_dtype_t).  Uses F16C/AVX2 when the CPU has them. */
void coil_convert_to_f32(int dtype, const void *src, float *dst, size_t n);

#endif
