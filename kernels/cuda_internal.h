/* cuda_internal.h -- shared by the CUDA backend's .cu files only (C++). */
#ifndef COIL_CUDA_INTERNAL_H
#define COIL_CUDA_INTERNAL_H

extern "C" {
#include "error.h"
#include "safetensors.h"
}
#include "cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

struct coil_cuda {
    int device;
    char name[256];
    int sms;
    cudaStream_t main, side;
    cublasHandle_t blas;
    coil_cuda_math_t math;
};

struct coil_cuda_buf {
    coil_cuda_t *ctx;
    void *ptr;
    size_t bytes;
};

/* Sets err from a runtime error: COIL_ENOMEM for allocation failures,
 * COIL_ENOTFOUND when there is no device or driver, COIL_EIO otherwise. */
int coil_cuda_fail(coil_err_t *err, cudaError_t e, const char *what);

/* y rows (rows, cols; stride ldy) = bias: a GEMM with beta = 1 then adds to it. */
extern "C" int coil_cuda_bias_rows(coil_cuda_t *c, float *y, int64_t ldy, const float *bias, int64_t rows,
                                   int64_t cols, coil_err_t *err);

#endif
