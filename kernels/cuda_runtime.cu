/* cuda_runtime.cu -- device contexts, memory, copies, checkpoints and the
 * cuBLAS matrix products of the CUDA backend. */
#include "cuda_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cuBLAS is opened with dlopen when the first context is made, not linked:
 * its 500 MB of libraries would cost every coil process ~150 ms at start,
 * CPU runs included.  The CUDA runtime is linked statically (cudart_static). */
#ifndef COIL_CUDA_LIBDIR
#define COIL_CUDA_LIBDIR "/usr/local/cuda/lib64"
#endif
static struct {
    decltype(&cublasCreate_v2) create;
    decltype(&cublasDestroy_v2) destroy;
    decltype(&cublasSetStream_v2) set_stream;
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                              const void *, cudaDataType, int, const void *, cudaDataType, int, const void *, void *,
                              cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t); /* the 32-bit one */
    decltype(&cublasGetStatusString) status_string;
    char why[400];
    int ok;
} blas;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_load(void)
{
    const char *names[] = {COIL_CUDA_LIBDIR "/libcublas.so", "libcublas.so", "libcublas.so.13", "libcublas.so.12"};
    void *h = NULL;
    const char *env = getenv("COIL_CUBLAS");
    if (env && *env)
        h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
    for (size_t i = 0; !h && i < sizeof names / sizeof names[0]; i++)
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(blas.why, sizeof blas.why, "cannot load cuBLAS (libcublas.so in %s or on the loader path; $COIL_CUBLAS "
                 "names another): %s", COIL_CUDA_LIBDIR, e ? e : "not found");
        return;
    }
    blas.create = (decltype(blas.create))dlsym(h, "cublasCreate_v2");
    blas.destroy = (decltype(blas.destroy))dlsym(h, "cublasDestroy_v2");
    blas.set_stream = (decltype(blas.set_stream))dlsym(h, "cublasSetStream_v2");
    blas.gemm_ex = (decltype(blas.gemm_ex))dlsym(h, "cublasGemmEx");
    blas.status_string = (decltype(blas.status_string))dlsym(h, "cublasGetStatusString");
    if (!blas.create || !blas.destroy || !blas.set_stream || !blas.gemm_ex || !blas.status_string) {
        snprintf(blas.why, sizeof blas.why, "the cuBLAS library found lacks cublasCreate_v2/cublasGemmEx/...");
        return;
    }
    blas.ok = 1;
}

static int no_device(cudaError_t e)
{
    return e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorInvalidDevice ||
           e == cudaErrorDevicesUnavailable || e == cudaErrorSystemDriverMismatch ||
           e == cudaErrorCompatNotSupportedOnDevice || e == cudaErrorStubLibrary || e == cudaErrorInitializationError;
}

int coil_cuda_fail(coil_err_t *err, cudaError_t e, const char *what)
{
    (void)cudaGetLastError(); /* clear a non-sticky error so the context stays usable */
    if (e == cudaErrorMemoryAllocation)
        return coil_err_set(err, COIL_ENOMEM, "out of device memory: %s (%s)", what, cudaGetErrorString(e));
    if (no_device(e))
        return coil_err_set(err, COIL_ENOTFOUND, "no CUDA device: %s: %s (%s)", what, cudaGetErrorString(e),
                            cudaGetErrorName(e));
    return coil_err_set(err, COIL_EIO, "CUDA error in %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

static int blas_fail(coil_err_t *err, cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_ALLOC_FAILED)
        return coil_err_set(err, COIL_ENOMEM, "out of device memory in cuBLAS: %s", what);
    return coil_err_set(err, COIL_EIO, "cuBLAS error in %s: %s (status %d)", what,
                        blas.status_string ? blas.status_string(s) : "?", (int)s);
}

int coil_cuda_device_count(int *n, coil_err_t *err)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    *n = 0;
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return coil_err_set(err, COIL_ENOTFOUND, "no CUDA device: cudaGetDeviceCount: %s (%s)", cudaGetErrorString(e),
                            cudaGetErrorName(e));
    }
    if (count <= 0)
        return coil_err_set(err, COIL_ENOTFOUND, "no CUDA device: the driver reports none");
    *n = count;
    return 0;
}

coil_cuda_t *coil_cuda_open(int device, coil_err_t *err)
{
    int n;
    if (coil_cuda_device_count(&n, err))
        return NULL;
    if (device < 0 || device >= n) {
        coil_err_set(err, COIL_ENOTFOUND, "no CUDA device %d (this machine has %d)", device, n);
        return NULL;
    }
    coil_cuda_t *c = (coil_cuda_t *)calloc(1, sizeof *c);
    if (!c) {
        coil_err_set(err, COIL_ENOMEM, "out of memory for a CUDA context");
        return NULL;
    }
    c->device = device;
    cudaError_t e;
    cudaDeviceProp p;
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaGetDeviceProperties(&p, device)) != cudaSuccess) {
        coil_cuda_fail(err, e, "opening the device");
        free(c);
        return NULL;
    }
    snprintf(c->name, sizeof c->name, "%.200s (sm_%d%d, %d SMs, %.1f GiB)", p.name, p.major, p.minor,
             p.multiProcessorCount, (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    c->sms = p.multiProcessorCount;
    if ((e = cudaStreamCreateWithFlags(&c->main, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->side, cudaStreamNonBlocking)) != cudaSuccess) {
        coil_cuda_fail(err, e, "creating streams");
        coil_cuda_close(&c);
        return NULL;
    }
    pthread_once(&blas_once, blas_load);
    if (!blas.ok) {
        coil_err_set(err, COIL_ENOTFOUND, "%s", blas.why);
        coil_cuda_close(&c);
        return NULL;
    }
    cublasStatus_t s = blas.create(&c->blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        c->blas = NULL;
        blas_fail(err, s, "cublasCreate");
        coil_cuda_close(&c);
        return NULL;
    }
    blas.set_stream(c->blas, c->main);
    c->math = COIL_CUDA_MATH_F32;
    return c;
}

void coil_cuda_close(coil_cuda_t **pc)
{
    coil_cuda_t *c;
    if (!pc || !(c = *pc))
        return;
    cudaSetDevice(c->device);
    if (c->main)
        cudaStreamSynchronize(c->main);
    if (c->side)
        cudaStreamSynchronize(c->side);
    if (c->blas)
        blas.destroy(c->blas);
    if (c->main)
        cudaStreamDestroy(c->main);
    if (c->side)
        cudaStreamDestroy(c->side);
    free(c);
    *pc = NULL;
}

const char *coil_cuda_device_name(const coil_cuda_t *c) { return c->name; }
int coil_cuda_sm_count(const coil_cuda_t *c) { return c->sms; }
void coil_cuda_set_math(coil_cuda_t *c, coil_cuda_math_t m) { c->math = m; }
coil_cuda_math_t coil_cuda_get_math(const coil_cuda_t *c) { return c->math; }

int coil_cuda_mem_info(coil_cuda_t *c, size_t *free_bytes, size_t *total_bytes, coil_err_t *err)
{
    cudaSetDevice(c->device);
    cudaError_t e = cudaMemGetInfo(free_bytes, total_bytes);
    return e == cudaSuccess ? 0 : coil_cuda_fail(err, e, "cudaMemGetInfo");
}

/* ---- memory ------------------------------------------------------------- */

static double mib(size_t b) { return (double)b / (1024.0 * 1024.0); }

coil_cuda_buf_t *coil_cuda_alloc(coil_cuda_t *c, size_t bytes, const char *what, coil_err_t *err)
{
    coil_cuda_buf_t *b = (coil_cuda_buf_t *)calloc(1, sizeof *b);
    if (!b) {
        coil_err_set(err, COIL_ENOMEM, "out of host memory for a device buffer handle");
        return NULL;
    }
    cudaSetDevice(c->device);
    cudaError_t e = cudaMalloc(&b->ptr, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        if (e == cudaErrorMemoryAllocation)
            coil_err_set(err, COIL_ENOMEM, "out of device memory: %s needs %.1f MiB, %.1f MiB free of %.1f MiB on %s",
                         what ? what : "a buffer", mib(bytes), mib(fr), mib(tot), c->name);
        else
            coil_cuda_fail(err, e, what ? what : "cudaMalloc");
        free(b);
        return NULL;
    }
    b->ctx = c;
    b->bytes = bytes;
    return b;
}

void coil_cuda_free(coil_cuda_buf_t **pb)
{
    coil_cuda_buf_t *b;
    if (!pb || !(b = *pb))
        return;
    cudaSetDevice(b->ctx->device);
    cudaFree(b->ptr); /* implicitly synchronises with work using it */
    free(b);
    *pb = NULL;
}

void *coil_cuda_ptr(const coil_cuda_buf_t *b) { return b->ptr; }
size_t coil_cuda_size(const coil_cuda_buf_t *b) { return b->bytes; }

static int range(const coil_cuda_buf_t *b, size_t off, size_t bytes, const char *what, coil_err_t *err)
{
    if (off > b->bytes || bytes > b->bytes - off)
        return coil_err_set(err, COIL_EINVAL, "%s: bytes [%zu, %zu + %zu) are outside the %zu-byte device buffer",
                            what, off, off, bytes, b->bytes);
    return 0;
}

int coil_cuda_upload(coil_cuda_t *c, coil_cuda_buf_t *dst, size_t off, const void *src, size_t bytes,
                     coil_err_t *err)
{
    int rc = range(dst, off, bytes, "upload", err);
    if (rc || !bytes)
        return rc;
    cudaError_t e = cudaMemcpyAsync((char *)dst->ptr + off, src, bytes, cudaMemcpyHostToDevice, c->main);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(c->main); /* src is the caller's again */
    return e == cudaSuccess ? 0 : coil_cuda_fail(err, e, "upload");
}

int coil_cuda_download(coil_cuda_t *c, void *dst, const coil_cuda_buf_t *src, size_t off, size_t bytes,
                       coil_err_t *err)
{
    int rc = range(src, off, bytes, "download", err);
    if (rc || !bytes)
        return rc;
    cudaError_t e = cudaMemcpyAsync(dst, (const char *)src->ptr + off, bytes, cudaMemcpyDeviceToHost, c->main);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(c->main);
    return e == cudaSuccess ? 0 : coil_cuda_fail(err, e, "download");
}

int coil_cuda_copy(coil_cuda_t *c, coil_cuda_buf_t *dst, size_t doff, const coil_cuda_buf_t *src, size_t soff,
                   size_t bytes, coil_err_t *err)
{
    int rc = range(dst, doff, bytes, "device copy (destination)", err);
    if (!rc)
        rc = range(src, soff, bytes, "device copy (source)", err);
    if (rc || !bytes)
        return rc;
    cudaError_t e = cudaMemcpyAsync((char *)dst->ptr + doff, (const char *)src->ptr + soff, bytes,
                                    cudaMemcpyDeviceToDevice, c->main);
    return e == cudaSuccess ? 0 : coil_cuda_fail(err, e, "device copy");
}

int coil_cuda_zero(coil_cuda_t *c, coil_cuda_buf_t *dst, size_t off, size_t bytes, coil_err_t *err)
{
    int rc = range(dst, off, bytes, "zero", err);
    if (rc || !bytes)
        return rc;
    cudaError_t e = cudaMemsetAsync((char *)dst->ptr + off, 0, bytes, c->main);
    return e == cudaSuccess ? 0 : coil_cuda_fail(err, e, "zero");
}

int coil_cuda_sync(coil_cuda_t *c, coil_err_t *err)
{
    cudaError_t e = cudaStreamSynchronize(c->main);
    if (e == cudaSuccess)
        e = cudaGetLastError();
    return e == cudaSuccess ? 0 : coil_cuda_fail(err, e, "a queued kernel");
}

void *coil_cuda_host_alloc(coil_cuda_t *c, size_t bytes, coil_err_t *err)
{
    void *p = NULL;
    cudaSetDevice(c->device);
    cudaError_t e = cudaMallocHost(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        coil_err_set(err, COIL_ENOMEM, "out of pinned host memory: %.1f MiB (%s)", mib(bytes), cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

void coil_cuda_host_free(void *p)
{
    if (p)
        cudaFreeHost(p);
}

/* ---- checkpoints -------------------------------------------------------------- */

struct coil_cuda_ckpt {
    coil_cuda_buf_t *snap; /* device snapshot */
    void *host;            /* pinned */
    size_t cap, bytes;
    cudaEvent_t copied, done;
    int pending;
};

coil_cuda_ckpt_t *coil_cuda_ckpt_new(coil_cuda_t *c, size_t bytes, coil_err_t *err)
{
    coil_cuda_ckpt_t *k = (coil_cuda_ckpt_t *)calloc(1, sizeof *k);
    if (!k) {
        coil_err_set(err, COIL_ENOMEM, "out of memory for a checkpoint");
        return NULL;
    }
    k->cap = bytes;
    if (!(k->snap = coil_cuda_alloc(c, bytes, "the checkpoint snapshot", err)) ||
        !(k->host = coil_cuda_host_alloc(c, bytes, err))) {
        coil_cuda_ckpt_free(&k);
        return NULL;
    }
    cudaError_t e;
    if ((e = cudaEventCreateWithFlags(&k->copied, cudaEventDisableTiming)) != cudaSuccess ||
        (e = cudaEventCreateWithFlags(&k->done, cudaEventDisableTiming)) != cudaSuccess) {
        coil_cuda_fail(err, e, "creating checkpoint events");
        coil_cuda_ckpt_free(&k);
        return NULL;
    }
    return k;
}

void coil_cuda_ckpt_free(coil_cuda_ckpt_t **pk)
{
    coil_cuda_ckpt_t *k;
    if (!pk || !(k = *pk))
        return;
    if (k->pending)
        cudaEventSynchronize(k->done);
    if (k->copied)
        cudaEventDestroy(k->copied);
    if (k->done)
        cudaEventDestroy(k->done);
    coil_cuda_host_free(k->host);
    coil_cuda_free(&k->snap);
    free(k);
    *pk = NULL;
}

int coil_cuda_ckpt_start(coil_cuda_t *c, coil_cuda_ckpt_t *k, const coil_cuda_buf_t *src, size_t off, size_t bytes,
                         coil_err_t *err)
{
    if (bytes > k->cap)
        return coil_err_set(err, COIL_EINVAL, "checkpoint of %zu bytes does not fit its %zu-byte buffers", bytes,
                            k->cap);
    int rc = range(src, off, bytes, "checkpoint", err);
    if (rc)
        return rc;
    cudaError_t e = cudaSuccess;
    if (k->pending) /* the snapshot is still being read by the side stream */
        e = cudaStreamWaitEvent(c->main, k->done, 0);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(coil_cuda_ptr(k->snap), (const char *)src->ptr + off, bytes, cudaMemcpyDeviceToDevice,
                            c->main);
    if (e == cudaSuccess)
        e = cudaEventRecord(k->copied, c->main);
    if (e == cudaSuccess)
        e = cudaStreamWaitEvent(c->side, k->copied, 0);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(k->host, coil_cuda_ptr(k->snap), bytes, cudaMemcpyDeviceToHost, c->side);
    if (e == cudaSuccess)
        e = cudaEventRecord(k->done, c->side);
    if (e != cudaSuccess)
        return coil_cuda_fail(err, e, "starting a checkpoint download");
    k->bytes = bytes;
    k->pending = 1;
    return 0;
}

int coil_cuda_ckpt_wait(coil_cuda_t *c, coil_cuda_ckpt_t *k, const void **host, size_t *bytes, coil_err_t *err)
{
    (void)c;
    if (!k->pending)
        return coil_err_set(err, COIL_ESTATE, "no checkpoint download was started");
    cudaError_t e = cudaEventSynchronize(k->done);
    if (e != cudaSuccess)
        return coil_cuda_fail(err, e, "waiting for a checkpoint download");
    k->pending = 0;
    *host = k->host;
    if (bytes)
        *bytes = k->bytes;
    return 0;
}

/* ---- matrix products ------------------------------------------------------------ */

int coil_cuda_linear(coil_cuda_t *c, const float *W, int64_t M, int64_t K, const float *bias, const float *x,
                     int64_t ldx, float *y, int64_t ldy, int64_t T, coil_err_t *err)
{
    if (M <= 0 || K <= 0 || T < 0 || ldx < K || ldy < M)
        return coil_err_set(err, COIL_EINVAL, "linear: invalid shape M=%lld K=%lld T=%lld ldx=%lld ldy=%lld",
                            (long long)M, (long long)K, (long long)T, (long long)ldx, (long long)ldy);
    if (M > INT32_MAX || K > INT32_MAX || T > INT32_MAX || ldx > INT32_MAX || ldy > INT32_MAX)
        return coil_err_set(err, COIL_ETOOBIG, "linear: a dimension is above 2^31-1");
    if (T == 0)
        return 0;
    float beta = 0.0f;
    if (bias) {
        int rc = coil_cuda_bias_rows(c, y, ldy, bias, T, M, err);
        if (rc)
            return rc;
        beta = 1.0f;
    }
    const float alpha = 1.0f;
    cublasComputeType_t ct = c->math == COIL_CUDA_MATH_TF32   ? CUBLAS_COMPUTE_32F_FAST_TF32
                             : c->math == COIL_CUDA_MATH_BF16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                                              : CUBLAS_COMPUTE_32F;
    /* Row-major y(T, M) = x(T, K) W^T is column-major y^T(M, T) = W^T(M, K) x^T(K, T):
     * W row-major (M, K) is column-major (K, M), used transposed. */
    cublasStatus_t s = blas.gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)M, (int)T, (int)K, &alpha, W, CUDA_R_32F,
                                    (int)K, x, CUDA_R_32F, (int)ldx, &beta, y, CUDA_R_32F, (int)ldy, ct,
                                      CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? 0 : blas_fail(err, s, "cublasGemmEx");
}
