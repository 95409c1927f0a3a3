"""Render kustomize overlays in Python: exactly the subset of kustomize that ``manifests/`` uses.

No kustomize binary can be installed from the package registries this project relies on (Debian's
``kubernetes-client`` is kubectl 1.20 with kustomize v2, which lacks ``patches``/``labels``/components; PyPI
has no official build), so CI renders the overlays with this module. Where a real ``kubectl kustomize`` is on
PATH the tests also render with it and require identical output (see tests/test_manifests.py).

Supported kustomization fields (anything else is an error, never silently ignored):
``apiVersion``, ``kind`` (Kustomization | Component), ``resources`` (YAML files, or directories holding a
kustomization), ``components``, ``namespace``, ``labels`` (``pairs`` with ``includeSelectors: false``),
``images`` (``name`` + ``newName`` / ``newTag`` / ``digest``) and ``patches`` (inline or file JSON 6902
patches with a ``target`` selecting ``group``/``version``/``kind``/``name``; ops add, replace, remove).

Transformer order follows kustomize: resources, then components, then patches, namespace, labels, images.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "components", "namespace", "labels", "images", "patches"}
# Kinds that are not namespaced (the namespace transformer leaves them alone).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
                  "StorageClass", "PriorityClass", "ClusterServingRuntime", "ClusterStorageContainer",
                  "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "APIService"}


class KustomizeError(ValueError):
    """A kustomization uses something this renderer does not support, or is wrong; names the file."""


def build(path: str | Path) -> list[dict[str, Any]]:
    """Render the kustomization in directory ``path`` into a list of resources (like ``kustomize build``)."""
    return _build(Path(path).resolve(), expect_component=False, stack=())


def to_yaml(resources: Iterable[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(r, sort_keys=True, default_flow_style=False) for r in resources)


def _kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    raise KustomizeError(f"{directory}: no kustomization.yaml")


def _build(directory: Path, expect_component: bool, stack: tuple[Path, ...]) -> list[dict[str, Any]]:
    if directory in stack:
        raise KustomizeError(f"cycle: {' -> '.join(str(p) for p in (*stack, directory))}")
    kfile = _kustomization_file(directory)
    spec = yaml.safe_load(kfile.read_text()) or {}
    unknown = set(spec) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported field(s) {sorted(unknown)} (supported: {sorted(SUPPORTED_FIELDS)})")
    kind = spec.get("kind", "Kustomization")
    if expect_component and kind != "Component":
        raise KustomizeError(f"{kfile}: listed under components but kind is {kind!r}")
    if not expect_component and kind == "Component":
        raise KustomizeError(f"{kfile}: a Component can only be used from `components:`")
    resources: list[dict[str, Any]] = []
    for entry in spec.get("resources") or []:
        resources.extend(_load_resource(directory, entry, (*stack, directory)))
    _check_unique(resources, kfile)
    for entry in spec.get("components") or []:
        component_dir = (directory / entry).resolve()
        component_spec = yaml.safe_load(_kustomization_file(component_dir).read_text()) or {}
        if component_spec.get("kind") != "Component":
            raise KustomizeError(f"{component_dir}: listed under components but kind is {component_spec.get('kind')!r}")
        for res_entry in component_spec.get("resources") or []:
            resources.extend(_load_resource(component_dir, res_entry, (*stack, directory)))
        _check_unique(resources, kfile)
        resources = _transform(resources, component_spec, component_dir)
    return _transform(resources, spec, directory)


def _load_resource(directory: Path, entry: str, stack: tuple[Path, ...]) -> list[dict[str, Any]]:
    target = (directory / entry).resolve()
    if target.is_dir():
        return _build(target, expect_component=False, stack=stack)
    if not target.is_file():
        raise KustomizeError(f"{directory}: resource {entry!r} does not exist")
    docs = [d for d in yaml.safe_load_all(target.read_text()) if d is not None]
    for doc in docs:
        if (not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc
                or "name" not in (doc.get("metadata") or {})):
            raise KustomizeError(f"{target}: every document needs apiVersion, kind and metadata.name")
    return docs


def _check_unique(resources: list[dict[str, Any]], kfile: Path) -> None:
    seen = set()
    for r in resources:
        key = _identity(r)
        if key in seen:
            raise KustomizeError(f"{kfile}: resource {key} appears twice")
        seen.add(key)


def _identity(r: dict[str, Any]) -> tuple[str, str, str, str]:
    return (r["apiVersion"], r["kind"], r["metadata"].get("namespace", ""), r["metadata"]["name"])


def _transform(resources: list[dict[str, Any]], spec: dict[str, Any], directory: Path) -> list[dict[str, Any]]:
    resources = [copy.deepcopy(r) for r in resources]
    for patch in spec.get("patches") or []:
        _apply_patch_entry(resources, patch, directory)
    if spec.get("namespace"):
        _set_namespace(resources, spec["namespace"])
    for label in spec.get("labels") or []:
        extra = set(label) - {"pairs", "includeSelectors"}
        if extra or label.get("includeSelectors", False):
            raise KustomizeError(f"{directory}: labels supports only `pairs` with includeSelectors: false")
        for r in resources:
            r["metadata"].setdefault("labels", {}).update({str(k): str(v) for k, v in label["pairs"].items()})
    for image in spec.get("images") or []:
        _set_images(resources, image, directory)
    return resources


def _set_namespace(resources: list[dict[str, Any]], namespace: str) -> None:
    """kustomize's namespace transformer plus its name reference for binding subjects: a ServiceAccount
    subject follows the ServiceAccount of the same build into the new namespace; ``default`` always does."""
    moved = {(r["metadata"]["name"], r["metadata"].get("namespace", ""))
             for r in resources if r["kind"] == "ServiceAccount"}
    for r in resources:
        if r["kind"] not in CLUSTER_SCOPED:
            r["metadata"]["namespace"] = namespace
    for r in resources:
        if r["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        for subject in r.get("subjects") or []:
            if subject.get("kind") != "ServiceAccount":
                continue
            if subject.get("name") == "default" or (subject.get("name"), subject.get("namespace", "")) in moved:
                subject["namespace"] = namespace


def _apply_patch_entry(resources: list[dict[str, Any]], entry: dict[str, Any], directory: Path) -> None:
    if set(entry) - {"target", "patch", "path"} or "target" not in entry or ("patch" in entry) == ("path" in entry):
        raise KustomizeError(f"{directory}: each patch needs a `target` and exactly one of `patch` / `path`")
    text = entry["patch"] if "patch" in entry else (directory / entry["path"]).read_text()
    ops = yaml.safe_load(text)
    if not isinstance(ops, list):
        raise KustomizeError(f"{directory}: only JSON 6902 patches (a list of operations) are supported")
    target = entry["target"]
    unknown = set(target) - {"group", "version", "kind", "name"}
    if unknown:
        raise KustomizeError(f"{directory}: patch target fields {sorted(unknown)} are not supported")
    matched = [r for r in resources if _matches(r, target)]
    if not matched:
        raise KustomizeError(f"{directory}: patch target {target} matches no resource")
    for r in matched:
        for op in ops:
            _json_patch(r, op, directory)


def _matches(resource: dict[str, Any], target: dict[str, Any]) -> bool:
    group, _, version = resource["apiVersion"].rpartition("/")
    return ((target.get("kind") in (None, resource["kind"]))
            and (target.get("name") in (None, resource["metadata"]["name"]))
            and (target.get("group") in (None, group)) and (target.get("version") in (None, version)))


def _pointer(path: str, directory: Path) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"{directory}: JSON pointer {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch(doc: dict[str, Any], op: dict[str, Any], directory: Path) -> None:
    kind = op.get("op")
    if kind not in ("add", "replace", "remove"):
        raise KustomizeError(f"{directory}: JSON patch op {kind!r} is not supported (add, replace, remove)")
    parts = _pointer(op["path"], directory)
    parent: Any = doc
    for part in parts[:-1]:
        try:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        except (KeyError, IndexError, ValueError):
            raise KustomizeError(f"{directory}: path {op['path']} does not exist in {doc['kind']}/"
                                 f"{doc['metadata']['name']}") from None
    last = parts[-1]
    if isinstance(parent, list):
        if kind == "add" and last == "-":
            parent.append(copy.deepcopy(op["value"]))
            return
        try:
            index = int(last)
        except ValueError:
            raise KustomizeError(f"{directory}: {op['path']}: {last!r} is not a list index") from None
        if not 0 <= index < len(parent) + (1 if kind == "add" else 0):
            raise KustomizeError(f"{directory}: {op['path']}: index {index} out of range")
        if kind == "add":
            parent.insert(index, copy.deepcopy(op["value"]))
        elif kind == "replace":
            parent[index] = copy.deepcopy(op["value"])
        else:
            del parent[index]
        return
    if not isinstance(parent, dict):
        raise KustomizeError(f"{directory}: {op['path']}: parent is not an object or list")
    if kind in ("replace", "remove") and last not in parent:
        raise KustomizeError(f"{directory}: {op['path']} does not exist in {doc['kind']}/{doc['metadata']['name']}")
    if kind == "remove":
        del parent[last]
    else:
        parent[last] = copy.deepcopy(op["value"])


def _set_images(resources: list[dict[str, Any]], image: dict[str, Any], directory: Path) -> None:
    if "name" not in image or not set(image) - {"name"} or set(image) - {"name", "newName", "newTag", "digest"}:
        raise KustomizeError(f"{directory}: images entries need `name` and newName / newTag / digest")

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    for container in value:
                        if isinstance(container, dict) and isinstance(container.get("image"), str):
                            container["image"] = _retag(container["image"], image)
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    for r in resources:
        visit(r)


def _split_image(ref: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference."""
    name, digest = [*ref.split("@", 1), ""][:2]
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
    return name, tag, digest


def _retag(ref: str, image: dict[str, Any]) -> str:
    name, tag, digest = _split_image(ref)
    if name != image["name"]:
        return ref
    name = image.get("newName", name)
    if "digest" in image:
        return f"{name}@{image['digest']}"
    if "newTag" in image:
        return f"{name}:{image['newTag']}"
    return f"{name}:{tag}" if tag else (f"{name}@{digest}" if digest else name)
