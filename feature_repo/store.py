"""Python API of the feature store: open, apply, materialize, training sets and online lookups.

    store = open_store(FeatureStoreConfig.build(feature_data="runs/features"))   # embedded: SQLite
    store.apply()
    store.materialize(date(2026, 3, 1), date(2026, 3, 8))                        # [start, end)
    train = store.training_set(date(2026, 3, 1), date(2026, 3, 8), "ltve_training")
    online = store.online_features([17, 42], "llm_prompt")                       # + features_missing

The store is Feast, configured in code from the same definitions ``feast apply`` reads
(:mod:`aigp.feature_repo.definitions`): DuckDB offline store over the ingested parquet tables, a file
registry, and the SQLite (default) or Redis online store. Defaults match ``feature_store.yaml``, so
``aigp features ...`` and ``feast ...`` run in ``feature_repo/`` work on the same store.

Materialization reads each view through Feast's offline store (latest row per SKU in a window, the query
Feast's own engine runs) one date window at a time, so memory is bounded by the rows of one window
whatever the range (Feast's engine loads the whole range: feast-dev/feast#2594). Windows are whole
days, merged while they hold at most ``max_window_rows`` rows; the rows go to the online store through
the bulk writers of :mod:`aigp.feature_repo.online_layout`, in Feast's own layout.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from feast import FeatureService, FeatureStore, FeatureView, RepoConfig
from feast.infra.offline_stores.offline_utils import get_offline_store_from_config
from feast.repo_config import RegistryConfig
from pydantic import Field

from aigp.config import StrictConfig
from aigp.feature_repo.definitions import SERVICES, Definitions, build_definitions, feature_data_dir
from aigp.feature_repo.online_layout import OnlineReader, OnlineWriter, decode_column, open_reader, open_writer
from aigp.ingest import DECISION_EVENTS, read_manifest, source_table, table_file
from aigp.schema import ENTITY_KEY, EVENT_TIMESTAMP, FEATURES, Group

log = logging.getLogger(__name__)

REPO_DIR = Path(__file__).resolve().parent
DEFAULT_STATE_DIR = REPO_DIR / "data"  # feature_store.yaml keeps its registry and SQLite store here
FEATURES_MISSING = "features_missing"
MISSING_FEATURES = "missing_features"
_ONE_MICROSECOND = dt.timedelta(microseconds=1)


class FeatureStoreConfig(StrictConfig):
    """Where the feature store's data and state live, and which online store serves."""

    feature_data: Path = Field(default_factory=lambda: Path(feature_data_dir()),
                               description="source tables written by `aigp features ingest` "
                                           "(default: $AIGP_FEATURE_DATA or feature_repo/data/sources)")
    state_dir: Path = Field(DEFAULT_STATE_DIR, description="registry.db and the SQLite online.db")
    online_store: Literal["sqlite", "redis"] = Field("sqlite", description="embedded SQLite or Redis")
    redis_connection_string: str = Field("127.0.0.1:6379", description="Feast syntax: host:port[,password=..]")
    project: str = Field("aigp", pattern=r"^[a-z][a-z0-9_]*$", description="Feast project name")
    max_window_rows: int = Field(250_000, ge=1, description="rows one materialization window may hold "
                                                            "(a single day is never split)")


def repo_config(config: FeatureStoreConfig) -> RepoConfig:
    state = config.state_dir.resolve()
    if config.online_store == "sqlite":
        online = {"type": "sqlite", "path": str(state / "online.db")}
    else:
        online = {"type": "redis", "connection_string": config.redis_connection_string}
    return RepoConfig(
        project=config.project, provider="local",
        registry=RegistryConfig(registry_type="file", path=str(state / "registry.db")),
        online_store=online, offline_store={"type": "duckdb"},
        entity_key_serialization_version=3, repo_path=state,
    )


@dataclass(frozen=True)
class ViewMaterialization:
    view: str
    windows: int
    rows_read: int
    rows_written: int
    max_window_rows: int
    seconds: float


@dataclass(frozen=True)
class MaterializationReport:
    start: dt.datetime
    end: dt.datetime
    views: list[ViewMaterialization] = field(default_factory=list)

    @property
    def rows_written(self) -> int:
        return sum(v.rows_written for v in self.views)

    @property
    def rows_read(self) -> int:
        return sum(v.rows_read for v in self.views)

    @property
    def seconds(self) -> float:
        return round(sum(v.seconds for v in self.views), 3)

    def as_dict(self) -> dict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "rows_read": self.rows_read,
                "rows_written": self.rows_written, "seconds": self.seconds,
                "views": {v.view: {"windows": v.windows, "rows_read": v.rows_read, "rows_written": v.rows_written,
                                   "max_window_rows": v.max_window_rows, "seconds": v.seconds} for v in self.views}}


class FeatureStoreError(ValueError):
    """The store's files cannot be read (a damaged online store): the message names the file."""


class AigpFeatureStore:
    """A Feast store over the ingested feature data (see the module docstring)."""

    def __init__(self, config: FeatureStoreConfig):
        self.config = config
        self.feature_data = config.feature_data.resolve()
        self.definitions: Definitions = build_definitions(str(self.feature_data))
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.repo_config = repo_config(config)
        self.feast = FeatureStore(config=self.repo_config)
        self._online_reader: OnlineReader | None = None

    # --- registry ---------------------------------------------------------------------------------------
    def apply(self) -> None:
        """Register the entity, sources, views and services (and create the online tables)."""
        self.feast.apply(self.definitions.objects())

    # --- online store -----------------------------------------------------------------------------------
    def materialize(self, start: dt.date | dt.datetime, end: dt.date | dt.datetime, *, progress: bool = False,
                    writer: OnlineWriter | None = None) -> MaterializationReport:
        """Load the rows stamped in ``[start, end)`` into the online store, one date window at a time.

        Every view takes its rows stamped in the range (the SKU attributes' source restates them on each
        day priced), as ``feast materialize`` does: a SKU priced in the range gets all six views. Idempotent.
        ``writer`` replaces the bulk writer of the configured online store (the benchmark passes Feast's
        public write path); it is closed here.
        """
        start, end = _utc(start), _utc(end)
        if end <= start:
            raise ValueError(f"end={end.isoformat()} must be after start={start.isoformat()}")
        manifest = read_manifest(self.feature_data)
        offline = get_offline_store_from_config(self.repo_config.offline_store)
        registered = {v.name for v in self.feast.list_feature_views()}
        if set(g.value for g in Group) - registered:
            raise ValueError(f"feature views {sorted(set(g.value for g in Group) - registered)} are not "
                             "registered; run `aigp features apply` first")
        plans = {group: self._windows(manifest, group, start, end) for group in Group}
        bar = _progress(sum(len(w) for w in plans.values()), progress)
        report = MaterializationReport(start, end)
        writer = writer or open_writer(self.repo_config)
        try:
            for group, windows in plans.items():
                view = self.definitions.views[group]
                t0 = time.perf_counter()
                read = written = biggest = 0
                for w_start, w_end in windows:
                    table = offline.pull_latest_from_table_or_query(
                        config=self.repo_config, data_source=view.batch_source, join_key_columns=[ENTITY_KEY],
                        feature_name_columns=[f.name for f in view.features], timestamp_field=EVENT_TIMESTAMP,
                        created_timestamp_column=None, start_date=w_start, end_date=w_end - _ONE_MICROSECOND,
                    ).to_arrow()
                    read += table.num_rows
                    biggest = max(biggest, table.num_rows)
                    written += writer.write(view, table)
                    del table
                    if bar is not None:
                        bar.update(1)
                if windows:
                    self.feast.registry.apply_materialization(view, self.config.project, windows[0][0],
                                                              windows[-1][1], commit=False)
                report.views.append(ViewMaterialization(view.name, len(windows), read, written, biggest,
                                                        round(time.perf_counter() - t0, 3)))
                log.info("materialized %s: %d window(s), %d rows read, %d written", view.name, len(windows),
                         read, written)
            self.feast.registry.commit()
        finally:
            writer.close()
            if bar is not None:
                bar.close()
        return report

    def _windows(self, manifest: dict, group: Group, start: dt.datetime,
                 end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
        table = manifest["tables"].get(source_table(group))
        if table is None:
            raise ValueError(f"{self.feature_data} has no {source_table(group)} table (ingested by an older "
                             "version); run `aigp features ingest --overwrite` again")
        per_day = table["rows_per_day"]
        days = [(d, n) for d, n in sorted(per_day.items()) if start < _day_end(d) and _day_start(d) < end and n]
        windows: list[tuple[dt.datetime, dt.datetime]] = []
        rows = 0
        for day, n in days:
            lo, hi = max(_day_start(day), start), min(_day_end(day), end)
            if windows and rows + n <= self.config.max_window_rows:  # merge across empty days too
                windows[-1] = (windows[-1][0], hi)
                rows += n
            else:
                windows.append((lo, hi))
                rows = n
        return windows

    def online_features(self, sku_ids: Sequence[int], service: str) -> pd.DataFrame:
        """One row per requested SKU (in request order) with the service's features, ``features_missing``
        (True when any feature has no value) and ``missing_features`` (their names).

        Reads Feast's online layout directly in one batch (see ``online_layout``); the values equal
        ``FeatureStore.get_online_features`` (tested), several times faster for a batch of SKUs."""
        ids, names, values, missing = self._online_columns(sku_ids, service)
        columns: dict[str, object] = {ENTITY_KEY: ids}
        for j, name in enumerate(names):
            columns[name] = _column(values[j], FEATURES[name].dtype)
        columns[FEATURES_MISSING] = missing.any(axis=1)
        columns[MISSING_FEATURES] = _missing_names(names, missing)
        return pd.DataFrame(columns)

    def online_records(self, sku_ids: Sequence[int], service: str) -> list[dict[str, Any]]:
        """The rows of :meth:`online_features` as plain Python dicts (``None`` where a feature has no value),
        built without a DataFrame: the serving transformer's per-request path."""
        ids, names, values, missing = self._online_columns(sku_ids, service)
        columns = [ids.tolist()]
        for j, column in enumerate(values):
            listed = column.tolist()
            for i in np.flatnonzero(missing[:, j]).tolist():
                listed[i] = None  # float NaN -> None, like the other dtypes
            columns.append(listed)
        keys = [ENTITY_KEY, *names]
        rows = [dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)]
        flags: list[bool] = np.asarray(missing).any(axis=1).astype(bool).tolist()
        for row, absent, any_absent in zip(rows, _missing_names(names, missing), flags,
                                           strict=True):
            row[FEATURES_MISSING] = any_absent
            row[MISSING_FEATURES] = absent
        return rows

    def _online_columns(self, sku_ids: Sequence[int],
                        service: str) -> tuple[np.ndarray, list[str], list[np.ndarray], np.ndarray]:
        """Requested ids, the service's feature names, each feature's decoded values (float32 with NaN, or
        objects with None) and the (SKU x feature) mask of missing values."""
        names = self._service_features(service)
        ids = np.asarray([int(i) for i in sku_ids], dtype=np.int64)
        if len(ids):
            reader = self._reader()
            with self._damaged_store():
                response = reader.read(ids.tolist(), self._service_views(service))
        else:
            response = {}
        missing = np.zeros((len(ids), len(names)), dtype=bool)
        values = []
        for j, name in enumerate(names):
            column, missing[:, j] = decode_column(response.get(name, []), FEATURES[name].dtype)
            values.append(column)
        return ids, names, values, missing

    # --- offline store ----------------------------------------------------------------------------------
    def training_set(self, start: dt.date | dt.datetime, end: dt.date | dt.datetime, service: str) -> pd.DataFrame:
        """Point-in-time training set: every decision in ``[start, end)`` (its action and outcome columns)
        joined with the service's features as they were at its decision time. Rows in = rows out."""
        start, end = _utc(start), _utc(end)
        names = self._service_features(service)
        entity_df = pd.read_parquet(self.feature_data / table_file(DECISION_EVENTS),
                                    filters=[(EVENT_TIMESTAMP, ">=", pd.Timestamp(start)),
                                             (EVENT_TIMESTAMP, "<", pd.Timestamp(end))])
        if entity_df.empty:
            raise ValueError(f"no decisions in [{start.date()}, {end.date()}) in {self.feature_data}")
        job = self.feast.get_historical_features(entity_df=entity_df,
                                                 features=self.definitions.services[service])
        frame = job.to_df()
        if len(frame) != len(entity_df):
            raise RuntimeError(f"training set has {len(frame)} rows for {len(entity_df)} decisions: the offline "
                               "store dropped or duplicated rows")
        frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True).astype("datetime64[us, UTC]")
        labels = [c for c in entity_df.columns if c not in (ENTITY_KEY, EVENT_TIMESTAMP)]
        frame = frame[[ENTITY_KEY, EVENT_TIMESTAMP, *labels, *names]]
        frame = frame.sort_values([EVENT_TIMESTAMP, ENTITY_KEY], kind="stable").reset_index(drop=True)
        return _typed(frame, names)

    def _reader(self) -> OnlineReader:
        if self._online_reader is None:
            with self._damaged_store():
                self._online_reader = open_reader(self.repo_config)
        return self._online_reader

    @contextlib.contextmanager
    def _damaged_store(self) -> Iterator[None]:
        """A damaged SQLite online store (truncated, overwritten) as one :class:`FeatureStoreError` naming it."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            where = getattr(self.repo_config.online_store, "path", "the online store")
            raise FeatureStoreError(f"online store {where}: {exc} (damaged or not a SQLite database; materialize "
                                    "again into a fresh state directory)") from None

    def _service_views(self, service: str) -> list[tuple[FeatureView, list[str]]]:
        self._service_features(service)  # validates the name
        by_name = {v.name: v for v in self.definitions.views.values()}
        return [(by_name[p.name], [f.name for f in p.features])
                for p in self.definitions.services[service].feature_view_projections]

    def close(self) -> None:
        if self._online_reader is not None:
            self._online_reader.close()
            self._online_reader = None

    def _service_features(self, service: str) -> list[str]:
        if service not in SERVICES:
            raise ValueError(f"unknown feature service {service!r}; expected one of {sorted(SERVICES)}")
        service_obj: FeatureService = self.definitions.services[service]
        return [f.name for projection in service_obj.feature_view_projections for f in projection.features]

    def view(self, group: Group) -> FeatureView:
        return self.definitions.views[group]


def open_store(config: FeatureStoreConfig | None = None, **overrides: object) -> AigpFeatureStore:
    """Open the feature store described by ``config`` (and/or field overrides)."""
    config = config.with_updates(**overrides) if config else FeatureStoreConfig.build(**overrides)
    return AigpFeatureStore(config)


def _typed(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Schema dtypes; features that may be missing become nullable (NaN floats, pandas Int64/boolean)."""
    dtypes = {"float32": "float32", "int64": "Int64", "bool": "boolean", "string": "object"}
    for name in names:
        frame[name] = frame[name].astype(dtypes[FEATURES[name].dtype])
    return frame


def _missing_names(names: list[str], missing: np.ndarray) -> list[list[str]]:
    """Per SKU, the names of its features with no value (the store's explicit missing marker)."""
    name_array = np.array(names, dtype=object)
    return [name_array[row].tolist() if row.any() else [] for row in missing]


def _column(values: np.ndarray, dtype: str) -> object:
    """One online feature column in the schema dtype, missing values kept (NaN, pandas NA, None)."""
    if dtype == "int64":
        return pd.array(values, dtype="Int64")
    if dtype == "bool":
        return pd.array(values, dtype="boolean")
    return values  # float32 with NaN, or strings with None


def _utc(value: dt.date | dt.datetime) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _day_start(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)


def _day_end(day: str) -> dt.datetime:
    return _day_start(day) + dt.timedelta(days=1)


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="materializing", unit="window")


def materialize_step(logs_dir: str | Path, feature_data: str | Path, start: dt.date | dt.datetime,
                     end: dt.date | dt.datetime, config: FeatureStoreConfig | None = None, *,
                     progress: bool = False) -> dict:
    """The pipeline's feature step: ingest a market log into ``feature_data``, apply the repo and materialize
    ``[start, end)``. Returns its metrics (also written to ``feature_data/materialization.json``)."""
    from aigp.ingest import ingest_logs
    from aigp.io import write_json

    ingested = ingest_logs(logs_dir, feature_data, overwrite=True, progress=progress)
    store = open_store(config, feature_data=Path(feature_data))
    store.apply()
    report = store.materialize(start, end, progress=progress)
    metrics = {
        "skus": ingested.skus,
        "decisions": ingested.rows[DECISION_EVENTS],
        "ingest_seconds": ingested.seconds,
        "rows_read": report.rows_read,
        "rows_written": report.rows_written,
        "windows": sum(v.windows for v in report.views),
        "max_window_rows": max(v.max_window_rows for v in report.views),
        "materialize_seconds": report.seconds,
    }
    write_json(Path(feature_data) / "materialization.json",
               {"metrics": metrics, "report": report.as_dict(), "online_store": store.config.online_store})
    return metrics
