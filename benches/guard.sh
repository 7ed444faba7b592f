#!/usr/bin/env bash
# Performance guard: user-space instructions per request, counted by callgrind, for
# GET /healthcheck and POST /predict on a release build. Instruction counts repeat to within a
# fraction of a percent on a given toolchain, unlike req/s on a shared machine, so they can fail
# a build: the script exits 1 if /predict costs more than MAX_PREDICT instructions or more than
# MAX_RATIO times /healthcheck.
#
#   benches/guard.sh                     # MAX_PREDICT=34000 MAX_RATIO=1.7
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_PREDICT=${MAX_PREDICT:-34000}
MAX_RATIO=${MAX_RATIO:-1.7}
command -v valgrind >/dev/null || { echo "guard: valgrind is required (Debian package valgrind)" >&2; exit 2; }
cargo build --release --locked -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export LIMEN_STORE=$work/store LIMEN_LOG=error
target/release/limen train --cv-folds 0 >/dev/null
target/release/limen validate >/dev/null
# A candidate that differs from production, so the default shadow scoring (10 % of /predict)
# runs and is counted: the guard covers what ships. GUARD_CANDIDATE=0 leaves it out.
if [ "${GUARD_CANDIDATE:-1}" = 1 ]; then
  target/release/limen train --cv-folds 0 --alpha 30 >/dev/null
fi

per_request() { # method path body -> instructions per request
  local method=$1 path=$2 body=$3 counts=()
  for n in 500 2500; do
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.$n" \
      target/release/limen serve --addr 127.0.0.1:0 --workers 1 >"$work/out.$n" 2>"$work/vg.$n" &
    local pid=$!
    if ! python3 - "$work/out.$n" "$n" "$method" "$path" "$body" <<'PY'
import http.client, sys, time
out, n, method, path, body = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
deadline = time.time() + 120
port = None
while port is None:
    for line in open(out):
        if line.startswith("listening on http://"):
            port = int(line.strip().rsplit(":", 1)[1])
    if time.time() > deadline:
        sys.exit("guard: the server under valgrind did not start")
    time.sleep(0.1)
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/ready")
        if c.getresponse().status == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("guard: the server under valgrind did not become ready")
    time.sleep(0.1)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
for _ in range(n):
    c.request(method, path, body=body or None, headers=headers)
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"guard: {method} {path} answered {r.status}")
PY
    then
      kill "$pid" 2>/dev/null || true
      cat "$work/vg.$n" >&2
      exit 2
    fi
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true
    local total
    total=$(awk '/^(summary|totals):/ {print $2; exit}' "$work/cg.$n")
    [ -n "$total" ] || { echo "guard: no callgrind totals" >&2; exit 2; }
    counts+=("$total")
  done
  # The difference of two runs removes start-up and shutdown.
  local per=$(( (counts[1] - counts[0]) / 2000 ))
  [ "$per" -gt 0 ] || { echo "guard: nonsensical count $per" >&2; exit 2; }
  echo "$per"
}

health=$(per_request GET /healthcheck "") || exit 2
predict=$(per_request POST /predict '{"petal_width": "2.1"}') || exit 2
ratio=$(awk -v p="$predict" -v h="$health" 'BEGIN {printf "%.2f", p / h}')
echo "instructions per request: GET /healthcheck $health, POST /predict $predict (ratio $ratio)"
if [ "$predict" -gt "$MAX_PREDICT" ] || awk -v r="$ratio" -v m="$MAX_RATIO" 'BEGIN {exit !(r > m)}'; then
  echo "guard: FAILED (limits: /predict <= $MAX_PREDICT instructions, ratio <= $MAX_RATIO)" >&2
  exit 1
fi
echo "guard: ok (limits: /predict <= $MAX_PREDICT instructions, ratio <= $MAX_RATIO)"
