#!/usr/bin/env python3
"""HTTP benchmark of `limen serve`, run by `benches/http.sh` (which builds release and installs wrk).

Creates a temporary store with the real `limen train` and `limen validate` (and a candidate, so
the default shadow scoring of 10 % of requests runs), starts `limen serve` on 127.0.0.1 and runs
wrk against /healthcheck, /predict (the seed body, curl's form content type), a 100-row batch and
/v2/models/iris/infer, at each connection count. Alongside run the floor (`limen-floor`,
benches/floor: the same job on the same runtime, allocator and HTTP stack, without limen's own
per-request work) and a second `limen serve` that also writes every request to the inference log
(`--inference-log-rate 1`). Everything is interleaved in rounds and the median of the rounds is
reported, so drift on a shared machine hits every server and route alike; each route's req/s is
given as a ratio to the floor's /predict and to /healthcheck's in the same rounds.

Also measured: cold start to ready (median of several starts), RSS idle and the peak under load,
`limen train` and `limen validate` wall time (median of several runs, process start included),
/predict while another client loops on /metrics (against the same loop on /healthcheck), and the
time from `limen validate` to the first answer with the new version.

Prints a Markdown report on stdout.
"""
import argparse
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMEN = os.path.join(ROOT, "target", "release", "limen")
FLOOR = os.path.join(ROOT, "target", "release", "limen-floor")
LUA = os.path.join(ROOT, "benches", "wrk", "request.lua")
SEED = '{"petal_width": "2.1"}'
BATCH = json.dumps({"instances": [{"petal_width": round(0.1 + 0.024 * i, 3)} for i in range(100)]})
INFER = json.dumps({"inputs": [{"name": "input", "shape": [1, 1], "datatype": "FP64", "data": [2.1]}]})
ROUTES = [
    ("/healthcheck", "GET", None),
    ("/predict", "POST", SEED),
    ("/predict (batch of 100)", "POST", BATCH),
    ("/v2/models/iris/infer", "POST", INFER),
]


def limen(args, env, **kw):
    return subprocess.run([LIMEN, *args], env=env, cwd=ROOT, check=True, capture_output=True, text=True, **kw)


def wait_ready(port, deadline_s=10.0):
    start = time.perf_counter()
    while time.perf_counter() - start < deadline_s:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/ready")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.0005)
    sys.exit("server not ready in time")


def start_server(env, extra=(), command=(LIMEN, "serve")):
    """Starts `limen serve` (or the floor); returns (process, port, milliseconds from spawn to
    ready: /ready 200 for limen, listening for the floor)."""
    out = tempfile.NamedTemporaryFile("w+", delete=False)
    t0 = time.perf_counter()
    proc = subprocess.Popen([*command, "--addr", "127.0.0.1:0", *extra], env=env, stdout=out)
    port = None
    while port is None:
        if time.perf_counter() - t0 > 10:
            proc.kill()
            sys.exit("server did not print its address")
        with open(out.name) as f:
            for line in f:
                if line.startswith("listening on http://"):
                    port = int(line.strip().rsplit(":", 1)[1])
        if port is None:
            time.sleep(0.0002)
    if command[0] == LIMEN:
        wait_ready(port)
    return proc, port, (time.perf_counter() - t0) * 1000


def rss_mib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return float("nan")


def wrk(port, path, method, body, conns, seconds, threads):
    env = dict(os.environ, WRK_METHOD=method, WRK_BODY=body or "")
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "-s", LUA, f"http://127.0.0.1:{port}{path}"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout
    result = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


class Sampler(threading.Thread):
    """Peak RSS of a process while running."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.05)


def side_loop(port, path, stop):
    c = http.client.HTTPConnection("127.0.0.1", port)
    while not stop.is_set():
        c.request("GET", path)
        c.getresponse().read()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conns", default="16,64")
    p.add_argument("--seconds", type=int, default=5, help="per route per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--workers", type=int, default=0, help="limen serve --workers")
    a = p.parse_args()

    work = tempfile.mkdtemp(prefix="limen-bench-")
    env = dict(os.environ, LIMEN_STORE=os.path.join(work, "store"), LIMEN_LOG="warn")
    serve_args = ["--workers", str(a.workers)]

    def timed(args, n=7):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            limen(args, env)
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    train_ms = timed(["train"])
    validate_ms = timed(["validate"])  # the first promotes, the rest find it already production

    starts = []
    for _ in range(5):
        proc, port, ms = start_server(env, serve_args)
        starts.append(ms)
        proc.terminate()
        proc.wait()
    # A candidate that differs from production: the default shadow scoring (10 %) then runs.
    limen(["train", "--alpha", "30"], env)
    proc, port, ms = start_server(env, serve_args)
    time.sleep(0.5)
    idle_rss = rss_mib(proc.pid)
    floor, floor_port, _ = start_server(env, serve_args, command=(FLOOR,))
    logged_dir = os.path.join(work, "inference-log")
    logged, logged_port, _ = start_server(
        env, [*serve_args, "--inference-log", logged_dir, "--inference-log-rate", "1"])
    FLOOR_ROUTE = "floor: /predict"
    LOGGED_ROUTE = "/predict, inference log rate 1"
    servers = [(FLOOR_ROUTE, floor_port, "/predict", "POST", SEED)]
    servers += [(name, port, name.split(" ")[0], method, body) for name, method, body in ROUTES]
    servers.append((LOGGED_ROUTE, logged_port, "/predict", "POST", SEED))

    sampler = Sampler(proc.pid)
    sampler.start()
    rows = []
    for conns in [int(c) for c in a.conns.split(",")]:
        runs = {name: [] for name, *_ in servers}
        ratios = {name: [] for name, *_ in servers}
        floor_run = lambda: wrk(floor_port, "/predict", "POST", SEED, conns, a.seconds, a.threads)  # noqa: E731
        for _ in range(a.rounds):
            # The floor runs before and after every route, and the route is compared with the
            # mean of those two: this machine's speed drifts by tens of percent within minutes.
            before = floor_run()
            runs[FLOOR_ROUTE].append(before)
            ratios[FLOOR_ROUTE].append(1.0)
            for name, server_port, path, method, body in servers[1:]:
                r = wrk(server_port, path, method, body, conns, a.seconds, a.threads)
                after = floor_run()
                runs[name].append(r)
                runs[FLOOR_ROUTE].append(after)
                ratios[name].append(r["rps"] / ((before["rps"] + after["rps"]) / 2))
                before = after
        base = statistics.median(r["rps"] for r in runs["/healthcheck"])
        for name, *_ in servers:
            rs = runs[name]
            med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
            rps = med("rps")
            per_round = ratios[name] if name != FLOOR_ROUTE else []
            floor_ratio = statistics.median(per_round) if per_round else 1.0
            rows.append((name, conns, rps, med("p50_us"), med("p99_us"), med("p999_us"),
                         sum(r["errors"] for r in rs), floor_ratio, per_round, rps / base))
    sampler.stop.set()
    load_rss = max(sampler.peak, rss_mib(proc.pid))

    # /predict while another client loops on /metrics, against the same loop on /healthcheck.
    scrape = []
    for side in (None, "/healthcheck", "/metrics"):
        stop = threading.Event()
        t = None
        if side:
            t = threading.Thread(target=side_loop, args=(port, side, stop), daemon=True)
            t.start()
        r = wrk(port, "/predict", "POST", SEED, 16, a.seconds * a.rounds, a.threads)
        stop.set()
        if t:
            t.join()
        scrape.append((side or "nothing", r))

    # Promotion to first answer with the new version (inotify path, default settings).
    new = limen(["train"], env).stdout.strip().splitlines()[-1]
    limen(["validate"], env)
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port)
    while True:
        c.request("POST", "/predict", body=SEED)
        r = c.getresponse()
        r.read()
        if r.getheader("x-model-version") == new:
            break
    promote_ms = (time.perf_counter() - t0) * 1000
    for p in (proc, floor, logged):
        p.terminate()
        p.wait()
    logged_mib = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(logged_dir) for f in fs) / 2**20
    shutil.rmtree(work, ignore_errors=True)

    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{platform.system()} {platform.release()}; wrk -t{a.threads} on the same cores; "
          f"{a.rounds} interleaved rounds of {a.seconds} s per route, the floor before and after "
          "each route; medians. 'vs floor': each round's req/s over the mean of the floor runs "
          "around it, median (each round).\n")
    print("| route | conns | req/s | p50 | p99 | p99.9 | errors | vs floor (each round) | vs /healthcheck |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, conns, rps, p50, p99, p999, errors, floor_ratio, per_round, ratio in rows:
        rounds = f" ({', '.join(f'{x:.2f}' for x in per_round)})" if per_round else ""
        print(f"| {name} | {conns} | {rps:,.0f} | {p50 / 1000:.2f} ms | {p99 / 1000:.2f} ms | "
              f"{p999 / 1000:.2f} ms | {errors} | {floor_ratio:.2f}{rounds} | {ratio:.2f} |")
    print()
    print(f"- cold start to ready: {statistics.median(starts):.1f} ms (median of 5; min {min(starts):.1f})")
    print(f"- RSS: {idle_rss:.1f} MiB idle, {load_rss:.1f} MiB peak under load")
    print(f"- `limen train`: {train_ms:.1f} ms wall; `limen validate`: {validate_ms:.1f} ms wall "
          "(median of 7, process start included)")
    print(f"- inference log written by the logged server: {logged_mib:,.0f} MiB")
    print(f"- `limen validate` exit to the first answer with the new version: {promote_ms:.1f} ms")
    print("- /predict (16 conns) while another client loops on another route:")
    for side, r in scrape:
        print(f"  - {side}: {r['rps']:,.0f} req/s, p99 {r['p99_us'] / 1000:.2f} ms, {r['errors']} errors")


if __name__ == "__main__":
    main()
