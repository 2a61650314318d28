/* fuzz_config.c -- coild's YAML config (coil_config_load_string).
 * Properties: an error with a message (COIL_ECONFIG / COIL_ENOMEM), or a
 * config that coil_config_write writes as YAML which loads back and writes
 * again to the same bytes (write . load is a fixed point). */
#include "fuzz.h"
#include "coild_config.h"

#include <string.h>

static char *write_yaml(const coil_config_t *c, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        abort();
    coil_err_t err = {0};
    int rc = coil_config_write(c, f, &err);
    fclose(f);
    FUZZ_CHECK(rc == 0, "write: %s", err.msg);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    coil_err_t err = {0};
    coil_config_t *c = coil_config_load_string((const char *)data, size, "fuzz.yaml", "/model", &err);
    if (!c) {
        FUZZ_CHECK(err.code < 0 && err.msg[0], "error %d without a message", err.code);
        return 0;
    }
    coil_proto_limits_t lim;
    coil_config_proto_limits(c, &lim);
    size_t n1 = 0, n2 = 0;
    char *y1 = write_yaml(c, &n1);
    /* U+0085, U+2028, U+2029 are written as \N, \L, \P (YAML reads them raw
     * as line breaks even inside quotes): tests/fuzz/corpus/config/config-write-* */
    const int known = 0;
    coil_config_t *c2 = coil_config_load_string(y1, n1, "rewritten.yaml", "/model", &err);
    FUZZ_CHECK(c2 || known, "the written config does not load back: %s\n---\n%s---", err.msg, y1);
    if (!c2) {
        free(y1);
        coil_config_destroy(&c);
        return 0;
    }
    char *y2 = write_yaml(c2, &n2);
    FUZZ_CHECK(known || (n1 == n2 && memcmp(y1, y2, n1) == 0), "write(load(write(c))) != write(c)\n%s---\n%s", y1,
               y2);
    free(y1);
    free(y2);
    coil_config_destroy(&c2);
    coil_config_destroy(&c);
    return 0;
}
