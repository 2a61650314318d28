/* protocol.h -- coild's wire protocol: decode, validate and encode messages.
 *
 * Pure: no sockets here.  A message is ZeroMQ multipart: frame 0 is one JSON
 * object (UTF-8), an optional frame 1 is binary (a state blob: state.export
 * replies, state.import requests).  At most 2 frames.
 *
 *   request  {"v":1,"id":ID,"op":"<op>", ...op fields}
 *   reply    {"v":1,"id":ID,"ok":true,"result":{...}}
 *            {"v":1,"id":ID|null,"ok":false,"error":{"code":"COIL_E...","message":"..."}}
 *   partial  {"v":1,"id":ID,"partial":true,"result":{...}}   (streamed; the final reply has "ok")
 *   event    PUB frames: topic string, JSON body (see coil_proto_event_*)
 *
 * ID is a string of 1..64 characters or an integer; replies echo it exactly.
 * Requests are strict: unknown fields, wrong types and out-of-range values
 * are errors.  Integers follow JSON Schema: a number with no fractional part
 * (3 and 3.0 are both the integer 3).  String lengths are in code points.
 * schemas/protocol/ holds the same rules as JSON Schemas; `make check`
 * asserts that both agree on a corpus (tests/data/protocol/cases.json).
 *
 * Output of every builder is compact JSON, valid UTF-8, keys in insertion
 * order (the order documented above), malloc'd: the caller free()s it.
 */
#ifndef COIL_PROTOCOL_H
#define COIL_PROTOCOL_H

#include "error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COIL_PROTO_VERSION 1
#define COIL_PROTO_MAX_FRAMES 2
#define COIL_PROTO_ID_MAX 64      /* code points of a string id */
#define COIL_PROTO_NAME_MAX 256   /* code points of a document name */
#define COIL_PROTO_QUERY_MAX 1024 /* code points of a search query */
#define COIL_PROTO_SESSION_LEN 16 /* lowercase hex chars of a session id */
#define COIL_PROTO_KEY_MAX 128    /* request key: 1..128 chars of A-Z a-z 0-9 . _ : - */

typedef enum coil_proto_op {
    COIL_OP_NONE = 0, /* not a valid op; what a failed parse leaves */
    COIL_OP_INGEST,
    COIL_OP_DOC_STATUS,
    COIL_OP_DOC_LIST,
    COIL_OP_SEARCH,
    COIL_OP_SESSION_NEW,
    COIL_OP_SESSION_APPEND,
    COIL_OP_SESSION_FORK,
    COIL_OP_SESSION_DELETE,
    COIL_OP_GENERATE,
    COIL_OP_SCORE,
    COIL_OP_STATE_EXPORT,
    COIL_OP_STATE_IMPORT,
    COIL_OP_HEALTH,
    COIL_OP_STATS,
    COIL_OP_ASK,
    COIL_OP_COUNT_ /* number of values, not an op */
} coil_proto_op_t;

/* Wire name of op ("doc.status"); NULL for COIL_OP_NONE or out of range. */
const char *coil_proto_op_name(coil_proto_op_t op);
/* The op named `name`; COIL_OP_NONE if unknown or NULL. */
coil_proto_op_t coil_proto_op_from_name(const char *name);

/* Size limits applied by coil_proto_parse_request (COIL_ETOOBIG beyond them). */
typedef struct coil_proto_limits {
    size_t max_message_bytes;  /* frame 0 + frame 1; default 64 MiB */
    size_t max_text_bytes;     /* a text / prompt field (not ingest); default 1 MiB */
    size_t max_document_bytes; /* ingest text of one message; default 64 MiB
                                * (the sum over streamed parts is the server's check) */
} coil_proto_limits_t;

/* Fills the defaults above. */
void coil_proto_limits_default(coil_proto_limits_t *lim);

/* A validated request.  Plain data, read-only for the caller; every pointer
 * is borrowed and valid until coil_proto_request_free(), except blob (see
 * there).  Fields an op does not have keep the defaults listed here. */
typedef struct coil_proto_request {
    coil_proto_op_t op;
    const json_t *id;   /* the id as sent: a JSON string or integer; pass it
                         * to the reply builders to echo it exactly */
    const json_t *json; /* the whole frame 0 object */

    const char *name;    /* ingest, doc.status, state.import; NULL if absent */
    const char *doc;     /* search, session.new, generate, score, state.export, ask; NULL if absent */
    const char *session; /* session.*, generate, score, state.export, ask; NULL if absent */
    const char *query;   /* search */
    const char *text;    /* ingest, session.append, score; NULL if absent */
    size_t text_len;     /* bytes; strings never contain NUL */
    const char *prompt;  /* generate; NULL if absent */
    size_t prompt_len;

    int64_t part;        /* ingest: part number of a streamed document; -1 = whole document */
    bool last;           /* ingest: false only for a streamed part that is not the last */
    bool replace;        /* ingest: default false */
    int64_t chunk;       /* ingest: tokens per chunk, 1..65536; 0 = server default */
    int64_t at;          /* session.new/fork, state.export: position; -1 = absent (head) */
    int64_t limit;       /* search: 1..1000, default 20 */
    bool cascade;        /* session.delete: default false */
    int64_t n;           /* generate: 1..4096, default 32; ask: 0..4096, default 16 */
    double temperature;  /* generate: 0..10, default 0.8 */
    double top_p;        /* generate: (0, 1], default 0.95 */
    int64_t seed;        /* generate: >= 0, default 0 */
    bool append;         /* generate: default false (the session is unchanged) */
    bool stream;         /* generate: default true (partial replies) */
    const char *key;     /* session.append, generate with append, ask with a session: request key
                          * (the write happens at most once per key); NULL if absent */

    const char *question; /* ask */
    size_t question_len;
    const char *answer;  /* ask: an answer to score instead of generating; NULL if absent */
    size_t answer_len;
    const char *strategy; /* ask: "auto" (default), "state", "reread", "select" */
    int64_t evidence, candidates, budget; /* ask: 0 = the defaults of src/ask.h */

    const void *blob;    /* state.import: frame 1, BORROWED from the caller's
                          * buffer (valid while that is); NULL otherwise */
    size_t blob_len;
} coil_proto_request_t;

/* Decodes and validates one request.  json/len is frame 0 (need not be NUL
 * terminated); bin/bin_len is frame 1 (NULL/0 when n_frames is 1); n_frames
 * is the number of frames received; lim NULL = defaults.
 * On success returns 0 and *out is a new request (free with
 * coil_proto_request_free).  On failure *out is NULL, err says which field and
 * what was expected, and the code is:
 *   COIL_EPROTO   not JSON, not an object, bad "v", missing/invalid "id",
 *                 unknown "op", wrong frame count, binary frame not allowed
 *   COIL_EINVAL   a field: unknown, missing, wrong type, out of range
 *   COIL_ETOOBIG  message or a text beyond lim
 *   COIL_ENOMEM
 * Use coil_proto_recover_id to echo the id in the error reply.  Thread-safe. */
int coil_proto_parse_request(const void *json, size_t len, const void *bin, size_t bin_len,
                             size_t n_frames, const coil_proto_limits_t *lim,
                             coil_proto_request_t **out, coil_err_t *err);
/* NULL-safe; clears *req. */
void coil_proto_request_free(coil_proto_request_t **req);

/* The id of a (possibly malformed) frame 0, for an error reply: a new
 * reference to the "id" value when frame 0 is a JSON object whose id is
 * valid, else NULL (reply with id null).  The caller json_decref()s it.
 * Parses up to max_bytes of input (0 = no limit; larger input gives NULL). */
json_t *coil_proto_recover_id(const void *json, size_t len, size_t max_bytes);

/* --- builders ---------------------------------------------------------------
 * All return 0 and set *out (malloc'd, NUL-terminated, free() it) and *len
 * (bytes, without the NUL), or a negative code with *out = NULL.
 * id: a valid id (string <= 64 code points or integer) or NULL for null
 * (error replies only); it is not consumed.
 * A json_t ** argument is consumed whatever happens: the builder owns the
 * reference and sets the caller's pointer to NULL. */

/* {"v":1,"id":id,"ok":true,"result":result}; *result must be an object
 * (NULL = {}). */
int coil_proto_reply_ok(const json_t *id, json_t **result, char **out, size_t *len,
                        coil_err_t *err);
/* {"v":1,"id":id|null,"ok":false,"error":{"code":coil_err_name(code),"message":message}}.
 * code must be a negative COIL_E* code; invalid UTF-8 in message is replaced
 * by U+FFFD; NULL message = coil_strerror(code). */
int coil_proto_reply_error(const json_t *id, int code, const char *message, char **out,
                           size_t *len, coil_err_t *err);
/* {"v":1,"id":id,"partial":true,"result":result}; *result an object. */
int coil_proto_reply_partial(const json_t *id, json_t **result, char **out, size_t *len,
                             coil_err_t *err);

/* Client side: {"v":1,"id":id,"op":name, ...fields}.  *fields (NULL = none)
 * must be an object with the op's fields; the result is validated exactly
 * as coil_proto_parse_request would (frame rules aside), so a client never
 * sends what the server refuses: COIL_EINVAL / COIL_EPROTO otherwise. */
int coil_proto_request_build(coil_proto_op_t op, const json_t *id, json_t **fields, char **out,
                             size_t *len, coil_err_t *err);

/* --- events (PUB): frame 0 = topic, frame 1 = the body built here ----------- */
#define COIL_TOPIC_INGEST_PROGRESS "ingest.progress"
#define COIL_TOPIC_DOC_COMPLETE "doc.complete"
#define COIL_TOPIC_DOC_FAILED "doc.failed"
#define COIL_TOPIC_WORKER_UP "worker.up"
#define COIL_TOPIC_WORKER_DOWN "worker.down"
/* Published by coild every second: a subscriber that has seen one knows its
 * subscription is live (PUB/SUB joins asynchronously) and that coild is up. */
#define COIL_TOPIC_HEARTBEAT "coild.heartbeat"

/* Body of an event of a known topic: *body must be an object (consumed).
 * COIL_EINVAL for an unknown topic.  The typed builders below are preferred. */
int coil_proto_event(const char *topic, json_t **body, char **out, size_t *len, coil_err_t *err);
/* {"doc","tokens","bytes","total_bytes" (null if < 0),"tokens_per_s"} */
int coil_proto_event_ingest_progress(const char *doc, int64_t tokens, int64_t bytes,
                                     int64_t total_bytes, double tokens_per_s, char **out,
                                     size_t *len, coil_err_t *err);
/* {"doc","tokens","bytes","seconds"} */
int coil_proto_event_doc_complete(const char *doc, int64_t tokens, int64_t bytes, double seconds,
                                  char **out, size_t *len, coil_err_t *err);
/* {"doc","error":{"code","message"}} */
int coil_proto_event_doc_failed(const char *doc, int code, const char *message, char **out,
                                size_t *len, coil_err_t *err);
/* topic worker.up or worker.down: {"worker","pid","reason"}; reason NULL = null. */
/* {"uptime_s","workers","busy","queued"} */
int coil_proto_event_heartbeat(double uptime_s, int64_t workers, int64_t busy, int64_t queued, char **out,
                               size_t *len, coil_err_t *err);
int coil_proto_event_worker(const char *topic, const char *worker, int64_t pid,
                            const char *reason, char **out, size_t *len, coil_err_t *err);

#endif
