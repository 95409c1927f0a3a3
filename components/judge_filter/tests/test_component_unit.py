"""judge_filter through .python_func() on tiny inputs."""

from __future__ import annotations

import json

import pytest
from kfp.dsl import Dataset, Metrics

from aigp.components.judge_filter.component import judge_filter
from aigp.distillation.distill import DistillConfig, generate, write_jsonl
from aigp.llm.rows import load_prompt_rows
from aigp.market.config import MarketConfig
from aigp.market.logs import simulate_to_directory


@pytest.fixture(scope="module")
def market_logs(tmp_path_factory):
    """A tiny market log (30 SKUs x 14 days) of this component's own."""
    return simulate_to_directory(MarketConfig.build(n_skus=30, launch_days=5, seed=3),
                                 tmp_path_factory.mktemp("logs") / "market")

def test_keeps_perfect_generations_and_writes_the_set(market_logs, tmp_path) -> None:
    rows = load_prompt_rows(market_logs.path, n=6, seed=1)
    records = generate(rows, DistillConfig(temperature=0.0))
    records[0]["completion"][0]["content"] += '\n{"discount_change": 0.19}'  # a second JSON action: rejected
    records[1]["completion"] = None  # a teacher error: counted, never kept
    write_jsonl(tmp_path / "generations.jsonl", records)
    out = Dataset(uri=str(tmp_path / "set"))
    metrics = Metrics(uri=str(tmp_path / "metrics"))
    keep_rate = judge_filter.python_func(generations=Dataset(uri=str(tmp_path / "generations.jsonl")),
                                         distillation_set=out, metrics=metrics)
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["records"] == 4 and manifest["rejected"] == 2 and manifest["failed_generations"] == 1
    assert keep_rate == 0.8 and metrics.metadata["kept"] == 4.0 and out.metadata["records"] == 4
    assert metrics.metadata["failures_reasoning_decision_consistency"] == 1.0
