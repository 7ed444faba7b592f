#!/usr/bin/env bash
# HTTP benchmark of `limen serve` on this machine: builds release, trains and validates into a
# temporary store, starts the server on 127.0.0.1, and runs wrk against /healthcheck and /predict.
# Prints req/s, latency percentiles, errors, the /predict : /healthcheck ratio, RSS idle and under
# load, start-to-ready time, and promotion-to-first-answer time.
#
#   benches/http.sh                       # defaults: 2 threads, 16 connections, 10 s per route
#   CONNS="16 64" DURATION=10s benches/http.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-16}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get install -y -qq wrk >/dev/null || { $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq wrk >/dev/null; }
fi

cargo build --release --locked -q
LIMEN=$PWD/target/release/limen
work=$(mktemp -d)
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export LIMEN_STORE=$work/store LIMEN_LOG=warn

ms() { echo $(( $(date +%s%N) / 1000000 )); }

t0=$(ms); "$LIMEN" train >/dev/null; t1=$(ms); "$LIMEN" validate >/dev/null; t2=$(ms)
echo "limen train: $((t1 - t0)) ms wall; limen validate: $((t2 - t1)) ms wall (process start included)"

# Start the server from Python and poll /ready over one connection attempt per millisecond: a
# curl process per probe, or a shell's start-up, would blur a measurement of a few milliseconds.
read -r server_pid port ready_ms < <(python3 - "$LIMEN" "$work/stdout" <<'PY'
import subprocess, sys, time, http.client
limen, out = sys.argv[1], sys.argv[2]
start = time.perf_counter()
proc = subprocess.Popen([limen, "serve", "--addr", "127.0.0.1:0"], stdout=open(out, "w"))
port = None
while time.perf_counter() - start < 10:
    if port is None:
        for line in open(out):
            if line.startswith("listening on http://"):
                port = int(line.strip().rsplit(":", 1)[1])
    if port is not None:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/ready")
            if c.getresponse().status == 200:
                print(proc.pid, port, f"{(time.perf_counter() - start) * 1000:.1f}")
                sys.exit(0)
        except OSError:
            pass
    time.sleep(0.0005)
proc.kill()
sys.exit("server not ready within 10 s")
PY
)
base=http://127.0.0.1:$port
rss() { awk '/VmRSS/ {print $2 / 1024 " MiB"}' "/proc/$server_pid/status"; }
hwm() { awk '/VmHWM/ {print $2 / 1024 " MiB"}' "/proc/$server_pid/status"; }
echo "start to ready: ${ready_ms} ms; RSS idle: $(rss)"

run_wrk() { # route conns [script]
  local route=$1 conns=$2 script=${3:-}
  local args=(-t"$THREADS" -c"$conns" -d"$DURATION" --latency)
  [ -n "$script" ] && args+=(-s "$script")
  wrk "${args[@]}" "$base$route" 2>&1
}
summary() { # wrk output -> "req/s p50 p99 errors"
  awk '
    /Requests\/sec/ {rps=$2}
    /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
    /Non-2xx/ {bad+=$NF}
    /Socket errors/ {for (i=3;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) {gsub(",","",$i); bad+=$i}}
    END {printf "%s %s %s %d\n", rps, p50, p99, bad}'
}

printf '\n%-14s %6s %12s %10s %10s %8s %8s\n' route conns req/s p50 p99 errors ratio
for c in $CONNS; do
  read -r h_rps h_p50 h_p99 h_err < <(run_wrk /healthcheck "$c" | summary)
  read -r p_rps p_p50 p_p99 p_err < <(run_wrk /predict "$c" benches/wrk/post.lua | summary)
  ratio=$(awk -v a="$p_rps" -v b="$h_rps" 'BEGIN {printf "%.2f", a / b}')
  printf '%-14s %6s %12s %10s %10s %8s %8s\n' /healthcheck "$c" "$h_rps" "$h_p50" "$h_p99" "$h_err" 1.00
  printf '%-14s %6s %12s %10s %10s %8s %8s\n' /predict "$c" "$p_rps" "$p_p50" "$p_p99" "$p_err" "$ratio"
done
echo "RSS after load: $(rss) (peak $(hwm))"

# /predict again while a second client hammers /metrics back to back over keep-alive (far
# harsher than Prometheus's usual 15 s interval). The same loop against /healthcheck is the
# control: on 2 shared cores any extra client costs CPU, and only the difference is scraping's.
side_loop() { # path -> runs until killed
  exec python3 - "$port" "$1" <<'PY'
import sys, http.client
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
while True:
    c.request("GET", sys.argv[2]); c.getresponse().read()
PY
}
printf '\n%-34s %6s %12s %10s %10s %8s\n' "/predict while another client…" conns req/s p50 p99 errors
for c in $CONNS; do
  for side in none /healthcheck /metrics; do
    loop=""
    if [ "$side" != none ]; then side_loop "$side" & loop=$!; fi
    read -r rps p50 p99 err < <(run_wrk /predict "$c" benches/wrk/post.lua | summary)
    if [ -n "$loop" ]; then kill "$loop"; wait "$loop" 2>/dev/null || true; fi
    printf '%-34s %6s %12s %10s %10s %8s\n' "…loops on $side" "$c" "$rps" "$p50" "$p99" "$err"
  done
done
scrapes=$(curl -s "$base/metrics" | awk -F'[{}" ]' '/^limen_http_requests_total/ && /route="\/metrics"/ {print $NF}')
echo "(/metrics answered ${scrapes:-0} scrapes in total)"

# Promotion to first answer: train a new version, then time from validate's exit to the first
# /predict that carries it.
new=$("$LIMEN" train | tail -n 1)
"$LIMEN" validate >/dev/null
python3 - "$base" "$new" <<'PY'
import sys, time, http.client, urllib.parse
base, new = sys.argv[1], sys.argv[2]
host = urllib.parse.urlparse(base)
start = time.time()
c = http.client.HTTPConnection(host.hostname, host.port, timeout=1)
while time.time() - start < 10:
    c.request("POST", "/predict", body='{"petal_width": "2.1"}')
    r = c.getresponse(); r.read()
    if r.getheader("x-model-version") == new:
        print(f"validate exit to first answer with the new version: {(time.time() - start) * 1000:.1f} ms")
        break
    time.sleep(0.001)
else:
    sys.exit("new version not served within 10 s")
PY
