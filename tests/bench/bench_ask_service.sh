#!/usr/bin/env bash
# bench_ask_service.sh -- a select ask through coild with 1 and 2 workers
# (its candidates spread over the workers as sub-jobs), against the local
# `coil ask --strategy select`.  One document, stored once; then the same
# question REPS times on each, interleaved; the median wall-clock latency of
# the client command (`coil ask` / `coil --connect ... ask`).  Not part of `make check` (a benchmark, not a test).
#
#   tests/bench/bench_ask_service.sh [MODEL_DIR] [M] [REPS] [THREADS]
#
# Defaults: the bundled model, M = 8 candidates, 9 repetitions, threads per
# worker 0 (coild's default: all usable CPUs).  The document: Hamlet, Act I
# (examples/sample.txt), chunk grid 256.  Needs python3 (to read the ready file).
set -euo pipefail
cd "$(dirname "$0")/../.."
model=$(cd "${1:-examples/model}" && pwd)
m=${2:-8}
reps=${3:-9}
threads=${4:-0}
[ -x ./coil ] && [ -x ./coild ] || { echo "bench_ask_service: build first (make)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/coil-bas-XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
q="What said the Ghost of Hamlet's father to Horatio and Marcellus on the platform?"
n=8
now() { date +%s.%N; }
./coil ingest --model "$model" --db "$work/l.db" --name d --file examples/sample.txt --chunk 256 --quiet

# a coild with $1 workers on a copy of the database; prints its client endpoint
start_coild() {
    local w=$1 d="$work/s$1"
    mkdir "$d"
    cp "$work/l.db" "$d/s.db"
    cat > "$d/coild.yaml" <<YAML
endpoints:
  clients: tcp://127.0.0.1:*
  events: tcp://127.0.0.1:*
database: $d/s.db
model: $model
workers: $w
threads_per_worker: $threads
YAML
    ./coild --config "$d/coild.yaml" --ready-file "$d/ready.json" --quiet 2> "$d/coild.log" &
    pids+=($!)
    for _ in $(seq 1 1200); do
        [ -s "$d/ready.json" ] && break
        sleep 0.05
    done
    [ -s "$d/ready.json" ] || { cat "$d/coild.log" >&2; return 1; }
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["clients"])' "$d/ready.json"
}
start_coild 1 > "$work/ep1"
start_coild 2 > "$work/ep2"
ep1=$(cat "$work/ep1")
ep2=$(cat "$work/ep2")

# one ask: appends "wall_s" to $1.t; the printed result to $1.out
run() { # label command...
    local l=$1 t0 t1
    shift
    t0=$(now)
    "$@" > "$work/$l.out"
    t1=$(now)
    echo "$t1 - $t0" | bc -l >> "$work/$l.t"
}
for _ in $(seq 1 "$reps"); do
    run local ./coil ask --model "$model" --db "$work/l.db" --doc d "$q" --strategy select --candidates "$m" -n "$n"
    run w1 ./coil --connect "$ep1" ask --doc d "$q" --strategy select --candidates "$m" -n "$n" --timeout 120
    run w2 ./coil --connect "$ep2" ask --doc d "$q" --strategy select --candidates "$m" -n "$n" --timeout 120
done
cmp -s "$work/local.out" "$work/w1.out" && cmp -s "$work/local.out" "$work/w2.out" ||
    { echo "bench_ask_service: the answers differ" >&2; diff "$work/local.out" "$work/w2.out" >&2; exit 1; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
ms() { awk '{printf "%.0f", $1 * 1000}'; }
cands=$(grep -c '^evidence ' "$work/local.out")
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs usable, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "document: examples/sample.txt, grid 256; select, $cands candidates (--candidates $m), -n $n; threads per worker $threads; $reps runs each, interleaved; median"
printf '%-28s %s\n' "local coil ask" "$(median < "$work/local.t" | ms) ms (wall, includes loading the model)"
for w in 1 2; do
    printf '%-28s %s\n' "coild, $w worker(s)" "$(median < "$work/w$w.t" | ms) ms (wall)"
done
echo "the three answers are identical (byte for byte)"
