"""build_base_model through .python_func(): a tiny Qwen3 with a tokenizer trained on the pipeline's prompts."""

from __future__ import annotations

import json

from kfp.dsl import Metrics, Model

from aigp.components.build_base_model.component import build_base_model
from aigp.llm.rows import load_prompt_rows
from aigp.market.config import MarketConfig


def test_component_builds_a_loadable_tiny_model(tmp_path) -> None:
    from aigp.llm.model_factory import load_model
    from aigp.market.logs import simulate_to_directory

    logs = simulate_to_directory(MarketConfig.build(n_skus=20, launch_days=3, seed=2), tmp_path / "market")
    load_prompt_rows(logs.path, n=8, seed=0).to_parquet(tmp_path / "rows.parquet")
    model, metrics = Model(uri=str(tmp_path / "model")), Metrics(uri=str(tmp_path / "metrics"))
    from kfp.dsl import Dataset

    params = build_base_model.python_func(prompt_rows=Dataset(uri=str(tmp_path / "rows.parquet")), model=model,
                                          metrics=metrics, size="tiny", corpus_prompts=4, seed=1,
                                          overrides_yaml="vocab_size: 400")
    meta = json.loads((tmp_path / "model" / "aigp_model.json").read_text())
    assert params == meta["parameters"] == model.metadata["parameters"] > 0
    assert meta["size"] == "tiny" and meta["corpus_texts"] == 4 * 2 * 3  # 4 rows x (full, act-only) x 3 texts
    assert metrics.metadata["vocab_size"] <= 400
    lm, tokenizer = load_model(tmp_path / "model")
    assert lm.config.vocab_size == len(tokenizer)
