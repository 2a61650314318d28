/* protocol_cases.c -- reading and running the protocol request corpus. */
#include "protocol_cases.h"

#include "protocol.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

json_t *pc_load(void)
{
    json_t *cases = json_load_file(tu_data("protocol/cases.json"), 0, NULL);
    if (!json_is_array(cases)) {
        json_decref(cases);
        return NULL;
    }
    return cases;
}

int pc_parse(const json_t *c, coil_err_t *err)
{
    static const char blob[4] = "BLOB";
    const json_t *raw = json_object_get(c, "raw");
    json_int_t frames = json_integer_value(json_object_get(c, "frames"));
    coil_proto_request_t *req = NULL;
    char *text;
    int rc;

    if (frames < 1)
        frames = 1;
    if (raw)
        text = strdup(json_string_value(raw));
    else
        text = json_dumps(json_object_get(c, "json"), JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return coil_err_set(err, COIL_ENOMEM, "case: cannot make frame 0");
    rc = coil_proto_parse_request(text, strlen(text), frames > 1 ? blob : NULL,
                                  frames > 1 ? sizeof blob : 0, (size_t)frames, NULL, &req, err);
    if ((rc == 0) != (req != NULL))
        rc = coil_err_set(err, COIL_EINVAL, "case: rc %d disagrees with the request", rc);
    coil_proto_request_free(&req);
    free(text);
    return rc;
}
