"""Train a churn model in scikit-learn, as in a notebook, and export it to ONNX for the platform.

    python train.py customers.csv model.onnx [--model logreg|gbc|mlp]

The whole scikit-learn Pipeline is exported — imputation, scaling and one-hot encoding included —
so the platform passes raw feature values, exactly as a client sends them. The graph has one
named input per feature of `examples/churn.yaml` and its class probabilities as a tensor
(`zipmap: False`), which is the platform's contract. Then:

    mlops models import churn model.onnx --description "notebook model"
"""

import argparse

import pandas as pd
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "age"]
CATEGORICAL = ["contract", "payment_method"]
TARGET = "churned"

MODELS = {
    "logreg": lambda: LogisticRegression(max_iter=500),
    "gbc": lambda: GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=0),
    "mlp": lambda: MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=400, random_state=0),
}


def export(df, name, zipmap=False):
    """The pipeline `name` fitted on `df`, as an ONNX model, and its training accuracy."""
    x, y = df[NUMERIC + CATEGORICAL], df[TARGET].astype(int)
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    pre = ColumnTransformer(
        [("num", numeric, NUMERIC), ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)]
    )
    classifier = MODELS[name]()
    model = Pipeline([("pre", pre), ("model", classifier)]).fit(x, y)
    inputs = [(c, FloatTensorType([None, 1])) for c in NUMERIC]
    inputs += [(c, StringTensorType([None, 1])) for c in CATEGORICAL]
    onnx = convert_sklearn(
        model,
        initial_types=inputs,
        options={id(classifier): {"zipmap": zipmap}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return onnx, model.score(x, y)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a CSV with the features and the `churned` label")
    parser.add_argument("out", help="where to write the .onnx file")
    parser.add_argument("--model", choices=sorted(MODELS), default="logreg")
    args = parser.parse_args()
    df = pd.read_csv(args.data, dtype={c: str for c in CATEGORICAL})
    onnx, accuracy = export(df, args.model)
    with open(args.out, "wb") as f:
        f.write(onnx.SerializeToString())
    print(f"{args.model}: trained on {len(df)} rows, training accuracy {accuracy:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
