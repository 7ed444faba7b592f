#!/usr/bin/env bash
# Memory under load (issue 23's bounds): builds release and runs benches/memory.py, which loads
# `limen serve` with the largest accepted batches on /predict, /explain and /v2 infer, the
# inference log and shadow at rate 1, under each --memory-budget, and prints a Markdown report.
#
#   benches/memory.sh                                   # 96 MiB and 512 MiB, 16 connections, 60 s
#   benches/memory.sh --budget 96MiB --seconds 20
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q --workspace
exec python3 benches/memory.py "$@"
