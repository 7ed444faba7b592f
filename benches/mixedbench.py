#!/usr/bin/env python3
"""Run by benches/mixed.sh (which builds release and installs wrk); see there."""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("httpbench", os.path.join(ROOT, "benches", "httpbench.py"))
hb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hb)
# One instance of the mixed table, as a client sends it: numbers, text, one value missing.
MIXED = json.dumps({"age": 41.5, "income": 58210, "score": None, "tenure": 30.5,
                    "plan": "plan_07", "region": "region_13", "device": "device_02"})


def main():
    p = argparse.ArgumentParser(description="issue 26 benchmarks")
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--conns", type=int, default=16)
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="limen-mixed-")
    table = os.path.join(work, "mixed.csv")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "mixed_csv.py"), table, str(a.rows)], check=True)
    store = os.path.join(work, "store")
    env = dict(os.environ, LIMEN_STORE=store, LIMEN_LOG="error")
    train = [hb.LIMEN, "train", "--model", "mixed", "--data", table, "--label-column", "label", "--standardize"]
    walls, version = [], None
    for _ in range(a.runs):
        t0 = time.perf_counter()
        out = subprocess.run(train, env=env, check=True, capture_output=True, text=True).stdout
        walls.append(time.perf_counter() - t0)
        version = out.strip().splitlines()[-1]
    print(f"`limen train` on {a.rows:,} rows (4 numbers, 3 text columns of 20 categories, 10 % missing; "
          f"--standardize, hold-out 0.2, 5-fold CV), median of {a.runs}: {statistics.median(walls):.2f} s "
          f"(runs: {', '.join(f'{w:.2f}' for w in walls)}; {os.cpu_count()} cores)")
    run = lambda *args: subprocess.run([hb.LIMEN, *args], env=env, check=True, capture_output=True)
    run("models", "promote", "mixed", version, "--no-wait")
    run("train", "--cv-folds", "0", "--data", os.path.join(ROOT, "data", "iris.csv"))
    run("validate")
    proc, port, _ = hb.start_server(env)
    try:
        routes = [("iris", hb.SEED), ("mixed", MIXED)]
        rps = {name: [] for name, _ in routes}
        for _ in range(a.rounds):
            for name, body in routes:
                r = hb.wrk(port, f"/models/{name}/predict", "POST", body, a.conns, a.seconds, 2)
                if r.get("errors", 0) or r.get("non2xx", 0):
                    sys.exit(f"{name}: {r}")
                rps[name].append(r["rps"])
        iris, mixed = (statistics.median(rps[name]) for name, _ in routes)
        print(f"HTTP, {a.conns} connections, {a.rounds} interleaved rounds of {a.seconds} s: Iris /predict "
              f"{iris:,.0f} req/s, mixed /predict {mixed:,.0f} req/s: {mixed / iris:.2f} x "
              f"(rounds: iris {[round(x) for x in rps['iris']]}, mixed {[round(x) for x in rps['mixed']]})")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
