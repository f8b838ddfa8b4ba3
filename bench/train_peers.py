"""The peers of `just bench-train` on the same files: scikit-learn's LogisticRegression (default
solver, lbfgs, C=1) and LightGBM (100 trees, its defaults), both on the same inputs as ours —
numeric columns standardised, categories one-hot — timing the fit alone, AUC on test.csv, and the
process's peak resident memory (all of train.csv and test.csv read, 1M rows)."""
import resource
import sys
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

work = sys.argv[1]
which = sys.argv[2:] or ["logistic", "lightgbm"]
train = pd.read_csv(f"{work}/train.csv")
test = pd.read_csv(f"{work}/test.csv")
num = [f"n{i}" for i in range(15)]
cat = [f"c{i}" for i in range(4)]
mean, std = train[num].mean(), train[num].std(ddof=0)


def design(df):
    x = ((df[num] - mean) / std).to_numpy()
    onehot = [(df[c] == v).to_numpy(dtype=float)[:, None] for c in cat for v in ["alpha", "beta", "gamma", "delta", "epsilon"]]
    return np.hstack([x] + onehot)


xtr, ytr = design(train), train.label.to_numpy()
xte, yte = design(test), test.label.to_numpy()
for name in which:
    if name == "logistic":
        model = LogisticRegression()
    else:
        import lightgbm

        model = lightgbm.LGBMClassifier(n_estimators=100, verbose=-1)
    t = time.perf_counter()
    model.fit(xtr, ytr)
    secs = time.perf_counter() - t
    auc = roc_auc_score(yte, model.predict_proba(xte)[:, 1])
    # Peak resident memory of the whole process so far: pandas' frames, the inputs, the fit.
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{name:<9} fit_s={secs:.3f} auc={auc:.4f} rows={len(ytr)} peak_mb={peak_mb:.0f}")
