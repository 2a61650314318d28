/* family.h -- a model family: one table of functions per architecture.
 *
 * config.json's model_type (or, without one, its architectures[0]) picks the
 * family; the loader, the state and the engine then only call through the
 * table and never ask which family they have.  A family supplies
 *
 *   parse_config    its config.json fields and their validation,
 *   bind            its tensors' names and shapes (src/model_internal.h),
 *   state_shape     its state tensors: floats per layer of the conv-like
 *                   ("conv") and the recurrent ("ssm") tensor,
 *   state_init      their values at position 0 when not all zero,
 *   scratch_floats  the activations one chunk of C tokens needs,
 *   chunk           its forward over one chunk on the backend ops, from
 *                   token ids to the final normed hidden vectors,
 *
 * and its identity: the model_type and architecture names, the tag the
 * fingerprint starts with, the id recorded in state blobs (0 is Mamba-1,
 * which version-1 blobs imply), and whether the CUDA forward runs it.
 *
 * Adding a family is one file with one table and one line in family.c; the
 * store, the service and the CLI do not change.
 */
#ifndef COIL_FAMILY_H
#define COIL_FAMILY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"
#include "model.h"
#include "state.h"

/* What one chunk forward runs with (all borrowed). */
typedef struct coil_family_run {
    const coil_backend_ops_t *ops;
    const coil_model_t *m;
    coil_state_t *st;
    float *scratch;  /* scratch_floats(m, C) floats, 64-byte aligned */
    float *wscratch; /* *wscratch_floats floats (a half-precision matrix's float32 copy), or NULL */
} coil_family_run_t;

struct coil_family {
    const char *model_type;   /* config.json "model_type": "mamba" */
    const char *architecture; /* config.json "architectures"[0]: "MambaForCausalLM" */
    const char *fp_tag;       /* the fingerprint starts with these bytes */
    uint32_t blob_id;         /* recorded in state blobs (v1 blobs: 0) */
    bool cuda;                /* kernels/cuda_engine.c implements its forward */

    /* Fills c (family already set) from the parsed config.json; 0 or a code + err naming the field. */
    int (*parse_config)(json_t *root, const char *what, coil_model_config_t *c, coil_err_t *err);
    /* Binds every tensor of the checkpoint (m->cfg parsed, files open); 0 or a code + err. */
    int (*bind)(coil_model_t *m, coil_err_t *err);
    /* Floats per layer of the state's two tensors. */
    void (*state_shape)(const coil_model_config_t *c, size_t *conv_per, size_t *ssm_per);
    /* The state at position 0, or NULL for all zero: fills layer l's two tensors
     * (zeroed already).  RWKV's max starts at -1e38. */
    void (*state_init)(const coil_model_config_t *c, float *conv, float *ssm);
    /* Floats of activations for a chunk of C tokens; *wscratch_floats: the weight scratch. */
    size_t (*scratch_floats)(const coil_model_t *m, int64_t C, size_t *wscratch_floats);
    /* ids[0..T) (T <= C, each < vocab_size) advance r->st; returns the (T, d_model) final
     * normed hidden vectors, inside r->scratch. */
    const float *(*chunk)(const coil_family_run_t *r, const int32_t *ids, int64_t T);
};

extern const coil_family_t coil_family_mamba;
extern const coil_family_t coil_family_falcon_mamba;
extern const coil_family_t coil_family_mamba2;
extern const coil_family_t coil_family_rwkv;

/* The family config.json names; 0, or COIL_EUNSUPPORTED + err naming the
 * model_type / architecture and the families coil runs. */
int coil_family_pick(json_t *root, const char *what, const coil_family_t **out, coil_err_t *err);

/* The family a state blob's id names, or NULL. */
const coil_family_t *coil_family_by_blob_id(uint32_t id);

/* "mamba, falcon_mamba, mamba2, rwkv" */
const char *coil_family_list(void);

#endif
