/* pool.h -- internal to kernels/: the CPU backend's worker threads.
 *
 * One pool per process.  coil_pool_for(n, fn, ctx) runs fn(ctx, i) for i in
 * [0, n) on the caller and the pool's threads; items are taken one at a time
 * from a shared counter (a thread that lost its core does fewer of them).
 * Waiting threads spin for a short, fixed time (~50 us) and then sleep in the
 * kernel, so a pool never burns a core it does not use (OpenMP's default
 * spins for milliseconds at every barrier, and collapses when another
 * process holds a core).  A call made while the pool is busy (engines on
 * several threads) runs on the caller alone: same results, since every kernel
 * computes each output element the same way whatever the thread count.
 */
#ifndef COIL_POOL_H
#define COIL_POOL_H

#include <stdint.h>

typedef void (*coil_pool_fn)(void *ctx, int64_t i);

/* Threads used by coil_pool_for, the caller included (>= 1). */
void coil_pool_set_threads(int n);
int coil_pool_threads(void);
void coil_pool_for(int64_t n, coil_pool_fn fn, void *ctx);

#endif
