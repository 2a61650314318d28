/* tokenizer.c -- tokenizer.json loading, encoding and decoding.
 *
 * The pipeline mirrors Hugging Face `tokenizers` (see tokenizer.h).  BPE
 * works on raw bytes: vocab strings are mapped back through the GPT-2
 * byte<->unicode table at load, so a word's initial symbols are the ids of
 * its bytes and merges are a hash map (left id, right id) -> (rank, new id).
 * Merging uses a linked list of symbols and a binary heap of candidate pairs
 * ordered by (rank, position), the same order `tokenizers` uses.  A per-call
 * (per-stream) cache maps frequent pre-tokens to their ids.
 *
 * The incremental encoder lives in tokenizer_stream.c and shares the
 * internals declared in tokenizer_internal.h.
 */
#include "tokenizer.h"
#include "jsonload.h"
#include "tokenizer_internal.h"

#include <errno.h>
#include <stdint.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>

/* ---- small growable buffers ------------------------------------------- */

int tk_buf_reserve(tk_buf_t *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return COIL_ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return COIL_ENOMEM;
        cap *= 2;
    }
    uint8_t *p = realloc(b->data, cap);
    if (!p)
        return COIL_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int tk_buf_append(tk_buf_t *b, const void *src, size_t n)
{
    if (n == 0)
        return 0;
    if (tk_buf_reserve(b, n))
        return COIL_ENOMEM;
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

int tk_ids_reserve(tk_ids_t *v, size_t extra)
{
    if (extra > SIZE_MAX / sizeof(int32_t) - v->len)
        return COIL_ENOMEM;
    size_t need = v->len + extra;
    if (need <= v->cap)
        return 0;
    size_t cap = v->cap ? v->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / sizeof(int32_t) / 2)
            return COIL_ENOMEM;
        cap *= 2;
    }
    int32_t *p = realloc(v->data, cap * sizeof *p);
    if (!p)
        return COIL_ENOMEM;
    v->data = p;
    v->cap = cap;
    return 0;
}

int tk_ids_append(tk_ids_t *v, const int32_t *ids, size_t n)
{
    if (n == 0)
        return 0;
    if (tk_ids_reserve(v, n))
        return COIL_ENOMEM;
    memcpy(v->data + v->len, ids, n * sizeof *ids);
    v->len += n;
    return 0;
}

/* Hands the ids over to the caller as an exactly-sized malloc'd array. */
int tk_ids_take(tk_ids_t *v, int32_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (v->len == 0)
        return 0;
    int32_t *p = malloc(v->len * sizeof *p);
    if (!p)
        return COIL_ENOMEM;
    memcpy(p, v->data, v->len * sizeof *p);
    *out = p;
    *n = v->len;
    v->len = 0;
    return 0;
}

/* ---- UTF-8 and Unicode classes ---------------------------------------- */

int tk_utf8_step(const uint8_t *s, size_t n, size_t i, size_t *len)
{
    uint8_t b = s[i];
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;

    if (b < 0x80) {
        *len = 1;
        return TK_UTF8_VALID;
    }
    if (b >= 0xC2 && b <= 0xDF) {
        need = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 3;
        if (b == 0xE0)
            lo = 0xA0;
        else if (b == 0xED)
            hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 4;
        if (b == 0xF0)
            lo = 0x90;
        else if (b == 0xF4)
            hi = 0x8F;
    } else {
        *len = 1;
        return TK_UTF8_INVALID;
    }
    for (size_t k = 1; k < need; k++) {
        if (i + k >= n) {
            *len = k;
            return TK_UTF8_INCOMPLETE;
        }
        uint8_t c = s[i + k];
        if (c < lo || c > hi) {
            *len = k;
            return TK_UTF8_INVALID;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    *len = need;
    return TK_UTF8_VALID;
}

static const uint8_t k_replacement[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */

int tk_utf8_repair(tk_buf_t *out, const uint8_t *s, size_t n, int final, size_t *consumed,
                   tk_fix_cb fix, void *fix_ctx)
{
    size_t i = 0, run = 0; /* [run, i) is valid text not yet copied */

    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t len;
        int st = tk_utf8_step(s, n, i, &len);
        if (st == TK_UTF8_VALID) {
            i += len;
            continue;
        }
        if (st == TK_UTF8_INCOMPLETE && !final)
            break;
        if (tk_buf_append(out, s + run, i - run) || tk_buf_append(out, k_replacement, 3))
            return COIL_ENOMEM;
        if (fix && fix(fix_ctx, out->len, len))
            return COIL_ENOMEM;
        i += len;
        run = i;
    }
    if (tk_buf_append(out, s + run, i - run))
        return COIL_ENOMEM;
    if (consumed)
        *consumed = i;
    return 0;
}

/* Decodes the valid UTF-8 character at s[i]; returns its length. */
size_t tk_utf8_decode(const uint8_t *s, size_t i, uint32_t *cp)
{
    uint8_t b = s[i];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if (b < 0xE0) {
        *cp = ((uint32_t)(b & 0x1F) << 6) | (s[i + 1] & 0x3F);
        return 2;
    }
    if (b < 0xF0) {
        *cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) |
          ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
    return 4;
}

static size_t utf8_encode(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Class used by the GPT-2 split regex: \s (White_Space), \p{L}, \p{N}, other. */
int tk_char_class(uint32_t cp)
{
    if (cp < 0x80) {
        if (cp == ' ' || (cp >= 9 && cp <= 13))
            return TK_CLS_WS;
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')
            return TK_CLS_L;
        if (cp >= '0' && cp <= '9')
            return TK_CLS_N;
        return TK_CLS_O;
    }
    if (cp == 0x85)
        return TK_CLS_WS;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
        return TK_CLS_WS;
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return TK_CLS_L;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return TK_CLS_N;
    default:
        return TK_CLS_O;
    }
}

/* True when NFC can neither change cp nor combine it with a neighbour:
 * combining class 0, no canonical decomposition, never the second half of a
 * composition (utf8proc marks those with comb_index >= 0x8000), not a
 * conjoining Hangul jamo.  A boundary in front of such a character is a
 * boundary of the normalization. */
int tk_nfc_inert(uint32_t cp)
{
    if (cp < 0x300)
        return 1;
    if (cp >= 0x1100 && cp <= 0x11FF)
        return 0;
    const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
    if (p->combining_class != 0)
        return 0;
    if (p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0)
        return 0;
    if (p->comb_index != UINT16_MAX && p->comb_index >= 0x8000)
        return 0;
    return 1;
}

/* Regex \w as `tokenizers` uses it for single_word (Rust regex, Unicode):
 * Alphabetic, marks, Nd, Pc, Join_Control.  Alphabetic is taken as L* + Nl
 * plus the marks; the few So-category Other_Alphabetic symbols (circled
 * letters such as U+24B6) are not word characters here. */
static int is_word_cp(uint32_t cp)
{
    if (cp < 0x80)
        return ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') || (cp >= '0' && cp <= '9') || cp == '_';
    if (cp == 0x200C || cp == 0x200D)
        return 1;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}

static int is_space_cp(uint32_t cp)
{
    return tk_char_class(cp) == TK_CLS_WS;
}

/* Start of the UTF-8 character that ends at s[end] (end > 0). */
static size_t char_start_before(const uint8_t *s, size_t end)
{
    size_t i = end - 1;
    while (i > 0 && (s[i] & 0xC0) == 0x80)
        i--;
    return i;
}

/* ---- GPT-2 byte <-> unicode table ------------------------------------- */

static void byte_unicode_table(uint32_t b2u[256])
{
    uint32_t extra = 256;
    for (uint32_t b = 0; b < 256; b++) {
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
            b2u[b] = b;
        else
            b2u[b] = extra++;
    }
}

/* Inverse of the table: code point -> byte, or -1. */
static int unicode_to_byte(const coil_tokenizer_t *t, uint32_t cp)
{
    return cp < TK_U2B_SIZE ? t->u2b[cp] : -1;
}

/* ---- hash maps ---------------------------------------------------------- */

static uint64_t hash_bytes(const void *p, size_t n)
{
    return XXH3_64bits(p, n);
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

/* string -> id map over the tokenizer's string arena. */
static int strmap_init(tk_strmap_t *m, size_t n)
{
    if (n > SIZE_MAX / 4)
        return COIL_ENOMEM;
    m->cap = pow2_at_least(n * 2);
    m->used = 0;
    m->e = calloc(m->cap, sizeof *m->e);
    if (!m->e)
        return COIL_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        m->e[i].id = -1;
    return 0;
}

int32_t tk_strmap_get(const tk_strmap_t *m, const char *arena, const char *s, size_t n)
{
    if (!m->e)
        return -1;
    uint64_t h = hash_bytes(s, n);
    for (size_t i = (size_t)h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const tk_strmap_entry_t *e = &m->e[i];
        if (e->id < 0)
            return -1;
        if (e->hash == h && e->len == n && memcmp(arena + e->off, s, n) == 0)
            return e->id;
    }
}

/* Inserts (arena[off..off+n) -> id) unless the key exists; returns the
 * existing id or -1 when inserted. */
static int32_t strmap_put(tk_strmap_t *m, const char *arena, size_t off, size_t n, int32_t id)
{
    uint64_t h = hash_bytes(arena + off, n);
    for (size_t i = (size_t)h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        tk_strmap_entry_t *e = &m->e[i];
        if (e->id < 0) {
            e->hash = h;
            e->off = off;
            e->len = n;
            e->id = id;
            m->used++;
            return -1;
        }
        if (e->hash == h && e->len == n && memcmp(arena + e->off, arena + off, n) == 0)
            return e->id;
    }
}

static uint64_t pair_key(int32_t a, int32_t b)
{
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

static size_t pair_slot(uint64_t key, unsigned shift)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> shift);
}

static const tk_merge_t *merge_get(const coil_tokenizer_t *t, int32_t a, int32_t b)
{
    uint64_t key = pair_key(a, b);
    size_t mask = t->merge_cap - 1;
    for (size_t i = pair_slot(key, t->merge_shift);; i = (i + 1) & mask) {
        const tk_merge_t *e = &t->merges[i];
        if (e->key == key)
            return e;
        if (e->key == UINT64_MAX)
            return NULL;
    }
}

/* ---- construction helpers ------------------------------------------------ */

static int arena_add(coil_tokenizer_t *t, const void *s, size_t n, size_t *off)
{
    *off = t->arena.len;
    if (tk_buf_append(&t->arena, s, n) || tk_buf_append(&t->arena, "", 1))
        return COIL_ENOMEM;
    return 0;
}

/* Ensures t->ent covers id. */
static int ent_reserve(coil_tokenizer_t *t, int32_t id)
{
    size_t need = (size_t)id + 1;
    if (need <= t->n_ent)
        return 0;
    if (need > SIZE_MAX / sizeof(tk_entry_t))
        return COIL_ENOMEM;
    size_t cap = t->n_ent_cap ? t->n_ent_cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap != t->n_ent_cap) {
        tk_entry_t *p = realloc(t->ent, cap * sizeof *p);
        if (!p)
            return COIL_ENOMEM;
        t->ent = p;
        t->n_ent_cap = cap;
    }
    memset(t->ent + t->n_ent, 0, (need - t->n_ent) * sizeof *t->ent);
    t->n_ent = need;
    return 0;
}

/* The bytes the ByteLevel decoder produces for token string s: each char
 * mapped back through the byte table, or, if any char is not in the table,
 * the token's own UTF-8 bytes (this is what `tokenizers` does). */
static int bytelevel_decode_token(coil_tokenizer_t *t, const char *s, size_t n, size_t *off,
                                  size_t *len)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t k = 0, i = 0;
    int ok = t->decoder == TK_DEC_BYTELEVEL;
    /* At most one byte per character: decode straight into the arena (s
     * never points into the arena, which the reserve may move). */
    while (ok && i < n) {
        uint32_t cp;
        i += tk_utf8_decode(u, i, &cp);
        ok = unicode_to_byte(t, cp) >= 0;
    }
    if (!ok) {
        *len = n;
        return arena_add(t, s, n, off);
    }
    if (tk_buf_reserve(&t->arena, n + 1))
        return COIL_ENOMEM;
    *off = t->arena.len;
    uint8_t *dst = t->arena.data + t->arena.len;
    for (i = 0; i < n;) {
        uint32_t cp;
        i += tk_utf8_decode(u, i, &cp);
        dst[k++] = (uint8_t)unicode_to_byte(t, cp);
    }
    dst[k] = 0;
    t->arena.len += k + 1;
    *len = k;
    return 0;
}

/* Adds an id with its token string (decode form computed here). */
static int set_entry(coil_tokenizer_t *t, int32_t id, const char *s, size_t n, int added,
                     int special)
{
    if (ent_reserve(t, id))
        return COIL_ENOMEM;
    tk_entry_t *e;
    size_t soff, doff, dlen;
    if (arena_add(t, s, n, &soff))
        return COIL_ENOMEM;
    if (t->kind == TK_KIND_BYTES) {
        doff = soff;
        dlen = n;
    } else if (bytelevel_decode_token(t, s, n, &doff, &dlen)) {
        return COIL_ENOMEM;
    }
    e = &t->ent[id];
    e->str_off = soff;
    e->str_len = n;
    e->dec_off = doff;
    e->dec_len = dlen;
    e->present = 1;
    e->added = (uint8_t)added;
    e->special = (uint8_t)special;
    return 0;
}

static int add_added_token(coil_tokenizer_t *t, const char *content, size_t n, int32_t id,
                           int special, int normalized, int lstrip, int rstrip, int single_word)
{
    if (n == 0)
        return 0;
    if (t->n_added == t->added_cap) {
        size_t cap = t->added_cap ? t->added_cap * 2 : 16;
        tk_added_t *p = realloc(t->added, cap * sizeof *p);
        if (!p)
            return COIL_ENOMEM;
        t->added = p;
        t->added_cap = cap;
    }
    tk_added_t *a = &t->added[t->n_added++];
    if (arena_add(t, content, n, &a->off))
        return COIL_ENOMEM;
    a->len = n;
    a->id = id;
    a->special = (uint8_t)special;
    a->normalized = (uint8_t)normalized;
    a->lstrip = (uint8_t)lstrip;
    a->rstrip = (uint8_t)rstrip;
    a->single_word = (uint8_t)single_word;
    if (n > t->max_added_len)
        t->max_added_len = n;
    return set_entry(t, id, content, n, 1, special);
}

typedef struct {
    uint8_t first;
    size_t len;
    uint32_t idx;
} added_key_t;

static int cmp_added(const void *pa, const void *pb)
{
    const added_key_t *a = pa, *b = pb;
    if (a->first != b->first)
        return a->first < b->first ? -1 : 1;
    if (a->len != b->len)
        return a->len > b->len ? -1 : 1; /* longest first: leftmost-longest */
    return a->idx < b->idx ? -1 : 1;
}

/* Per matching set (0 raw, 1 normalized): indices of added tokens sorted by
 * first byte then length descending, with per-first-byte bucket bounds. */
static int build_added_index(coil_tokenizer_t *t)
{
    for (int set = 0; set < 2; set++) {
        tk_matchset_t *ms = &t->sets[set];
        size_t n = 0;
        for (size_t i = 0; i < t->n_added; i++)
            if (t->added[i].normalized == set)
                n++;
        ms->n = n;
        if (n == 0)
            continue;
        ms->idx = malloc(n * sizeof *ms->idx);
        added_key_t *keys = malloc(n * sizeof *keys);
        if (!ms->idx || !keys) {
            free(keys);
            return COIL_ENOMEM;
        }
        n = 0;
        for (size_t i = 0; i < t->n_added; i++)
            if (t->added[i].normalized == set) {
                keys[n++] = (added_key_t){t->arena.data[t->added[i].off], t->added[i].len,
                                          (uint32_t)i};
                if (t->added[i].len > ms->max_len)
                    ms->max_len = t->added[i].len;
            }
        qsort(keys, n, sizeof *keys, cmp_added);
        for (size_t i = 0; i < n; i++)
            ms->idx[i] = keys[i].idx;
        free(keys);
        size_t j = 0;
        for (int b = 0; b < 256; b++) {
            ms->bucket[b] = (uint32_t)j;
            while (j < n && (uint8_t)t->arena.data[t->added[ms->idx[j]].off] == b)
                j++;
        }
        ms->bucket[256] = (uint32_t)j;
        for (size_t i = 0; i < n; i++) {
            const tk_added_t *a = &t->added[ms->idx[i]];
            uint8_t b0 = t->arena.data[a->off];
            if (a->len < 2) {
                ms->has_single[b0] = 1;
            } else {
                uint8_t b1 = t->arena.data[a->off + 1];
                ms->second[b0][b1 >> 6] |= (uint64_t)1 << (b1 & 63);
            }
        }
    }
    return 0;
}

/* ---- added-token splitting (AddedVocabulary::find_matches) --------------- */

/* Leftmost-longest occurrence of a token of set ms at or after pos; returns
 * the token index or -1. */
static int64_t next_occurrence(const coil_tokenizer_t *t, const tk_matchset_t *ms,
                               const uint8_t *s, size_t n, size_t pos, size_t *at)
{
    const char *arena = (const char *)t->arena.data;
    for (size_t i = pos; i < n; i++) {
        uint32_t lo = ms->bucket[s[i]], hi = ms->bucket[s[i] + 1];
        if (lo == hi)
            continue;
        if (!ms->has_single[s[i]]) { /* every candidate has a second byte: filter on it */
            if (i + 1 >= n)
                continue;
            const uint64_t *bits = ms->second[s[i]];
            if (!(bits[s[i + 1] >> 6] >> (s[i + 1] & 63) & 1))
                continue;
        }
        for (uint32_t k = lo; k < hi; k++) {
            const tk_added_t *a = &t->added[ms->idx[k]];
            if (a->len <= n - i && (a->len < 2 || (uint8_t)arena[a->off + 1] == s[i + 1]) &&
                memcmp(arena + a->off, s + i, a->len) == 0) {
                *at = i;
                return ms->idx[k];
            }
        }
    }
    return -1;
}

int tk_occurrence_overlaps(const coil_tokenizer_t *t, int set, const uint8_t *s, size_t n,
                           size_t lo, size_t hi)
{
    const tk_matchset_t *ms = &t->sets[set];
    const char *arena = (const char *)t->arena.data;
    if (ms->n == 0)
        return 0;
    size_t from = lo >= ms->max_len ? lo - ms->max_len + 1 : 0;
    size_t to = hi < n ? hi : n;
    for (size_t i = from; i < to; i++) {
        uint32_t b = ms->bucket[s[i]], e = ms->bucket[s[i] + 1];
        for (uint32_t k = b; k < e; k++) {
            const tk_added_t *a = &t->added[ms->idx[k]];
            if (a->len <= n - i && i + a->len > lo &&
                memcmp(arena + a->off, s + i, a->len) == 0)
                return 1;
        }
    }
    return 0;
}

static size_t space_leftmost_at_end(const uint8_t *s, size_t end)
{
    size_t i = end;
    while (i > 0) {
        size_t st = char_start_before(s, i);
        uint32_t cp;
        tk_utf8_decode(s, st, &cp);
        if (!is_space_cp(cp))
            return i;
        i = st;
    }
    return 0;
}

static size_t space_rightmost_len(const uint8_t *s, size_t n, size_t start)
{
    size_t i = start;
    while (i < n) {
        uint32_t cp;
        size_t l = tk_utf8_decode(s, i, &cp);
        if (!is_space_cp(cp))
            break;
        i += l;
    }
    return i - start;
}

/* Splits s[0..n) into segments: text (id -1) and added tokens of set. */
static int split_added(const coil_tokenizer_t *t, int set, const uint8_t *s, size_t n,
                       tk_segs_t *out)
{
    const tk_matchset_t *ms = &t->sets[set];
    size_t start_offset = 0, pos = 0;
    out->n = 0;
    while (ms->n && pos < n) {
        size_t at;
        int64_t k = next_occurrence(t, ms, s, n, pos, &at);
        if (k < 0)
            break;
        const tk_added_t *a = &t->added[k];
        size_t start = at, stop = at + a->len;
        pos = stop;
        if (a->single_word && t->kind != TK_KIND_BYTES) {
            int start_space = 1, stop_space = 1;
            if (start > 0) {
                uint32_t cp;
                tk_utf8_decode(s, char_start_before(s, start), &cp);
                start_space = !is_word_cp(cp);
            }
            if (stop < n) {
                uint32_t cp;
                tk_utf8_decode(s, stop, &cp);
                stop_space = !is_word_cp(cp);
            }
            if (!start_space || !stop_space)
                continue;
        }
        if (a->lstrip && t->kind != TK_KIND_BYTES) {
            size_t ns = space_leftmost_at_end(s, start);
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip && t->kind != TK_KIND_BYTES)
            stop += space_rightmost_len(s, n, stop);
        if (out->n + 2 > out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 16;
            tk_seg_t *p = realloc(out->seg, cap * sizeof *p);
            if (!p)
                return COIL_ENOMEM;
            out->seg = p;
            out->cap = cap;
        }
        if (start_offset < start)
            out->seg[out->n++] = (tk_seg_t){start_offset, start, -1};
        out->seg[out->n++] = (tk_seg_t){start, stop, a->id};
        start_offset = stop;
    }
    if (start_offset < n || out->n == 0) {
        if (out->n + 1 > out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 16;
            tk_seg_t *p = realloc(out->seg, cap * sizeof *p);
            if (!p)
                return COIL_ENOMEM;
            out->seg = p;
            out->cap = cap;
        }
        out->seg[out->n++] = (tk_seg_t){start_offset, n, -1};
    }
    return 0;
}

/* ---- BPE ------------------------------------------------------------------ */

static int ctx_grow_word(tk_ctx_t *c, size_t n)
{
    if (n <= c->word_cap)
        return 0;
    size_t cap = pow2_at_least(n);
    if (cap > SIZE_MAX / sizeof(uint64_t) / 2)
        return COIL_ENOMEM;
    int32_t *id = realloc(c->sym_id, cap * sizeof *id);
    if (id)
        c->sym_id = id;
    int32_t *pv = realloc(c->sym_prev, cap * sizeof *pv);
    if (pv)
        c->sym_prev = pv;
    int32_t *nx = realloc(c->sym_next, cap * sizeof *nx);
    if (nx)
        c->sym_next = nx;
    uint64_t *hp = realloc(c->heap, 2 * cap * sizeof *hp);
    if (hp)
        c->heap = hp;
    if (!id || !pv || !nx || !hp)
        return COIL_ENOMEM;
    c->word_cap = cap;
    return 0;
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v)
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, s = i;
        uint64_t sv = v;
        if (l < m && h[l] < sv) {
            s = l;
            sv = h[l];
        }
        if (r < m && h[r] < sv)
            s = r;
        if (s == i)
            break;
        h[i] = h[s];
        i = s;
    }
    h[i] = v;
    return top;
}

/* Model::tokenize for one pre-token (raw bytes); appends ids to out. */
static int bpe_word(const coil_tokenizer_t *t, tk_ctx_t *c, const uint8_t *w, size_t n,
                    tk_ids_t *out)
{
    if (t->ignore_merges && n <= t->max_vocab_len) { /* whole word in the vocab: no merging */
        c->word.len = 0;
        if (tk_buf_reserve(&c->word, 2 * n))
            return COIL_ENOMEM;
        for (size_t i = 0; i < n; i++)
            c->word.len += utf8_encode(t->b2u[w[i]], c->word.data + c->word.len);
        int32_t id = tk_strmap_get(&t->vocab, (const char *)t->arena.data,
                                   (const char *)c->word.data, c->word.len);
        if (id >= 0)
            return tk_ids_append(out, &id, 1);
    }
    if (n > COIL_TOKENIZER_MAX_WORD)
        return COIL_ETOOBIG;
    if (ctx_grow_word(c, n))
        return COIL_ENOMEM;
    int32_t *id = c->sym_id, *prev = c->sym_prev, *next = c->sym_next;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t b = t->byte_id[w[i]];
        if (b < 0) {
            if (t->unk_id < 0)
                continue; /* `tokenizers` drops characters it cannot map */
            if (t->fuse_unk && m > 0 && id[m - 1] == t->unk_id)
                continue;
            b = t->unk_id;
        }
        id[m++] = b;
    }
    if (m == 0)
        return 0;
    for (size_t i = 0; i < m; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < m; i++) {
        const tk_merge_t *e = merge_get(t, id[i], id[i + 1]);
        if (e)
            heap_push(c->heap, &hn, ((uint64_t)(uint32_t)e->rank << 32) | i);
    }
    while (hn > 0) {
        uint64_t top = heap_pop(c->heap, &hn);
        int32_t rank = (int32_t)(top >> 32);
        size_t pos = (size_t)(top & 0xFFFFFFFFu);
        if (id[pos] < 0 || next[pos] < 0)
            continue;
        int32_t nx = next[pos];
        const tk_merge_t *e = merge_get(t, id[pos], id[nx]);
        if (!e || e->rank != rank)
            continue;
        /* merge pos and nx into pos */
        id[pos] = e->new_id;
        id[nx] = -1;
        next[pos] = next[nx];
        if (next[nx] >= 0)
            prev[next[nx]] = (int32_t)pos;
        if (prev[pos] >= 0) {
            const tk_merge_t *l = merge_get(t, id[prev[pos]], id[pos]);
            if (l)
                heap_push(c->heap, &hn, ((uint64_t)(uint32_t)l->rank << 32) | (uint32_t)prev[pos]);
        }
        if (next[pos] >= 0) {
            const tk_merge_t *r = merge_get(t, id[pos], id[next[pos]]);
            if (r)
                heap_push(c->heap, &hn, ((uint64_t)(uint32_t)r->rank << 32) | pos);
        }
    }
    if (tk_ids_reserve(out, m))
        return COIL_ENOMEM;
    for (int32_t i = 0; i >= 0; i = next[i])
        out->data[out->len++] = id[i];
    return 0;
}

/* Word cache: open addressing over (hash, key bytes) -> ids, reset when full. */
#define TK_CACHE_SLOTS 65536u
#define TK_CACHE_MAX_WORD 48u
#define TK_CACHE_MAX_ENTRIES (TK_CACHE_SLOTS / 2)

static void cache_reset(tk_ctx_t *c)
{
    if (c->cache)
        memset(c->cache, 0, TK_CACHE_SLOTS * sizeof *c->cache);
    c->cache_used = 0;
    c->cache_keys.len = 0;
    c->cache_ids.len = 0;
}

static int bpe_cached(const coil_tokenizer_t *t, tk_ctx_t *c, const uint8_t *w, size_t n,
                      tk_ids_t *out)
{
    if (n > TK_CACHE_MAX_WORD)
        return bpe_word(t, c, w, n, out);
    if (!c->cache) {
        c->cache = calloc(TK_CACHE_SLOTS, sizeof *c->cache);
        if (!c->cache)
            return bpe_word(t, c, w, n, out);
    }
    uint64_t h = hash_bytes(w, n) | 1; /* hash 0 marks an empty slot */
    size_t i = (size_t)h & (TK_CACHE_SLOTS - 1);
    for (;; i = (i + 1) & (TK_CACHE_SLOTS - 1)) {
        tk_cache_entry_t *e = &c->cache[i];
        if (e->hash == 0)
            break;
        if (e->hash == h && e->key_len == n && memcmp(c->cache_keys.data + e->key_off, w, n) == 0)
            return tk_ids_append(out, c->cache_ids.data + e->ids_off, e->n_ids);
    }
    size_t before = out->len;
    int rc = bpe_word(t, c, w, n, out);
    if (rc)
        return rc;
    size_t nid = out->len - before;
    if (c->cache_used >= TK_CACHE_MAX_ENTRIES || nid > TK_CACHE_MAX_WORD) {
        if (c->cache_used >= TK_CACHE_MAX_ENTRIES)
            cache_reset(c);
        return 0;
    }
    size_t koff = c->cache_keys.len, ioff = c->cache_ids.len;
    if (tk_buf_append(&c->cache_keys, w, n) ||
        tk_ids_append(&c->cache_ids, nid ? out->data + before : NULL, nid))
        return 0; /* the cache is an optimisation; the ids are already out */
    tk_cache_entry_t *e = &c->cache[i];
    e->hash = h;
    e->key_off = (uint32_t)koff;
    e->key_len = (uint16_t)n;
    e->ids_off = (uint32_t)ioff;
    e->n_ids = (uint16_t)nid;
    c->cache_used++;
    return 0;
}

/* ---- pre-tokenization -------------------------------------------------- */

size_t tk_gpt2_next(const uint8_t *s, size_t n, size_t i)
{
    uint32_t c, d;
    size_t l = tk_utf8_decode(s, i, &c);
    if (c == '\'' && i + 1 < n) {
        uint8_t x = s[i + 1];
        if (x == 's' || x == 't' || x == 'm' || x == 'd')
            return i + 2;
        if (i + 2 < n) {
            uint8_t y = s[i + 2];
            if ((x == 'r' && y == 'e') || (x == 'v' && y == 'e') || (x == 'l' && y == 'l'))
                return i + 3;
        }
    }
    int k = tk_char_class(c);
    size_t j = i + l;
    if (c == ' ' && j < n) { /* " ?X+" */
        size_t l2 = tk_utf8_decode(s, j, &d);
        int k2 = tk_char_class(d);
        if (k2 != TK_CLS_WS) {
            k = k2;
            j += l2;
        }
    }
    if (k != TK_CLS_WS) {
        while (j < n) {
            size_t l2 = tk_utf8_decode(s, j, &d);
            if (tk_char_class(d) != k)
                break;
            j += l2;
        }
        return j;
    }
    /* whitespace: \s+(?!\S) then \s+ */
    size_t last = i;
    j = i;
    while (j < n) {
        size_t l2 = tk_utf8_decode(s, j, &d);
        if (tk_char_class(d) != TK_CLS_WS)
            break;
        last = j;
        j += l2;
    }
    if (j == n)
        return n;
    return last > i ? last : j;
}

static int pretokenize(const coil_tokenizer_t *t, tk_ctx_t *c, const uint8_t *s, size_t n,
                       int prefix_space, tk_ids_t *out)
{
    if (n == 0)
        return 0;
    if (prefix_space && s[0] != ' ') {
        c->tmp.len = 0;
        if (tk_buf_append(&c->tmp, " ", 1) || tk_buf_append(&c->tmp, s, n))
            return COIL_ENOMEM;
        s = c->tmp.data;
        n = c->tmp.len;
    }
    if (!t->use_regex)
        return bpe_cached(t, c, s, n, out);
    for (size_t i = 0; i < n;) {
        size_t j = tk_gpt2_next(s, n, i);
        int rc;
        if (t->prefix_pieces && s[i] != ' ') {
            c->tmp.len = 0;
            if (tk_buf_append(&c->tmp, " ", 1) || tk_buf_append(&c->tmp, s + i, j - i))
                return COIL_ENOMEM;
            rc = bpe_cached(t, c, c->tmp.data, c->tmp.len, out);
        } else {
            rc = bpe_cached(t, c, s + i, j - i, out);
        }
        if (rc)
            return rc;
        i = j;
    }
    return 0;
}

/* ---- the encode pipeline ------------------------------------------------- */

/* 1 when NFC may change s (some code point >= U+0300, i.e. a lead byte >= 0xCC). */
int tk_may_need_nfc(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 0xCC)
            return 1;
    return 0;
}

int tk_nfc(const uint8_t *s, size_t n, uint8_t **out, size_t *out_len)
{
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r;
    if (n > (size_t)PTRDIFF_MAX / 4)
        return COIL_ETOOBIG;
    r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                     UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (r < 0)
        return r == UTF8PROC_ERROR_NOMEM ? COIL_ENOMEM : COIL_EFORMAT;
    *out = dst;
    *out_len = (size_t)r;
    return 0;
}

int tk_encode_chunk(const coil_tokenizer_t *t, tk_ctx_t *c, const uint8_t *s, size_t n,
                    int continuation, tk_ids_t *out)
{
    static const uint8_t empty[1];
    if (!s) /* n == 0: no pointer arithmetic on NULL below */
        s = empty;
    int rc = split_added(t, 0, s, n, &c->segs_raw);
    if (rc)
        return rc;
    for (size_t i = 0; i < c->segs_raw.n; i++) {
        tk_seg_t g = c->segs_raw.seg[i];
        if (g.id >= 0) {
            if ((rc = tk_ids_append(out, &g.id, 1)))
                return rc;
            continue;
        }
        const uint8_t *p = s + g.start;
        size_t pn = g.end - g.start;
        uint8_t *norm = NULL;
        if (t->kind == TK_KIND_BYTES) {
            if ((rc = tk_ids_reserve(out, pn)))
                return rc;
            for (size_t k = 0; k < pn; k++)
                out->data[out->len++] = t->byte_id[p[k]];
            continue;
        }
        if (t->nfc && tk_may_need_nfc(p, pn)) {
            if ((rc = tk_nfc(p, pn, &norm, &pn)))
                return rc;
            p = norm;
        }
        rc = split_added(t, 1, p, pn, &c->segs_norm);
        for (size_t k = 0; rc == 0 && k < c->segs_norm.n; k++) {
            tk_seg_t h = c->segs_norm.seg[k];
            if (h.id >= 0) {
                rc = tk_ids_append(out, &h.id, 1);
                continue;
            }
            int cont = continuation && g.start == 0 && h.start == 0;
            rc = pretokenize(t, c, p + h.start, h.end - h.start, t->add_prefix_space && !cont,
                             out);
        }
        free(norm);
        if (rc)
            return rc;
    }
    return 0;
}

void tk_ctx_free(tk_ctx_t *c)
{
    free(c->sym_id);
    free(c->sym_prev);
    free(c->sym_next);
    free(c->heap);
    free(c->cache);
    free(c->cache_keys.data);
    free(c->cache_ids.data);
    free(c->segs_raw.seg);
    free(c->segs_norm.seg);
    free(c->tmp.data);
    free(c->word.data);
    memset(c, 0, sizeof *c);
}

int coil_tokenizer_encode(const coil_tokenizer_t *tok, const char *text, size_t len,
                          int32_t **ids_out, size_t *n_out, coil_err_t *err)
{
    tk_ctx_t ctx;
    tk_ids_t ids = {0};
    tk_buf_t clean = {0};
    const uint8_t *s = (const uint8_t *)text;
    int rc;

    if (ids_out)
        *ids_out = NULL;
    if (n_out)
        *n_out = 0;
    if (!tok || (!text && len) || !ids_out || !n_out)
        return coil_err_set(err, COIL_EINVAL, "coil_tokenizer_encode: NULL argument");
    memset(&ctx, 0, sizeof ctx);
    if (tok->kind != TK_KIND_BYTES) {
        if ((rc = tk_utf8_repair(&clean, s, len, 1, NULL, NULL, NULL)))
            goto fail;
        s = clean.data;
        len = clean.len;
    }
    rc = tk_ids_append(&ids, tok->tmpl_prefix, tok->n_tmpl_prefix);
    if (!rc)
        rc = tk_encode_chunk(tok, &ctx, s, len, 0, &ids);
    if (!rc)
        rc = tk_ids_append(&ids, tok->tmpl_suffix, tok->n_tmpl_suffix);
    if (!rc)
        rc = tk_ids_take(&ids, ids_out, n_out);
fail:
    free(clean.data);
    free(ids.data);
    tk_ctx_free(&ctx);
    if (rc)
        return coil_err_set(err, rc, "tokenizer: encoding %zu bytes failed: %s", len,
                            tk_encode_errstr(rc));
    return 0;
}

const char *tk_encode_errstr(int rc)
{
    if (rc == COIL_ETOOBIG)
        return "a pre-token (a run the GPT-2 split keeps whole) is over "
               "COIL_TOKENIZER_MAX_WORD (1 GiB)";
    return coil_strerror(rc);
}

/* ---- decoding ------------------------------------------------------------ */

int tk_token_bytes(const coil_tokenizer_t *t, int32_t id, int skip_special, int first,
                   tk_buf_t *out)
{
    if (id < 0 || (size_t)id >= t->n_ent || !t->ent[id].present)
        return 0;
    const tk_entry_t *e = &t->ent[id];
    if (skip_special && e->special)
        return 0;
    if (t->decoder == TK_DEC_NONE) { /* `tokenizers` joins tokens with " " */
        if (!first && tk_buf_append(out, " ", 1))
            return COIL_ENOMEM;
        return tk_buf_append(out, t->arena.data + e->str_off, e->str_len) ? COIL_ENOMEM : 1;
    }
    return tk_buf_append(out, t->arena.data + e->dec_off, e->dec_len) ? COIL_ENOMEM : 1;
}

int coil_tokenizer_decode(const coil_tokenizer_t *tok, const int32_t *ids, size_t n,
                          int skip_special, char **text_out, size_t *len_out, coil_err_t *err)
{
    tk_buf_t raw = {0}, out = {0};
    int rc = 0, first = 1;

    if (text_out)
        *text_out = NULL;
    if (len_out)
        *len_out = 0;
    if (!tok || (!ids && n) || !text_out || !len_out)
        return coil_err_set(err, COIL_EINVAL, "coil_tokenizer_decode: NULL argument");
    for (size_t i = 0; i < n && rc >= 0; i++) {
        rc = tk_token_bytes(tok, ids[i], skip_special, first, &raw);
        if (rc > 0)
            first = 0;
    }
    if (rc >= 0)
        rc = tk_utf8_repair(&out, raw.data ? raw.data : (const uint8_t *)"", raw.len, 1, NULL,
                            NULL, NULL);
    if (rc >= 0)
        rc = tk_buf_append(&out, "", 1);
    free(raw.data);
    if (rc < 0) {
        free(out.data);
        return coil_err_set(err, COIL_ENOMEM, "tokenizer: decoding %zu ids: out of memory", n);
    }
    *text_out = (char *)out.data;
    *len_out = out.len - 1;
    return 0;
}

/* ---- queries and lifetime -------------------------------------------------- */

size_t coil_tokenizer_token_len(const coil_tokenizer_t *tok, int32_t id)
{
    if (!tok || id < 0 || (size_t)id >= tok->n_ent || !tok->ent[id].present)
        return 0;
    if (tok->decoder == TK_DEC_NONE)
        return tok->ent[id].str_len;
    return tok->ent[id].dec_len;
}

size_t coil_tokenizer_vocab_size(const coil_tokenizer_t *tok)
{
    return tok ? tok->n_ent : 0;
}

int32_t coil_tokenizer_token_id(const coil_tokenizer_t *tok, const char *token)
{
    if (!tok || !token)
        return -1;
    size_t n = strlen(token);
    const char *arena = (const char *)tok->arena.data;
    for (size_t i = 0; i < tok->n_added; i++)
        if (tok->added[i].len == n && memcmp(arena + tok->added[i].off, token, n) == 0)
            return tok->added[i].id;
    return tk_strmap_get(&tok->vocab, arena, token, n);
}

void coil_tokenizer_destroy(coil_tokenizer_t **tok)
{
    if (!tok || !*tok)
        return;
    coil_tokenizer_t *t = *tok;
    free(t->ent);
    free(t->arena.data);
    free(t->vocab.e);
    free(t->merges);
    free(t->added);
    free(t->sets[0].idx);
    free(t->sets[1].idx);
    free(t->tmpl_prefix);
    free(t->tmpl_suffix);
    free(t);
    *tok = NULL;
}

static coil_tokenizer_t *tok_alloc(int kind)
{
    coil_tokenizer_t *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->kind = kind;
    t->unk_id = -1;
    t->decoder = TK_DEC_BYTELEVEL;
    byte_unicode_table(t->b2u);
    for (size_t i = 0; i < TK_U2B_SIZE; i++)
        t->u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        t->byte_id[b] = -1;
        t->u2b[t->b2u[b]] = (int16_t)b;
    }
    return t;
}

coil_tokenizer_t *coil_tokenizer_new_bytes(coil_err_t *err)
{
    coil_tokenizer_t *t = tok_alloc(TK_KIND_BYTES);
    int rc = t ? 0 : COIL_ENOMEM;
    for (int b = 0; rc == 0 && b < 256; b++) {
        uint8_t c = (uint8_t)b;
        t->byte_id[b] = b;
        rc = set_entry(t, b, (const char *)&c, 1, 0, 0);
    }
    if (rc == 0)
        rc = add_added_token(t, "<|endoftext|>", 13, 256, 1, 0, 0, 0, 0);
    if (rc == 0)
        rc = build_added_index(t);
    if (rc) {
        coil_tokenizer_destroy(&t);
        coil_err_set(err, rc, "tokenizer: building the byte tokenizer: %s", coil_strerror(rc));
        return NULL;
    }
    return t;
}

/* ---- tokenizer.json -------------------------------------------------------- */

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Boolean field; absent or null gives def; other types are an error (-1). */
static int jbool(json_t *o, const char *key, int def)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return def;
    if (!json_is_boolean(v))
        return -1;
    return json_is_true(v);
}

static const char *k_gpt2_pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int parse_normalizer(coil_tokenizer_t *t, json_t *n, const char *path, coil_err_t *err)
{
    if (!n || json_is_null(n))
        return 0;
    const char *type = jstr(n, "type");
    if (!type)
        return coil_err_set(err, COIL_EFORMAT, "%s: normalizer without a type", path);
    if (strcmp(type, "NFC") == 0) {
        t->nfc = 1;
        return 0;
    }
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(n, "normalizers"), *v;
        size_t i;
        if (!json_is_array(arr))
            return coil_err_set(err, COIL_EFORMAT, "%s: normalizer Sequence without a list",
                                path);
        json_array_foreach(arr, i, v) {
            int rc = parse_normalizer(t, v, path, err);
            if (rc)
                return rc;
        }
        return 0;
    }
    return coil_err_set(err, COIL_EUNSUPPORTED, "%s: normalizer %s is not supported (only NFC)",
                        path, type);
}

static int parse_bytelevel(coil_tokenizer_t *t, json_t *p, const char *path, coil_err_t *err)
{
    int aps = jbool(p, "add_prefix_space", 1), rx = jbool(p, "use_regex", 1);
    if (aps < 0 || rx < 0)
        return coil_err_set(err, COIL_EFORMAT, "%s: ByteLevel flags must be booleans", path);
    t->add_prefix_space = aps;
    t->use_regex = rx;
    return 0;
}

static int parse_pretokenizer(coil_tokenizer_t *t, json_t *p, const char *path, coil_err_t *err)
{
    const char *type = p && !json_is_null(p) ? jstr(p, "type") : NULL;
    if (!p || json_is_null(p))
        return coil_err_set(err, COIL_EUNSUPPORTED,
                            "%s: pre_tokenizer null is not supported (need ByteLevel)", path);
    if (!type)
        return coil_err_set(err, COIL_EFORMAT, "%s: pre_tokenizer without a type", path);
    if (strcmp(type, "ByteLevel") == 0)
        return parse_bytelevel(t, p, path, err);
    if (strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(p, "pretokenizers");
        if (!json_is_array(arr))
            return coil_err_set(err, COIL_EFORMAT, "%s: pre_tokenizer Sequence without a list",
                                path);
        if (json_array_size(arr) == 1) {
            const char *t0 = jstr(json_array_get(arr, 0), "type");
            if (t0 && strcmp(t0, "ByteLevel") == 0)
                return parse_bytelevel(t, json_array_get(arr, 0), path, err);
        }
        if (json_array_size(arr) == 2) {
            json_t *sp = json_array_get(arr, 0), *bl = json_array_get(arr, 1);
            const char *t0 = jstr(sp, "type"), *t1 = jstr(bl, "type");
            json_t *pat = json_object_get(sp, "pattern");
            const char *rx = pat ? jstr(pat, "Regex") : NULL;
            const char *beh = jstr(sp, "behavior");
            if (t0 && t1 && strcmp(t0, "Split") == 0 && strcmp(t1, "ByteLevel") == 0) {
                if (!rx || strcmp(rx, k_gpt2_pattern) != 0)
                    return coil_err_set(err, COIL_EUNSUPPORTED,
                                        "%s: pre_tokenizer Split pattern %s is not supported "
                                        "(only the GPT-2 regex)", path, rx ? rx : "(string)");
                if (!beh || strcmp(beh, "Isolated") != 0 || jbool(sp, "invert", 0) != 0)
                    return coil_err_set(err, COIL_EUNSUPPORTED,
                                        "%s: pre_tokenizer Split behavior %s/invert is not "
                                        "supported (only Isolated)", path, beh ? beh : "?");
                int aps = jbool(bl, "add_prefix_space", 1);
                if (aps < 0)
                    return coil_err_set(err, COIL_EFORMAT, "%s: ByteLevel flags must be booleans",
                                        path);
                if (jbool(bl, "use_regex", 1) != 0)
                    return coil_err_set(err, COIL_EUNSUPPORTED,
                                        "%s: pre_tokenizer Split+ByteLevel needs ByteLevel "
                                        "use_regex=false", path);
                t->use_regex = 1;
                t->add_prefix_space = 0;
                t->prefix_pieces = aps; /* ByteLevel after Split: a space before each piece */
                return 0;
            }
        }
        return coil_err_set(err, COIL_EUNSUPPORTED,
                            "%s: this pre_tokenizer Sequence is not supported "
                            "(only [ByteLevel] or [Split(GPT-2 regex), ByteLevel])", path);
    }
    return coil_err_set(err, COIL_EUNSUPPORTED,
                        "%s: pre_tokenizer %s is not supported (only ByteLevel)", path, type);
}

static int parse_decoder(coil_tokenizer_t *t, json_t *d, const char *path, coil_err_t *err)
{
    if (!d || json_is_null(d)) {
        t->decoder = TK_DEC_NONE;
        return 0;
    }
    const char *type = jstr(d, "type");
    if (type && strcmp(type, "ByteLevel") == 0) {
        t->decoder = TK_DEC_BYTELEVEL;
        return 0;
    }
    return coil_err_set(err, COIL_EUNSUPPORTED, "%s: decoder %s is not supported (only ByteLevel)",
                        path, type ? type : "(untyped)");
}

static int template_ids(json_t *items, json_t *specials, int32_t **pre, size_t *npre,
                        int32_t **suf, size_t *nsuf, const char *path, coil_err_t *err)
{
    tk_ids_t a = {0}, b = {0};
    int seen_seq = 0, rc = 0;
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        json_t *st = json_object_get(it, "SpecialToken"), *sq = json_object_get(it, "Sequence");
        if (sq) {
            const char *sid = jstr(sq, "id");
            if (seen_seq || !sid || strcmp(sid, "A") != 0) {
                rc = coil_err_set(err, COIL_EUNSUPPORTED,
                                  "%s: post_processor TemplateProcessing template with "
                                  "sequence %s is not supported", path, sid ? sid : "?");
                break;
            }
            seen_seq = 1;
            continue;
        }
        const char *name = st ? jstr(st, "id") : NULL;
        json_t *sp = name ? json_object_get(specials, name) : NULL;
        json_t *ids = sp ? json_object_get(sp, "ids") : NULL;
        if (!json_is_array(ids)) {
            rc = coil_err_set(err, COIL_EFORMAT,
                              "%s: post_processor TemplateProcessing: special token %s "
                              "without ids", path, name ? name : "?");
            break;
        }
        size_t k;
        json_t *v;
        json_array_foreach(ids, k, v) {
            json_int_t x = json_integer_value(v);
            if (!json_is_integer(v) || x < 0 || x > INT32_MAX) {
                rc = coil_err_set(err, COIL_EFORMAT, "%s: post_processor: bad id for %s", path,
                                  name);
                break;
            }
            int32_t id = (int32_t)x;
            if (tk_ids_append(seen_seq ? &b : &a, &id, 1)) {
                rc = coil_err_set(err, COIL_ENOMEM, "%s: out of memory", path);
                break;
            }
        }
        if (rc)
            break;
    }
    if (!rc && !seen_seq)
        rc = coil_err_set(err, COIL_EFORMAT,
                          "%s: post_processor TemplateProcessing single template lacks $A", path);
    if (rc) {
        free(a.data);
        free(b.data);
        return rc;
    }
    *pre = a.data;
    *npre = a.len;
    *suf = b.data;
    *nsuf = b.len;
    return 0;
}

static int parse_post(coil_tokenizer_t *t, json_t *p, const char *path, coil_err_t *err)
{
    if (!p || json_is_null(p))
        return 0;
    const char *type = jstr(p, "type");
    if (type && strcmp(type, "ByteLevel") == 0)
        return 0; /* only offsets change; ids are untouched */
    if (type && strcmp(type, "TemplateProcessing") == 0) {
        json_t *single = json_object_get(p, "single");
        if (!json_is_array(single))
            return coil_err_set(err, COIL_EFORMAT,
                                "%s: post_processor TemplateProcessing without \"single\"", path);
        return template_ids(single, json_object_get(p, "special_tokens"), &t->tmpl_prefix,
                            &t->n_tmpl_prefix, &t->tmpl_suffix, &t->n_tmpl_suffix, path, err);
    }
    if (type && strcmp(type, "Sequence") == 0) {
        json_t *arr = json_object_get(p, "processors"), *v;
        size_t i;
        json_array_foreach(arr, i, v) {
            int rc = parse_post(t, v, path, err);
            if (rc)
                return rc;
        }
        return 0;
    }
    return coil_err_set(err, COIL_EUNSUPPORTED,
                        "%s: post_processor %s is not supported (ByteLevel or "
                        "TemplateProcessing)", path, type ? type : "(untyped)");
}

static int parse_merges(coil_tokenizer_t *t, json_t *merges, const char *path, coil_err_t *err)
{
    size_t n = json_array_size(merges), i;
    json_t *m;
    const char *arena;
    tk_buf_t joined = {0}; /* a + b, grown to the longest merge */
    int rc = 0;

    if (n > INT32_MAX) /* ranks are int32_t */
        return coil_err_set(err, COIL_ETOOBIG, "%s: %zu merges, over the maximum %d", path, n,
                            INT32_MAX);
    t->merge_cap = pow2_at_least(n * 2 + 1);
    t->merge_shift = 64;
    for (size_t c = t->merge_cap; c > 1; c >>= 1)
        t->merge_shift--;
    t->merges = malloc(t->merge_cap * sizeof *t->merges);
    if (!t->merges)
        return coil_err_set(err, COIL_ENOMEM, "%s: out of memory for %zu merges", path, n);
    for (size_t k = 0; k < t->merge_cap; k++)
        t->merges[k].key = UINT64_MAX;
    json_array_foreach(merges, i, m) {
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(m)) {
            const char *s = json_string_value(m);
            size_t sl = json_string_length(m);
            const char *sp = memchr(s, ' ', sl);
            if (!sp || memchr(sp + 1, ' ', sl - (size_t)(sp + 1 - s))) {
                rc = coil_err_set(err, COIL_EFORMAT, "%s: merge %zu \"%.64s%s\" is not \"a b\"",
                                  path, i, s, sl > 64 ? "..." : "");
                break;
            }
            a = s;
            la = (size_t)(sp - s);
            b = sp + 1;
            lb = sl - la - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            la = json_string_length(json_array_get(m, 0));
            lb = json_string_length(json_array_get(m, 1));
        } else {
            rc = coil_err_set(err, COIL_EFORMAT, "%s: merge %zu is neither \"a b\" nor [a, b]",
                              path, i);
            break;
        }
        joined.len = 0;
        if (tk_buf_append(&joined, a, la) || tk_buf_append(&joined, b, lb)) {
            rc = coil_err_set(err, COIL_ENOMEM, "%s: out of memory for merge %zu", path, i);
            break;
        }
        arena = (const char *)t->arena.data;
        int32_t ia = tk_strmap_get(&t->vocab, arena, a, la);
        int32_t ib = tk_strmap_get(&t->vocab, arena, b, lb);
        int32_t im = tk_strmap_get(&t->vocab, arena, (const char *)joined.data, la + lb);
        if (ia < 0 || ib < 0 || im < 0) {
            rc = coil_err_set(err, COIL_EFORMAT,
                              "%s: merge %zu (%.*s%s %.*s%s): token missing from the vocab",
                              path, i, (int)(la > 64 ? 64 : la), a, la > 64 ? "..." : "",
                              (int)(lb > 64 ? 64 : lb), b, lb > 64 ? "..." : "");
            break;
        }
        uint64_t key = pair_key(ia, ib);
        size_t mask = t->merge_cap - 1;
        for (size_t s = pair_slot(key, t->merge_shift);; s = (s + 1) & mask) {
            tk_merge_t *e = &t->merges[s];
            if (e->key == key) { /* duplicate merge: the last one's rank wins, as in */
                e->rank = (int32_t)i; /* `tokenizers` (its merge map is collected in order) */
                break;
            }
            if (e->key == UINT64_MAX) {
                e->key = key;
                e->rank = (int32_t)i;
                e->new_id = im;
                break;
            }
        }
    }
    free(joined.data);
    return rc;
}

/* Checked first so that a WordPiece/Unigram file is reported as such. */
static int parse_model_type(json_t *m, const char *path, coil_err_t *err)
{
    const char *type = json_is_object(m) ? jstr(m, "type") : NULL;
    if (!json_is_object(m))
        return coil_err_set(err, COIL_EFORMAT, "%s: no \"model\" object", path);
    if (type && strcmp(type, "BPE") != 0)
        return coil_err_set(err, COIL_EUNSUPPORTED, "%s: model type %s is not supported (only BPE)",
                            path, type);
    return 0;
}

static int parse_model(coil_tokenizer_t *t, json_t *m, const char *path, coil_err_t *err)
{
    const char *type;
    json_t *vocab, *merges, *v;
    const char *key;
    int rc;

    if (!json_is_object(m))
        return coil_err_set(err, COIL_EFORMAT, "%s: no \"model\" object", path);
    type = jstr(m, "type");
    if (type && strcmp(type, "BPE") != 0)
        return coil_err_set(err, COIL_EUNSUPPORTED, "%s: model type %s is not supported (only BPE)",
                            path, type);
    vocab = json_object_get(m, "vocab");
    merges = json_object_get(m, "merges");
    if (!type && !merges)
        return coil_err_set(err, COIL_EUNSUPPORTED,
                            "%s: model without type or merges is not supported (only BPE)", path);
    if (!json_is_object(vocab) || !json_is_array(merges))
        return coil_err_set(err, COIL_EFORMAT, "%s: BPE model needs a vocab object and a merges "
                            "array", path);
    json_t *drop = json_object_get(m, "dropout");
    if (drop && !json_is_null(drop) && !(json_is_number(drop) && json_number_value(drop) == 0.0))
        return coil_err_set(err, COIL_EUNSUPPORTED, "%s: BPE dropout is not supported", path);
    const char *csp = jstr(m, "continuing_subword_prefix"), *eow = jstr(m, "end_of_word_suffix");
    if ((csp && *csp) || (eow && *eow))
        return coil_err_set(err, COIL_EUNSUPPORTED,
                            "%s: BPE %s is not supported", path,
                            csp && *csp ? "continuing_subword_prefix" : "end_of_word_suffix");
    if (jbool(m, "byte_fallback", 0) != 0)
        return coil_err_set(err, COIL_EUNSUPPORTED, "%s: BPE byte_fallback is not supported",
                            path);
    int im = jbool(m, "ignore_merges", 0), fu = jbool(m, "fuse_unk", 0);
    if (im < 0 || fu < 0)
        return coil_err_set(err, COIL_EFORMAT, "%s: BPE flags must be booleans", path);
    t->ignore_merges = im;
    t->fuse_unk = fu;

    if ((rc = strmap_init(&t->vocab, json_object_size(vocab))))
        return coil_err_set(err, rc, "%s: out of memory", path);
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_integer_value(v);
        size_t n = strlen(key), off;
        if (!json_is_integer(v) || id < 0)
            return coil_err_set(err, COIL_EFORMAT, "%s: vocab entry \"%.64s\" has a bad id",
                                path, key);
        if (id > COIL_TOKENIZER_MAX_ID)
            return coil_err_set(err, COIL_EFORMAT,
                                "%s: vocab entry \"%.64s\" has id %lld, over the maximum %d "
                                "(COIL_TOKENIZER_MAX_ID)", path, key, (long long)id,
                                COIL_TOKENIZER_MAX_ID);
        if (set_entry(t, (int32_t)id, key, n, 0, 0))
            return coil_err_set(err, COIL_ENOMEM, "%s: out of memory", path);
        off = t->ent[id].str_off;
        if (t->ent[id].dec_len > t->max_vocab_len)
            t->max_vocab_len = t->ent[id].dec_len;
        if (strmap_put(&t->vocab, (const char *)t->arena.data, off, n, (int32_t)id) >= 0)
            return coil_err_set(err, COIL_EFORMAT, "%s: duplicate vocab entry \"%s\"", path, key);
    }
    /* Initial symbols: the id of each byte's one-character token. */
    for (int b = 0; b < 256; b++) {
        uint8_t tmp[4];
        size_t k = utf8_encode(t->b2u[b], tmp);
        t->byte_id[b] = tk_strmap_get(&t->vocab, (const char *)t->arena.data, (const char *)tmp, k);
    }
    const char *unk = jstr(m, "unk_token");
    if (unk) {
        t->unk_id = tk_strmap_get(&t->vocab, (const char *)t->arena.data, unk, strlen(unk));
        if (t->unk_id < 0)
            return coil_err_set(err, COIL_EFORMAT, "%s: unk_token \"%s\" is not in the vocab",
                                path, unk);
    }
    return parse_merges(t, merges, path, err);
}

/* Added tokens get their ids the way `tokenizers` gives them (its
 * AddedVocabulary::add_tokens), whatever "id" the file says: a content that
 * is already added keeps its id and takes the new flags (an identical token
 * is skipped), one in the model vocab takes the vocab id, any other the next
 * id after the largest added one, or the model's vocab size if that is
 * larger.  Files saved by `tokenizers` always agree with their "id"s. */
static int parse_added(coil_tokenizer_t *t, json_t *arr, const char *path, coil_err_t *err)
{
    size_t i;
    json_t *a;
    tk_strmap_t seen = {0}; /* content -> index in t->added */
    int64_t max_id = -1;
    const int64_t model_size = (int64_t)t->vocab.used;
    int rc = 0;
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return coil_err_set(err, COIL_EFORMAT, "%s: added_tokens is not an array", path);
    if (strmap_init(&seen, json_array_size(arr)))
        return coil_err_set(err, COIL_ENOMEM, "%s: out of memory", path);
    json_array_foreach(arr, i, a) {
        json_t *idv = json_object_get(a, "id");
        const char *content = jstr(a, "content");
        if (!content || !json_is_integer(idv) || json_integer_value(idv) < 0) {
            rc = coil_err_set(err, COIL_EFORMAT, "%s: added_tokens[%zu] needs id and content",
                              path, i);
            break;
        }
        int special = jbool(a, "special", 0);
        int normalized = jbool(a, "normalized", !special);
        int lstrip = jbool(a, "lstrip", 0), rstrip = jbool(a, "rstrip", 0);
        int single = jbool(a, "single_word", 0);
        if (special < 0 || normalized < 0 || lstrip < 0 || rstrip < 0 || single < 0) {
            rc = coil_err_set(err, COIL_EFORMAT, "%s: added_tokens[%zu]: flags must be booleans",
                              path, i);
            break;
        }
        size_t clen = json_string_length(json_object_get(a, "content"));
        if (clen == 0)
            continue; /* `tokenizers` ignores empty added tokens */
        int32_t k = tk_strmap_get(&seen, (const char *)t->arena.data, content, clen);
        if (k >= 0) { /* added before: same id, the new flags */
            tk_added_t *o = &t->added[k];
            o->special = (uint8_t)special;
            o->normalized = (uint8_t)normalized;
            o->lstrip = (uint8_t)lstrip;
            o->rstrip = (uint8_t)rstrip;
            o->single_word = (uint8_t)single;
            t->ent[o->id].special = (uint8_t)special;
            continue;
        }
        int64_t id = tk_strmap_get(&t->vocab, (const char *)t->arena.data, content, clen);
        if (id < 0)
            id = max_id < 0 ? model_size
                 : (max_id >= model_size || model_size == 0) ? max_id + 1 : model_size;
        if (id > COIL_TOKENIZER_MAX_ID) {
            rc = coil_err_set(err, COIL_EFORMAT,
                              "%s: added_tokens[%zu] gets id %lld, over the maximum %d "
                              "(COIL_TOKENIZER_MAX_ID)", path, i, (long long)id,
                              COIL_TOKENIZER_MAX_ID);
            break;
        }
        if (id > max_id)
            max_id = id;
        if (add_added_token(t, content, clen, (int32_t)id, special, normalized, lstrip, rstrip,
                            single)) {
            rc = coil_err_set(err, COIL_ENOMEM, "%s: out of memory", path);
            break;
        }
        const tk_added_t *na = &t->added[t->n_added - 1];
        strmap_put(&seen, (const char *)t->arena.data, na->off, na->len,
                   (int32_t)(t->n_added - 1));
    }
    free(seen.e);
    if (rc)
        return rc;
    return build_added_index(t) ? coil_err_set(err, COIL_ENOMEM, "%s: out of memory", path) : 0;
}

coil_tokenizer_t *coil_tokenizer_load(const char *path, coil_err_t *err)
{
    json_error_t jerr;
    json_t *root;
    coil_tokenizer_t *t;
    int rc;
    FILE *f;

    if (!path) {
        coil_err_set(err, COIL_EINVAL, "coil_tokenizer_load: NULL path");
        return NULL;
    }
    f = fopen(path, "rb");
    if (!f) {
        coil_err_set(err, COIL_EIO, "%s: cannot open tokenizer file: %s", path, strerror(errno));
        return NULL;
    }
    int nomem = 0;
    root = coil_jsonload_file(f, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr, &nomem);
    fclose(f);
    if (nomem) {
        coil_err_set(err, COIL_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    if (!root) {
        coil_err_set(err, COIL_EFORMAT, "%s:%d:%d: malformed JSON: %s", path, jerr.line,
                     jerr.column, jerr.text);
        return NULL;
    }
    t = tok_alloc(TK_KIND_BPE);
    if (!t) {
        json_decref(root);
        coil_err_set(err, COIL_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    if (!json_is_object(root))
        rc = coil_err_set(err, COIL_EFORMAT, "%s: top level is not a JSON object", path);
    else if ((rc = parse_model_type(json_object_get(root, "model"), path, err)) == 0 &&
             (rc = parse_normalizer(t, json_object_get(root, "normalizer"), path, err)) == 0 &&
             (rc = parse_pretokenizer(t, json_object_get(root, "pre_tokenizer"), path, err)) == 0 &&
             (rc = parse_decoder(t, json_object_get(root, "decoder"), path, err)) == 0 &&
             (rc = parse_post(t, json_object_get(root, "post_processor"), path, err)) == 0 &&
             (rc = parse_model(t, json_object_get(root, "model"), path, err)) == 0)
        rc = parse_added(t, json_object_get(root, "added_tokens"), path, err);
    json_decref(root);
    if (rc) {
        coil_tokenizer_destroy(&t);
        return NULL;
    }
    return t;
}
