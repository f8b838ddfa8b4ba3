"""bench-drift data: ROWS reference and ROWS current rows of 20 features, as raw little-endian
float64 columns (ref.f64, cur.f64, column after column) plus drift.json naming them. 15 continuous
features (5 of them shifted by 0.3 sd in the current data), 2 integer features with 4 values, and 3
categorical ones as integer codes (one with shifted shares). Seeded: the same files every run."""

import json
import sys

import numpy as np

rows, out = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(20261201)
numeric = [f"num_{i:02}" for i in range(15)]
discrete = ["count_a", "count_b"]
categorical = {"cat_a": 4, "cat_b": 6, "cat_c": 3}


def columns(shifted):
    cols = []
    for i, _ in enumerate(numeric):
        mean, sd = i * 1.5, 1.0 + i * 0.2
        shift = 0.3 * sd if shifted and i < 5 else 0.0
        cols.append(rng.normal(mean + shift, sd, rows))
    for _ in discrete:
        cols.append(rng.integers(0, 4, rows).astype(np.float64))
    for j, (name, k) in enumerate(categorical.items()):
        p = np.full(k, 1.0 / k)
        if shifted and j == 0:
            p = np.array([0.4, 0.3, 0.2, 0.1])
        cols.append(rng.choice(k, rows, p=p).astype(np.float64))
    return np.stack(cols)


columns(False).astype("<f8").tofile(f"{out}/ref.f64")
columns(True).astype("<f8").tofile(f"{out}/cur.f64")
with open(f"{out}/drift.json", "w") as f:
    json.dump({"rows": rows, "numeric": numeric + discrete, "categorical": categorical}, f)
print(f"{rows} x {len(numeric) + len(discrete) + len(categorical)} reference and current rows in {out}")
