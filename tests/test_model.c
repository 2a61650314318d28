/* test_model.c -- config.json parsing and weight binding, good and bad. */
#include "model.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    ck_assert_int_eq(coil_model_config_parse("{\"model_type\": \"mamba2\", \"hidden_size\": 8}", "cfg", &c, &err),
                     COIL_EUNSUPPORTED);
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
    ck_assert_int_eq(load_code(&err), COIL_ESHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "x_proj.weight"));
    patch("config.json", "\"state_size\": 4", "\"state_size\": 8");

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

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_config_fields);
    tcase_add_test(tc, test_load_golden_models);
    tcase_add_test(tc, test_bad_models);
    tcase_add_test(tc, test_bad_shard_index);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
