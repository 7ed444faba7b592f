#!/usr/bin/env bash
# Performance guard: user-space instructions per request, counted by callgrind, on a release
# build: limen's GET /healthcheck, POST /predict and POST /v2/models/iris/infer, POST /predict of a
# tree model (a 500-tree random forest, depth <= 6, on the 30 features of data/breast_cancer.csv,
# in a store of its own), POST /predict of a model with text columns and missing cells (4 numbers
# and 3 categories of 20, scripts/mixed_csv.py; one value missing, in a store of its own), and
# POST /predict of the floor (benches/floor: the same job on the same runtime, allocator and HTTP stack, with
# none of limen's own per-request work). Instruction counts repeat to within a fraction of a
# percent on a given toolchain, unlike req/s on a shared machine, so they can fail a build: the
# script exits 1 if limen's /predict costs more than MAX_FLOOR times the floor's, /v2 infer more
# than MAX_V2 times, /predict more than MAX_PREDICT instructions, or the tree /predict more than
# MAX_TREE_PREDICT, or the mixed model's /predict more than MAX_MIXED times /predict's. Issue 26's
# budget is in requests per second (at least 0.85 x Iris /predict, benches/mixed.sh: 0.92 x), where
# the kernel's share of a request (not counted here) weighs as much for both; in user-space
# instructions the mixed request costs 1.34 x (its 150-byte body of seven keys against the
# seed's one, three category lookups, seven drift bins), so the guard holds it at 1.40.
#
#   benches/guard.sh                     # MAX_FLOOR=1.10 MAX_V2=1.30 MAX_PREDICT=34000 MAX_TREE_PREDICT=180000 MAX_MIXED=1.40
#
# MAX_V2 is 1.30, not issue 18's 1.25: /v2 infer measured 1.230-1.246 x the floor until issue 23,
# whose memory budget costs it ~450 instructions more (its body, its tensors and its answer are
# reserved before they are allocated, and the answer keeps its reservation until it is sent):
# 1.251-1.271 since 9f8dc51, and code layout moves counts by up to ~500, so 1.27 would fail CI at
# random. BENCHMARKS.md, "Against the floor", says what the rest of /v2's cost is.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_FLOOR=${MAX_FLOOR:-1.10}
MAX_V2=${MAX_V2:-1.30}
MAX_PREDICT=${MAX_PREDICT:-34000}
MAX_TREE_PREDICT=${MAX_TREE_PREDICT:-180000}
MAX_MIXED=${MAX_MIXED:-1.40}
command -v valgrind >/dev/null || { echo "guard: valgrind is required (Debian package valgrind)" >&2; exit 2; }
cargo build --release --locked -q --workspace
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export LIMEN_STORE=$work/store LIMEN_LOG=error
# Heartbeats are work per second, not per request: under valgrind a run of 2,000 requests takes
# long enough for several, which would count as request cost. They are off here.
export LIMEN_HEARTBEAT_INTERVAL=0s
target/release/limen train --cv-folds 0 >/dev/null
target/release/limen validate >/dev/null
# A candidate that differs from production, so the default shadow scoring (10 % of /predict)
# runs and is counted: the guard covers what ships. GUARD_CANDIDATE=0 leaves it out.
if [ "${GUARD_CANDIDATE:-1}" = 1 ]; then
  target/release/limen train --cv-folds 0 --alpha 30 >/dev/null
fi
cancer_features=$(head -1 data/breast_cancer.csv | cut -d, -f1-30)
LIMEN_STORE=$work/trees target/release/limen train --model cancer --kind random-forest --trees 500 \
  --max-depth 6 --cv-folds 0 --data data/breast_cancer.csv --label-column diagnosis \
  --target benign --features "$cancer_features" >/dev/null
LIMEN_STORE=$work/trees target/release/limen validate --model cancer >/dev/null
python3 scripts/mixed_csv.py "$work/mixed.csv" 5000
mixed_version=$(LIMEN_STORE=$work/mixed target/release/limen train --model mixed --data "$work/mixed.csv" \
  --label-column label --standardize --cv-folds 0 --holdout 0 | tail -1)
LIMEN_STORE=$work/mixed target/release/limen models promote mixed "$mixed_version" --no-wait >/dev/null
mixed='{"age": 41.5, "income": 58210, "score": null, "tenure": 30.5, "plan": "plan_07", "region": "region_13", "device": "device_02"}'
# The table's first row, as a client sends it.
cancer=$(python3 -c 'import csv, json, sys
rows = csv.DictReader(open("data/breast_cancer.csv"))
row = next(rows)
print(json.dumps({k: float(v) for k, v in row.items() if k != "diagnosis"}))')

per_request() { # server method path body -> instructions per request
  local server=$1 method=$2 path=$3 body=$4 counts=() command=() store=$LIMEN_STORE
  case "$server" in
    limen) command=(target/release/limen serve) ;;
    trees) command=(target/release/limen serve --model cancer); store=$work/trees ;;
    mixed) command=(target/release/limen serve --model mixed); store=$work/mixed ;;
    floor) command=(target/release/limen-floor) ;;
  esac
  for n in 500 2500; do
    LIMEN_STORE=$store valgrind --tool=callgrind --callgrind-out-file="$work/cg.$n" \
      "${command[@]}" --addr 127.0.0.1:0 --workers 1 >"$work/out.$n" 2>"$work/vg.$n" &
    local pid=$!
    if ! python3 - "$work/out.$n" "$n" "$server" "$method" "$path" "$body" <<'PY'
import http.client, sys, time
out, n, server, method, path, body = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
deadline = time.time() + 120
port = None
while port is None:
    for line in open(out):
        if line.startswith("listening on http://"):
            port = int(line.strip().rsplit(":", 1)[1])
    if time.time() > deadline:
        sys.exit("guard: the server under valgrind did not start")
    time.sleep(0.1)
# The floor is ready once it listens; limen once its model is loaded.
while server != "floor":
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
json_body = body.startswith('{"inputs"')
# The reference client's POST is a form (curl -d); OIP clients send JSON.
headers = {"Content-Type": "application/json" if json_body else "application/x-www-form-urlencoded"} if body else {}
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

seed='{"petal_width": "2.1"}'
v2='{"inputs": [{"name": "petal_width", "shape": [1], "datatype": "FP64", "data": [2.1]}]}'
floor=$(per_request floor POST /predict "$seed") || exit 2
health=$(per_request limen GET /healthcheck "") || exit 2
predict=$(per_request limen POST /predict "$seed") || exit 2
infer=$(per_request limen POST /v2/models/iris/infer "$v2") || exit 2
trees=$(per_request trees POST /models/cancer/predict "$cancer") || exit 2
mixedp=$(per_request mixed POST /models/mixed/predict "$mixed") || exit 2
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
over() { awk -v r="$1" -v m="$2" 'BEGIN {exit !(r > m)}'; }
echo "instructions per request: floor POST /predict $floor; limen GET /healthcheck $health, POST /predict $predict ($(ratio "$predict" "$floor") x floor), POST /v2/models/iris/infer $infer ($(ratio "$infer" "$floor") x floor), POST /models/cancer/predict (500 trees) $trees ($(ratio "$trees" "$predict") x /predict), POST /models/mixed/predict (4 numbers, 3 categories) $mixedp ($(ratio "$mixedp" "$predict") x /predict)"
limits="limits: /predict <= $MAX_FLOOR x floor and <= $MAX_PREDICT, /v2 infer <= $MAX_V2 x floor, tree /predict <= $MAX_TREE_PREDICT, mixed /predict <= $MAX_MIXED x /predict"
if over "$(ratio "$predict" "$floor")" "$MAX_FLOOR" || over "$(ratio "$infer" "$floor")" "$MAX_V2" \
  || [ "$predict" -gt "$MAX_PREDICT" ] || [ "$trees" -gt "$MAX_TREE_PREDICT" ] \
  || over "$(ratio "$mixedp" "$predict")" "$MAX_MIXED"; then
  echo "guard: FAILED ($limits)" >&2
  exit 1
fi
echo "guard: ok ($limits)"
