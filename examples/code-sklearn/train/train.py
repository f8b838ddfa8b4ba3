"""Trains the churn model on the training window the platform hands over, and writes it as ONNX.

The platform's contract (README, "Your own training code"): the rows are in MLOPS_TRAIN_DATA
(Parquet, the holdout already removed), the model goes to MLOPS_MODEL_DIR/model.onnx, and
`progress F` lines on stdout feed `mlops runs watch`. Run it by hand the same way:

    MLOPS_TRAIN_DATA=train.parquet MLOPS_MODEL_DIR=out MLOPS_FEATURES='[...]' \
    MLOPS_TARGET=churned MLOPS_PARAMS='{"C": 1}' MLOPS_SEED=42 python train.py
"""

import json
import os

import pandas as pd
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from features import build_features, numeric_and_categorical


def main():
    features = json.loads(os.environ["MLOPS_FEATURES"])
    target = os.environ["MLOPS_TARGET"]
    params = json.loads(os.environ.get("MLOPS_PARAMS", "{}"))
    seed = int(os.environ.get("MLOPS_SEED", "0"))
    numeric, categorical = numeric_and_categorical(features)

    df = pd.read_parquet(os.environ["MLOPS_TRAIN_DATA"])
    print(f"read {len(df)} training rows", flush=True)
    print("progress 0.2", flush=True)
    x, y = df[numeric + categorical], df[target]

    classifier = LogisticRegression(C=params.get("C", 1.0), max_iter=int(params.get("max_iter", 500)), random_state=seed)
    model = Pipeline([("features", build_features(numeric, categorical)), ("model", classifier)]).fit(x, y)
    print("progress 0.8", flush=True)

    inputs = [(c, FloatTensorType([None, 1])) for c in numeric]
    inputs += [(c, StringTensorType([None, 1])) for c in categorical]
    # A fixed graph name: skl2onnx's default is random, which would make every run's bytes differ.
    onnx = convert_sklearn(
        model,
        name="churn_code",
        initial_types=inputs,
        options={id(classifier): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    out = os.environ["MLOPS_MODEL_DIR"]
    with open(os.path.join(out, "model.onnx"), "wb") as f:
        f.write(onnx.SerializeToString())
    # The program's own numbers, kept beside the platform's holdout metrics.
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"train_accuracy": model.score(x, y)}, f)
    print("progress 1.0", flush=True)


if __name__ == "__main__":
    main()
