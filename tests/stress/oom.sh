#!/usr/bin/env bash
# oom.sh -- `coil ingest` under a small address-space limit (ulimit -v) must
# end in a clear error, never a crash (issue 16).  Not part of `make check`.
#
#   tests/stress/oom.sh [MODEL_DIR]
#
# Runs an ingest of a ~16 KiB text under ulimit -v = 16, 32, 48, ... MiB up
# to the first limit under which it succeeds.  Each failing run must exit
# with a status below 128 (no signal: no SIGSEGV, no abort) and print a
# "coil: ..." error line; the database it leaves must pass `coil check`
# (run without the limit).  A run still going after $OOM_TIMEOUT seconds
# (default 120) is killed and reported as a HANG.  Prints one line per limit.
set -uo pipefail
cd "$(dirname "$0")/../.."
model=${1:-examples/model}
coil=./coil
[ -x "$coil" ] || { echo "oom: build coil first (make)" >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/coil-oom-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
python3 -c "
import random; random.seed(1)
w='the river ran past old mills and every stone remembered winter'.split()
open('$tmp/doc.txt','w').write(' '.join(random.choice(w) for _ in range(3000)))"
bad=0
for mib in 16 32 48 64 96 128 192 256 384 512 768 1024; do
    rm -f "$tmp/db"*
    ( ulimit -v $((mib * 1024)); OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
      exec timeout -s KILL "${OOM_TIMEOUT:-120}" "$coil" ingest --model "$model" --db "$tmp/db" --name doc --file "$tmp/doc.txt" --threads 1 --quiet ) \
        > "$tmp/out" 2>&1
    rc=$?
    msg=$(grep -m1 -i 'coil' "$tmp/out" | cut -c1-150)
    if [ "$rc" -eq 137 ]; then
        echo "ulimit -v ${mib} MiB: HANG (killed after ${OOM_TIMEOUT:-120} s): $(tail -1 "$tmp/out")"
        bad=1
    elif [ "$rc" -eq 0 ]; then
        echo "ulimit -v ${mib} MiB: ingest succeeded"
        break
    elif [ "$rc" -ge 128 ]; then
        echo "ulimit -v ${mib} MiB: CRASH (status $rc): $(tail -2 "$tmp/out" | tr '\n' ' ')"
        bad=1
    elif [ -z "$msg" ]; then
        echo "ulimit -v ${mib} MiB: status $rc without an error message"
        bad=1
    else
        echo "ulimit -v ${mib} MiB: status $rc: $msg"
        if [ -e "$tmp/db" ] && ! "$coil" check --model "$model" --db "$tmp/db" > "$tmp/check" 2>&1; then
            echo "  ... and the database fails coil check: $(tail -1 "$tmp/check")"
            bad=1
        fi
    fi
done
exit $bad
