#!/usr/bin/env python3
"""Writes a mixed training table for the benchmarks of issue 26: four numeric columns and three
text columns of 20 categories each, 10 % of every cell missing, a binary label that depends on
all seven. Standard library only. Usage: scripts/mixed_csv.py OUT.csv [ROWS] (100,000 default).
Also the shape of the /predict benchmark's model (benches/http.sh mixed)."""
import math
import random
import sys

out, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
random.seed(26)
cats = ["plan", "region", "device"]
effects = {c: [random.gauss(0, 1) for _ in range(20)] for c in cats}
weights = [random.gauss(0, 1) for _ in range(4)]
with open(out, "w") as f:
    f.write("age,income,score,tenure,plan,region,device,label\n")
    chunk = []
    for _ in range(n):
        x = [random.gauss(0, 1) for _ in range(4)]
        codes = [random.randrange(20) for _ in cats]
        z = sum(w * v for w, v in zip(weights, x)) + sum(effects[c][k] for c, k in zip(cats, codes))
        label = "yes" if random.random() < 1 / (1 + math.exp(-z)) else "no"
        cells = [f"{40 + 12 * x[0]:.2f}", f"{60000 + 20000 * x[1]:.0f}", f"{x[2]:.4f}",
                 f"{24 + 30 * x[3]:.1f}"] + [f"{c}_{k:02d}" for c, k in zip(cats, codes)]
        cells = ["" if random.random() < 0.1 else v for v in cells]
        chunk.append(",".join(cells) + f",{label}\n")
        if len(chunk) == 100_000:
            f.write("".join(chunk))
            chunk = []
    f.write("".join(chunk))
