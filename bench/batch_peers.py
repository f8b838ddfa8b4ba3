"""The peers of `just bench-batch`, on the same files: the equivalent scikit-learn models
(standardisation and L2 logistic regression with C = 1; HistGradientBoostingClassifier with 100
trees) fitted on batch-train.csv.
  batch_peers.py sklearn WORK          batch.parquet read with pandas, predict_proba, the rows with
                                       their probability written as Parquet: rows/s of the whole
                                       and of predict_proba alone, and peak resident memory
  batch_peers.py mlflow WORK ROWS      the same model saved with mlflow.sklearn; the first ROWS rows
                                       as CSV scored by `mlflow models predict` (its batch path):
                                       rows/s of the command"""
import os
import resource
import subprocess
import sys
import time

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

peer, work = sys.argv[1], sys.argv[2]
train = pd.read_csv(f"{work}/batch-train.csv")
x, y = train.drop(columns=["label"]), train["label"]
models = {
    "logistic": make_pipeline(StandardScaler(), LogisticRegression(C=1.0)).fit(x, y),
    "gbt": HistGradientBoostingClassifier(max_iter=100, early_stopping=False).fit(x, y),
}
if peer == "sklearn":
    for name, model in models.items():
        began = time.perf_counter()
        rows = pd.read_parquet(f"{work}/batch.parquet")
        scoring = time.perf_counter()
        rows["probability"] = model.predict_proba(rows)[:, 1]
        scored = time.perf_counter()
        rows.to_parquet(f"{work}/batch-sklearn.parquet")
        secs = time.perf_counter() - began
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        n = len(rows)
        print(f"sklearn {name:<9} {n} rows in {secs:.2f} s: {n / secs:.0f} rows/s (read, scored, written); "
              f"predict_proba alone {n / (scored - scoring):.0f} rows/s; peak {peak:.0f} MB resident")
        del rows
elif peer == "mlflow":
    import shutil

    import mlflow.sklearn

    n = int(sys.argv[3])
    pd.read_parquet(f"{work}/batch.parquet").head(n).to_csv(f"{work}/batch-mlflow.csv", index=False)
    for name, model in models.items():
        path = f"{work}/mlflow-batch-{name}"
        shutil.rmtree(path, ignore_errors=True)
        mlflow.sklearn.save_model(model, path, serialization_format="cloudpickle")
        began = time.perf_counter()
        subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "mlflow"), "models", "predict", "-m", path, "-i",
             f"{work}/batch-mlflow.csv", "-t", "csv", "-o", f"{work}/batch-mlflow-{name}.json", "--env-manager",
             "local"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        secs = time.perf_counter() - began
        print(f"mlflow  {name:<9} {n} rows in {secs:.2f} s: {n / secs:.0f} rows/s (`mlflow models predict`, CSV in, JSON out)")
else:
    sys.exit(__doc__)
