/* safetensors.h -- a validating, memory-mapped reader for .safetensors files.
 *
 * Format: u64 little-endian header length N, N bytes of JSON mapping tensor
 * names to {dtype, shape, data_offsets:[begin,end]} (offsets relative to the
 * byte after the header), optional "__metadata__", then the data.
 *
 * coil_safetensors_open() checks everything before returning, as strictly as
 * the reference reader (the safetensors package): header length inside the
 * file and at most COIL_ST_MAX_HEADER, well-formed JSON without duplicate
 * keys, __metadata__ a string -> string object (HF writes {"format": "pt"}),
 * known dtype, at most COIL_ST_MAX_DIMS dimensions, shape product x element
 * size == end - begin (overflow-checked), the tensors tiling the data section
 * exactly (no overlap, no hole, nothing after the last).  Tensor names have no
 * length limit (a NUL in one is a JSON error).  Any failure is an error naming
 * the file and the tensor.  Thread-safety: an open file is read-only and may
 * be shared.
 */
#ifndef COIL_SAFETENSORS_H
#define COIL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

typedef enum coil_dtype {
    COIL_DT_F32 = 0,
    COIL_DT_F16,
    COIL_DT_BF16,
    COIL_DT_F64,
    COIL_DT_I64,
    COIL_DT_I32,
    COIL_DT_I16,
    COIL_DT_I8,
    COIL_DT_U8,
    COIL_DT_BOOL,
    COIL_DT_F8_E4M3,
    COIL_DT_F8_E5M2,
    COIL_DT_COUNT
} coil_dtype_t;

#define COIL_ST_MAX_DIMS 8

typedef struct coil_tensor_info {
    const char *name;       /* NUL-terminated, owned by the file object */
    coil_dtype_t dtype;
    int ndim;
    int64_t shape[COIL_ST_MAX_DIMS];
    int64_t numel;
    const void *data;       /* aligned to the element size (copied if the file's was not) */
    size_t nbytes;
} coil_tensor_info_t;

typedef struct coil_safetensors coil_safetensors_t;

/* Largest header accepted (the JSON); real files are far below this. */
#define COIL_ST_MAX_HEADER ((uint64_t)100 << 20)

/* Opens and validates path.  Returns NULL and fills err on any problem. */
coil_safetensors_t *coil_safetensors_open(const char *path, coil_err_t *err);
/* Unmaps and frees; *st becomes NULL.  NULL and *st == NULL are accepted.
 * Every pointer obtained from the file is invalid afterwards. */
void coil_safetensors_close(coil_safetensors_t **st);

size_t coil_safetensors_count(const coil_safetensors_t *st);
/* i in [0, count): tensors in file order (by data offset). Borrowed. */
const coil_tensor_info_t *coil_safetensors_at(const coil_safetensors_t *st, size_t i);
/* NULL if absent. Borrowed until close. */
const coil_tensor_info_t *coil_safetensors_find(const coil_safetensors_t *st, const char *name);
const char *coil_safetensors_path(const coil_safetensors_t *st);

const char *coil_dtype_name(coil_dtype_t dt);
/* Element size in bytes (0 for an invalid value). */
size_t coil_dtype_size(coil_dtype_t dt);

#endif
