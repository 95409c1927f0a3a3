"""Offline schema checks for manifests: core kinds with kubernetes-validate (the Kubernetes OpenAPI JSON
schemas, strict: unknown fields fail), KServe kinds with the KServe SDK's generated models (the CRD schema as
Python types): walked recursively so unknown or mistyped fields fail, then built with client-side
validation so missing required fields fail."""

from __future__ import annotations

import re
from typing import Any

KUBERNETES_VERSION = "1.30.0"
KSERVE_KINDS = {("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
                ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime"}


def _model_class(name: str) -> Any:
    import kserve.models
    import kubernetes.client.models

    return getattr(kserve.models, name, None) or getattr(kubernetes.client.models, name)


def openapi_errors(value: Any, type_name: str, path: str = "") -> list[str]:
    """Every way ``value`` (plain YAML data) does not fit the generated model type ``type_name``."""
    if type_name == "object":
        return []
    if type_name == "str":
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {value!r}"]
    if type_name == "bool":
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean, got {value!r}"]
    if type_name == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected an integer, got {value!r}"]
    if type_name == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number, got {value!r}"]
    if type_name == "datetime":
        return [] if isinstance(value, str) else [f"{path}: expected a timestamp string, got {value!r}"]
    if match := re.fullmatch(r"list\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [e for i, item in enumerate(value) for e in openapi_errors(item, match.group(1), f"{path}[{i}]")]
    if match := re.fullmatch(r"dict\(str, (.+)\)", type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping, got {type(value).__name__}"]
        return [e for k, v in value.items() for e in openapi_errors(v, match.group(1), f"{path}.{k}")]
    cls = _model_class(type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({type_name}), got {value!r}"]
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: unknown field of {type_name}")
            continue
        errors.extend(openapi_errors(item, cls.openapi_types[by_json[key]], f"{path}.{key}"))
    if not errors:
        try:  # the generated setters refuse missing required fields and values outside enums
            cls(**{by_json[k]: v for k, v in value.items()})
        except (ValueError, TypeError) as exc:
            errors.append(f"{path or type_name}: {exc}")
    return errors


def kserve_errors(doc: dict[str, Any]) -> list[str]:
    cls_name = KSERVE_KINDS[(doc["apiVersion"], doc["kind"])]
    return openapi_errors(doc, cls_name, f"{doc['kind']}/{doc['metadata'].get('name')}")


def kubernetes_errors(doc: dict[str, Any]) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{doc['kind']}/{doc['metadata'].get('name')}: {exc.message} at {list(exc.path)}"]
    return []


def is_kserve(doc: dict[str, Any]) -> bool:
    return (doc.get("apiVersion"), doc.get("kind")) in KSERVE_KINDS
