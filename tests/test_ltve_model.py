"""LTVE artifact (save/load, version and checksum checks), scoring API, evaluation and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from aigp.action import feasible_change_bounds, is_safe
from aigp.cli.demo_context import DemoContext
from aigp.ltve.artifact import ArtifactError, action_grid, load_model, save_model
from aigp.ltve.dataset import training_frame_from_logs
from aigp.ltve.evaluate import (
    EvaluationConfig,
    boundary_actions,
    counterfactual_actions,
    decile_table,
    evaluate_model,
    forward_outcomes,
)
from aigp.ltve.train import LTVETrainConfig, train_ltve, value_bounds
from aigp.market.config import MarketConfig

TINY = {"hidden_dims": [32, 32], "steps": 300}


# tiny networks: a second OpenMP thread only adds synchronisation (and the cores are shared)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory):
    from aigp.market.logs import simulate_to_directory

    return simulate_to_directory(MarketConfig.build(n_skus=900, launch_days=60, seed=11),
                                 tmp_path_factory.mktemp("ltve") / "market")


@pytest.fixture(scope="module")
def frame(logs) -> pd.DataFrame:
    return training_frame_from_logs(logs.path)


@pytest.fixture(scope="module")
def trained(frame: pd.DataFrame):
    torch.set_num_threads(1)
    return train_ltve(frame, LTVETrainConfig(critic=TINY, log_every=100))


def test_training_records_history_metrics_and_split(trained) -> None:
    model = trained.model
    assert [row["step"] for row in trained.history] == [100, 200, 300]
    assert all(math.isfinite(row["loss_q"]) and row["transitions_per_s"] > 0 for row in trained.history)
    assert model.metrics["train/steps"] == 300
    assert model.metrics["train/transitions"] == len(trained.data.train)
    assert math.isfinite(model.metrics["validation/td_mse"])
    assert model.config.q_min < 0 < model.config.q_max  # set from the training rewards
    assert model.info["split"]["evaluation_skus"] > 0


def test_value_bounds_contain_every_discounted_return() -> None:
    low, high = value_bounds(np.array([-0.5, 2.0]), gamma=0.5, horizon_days=3)
    assert (low, high) == (-0.5 * 1.75, 2.0 * 1.75)


def test_save_load_round_trip(trained, frame: pd.DataFrame, tmp_path) -> None:
    path = save_model(trained.model, tmp_path / "ltve")
    assert not (tmp_path / "ltve.partial").exists()
    loaded = load_model(path)
    rows = frame.sample(40, random_state=0)
    candidates = action_grid(rows["prev_discount"].to_numpy(), 5)
    assert np.array_equal(loaded.q_values(rows, candidates), trained.model.q_values(rows, candidates))
    assert loaded.metrics == json.loads(json.dumps(trained.model.metrics))
    assert loaded.references == trained.model.references
    assert loaded.normaliser == trained.model.normaliser
    assert loaded.config == trained.model.config and loaded.learner.total_steps == 300


def test_load_names_what_is_wrong(trained, tmp_path) -> None:
    with pytest.raises(ArtifactError, match="not an LTVE artifact"):
        load_model(tmp_path / "nothing")
    path = save_model(trained.model, tmp_path / "a")
    manifest = json.loads((path / "ltve.json").read_text())
    (path / "ltve.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ArtifactError, match="format_version=99, this aigp reads 1"):
        load_model(path)
    (path / "ltve.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt: not valid JSON"):
        load_model(path)
    path = save_model(trained.model, tmp_path / "b")
    weights = path / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match the checksum"):
        load_model(path)


def test_scoring_api_checks_its_input_and_greedy_stays_in_a_safe(trained, frame: pd.DataFrame) -> None:
    model = trained.model
    rows = frame.sample(60, random_state=1)
    with pytest.raises(ValueError, match="must be \\(N, K\\) with N=60"):
        model.q_values(rows, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN or inf"):
        model.q_values(rows, np.full((60, 2), np.nan))
    prev = rows["prev_discount"].to_numpy()
    grid = action_grid(prev, 21)
    low, high = feasible_change_bounds(prev)
    assert np.allclose(grid[:, 0], low) and np.allclose(grid[:, -1], high)
    action, q = model.greedy(rows, 21)
    assert is_safe(prev, action).all()
    assert np.allclose(q, model.q_values(rows, grid).max(1))
    assert np.allclose(model.q_logged(rows), model.q_values(rows, rows[["discount_change"]].to_numpy())[:, 0])


def test_counterfactual_and_boundary_actions_are_feasible() -> None:
    rng = np.random.default_rng(0)
    prev = rng.uniform(0.5, 1.0, 2000)
    low, high = feasible_change_bounds(prev)
    expert = low + (high - low) * rng.random(2000)
    cf = counterfactual_actions(prev, expert, 0.1, rng)
    assert is_safe(prev, cf).all()
    assert np.allclose(np.abs(cf - expert), 0.1, atol=1e-6)
    assert (cf > expert).mean() == pytest.approx(0.5, abs=0.06)
    boundary = boundary_actions(prev, 0.15, rng)
    assert is_safe(prev, boundary).all() and (np.abs(boundary) >= 0.15 - 1e-9).all()


def test_forward_outcomes_by_hand() -> None:
    # One SKU, 4 logged days of a 4-day episode; windows of 2 days.
    frame = pd.DataFrame({
        "sku_id": 1, "days_since_launch": [0, 1, 2, 3], "out_gmv": [10.0, 20.0, 30.0, 40.0],
        "out_spend": [5.0, 5.0, 10.0, 10.0], "cum_gmv": [0.0, 10.0, 30.0, 60.0], "cum_spend": [0.0, 5.0, 10.0, 20.0],
        "gmv_tier1": 80.0, "roi_target": 3.0,
    })
    out = forward_outcomes(frame, horizons=(2,), horizon_days=4)
    assert out["gmv_2d"].tolist() == [30.0, 50.0, 70.0, 40.0]
    assert out["spend_2d"].tolist() == [10.0, 15.0, 20.0, 10.0]
    # window end after 2, 3, 4, 4 days: GMV since launch 30, 60, 100, 100 vs tier 40, 60, 80, 80; ROI 3, 3, 3.33
    assert out["mar_2d"].tolist() == [0.0, 1.0, 1.0, 1.0]


def test_decile_table_of_a_monotone_relation() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=5000)
    outcomes = pd.DataFrame({f"{m}_{h}d": v for h in (7, 14) for m, v in (
        ("gmv", np.exp(q) * 100 + rng.normal(0, 1, 5000)), ("spend", np.full(5000, 10.0)),
        ("mar", (q > 0).astype(float)))})
    table, rho = decile_table(q, outcomes, trim=0.05)
    assert len(table) == 10 and (table["rows"] == 500).all()
    assert rho["spearman_decile_gmv_7d"] == pytest.approx(1.0)
    assert rho["spearman_decile_roi_14d"] == pytest.approx(1.0)
    assert table["mar_7d"].iloc[0] == 0.0 and table["mar_7d"].iloc[-1] == 1.0


def test_evaluation_with_the_monte_carlo_check(trained, frame: pd.DataFrame, logs, tmp_path) -> None:
    cfg = EvaluationConfig(decile_rows=2000, monte_carlo={"states": 12, "rollouts": 3, "grid": 3})
    report = evaluate_model(trained.model, frame, cfg, log_dir=logs.path)
    m = report.metrics
    for key in ("mae", "eama", "cda", "cda_cold_start", "cda_boundary", "eama_ops_expert",
                "spearman_decile_gmv_7d", "spearman_decile_mar_14d", "mc_spearman", "mc_cda",
                "mc_spearman_within_state_gap", "mc_regret", "mc_regret_share", "mc_calibration_slope",
                "mc_calibration_bias"):
        assert math.isfinite(m[key]), key
    assert m["mc_min_action_gap"] == 0.02 and m["mc_pairs_gap"] >= 0
    assert 0 <= m["eama"] <= 1 and 0 <= m["mae"] <= 0.4
    assert m["skus"] == trained.model.info["split"]["evaluation_skus"]
    mc = report.monte_carlo
    assert mc is not None and len(mc) == 12 * 5
    logged = mc[mc["candidate"] == 0].set_index(["sku_id", "days_since_launch"])["action"]
    index = frame.set_index(["sku_id", "days_since_launch"])["discount_change"]
    assert np.allclose(logged.to_numpy(), index.loc[logged.index].to_numpy(), atol=1e-6)
    out = report.write(tmp_path / "eval")
    for name in ("metrics.json", "report.md", "report.html", "deciles.parquet", "monte_carlo.parquet",
                 "q_deciles.png"):
        assert (out / name).stat().st_size > 0, name


def test_cql_trains_on_the_same_data_and_round_trips(frame: pd.DataFrame, tmp_path) -> None:
    result = train_ltve(frame, LTVETrainConfig(kind="cql", critic={"hidden_dims": [16], "steps": 60},
                                               log_every=30))
    assert result.model.kind == "cql" and math.isfinite(result.history[-1]["loss_cql"])
    loaded = load_model(save_model(result.model, tmp_path / "cql"))
    rows = frame.head(10)
    assert loaded.kind == "cql"
    assert np.array_equal(loaded.q_values(rows, np.zeros((10, 2))), result.model.q_values(rows, np.zeros((10, 2))))


def test_train_config_names_unknown_critic_fields() -> None:
    from aigp.config import ConfigError

    with pytest.raises(ConfigError, match="unknown field\\(s\\) \\['cql_alpha'\\] for kind='ltve'"):
        LTVETrainConfig.build(critic={"cql_alpha": 1.0})
    assert LTVETrainConfig.build(kind="cql", critic={"cql_alpha": 2.0}).critic_config().cql_alpha == 2.0


def test_cli_train_and_evaluate(logs, tmp_path, monkeypatch) -> None:
    from aigp.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    runner = CliRunner()
    model_dir, report_dir = tmp_path / "model", tmp_path / "report"
    result = runner.invoke(app, ["ltve", "train", "--logs", str(logs.path), "--out", str(model_dir), "--steps", "40",
                                 "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert load_model(model_dir).learner.total_steps == 40
    result = runner.invoke(app, ["ltve", "evaluate", "--model", str(model_dir), "--logs", str(logs.path), "--out",
                                 str(report_dir), "--mc-states", "5", "--no-track"])
    assert result.exit_code == 0, result.output
    assert "eama=" in result.output and (report_dir / "q_deciles.png").exists()

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["ltve"])
    assert len(runs) == 1 and runs["metrics.train/steps"].iloc[0] == 40

    bad = runner.invoke(app, ["ltve", "evaluate", "--model", str(tmp_path / "missing"), "--logs", str(logs.path),
                              "--out", str(report_dir), "--no-track"])
    assert bad.exit_code == 2 and "not an LTVE artifact" in " ".join(bad.output.split())


def test_demo_stage_trains_and_evaluates(logs, tmp_path) -> None:
    from aigp.cli.ltve import stage_ltve

    ctx = DemoContext(logs=logs, root=tmp_path, ltve_steps=20)
    line = stage_ltve(ctx)
    assert "EAMA" in line and load_model(ctx.ltve).learner.total_steps == 20
    assert (tmp_path / "ltve_eval" / "q_deciles.png").exists()


def test_monte_carlo_check_refuses_a_log_the_simulator_does_not_reproduce(trained, frame, logs) -> None:
    tampered = frame.assign(out_gmv=frame["out_gmv"] + 7.0)
    cfg = EvaluationConfig(decile_rows=500, monte_carlo={"states": 4, "rollouts": 2, "grid": 2})
    with pytest.raises(ValueError, match="another simulator version or seed"):
        evaluate_model(trained.model, tampered, cfg, log_dir=logs.path)
