"""The compiled pipelines against the cluster that manifests/ deploys: every step's image, the configuration and
credentials each step needs (kfp-kubernetes settings in the IR, by name against the rendered manifests), the
shared volume, the nightly pipeline's Redis, the image option of `aigp pipeline compile|submit`, and the
recurring run the nightly Job creates (the real kfp CLI against a mock KFP API on loopback)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from _kustomize import build
from typer.testing import CliRunner

from aigp.cli import app
from aigp.pipelines.runner import IR_FILES

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
OVERLAYS = ("local-dev", "production")
GPU_EXECUTORS = {"exec-sft", "exec-sample-candidates", "exec-dpo"}
PLATFORM = "registry.local/aigp/platform:0.1.0"
CUDA = "registry.local/aigp/platform-cuda:0.1.0"
# What a step that talks to each service reads from its environment (the code's variables).
NEEDS = {
    "mlflow": {"MLFLOW_TRACKING_URI", "AIGP_MLFLOW_ARTIFACTS", "AIGP_REGISTRY_AUDIT"},
    "s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"},
    "redis": {"REDIS_CONNECTION_STRING"},
    "pushgateway": {"AIGP_PUSHGATEWAY_URL"},
}
CONFIG_MAPS = ("aigp-config", "aigp-monitoring")


def _ir(name: str, path: Path | None = None) -> tuple[dict, dict]:
    spec, *platform = yaml.safe_load_all((path or IR_FILES[name]).read_text())
    return spec, platform[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if platform else {}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: build(MANIFESTS / "overlays" / overlay) for overlay in OVERLAYS}


def _documented_secret_keys() -> dict[str, set[str]]:
    """{Secret: keys} from the `kubectl create secret generic` commands in manifests/README.md."""
    readme = (MANIFESTS / "README.md").read_text()
    keys: dict[str, set[str]] = {}
    for command in re.findall(r"create secret generic (\S+)((?:\s+\\?\s*--from-literal=[^=\s]+=\S+)+)", readme):
        keys[command[0]] = set(re.findall(r"--from-literal=([^=\s]+)=", command[1]))
    return keys


def _program(executor: dict) -> str:
    return "\n".join(executor["container"].get("command", []) + executor["container"].get("args", []))


def _with_imported_sources(program: str) -> str:
    """The program the IR runs plus the source of each aigp module it imports (one level deep)."""
    import importlib.util

    texts = [program]
    for module in sorted(set(re.findall(r"^\s*from (aigp(?:\.\w+)+) import|^\s*import (aigp(?:\.\w+)+)", program,
                                        re.M))):
        spec = importlib.util.find_spec(module[0] or module[1])
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            texts.append(Path(spec.origin).read_text())
    return "\n".join(texts)


def _needs(program: str) -> set[str]:
    """What the step's code talks to: the program the IR runs and the aigp modules it imports."""
    text = _with_imported_sources(program).lower()
    needs = set()
    if "mlflow" in text or "aigp.registry.model_registry" in text or "aigp.registry.tracking" in text:
        needs |= {"mlflow", "s3"}  # the tracking server keeps its artifacts in S3 (AIGP_MLFLOW_ARTIFACTS)
    if re.search(r"\bs3\b|is_s3_uri|aigp.registry import storage|aigp.registry.storage", text):
        needs.add("s3")
    if "redis" in text:
        needs.add("redis")
    if "pushgateway" in program.lower():
        needs.add("pushgateway")  # the step's own parameter: it pushes gauges where the cluster says
    return needs


def _environment(k8s: dict) -> dict[str, tuple[str, str, str, bool]]:
    """{env var: (ConfigMap|Secret, name, key, optional)} from a step's kfp-kubernetes settings."""
    env: dict[str, tuple[str, str, str, bool]] = {}
    for kind, field, key_field in (("ConfigMap", "configMapAsEnv", "configMapKey"),
                                   ("Secret", "secretAsEnv", "secretKey")):
        for ref in k8s.get(field, []):
            name = ref.get("configMapName") or ref.get("secretName")
            for mapping in ref["keyToEnv"]:
                assert mapping["envVar"] not in env, f"{mapping['envVar']} set twice"
                env[mapping["envVar"]] = (kind, name, mapping[key_field], bool(ref.get("optional", False)))
    return env


@pytest.mark.parametrize("name", sorted(IR_FILES))
def test_every_step_gets_the_configuration_and_credentials_it_needs(name: str, rendered) -> None:
    spec, k8s = _ir(name)
    secrets = _documented_secret_keys()
    assert secrets == {"aigp-s3-credentials": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
                       "aigp-redis": {"password", "connection-string"}}
    maps = {o: {r["metadata"]["name"]: r["data"] for r in res if r["kind"] == "ConfigMap"
                and r["metadata"]["name"] in CONFIG_MAPS} for o, res in rendered.items()}
    config = {o: found["aigp-config"] for o, found in maps.items()}
    seen = set()
    for executor_name, executor in spec["deploymentSpec"]["executors"].items():
        if "container" not in executor:
            continue  # importers run in KFP's own launcher
        needs = _needs(_program(executor))
        seen |= needs
        env = _environment(k8s.get(executor_name, {}))
        assert set(config["production"]) <= set(env), f"{executor_name}: every key of aigp-config as environment"
        for need in needs:
            missing = NEEDS[need] - set(env)
            assert not missing, f"{executor_name} talks to {need} but gets no {sorted(missing)}"
        for var, (kind, ref_name, key, optional) in env.items():
            if kind == "ConfigMap":
                assert ref_name in CONFIG_MAPS, f"{executor_name}: {var} from ConfigMap {ref_name}"
                present = [o for o in OVERLAYS if key in maps[o].get(ref_name, {})]
                # a required key must exist in every overlay; an optional one in at least one
                assert present == list(OVERLAYS) or (optional and present), (
                    f"{executor_name}: {var} <- aigp-config/{key} (optional={optional}) is in {present}")
            else:
                assert key in secrets.get(ref_name, set()), f"{executor_name}: {var} <- Secret {ref_name}/{key}"
                assert not optional, f"{executor_name}: {var} from a Secret must not be optional"
    expected = {"training": {"mlflow", "s3", "redis"}, "nightly": {"mlflow", "s3", "redis", "pushgateway"}}[name]
    assert seen == expected, f"{name}: the steps talk to {sorted(seen)}"


@pytest.mark.parametrize("name", sorted(IR_FILES))
def test_gpu_steps_run_the_cuda_image_and_every_other_step_the_platform_image(name: str) -> None:
    spec, _ = _ir(name)
    images = {n: e["container"]["image"] for n, e in spec["deploymentSpec"]["executors"].items() if "container" in e}
    for executor_name, image in images.items():
        gpu = "accelerator" in spec["deploymentSpec"]["executors"][executor_name]["container"].get("resources", {})
        assert (executor_name in GPU_EXECUTORS) == gpu
        assert image == (CUDA if gpu else PLATFORM), executor_name
    assert (name == "training") == (set(images) >= GPU_EXECUTORS)


def test_the_monitoring_cronjob_pushes_to_the_shipped_pushgateway(rendered) -> None:
    for overlay, resources in rendered.items():
        job = next(r for r in resources if r["kind"] == "CronJob" and r["metadata"]["name"] == "aigp-monitor")
        (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        maps = {ref["configMapRef"]["name"] for ref in container["envFrom"] if "configMapRef" in ref}
        urls = [r["data"]["AIGP_PUSHGATEWAY_URL"] for r in resources
                if r["kind"] == "ConfigMap" and r["metadata"]["name"] in maps and "AIGP_PUSHGATEWAY_URL" in r["data"]]
        assert len(urls) == 1, f"{overlay}: the CronJob gets AIGP_PUSHGATEWAY_URL from {sorted(maps)}: {urls}"
        host, port = urls[0].removeprefix("http://").split(":")
        service = next(r for r in resources if r["kind"] == "Service" and r["metadata"]["name"] == host)
        assert int(port) in [p["port"] for p in service["spec"]["ports"]], overlay
        # prometheus-operator scrapes that Service, keeping the pushed job label the alerts select on
        (monitor,) = [r for r in resources if r["kind"] == "ServiceMonitor"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]] and endpoint["honorLabels"] is True


def test_the_shared_cache_volume_is_a_claim_the_manifests_create(rendered) -> None:
    spec, k8s = _ir("training")
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    mounted = set()
    for executor in GPU_EXECUTORS:
        (mount,) = k8s[executor]["pvcMount"]
        parameter = mount["pvcNameParameter"]["componentInputParameter"].removeprefix("pipelinechannel--")
        mounted.add(defaults[parameter]["defaultValue"])
    assert mounted == {"aigp-training-cache"}
    for overlay, resources in rendered.items():
        claims = [r for r in resources if r["kind"] == "PersistentVolumeClaim"
                  and r["metadata"]["name"] == "aigp-training-cache"]
        assert len(claims) == 1, overlay
        assert claims[0]["spec"]["accessModes"] == ["ReadWriteMany"]  # steps on different GPU nodes share it


def test_nightly_redis_is_the_manifests_redis_service_with_its_password(rendered) -> None:
    spec, k8s = _ir("nightly")
    default = spec["root"]["inputDefinitions"]["parameters"]["redis_connection_string"]["defaultValue"]
    assert spec["root"]["inputDefinitions"]["parameters"]["online_store"]["defaultValue"] == "redis"
    # "" = $REDIS_CONNECTION_STRING, which the steps get from the Secret (test above); a literal host would skip
    # the password that the Redis Deployment requires
    assert default == "", f"redis_connection_string defaults to {default!r}"
    for executor in ("exec-materialize-features", "exec-batch-price"):
        assert _environment(k8s[executor])["REDIS_CONNECTION_STRING"] == (
            "Secret", "aigp-redis", "connection-string", False)
    documented = re.search(r"`connection-string` \(`([^`]+)`\)", (MANIFESTS / "README.md").read_text()).group(1)
    host, port = documented.split(",")[0].split(":")
    assert "password=" in documented
    for overlay, resources in rendered.items():
        service = next(r for r in resources if r["kind"] == "Service" and r["metadata"]["name"] == host)
        assert int(port) in [p["port"] for p in service["spec"]["ports"]], overlay
        redis = next(r for r in resources if r["kind"] == "Deployment"
                     and r["spec"]["selector"]["matchLabels"] == service["spec"]["selector"])
        container = redis["spec"]["template"]["spec"]["containers"][0]
        assert "--requirepass" in container["args"]
        assert {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "aigp-redis", "key": "password"}}} \
            in container["env"]


def test_compile_and_submit_take_the_registry_and_tag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["pipeline", "compile", "--out", str(tmp_path), "--registry", "reg.example:5000/team",
                                 "--tag", "1.2.3"])
    assert result.exit_code == 0, result.output
    for name, committed in IR_FILES.items():
        spec, _ = _ir(name, tmp_path / committed.name)
        original, _ = _ir(name)
        for executor_name, executor in spec["deploymentSpec"]["executors"].items():
            if "container" not in executor:
                continue
            repository = "platform-cuda" if executor_name in GPU_EXECUTORS else "platform"
            assert executor["container"]["image"] == f"reg.example:5000/team/aigp/{repository}:1.2.3"
            executor["container"]["image"] = original["deploymentSpec"]["executors"][executor_name]["container"][
                "image"]
        assert {k: v for k, v in spec.items() if k != "sdkVersion"} == \
            {k: v for k, v in original.items() if k != "sdkVersion"}, f"{name}: only the images differ"

    submitted: list[dict[str, Any]] = []

    class Client:
        def __init__(self, **kwargs: Any) -> None:
            pass

        def create_run_from_pipeline_package(self, **kwargs: Any) -> Any:
            spec, _ = _ir("nightly", Path(kwargs["pipeline_file"]))
            submitted.append({n: e["container"]["image"] for n, e in spec["deploymentSpec"]["executors"].items()
                              if "container" in e})
            return type("Run", (), {"run_id": "run-1"})()

    monkeypatch.setattr("kfp.Client", Client)
    result = runner.invoke(app, ["pipeline", "submit", "--host", "http://kfp:8888", "--pipeline", "nightly",
                                 "--registry", "reg.example:5000/team", "--tag", "1.2.3"])
    assert result.exit_code == 0, result.output
    assert set(submitted[0].values()) == {"reg.example:5000/team/aigp/platform:1.2.3"}
    result = runner.invoke(app, ["pipeline", "compile", "--out", str(tmp_path), "--tag", "a:b"])
    assert result.exit_code == 2 and "tag='a:b'" in result.output


# --- the nightly recurring run, created by the real kfp CLI against a mock KFP API ----------------------------
class _MockKfp(BaseHTTPRequestHandler):
    """The parts of the KFP v2beta1 API that `kfp recurring-run create` calls; records every request."""

    requests: ClassVar[list[tuple[str, str, Any]]] = []

    def _reply(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        type(self).requests.append(("GET", self.path, None))
        if self.path.startswith("/apis/v2beta1/healthz"):
            self._reply({"multi_user": False})
        elif self.path.startswith("/apis/v2beta1/experiments"):
            self._reply({"experiments": [], "total_size": 0})  # no such experiment yet: the CLI creates it
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        type(self).requests.append(("POST", self.path, body))
        if self.path == "/apis/v2beta1/experiments":
            self._reply({"experiment_id": "exp-1", "display_name": body.get("display_name")})
        elif self.path == "/apis/v2beta1/recurringruns":
            self._reply({"recurring_run_id": "rr-1", "display_name": body.get("display_name"),
                         "mode": body.get("mode"), "experiment_id": body.get("experiment_id"),
                         "created_at": "2026-01-01T00:00:00Z", "status": "ENABLED"})
        else:
            self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


def test_the_nightly_job_creates_an_enabled_recurring_run_of_the_committed_pipeline(rendered, tmp_path) -> None:
    job = next(r for r in rendered["production"] if r["kind"] == "Job"
               and r["metadata"]["name"] == "aigp-nightly-recurring-run")
    container = job["spec"]["template"]["spec"]["containers"][0]
    config = next(r for r in rendered["production"] if r["kind"] == "ConfigMap")["data"]
    assert "$(KFP_ENDPOINT)" in " ".join(container["args"]) and "KFP_ENDPOINT" in config
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MockKfp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _MockKfp.requests.clear()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        argv = [a.replace("$(KFP_ENDPOINT)", endpoint)
                .replace("=/app/", f"={ROOT}/")  # the image holds the repository at /app (Dockerfile)
                for a in container["args"]]
        kfp = Path(sys.executable).parent / container["command"][0]
        env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
        result = subprocess.run([str(kfp), *argv], capture_output=True, text=True, timeout=180, env=env,
                                cwd=tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stdout + result.stderr
    (created,) = [body for method, path, body in _MockKfp.requests if path == "/apis/v2beta1/recurringruns"]
    assert created["mode"] == "ENABLE"
    assert created["display_name"] == "aigp-nightly-pricing" and created["experiment_id"] == "exp-1"
    assert created["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"
    assert int(created["max_concurrency"]) == 1
    # the package as committed: the pipeline and its kfp-kubernetes settings (images, ConfigMap, Secrets)
    spec, platform = yaml.safe_load_all(IR_FILES["nightly"].read_text())
    assert created["pipeline_spec"]["pipeline_spec"] == json.loads(json.dumps(spec))
    assert created["pipeline_spec"]["platform_spec"] == json.loads(json.dumps(platform))
    experiments = [body for method, path, body in _MockKfp.requests if path == "/apis/v2beta1/experiments"]
    assert [e["display_name"] for e in experiments] == ["aigp-nightly"]
