"""ONNX test fixtures, made from packages on PyPI (pinned in scripts/onnx-requirements.txt).

Trains small models with fixed seeds, exports them as their users would (skl2onnx, onnxmltools)
and records what onnxruntime in Python answers on 1,000 rows, for the platform's parity tests.
Writes into the directory given as the first argument:

  logreg.onnx     Pipeline(ColumnTransformer(StandardScaler, OneHotEncoder), LogisticRegression),
                  one named input per feature, zipmap=False
  gbc.onnx        the same preprocessing and a GradientBoostingClassifier, zipmap=False
  lgbm.onnx       LightGBM via onnxmltools: one 2-D float input in the spec's feature order
  linreg.onnx     the same preprocessing and a LinearRegression (one value per row)
  zipmap.onnx     logreg exported with the exporter's default (a ZipMap output)
  NAME.json       for each model above but zipmap: the rows (as a client sends them) and
                  onnxruntime's answer for each (probability of the positive class, or the value),
                  batched and one row at a time
  versions.json   the packages that made them
"""

import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

OUT = sys.argv[1]
CONTRACTS = ["monthly", "yearly", "two-year"]
OPSET = {"": 17, "ai.onnx.ml": 3}
INPUTS = [
    ("tenure", FloatTensorType([None, 1])),
    ("charges", FloatTensorType([None, 1])),
    ("contract", StringTensorType([None, 1])),
]


def data(n, seed):
    """Customers and whether they churned (and a value to regress on)."""
    rng = np.random.default_rng(seed)
    tenure = rng.uniform(0, 72, n).astype(np.float32)
    charges = rng.lognormal(4.0, 0.4, n).astype(np.float32)
    contract = rng.choice(CONTRACTS, n).astype(object)
    z = 1.2 - tenure / 20 + charges / 80 - 1.5 * (contract == "two-year") + rng.normal(0, 0.8, n)
    value = 3.0 * tenure - 0.5 * charges + 10.0 * (contract == "yearly") + rng.normal(0, 2.0, n)
    df = pd.DataFrame({"tenure": tenure, "charges": charges, "contract": contract})
    return df, (z > 0).astype(np.int64), value


def pipeline(model):
    pre = ColumnTransformer(
        [("num", StandardScaler(), ["tenure", "charges"]), ("cat", OneHotEncoder(handle_unknown="ignore"), ["contract"])]
    )
    return Pipeline([("pre", pre), ("model", model)])


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def feeds(df):
    return {
        "tenure": df["tenure"].to_numpy(np.float32).reshape(-1, 1),
        "charges": df["charges"].to_numpy(np.float32).reshape(-1, 1),
        "contract": df["contract"].to_numpy(object).reshape(-1, 1),
    }


def save(model, name):
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    onnx.checker.check_model(path)
    return path


def record(name, rows, answers, single):
    """The rows as JSON objects and onnxruntime's answers, batched and one row at a time (its
    kernels for one row may round differently), as the parity tests read them."""
    with open(os.path.join(OUT, name), "w") as f:
        json.dump({"rows": rows, "answers": [float(a) for a in answers], "single": [float(a) for a in single]}, f)


def one_by_one(sess, feeds_of_row, n, column):
    """onnxruntime's answer for each of n rows run alone: `column` of its output (None: the value)."""
    out = []
    for i in range(n):
        answer = sess.run(None, feeds_of_row(i))[-1].reshape(-1)
        out.append(answer[column] if column is not None else answer[0])
    return out


def rows_of(df):
    return [
        {"tenure": float(t), "charges": float(c), "contract": str(k)}
        for t, c, k in zip(df["tenure"], df["charges"], df["contract"])
    ]


def classifier(model, name, train, fresh):
    (x, y, _), (fx, _, _) = train, fresh
    fitted = pipeline(model).fit(x, y)
    options = {id(fitted.steps[-1][1]): {"zipmap": False}}
    path = save(convert_sklearn(fitted, initial_types=INPUTS, options=options, target_opset=OPSET), f"{name}.onnx")
    sess = session(path)
    _, probabilities = sess.run(None, feeds(fx))
    single = one_by_one(sess, lambda i: feeds(fx.iloc[[i]]), len(fx), 1)
    record(f"{name}.json", rows_of(fx), probabilities[:, 1], single)
    return fitted


def lightgbm_model(train, fresh):
    import lightgbm
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType as MLFloat

    def matrix(df):
        code = df["contract"].map({c: i for i, c in enumerate(CONTRACTS)}).to_numpy(np.float32)
        return np.stack([df["tenure"].to_numpy(np.float32), df["charges"].to_numpy(np.float32), code], axis=1)

    (x, y, _), (fx, _, _) = train, fresh
    model = lightgbm.LGBMClassifier(n_estimators=60, num_leaves=15, random_state=0, n_jobs=1, verbose=-1)
    model.fit(matrix(x), y)
    exported = onnxmltools.convert_lightgbm(model, initial_types=[("input", MLFloat([None, 3]))], zipmap=False, target_opset=15)
    path = save(exported, "lgbm.onnx")
    m = matrix(fx)
    sess = session(path)
    _, probabilities = sess.run(None, {"input": m})
    single = one_by_one(sess, lambda i: {"input": m[i : i + 1]}, len(m), 1)
    rows = [{"tenure": float(r[0]), "charges": float(r[1]), "contract_code": float(r[2])} for r in m]
    record("lgbm.json", rows, probabilities[:, 1], single)
    return {"lightgbm": lightgbm.__version__, "onnxmltools": onnxmltools.__version__}


def main():
    os.makedirs(OUT, exist_ok=True)
    train, fresh = data(4000, 42), data(1000, 7)
    fitted = classifier(LogisticRegression(max_iter=1000), "logreg", train, fresh)
    classifier(GradientBoostingClassifier(n_estimators=50, max_depth=3, random_state=0), "gbc", train, fresh)
    # The exporter's default: probabilities as a sequence of maps (ZipMap), which the platform refuses.
    save(convert_sklearn(fitted, initial_types=INPUTS, target_opset=OPSET), "zipmap.onnx")
    (x, _, value), (fx, _, _) = train, fresh
    linear = pipeline(LinearRegression()).fit(x, value)
    path = save(convert_sklearn(linear, initial_types=INPUTS, target_opset=OPSET), "linreg.onnx")
    sess = session(path)
    (predicted,) = sess.run(None, feeds(fx))
    single = one_by_one(sess, lambda i: feeds(fx.iloc[[i]]), len(fx), None)
    record("linreg.json", rows_of(fx), predicted.reshape(-1), single)
    extra = lightgbm_model(train, fresh)
    import sklearn
    import skl2onnx

    versions = {"onnxruntime": ort.__version__, "scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__}
    with open(os.path.join(OUT, "versions.json"), "w") as f:
        json.dump({**versions, "onnx": onnx.__version__, **extra}, f, indent=1)


if __name__ == "__main__":
    main()
