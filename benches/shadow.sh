#!/usr/bin/env bash
# The cost of shadow scoring on /predict (see benches/shadowbench.py): builds release, installs
# wrk from Debian's packages if missing, and prints a Markdown table.
#
#   benches/shadow.sh                                 # 16 connections, 3 rounds × 5 s
#   benches/shadow.sh --conns 64 --rounds 5
set -euo pipefail
cd "$(dirname "$0")/.."
benches/wrk/install.sh
cargo build --release --locked -q
exec python3 benches/shadowbench.py "$@"
