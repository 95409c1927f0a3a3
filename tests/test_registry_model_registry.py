"""Model registry: lifecycle, refusals of every forbidden transition, the audit log, S3-backed versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _registry_support import S3_ENV, make_candidate, mlflow_store, s3_server

from aigp.gate_report import GateReport, GateReportError
from aigp.registry import storage
from aigp.registry.model_registry import (
    ModelRegistry,
    RegistryError,
    TransitionRefused,
    VersionState,
)

WINDOW = ("2026-01-01", "2026-03-31")


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(tmp_path / "mlflow"))
    for var in ("AIGP_REGISTRY_AUDIT", "AIGP_MLFLOW_ARTIFACTS", "AIGP_CODE_VERSION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("USER", "ci-user")
    return ModelRegistry()


def _register(registry: ModelRegistry, root: Path, passed: bool = True, tag: str = "a", model: str = "aigp-pricing",
              **kw):
    model_dir, html, report = make_candidate(root, passed=passed, tag=tag)
    gate = GateReport.from_json(report, html)
    return registry.register_candidate(model_dir, gate, {"avg_q": 1.25, "mae": 0.031}, model_name=model,
                                       data_window=WINDOW, pipeline_run_id=f"run-{tag}", **kw)


def test_lifecycle_aliases_rollback_and_complete_audit(registry: ModelRegistry, tmp_path: Path) -> None:
    v1 = _register(registry, tmp_path, tag="a", by="gate-bot")
    assert (v1.version, v1.state, v1.gate_status, v1.aliases) == (1, VersionState.CANDIDATE, "passed", ())
    assert v1.metrics == {"avg_q": 1.25, "mae": 0.031}
    assert v1.data_window == WINDOW and v1.pipeline_run_id == "run-a"
    assert len(v1.code_version.split("+")[0]) == 40  # the git SHA of this checkout
    # the gate report and the model files were copied into the registry's artifact store
    assert Path(storage.local_path(v1.gate_report_html)).read_text().endswith("gate passed</body></html>")
    assert json.loads(Path(storage.local_path(v1.gate_report_json)).read_text())["passed"] is True
    served = storage.resolve_local(v1.storage_uri)
    assert (served / "model.safetensors").read_bytes() == bytes(range(256)) * 64

    registry.approve("aigp-pricing", 1, by="alice", reason="gate report read, KIPS fine")
    assert registry.promote("aigp-pricing", 1, by="alice").aliases == ("champion",)
    assert registry.resolve("aigp-pricing", "champion") == (1, v1.storage_uri)

    v2 = _register(registry, tmp_path, tag="b")
    registry.approve("aigp-pricing", v2.version, reason="better EAMA-R")
    assert registry.promote("aigp-pricing", 2, alias="challenger").aliases == ("challenger",)
    assert registry.resolve("aigp-pricing", "challenger").version == 2
    assert registry.promote("aigp-pricing", 2, by="bob", reason="A/B won").aliases == ("champion",)
    assert registry.get("aigp-pricing", 1).aliases == ()  # challenger cleared, champion moved

    old, new = registry.rollback("aigp-pricing", by="oncall", reason="volatility alert")
    assert (old.version, old.state, new.version, new.aliases) == (2, VersionState.ROLLED_BACK, 1, ("champion",))
    assert registry.resolve("aigp-pricing", "champion") == (1, v1.storage_uri)

    events = registry.audit_log("aigp-pricing")
    assert [(e.seq, e.version, e.action, e.from_state, e.to_state) for e in events] == [
        (1, 1, "register", None, "candidate"),
        (2, 1, "approve", "candidate", "approved"),
        (3, 1, "promote", "approved", "production"),
        (4, 2, "register", None, "candidate"),
        (5, 2, "approve", "candidate", "approved"),
        (6, 2, "promote", "approved", "production"),
        (7, 2, "promote", "production", "production"),
        (8, 2, "rollback", "production", "rolled_back"),
        (9, 1, "promote", "production", "production"),
    ]
    assert [e.by for e in events] == ["gate-bot", "alice", "alice", "ci-user", "ci-user", "ci-user", "bob",
                                      "oncall", "oncall"]
    assert events[1].reason == "gate report read, KIPS fine" and events[7].reason == "volatility alert"
    assert events[6].details == {"alias": "champion", "previous": 1, "cleared_alias": "challenger"}
    assert all(e.at.endswith("+00:00") for e in events)
    assert registry.verify_audit("aigp-pricing") == []
    # the audit file is one JSON line per event, in order, identical to the MLflow tags
    lines = (Path(registry.audit.root) / "aigp-pricing.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, 10))
    tags = registry.get("aigp-pricing", 2).audit
    assert [e.seq for e in tags] == [4, 5, 6, 7, 8]

    # a second rollback has nowhere to go: v2 was rolled back, v1 is the only production version
    refusal = r"aigp-pricing v1 \(state production, champion\).*no earlier production"
    with pytest.raises(TransitionRefused, match=refusal):
        registry.rollback("aigp-pricing", reason="again")


def test_every_forbidden_transition_is_refused_with_a_clear_message(registry: ModelRegistry, tmp_path: Path) -> None:
    failed = _register(registry, tmp_path, passed=False, tag="f")        # v1: gate failed
    cand = _register(registry, tmp_path, tag="c")                         # v2: candidate
    rej = _register(registry, tmp_path, tag="r")                          # v3: will be rejected
    registry.reject("aigp-pricing", rej.version, reason="judge score too low")
    name = "aigp-pricing"
    cases = [
        (lambda: registry.approve(name, failed.version, reason="x"),
         r"cannot approve aigp-pricing v1 \(state candidate, gate failed\): approval requires a passed offline gate; "
         r"gate reasons: avg_q 0.91 < floor 0.95"),
        (lambda: registry.promote(name, failed.version),
         r"cannot promote aigp-pricing v1 \(state candidate, gate failed\): promotion requires an approved version"),
        (lambda: registry.promote(name, cand.version),
         r"cannot promote aigp-pricing v2 \(state candidate, gate passed\): promotion requires an approved version; "
         r"approve it first"),
        (lambda: registry.promote(name, rej.version),
         r"cannot promote aigp-pricing v3 \(state rejected, gate passed\).*rejected version is final and can never "
         r"be promoted"),
        (lambda: registry.approve(name, rej.version, reason="changed my mind"),
         r"cannot approve aigp-pricing v3 \(state rejected, gate passed\): only a candidate can be approved"),
        (lambda: registry.reject(name, rej.version, reason="twice"),
         r"cannot reject aigp-pricing v3 \(state rejected\): it is rejected already"),
        (lambda: registry.rollback(name, reason="nothing serves"),
         r"cannot roll back aigp-pricing: no version is the champion"),
        (lambda: registry.resolve(name, cand.version),
         r"will not serve aigp-pricing v2 \(state candidate\): only approved or production versions"),
        (lambda: registry.resolve(name, "champion"), r"model 'aigp-pricing' has no champion yet"),
    ]
    for call, message in cases:
        with pytest.raises(TransitionRefused if "no champion yet" not in message else RegistryError, match=message):
            call()

    registry.approve(name, cand.version, reason="ok")
    with pytest.raises(TransitionRefused, match=r"approve aigp-pricing v2 \(state approved.*it is approved already"):
        registry.approve(name, cand.version, reason="again")
    registry.promote(name, cand.version)
    for call, message in [
        (lambda: registry.promote(name, cand.version), r"v2 .* to champion: it is the champion already"),
        (lambda: registry.promote(name, cand.version, alias="challenger"),
         r"cannot make .*v2.* the challenger: it is the champion"),
        (lambda: registry.reject(name, cand.version, reason="x"),
         r"v2 \(state production\).*holds the alias\(es\) champion"),
        (lambda: registry.rollback(name, reason="x"), r"no earlier production version"),
        (lambda: registry.promote(name, cand.version, alias="canary"),
         r"alias='canary': expected one of champion, challenger"),
    ]:
        with pytest.raises(RegistryError, match=message):
            call()
    # arguments a person must give
    with pytest.raises(RegistryError, match="--reason is required to reject"):
        registry.reject(name, failed.version, reason="   ")
    with pytest.raises(RegistryError, match="--by is empty"):
        registry.reject(name, failed.version, by=" ", reason="x")
    with pytest.raises(RegistryError, match=r"model 'aigp-pricing' has no version 9 \(versions: 1, 2, 3\)"):
        registry.get(name, 9)
    with pytest.raises(RegistryError, match="version='latest'"):
        registry.get(name, "latest")

    # refusals wrote nothing: 3 registrations + reject + approve + promote
    assert [e.action for e in registry.audit_log(name)] == ["register"] * 3 + ["reject", "approve", "promote"]
    assert registry.verify_audit(name) == []
    states = {v.version: v.state.value for v in registry.list_versions(name)}
    assert states == {1: "candidate", 2: "production", 3: "rejected"}


def test_audit_verification_detects_a_tampered_or_incomplete_log(registry: ModelRegistry, tmp_path: Path) -> None:
    _register(registry, tmp_path, tag="t", model="tamper-test")
    registry.approve("tamper-test", 1, reason="fine")
    audit_file = Path(registry.audit.root) / "tamper-test.jsonl"
    lines = audit_file.read_text().splitlines()
    assert len(lines) == 2
    audit_file.write_text(lines[0] + "\n")  # someone drops the approval line
    problems = registry.verify_audit("tamper-test")
    assert len(problems) == 1 and "missing from file: [2]" in problems[0]
    edited = json.loads(lines[1]) | {"by": "mallory"}
    audit_file.write_text(lines[0] + "\n" + json.dumps(edited) + "\n")
    assert "differ" in registry.verify_audit("tamper-test")[0]
    audit_file.write_text("\n".join(lines) + "\n")
    assert registry.verify_audit("tamper-test") == []


def test_register_candidate_rejects_bad_input(registry: ModelRegistry, tmp_path: Path) -> None:
    model_dir, html, report = make_candidate(tmp_path)
    gate = GateReport.from_json(report, html)
    empty = tmp_path / "empty"
    empty.mkdir()
    ok = {"model_name": "bad-input", "data_window": WINDOW}
    with pytest.raises(RegistryError, match=r"model_dir=.*empty.*not a directory with model files"):
        registry.register_candidate(empty, gate, {}, **ok)
    with pytest.raises(RegistryError, match=r"gate_report.html_path=.*nope.html.*no such file"):
        registry.register_candidate(model_dir, GateReport("passed", tmp_path / "nope.html", report), {}, **ok)
    with pytest.raises(RegistryError, match=r"metrics\['mae'\]=nan: not finite"):
        registry.register_candidate(model_dir, gate, {"mae": float("nan")}, **ok)
    with pytest.raises(RegistryError, match="data_window: end 2026-01-01 is before start 2026-02-01"):
        registry.register_candidate(model_dir, gate, {}, model_name="bad-input",
                                    data_window=("2026-02-01", "2026-01-01"))
    with pytest.raises(GateReportError, match=r"gate_report\.status='maybe'"):
        GateReport("maybe", html, report)  # type: ignore[arg-type]
    (tmp_path / "odd.json").write_text('{"score": 3}')
    with pytest.raises(GateReportError, match=r"needs 'passed': true\|false"):
        GateReport.from_json(tmp_path / "odd.json")
    assert registry.model_names() == []  # nothing half-registered


@pytest.mark.integration
def test_versions_and_audit_on_s3(registry: ModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Production layout: MLflow artifacts and the audit log on S3 (a local S3-compatible server)."""
    with s3_server() as endpoint:
        for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint,
                           "AIGP_MLFLOW_ARTIFACTS": "s3://aigp-mlflow/artifacts",
                           "AIGP_CACHE_DIR": str(tmp_path / "cache")}.items():
            monkeypatch.setenv(key, value)
        client = storage.s3_client()
        client.create_bucket(Bucket="aigp-mlflow")
        s3_registry = ModelRegistry(audit_root="s3://aigp-mlflow/registry-audit", experiment="aigp-registry-s3")
        info = _register(s3_registry, tmp_path, tag="s3", model="s3-model")
        assert info.storage_uri.startswith("s3://aigp-mlflow/artifacts/") and info.storage_uri.endswith("/model")
        assert info.gate_report_html.startswith("s3://aigp-mlflow/artifacts/")
        s3_registry.approve("s3-model", 1, reason="ok")
        s3_registry.promote("s3-model", 1)
        version, uri = s3_registry.resolve("s3-model", "champion")
        local = storage.resolve_local(uri)
        assert version == 1 and (local / "adapter" / "adapter_config.json").read_text() == '{"r": 8}'
        assert (local / "model.safetensors").read_bytes() == bytes(range(256)) * 64
        keys = [o["Key"] for o in client.list_objects_v2(Bucket="aigp-mlflow", Prefix="registry-audit/")["Contents"]]
        assert keys == [f"registry-audit/s3-model/{i:06d}.json" for i in (1, 2, 3)]
        assert s3_registry.verify_audit("s3-model") == []
        # append-only: an event object is never overwritten
        from aigp.registry.model_registry import AuditLog

        first = s3_registry.audit_log("s3-model")[0]
        with pytest.raises(RegistryError, match="already exists"):
            AuditLog("s3://aigp-mlflow/registry-audit").append(first)


def test_gate_report_is_an_html_artifact_whatever_the_file_was_called(registry: ModelRegistry,
                                                                     tmp_path: Path) -> None:
    """KFP names an output artifact's file after the output ("report", no extension); MLflow's artifact list
    must still show an .html page (the UI previews it, a browser renders it) and the JSON beside it."""
    import mlflow

    model_dir, html, report = make_candidate(tmp_path, tag="k")
    kfp_html, kfp_json = tmp_path / "offline-gate" / "report", tmp_path / "offline-gate" / "gate_json"
    kfp_html.parent.mkdir()
    html.rename(kfp_html)
    report.rename(kfp_json)
    version = registry.register_candidate(model_dir, GateReport.from_json(kfp_json, kfp_html), {"avg_q": 1.0},
                                          data_window=WINDOW)
    run_id = mlflow.MlflowClient().get_model_version("aigp-pricing", str(version.version)).run_id
    listed = {Path(a.path).name for a in mlflow.MlflowClient().list_artifacts(run_id, "gate")}
    assert listed == {"gate_report.html", "gate_report.json"}
    assert version.gate_report_html.endswith("/gate/gate_report.html")
    assert Path(storage.local_path(version.gate_report_html)).read_text().endswith("gate passed</body></html>")
