// Validates the KEDA objects in a JSON file (an array) against KEDA's schemas, as
// @kubernetes-models/keda carries them; exits 1 naming each one refused. Used by check_k8s.py.
import { readFileSync } from "node:fs";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";

const models = { ScaledObject };
let refused = 0;
for (const o of JSON.parse(readFileSync(process.argv[2], "utf8"))) {
  const Model = models[o.kind];
  try {
    if (!Model) throw new Error(`no KEDA schema for ${o.apiVersion} ${o.kind} here`);
    new Model(o).validate();
  } catch (e) {
    refused += 1;
    console.log(`${o.kind} ${o.metadata?.name}: ${e.message}`);
  }
}
process.exit(refused ? 1 : 0);
