"""register_model and fail_run through .python_func(): a gated candidate lands in a real MLflow registry."""

from __future__ import annotations

import numpy as np
import pytest
from kfp.dsl import HTML, Artifact, Model

from aigp.components.register_model.component import fail_run, register_model
from aigp.gate import GateConfig, GateResult, decide
from aigp.gate_report import write_gate_report


def _gate_report(tmp_path, candidate: dict) -> tuple:
    config = GateConfig.build(judge_samples=0)
    checks = decide(candidate, None, config)
    result = GateResult(passed=not any(c.status == "failed" for c in checks), checks=checks, candidate=candidate,
                        champion=None, actions={"expert": [0.0, 0.01], "candidate": [0.0, 0.02]})
    report = write_gate_report(result, tmp_path / "gate")
    return report, result


def test_registers_the_candidate_with_report_metrics_window_and_run_id(tmp_path, monkeypatch) -> None:
    from aigp.registry.model_registry import ModelRegistry, VersionState

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("AIGP_REGISTRY_AUDIT", str(tmp_path / "audit"))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "qwen3"}')
    candidate = {"mae": 0.01, "eama": 0.9, "parse_failure_rate": 0.0, "compliance_rate": 1.0, "kips": 0.8,
                 "eama_r": 0.85, "avg_q": float(np.float64(1.5))}
    report, result = _gate_report(tmp_path, candidate)
    assert result.passed
    version = register_model.python_func(model=Model(uri=str(model_dir)), gate_json=Artifact(uri=str(report.json_path)),
                                         gate_report=HTML(uri=str(report.html_path)), data_start="2026-03-01",
                                         data_end="2026-04-10", pipeline_run_id="aigp-training-run-7",
                                         code_version="abc123")
    info = ModelRegistry().get("aigp-pricing", version)
    assert version == 1 and info.state is VersionState.CANDIDATE and info.gate_status == "passed"
    assert info.data_window == ("2026-03-01", "2026-04-10") and info.pipeline_run_id == "aigp-training-run-7"
    assert info.code_version == "abc123" and info.metrics["mae"] == pytest.approx(0.01)
    assert info.gate_report_json.endswith("gate_report.json") and info.gate_report_html.endswith("gate_report.html")
    # a passed gate makes it approvable by a person
    approved = ModelRegistry().approve("aigp-pricing", version, by="reviewer", reason="gate passed, report read")
    assert approved.state is VersionState.APPROVED


def test_fail_run_ends_the_run_with_the_reason() -> None:
    with pytest.raises(RuntimeError, match="failed: parse_failure_rate=1 misses the floor"):
        fail_run.python_func(reason="failed: parse_failure_rate=1 misses the floor <= 0.05")
