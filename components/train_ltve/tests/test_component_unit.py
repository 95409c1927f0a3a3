"""train_ltve component: the function body on a tiny training set, and a run under kfp.local."""

from __future__ import annotations

import pytest
import torch
from kfp.dsl import Dataset, Metrics, Model

from aigp.components.train_ltve.component import train_ltve
from aigp.ltve.artifact import load_model
from aigp.ltve.dataset import training_frame_from_logs
from aigp.market.config import MarketConfig


@pytest.fixture(scope="module")
def training_set(tmp_path_factory: pytest.TempPathFactory):
    from aigp.market.logs import simulate_to_directory

    root = tmp_path_factory.mktemp("train_ltve")
    logs = simulate_to_directory(MarketConfig.build(n_skus=500, launch_days=45, seed=3), root / "market")
    path = root / "training_set.parquet"
    training_frame_from_logs(logs.path).to_parquet(path)
    return path


def test_component_writes_a_loadable_model_and_metrics(training_set, tmp_path) -> None:
    torch.set_num_threads(1)
    model, metrics = Model(uri=str(tmp_path / "model")), Metrics(uri=str(tmp_path / "metrics"))
    train_ltve.python_func(training_set=Dataset(uri=str(training_set)), model=model, metrics=metrics,
                           config_yaml="critic: {hidden_dims: [16], n_steps: 5}\nthreads: 1", steps=30)
    loaded = load_model(model.path)
    assert loaded.learner.total_steps == 30 and loaded.config.n_steps == 5
    assert metrics.metadata["train_steps"] == 30.0
    assert model.metadata["kind"] == "ltve" and model.metadata["n_steps"] == 5


def test_component_rejects_a_bad_config(training_set, tmp_path) -> None:
    from aigp.config import ConfigError

    with pytest.raises(ConfigError, match="gama"):
        train_ltve.python_func(training_set=Dataset(uri=str(training_set)), model=Model(uri=str(tmp_path / "m")),
                               metrics=Metrics(uri=str(tmp_path / "x")), config_yaml="critic: {gama: 0.9}")
