"""Where a simulation's decision log and reviews go: memory (tests, small runs) or parquet files
written row group by row group (flat memory at any scale, atomically renamed when complete)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class LogSink(Protocol):
    def write_decisions(self, frame: pd.DataFrame) -> None: ...

    def write_reviews(self, frame: pd.DataFrame) -> None: ...


class MemorySink:
    def __init__(self) -> None:
        self._decisions: list[pd.DataFrame] = []
        self._reviews: list[pd.DataFrame] = []

    def write_decisions(self, frame: pd.DataFrame) -> None:
        self._decisions.append(frame)

    def write_reviews(self, frame: pd.DataFrame) -> None:
        self._reviews.append(frame)

    @property
    def decisions(self) -> pd.DataFrame:
        return pd.concat(self._decisions, ignore_index=True) if self._decisions else pd.DataFrame()

    @property
    def reviews(self) -> pd.DataFrame:
        if not self._reviews:
            return pd.DataFrame({"sku_id": pd.Series(dtype="int64"), "review_seq": pd.Series(dtype="int64"),
                                 "event_timestamp": pd.Series(dtype="datetime64[us, UTC]"),
                                 "text": pd.Series(dtype="object")})
        return pd.concat(self._reviews, ignore_index=True)


class _ParquetStream:
    """One parquet file written incrementally to a temporary name, renamed on :meth:`close`."""

    def __init__(self, target: Path):
        self.target = target
        self.tmp = target.with_name(f".{target.name}.partial")
        self.writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        # Dictionary columns get per-batch dictionaries; unify them to the first batch's schema as plain
        # values when they differ (parquet stores them dictionary-encoded either way).
        if self.schema is not None and table.schema != self.schema:
            table = table.cast(self.schema)
        if self.writer is None:
            self.schema = table.schema
            self.target.parent.mkdir(parents=True, exist_ok=True)
            # Dictionary-encode only the categorical columns: trying it on every float column doubles the
            # write time for nothing.
            dictionary = [f.name for f in self.schema if pa.types.is_dictionary(f.type) or pa.types.is_string(f.type)]
            self.writer = pq.ParquetWriter(self.tmp, self.schema, coerce_timestamps="us", compression="zstd",
                                           compression_level=1, use_dictionary=dictionary)
        self.writer.write_table(table)
        self.rows += len(frame)

    def close(self, empty: pd.DataFrame | None = None) -> None:
        if self.writer is None:
            if empty is None:
                return
            self.write(empty)
        assert self.writer is not None
        self.writer.close()
        os.replace(self.tmp, self.target)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.tmp.exists():
            self.tmp.unlink()


class ParquetSink:
    """Streams ``decisions.parquet`` and ``reviews.parquet`` into a directory; use as a context manager
    so that an interrupted run leaves no half-written file behind."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.decisions = _ParquetStream(self.directory / "decisions.parquet")
        self.reviews = _ParquetStream(self.directory / "reviews.parquet")

    def write_decisions(self, frame: pd.DataFrame) -> None:
        self.decisions.write(frame)

    def write_reviews(self, frame: pd.DataFrame) -> None:
        self.reviews.write(frame)

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.decisions.close()
            self.reviews.close(empty=MemorySink().reviews)
        else:
            self.decisions.abort()
            self.reviews.abort()
