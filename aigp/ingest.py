"""Market logs -> feature-store source tables (pure pandas; the Feast repo in ``feature_repo/`` reads them).

``ingest_logs(logs_dir, out_dir)`` validates a market log directory and writes one parquet table per
feature view (:class:`aigp.schema.Group`) plus the decision events (entity rows and labels of training
sets) into ``out_dir``:

- ``sku_attributes.parquet``: the SKU catalog, one row per SKU stamped at its launch (00:00 UTC of the
  launch date): which SKUs exist and since when (serving's active SKUs, the monitor's category join);
- ``sku_attributes_daily.parquet``: the same attributes restated on every day the SKU is priced, stamped
  like the daily rows: the ``sku_attributes`` feature view's source. Feast materializes the latest row
  *inside* the window it is given, so an attribute row stamped only at launch never reaches the online
  store through ``feast materialize`` of a later window; a daily snapshot does, for exactly the SKUs
  whose daily state it loads;
- ``daily_performance``, ``pricing_history``, ``competitor_stats``, ``calendar``, ``text_context``:
  one row per SKU and day priced, stamped at decision time (00:00 UTC of the day priced). A row holds the
  state *known at that time*: rolling 3/7-day aggregates are recomputed here from the raw ``out_*``
  outcomes with :func:`aigp.features.state_features` (the one definition the simulator also uses), and the
  review digest shows only reviews posted at or before the decision time;
- ``decision_events.parquet``: ``sku_id``, ``event_timestamp`` and the action and outcome columns of every
  decision: the entity rows (and labels) of point-in-time training sets;
- ``manifest.json`` (written last): rows, time range and rows per day of each table.

Every column is validated before anything is written (a missing column or a wrong type is an error that
names the table and the column), and the directory is built under a ``.partial`` name and renamed when
complete, so a reader never sees half an ingestion. Timestamps are ``datetime64[us, UTC]`` (DuckDB and
Feast reject nanoseconds).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import aigp
from aigp.features import DecisionContext, SkuStatics, panel_from_log, state_features
from aigp.io import replace_directory, write_json
from aigp.market.text import review_digest
from aigp.schema import (
    ACTION_COLUMNS,
    DATE,
    ENTITY_KEY,
    EVENT_TIMESTAMP,
    FEATURES,
    OUTCOME_COLUMNS,
    STATIC_FEATURES,
    Group,
    features_in,
)

DECISION_EVENTS = "decision_events"
SKU_SNAPSHOTS = "sku_attributes_daily"  # the sku_attributes view's source: attributes per SKU and day priced
MANIFEST = "manifest.json"
DEFAULT_REVIEW_DIGEST_SIZE = 3  # MarketConfig.review_digest_size; used when a log has no manifest
DEFAULT_CHUNK_SKUS = 20_000  # about 0.7 GB of working memory per chunk


def table_file(name: str | Group) -> str:
    """File name of a source table: ``<view name>.parquet`` or ``decision_events.parquet``."""
    return f"{name.value if isinstance(name, Group) else name}.parquet"


def source_table(group: Group) -> str:
    """Name of the table a feature view reads (``table_file`` of it is the parquet file): the view's own
    name, except the SKU attributes, whose view reads their daily snapshot (:data:`SKU_SNAPSHOTS`)."""
    return SKU_SNAPSHOTS if group is Group.SKU else group.value


class LogSchemaError(ValueError):
    """A market log lacks a column, has one of the wrong type, or holds inconsistent rows."""


# --- what a market log must hold --------------------------------------------------------------------
# kind: "int", "float" (integers accepted), "bool", "string", "timestamp" (naive = UTC)
_CONTEXT_COLUMNS = ("day_of_week", "is_promotion", "in_season", "competitor_price_index", "competitor_median_price")
_RAW_OUTCOMES = ("out_exposure", "out_clicks", "out_orders", "out_gmv", "out_spend", "out_new_reviews")
_KIND_OF_DTYPE = {"int64": "int", "float32": "float", "bool": "bool", "string": "string"}

REQUIRED_COLUMNS: dict[str, dict[str, str]] = {
    "decisions.parquet": {
        ENTITY_KEY: "int", EVENT_TIMESTAMP: "timestamp", "days_since_launch": "int",
        "discount": "float", "discount_change": "float",
        **{c: "float" for c in _RAW_OUTCOMES if c != "out_new_reviews"}, "out_new_reviews": "int",
        **{c: _KIND_OF_DTYPE[FEATURES[c].dtype] for c in _CONTEXT_COLUMNS},
    },
    "skus.parquet": {
        ENTITY_KEY: "int", **{c: _KIND_OF_DTYPE[FEATURES[c].dtype] for c in STATIC_FEATURES},
        "launch_date": "timestamp", "launch_discount": "float", "description": "string",
    },
    "reviews.parquet": {ENTITY_KEY: "int", EVENT_TIMESTAMP: "timestamp", "review_seq": "int", "text": "string"},
}


def _kind_matches(kind: str, dtype: pa.DataType) -> bool:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    checks = {
        "int": pa.types.is_integer,
        "float": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
        "bool": pa.types.is_boolean,
        "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
        "timestamp": pa.types.is_timestamp,
    }
    return checks[kind](dtype)


def validate_log_directory(logs_dir: str | Path) -> None:
    """Check that every table a feature store needs is there with every column of the right type.

    Reads parquet schemas only (no data), so it is cheap at any size; raises :class:`LogSchemaError`
    naming the table and the column.
    """
    logs_dir = Path(logs_dir)
    if not logs_dir.is_dir():
        raise FileNotFoundError(f"market log directory {logs_dir} does not exist")
    for table, columns in REQUIRED_COLUMNS.items():
        path = logs_dir / table
        if not path.exists():
            raise LogSchemaError(f"{logs_dir} has no {table}; is it a market log directory (`aigp simulate`)?")
        schema = pq.read_schema(path)
        for column, kind in columns.items():
            if column not in schema.names:
                raise LogSchemaError(f"{table} lacks column {column!r} (expected {kind})")
            dtype = schema.field(column).type
            if not _kind_matches(kind, dtype):
                raise LogSchemaError(f"{table} column {column!r} has type {dtype}, expected {kind}")


# --- ingestion -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestReport:
    out_dir: Path
    rows: dict[str, int]
    skus: int
    seconds: float


def ingest_logs(logs_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False,
                review_digest_size: int | None = None, chunk_skus: int = DEFAULT_CHUNK_SKUS,
                progress: bool = False) -> IngestReport:
    """Validate ``logs_dir`` and write the feature-store source tables into ``out_dir`` (atomically).

    SKUs are processed ``chunk_skus`` at a time, so memory is bounded at any number of SKUs.
    """
    started = time.perf_counter()
    logs_dir, out = Path(logs_dir), Path(out_dir)
    validate_log_directory(logs_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    if chunk_skus < 1:
        raise ValueError(f"chunk_skus={chunk_skus}: expected >= 1")
    digest_size = review_digest_size or _logged_digest_size(logs_dir)

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    writers: dict[str, _TableWriter] = {}
    try:
        sku_ids = np.unique(pq.read_table(logs_dir / "decisions.parquet", columns=[ENTITY_KEY])[ENTITY_KEY]
                            .to_numpy())
        chunks = [sku_ids[i:i + chunk_skus] for i in range(0, len(sku_ids), chunk_skus)]
        bar = _progress(len(chunks), progress)
        for ids in chunks:
            for name, frame in _ingest_chunk(logs_dir, ids, digest_size).items():
                writers.setdefault(name, _TableWriter(partial / table_file(name))).write(frame)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if not writers:
            raise LogSchemaError(f"{logs_dir / 'decisions.parquet'} has no rows")
        for writer in writers.values():
            writer.close()
        manifest = {
            "aigp_version": aigp.__version__,
            "logs": str(logs_dir.resolve()),
            "review_digest_size": digest_size,
            "skus": len(sku_ids),
            "tables": {name: w.summary() for name, w in writers.items()},
            "seconds": round(time.perf_counter() - started, 2),
        }
        write_json(partial / MANIFEST, manifest)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_directory(partial, out)
    return IngestReport(out, {name: w.rows for name, w in writers.items()}, len(sku_ids),
                        round(time.perf_counter() - started, 2))


def read_manifest(feature_data: str | Path) -> dict:
    path = Path(feature_data) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{feature_data} holds no ingested feature data (no {MANIFEST}); "
                                "run `aigp features ingest --logs DIR` first")
    return json.loads(path.read_text())


def _ingest_chunk(logs_dir: Path, ids: np.ndarray, digest_size: int) -> dict[str, pd.DataFrame]:
    lo, hi = int(ids[0]), int(ids[-1])
    in_range = [(ENTITY_KEY, ">=", lo), (ENTITY_KEY, "<=", hi)]
    decision_columns = sorted({*REQUIRED_COLUMNS["decisions.parquet"],
                               *(c for c in (*ACTION_COLUMNS, *OUTCOME_COLUMNS, DATE)
                                 if c in pq.read_schema(logs_dir / "decisions.parquet").names)})
    log = pd.read_parquet(logs_dir / "decisions.parquet", columns=decision_columns, filters=in_range)
    skus = pd.read_parquet(logs_dir / "skus.parquet", columns=list(REQUIRED_COLUMNS["skus.parquet"]),
                           filters=in_range)
    # Review texts repeat (they are rendered from phrase tables): a dictionary keeps millions of them small.
    reviews = pq.read_table(logs_dir / "reviews.parquet", columns=list(REQUIRED_COLUMNS["reviews.parquet"]),
                            filters=in_range, read_dictionary=["text"]).to_pandas()
    _check_not_null(log, "decisions.parquet", (ENTITY_KEY, EVENT_TIMESTAMP, "days_since_launch"))
    _check_not_null(skus, "skus.parquet", (ENTITY_KEY, "launch_date"))
    if skus[ENTITY_KEY].duplicated().any():
        raise LogSchemaError(f"skus.parquet lists sku_id={skus[ENTITY_KEY][skus[ENTITY_KEY].duplicated()].iloc[0]} "
                             "more than once")

    log[EVENT_TIMESTAMP] = _utc(log[EVENT_TIMESTAMP])
    log = log.sort_values(["days_since_launch", ENTITY_KEY], kind="stable").reset_index(drop=True)
    skus = skus.set_index(ENTITY_KEY)
    unknown = np.setdiff1d(log[ENTITY_KEY].unique(), skus.index.to_numpy())
    if unknown.size:
        raise LogSchemaError(f"decisions.parquet prices sku_id={unknown[0]}, which skus.parquet does not list")
    launch = _naive_utc(skus["launch_date"]).reindex(log[ENTITY_KEY]).to_numpy()
    expected = launch + log["days_since_launch"].to_numpy().astype("timedelta64[D]")
    off = np.flatnonzero(_naive_utc(log[EVENT_TIMESTAMP]).to_numpy() != expected)
    if off.size:
        row = log.iloc[off[0]]
        raise LogSchemaError(f"decisions.parquet: sku_id={row[ENTITY_KEY]} has event_timestamp {row[EVENT_TIMESTAMP]} "
                             f"but launch_date + days_since_launch = {pd.Timestamp(expected[off[0]])}: "
                             "event_timestamp must be 00:00 UTC of the day priced")

    days = int(log["days_since_launch"].max()) + 1
    panel_ids, panel = panel_from_log(log, days)  # raises on gaps / duplicate days
    static = skus.loc[panel_ids]
    statics = SkuStatics(static["list_price"].to_numpy(np.float64), static["launch_discount"].to_numpy(np.float64),
                         static["launch_inventory"].to_numpy(np.float64), static["gmv_tier1"].to_numpy(np.float64))
    slot = np.searchsorted(panel_ids, log[ENTITY_KEY].to_numpy())
    age = log["days_since_launch"].to_numpy()
    features: dict[str, np.ndarray] = {}
    for t in range(days):
        rows = np.flatnonzero(age == t)  # contiguous: the log is sorted by age
        context = DecisionContext(*(_scatter(log[c].to_numpy()[rows], slot[rows], len(panel_ids))
                                    for c in _CONTEXT_COLUMNS))
        for name, values in state_features(panel, t, statics, context).items():
            features.setdefault(name, np.empty(len(log), dtype=values.dtype))[rows] = values[slot[rows]]

    keys = {ENTITY_KEY: log[ENTITY_KEY].to_numpy(), EVENT_TIMESTAMP: _naive_utc(log[EVENT_TIMESTAMP]).to_numpy()}
    out: dict[str, pd.DataFrame] = {}
    static_frame = skus.reset_index()
    out[Group.SKU.value] = _typed_frame(
        {ENTITY_KEY: static_frame[ENTITY_KEY].to_numpy(),
         EVENT_TIMESTAMP: _naive_utc(static_frame["launch_date"]).to_numpy()},
        {c: static_frame[c].to_numpy() for c in STATIC_FEATURES})
    for group in (Group.PERFORMANCE, Group.PRICING, Group.COMPETITOR, Group.CALENDAR):
        out[group.value] = _typed_frame(keys, {f.name: features[f.name] for f in features_in(group)})
    out[SKU_SNAPSHOTS] = _typed_frame(keys, {c: skus[c].reindex(log[ENTITY_KEY]).to_numpy()
                                             for c in STATIC_FEATURES})
    descriptions = skus["description"].reindex(log[ENTITY_KEY]).to_numpy()
    digests = review_digests(log[ENTITY_KEY].to_numpy(), log[EVENT_TIMESTAMP], reviews, digest_size)
    out[Group.TEXT.value] = _typed_frame(keys, {"description": descriptions, "review_digest": digests})
    labels = [c for c in (DATE, *ACTION_COLUMNS, *OUTCOME_COLUMNS) if c in log.columns]  # not features: no clash
    out[DECISION_EVENTS] = pd.DataFrame({**keys, **{c: log[c].to_numpy() for c in labels}})
    for name, frame in out.items():
        out[name] = frame.sort_values([EVENT_TIMESTAMP, ENTITY_KEY], kind="stable").reset_index(drop=True)
        out[name][EVENT_TIMESTAMP] = _utc(out[name][EVENT_TIMESTAMP])
    return out


def reviews_seen(sku: np.ndarray, decided_at: pd.Series, reviews: pd.DataFrame
                 ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The reviews sorted by (SKU, time, sequence) and, per decision, the slice [first, end) of them that its
    SKU had received at the decision time (posted at or before it)."""
    reviews = reviews.sort_values([ENTITY_KEY, EVENT_TIMESTAMP, "review_seq"], kind="stable").reset_index(drop=True)
    r_sku, r_ts = reviews[ENTITY_KEY].to_numpy(), _naive_utc(reviews[EVENT_TIMESTAMP]).to_numpy()
    d_ts = _naive_utc(decided_at).to_numpy()
    n_rev, n_dec = len(reviews), len(sku)
    # Merge reviews and decisions in (sku, time) order, a review before a decision at the same instant
    # (it was posted by then); the reviews seen before a decision are then a prefix of the sorted reviews.
    all_sku = np.concatenate([r_sku, sku])
    all_ts = np.concatenate([r_ts, d_ts]).astype(np.int64)
    is_decision = np.concatenate([np.zeros(n_rev, dtype=np.int8), np.ones(n_dec, dtype=np.int8)])
    order = np.lexsort((is_decision, all_ts, all_sku))
    reviews_before = np.cumsum(is_decision[order] == 0)
    end = np.empty(n_dec, dtype=np.int64)
    at = np.flatnonzero(is_decision[order] == 1)
    end[order[at] - n_rev] = reviews_before[at]
    return reviews, np.searchsorted(r_sku, sku, side="left"), end


def review_digests(sku: np.ndarray, decided_at: pd.Series, reviews: pd.DataFrame, size: int) -> np.ndarray:
    """Per decision: the digest of the newest ``size`` reviews posted at or before the decision time."""
    reviews, first, end = reviews_seen(sku, decided_at, reviews)
    n_dec = len(sku)
    text = reviews["text"].astype("category")
    codes, phrases = text.cat.codes.to_numpy(), text.cat.categories.to_numpy(dtype=object)
    digests = np.empty(n_dec, dtype=object)
    cache: dict[tuple[int, int], str] = {}
    for i, (lo, hi) in enumerate(zip(first.tolist(), end.tolist(), strict=True)):
        key = (lo, hi)
        if key not in cache:
            newest = [phrases[codes[j]] for j in range(hi - 1, max(lo, hi - size) - 1, -1)]
            cache[key] = review_digest(newest, max(0, hi - lo))
        digests[i] = cache[key]
    return digests


def _scatter(values: np.ndarray, slots: np.ndarray, n: int) -> np.ndarray:
    """Values of the SKUs priced on a day, placed at their panel rows (zeros elsewhere: never read)."""
    out = np.zeros(n, dtype=values.dtype)
    out[slots] = values
    return out


def _typed_frame(keys: dict[str, np.ndarray], features: dict[str, np.ndarray]) -> pd.DataFrame:
    cast = {"int64": np.int64, "float32": np.float32, "bool": bool, "string": object}
    return pd.DataFrame({**keys, **{n: np.asarray(v).astype(cast[FEATURES[n].dtype]) for n, v in features.items()}})


def _utc(series: pd.Series) -> pd.Series:
    if not isinstance(series.dtype, pd.DatetimeTZDtype):
        series = series.dt.tz_localize("UTC")
    return series.dt.tz_convert("UTC").astype("datetime64[us, UTC]")


def _naive_utc(series: pd.Series) -> pd.Series:
    """UTC wall time without a zone, µs precision: fast numpy datetime64 arithmetic and comparison."""
    return _utc(series).dt.tz_convert(None).astype("datetime64[us]")


def _check_not_null(frame: pd.DataFrame, table: str, columns: tuple[str, ...]) -> None:
    for column in columns:
        if frame[column].isna().any():
            raise LogSchemaError(f"{table} column {column!r} has null values")


def _logged_digest_size(logs_dir: Path) -> int:
    manifest = logs_dir / "manifest.json"
    if manifest.exists():
        return int(json.loads(manifest.read_text()).get("config", {}).get("review_digest_size",
                                                                            DEFAULT_REVIEW_DIGEST_SIZE))
    return DEFAULT_REVIEW_DIGEST_SIZE


class _TableWriter:
    """One parquet table written chunk by chunk (µs timestamps), with its rows and time range."""

    def __init__(self, path: Path):
        self.path = path
        self.writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        self.rows = 0
        self.per_day: dict[str, int] = {}

    def write(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self.writer is None:
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.path, self.schema, coerce_timestamps="us", compression="zstd")
        else:
            table = table.cast(self.schema)
        self.writer.write_table(table, row_group_size=256_000)
        self.rows += len(frame)
        days, counts = np.unique(_naive_utc(frame[EVENT_TIMESTAMP]).to_numpy().astype("datetime64[D]"),
                                 return_counts=True)
        for day, count in zip(days.astype(str).tolist(), counts.tolist(), strict=True):
            self.per_day[day] = self.per_day.get(day, 0) + count

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def abort(self) -> None:
        self.close()

    def summary(self) -> dict:
        days = sorted(self.per_day)
        return {"file": self.path.name, "rows": self.rows, "first_day": days[0] if days else None,
                "last_day": days[-1] if days else None, "rows_per_day": {d: self.per_day[d] for d in days}}


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="ingesting", unit="SKU chunk")

