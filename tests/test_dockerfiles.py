"""The two images, checked without a docker engine: parse the Dockerfiles and check what matters."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# whole name parts: TOKENIZERS_PARALLELISM is fine, HF_TOKEN is not
SECRET_WORDS = re.compile(r"(?<![A-Za-z])(PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIALS?)(?![A-Za-z])", re.I)


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, backslash continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, f"{path}: dangling line continuation"
    return instructions


def _all(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in instructions if kw == keyword]


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return value


def _common_checks(path: Path) -> list[tuple[str, str]]:
    instructions = parse_dockerfile(path)
    assert instructions[0] == ("FROM", "python:3.11-slim"), f"{path}: base image"
    users = _all(instructions, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{path}: must end as a non-root user"
    for kw in ("ENV", "ARG"):
        for args in _all(instructions, kw):
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]:
                assert not SECRET_WORDS.search(name), f"{path}: {kw} {name} bakes a secret into the image"
    assert not any(SECRET_WORDS.search(a) for a in _all(instructions, "RUN")), f"{path}: RUN mentions a secret"
    assert "HF_HUB_OFFLINE=1" in " ".join(_all(instructions, "ENV"))
    return instructions


def test_platform_image() -> None:
    instructions = _common_checks(ROOT / "Dockerfile")
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in _all(instructions, "ARG") if "=" in a}
    assert args["TORCH_VERSION"] == "2.13.0"
    assert args["TORCH_INDEX_URL"].endswith("/whl/cpu")  # CPU by default; a CUDA index via --build-arg
    runs = _all(instructions, "RUN")
    torch_steps = [r for r in runs if "torch==" in r]
    assert torch_steps == ['pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"']
    project = [r for r in runs if ".[train,serve,mlops]" in r]
    assert len(project) == 1 and runs.index(torch_steps[0]) < runs.index(project[0]), "torch must come first"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {"train", "serve", "mlops"} <= set(extras)
    assert "vllm" not in " ".join(runs).lower(), "vLLM belongs to the GPU serving image only"
    assert "useradd" in project[0] and "--uid 10001" in project[0] and _all(instructions, "USER")[-1] == "10001:10001"
    # the console scripts the manifests and components call are installed by that pip step
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["aigp"] == "aigp.cli:main"
    assert any("kfp" in dep for dep in extras["mlops"]) and any("feast" in dep for dep in extras["serve"])
    assert _exec_form(_all(instructions, "ENTRYPOINT")[-1]) == ["tini", "--"]
    assert "AIGP_CODE_VERSION=${GIT_SHA}" in " ".join(_all(instructions, "ENV"))
    assert _all(instructions, "WORKDIR") == ["/app"] and ". /app" in _all(instructions, "COPY")


def test_gpu_serving_image_matches_the_serving_runtime() -> None:
    instructions = _common_checks(ROOT / "serving" / "Dockerfile.gpu")
    runs = " ".join(_all(instructions, "RUN"))
    assert 'kserve[llm,storage]==${KSERVE_VERSION}' in runs
    assert "ARG KSERVE_VERSION=0.21.0" in [f"ARG {a}" for a in _all(instructions, "ARG")]
    assert "torch==" not in runs and ".[train" not in runs, "the GPU image keeps vLLM's own torch"
    entrypoint = _exec_form(_all(instructions, "ENTRYPOINT")[-1])
    runtime = yaml.safe_load((ROOT / "manifests/base/serving/servingruntime-vllm.yaml").read_text())
    container = runtime["spec"]["containers"][0]
    assert container["image"].startswith("registry.local/aigp/serving-gpu:")
    assert entrypoint == ["tini", "--", *container["command"]] == ["tini", "--", "python", "-m", "huggingfaceserver"]
    user = _all(instructions, "USER")[-1].split(":")[0]
    assert int(user) == container["securityContext"]["runAsUser"]


def test_images_in_manifests_and_components_agree() -> None:
    from aigp.components._image import AIGP_IMAGE

    manifests_text = "\n".join(p.read_text() for p in (ROOT / "manifests").rglob("*.yaml"))
    assert AIGP_IMAGE.startswith("registry.local/aigp/platform:") and AIGP_IMAGE in manifests_text
    header = (ROOT / "Dockerfile").read_text()
    assert f"-t {AIGP_IMAGE}" in header  # the documented build command tags the image the components use
    for line in header.splitlines():
        if line.startswith("# ") and "docker build" in line:
            shlex.split(line[2:])  # the documented commands are well-formed shell
