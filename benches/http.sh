#!/usr/bin/env bash
# HTTP benchmark of `limen serve` against the floor (benches/floor) and with the inference log on
# (see benches/httpbench.py for what it measures): builds release (the workspace),
# installs wrk from Debian's packages if missing, and prints a Markdown report.
#
#   benches/http.sh                                  # 16 and 64 connections, 3 rounds × 5 s
#   benches/http.sh --conns 16 --seconds 10 --rounds 5
set -euo pipefail
cd "$(dirname "$0")/.."
benches/wrk/install.sh
cargo build --release --locked -q --workspace
exec python3 benches/httpbench.py "$@"
