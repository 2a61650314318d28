/* cpu_internal.h -- internal to kernels/: the matrix library call and the
 * OpenBLAS core check (kernels/matrix.c). */
#ifndef COIL_CPU_INTERNAL_H
#define COIL_CPU_INTERNAL_H

#include <stdint.h>

#include "backend.h"

/* y(T, n) = x(T, K) . W(n, K)^T + beta * y, single-threaded, with library l. */
void coil_matrix_sgemm(coil_matrix_lib_t l, int64_t T, int64_t n, int64_t K, const float *x, int64_t ldx,
                       const float *W, float beta, float *y, int64_t ldy);

/* OpenBLAS's core name now. */
const char *coil_openblas_core(void);
/* 1 when OpenBLAS's core is below what cpuid says (then, with fix, and when
 * OPENBLAS_CORETYPE is unset, re-selects it); 0 when fine. */
int coil_openblas_check(int fix);

#endif
