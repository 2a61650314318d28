#!/usr/bin/env bash
# campaign.sh -- a fuzzing campaign over every harness in tests/fuzz/ (issue 16).
#
#   ./configure --enable-fuzzing && make fuzz     # builds tests/fuzz/fuzz_* with clang
#   tests/fuzz/campaign.sh [SECONDS_PER_HARNESS] [HARNESS...]
#
# Default: 3600 s (wall clock: one CPU-hour on an idle core) per harness, all harnesses, one after the
# other, each with one process (-workers=0, nice 19 or $NICE).  JOBS=N runs N harnesses
# at once.  Each run starts from tests/fuzz/corpus/NAME (read-only) and
# writes new inputs to tests/fuzz/out/NAME/corpus and crashes to
# tests/fuzz/out/NAME/ (crash-*, leak-*, timeout-*, oom-*); its log with
# libFuzzer's final stats (-print_final_stats) is tests/fuzz/out/NAME/log and
# a one-line summary (CPU seconds, executions, exec/s, corpus, cov, ft,
# findings) goes to the ledger, tests/fuzz/campaign.tsv (below).
# UNTIL=HH:MM (UTC) runs round robin instead: SECONDS_PER_HARNESS is then one
# slice, and rounds over every built harness go on until UNTIL (a harness not
# built yet is skipped and joins the next round once it is); each slice
# resumes from the corpus the earlier ones left.
# GOAL=CPU_SECONDS (with UNTIL) picks, for each slice, the harness with the
# fewest CPU seconds so far in the ledger and drops those that reached GOAL,
# so the time goes where the issue's CPU-hour per harness is furthest off;
# two lanes (two cores) are two runs over disjoint harness lists.
#   tests/fuzz/campaign.sh --totals   sums the ledger per harness (CPU s,
#   executions, exec/s over the CPU time, corpus, last cov/ft, findings);
#   --table prints the same as the README's markdown table.
# The ledger, tests/fuzz/campaign.tsv, is tracked: every slice of every
# session is one line (UTC start, machine), so campaigns add up across
# sessions and machines; LEDGER=FILE writes elsewhere.
# Keep what it found: add crashes to tests/fuzz/corpus/NAME/ once fixed, and
# merge the new corpus in (minimised):
#   tests/fuzz/fuzz_NAME -merge=1 tests/fuzz/corpus/NAME tests/fuzz/out/NAME/corpus
set -euo pipefail
cd "$(dirname "$0")/../.."
out=tests/fuzz/out
ledger=${LEDGER:-tests/fuzz/campaign.tsv}
# ledger columns: start (UTC), machine, harness, cpu_s, execs, exec_per_s,
# corpus (inputs the run started from + found), cov, ft, findings
if [ "${1:-}" = --table ]; then # the README's table, from the totals
    "$0" --totals | awk -F'\t' 'NR == 1 { print "| harness | CPU s | CPU-hours | slices | executions | exec / CPU s | corpus | cov / ft | findings |"
                                          print "|---|---|---|---|---|---|---|---|---|"; next }
        { printf "| `%s` | %d | %.2f | %d | %d | %d | %d | %d / %d | %d |\n", $1, $3, $3 / 3600, $2, $4, $5, $6, $7, $8, $9 }'
    exit 0
fi
if [ "${1:-}" = --totals ]; then
    awk -F'\t' 'NR > 1 { h = $3; cpu[h] += $4; ex[h] += $5; corp[h] = $7; cov[h] = $8; ft[h] = $9
                          f[h] += $10; n[h]++; if (!(h in seen)) { seen[h] = 1; order[++k] = h } }
        END { printf "harness\tslices\tcpu_s\texecs\texec_per_cpu_s\tcorpus\tcov\tft\tfindings\n"
              for (i = 1; i <= k; i++) { h = order[i]
                  printf "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", h, n[h], cpu[h], ex[h],
                         cpu[h] ? ex[h] / cpu[h] : 0, corp[h], cov[h], ft[h], f[h] } }' "$ledger"
    exit 0
fi
# CPU seconds the ledger holds for harness $1
cpu_so_far() { awk -F'\t' -v h="$1" 'NR > 1 && $3 == h { c += $4 } END { printf "%d", c }' "$ledger"; }
machine=$(grep -m1 '^model name' /proc/cpuinfo | sed 's/^[^:]*: *//; s/\t/ /g')
machine="${machine:-unknown} ($(nproc) CPUs)"
secs=${1:-3600}
shift || true
all=(safetensors model tokenizer_load tokenizer_encode config protocol state search sequencer store)
names=("${@:-${all[@]}}")
jobs=${JOBS:-1}
mkdir -p "$out"
[ -f "$ledger" ] || printf 'start\tmachine\tharness\tcpu_s\texecs\texec_per_s\tcorpus\tcov\tft\tfindings\n' > "$ledger"

dict_for() {
    case $1 in
    safetensors) echo safetensors ;; model) echo model ;; tokenizer_load) echo tokenizer ;;
    tokenizer_encode) echo text ;; config) echo yaml ;; protocol) echo protocol ;;
    state) echo state ;; search) echo search ;; sequencer) echo sequencer ;; store) echo store ;;
    esac
}

run_one() {
    local h=$1 bin=tests/fuzz/fuzz_$1 d="$out/$1"
    [ -x "$bin" ] || { echo "campaign: $bin not built (./configure --enable-fuzzing && make fuzz)" >&2; return 1; }
    mkdir -p "$d/corpus"
    local start
    start=$(date -u +%Y-%m-%dT%H:%M)
    touch "$d/.start" # findings of this slice: the files newer than it
    # -max_len 65536: tokenizer.json and safetensors seeds are larger than the 4 KiB default
    ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    /usr/bin/time -f '%U %S' -o "$d/time" \
        nice -n "${NICE:-19}" "$bin" -max_total_time="$secs" -print_final_stats=1 -workers=0 \
            -rss_limit_mb=2048 -timeout=10 -max_len=65536 -use_value_profile=1 \
            -dict=tests/fuzz/dict/"$(dict_for "$h")".dict -artifact_prefix="$d/" \
            "$d/corpus" tests/fuzz/corpus/"$h" > "$d/log" 2>&1 || true
    record "$h" "$start"
}

# record NAME START: the ledger line of the run whose log and time are in
# tests/fuzz/out/NAME (also by hand, for a run whose campaign was stopped:
# tests/fuzz/campaign.sh --record NAME START)
record() {
    local h=$1 start=$2 d="$out/$1" cpu execs eps cov ft corp finds
    # the last line: time(1) writes "Command exited with non-zero status N" above it when the fuzzer found something
    cpu=$(tail -n 1 "$d/time" | awk '{printf "%.0f", $1+$2}')
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$d/log" | tail -1 | grep -o '[0-9]*$' || echo 0)
    eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$d/log" | tail -1 | grep -o '[0-9]*$' || echo 0)
    cov=$(grep -o 'cov: [0-9]*' "$d/log" | tail -1 | grep -o '[0-9]*' || echo 0)
    ft=$(grep -o 'ft: [0-9]*' "$d/log" | tail -1 | grep -o '[0-9]*' || echo 0)
    # the corpus libFuzzer held at the end (its last status line), the repo's and the found inputs together
    corp=$(grep -o 'corp: [0-9]*' "$d/log" | tail -1 | grep -o '[0-9]*$' || echo 0)
    local newer=()
    [ -f "$d/.start" ] && newer=(-newer "$d/.start")
    finds=$(find "$d" -maxdepth 1 -type f "${newer[@]}" \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$start" "$machine" "$h" "$cpu" "$execs" "$eps" \
        "$corp" "$cov" "$ft" "$finds" | tee -a "$ledger"
}

if [ "$secs" = --record ]; then # (shifted: $1 is NAME, $2 START)
    record "$1" "$2"
    exit 0
fi

if [ -n "${UNTIL:-}" ]; then
    end=$(date -u -d "$UNTIL" +%s)
    if [ -n "${GOAL:-}" ]; then
        while :; do
            left=$((end - $(date -u +%s)))
            [ "$left" -gt 30 ] || break
            best= bestc=
            for h in "${names[@]}"; do
                [ -x "tests/fuzz/fuzz_$h" ] || continue
                c=$(cpu_so_far "$h")
                [ "$c" -lt "$GOAL" ] || continue
                if [ -z "$best" ] || [ "$c" -lt "$bestc" ]; then best=$h bestc=$c; fi
            done
            [ -n "$best" ] || { echo "campaign: every harness has its $GOAL CPU seconds"; break; }
            s=$secs; [ "$left" -lt "$s" ] && s=$left
            [ $((GOAL - bestc)) -lt "$s" ] && s=$((GOAL - bestc + 5))
            secs=$s run_one "$best" || true
        done
        exit 0
    fi
    while [ "$(date -u +%s)" -lt "$end" ]; do
        for h in "${names[@]}"; do
            left=$((end - $(date -u +%s)))
            [ "$left" -gt 30 ] || break 2
            [ -x "tests/fuzz/fuzz_$h" ] || continue
            s=$secs; [ "$left" -lt "$s" ] && s=$left
            secs=$s run_one "$h" || true
        done
    done
    exit 0
fi

running=0
for h in "${names[@]}"; do
    run_one "$h" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait
