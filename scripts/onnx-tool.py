"""ONNX helpers for the platform's end-to-end tests, run in the venv of scripts/onnx-requirements.txt.

  predict MODEL.onnx ROWS.csv OUT.json   what onnxruntime in Python answers for each row (the
                                         positive class's probability, batched), as JSON
  mlflow MODEL.onnx DIR                  the model as an MLflow model directory of the `onnx`
                                         flavor (MLmodel, model.onnx), as mlflow.onnx.save_model
                                         writes it: tensors of 1 KB or more in an external data
                                         file beside the graph
  lgbm ROWS.csv OUT.onnx                 a LightGBM booster on the four numeric churn features,
                                         exported by onnxmltools: one [N, 4] float input
  mlp ROWS.csv OUT.onnx                  a neural network on three numeric churn features, as
                                         torch.onnx.export writes nn.Sequential(normalise,
                                         Linear, ReLU, Linear, Softmax): built with the onnx
                                         package from weights fitted by scikit-learn (PyTorch's
                                         wheels are gigabytes); one [N, 3] float input
(A model with one [N, F] input records its F columns in the metadata property `features`.)
  zipmap ROWS.csv OUT.onnx               examples/onnx/train.py's model exported with the
                                         exporter's default, a ZipMap output
  nan OUT.onnx                           a churn-shaped graph whose probabilities are NaN
  unknown-op OUT.onnx                    a churn-shaped graph with an operator no runtime has
"""

import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from onnx import TensorProto, helper, numpy_helper

NUMERIC = ["tenure_months", "monthly_charges", "support_calls", "age"]
CATEGORICAL = ["contract", "payment_method"]


def predict(model, rows, out):
    df = pd.read_csv(rows, dtype={c: str for c in CATEGORICAL}, keep_default_na=False, na_values={c: [""] for c in NUMERIC})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    if inputs == ["x"]:
        columns = session.get_modelmeta().custom_metadata_map["features"].split(",")
        feeds = {"x": df[columns].to_numpy(np.float32)}
    else:
        feeds = {c: df[c].to_numpy(np.float32).reshape(-1, 1) for c in NUMERIC}
        feeds.update({c: df[c].to_numpy(object).reshape(-1, 1) for c in CATEGORICAL})
    names = [o.name for o in session.get_outputs()]
    probabilities = session.run(None, feeds)[names.index("probabilities")]
    with open(out, "w") as f:
        json.dump([float(p) for p in probabilities[:, 1]], f)


def mlflow(model, directory):
    os.makedirs(directory, exist_ok=True)
    m = onnx.load(model)
    # Only tensors held as raw bytes move to external data: convert skl2onnx's float lists.
    for t in m.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t), t.name))
    onnx.save_model(
        m,
        os.path.join(directory, "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=1024,
    )
    with open(os.path.join(directory, "MLmodel"), "w") as f:
        f.write(
            "flavors:\n"
            "  onnx:\n"
            "    code: null\n"
            "    data: model.onnx\n"
            f"    onnx_version: {onnx.__version__}\n"
            "    providers: [CPUExecutionProvider]\n"
            "  python_function:\n"
            "    data: model.onnx\n"
            "    env: {virtualenv: python_env.yaml}\n"
            "    loader_module: mlflow.onnx\n"
            "mlflow_version: 2.19.0\n"
        )


def lgbm(rows, out):
    import lightgbm
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    df = pd.read_csv(rows)
    model = lightgbm.LGBMClassifier(n_estimators=60, num_leaves=15, random_state=0, verbose=-1)
    model.fit(df[NUMERIC].to_numpy(np.float32), df["churned"].astype(int))
    onnx_model = onnxmltools.convert_lightgbm(
        model, initial_types=[("x", FloatTensorType([None, len(NUMERIC)]))], zipmap=False, target_opset=15
    )
    helper.set_model_props(onnx_model, {"features": ",".join(NUMERIC)})
    onnx.save(onnx_model, out)


MLP_FEATURES = ["tenure_months", "monthly_charges", "support_calls"]


def mlp(rows, out):
    from sklearn.neural_network import MLPClassifier

    df = pd.read_csv(rows)
    x, y = df[MLP_FEATURES].to_numpy(np.float32), df["churned"].astype(int)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    net = MLPClassifier(hidden_layer_sizes=(16,), max_iter=600, random_state=0).fit((x - mean) / scale, y)
    # scikit-learn's binary output is one logistic unit z; softmax over [0, z] gives the same p.
    w2 = np.hstack([np.zeros_like(net.coefs_[1]), net.coefs_[1]])
    b2 = np.hstack([[0.0], net.intercepts_[1]])
    weights = {"mean": mean, "scale": scale, "w1": net.coefs_[0], "b1": net.intercepts_[0], "w2": w2, "b2": b2}
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "scale"], ["normalised"]),
        helper.make_node("Gemm", ["normalised", "w1", "b1"], ["hidden"]),
        helper.make_node("Relu", ["hidden"], ["activated"]),
        helper.make_node("Gemm", ["activated", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", len(MLP_FEATURES)])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 2])],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {"features": ",".join(MLP_FEATURES)})
    onnx.checker.check_model(model)
    onnx.save(model, out)


def zipmap(rows, out):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples", "onnx"))
    import train

    model, _ = train.export(pd.read_csv(rows, dtype={c: str for c in CATEGORICAL}), "logreg", zipmap=True)
    onnx.save(model, out)


def churn_graph(nodes, extra_opsets=()):
    inputs = [helper.make_tensor_value_info(c, TensorProto.FLOAT, [None, 1]) for c in NUMERIC]
    inputs += [helper.make_tensor_value_info(c, TensorProto.STRING, [None, 1]) for c in CATEGORICAL]
    out = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph(nodes, "churn", inputs, [out])
    opsets = [helper.make_opsetid("", 17), *extra_opsets]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def nan(out):
    nodes = [
        helper.make_node("Constant", [], ["nan"], value=helper.make_tensor("nan", TensorProto.FLOAT, [1], [float("nan")])),
        helper.make_node("Mul", ["tenure_months", "nan"], ["p"]),
        helper.make_node("Concat", ["p", "p"], ["probabilities"], axis=1),
    ]
    onnx.save(churn_graph(nodes), out)


def unknown_op(out):
    nodes = [helper.make_node("Mystery", ["tenure_months"], ["probabilities"], domain="com.example")]
    onnx.save(churn_graph(nodes, [helper.make_opsetid("com.example", 1)]), out)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"predict": predict, "mlflow": mlflow, "lgbm": lgbm, "mlp": mlp, "zipmap": zipmap, "nan": nan, "unknown-op": unknown_op}[command](*args)
