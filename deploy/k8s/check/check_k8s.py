"""Renders each overlay of deploy/k8s as `kubectl kustomize` does and validates every object:
Kubernetes kinds against the Kubernetes schemas (kubernetes-validate, strict: an unknown field is
an error), KEDA's ScaledObject against KEDA's (@kubernetes-models/keda, through keda.mjs).

The renderer knows the kustomize features these manifests use (resources, components, namespace,
labels, configMapGenerator, images, JSON 6902 patches) and refuses any other, so it never silently
renders something else than kustomize would. Where kubectl is installed, its own rendering of each
overlay is compared with ours (generated ConfigMaps' hash suffixes aside).

Usage: check_k8s.py K8S_DIR KEDA_CHECKER   (KEDA_CHECKER: the path of keda.mjs, its packages
installed beside it); check_k8s.py --self-test KEDA_CHECKER shows that broken objects are refused.
"""
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile

import kubernetes_validate
import yaml

KUBERNETES = "1.30.0"
KNOWN = {"apiVersion", "kind", "resources", "components", "namespace", "labels", "configMapGenerator", "images", "patches"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume"}


class Refused(Exception):
    pass


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def json_patch(doc, ops, where):
    """Applies JSON 6902 operations (add, remove, replace) to doc."""
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if isinstance(parent, list):
            last = len(parent) if last == "-" else int(last)
        if op["op"] == "add":
            if isinstance(parent, list):
                parent.insert(last, op["value"])
            else:
                parent[last] = op["value"]
        elif op["op"] in ("remove", "replace"):
            try:
                parent[last]
            except (KeyError, IndexError):
                raise Refused(f"{where}: {op['op']} {op['path']}: no such path")
            if op["op"] == "remove":
                del parent[last]
            else:
                parent[last] = op["value"]
        else:
            raise Refused(f"{where}: JSON patch operation {op['op']!r} is not supported here")


def matches(o, target):
    return all((o["kind"] if k == "kind" else o["metadata"]["name"]) == v for k, v in target.items())


def patch(objects, patches, where):
    for p in patches:
        if set(p) - {"target", "patch"} or set(p.get("target", {})) - {"kind", "name"}:
            raise Refused(f"{where}: only patches with target kind/name and a JSON 6902 patch are supported")
        ops = yaml.safe_load(p["patch"])
        if not isinstance(ops, list):
            raise Refused(f"{where}: only JSON 6902 patches (a list of operations) are supported")
        hits = [o for o in objects if matches(o, p["target"])]
        if not hits:
            raise Refused(f"{where}: patch target {p['target']} matches nothing")
        for o in hits:
            json_patch(o, ops, where)


def set_image(containers, images):
    for c in containers or []:
        name, sep, tag = c["image"].rpartition(":")
        if not sep or "/" in tag:
            name, tag = c["image"], ""
        for i in images:
            if i["name"] == name:
                new = i.get("newName", name)
                c["image"] = f"{new}@{i['digest']}" if "digest" in i else f"{new}:{i.get('newTag', tag)}" if i.get("newTag", tag) else new


def build(directory):
    """The objects the kustomization (or component) in directory renders."""
    k = load(os.path.join(directory, "kustomization.yaml"))[0]
    where = os.path.join(directory, "kustomization.yaml")
    if set(k) - KNOWN:
        raise Refused(f"{where}: unsupported fields {sorted(set(k) - KNOWN)}")
    objects = []
    for r in k.get("resources", []):
        path = os.path.join(directory, r)
        objects += build(path) if os.path.isdir(path) else load(path)
    for c in k.get("components", []):
        component = load(os.path.join(directory, c, "kustomization.yaml"))[0]
        if component.get("kind") != "Component":
            raise Refused(f"{where}: component {c} is not a Component")
        for r in component.get("resources", []):
            objects += load(os.path.join(directory, c, r))
        patch(objects, component.get("patches", []), os.path.join(directory, c))
    for g in k.get("configMapGenerator", []):
        literals = dict(l.split("=", 1) for l in g.get("literals", []))
        if g.get("behavior") == "merge":
            existing = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == g["name"]]
            if not existing:
                raise Refused(f"{where}: configMapGenerator {g['name']} merges into nothing")
            existing[0]["data"].update(literals)
        else:
            objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": g["name"]}, "data": literals})
    patch(objects, k.get("patches", []), where)
    for o in objects:
        if "namespace" in k and o["kind"] not in CLUSTER_SCOPED:
            o["metadata"]["namespace"] = k["namespace"]
        for l in k.get("labels", []):
            o["metadata"].setdefault("labels", {}).update(l["pairs"])
            if l.get("includeTemplates") and o["kind"] in WORKLOADS:
                o["spec"]["template"]["metadata"].setdefault("labels", {}).update(l["pairs"])
                for claim in o["spec"].get("volumeClaimTemplates", []):
                    claim["metadata"].setdefault("labels", {}).update(l["pairs"])
        if o["kind"] in WORKLOADS and "images" in k:
            spec = o["spec"]["template"]["spec"]
            set_image(spec.get("containers"), k["images"])
            set_image(spec.get("initContainers"), k["images"])
    return objects


def canonical(objects):
    """The objects comparable with kustomize's output: generated names without their hash."""
    text = json.dumps(objects, sort_keys=True)
    for o in objects:
        name = o["metadata"]["name"]
        if o["kind"] == "ConfigMap" and len(name) > 11 and name[-11] == "-":
            text = text.replace(f'"{name}"', f'"{name[:-11]}"')
    return sorted(json.dumps(o, sort_keys=True) for o in json.loads(text))


def validate(objects, where, keda_checker):
    """Every object against its schema; the ScaledObjects through keda_checker."""
    failures, keda = [], []
    for o in objects:
        name = f"{where}: {o['kind']} {o['metadata']['name']}"
        if o["apiVersion"].startswith("keda.sh/"):
            keda.append(o)
            continue
        try:
            kubernetes_validate.validate(o, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{name}: {e.message} at {'.'.join(str(p) for p in e.path)}")
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{name}: no schema for {o['apiVersion']} {o['kind']} in Kubernetes {KUBERNETES}")
    if keda:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(keda, f)
        out = subprocess.run(["node", keda_checker, f.name], capture_output=True, text=True)
        os.unlink(f.name)
        if out.returncode != 0:
            failures.append(f"{where}: {out.stdout.strip()} {out.stderr.strip()}")
    return failures


def check(k8s, keda_checker):
    overlays = sorted(os.path.join(k8s, "overlays", o) for o in os.listdir(os.path.join(k8s, "overlays")))
    failures = []
    for overlay in overlays:
        objects = build(overlay)
        failures += validate(objects, overlay, keda_checker)
        kinds = sorted({o["kind"] for o in objects})
        print(f"{overlay}: {len(objects)} objects ({', '.join(kinds)}) rendered and checked")
        if shutil.which("kubectl"):
            theirs = [d for d in yaml.safe_load_all(subprocess.run(["kubectl", "kustomize", overlay], capture_output=True, text=True, check=True).stdout) if d]
            if canonical(theirs) != canonical(objects):
                ours, kubectl = set(canonical(objects)) - set(canonical(theirs)), set(canonical(theirs)) - set(canonical(objects))
                failures.append(f"{overlay}: renders differently from kubectl kustomize: ours {sorted(ours)[:1]}, kubectl's {sorted(kubectl)[:1]}")
            else:
                print(f"{overlay}: the same as kubectl kustomize renders it")
        else:
            print(f"{overlay}: kubectl not installed, its rendering not compared")
    return failures


def self_test(keda_checker):
    """Broken objects must be refused: an unknown field, a wrong type, a patch that misses."""
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replica": 2, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    scaled = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "x"}, "spec": {"scaleTargetRef": {"name": "x"}, "minReplicaCount": "zero", "triggers": []}}
    assert validate([deployment], "self-test", keda_checker), "an unknown Deployment field passed"
    assert validate([scaled], "self-test", keda_checker), "a ScaledObject with a text replica count passed"
    good = copy.deepcopy(scaled)
    good["spec"]["minReplicaCount"] = 0
    assert not validate([good], "self-test", keda_checker), "a good ScaledObject was refused"
    try:
        patch([deployment], [{"target": {"kind": "Deployment", "name": "y"}, "patch": "- {op: remove, path: /spec}"}], "self-test")
        raise AssertionError("a patch that matches nothing passed")
    except Refused:
        pass
    print("self-test: an unknown field, a wrong type and a patch that matches nothing are refused")


if __name__ == "__main__":
    if sys.argv[1] == "--self-test":
        self_test(sys.argv[2])
        sys.exit(0)
    try:
        problems = check(sys.argv[1], sys.argv[2])
    except Refused as e:
        problems = [str(e)]
    for p in problems:
        print(f"FAILED {p}")
    sys.exit(1 if problems else 0)
