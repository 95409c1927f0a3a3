"""`aigp registry ...` end to end on a real MLflow store, and promotion's InferenceService (render, write,
apply through a recording Kubernetes API object, publish to a local S3 server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from _k8s_schema import kserve_errors
from _registry_support import S3_ENV, make_candidate, mlflow_store, s3_server
from kubernetes.client.exceptions import ApiException
from typer.testing import CliRunner

from aigp.cli import app
from aigp.gate_report import GateReport
from aigp.registry.model_registry import ModelRegistry
from aigp.serving.inference_service import (
    LLMServingConfig,
    apply_inference_service,
    deploy,
    render_inference_service,
)

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(tmp_path / "mlflow"))
    for var in ("AIGP_REGISTRY_AUDIT", "AIGP_MLFLOW_ARTIFACTS", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))  # no cluster here
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USER", "approver")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _register(root: Path, tag: str, passed: bool = True) -> int:
    model_dir, html, report = make_candidate(root, passed=passed, tag=tag)
    info = ModelRegistry().register_candidate(model_dir, GateReport.from_json(report, html), {"avg_q": 1.1},
                                              data_window=("2026-01-01", "2026-01-31"), pipeline_run_id=tag)
    return info.version


def _run(*args: str) -> Any:
    return runner.invoke(app, ["registry", *args], catch_exceptions=False, env={"COLUMNS": "200"})


def test_cli_lifecycle_writes_inference_services_and_audits(env: Path) -> None:
    v1, v2, v3 = _register(env, "a"), _register(env, "b"), _register(env, "c", passed=False)

    refused = _run("approve", str(v3), "--reason", "try")
    assert refused.exit_code == 2
    assert "cannot approve aigp-pricing v3 (state candidate, gate failed)" in " ".join(refused.output.split())
    assert _run("approve", str(v1)).exit_code == 2  # --reason is required
    assert _run("promote", str(v1)).exit_code == 2  # not approved yet

    ok = _run("approve", str(v1), "--reason", "report read", "--by", "alice")
    assert ok.exit_code == 0 and "approved aigp-pricing v1 (by alice: report read)" in ok.output
    out = env / "isvc-v1.yaml"
    promoted = _run("promote", str(v1), "--out", str(out), "--max-model-len", "8192")
    assert promoted.exit_code == 0, promoted.output
    assert "no Kubernetes cluster configured" in promoted.output and str(out) in " ".join(promoted.output.split())
    info = ModelRegistry().get("aigp-pricing", v1)
    manifest = yaml.safe_load(out.read_text())
    assert manifest == render_inference_service(info.storage_uri, LLMServingConfig(max_model_len=8192), model_version=1)
    assert kserve_errors(manifest) == []

    assert _run("reject", str(v2), "--reason", "judge score low").exit_code == 0
    assert _run("promote", str(v2)).exit_code == 2  # rejected: never promoted

    v4 = _register(env, "d")
    _run("approve", str(v4), "--reason", "ok")
    challenger = _run("promote", str(v4), "--alias", "challenger")
    assert challenger.exit_code == 0
    challenger_file = env / "runs/registry/inferenceservice-aigp-pricing-v4-challenger.yaml"
    challenger_yaml = yaml.safe_load(challenger_file.read_text())
    assert challenger_yaml["metadata"]["name"] == "aigp-llm-challenger"
    assert _run("promote", str(v4), "--reason", "A/B won").exit_code == 0
    rolled = _run("rollback", "--reason", "price swings", "--by", "oncall")
    assert rolled.exit_code == 0 and "v4 -> v1 is the champion again" in rolled.output
    redeployed = yaml.safe_load((env / "runs/registry/inferenceservice-aigp-pricing-v1-champion.yaml").read_text())
    assert redeployed["metadata"]["labels"]["aigp.io/model-version"] == "1"

    listed = json.loads(_run("list", "--json").output)
    assert {(v["version"], v["state"], tuple(v["aliases"])) for v in listed} == {
        (1, "production", ("champion",)), (2, "rejected", ()), (3, "candidate", ()), (4, "rolled_back", ())}
    table = _run("list").output
    assert "model registry" in table and "champion" in table and "rolled_back" in table and "rejected" in table
    shown = _run("show", "champion").output
    assert "aigp-pricing v1" in shown and "report read" in shown and "alice" in shown
    audit = _run("audit")
    assert audit.exit_code == 0 and "audit log complete" in audit.output
    events = ModelRegistry().audit_log("aigp-pricing")
    assert [(e.action, e.version, e.by) for e in events[-3:]] == [
        ("promote", 4, "approver"), ("rollback", 4, "oncall"), ("promote", 1, "oncall")]


class RecordingCustomObjectsApi:
    """Stands in for kubernetes.client.CustomObjectsApi: records every call; optionally holds an object."""

    def __init__(self, existing: dict[str, Any] | None = None, fail_status: int | None = None) -> None:
        self.existing, self.fail_status, self.calls = existing, fail_status, []

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str) -> Any:
        self.calls.append(("get", group, version, namespace, plural, name))
        if self.fail_status:
            raise ApiException(status=self.fail_status, reason="boom")
        if self.existing is None:
            raise ApiException(status=404, reason="Not Found")
        return self.existing

    def create_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str,
                                        body: dict[str, Any]) -> Any:
        self.calls.append(("create", group, version, namespace, plural, body))
        return body

    def replace_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str,
                                         body: dict[str, Any]) -> Any:
        self.calls.append(("replace", group, version, namespace, plural, name, body))
        return body


def test_apply_creates_then_replaces_with_the_exact_body(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = render_inference_service("s3://aigp-models/aigp-pricing/v7", LLMServingConfig(lora_adapter="adapter"),
                                        model_version=7)
    api = RecordingCustomObjectsApi()
    result = deploy(manifest, tmp_path / "isvc.yaml", api=api, namespace="aigp")
    assert (result.applied, result.action) == (True, "created")
    assert api.calls == [("get", "serving.kserve.io", "v1beta1", "aigp", "inferenceservices", "aigp-llm"),
                         ("create", "serving.kserve.io", "v1beta1", "aigp", "inferenceservices", manifest)]
    assert yaml.safe_load((tmp_path / "isvc.yaml").read_text()) == manifest
    assert manifest["spec"]["predictor"]["model"]["args"][-3:] == [
        "--enable-lora", "--lora-modules=aigp-pricing-lora=/mnt/models/adapter", "--max-lora-rank=16"]

    api = RecordingCustomObjectsApi(existing={"metadata": {"name": "aigp-llm", "resourceVersion": "4711"}})
    assert apply_inference_service(manifest, api, "aigp") == "replaced"
    sent = api.calls[1][-1]
    assert sent == {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": "4711"}}
    assert "resourceVersion" not in manifest["metadata"]  # the rendered object is not mutated

    with pytest.raises(ApiException):
        apply_inference_service(manifest, RecordingCustomObjectsApi(fail_status=403), "aigp")
    local = render_inference_service("file:///tmp/model")
    with pytest.raises(ValueError, match="a local path a cluster cannot pull"):
        deploy(local, tmp_path / "local.yaml", api=RecordingCustomObjectsApi())
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ValueError, match="--apply was given but no cluster is configured"):
        deploy(local, tmp_path / "local.yaml", use_cluster=True)
    written = deploy(local, tmp_path / "local.yaml")  # no cluster, no --apply: write and say so
    assert (written.applied, written.action) == (False, "written") and "kubectl apply -f" in written.message


def test_render_refuses_bad_settings() -> None:
    from aigp.config import ConfigError

    with pytest.raises(ConfigError, match="max_model_len=64"):
        LLMServingConfig.build(max_model_len=64)
    with pytest.raises(ConfigError, match="unexpected_field"):
        LLMServingConfig.build(unexpected_field=1)
    with pytest.raises(ValueError, match=r"lora_adapter='\.\./x'"):
        render_inference_service("s3://b/m", LLMServingConfig(lora_adapter="../x"))
    with pytest.raises(ValueError, match="max_replicas=1 is below min_replicas=2"):
        render_inference_service("s3://b/m", LLMServingConfig(min_replicas=2))
    multi = render_inference_service("s3://b/m", LLMServingConfig(gpus=4))["spec"]["predictor"]["model"]
    assert "--tensor-parallel-size=4" in multi["args"] and multi["resources"]["limits"]["nvidia.com/gpu"] == "4"


@pytest.mark.integration
def test_promote_publishes_a_local_version_to_s3(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    version = _register(env, "s3")
    _run("approve", str(version), "--reason", "ok")
    with s3_server() as endpoint:
        for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint, "AIGP_CACHE_DIR": str(env / "cache")}.items():
            monkeypatch.setenv(key, value)
        from aigp.registry import storage

        client = storage.s3_client()
        client.create_bucket(Bucket="aigp-models")
        result = _run("promote", str(version), "--publish-to", "s3://aigp-models", "--out", str(env / "p.yaml"))
        assert result.exit_code == 0, result.output
        uri = f"s3://aigp-models/aigp-pricing/v{version}"
        assert yaml.safe_load((env / "p.yaml").read_text())["spec"]["predictor"]["model"]["storageUri"] == uri
        keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="aigp-models")["Contents"])
        assert keys == [f"aigp-pricing/v{version}/{f}" for f in
                        ("adapter/adapter_config.json", "config.json", "model.safetensors")]
