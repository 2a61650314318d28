/* jsonload.h -- json_loadb / json_loadf that notice allocation failures.
 *
 * jansson (2.14) can drop a byte of a token silently when growing its
 * token buffer fails (lex_save ignores strbuf_append_byte's result): a
 * document then loads "successfully" with a key or a string changed, and a
 * parser that ignores unknown keys goes on with a default in its place
 * (tests/test_allocfail found a tokenizer.json whose pre-tokenizer lost
 * add_prefix_space).  These route jansson's allocations through a wrapper
 * (json_set_alloc_funcs, installed once, process-wide: the wrappers are
 * malloc and free, so objects made before it are freed alike) that notes a
 * failure in the calling thread, and fail the load when one happened.
 */
#ifndef COIL_JSONLOAD_H
#define COIL_JSONLOAD_H

#include <jansson.h>
#include <stdio.h>

/* json_loadb; on an allocation failure during the load: NULL, je->text
 * "out of memory" and *nomem = 1 (nomem may be NULL).  *nomem = 0 otherwise. */
json_t *coil_jsonload_buf(const char *buf, size_t len, size_t flags, json_error_t *je, int *nomem);
/* json_loadf, likewise. */
json_t *coil_jsonload_file(FILE *f, size_t flags, json_error_t *je, int *nomem);

#endif
