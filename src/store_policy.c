/* store_policy.c -- when to take checkpoints and which ones to keep.
 *
 * Pure functions of positions, so the ingest loop, the store's thinning and
 * the size estimates all agree.  The rule is described in store.h.
 */
#include "store.h"

void coil_store_policy_default(coil_store_policy_t *p)
{
    p->interval = 4096;
    p->dense = 8;
}

bool coil_store_policy_keep(const coil_store_policy_t *p, int64_t pos, int64_t newest)
{
    if (pos >= newest || pos <= 0 || p->dense <= 0 || p->interval <= 0)
        return true;
    int64_t window = p->dense > INT64_MAX / p->interval ? INT64_MAX : p->interval * p->dense;
    int64_t age = newest - pos;
    if (age < window)
        return true;
    /* k = floor(log2(age / window)) + 1 = bit length of age / window */
    int k = 0;
    for (int64_t q = age / window; q; q >>= 1)
        k++;
    if (k >= 62 || p->interval > (INT64_MAX >> k))
        return false;
    return pos % (p->interval << k) == 0;
}

bool coil_store_policy_due(const coil_store_policy_t *p, int64_t last, int64_t pos)
{
    if (p->interval <= 0 || pos <= last)
        return false;
    if (last < 0)
        last = 0;
    return pos / p->interval > last / p->interval;
}

/* O(newest / interval): meant for estimates, not the hot path. */
int64_t coil_store_policy_count(const coil_store_policy_t *p, int64_t newest)
{
    int64_t n = 0;
    if (newest <= 0 || p->interval <= 0)
        return 0;
    for (int64_t pos = p->interval; pos <= newest; pos += p->interval) {
        n += coil_store_policy_keep(p, pos, newest);
        if (pos > INT64_MAX - p->interval)
            break;
    }
    if (newest % p->interval)
        n++;
    return n;
}
