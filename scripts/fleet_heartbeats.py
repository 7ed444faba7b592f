#!/usr/bin/env python3
"""Writes N heartbeat files of M models each into STORE/.fleet (as N servers of a store with M
models would), fresh for a minute, to measure `limen models fleet` on a big fleet:

    python3 scripts/fleet_heartbeats.py STORE [--replicas 10] [--models 1000]
    /usr/bin/time -f "%e s %M KB" limen --store STORE models fleet --json >/dev/null
"""
import argparse
import json
import os
import time

ap = argparse.ArgumentParser()
ap.add_argument("store")
ap.add_argument("--replicas", type=int, default=10)
ap.add_argument("--models", type=int, default=1000)
a = ap.parse_args()
now = int(time.time() * 1000)
folder = os.path.join(a.store, ".fleet")
os.makedirs(folder, exist_ok=True)
for r in range(a.replicas):
    models = {
        f"model-{m:04d}": {"production": 1796200000000 + m, "serving": 1796200000000 + m,
                           "candidate": None, "load_error": None, "candidate_error": None,
                           "predictions": 12345, "out_of_range": 3}
        for m in range(a.models)
    }
    beat = {"instance": f"pod-{r}", "limen_version": "0.1.0", "started_at_ms": now - 60000,
            "written_at_ms": now, "interval_ms": 60000, "poll_interval_ms": 1000,
            "last_scan_ms": now, "models": models}
    with open(os.path.join(folder, f"pod-{r}.json"), "w") as f:
        json.dump(beat, f)
print(f"{a.replicas} heartbeats of {a.models} models in {folder}")
