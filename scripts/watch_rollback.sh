#!/bin/bash
# How long after `limen watch` decides to roll back does a server answer with the old version
# again? One server polling only (as on NFS, where inotify sees nothing), 1 s poll and
# heartbeats; the new version fails 10 of 160 requests, the watch trips its error share.
#
#   scripts/watch_rollback.sh [rounds]      # prints the lag of each round, in ms
set -eu
L=${LIMEN:-target/release/limen}; ROUNDS=${1:-5}
S=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$S"' EXIT
limen() { "$L" --store "$S/m" --log-filter error "$@"; }
v1=$(limen train --data data/iris.csv --cv-folds 0 | tail -1)
limen validate --data data/iris.csv >/dev/null
limen serve --addr 127.0.0.1:0 --watch poll --poll-interval 1s --heartbeat-interval 1s \
  --instance pod >"$S/serve.out" &
until grep -q 'listening on' "$S/serve.out" 2>/dev/null; do sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$S/serve.out" | head -1)
batch=$(awk -F, 'NR>1 {printf "%s{\"petal_width\": %s}", (n++ ? "," : ""), $4}' data/iris.csv)
beat() { tr -d ' \n' <"$S/m/.fleet/pod.json" 2>/dev/null; }
serving_since() { beat | grep -o '"serving":[0-9]*\|"serving_since_ms":[0-9]*' | paste -sd' '; }
for round in $(seq "$ROUNDS"); do
  v2=$(limen train --data data/iris.csv --cv-folds 0 | tail -1)
  limen validate --data data/iris.csv >/dev/null
  until serving_since | grep -q "\"serving\":$v2 "; do sleep 0.1; done
  curl -s -o /dev/null -d "{\"instances\": [$batch]}" "$url/predict"
  for _ in $(seq 10); do curl -s -o /dev/null -d '{"petal_width": "wide"}' "$url/predict"; done
  until beat | grep -q '"errors":10'; do sleep 0.1; done
  limen watch iris --for 30s --every 200ms --min-samples 100 >/dev/null && { echo "did not trip"; exit 1; }
  decided=$(tail -1 "$S/m/iris/history.jsonl" | grep -o '"at":"[^"]*"' | cut -d'"' -f4)
  until serving_since | grep -q "\"serving\":$v1 "; do sleep 0.05; done
  since=$(serving_since | grep -o 'since_ms":[0-9]*' | cut -d: -f2)
  echo "round $round: rolled back at $decided, served again after $(( since - $(date -d "$decided" +%s%3N) )) ms"
done
