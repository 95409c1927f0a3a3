"""monitor_pricing component: the function body on tiny logs, and a run under kfp.local."""

from __future__ import annotations

import json

import pytest
from kfp.dsl import HTML, Artifact, Dataset, Metrics

from aigp.components.monitor_pricing.component import monitor_pricing
from aigp.io import write_parquet
from aigp.monitoring.drills import DrillConfig, inject_fallback_rise, simulated_traffic


@pytest.fixture(scope="module")
def market_logs(tmp_path_factory: pytest.TempPathFactory):
    """The reference: a market log directory (the training window)."""
    from aigp.market.config import MarketConfig
    from aigp.market.logs import simulate_to_directory

    config = MarketConfig.build(n_skus=300, launch_days=20, seed=5)
    return simulate_to_directory(config, tmp_path_factory.mktemp("monitor_reference") / "market")


@pytest.fixture(scope="module")
def decisions(tmp_path_factory: pytest.TempPathFactory):
    """Live traffic (a serving-format decisions parquet) with timeouts rising over its days."""
    import numpy as np

    cfg = DrillConfig(current_skus=300, launch_days=20)
    frame = inject_fallback_rise(simulated_traffic(cfg, 4, 300), np.random.default_rng(0), final_rate=0.2)
    path = tmp_path_factory.mktemp("monitor_component") / "decisions.parquet"
    write_parquet(path, frame.drop(columns=["category"]))  # serving logs no category: derived from benchmarks
    return path


def test_component_reports_the_fallback_alert(market_logs, decisions, tmp_path) -> None:
    report, drift = HTML(uri=str(tmp_path / "report.html")), HTML(uri=str(tmp_path / "drift.html"))
    outputs = Artifact(uri=str(tmp_path / "outputs"))
    metrics = Metrics(uri=str(tmp_path / "metrics"))
    fired = monitor_pricing.python_func(reference=Dataset(uri=str(market_logs.path)),
                                        decisions=Dataset(uri=str(decisions)), report=report, drift_report=drift,
                                        outputs=outputs, metrics=metrics, window_days=14, drift_engine="scipy",
                                        config_yaml="min_window_decisions: 100")
    summary = json.loads((tmp_path / "outputs" / "summary.json").read_text())
    assert "fallback_rate" in summary["firing"] and fired == len(summary["firing"])
    assert summary["window"]["days"] == 14
    assert metrics.metadata["fallback_rate"] == pytest.approx(summary["safety"]["fallback_rate"])
    assert metrics.metadata["alerts_firing"] == fired
    assert "<img" in (tmp_path / "report.html").read_text()
    assert "not rendered" in (tmp_path / "drift.html").read_text()
    assert outputs.metadata["firing"] == summary["firing"]


def test_component_rejects_a_bad_config(market_logs, decisions, tmp_path) -> None:
    from aigp.config import ConfigError

    with pytest.raises(ConfigError, match="drift_treshold"):
        monitor_pricing.python_func(reference=Dataset(uri=str(market_logs.path)),
                                    decisions=Dataset(uri=str(decisions)), report=HTML(uri=str(tmp_path / "r")),
                                    drift_report=HTML(uri=str(tmp_path / "d")),
                                    outputs=Artifact(uri=str(tmp_path / "o")), metrics=Metrics(uri=str(tmp_path / "m")),
                                    config_yaml="drift_treshold: 0.2")
