"""The whole training pipeline end to end under kfp.local with the tiny model: every step runs as a subprocess
of this virtualenv, the gate decides and the candidate lands in a real MLflow registry. (The production gate
refusing an untrained model, and the run failing with its reasons, is tested on the offline_gate and
fail_run components and on the compiled branches: a second local run would repeat every step, as kfp.local's
cache keys include each run's output paths.)"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from aigp.market.config import MarketConfig
from aigp.pipelines.runner import PRESETS, latest_output, local_parameters, run_local

# The gate's switchable floors off (a minutes-old tiny model misses the production ones): the run must reach
# registration. The floor on the share of rows the model prices itself stays on: the model must write actions.
NO_FLOORS = ("floors: {max_parse_failure_rate: null, min_compliance_rate: null, min_judge_score: null, "
             "max_mae: null, min_ab_gmv_uplift: null}")


@pytest.mark.slow
def test_training_pipeline_runs_end_to_end_and_registers_the_candidate(tmp_path, monkeypatch) -> None:
    from aigp.market.logs import simulate_to_directory
    from aigp.registry.model_registry import ModelRegistry, VersionState

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("AIGP_REGISTRY_AUDIT", str(tmp_path / "audit"))
    logs = simulate_to_directory(MarketConfig.build(n_skus=150, launch_days=30, seed=3), tmp_path / "market")
    tiny = PRESETS["tiny"].arguments()
    params = local_parameters(logs.path, **{**tiny, "gate_config_yaml": tiny["gate_config_yaml"] + "\n" + NO_FLOORS})
    root = tmp_path / "pipeline_root"

    run_local("training", params, root)

    (info,) = ModelRegistry().list_versions("aigp-pricing")
    assert info.state is VersionState.CANDIDATE and info.gate_status == "passed"
    assert info.data_window == (params["data_start"], params["data_end"])
    assert info.pipeline_run_id.startswith("aigp-training") and info.code_version
    report = json.loads(latest_output(root, "offline-gate*", "gate_json").read_text())
    run_dir = latest_output(root, "offline-gate*", "gate_json").parents[1]
    pairs = json.loads(next(run_dir.glob("count-pairs/executor_output.json")).read_text())["parameterValues"]
    # the tiny preset's compact prompts, delta_q and SFT budget give DPO pairs: DPO ran and the gated model is DPO's
    assert pairs["Output"] > 0 and report["context"]["training_steps"].endswith("dpo")
    cand = report["candidate"]
    assert cand["rows"] == 12 and cand.get("judge_samples", 0) == 0
    # the model writes parsable actions (the floor that cannot be switched off), measured on the gate's rows
    assert cand["model_action_share"] >= 0.5
    assert cand["parse_failure_rate"] == pytest.approx(1.0 - cand["model_action_share"])
    assert any(line.startswith("floor:judge_score") for line in report["skipped"])  # the report says what it skipped
    assert "avg_q" in cand and "ab_gmv_uplift" in cand  # the LTVE scored the actions; the simulated A/B ran
    # evaluate-ltve's metrics reach the gate report beside Avg Q (how well the critic ranks actions)
    assert 0.0 <= report["context"]["critic"]["cda"] <= 1.0
    holdout = dt.date.fromisoformat(json.loads(next(run_dir.glob("build-training-sets/executor_output.json"))
                                               .read_text())["parameterValues"]["Output"])
    assert dt.date.fromisoformat(params["data_start"]) < holdout < dt.date.fromisoformat(params["data_end"])

