"""materialize_features as a one-step pipeline under kfp.local (a subprocess, this virtualenv)."""

import json

import pytest
from kfp import dsl, local

from aigp.components.materialize_features.component import materialize_features
from aigp.market.config import MarketConfig


@dsl.pipeline(name="feature-store")
def feature_pipeline(logs_uri: str, store_dir: str) -> int:
    logs = dsl.importer(artifact_uri=logs_uri, artifact_class=dsl.Dataset, reimport=False)
    return materialize_features(market_logs=logs.output, start="2026-03-03", end="2026-03-05",
                                store_dir=store_dir).outputs["Output"]


@pytest.mark.slow
def test_pipeline_runs_locally(tmp_path) -> None:
    from aigp.market.logs import simulate_to_directory

    logs = simulate_to_directory(MarketConfig.build(n_skus=30, launch_days=4, seed=2), tmp_path / "market")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)
    written = feature_pipeline(logs_uri=str(logs.path), store_dir=str(tmp_path / "store")).output
    reports = list((tmp_path / "root").rglob("materialization.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["report"]["rows_written"] == written > 0
    assert (tmp_path / "store" / "online.db").exists()
