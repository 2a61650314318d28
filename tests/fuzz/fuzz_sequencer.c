/* fuzz_sequencer.c -- coild's ingest part sequencer (coil_spool_part, src/spool.h).
 *
 * The input is a script of ingest requests from 4 clients (client keys of
 * different lengths, one a prefix of another) about 4 document names:
 *   byte 0          the document limit: max_document_bytes = byte * 8
 *   then per request:
 *     byte  op      bits 0-1 client, 2-3 name, 4 last, 5-7 which part number:
 *                   0,7 the expected one, 1 -1 (a whole document), 2 part 0,
 *                   3 expected + 1, 4 expected - 1, 5 a varint that follows,
 *                   6 INT64_MAX
 *     [varint]      (part mode 5) LEB128, at most 9 bytes
 *     byte  len     then len bytes of text (fewer at the end of the input)
 * Each request goes to the sequencer and to a model of it kept here (uploads
 * by (client, name): the next part expected, the text so far, the step of
 * its last part).  The set's limits are small so that the scripts reach
 * them: 2 uploads in progress per client, 5 in all, and an upload with no
 * part for 8 steps is expired (the clock is the step number; before each
 * request coil_spool_expire runs, as coild's loop does).
 * Properties: the result is the model's (taken / complete / discarded, and
 * why: COIL_EINVAL, COIL_ETOOBIG, COIL_EBUSY, with a message); expiry drops
 * exactly the model's idle uploads; a taken part reports the
 * part and the bytes so far; a complete upload's file holds exactly the text
 * of its parts in order; the number of uploads in progress is the model's;
 * after the set is freed no spool file and no file descriptor is left. */
#include "fuzz.h"
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define N_CLIENTS 4
#define N_NAMES 4
#define MAX_PER_CLIENT 2
#define MAX_TOTAL 5
#define IDLE_STEPS 8

static const struct {
    const char *key;
    size_t len;
} clients[N_CLIENTS] = {{"\x01" "A", 2}, {"\x01" "AB", 3}, {"\x00" "A", 2}, {"\x01" "A\0", 3}};
static const char *const names[N_NAMES] = {"doc", "doc2", "", "a/../b \xc3\xa9"};

static char dir[4096];

static int count_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        abort();
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* A spool directory of this input's own, removed when it ends (libFuzzer
 * leaves without running atexit handlers). */
static void make_dir(void)
{
    fuzz_shm_dir("seq", dir); /* tmpfs when there is one: the sequencer fsyncs every complete upload */
}

typedef struct {
    int active;
    int64_t next;
    unsigned char *text;
    size_t len;
    int last_step;
} upload_t;

static void model_drop(upload_t *u, size_t *n_active)
{
    if (u->active) {
        u->active = 0;
        (*n_active)--;
    }
    free(u->text);
    u->text = NULL;
    u->len = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    make_dir();
    int fds0 = count_entries("/proc/self/fd");
    int64_t max_bytes = (int64_t)data[0] * 8;
    size_t at = 1;
    coil_err_t err = {0};
    const coil_spool_limits_t lim = {.max_per_client = MAX_PER_CLIENT, .max_total = MAX_TOTAL, .idle_ms = IDLE_STEPS};
    coil_spool_set_t *s = coil_spool_set_new(dir, &lim, &err);
    FUZZ_CHECK(s != NULL, "%s", err.msg);
    upload_t up[N_CLIENTS][N_NAMES];
    memset(up, 0, sizeof up);
    size_t n_active = 0;

    for (int step = 0; at < size && step < 4096; step++) {
        size_t want_gone = 0;
        for (int c = 0; c < N_CLIENTS; c++)
            for (int nm = 0; nm < N_NAMES; nm++)
                if (up[c][nm].active && step - up[c][nm].last_step >= IDLE_STEPS) {
                    model_drop(&up[c][nm], &n_active);
                    want_gone++;
                }
        size_t gone = coil_spool_expire(s, step);
        FUZZ_CHECK(gone == want_gone, "step %d: %zu uploads expired, want %zu", step, gone, want_gone);
        uint8_t op = data[at++];
        int c = op & 3, nm = (op >> 2) & 3, last = (op >> 4) & 1, mode = op >> 5;
        upload_t *u = &up[c][nm];
        int64_t expected = u->active ? u->next : 0, part;
        switch (mode) {
        case 1: part = -1; break;
        case 2: part = 0; break;
        case 3: part = expected + 1; break;
        case 4: part = expected - 1; break;
        case 5: {
            uint64_t v = 0;
            for (int sh = 0; sh < 63 && at < size; sh += 7) {
                uint8_t b = data[at++];
                v |= (uint64_t)(b & 0x7f) << sh;
                if (!(b & 0x80))
                    break;
            }
            part = (int64_t)(v & INT64_MAX);
            break;
        }
        case 6: part = INT64_MAX; break;
        default: part = expected; break;
        }
        size_t len = at < size ? data[at++] : 0;
        if (len > size - at)
            len = size - at;
        const char *text = (const char *)data + at;
        at += len;

        /* the model */
        int64_t p = part < 0 ? 0 : part;
        size_t mine = 0;
        for (int k = 0; k < N_NAMES; k++)
            mine += up[c][k].active;
        int want; /* 0 taken, 1 complete, else the error */
        if (!u->active && p != 0)
            want = COIL_EINVAL;
        else if (!u->active && !last && (n_active >= MAX_TOTAL || mine >= MAX_PER_CLIENT))
            want = COIL_EBUSY;
        else if (u->active && p != u->next)
            want = COIL_EINVAL;
        else if ((int64_t)(u->active ? u->len : 0) + (int64_t)len > max_bytes)
            want = COIL_ETOOBIG;
        else
            want = last ? 1 : 0;

        coil_spool_result_t res;
        coil_err_clear(&err);
        int rc = coil_spool_part(s, clients[c].key, clients[c].len, names[nm], part, last, len ? text : NULL, len,
                                 max_bytes, step, &res, &err);
        FUZZ_CHECK(rc == want, "step %d: client %d name %d part %lld last %d len %zu: got %d (%s), want %d", step,
                   c, nm, (long long)part, last, len, rc, err.msg, want);
        if (rc < 0) {
            FUZZ_CHECK(err.code == rc && err.msg[0], "step %d: error %d without a message", step, rc);
            FUZZ_CHECK(res.path == NULL, "step %d: a path with an error", step);
            model_drop(u, &n_active); /* COIL_EBUSY: there was none */
        } else {
            if (!u->active) {
                u->active = 1;
                n_active++;
            }
            unsigned char *t = realloc(u->text, u->len + len + 1);
            if (!t)
                abort();
            u->text = t;
            memcpy(u->text + u->len, text, len);
            u->len += len;
            u->next = p + 1;
            u->last_step = step;
            FUZZ_CHECK(res.part == p && res.bytes == (int64_t)u->len, "step %d: reported part %lld bytes %lld, "
                       "want %lld %zu", step, (long long)res.part, (long long)res.bytes, (long long)p, u->len);
            if (rc == 1) {
                FUZZ_CHECK(res.path != NULL, "step %d: complete without a file", step);
                size_t flen = 0;
                void *got = tu_read(res.path, &flen);
                FUZZ_CHECK(got != NULL, "step %d: cannot read %s", step, res.path);
                FUZZ_CHECK(flen == u->len && (flen == 0 || memcmp(got, u->text, flen) == 0),
                           "step %d: the spooled file (%zu bytes) is not the parts' text (%zu bytes)", step, flen,
                           u->len);
                free(got);
                unlink(res.path);
                free(res.path);
                free(u->text);
                u->text = NULL;
                u->len = 0;
                u->active = 0;
                n_active--;
            } else {
                FUZZ_CHECK(res.path == NULL, "step %d: a path before the last part", step);
            }
        }
        FUZZ_CHECK(coil_spool_set_count(s) == n_active, "step %d: %zu uploads in progress, want %zu", step,
                   coil_spool_set_count(s), n_active);
        FUZZ_CHECK(count_entries(dir) == (int)n_active, "step %d: %d spool files for %zu uploads", step,
                   count_entries(dir), n_active);
    }
    coil_spool_set_free(s);
    for (int c = 0; c < N_CLIENTS; c++)
        for (int nm = 0; nm < N_NAMES; nm++)
            free(up[c][nm].text);
    FUZZ_CHECK(count_entries(dir) == 0, "%d spool files left after the set is freed", count_entries(dir));
    rmdir(dir);
    FUZZ_CHECK(count_entries("/proc/self/fd") == fds0, "file descriptors leaked: %d open, %d before",
               count_entries("/proc/self/fd"), fds0);
    return 0;
}
