#!/bin/bash
# Runs inside the nfs-vm guest (../shared/tools/nfs-vm): two `limen serve` replicas on two NFSv4.1
# clients of one export (/mnt/a, /mnt/b), 1 s poll, promoted back and forth PROMOTIONS times by
# `limen models promote` on client B, with curl hammering both replicas throughout. Prints the
# difference between the replicas' switch times (each from its own log, one guest clock) and
# checks that no replica answers the old version after the new one, and that no request fails.
#
#   ../shared/tools/nfs-vm/nfs-vm-check.sh -t 900 scripts/nfs_switch_skew.sh \
#       target/release/limen data/iris.csv                       # MODE=wait (switch together)
#   … -e MODE=no-wait …                                          # the old behaviour, for contrast
set -u
L=/work-in/limen; D=/work-in/iris.csv; N=${PROMOTIONS:-20}; MODE=${MODE:-wait}
O=/tmp/skew; rm -rf "$O"; mkdir -p "$O"
limen() { "$L" --store "$B/models" "$@"; }
fail() { echo "FAIL: $*"; touch "$O/stop"; kill $(jobs -p) 2>/dev/null; exit 1; }
echo "start ($(date +%T))"

v1=$(limen train --data "$D" --cv-folds 0 2>/dev/null | tail -1)
limen models promote iris "$v1" --no-wait >/dev/null 2>&1 || fail "first promotion"
v2=$(limen train --data "$D" --cv-folds 0 --alpha 30 2>/dev/null | tail -1)
[ -n "$v1" ] && [ -n "$v2" ] || fail "training on B"

serve() { # name mount port
  "$L" --store "$2/models" --log-format json serve --addr "127.0.0.1:$3" --poll-interval 1s \
    --heartbeat-interval 1s --instance "$1" >"$O/$1.log" 2>&1 &
}
serve a "$A" 8081; sa=$!; serve b "$B" 8082; sb=$!
echo "trained $v1 and $v2 on B; replicas started ($(date +%T))"
for port in 8081 8082; do
  for _ in $(seq 300); do curl -sf "127.0.0.1:$port/ready" >/dev/null && break; sleep 0.2; done
  curl -sf "127.0.0.1:$port/ready" >/dev/null || fail "replica on $port not ready: $(tail -3 "$O"/*.log)"
done
# Both replicas in the fleet before the first promotion.
for _ in $(seq 100); do
  [ "$(ls "$B/models/.fleet" 2>/dev/null | grep -c '\.json$')" -ge 2 ] && break; sleep 0.2
done

hammer() { # port → one "status version" line per request
  while [ ! -e "$O/stop" ]; do
    curl -s -o /dev/null -D - -X POST -d '{"petal_width": "2.1"}' "127.0.0.1:$1/predict" \
      | tr -d '\r' | awk -v s=000 '/^HTTP/{s=$2} tolower($1)=="x-model-version:"{v=$2} END{print s, v}'
  done >"$O/load-$1"
}
hammer 8081 & h1=$!; hammer 8082 & h2=$!
echo "load running; $N promotions, mode $MODE ($(date +%T))"

flag=(); [ "$MODE" = no-wait ] && flag=(--no-wait)
for i in $(seq "$N"); do
  if [ $((i % 2)) = 1 ]; then to=$v2; else to=$v1; fi
  t0=$(date +%s%N)
  out=$(limen models --json promote iris "$to" "${flag[@]}" 2>/dev/null) || fail "promotion $i: $out"
  echo "promotion $i to $to took $(( ($(date +%s%N) - t0) / 1000000 )) ms: $(echo "$out" | tr -d ' \n' | grep -o '"replicas":\[[^]]*\]\|"activate_at_ms":[0-9]*\|"waited_ms":[0-9]*' | tr '\n' ' ')"
  # Let both replicas switch (no-wait: up to a poll interval) and the load sample each version.
  sleep 2.5
done
touch "$O/stop"; wait "$h1" "$h2" 2>/dev/null
kill "$sa" "$sb" 2>/dev/null; wait "$sa" "$sb" 2>/dev/null

switches() { grep 'serving new production version' "$O/$1.log" | grep -o '"switched_at_ms":[0-9]*' | cut -d: -f2; }
switches a >"$O/a.t"; switches b >"$O/b.t"
na=$(wc -l <"$O/a.t"); nb=$(wc -l <"$O/b.t")
[ "$na" = $((N + 1)) ] && [ "$nb" = $((N + 1)) ] || fail "switch lines: a $na, b $nb, want $((N + 1)) each (the first is the start-up load)"
paste "$O/a.t" "$O/b.t" | tail -n +2 | awk '{d=$1-$2; if (d<0) d=-d; print d}' | sort -n >"$O/skew"
p50=$(awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}' "$O/skew")
p99=$(awk '{a[NR]=$1} END{i=int(NR*0.99+0.999); if(i<1)i=1; print a[i]}' "$O/skew")
max=$(tail -1 "$O/skew")

bad=0; total=0
for port in 8081 8082; do
  total=$((total + $(wc -l <"$O/load-$port")))
  bad=$((bad + $(grep -vc '^200 ' "$O/load-$port")))
  # Answers per replica change version exactly once per promotion: never back to the old one.
  changes=$(awk '$1==200 {if (prev!="" && $2!=prev) n++; prev=$2} END{print n+0}' "$O/load-$port")
  [ "$changes" -le "$N" ] || fail "replica on $port changed version $changes times for $N promotions (answered an old version after the new one)"
  echo "replica $port: $(wc -l <"$O/load-$port") answers, $changes version changes"
done
echo "mode=$MODE promotions=$N skew_ms p50=$p50 p99=$p99 max=$max requests=$total failed=$bad"
echo "skews_ms: $(tr '\n' ' ' <"$O/skew")"
echo "in promotion order (a, b switch times):"; paste "$O/a.t" "$O/b.t" | tail -n +2 | awk '{print NR": "$1" "$2" "($1-$2)}'
if [ -n "${VERBOSE:-}" ]; then
  for r in a b; do echo "--- $r"; grep -E 'switch|production version|loaded ahead' "$O/$r.log" | grep -o '"message":"[^"]*"\|"version":[0-9]*\|"in_ms":[0-9]*\|"switched_at_ms":[0-9]*\|"late_ms":[0-9]*\|"timestamp":"[^"]*"' | paste -sd' ' | sed 's/"timestamp"/\n"timestamp"/g'; done
fi
[ "$bad" = 0 ] || fail "$bad failed requests"
