"""Checks the deployer's Open Inference Protocol v2 endpoints with NVIDIA's tritonclient, the
client KServe and Triton users already have: HTTP and gRPC, health, metadata, readiness, inference
with named inputs (FP64, FP32, INT64, BYTES; several rows), one 2-D tensor, versioned calls, and
errors. Prints one line per check and exits non-zero at the first mismatch.

Usage: tritonclient_check.py HOST:PORT MODEL VERSION
"""

import sys

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

URL, MODEL, VERSION = sys.argv[1:4]

ROWS = [
    # tenure_months, monthly_charges, support_calls, age (NaN: missing), contract, payment_method
    (3, 80.0, 2, 30.0, "month-to-month", "card"),
    (40, 35.5, 0, float("nan"), "two-year", "bank-transfer"),
    (12, 99.9, 5, 51.0, "one-year", "electronic-check"),
]
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "age", "contract", "payment_method"]


def text(x):
    """A BYTES element as text: JSON answers come as str, binary and gRPC ones as bytes."""
    return x.decode() if isinstance(x, bytes) else str(x)


def check(what, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + what + (f": {detail}" if detail else ""), flush=True)
    if not ok:
        sys.exit(1)


def named_inputs(mod, binary):
    """One input per feature, in the datatypes a client would naturally pick."""
    columns = list(zip(*ROWS))
    arrays = [
        ("tenure_months", "INT64", np.array(columns[0], dtype=np.int64)),
        ("monthly_charges", "FP32", np.array(columns[1], dtype=np.float32)),
        ("support_calls", "INT64", np.array(columns[2], dtype=np.int64)),
        ("age", "FP64", np.array(columns[3], dtype=np.float64)),
        ("contract", "BYTES", np.array([c.encode() for c in columns[4]], dtype=np.object_)),
        ("payment_method", "BYTES", np.array([c.encode() for c in columns[5]], dtype=np.object_)),
    ]
    inputs = []
    for name, datatype, array in arrays:
        i = mod.InferInput(name, list(array.shape), datatype)
        if binary is None:
            i.set_data_from_numpy(array)
        else:
            i.set_data_from_numpy(array, binary_data=binary)
        inputs.append(i)
    return inputs


def matrix_input(mod, binary):
    """The same rows as one [rows, features] BYTES tensor in the model's feature order."""
    cells = [["" if isinstance(v, float) and np.isnan(v) else str(v) for v in row] for row in ROWS]
    array = np.array([[c.encode() for c in row] for row in cells], dtype=np.object_)
    i = mod.InferInput("input", list(array.shape), "BYTES")
    if binary is None:
        i.set_data_from_numpy(array)
    else:
        i.set_data_from_numpy(array, binary_data=binary)
    return [i]


def outputs(mod, binary):
    names = ["probability", "label", "prediction_id"]
    if binary is None:
        return [mod.InferRequestedOutput(n) for n in names]
    return [mod.InferRequestedOutput(n, binary_data=binary) for n in names]


def exercise(kind, client, mod, binary):
    check(f"{kind} server live", client.is_server_live())
    check(f"{kind} server ready", client.is_server_ready())
    meta = client.get_server_metadata()
    name = meta["name"] if isinstance(meta, dict) else meta.name
    check(f"{kind} server metadata", bool(name), name)
    check(f"{kind} model ready", client.is_model_ready(MODEL))
    check(f"{kind} model ready at version {VERSION}", client.is_model_ready(MODEL, VERSION))
    check(f"{kind} an unknown model is not ready", not client.is_model_ready("no-such-model"))
    model = client.get_model_metadata(MODEL)
    inputs = [i["name"] for i in model["inputs"]] if isinstance(model, dict) else [i.name for i in model.inputs]
    check(f"{kind} model metadata lists the features", inputs == FEATURES, str(inputs))

    result = client.infer(MODEL, named_inputs(mod, binary), outputs=outputs(mod, binary))
    p = result.as_numpy("probability")
    labels = result.as_numpy("label")
    ids = result.as_numpy("prediction_id")
    check(f"{kind} infer: one probability per row", p is not None and p.shape == (3,), repr(p))
    check(f"{kind} infer: probabilities in [0, 1]", bool(np.all((p >= 0) & (p <= 1))), repr(p))
    check(f"{kind} infer: labels follow the probabilities",
          [text(l) for l in labels] == ["1" if x >= 0.5 else "0" for x in p], repr(labels))
    check(f"{kind} infer: a prediction id per row", len({text(i) for i in ids}) == 3, repr(ids))
    check(f"{kind} infer: the served version answers", result.get_response()["model_version"] == VERSION
          if isinstance(result.get_response(), dict) else result.get_response().model_version == VERSION)

    versioned = client.infer(MODEL, named_inputs(mod, binary), model_version=VERSION, outputs=outputs(mod, binary))
    check(f"{kind} infer at version {VERSION}", np.allclose(versioned.as_numpy("probability"), p, rtol=1e-6))
    matrix = client.infer(MODEL, matrix_input(mod, binary), outputs=outputs(mod, binary))
    # FP32 charges round differently from their decimal text: the same to single precision.
    check(f"{kind} infer with one 2-D tensor", np.allclose(matrix.as_numpy("probability"), p, rtol=1e-5),
          f"{matrix.as_numpy('probability')} vs {p}")

    for what, call in [
        ("an unknown model", lambda: client.infer("no-such-model", named_inputs(mod, binary))),
        ("an unserved version", lambda: client.infer(MODEL, named_inputs(mod, binary), model_version="999")),
        ("a missing feature", lambda: client.infer(MODEL, named_inputs(mod, binary)[1:])),
    ]:
        try:
            call()
            check(f"{kind} {what} is refused", False, "it was answered")
        except InferenceServerException as e:
            check(f"{kind} {what} is refused with a message", bool(e.message()), e.message())


exercise("http", httpclient.InferenceServerClient(url=URL), httpclient, False)
exercise("grpc", grpcclient.InferenceServerClient(url=URL), grpcclient, None)
print("all checks passed")
