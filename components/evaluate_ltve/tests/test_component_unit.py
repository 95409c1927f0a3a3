"""evaluate_ltve component: the function body on a tiny model and cohort."""

from __future__ import annotations

import json
import math

import pytest
import torch
from kfp.dsl import HTML, Artifact, Dataset, Metrics, Model

from aigp.components.evaluate_ltve.component import evaluate_ltve
from aigp.ltve.artifact import save_model
from aigp.ltve.dataset import training_frame_from_logs
from aigp.ltve.train import LTVETrainConfig, train_ltve
from aigp.market.config import MarketConfig


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory):
    from aigp.market.logs import simulate_to_directory

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("evaluate_ltve")
    logs = simulate_to_directory(MarketConfig.build(n_skus=500, launch_days=45, seed=4), root / "market")
    frame = training_frame_from_logs(logs.path)
    frame.to_parquet(root / "set.parquet")
    result = train_ltve(frame, LTVETrainConfig(critic={"hidden_dims": [16], "steps": 30}))
    save_model(result.model, root / "model")
    return root, logs.path


def test_component_reports_metrics_and_html(inputs, tmp_path) -> None:
    root, logs = inputs
    metrics, report = Metrics(uri=str(tmp_path / "metrics")), HTML(uri=str(tmp_path / "report.html"))
    evaluation = Artifact(uri=str(tmp_path / "evaluation"))
    evaluate_ltve.python_func(model=Model(uri=str(root / "model")),
                              evaluation_set=Dataset(uri=str(root / "set.parquet")), metrics=metrics, report=report,
                              evaluation=evaluation, market_logs=str(logs),
                              config_yaml="monte_carlo: {states: 6, rollouts: 2, grid: 2}\ndecile_rows: 1000")
    for key in ("mae", "eama", "cda", "spearman_decile_gmv_14d", "mc_spearman", "mc_spearman_within_state"):
        assert math.isfinite(metrics.metadata[key]), key
    # the gate's critic_evaluation: the same finite metrics as JSON
    assert json.loads((tmp_path / "evaluation").read_text()) == {
        k: v for k, v in metrics.metadata.items() if math.isfinite(v)}
    html = (tmp_path / "report.html").read_text()
    assert "<img src='data:image/png;base64," in html and "eama" in html


def test_component_without_market_logs_skips_the_simulator_check(inputs, tmp_path) -> None:
    root, _ = inputs
    metrics = Metrics(uri=str(tmp_path / "metrics"))
    evaluate_ltve.python_func(model=Model(uri=str(root / "model")),
                              evaluation_set=Dataset(uri=str(root / "set.parquet")), metrics=metrics,
                              report=HTML(uri=str(tmp_path / "r.html")),
                              evaluation=Artifact(uri=str(tmp_path / "evaluation")), config_yaml="decile_rows: 1000")
    assert "cda" in metrics.metadata and not any(k.startswith("mc_") for k in metrics.metadata)
