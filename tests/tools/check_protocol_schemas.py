#!/usr/bin/env python3
"""check_protocol_schemas.py -- the JSON Schemas of coil's protocol agree with the C code.

Run by tests/test_protocol_schemas (make check), which first runs the C parser
over the corpus and builds replies and events with the C builders:

  check_protocol_schemas.py SCHEMA_DIR CASES_JSON VERDICTS_JSONL OUTPUTS_JSONL
  check_protocol_schemas.py --replies SCHEMA_DIR REPLIES_JSONL [REQUIRE_JSON]

  SCHEMA_DIR      schemas/protocol (request.<op>, reply, event.<topic> schemas)
  CASES_JSON      tests/data/protocol/cases.json: [{name, json|raw, valid, schema?...}]
  VERDICTS_JSONL  one {"name", "valid"} a line: what coil_proto_parse_request said
  OUTPUTS_JSONL   one {"kind": "reply"|"event", "topic"?, "text"} a line: C-built output

  REPLIES_JSONL   one {"case", "op", "reply"} a line: replies a live coild sent
                  (tests/test_service records every one it receives; op is
                  null when the request's op is unknown, e.g. malformed)
  REQUIRE_JSON    what the replies must cover: {"cases": {CASE: min replies},
                  "ok_ops": [...], "partials": [partial schema names],
                  "errors": {CASE: min error replies}}

Checks: every schema is a valid draft 2020-12 schema with $id and
additionalProperties false; for every case with "schema" not false, the
schema's verdict equals the C parser's and the expected one; every C-built
output validates.  With --replies: every reply validates against the reply
schema, every ok reply's result against result.<op>, and every partial's
result against partial.token (generate, ask), partial.progress (ingest) or
partial.queued (any op); and the replies cover REQUIRE_JSON.  Exit 0 =
agree, 1 = disagree, 77 = jsonschema missing (skip).
"""
import json
import os
import sys

try:
    from jsonschema import Draft202012Validator
except ImportError:  # automake's "skipped"
    print("SKIP: python3-jsonschema is not installed")
    sys.exit(77)


def strict_loads(text):
    """json.loads that refuses NaN/Infinity, as jansson does."""
    def bad_constant(name):
        raise ValueError("non-standard JSON constant " + name)
    return json.loads(text, parse_constant=bad_constant)


def load_schemas(schema_dir):
    schemas = {}
    for fname in sorted(os.listdir(schema_dir)):
        if not fname.endswith(".schema.json"):
            continue
        with open(os.path.join(schema_dir, fname), encoding="utf-8") as f:
            schema = json.load(f)
        Draft202012Validator.check_schema(schema)
        assert "$id" in schema, fname + ": no $id"
        if fname.startswith(("request.", "event.", "partial.")) or (fname.startswith("result.") and "oneOf" not in schema):
            assert schema.get("additionalProperties") is False, fname + ": not strict"
        else:
            for alt in schema["oneOf"]:
                assert alt.get("additionalProperties") is False, fname + ": not strict"
        schemas[fname[: -len(".schema.json")]] = Draft202012Validator(schema)
    return schemas


def schema_verdict(schemas, case):
    """(valid, why) for frame 0 of a request."""
    if "raw" in case:
        try:
            msg = strict_loads(case["raw"])
        except ValueError as e:
            return False, "not JSON: %s" % e
    else:
        msg = case["json"]
    if not isinstance(msg, dict):
        return False, "not an object"
    op = msg.get("op")
    if not isinstance(op, str) or ("request." + op) not in schemas:
        return False, "no request schema for op %r" % (op,)
    errors = list(schemas["request." + op].iter_errors(msg))
    return not errors, "; ".join(e.message for e in errors[:2])


PARTIALS = {"generate": ("partial.token", "partial.queued"), "ask": ("partial.token", "partial.queued"),
            "ingest": ("partial.progress", "partial.queued")}


def check_replies(schema_dir, replies_path, require=None):
    """Validates the replies a live coild sent: envelope, per-op result, partials; and their coverage."""
    schemas = load_schemas(schema_dir)
    failures, n, ops = 0, 0, set()
    cases, errs, partials = {}, {}, set()
    with open(replies_path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            op, reply, case = rec.get("op"), rec["reply"], rec.get("case", "?")
            n += 1
            cases[case] = cases.get(case, 0) + 1
            errors = list(schemas["reply"].iter_errors(reply))
            if not errors and reply.get("ok") is True:
                if op is None or "result." + op not in schemas:
                    print("FAIL [%s] an ok reply to an unknown op %r: %s" % (case, op, json.dumps(reply)[:200]))
                    failures += 1
                    continue
                errors = list(schemas["result." + op].iter_errors(reply["result"]))
                ops.add(op)
            elif not errors and reply.get("partial") is True:
                allowed = PARTIALS.get(op, ("partial.queued",))
                results = [(name, list(schemas[name].iter_errors(reply["result"]))) for name in allowed]
                ok = [name for name, e in results if not e]
                if ok:
                    partials.update(ok)
                else:
                    errors = results[0][1]
            elif not errors:
                errs[case] = errs.get(case, 0) + 1
            if errors:
                print("FAIL [%s] %s reply %s: %s" % (case, op, json.dumps(reply)[:300], errors[0].message))
                failures += 1
    print("%d replies validated (ok results of %d ops: %s; partials: %s; errors by case: %s), %d failures" % (
        n, len(ops), " ".join(sorted(ops)), " ".join(sorted(partials)),
        " ".join("%s=%d" % kv for kv in sorted(errs.items())), failures))
    if require:
        for case, least in require.get("cases", {}).items():
            if cases.get(case, 0) < least:
                print("FAIL case %s: %d replies recorded, %d required" % (case, cases.get(case, 0), least))
                failures += 1
        for case, least in require.get("errors", {}).items():
            if errs.get(case, 0) < least:
                print("FAIL case %s: %d error replies recorded, %d required" % (case, errs.get(case, 0), least))
                failures += 1
        for op in require.get("ok_ops", []):
            if op not in ops:
                print("FAIL no ok reply to %s was checked" % op)
                failures += 1
        for name in require.get("partials", []):
            if name not in partials:
                print("FAIL no partial reply matching %s was checked" % name)
                failures += 1
    return 1 if failures else 0


def main(argv):
    if len(argv) in (4, 5) and argv[1] == "--replies":
        return check_replies(argv[2], argv[3], json.loads(argv[4]) if len(argv) == 5 else None)
    if len(argv) != 5:
        print(__doc__)
        return 2
    schema_dir, cases_path, verdicts_path, outputs_path = argv[1:]
    schemas = load_schemas(schema_dir)
    with open(cases_path, encoding="utf-8") as f:
        cases = json.load(f)
    c_verdicts = {}
    with open(verdicts_path, encoding="utf-8") as f:
        for line in f:
            v = json.loads(line)
            c_verdicts[v["name"]] = v["valid"]

    failures = 0
    checked = 0
    for case in cases:
        name = case["name"]
        if name not in c_verdicts:
            print("FAIL %s: no C verdict" % name)
            failures += 1
            continue
        if case.get("schema", True) is False:
            continue
        valid, why = schema_verdict(schemas, case)
        checked += 1
        if valid != case["valid"] or valid != c_verdicts[name]:
            print("FAIL %s: expected %s, C parser %s, schema %s (%s)" % (
                name, case["valid"], c_verdicts[name], valid, why))
            failures += 1

    n_out = 0
    with open(outputs_path, encoding="utf-8") as f:
        for line in f:
            out = json.loads(line)
            text = out["text"]
            obj = strict_loads(text)
            if "\n" in text or (out["kind"] == "reply" and list(obj)[:2] != ["v", "id"]):
                print("FAIL output not compact or envelope not first: %s" % text)
                failures += 1
            key = "reply" if out["kind"] == "reply" else "event." + out["topic"]
            errors = list(schemas[key].iter_errors(strict_loads(text)))
            if errors:
                print("FAIL %s %s: %s" % (key, text, errors[0].message))
                failures += 1
            n_out += 1

    try:
        from importlib.metadata import version
        jv = version("jsonschema")
    except Exception:  # pragma: no cover - very old Pythons
        jv = "?"
    print("%d schemas, %d cases compared, %d outputs validated, %d failures (jsonschema %s)" % (
        len(schemas), checked, n_out, failures, jv))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
