"""The two images, checked without a docker engine: parse the Dockerfiles and check what matters."""

from __future__ import annotations

import itertools
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


def _pip_install_args(run: str) -> list[str]:
    """The arguments of the first `pip install` in a RUN step (up to the next `&&`)."""
    tokens = shlex.split(run)
    start = next(i for i in range(len(tokens) - 1) if tokens[i:i + 2] == ["pip", "install"])
    end = tokens.index("&&", start) if "&&" in tokens[start:] else len(tokens)
    return tokens[start + 2:end]


def test_platform_image_installs_the_project_from_the_lock() -> None:
    instructions = parse_dockerfile(ROOT / "Dockerfile")
    (project,) = [r for r in _all(instructions, "RUN") if ".[train,serve,mlops]" in r]
    args = _pip_install_args(project)
    assert "-c" in args and args[args.index("-c") + 1] == "requirements.lock", args
    assert (ROOT / "requirements.lock").is_file()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "requirements.lock" not in ignored and ". /app" in _all(instructions, "COPY")
    makefile = (ROOT / "Makefile").read_text()
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in _all(instructions, "ARG") if "=" in a}
    assert re.search(r"^TORCH_VERSION := (\S+)$", makefile, re.M).group(1) == args["TORCH_VERSION"]


def _make_dry_run(*targets: str, **variables: str) -> list[list[str]]:
    """The commands `make -n` prints for ``targets``, each split like a shell would."""
    import subprocess

    out = subprocess.run(["make", "-n", "-s", *targets, *(f"{k}={v}" for k, v in variables.items())], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return [shlex.split(line) for line in out.replace("\\\n", " ").splitlines() if line.strip()]


def _docker_builds(commands: list[list[str]]) -> dict[str, dict]:
    builds = {}
    for argv in commands:
        if argv[:2] != ["docker", "build"]:
            continue
        options: dict = {"build_args": {}, "file": "Dockerfile", "context": argv[-1]}
        for flag, value in itertools.pairwise(argv[2:]):
            if flag == "--build-arg":
                key, _, val = value.partition("=")
                options["build_args"][key] = val
            elif flag in ("-f", "--file"):
                options["file"] = value
            elif flag in ("-t", "--tag"):
                options["tag"] = value
        builds[options.pop("tag")] = options
    return builds


def test_make_image_builds_and_pushes_what_the_manifests_and_pipelines_run() -> None:
    commands = _make_dry_run("image-push", REGISTRY="reg.example:5000/team", IMAGE_TAG="1.2.3")
    builds = _docker_builds(commands)
    ours = {f"reg.example:5000/team/aigp/{name}:1.2.3" for name in ("platform", "platform-cuda", "serving-gpu")}
    assert set(builds) == ours
    assert [argv[2] for argv in commands if argv[:2] == ["docker", "push"]] == sorted(ours, key=list(builds).index)
    platform, cuda, serving = (builds[f"reg.example:5000/team/aigp/{n}:1.2.3"]
                               for n in ("platform", "platform-cuda", "serving-gpu"))
    assert platform["file"] == cuda["file"] == "Dockerfile" and serving["file"] == "serving/Dockerfile.gpu"
    assert {b["context"] for b in builds.values()} == {"."}
    assert "TORCH_INDEX_URL" not in platform["build_args"]  # the Dockerfile's default: CPU wheels
    assert re.search(r"/whl/cu\d+$", cuda["build_args"]["TORCH_INDEX_URL"])
    assert platform["build_args"]["TORCH_VERSION"] == cuda["build_args"]["TORCH_VERSION"] == "2.13.0"
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", platform["build_args"]["GIT_SHA"])

    # with the defaults, the tags are the images that manifests/ and the committed pipelines run
    defaults = set(_docker_builds(_make_dry_run("image")))
    manifests_text = "\n".join(p.read_text() for p in (ROOT / "manifests").rglob("*.yaml"))
    in_manifests = set(re.findall(r"image: (registry\.local/aigp/\S+)", manifests_text))
    in_pipelines = {e["container"]["image"] for p in (ROOT / "pipelines").glob("*.yaml")
                    for e in yaml.safe_load_all(p.read_text()).__next__()["deploymentSpec"]["executors"].values()
                    if "container" in e}
    assert in_manifests | in_pipelines == defaults
    assert in_pipelines == {"registry.local/aigp/platform:0.1.0", "registry.local/aigp/platform-cuda:0.1.0"}
