#!/usr/bin/env bash
# kill_sweep.sh -- SIGKILL `coil ingest` at random moments, resume, compare
# (issue 16).  Not part of `make check`: run it by hand from a built tree.
#
#   tests/stress/kill_sweep.sh [KILLS] [MODEL_DIR]
#
# KILLS (default 1000) times: start `coil ingest` of one document into the
# same database, SIGKILL it after a random 0..MAX_MS milliseconds (default
# 400), and start again -- each run resumes from the last commit.  When the
# document is complete: `coil check` (integrity_check, FTS, invariants) must
# pass and the exported final state must be byte-identical to that of an
# uninterrupted ingest of the same text into a fresh database.  The model
# defaults to the bundled one (examples/model); the document is DOC_KIB
# (default 64) KiB of generated text, chunks of 64 tokens, a checkpoint
# every 256.
#
# Prints the number of kills and cycles (each cycle: kills until a run
# completes, then the checks) and exits 0, or says what differed and exits 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
kills=${1:-1000}
model=${2:-examples/model}
max_ms=${MAX_MS:-400}
coil=./coil
[ -x "$coil" ] || { echo "kill_sweep: build coil first (make)" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/coil-kill-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

python3 - "$tmp/doc.txt" "${DOC_KIB:-64}" <<'PY'
import random, sys
random.seed(16)
words = "the river ran past old mills and every stone remembered winter lanterns glowed caf\u00e9 42 times".split()
out, n = [], 0
while n < int(sys.argv[2]) * 1024:
    line = " ".join(random.choice(words) for _ in range(12)) + ".\n"
    out.append(line); n += len(line.encode())
open(sys.argv[1], "w").write("".join(out))
PY
args=(--model "$model" --name doc --file "$tmp/doc.txt" --chunk 64 --interval 256 --threads 1 --quiet)

# the reference: one uninterrupted run
"$coil" ingest --db "$tmp/ref.db" "${args[@]}"
"$coil" state export --model "$model" --db "$tmp/ref.db" --doc doc --out "$tmp/ref.state" > /dev/null

# Cycles: a fresh database, `coil ingest` started again and again and
# SIGKILLed after a random delay, until one run completes by itself; then
# the database is checked and its final state compared.  Kills are counted
# only while the document was not complete (a run that finished first ends
# the cycle).
delivered=0 runs=0 cycles=0
verify() {
    "$coil" check --model "$model" --db "$tmp/kill.db" > "$tmp/check" 2>&1 ||
        { echo "kill_sweep: coil check failed (cycle $cycles):" >&2; cat "$tmp/check" >&2; exit 1; }
    if command -v sqlite3 > /dev/null; then # coil check ran it too; the sqlite3 shell's own word
        [ "$(sqlite3 "$tmp/kill.db" 'PRAGMA integrity_check')" = ok ] ||
            { echo "kill_sweep: integrity_check failed (cycle $cycles)" >&2; exit 1; }
    fi
    "$coil" state export --model "$model" --db "$tmp/kill.db" --doc doc --out "$tmp/kill.state" > /dev/null
    cmp -s "$tmp/ref.state" "$tmp/kill.state" ||
        { echo "kill_sweep: the final state differs from the uninterrupted run's (cycle $cycles)" >&2; exit 1; }
}
while ((delivered < kills)); do
    rm -f "$tmp/kill.db" "$tmp/kill.db-wal" "$tmp/kill.db-shm"
    cycles=$((cycles + 1))
    while :; do
        "$coil" ingest --db "$tmp/kill.db" "${args[@]}" > "$tmp/out" 2>&1 &
        pid=$!
        runs=$((runs + 1))
        sleep "$(awk -v r=$RANDOM -v m="$max_ms" 'BEGIN { printf "%.3f", (r % (m + 1)) / 1000 }')"
        if kill -KILL "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null || true
            delivered=$((delivered + 1))
        else
            wait "$pid" || { echo "kill_sweep: run $runs failed on its own:" >&2; cat "$tmp/out" >&2; exit 1; }
            break # completed by itself
        fi
    done
    verify
done
echo "kills: $delivered SIGKILLs of coil ingest in $cycles cycles ($runs runs): every final state identical to the uninterrupted run's, coil check and integrity_check ok"
