/* tokenizer.h -- byte-level BPE tokenizer, exact to Hugging Face `tokenizers`.
 *
 * Reads a tokenizer.json as published with Mamba / GPT-NeoX checkpoints and
 * encodes/decodes exactly as `tokenizers` does:
 *   added tokens (non-normalized ones matched on the raw text, then NFC,
 *   then normalized ones; single_word/lstrip/rstrip honoured)
 *   -> normalizer: null | NFC | Sequence of those
 *   -> pre-tokenizer: ByteLevel (use_regex, add_prefix_space) with the GPT-2
 *      split regex, or Sequence[Split(GPT-2 regex, Isolated), ByteLevel(no
 *      regex; add_prefix_space puts a space before each split piece)]
 *   -> model: BPE (merges as "a b" or ["a","b"], ignore_merges; no
 *      continuing_subword_prefix / end_of_word_suffix / byte_fallback / dropout)
 *   -> post-processor: null | ByteLevel (no-op for ids) | TemplateProcessing
 *      (single sequence: special ids before/after the text)
 *   decoder: ByteLevel (or null: tokens joined with " "), lossy UTF-8.
 * Added tokens get the ids `tokenizers` gives them (a vocab token keeps its vocab id,
 * others follow the vocab in file order), whatever "id" the file says.
 * Anything else is COIL_EUNSUPPORTED naming the feature, never different output.
 *
 * Input text that is not valid UTF-8 is first repaired the way Python's
 * bytes.decode("utf-8", "replace") does: each maximal invalid subpart becomes
 * U+FFFD.  The byte tokenizer (coil_tokenizer_new_bytes) takes bytes as they are.
 *
 * Thread-safety: a coil_tokenizer_t is immutable after load and may be used
 * from any number of threads at once.  Stream encoders and detokenizers are
 * single-threaded objects (one per thread/document); each keeps its own cache.
 */
#ifndef COIL_TOKENIZER_H
#define COIL_TOKENIZER_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

/* Limits.  Tokens, merges and added tokens may be of any length.  Ids in
 * tokenizer.json are at most COIL_TOKENIZER_MAX_ID (2^21 - 1, 8x the largest
 * published vocabularies; the per-id table is sized by the largest id); a
 * larger one is COIL_EFORMAT naming it.  One pre-token (a piece
 * the GPT-2 split keeps whole, e.g. a run of tabs) is at most
 * COIL_TOKENIZER_MAX_WORD bytes; a longer one fails the encode with
 * COIL_ETOOBIG naming this limit.  (Merge ranks are int32_t: at most
 * INT32_MAX merges, far beyond any file that fits in memory.) */
#define COIL_TOKENIZER_MAX_ID 2097151
#define COIL_TOKENIZER_MAX_WORD 1073741824u

typedef struct coil_tokenizer coil_tokenizer_t;
typedef struct coil_tokenizer_stream coil_tokenizer_stream_t;
typedef struct coil_detok coil_detok_t;

/* Loads a tokenizer.json.  Returns NULL and fills err on failure: COIL_EIO
 * (file), COIL_EFORMAT (malformed JSON or fields; message has line:column),
 * COIL_EUNSUPPORTED (message names the feature), COIL_ENOMEM. */
coil_tokenizer_t *coil_tokenizer_load(const char *tokenizer_json_path, coil_err_t *err);

/* Byte-level fallback: ids 0..255 are the bytes, 256 is the special
 * "<|endoftext|>".  No normalization, no merges.  NULL only on ENOMEM. */
coil_tokenizer_t *coil_tokenizer_new_bytes(coil_err_t *err);

/* Frees *tok and sets it to NULL; NULL and *tok == NULL are accepted. */
void coil_tokenizer_destroy(coil_tokenizer_t **tok);

/* Raw decoded byte length of one token (its bytes before any UTF-8 repair;
 * 0 for an unknown id).  For byte-level BPE, the lengths of a run of ids
 * sum to the length of the normalized text they encode: the ingest loop
 * uses this to place chunk boundaries in the source. */
size_t coil_tokenizer_token_len(const coil_tokenizer_t *tok, int32_t id);

/* Number of ids the tokenizer can produce: max id + 1 over the vocab and the
 * added tokens (mamba-130m: 50277, while its embedding has 50280 rows). */
size_t coil_tokenizer_vocab_size(const coil_tokenizer_t *tok);

/* Id of a token given as it is written in tokenizer.json (added tokens such
 * as "<|endoftext|>" first, then the vocab, e.g. "Ġthe"); -1 if absent.
 * The byte tokenizer names only "<|endoftext|>". */
int32_t coil_tokenizer_token_id(const coil_tokenizer_t *tok, const char *token);

/* Encodes len bytes of text as one document (post-processor included, like
 * `tokenizers` encode() with add_special_tokens=True).  On success *ids_out
 * is a malloc'd array the caller frees with free() (NULL when *n_out == 0).
 * On error *ids_out is NULL, *n_out 0. */
int coil_tokenizer_encode(const coil_tokenizer_t *tok, const char *text, size_t len,
                          int32_t **ids_out, size_t *n_out, coil_err_t *err);

/* Decodes ids to UTF-8 text like `tokenizers` decode(): ids that are not in
 * the vocabulary are skipped, special tokens too when skip_special is set,
 * and invalid UTF-8 produced by byte tokens becomes U+FFFD.  *text_out is a
 * malloc'd, NUL-terminated string (caller frees); *len_out excludes the NUL. */
int coil_tokenizer_decode(const coil_tokenizer_t *tok, const int32_t *ids, size_t n,
                          int skip_special, char **text_out, size_t *len_out,
                          coil_err_t *err);

/* ---- incremental encoder ------------------------------------------------
 * Feed a document in pieces of any size (boundaries may fall inside a UTF-8
 * sequence or an added token); the concatenation of all ids returned by
 * _feed and _finish equals coil_tokenizer_encode() of the whole document.
 * Ids are emitted only up to a boundary that no later text can change; the
 * held-back tail is bounded by the longest pending pre-token (plus ~100
 * bytes of look-ahead), not by the document.  tok must outlive the stream. */
coil_tokenizer_stream_t *coil_tokenizer_stream_new(const coil_tokenizer_t *tok,
                                                   coil_err_t *err);

/* Appends len bytes.  *ids / *n receive the newly final ids as a malloc'd
 * array the caller frees (NULL / 0 when none).  COIL_ESTATE after _finish. */
int coil_tokenizer_stream_feed(coil_tokenizer_stream_t *s, const char *bytes, size_t len,
                               int32_t **ids, size_t *n, coil_err_t *err);

/* Ends the document: returns the remaining ids (same ownership as _feed).
 * Afterwards only _committed and _destroy may be called. */
int coil_tokenizer_stream_finish(coil_tokenizer_stream_t *s, int32_t **ids, size_t *n,
                                 coil_err_t *err);

/* Number of input bytes covered by all ids emitted so far: the emitted ids
 * are exactly the encoding of input bytes [0, committed).  Equals the total
 * fed after _finish. */
uint64_t coil_tokenizer_stream_committed(const coil_tokenizer_stream_t *s);

/* Number of input bytes fed but not yet covered by emitted ids. */
size_t coil_tokenizer_stream_pending(const coil_tokenizer_stream_t *s);

void coil_tokenizer_stream_destroy(coil_tokenizer_stream_t **s);

/* ---- incremental decoder for generation ---------------------------------
 * Push ids one at a time; each push returns the bytes that became complete
 * UTF-8 characters (a partial character is held back).  The concatenation of
 * all pushes and the flush equals coil_tokenizer_decode() of all ids. */
coil_detok_t *coil_detok_new(const coil_tokenizer_t *tok, int skip_special, coil_err_t *err);

/* *bytes points to an internal buffer valid until the next call on d (not
 * NUL-terminated; *len may be 0).  Unknown ids are skipped, as in decode. */
int coil_detok_push(coil_detok_t *d, int32_t id, const char **bytes, size_t *len,
                    coil_err_t *err);

/* Emits what is held back (an incomplete sequence becomes U+FFFD) and resets
 * d for a new text.  Same buffer rules as _push. */
int coil_detok_flush(coil_detok_t *d, const char **bytes, size_t *len, coil_err_t *err);

void coil_detok_destroy(coil_detok_t **d);

#endif
