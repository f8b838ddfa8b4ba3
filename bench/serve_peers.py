"""bench-serve peers: the equivalent scikit-learn model (standardisation, then L2 logistic
regression with C = 1, as ours) fitted on the same CSV, saved for MLflow's `models serve` or for
MLServer's scikit-learn runtime, or exported to ONNX (skl2onnx, one [N, 6] float input, the
probabilities as a tensor) for the platform to import. Usage: serve_peers.py mlflow|mlserver|onnx WORK PORT"""
import json
import os
import sys

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

peer, work, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = pd.read_csv(f"{work}/serve.csv")
x, y = data.drop(columns=["label"]), data["label"]
model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0)).fit(x, y)
if peer == "mlflow":
    import shutil

    import mlflow.sklearn

    path = f"{work}/mlflow-model"
    shutil.rmtree(path, ignore_errors=True)
    mlflow.sklearn.save_model(model, path, input_example=x.head(2))
elif peer == "onnx":
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onnx = convert_sklearn(model, initial_types=[("x", FloatTensorType([None, x.shape[1]]))],
                           options={id(model[-1]): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    with open(f"{work}/bench.onnx", "wb") as f:
        f.write(onnx.SerializeToString())
else:
    import joblib

    root = f"{work}/mlserver"
    os.makedirs(f"{root}/bench", exist_ok=True)
    joblib.dump(model, f"{root}/bench/model.joblib")
    with open(f"{root}/bench/model-settings.json", "w") as f:
        json.dump({"name": "bench", "implementation": "mlserver_sklearn.SKLearnModel",
                   "parameters": {"uri": "./model.joblib"}}, f)
    with open(f"{root}/settings.json", "w") as f:
        json.dump({"http_port": port, "grpc_port": port + 1, "metrics_port": port + 2}, f)
