#!/usr/bin/env python3
"""Validates Kubernetes manifests: the core kinds against Kubernetes' own schemas
(kubernetes-validate from PyPI, strict: an unknown field is an error), the custom
resources against their CRDs' schemas vendored in deploy/kubernetes/schemas/ with the
version they come from (strict too: a field the CRD does not declare is an error, where
the CRD does not keep unknown fields).

    scripts/check-k8s.py [FILE ...]      # default: deploy/kubernetes/*.yaml

Prints one line per document and exits 1 if any is invalid. tests/stack.rs runs it on the
shipped manifests and on broken copies of them.
"""
import copy
import glob
import json
import os
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMAS = os.path.join(ROOT, "deploy", "kubernetes", "schemas")
# The Kubernetes release the manifests are checked against.
K8S_VERSION = "1.33.0"


def strict(schema):
    """The schema with `additionalProperties: false` wherever an object lists its
    properties and neither allows extra ones nor keeps unknown fields."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


def crd_schemas():
    """By (apiVersion, kind): the vendored CRD schema, made strict, with its source."""
    out = {}
    for path in sorted(glob.glob(os.path.join(SCHEMAS, "*.json"))):
        with open(path) as f:
            d = json.load(f)
        schema = strict(d["schema"])
        # metadata is the API server's, not the CRD's: any object.
        schema.setdefault("properties", {})["metadata"] = {"type": "object"}
        out[(d["apiVersion"], d["kind"])] = (schema, d["version"], os.path.basename(path))
    return out


def int_or_string(checker, instance):
    return isinstance(instance, (int, str)) and not isinstance(instance, bool)


def check(doc, crds):
    """None when valid, else why not."""
    if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
        return "not a Kubernetes object (no kind or apiVersion)"
    key = (doc["apiVersion"], doc["kind"])
    if key in crds:
        schema, _, _ = crds[key]
        validator = jsonschema.Draft7Validator(schema)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            return "; ".join(
                f"{'.'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
                for e in errors[:5]
            )
        return None
    if "." in doc["apiVersion"].split("/")[0] and "/" in doc["apiVersion"]:
        return f"no schema for {doc['apiVersion']} {doc['kind']}: vendor its CRD's schema in deploy/kubernetes/schemas/"
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path) or "(top)"
        return f"{path}: {e.message}"
    except kubernetes_validate.SchemaNotFoundError as e:
        return f"no Kubernetes {K8S_VERSION} schema for it: {e}"
    return None


def main(argv):
    files = argv or sorted(glob.glob(os.path.join(ROOT, "deploy", "kubernetes", "*.yaml")))
    crds = crd_schemas()
    bad = 0
    for path in files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        for i, doc in enumerate(docs):
            name = f"{os.path.relpath(path, ROOT)}[{i}] {doc.get('kind', '?')} {doc.get('metadata', {}).get('name', '?')}"
            why = check(doc, crds)
            if why:
                bad += 1
                print(f"INVALID {name}: {why}")
            else:
                key = (doc["apiVersion"], doc["kind"])
                against = (
                    f"CRD schema {crds[key][2]} ({crds[key][1]})"
                    if key in crds
                    else f"Kubernetes {K8S_VERSION}"
                )
                print(f"ok {name} against {against}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
