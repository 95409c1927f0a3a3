"""Tiny inputs of the offline gate (shared by the unit and the kfp.local test): a simulator log, its held-out
cohort, a 20-step LTVE and an untrained tiny model."""

from __future__ import annotations

import datetime as dt
import json

import pytest

SHORT = {"act_only": True, "include_knowledge": False, "include_diagnosis": False, "description_max_chars": 60,
         "reviews_max_chars": 60}
GATE = f"""
eval_rows: 6
judge_samples: 2
judge_max_new_tokens: 12
policy: {{prompt: {json.dumps(SHORT)}, generation: {{max_new_tokens: 6}}}}
ab: {{enabled: false}}
"""


@pytest.fixture(scope="session")
def gate_yaml() -> str:
    """A GateConfig that evaluates 6 rows quickly: judge on 2 samples, A/B off."""
    return GATE


@pytest.fixture(scope="session")
def gate_inputs(tmp_path_factory):
    """(root, logs): ``root`` holds ``candidate/``, ``ltve/`` and ``heldout.parquet``; ``logs`` the market log."""
    import torch

    from aigp.gate import heldout_from_logs
    from aigp.llm.model_factory import BaseModelConfig, build_base_model
    from aigp.llm.prompt import PromptConfig, build_prompt
    from aigp.ltve.artifact import save_model
    from aigp.ltve.dataset import training_frame_from_logs
    from aigp.ltve.train import LTVETrainConfig, train_ltve
    from aigp.market.config import MarketConfig
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
