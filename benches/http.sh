#!/usr/bin/env bash
# HTTP benchmark of `limen serve` against the floor (benches/floor) and with the inference log on
# (see benches/httpbench.py for what it measures): builds release (the workspace),
# installs wrk from Debian's packages if missing, and prints a Markdown report.
#
#   benches/http.sh                                  # 16 and 64 connections, 3 rounds × 5 s
#   benches/http.sh --conns 16 --seconds 10 --rounds 5
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -qq wrk >/dev/null 2>&1 \
    || { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq wrk >/dev/null; }
fi
cargo build --release --locked -q --workspace
exec python3 benches/httpbench.py "$@"
