/* test_model.c -- config.json parsing and weight binding, good and bad. */
#include "model.h"

#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "family.h"
#include "testutil.h"

static char *dir;

static void setup(void)
{
    dir = tu_mkdtemp();
    ck_assert_ptr_nonnull(dir);
}

static void teardown(void)
{
    tu_rm_rf(dir);
    free(dir);
}

static const tu_model_shape_t small = {.d_model = 32, .n_layer = 2, .vocab = 100, .d_state = 8, .d_conv = 4,
                                       .expand = 2, .dt_rank = 0, .tied = 1, .dtype = "F32"};

/* Replaces the first occurrence of from by to (same length) in dir/file. */
static void patch(const char *file, const char *from, const char *to)
{
    char p[4096];
    size_t n;
    snprintf(p, sizeof p, "%s/%s", dir, file);
    char *buf = tu_read(p, &n);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(strlen(from), strlen(to));
    char *hit = memmem(buf, n, from, strlen(from));
    ck_assert_msg(hit != NULL, "'%s' not in %s", from, file);
    memcpy(hit, to, strlen(to));
    ck_assert_int_eq(tu_write(p, buf, n), 0);
    free(buf);
}

START_TEST(test_config_fields)
{
    coil_model_config_t c;
    coil_err_t err = {0};
    ck_assert_int_eq(coil_model_config_parse("{\"hidden_size\": 40, \"num_hidden_layers\": 2, \"vocab_size\": 10}",
                                             "cfg", &c, &err), 0);
    ck_assert_int_eq(c.dt_rank, 3); /* ceil(40/16) */
    ck_assert_int_eq(c.d_inner, 80); /* expand defaults to 2 */
    ck_assert_int_eq(c.d_conv, 4);
    ck_assert(c.tie_embeddings && c.use_conv_bias && !c.use_bias);
    ck_assert_int_eq(coil_model_config_parse("{\"hidden_size\": 64, \"n_layer\": 2, \"vocab_size\": 10, "
                                             "\"time_step_rank\": \"auto\", \"expand\": 3, \"conv_kernel\": 3, "
                                             "\"eos_token_id\": null, \"use_bias\": true}",
                                             "cfg", &c, &err), 0);
    ck_assert_int_eq(c.dt_rank, 4);
    ck_assert_int_eq(c.d_inner, 192);
    ck_assert_int_eq(c.eos_id, -1);
    ck_assert(c.use_bias);
    /* each bad config names the field */
    ck_assert_int_eq(coil_model_config_parse("{\"num_hidden_layers\": 2, \"vocab_size\": 10}", "cfg", &c, &err),
                     COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "hidden_size"));
    ck_assert_int_eq(coil_model_config_parse("{\"hidden_size\": 8, \"vocab_size\": 10}", "cfg", &c, &err),
                     COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "n_layer"));
    ck_assert_int_eq(coil_model_config_parse("{\"hidden_size\": \"8\", \"num_hidden_layers\": 1, \"vocab_size\": 1}",
                                             "cfg", &c, &err), COIL_ECONFIG);
    ck_assert_int_eq(coil_model_config_parse("{\"hidden_size\": 8, \"num_hidden_layers\": 1, \"vocab_size\": 1, "
                                             "\"intermediate_size\": 20, \"expand\": 2}", "cfg", &c, &err),
                     COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "intermediate_size"));
    ck_assert_int_eq(coil_model_config_parse("{\"model_type\": \"rwkv6\", \"hidden_size\": 8}", "cfg", &c, &err),
                     COIL_EUNSUPPORTED); /* RWKV-6 (and 5, 7): refused by name */
    ck_assert_msg(strstr(err.msg, "model_type 'rwkv6' is not a family coil runs: mamba, falcon_mamba, mamba2, rwkv "
                                  "(RWKV-5, -6 and -7 are other architectures: coil's rwkv is RWKV-4, RwkvForCausalLM)"),
                  "%s", err.msg);
    ck_assert_int_eq(coil_model_config_parse("{\"architectures\": [\"Rwkv5ForCausalLM\"]}", "cfg", &c, &err),
                     COIL_EUNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "architecture 'Rwkv5ForCausalLM' is not a family coil runs") &&
                  strstr(err.msg, "RWKV-5, -6 and -7 are other architectures"), "%s", err.msg);
    ck_assert_int_eq(coil_model_config_parse("{\"model_type\": \"mamba2\", \"hidden_size\": 8}", "cfg", &c, &err),
                     COIL_ECONFIG); /* a family coil runs: now its fields are checked */
    ck_assert_ptr_nonnull(strstr(err.msg, "num_hidden_layers"));
    ck_assert_int_eq(coil_model_config_parse("{\"hidden_size\": 8, \"num_hidden_layers\": 1, \"vocab_size\": 1, "
                                             "\"use_bias\": 1}", "cfg", &c, &err), COIL_ECONFIG);
    ck_assert_int_eq(coil_model_config_parse("not json", "cfg", &c, &err), COIL_EFORMAT);
    ck_assert_int_eq(coil_model_config_parse("{\"hidden_size\": -5, \"num_hidden_layers\": 1, \"vocab_size\": 1}",
                                             "cfg", &c, &err), COIL_ECONFIG);
}
END_TEST

START_TEST(test_load_golden_models)
{
    coil_err_t err = {0};
    coil_model_t *tied = coil_model_load(tu_data("models/tied_f32"), &err);
    ck_assert_msg(tied != NULL, "%s", err.msg);
    ck_assert_ptr_eq(coil_model_lm_head(tied)->data, coil_model_embeddings(tied)->data);
    const coil_model_config_t *c = coil_model_config(tied);
    int64_t H = c->d_model, D = c->d_inner, N = c->d_state, R = c->dt_rank, K = c->d_conv, V = c->vocab_size;
    int64_t per = H + 2 * D * H + D * K + D + (R + 2 * N) * D + D * R + D + D * N + D + H * D;
    ck_assert_int_eq(coil_model_param_count(tied), V * H + c->n_layer * per + H);

    coil_model_t *untied = coil_model_load(tu_data("models/untied_bias_sharded"), &err);
    ck_assert_msg(untied != NULL, "%s", err.msg);
    ck_assert_ptr_ne(coil_model_lm_head(untied)->data, coil_model_embeddings(untied)->data);
    ck_assert_int_eq(coil_model_config(untied)->dt_rank, 5);
    ck_assert_int_eq(coil_model_config(untied)->d_conv, 3);
    ck_assert_ptr_nonnull(coil_model_layer(untied, 0)->in_bias);
    ck_assert_ptr_nonnull(coil_model_layer(untied, 1)->out_bias);

    coil_model_t *bf = coil_model_load(tu_data("models/tied_bf16"), &err);
    ck_assert_msg(bf != NULL, "%s", err.msg);
    ck_assert_int_eq(coil_model_dtype(bf), COIL_DT_BF16);
    ck_assert(coil_model_layer(bf, 0)->A[0] < 0.0f); /* A = -exp(A_log) */

    coil_model_t *again = coil_model_load(tu_data("models/tied_f32"), &err);
    ck_assert(coil_model_fingerprint(again) == coil_model_fingerprint(tied));
    ck_assert(coil_model_fingerprint(bf) != coil_model_fingerprint(tied));
    coil_model_destroy(&tied);
    coil_model_destroy(&untied);
    coil_model_destroy(&bf);
    coil_model_destroy(&again);
    ck_assert_ptr_null(tied);
}
END_TEST

static int load_code(coil_err_t *err)
{
    coil_model_t *m = coil_model_load(dir, err);
    if (m) {
        coil_model_destroy(&m);
        return 0;
    }
    return err->code;
}

START_TEST(test_bad_models)
{
    coil_err_t err = {0};
    ck_assert_int_eq(tu_write_random_model(dir, &small, 1), 0);
    ck_assert_int_eq(load_code(&err), 0);

    /* wrong dtype (I32 has F32's size, so only the dtype is wrong) */
    patch("model.safetensors", "\"dtype\":\"F32\"", "\"dtype\":\"I32\"");
    ck_assert_int_eq(load_code(&err), COIL_EDTYPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "backbone.embeddings.weight"));
    ck_assert_ptr_nonnull(strstr(err.msg, "model.safetensors"));
    patch("model.safetensors", "\"dtype\":\"I32\"", "\"dtype\":\"F32\"");

    /* shape against the config */
    patch("config.json", "\"state_size\": 8", "\"state_size\": 4");
    ck_assert_int_eq(load_code(&err), COIL_ESHAPE); /* found at layer 0's A_log before anything is sized */
    ck_assert_ptr_nonnull(strstr(err.msg, "backbone.layers.0.mixer.A_log"));
    ck_assert_ptr_nonnull(strstr(err.msg, "[64,8], config.json implies [64,4]"));
    patch("config.json", "\"state_size\": 4", "\"state_size\": 8");
    /* a layer count the files do not hold: refused before the model is sized */
    patch("config.json", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 9");
    ck_assert_int_eq(load_code(&err), COIL_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "backbone.layers.8.norm.weight"));
    patch("config.json", "\"num_hidden_layers\": 9", "\"num_hidden_layers\": 2");

    /* a missing tensor, then an unexpected one */
    patch("model.safetensors", "backbone.norm_f.weight", "backbone.norm_g.weight");
    ck_assert_int_eq(load_code(&err), COIL_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "backbone.norm_f.weight"));
    patch("model.safetensors", "backbone.norm_g.weight", "backbone.norm_f.weight");
    patch("model.safetensors", "backbone.layers.1.mixer.D\"", "backbone.layers.1.mixer.Q\"");
    ck_assert_int_eq(load_code(&err), COIL_ENOTFOUND);
    patch("model.safetensors", "backbone.layers.1.mixer.Q\"", "backbone.layers.1.mixer.D\"");

    /* untied config with no lm_head.weight */
    patch("config.json", "\"tie_word_embeddings\": true", "\"tie_word_embeddings\": fals");
    ck_assert_int_eq(load_code(&err), COIL_EFORMAT); /* the config is now invalid JSON */
    patch("config.json", "\"tie_word_embeddings\": fals", "\"tie_word_embeddings\":false");
    ck_assert_int_eq(load_code(&err), COIL_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "lm_head.weight"));

    /* no weights at all */
    char p[4096];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    ck_assert_int_eq(load_code(&err), COIL_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "model.safetensors"));
    /* no config */
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    ck_assert_int_eq(load_code(&err), COIL_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "config.json"));
}
END_TEST

/* Falcon-Mamba: the family by model_type / architectures, mixer_rms_eps and
 * its errors; the Mamba-1 tensor checks apply with the family named. */
START_TEST(test_falcon_mamba)
{
    coil_err_t err = {0};
    coil_model_t *fm = coil_model_load(tu_data("models/falcon_untied_odd_f32"), &err);
    ck_assert_msg(fm != NULL, "%s", err.msg);
    ck_assert_str_eq(coil_model_config(fm)->family->model_type, "falcon_mamba");
    ck_assert(coil_model_config(fm)->mixer_rms_eps == 1e-4);
    coil_model_destroy(&fm);

    tu_model_shape_t sh = small;
    sh.family = "falcon_mamba";
    ck_assert_int_eq(tu_write_random_model(dir, &sh, 1), 0);
    ck_assert_int_eq(load_code(&err), 0);
    patch("config.json", "\"mixer_rms_eps\": 1e-06", "\"mixer_rms_eps\": 2e+00");
    ck_assert_int_eq(load_code(&err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "field 'mixer_rms_eps' must be a number in (0, 1]"));
    patch("config.json", "\"mixer_rms_eps\": 2e+00", "\"mixer_rms_eps\": \"tin\"");
    ck_assert_int_eq(load_code(&err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "mixer_rms_eps"));
    patch("config.json", "\"mixer_rms_eps\": \"tin\"", "\"mixer_rms_eps\": 1e-06");
    /* model_type and architectures[0] must name the same family */
    patch("config.json", "\"model_type\": \"falcon_mamba\"", "\"model_type\": \"mamba\"       ");
    ck_assert_int_eq(load_code(&err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "model_type 'mamba' disagrees with architectures[0] 'FalconMambaForCausalLM'"));
    patch("config.json", "\"model_type\": \"mamba\"       ", "\"model_type\": \"llama\"       ");
    ck_assert_int_eq(load_code(&err), COIL_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "model_type 'llama' (FalconMambaForCausalLM) is not a family coil runs"));
    patch("config.json", "\"model_type\": \"llama\"       ", "\"model_type\": \"rwkv\"        ");
    ck_assert_int_eq(load_code(&err), COIL_ECONFIG); /* a family coil runs, but not the architecture's */
    ck_assert_ptr_nonnull(strstr(err.msg, "model_type 'rwkv' disagrees with architectures[0] 'FalconMambaForCausalLM'"));
    patch("config.json", "\"model_type\": \"rwkv\"        ", "\"model_type\": \"falcon_mamba\"");
    /* a mis-shaped and a missing tensor, named */
    patch("config.json", "\"state_size\": 8", "\"state_size\": 4");
    ck_assert_int_eq(load_code(&err), COIL_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "backbone.layers.0.mixer.A_log"));
    patch("config.json", "\"state_size\": 4", "\"state_size\": 8");
    patch("model.safetensors", "backbone.layers.1.mixer.D\"", "backbone.layers.1.mixer.Q\"");
    ck_assert_int_eq(load_code(&err), COIL_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "backbone.layers.1.mixer.D"));
    patch("model.safetensors", "backbone.layers.1.mixer.Q\"", "backbone.layers.1.mixer.D\"");
    ck_assert_int_eq(load_code(&err), 0);
}
END_TEST

START_TEST(test_bad_shard_index)
{
    coil_err_t err = {0};
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/m", dir);
    ck_assert_int_eq(tu_copy_dir(tu_data("models/untied_bias_sharded"), sub), 0);
    char *saved = dir;
    dir = sub;
    ck_assert_int_eq(load_code(&err), 0);
    patch("model.safetensors.index.json", "model-00002-of-00004", "../de-00002-of-00004");
    ck_assert_int_eq(load_code(&err), COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "invalid shard file name"));
    patch("model.safetensors.index.json", "../de-00002-of-00004", "model-00003-of-00004");
    ck_assert_int_eq(load_code(&err), COIL_EFORMAT); /* listed for the wrong shard */
    ck_assert_ptr_nonnull(strstr(err.msg, "not in it"));
    dir = saved;
}
END_TEST

/* config.json of state-spaces/mamba-130m-hf, key for key as published
 * (transformers 4.39.0.dev0 conversion from mamba_ssm). */
static const char published_130m[] =
    "{\n  \"architectures\": [\n    \"MambaForCausalLM\"\n  ],\n  \"bos_token_id\": 0,\n  \"conv_kernel\": 4,\n"
    "  \"d_inner\": 1536,\n  \"d_model\": 768,\n  \"eos_token_id\": 0,\n  \"expand\": 2,\n"
    "  \"fused_add_norm\": true,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": 768,\n"
    "  \"initializer_range\": 0.1,\n  \"intermediate_size\": 1536,\n  \"layer_norm_epsilon\": 1e-05,\n"
    "  \"model_type\": \"mamba\",\n  \"n_layer\": 24,\n  \"num_hidden_layers\": 24,\n  \"pad_token_id\": 0,\n"
    "  \"pad_vocab_size_multiple\": 8,\n  \"rescale_prenorm_residual\": false,\n  \"residual_in_fp32\": true,\n"
    "  \"rms_norm\": true,\n  \"ssm_cfg\": {},\n  \"state_size\": 16,\n  \"time_step_floor\": 0.0001,\n"
    "  \"time_step_init_scheme\": \"random\",\n  \"time_step_max\": 0.1,\n  \"time_step_min\": 0.001,\n"
    "  \"time_step_rank\": 48,\n  \"time_step_scale\": 1.0,\n  \"torch_dtype\": \"float32\",\n"
    "  \"transformers_version\": \"4.39.0.dev0\",\n  \"use_bias\": false,\n  \"use_cache\": true,\n"
    "  \"use_conv_bias\": true,\n  \"vocab_size\": 50280\n}\n";

/* state-spaces/mamba-2.8b-hf's (the same keys without d_inner, d_model, ssm_cfg). */
static const char published_2_8b[] =
    "{\"architectures\": [\"MambaForCausalLM\"], \"bos_token_id\": 0, \"conv_kernel\": 4, \"eos_token_id\": 0,"
    " \"expand\": 2, \"fused_add_norm\": true, \"hidden_act\": \"silu\", \"hidden_size\": 2560,"
    " \"initializer_range\": 0.1, \"intermediate_size\": 5120, \"layer_norm_epsilon\": 1e-05,"
    " \"model_type\": \"mamba\", \"n_layer\": 64, \"num_hidden_layers\": 64, \"pad_token_id\": 0,"
    " \"pad_vocab_size_multiple\": 8, \"rescale_prenorm_residual\": false, \"residual_in_fp32\": true,"
    " \"rms_norm\": true, \"state_size\": 16, \"time_step_floor\": 0.0001, \"time_step_init_scheme\": \"random\","
    " \"time_step_max\": 0.1, \"time_step_min\": 0.001, \"time_step_rank\": 160, \"time_step_scale\": 1.0,"
    " \"torch_dtype\": \"float32\", \"transformers_version\": \"4.39.0.dev0\", \"use_bias\": false,"
    " \"use_cache\": true, \"use_conv_bias\": true, \"vocab_size\": 50280}";

/* Replaces the first occurrence of from by to (any lengths) in text; malloc'd. */
static char *subst(const char *text, const char *from, const char *to)
{
    const char *hit = strstr(text, from);
    ck_assert_msg(hit != NULL, "'%s' not in the text", from);
    size_t a = (size_t)(hit - text), n = strlen(text) - strlen(from) + strlen(to);
    char *out = malloc(n + 1);
    memcpy(out, text, a);
    strcpy(out + a, to);
    strcat(out, hit + strlen(from));
    return out;
}

/* Parses published_130m with one field replaced; returns the code. */
static int parse_variant(const char *from, const char *to, coil_model_config_t *c, coil_err_t *err)
{
    char *t = subst(published_130m, from, to);
    int rc = coil_model_config_parse(t, "config.json", c, err);
    free(t);
    return rc;
}

/* Mamba-2: config.json as transformers 5 saves it ({"__float__": "Infinity"}
 * in time_step_limit; older ones wrote a bare Infinity), its checks, named. */
static int parse_m2(const char *cfgtext, const char *from, const char *to, coil_model_config_t *c, coil_err_t *err)
{
    char *t = subst(cfgtext, from, to);
    ck_assert_ptr_nonnull(t);
    int rc = coil_model_config_parse(t, "config.json", c, err);
    free(t);
    return rc;
}

/* The store's models row: the family and its dimensions (coil_model_dims_json). */
START_TEST(test_dims_json)
{
    static const char *cases[][2] = {
        {"models/tied_f32", "{\"family\":\"mamba\",\"d_model\":"},
        {"models/falcon_untied_odd_f32", "{\"family\":\"falcon_mamba\",\"d_model\":27,"},
        {"models/mamba2_groups_f32", "{\"family\":\"mamba2\",\"d_model\":30,\"n_layer\":3,\"d_inner\":60,"},
    };
    static const char *tails[] = {"\"vocab_size\":", ",\"mixer_rms_eps\":0.0001}",
                                  ",\"n_heads\":6,\"head_dim\":10,\"n_groups\":2}"};
    for (int i = 0; i < 3; i++) {
        coil_err_t err = {0};
        coil_model_t *m = coil_model_load(tu_data(cases[i][0]), &err);
        ck_assert_msg(m != NULL, "%s", err.msg);
        char buf[512];
        int n = coil_model_dims_json(m, buf, sizeof buf);
        ck_assert_int_gt(n, 0);
        ck_assert_msg(strncmp(buf, cases[i][1], strlen(cases[i][1])) == 0, "%s", buf);
        ck_assert_msg(strstr(buf, tails[i]) != NULL, "%s lacks %s", buf, tails[i]);
        json_t *j = json_loads(buf, 0, NULL);
        ck_assert_msg(j != NULL, "not JSON: %s", buf);
        json_decref(j);
        ck_assert_int_eq(coil_model_dims_json(m, buf, 20), COIL_EINVAL); /* too small a buffer */
        coil_model_destroy(&m);
    }
}
END_TEST

START_TEST(test_mamba2_config)
{
    coil_err_t err = {0};
    coil_model_config_t c;
    char path[4400];
    snprintf(path, sizeof path, "%s/config.json", tu_data("models/mamba2_groups_f32"));
    size_t n;
    char *text = tu_read(path, &n);
    ck_assert_ptr_nonnull(text);
    text = realloc(text, n + 1);
    text[n] = '\0';
    const char *inf = "{\n      \"__float__\": \"Infinity\"\n    }";
    ck_assert_msg(strstr(text, inf), "the golden config no longer has transformers' Infinity form");
    ck_assert_msg(coil_model_config_parse(text, "config.json", &c, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(c.family->model_type, "mamba2");
    ck_assert_int_eq(c.n_heads, 6);
    ck_assert_int_eq(c.head_dim, 10);
    ck_assert_int_eq(c.n_groups, 2);
    ck_assert_int_eq(c.d_inner, 60);
    ck_assert(isinf(c.dt_limit_hi) && c.dt_limit_lo == 0);
    ck_assert(!c.tie_embeddings); /* Mamba2Config's default */
    ck_assert_int_eq(parse_m2(text, inf, "Infinity", &c, &err), 0); /* older transformers */
    ck_assert(isinf(c.dt_limit_hi));
    ck_assert_int_eq(parse_m2(text, inf, "0.5", &c, &err), 0);
    ck_assert(c.dt_limit_hi == 0.5);
    ck_assert_int_eq(parse_m2(text, inf, "\"big\"", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "field 'time_step_limit' must be a list of two numbers"));
    ck_assert_int_eq(parse_m2(text, "0.0,", "0.7,", &c, &err), 0);
    ck_assert_int_eq(parse_m2(text, inf, "0.5", &c, &err), 0);
    char *t2 = subst(text, inf, "0.5");
    ck_assert_int_eq(parse_m2(t2, "0.0,", "0.7,", &c, &err), COIL_ECONFIG); /* lo > hi */
    ck_assert_ptr_nonnull(strstr(err.msg, "0 <= lo <= hi"));
    free(t2);
    ck_assert_int_eq(parse_m2(text, "\"num_heads\": 6", "\"num_heads\": 5", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "num_heads x head_dim = 5 x 10 must equal expand x hidden_size = 60"));
    char *t3 = subst(text, "\"num_heads\": 6", "\"num_heads\": 4"), *t4 = subst(t3, "\"head_dim\": 10", "\"head_dim\": 15");
    ck_assert_int_eq(parse_m2(t4, "\"n_groups\": 2", "\"n_groups\": 2", &c, &err), 0); /* 4 x 15, 2 groups */
    ck_assert_int_eq(parse_m2(t4, "\"n_groups\": 2", "\"n_groups\": 3", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "num_heads 4 is not a multiple of n_groups 3"));
    free(t3);
    free(t4);
    ck_assert_int_eq(parse_m2(text, "\"hidden_act\": \"silu\"", "\"hidden_act\": \"relu\"", &c, &err),
                     COIL_EUNSUPPORTED);
    free(text);

    /* a missing and a mis-shaped Mamba-2 tensor, named */
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/m2", dir);
    ck_assert_int_eq(tu_copy_dir(tu_data("models/mamba2_groups_f32"), sub), 0);
    coil_model_t *m2 = coil_model_load(sub, &err);
    ck_assert_msg(m2 != NULL, "%s", err.msg);
    coil_model_destroy(&m2);
    snprintf(path, sizeof path, "%s/model.safetensors", sub);
    char *st = tu_read(path, &n);
    char *hit = NULL;
    for (size_t i = 0; i + 31 <= n && !hit; i++)
        if (memcmp(st + i, "backbone.layers.2.mixer.dt_bias", 31) == 0)
            hit = st + i;
    ck_assert_ptr_nonnull(hit);
    memcpy(hit, "backbone.layers.2.mixer.dt_bia_", 31);
    ck_assert_int_eq(tu_write(path, st, n), 0);
    ck_assert_ptr_null(coil_model_load(sub, &err));
    ck_assert_int_eq(err.code, COIL_ENOTFOUND);
    ck_assert_msg(strstr(err.msg, "backbone.layers.2.mixer.dt_bias"), "%s", err.msg);
    free(st);
    snprintf(path, sizeof path, "%s/config.json", sub);
    ck_assert_int_eq(tu_copy_dir(tu_data("models/mamba2_groups_f32"), sub), 0);
    char *cf = tu_read(path, &n);
    cf = realloc(cf, n + 1);
    cf[n] = '\0';
    char *cf2 = subst(cf, "\"state_size\": 8", "\"state_size\": 9");
    ck_assert_int_eq(tu_write(path, cf2, strlen(cf2)), 0);
    ck_assert_ptr_null(coil_model_load(sub, &err));
    ck_assert_int_eq(err.code, COIL_ESHAPE);
    ck_assert_msg(strstr(err.msg, "backbone.layers.0.mixer.in_proj.weight"), "%s", err.msg);
    free(cf);
    free(cf2);
}
END_TEST

/* RWKV-4: config.json as transformers saves it, its defaults and checks, and
 * its tensors' errors, each named. */
START_TEST(test_rwkv_config)
{
    coil_err_t err = {0};
    coil_model_config_t c;
    char path[4400];
    snprintf(path, sizeof path, "%s/config.json", tu_data("models/rwkv_odd_f32"));
    size_t n;
    char *text = tu_read(path, &n);
    ck_assert_ptr_nonnull(text);
    text = realloc(text, n + 1);
    text[n] = '\0';
    ck_assert_msg(coil_model_config_parse(text, "config.json", &c, &err) == 0, "%s", err.msg);
    ck_assert_str_eq(c.family->model_type, "rwkv");
    ck_assert_int_eq(c.d_model, 27);
    ck_assert_int_eq(c.attn_dim, 21);
    ck_assert_int_eq(c.d_inner, 75);
    ck_assert_int_eq(c.n_layer, 5);
    ck_assert_int_eq(c.rescale_every, 2);
    ck_assert(c.eps == 1e-3 && !c.tie_embeddings);
    /* null or absent: attention_hidden_size = hidden_size, intermediate_size = 4 x hidden_size */
    ck_assert_int_eq(parse_m2(text, "\"intermediate_size\": 75", "\"intermediate_size\": null", &c, &err), 0);
    ck_assert_int_eq(c.d_inner, 108);
    ck_assert_int_eq(parse_m2(text, "\"attention_hidden_size\": 21,", "", &c, &err), 0);
    ck_assert_int_eq(c.attn_dim, 27);
    ck_assert_int_eq(parse_m2(text, "\"rescale_every\": 2", "\"rescale_every\": -1", &c, &err), 0);
    ck_assert_int_eq(c.rescale_every, 0); /* 0 or negative: no rescale */
    ck_assert_int_eq(parse_m2(text, "\"rescale_every\": 2,", "", &c, &err), 0);
    ck_assert_int_eq(c.rescale_every, 6); /* RwkvConfig's default */
    ck_assert_int_eq(parse_m2(text, "\"rescale_every\": 2", "\"rescale_every\": \"2\"", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "field 'rescale_every' must be an integer"));
    ck_assert_int_eq(parse_m2(text, "\"attention_hidden_size\": 21", "\"attention_hidden_size\": 0", &c, &err),
                     COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "field 'attention_hidden_size' = 0 outside [1,"));
    ck_assert_int_eq(parse_m2(text, "\"layer_norm_epsilon\": 0.001", "\"layer_norm_epsilon\": 2", &c, &err),
                     COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "field 'layer_norm_epsilon' must be a number in [0, 1]"));
    ck_assert_int_eq(parse_m2(text, "\"hidden_size\": 27,", "", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "missing required field 'hidden_size'"));
    ck_assert_int_eq(parse_m2(text, "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 0", &c, &err),
                     COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "tie_word_embeddings"));
    free(text);
    /* the published RWKV-4 shapes (rwkv-4-169m-pile, rwkv-4-14b-pile) in the key set RwkvConfig saves */
    static const char *const published[2] = {
        "{\"architectures\": [\"RwkvForCausalLM\"], \"attention_hidden_size\": 768, \"bos_token_id\": 0, "
        "\"context_length\": 1024, \"eos_token_id\": 0, \"hidden_size\": 768, \"intermediate_size\": 3072, "
        "\"layer_norm_epsilon\": 1e-05, \"model_type\": \"rwkv\", \"num_hidden_layers\": 12, \"rescale_every\": 6, "
        "\"tie_word_embeddings\": false, \"torch_dtype\": \"float32\", \"transformers_version\": \"4.29.0.dev0\", "
        "\"use_cache\": true, \"vocab_size\": 50277}",
        "{\"architectures\": [\"RwkvForCausalLM\"], \"attention_hidden_size\": 5120, \"bos_token_id\": 0, "
        "\"context_length\": 1024, \"eos_token_id\": 0, \"hidden_size\": 5120, \"intermediate_size\": null, "
        "\"layer_norm_epsilon\": 1e-05, \"model_type\": \"rwkv\", \"num_hidden_layers\": 40, \"rescale_every\": 6, "
        "\"tie_word_embeddings\": false, \"use_cache\": true, \"vocab_size\": 50277}"};
    ck_assert_msg(coil_model_config_parse(published[0], "169m", &c, &err) == 0, "%s", err.msg);
    ck_assert(c.d_model == 768 && c.attn_dim == 768 && c.d_inner == 3072 && c.n_layer == 12 &&
              c.rescale_every == 6 && c.vocab_size == 50277 && c.eos_id == 0 && !c.tie_embeddings);
    ck_assert_msg(coil_model_config_parse(published[1], "14b", &c, &err) == 0, "%s", err.msg);
    ck_assert(c.d_model == 5120 && c.attn_dim == 5120 && c.d_inner == 20480 && c.n_layer == 40);

    /* the tensors: a missing one, a mis-shaped one, the config against the files, the untied head */
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/rw", dir);
    ck_assert_int_eq(tu_copy_dir(tu_data("models/rwkv_odd_f32"), sub), 0);
    coil_model_t *m = coil_model_load(sub, &err);
    ck_assert_msg(m != NULL, "%s", err.msg);
    ck_assert_ptr_ne(coil_model_lm_head(m)->data, coil_model_embeddings(m)->data);
    coil_model_destroy(&m);
#define RW_LOAD_FAILS(want, needle)                                                                                \
    do {                                                                                                         \
        ck_assert_ptr_null(m = coil_model_load(sub, &err));                                                      \
        ck_assert_int_eq(err.code, want);                                                                        \
        ck_assert_msg(strstr(err.msg, needle), "%s", err.msg);                                                   \
    } while (0)
    char *saved_dir = dir;
    dir = sub; /* patch() works in dir */
    patch("model.safetensors", "rwkv.blocks.3.attention.time_first\"", "rwkv.blocks.3.attention.time_firsx\"");
    RW_LOAD_FAILS(COIL_ENOTFOUND, "tensor 'rwkv.blocks.3.attention.time_first' is missing");
    patch("model.safetensors", "rwkv.blocks.3.attention.time_firsx\"", "rwkv.blocks.3.attention.time_first\"");
    patch("model.safetensors", "rwkv.blocks.0.pre_ln.bias\"", "rwkv.blocks.0.pre_ln.bia_\"");
    RW_LOAD_FAILS(COIL_ENOTFOUND, "rwkv.blocks.0.pre_ln.bias");
    patch("model.safetensors", "rwkv.blocks.0.pre_ln.bia_\"", "rwkv.blocks.0.pre_ln.bias\"");
    patch("model.safetensors", "\"rwkv.blocks.2.feed_forward.time_mix_key\":{\"dtype\":\"F32\",\"shape\":[1,1,27]",
          "\"rwkv.blocks.2.feed_forward.time_mix_key\":{\"dtype\":\"F32\",\"shape\":[1,27,1]");
    RW_LOAD_FAILS(COIL_ESHAPE, "tensor 'rwkv.blocks.2.feed_forward.time_mix_key' has shape [1,27,1], config.json "
                               "implies [1,1,27]");
    patch("model.safetensors", "\"rwkv.blocks.2.feed_forward.time_mix_key\":{\"dtype\":\"F32\",\"shape\":[1,27,1]",
          "\"rwkv.blocks.2.feed_forward.time_mix_key\":{\"dtype\":\"F32\",\"shape\":[1,1,27]");
    patch("config.json", "\"attention_hidden_size\": 21", "\"attention_hidden_size\": 22");
    RW_LOAD_FAILS(COIL_ESHAPE, "rwkv.blocks.0.attention.key.weight");
    patch("config.json", "\"attention_hidden_size\": 22", "\"attention_hidden_size\": 21");
    patch("config.json", "\"intermediate_size\": 75", "\"intermediate_size\": 76");
    RW_LOAD_FAILS(COIL_ESHAPE, "rwkv.blocks.0.feed_forward.key.weight");
    patch("config.json", "\"intermediate_size\": 76", "\"intermediate_size\": 75");
    patch("config.json", "\"num_hidden_layers\": 5", "\"num_hidden_layers\": 7");
    RW_LOAD_FAILS(COIL_ENOTFOUND, "rwkv.blocks.6.ln1.weight");
    patch("config.json", "\"num_hidden_layers\": 7", "\"num_hidden_layers\": 4");
    RW_LOAD_FAILS(COIL_EFORMAT, "unexpected tensor 'rwkv.blocks.4."); /* a block config.json does not have */
    patch("config.json", "\"num_hidden_layers\": 4", "\"num_hidden_layers\": 5");
    patch("model.safetensors", "\"head.weight\"", "\"hexd.weight\"");
    RW_LOAD_FAILS(COIL_ENOTFOUND, "tensor 'head.weight' is missing");
    patch("config.json", "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true ");
    RW_LOAD_FAILS(COIL_EFORMAT, "unexpected tensor 'hexd.weight' (not part of a RwkvForCausalLM checkpoint");
    patch("model.safetensors", "\"hexd.weight\"", "\"head.weight\"");
    ck_assert_msg((m = coil_model_load(sub, &err)) != NULL, "%s", err.msg); /* tied, with a copy of the head */
    ck_assert_ptr_eq(coil_model_lm_head(m)->data, coil_model_embeddings(m)->data);
    coil_model_destroy(&m);
#undef RW_LOAD_FAILS
    dir = saved_dir;
}
END_TEST

START_TEST(test_published_configs)
{
    coil_model_config_t c;
    coil_err_t err = {0};
    ck_assert_msg(coil_model_config_parse(published_130m, "130m", &c, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(c.d_model, 768);
    ck_assert_int_eq(c.d_inner, 1536);
    ck_assert_int_eq(c.n_layer, 24);
    ck_assert_int_eq(c.dt_rank, 48);
    ck_assert_int_eq(c.d_state, 16);
    ck_assert_int_eq(c.d_conv, 4);
    ck_assert_int_eq(c.vocab_size, 50280); /* padded: the tokenizer has 50277 */
    ck_assert_int_eq(c.bos_id, 0);
    ck_assert_int_eq(c.eos_id, 0);
    ck_assert_int_eq(c.pad_id, 0);
    ck_assert(c.tie_embeddings && c.use_conv_bias && !c.use_bias && c.residual_in_fp32);
    ck_assert(c.eps == 1e-5);
    ck_assert_msg(coil_model_config_parse(published_2_8b, "2.8b", &c, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(c.d_model, 2560);
    ck_assert_int_eq(c.d_inner, 5120);
    ck_assert_int_eq(c.n_layer, 64);
    ck_assert_int_eq(c.dt_rank, 160);

    /* transformers accepts eos_token_id as a list */
    ck_assert_int_eq(parse_variant("\"eos_token_id\": 0", "\"eos_token_id\": [0, 2]", &c, &err), 0);
    ck_assert_int_eq(c.eos_id, 0);
    ck_assert_int_eq(parse_variant("\"eos_token_id\": 0", "\"eos_token_id\": []", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "eos_token_id"));
    ck_assert_int_eq(parse_variant("\"eos_token_id\": 0", "\"eos_token_id\": [0, \"x\"]", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "eos_token_id'[1]"));
    ck_assert_int_eq(parse_variant("\"bos_token_id\": 0", "\"bos_token_id\": [0]", &c, &err), COIL_ECONFIG);
    ck_assert_int_eq(parse_variant("\"pad_token_id\": 0", "\"pad_token_id\": 16777216", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "pad_token_id"));

    /* the mamba_ssm aliases must agree with the fields transformers reads */
    ck_assert_int_eq(parse_variant("\"d_model\": 768", "\"d_model\": 1024", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'d_model' disagrees with 'hidden_size' = 768"));
    ck_assert_int_eq(parse_variant("\"n_layer\": 24", "\"n_layer\": 48", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'n_layer' disagrees with 'num_hidden_layers' = 24"));
    ck_assert_int_eq(parse_variant("\"d_inner\": 1536", "\"d_inner\": 1537", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'d_inner'"));
    ck_assert_int_eq(parse_variant("\"d_model\": 768", "\"d_model\": \"768\"", &c, &err), COIL_ECONFIG);
    /* MambaConfig computes intermediate_size = int(expand * hidden_size), expand defaulting to 2 */
    ck_assert_int_eq(parse_variant("\"expand\": 2,", "", &c, &err), 0);
    ck_assert_int_eq(c.d_inner, 1536);
    ck_assert_int_eq(parse_variant("\"expand\": 2,", "", &c, &err), 0);
    char *t = subst(published_130m, "\"expand\": 2,", "");
    char *t2 = subst(t, "\"intermediate_size\": 1536", "\"intermediate_size\": 1000");
    char *t3 = subst(t2, "\"d_inner\": 1536,", "");
    ck_assert_int_eq(coil_model_config_parse(t3, "cfg", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "intermediate_size 1000 disagrees with expand x hidden_size = 2 x 768"));
    free(t);
    free(t2);
    free(t3);
    ck_assert_int_eq(parse_variant("\"time_step_rank\": 48", "\"time_step_rank\": \"fast\"", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "time_step_rank"));
    ck_assert_int_eq(parse_variant("\"time_step_rank\": 48", "\"time_step_rank\": \"auto\"", &c, &err), 0);
    ck_assert_int_eq(c.dt_rank, 48); /* ceil(768 / 16) */
    /* the family: model_type and architectures[0] must agree; an unknown one is refused by name */
    ck_assert_int_eq(parse_variant("\"model_type\": \"mamba\"", "\"model_type\": \"falcon_mamba\"", &c, &err),
                     COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "model_type 'falcon_mamba' disagrees with architectures[0] 'MambaForCausalLM'"));
    ck_assert_int_eq(parse_variant("\"model_type\": \"mamba\"", "\"model_type\": \"llama\"", &c, &err),
                     COIL_EUNSUPPORTED);
    ck_assert_ptr_nonnull(
        strstr(err.msg, "model_type 'llama' (MambaForCausalLM) is not a family coil runs: mamba, falcon_mamba, mamba2, rwkv"));
    ck_assert_int_eq(parse_variant("\"model_type\": \"mamba\",", "", &c, &err), 0); /* by architectures[0] */
    ck_assert_str_eq(c.family->model_type, "mamba");
    ck_assert_int_eq(parse_variant("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", &c, &err),
                     COIL_EUNSUPPORTED);
    /* the documented maxima (src/model.h), each named */
    ck_assert_int_eq(parse_variant("\"num_hidden_layers\": 24", "\"num_hidden_layers\": 4097", &c, &err),
                     COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "4096"));
    ck_assert_int_eq(parse_variant("\"state_size\": 16", "\"state_size\": 4097", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'state_size' = 4097 outside [1, 4096]"));
    ck_assert_int_eq(parse_variant("\"conv_kernel\": 4", "\"conv_kernel\": 65", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'conv_kernel' = 65 outside [1, 64]"));
    ck_assert_int_eq(parse_variant("\"vocab_size\": 50280", "\"vocab_size\": 16777217", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "16777216"));
    ck_assert_int_eq(coil_model_config_parse("{\"hidden_size\": 1048577, \"num_hidden_layers\": 1, \"vocab_size\": 8}",
                                             "cfg", &c, &err), COIL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "'hidden_size' = 1048577 outside [1, 1048576]"));
    ck_assert_int_eq(coil_model_config_parse("{\"hidden_size\": 1048576, \"num_hidden_layers\": 1, \"vocab_size\": 8}",
                                             "cfg", &c, &err), COIL_ECONFIG); /* expand 2: d_inner over the cap */
    ck_assert_ptr_nonnull(strstr(err.msg, "expand x hidden_size"));

    /* state-spaces/mamba-130m (not -hf): mamba_ssm's config is named as such */
    ck_assert_int_eq(coil_model_config_parse("{\"d_model\": 768, \"n_layer\": 24, \"vocab_size\": 50277, \"ssm_cfg\": {},"
                                             " \"rms_norm\": true, \"residual_in_fp32\": true, \"fused_add_norm\": true,"
                                             " \"pad_vocab_size_multiple\": 8}",
                                             "config.json", &c, &err),
                     COIL_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "mamba_ssm"));
    ck_assert_ptr_nonnull(strstr(err.msg, "-hf"));
}
END_TEST

/* The published directory shape loads: config.json as published,
 * generation_config.json, special_tokens_map.json, tokenizer_config.json,
 * tokenizer.json beside it; one file or shards with HF's index. */
START_TEST(test_published_directories)
{
    static const char *names[] = {"published_130m_shape", "published_sharded_shape"};
    static const char *beside[] = {"generation_config.json", "special_tokens_map.json", "tokenizer_config.json",
                                   "tokenizer.json"};
    coil_err_t err = {0};
    char rel[256];
    for (int k = 0; k < 2; k++) {
        for (int j = 0; j < 4; j++) { /* the shape is really there */
            snprintf(rel, sizeof rel, "models/%s/%s", names[k], beside[j]);
            ck_assert_msg(access(tu_data(rel), R_OK) == 0, "%s missing", rel);
        }
        /* config.json has exactly the published key set */
        snprintf(rel, sizeof rel, "models/%s/config.json", names[k]);
        json_t *have = json_load_file(tu_data(rel), 0, NULL), *want = json_loads(published_130m, 0, NULL);
        ck_assert_ptr_nonnull(have);
        ck_assert_ptr_nonnull(want);
        const char *key;
        json_t *val;
        json_object_foreach(want, key, val) ck_assert_msg(json_object_get(have, key), "%s: no '%s'", rel, key);
        ck_assert_uint_eq(json_object_size(have), json_object_size(want));
        json_decref(have);
        json_decref(want);
        coil_model_t *m = coil_model_load(tu_data(strcat(strcpy(rel, "models/"), names[k])), &err);
        ck_assert_msg(m != NULL, "%s: %s", names[k], err.msg);
        const coil_model_config_t *c = coil_model_config(m);
        ck_assert_int_eq(c->vocab_size, 1232); /* tokenizer.json: 1227 ids, padded to a multiple of 8 */
        ck_assert_int_eq(c->bos_id, 0);
        ck_assert_int_eq(c->eos_id, 0);
        ck_assert_int_eq(c->d_inner, 64);
        ck_assert_ptr_eq(coil_model_lm_head(m)->data, coil_model_embeddings(m)->data);
        coil_model_destroy(&m);
    }
    /* the sharded index is HF's: {"metadata": {"total_size": N}, "weight_map": {...}} */
    size_t n;
    char *idx = tu_read(tu_data("models/published_sharded_shape/model.safetensors.index.json"), &n);
    ck_assert_ptr_nonnull(idx);
    ck_assert_ptr_nonnull(memmem(idx, n, "\"total_size\"", 12));
    ck_assert_ptr_null(memmem(idx, n, "total_parameters", 16));
    free(idx);
    /* and HF's safetensors header: {"__metadata__":{"format":"pt"}, ...} */
    char *st = tu_read(tu_data("models/published_sharded_shape/model-00001-of-00003.safetensors"), &n);
    ck_assert_ptr_nonnull(st);
    ck_assert_ptr_nonnull(memmem(st, n < 4096 ? n : 4096, "{\"__metadata__\":{\"format\":\"pt\"}", 31));
    free(st);
}
END_TEST

static void write_text(const char *file, const char *text)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    ck_assert_int_eq(tu_write(p, text, strlen(text)), 0);
}

/* Weights safetensors cannot hold, a damaged or odd index, odd files. */
START_TEST(test_weight_files)
{
    coil_err_t err = {0};
    char p[4096];
    ck_assert_int_eq(tu_write_random_model(dir, &small, 1), 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    /* only PyTorch pickles: named, and refused */
    write_text("pytorch_model.bin", "PK\003\004 not really a zip");
    ck_assert_int_eq(load_code(&err), COIL_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "pytorch_model.bin"));
    ck_assert_ptr_nonnull(strstr(err.msg, "safetensors"));
    snprintf(p, sizeof p, "%s/pytorch_model.bin", dir);
    unlink(p);
    write_text("pytorch_model.bin.index.json", "{\"metadata\": {}, \"weight_map\": {}}");
    ck_assert_int_eq(load_code(&err), COIL_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "pytorch_model.bin.index.json"));
    snprintf(p, sizeof p, "%s/pytorch_model.bin.index.json", dir);
    unlink(p);
    /* nothing at all */
    ck_assert_int_eq(load_code(&err), COIL_ENOTFOUND);
    ck_assert_ptr_nonnull(strstr(err.msg, "no weights"));
    /* config.json that is a directory, has a NUL, or is over the documented size */
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    size_t saved_len = 0;
    char *saved = tu_read(cfg, &saved_len);
    ck_assert_ptr_nonnull(saved);
    unlink(cfg);
    ck_assert_int_eq(mkdir(cfg, 0755), 0);
    ck_assert_int_eq(load_code(&err), COIL_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a regular file"));
    rmdir(cfg);
    ck_assert_int_eq(tu_write(cfg, "{\"hidden_size\": 32\0}", 20), 0);
    ck_assert_int_eq(load_code(&err), COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "NUL"));
    size_t big = COIL_MODEL_MAX_CONFIG + 1;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    ck_assert_int_eq(tu_write(cfg, huge, big), 0);
    free(huge);
    ck_assert_int_eq(load_code(&err), COIL_ETOOBIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "maximum"));
    ck_assert_int_eq(tu_write(cfg, saved, saved_len), 0);
    free(saved);
    /* a shard index over its documented maximum (a sparse file) */
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    ck_assert_int_eq(tu_write(p, "{", 1), 0);
    ck_assert_int_eq(truncate(p, (off_t)COIL_MODEL_MAX_INDEX + 1), 0);
    ck_assert_int_eq(load_code(&err), COIL_ETOOBIG);
    ck_assert_ptr_nonnull(strstr(err.msg, "model.safetensors.index.json"));
    ck_assert_ptr_nonnull(strstr(err.msg, "maximum"));
    unlink(p);
}
END_TEST

/* One tensor per shard: more shards than any fixed table would hold. */
START_TEST(test_many_shards)
{
    coil_err_t err = {0};
    char p[4096], q[4096];
    tu_model_shape_t deep = small;
    deep.n_layer = 30; /* 30 x 11 + 2 = 332 tensors */
    deep.d_model = 16;
    ck_assert_int_eq(tu_write_random_model(dir, &deep, 3), 0);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    coil_safetensors_t *st = coil_safetensors_open(p, &err);
    ck_assert_ptr_nonnull(st);
    size_t n = coil_safetensors_count(st), cap = 160 * n + 64, k = 0;
    ck_assert_uint_gt(n, 300);
    char *map = malloc(cap);
    k += (size_t)snprintf(map + k, cap - k, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
    for (size_t i = 0; i < n; i++) {
        const coil_tensor_info_t *t = coil_safetensors_at(st, i);
        char header[512], shape[128] = "";
        for (int d = 0; d < t->ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%lld", d ? "," : "", (long long)t->shape[d]);
        snprintf(header, sizeof header, "{\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[0,%zu]}}", t->name,
                 coil_dtype_name(t->dtype), shape, t->nbytes);
        snprintf(q, sizeof q, "%s/model-%05zu-of-%05zu.safetensors", dir, i + 1, n);
        ck_assert_int_eq(tu_write_st_raw(q, header, t->data, t->nbytes), 0);
        k += (size_t)snprintf(map + k, cap - k, "%s\"%s\": \"model-%05zu-of-%05zu.safetensors\"", i ? ", " : "", t->name,
                              i + 1, n);
    }
    snprintf(map + k, cap - k, "}}");
    coil_model_t *one = coil_model_load(dir, &err);
    ck_assert_msg(one != NULL, "%s", err.msg);
    uint64_t fp = coil_model_fingerprint(one);
    coil_model_destroy(&one);
    coil_safetensors_close(&st);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    ck_assert_int_eq(tu_write(p, map, strlen(map)), 0);
    free(map);
    coil_model_t *m = coil_model_load(dir, &err);
    ck_assert_msg(m != NULL, "%zu shards: %s", n, err.msg);
    ck_assert(coil_model_fingerprint(m) == fp); /* the same model as from one file */
    coil_model_destroy(&m);
}
END_TEST

/* The sharded index: metadata, file names of any length, duplicates. */
START_TEST(test_shard_index_details)
{
    coil_err_t err = {0};
    char sub[4096], p[4096], q[4096];
    snprintf(sub, sizeof sub, "%s/m", dir);
    ck_assert_int_eq(tu_copy_dir(tu_data("models/published_sharded_shape"), sub), 0);
    char *saved = dir;
    dir = sub;
    ck_assert_int_eq(load_code(&err), 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    size_t n;
    char *orig = tu_read(p, &n);
    char *text = realloc(orig, n + 1);
    text[n] = '\0';
    /* a shard name of 240 bytes (no fixed-size buffer on the way) */
    char longname[256];
    memset(longname, 'x', 228);
    strcpy(longname + 228, ".safetensors");
    snprintf(q, sizeof q, "%s/model-00003-of-00003.safetensors", dir);
    char r[4096];
    snprintf(r, sizeof r, "%s/%s", dir, longname);
    ck_assert_int_eq(rename(q, r), 0);
    char *t = text, *u;
    while (strstr(t, "model-00003-of-00003.safetensors")) {
        u = subst(t, "model-00003-of-00003.safetensors", longname);
        if (t != text)
            free(t);
        t = u;
    }
    ck_assert_int_eq(tu_write(p, t, strlen(t)), 0);
    ck_assert_msg(load_code(&err) == 0, "%s", err.msg);
    free(t);
    ck_assert_int_eq(rename(r, q), 0);
    ck_assert_int_eq(tu_write(p, text, n), 0);
    ck_assert_int_eq(load_code(&err), 0);

    /* metadata of the wrong type */
    t = subst(text, "\"total_size\": ", "\"total_size\": -");
    ck_assert_int_eq(tu_write(p, t, strlen(t)), 0);
    ck_assert_int_eq(load_code(&err), COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "total_size"));
    free(t);
    /* an index whose shard is a pickle */
    t = subst(text, "model-00001-of-00003.safetensors", "pytorch_model-00001-of-00003.bin");
    ck_assert_int_eq(tu_write(p, t, strlen(t)), 0);
    ck_assert_int_eq(load_code(&err), COIL_EUNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a .safetensors file"));
    free(t);
    /* an empty weight_map */
    ck_assert_int_eq(tu_write(p, "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {}}", 49), 0);
    ck_assert_int_eq(load_code(&err), COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "lists no tensors"));
    ck_assert_int_eq(tu_write(p, "[]", 2), 0);
    ck_assert_int_eq(load_code(&err), COIL_EFORMAT);
    free(text);
    dir = saved;
    /* the same tensor in two shards: both files named */
    ck_assert_int_eq(tu_write_random_model(dir, &small, 2), 0);
    snprintf(q, sizeof q, "%s/model.safetensors", dir);
    snprintf(r, sizeof r, "%s/a.safetensors", dir);
    ck_assert_int_eq(rename(q, r), 0);
    char *blob = tu_read(r, &n);
    snprintf(q, sizeof q, "%s/b.safetensors", dir);
    ck_assert_int_eq(tu_write(q, blob, n), 0); /* a full copy */
    free(blob);
    coil_safetensors_t *sa = coil_safetensors_open(r, &err);
    ck_assert_ptr_nonnull(sa);
    char *map = malloc(65536);
    size_t k = (size_t)snprintf(map, 65536, "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {");
    for (size_t i = 0; i < coil_safetensors_count(sa); i++) {
        const char *nm = coil_safetensors_at(sa, i)->name;
        k += (size_t)snprintf(map + k, 65536 - k, "%s\"%s\": \"%s\"", i ? ", " : "", nm,
                              strcmp(nm, "backbone.norm_f.weight") ? "a.safetensors" : "b.safetensors");
    }
    snprintf(map + k, 65536 - k, "}}");
    coil_safetensors_close(&sa);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    ck_assert_int_eq(tu_write(p, map, strlen(map)), 0);
    free(map);
    ck_assert_int_eq(load_code(&err), COIL_EFORMAT);
    ck_assert_ptr_nonnull(strstr(err.msg, "is also in"));
    ck_assert_ptr_nonnull(strstr(err.msg, "a.safetensors"));
    ck_assert_ptr_nonnull(strstr(err.msg, "b.safetensors"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_config_fields);
    tcase_add_test(tc, test_load_golden_models);
    tcase_add_test(tc, test_bad_models);
    tcase_add_test(tc, test_falcon_mamba);
    tcase_add_test(tc, test_mamba2_config);
    tcase_add_test(tc, test_rwkv_config);
    tcase_add_test(tc, test_dims_json);
    tcase_add_test(tc, test_bad_shard_index);
    tcase_add_test(tc, test_published_configs);
    tcase_add_test(tc, test_published_directories);
    tcase_add_test(tc, test_weight_files);
    tcase_add_test(tc, test_shard_index_details);
    tcase_add_test(tc, test_many_shards);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
