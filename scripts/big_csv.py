#!/usr/bin/env python3
"""Writes a large training table for memory measurements: data/iris.csv's rows repeated, with a
little noise on sepal_length so rows differ. Usage: scripts/big_csv.py OUT.csv [ROWS]
(8,000,000 rows by default: about 227 MB)."""
import random
import sys

out, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8_000_000
rows = [line.strip().split(",") for line in open("data/iris.csv")][1:]
random.seed(1)
with open(out, "w") as f:
    f.write("sepal_length,sepal_width,petal_length,petal_width,species\n")
    chunk = []
    for i in range(n):
        r = rows[i % len(rows)]
        chunk.append(f"{float(r[0]) + random.random() * 0.01:.4f},{r[1]},{r[2]},{r[3]},{r[4]}\n")
        if len(chunk) == 100_000:
            f.write("".join(chunk))
            chunk = []
    f.write("".join(chunk))
