/* family.c -- the table of model families and the choice among them. */
#include "family.h"

#include <string.h>
#include <strings.h>

/* Every family coil runs; the first is the default for a config.json that
 * names neither model_type nor architectures (hand-written Mamba-1 ones). */
static const coil_family_t *const families[] = {&coil_family_mamba, &coil_family_falcon_mamba, &coil_family_mamba2,
                                                &coil_family_rwkv};
#define NFAM (sizeof families / sizeof families[0])

const char *coil_family_list(void)
{
    return "mamba, falcon_mamba, mamba2, rwkv";
}

const coil_family_t *coil_family_by_blob_id(uint32_t id)
{
    for (size_t i = 0; i < NFAM; i++)
        if (families[i]->blob_id == id)
            return families[i];
    return NULL;
}

/* A note for a name close to a family's but not it: RWKV-5/6/7 are other architectures. */
static const char *near_miss(const char *name)
{
    return name && strncasecmp(name, "rwkv", 4) == 0
               ? " (RWKV-5, -6 and -7 are other architectures: coil's rwkv is RWKV-4, RwkvForCausalLM)"
               : "";
}

int coil_family_pick(json_t *root, const char *what, const coil_family_t **out, coil_err_t *err)
{
    json_t *mt = json_object_get(root, "model_type"), *ar = json_object_get(root, "architectures");
    const char *type = NULL, *arch = NULL;
    if (mt && !json_is_null(mt)) {
        if (!json_is_string(mt))
            return coil_err_set(err, COIL_ECONFIG, "%s: field 'model_type' must be a string", what);
        type = json_string_value(mt);
    }
    if (ar && !json_is_null(ar)) {
        if (!json_is_array(ar) || (json_array_size(ar) > 0 && !json_is_string(json_array_get(ar, 0))))
            return coil_err_set(err, COIL_ECONFIG, "%s: field 'architectures' must be a list of strings", what);
        arch = json_array_size(ar) ? json_string_value(json_array_get(ar, 0)) : NULL;
    }
    const coil_family_t *by_type = NULL, *by_arch = NULL;
    for (size_t i = 0; i < NFAM; i++) {
        if (type && strcmp(type, families[i]->model_type) == 0)
            by_type = families[i];
        if (arch && strcmp(arch, families[i]->architecture) == 0)
            by_arch = families[i];
    }
    if (type && !by_type)
        return coil_err_set(err, COIL_EUNSUPPORTED, "%s: model_type '%s'%s%s%s is not a family coil runs: %s%s",
                            what, type, arch ? " (" : "", arch ? arch : "", arch ? ")" : "", coil_family_list(),
                            near_miss(type));
    if (!type && arch && !by_arch)
        return coil_err_set(err, COIL_EUNSUPPORTED, "%s: architecture '%s' is not a family coil runs: %s%s", what,
                            arch, coil_family_list(), near_miss(arch));
    if (by_type && by_arch && by_type != by_arch)
        return coil_err_set(err, COIL_ECONFIG, "%s: model_type '%s' disagrees with architectures[0] '%s' (%s)", what,
                            type, arch, by_type->architecture);
    *out = by_type ? by_type : by_arch ? by_arch : families[0];
    return 0;
}
