#!/usr/bin/env bash
# kill_workers.sh -- SIGKILL coild's worker processes at random moments
# during a service ingest and keyed session appends, then compare (issue 16).
# Not part of `make check`: run it by hand from a built tree.
#
#   tests/stress/kill_workers.sh [KILLS] [MODEL_DIR]
#
# A cycle: a fresh database and a coild with one worker (so every kill hits
# the worker there is: busy with a job, idle, or still loading the model);
# a killer loop SIGKILLs coild's child process after a random 0..MAX_MS
# milliseconds (default 1500; APPEND_MAX_MS, default 300, during the appends,
# which are short), again and again, while a client (`coil
# --connect`) ingests a document (DOC_KIB KiB, default 64, chunks of 64
# tokens, a checkpoint every 256), and then -- the killer paused only for
# `session new`, which carries no request key -- appends APPENDS (default 20)
# texts to a session, each with its own request key.  A request that fails
# (coild gives a job up after 3 worker deaths) is sent again, the same
# ingest, the same key; coild itself reruns a job whose worker died.  Then,
# coild stopped: `coil check` and `PRAGMA integrity_check` must pass, the
# document's and the session's exported states must be byte-identical to
# those of an uninterrupted run through coild with the same settings (so
# every append happened exactly once: a second one would move the session
# on), and the session's head must be the reference's.  Cycles go on until
# KILLS (default 200) kills were delivered.
#
# Prints the kills, cycles, requests sent again and appends answered as
# already done, and exits 0, or says what differed and exits 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
kills=${1:-200}
model=$(cd "${2:-examples/model}" && pwd)
max_ms=${MAX_MS:-1500}
appends=${APPENDS:-20}
append_max_ms=${APPEND_MAX_MS:-300}
[ -x ./coil ] && [ -x ./coild ] && [ -x workers/coil-worker ] ||
    { echo "kill_workers: build first (make)" >&2; exit 2; }
command -v python3 > /dev/null || { echo "kill_workers: needs python3 (coild's ready file)" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/coil-killw-XXXXXX")
coild_pid= killer_pid=
cleanup() {
    [ -n "$killer_pid" ] && kill "$killer_pid" 2>/dev/null || true
    [ -n "$coild_pid" ] && kill -TERM "$coild_pid" 2>/dev/null && wait "$coild_pid" 2>/dev/null || true
    [ -n "${KEEP:-}" ] && echo "kept $tmp" >&2 || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 - "$tmp/doc.txt" "${DOC_KIB:-64}" <<'PY'
import random, sys
random.seed(17)
words = "the river ran past old mills and every stone remembered winter lanterns glowed caf\u00e9 42 times".split()
out, n = [], 0
while n < int(sys.argv[2]) * 1024:
    line = " ".join(random.choice(words) for _ in range(12)) + ".\n"
    out.append(line); n += len(line.encode())
open(sys.argv[1], "w").write("".join(out))
PY

# coild on database $1 (its directory holds the config, log and ready file)
start_coild() {
    local db=$1 d
    d=$(dirname "$db")
    cat > "$d/coild.yaml" <<YAML
endpoints:
  clients: tcp://127.0.0.1:*
  events: tcp://127.0.0.1:*
database: $db
model: $model
workers: 1
chunk_tokens: 64
checkpoint:
  interval_tokens: 256
threads_per_worker: 1
YAML
    rm -f "$d/ready.json"
    ./coild --config "$d/coild.yaml" --ready-file "$d/ready.json" 2>> "$d/coild.log" &
    coild_pid=$!
    for _ in $(seq 1 1200); do
        [ -s "$d/ready.json" ] && break
        kill -0 "$coild_pid" 2>/dev/null || break
        sleep 0.05
    done
    [ -s "$d/ready.json" ] || { echo "kill_workers: coild did not start:" >&2; cat "$d/coild.log" >&2; exit 1; }
    ep=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["clients"])' "$d/ready.json")
}
stop_coild() {
    kill -TERM "$coild_pid"
    wait "$coild_pid" || { echo "kill_workers: coild exited with status $?" >&2; exit 1; }
    coild_pid=
}

# SIGKILLs coild's worker after random delays until $tmp/killing is removed;
# one line in $tmp/kills per kill delivered
killer() {
    local ms=$1
    while [ -e "$tmp/killing" ]; do
        sleep "$(awk -v r=$RANDOM -v m="$ms" 'BEGIN { printf "%.3f", (r % (m + 1)) / 1000 }')"
        [ -e "$tmp/killing" ] || break
        local w
        # a live child (a worker killed but not yet reaped is a zombie: not counted)
        w=$(ps -o pid=,stat= --ppid "$coild_pid" | awk '$2 !~ /^Z/ { print $1; exit }' || true)
        if [ -n "$w" ] && kill -KILL "$w" 2>/dev/null; then
            echo "$w" >> "$tmp/kills"
        fi
    done
}
start_killer() {
    touch "$tmp/killing"
    killer "$1" &
    killer_pid=$!
}
stop_killer() {
    rm -f "$tmp/killing"
    wait "$killer_pid" 2>/dev/null || true
    killer_pid=
}

resent=0 replayed=0
# the command until it succeeds (at most 200 tries: a hang guard)
until_ok() {
    local tries=0
    while ! "$@" > "$tmp/out" 2>&1; do
        tries=$((tries + 1))
        resent=$((resent + 1))
        [ "$tries" -lt 200 ] || { echo "kill_workers: gave up on: $*" >&2; cat "$tmp/out" >&2; exit 1; }
    done
    if grep -q 'already done with this key' "$tmp/out"; then replayed=$((replayed + 1)); fi
}

# the workload against coild at $ep; with_kills: the killer runs during it
workload() {
    local with_kills=$1 sid i
    [ "$with_kills" = 1 ] && start_killer "$max_ms"
    until_ok ./coil --connect "$ep" ingest --timeout 600 --name doc --file "$tmp/doc.txt" --quiet
    [ "$with_kills" = 1 ] && stop_killer
    sid=$(./coil --connect "$ep" session new --timeout 600 --doc doc)
    echo "$sid" > "$(dirname "$db")/sid"
    [ "$with_kills" = 1 ] && start_killer "$append_max_ms"
    for i in $(seq 1 "$appends"); do
        until_ok ./coil --connect "$ep" session append "$sid" --timeout 600 \
            --text "Append number $i: the lanterns glowed again past the mills, $((i * 7)) times." --key "append-$i"
    done
    [ "$with_kills" = 1 ] && stop_killer
    true
}

# the reference: the same through coild, no kills
mkdir "$tmp/ref"
db=$tmp/ref/ref.db
start_coild "$db"
workload 0
stop_coild
./coil state export --model "$model" --db "$db" --doc doc --out "$tmp/ref/doc.state" > /dev/null
./coil state export --model "$model" --db "$db" --session "$(cat "$tmp/ref/sid")" --out "$tmp/ref/session.state" > /dev/null
ref_sessions=$(./coil sessions --model "$model" --db "$db" | sed "s/$(cat "$tmp/ref/sid")/SID/")

cycles=0 on_ready=0 on_start=0
: > "$tmp/kills"
while [ "$(wc -l < "$tmp/kills")" -lt "$kills" ]; do
    cycles=$((cycles + 1))
    rm -rf "$tmp/run" && mkdir "$tmp/run"
    db=$tmp/run/kill.db
    start_coild "$db"
    workload 1
    stop_coild
    ./coil check --model "$model" --db "$db" > "$tmp/check" 2>&1 ||
        { echo "kill_workers: coil check failed (cycle $cycles):" >&2; cat "$tmp/check" >&2; exit 1; }
    if command -v sqlite3 > /dev/null; then
        [ "$(sqlite3 "$db" 'PRAGMA integrity_check')" = ok ] ||
            { echo "kill_workers: integrity_check failed (cycle $cycles)" >&2; exit 1; }
    fi
    sid=$(cat "$tmp/run/sid")
    ./coil state export --model "$model" --db "$db" --doc doc --out "$tmp/run/doc.state" > /dev/null
    ./coil state export --model "$model" --db "$db" --session "$sid" --out "$tmp/run/session.state" > /dev/null
    cmp -s "$tmp/ref/doc.state" "$tmp/run/doc.state" ||
        { echo "kill_workers: the document's final state differs from the uninterrupted run's (cycle $cycles)" >&2; exit 1; }
    cmp -s "$tmp/ref/session.state" "$tmp/run/session.state" ||
        { echo "kill_workers: the session's state differs from the uninterrupted run's (cycle $cycles)" >&2; exit 1; }
    got_sessions=$(./coil sessions --model "$model" --db "$db" | sed "s/$sid/SID/")
    [ "$got_sessions" = "$ref_sessions" ] ||
        { echo "kill_workers: sessions differ (cycle $cycles):" >&2; echo "$got_sessions" >&2; echo "want:" >&2;
          echo "$ref_sessions" >&2; exit 1; }
    # coild's log: was the worker it saw killed ready (serving or between requests) or still starting?
    awk '/worker w0 ready/ { r = 1 } /worker w0 killed/ { if (r) k++; else s++; r = 0 }
         END { printf "%d %d\n", k, s }' "$tmp/run/coild.log" > "$tmp/run/split"
    read -r k s < "$tmp/run/split"
    on_ready=$((on_ready + k)) on_start=$((on_start + s))
    echo "cycle $cycles: $(wc -l < "$tmp/kills") kills so far, $resent requests sent again, $replayed appends already done" >&2
done
echo "kills: $(wc -l < "$tmp/kills") SIGKILLs of coild's worker in $cycles cycles ($on_ready of a ready worker, $on_start of one still loading; ingest + $appends keyed appends each; $resent requests sent again after coild gave up, $replayed appends answered as already done): every final document and session state identical to the uninterrupted run's, coil check and integrity_check ok"
