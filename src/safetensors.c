/* safetensors.c -- validating mmap reader for the safetensors format. */
#include "safetensors.h"
#include "jsonload.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct coil_safetensors {
    char *path;
    void *map;               /* whole file, read-only */
    size_t map_size;
    coil_tensor_info_t *tensors; /* sorted by data offset */
    size_t n;
    char *names;             /* all names, NUL-separated */
    void **copies;           /* aligned copies of misaligned tensors (or NULL) */
    size_t *by_name;         /* indexes sorted by name, for find() */
};

static const struct {
    const char *name;
    size_t size;
} dtypes[COIL_DT_COUNT] = {
    [COIL_DT_F32] = {"F32", 4},  [COIL_DT_F16] = {"F16", 2},
    [COIL_DT_BF16] = {"BF16", 2}, [COIL_DT_F64] = {"F64", 8},
    [COIL_DT_I64] = {"I64", 8},  [COIL_DT_I32] = {"I32", 4},
    [COIL_DT_I16] = {"I16", 2},  [COIL_DT_I8] = {"I8", 1},
    [COIL_DT_U8] = {"U8", 1},    [COIL_DT_BOOL] = {"BOOL", 1},
    [COIL_DT_F8_E4M3] = {"F8_E4M3", 1}, [COIL_DT_F8_E5M2] = {"F8_E5M2", 1},
};

const char *coil_dtype_name(coil_dtype_t dt)
{
    return (unsigned)dt < COIL_DT_COUNT ? dtypes[dt].name : "?";
}

size_t coil_dtype_size(coil_dtype_t dt)
{
    return (unsigned)dt < COIL_DT_COUNT ? dtypes[dt].size : 0;
}

static int parse_dtype(const char *s, coil_dtype_t *out)
{
    for (int i = 0; i < COIL_DT_COUNT; i++)
        if (strcmp(s, dtypes[i].name) == 0) {
            *out = (coil_dtype_t)i;
            return 0;
        }
    return -1;
}

typedef struct {
    size_t idx;
    uint64_t begin, end;
} span_t;

static int cmp_span(const void *a, const void *b)
{
    const span_t *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name(const void *a, const void *b, void *ctx)
{
    const coil_tensor_info_t *t = ctx;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

/* Parses one tensor entry; fills t (name pointer set by the caller). */
static int parse_entry(const char *path, const char *name, json_t *v, uint64_t data_size,
                       coil_tensor_info_t *t, uint64_t *begin, uint64_t *end, coil_err_t *err)
{
    json_t *jd, *js, *jo;

    if (!json_is_object(v))
        return coil_err_set(err, COIL_EFORMAT, "%s: tensor '%s': entry is not an object", path, name);
    jd = json_object_get(v, "dtype");
    js = json_object_get(v, "shape");
    jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) || json_array_size(jo) != 2)
        return coil_err_set(err, COIL_EFORMAT,
                            "%s: tensor '%s': needs string dtype, array shape, 2 data_offsets", path, name);
    if (parse_dtype(json_string_value(jd), &t->dtype) != 0)
        return coil_err_set(err, COIL_EDTYPE, "%s: tensor '%s': unknown dtype '%s'", path, name,
                            json_string_value(jd));
    if (json_array_size(js) > COIL_ST_MAX_DIMS)
        return coil_err_set(err, COIL_EFORMAT, "%s: tensor '%s': %zu dimensions (max %d)", path, name,
                            json_array_size(js), COIL_ST_MAX_DIMS);
    t->ndim = (int)json_array_size(js);
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        json_t *x = json_array_get(js, (size_t)d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return coil_err_set(err, COIL_EFORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                                path, name, d);
        t->shape[d] = json_integer_value(x);
        if (__builtin_mul_overflow(numel, (uint64_t)t->shape[d], &numel) || numel > ((uint64_t)1 << 48))
            return coil_err_set(err, COIL_ETOOBIG, "%s: tensor '%s': element count overflows", path, name);
    }
    t->numel = (int64_t)numel;
    for (int k = 0; k < 2; k++) {
        json_t *x = json_array_get(jo, (size_t)k);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return coil_err_set(err, COIL_EFORMAT, "%s: tensor '%s': data_offsets[%d] invalid", path, name, k);
    }
    *begin = (uint64_t)json_integer_value(json_array_get(jo, 0));
    *end = (uint64_t)json_integer_value(json_array_get(jo, 1));
    if (*begin > *end || *end > data_size)
        return coil_err_set(err, COIL_EFORMAT,
                            "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section (%llu bytes)",
                            path, name, (unsigned long long)*begin, (unsigned long long)*end,
                            (unsigned long long)data_size);
    uint64_t want = numel * dtypes[t->dtype].size; /* numel < 2^48, size <= 8: no overflow */
    if (*end - *begin != want)
        return coil_err_set(err, COIL_ESHAPE,
                            "%s: tensor '%s': %llu bytes of data but shape x %s needs %llu", path, name,
                            (unsigned long long)(*end - *begin), dtypes[t->dtype].name,
                            (unsigned long long)want);
    t->nbytes = (size_t)want;
    return 0;
}

coil_safetensors_t *coil_safetensors_open(const char *path, coil_err_t *err)
{
    coil_safetensors_t *st = NULL;
    json_t *root = NULL;
    span_t *spans = NULL;
    struct stat sb;
    int fd = -1;
    uint64_t hlen;
    json_error_t jerr;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        coil_err_set(err, errno == ENOENT ? COIL_ENOTFOUND : COIL_EIO, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        coil_err_set(err, COIL_EIO, "%s: not a regular file", path);
        goto fail;
    }
    if ((uint64_t)sb.st_size < 8) {
        coil_err_set(err, COIL_EFORMAT, "%s: truncated (%lld bytes, no header length)", path,
                     (long long)sb.st_size);
        goto fail;
    }
    st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        coil_err_set(err, COIL_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    st->map_size = (size_t)sb.st_size;
    st->map = mmap(NULL, st->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (st->map == MAP_FAILED) {
        st->map = NULL;
        coil_err_set(err, COIL_EIO, "%s: mmap: %s", path, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;

    const unsigned char *p = st->map;
    hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | p[i];
    if (hlen > COIL_ST_MAX_HEADER || hlen > st->map_size - 8) {
        coil_err_set(err, COIL_EFORMAT, "%s: header length %llu exceeds %s (%zu bytes)", path,
                     (unsigned long long)hlen, hlen > COIL_ST_MAX_HEADER ? "the 100 MiB limit" : "the file",
                     st->map_size);
        goto fail;
    }
    int nomem = 0;
    root = coil_jsonload_buf((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr, &nomem);
    if (nomem) {
        coil_err_set(err, COIL_ENOMEM, "%s: header JSON: out of memory", path);
        goto fail;
    }
    if (!root || !json_is_object(root)) {
        coil_err_set(err, COIL_EFORMAT, "%s: header JSON: %s (at byte %d)", path,
                     root ? "not an object" : jerr.text, root ? 0 : jerr.position);
        goto fail;
    }
    uint64_t data_size = st->map_size - 8 - hlen;
    const unsigned char *data = p + 8 + hlen;

    size_t n = json_object_size(root), names_len = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) names_len += strlen(key) + 1;
    st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
    st->copies = calloc(n ? n : 1, sizeof *st->copies);
    st->by_name = calloc(n ? n : 1, sizeof *st->by_name);
    st->names = malloc(names_len ? names_len : 1);
    spans = calloc(n ? n : 1, sizeof *spans);
    if (!st->tensors || !st->copies || !st->by_name || !st->names || !spans) {
        coil_err_set(err, COIL_ENOMEM, "%s: out of memory for %zu tensors", path, n);
        goto fail;
    }
    char *np = st->names;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(val)) {
                coil_err_set(err, COIL_EFORMAT, "%s: __metadata__ is not an object", path);
                goto fail;
            }
            json_object_foreach(val, mk, mv) if (!json_is_string(mv)) {
                /* the format's metadata is a string -> string map ({"format": "pt"}) */
                coil_err_set(err, COIL_EFORMAT, "%s: __metadata__ '%s' is not a string", path, mk);
                goto fail;
            }
            continue;
        }
        coil_tensor_info_t *t = &st->tensors[st->n];
        size_t kl = strlen(key) + 1;
        memcpy(np, key, kl);
        t->name = np;
        np += kl;
        if (parse_entry(path, key, val, data_size, t, &spans[st->n].begin, &spans[st->n].end, err) != 0)
            goto fail;
        spans[st->n].idx = st->n;
        st->n++;
    }
    /* No overlap and no hole: sorted by begin, the tensors tile the data
     * section from 0 to its end, as the reference reader (safetensors)
     * requires. */
    qsort(spans, st->n, sizeof *spans, cmp_span);
    for (size_t i = 0; i < st->n; i++) {
        uint64_t prev = i ? spans[i - 1].end : 0;
        if (i && spans[i].begin < prev) {
            coil_err_set(err, COIL_EFORMAT, "%s: tensors '%s' and '%s' overlap in the data section", path,
                         st->tensors[spans[i - 1].idx].name, st->tensors[spans[i].idx].name);
            goto fail;
        }
        if (spans[i].begin > prev) {
            coil_err_set(err, COIL_EFORMAT, "%s: %llu bytes of the data section before tensor '%s' belong to no tensor",
                         path, (unsigned long long)(spans[i].begin - prev), st->tensors[spans[i].idx].name);
            goto fail;
        }
    }
    if ((st->n ? spans[st->n - 1].end : 0) != data_size) {
        coil_err_set(err, COIL_EFORMAT, "%s: the data section has %llu bytes after the last tensor that belong to none",
                     path, (unsigned long long)(data_size - (st->n ? spans[st->n - 1].end : 0)));
        goto fail;
    }
    /* Reorder tensors by offset; attach data pointers. */
    coil_tensor_info_t *sorted = calloc(st->n ? st->n : 1, sizeof *sorted);
    if (!sorted) {
        coil_err_set(err, COIL_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < st->n; i++) {
        sorted[i] = st->tensors[spans[i].idx];
        const unsigned char *src = data + spans[i].begin;
        size_t es = dtypes[sorted[i].dtype].size;
        if (((uintptr_t)src % es) != 0 && sorted[i].nbytes > 0) {
            /* Unaligned in the file: keep an aligned private copy. */
            void *cp = aligned_alloc(64, (sorted[i].nbytes + 63) & ~(size_t)63);
            if (!cp) {
                coil_err_set(err, COIL_ENOMEM, "%s: tensor '%s': out of memory", path, sorted[i].name);
                free(sorted);
                goto fail;
            }
            memcpy(cp, src, sorted[i].nbytes);
            st->copies[i] = cp;
            src = cp;
        }
        sorted[i].data = src;
    }
    free(st->tensors);
    st->tensors = sorted;
    for (size_t i = 0; i < st->n; i++)
        st->by_name[i] = i;
    qsort_r(st->by_name, st->n, sizeof *st->by_name, cmp_name, st->tensors);
    free(spans);
    json_decref(root);
    return st;

fail:
    if (fd >= 0)
        close(fd);
    free(spans);
    json_decref(root);
    coil_safetensors_close(&st);
    return NULL;
}

void coil_safetensors_close(coil_safetensors_t **pst)
{
    coil_safetensors_t *st;
    if (!pst || !(st = *pst))
        return;
    if (st->copies)
        for (size_t i = 0; i < st->n; i++)
            free(st->copies[i]);
    free(st->copies);
    if (st->map)
        munmap(st->map, st->map_size);
    free(st->tensors);
    free(st->names);
    free(st->by_name);
    free(st->path);
    free(st);
    *pst = NULL;
}

size_t coil_safetensors_count(const coil_safetensors_t *st)
{
    return st->n;
}

const coil_tensor_info_t *coil_safetensors_at(const coil_safetensors_t *st, size_t i)
{
    return i < st->n ? &st->tensors[i] : NULL;
}

const coil_tensor_info_t *coil_safetensors_find(const coil_safetensors_t *st, const char *name)
{
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->tensors[st->by_name[mid]].name);
        if (c == 0)
            return &st->tensors[st->by_name[mid]];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *coil_safetensors_path(const coil_safetensors_t *st)
{
    return st->path;
}
