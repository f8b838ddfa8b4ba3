"""The peer: pandera validating the same file against the same schema, plus the same profile
(count, nulls, min, max, mean, std, quantiles, histogram, top categories) with pandas."""
import resource
import sys
import time

import numpy as np
import pandas as pd
import pandera.pandas as pa

path = sys.argv[1]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
cats = ["alpha", "beta", "gamma", "delta", "epsilon"]
columns = {f"n{i}": pa.Column(float, pa.Check.in_range(-1000, 1000), nullable=(i == 3)) for i in range(15)}
columns.update({f"c{i}": pa.Column(str, pa.Check.isin(cats)) for i in range(4)})
columns["label"] = pa.Column(int, pa.Check.isin([0, 1]))
schema = pa.DataFrameSchema(columns)

times = []
for _ in range(runs):
    t = time.perf_counter()
    df = pd.read_csv(path) if path.endswith(".csv") else pd.read_parquet(path)
    schema.validate(df, lazy=True)
    for i in range(15):
        s = df[f"n{i}"]
        s.count(), s.isna().sum(), s.min(), s.max(), s.mean(), s.std()
        s.quantile([0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
        np.histogram(s.dropna(), bins=20)
    for i in range(4):
        df[f"c{i}"].value_counts()
    times.append(time.perf_counter() - t)
times.sort()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"rows={len(df)} runs={runs} median_s={times[len(times) // 2]:.3f} min_s={times[0]:.3f} peak_rss_mb={peak:.0f}")
