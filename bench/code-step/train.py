"""The program `just bench-code` runs as a code step and directly: standardise the 20 numeric
features and fit a logistic regression, export it with skl2onnx. It reports its own run time
(from its first line to its last) in metrics.json as `program_seconds`."""

import time

T0 = time.time()

import json  # noqa: E402
import os  # noqa: E402

import pandas as pd  # noqa: E402
from skl2onnx import convert_sklearn  # noqa: E402
from skl2onnx.common.data_types import FloatTensorType  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

names = [f["name"] for f in json.loads(os.environ["MLOPS_FEATURES"])]
df = pd.read_parquet(os.environ["MLOPS_TRAIN_DATA"])
pre = ColumnTransformer([("num", StandardScaler(), names)])
model = Pipeline([("pre", pre), ("lr", LogisticRegression(max_iter=100))]).fit(df[names], df[os.environ["MLOPS_TARGET"]])
onnx = convert_sklearn(
    model,
    name="bench",
    initial_types=[(n, FloatTensorType([None, 1])) for n in names],
    options={id(model[-1]): {"zipmap": False}},
    target_opset={"": 17, "ai.onnx.ml": 3},
)
out = os.environ["MLOPS_MODEL_DIR"]
with open(os.path.join(out, "model.onnx"), "wb") as f:
    f.write(onnx.SerializeToString())
with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump({"program_seconds": time.time() - T0, "rows": float(len(df))}, f)
