#!/usr/bin/env bash
# examples/demo.sh -- coil end to end, in one command, on a fresh Debian 12.
#
# Installs the build dependencies (apt-get, via .ci/deps), builds coil, starts
# coild with two workers on the bundled model (examples/model, a small Mamba
# trained on Shakespeare), ingests a sample document (Hamlet, Act I) over
# ZeroMQ, then resumes a session from the saved state and continues the scene
# -- printing each step.  Everything listens on 127.0.0.1 only and is stopped at
# the end; the database lives in a temp dir (kept with --keep).
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0; [ "${1:-}" = --keep ] && keep=1

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "dependencies"
bash .ci/deps
step "build"
if [ ! -x ./coild ] || [ ! -x ./examples/client ]; then
    [ -x ./configure ] || autoreconf -fi >/dev/null
    [ -f Makefile ] || ./configure --quiet
    make -j"$(nproc)" >/dev/null
fi
echo "built: ./coil ./coild ./workers/coil-worker ./examples/client"

work=$(mktemp -d /tmp/coil-demo-XXXXXX)
# free ports chosen by coild itself (tcp://127.0.0.1:*), reported in its ready file
cat > "$work/coild.yaml" <<YAML
endpoints:
  clients: tcp://127.0.0.1:*
  events: tcp://127.0.0.1:*
database: $work/coil.db
model: $PWD/examples/model
workers: 2
chunk_tokens: 256
checkpoint:
  interval_tokens: 2048
YAML
step "start coild (2 workers, model examples/model) on 127.0.0.1"
./coild --config "$work/coild.yaml" --ready-file "$work/ready.json" 2> "$work/coild.log" &
coild=$!
cleanup() {
    kill -TERM "$coild" 2>/dev/null || true
    wait "$coild" 2>/dev/null || true
    if [ "$keep" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
# the ready file appears once every socket is bound and both workers are up
for _ in $(seq 1 300); do
    [ -s "$work/ready.json" ] && break
    kill -0 "$coild" 2>/dev/null || { cat "$work/coild.log"; exit 1; }
    sleep 0.1
done
[ -s "$work/ready.json" ] || { echo "coild did not become ready"; cat "$work/coild.log"; exit 1; }
ep() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/ready.json" "$1"; }
clients=$(ep clients); events=$(ep events)
echo "coild: requests on $clients, events on $events"
C="./coil --connect $clients"
./coil info | sed -n '1p;3,5p;15,17p;19,20p'

step "ingest examples/sample.txt (Hamlet, Act I) with the C client, search it, continue from a prompt"
./examples/client --server "$clients" --events "$events" \
    --name hamlet --file examples/sample.txt --query "ghost" \
    --question $'\n\nHORATIO.\n' -n 60 --seed 7

step "the document and its checkpoints"
$C docs

step "resume a session from the saved state and continue the scene"
sid=$($C session new --doc hamlet)
echo "session $sid starts at the end of the document, from its checkpoint"
$C session append "$sid" --text $'\n\nHAMLET.\nWhat says the ghost of my father?\n\nHORATIO.\n' --quiet
$C generate --session "$sid" -n 60 --temperature 0.7 --seed 3

step "in-context recall from a saved state: a phrase the document mentions four times"
# the two documents of test_bundled_model's in-context test: eight speeches of Act I in which
# Hamlet says "I dream'd of the quicksilver orchard of Zembla." four times (or, in the
# control, "I dream'd of the old garden by the sea."), ending "HAMLET. Again I dream'd of"
python3 - "$work" <<'PY'
import json, sys
docs = json.load(open("tests/data/bundled_model_incontext.json"))["documents"]
for name in ("with", "control"):
    open(f"{sys.argv[1]}/{name}.txt", "w").write(docs[name]["text"])
PY
$C ingest --name dream --file "$work/with.txt" --quiet
$C ingest --name control --file "$work/control.txt" --quiet
for d in dream control; do
    $C score --doc "$d" --text " the quicksilver orchard of Zembla" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["logprob"])' > "$work/lp.$d"
    printf '  after document %-8s log p(" the quicksilver orchard of Zembla") = %.2f nats\n' "$d" "$(cat "$work/lp.$d")"
done
python3 -c 'import math,sys; m = float(sys.argv[1]) - float(sys.argv[2]); print("  the stored state makes the phrase %.1f nats (%.0fx) more likely" % (m, math.exp(m)))' \
    "$(cat "$work/lp.dream")" "$(cat "$work/lp.control")"

step "ask the document a question whose answer is on its first page: the end state vs re-reading"
# the list of persons says "Horatio, Friend to Hamlet."; score that answer after the
# document's end state, then after re-reading the one passage the search finds
q=$'Who is Horatio, the friend?\nHoratio,'
for s in state reread; do
    $C ask --doc hamlet "$q" --answer " Friend to Hamlet." --strategy "$s" --evidence 1 > "$work/ask.$s"
    printf '  %-7s log p(" Friend to Hamlet.") = %s nats\n' "$s" "$(sed -n 's/^answer logprob: //p' "$work/ask.$s")"
done
echo "  the evidence re-read:"
grep -A1 '^evidence' "$work/ask.reread" | sed 's/^/    /'
echo "  and the model's own answer after re-reading:"
$C ask --doc hamlet "$q" --strategy reread --evidence 1 -n 8 | head -1 | sed 's/^/    /'

step "fork the session and take another turn; the parent is unchanged"
kid=$($C session fork "$sid")
$C session append "$kid" --text $'\n\nMARCELLUS.\n' --quiet
$C generate --session "$kid" -n 40 --temperature 0.7 --seed 4
echo "parent $sid, child $kid"
step "done"
