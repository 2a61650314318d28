#!/usr/bin/env bash
# bench_ingest_service.sh -- the service path against the engine: the same
# document ingested by `coil ingest` and through coild (1 and 2 workers,
# default config: chunk grid 512, threads shared among the workers), in one
# run, each REPS times, interleaved; then the same with one core kept busy
# by another process.  Prints tok/s and the ratio to `coil ingest`.
# Not part of `make check` (a benchmark, not a test).
#
#   tests/bench/bench_ingest_service.sh [MODEL_DIR] [DOC_KIB] [REPS]
#
# Defaults: the bundled model, 160 KiB of examples/sample.txt (repeated),
# 3 repetitions.  Needs python3 (to read coild's ready file).
set -euo pipefail
cd "$(dirname "$0")/../.."
model=$(cd "${1:-examples/model}" && pwd)
kib=${2:-160}
reps=${3:-3}
[ -x ./coil ] && [ -x ./coild ] || { echo "bench_ingest_service: build first (make)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/coil-bis-XXXXXX")
busy=
cleanup() {
    [ -n "$busy" ] && kill "$busy" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
while [ "$(stat -c %s "$work/doc.txt" 2>/dev/null || echo 0)" -lt $((kib * 1024)) ]; do
    cat examples/sample.txt >> "$work/doc.txt"
done
now() { date +%s.%N; }

# seconds for `coil ingest` of the document into a new database
local_run() {
    rm -f "$work/l.db"*
    local t0 t1
    t0=$(now)
    ./coil ingest --model "$model" --db "$work/l.db" --name d --file "$work/doc.txt" --quiet
    t1=$(now)
    echo "$t1 - $t0" | bc -l
}

# seconds for the same through a fresh coild with $1 workers (start-up excluded)
service_run() {
    local w=$1 t0 t1 pid
    rm -rf "$work/s" && mkdir "$work/s"
    cat > "$work/s/coild.yaml" <<YAML
endpoints:
  clients: tcp://127.0.0.1:*
  events: tcp://127.0.0.1:*
database: $work/s/s.db
model: $model
workers: $w
YAML
    ./coild --config "$work/s/coild.yaml" --ready-file "$work/s/ready.json" 2> "$work/s/coild.log" &
    pid=$!
    for _ in $(seq 1 600); do
        [ -s "$work/s/ready.json" ] && break
        sleep 0.05
    done
    [ -s "$work/s/ready.json" ] || { cat "$work/s/coild.log" >&2; kill "$pid"; return 1; }
    local ep
    ep=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["clients"])' "$work/s/ready.json")
    t0=$(now)
    ./coil --connect "$ep" ingest --name d --file "$work/doc.txt" --quiet --timeout 120
    t1=$(now)
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
    echo "$t1 - $t0" | bc -l
}

tokens=$(./coil ingest --model "$model" --db "$work/t.db" --name d --file "$work/doc.txt" | sed -n 's/^ingested d: \([0-9]*\) tokens.*/\1/p')
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs usable"
./coil info --model "$model" | grep -E '^(kernel set|matrix|cpu):' || true
echo "document: $tokens tokens ($kib KiB of Hamlet, Act I, repeated); $reps runs each, interleaved; median"

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
measure() { # label
    local l s1 s2
    : > "$work/l.t"; : > "$work/s1.t"; : > "$work/s2.t"
    for _ in $(seq 1 "$reps"); do
        local_run >> "$work/l.t"
        service_run 1 >> "$work/s1.t"
        service_run 2 >> "$work/s2.t"
    done
    l=$(median < "$work/l.t"); s1=$(median < "$work/s1.t"); s2=$(median < "$work/s2.t")
    printf '%-22s coil ingest %7.0f tok/s | coild 1 worker %7.0f tok/s (%3.0f%%) | coild 2 workers %7.0f tok/s (%3.0f%%)\n' \
        "$1" "$(echo "$tokens / $l" | bc -l)" "$(echo "$tokens / $s1" | bc -l)" "$(echo "100 * $l / $s1" | bc -l)" \
        "$(echo "$tokens / $s2" | bc -l)" "$(echo "100 * $l / $s2" | bc -l)"
}
measure "idle machine:"
taskset -c 0 sh -c 'while :; do :; done' &
busy=$!
measure "one core busy:"
