"""Trains a LightGBM churn model on the training window the platform hands over, and writes it as
ONNX: imputation and one-hot encoding in a scikit-learn Pipeline around an LGBMClassifier, so the
graph takes raw feature values by name, as the platform serves them.

MLOPS_PARAMS holds LightGBM's parameters (`n_estimators`, `num_leaves`, `learning_rate`, ...);
a `training.search` in the spec tries several, one run of this program each.
"""

import json
import os

import pandas as pd
from lightgbm import LGBMClassifier
from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
from skl2onnx import convert_sklearn, update_registered_converter
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

# skl2onnx converts the Pipeline; onnxmltools converts the booster inside it.
update_registered_converter(
    LGBMClassifier,
    "LightGbmLGBMClassifier",
    calculate_linear_classifier_output_shapes,
    convert_lightgbm,
    options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
)

WHOLE = {"n_estimators", "num_leaves", "max_depth", "min_child_samples"}


def main():
    features = json.loads(os.environ["MLOPS_FEATURES"])
    numeric = [f["name"] for f in features if f["type"] == "numeric"]
    categorical = [f["name"] for f in features if f["type"] == "categorical"]
    params = {k: int(v) if k in WHOLE else v for k, v in json.loads(os.environ.get("MLOPS_PARAMS", "{}")).items()}

    df = pd.read_parquet(os.environ["MLOPS_TRAIN_DATA"])
    x, y = df[numeric + categorical], df[os.environ["MLOPS_TARGET"]]
    print(f"training LightGBM on {len(df)} rows with {params}", flush=True)

    booster = LGBMClassifier(random_state=int(os.environ.get("MLOPS_SEED", "0")), n_jobs=1, verbose=-1, **params)
    pre = ColumnTransformer(
        [
            ("num", SimpleImputer(strategy="median"), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
        ]
    )
    model = Pipeline([("features", pre), ("model", booster)]).fit(x, y)
    print("progress 0.8", flush=True)

    inputs = [(c, FloatTensorType([None, 1])) for c in numeric]
    inputs += [(c, StringTensorType([None, 1])) for c in categorical]
    # A fixed graph name: skl2onnx's default is random, which would make every run's bytes differ.
    onnx = convert_sklearn(
        model,
        name="churn_lgbm",
        initial_types=inputs,
        options={id(booster): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    out = os.environ["MLOPS_MODEL_DIR"]
    with open(os.path.join(out, "model.onnx"), "wb") as f:
        f.write(onnx.SerializeToString())
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"train_accuracy": model.score(x, y), "trees": float(booster.n_estimators_)}, f)


if __name__ == "__main__":
    main()
