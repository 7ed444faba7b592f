#!/usr/bin/env bash
# Tables with text columns and missing cells (issue 26): `limen train` on a 100,000-row table of
# four numbers and three text columns of 20 categories each, 10 % of cells missing
# (scripts/mixed_csv.py), with the default hold-out and 5-fold cross-validation (median of
# several runs); then over HTTP (wrk, as benches/http.sh) that model's /predict of one instance
# (numbers and text) against the Iris model's, one server, interleaved rounds.
# Prints Markdown for BENCHMARKS.md ("Text columns and missing cells").
#
#   benches/mixed.sh [--rows 100000] [--runs 5] [--seconds 5] [--rounds 5] [--conns 16]
#
# Needs python3 (standard library only) and wrk (installed from Debian's packages if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
benches/wrk/install.sh
cargo build --release --locked -q --workspace
exec python3 benches/mixedbench.py "$@"
