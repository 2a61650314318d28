/* faultvfs.h -- a fault-injecting SQLite VFS for the tests (issue 16).
 *
 * "faultvfs" wraps the default VFS (unix) and counts the operations that
 * change a file: xWrite, xSync and xTruncate, over every file SQLite opens
 * through it (database, WAL, journals).  Armed with fv_arm(mode, n), the
 * n-th such operation (1-based, counted from the arming) fails:
 *
 *   FV_IOERR   that write/sync/truncate returns SQLITE_IOERR_WRITE / _FSYNC /
 *              _TRUNCATE and does nothing
 *   FV_FULL    only writes are counted; that write returns SQLITE_FULL
 *   FV_CRASH   a power cut there: that operation and everything after it
 *              (writes, syncs, truncates, deletes) fail with SQLITE_IOERR
 *              and change nothing; fv_crash_restore() then puts every file
 *              back to what it held at its last xSync -- every write not
 *              synced is dropped -- and deletes the -shm files (shared
 *              memory does not survive a power cut).
 *
 * With `persist` the IOERR / FULL fault stays on for every later counted
 * operation (a dead disk, a full disk); without it only the n-th fails.
 * Files are tracked by path, so a file closed and reopened keeps its
 * last-synced image.  xSync records the durable image but does not call
 * fsync (durability is simulated; the sweeps run at memory speed) unless
 * FV_REAL_SYNC is set in the environment.  Single-threaded: the tests use one connection at a time.
 */
#ifndef COIL_TESTS_FAULTVFS_H
#define COIL_TESTS_FAULTVFS_H

typedef enum fv_mode { FV_OFF = 0, FV_IOERR, FV_FULL, FV_CRASH } fv_mode_t;

/* Registers "faultvfs" (not as the default).  0 or an SQLite error code. */
int fv_register(void);
/* Starts counting from 0; the n-th counted operation faults (n <= 0: count
 * only, never fault). */
void fv_arm(fv_mode_t mode, long n, int persist);
/* A power cut now, whatever is armed: every later change fails and
 * fv_crash_restore() drops what was not synced. */
void fv_crash_now(void);
/* Stops faulting (counting goes on). */
void fv_disarm(void);
/* Counted operations since the last fv_arm. */
long fv_count(void);
/* Faults injected since the last fv_arm (for FV_CRASH: 1 once crashed). */
long fv_fired(void);
/* After FV_CRASH fired and every connection is closed: drops all unsynced
 * writes as described above (keep_unsynced: keeps them, as when only the
 * process died and the OS wrote its cache out later), deletes the -shm
 * files, forgets the tracked files and disarms.  0, or -1 if a file could
 * not be restored. */
int fv_crash_restore(int keep_unsynced);
/* Forgets every tracked file's image (call between independent runs). */
void fv_reset(void);
#endif
