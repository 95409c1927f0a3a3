"""Offline schema checks for manifests: core kinds with kubernetes-validate (the Kubernetes OpenAPI JSON
schemas, strict: unknown fields fail), KServe kinds against KServe's own CRDs (``tests/schemas/kserve-<version>/``,
vendored unmodified): the served version's ``openAPIV3Schema``, made strict the way ``kubectl apply
--validate=strict`` is (an unknown field fails wherever the schema does not preserve unknown fields)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

KUBERNETES_VERSION = "1.30.0"
CRD_DIR = next((Path(__file__).resolve().parent / "schemas").glob("kserve-v*"))
KSERVE_VERSION = CRD_DIR.name.removeprefix("kserve-")
KSERVE_CRDS = {"InferenceService": "serving.kserve.io_inferenceservices.yaml",
               "ServingRuntime": "serving.kserve.io_servingruntimes.yaml"}
KSERVE_GROUP = "serving.kserve.io"


def _strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that lists its properties and does not
    preserve unknown fields (a structural CRD schema prunes such fields silently; strict validation refuses them)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """{(apiVersion, kind): strict JSON schema} for every served version of the vendored KServe CRDs."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schemas = {}
    for kind, filename in KSERVE_CRDS.items():
        crd = yaml.load((CRD_DIR / filename).read_text(), Loader=loader)  # CSafeLoader or SafeLoader
        assert crd["spec"]["names"]["kind"] == kind and crd["spec"]["group"] == KSERVE_GROUP, filename
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                schemas[(f"{KSERVE_GROUP}/{version['name']}", kind)] = schema
    return schemas


def _location(path: Any) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def kserve_errors(doc: dict[str, Any]) -> list[str]:
    """Every way ``doc`` does not fit its KServe CRD's schema: one line each, the field path first."""
    import jsonschema

    schema = crd_schemas()[(doc["apiVersion"], doc["kind"])]
    validator = jsonschema.Draft7Validator(schema)
    name = f"{doc['kind']}/{doc['metadata'].get('name')}"
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{name}{_location(e.absolute_path)}: {e.message}" for e in errors]


def kubernetes_errors(doc: dict[str, Any]) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{doc['kind']}/{doc['metadata'].get('name')}: {exc.message} at {list(exc.path)}"]
    return []


def is_kserve(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith(KSERVE_GROUP + "/") and doc.get("kind") in KSERVE_CRDS
