"""Bulk writes of materialized rows into Feast's own online-store layouts (SQLite and Redis).

Feast's stock materialization turns every value into a Python protobuf object and writes the SQLite
store one ``execute`` per (SKU, feature): about 20 µs a value, 4 minutes for 200k SKUs x 56 features
(``bench/bench_feature_store.py`` measures it). These writers produce the same bytes in bulk:

- values are serialized column by column (``float_val`` / ``bool_val`` wire bytes with numpy; ``int64``
  and strings through ``ValueProto`` with a per-value cache), entity keys with numpy from the
  serialization Feast itself produces for one key (checked on every batch);
- SQLite: one ``executemany`` into a staging table, then one ``INSERT ... SELECT ... ON CONFLICT`` into the
  view's table (``<project>_<view>``: one row per entity and feature, as Feast lays it out);
- Redis: one pipelined ``HSET`` per entity into Feast's hash (key = entity key + project, field =
  murmur3 of ``view:feature``, ``_ts:<view>`` = the event time).

Reads stay Feast's own (``FeatureStore.get_online_features``); a test materializes the same window with
Feast's engine and with these writers and compares what Feast reads back. Both writers keep the newest
row: a row older than the stored one is skipped, one at the same instant replaces it, so re-running a
window is idempotent and re-running an old window never rolls the online store back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pyarrow as pa
from feast import FeatureView, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _mmh3, compute_table_id, compute_versioned_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp

from aigp.schema import ENTITY_KEY, EVENT_TIMESTAMP, FEATURES

# Protobuf wire bytes of fixed-size Value fields: field number << 3 | wire type.
_FLOAT_TAG = np.uint8(6 << 3 | 5)  # float_val = 6, 32-bit
_BOOL_BYTES = {True: ValueProto(bool_val=True).SerializeToString(),
               False: ValueProto(bool_val=False).SerializeToString()}
T = TypeVar("T")
NULL_VALUE = b""  # ValueProto() with no field set: Feast reads it back as None


# --- serialization -------------------------------------------------------------------------------------
def serialize_column(column: pa.Array | pa.ChunkedArray, dtype: str) -> list[bytes]:
    """Serialized ``ValueProto`` of every value of a column of schema dtype ``dtype`` (null -> empty)."""
    null = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if dtype == "float32":
        floats = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float32)
        null |= np.isnan(floats)
        wire = np.empty(len(floats), dtype=[("tag", "u1"), ("value", "<f4")])
        wire["tag"], wire["value"] = _FLOAT_TAG, floats
        raw = wire.tobytes()
        out = [raw[i:i + 5] for i in range(0, 5 * len(floats), 5)]
    elif dtype == "bool":
        out = [_BOOL_BYTES[v] if v is not None else NULL_VALUE for v in column.to_pylist()]
    elif dtype == "int64":
        out = _cached(column.to_pylist(), lambda v: ValueProto(int64_val=v).SerializeToString())
    elif dtype == "string":
        out = _cached(column.to_pylist(), lambda v: ValueProto(string_val=v).SerializeToString())
    else:
        raise ValueError(f"no online serialization for dtype {dtype!r}")
    if null.any():
        for i in np.flatnonzero(null).tolist():
            out[i] = NULL_VALUE
    return out


def _cached(values: list, encode: Callable[[Any], T]) -> list[T]:
    """``encode`` of every value, computed once per distinct value (None -> the null value)."""
    cache: dict[Any, T] = {}
    out: list[Any] = []
    for v in values:
        if v is None:
            out.append(NULL_VALUE)
            continue
        b = cache.get(v)
        if b is None:
            b = cache[v] = encode(v)
        out.append(b)
    return out


def serialize_sku_keys(sku_ids: np.ndarray, version: int = 3) -> list[bytes]:
    """Feast's serialized entity key of each SKU id (an INT64 join key ``sku_id``)."""
    ids = np.asarray(sku_ids, dtype=np.int64)
    if ids.size == 0:
        return []
    first = _feast_key(int(ids[0]), version)
    prefix = first[:-8]
    if first != prefix + int(ids[0]).to_bytes(8, "little", signed=True):
        raise RuntimeError("Feast's entity key layout changed: cannot bulk-serialize sku_id keys")
    raw = ids.astype("<i8").tobytes()
    return [prefix + raw[i:i + 8] for i in range(0, 8 * len(ids), 8)]


def _feast_key(sku_id: int, version: int) -> bytes:
    key = EntityKeyProto(join_keys=[ENTITY_KEY], entity_values=[ValueProto(int64_val=sku_id)])
    return serialize_entity_key(key, entity_key_serialization_version=version)


# --- writers -------------------------------------------------------------------------------------------
class OnlineWriter(Protocol):
    def write(self, view: FeatureView, table: pa.Table) -> int:
        """Write the rows of ``table`` (join key, event_timestamp, the view's features); return rows written."""
        ...

    def close(self) -> None: ...


def _feature_columns(view: FeatureView, table: pa.Table) -> list[tuple[str, str]]:
    missing = [f.name for f in view.features if f.name not in table.column_names]
    if missing:
        raise ValueError(f"rows for view {view.name!r} lack feature column(s) {missing}")
    return [(f.name, FEATURES[f.name].dtype) for f in view.features]


class SqliteWriter:
    """Bulk upserts into Feast's SQLite online store (one row per entity and feature)."""

    def __init__(self, config: RepoConfig, cache_mib: int = 256):
        path = Path(config.online_store.path)
        if not path.is_absolute():
            path = Path(config.repo_path or ".") / path
        self.path = path
        self.config = config
        self.conn = sqlite3.connect(str(path), timeout=60)
        self.conn.execute("PRAGMA temp_store = MEMORY")
        # Rows go in primary-key order (ORDER BY k, f); a large page cache keeps the index pages in memory.
        self.conn.execute(f"PRAGMA cache_size = -{cache_mib * 1024}")

    def write(self, view: FeatureView, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        features = _feature_columns(view, table)
        keys = serialize_sku_keys(table[ENTITY_KEY].to_numpy(), self.config.entity_key_serialization_version)
        stamps = _sqlite_timestamps(table[EVENT_TIMESTAMP])
        columns = [serialize_column(table[name], dtype) for name, dtype in features]
        texts = {i: table[name].to_pylist() for i, (name, dtype) in enumerate(features) if dtype == "string"}
        target = _quote(compute_table_id(self.config.project, view,
                                         self.config.registry.enable_online_feature_view_versioning))
        stage_cols = ["entity_key BLOB", "event_ts INTEGER"] + [f"v{i} BLOB" for i in range(len(features))] + [
            f"t{i} TEXT" for i in texts]
        selects = [  # the first SELECT names the columns of the UNION
            f"SELECT entity_key AS k, {_literal(name)} AS f, v{i} AS v, {f't{i}' if i in texts else 'NULL'} AS t, "
            "event_ts AS ts FROM stage"
            for i, (name, _) in enumerate(features)
        ]
        rows = zip(keys, stamps, *columns, *texts.values(), strict=True)
        with self.conn:
            self.conn.execute("DROP TABLE IF EXISTS temp.stage")
            self.conn.execute(f"CREATE TEMP TABLE stage ({', '.join(stage_cols)})")
            self.conn.executemany(f"INSERT INTO stage VALUES ({', '.join('?' * len(stage_cols))})", rows)
            before = self.conn.total_changes
            self.conn.execute(
                f"INSERT INTO {target} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
                f"SELECT k, f, v, t, ts, NULL FROM ({' UNION ALL '.join(selects)}) WHERE true ORDER BY k, f "
                "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
                "value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts "
                f"WHERE excluded.event_ts >= {target}.event_ts"
            )
            written = (self.conn.total_changes - before) // max(1, len(features))
            self.conn.execute("DROP TABLE temp.stage")
        return written

    def close(self) -> None:
        self.conn.close()


class RedisWriter:
    """Pipelined ``HSET`` per entity into Feast's Redis hash layout."""

    def __init__(self, config: RepoConfig, batch_size: int = 10_000):
        from feast.infra.online_stores.redis import RedisOnlineStore

        self.config = config
        self.client = RedisOnlineStore()._get_client(config.online_store)
        self.project = config.project.encode("utf-8")
        self.batch_size = batch_size

    def write(self, view: FeatureView, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        features = _feature_columns(view, table)
        name = compute_versioned_name(view, self.config.registry.enable_online_feature_view_versioning)
        ts_field = f"_ts:{name}".encode()
        fields = [_mmh3(f"{name}:{feature}") for feature, _ in features]
        keys = [k + self.project for k in
                serialize_sku_keys(table[ENTITY_KEY].to_numpy(), self.config.entity_key_serialization_version)]
        micros = np.asarray(table[EVENT_TIMESTAMP].to_numpy(), dtype="datetime64[us]").astype(np.int64)
        columns = [serialize_column(table[feature], dtype) for feature, dtype in features]
        stamps = _cached(micros.tolist(), lambda us: Timestamp(seconds=us // 1_000_000,
                                                               nanos=(us % 1_000_000) * 1000).SerializeToString())
        written = 0
        for lo in range(0, len(keys), self.batch_size):
            hi = min(lo + self.batch_size, len(keys))
            with self.client.pipeline(transaction=False) as pipe:
                for key in keys[lo:hi]:
                    pipe.execute_command("HGET", key, ts_field)
                stored = pipe.execute()
            with self.client.pipeline(transaction=False) as pipe:
                for i, prev in zip(range(lo, hi), stored, strict=True):
                    if prev is not None and _micros_of(prev) > micros[i]:
                        continue  # never replace a newer row with an older one
                    args = [keys[i], ts_field, stamps[i]]
                    for f, col in zip(fields, columns, strict=True):
                        args += (f, col[i])
                    pipe.execute_command("HSET", *args)
                    written += 1
                pipe.execute()
        return written

    def close(self) -> None:
        self.client.close()


def open_writer(config: RepoConfig) -> OnlineWriter:
    kind = getattr(config.online_store, "type", None)
    if kind == "sqlite":
        return SqliteWriter(config)
    if kind == "redis":
        return RedisWriter(config)
    raise ValueError(f"no bulk writer for online store type {kind!r}; expected sqlite or redis")


def _micros_of(serialized: bytes) -> int:
    ts = Timestamp()
    ts.ParseFromString(serialized)
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def _sqlite_timestamps(column: pa.ChunkedArray) -> list[int]:
    """Event times as Feast's SQLite store keeps them: its sqlite3 adapter turns the naive UTC datetime into
    ``int(datetime.timestamp())`` (whole seconds)."""
    micros = np.asarray(column.to_numpy(), dtype="datetime64[us]").astype(np.int64)
    return _cached(micros.tolist(), lambda us: int(np.datetime64(us, "us").astype(datetime).timestamp()))


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
