/* coild_config.h -- coild's configuration: defaults and the YAML file (--config).
 *
 * Every key, its type, range and default is in schemas/coild.example.yaml.
 * The file is strict: an unknown key, a wrong type, a value out of range, a
 * duplicate key, an anchor/alias or tag, a second YAML document, or a YAML
 * syntax error is COIL_ECONFIG with "FILE:LINE:COLUMN: key.path: what".
 * An empty file (or one with only comments) gives the defaults.
 * (Named coild_config, not config.h, which is autoconf's generated header.)
 */
#ifndef COIL_COILD_CONFIG_H
#define COIL_COILD_CONFIG_H

#include "error.h"
#include "protocol.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum coil_log_level {
    COIL_LOG_ERROR = 0,
    COIL_LOG_WARN,
    COIL_LOG_INFO,
    COIL_LOG_DEBUG,
} coil_log_level_t;

/* "error", "warn", "info", "debug"; NULL when out of range. */
const char *coil_log_level_name(coil_log_level_t level);

/* Plain data, owned by the config (strings freed by coil_config_destroy).
 * Fields mirror the YAML key paths. */
typedef struct coil_config {
    char *source; /* the file it was loaded from; NULL for coil_config_defaults */
    struct {
        char *clients; /* ROUTER for clients: tcp:// or ipc:// */
        char *events;  /* PUB for events: tcp:// or ipc:// */
        char *workers; /* internal, to workers: tcp:// or ipc:// */
    } endpoints;
    char *database; /* SQLite file */
    char *model;    /* model directory; the caller's default when the file says "" */
    int64_t workers;            /* worker processes, 1..64 */
    int64_t chunk_tokens;       /* tokens per chunk when ingesting, 1..65536 */
    struct {
        int64_t interval_tokens; /* see coil_store_policy_t.interval */
        int64_t dense;           /* see coil_store_policy_t.dense; 0 = never thin */
    } checkpoint;
    struct {
        int64_t max_message_bytes;   /* one message, all frames */
        int64_t max_text_bytes;      /* one text / prompt field */
        int64_t max_document_bytes;  /* one ingested document, all parts */
        int64_t max_concurrent_jobs; /* jobs running or queued at once */
        int64_t max_clients;         /* connected clients; 0 = unlimited */
        int64_t max_uploads;            /* streamed ingests in progress, all clients */
        int64_t max_uploads_per_client; /* streamed ingests in progress, one client */
        int64_t upload_idle_seconds;    /* an upload without a part this long is discarded; 0 = never */
    } limits;
    int64_t threads_per_worker; /* 0 = OpenMP default */
    char *device;               /* the workers' engine backend: cpu, cpu-portable, cuda[:f32|tf32|bf16] */
    coil_log_level_t log_level;
    struct {
        bool enabled;                   /* a curve: section is present */
        char *server_secret_key_file;   /* required when enabled */
        char *server_public_key;        /* Z85, 40 chars; NULL = derived from the secret */
        char **allowed_client_keys;     /* Z85 public keys, n_allowed_client_keys of them */
        size_t n_allowed_client_keys;
        char *allowed_client_keys_file; /* one Z85 key a line; NULL if none */
    } curve;
} coil_config_t;

/* The defaults (see schemas/coild.example.yaml).  default_model: the model
 * path to use when none is configured (NULL = "").  NULL + err on ENOMEM. */
coil_config_t *coil_config_defaults(const char *default_model, coil_err_t *err);
/* Defaults overridden by the YAML file at path.  NULL + err (COIL_EIO if it
 * cannot be read, COIL_ECONFIG for its content, COIL_ENOMEM). */
coil_config_t *coil_config_load(const char *path, const char *default_model, coil_err_t *err);
/* The same from memory; name is used in error messages (NULL = "<string>"). */
coil_config_t *coil_config_load_string(const char *yaml, size_t len, const char *name,
                                       const char *default_model, coil_err_t *err);
/* NULL-safe; clears *cfg. */
void coil_config_destroy(coil_config_t **cfg);

/* Writes c as YAML that coil_config_load reads back to an equal config.
 * 0, or COIL_EIO if writing fails. */
int coil_config_write(const coil_config_t *c, FILE *f, coil_err_t *err);
/* The protocol limits the config implies. */
void coil_config_proto_limits(const coil_config_t *c, coil_proto_limits_t *lim);

#endif
