"""The package map, enforced.

- The core (the ``aigp/`` folder: the domain) imports no platform framework (MLflow, kfp, KServe, Feast,
  Evidently, Prometheus, boto3) and no platform folder (``aigp.components``, ``aigp.registry``, ...), not even
  lazily inside a function. ``aigp/cli/`` is the composition root: it wires the core and the platform together
  and is the one part of ``aigp/`` allowed to import both.
- No file in the core is over 600 lines without a reason in its docstring.
- The README's "Where each part lives" table names every top-level package folder, and nothing else.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "aigp"
COMPOSITION_ROOT = "aigp.cli"
FRAMEWORKS = ("mlflow", "kfp", "kfp_kubernetes", "kserve", "feast", "evidently", "prometheus_client", "boto3",
              "botocore")
MAX_LINES = 600
LONG_FILE_REASON = re.compile(r"over 600 lines because", re.I)


def _platform_folders() -> tuple[str, ...]:
    """The folders that map into ``aigp`` (``components/`` is ``aigp.components``): read from pyproject."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return tuple(sorted(name for name, folder in mapping.items() if name != "aigp"))


def _module_name(path: Path, core: Path) -> str:
    parts = list(path.relative_to(core.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module a file imports, anywhere in it (top level, functions, TYPE_CHECKING blocks), relative
    imports resolved, plus ``importlib.import_module("...")`` / ``__import__("...")`` with a literal name."""
    found: list[tuple[int, str]] = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]  # `from aigp import serving`
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def boundary_violations(core: Path, platform: tuple[str, ...] = ()) -> list[str]:
    """``path:line imports X`` for every import of a platform framework or folder from the core at ``core``."""
    platform = platform or _platform_folders()
    bad = []
    for path in sorted(core.rglob("*.py")):
        module = _module_name(path, core)
        if module == COMPOSITION_ROOT or module.startswith(COMPOSITION_ROOT + "."):
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, target in _imported(tree, module, path.name == "__init__.py"):
            top = target.split(".")[0]
            outside = (*platform, COMPOSITION_ROOT)  # the core never reaches up into the CLI either
            if top in FRAMEWORKS or any(target == p or target.startswith(p + ".") for p in outside):
                bad.append(f"{path.relative_to(core.parent)}:{line} imports {target}")
    return sorted(set(bad))


def test_the_core_imports_no_platform_framework_or_folder() -> None:
    assert boundary_violations(CORE) == []


def test_the_boundary_check_finds_a_planted_violation(tmp_path) -> None:
    core = tmp_path / "aigp"
    (core / "ltve").mkdir(parents=True)
    (core / "cli").mkdir()
    (core / "__init__.py").write_text("")
    (core / "ltve" / "__init__.py").write_text("")
    (core / "ltve" / "critic.py").write_text(
        "import numpy as np\n"
        "from aigp.action import project_to_safe\n"
        "def track():\n"
        "    import mlflow  # lazily: still a violation\n"
        "    from ..registry import storage\n"
        "    from aigp import serving\n"
        "    from aigp.cli._common import console\n"
        "    import importlib\n"
        "    return importlib.import_module('kserve')\n")
    (core / "cli" / "__init__.py").write_text("import kfp\nfrom aigp.registry import storage\n")  # composition root
    found = boundary_violations(core, ("aigp.registry", "aigp.serving"))
    assert found == ["aigp/ltve/critic.py:4 imports mlflow", "aigp/ltve/critic.py:5 imports aigp.registry",
                     "aigp/ltve/critic.py:5 imports aigp.registry.storage",
                     "aigp/ltve/critic.py:6 imports aigp.serving", "aigp/ltve/critic.py:7 imports aigp.cli._common",
                     "aigp/ltve/critic.py:7 imports aigp.cli._common.console", "aigp/ltve/critic.py:9 imports kserve"]


def _long_files(core: Path) -> list[str]:
    long = []
    for path in sorted(core.rglob("*.py")):
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_LINES and not LONG_FILE_REASON.search(ast.get_docstring(ast.parse(text)) or ""):
            long.append(f"{path.relative_to(core.parent)}: {lines} lines, no 'over 600 lines because ...' in its "
                        "docstring")
    return long


def test_no_core_file_over_600_lines_without_a_reason(tmp_path) -> None:
    assert _long_files(CORE) == []
    planted = tmp_path / "aigp"
    planted.mkdir()
    (planted / "big.py").write_text('"""A module."""\n' + "x = 1\n" * (MAX_LINES + 1))
    (planted / "justified.py").write_text('"""A module; over 600 lines because X."""\n' + "x = 1\n" * (MAX_LINES + 1))
    assert [line.split(":")[0] for line in _long_files(planted)] == ["aigp/big.py"]


def _readme_folders() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Where each part lives", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([\w./-]+)/` \|", section, re.M))


def test_the_readme_package_map_matches_the_tree() -> None:
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    packages = set(mapping.values())  # aigp and the folders that map into it
    others = {"bench", "manifests", "tests", "docs"}
    on_disk = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name in packages | others}
    assert packages <= on_disk
    assert _readme_folders() == on_disk, "update README.md's 'Where each part lives' table"


@pytest.mark.parametrize("folder", sorted(set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                                                  ["tool"]["setuptools"]["package-dir"].values()) - {"aigp"}))
def test_every_platform_folder_is_linted(folder: str) -> None:
    lint = re.search(r"^LINT_PATHS := (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert lint is not None and folder in lint.group(1).split()
