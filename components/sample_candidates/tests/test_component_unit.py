"""sample_candidates component through .python_func() on a tiny policy and a tiny market log."""

from __future__ import annotations

import pandas as pd
from kfp.dsl import Dataset, Metrics, Model

from aigp.components.sample_candidates.component import sample_candidates
from aigp.llm.model_factory import BaseModelConfig, build_base_model
from aigp.llm.prompt import PromptConfig, build_prompt
from aigp.llm.rows import load_prompt_rows
from aigp.market.config import MarketConfig
from aigp.market.logs import simulate_to_directory

CONFIG = """
prompt: {act_only: true, include_knowledge: false, include_diagnosis: false}
generation: {temperature: 1.0, top_k: 20, top_p: 0.9, max_new_tokens: 4, batch_size: 2}
threads: 2
"""


def test_component_writes_rows_and_m_candidates_per_prompt(tmp_path) -> None:
    logs = simulate_to_directory(MarketConfig.build(n_skus=20, launch_days=3, seed=4), tmp_path / "market")
    rows = load_prompt_rows(logs.path, n=6, seed=0)
    cfg = PromptConfig(act_only=True, include_knowledge=False, include_diagnosis=False)
    texts = [m["content"] for r in rows.to_dict("records") for m in build_prompt(r, cfg).messages]
    base = build_base_model(tmp_path / "base", texts, BaseModelConfig(size="tiny", overrides={"vocab_size": 500}))
    out, metrics = Dataset(uri=str(tmp_path / "candidates")), Metrics(uri=str(tmp_path / "metrics"))
    sample_candidates.python_func(policy_model=Model(uri=str(base)), prompt_rows=Dataset(uri=str(logs.path)),
                                  candidates=out, metrics=metrics, config_yaml=CONFIG, n_prompts=3, n_candidates=3)
    rows_out = pd.read_parquet(tmp_path / "candidates" / "rows.parquet")
    candidates = pd.read_parquet(tmp_path / "candidates" / "candidates.parquet")
    assert list(rows_out["prompt_id"]) == [0, 1, 2] and len(candidates) == 9
    assert candidates.groupby("prompt_id").size().tolist() == [3, 3, 3]
    assert metrics.metadata["sampling_samples"] == 9.0 and out.metadata["prompts"] == 3
    # a random tiny model writes no JSON: every sample is a parse failure and nothing is kept
    assert candidates["kept"].sum() == out.metadata["kept"]
