"""offline_gate through .python_func(): a tiny (untrained) model on a held-out cohort fails with its reasons,
and its report is an .html file that lists every check not made, with why."""

from __future__ import annotations

import html
import json

from kfp.dsl import HTML, Artifact, Dataset, Metrics, Model

from aigp.components.offline_gate.component import offline_gate


def test_untrained_model_fails_the_gate_with_reasons_and_a_report(gate_inputs, gate_yaml, tmp_path,
                                                                  monkeypatch) -> None:
    root, logs = gate_inputs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")  # an empty registry
    monkeypatch.setenv("AIGP_REGISTRY_AUDIT", str(tmp_path / "audit"))
    # the uris KFP gives outputs: named after the output, no extension
    report, gate_json = HTML(uri=str(tmp_path / "report")), Artifact(uri=str(tmp_path / "gate_json"))
    metrics = Metrics(uri=str(tmp_path / "metrics"))
    verdict = offline_gate.python_func(candidate=Model(uri=str(root / "candidate")),
                                       heldout_set=Dataset(uri=str(root / "heldout.parquet")),
                                       ltve_model=Model(uri=str(root / "ltve")), report=report, gate_json=gate_json,
                                       metrics=metrics, config_yaml=gate_yaml, market_logs=Dataset(uri=str(logs)))
    data = json.loads((tmp_path / "gate_json").read_text())
    # a random tiny model writes no JSON action: every output is a parse failure (and held at yesterday's price)
    assert verdict.startswith("failed: ") and "parse_failure_rate=1 misses the floor <= 0.05" in verdict
    assert data["passed"] is False and data["candidate"]["parse_failure_rate"] == 1.0
    assert data["candidate"]["mean_abs_action"] == 0.0 and data["candidate"]["compliance_rate"] == 0.0
    assert "avg_q" in data["candidate"] and data["candidate"]["judge_samples"] == 2.0
    assert "ab" not in data["context"] and data["context"]["training_steps"] == "unknown"  # A/B off; no lineage
    assert metrics.metadata["gate_passed"] == 0.0 and gate_json.metadata["passed"] is False
    # the report is an .html file (a browser and MLflow show it as a page), at the uri the component set
    assert report.uri == str(tmp_path / "report.html") and report.path.endswith(".html")
    assert not (tmp_path / "report").exists()
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "FAILED" in page
    # every check not made is listed with why: no champion in the (empty) registry, the A/B and floors switched off
    skipped = {c["name"]: c["reason"] for c in data["checks"] if c["status"] == "skipped"}
    assert data["skipped"] == [f"{name}: {reason}" for name, reason in skipped.items()]
    for name, reason in skipped.items():
        assert html.escape(f"{name}: {reason}") in page, name
    margins = {n: r for n, r in skipped.items() if n.startswith("non-inferiority:")}
    assert len(margins) == 8
    assert all(r.startswith("no champion of aigp-pricing in the registry") for r in margins.values())
    assert skipped["floor:ab_gmv_uplift"] == ("switched off: ab.enabled is false in this gate's config "
                                              "(no simulated A/B)")
    assert skipped["floor:eama"] == "switched off: floors.min_eama is null in this gate's config"


def test_margins_switched_off_say_so(gate_inputs, gate_yaml, tmp_path) -> None:
    root, _ = gate_inputs
    report, gate_json = HTML(uri=str(tmp_path / "report")), Artifact(uri=str(tmp_path / "gate_json"))
    offline_gate.python_func(candidate=Model(uri=str(root / "candidate")),
                             heldout_set=Dataset(uri=str(root / "heldout.parquet")),
                             ltve_model=Model(uri=str(root / "ltve")), report=report, gate_json=gate_json,
                             metrics=Metrics(uri=str(tmp_path / "metrics")), compare_champion=False,
                             config_yaml=gate_yaml.replace("judge_samples: 2", "judge_samples: 0"))
    data = json.loads((tmp_path / "gate_json").read_text())
    skipped = {c["name"]: c["reason"] for c in data["checks"] if c["status"] == "skipped"}
    judge_off = "switched off: judge_samples is 0 in this gate's config (the rule judge did not run)"
    assert skipped.pop("floor:judge_score") == judge_off == skipped.pop("non-inferiority:judge_score")
    assert {r for n, r in skipped.items() if n.startswith("non-inferiority:")} == {
        "switched off: compare_champion is false in this run"}
    page = (tmp_path / "report.html").read_text()
    assert html.escape(f"floor:judge_score: {judge_off}") in page
    assert html.escape("non-inferiority:mae: switched off: compare_champion is false in this run") in page
    assert "The critic behind Avg Q" in page and "Not given" in page and "critic" not in data["context"]


def test_the_critics_evaluation_is_shown_beside_avg_q(gate_inputs, gate_yaml, tmp_path) -> None:
    root, _ = gate_inputs
    evaluation = tmp_path / "evaluation"
    evaluation.write_text(json.dumps({"cda": 0.912, "eama": 0.4321, "mc_spearman_within_state": 0.6172}))
    report, gate_json = HTML(uri=str(tmp_path / "report")), Artifact(uri=str(tmp_path / "gate_json"))
    offline_gate.python_func(candidate=Model(uri=str(root / "candidate")),
                             heldout_set=Dataset(uri=str(root / "heldout.parquet")),
                             ltve_model=Model(uri=str(root / "ltve")), report=report, gate_json=gate_json,
                             metrics=Metrics(uri=str(tmp_path / "metrics")), compare_champion=False,
                             config_yaml=gate_yaml, critic_evaluation=Artifact(uri=str(evaluation)))
    data = json.loads((tmp_path / "gate_json").read_text())
    assert data["context"]["critic"]["mc_spearman_within_state"] == 0.6172  # kept whole in the JSON report
    page = (tmp_path / "report.html").read_text()
    section = page.split("The critic behind Avg Q", 1)[1].split("Evaluation context", 1)[0]
    assert "0.6172" in section and "0.912" in section and "Not given" not in section
    # what the evaluation did not measure is said, not left blank
    assert "not measured (needs the simulator log)" in section
