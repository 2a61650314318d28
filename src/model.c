/* model.c -- load a Hugging Face Mamba checkpoint: config.json + safetensors. */
#include "model.h"
#include "jsonload.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "convert.h"
#include "family.h"
#include "model_internal.h"

#define MAX_DIM COIL_MODEL_MAX_DIM
#define MAX_LAYERS COIL_MODEL_MAX_LAYERS
#define MAX_ID ((int64_t)COIL_MODEL_MAX_VOCAB)


/* ---- config ---------------------------------------------------------------- */

int coil_cfg_int(json_t *root, const char *key, int64_t dflt, bool required, int64_t lo, int64_t hi,
                   int64_t *out, const char *what, coil_err_t *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required)
            return coil_err_set(err, COIL_ECONFIG, "%s: missing required field '%s'", what, key);
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v))
        return coil_err_set(err, COIL_ECONFIG, "%s: field '%s' must be an integer", what, key);
    *out = json_integer_value(v);
    if (*out < lo || *out > hi)
        return coil_err_set(err, COIL_ECONFIG, "%s: field '%s' = %lld outside [%lld, %lld]", what, key,
                            (long long)*out, (long long)lo, (long long)hi);
    return 0;
}

/* A token id: an integer, null / absent (-1), or, for eos_token_id, a list
 * of integers as transformers also accepts (the first is kept). */
int coil_cfg_token_id(json_t *root, const char *key, bool list_ok, int64_t *out, const char *what,
                        coil_err_t *err)
{
    json_t *v = json_object_get(root, key);
    if (list_ok && json_is_array(v)) {
        if (json_array_size(v) == 0)
            return coil_err_set(err, COIL_ECONFIG, "%s: field '%s' is an empty list", what, key);
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *x = json_array_get(v, i);
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= MAX_ID)
                return coil_err_set(err, COIL_ECONFIG, "%s: field '%s'[%zu] must be an integer in [0, %lld)",
                                    what, key, i, (long long)MAX_ID);
        }
        *out = json_integer_value(json_array_get(v, 0));
        return 0;
    }
    return coil_cfg_int(root, key, -1, false, -1, MAX_ID - 1, out, what, err);
}

/* An alias the published checkpoints carry beside the field transformers
 * reads (d_model beside hidden_size, ...): when present it must agree. */
int coil_cfg_alias(json_t *root, const char *alias, const char *field, int64_t value, const char *what,
                       coil_err_t *err)
{
    json_t *v = json_object_get(root, alias);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) != value)
        return coil_err_set(err, COIL_ECONFIG, "%s: field '%s' disagrees with '%s' = %lld", what, alias, field,
                            (long long)value);
    return 0;
}

int coil_cfg_bool(json_t *root, const char *key, bool dflt, bool *out, const char *what, coil_err_t *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return coil_err_set(err, COIL_ECONFIG, "%s: field '%s' must be true or false", what, key);
    *out = json_is_true(v);
    return 0;
}

int coil_model_config_parse(const char *text, const char *what, coil_model_config_t *c, coil_err_t *err)
{
    json_error_t je;
    /* Python's json writes float("inf") as a bare Infinity (Mamba2Config's
     * time_step_limit (0.0, inf)); JSON has none: read it as 1e308, which
     * the families take as +inf (COIL_CFG_INF). */
    size_t len = strlen(text);
    char *copy = malloc(len + 1);
    if (!copy)
        return coil_err_set(err, COIL_ENOMEM, "%s: out of memory", what);
    memcpy(copy, text, len + 1);
    for (size_t i = 0, in_str = 0; i < len; i++) {
        if (in_str) {
            if (copy[i] == '\\' && i + 1 < len)
                i++;
            else if (copy[i] == '"')
                in_str = 0;
        } else if (copy[i] == '"') {
            in_str = 1;
        } else if (len - i >= 8 && memcmp(copy + i, "Infinity", 8) == 0) {
            memcpy(copy + i, "1e308   ", 8);
            i += 7;
        }
    }
    int nomem = 0;
    json_t *root = coil_jsonload_buf(copy, len, JSON_REJECT_DUPLICATES, &je, &nomem);
    free(copy);
    int rc = 0;

    memset(c, 0, sizeof *c);
    if (nomem) {
        rc = coil_err_set(err, COIL_ENOMEM, "%s: out of memory", what);
        goto out;
    }
    if (!root || !json_is_object(root)) {
        rc = coil_err_set(err, COIL_EFORMAT, "%s: %s (line %d, column %d)", what,
                          root ? "not a JSON object" : je.text, root ? 0 : je.line, root ? 0 : je.column);
        goto out;
    }
    if ((rc = coil_family_pick(root, what, &c->family, err)) != 0 ||
        (rc = c->family->parse_config(root, what, c, err)) != 0)
        goto out;
out:
    json_decref(root);
    return rc;
}

/* ---- weights ---------------------------------------------------------------- */

static char *read_file(const char *path, size_t max, size_t *len, coil_err_t *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long sz;

    struct stat sb;
    if (!f) {
        coil_err_set(err, errno == ENOENT ? COIL_ENOTFOUND : COIL_EIO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        coil_err_set(err, COIL_EIO, "%s: not a regular file", path);
        goto out;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (sz = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        coil_err_set(err, COIL_EIO, "%s: cannot determine size", path);
        goto out;
    }
    if ((size_t)sz > max) {
        coil_err_set(err, COIL_ETOOBIG, "%s: %ld bytes, more than the %zu accepted (the documented maximum)", path,
                     sz, max);
        goto out;
    }
    buf = malloc((size_t)sz + 1);
    if (!buf) {
        coil_err_set(err, COIL_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (fread(buf, 1, (size_t)sz, f) != (size_t)sz) {
        coil_err_set(err, COIL_EIO, "%s: short read", path);
        free(buf);
        buf = NULL;
        goto out;
    }
    buf[sz] = '\0';
    if (memchr(buf, '\0', (size_t)sz)) {
        coil_err_set(err, COIL_EFORMAT, "%s: contains a NUL byte (not a JSON text)", path);
        free(buf);
        buf = NULL;
        goto out;
    }
    if (len)
        *len = (size_t)sz;
out:
    fclose(f);
    return buf;
}

/* Finds a tensor by name across the open files. */
const coil_tensor_info_t *coil_model__lookup(const coil_model_t *m, const char *name, int *file_idx)
{
    for (int i = 0; i < m->n_files; i++) {
        const coil_tensor_info_t *t = coil_safetensors_find(m->files[i], name);
        if (t) {
            if (file_idx)
                *file_idx = i;
            return t;
        }
    }
    return NULL;
}

static int remember(coil_model_t *m, const coil_tensor_info_t *t, coil_err_t *err)
{
    if (m->n_bound == m->cap_bound) {
        size_t cap = m->cap_bound ? 2 * m->cap_bound : 64;
        const coil_tensor_info_t **nb = realloc(m->bound, cap * sizeof *nb);
        if (!nb)
            return coil_err_set(err, COIL_ENOMEM, "out of memory");
        m->bound = nb;
        m->cap_bound = cap;
    }
    m->bound[m->n_bound++] = t;
    m->params += t->numel;
    return 0;
}

/* Looks up name, checks dtype is F32/F16/BF16 and the shape is exactly dims. */
int coil_model__check(const coil_model_t *m, const char *name, int ndim, const int64_t *dims,
                 const coil_tensor_info_t **out, coil_err_t *err)
{
    int fi = 0;
    const coil_tensor_info_t *t = coil_model__lookup(m, name, &fi);
    if (!t)
        return coil_err_set(err, COIL_ENOTFOUND, "%s: tensor '%s' is missing", m->dir, name);
    const char *file = coil_safetensors_path(m->files[fi]);
    if (t->dtype != COIL_DT_F32 && t->dtype != COIL_DT_F16 && t->dtype != COIL_DT_BF16)
        return coil_err_set(err, COIL_EDTYPE, "%s: tensor '%s' has dtype %s (need F32, F16 or BF16)", file, name,
                            coil_dtype_name(t->dtype));
    bool ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++)
        ok = t->shape[d] == dims[d];
    if (!ok) {
        /* room for COIL_ST_MAX_DIMS dimensions of 20 digits and a comma each */
        char got[COIL_ST_MAX_DIMS * 21 + 1] = "", want[COIL_ST_MAX_DIMS * 21 + 1] = "";
        for (int d = 0; d < t->ndim; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)t->shape[d]);
        for (int d = 0; d < ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "", (long long)dims[d]);
        return coil_err_set(err, COIL_ESHAPE, "%s: tensor '%s' has shape [%s], config.json implies [%s]", file,
                            name, got, want);
    }
    *out = t;
    return 0;
}

/* coil_model__check(), then records the tensor as used. */
int coil_model__need(coil_model_t *m, const char *name, int ndim, const int64_t *dims,
                const coil_tensor_info_t **out, coil_err_t *err)
{
    int rc = coil_model__check(m, name, ndim, dims, out, err);
    return rc ? rc : remember(m, *out, err);
}

int coil_model__need_matrix(coil_model_t *m, const char *name, int64_t rows, int64_t cols, coil_matrix_t *mat,
                       coil_err_t *err)
{
    const coil_tensor_info_t *t;
    int64_t dims[2] = {rows, cols};
    int rc = coil_model__need(m, name, 2, dims, &t, err);
    if (rc)
        return rc;
    mat->dtype = t->dtype;
    mat->data = t->data;
    mat->rows = rows;
    mat->cols = cols;
    return 0;
}

/* A small tensor converted into the float32 pool. */
int coil_model__need_f32(coil_model_t *m, const char *name, int ndim, const int64_t *dims, const float **out,
                    coil_err_t *err)
{
    const coil_tensor_info_t *t;
    int rc = coil_model__need(m, name, ndim, dims, &t, err);
    if (rc)
        return rc;
    if (m->pool_used + (size_t)t->numel > m->pool_cap)
        return coil_err_set(err, COIL_EINVAL, "%s: internal: float pool exhausted at '%s'", m->dir, name);
    float *dst = m->f32_pool + m->pool_used;
    coil_convert_to_f32(t->dtype, t->data, dst, (size_t)t->numel);
    m->pool_used += (size_t)t->numel;
    *out = dst;
    return 0;
}

int coil_model__bind_head(coil_model_t *m, coil_err_t *err)
{
    const coil_model_config_t *c = &m->cfg;
    const int64_t H = c->d_model, V = c->vocab_size;
    int64_t dH[1] = {H};
    if (coil_model__need_f32(m, "backbone.norm_f.weight", 1, dH, &m->norm_f, err))
        return err && err->code ? err->code : COIL_EFORMAT;
    if (c->tie_embeddings) {
        m->lm_head = m->embeddings;
        const coil_tensor_info_t *t = coil_model__lookup(m, "lm_head.weight", NULL);
        if (t) { /* transformers ties it to the embeddings anyway; accept a copy of the right shape */
            int64_t dims[2] = {V, H};
            const coil_tensor_info_t *tt;
            int rc = coil_model__need(m, "lm_head.weight", 2, dims, &tt, err);
            if (rc)
                return rc;
            m->params -= tt->numel;
        }
        return 0;
    }
    return coil_model__need_matrix(m, "lm_head.weight", V, H, &m->lm_head, err);
}

/* dir + "/" + file, malloc'd (no length limit); NULL + err when out of memory. */
static char *join(const char *dir, const char *file, coil_err_t *err)
{
    size_t a = strlen(dir), b = strlen(file);
    char *p = malloc(a + b + 2);
    if (!p) {
        coil_err_set(err, COIL_ENOMEM, "out of memory");
        return NULL;
    }
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, file, b + 1);
    return p;
}

static bool exists_in(const char *dir, const char *file)
{
    char *p = join(dir, file, NULL);
    bool yes = p && access(p, F_OK) == 0;
    free(p);
    return yes;
}

static int add_file(coil_model_t *m, const char *path, int *idx, coil_err_t *err)
{
    if (m->n_files == m->cap_files) {
        int cap = m->cap_files ? 2 * m->cap_files : 4;
        coil_safetensors_t **nf = realloc(m->files, (size_t)cap * sizeof *nf);
        if (!nf)
            return coil_err_set(err, COIL_ENOMEM, "out of memory");
        m->files = nf;
        m->cap_files = cap;
    }
    if (!(m->files[m->n_files] = coil_safetensors_open(path, err)))
        return err && err->code ? err->code : COIL_EIO;
    *idx = m->n_files++;
    return 0;
}

static int open_weights(coil_model_t *m, coil_err_t *err)
{
    char *path = NULL;
    json_t *root = NULL;
    int rc = 0, idx;
    coil_err_t e2;

    /* model.safetensors first, as transformers does */
    if (!(path = join(m->dir, "model.safetensors", err)))
        return COIL_ENOMEM;
    coil_err_clear(&e2);
    rc = add_file(m, path, &idx, &e2);
    free(path);
    if (rc == 0)
        return 0;
    if (e2.code != COIL_ENOTFOUND) {
        if (err)
            *err = e2;
        return e2.code;
    }
    if (!(path = join(m->dir, "model.safetensors.index.json", err)))
        return COIL_ENOMEM;
    if (access(path, F_OK) != 0) {
        const char *bin = exists_in(m->dir, "pytorch_model.bin")              ? "pytorch_model.bin"
                          : exists_in(m->dir, "pytorch_model.bin.index.json") ? "pytorch_model.bin.index.json"
                                                                              : NULL;
        if (bin)
            rc = coil_err_set(err, COIL_EUNSUPPORTED,
                              "%s: has %s (PyTorch pickle weights) but no model.safetensors or "
                              "model.safetensors.index.json; coil loads safetensors only: convert it, e.g. "
                              "MambaForCausalLM.from_pretrained(dir).save_pretrained(out, safe_serialization=True)",
                              m->dir, bin);
        else
            rc = coil_err_set(err, COIL_ENOTFOUND,
                              "%s: no weights: neither model.safetensors nor model.safetensors.index.json is there",
                              m->dir);
        goto out;
    }
    char *text = read_file(path, COIL_MODEL_MAX_INDEX, NULL, err);
    if (!text) {
        rc = err && err->code ? err->code : COIL_EIO;
        goto out;
    }
    json_error_t je;
    int nomem = 0;
    root = coil_jsonload_buf(text, strlen(text), JSON_REJECT_DUPLICATES, &je, &nomem);
    free(text);
    if (nomem) {
        rc = coil_err_set(err, COIL_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (!root || !json_is_object(root)) {
        rc = coil_err_set(err, COIL_EFORMAT, "%s: %s", path, root ? "not a JSON object" : je.text);
        goto out;
    }
    /* "metadata": {"total_size": bytes, ...} as save_pretrained writes it (optional) */
    json_t *meta = json_object_get(root, "metadata"), *total = meta ? json_object_get(meta, "total_size") : NULL;
    if (meta && !json_is_null(meta) && !json_is_object(meta)) {
        rc = coil_err_set(err, COIL_EFORMAT, "%s: \"metadata\" is not an object", path);
        goto out;
    }
    if (total && !(json_is_integer(total) && json_integer_value(total) >= 0)) {
        rc = coil_err_set(err, COIL_EFORMAT, "%s: \"metadata\".\"total_size\" is not a non-negative integer", path);
        goto out;
    }
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map)) {
        rc = coil_err_set(err, COIL_EFORMAT, "%s: no \"weight_map\" object", path);
        goto out;
    }
    if (json_object_size(map) == 0) {
        rc = coil_err_set(err, COIL_EFORMAT, "%s: \"weight_map\" lists no tensors", path);
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(map, key, val) {
        const char *file = json_string_value(val);
        size_t fl = file ? strlen(file) : 0;
        if (!file || !*file || strchr(file, '/') || file[0] == '.') {
            rc = coil_err_set(err, COIL_EFORMAT, "%s: tensor '%s' maps to an invalid shard file name", path, key);
            goto out;
        }
        if (fl < 12 || strcmp(file + fl - 12, ".safetensors") != 0) {
            rc = coil_err_set(err, COIL_EUNSUPPORTED, "%s: tensor '%s' maps to '%s', not a .safetensors file", path,
                              key, file);
            goto out;
        }
        char *shard = join(m->dir, file, err);
        if (!shard) {
            rc = COIL_ENOMEM;
            goto out;
        }
        int have = -1;
        for (int i = 0; i < m->n_files && have < 0; i++)
            if (strcmp(coil_safetensors_path(m->files[i]), shard) == 0)
                have = i;
        if (have < 0 && (rc = add_file(m, shard, &have, err)) != 0) {
            free(shard);
            goto out;
        }
        free(shard);
        if (!coil_safetensors_find(m->files[have], key)) {
            rc = coil_err_set(err, COIL_EFORMAT, "%s: tensor '%s' is listed for %s but not in it", path, key, file);
            goto out;
        }
    }
    rc = 0;
out:
    free(path);
    json_decref(root);
    return rc;
}

static void fp_update_i64(XXH3_state_t *h, int64_t v)
{
    XXH3_64bits_update(h, &v, sizeof v);
}

static int compute_fingerprint(coil_model_t *m, coil_err_t *err)
{
    XXH3_state_t *h = XXH3_createState();
    const coil_model_config_t *c = &m->cfg;
    if (!h)
        return coil_err_set(err, COIL_ENOMEM, "out of memory");
    XXH3_64bits_reset(h);
    XXH3_64bits_update(h, c->family->fp_tag, strlen(c->family->fp_tag));
    fp_update_i64(h, c->d_model);
    fp_update_i64(h, c->d_inner);
    fp_update_i64(h, c->d_state);
    fp_update_i64(h, c->d_conv);
    fp_update_i64(h, c->dt_rank);
    fp_update_i64(h, c->n_layer);
    fp_update_i64(h, c->vocab_size);
    fp_update_i64(h, (int64_t)(c->eps * 1e12));
    fp_update_i64(h, c->use_bias | c->use_conv_bias << 1 | c->tie_embeddings << 2);
    if (c->n_heads > 0) { /* mamba2: head_dim, n_groups, time_step_limit */
        fp_update_i64(h, c->head_dim);
        fp_update_i64(h, c->n_groups);
        fp_update_i64(h, (int64_t)(c->dt_limit_lo * 1e12));
        fp_update_i64(h, isinf(c->dt_limit_hi) ? -1 : (int64_t)(c->dt_limit_hi * 1e12));
    }
    if (c->attn_dim > 0) { /* rwkv: attention_hidden_size, rescale_every */
        fp_update_i64(h, c->attn_dim);
        fp_update_i64(h, c->rescale_every);
    }
    if (c->mixer_rms_eps > 0) /* falcon_mamba (absent from Mamba-1 fingerprints, which stay as they were) */
        fp_update_i64(h, (int64_t)(c->mixer_rms_eps * 1e15));
    for (size_t i = 0; i < m->n_bound; i++) { /* binding order is fixed by the code */
        const coil_tensor_info_t *t = m->bound[i];
        XXH3_64bits_update(h, t->name, strlen(t->name) + 1);
        fp_update_i64(h, t->dtype);
        for (int d = 0; d < t->ndim; d++)
            fp_update_i64(h, t->shape[d]);
        XXH3_64bits_update(h, t->data, t->nbytes);
    }
    m->fingerprint = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return 0;
}

coil_model_t *coil_model_load(const char *dir, coil_err_t *err)
{
    coil_model_t *m = calloc(1, sizeof *m);
    char *path = NULL;
    char *text = NULL;

    if (!m || !(m->dir = strdup(dir))) {
        free(m);
        coil_err_set(err, COIL_ENOMEM, "out of memory");
        return NULL;
    }
    if (!(path = join(dir, "config.json", err)) || !(text = read_file(path, COIL_MODEL_MAX_CONFIG, NULL, err)))
        goto fail;
    if (coil_model_config_parse(text, path, &m->cfg, err) != 0)
        goto fail;
    free(text);
    text = NULL;
    if (open_weights(m, err) != 0)
        goto fail;

    if (m->cfg.family->bind(m, err) != 0)
        goto fail;
    /* Anything in the files that we did not bind is a checkpoint for something else. */
    for (int f = 0; f < m->n_files; f++)
        for (size_t i = 0; i < coil_safetensors_count(m->files[f]); i++) {
            const coil_tensor_info_t *t = coil_safetensors_at(m->files[f], i);
            bool used = false;
            for (size_t j = 0; j < m->n_bound && !used; j++)
                used = m->bound[j] == t;
            const coil_tensor_info_t *first;
            int ff = 0;
            if (!used && (first = coil_model__lookup(m, t->name, &ff)) != t) {
                coil_err_set(err, COIL_EFORMAT, "%s: tensor '%s' is also in %s (each tensor must be in one file)",
                             coil_safetensors_path(m->files[f]), t->name, coil_safetensors_path(m->files[ff]));
                goto fail;
            }
            if (!used) {
                coil_err_set(err, COIL_EFORMAT, "%s: unexpected tensor '%s' (not part of a %s checkpoint "
                             "with this config)", coil_safetensors_path(m->files[f]), t->name,
                             m->cfg.family->architecture);
                goto fail;
            }
        }
    if (compute_fingerprint(m, err))
        goto fail;
    free(path);
    return m;

fail:
    free(text);
    free(path);
    coil_model_destroy(&m);
    return NULL;
}

void coil_model_destroy(coil_model_t **pm)
{
    coil_model_t *m;
    if (!pm || !(m = *pm))
        return;
    for (int i = 0; i < m->n_files; i++)
        coil_safetensors_close(&m->files[i]);
    free(m->files);
    free(m->layers);
    free(m->fam_layers);
    free(m->f32_pool);
    free(m->bound);
    free(m->dir);
    free(m);
    *pm = NULL;
}

const coil_model_config_t *coil_model_config(const coil_model_t *m) { return &m->cfg; }
const coil_layer_t *coil_model_layer(const coil_model_t *m, int64_t i) { return &m->layers[i]; }
const coil_matrix_t *coil_model_embeddings(const coil_model_t *m) { return &m->embeddings; }
const coil_matrix_t *coil_model_lm_head(const coil_model_t *m) { return &m->lm_head; }
const float *coil_model_norm_f(const coil_model_t *m) { return m->norm_f; }
const char *coil_model_dir(const coil_model_t *m) { return m->dir; }
uint64_t coil_model_fingerprint(const coil_model_t *m) { return m->fingerprint; }
int64_t coil_model_param_count(const coil_model_t *m) { return m->params; }

coil_dtype_t coil_model_dtype(const coil_model_t *m)
{
    return m->dtype;
}

int coil_model_dims_json(const coil_model_t *m, char *buf, size_t cap)
{
    const coil_model_config_t *c = &m->cfg;
    char extra[160] = ""; /* the family's own dimensions */
    if (c->n_heads > 0)
        snprintf(extra, sizeof extra, ",\"n_heads\":%lld,\"head_dim\":%lld,\"n_groups\":%lld", (long long)c->n_heads,
                 (long long)c->head_dim, (long long)c->n_groups);
    else if (c->mixer_rms_eps > 0)
        snprintf(extra, sizeof extra, ",\"mixer_rms_eps\":%.9g", c->mixer_rms_eps);
    int n = snprintf(buf, cap,
                     "{\"family\":\"%s\",\"d_model\":%lld,\"n_layer\":%lld,\"d_inner\":%lld,\"d_state\":%lld,"
                     "\"d_conv\":%lld,\"dt_rank\":%lld,\"vocab_size\":%lld%s}",
                     c->family->model_type, (long long)c->d_model, (long long)c->n_layer, (long long)c->d_inner,
                     (long long)c->d_state, (long long)c->d_conv, (long long)c->dt_rank, (long long)c->vocab_size,
                     extra);
    return n < 0 || (size_t)n >= cap ? COIL_EINVAL : n;
}

#ifndef COIL_DEFAULT_MODEL
#define COIL_DEFAULT_MODEL ""
#endif
#ifndef COIL_SOURCE_MODEL
#define COIL_SOURCE_MODEL ""
#endif

static int has_config(const char *dir)
{
    if (!dir || !*dir)
        return 0;
    char *p = join(dir, "config.json", NULL);
    int ok = p && access(p, R_OK) == 0;
    free(p);
    return ok;
}

const char *coil_model_default_dir(void)
{
    const char *env = getenv("COIL_MODEL");
    if (env && *env)
        return env;
    if (has_config(COIL_DEFAULT_MODEL))
        return COIL_DEFAULT_MODEL;
    if (has_config(COIL_SOURCE_MODEL))
        return COIL_SOURCE_MODEL;
    return NULL;
}
