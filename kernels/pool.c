/* pool.c -- the CPU backend's worker threads (see pool.h). */
#include "pool.h"

#include <limits.h>
#include <linux/futex.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256
#define SPIN_NS 50000 /* how long a waiting thread spins before it sleeps */

static struct {
    pthread_mutex_t busy;     /* held by the caller of coil_pool_for */
    pthread_mutex_t resize;   /* serialises thread creation */
    int nthreads;             /* wanted, caller included */
    int started;              /* worker threads running */
    _Atomic uint32_t gen;     /* bumped for each job: workers wait on it */
    _Atomic int64_t next;     /* next item */
    _Atomic int pending;      /* workers still in the current job */
    _Atomic uint32_t done;    /* futex word the caller sleeps on */
    int64_t n;
    coil_pool_fn fn;
    void *ctx;
    _Atomic int active;       /* workers taking part in the current job */
} P = {.busy = PTHREAD_MUTEX_INITIALIZER, .resize = PTHREAD_MUTEX_INITIALIZER, .nthreads = 0};

static void futex_wait(_Atomic uint32_t *w, uint32_t v)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Waits until *w != v: spins SPIN_NS, then sleeps. */
static void wait_change(_Atomic uint32_t *w, uint32_t v)
{
    int64_t t0 = 0;
    for (int i = 0; atomic_load_explicit(w, memory_order_acquire) == v; i++) {
        if ((i & 63) == 63) {
            int64_t t = now_ns();
            if (!t0)
                t0 = t;
            else if (t - t0 > SPIN_NS) {
                while (atomic_load_explicit(w, memory_order_acquire) == v)
                    futex_wait(w, v);
                return;
            }
        }
        cpu_relax();
    }
}

static void run_items(void)
{
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&P.next, 1, memory_order_relaxed);
        if (i >= P.n)
            return;
        P.fn(P.ctx, i);
    }
}

static void *worker(void *arg)
{
    const int id = (int)(intptr_t)arg; /* 1 .. started */
    omp_set_num_threads(1); /* a library that threads with OpenMP stays on this thread */
    uint32_t seen = 0;
    for (;;) {
        wait_change(&P.gen, seen);
        /* gen is odd while the caller writes a job: read the job between two
         * equal, even values of gen (a seqlock). */
        uint32_t g = atomic_load_explicit(&P.gen, memory_order_acquire);
        if (g & 1) {
            cpu_relax();
            continue;
        }
        const int act = atomic_load_explicit(&P.active, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&P.gen, memory_order_relaxed) != g)
            continue;
        seen = g;
        /* A worker taking part is waited for, so it never misses its job;
         * one that is not may see a later job first, and that is fine. */
        if (id < act) {
            run_items();
            if (atomic_fetch_sub_explicit(&P.pending, 1, memory_order_acq_rel) == 1) {
                atomic_fetch_add_explicit(&P.done, 1, memory_order_release);
                futex_wake(&P.done);
            }
        }
    }
    return NULL;
}

/* OMP_NUM_THREADS, else the CPUs this process may use, shared among
 * COIL_WORKERS processes when set (W processes on C cores get C / W threads
 * each, at least 1; coild does not set it: it runs one write job at a time). */
static int default_threads(void)
{
    int n = omp_get_max_threads();
    const char *w = getenv("COIL_WORKERS");
    if (w && atoi(w) > 1 && !getenv("OMP_NUM_THREADS"))
        n /= atoi(w);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

/* A forked child has none of the parent's workers: start afresh. */
static void after_fork_child(void)
{
    pthread_mutex_init(&P.busy, NULL);
    pthread_mutex_init(&P.resize, NULL);
    P.started = 0;
    atomic_store(&P.gen, 0);
    atomic_store(&P.done, 0);
}

void coil_pool_set_threads(int n)
{
    pthread_mutex_lock(&P.resize);
    P.nthreads = n < 1 ? default_threads() : n > MAX_THREADS ? MAX_THREADS : n;
    pthread_mutex_unlock(&P.resize);
}

int coil_pool_threads(void)
{
    pthread_mutex_lock(&P.resize);
    if (P.nthreads < 1)
        P.nthreads = default_threads();
    int n = P.nthreads;
    pthread_mutex_unlock(&P.resize);
    return n;
}

void coil_pool_for(int64_t n, coil_pool_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    int nt = coil_pool_threads();
    if (nt > n)
        nt = (int)n;
    if (nt <= 1 || pthread_mutex_trylock(&P.busy) != 0) {
        for (int64_t i = 0; i < n; i++)
            fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&P.resize);
    static int atfork_done;
    if (!atfork_done && pthread_atfork(NULL, NULL, after_fork_child) == 0)
        atfork_done = 1;
    while (P.started < nt - 1) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &at, worker, (void *)(intptr_t)(P.started + 1)) != 0) {
            pthread_attr_destroy(&at);
            break;
        }
        pthread_attr_destroy(&at);
        P.started++;
    }
    if (nt > P.started + 1)
        nt = P.started + 1;
    pthread_mutex_unlock(&P.resize);

    atomic_fetch_add_explicit(&P.gen, 1, memory_order_acq_rel); /* odd: job being written */
    atomic_thread_fence(memory_order_release);
    P.n = n;
    P.fn = fn;
    P.ctx = ctx;
    atomic_store_explicit(&P.active, nt, memory_order_relaxed); /* workers with id < nt take part */
    atomic_store_explicit(&P.next, 0, memory_order_relaxed);
    atomic_store_explicit(&P.pending, nt - 1, memory_order_relaxed);
    const uint32_t d = atomic_load_explicit(&P.done, memory_order_relaxed);
    atomic_fetch_add_explicit(&P.gen, 1, memory_order_release); /* even: published */
    futex_wake(&P.gen);
    run_items();
    if (nt > 1)
        wait_change(&P.done, d);
    pthread_mutex_unlock(&P.busy);
}
