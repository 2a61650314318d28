/* state.c -- the recurrent state value and its versioned, checksummed blob. */
#include "state.h"

#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <xxhash.h>

#include "family.h"

struct coil_state {
    const coil_family_t *family;
    int64_t n_layer, d_model, d_inner, d_state, d_conv;
    uint64_t fingerprint;
    int64_t pos;
    int has_hidden;
    size_t conv_per, ssm_per;  /* floats per layer */
    coil_model_config_t cfg;   /* a copy of the model's (the family's state_init reads it) */
    float *buf;                /* conv | ssm | last_hidden, one allocation */
};

static size_t n_floats(const coil_state_t *s)
{
    return (size_t)s->n_layer * (s->conv_per + s->ssm_per) + (size_t)s->d_model;
}

/* The family's position-0 values over the zeroed tensors (RWKV's max: -1e38). */
static void init_layers(coil_state_t *s, const coil_model_config_t *c)
{
    if (s->family->state_init)
        for (int64_t l = 0; l < s->n_layer; l++)
            s->family->state_init(c, coil_state_conv(s, l), coil_state_ssm(s, l));
}

coil_state_t *coil_state_new(const coil_model_t *m, coil_err_t *err)
{
    const coil_model_config_t *c = coil_model_config(m);
    coil_state_t *s = calloc(1, sizeof *s);
    if (!s) {
        coil_err_set(err, COIL_ENOMEM, "out of memory for a state");
        return NULL;
    }
    s->family = c->family;
    s->n_layer = c->n_layer;
    s->d_model = c->d_model;
    s->d_inner = c->d_inner;
    s->d_state = c->d_state;
    s->d_conv = c->d_conv;
    s->fingerprint = coil_model_fingerprint(m);
    c->family->state_shape(c, &s->conv_per, &s->ssm_per);
    s->buf = calloc(n_floats(s), sizeof(float));
    if (!s->buf) {
        free(s);
        coil_err_set(err, COIL_ENOMEM, "out of memory for a state");
        return NULL;
    }
    s->cfg = *c;
    init_layers(s, c);
    return s;
}

void coil_state_destroy(coil_state_t **ps)
{
    if (!ps || !*ps)
        return;
    free((*ps)->buf);
    free(*ps);
    *ps = NULL;
}

static int same_shape(const coil_state_t *a, const coil_state_t *b)
{
    return a->n_layer == b->n_layer && a->d_model == b->d_model && a->d_inner == b->d_inner &&
           a->d_state == b->d_state && a->d_conv == b->d_conv;
}

coil_state_t *coil_state_clone(const coil_state_t *src, coil_err_t *err)
{
    coil_state_t *s = malloc(sizeof *s);
    if (!s) {
        coil_err_set(err, COIL_ENOMEM, "out of memory for a state");
        return NULL;
    }
    *s = *src;
    s->buf = malloc(n_floats(src) * sizeof(float));
    if (!s->buf) {
        free(s);
        coil_err_set(err, COIL_ENOMEM, "out of memory for a state");
        return NULL;
    }
    memcpy(s->buf, src->buf, n_floats(src) * sizeof(float));
    return s;
}

int coil_state_copy(coil_state_t *dst, const coil_state_t *src, coil_err_t *err)
{
    if (!same_shape(dst, src) || dst->fingerprint != src->fingerprint)
        return coil_err_set(err, COIL_ESHAPE, "state copy between different models");
    memcpy(dst->buf, src->buf, n_floats(src) * sizeof(float));
    dst->pos = src->pos;
    dst->has_hidden = src->has_hidden;
    return 0;
}

void coil_state_reset(coil_state_t *s)
{
    memset(s->buf, 0, n_floats(s) * sizeof(float));
    init_layers(s, &s->cfg);
    s->pos = 0;
    s->has_hidden = 0;
}

void coil_state_poison(coil_state_t *s)
{
    const size_t n = n_floats(s);
    for (size_t i = 0; i < n; i++)
        s->buf[i] = NAN;
}

int64_t coil_state_position(const coil_state_t *s) { return s->pos; }
void coil_state_set_position(coil_state_t *s, int64_t pos) { s->pos = pos; }
uint64_t coil_state_fingerprint(const coil_state_t *s) { return s->fingerprint; }
int coil_state_has_hidden(const coil_state_t *s) { return s->has_hidden; }
void coil_state_set_has_hidden(coil_state_t *s, int has) { s->has_hidden = has != 0; }

float *coil_state_conv(coil_state_t *s, int64_t layer)
{
    return s->buf + (size_t)layer * s->conv_per;
}

float *coil_state_ssm(coil_state_t *s, int64_t layer)
{
    return s->buf + (size_t)s->n_layer * s->conv_per + (size_t)layer * s->ssm_per;
}

float *coil_state_last_hidden(coil_state_t *s)
{
    return s->buf + (size_t)s->n_layer * (s->conv_per + s->ssm_per);
}

size_t coil_state_blob_size(const coil_state_t *s)
{
    return COIL_STATE_HEADER_SIZE + n_floats(s) * sizeof(float) + 8;
}

/* Little-endian field access (the build refuses big-endian hosts). */
static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

int coil_state_serialize(const coil_state_t *s, void *buf, size_t cap, coil_err_t *err)
{
    size_t need = coil_state_blob_size(s), payload = n_floats(s) * sizeof(float);
    unsigned char *p = buf;
    if (cap < need)
        return coil_err_set(err, COIL_EINVAL, "state blob needs %zu bytes, buffer has %zu", need, cap);
    /* what deserialize refuses is never written: a state with a NaN or an
     * infinity (poisoned after a failed forward pass, or overflowed) */
    for (size_t i = 0, n = n_floats(s); i < n; i++)
        if (!isfinite(s->buf[i]))
            return coil_err_set(err, COIL_ESTATE,
                                "the state holds %s at value %zu of %zu (a forward pass failed on it, or the "
                                "model overflowed): not saved",
                                isnan(s->buf[i]) ? "a NaN" : "an infinity", i, n);
    memset(p, 0, COIL_STATE_HEADER_SIZE);
    memcpy(p, COIL_STATE_MAGIC, 8);
    put32(p + 8, COIL_STATE_VERSION);
    put32(p + 12, COIL_STATE_HEADER_SIZE);
    put64(p + 16, s->fingerprint);
    put32(p + 24, (uint32_t)s->n_layer);
    put32(p + 28, (uint32_t)s->d_model);
    put32(p + 32, (uint32_t)s->d_inner);
    put32(p + 36, (uint32_t)s->d_state);
    put32(p + 40, (uint32_t)s->d_conv);
    put32(p + 44, (uint32_t)(s->d_conv - 1));
    put32(p + 48, 0);
    put32(p + 52, s->has_hidden ? 1u : 0u);
    put64(p + 56, (uint64_t)s->pos);
    put64(p + 64, payload);
    put32(p + 72, s->family->blob_id);
    memcpy(p + COIL_STATE_HEADER_SIZE, s->buf, payload);
    put64(p + need - 8, XXH3_64bits(p, need - 8));
    return 0;
}

int coil_state_blob_peek(const void *blob, size_t len, uint64_t *fingerprint, int64_t *position,
                         coil_err_t *err)
{
    const unsigned char *p = blob;
    if (len < COIL_STATE_HEADER_SIZE + 8 || memcmp(p, COIL_STATE_MAGIC, 8) != 0)
        return coil_err_set(err, COIL_EFORMAT, "not a coil state blob (%zu bytes, bad magic or too short)", len);
    uint32_t ver = get32(p + 8);
    if (ver != COIL_STATE_VERSION && ver != 1)
        return coil_err_set(err, COIL_EVERSION, "state blob format version %u (this build reads 1 and %u)", ver,
                            COIL_STATE_VERSION);
    if (get32(p + 12) != COIL_STATE_HEADER_SIZE)
        return coil_err_set(err, COIL_EFORMAT, "state blob header size %u, expected %u", get32(p + 12),
                            COIL_STATE_HEADER_SIZE);
    uint64_t payload = get64(p + 64);
    if (payload > len || COIL_STATE_HEADER_SIZE + payload + 8 != len)
        return coil_err_set(err, COIL_EFORMAT, "state blob is %zu bytes but its header says %llu + %u + 8",
                            len, (unsigned long long)payload, COIL_STATE_HEADER_SIZE);
    if (get64(p + len - 8) != XXH3_64bits(p, len - 8))
        return coil_err_set(err, COIL_ECHECKSUM, "state blob checksum mismatch (damaged or truncated)");
    if (get32(p + 48) != 0)
        return coil_err_set(err, COIL_EDTYPE, "state blob dtype %u (only float32 is defined)", get32(p + 48));
    if (get32(p + 52) & ~1u)
        return coil_err_set(err, COIL_EFORMAT, "state blob flags 0x%x (only bit 0 is defined)", get32(p + 52));
    /* reserved: from 76 (v2: 72 is the family), from 72 in v1 (before families) */
    for (size_t i = get32(p + 8) == 1 ? 72 : 76; i < COIL_STATE_HEADER_SIZE; i++)
        if (p[i])
            return coil_err_set(err, COIL_EFORMAT, "state blob reserved byte %zu is not zero", i);
    if (fingerprint)
        *fingerprint = get64(p + 16);
    if (position)
        *position = (int64_t)get64(p + 56);
    return 0;
}

int coil_state_deserialize(coil_state_t *s, const void *blob, size_t len, coil_err_t *err)
{
    const unsigned char *p = blob;
    uint64_t fp;
    int64_t pos;
    int rc = coil_state_blob_peek(blob, len, &fp, &pos, err);
    if (rc)
        return rc;
    /* v1 blobs predate families: they are Mamba-1's (id 0, in what was a reserved zero field) */
    uint32_t fam = get32(p + 8) == 1 ? 0u : get32(p + 72);
    if (fam != s->family->blob_id) {
        const coil_family_t *bf = coil_family_by_blob_id(fam);
        return coil_err_set(err, COIL_EMISMATCH,
                            "state blob is for model family '%s', the loaded model is a '%s' (%s)",
                            bf ? bf->model_type : "unknown", s->family->model_type, s->family->architecture);
    }
    if (get32(p + 24) != s->n_layer || get32(p + 28) != s->d_model || get32(p + 32) != s->d_inner ||
        get32(p + 36) != s->d_state || get32(p + 40) != s->d_conv || get32(p + 44) != s->d_conv - 1)
        return coil_err_set(err, COIL_EMISMATCH,
                            "state blob is for a model of shape layers=%u d_model=%u d_inner=%u d_state=%u "
                            "d_conv=%u; the loaded model has %lld/%lld/%lld/%lld/%lld",
                            get32(p + 24), get32(p + 28), get32(p + 32), get32(p + 36), get32(p + 40),
                            (long long)s->n_layer, (long long)s->d_model, (long long)s->d_inner,
                            (long long)s->d_state, (long long)s->d_conv);
    if (get64(p + 64) != n_floats(s) * sizeof(float))
        return coil_err_set(err, COIL_EFORMAT, "state blob payload is %llu bytes, its shape needs %zu",
                            (unsigned long long)get64(p + 64), n_floats(s) * sizeof(float));
    if (fp != s->fingerprint)
        return coil_err_set(err, COIL_EMISMATCH,
                            "state blob belongs to model %016llx, the loaded model is %016llx",
                            (unsigned long long)fp, (unsigned long long)s->fingerprint);
    if (pos < 0)
        return coil_err_set(err, COIL_EFORMAT, "state blob has negative position %lld", (long long)pos);
    /* a NaN or an infinity would poison every later output: such a blob is
     * damaged (or made to harm), refused before anything of s is changed */
    const unsigned char *payload = p + COIL_STATE_HEADER_SIZE;
    for (size_t i = 0, n = n_floats(s); i < n; i++) {
        float v;
        memcpy(&v, payload + i * sizeof v, sizeof v);
        if (!isfinite(v))
            return coil_err_set(err, COIL_EFORMAT, "state blob value %zu of %zu is %s", i, n,
                                isnan(v) ? "NaN" : "infinite");
    }
    memcpy(s->buf, payload, n_floats(s) * sizeof(float));
    s->pos = pos;
    s->has_hidden = (get32(p + 52) & 1u) != 0;
    return 0;
}
