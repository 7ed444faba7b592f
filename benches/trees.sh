#!/usr/bin/env bash
# Tree models side by side, in one run: limen (in process, one thread) against XGBoost's
# inplace_predict, LightGBM's predict (one thread each) and lleaves (LightGBM compiled by LLVM),
# on a 500-tree depth-6 binary model and a 100-round three-class model, batches of 1 and 10,000
# rows; then the 500-tree model's HTTP /predict against the Iris model's (wrk, interleaved).
# Prints a Markdown table for BENCHMARKS.md ("Tree models").
#
#   benches/trees.sh [--seconds 2] [--rounds 3] [--http-seconds 5] [--conns 16]
#
# Needs python3 (a venv of benches/trees-requirements.txt is made under target/, once) and wrk
# (installed from Debian's packages if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench-trees-venv
stamp="$venv/.requirements.sha256"
want=$(sha256sum benches/trees-requirements.txt | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r benches/trees-requirements.txt
  echo "$want" > "$stamp"
fi
benches/wrk/install.sh
cargo build --release --locked -q
bench=$(cargo bench --locked -q --bench trees --no-run --message-format=json 2>/dev/null |
  "$venv/bin/python" -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "trees" and m.get("executable"):
        print(m["executable"])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" benches/treebench.py target/release/limen "$bench" "$work" "$@"
