"""Generates the bench-train inputs: 1M rows x 20 columns (15 numeric, 4 categorical) and a 0/1
label drawn from a non-linear function of them (interactions, a threshold, a sine, category
effects), split 80/20 into train.csv and test.csv, plus the matching pipeline spec. Seeded."""
import sys

import numpy as np
import pandas as pd

rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/mlops-bench"
rng = np.random.default_rng(11)
cols = {f"n{i}": rng.normal(0, 1, rows).round(5) for i in range(15)}
cats = ["alpha", "beta", "gamma", "delta", "epsilon"]
for i in range(4):
    cols[f"c{i}"] = rng.choice(cats, rows)
df = pd.DataFrame(cols)
effect = {"alpha": -0.6, "beta": -0.2, "gamma": 0.0, "delta": 0.3, "epsilon": 0.7}
logit = (
    0.8 * df.n0
    - 0.6 * df.n1
    + 0.9 * df.n2 * df.n3
    + 1.2 * np.sin(2 * df.n4)
    + 1.0 * (df.n5 > 0.5)
    - 0.7 * np.abs(df.n6)
    + 0.3 * df.n7
    + df.c0.map(effect)
    - 0.5 * df.c1.map(effect) * df.n8
    - 0.6
)
df["label"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
cut = int(rows * 0.8)
df.iloc[:cut].to_csv(f"{out}/train.csv", index=False)
df.iloc[cut:].to_csv(f"{out}/test.csv", index=False)

lines = ["name: bench", "features:"]
for i in range(15):
    lines.append(f"  - {{name: n{i}, type: numeric}}")
for i in range(4):
    lines.append(f"  - {{name: c{i}, type: categorical, categories: [{', '.join(cats)}]}}")
lines.append("target: {name: label}")
open(f"{out}/train-spec.yaml", "w").write("\n".join(lines) + "\n")
