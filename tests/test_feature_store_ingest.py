"""Ingestion of market logs into the feature-store source tables (pure pandas, no Feast)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aigp.ingest import (
    DECISION_EVENTS,
    SKU_SNAPSHOTS,
    LogSchemaError,
    ingest_logs,
    read_manifest,
    source_table,
    table_file,
    validate_log_directory,
)
from aigp.market.config import MarketConfig
from aigp.market.simulator import Market
from aigp.market.sinks import MemorySink
from aigp.schema import (
    ENTITY_KEY,
    EVENT_TIMESTAMP,
    FEATURES,
    FORBIDDEN_SUBSTRINGS,
    STATIC_FEATURES,
    Group,
    features_in,
)


@pytest.fixture(scope="module")
def ingested(market_logs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ingest") / "features"
    ingest_logs(market_logs.path, out, chunk_skus=150)  # several SKU chunks even on the small log
    return out


def _read(out: Path, name: str | Group) -> pd.DataFrame:
    """A source table in (event_timestamp, sku_id) order (SKU chunks are written one after another)."""
    frame = pd.read_parquet(out / table_file(name))
    return frame.sort_values([EVENT_TIMESTAMP, ENTITY_KEY], kind="stable").reset_index(drop=True)


def test_every_decision_becomes_one_row_of_every_daily_table(market_logs, ingested: Path) -> None:
    decisions = market_logs.read("decisions.parquet")
    manifest = read_manifest(ingested)
    for group in (Group.PERFORMANCE, Group.PRICING, Group.COMPETITOR, Group.CALENDAR, Group.TEXT):
        frame = _read(ingested, group)
        assert len(frame) == len(decisions) == manifest["tables"][group.value]["rows"]
        assert list(frame.columns) == [ENTITY_KEY, EVENT_TIMESTAMP, *(f.name for f in features_in(group))]
        assert str(frame[EVENT_TIMESTAMP].dtype) == "datetime64[us, UTC]"
        assert not frame.duplicated([ENTITY_KEY, EVENT_TIMESTAMP]).any()
        assert sum(manifest["tables"][group.value]["rows_per_day"].values()) == len(decisions)
    events = _read(ingested, DECISION_EVENTS)
    assert len(events) == len(decisions)
    assert {"discount", "discount_change", "out_gmv", "out_spend", "out_orders"} <= set(events.columns)


def test_rolling_aggregates_recomputed_from_outcomes_equal_what_the_simulator_recorded(market_logs, ingested) -> None:
    decisions = market_logs.read("decisions.parquet").sort_values([EVENT_TIMESTAMP, ENTITY_KEY]).reset_index(drop=True)
    checked = 0
    for group in (Group.PERFORMANCE, Group.PRICING, Group.COMPETITOR, Group.CALENDAR):
        frame = _read(ingested, group)
        assert np.array_equal(frame[ENTITY_KEY].to_numpy(), decisions[ENTITY_KEY].to_numpy())
        for feature in features_in(group):
            ours, logged = frame[feature.name].to_numpy(), decisions[feature.name].to_numpy()
            if feature.dtype == "float32":  # float64 sums of float32 outcomes: equal to float32 precision
                np.testing.assert_allclose(ours, logged, rtol=1e-6, atol=0, err_msg=feature.name)
            else:
                np.testing.assert_array_equal(ours, logged, err_msg=feature.name)
            checked += 1
    assert checked == len(features_in(Group.PERFORMANCE)) + len(features_in(Group.PRICING)) + 6
    # The windows are real windows: 7-day sums exceed 3-day sums once a SKU is old enough.
    perf = _read(ingested, Group.PERFORMANCE)
    old = _read(ingested, Group.PRICING)["days_since_launch"].to_numpy() >= 5
    assert (perf["exposure_7d"].to_numpy()[old] > perf["exposure_3d"].to_numpy()[old]).mean() > 0.9


def test_static_attributes_are_stamped_at_launch(market_logs, ingested) -> None:
    skus = market_logs.read("skus.parquet").set_index(ENTITY_KEY)
    frame = _read(ingested, Group.SKU).set_index(ENTITY_KEY).loc[skus.index]
    assert list(frame.columns) == [EVENT_TIMESTAMP, *STATIC_FEATURES]
    launch = pd.to_datetime(skus["launch_date"]).dt.tz_localize("UTC")
    assert (frame[EVENT_TIMESTAMP] == launch).all()
    for name in STATIC_FEATURES:
        assert (frame[name].to_numpy() == skus[name].to_numpy()).all(), name


def test_attribute_snapshot_restates_the_attributes_on_every_day_priced(market_logs, ingested) -> None:
    """The sku_attributes view's source: one row per decision, stamped like the daily rows, so Feast's own
    materialize of any window finds the attributes of every SKU it loads daily state for."""
    decisions = market_logs.read("decisions.parquet")
    snapshot, daily = _read(ingested, SKU_SNAPSHOTS), _read(ingested, Group.PRICING)
    assert source_table(Group.SKU) == SKU_SNAPSHOTS and source_table(Group.PRICING) == Group.PRICING.value
    assert list(snapshot.columns) == [ENTITY_KEY, EVENT_TIMESTAMP, *STATIC_FEATURES]
    assert len(snapshot) == len(decisions) == read_manifest(ingested)["tables"][SKU_SNAPSHOTS]["rows"]
    assert snapshot[[ENTITY_KEY, EVENT_TIMESTAMP]].equals(daily[[ENTITY_KEY, EVENT_TIMESTAMP]])
    catalog = market_logs.read("skus.parquet").set_index(ENTITY_KEY)
    for name in STATIC_FEATURES:
        want = catalog[name].reindex(snapshot[ENTITY_KEY]).to_numpy()
        assert (snapshot[name].to_numpy() == want).all(), name


class _RecordingExpert:
    """A text-reading policy that records the review digest the simulator showed it, then holds prices."""

    name = "recorder"
    requires_text = True
    requires_truth = False

    def __init__(self) -> None:
        self.seen: list[pd.DataFrame] = []

    def act(self, obs) -> np.ndarray:
        frame = obs.with_text_columns()
        self.seen.append(frame[[ENTITY_KEY, "days_since_launch", "description", "review_digest"]].copy())
        return np.zeros(len(obs))


def test_review_digest_is_point_in_time_and_equals_what_the_simulator_showed(tmp_path: Path) -> None:
    cfg = MarketConfig.build(n_skus=120, launch_days=5, seed=3, horizon_days=8)
    market = Market(cfg)
    policy, sink = _RecordingExpert(), MemorySink()
    market.run({"recorder": policy}, sink=sink)
    logs = tmp_path / "logs"
    logs.mkdir()
    sink.decisions.to_parquet(logs / "decisions.parquet")
    sink.reviews.to_parquet(logs / "reviews.parquet")
    market.sku_frame().to_parquet(logs / "skus.parquet")
    ingest_logs(logs, tmp_path / "features", review_digest_size=cfg.review_digest_size)

    shown = pd.concat(policy.seen, ignore_index=True)
    text = _read(tmp_path / "features", Group.TEXT)
    ages = _read(tmp_path / "features", Group.PRICING)[[ENTITY_KEY, EVENT_TIMESTAMP, "days_since_launch"]]
    ours = text.merge(ages, on=[ENTITY_KEY, EVENT_TIMESTAMP]).merge(shown, on=[ENTITY_KEY, "days_since_launch"],
                                                                    suffixes=("", "_shown"))
    assert len(ours) == len(shown) == len(text)
    assert (ours["description"] == ours["description_shown"]).all()
    assert (ours["review_digest"] == ours["review_digest_shown"]).all()
    # Explicitly: the count a digest names is the number of reviews posted at or before the decision.
    reviews = sink.reviews
    rows_with_later_reviews = 0
    for row in ours.sample(60, random_state=0).itertuples():
        of_sku = reviews[reviews[ENTITY_KEY] == row.sku_id]
        posted = of_sku[of_sku[EVENT_TIMESTAMP] <= row.event_timestamp]
        if len(posted):
            assert f"of {len(posted)} review(s):" in row.review_digest
        else:
            assert row.review_digest == "No reviews yet."
        rows_with_later_reviews += bool((of_sku[EVENT_TIMESTAMP] > row.event_timestamp).any())
    assert rows_with_later_reviews > 20  # the cut-off mattered: later reviews existed and were left out


def test_no_user_level_column_in_any_table(ingested: Path) -> None:
    for path in ingested.glob("*.parquet"):
        for column in pq.read_schema(path).names:
            assert not any(bad in column.lower() for bad in FORBIDDEN_SUBSTRINGS), f"{path.name}: {column}"


# --- bad input ------------------------------------------------------------------------------------------
def _copy_logs(market_logs, tmp_path: Path) -> Path:
    logs = tmp_path / "logs"
    shutil.copytree(market_logs.path, logs)
    return logs


def _rewrite(logs: Path, table: str, change) -> None:
    frame = pd.read_parquet(logs / table)
    change(frame).to_parquet(logs / table)


@pytest.mark.parametrize(
    ("table", "change", "message"),
    [
        ("decisions.parquet", lambda f: f.drop(columns=["out_gmv"]), "decisions.parquet lacks column 'out_gmv'"),
        ("decisions.parquet", lambda f: f.assign(out_orders=f["out_orders"].astype(str)),
         "decisions.parquet column 'out_orders' has type string, expected float"),
        ("skus.parquet", lambda f: f.drop(columns=["list_price"]), "skus.parquet lacks column 'list_price'"),
        ("skus.parquet", lambda f: f.assign(launch_inventory=f["launch_inventory"].astype(float)),
         "skus.parquet column 'launch_inventory' has type double, expected int"),
        ("reviews.parquet", lambda f: f.assign(event_timestamp=f["event_timestamp"].astype(str)),
         "reviews.parquet column 'event_timestamp' has type string, expected timestamp"),
    ],
)
def test_a_missing_or_mistyped_column_fails_before_anything_is_written(market_logs, tmp_path, table, change,
                                                                       message) -> None:
    logs = _copy_logs(market_logs, tmp_path)
    _rewrite(logs, table, change)
    with pytest.raises(LogSchemaError, match=message):
        validate_log_directory(logs)
    out = tmp_path / "features"
    with pytest.raises(LogSchemaError, match=message):
        ingest_logs(logs, out)
    assert not out.exists() and not out.with_name("features.partial").exists()


def test_inconsistent_rows_fail_and_keep_the_previous_ingestion(market_logs, tmp_path) -> None:
    out = tmp_path / "features"
    ingest_logs(market_logs.path, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    logs = _copy_logs(market_logs, tmp_path)
    # A missing day in a SKU's history would silently shift its rolling windows.
    _rewrite(logs, "decisions.parquet",
             lambda f: f.drop(f.index[(f[ENTITY_KEY] == f[ENTITY_KEY].iloc[0]) & (f["days_since_launch"] == 3)]))
    with pytest.raises(ValueError, match=rf"sku_id={market_logs.read('decisions.parquet')[ENTITY_KEY].iloc[0]} "
                                         "has gaps"):
        ingest_logs(logs, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not out.with_name("features.partial").exists()

    logs = _copy_logs(market_logs, tmp_path / "b")
    _rewrite(logs, "skus.parquet", lambda f: f[f[ENTITY_KEY] != 5])
    with pytest.raises(LogSchemaError, match=r"prices sku_id=5, which skus\.parquet does not list"):
        ingest_logs(logs, tmp_path / "b" / "features")

    logs = _copy_logs(market_logs, tmp_path / "c")
    _rewrite(logs, "decisions.parquet",
             lambda f: f.assign(event_timestamp=f["event_timestamp"] + pd.Timedelta(hours=6)))
    with pytest.raises(LogSchemaError, match="event_timestamp must be 00:00 UTC of the day priced"):
        ingest_logs(logs, tmp_path / "c" / "features")


def test_existing_output_needs_overwrite(market_logs, ingested) -> None:
    with pytest.raises(FileExistsError, match="overwrite"):
        ingest_logs(market_logs.path, ingested)


def test_missing_log_directory_is_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        validate_log_directory(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LogSchemaError, match=r"has no decisions\.parquet"):
        validate_log_directory(tmp_path / "empty")


def test_schema_types_survive_to_parquet(ingested) -> None:
    arrow = {"int64": pa.int64(), "float32": pa.float32(), "bool": pa.bool_(), "string": pa.string()}
    for group in Group:
        schema = pq.read_schema(ingested / table_file(group))
        assert schema.field(EVENT_TIMESTAMP).type == pa.timestamp("us", tz="UTC")
        for feature in features_in(group):
            assert schema.field(feature.name).type == arrow[FEATURES[feature.name].dtype], feature.name
