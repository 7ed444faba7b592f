#!/usr/bin/env python3
"""Tree models side by side (run by benches/trees.sh, which builds limen and this venv).

    treebench.py LIMEN LIMEN_TREES_BENCH WORK_DIR [--seconds S] [--rounds R]

Makes four models on one synthetic table (20 features, 20,000 training rows): XGBoost and
LightGBM, each a 500-tree depth-6 binary model and a 100-round three-class model (300 trees),
imports each with the real `limen import`, then on the same 10,000 held-out rows (3 % missing
cells) measures rows per second, one thread, batches of 1 and of 10,000 rows:

- limen: `Model::predict_into` per row / `Model::predict_batch` (benches/trees.rs, in process);
- XGBoost: `Booster.inplace_predict` (nthread 1);
- LightGBM: `Booster.predict` (num_threads 1);
- lleaves: the LightGBM model compiled by LLVM (`lleaves.Model.compile`, n_jobs 1).

A library's batch of 1 is one Python call per row: what a Python server pays per request. Rounds
are interleaved (each round measures every scorer once) and the median is reported. Prints a
Markdown table for BENCHMARKS.md.

Then over HTTP (wrk, as benches/http.sh): one `limen serve` with the 500-tree XGBoost model and
the Iris reference model both in production, `POST /models/NAME/predict` of one instance each
(20 features / the seed request), interleaved rounds, and the ratio of their requests per second.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import importlib.util

import lightgbm as lgb
import lleaves
import numpy as np
import xgboost as xgb


def table(rng, n):
    X = rng.normal(size=(n, 20))
    margin = X[:, 0] + X[:, 1] * X[:, 2] - np.abs(X[:, 3]) + 0.5 * np.sin(3 * X[:, 4])
    return X, margin + rng.normal(scale=0.5, size=n)


def rate(fn, rows, seconds):
    """Rows per second of fn, called until `seconds` pass; fn returns how many rows it scored."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += fn()
    return done / (time.perf_counter() - start)


def one_by_one(predict, X):
    def run():
        for i in range(1000):
            predict(X[i:i + 1])
        return 1000
    return run


def whole(predict, X):
    def run():
        predict(X)
        return len(X)
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("limen")
    ap.add_argument("bench")
    ap.add_argument("work")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--http-seconds", type=int, default=5, help="per route per round; 0 skips HTTP")
    ap.add_argument("--conns", type=int, default=16)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    rng = np.random.default_rng(3)
    X, margin = table(rng, 30_000)
    names = [f"x{i}" for i in range(20)]
    binary = (margin > 0).astype(int)[:20_000]
    three = np.digitize(margin, np.quantile(margin, [1 / 3, 2 / 3]))[:20_000]
    X_train, X_test = X[:20_000], X[20_000:].copy()
    X_test[rng.random(X_test.shape) < 0.03] = np.nan
    X_test = np.ascontiguousarray(X_test)
    X_test.astype("<f8").tofile(os.path.join(a.work, "rows.f64"))
    store = os.path.join(a.work, "store")

    cases = []
    for kind, y, classes, rounds in [("binary", binary, ["no", "yes"], 500),
                                     ("three-class", three, ["low", "mid", "high"], 100)]:
        multi = len(classes) > 2
        data = os.path.join(a.work, f"{kind}.csv")
        with open(data, "w") as f:
            f.write(",".join(names + ["label"]) + "\n")
            for row, label in zip(X_train[:2000], y[:2000]):
                f.write(",".join(repr(float(v)) for v in row) + f",{classes[label]}\n")
        t0 = time.perf_counter()
        params = {"objective": "multi:softprob", "num_class": 3} if multi else {"objective": "binary:logistic"}
        booster = xgb.train({**params, "max_depth": 6, "eta": 0.1, "nthread": 2},
                            xgb.DMatrix(X_train, y, feature_names=names), rounds)
        booster.set_param({"nthread": 1})
        xgb_file = os.path.join(a.work, f"xgb-{kind}.json")
        booster.save_model(xgb_file)
        lparams = {"objective": "multiclass", "num_class": 3} if multi else {"objective": "binary"}
        lgbm = lgb.train({**lparams, "num_leaves": 63, "max_depth": 6, "learning_rate": 0.1,
                          "num_threads": 2, "verbose": -1},
                         lgb.Dataset(X_train, y, feature_name=names), rounds)
        lgb_file = os.path.join(a.work, f"lgb-{kind}.txt")
        lgbm.save_model(lgb_file)
        compiled = lleaves.Model(model_file=lgb_file)
        compiled.compile(cache=os.path.join(a.work, f"lleaves-{kind}.o"))
        print(f"{kind}: trained and compiled in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for library, flag, file, theirs in [
            ("XGBoost", "--xgboost", xgb_file,
             lambda X, b=booster: b.inplace_predict(X)),
            ("LightGBM", "--lightgbm", lgb_file,
             lambda X, m=lgbm: m.predict(X, num_threads=1)),
        ]:
            name = f"{library.lower()}-{kind}"
            out = subprocess.run(
                [a.limen, "--store", store, "--max-model-size", "256MiB", "import", name, flag,
                 file, "--data", data, "--label-column", "label", "--classes", ",".join(classes)],
                check=True, capture_output=True, text=True)
            version = out.stdout.strip().splitlines()[-1]
            model = os.path.join(store, name, version, "model.json")
            trees = rounds * (3 if multi else 1)
            scorers = {library: theirs}
            if library == "LightGBM":
                scorers["lleaves"] = lambda X, c=compiled: c.predict(X, n_jobs=1)
            cases.append((f"{library} {kind}, {trees} trees", model, scorers))
            if library == "XGBoost" and not multi:
                http_case = (name, data, X_test[~np.isnan(X_test).any(axis=1)][0])

    results = []
    for title, model, scorers in cases:
        measured = {("limen", 1): [], ("limen", 10_000): []}
        for _ in range(a.rounds):
            out = subprocess.run([a.bench, model, os.path.join(a.work, "rows.f64"), "20",
                                  str(a.seconds)], check=True, capture_output=True, text=True)
            for line in out.stdout.splitlines():
                r = json.loads(line)
                measured[("limen", r["batch"])].append(r["rows_per_s"])
            for who, predict in scorers.items():
                measured.setdefault((who, 1), []).append(
                    rate(one_by_one(predict, X_test), 1000, a.seconds))
                measured.setdefault((who, 10_000), []).append(
                    rate(whole(predict, X_test), 10_000, a.seconds))
        median = {k: statistics.median(v) for k, v in measured.items()}
        for batch in (1, 10_000):
            row = {"case": title, "batch": batch, "limen": median[("limen", batch)]}
            for who in scorers:
                row[who] = median[(who, batch)]
            results.append(row)
            others = ", ".join(f"{who} {row[who]:,.0f} ({row['limen'] / row[who]:.2f}x)"
                               for who in scorers)
            print(f"{title}, batch {batch}: limen {row['limen']:,.0f} rows/s; {others}",
                  file=sys.stderr)

    print("| model | batch | limen rows/s | library rows/s | limen ÷ library | lleaves rows/s | limen ÷ lleaves |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        library = "XGBoost" if "XGBoost" in r else "LightGBM"
        ll = r.get("lleaves")
        lleaves_rate = f"{ll:,.0f}" if ll else "–"
        lleaves_ratio = f"{r['limen'] / ll:.2f}" if ll else "–"
        print(f"| {r['case']} | {r['batch']:,} | {r['limen']:,.0f} | {r[library]:,.0f} | "
              f"{r['limen'] / r[library]:.2f} | {lleaves_rate} | {lleaves_ratio} |")


    if a.http_seconds > 0:
        http(a, store, names, *http_case)


def http(a, store, names, tree_model, tree_data, row):
    """Requests per second of the tree model's /predict against Iris's, interleaved."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("httpbench", os.path.join(root, "benches", "httpbench.py"))
    hb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hb)
    env = dict(os.environ, LIMEN_STORE=store, LIMEN_LOG="error")
    run = lambda *args: subprocess.run([a.limen, *args], env=env, check=True, capture_output=True)
    run("validate", "--model", tree_model, "--data", tree_data)
    run("train", "--cv-folds", "0", "--data", os.path.join(root, "data", "iris.csv"))
    run("validate")
    proc, port, _ = hb.start_server(env)
    try:
        tree_body = json.dumps({n: float(v) for n, v in zip(names, row)})
        routes = [("iris", hb.SEED), (tree_model, tree_body)]
        rps = {name: [] for name, _ in routes}
        for _ in range(a.rounds):
            for name, body in routes:
                r = hb.wrk(port, f"/models/{name}/predict", "POST", body, a.conns, a.http_seconds, 2)
                if r.get("errors", 0) or r.get("non2xx", 0):
                    sys.exit(f"{name}: {r}")
                rps[name].append(r["rps"])
        iris, trees = (statistics.median(rps[name]) for name, _ in routes)
        print(f"\nHTTP, {a.conns} connections, {a.rounds} interleaved rounds of {a.http_seconds} s: "
              f"Iris /predict {iris:,.0f} req/s, 500-tree /predict {trees:,.0f} req/s: "
              f"{trees / iris:.2f} x (rounds: iris {[round(x) for x in rps['iris']]}, "
              f"trees {[round(x) for x in rps[tree_model]]})")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
