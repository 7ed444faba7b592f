#!/usr/bin/env python3
"""Memory under load (run by `benches/memory.sh`, which builds release first).

For each `--budget`, on a temporary store made with the real `limen train` and `limen validate`
(production, plus a candidate so that shadow scoring runs): starts `limen serve --memory-budget B
--inference-log DIR --inference-log-rate 1 --shadow-rate 1`, finds the largest batch each of
/predict, /explain and /v2/models/iris/infer accepts (under --max-body and the 12 MiB answer
limit), then has `--conns` keep-alive connections send those batches, rotating routes, for
`--seconds`, after a 3 s warm-up of the same load and a pause for the log to drain (RSS then is
"where it started"). Meanwhile it samples the server's RSS every 50 ms and times GET
/healthcheck on a connection of its own every 20 ms. After the load it waits (up to 20 s) for RSS
to return within 10 % of where it started. Prints a Markdown report and exits 1 if any of issue 23's bounds is
missed: peak RSS ≤ budget + 32 MiB, every answer 200 or 429, RSS back within 10 %, /healthcheck
p99 < 50 ms.
"""
import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMEN = os.path.join(ROOT, "target", "release", "limen")
MIB = 1024 * 1024
MAX_BODY = MIB
WARM_UP = 3.0


def parse_size(text):
    units = {"kib": 1024, "mib": MIB, "gib": 1024 * MIB}
    lower = text.lower()
    for unit, factor in units.items():
        if lower.endswith(unit):
            return int(float(lower[: -len(unit)]) * factor)
    return int(text)


def rss_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def predict_body(n):
    return '{"instances": [' + ",".join(['{"petal_width": 1.734}'] * n) + "]}"


def infer_body(n):
    data = ",".join(["1.734"] * n)
    return '{"inputs": [{"name": "input", "shape": [%d, 1], "datatype": "FP64", "data": [%s]}]}' % (n, data)


def post(conn, path, body):
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    return response.status


def largest(port, path, make):
    """The largest n for which `make(n)` fits --max-body and answers 200 (binary search)."""
    lo, hi = 1, 1
    while len(make(hi * 2)) <= MAX_BODY:
        hi *= 2
    hi *= 2
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        body = make(mid)
        ok = len(body) <= MAX_BODY and post(conn, path, body) == 200
        lo, hi = (mid, hi) if ok else (lo, mid)
    conn.close()
    return lo


def start(env, args):
    out = tempfile.NamedTemporaryFile("w+", delete=False)
    proc = subprocess.Popen([LIMEN, "serve", "--addr", "127.0.0.1:0", *args], env=env, stdout=out, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    port = None
    while port is None:
        if time.time() > deadline:
            proc.kill()
            sys.exit("limen serve did not start")
        for line in open(out.name):
            if line.startswith("listening on http://"):
                port = int(line.strip().rsplit(":", 1)[1])
        time.sleep(0.05)
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/ready")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        if time.time() > deadline:
            proc.kill()
            sys.exit("limen serve not ready")
        time.sleep(0.05)


def metric(port, prefix):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total


def run(budget, seconds, conns, env, store):
    log = tempfile.mkdtemp(prefix="limen-memlog-")
    args = ["--memory-budget", str(budget), "--inference-log", log, "--inference-log-rate", "1",
            "--shadow-rate", "1", "--instance", "bench", "--max-body", str(MAX_BODY)]
    proc, port = start(dict(env, LIMEN_STORE=store), args)
    try:
        sizes = {
            "/predict": largest(port, "/predict", predict_body),
            "/explain": largest(port, "/explain", predict_body),
            "/v2/models/iris/infer": largest(port, "/v2/models/iris/infer", infer_body),
        }
        bodies = {
            "/predict": predict_body(sizes["/predict"]),
            "/explain": predict_body(sizes["/explain"]),
            "/v2/models/iris/infer": infer_body(sizes["/v2/models/iris/infer"]),
        }
        routes = list(bodies)
        statuses = {r: {} for r in routes}
        errors = []
        lock = threading.Lock()
        stop = 0.0

        def client(i):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            k = i
            while time.time() < stop:
                route = routes[k % len(routes)]
                k += 1
                try:
                    status = post(conn, route, bodies[route])
                except (OSError, http.client.HTTPException) as e:
                    with lock:
                        errors.append(repr(e))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    continue
                with lock:
                    statuses[route][status] = statuses[route].get(status, 0) + 1
            conn.close()

        # Where the load starts: a warm-up of the same load (so the thread pools, connection
        # tables and metric series a server keeps have grown), then a pause for its queued log
        # lines to drain and its memory to be given back.
        stop = time.time() + WARM_UP
        warm = [threading.Thread(target=client, args=(i,)) for i in range(conns)]
        for t in warm:
            t.start()
        for t in warm:
            t.join()
        for route in routes:
            statuses[route].clear()
        settle = time.time() + 30
        while time.time() < settle and metric(port, "limen_memory_reserved_bytes") > 0:
            time.sleep(0.5)
        time.sleep(2.0)
        start_rss = rss_kib(proc.pid)
        stop = time.time() + seconds
        peak = [start_rss]
        health = []
        done = threading.Event()

        def sampler():
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(proc.pid))
                time.sleep(0.05)

        def healthcheck():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            while not done.is_set():
                t0 = time.perf_counter()
                try:
                    conn.request("GET", "/healthcheck")
                    conn.getresponse().read()
                    health.append(time.perf_counter() - t0)
                except (OSError, http.client.HTTPException) as e:
                    errors.append("healthcheck: " + repr(e))
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                time.sleep(0.02)

        background = [threading.Thread(target=sampler), threading.Thread(target=healthcheck)]
        workers = [threading.Thread(target=client, args=(i,)) for i in range(conns)]
        for t in background + workers:
            t.start()
        for t in workers:
            t.join()
        done.set()
        for t in background:
            t.join()
        hwm = rss_kib(proc.pid, "VmHWM")
        peak_kib = max(peak[0], hwm)
        # After the load: RSS back near where it started?
        back_at, after = None, rss_kib(proc.pid)
        t_end = time.time()
        while time.time() - t_end < 20:
            after = rss_kib(proc.pid)
            if after <= start_rss * 1.10:
                back_at = time.time() - t_end
                break
            time.sleep(0.1)
        reserved = metric(port, "limen_memory_reserved_bytes")
        dropped_log = metric(port, "limen_inference_log_dropped_total")
        dropped_shadow = metric(port, "limen_shadow_dropped_total")
        logged = metric(port, "limen_inference_log_lines_total")
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(log, ignore_errors=True)
    health.sort()
    p99 = health[int(0.99 * (len(health) - 1))] * 1000 if health else float("nan")
    bad = {r: {s: n for s, n in st.items() if s not in (200, 429)} for r, st in statuses.items()}
    bound = budget + 32 * MIB
    checks = {
        "peak RSS ≤ budget + 32 MiB": peak_kib * 1024 <= bound,
        "every answer 200 or 429": not any(bad.values()) and not errors,
        "RSS back within 10 %": back_at is not None,
        "/healthcheck p99 < 50 ms": p99 < 50,
    }
    return {
        "budget": budget, "sizes": sizes, "statuses": statuses, "errors": errors[:5],
        "start_mib": start_rss / 1024, "peak_mib": peak_kib / 1024, "bound_mib": bound / MIB,
        "after_mib": after / 1024, "back_s": back_at, "p99_ms": p99,
        "health_median_ms": statistics.median(health) * 1000 if health else float("nan"),
        "reserved_after": reserved, "dropped_log": dropped_log, "dropped_shadow": dropped_shadow,
        "logged": logged, "checks": checks,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", action="append", default=None)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--conns", type=int, default=16)
    a = parser.parse_args()
    budgets = [parse_size(b) for b in (a.budget or ["96MiB", "512MiB"])]
    work = tempfile.mkdtemp(prefix="limen-membench-")
    store = os.path.join(work, "store")
    env = dict(os.environ, LIMEN_STORE=store, LIMEN_LOG="error")
    subprocess.run([LIMEN, "train", "--cv-folds", "0"], env=env, cwd=ROOT, check=True, capture_output=True)
    subprocess.run([LIMEN, "validate"], env=env, cwd=ROOT, check=True, capture_output=True)
    subprocess.run([LIMEN, "train", "--cv-folds", "0", "--alpha", "30"], env=env, cwd=ROOT, check=True, capture_output=True)
    results = [run(b, a.seconds, a.conns, env, store) for b in budgets]
    shutil.rmtree(work, ignore_errors=True)
    print(f"### Memory under load: {a.conns} connections, {a.seconds:.0f} s per budget, inference log at rate 1, shadow at rate 1\n")
    r0 = results[0]
    print("Largest accepted batches: " + ", ".join(f"`{route}` {n:,} instances" for route, n in r0["sizes"].items()) + "\n")
    print("| budget | RSS start | peak RSS (bound) | RSS after (back in) | reserved after | /predict 200/429 | /explain 200/429 | /v2 200/429 | other | /healthcheck median / p99 | log lines written / dropped | shadow dropped |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ok = True
    for r in results:
        st = r["statuses"]
        pair = lambda route: f"{st[route].get(200, 0):,} / {st[route].get(429, 0):,}"
        other = sum(n for route in st for s, n in st[route].items() if s not in (200, 429)) + len(r["errors"])
        back = f"{r['back_s']:.1f} s" if r["back_s"] is not None else "not within 20 s"
        print(f"| {r['budget'] // MIB} MiB | {r['start_mib']:.1f} MiB | {r['peak_mib']:.0f} MiB ({r['bound_mib']:.0f}) | "
              f"{r['after_mib']:.1f} MiB ({back}) | {r['reserved_after'] / 1024:.0f} KiB | {pair('/predict')} | {pair('/explain')} | "
              f"{pair('/v2/models/iris/infer')} | {other} | {r['health_median_ms']:.1f} / {r['p99_ms']:.1f} ms | "
              f"{r['logged']:,.0f} / {r['dropped_log']:,.0f} | {r['dropped_shadow']:,.0f} |")
        ok = ok and all(r["checks"].values())
    print()
    for r in results:
        failed = [name for name, passed in r["checks"].items() if not passed]
        print(f"- {r['budget'] // MIB} MiB: " + ("every bound held" if not failed else "FAILED: " + ", ".join(failed)) +
              (f" (errors: {r['errors']})" if r["errors"] else ""))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
