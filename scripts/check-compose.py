#!/usr/bin/env python3
"""Validates docker-compose.yml against the Compose specification's JSON schema
(deploy/compose-spec.schema.json, from docker-compose 1.29.2, Apache-2.0), without a
Docker engine. Needs PyYAML and jsonschema (scripts/test.sh installs them with pip)."""
import json, os, sys
import jsonschema, yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
schema = json.load(open(os.path.join(ROOT, "deploy", "compose-spec.schema.json")))
doc = yaml.safe_load(open(os.path.join(ROOT, "docker-compose.yml")))
errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
for e in errors:
    print("docker-compose.yml:", "/".join(str(p) for p in e.path) or "(top)", "-", e.message)
if errors:
    sys.exit(1)
print("docker-compose.yml: valid against the Compose specification schema")
