/* fuzz_protocol.c -- request decoding and validation of whole multipart
 * messages (coil_proto_parse_request, coil_proto_recover_id).
 *
 * Input layout: byte 0 = frames received (bits 0-1: 1, 2, or 3 = too many),
 * bytes 1-2 = frame 0 length (little-endian, clamped) when there are 2+
 * frames; then frame 0 (JSON) and the rest as frame 1 (binary).  With one
 * frame everything after byte 0 is frame 0.
 * Properties: the return code is one of those documented; on success every
 * borrowed string is NUL-terminated with the length given, the blob points
 * into frame 1, and the client builder (coil_proto_request_build) accepts
 * the same fields (a client never sends what the server refuses and the
 * other way round); recover_id never crashes and returns a valid id. */
#include "fuzz.h"
#include "protocol.h"

#include <string.h>

static void check_id(const json_t *id)
{
    /* JSON Schema integers: 3 and 3.0 are both the integer 3 (protocol.h) */
    FUZZ_CHECK(id && (json_is_string(id) || json_is_integer(id) ||
                      (json_is_real(id) && json_real_value(id) == (double)(long long)json_real_value(id))),
               "id is not a string or integer");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t frames = (data[0] & 3) ? (data[0] & 3) : 1;
    const uint8_t *f0 = data + 1, *f1 = NULL;
    size_t n0 = size - 1, n1 = 0;
    if (frames >= 2) {
        if (size < 3)
            return 0;
        size_t want = (size_t)data[1] | (size_t)data[2] << 8;
        f0 = data + 3;
        n0 = size - 3;
        if (want < n0) {
            f1 = f0 + want;
            n1 = n0 - want;
            n0 = want;
        }
    }
    /* frame 0 in its own allocation of exactly n0 bytes (not NUL-terminated) */
    uint8_t *j = malloc(n0 ? n0 : 1);
    if (!j)
        abort();
    memcpy(j, f0, n0);

    coil_proto_limits_t lim;
    coil_proto_limits_default(&lim);
    if (data[0] & 4) { /* small limits, to reach the COIL_ETOOBIG paths */
        lim.max_message_bytes = 256;
        lim.max_text_bytes = 16;
        lim.max_document_bytes = 64;
    }
    coil_proto_request_t *req = NULL;
    coil_err_t err = {0};
    int rc = coil_proto_parse_request(j, n0, f1, n1, frames, &lim, &req, &err);
    if (rc != 0) {
        FUZZ_CHECK(!req, "request on failure");
        FUZZ_CHECK(rc == COIL_EPROTO || rc == COIL_EINVAL || rc == COIL_ETOOBIG || rc == COIL_ENOMEM,
                   "undocumented code %d (%s)", rc, err.msg);
        FUZZ_CHECK(err.code == rc && err.msg[0], "error %d without a message", rc);
    } else {
        FUZZ_CHECK(req && req->op > COIL_OP_NONE && req->op < COIL_OP_COUNT_, "op %d", req ? (int)req->op : -1);
        check_id(req->id);
        FUZZ_CHECK(json_is_object(req->json), "json not an object");
        if (req->text)
            FUZZ_CHECK(strlen(req->text) == req->text_len, "text_len");
        if (req->prompt)
            FUZZ_CHECK(strlen(req->prompt) == req->prompt_len, "prompt_len");
        if (req->blob)
            FUZZ_CHECK((const uint8_t *)req->blob >= f1 && (const uint8_t *)req->blob + req->blob_len <= f1 + n1,
                       "blob outside frame 1");
        if (req->key)
            FUZZ_CHECK(strlen(req->key) >= 1 && strlen(req->key) <= COIL_PROTO_KEY_MAX, "key length");
        volatile size_t sink = 0;
        const char *strs[] = {req->name, req->doc, req->session, req->query, req->key};
        for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
            if (strs[i])
                sink += strlen(strs[i]);
        (void)sink;
        /* The client builder must accept what the server accepted. */
        json_t *fields = json_deep_copy(req->json);
        if (fields) {
            json_object_del(fields, "v");
            json_object_del(fields, "id");
            json_object_del(fields, "op");
            char *out = NULL;
            size_t out_len = 0;
            coil_err_t berr = {0};
            int brc = coil_proto_request_build(req->op, req->id, &fields, &out, &out_len, &berr);
            FUZZ_CHECK(brc == 0 || brc == COIL_ENOMEM, "the server accepted what the client builder refuses: %s",
                       berr.msg);
            free(out);
        }
        coil_proto_request_free(&req);
        FUZZ_CHECK(!req, "free did not clear");
    }
    json_t *id = coil_proto_recover_id(j, n0, 0);
    if (id) {
        check_id(id);
        char *out = NULL;
        size_t out_len = 0;
        int erc = coil_proto_reply_error(id, COIL_EPROTO, "fuzz", &out, &out_len, &err);
        FUZZ_CHECK(erc == 0, "reply_error with a recovered id: %s", err.msg);
        free(out);
        json_decref(id);
    }
    free(j);
    return 0;
}
