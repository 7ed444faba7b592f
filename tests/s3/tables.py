#!/usr/bin/env python3
"""Tables for tests/s3.rs, written by pyarrow (never by limen):

    python tests/s3/tables.py OUT_DIR [ROWS]

OUT_DIR/churn.parquet and OUT_DIR/churn.csv: the same ROWS rows (default 2,000; seeded): four
numeric features (one with a missing value in no row), a text label `churned` (yes/no), and a
`signup` timestamp column; the CSV written by pyarrow's CSV writer from the same table.
OUT_DIR/churn.<codec>.parquet: the same table compressed with zstd (polars' default), gzip, lz4
and none. OUT_DIR/parts/part-0.parquet, part-1.parquet: the table split in two (Spark's layout).
OUT_DIR/nested.parquet: a table with a list column, which limen must refuse by name.
"""
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

out = sys.argv[1]
rows = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
os.makedirs(os.path.join(out, "parts"), exist_ok=True)
rng = np.random.default_rng(5)
tenure = rng.gamma(2.0, 12.0, rows)
charges = rng.normal(70, 20, rows)
calls = rng.poisson(1.5, rows).astype(np.int64)
discount = rng.uniform(0, 0.3, rows).astype(np.float32)
z = -1.0 - 0.05 * (tenure - 24) + 0.03 * (charges - 70) + 0.6 * (calls - 1.5) - 2 * discount
churned = np.where(rng.uniform(size=rows) < 1 / (1 + np.exp(-z)), "yes", "no")
signup = np.datetime64("2024-01-01T00:00:00") + (np.arange(rows) * 3600).astype("timedelta64[s]")
table = pa.table({
    "tenure": pa.array(tenure, pa.float64()),
    "monthly_charges": pa.array(charges, pa.float64()),
    "support_calls": pa.array(calls, pa.int64()),
    "discount": pa.array(discount, pa.float32()),
    "churned": pa.array(churned, pa.string()).dictionary_encode(),
    "signup": pa.array(signup, pa.timestamp("s")),
})
pq.write_table(table, os.path.join(out, "churn.parquet"))  # snappy, pyarrow's default
for codec in ["zstd", "gzip", "lz4", "none"]:
    pq.write_table(table, os.path.join(out, f"churn.{codec}.parquet"), compression=codec)
plain = table.set_column(4, "churned", table.column("churned").cast(pa.string()))
pacsv.write_csv(plain, os.path.join(out, "churn.csv"))
half = rows // 2
pq.write_table(table.slice(0, half), os.path.join(out, "parts", "part-0.parquet"))
pq.write_table(table.slice(half), os.path.join(out, "parts", "part-1.parquet"))
pq.write_table(pa.table({"tags": pa.array([[1, 2], [3]]), "y": ["a", "b"]}),
               os.path.join(out, "nested.parquet"))
