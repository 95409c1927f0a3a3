"""train_ltve -> evaluate_ltve as a two-step pipeline under kfp.local (subprocesses, this virtualenv)."""

import pytest
from kfp import dsl, local

from aigp.components.evaluate_ltve.component import evaluate_ltve
from aigp.components.train_ltve.component import train_ltve
from aigp.ltve.dataset import training_frame_from_logs
from aigp.market.config import MarketConfig


@dsl.pipeline(name="ltve-train-evaluate")
def ltve_pipeline(training_set_uri: str) -> None:
    data = dsl.importer(artifact_uri=training_set_uri, artifact_class=dsl.Dataset, reimport=False)
    trained = train_ltve(training_set=data.output, steps=20,
                         config_yaml="critic: {hidden_dims: [16]}\nthreads: 1")
    evaluate_ltve(model=trained.outputs["model"], evaluation_set=data.output, config_yaml="decile_rows: 500")


@pytest.mark.slow
def test_pipeline_runs_locally(tmp_path) -> None:
    from aigp.market.logs import simulate_to_directory

    logs = simulate_to_directory(MarketConfig.build(n_skus=400, launch_days=40, seed=8), tmp_path / "market")
    path = tmp_path / "set.parquet"
    training_frame_from_logs(logs.path).to_parquet(path)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)
    ltve_pipeline(training_set_uri=str(path))
    reports = list((tmp_path / "root").rglob("report"))
    assert reports and "<table>" in reports[0].read_text()
