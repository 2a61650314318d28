/* protocol_cases.h -- the request corpus tests/data/protocol/cases.json, shared
 * by test_protocol (C verdicts) and test_protocol_schemas (C vs JSON Schema).
 *
 * A case: {"name", "json": VALUE | "raw": "frame 0 text", "frames": n (default 1;
 * n >= 2 sends a 4-byte blob as frame 1), "valid": bool, "code": "COIL_E...",
 * "field": "text the error message must contain", "schema": false (not
 * checkable by a JSON Schema), "why"}.
 */
#ifndef COIL_PROTOCOL_CASES_H
#define COIL_PROTOCOL_CASES_H

#include "error.h"

#include <jansson.h>

/* The corpus array (json_decref it); NULL if it cannot be read. */
json_t *pc_load(void);
/* Parses case c with coil_proto_parse_request (default limits); returns its
 * result code and fills err. */
int pc_parse(const json_t *c, coil_err_t *err);

#endif
