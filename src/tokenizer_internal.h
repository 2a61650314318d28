/* tokenizer_internal.h -- internals shared by tokenizer.c and
 * tokenizer_stream.c (the tk_ prefix marks them private to the module).
 * Not part of the public API; nothing outside the tokenizer includes it.
 */
#ifndef COIL_TOKENIZER_INTERNAL_H
#define COIL_TOKENIZER_INTERNAL_H

#include "tokenizer.h"

#include <stddef.h>
#include <stdint.h>

enum { TK_KIND_BPE = 0, TK_KIND_BYTES = 1 };
enum { TK_DEC_BYTELEVEL = 0, TK_DEC_NONE = 1 };
enum { TK_CLS_WS = 0, TK_CLS_L = 1, TK_CLS_N = 2, TK_CLS_O = 3 };
enum { TK_UTF8_INVALID = 0, TK_UTF8_VALID = 1, TK_UTF8_INCOMPLETE = 2 };
#define TK_U2B_SIZE 324 /* the GPT-2 byte alphabet ends at U+0143 */

typedef struct {
    uint8_t *data;
    size_t len, cap;
} tk_buf_t;

typedef struct {
    int32_t *data;
    size_t len, cap;
} tk_ids_t;

typedef struct {
    size_t str_off, str_len; /* token as written in tokenizer.json (arena) */
    size_t dec_off, dec_len; /* bytes the decoder produces for it (arena) */
    uint8_t present, added, special;
} tk_entry_t;

typedef struct {
    uint64_t hash;
    size_t off, len;
    int32_t id; /* -1: empty slot */
} tk_strmap_entry_t;

typedef struct {
    tk_strmap_entry_t *e;
    size_t cap, used;
} tk_strmap_t;

typedef struct {
    uint64_t key; /* (left id << 32) | right id; UINT64_MAX: empty */
    int32_t rank, new_id;
} tk_merge_t;

typedef struct {
    size_t off, len; /* content in the arena */
    int32_t id;
    uint8_t special, normalized, lstrip, rstrip, single_word;
} tk_added_t;

/* Added tokens of one matching set, sorted by first byte, longest first. */
typedef struct {
    uint32_t *idx;
    size_t n, max_len;
    uint32_t bucket[257];
    uint8_t has_single[256];  /* a one-byte token starts with this byte */
    uint64_t second[256][4];  /* second bytes seen after each first byte */
} tk_matchset_t;

struct coil_tokenizer {
    int kind, decoder;
    int nfc, use_regex, add_prefix_space;
    int prefix_pieces;    /* Split then ByteLevel(add_prefix_space): " " before each piece */
    int ignore_merges, fuse_unk;
    int32_t unk_id;
    size_t max_vocab_len; /* longest vocab token, in bytes */
    tk_buf_t arena;      /* all strings, NUL-separated */
    tk_entry_t *ent;     /* (n_ent): per id */
    size_t n_ent, n_ent_cap;
    tk_strmap_t vocab;   /* model vocab string -> id */
    tk_merge_t *merges;  /* (merge_cap): open addressing */
    size_t merge_cap;
    unsigned merge_shift;
    int32_t byte_id[256];     /* initial BPE symbol per byte, -1 if absent */
    uint32_t b2u[256];        /* GPT-2 byte -> code point */
    int16_t u2b[TK_U2B_SIZE]; /* code point -> byte or -1 */
    tk_added_t *added;
    size_t n_added, added_cap, max_added_len;
    tk_matchset_t sets[2]; /* [0] matched on raw text, [1] on normalized text */
    int32_t *tmpl_prefix, *tmpl_suffix; /* TemplateProcessing ids around $A */
    size_t n_tmpl_prefix, n_tmpl_suffix;
};

typedef struct {
    size_t start, end;
    int32_t id; /* -1: text */
} tk_seg_t;

typedef struct {
    tk_seg_t *seg;
    size_t n, cap;
} tk_segs_t;

typedef struct {
    uint64_t hash; /* 0: empty */
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids;
} tk_cache_entry_t;

/* Per-call / per-stream scratch space and word cache (never shared). */
typedef struct {
    int32_t *sym_id, *sym_prev, *sym_next; /* (word_cap) */
    uint64_t *heap;                        /* (2 * word_cap) */
    size_t word_cap;
    tk_cache_entry_t *cache;
    size_t cache_used;
    tk_buf_t cache_keys;
    tk_ids_t cache_ids;
    tk_segs_t segs_raw, segs_norm;
    tk_buf_t tmp;  /* pre-token piece with a prefix space */
    tk_buf_t word; /* ignore_merges lookup key */
} tk_ctx_t;

int tk_buf_reserve(tk_buf_t *b, size_t extra);
int tk_buf_append(tk_buf_t *b, const void *src, size_t n);
int tk_ids_reserve(tk_ids_t *v, size_t extra);
int tk_ids_append(tk_ids_t *v, const int32_t *ids, size_t n);
int tk_ids_take(tk_ids_t *v, int32_t **out, size_t *n);
/* What an encode error code means here (names the limit for COIL_ETOOBIG). */
const char *tk_encode_errstr(int rc);

/* Classifies the UTF-8 sequence at s[i] (i < n): TK_UTF8_VALID (*len its
 * length), TK_UTF8_INVALID (*len the maximal invalid subpart, >= 1) or
 * TK_UTF8_INCOMPLETE (a valid prefix cut by the end of s, *len = n - i). */
int tk_utf8_step(const uint8_t *s, size_t n, size_t i, size_t *len);

/* Called after each U+FFFD written at out position pos_after, for a
 * replaced run of raw_len input bytes; nonzero aborts with ENOMEM. */
typedef int (*tk_fix_cb)(void *ctx, size_t pos_after, size_t raw_len);

/* Appends s[0..n) to out with invalid subparts replaced by U+FFFD.  Unless
 * final, a trailing incomplete sequence is left unconsumed (*consumed < n). */
int tk_utf8_repair(tk_buf_t *out, const uint8_t *s, size_t n, int final, size_t *consumed,
                   tk_fix_cb fix, void *fix_ctx);
size_t tk_utf8_decode(const uint8_t *s, size_t i, uint32_t *cp);
int tk_char_class(uint32_t cp);
int tk_nfc_inert(uint32_t cp);
/* NFC of valid UTF-8 via utf8proc; *out is malloc'd (caller frees). */
int tk_nfc(const uint8_t *s, size_t n, uint8_t **out, size_t *out_len);
/* 0 when s is certainly NFC-invariant (all code points below U+0300). */
int tk_may_need_nfc(const uint8_t *s, size_t n);
int32_t tk_strmap_get(const tk_strmap_t *m, const char *arena, const char *s, size_t n);

/* End of the GPT-2 regex match starting at s[i] (valid UTF-8, i < n). */
size_t tk_gpt2_next(const uint8_t *s, size_t n, size_t i);

/* 1 if an added token of set (0 raw, 1 normalized) occurs in s[0..n) at
 * [a, a+len) with a < hi && a+len > lo (lo == hi: strictly spanning lo). */
int tk_occurrence_overlaps(const coil_tokenizer_t *t, int set, const uint8_t *s, size_t n,
                           size_t lo, size_t hi);

/* Encodes valid text s[0..n) (any bytes for the byte tokenizer) without the
 * post-processor; continuation: s continues a text piece begun earlier (no
 * prefix space for its first piece).  Appends to out. */
int tk_encode_chunk(const coil_tokenizer_t *t, tk_ctx_t *c, const uint8_t *s, size_t n,
                    int continuation, tk_ids_t *out);
void tk_ctx_free(tk_ctx_t *c);

/* Appends the decode bytes of one id (skipping unknown ids and, if asked,
 * specials); returns 1 if something was appended, 0 if skipped, <0 error. */
int tk_token_bytes(const coil_tokenizer_t *t, int32_t id, int skip_special, int first,
                   tk_buf_t *out);

#endif
