#!/bin/sh
# kernel_sets.sh -- runs the kernel test and test_engine's golden parity under
# every kernel set this CPU has (COIL_KERNELS=portable|avx2|avx512); a set the
# CPU lacks is named as skipped.  Run by make check.
set -u
B=${COIL_BUILDDIR:-.}
sets=$("$B/tests/test_kernels" --available) || exit 1
rc=0
for k in portable avx2 avx512; do
    case " $(echo $sets) " in
    *" $k "*) ;;
    *) echo "SKIP: kernel set $k: this CPU or build lacks it"; continue ;;
    esac
    for t in test_kernels test_engine; do
        if COIL_KERNELS=$k "$B/tests/$t" >"$B/tests/kernel_sets.$k.$t.log" 2>&1; then
            echo "PASS: $t with COIL_KERNELS=$k"
        else
            echo "FAIL: $t with COIL_KERNELS=$k (log: tests/kernel_sets.$k.$t.log)"
            tail -20 "$B/tests/kernel_sets.$k.$t.log"
            rc=1
        fi
    done
done
exit $rc
