/* faultvfs.c -- see faultvfs.h. */
#include "faultvfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The last-synced image of a file that was changed since its last sync. */
typedef struct fv_image {
    char *path;
    unsigned char *data; /* NULL with len 0: the file was empty or absent */
    size_t len;
    int dirty;           /* changed since the last sync: data is the synced image */
    struct fv_image *next;
} fv_image_t;

static struct {
    sqlite3_vfs vfs;
    sqlite3_vfs *base;
    fv_mode_t mode;
    long n, count, fired;
    int persist, crashed, real_sync;
    fv_image_t *images;
} g;

typedef struct fv_file {
    sqlite3_file base;
    const char *path; /* SQLite keeps the name valid while the file is open */
    sqlite3_file *real;
} fv_file_t;

static fv_image_t *image_of(const char *path)
{
    for (fv_image_t *im = g.images; im; im = im->next)
        if (strcmp(im->path, path) == 0)
            return im;
    fv_image_t *im = calloc(1, sizeof *im);
    if (!im || !(im->path = strdup(path)))
        abort();
    im->next = g.images;
    g.images = im;
    return im;
}

/* Before the first change after a sync: remember what the disk holds. */
static int remember(fv_file_t *f)
{
    if (!f->path)
        return SQLITE_OK; /* a temp file: never recovered, not tracked */
    fv_image_t *im = image_of(f->path);
    if (im->dirty)
        return SQLITE_OK;
    sqlite3_int64 sz = 0;
    int rc = f->real->pMethods->xFileSize(f->real, &sz);
    if (rc != SQLITE_OK)
        return rc;
    free(im->data);
    im->data = NULL;
    im->len = (size_t)sz;
    if (sz > 0) {
        if (!(im->data = malloc((size_t)sz)))
            return SQLITE_NOMEM;
        rc = f->real->pMethods->xRead(f->real, im->data, (int)sz, 0);
        if (rc != SQLITE_OK)
            return rc;
    }
    im->dirty = 1;
    return SQLITE_OK;
}

static void synced(fv_file_t *f)
{
    if (!f->path)
        return;
    fv_image_t *im = image_of(f->path);
    im->dirty = 0;
    free(im->data);
    im->data = NULL;
    im->len = 0;
}

/* Whether this counted operation faults; counts it. */
static int fault_now(int is_write)
{
    if (g.crashed)
        return 1;
    if (g.mode == FV_FULL && !is_write)
        return 0;
    g.count++;
    if (g.mode == FV_OFF || g.n <= 0)
        return 0;
    if (g.count == g.n || (g.persist && g.count > g.n && g.mode != FV_CRASH)) {
        g.fired++;
        if (g.mode == FV_CRASH)
            g.crashed = 1;
        return 1;
    }
    return 0;
}

static int fv_close(sqlite3_file *file)
{
    fv_file_t *f = (fv_file_t *)file;
    int rc = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
    return rc;
}

static int fv_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
    fv_file_t *f = (fv_file_t *)file;
    return f->real->pMethods->xRead(f->real, buf, amt, off);
}

static int fv_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
    fv_file_t *f = (fv_file_t *)file;
    if (fault_now(1))
        return g.mode == FV_FULL ? SQLITE_FULL : SQLITE_IOERR_WRITE;
    int rc = remember(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xWrite(f->real, buf, amt, off);
}

static int fv_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    fv_file_t *f = (fv_file_t *)file;
    if (fault_now(0))
        return SQLITE_IOERR_TRUNCATE;
    int rc = remember(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int fv_sync(sqlite3_file *file, int flags)
{
    fv_file_t *f = (fv_file_t *)file;
    if (fault_now(0))
        return SQLITE_IOERR_FSYNC;
    int rc = g.real_sync ? f->real->pMethods->xSync(f->real, flags) : SQLITE_OK;
    if (rc == SQLITE_OK)
        synced(f);
    return rc;
}

static int fv_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    fv_file_t *f = (fv_file_t *)file;
    return f->real->pMethods->xFileSize(f->real, size);
}

static int fv_lock(sqlite3_file *file, int lock)
{
    fv_file_t *f = (fv_file_t *)file;
    return f->real->pMethods->xLock(f->real, lock);
}

static int fv_unlock(sqlite3_file *file, int lock)
{
    fv_file_t *f = (fv_file_t *)file;
    return f->real->pMethods->xUnlock(f->real, lock);
}

static int fv_check_lock(sqlite3_file *file, int *out)
{
    fv_file_t *f = (fv_file_t *)file;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int fv_file_control(sqlite3_file *file, int op, void *arg)
{
    fv_file_t *f = (fv_file_t *)file;
    return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int fv_sector_size(sqlite3_file *file)
{
    fv_file_t *f = (fv_file_t *)file;
    return f->real->pMethods->xSectorSize(f->real);
}

static int fv_device_characteristics(sqlite3_file *file)
{
    fv_file_t *f = (fv_file_t *)file;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

/* Shared memory (the WAL index): passed through; not durable, see restore. */
static int fv_shm_map(sqlite3_file *file, int pg, int pgsz, int extend, void volatile **pp)
{
    fv_file_t *f = (fv_file_t *)file;
    return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}

static int fv_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    fv_file_t *f = (fv_file_t *)file;
    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void fv_shm_barrier(sqlite3_file *file)
{
    fv_file_t *f = (fv_file_t *)file;
    f->real->pMethods->xShmBarrier(f->real);
}

static int fv_shm_unmap(sqlite3_file *file, int delete_flag)
{
    fv_file_t *f = (fv_file_t *)file;
    return f->real->pMethods->xShmUnmap(f->real, g.crashed ? 0 : delete_flag);
}

/* No memory-mapped I/O: every page goes through xRead / xWrite. */
static int fv_fetch(sqlite3_file *file, sqlite3_int64 off, int amt, void **pp)
{
    (void)file;
    (void)off;
    (void)amt;
    *pp = NULL;
    return SQLITE_OK;
}

static int fv_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
    (void)file;
    (void)off;
    (void)p;
    return SQLITE_OK;
}

static const sqlite3_io_methods fv_io = {
    3,           fv_close,       fv_read,        fv_write,        fv_truncate,
    fv_sync,     fv_file_size,   fv_lock,        fv_unlock,       fv_check_lock,
    fv_file_control, fv_sector_size, fv_device_characteristics, fv_shm_map, fv_shm_lock,
    fv_shm_barrier, fv_shm_unmap, fv_fetch,       fv_unfetch,
};

static int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags)
{
    (void)vfs;
    fv_file_t *f = (fv_file_t *)file;
    f->real = (sqlite3_file *)(f + 1);
    f->path = name;
    int rc = g.base->xOpen(g.base, name, f->real, flags, out_flags);
    f->base.pMethods = rc == SQLITE_OK ? &fv_io : NULL;
    return rc;
}

static int fv_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    if (g.crashed)
        return SQLITE_IOERR_DELETE;
    int rc = g.base->xDelete(g.base, name, sync_dir);
    if (rc == SQLITE_OK) { /* gone for good: nothing to restore */
        fv_image_t *im = image_of(name);
        im->dirty = 0;
        free(im->data);
        im->data = NULL;
        im->len = 0;
    }
    return rc;
}

static int fv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return g.base->xAccess(g.base, name, flags, out);
}

static int fv_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return g.base->xFullPathname(g.base, name, n, out);
}

static void *fv_dlopen(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return g.base->xDlOpen(g.base, name);
}

static void fv_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
    (void)vfs;
    g.base->xDlError(g.base, n, msg);
}

static void (*fv_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    (void)vfs;
    return g.base->xDlSym(g.base, h, sym);
}

static void fv_dlclose(sqlite3_vfs *vfs, void *h)
{
    (void)vfs;
    g.base->xDlClose(g.base, h);
}

static int fv_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return g.base->xRandomness(g.base, n, out);
}

static int fv_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return g.base->xSleep(g.base, us);
}

static int fv_current_time(sqlite3_vfs *vfs, double *t)
{
    (void)vfs;
    return g.base->xCurrentTime(g.base, t);
}

static int fv_get_last_error(sqlite3_vfs *vfs, int n, char *msg)
{
    (void)vfs;
    return g.base->xGetLastError ? g.base->xGetLastError(g.base, n, msg) : 0;
}

static int fv_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *t)
{
    (void)vfs;
    return g.base->xCurrentTimeInt64(g.base, t);
}

int fv_register(void)
{
    if (g.base)
        return SQLITE_OK;
    sqlite3_vfs *base = sqlite3_vfs_find(NULL);
    if (!base)
        return SQLITE_ERROR;
    g.base = base;
    g.real_sync = getenv("FV_REAL_SYNC") != NULL;
    g.vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(fv_file_t) + base->szOsFile,
        .mxPathname = base->mxPathname,
        .zName = "faultvfs",
        .xOpen = fv_open,
        .xDelete = fv_delete,
        .xAccess = fv_access,
        .xFullPathname = fv_full_pathname,
        .xDlOpen = fv_dlopen,
        .xDlError = fv_dlerror,
        .xDlSym = fv_dlsym,
        .xDlClose = fv_dlclose,
        .xRandomness = fv_randomness,
        .xSleep = fv_sleep,
        .xCurrentTime = fv_current_time,
        .xGetLastError = fv_get_last_error,
        .xCurrentTimeInt64 = fv_current_time_int64,
    };
    return sqlite3_vfs_register(&g.vfs, 0);
}

void fv_arm(fv_mode_t mode, long n, int persist)
{
    g.mode = mode;
    g.n = n;
    g.persist = persist;
    g.count = 0;
    g.fired = 0;
    g.crashed = 0;
}

void fv_crash_now(void)
{
    g.crashed = 1;
    g.fired++;
}

void fv_disarm(void)
{
    g.mode = FV_OFF;
    g.n = 0;
}

long fv_count(void) { return g.count; }
long fv_fired(void) { return g.fired; }

static int restore_file(const fv_image_t *im)
{
    int fd = open(im->path, O_WRONLY | O_CREAT, 0644);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < im->len) {
        ssize_t w = pwrite(fd, im->data + off, im->len - off, (off_t)off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    int rc = ftruncate(fd, (off_t)im->len);
    close(fd);
    return rc;
}

int fv_crash_restore(int keep_unsynced)
{
    int rc = 0;
    for (fv_image_t *im = g.images; im; im = im->next) {
        if (!keep_unsynced && im->dirty && restore_file(im) != 0)
            rc = -1;
        /* the WAL index of the database this file belongs to */
        size_t n = strlen(im->path);
        if (n > 4 && strcmp(im->path + n - 4, "-wal") == 0)
            n -= 4;
        else if (n > 8 && strcmp(im->path + n - 8, "-journal") == 0)
            n -= 8;
        char shm[4200];
        snprintf(shm, sizeof shm, "%.*s-shm", (int)n, im->path);
        unlink(shm);
    }
    fv_reset();
    return rc;
}

void fv_reset(void)
{
    while (g.images) {
        fv_image_t *im = g.images;
        g.images = im->next;
        free(im->path);
        free(im->data);
        free(im);
    }
    g.crashed = 0;
    fv_disarm();
}
