#!/usr/bin/env bash
# Installs wrk from Debian's packages when it is missing (the HTTP benchmarks need it).
set -euo pipefail
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -qq wrk >/dev/null 2>&1 \
    || { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq wrk >/dev/null; }
fi
