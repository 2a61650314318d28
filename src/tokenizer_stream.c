/* tokenizer_stream.c -- incremental encoder and decoder (see tokenizer.h).
 *
 * The encoder keeps the repaired (valid UTF-8) text that is not yet encoded
 * and cuts it at a position P only when encoding [0, P) and [P, ...) apart
 * gives the same ids as encoding the whole, i.e. when P is a boundary of
 * every stage of the pipeline:
 *   - regex: the characters around P, c1 | c2, are non-space | space (no
 *     GPT-2 match contains a non-space followed by a space, and the
 *     \s+(?!\S) look-ahead only looks right of a space run), or two
 *     different classes among letter/number/other with c1 != '\'' (so no
 *     contraction is cut);
 *   - NFC: c1 and c2 are "inert" (class 0, no canonical decomposition,
 *     never composed with a predecessor), so NFC(whole) = NFC(a) + NFC(b);
 *   - added tokens: no occurrence of a raw-matched token overlaps c1 c2, nor
 *     of a normalized-matched one in the NFC text around P (a window whose
 *     ends are inert characters, normalized on its own).  Then the
 *     leftmost-longest matching and the single_word/lstrip/rstrip context
 *     are the same on both sides (c1 is never a space, so no strip crosses P).
 * Any doubt rejects the position, which only costs memory.  Positions are
 * decided once, with a fixed look-ahead, scanning back from the newest one,
 * so the work is linear in the input.
 */
#include "tokenizer.h"
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    size_t pos_after; /* buffer position just after a U+FFFD */
    size_t extra;     /* 3 - number of input bytes it replaced */
} tk_fix_t;

struct coil_tokenizer_stream {
    const coil_tokenizer_t *tok;
    tk_ctx_t ctx;
    tk_buf_t buf;       /* repaired text not yet encoded */
    uint8_t carry[4];   /* incomplete UTF-8 sequence at the end of the input */
    size_t carry_len;
    tk_fix_t *fix;      /* replacements inside buf, by position */
    size_t n_fix, fix_cap;
    size_t scan;        /* cut positions below this were rejected */
    size_t look;        /* look-ahead needed to decide a position */
    uint64_t committed; /* input bytes covered by emitted ids */
    uint64_t fed;
    tk_ids_t out;
    tk_buf_t win;       /* scratch: NFC window */
    int started, finished;
};

static int record_fix(void *ctx, size_t pos_after, size_t raw_len)
{
    coil_tokenizer_stream_t *s = ctx;
    if (raw_len >= 3)
        return 0;
    if (s->n_fix == s->fix_cap) {
        size_t cap = s->fix_cap ? s->fix_cap * 2 : 16;
        tk_fix_t *p = realloc(s->fix, cap * sizeof *p);
        if (!p)
            return COIL_ENOMEM;
        s->fix = p;
        s->fix_cap = cap;
    }
    s->fix[s->n_fix++] = (tk_fix_t){pos_after, 3 - raw_len};
    return 0;
}

coil_tokenizer_stream_t *coil_tokenizer_stream_new(const coil_tokenizer_t *tok, coil_err_t *err)
{
    coil_tokenizer_stream_t *s;
    if (!tok) {
        coil_err_set(err, COIL_EINVAL, "coil_tokenizer_stream_new: NULL tokenizer");
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        coil_err_set(err, COIL_ENOMEM, "tokenizer stream: out of memory");
        return NULL;
    }
    s->tok = tok;
    s->look = tok->kind == TK_KIND_BYTES ? tok->max_added_len : tok->max_added_len + 96;
    return s;
}

void coil_tokenizer_stream_destroy(coil_tokenizer_stream_t **sp)
{
    if (!sp || !*sp)
        return;
    coil_tokenizer_stream_t *s = *sp;
    tk_ctx_free(&s->ctx);
    free(s->buf.data);
    free(s->fix);
    free(s->out.data);
    free(s->win.data);
    free(s);
    *sp = NULL;
}

uint64_t coil_tokenizer_stream_committed(const coil_tokenizer_stream_t *s)
{
    return s ? s->committed : 0;
}

size_t coil_tokenizer_stream_pending(const coil_tokenizer_stream_t *s)
{
    return s ? (size_t)(s->fed - s->committed) : 0;
}

static size_t char_start_at_or_before(const uint8_t *b, size_t i)
{
    while (i > 0 && (b[i] & 0xC0) == 0x80)
        i--;
    return i;
}

static size_t char_start_at_or_after(const uint8_t *b, size_t n, size_t i)
{
    while (i < n && (b[i] & 0xC0) == 0x80)
        i++;
    return i;
}

/* Normalized-token check around P through an NFC window (see the header). */
static int norm_window_ok(coil_tokenizer_stream_t *s, size_t P, size_t lo, size_t hi)
{
    const coil_tokenizer_t *t = s->tok;
    const uint8_t *b = s->buf.data;
    size_t n = s->buf.len, M = t->sets[1].max_len;
    size_t wa = char_start_at_or_before(b, lo >= M ? lo - M : 0);
    size_t wb = char_start_at_or_after(b, n, hi + M);
    uint32_t cp;

    if (wb >= n)
        return 0;
    if (!tk_may_need_nfc(b + wa, wb - wa) && b[wb] < 0xCC) /* NFC is the identity here */
        return !tk_occurrence_overlaps(t, 1, b, n, lo, hi);
    for (int k = 0; wa > 0; k++) { /* buffer start is always a normalization boundary */
        tk_utf8_decode(b, wa, &cp);
        if (tk_nfc_inert(cp))
            break;
        if (k == 16)
            return 0;
        wa = char_start_at_or_before(b, wa - 1);
    }
    for (int k = 0;; k++) {
        if (wb >= n || k == 16)
            return 0;
        size_t l = tk_utf8_decode(b, wb, &cp);
        if (tk_nfc_inert(cp))
            break;
        wb += l;
    }
    if (tk_occurrence_overlaps(t, 0, b, n, wa, wb))
        return 0; /* raw tokens split the normalization; do not bother */
    uint8_t *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    int ok = 0;
    if (tk_nfc(b + wa, P - wa, &x, &nx) == 0 && tk_nfc(b + P, wb - P, &y, &ny) == 0) {
        s->win.len = 0;
        if (tk_buf_append(&s->win, x, nx) == 0 && tk_buf_append(&s->win, y, ny) == 0)
            ok = !tk_occurrence_overlaps(t, 1, s->win.data, s->win.len, nx - (P - lo),
                                         nx + (hi - P));
    }
    free(x);
    free(y);
    return ok;
}

/* 1 if the pending text may be cut at P (0 < P, P + look <= buf.len). */
static int cut_ok(coil_tokenizer_stream_t *s, size_t P)
{
    const coil_tokenizer_t *t = s->tok;
    const uint8_t *b = s->buf.data;
    size_t n = s->buf.len;
    uint32_t c1, c2;

    if ((b[P] & 0xC0) == 0x80)
        return 0;
    if (t->kind == TK_KIND_BYTES)
        return !tk_occurrence_overlaps(t, 0, b, n, P, P);
    if (!t->use_regex)
        return 0; /* the whole piece is one pre-token */
    size_t lo = char_start_at_or_before(b, P - 1);
    tk_utf8_decode(b, lo, &c1);
    size_t hi = P + tk_utf8_decode(b, P, &c2);
    int k1 = tk_char_class(c1), k2 = tk_char_class(c2);
    if (k1 == TK_CLS_WS)
        return 0;
    if (k2 != TK_CLS_WS && (k1 == k2 || c1 == '\''))
        return 0;
    if (t->nfc && (!tk_nfc_inert(c1) || !tk_nfc_inert(c2)))
        return 0;
    if (tk_occurrence_overlaps(t, 0, b, n, lo, hi))
        return 0;
    if (t->sets[1].n == 0)
        return 1;
    if (!t->nfc)
        return !tk_occurrence_overlaps(t, 1, b, n, lo, hi);
    return norm_window_ok(s, P, lo, hi);
}

/* Encodes buf[0, P) and drops it. */
static int emit(coil_tokenizer_stream_t *s, size_t P)
{
    const coil_tokenizer_t *t = s->tok;
    int rc = 0;
    if (!s->started)
        rc = tk_ids_append(&s->out, t->tmpl_prefix, t->n_tmpl_prefix);
    if (!rc)
        rc = tk_encode_chunk(t, &s->ctx, s->buf.data, P, s->started, &s->out);
    if (rc)
        return rc;
    s->started = 1;
    size_t sub = 0, k = 0;
    while (k < s->n_fix && s->fix[k].pos_after <= P)
        sub += s->fix[k++].extra;
    for (size_t j = k; j < s->n_fix; j++)
        s->fix[j - k] = (tk_fix_t){s->fix[j].pos_after - P, s->fix[j].extra};
    s->n_fix -= k;
    s->committed += P - sub;
    if (P) {
        memmove(s->buf.data, s->buf.data + P, s->buf.len - P);
        s->buf.len -= P;
    }
    s->scan = s->scan > P ? s->scan - P : 0;
    return 0;
}

/* Appends input to buf (repairing UTF-8 unless the tokenizer takes bytes). */
static int absorb(coil_tokenizer_stream_t *s, const uint8_t *p, size_t len)
{
    size_t consumed;
    if (s->tok->kind == TK_KIND_BYTES)
        return tk_buf_append(&s->buf, p, len);
    while (s->carry_len && len) {
        size_t l;
        s->carry[s->carry_len++] = *p++;
        len--;
        int st = tk_utf8_step(s->carry, s->carry_len, 0, &l);
        if (st == TK_UTF8_INCOMPLETE)
            continue;
        if (st == TK_UTF8_INVALID && l < s->carry_len) { /* the new byte starts afresh */
            p--;
            len++;
            s->carry_len--;
        }
        if (tk_utf8_repair(&s->buf, s->carry, s->carry_len, 1, NULL, record_fix, s))
            return COIL_ENOMEM;
        s->carry_len = 0;
    }
    if (tk_utf8_repair(&s->buf, p, len, 0, &consumed, record_fix, s))
        return COIL_ENOMEM;
    if (consumed < len) {
        memcpy(s->carry + s->carry_len, p + consumed, len - consumed);
        s->carry_len += len - consumed;
    }
    return 0;
}

int coil_tokenizer_stream_feed(coil_tokenizer_stream_t *s, const char *bytes, size_t len,
                               int32_t **ids, size_t *n, coil_err_t *err)
{
    int rc;
    if (ids)
        *ids = NULL;
    if (n)
        *n = 0;
    if (!s || (!bytes && len) || !ids || !n)
        return coil_err_set(err, COIL_EINVAL, "coil_tokenizer_stream_feed: NULL argument");
    if (s->finished)
        return coil_err_set(err, COIL_ESTATE, "tokenizer stream: feed after finish");
    if ((rc = absorb(s, (const uint8_t *)bytes, len)))
        goto fail;
    s->fed += len;
    if (s->buf.len > s->look) {
        size_t limit = s->buf.len - s->look;
        for (size_t P = limit; P >= 1 && P >= s->scan; P--) {
            if (cut_ok(s, P)) {
                if ((rc = emit(s, P)))
                    goto fail;
                limit -= P;
                break;
            }
        }
        s->scan = limit + 1;
    }
    if ((rc = tk_ids_take(&s->out, ids, n)))
        goto fail;
    return 0;
fail:
    s->finished = 1; /* the stream cannot continue consistently */
    return coil_err_set(err, rc, "tokenizer stream: at input byte %llu: %s",
                        (unsigned long long)s->fed, tk_encode_errstr(rc));
}

int coil_tokenizer_stream_finish(coil_tokenizer_stream_t *s, int32_t **ids, size_t *n,
                                 coil_err_t *err)
{
    int rc = 0;
    if (ids)
        *ids = NULL;
    if (n)
        *n = 0;
    if (!s || !ids || !n)
        return coil_err_set(err, COIL_EINVAL, "coil_tokenizer_stream_finish: NULL argument");
    if (s->finished)
        return coil_err_set(err, COIL_ESTATE, "tokenizer stream: already finished");
    s->finished = 1;
    if (s->carry_len)
        rc = tk_utf8_repair(&s->buf, s->carry, s->carry_len, 1, NULL, record_fix, s);
    s->carry_len = 0;
    if (!rc)
        rc = emit(s, s->buf.len);
    if (!rc)
        rc = tk_ids_append(&s->out, s->tok->tmpl_suffix, s->tok->n_tmpl_suffix);
    if (!rc)
        rc = tk_ids_take(&s->out, ids, n);
    if (rc)
        return coil_err_set(err, rc, "tokenizer stream: finishing: %s", tk_encode_errstr(rc));
    s->committed = s->fed;
    return 0;
}

/* ---- incremental decoder -------------------------------------------------- */

struct coil_detok {
    const coil_tokenizer_t *tok;
    int skip_special, first;
    tk_buf_t raw; /* bytes not yet emitted: at most an incomplete character */
    tk_buf_t out;
};

coil_detok_t *coil_detok_new(const coil_tokenizer_t *tok, int skip_special, coil_err_t *err)
{
    coil_detok_t *d;
    if (!tok) {
        coil_err_set(err, COIL_EINVAL, "coil_detok_new: NULL tokenizer");
        return NULL;
    }
    d = calloc(1, sizeof *d);
    if (!d) {
        coil_err_set(err, COIL_ENOMEM, "detokenizer: out of memory");
        return NULL;
    }
    d->tok = tok;
    d->skip_special = skip_special;
    d->first = 1;
    return d;
}

static int detok_emit(coil_detok_t *d, int final, const char **bytes, size_t *len,
                      coil_err_t *err)
{
    size_t consumed = 0;
    d->out.len = 0;
    if (d->raw.len &&
        tk_utf8_repair(&d->out, d->raw.data, d->raw.len, final, &consumed, NULL, NULL))
        return coil_err_set(err, COIL_ENOMEM, "detokenizer: out of memory");
    if (consumed) {
        memmove(d->raw.data, d->raw.data + consumed, d->raw.len - consumed);
        d->raw.len -= consumed;
    }
    *bytes = d->out.len ? (const char *)d->out.data : "";
    *len = d->out.len;
    return 0;
}

int coil_detok_push(coil_detok_t *d, int32_t id, const char **bytes, size_t *len,
                    coil_err_t *err)
{
    if (!d || !bytes || !len)
        return coil_err_set(err, COIL_EINVAL, "coil_detok_push: NULL argument");
    int rc = tk_token_bytes(d->tok, id, d->skip_special, d->first, &d->raw);
    if (rc < 0)
        return coil_err_set(err, rc, "detokenizer: out of memory");
    if (rc > 0)
        d->first = 0;
    return detok_emit(d, 0, bytes, len, err);
}

int coil_detok_flush(coil_detok_t *d, const char **bytes, size_t *len, coil_err_t *err)
{
    if (!d || !bytes || !len)
        return coil_err_set(err, COIL_EINVAL, "coil_detok_flush: NULL argument");
    d->first = 1;
    return detok_emit(d, 1, bytes, len, err);
}

void coil_detok_destroy(coil_detok_t **dp)
{
    if (!dp || !*dp)
        return;
    free((*dp)->raw.data);
    free((*dp)->out.data);
    free(*dp);
    *dp = NULL;
}
