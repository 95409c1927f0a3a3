"""aigp.kustomize: the subset of kustomize the manifests use, pinned on small kustomizations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from aigp.kustomize import KustomizeError, _retag, build


def _write(directory: Path, files: dict[str, Any]) -> Path:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else yaml.safe_dump_all(content)
                        if isinstance(content, list) else yaml.safe_dump(content))
    return directory


DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
          "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "reg:5000/team/web:1.0", "args": ["a"]}],
                                         "initContainers": [{"name": "i", "image": "busybox"}]}}}}
CRD = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "llm"},
       "spec": {"predictor": {"containers": [{"name": "k", "image": "reg:5000/team/web@sha256:abc"}]}}}
ROLE = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "reader"},
        "rules": []}


def test_resources_namespace_labels_images_patches_in_kustomize_order(tmp_path: Path) -> None:
    _write(tmp_path / "base", {
        "res.yaml": [DEPLOY, CRD, ROLE],
        "kustomization.yaml": {"resources": ["res.yaml"], "labels": [{"pairs": {"team": "pricing"},
                                                                       "includeSelectors": False}]},
    })
    overlay = _write(tmp_path / "overlay", {"kustomization.yaml": {
        "namespace": "prod",
        "resources": ["../base"],
        "images": [{"name": "reg:5000/team/web", "newTag": "2.0"}, {"name": "busybox", "newName": "mirror/busybox"}],
        "patches": [{"target": {"kind": "Deployment", "name": "web"}, "patch": yaml.safe_dump([
            {"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "b"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/args/0", "value": "A"},
            {"op": "add", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/metadata/annotations", "value": {"x/y": "z"}},
        ])}, {"target": {"group": "serving.kserve.io", "kind": "InferenceService"}, "patch": yaml.safe_dump([
            {"op": "remove", "path": "/spec/predictor/containers/0/name"},
        ])}],
    }})
    deploy, crd, role = build(overlay)
    assert deploy["metadata"] == {"name": "web", "namespace": "prod", "labels": {"team": "pricing"},
                                  "annotations": {"x/y": "z"}}
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container == {"name": "c", "image": "reg:5000/team/web:2.0", "args": ["A", "b"]}
    assert deploy["spec"]["template"]["spec"]["initContainers"][0]["image"] == "mirror/busybox"
    assert deploy["spec"]["replicas"] == 3
    assert "labels" not in deploy["spec"]["template"].get("metadata", {})  # includeSelectors: false
    # the image transformer reaches containers inside custom resources too; a digest becomes the new tag
    assert crd["spec"]["predictor"]["containers"] == [{"image": "reg:5000/team/web:2.0"}]
    assert crd["metadata"]["namespace"] == "prod"
    assert "namespace" not in role["metadata"]  # cluster-scoped kinds keep no namespace


def test_components_apply_after_the_resources_they_patch(tmp_path: Path) -> None:
    _write(tmp_path / "base", {"res.yaml": [DEPLOY], "kustomization.yaml": {"resources": ["res.yaml"]}})
    _write(tmp_path / "comp", {"kustomization.yaml": {
        "apiVersion": "kustomize.config.k8s.io/v1alpha1", "kind": "Component",
        "patches": [{"target": {"kind": "Deployment"}, "patch": yaml.safe_dump(
            [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": "--lora"}])}]}})
    overlay = _write(tmp_path / "o", {"kustomization.yaml": {"resources": ["../base"], "components": ["../comp"]}})
    assert build(overlay)[0]["spec"]["template"]["spec"]["containers"][0]["args"] == ["a", "--lora"]
    wrong = _write(tmp_path / "w", {"kustomization.yaml": {"resources": ["../comp"]}})
    with pytest.raises(KustomizeError, match="a Component can only be used from `components:`"):
        build(wrong)


@pytest.mark.parametrize(("kustomization", "message"), [
    ({"resources": ["res.yaml"], "commonLabels": {"a": "b"}}, r"unsupported field\(s\) \['commonLabels'\]"),
    ({"resources": ["missing.yaml"]}, "resource 'missing.yaml' does not exist"),
    ({"resources": ["res.yaml", "res.yaml"]}, "appears twice"),
    ({"resources": ["res.yaml"], "patches": [{"target": {"kind": "Deployment", "name": "nope"},
                                              "patch": "[]"}]}, "matches no resource"),
    ({"resources": ["res.yaml"], "patches": [{"target": {"kind": "Deployment"},
                                              "patch": "spec: {replicas: 2}"}]}, "only JSON 6902 patches"),
    ({"resources": ["res.yaml"], "patches": [{"target": {"kind": "Deployment"}, "patch": yaml.safe_dump(
        [{"op": "replace", "path": "/spec/nothing", "value": 1}])}]}, "/spec/nothing does not exist"),
    ({"resources": ["res.yaml"], "patches": [{"target": {"kind": "Deployment"}, "patch": yaml.safe_dump(
        [{"op": "move", "from": "/a", "path": "/b"}])}]}, "op 'move' is not supported"),
    ({"resources": ["res.yaml"], "labels": [{"pairs": {"a": "b"}, "includeSelectors": True}]},
     "includeSelectors: false"),
    ({"resources": ["."]}, "cycle"),
])
def test_unsupported_or_wrong_kustomizations_fail_loudly(tmp_path: Path, kustomization: dict, message: str) -> None:
    _write(tmp_path, {"res.yaml": [DEPLOY], "kustomization.yaml": kustomization})
    with pytest.raises(KustomizeError, match=message):
        build(tmp_path)


def test_image_references_are_split_like_kustomize() -> None:
    image = {"name": "reg:5000/team/web", "newTag": "9"}
    assert _retag("reg:5000/team/web", image) == "reg:5000/team/web:9"
    assert _retag("reg:5000/team/web:1", image) == "reg:5000/team/web:9"
    assert _retag("reg:5000/team/webapp:1", image) == "reg:5000/team/webapp:1"  # another image
    assert _retag("reg:5000/team/web:1", {"name": "reg:5000/team/web", "digest": "sha256:f"}) == \
        "reg:5000/team/web@sha256:f"
    assert _retag("web:1", {"name": "web", "newName": "mirror/web"}) == "mirror/web:1"
