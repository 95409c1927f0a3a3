"""materialize_features through .python_func() on a tiny market log, SQLite online store."""

from __future__ import annotations

import json

import pytest
from kfp.dsl import Dataset, Metrics

from aigp.components.materialize_features.component import materialize_features
from aigp.market.config import MarketConfig
from aigp.market.logs import simulate_to_directory


@pytest.fixture(scope="module")
def market_logs(tmp_path_factory):
    """A tiny market log (40 SKUs x 14 days) of this component's own."""
    return simulate_to_directory(MarketConfig.build(n_skus=40, launch_days=5, seed=3),
                                 tmp_path_factory.mktemp("logs") / "market")


def test_ingests_materializes_and_reports(market_logs, tmp_path) -> None:
    features = Dataset(uri=str(tmp_path / "features"))
    metrics = Metrics(uri=str(tmp_path / "metrics"))
    written = materialize_features.python_func(
        market_logs=Dataset(uri=str(market_logs.path)), start="2026-03-04", end="2026-03-06",
        feature_data=features, metrics=metrics, store_dir=str(tmp_path / "store"))
    decisions = market_logs.read("decisions.parquet")
    in_window = decisions[(decisions["date"] >= "2026-03-04") & (decisions["date"] < "2026-03-06")]
    # Both days fit one window: the six views (the SKU attributes' source restates them on each day priced)
    # x the latest row of each SKU priced in it, as `feast materialize` would load.
    assert written == 6 * in_window["sku_id"].nunique() > 0
    assert metrics.metadata["rows_written"] == float(written)
    assert metrics.metadata["decisions"] == float(len(decisions)) and metrics.metadata["skus"] == 40.0
    assert features.metadata["decisions"] == len(decisions)
    report = json.loads((tmp_path / "features" / "materialization.json").read_text())
    assert report["report"]["rows_written"] == written
    assert (tmp_path / "store" / "online.db").exists()

    # The online store now serves the SKUs priced on the window's last day.
    from aigp.feature_repo.store import open_store

    store = open_store(feature_data=tmp_path / "features", state_dir=tmp_path / "store")
    last_day = in_window[in_window["date"] == in_window["date"].max()]
    online = store.online_features(last_day["sku_id"].tolist(), "llm_prompt")
    assert not online["features_missing"].any()
    assert (online["days_since_launch"].to_numpy() == last_day["days_since_launch"].to_numpy()).all()


def test_bad_window_is_a_clear_error(market_logs, tmp_path) -> None:
    with pytest.raises(ValueError, match="must be after start"):
        materialize_features.python_func(
            market_logs=Dataset(uri=str(market_logs.path)), start="2026-03-06", end="2026-03-04",
            feature_data=Dataset(uri=str(tmp_path / "features")), metrics=Metrics(uri=str(tmp_path / "m")),
            store_dir=str(tmp_path / "store"))
