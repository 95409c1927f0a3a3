"""teacher_generate through .python_func() on tiny inputs, and both components under kfp.local.

(No `from __future__ import annotations`: KFP reads the pipeline signature's real types.)
"""


import json

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Metrics

from aigp.components.judge_filter.component import judge_filter
from aigp.components.teacher_generate.component import teacher_generate
from aigp.distillation.distill import read_jsonl
from aigp.market.config import MarketConfig
from aigp.market.logs import simulate_to_directory


@pytest.fixture(scope="module")
def market_logs(tmp_path_factory):
    """A tiny market log (30 SKUs x 14 days) of this component's own."""
    return simulate_to_directory(MarketConfig.build(n_skus=30, launch_days=5, seed=3),
                                 tmp_path_factory.mktemp("logs") / "market")

def test_generates_one_record_per_prompt(market_logs, tmp_path) -> None:
    out = Dataset(uri=str(tmp_path / "generations.jsonl"))
    metrics = Metrics(uri=str(tmp_path / "metrics"))
    count = teacher_generate.python_func(prompt_source=Dataset(uri=str(market_logs.path)), generations=out,
                                         metrics=metrics, config_yaml="temperature: 0.0\nseed: 3\n", n_prompts=5)
    records = read_jsonl(out.path)
    assert count == 5 == len(records) and out.metadata["records"] == 5
    assert metrics.metadata["generations"] == 5 and metrics.metadata["teacher_errors"] == 0
    assert all(r["completion"] and r["data_window"]["source"] == str(market_logs.path) for r in records)


def test_bad_config_names_the_field(market_logs, tmp_path) -> None:
    with pytest.raises(ValueError, match="temperature"):
        teacher_generate.python_func(prompt_source=Dataset(uri=str(market_logs.path)),
                                     generations=Dataset(uri=str(tmp_path / "g.jsonl")),
                                     metrics=Metrics(uri=str(tmp_path / "m")), config_yaml="temperature: 9\n")


def test_pipeline_runs_under_the_local_runner(market_logs, tmp_path) -> None:
    from kfp import local

    rows = tmp_path / "rows.parquet"
    from aigp.llm.rows import load_prompt_rows

    load_prompt_rows(market_logs.path, n=4, seed=0).to_parquet(rows)

    @dsl.pipeline(name="distill-local")
    def distill_pipeline(source_uri: str) -> float:
        source = dsl.importer(artifact_uri=source_uri, artifact_class=Dataset)
        generated = teacher_generate(prompt_source=source.output, config_yaml="temperature: 1.0\n")
        return judge_filter(generations=generated.outputs["generations"]).outputs["Output"]

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)
    keep_rate = distill_pipeline(source_uri=str(rows)).output
    assert 0.0 <= keep_rate <= 1.0
    manifests = list((tmp_path / "root").rglob("manifest.json"))
    assert len(manifests) == 1 and json.loads(manifests[0].read_text())["records"] >= 0
