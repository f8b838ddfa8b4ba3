"""bench-serve data: N rows of six numeric features and a 0/1 label (a logistic relation with
noise), and the pipeline spec for them. Standard library only, seeded."""
import math
import random
import sys

rows, work = int(sys.argv[1]), sys.argv[2]
rng = random.Random(7)
names = ["tenure", "charges", "calls", "age", "usage", "discount"]
weights = [-0.8, 0.6, 0.9, -0.2, -0.4, 0.3]
with open(f"{work}/serve.csv", "w") as out:
    out.write(",".join(names + ["label"]) + "\n")
    for _ in range(rows):
        x = [round(rng.gauss(0, 1), 4) for _ in names]
        p = 1 / (1 + math.exp(-sum(w * v for w, v in zip(weights, x))))
        out.write(",".join(map(str, x)) + f",{int(rng.random() < p)}\n")
features = "\n".join(f"  - {{name: {n}, type: numeric}}" for n in names)
# Three specs: every prediction logged to the bus (as production runs), none (as the peers), and
# none with no training at all, for the imported ONNX model.
for suffix, sample, triggers in [("", 1.0, ""), ("-nolog", 0.0, ""), ("-onnx", 0.0, ", triggers: {on: []}")]:
    with open(f"{work}/serve-spec{suffix}.yaml", "w") as out:
        out.write(f"name: bench\nfeatures:\n{features}\ntarget: {{name: label}}\n"
                  f"training: {{algorithm: logistic_regression{triggers}}}\ndeployment: {{log_sample: {sample}}}\n")
