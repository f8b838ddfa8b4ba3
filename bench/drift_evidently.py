"""bench-drift's peer: Evidently's data-drift preset on the files bench/drift_gen.py wrote, with
the categorical columns declared as such. Loading the files into DataFrames is not timed; the
report run is. Prints each column's test and score, then the time."""

import json
import sys
import time

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

out = sys.argv[1]
layout = json.load(open(f"{out}/drift.json"))
names = layout["numeric"] + list(layout["categorical"])
rows = layout["rows"]


def frame(path):
    cols = np.fromfile(path, dtype="<f8").reshape(len(names), rows)
    df = pd.DataFrame({n: c for n, c in zip(names, cols)})
    for n in layout["categorical"]:
        df[n] = df[n].astype(int).astype(str)
    return df


reference, current = frame(f"{out}/ref.f64"), frame(f"{out}/cur.f64")
definition = DataDefinition(numerical_columns=layout["numeric"], categorical_columns=list(layout["categorical"]))
started = time.perf_counter()
ref = Dataset.from_pandas(reference, data_definition=definition)
cur = Dataset.from_pandas(current, data_definition=definition)
result = Report([DataDriftPreset()]).run(cur, ref)
took = time.perf_counter() - started
for m in result.dict()["metrics"]:
    name = m.get("metric_name", "")
    if "ValueDrift" in name:
        print(f"{name:<70} {m['value']:.6f}")
print(f"evidently {__import__('evidently').__version__}: {rows} x {rows} rows x {len(names)} features: {took:.3f} s")
