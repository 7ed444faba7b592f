#!/usr/bin/env bash
# The cost of shadow scoring on /predict (see benches/shadowbench.py): builds release, installs
# wrk from Debian's packages if missing, and prints a Markdown table.
#
#   benches/shadow.sh                                 # 16 connections, 3 rounds × 5 s
#   benches/shadow.sh --conns 64 --rounds 5
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -qq wrk >/dev/null 2>&1 \
    || { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq wrk >/dev/null; }
fi
cargo build --release --locked -q
exec python3 benches/shadowbench.py "$@"
