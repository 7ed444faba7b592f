#!/usr/bin/env bash
# Scale benchmark: one `limen serve` over a store of many models × versions (default 1,000 × 3).
# Reports: start to all production models loaded and ready; RSS with them loaded; one poll
# cycle over every pointer (wall time from the server's own debug log, CPU time from /proc);
# and, in poll mode, the time from `limen models promote` to the first answer with that version.
#
#   benches/scale.sh                  # MODELS=1000 VERSIONS=3 POLL=1s
#   MODELS=100 benches/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."

MODELS=${MODELS:-1000}
VERSIONS=${VERSIONS:-3}
POLL=${POLL:-1s}

cargo build --release --locked -q
LIMEN=$PWD/target/release/limen
work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export LIMEN_STORE=$work/store LIMEN_LOG=warn

echo "generating $MODELS models x $VERSIONS versions with limen train/validate (2 at a time)..."
t0=$(date +%s)
seq -f "m%04g" 1 "$MODELS" | xargs -P 2 -I{} sh -c '
  for v in $(seq 1 '"$VERSIONS"'); do "$0" train --model {} --cv-folds 0 >/dev/null; done
  "$0" validate --model {} >/dev/null' "$LIMEN"
echo "generated in $(( $(date +%s) - t0 )) s: $(find "$LIMEN_STORE" -name model.json | wc -l) versions"

# Start in poll mode (the EFS case) and time until every model is loaded, from Python.
read -r server_pid ready_ms < <(python3 - "$LIMEN" "$work" "$MODELS" "$POLL" <<'PY'
import json, os, subprocess, sys, time, http.client
limen, work, models, poll = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
env = dict(os.environ, LIMEN_LOG="limen=debug")
start = time.perf_counter()
proc = subprocess.Popen([limen, "serve", "--addr", "127.0.0.1:0", "--watch", "poll",
                         "--poll-interval", poll],
                        stdout=open(f"{work}/stdout", "w"), stderr=open(f"{work}/log", "w"), env=env)
port = None
while time.perf_counter() - start < 60:
    if port is None:
        for line in open(f"{work}/stdout"):
            if line.startswith("listening on http://"):
                port = int(line.strip().rsplit(":", 1)[1])
                open(f"{work}/port", "w").write(str(port))
    if port is not None:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/models")
            body = json.loads(c.getresponse().read())
            if sum(1 for m in body["models"] if m["loaded"] is not None) == models:
                print(proc.pid, f"{(time.perf_counter() - start) * 1000:.0f}")
                sys.exit(0)
        except OSError:
            pass
    time.sleep(0.005)
proc.kill()
sys.exit("not all models loaded within 60 s")
PY
)
port=$(cat "$work/port")
echo "start to all $MODELS models loaded: ${ready_ms} ms"
echo "RSS with them loaded: $(awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$server_pid/status")"

# Poll cycles: CPU time over 10 idle seconds, wall time from the server's "store scanned" lines.
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
c0=$(cpu); sleep 10; c1=$(cpu)
cycles=$(grep -c "store scanned" "$work/log" || true)
grep "store scanned" "$work/log" | tail -n 10 | sed -E 's/.*micros=([0-9]+).*/\1/' | sort -n > "$work/scan_us"
echo "poll cycle over $MODELS production pointers: wall median $(awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}' "$work/scan_us") ms, max $(tail -n 1 "$work/scan_us" | awk '{printf "%.1f", $1/1000}') ms (last 10 of $cycles cycles); CPU $(awk -v d=$((c1 - c0)) -v t="$ticks" 'BEGIN {printf "%.1f", d / t * 1000 / 10}') ms per second of polling"

# Promotion to first answer, polling only.
model=m$(printf %04d $(( (MODELS + 1) / 2 )))
old=$(cat "$LIMEN_STORE/$model/production")
target=""
for dir in "$LIMEN_STORE/$model"/*/; do
  version=$(basename "$dir")
  if [[ "$version" =~ ^[0-9]+$ ]] && [ "$version" != "$old" ]; then target=$version; break; fi
done
python3 - "$LIMEN" "$port" "$model" "$target" <<'PY'
import subprocess, sys, time, http.client
limen, port, model, target = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
subprocess.run([limen, "models", "promote", model, target], check=True, stdout=subprocess.DEVNULL)
start = time.perf_counter()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
while time.perf_counter() - start < 30:
    c.request("POST", f"/models/{model}/predict", body='{"petal_width": 2.1}')
    r = c.getresponse(); r.read()
    if r.getheader("x-model-version") == target:
        print(f"promotion of {model} to first answer with it (poll mode): {(time.perf_counter() - start) * 1000:.0f} ms")
        sys.exit(0)
    time.sleep(0.002)
sys.exit("promotion not served within 30 s")
PY
