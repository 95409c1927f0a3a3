"""offline_gate through .python_func(): a tiny (untrained) model on a held-out cohort fails with its reasons."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import torch
from kfp.dsl import HTML, Artifact, Dataset, Metrics, Model

from aigp.components.offline_gate.component import offline_gate
from aigp.gate import heldout_from_logs
from aigp.llm.prompt import PromptConfig, build_prompt
from aigp.market.config import MarketConfig

SHORT = {"act_only": True, "include_knowledge": False, "include_diagnosis": False, "description_max_chars": 60,
         "reviews_max_chars": 60}
GATE = f"""
eval_rows: 6
judge_samples: 2
judge_max_new_tokens: 12
policy: {{prompt: {json.dumps(SHORT)}, generation: {{max_new_tokens: 6}}}}
ab: {{enabled: false}}
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from aigp.llm.model_factory import BaseModelConfig, build_base_model
    from aigp.ltve.artifact import save_model
    from aigp.ltve.dataset import training_frame_from_logs
    from aigp.ltve.train import LTVETrainConfig, train_ltve
    from aigp.market.logs import simulate_to_directory

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("offline_gate")
    logs = simulate_to_directory(MarketConfig.build(n_skus=80, launch_days=30, seed=6), root / "market")
    heldout = heldout_from_logs(logs.path, launched_from=dt.date(2026, 3, 20))
    heldout.to_parquet(root / "heldout.parquet")
    result = train_ltve(training_frame_from_logs(logs.path), LTVETrainConfig(critic={"hidden_dims": [16], "steps": 20}))
    save_model(result.model, root / "ltve")
    prompts = [build_prompt(r, PromptConfig(**SHORT)) for r in heldout.head(8).to_dict("records")]
    texts = [m["content"] for p in prompts for m in p.messages]
    build_base_model(root / "candidate", texts, BaseModelConfig(size="tiny", overrides={"vocab_size": 400}))
    return root, logs.path


def test_untrained_model_fails_the_gate_with_reasons_and_a_report(inputs, tmp_path, monkeypatch) -> None:
    root, logs = inputs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")  # an empty registry
    monkeypatch.setenv("AIGP_REGISTRY_AUDIT", str(tmp_path / "audit"))
    report, gate_json = HTML(uri=str(tmp_path / "report.html")), Artifact(uri=str(tmp_path / "gate.json"))
    metrics = Metrics(uri=str(tmp_path / "metrics"))
    verdict = offline_gate.python_func(candidate=Model(uri=str(root / "candidate")),
                                       heldout_set=Dataset(uri=str(root / "heldout.parquet")),
                                       ltve_model=Model(uri=str(root / "ltve")), report=report, gate_json=gate_json,
                                       metrics=metrics, config_yaml=GATE, market_logs=Dataset(uri=str(logs)))
    data = json.loads((tmp_path / "gate.json").read_text())
    # a random tiny model writes no JSON action: every output is a parse failure (and held at yesterday's price)
    assert verdict.startswith("failed: ") and "parse_failure_rate=1 misses the floor <= 0.05" in verdict
    assert data["passed"] is False and data["candidate"]["parse_failure_rate"] == 1.0
    assert data["candidate"]["mean_abs_action"] == 0.0 and data["candidate"]["compliance_rate"] == 0.0
    assert "avg_q" in data["candidate"] and data["candidate"]["judge_samples"] == 2.0
    assert all(c["status"] == "skipped" for c in data["checks"] if c["kind"] == "non-inferiority")
    assert "ab" not in data["context"] and data["context"]["training_steps"] == "unknown"  # A/B off; no lineage
    assert metrics.metadata["gate_passed"] == 0.0 and gate_json.metadata["passed"] is False
    assert "FAILED" in (tmp_path / "report.html").read_text()
