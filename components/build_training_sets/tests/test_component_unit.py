"""build_training_sets through .python_func(): a point-in-time Feast join split by launch date."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from kfp.dsl import Dataset, Metrics

from aigp.components.build_training_sets.component import build_training_sets
from aigp.ingest import ingest_logs
from aigp.ltve.dataset import launch_dates
from aigp.market.config import MarketConfig


@pytest.fixture(scope="module")
def feature_data(tmp_path_factory):
    from aigp.market.logs import simulate_to_directory

    root = tmp_path_factory.mktemp("build_training_sets")
    logs = simulate_to_directory(MarketConfig.build(n_skus=60, launch_days=20, seed=3), root / "market")
    ingest_logs(logs.path, root / "features")
    return root / "features", pd.read_parquet(logs.path / "decisions.parquet")


def _run(feature_data, tmp_path, **kwargs):
    outs = {n: Dataset(uri=str(tmp_path / f"{n}.parquet")) for n in ("training_set", "prompt_rows", "heldout_set")}
    metrics = Metrics(uri=str(tmp_path / "metrics"))
    cutoff = build_training_sets.python_func(feature_data=Dataset(uri=str(feature_data)), metrics=metrics,
                                             **outs, **kwargs)
    return cutoff, {n: pd.read_parquet(d.path) for n, d in outs.items()}, metrics


def test_training_and_heldout_skus_are_disjoint_and_cut_by_launch(feature_data, tmp_path) -> None:
    features, decisions = feature_data
    cutoff, sets, metrics = _run(features, tmp_path, start="2026-03-01", end="2026-04-10", holdout_from="2026-03-15",
                                 max_prompt_rows=50, seed=1)
    assert cutoff == "2026-03-15"
    training, heldout = sets["training_set"], sets["heldout_set"]
    assert not set(training["sku_id"]) & set(heldout["sku_id"])
    assert (launch_dates(training).dt.date < dt.date(2026, 3, 15)).all()
    assert (launch_dates(heldout).dt.date >= dt.date(2026, 3, 15)).all()
    assert len(training) + len(heldout) == len(decisions)  # every decision, once
    assert len(sets["prompt_rows"]) == 50 and set(sets["prompt_rows"]["sku_id"]) <= set(training["sku_id"])
    # the point-in-time join carries text features and the decision labels
    assert {"review_digest", "description", "discount_change", "out_gmv", "date"} <= set(heldout.columns)
    assert metrics.metadata["heldout_skus"] == heldout["sku_id"].nunique()


def test_default_holds_out_the_latest_launches(feature_data, tmp_path) -> None:
    features, _ = feature_data
    cutoff, sets, _ = _run(features, tmp_path, start="2026-03-01", end="2026-04-10", holdout_share=0.25)
    share = sets["heldout_set"]["sku_id"].nunique() / 60
    assert 0.15 <= share <= 0.35 and dt.date.fromisoformat(cutoff) > dt.date(2026, 3, 1)


def test_a_cutoff_outside_the_window_is_refused(feature_data, tmp_path) -> None:
    features, _ = feature_data
    with pytest.raises(ValueError, match="holdout_from=2027-01-01 leaves"):
        _run(features, tmp_path, start="2026-03-01", end="2026-04-10", holdout_from="2027-01-01")
