#!/bin/sh
# bench_vs_llamacpp.sh -- coil against llama.cpp on the same weights, same threads.
#
#   LLAMA_CPP_DIR=/path/to/llama.cpp tests/bench/bench_vs_llamacpp.sh [REPS]
#
# Makes a random-weights model of the exact mamba-130m shape (d_model 768, 24
# layers, d_state 16, expand 2, conv 4, dt_rank 48, vocab 50280; Hugging Face
# layout, tests/tools/mkmodel) in each of DTYPES, converts it with llama.cpp's
# own convert_hf_to_gguf.py, then runs, in turn (coil, llama.cpp, coil, ...,
# REPS pairs, default 3; the machine may be shared and its speed drifts):
#   coil:      tests/bench/bench_engine --tokens 512 --decode 128 --no-ceilings
#   llama.cpp: llama-bench -p 512 -n 128 -r 1
# (NPROMPT and NGEN change 512 and 128)
# for each thread count in THREADS, and prints each run's prefill (512 tokens,
# one chunk / one batch) and decode (128 tokens, one at a time, next-token
# logits each step) tok/s, the medians and coil / llama.cpp per pair.
#
# Needs: LLAMA_CPP_DIR with build/bin/llama-bench built (cmake -B build
# -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release && cmake --build
# build --target llama-bench) and python3 with torch, numpy, sentencepiece and safetensors
# (the converter's imports, and safetensors; gguf-py is taken from the llama.cpp tree).  Without
# them: SKIP (exit 77).  Environment: DTYPES (default "F32 F16 BF16"), THREADS
# (default "1 2"), WORK (models, default /tmp/coil-vs-llamacpp; kept between
# runs), COIL_BUILDDIR (default .), COIL_ARGS (extra bench_engine options),
# NPROMPT (default 512), NGEN (default 128).
set -u
REPS=${1:-3}
B=${COIL_BUILDDIR:-.}
DTYPES=${DTYPES:-"F32 F16 BF16"}
THREADS=${THREADS:-"1 2"}
WORK=${WORK:-/tmp/coil-vs-llamacpp}
NPROMPT=${NPROMPT:-512}
NGEN=${NGEN:-128}
HERE=$(cd "$(dirname "$0")" && pwd)

skip() { echo "SKIP: $*"; exit 77; }
[ -n "${LLAMA_CPP_DIR:-}" ] || skip "LLAMA_CPP_DIR is not set (a llama.cpp source tree with build/bin/llama-bench)"
LB=$LLAMA_CPP_DIR/build/bin/llama-bench
[ -x "$LB" ] || skip "$LB is not built"
[ -f "$LLAMA_CPP_DIR/convert_hf_to_gguf.py" ] || skip "$LLAMA_CPP_DIR/convert_hf_to_gguf.py is missing"
python3 -c 'import torch, numpy, sentencepiece, safetensors' 2>/dev/null || skip "python3 lacks torch, numpy, sentencepiece or safetensors"
[ -x "$B/tests/bench/bench_engine" ] && [ -x "$B/tests/tools/mkmodel" ] ||
    { echo "bench_vs_llamacpp: build coil first (make; $B/tests/bench/bench_engine)" >&2; exit 1; }
mkdir -p "$WORK" || exit 1

for d in $DTYPES; do
    m=$WORK/m130-$d
    if [ ! -f "$m/model.safetensors" ]; then
        "$B/tests/tools/mkmodel" "$m" --d-model 768 --layers 24 --vocab 50280 --dtype "$d" || exit 1
    fi
    if [ ! -f "$m.gguf" ]; then
        t=$(echo "$d" | tr 'A-Z' 'a-z')
        python3 "$HERE/llamacpp_convert.py" "$LLAMA_CPP_DIR" "$m" "$t" "$m.gguf.tmp" >"$WORK/convert-$d.log" 2>&1 ||
            { echo "bench_vs_llamacpp: conversion failed, see $WORK/convert-$d.log" >&2; exit 1; }
        mv "$m.gguf.tmp" "$m.gguf"
    fi
done

grep -m1 'model name' /proc/cpuinfo | sed 's/.*: /cpu: /'
echo "cores: $(nproc); llama.cpp $(git -C "$LLAMA_CPP_DIR" log -1 --format='%h %cs' 2>/dev/null || echo '(no git)')"

median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# avg_ts of llama-bench's CSV row whose column $1 is $2 (columns found by name)
lb_col() {
    awk -v key="$1" -v want="$2" '
        NR == 1 {n = split($0, h, ","); for (i = 1; i <= n; i++) {gsub(/"/, "", h[i]); c[h[i]] = i}; next}
        {sub(/^"/, ""); sub(/"$/, ""); split($0, v, "\",\"")} # values are quoted: "a","b,c",...
        (key in c) && ("avg_ts" in c) && v[c[key]] == want {print v[c["avg_ts"]]}'
}

R=$WORK/runs.$$
for d in $DTYPES; do
    for t in $THREADS; do
        : >"$R"
        i=0
        while [ "$i" -lt "$REPS" ]; do
            i=$((i + 1))
            o=$("$B/tests/bench/bench_engine" --model "$WORK/m130-$d" --dtype "$d" --threads "$t" --tokens "$NPROMPT" \
                --decode "$NGEN" --no-ceilings ${COIL_ARGS:-} 2>&1) || { echo "$o" >&2; exit 1; }
            [ -n "${shown:-}" ] || { echo "$o" | grep -E '^(cpu|cpu features|kernel set|matrix library):'; shown=1; }
            cp=$(echo "$o" | awk '/^prefill chunk  512:/ {print $4}') # one chunk when NPROMPT <= 512
            cd_=$(echo "$o" | awk '/^decode:/ {print $2}')
            l=$("$LB" -m "$WORK/m130-$d.gguf" -p "$NPROMPT" -n "$NGEN" -t "$t" -r 1 -o csv 2>/dev/null) || { echo "llama-bench failed" >&2; exit 1; }
            lp=$(echo "$l" | lb_col n_prompt "$NPROMPT")
            ld=$(echo "$l" | lb_col n_gen "$NGEN")
            [ -n "$cp" ] && [ -n "$cd_" ] && [ -n "$lp" ] && [ -n "$ld" ] ||
                { echo "bench_vs_llamacpp: a figure is missing (coil: '$cp' '$cd_', llama.cpp: '$lp' '$ld')" >&2; exit 1; }
            echo "$cp $lp $cd_ $ld" >>"$R"
            printf '%-5s threads %s run %s: prefill coil %8.1f llama.cpp %8.1f | decode coil %6.1f llama.cpp %6.1f tok/s\n' \
                "$d" "$t" "$i" "$cp" "$lp" "$cd_" "$ld"
        done
        printf '%-5s threads %s MEDIAN: prefill coil %s llama.cpp %s (ratio per pair %s) | decode coil %s llama.cpp %s (ratio per pair %s)\n' \
            "$d" "$t" "$(awk '{print $1}' "$R" | median)" "$(awk '{print $2}' "$R" | median)" \
            "$(awk '{printf "%.3f\n", $1 / $2}' "$R" | median)" "$(awk '{print $3}' "$R" | median)" \
            "$(awk '{print $4}' "$R" | median)" "$(awk '{printf "%.3f\n", $3 / $4}' "$R" | median)"
    done
done
rm -f "$R"
