/* testutil.c -- helpers for tests and benchmarks: temp dirs, files, models. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tu_data(const char *rel)
{
    static char buf[4096];
    const char *root = getenv("COIL_TEST_DATA");
    snprintf(buf, sizeof buf, "%s/%s", root && *root ? root : "tests/data", rel);
    return buf;
}

char *tu_mkdtemp(void)
{
    const char *tmp = getenv("TMPDIR");
    char *p = malloc(4096);
    if (!p)
        return NULL;
    snprintf(p, 4096, "%s/coil-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

void tu_rm_rf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        if (d) {
            while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                    continue;
                char sub[4096];
                snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
                tu_rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

void *tu_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf && len)
        *len = (size_t)n;
    return buf;
}

int tu_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

int tu_write_st_raw(const char *path, const char *header, const void *data, size_t data_len)
{
    FILE *f = fopen(path, "wb");
    uint64_t n = strlen(header);
    unsigned char le[8];
    if (!f)
        return -1;
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(n >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(header, 1, n, f) == n &&
             (data_len == 0 || fwrite(data, 1, data_len, f) == data_len);
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

int tu_copy_dir(const char *src, const char *dst)
{
    DIR *d = opendir(src);
    struct dirent *de;
    if (!d || (mkdir(dst, 0755) != 0 && errno != EEXIST)) {
        if (d)
            closedir(d);
        return -1;
    }
    while ((de = readdir(d))) {
        char a[4096], b[4096];
        struct stat sb;
        snprintf(a, sizeof a, "%s/%s", src, de->d_name);
        snprintf(b, sizeof b, "%s/%s", dst, de->d_name);
        if (stat(a, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        size_t n;
        void *buf = tu_read(a, &n);
        if (!buf || tu_write(b, buf, n) != 0) {
            free(buf);
            closedir(d);
            return -1;
        }
        free(buf);
    }
    closedir(d);
    return 0;
}

/* ---- random model ---------------------------------------------------------- */

typedef struct {
    char name[128];
    int64_t shape[3];
    int ndim;
    int kind; /* 0 normal*scale, 1 = 1+0.1n, 2 = A_log, 3 = dt bias, 4 = uniform [0, 1) */
    float scale;
} tensor_spec_t;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_normal(uint64_t *s)
{
    double u1 = ((rng_next(s) >> 11) + 1) * 0x1.0p-53, u2 = (rng_next(s) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fff + ((u >> 16) & 1); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static uint16_t f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    int32_t e = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    uint32_t man = u & 0x7fffffu;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10)
            return (uint16_t)sign;
        man |= 0x800000u;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

int tu_write_random_model(const char *dir, const tu_model_shape_t *sh, uint64_t seed)
{
    const int64_t H = sh->d_model, D = sh->expand * H, N = sh->d_state, K = sh->d_conv,
                  R = sh->dt_rank ? sh->dt_rank : (H + 15) / 16, V = sh->vocab;
    const int esz = strcmp(sh->dtype, "F32") == 0 ? 4 : 2, bf = strcmp(sh->dtype, "BF16") == 0;
    size_t nspec = 0, cap = (size_t)(20 * sh->n_layer + 8);
    tensor_spec_t *spec = calloc(cap, sizeof *spec);
    char path[4096];
    int rc = -1;

    if (!spec)
        return -1;
#define ADD(k, sc, nd, a, b, c, ...)                                                               \
    do {                                                                                          \
        tensor_spec_t *t = &spec[nspec++];                                                        \
        snprintf(t->name, sizeof t->name, __VA_ARGS__);                                           \
        t->kind = k, t->scale = sc, t->ndim = nd, t->shape[0] = a, t->shape[1] = b, t->shape[2] = c; \
    } while (0)
    const char *fam = sh->family ? sh->family : getenv("COIL_TEST_FAMILY");
    const int m2 = fam && strcmp(fam, "mamba2") == 0;
    /* mamba2: head_dim 8, n_groups 2 unless the shape says (D a multiple of head_dim x n_groups) */
    const int64_t P = sh->head_dim > 0 ? sh->head_dim : 8, G = sh->n_groups > 0 ? sh->n_groups : 2, NH = D / P,
                  Dc = D + 2 * G * N;
    /* rwkv: attention_hidden_size = d_model, intermediate_size = expand x d_model, rescale_every 2 */
    const int rw = fam && strcmp(fam, "rwkv") == 0;
    if (rw) {
        ADD(0, 0.5f, 2, V, H, 0, "rwkv.embeddings.weight");
        ADD(1, 0, 1, H, 0, 0, "rwkv.blocks.0.pre_ln.weight");
        ADD(0, 0.1f, 1, H, 0, 0, "rwkv.blocks.0.pre_ln.bias");
    }
    for (int64_t l = 0; rw && l < sh->n_layer; l++) {
        const long long i = (long long)l;
        ADD(1, 0, 1, H, 0, 0, "rwkv.blocks.%lld.ln1.weight", i);
        ADD(0, 0.1f, 1, H, 0, 0, "rwkv.blocks.%lld.ln1.bias", i);
        ADD(1, 0, 1, H, 0, 0, "rwkv.blocks.%lld.ln2.weight", i);
        ADD(0, 0.1f, 1, H, 0, 0, "rwkv.blocks.%lld.ln2.bias", i);
        ADD(0, 1.0f, 1, H, 0, 0, "rwkv.blocks.%lld.attention.time_decay", i);
        ADD(0, 0.5f, 1, H, 0, 0, "rwkv.blocks.%lld.attention.time_first", i);
        ADD(4, 0, 3, 1, 1, H, "rwkv.blocks.%lld.attention.time_mix_key", i);
        ADD(4, 0, 3, 1, 1, H, "rwkv.blocks.%lld.attention.time_mix_value", i);
        ADD(4, 0, 3, 1, 1, H, "rwkv.blocks.%lld.attention.time_mix_receptance", i);
        ADD(0, 1.0f / sqrtf((float)H), 2, H, H, 0, "rwkv.blocks.%lld.attention.key.weight", i);
        ADD(0, 1.0f / sqrtf((float)H), 2, H, H, 0, "rwkv.blocks.%lld.attention.value.weight", i);
        ADD(0, 1.0f / sqrtf((float)H), 2, H, H, 0, "rwkv.blocks.%lld.attention.receptance.weight", i);
        ADD(0, 1.0f / sqrtf((float)H), 2, H, H, 0, "rwkv.blocks.%lld.attention.output.weight", i);
        ADD(4, 0, 3, 1, 1, H, "rwkv.blocks.%lld.feed_forward.time_mix_key", i);
        ADD(4, 0, 3, 1, 1, H, "rwkv.blocks.%lld.feed_forward.time_mix_receptance", i);
        ADD(0, 1.0f / sqrtf((float)H), 2, D, H, 0, "rwkv.blocks.%lld.feed_forward.key.weight", i);
        ADD(0, 1.0f / sqrtf((float)H), 2, H, H, 0, "rwkv.blocks.%lld.feed_forward.receptance.weight", i);
        ADD(0, 1.0f / sqrtf((float)D), 2, H, D, 0, "rwkv.blocks.%lld.feed_forward.value.weight", i);
    }
    if (rw) {
        ADD(1, 0, 1, H, 0, 0, "rwkv.ln_out.weight");
        ADD(0, 0.1f, 1, H, 0, 0, "rwkv.ln_out.bias");
        if (!sh->tied)
            ADD(0, 1.0f / sqrtf((float)H), 2, V, H, 0, "head.weight");
    } else
        ADD(0, 0.5f, 2, V, H, 0, "backbone.embeddings.weight");
    for (int64_t l = 0; m2 && l < sh->n_layer; l++) {
        ADD(1, 0, 1, H, 0, 0, "backbone.layers.%lld.norm.weight", (long long)l);
        ADD(0, 1.0f / sqrtf((float)H), 2, D + Dc + NH, H, 0, "backbone.layers.%lld.mixer.in_proj.weight", (long long)l);
        ADD(0, 0.3f, 3, Dc, 1, K, "backbone.layers.%lld.mixer.conv1d.weight", (long long)l);
        ADD(0, 0.1f, 1, Dc, 0, 0, "backbone.layers.%lld.mixer.conv1d.bias", (long long)l);
        ADD(3, 0, 1, NH, 0, 0, "backbone.layers.%lld.mixer.dt_bias", (long long)l);
        ADD(2, 0, 1, NH, 0, 0, "backbone.layers.%lld.mixer.A_log", (long long)l);
        ADD(1, 0, 1, NH, 0, 0, "backbone.layers.%lld.mixer.D", (long long)l);
        ADD(1, 0, 1, D, 0, 0, "backbone.layers.%lld.mixer.norm.weight", (long long)l);
        ADD(0, 1.0f / sqrtf((float)D) / sqrtf((float)sh->n_layer), 2, H, D, 0,
            "backbone.layers.%lld.mixer.out_proj.weight", (long long)l);
    }
    for (int64_t l = 0; !m2 && !rw && l < sh->n_layer; l++) {
        ADD(1, 0, 1, H, 0, 0, "backbone.layers.%lld.norm.weight", (long long)l);
        ADD(0, 1.0f / sqrtf((float)H), 2, 2 * D, H, 0, "backbone.layers.%lld.mixer.in_proj.weight", (long long)l);
        ADD(0, 0.3f, 3, D, 1, K, "backbone.layers.%lld.mixer.conv1d.weight", (long long)l);
        ADD(0, 0.1f, 1, D, 0, 0, "backbone.layers.%lld.mixer.conv1d.bias", (long long)l);
        ADD(0, 1.0f / sqrtf((float)D), 2, R + 2 * N, D, 0, "backbone.layers.%lld.mixer.x_proj.weight", (long long)l);
        ADD(0, 1.0f / sqrtf((float)R), 2, D, R, 0, "backbone.layers.%lld.mixer.dt_proj.weight", (long long)l);
        ADD(3, 0, 1, D, 0, 0, "backbone.layers.%lld.mixer.dt_proj.bias", (long long)l);
        ADD(2, 0, 2, D, N, 0, "backbone.layers.%lld.mixer.A_log", (long long)l);
        ADD(1, 0, 1, D, 0, 0, "backbone.layers.%lld.mixer.D", (long long)l);
        ADD(0, 1.0f / sqrtf((float)D) / sqrtf((float)sh->n_layer), 2, H, D, 0,
            "backbone.layers.%lld.mixer.out_proj.weight", (long long)l);
    }
    if (!rw)
        ADD(1, 0, 1, H, 0, 0, "backbone.norm_f.weight");
    if (!rw && !sh->tied)
        ADD(0, 1.0f / sqrtf((float)H), 2, V, H, 0, "lm_head.weight");
#undef ADD
    /* header */
    size_t hcap = nspec * 256 + 64, hl = 0, off = 0;
    char *hdr = malloc(hcap);
    if (!hdr)
        goto out;
    hl += (size_t)snprintf(hdr + hl, hcap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < nspec; i++) {
        tensor_spec_t *t = &spec[i];
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++)
            numel *= t->shape[d];
        size_t nb = (size_t)numel * (size_t)esz;
        hl += (size_t)snprintf(hdr + hl, hcap - hl, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, sh->dtype);
        for (int d = 0; d < t->ndim; d++)
            hl += (size_t)snprintf(hdr + hl, hcap - hl, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        hl += (size_t)snprintf(hdr + hl, hcap - hl, "],\"data_offsets\":[%zu,%zu]}", off, off + nb);
        off += nb;
    }
    hl += (size_t)snprintf(hdr + hl, hcap - hl, "}");
    while (hl % 8)
        hdr[hl++] = ' ';
    hdr[hl] = '\0';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(hdr);
        goto out;
    }
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(hdr, 1, hl, f) == hl;
    free(hdr);
    uint64_t s = seed;
    enum { BUF = 1 << 16 };
    unsigned char *buf = malloc((size_t)BUF * 4);
    for (size_t i = 0; ok && buf && i < nspec; i++) {
        tensor_spec_t *t = &spec[i];
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++)
            numel *= t->shape[d];
        for (int64_t j0 = 0; ok && j0 < numel; j0 += BUF) {
            int64_t n = numel - j0 < BUF ? numel - j0 : BUF;
            for (int64_t j = 0; j < n; j++) {
                float v;
                switch (t->kind) {
                case 1: v = 1.0f + 0.1f * rng_normal(&s); break;
                case 2: v = logf((float)((j0 + j) % N + 1)) + 0.3f * rng_normal(&s); break;
                case 3: v = logf(expm1f(0.001f + 0.099f * (float)((rng_next(&s) >> 40) * 0x1.0p-24))); break;
                case 4: v = (float)((rng_next(&s) >> 40) * 0x1.0p-24); break; /* uniform [0, 1): time mixes */
                default: v = t->scale * rng_normal(&s); break;
                }
                if (esz == 4)
                    memcpy(buf + 4 * j, &v, 4);
                else {
                    uint16_t hv = bf ? f32_to_bf16(v) : f32_to_f16(v);
                    memcpy(buf + 2 * j, &hv, 2);
                }
            }
            ok = fwrite(buf, (size_t)esz, (size_t)n, f) == (size_t)n;
        }
    }
    free(buf);
    if (fclose(f) != 0 || !ok)
        goto out;
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "w");
    if (!f)
        goto out;
    /* the family: shape->family, else $COIL_TEST_FAMILY (tests/families.sh), else mamba;
     * the two Mamba-1 families share the tensor layout written above */
    const char *arch = "MambaForCausalLM", *extra = "";
    char m2extra[128];
    if (!fam || !*fam || strcmp(fam, "mamba") == 0) {
        fam = "mamba";
    } else if (strcmp(fam, "falcon_mamba") == 0) {
        arch = "FalconMambaForCausalLM";
        extra = "  \"mixer_rms_eps\": 1e-06,\n";
    } else if (m2) {
        arch = "Mamba2ForCausalLM";
        snprintf(m2extra, sizeof m2extra, "  \"num_heads\": %lld,\n  \"head_dim\": %lld,\n  \"n_groups\": %lld,\n",
                 (long long)NH, (long long)P, (long long)G);
        extra = m2extra;
    } else if (rw) {
        fprintf(f,
                "{\n  \"architectures\": [\"RwkvForCausalLM\"],\n  \"model_type\": \"rwkv\",\n"
                "  \"hidden_size\": %lld,\n  \"attention_hidden_size\": %lld,\n  \"intermediate_size\": %lld,\n"
                "  \"num_hidden_layers\": %lld,\n  \"vocab_size\": %lld,\n  \"context_length\": 1024,\n"
                "  \"layer_norm_epsilon\": 1e-05,\n  \"rescale_every\": 2,\n  \"tie_word_embeddings\": %s,\n"
                "  \"bos_token_id\": 0,\n  \"eos_token_id\": 0,\n  \"pad_token_id\": 0\n}\n",
                (long long)H, (long long)H, (long long)D, (long long)sh->n_layer, (long long)V,
                sh->tied ? "true" : "false");
        rc = fclose(f) == 0 ? 0 : -1;
        goto out;
    } else {
        fprintf(stderr, "tu_write_random_model: unknown family '%s'\n", fam);
        fclose(f);
        goto out;
    }
    fprintf(f,
            "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n%s"
            "  \"hidden_size\": %lld,\n  \"state_size\": %lld,\n  \"num_hidden_layers\": %lld,\n"
            "  \"expand\": %lld,\n  \"intermediate_size\": %lld,\n  \"conv_kernel\": %lld,\n"
            "  \"time_step_rank\": %lld,\n  \"vocab_size\": %lld,\n  \"layer_norm_epsilon\": 1e-05,\n"
            "  \"use_bias\": false,\n  \"use_conv_bias\": true,\n  \"residual_in_fp32\": true,\n"
            "  \"tie_word_embeddings\": %s,\n  \"hidden_act\": \"silu\",\n  \"pad_token_id\": 0,\n"
            "  \"bos_token_id\": 0,\n  \"eos_token_id\": 0\n}\n",
            arch, fam, extra, (long long)H, (long long)N, (long long)sh->n_layer, (long long)sh->expand,
            (long long)D, (long long)K, (long long)R, (long long)V, sh->tied ? "true" : "false");
    rc = fclose(f) == 0 ? 0 : -1;
out:
    free(spec);
    return rc;
}

int tu_write_model_dir(const char *dir, const tu_model_shape_t *shape, uint64_t seed)
{
    char tok[4200];
    size_t n;
    if ((mkdir(dir, 0755) != 0 && errno != EEXIST) || tu_write_random_model(dir, shape, seed) != 0)
        return -1;
    void *buf = tu_read(tu_data("tokenizer/tokenizer.json"), &n);
    snprintf(tok, sizeof tok, "%s/tokenizer.json", dir);
    int rc = buf && tu_write(tok, buf, n) == 0 ? 0 : -1;
    free(buf);
    return rc;
}

double tu_rel_l2(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
