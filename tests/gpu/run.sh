#!/usr/bin/env bash
# tests/gpu/run.sh -- the one device check of coil's CUDA backend (issue 17).
#
# Run from the root of a tree built with ./configure --with-cuda (sm_90 +
# compute_90 PTX), on a machine with a GPU (written for one H200), in under
# 8 minutes:
#   1. the machine (nvidia-smi), and whether the prebuilt binaries run here;
#      if not, it rebuilds here (autoreconf, configure --with-cuda, make);
#   2. parity: tests/test_cuda (every kernel vs the CPU backend; F32 / TF32 /
#      BF16 products; the device-resident forward vs the CPU engine and the
#      golden logits: F32 rel L2 < 1e-4, BF16 < 2e-2, chunk invariance, a GPU
#      state resumed on the CPU and a CPU state on the GPU, a batch of
#      documents == each alone) and tests/test_cuda_plan;
#   3. compute-sanitizer memcheck and racecheck on the kernel tests (small);
#   4. benchmarks of the 130m, 1.4b and 2.8b shapes (random weights) ingesting
#      1M tokens: tok/s, ms per step, device memory, next to the roofline
#      measured in the same run (GEMM rate, copy bandwidth) and the scan's
#      share of the copy bandwidth, and next to transformers' MambaForCausalLM
#      on the same weights when torch with CUDA is installed;
#   5. a short table last (also $OUT/summary.txt); every log in $OUT.
# Prepared where it is built (nvcc, no GPU needed):
#   ./configure --with-cuda && make && make tests/test_cuda tests/test_cuda_plan
# then on the GPU machine, from the tree's root, with those binaries carried:
#   bash tests/gpu/run.sh      (carry: tests/test_cuda tests/test_cuda_plan tests/bench/bench_cuda coil)
# Exit status: 0 when every check passed, 1 otherwise.  Environment: OUT
# (default ./gpu-out), COIL_GPU_TOKENS (default 1048576), COIL_GPU_BUDGET
# (seconds, default 450), COIL_GPU_JOBS (make -j, default nproc).
set -u

OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
TOKENS=${COIL_GPU_TOKENS:-1048576}
BUDGET=${COIL_GPU_BUDGET:-450}
JOBS=${COIL_GPU_JOBS:-$(nproc)}
MODELS=${TMPDIR:-/tmp}/coil-gpu-models
START=$(date +%s)
LOG=$OUT/run.log
SUMMARY=$OUT/summary.txt
FAILED=0
: > "$LOG"
: > "$SUMMARY"
export COIL_TEST_DATA=$PWD/tests/data CK_DEFAULT_TIMEOUT=300

say() { printf '%s\n' "$*" | tee -a "$LOG"; }
elapsed() { echo $(($(date +%s) - START)); }
left() { echo $((BUDGET - $(elapsed))); }
# row NAME STATUS DETAIL: one line of the final table
row() {
    printf '%-28s %-6s %s\n' "$1" "$2" "$3" >> "$SUMMARY"
    say "[$(elapsed)s] $1: $2 $3"
    if [ "$2" = FAIL ]; then FAILED=1; fi
}
# run NAME LIMIT CMD...: runs CMD with a time limit, its output in $OUT/NAME.log
run() {
    local name=$1 limit=$2 rc
    shift 2
    if [ "$(left)" -lt 20 ]; then
        say "skipping $name: the time budget is spent"
        return 124
    fi
    if [ "$limit" -gt "$(left)" ]; then limit=$(left); fi
    say "[$(elapsed)s] $name: $* (limit ${limit}s)"
    timeout -k 5 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    say "[$(elapsed)s] $name: exit $rc"
    return $rc
}

# ---- 1. the machine, the binaries --------------------------------------------
run nvidia-smi 20 nvidia-smi || true
run nvidia-smi-query 20 nvidia-smi --query-gpu=name,compute_cap,memory.total,clocks.max.sm,clocks.max.mem \
    --format=csv || true

binaries_run() {
    [ -x tests/test_cuda ] && [ -x tests/test_cuda_plan ] && [ -x tests/bench/bench_cuda ] || return 1
    tests/test_cuda_plan > "$OUT/probe-plan.log" 2>&1 || return 1
    # 0 = passed; 77 = no device seen; 1 = ran, some check failed (reported
    # below); 126/127 or a signal = the binary cannot run here
    tests/bench/bench_cuda > "$OUT/probe-bench.log" 2>&1
    [ $? -eq 2 ] || return 1 # its usage message: the binary and its libraries load
    return 0
}

if binaries_run; then
    row "prebuilt binaries" ok "run here"
else
    say "the prebuilt binaries do not run here (see $OUT/probe-*.log): rebuilding"
    ok=1
    if [ ! -f Makefile ]; then
        run autoreconf 120 autoreconf -fi || ok=0
        if [ $ok = 1 ]; then run configure 120 ./configure --with-cuda || ok=0; fi
    fi
    if [ $ok = 1 ]; then
        run make 240 make -j"$JOBS" coil tests/test_cuda tests/test_cuda_plan tests/bench/bench_cuda || ok=0
    fi
    if [ $ok = 1 ] && binaries_run; then
        row "prebuilt binaries" ok "rebuilt here"
    else
        row "prebuilt binaries" FAIL "do not run and the rebuild failed (see $OUT/make.log, configure.log)"
        cat "$SUMMARY"
        exit 1
    fi
fi

# The benchmark models (random weights, BF16: 0.26, 2.7 and 5.5 GB) are
# written in the background, one core each, while the checks below run.
mkdir -p "$MODELS"
declare -A WPID
for shape in 130m 1.4b 2.8b; do
    if [ ! -f "$MODELS/$shape/config.json" ]; then
        rm -rf "${MODELS:?}/$shape"
        tests/bench/bench_cuda --write-model "$MODELS/$shape" --shape "$shape" --dtype BF16 \
            > "$OUT/write-$shape.log" 2>&1 &
        WPID[$shape]=$!
    fi
done
# shellcheck disable=SC2317 # called by the trap
stop_writers() {
    local p
    for p in "${WPID[@]}"; do kill "$p" 2> /dev/null; done
}
trap stop_writers EXIT
say "[$(elapsed)s] writing the benchmark models in $MODELS (pids ${WPID[*]})"

# ---- 2. parity -------------------------------------------------------------------
if run test_cuda_plan 30 tests/test_cuda_plan; then row "plan (host)" ok ""; else row "plan (host)" FAIL "$OUT/test_cuda_plan.log"; fi
run test_cuda 180 tests/test_cuda
rc=$?
if [ $rc -eq 0 ]; then
    row "parity (test_cuda)" ok "$(grep -m1 -o '[0-9]*%: Checks: [0-9]*.*' "$OUT/test_cuda.log")"
elif [ $rc -eq 77 ]; then
    row "parity (test_cuda)" FAIL "no GPU seen: $(head -1 "$OUT/test_cuda.log")"
else
    row "parity (test_cuda)" FAIL "exit $rc; $(grep -c ':F:\|:E:' "$OUT/test_cuda.log") failing checks, first: $(grep -m1 ':F:\|:E:' "$OUT/test_cuda.log")"
fi

# ---- 3. compute-sanitizer on the kernel tests -------------------------------------------
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$SAN" ]; then
    for tool in memcheck racecheck; do
        run "sanitizer-$tool" 120 env CK_RUN_CASE=kernels "$SAN" --tool "$tool" --report-api-errors no \
            --error-exitcode 9 tests/test_cuda
        rc=$?
        summary=$(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer-$tool.log")
        if [ $rc -eq 0 ]; then row "compute-sanitizer $tool" ok "$summary"; else row "compute-sanitizer $tool" FAIL "exit $rc $summary"; fi
    done
else
    row "compute-sanitizer" FAIL "not found"
fi

# ---- 4. benchmarks -------------------------------------------------------------------------
kv() { # kv KEY FILE: the value of KEY=... in the last line of FILE
    tail -1 "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | tr -d '"'
}
printf '%-6s %-5s %10s %9s %8s %12s %6s %8s %12s\n' shape math tok/s ms/step GiB roofline of_roof scan/bw HF_tok/s \
    > "$OUT/bench.txt"
bench() { # bench SHAPE MATH
    local shape=$1 math=$2 dir=$MODELS/$1 b=bench-$1-$2 h=hf-$1
    # wait for its writer (config.json is written last)
    local pid=${WPID[$shape]:-}
    while [ ! -f "$dir/config.json" ] && [ -n "$pid" ] && kill -0 "$pid" 2> /dev/null && [ "$(left)" -gt 30 ]; do
        sleep 1
    done
    if [ ! -f "$dir/config.json" ]; then
        row "bench $shape $math" FAIL "the model was not written in time (see $OUT/write-$shape.log)"
        return
    fi
    if ! run "$b" 120 tests/bench/bench_cuda --model "$dir" --tokens "$TOKENS" --chunk 2048 --math "$math"; then
        row "bench $shape $math" FAIL "$(tail -1 "$OUT/$b.log")"
        return
    fi
    local hf=-
    if [ ! -f "$OUT/$h.log" ] && [ "$(left)" -gt 60 ]; then
        run "$h" 60 python3 tests/gpu/bench_hf.py "$dir" --chunk 2048 --reps 1 || true
    fi
    if [ -f "$OUT/$h.log" ] && grep -q '^hf=ok' "$OUT/$h.log"; then hf=$(kv tok_per_s "$OUT/$h.log"); fi
    local tps ms mib roof of scan
    tps=$(kv tok_per_s "$OUT/$b.log")
    ms=$(kv ms_per_step "$OUT/$b.log")
    mib=$(kv device_mib "$OUT/$b.log")
    roof=$(kv roofline_tok_per_s "$OUT/$b.log")
    of=$(kv of_roofline "$OUT/$b.log")
    scan=$(kv scan_of_copy "$OUT/$b.log")
    printf '%-6s %-5s %10s %9s %8s %12s %6s %8s %12s\n' "$shape" "$math" "$tps" "$ms" \
        "$(awk -v m="$mib" 'BEGIN { printf "%.1f", m / 1024 }')" "$roof" "$of" "$scan" "$hf" >> "$OUT/bench.txt"
    row "bench $shape $math" ok "$tps tok/s ($(kv seconds "$OUT/$b.log") s for $TOKENS tokens)"
}
bench 130m f32
bench 130m bf16
bench 1.4b bf16
bench 2.8b bf16

# the issue's goals
goal() { # goal NAME SHAPE COLUMN MINIMUM: met when some row of SHAPE has COLUMN > MINIMUM
    if awk -v s="$2" -v c="$3" -v min="$4" '$1 == s && $c + 0 > min { f = 1 } END { exit !f }' "$OUT/bench.txt"; then
        row "goal: $1" ok ""
    else
        row "goal: $1" miss ""
    fi
}
goal "130m: 1M tokens in < 2 s" 130m 3 524288
goal "130m: scan > 60% of copy bw" 130m 8 0.6
goal "2.8b: > 100k tok/s" 2.8b 3 100000

# ---- 5. the table --------------------------------------------------------------------------
{
    echo
    echo "coil CUDA backend, $(head -2 "$OUT/nvidia-smi-query.log" 2>/dev/null | tail -1), $(elapsed) s"
    cat "$OUT/bench.txt"
    echo "(tok/s: $TOKENS tokens ingested, LM head skipped, steps of 2048; roofline: min(GEMM rate / FLOPs"
    echo " per token, copy bandwidth / bytes per step), both measured in this run; HF: MambaForCausalLM"
    echo " forward of 2048 tokens, same weights, bf16)"
} >> "$SUMMARY"
cat "$SUMMARY"
exit $FAILED
