#!/bin/sh
# families.sh -- runs the ingest (crash resume under SIGKILL, sessions, fork,
# wrong model), CLI (ingest, sessions, score, export/import), ask (reread,
# select, sessions, errors: all but the bundled model's own figures) and
# service tests (over coild: ingest, search, sessions, score, ask, export/import
# = case e2e; workers killed and SIGTERMed mid-ingest = kill; max_clients) once
# more per model family beyond Mamba-1 (falcon_mamba, mamba2, rwkv), on a small
# random model of that family (COIL_TEST_FAMILY makes tests/testutil.c write
# its config.json).  `families.sh FAMILY...` runs only those; make check runs
# each family as its own test (tests/families_FAMILY.sh), so that make -j
# runs them side by side from the start instead of one after the other last.
set -u
B=${COIL_BUILDDIR:-.}
rc=0
fams=${*:-falcon_mamba mamba2 rwkv}
for fam in $fams; do
    case $fam in falcon_mamba | mamba2 | rwkv) ;; *) echo "families.sh: no family $fam" >&2; exit 99 ;; esac
    for run in test_ingest test_cli test_ask test_service:e2e test_service:kill test_service:max_clients; do
        t=${run%%:*}
        case $run in
        *:*) c=${run#*:}; log="$B/tests/families.$fam.$t.$c.log"; set -- env "CK_RUN_CASE=$c" ;;
        *) log="$B/tests/families.$fam.$t.log"; set -- env ;;
        esac
        if COIL_TEST_FAMILY=$fam "$@" "$B/tests/$t" >"$log" 2>&1; then
            echo "PASS: $run with COIL_TEST_FAMILY=$fam"
        else
            echo "FAIL: $run with COIL_TEST_FAMILY=$fam (log: ${log#$B/})"
            tail -20 "$log"
            rc=1
        fi
    done
done
exit $rc
