"""Generates the bench-data inputs: 1M rows x 20 columns (15 numeric, 4 categorical, 1 label),
seeded, as CSV and Parquet, plus the matching pipeline spec."""
import sys

import numpy as np
import pandas as pd

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/mlops-bench"
rng = np.random.default_rng(7)
cols = {}
for i in range(15):
    v = rng.normal(50 + i, 10, rows).round(4)
    if i == 3:
        v[rng.random(rows) < 0.02] = np.nan
    cols[f"n{i}"] = v
cats = ["alpha", "beta", "gamma", "delta", "epsilon"]
for i in range(4):
    cols[f"c{i}"] = rng.choice(cats, rows)
cols["label"] = (rng.random(rows) < 0.3).astype(int)
df = pd.DataFrame(cols)
df.to_csv(f"{out}/data.csv", index=False)
df.to_parquet(f"{out}/data.parquet", index=False)

lines = ["name: bench", "features:"]
for i in range(15):
    nullable = ", nullable: true" if i == 3 else ""
    lines.append(f"  - {{name: n{i}, type: numeric, min: -1000, max: 1000{nullable}}}")
for i in range(4):
    lines.append(f"  - {{name: c{i}, type: categorical, categories: [{', '.join(cats)}]}}")
lines.append("target: {name: label}")
open(f"{out}/spec.yaml", "w").write("\n".join(lines) + "\n")
