"""bench-batch data, seeded: batch-train.csv (200k rows of 20 numeric features f0..f19 and a 0/1
label from a non-linear function of them) to fit the models, batch.parquet (ROWS rows of the same
20 features as float64, row groups of 64k rows) to score, and the two pipeline specs (logistic
regression; boosted trees, 100 trees). Usage: batch_gen.py ROWS OUT"""
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

rows, out = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(20261203)


def features(n):
    return {f"f{i}": rng.normal(0, 1 + i / 10, n) for i in range(20)}


train = pd.DataFrame(features(200_000))
logit = 0.8 * train.f0 - 0.6 * train.f1 + 0.5 * train.f2 * train.f3 + np.sin(train.f4) + 0.4 * (train.f5 > 0.5) - 0.3
train["label"] = (rng.random(len(train)) < 1 / (1 + np.exp(-logit))).astype(int)
train.to_csv(f"{out}/batch-train.csv", index=False)

writer = None
for start in range(0, rows, 1 << 20):
    n = min(1 << 20, rows - start)
    table = pa.table(features(n))
    writer = writer or pq.ParquetWriter(f"{out}/batch.parquet", table.schema)
    writer.write_table(table, row_group_size=1 << 16)
writer.close()

head = ["name: bench", "features:"] + [f"  - {{name: f{i}, type: numeric}}" for i in range(20)] + ["target: {name: label}"]
with open(f"{out}/batch-spec-logistic.yaml", "w") as f:
    f.write("\n".join(head + ["training:", "  algorithm: logistic_regression", "  params: {l2: 1.0, max_iter: 50}"]) + "\n")
with open(f"{out}/batch-spec-gbt.yaml", "w") as f:
    f.write("\n".join(head + ["training:", "  algorithm: gradient_boosting", "  params: {trees: 100}"]) + "\n")
print(f"batch data: {rows} rows x 20 features to score in {out}/batch.parquet")
