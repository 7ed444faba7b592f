#!/usr/bin/env python3
"""The cost of shadow scoring on `/predict`, run by `benches/shadow.sh`.

One store, production `iris` and a candidate that differs from it (trained with `--alpha 30`);
three servers started one after another on it, identical but for `--shadow-rate` 0, 0.1 and 1.0.
wrk drives `/predict` with the seed body at 16 connections; the three rates are interleaved in
rounds so drift on a shared machine hits them alike, and each is reported by its median round
and as a ratio of rate 0 in the same rounds. After each round the server's shadow totals and
dropped-sample counter are read, so the report says how much was actually compared.

Prints a Markdown table on stdout.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httpbench  # noqa: E402  (the shared helpers: limen, start_server, wrk)


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    return r.read().decode()


def dropped(port):
    for line in get(port, "/metrics").splitlines():
        if line.startswith("limen_shadow_dropped_total"):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()

    store = tempfile.mkdtemp(prefix="limen-shadowbench-")
    env = dict(os.environ, LIMEN_STORE=store, LIMEN_LOG="error")
    httpbench.limen(["train", "--cv-folds", "0"], env)
    httpbench.limen(["validate"], env)
    candidate = httpbench.limen(["train", "--cv-folds", "0", "--alpha", "30"], env).stdout.split()[-1]

    rates = ["0", "0.1", "1"]
    results = {r: [] for r in rates}
    samples = {r: 0 for r in rates}
    drops = {r: 0 for r in rates}
    for _ in range(a.rounds):
        for rate in rates:
            proc, port, _ = httpbench.start_server(env, ["--shadow-rate", rate, "--poll-interval", "100ms"])
            try:
                if rate != "0":
                    for _ in range(100):  # the candidate enters the shadow within a poll
                        shadow = json.loads(get(port, "/models/iris"))["shadow"]
                        if shadow and str(shadow["version"]) == candidate:
                            break
                        time.sleep(0.05)
                results[rate].append(httpbench.wrk(port, "/predict", "POST", httpbench.SEED, a.conns, a.seconds, a.threads))
                shadow = json.loads(get(port, "/models/iris"))["shadow"]
                samples[rate] += shadow["samples"] if shadow else 0
                drops[rate] += dropped(port)
            finally:
                proc.terminate()
                proc.wait()

    base = statistics.median(r["rps"] for r in results["0"])
    base_p99 = statistics.median(r["p99_us"] for r in results["0"])
    print(f"`/predict`, wrk -t{a.threads} -c{a.conns}, {a.rounds} interleaved rounds × {a.seconds} s, medians\n")
    print("| --shadow-rate | req/s | vs rate 0 | p99 | vs rate 0 | requests compared | dropped |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for rate in rates:
        rps = statistics.median(r["rps"] for r in results[rate])
        p99 = statistics.median(r["p99_us"] for r in results[rate])
        total = sum(r["requests"] for r in results[rate])
        print(f"| {rate} | {rps:,.0f} | {rps / base:.3f} | {p99 / 1000:.2f} ms | {p99 / base_p99:.3f} | "
              f"{samples[rate]:,} of {total:,} | {drops[rate]:,} |")


if __name__ == "__main__":
    main()
