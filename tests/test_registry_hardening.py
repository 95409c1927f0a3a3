"""Registry hardening (issue 19): decisions made at once by real processes against the real MLflow store are
serialised; tags and aliases changed with plain MLflow write access are caught before promotion and serving and
by ``audit``; control characters never enter the audit log nor reach the terminal; a malformed audit line is
one message naming the file and the line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _registry_support import make_candidate, mlflow_store
from typer.testing import CliRunner

from aigp.cli import app
from aigp.gate_report import GateReport
from aigp.registry.model_registry import (
    TAG_GATE_STATUS,
    TAG_STATE,
    ModelRegistry,
    RegistryError,
    TransitionRefused,
    VersionState,
)

MODEL = "aigp-pricing"
WINDOW = ("2026-01-01", "2026-01-31")
runner = CliRunner()


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_store(tmp_path / "mlflow"))
    for var in ("AIGP_REGISTRY_AUDIT", "AIGP_MLFLOW_ARTIFACTS", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.setenv("USER", "ci-user")
    monkeypatch.chdir(tmp_path)
    return ModelRegistry()


def _register(registry: ModelRegistry, root: Path, tag: str, passed: bool = True, **kw) -> int:
    model_dir, html, report = make_candidate(root, passed=passed, tag=tag)
    return registry.register_candidate(model_dir, GateReport.from_json(report, html), {"avg_q": 1.0},
                                       model_name=MODEL, data_window=WINDOW, **kw).version


# --- concurrent decisions, real processes ------------------------------------------------------------------
_WORKER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from aigp.registry.model_registry import ModelRegistry, RegistryError
    action, version, go, out = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    registry = ModelRegistry()
    registry.get("aigp-pricing", version)  # warm the client: every worker is ready before the start signal
    (out.parent / (out.name + ".ready")).touch()
    while not go.exists():
        time.sleep(0.001)
    try:
        info = getattr(registry, action)("aigp-pricing", version, by=f"w{os.getpid()}", reason=f"{action} race")
        out.write_text(json.dumps({"ok": True, "state": info.state.value}))
    except RegistryError as exc:
        out.write_text(json.dumps({"ok": False, "error": str(exc)}))
""")


def test_concurrent_decisions_by_real_processes_are_serialised(registry: ModelRegistry, tmp_path: Path) -> None:
    versions = [_register(registry, tmp_path, tag) for tag in "abcd"]
    jobs = [("approve", versions[0]), ("reject", versions[0]), ("approve", versions[1]), ("approve", versions[2]),
            ("reject", versions[3]), ("approve", versions[3])]
    go = tmp_path / "go"
    outs = [tmp_path / f"out-{i}.json" for i in range(len(jobs))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, action, str(version), str(go), str(out)], env=env)
             for (action, version), out in zip(jobs, outs, strict=True)]
    deadline = time.monotonic() + 300
    while not all((o.parent / (o.name + ".ready")).exists() for o in outs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a worker did not start"
        time.sleep(0.05)
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    results = [json.loads(o.read_text()) for o in outs]
    for (action, _version), result in zip(jobs, results, strict=True):
        assert result["ok"] or "cannot" in result["error"] or "concurrent" in result["error"], (action, result)

    assert registry.verify_audit(MODEL) == []  # distinct sequence numbers, file == tags, states replay
    events = registry.audit_log(MODEL)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    for (action, version), result in zip(jobs, results, strict=True):
        if result["ok"]:  # every success is in the log
            assert any(e.version == version and e.action == action for e in events), (action, version)
    for version in (versions[0], versions[3]):
        ok = {a for (a, v), r in zip(jobs, results, strict=True) if v == version and r["ok"]}
        state = registry.get(MODEL, version).state
        if "reject" in ok:  # rejected is final: an approval after it was refused, one before it was overruled
            assert state is VersionState.REJECTED
            decided = [e.action for e in events if e.version == version and e.action != "register"]
            assert decided[-1] == "reject"
        else:
            assert ok == {"approve"} and state is VersionState.APPROVED
    for version in versions[1:3]:
        assert registry.get(MODEL, version).state is VersionState.APPROVED


# --- tags and aliases changed outside the registry ---------------------------------------------------------
def test_hand_set_state_and_gate_tags_are_refused_by_promotion_serving_and_audit(registry: ModelRegistry,
                                                                                  tmp_path: Path) -> None:
    failed = _register(registry, tmp_path, "f", passed=False)
    client = registry._client  # anyone with MLflow write access
    client.set_model_version_tag(MODEL, str(failed), TAG_STATE, "approved")
    client.set_model_version_tag(MODEL, str(failed), TAG_GATE_STATUS, "passed")
    with pytest.raises(TransitionRefused, match="changed outside the audit trail"):
        registry.promote(MODEL, failed, reason="sneak")
    with pytest.raises(TransitionRefused, match="changed outside the audit trail"):
        registry.resolve(MODEL, failed)
    problems = " ".join(registry.verify_audit(MODEL))
    assert "state tag 'approved'" in problems and "gate tag 'passed'" in problems
    result = runner.invoke(app, ["registry", "promote", str(failed), "--reason", "sneak"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "changed outside the audit trail" in " ".join(result.output.split())
    assert registry.get(MODEL, failed).aliases == ()


def test_moved_alias_and_rewritten_gate_report_are_caught(registry: ModelRegistry, tmp_path: Path) -> None:
    v1, v2 = _register(registry, tmp_path, "a"), _register(registry, tmp_path, "b")
    registry.approve(MODEL, v1, reason="gate read")
    registry.approve(MODEL, v2, reason="gate read")
    registry.promote(MODEL, v1, reason="first")
    assert registry.verify_audit(MODEL) == []
    assert registry.resolve(MODEL, "champion").version == v1

    registry._client.set_registered_model_alias(MODEL, "champion", str(v2))  # the alias moved by hand
    with pytest.raises(TransitionRefused, match="audit trail gives it"):
        registry.resolve(MODEL, "champion")
    assert any("holds alias(es) ['champion']" in p for p in registry.verify_audit(MODEL))
    registry._client.set_registered_model_alias(MODEL, "champion", str(v1))
    assert registry.verify_audit(MODEL) == []

    gate_json = registry.get(MODEL, v2).gate_report_json  # the gate report rewritten in the artifact store
    path = Path(gate_json.removeprefix("file://"))
    original = path.read_bytes()
    path.write_text(json.dumps({"passed": True, "reasons": ["edited"]}))
    with pytest.raises(TransitionRefused, match="SHA-256"):
        registry.promote(MODEL, v2, alias="challenger", reason="ab")
    assert any("SHA-256" in p for p in registry.verify_audit(MODEL))
    path.write_bytes(original)

    registry._client.set_model_version_tag(MODEL, str(v2), "aigp.gate.report_json", "file:///tmp/elsewhere.json")
    assert any("was registered" in p for p in registry.verify_audit(MODEL))


# --- control characters ----------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [("reason", "ok\nforged line"), ("reason", "ok \x1b[2J"),
                                          ("reason", "bell\x07"), ("by", "mallory\x1b]0;x\x07"),
                                          ("by", "eve\u202e")])
def test_control_characters_are_refused_in_reason_and_by(registry: ModelRegistry, tmp_path: Path, field: str,
                                                        value: str) -> None:
    version = _register(registry, tmp_path, "a")
    kwargs = {"reason": "fine", "by": "ann", field: value}
    with pytest.raises(RegistryError, match=f"--{field} contains the control character U\\+"):
        registry.approve(MODEL, version, **kwargs)
    assert registry.get(MODEL, version).state is VersionState.CANDIDATE
    result = runner.invoke(app, ["registry", "approve", str(version), f"--{field}", value,
                                 *(["--reason", "fine"] if field == "by" else [])], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and "control character" in result.output


def test_show_never_prints_a_raw_escape_sequence(registry: ModelRegistry, tmp_path: Path) -> None:
    version = _register(registry, tmp_path, "a", pipeline_run_id="run\x1b[2J\x07[bold]x")
    result = runner.invoke(app, ["registry", "show", str(version)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b[2J\\x07[bold]x" in result.output


# --- a malformed audit line ------------------------------------------------------------------------------
@pytest.mark.parametrize("line", ['{"seq": 3}', "not json", "[1, 2]"])
def test_a_malformed_audit_line_is_one_message_naming_the_file(registry: ModelRegistry, tmp_path: Path,
                                                               line: str) -> None:
    _register(registry, tmp_path, "a")
    audit_file = Path(registry.audit.where(MODEL))
    with audit_file.open("a") as handle:
        handle.write(line + "\n")
    result = runner.invoke(app, ["registry", "audit"], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"audit log {audit_file} line 2" in message and "Traceback" not in result.output
