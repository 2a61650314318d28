#!/bin/sh
# families.sh -- runs the ingest (crash resume under SIGKILL, sessions, fork,
# wrong model) and CLI (ingest, sessions, score, export/import) tests once
# more per model family beyond Mamba-1 (falcon_mamba, mamba2, rwkv), on a small random model of that family
# (COIL_TEST_FAMILY makes tests/testutil.c write its config.json).  Run by make check.
set -u
B=${COIL_BUILDDIR:-.}
rc=0
for fam in falcon_mamba mamba2 rwkv; do
    # (test_service also passes with COIL_TEST_FAMILY set, run alone; beside
    # the test_service make check runs at the same time its max_clients case
    # is timing-sensitive, so it is not repeated here)
    for t in test_ingest test_cli; do
        if COIL_TEST_FAMILY=$fam "$B/tests/$t" >"$B/tests/families.$fam.$t.log" 2>&1; then
            echo "PASS: $t with COIL_TEST_FAMILY=$fam"
        else
            echo "FAIL: $t with COIL_TEST_FAMILY=$fam (log: tests/families.$fam.$t.log)"
            tail -20 "$B/tests/families.$fam.$t.log"
            rc=1
        fi
    done
done
exit $rc
