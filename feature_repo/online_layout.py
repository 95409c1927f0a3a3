"""Feast's online-store layouts (SQLite and Redis): bulk writes of materialized rows and batched reads.

Feast's Python SDK turns every value into a protobuf object on both paths. Writing, its SQLite store runs
one ``execute`` per (SKU, feature): about 20 µs a value, 4 minutes for 200k SKUs x 56 features; reading
256 SKUs x 56 features through ``get_online_features`` takes a few hundred milliseconds (both measured in
``bench/bench_feature_store.py``). This module does the same work in bulk, in Feast's own layouts:

- values are serialized column by column (``float_val`` / ``bool_val`` wire bytes with numpy; ``int64``
  and strings through ``ValueProto`` with a per-value cache), entity keys with numpy from the
  serialization Feast itself produces for one key (checked on every batch);
- SQLite: one ``executemany`` into a staging table, then one ``INSERT ... SELECT ... ON CONFLICT`` into the
  view's table (``<project>_<view>``: one row per entity and feature, as Feast lays it out), in key order;
  a read is one ``SELECT ... WHERE entity_key IN (...)`` per view;
- Redis: one pipelined ``HSET`` per entity into Feast's hash (key = entity key + project, field =
  murmur3 of ``view:feature``, ``_ts:<view>`` = the event time); a read is one ``HMGET`` per entity for
  every requested feature of every view (they share the entity's hash).

Why not Feast's public write path (``FeatureStore.write_to_online_store`` -> ``online_write_batch``): fed by
the same windowed reads it is 4.8x slower than these writers, and Feast's whole engine 4.3x, on 20k SKUs
(``bench/bench_feature_store.py --writer-only``, one process; BENCHMARKS.md). The price is that the layout is
written with Feast's private helpers (``_mmh3``, ``compute_table_id``), so a Feast upgrade may change it: a
test materializes the same window with Feast's engine and with these writers, into SQLite and a real
``redis-server``, and requires the installed Feast's own ``get_online_features`` to read both identically;
others compare the stored SQLite rows, and compare these reads with ``FeatureStore.get_online_features``.

Both writers keep the newest row: a row older than the stored one is skipped, one at the same instant
replaces it, so re-running a window is idempotent and re-running an old window never rolls the online store
back.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
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
_FLOAT_TAG = 6 << 3 | 5  # float_val = 6, 32-bit
_FLOAT = struct.Struct("<f")
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

    def __init__(self, config: RepoConfig, cache_mib: int = 256, batch_rows: int = 20_000):
        self.path = _sqlite_path(config)
        self.config = config
        self.batch_rows = batch_rows
        self.conn = sqlite3.connect(str(self.path), timeout=60)
        self.conn.execute("PRAGMA temp_store = MEMORY")
        # Rows arrive in primary-key order; a large page cache keeps the index pages being appended to in memory.
        self.conn.execute(f"PRAGMA cache_size = -{cache_mib * 1024}")

    def write(self, view: FeatureView, table: pa.Table) -> int:
        """One transaction per call; entities go in key order, ``batch_rows`` at a time (bounded memory)."""
        if table.num_rows == 0:
            return 0
        features = _feature_columns(view, table)
        texts = [i for i, (_, dtype) in enumerate(features) if dtype == "string"]
        target = _quote(compute_table_id(self.config.project, view,
                                         self.config.registry.enable_online_feature_view_versioning))
        stage_cols = ["entity_key BLOB", "event_ts INTEGER"] + [f"v{i} BLOB" for i in range(len(features))] + [
            f"t{i} TEXT" for i in texts]
        selects = [  # the first SELECT names the columns of the UNION
            f"SELECT entity_key AS k, {_literal(name)} AS f, v{i} AS v, {f't{i}' if i in texts else 'NULL'} AS t, "
            "event_ts AS ts FROM stage"
            for i, (name, _) in enumerate(features)
        ]
        insert_stage = f"INSERT INTO stage VALUES ({', '.join('?' * len(stage_cols))})"
        upsert = (
            f"INSERT INTO {target} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
            f"SELECT k, f, v, t, ts, NULL FROM ({' UNION ALL '.join(selects)}) WHERE true ORDER BY k, f "
            "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
            "value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts "
            f"WHERE excluded.event_ts >= {target}.event_ts"
        )
        table = table.take(pa.array(_key_order(table[ENTITY_KEY].to_numpy())))
        before = self.conn.total_changes
        with self.conn:
            self.conn.execute("DROP TABLE IF EXISTS temp.stage")
            self.conn.execute(f"CREATE TEMP TABLE stage ({', '.join(stage_cols)})")
            for lo in range(0, table.num_rows, self.batch_rows):
                batch = table.slice(lo, self.batch_rows)
                keys = serialize_sku_keys(batch[ENTITY_KEY].to_numpy(), self.config.entity_key_serialization_version)
                columns = [serialize_column(batch[name], dtype) for name, dtype in features]
                text_columns = [batch[features[i][0]].to_pylist() for i in texts]
                rows = zip(keys, _sqlite_timestamps(batch[EVENT_TIMESTAMP]), *columns, *text_columns, strict=True)
                self.conn.executemany(insert_stage, rows)
                self.conn.execute(upsert)
                self.conn.execute("DELETE FROM temp.stage")
            self.conn.execute("DROP TABLE temp.stage")
        return (self.conn.total_changes - before - _stage_changes(table.num_rows)) // max(1, len(features))

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


# --- readers -------------------------------------------------------------------------------------------
class OnlineReader(Protocol):
    def read(self, sku_ids: list[int], features: list[tuple[FeatureView, list[str]]]) -> dict[str, list]:
        """Each requested feature's serialized value per SKU, in request order; None where the store has
        none (:func:`decode_column` turns them into values)."""
        ...

    def close(self) -> None: ...


class SqliteReader:
    def __init__(self, config: RepoConfig, mmap_mib: int = 4096):
        self.config = config
        self.conn = sqlite3.connect(str(_sqlite_path(config)), timeout=60, check_same_thread=False)
        # Lookups touch random pages of a large file: read them through the OS page cache (memory map).
        self.conn.execute(f"PRAGMA mmap_size = {mmap_mib * 1024 * 1024}")

    def read(self, sku_ids: list[int], features: list[tuple[FeatureView, list[str]]]) -> dict[str, list]:
        keys = serialize_sku_keys(np.asarray(sku_ids, dtype=np.int64), self.config.entity_key_serialization_version)
        unique = list(dict.fromkeys(keys))  # a SKU requested twice is read once
        position = {k: i for i, k in enumerate(unique)}
        out: dict[str, list] = {}
        for view, names in features:
            table = _quote(compute_table_id(self.config.project, view,
                                            self.config.registry.enable_online_feature_view_versioning))
            found: dict[str, list] = {n: [None] * len(unique) for n in names}
            for lo in range(0, len(unique), 900):  # SQLite's bound-parameter limit
                chunk = unique[lo:lo + 900]
                rows = self.conn.execute(
                    f"SELECT entity_key, feature_name, value FROM {table} "
                    f"WHERE entity_key IN ({', '.join('?' * len(chunk))})", chunk).fetchall()
                for key, name, value in rows:
                    if name in found:
                        found[name][position[key]] = value
            for name in names:
                column = found[name]
                out[name] = [column[position[k]] for k in keys]
        return out

    def close(self) -> None:
        self.conn.close()


class RedisReader:
    def __init__(self, config: RepoConfig):
        from feast.infra.online_stores.redis import RedisOnlineStore

        self.config = config
        self.client = RedisOnlineStore()._get_client(config.online_store)
        self.project = config.project.encode("utf-8")

    def read(self, sku_ids: list[int], features: list[tuple[FeatureView, list[str]]]) -> dict[str, list]:
        keys = [k + self.project for k in serialize_sku_keys(np.asarray(sku_ids, dtype=np.int64),
                                                             self.config.entity_key_serialization_version)]
        names: list[str] = []
        fields: list[bytes] = []
        for view, requested in features:
            prefix = compute_versioned_name(view, self.config.registry.enable_online_feature_view_versioning)
            for name in requested:
                names.append(name)
                fields.append(_mmh3(f"{prefix}:{name}"))
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.execute_command("HMGET", key, *fields)
            rows = pipe.execute()
        return {name: [row[j] for row in rows] for j, name in enumerate(names)}

    def close(self) -> None:
        self.client.close()


_FLOAT_NAN = bytes([_FLOAT_TAG]) + _FLOAT.pack(float("nan"))


def decode_column(serialized: list[bytes | None], dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of serialized ``ValueProto``s (as Feast returns them) and a mask of the missing ones.

    float32 columns decode in one ``numpy.frombuffer`` (NaN where missing); others value by value
    (None where missing).
    """
    missing = np.fromiter((not b for b in serialized), dtype=bool, count=len(serialized))
    if dtype == "float32":
        filled = [b if b else _FLOAT_NAN for b in serialized]
        if all(len(b) == 5 and b[0] == _FLOAT_TAG for b in filled):
            wire = np.frombuffer(b"".join(filled), dtype=[("tag", "u1"), ("value", "<f4")])
            return wire["value"].copy(), missing
        values = [np.nan if b is None else _decode_cached(b) for b in filled]
        return np.asarray(values, dtype=np.float32), missing
    return np.array([_decode_cached(b) if b else None for b in serialized], dtype=object), missing


@lru_cache(maxsize=65_536)
def _decode_cached(serialized: bytes) -> object:
    value = ValueProto()
    value.ParseFromString(serialized)
    kind = value.WhichOneof("val")
    return None if kind is None else getattr(value, kind)


def open_reader(config: RepoConfig) -> OnlineReader:
    kind = getattr(config.online_store, "type", None)
    if kind == "sqlite":
        return SqliteReader(config)
    if kind == "redis":
        return RedisReader(config)
    raise ValueError(f"no reader for online store type {kind!r}; expected sqlite or redis")


def open_writer(config: RepoConfig) -> OnlineWriter:
    kind = getattr(config.online_store, "type", None)
    if kind == "sqlite":
        return SqliteWriter(config)
    if kind == "redis":
        return RedisWriter(config)
    raise ValueError(f"no bulk writer for online store type {kind!r}; expected sqlite or redis")


def _sqlite_path(config: RepoConfig) -> Path:
    path = Path(config.online_store.path)
    return path if path.is_absolute() else Path(config.repo_path or ".") / path


def _key_order(sku_ids: np.ndarray) -> np.ndarray:
    """Order of the SKUs by their serialized entity key (the little-endian id bytes compared as a string)."""
    return np.argsort(np.asarray(sku_ids, dtype=np.int64).view(np.uint64).byteswap(), kind="stable")


def _stage_changes(rows: int) -> int:
    return 2 * rows  # each staged row is inserted once and deleted once


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
