#!/bin/bash
# Measures a server's poll cycle (one scan of every model's pointers and switch record) on a
# store of many production models, with a fleet of heartbeats beside it (RELIABILITY.md):
#
#   scripts/many_models.sh /tmp/many 1000       # store folder, number of models
#
# Trains N tiny models (iris, one feature, no CV) into the store, promotes each without waiting
# for a fleet, writes 10 heartbeats of N models (scripts/fleet_heartbeats.py), then runs
# `limen serve` with debug logs for 8 seconds and prints the scans' durations (microseconds).
set -eu
STORE=$1; N=${2:-1000}; L=${LIMEN:-target/release/limen}
mkdir -p "$STORE"
for i in $(seq -f "%04g" 0 $((N - 1))); do
  [ -s "$STORE/model-$i/production" ] && continue
  v=$("$L" --store "$STORE" --log-filter error train --model "model-$i" --cv-folds 0 | tail -1)
  "$L" --store "$STORE" --log-filter error models promote "model-$i" "$v" --no-wait >/dev/null
done
python3 scripts/fleet_heartbeats.py "$STORE" --replicas 10 --models "$N"
"$L" --store "$STORE" --log-filter limen=debug serve --addr 127.0.0.1:0 --poll-interval 1s \
  --heartbeat-interval 2s --watch poll 2>"$STORE.log" >/dev/null &
pid=$!
sleep 8
kill "$pid"; wait "$pid" 2>/dev/null || true
grep 'store scanned' "$STORE.log" | grep -o 'micros=[0-9]*' | cut -d= -f2 | tail -n +2 | sort -n |
  awk '{a[NR]=$1} END {print "scans:", NR, "median_us:", a[int((NR+1)/2)], "max_us:", a[NR]}'
