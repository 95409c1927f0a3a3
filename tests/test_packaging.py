"""The one-import-root layout: every package folder is declared and importable as aigp.*."""

from __future__ import annotations

import importlib
import pkgutil
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_declared() -> None:
    cfg = _config()
    declared = set(cfg["packages"])
    mapping = cfg["package-dir"]
    found = set()
    for name, folder in mapping.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            if any(part.startswith(".") or part in ("tests", "__pycache__") for part in rel.parts):
                continue
            found.add(".".join([name, *rel.parts]))
    # Sub-packages of a mapped folder that sit under aigp/ itself are found through "aigp".
    missing = sorted(found - declared)
    assert not missing, f"add these packages to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_every_module_imports() -> None:
    failures = []
    for package in _config()["packages"]:
        mod = importlib.import_module(package)
        for info in pkgutil.iter_modules(mod.__path__, prefix=f"{package}."):
            if ".tests" in info.name or info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except Exception as exc:
                failures.append(f"{info.name}: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures)
