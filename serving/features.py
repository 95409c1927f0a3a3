"""Where serving gets a SKU's features: the Feast online store, embedded or behind the Feast feature server.

Both sources return one row per requested SKU (request order) with every feature of the ``llm_prompt``
feature service, ``None`` where the store has no value, and the store's explicit missing marker
(``missing_features``: the names with no value), which the prompt prints as ``n/a`` and the pricing
engine turns into a ``missing_features`` fallback when a decision-critical one is absent.

- :class:`EmbeddedFeatureSource`: ``aigp.feature_repo.store`` (SQLite by default, Redis in production),
  read in one batch in Feast's own online layout;
- :class:`FeatureServerSource`: the Feast feature server's ``POST /get-online-features`` (what the
  transformer pod uses in the cluster: ``AIGP_FEATURE_SERVER_URL``).

:func:`active_skus` lists the SKUs a nightly run prices: launched on or before the day priced and still
within their first ``horizon_days`` days, from the SKU attribute table (stamped at launch) of the feature
data the store was built from.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from aigp.ingest import table_file
from aigp.pricing import FEATURE_SERVICE
from aigp.schema import ENTITY_KEY, EVENT_TIMESTAMP, FEATURES, Group

MISSING_MARKER = "missing_features"
FEATURES_MISSING = "features_missing"


class FeatureSource(Protocol):
    async def rows(self, sku_ids: Sequence[int]) -> list[dict[str, Any]]:
        """One feature row per SKU (``sku_id``, the service's features, ``missing_features``)."""
        ...

    def close(self) -> None: ...


class EmbeddedFeatureSource:
    """The embedded Feast store (``aigp.feature_repo.store.open_store``)."""

    def __init__(self, store: Any, service: str = FEATURE_SERVICE):
        self.store = store
        self.service = service

    @classmethod
    def open(cls, **fields: Any) -> EmbeddedFeatureSource:
        """``open_store(**fields)``: ``feature_data``, ``state_dir``, ``online_store``, ``redis_connection_string``."""
        from aigp.feature_repo.store import open_store

        return cls(open_store(**{k: v for k, v in fields.items() if v is not None}))

    def lookup(self, sku_ids: Sequence[int]) -> list[dict[str, Any]]:
        if not len(sku_ids):
            return []
        return self.store.online_records([int(s) for s in sku_ids], self.service)

    async def rows(self, sku_ids: Sequence[int]) -> list[dict[str, Any]]:
        return self.lookup(sku_ids)  # one indexed SQLite/Redis batch read: milliseconds, no need for a thread

    def close(self) -> None:
        self.store.close()


class FeatureServerSource:
    """The Feast feature server (``feast serve``): ``POST {url}/get-online-features`` with the feature service."""

    def __init__(self, url: str, service: str = FEATURE_SERVICE, *, timeout_s: float = 10.0, transport: Any = None):
        import httpx

        if not url.startswith(("http://", "https://")):
            raise ValueError(f"feature server URL {url!r}: expected http(s)://host:port")
        self.url = url.rstrip("/")
        self.service = service
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout_s, transport=transport)
        self._names = [n for n in FEATURES]

    async def rows(self, sku_ids: Sequence[int]) -> list[dict[str, Any]]:
        ids = [int(s) for s in sku_ids]
        if not ids:
            return []
        response = await self._http.post("/get-online-features", json={
            "feature_service": self.service, "entities": {ENTITY_KEY: ids}, "full_feature_names": False})
        if response.status_code != 200:
            raise RuntimeError(f"feature server {self.url}: HTTP {response.status_code}: {response.text[:300]}")
        data = response.json()
        names = data["metadata"]["feature_names"]
        results = data["results"]
        rows: list[dict[str, Any]] = [{ENTITY_KEY: i, MISSING_MARKER: []} for i in ids]
        for name, result in zip(names, results, strict=True):
            if name == ENTITY_KEY:
                continue
            values = result.get("values", [])
            statuses = result.get("statuses", ["PRESENT"] * len(values))
            for row, value, status in zip(rows, values, statuses, strict=True):
                present = status == "PRESENT" and value is not None
                row[name] = value if present else None
                if not present:
                    row[MISSING_MARKER].append(name)
        for row in rows:
            row[FEATURES_MISSING] = bool(row[MISSING_MARKER])
        return rows

    def close(self) -> None:
        import asyncio

        try:
            asyncio.get_running_loop().create_task(self._http.aclose())
        except RuntimeError:
            asyncio.run(self._http.aclose())


def active_skus(feature_data: str | Path, date: dt.date, horizon_days: int = 14) -> pd.DataFrame:
    """SKUs in their first ``horizon_days`` days on ``date``: ``sku_id`` and ``launch_date``, by SKU id."""
    path = Path(feature_data) / table_file(Group.SKU)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: no ingested feature data in {feature_data} "
                                "(run `aigp features ingest --logs DIR` first)")
    day = pd.Timestamp(date).tz_localize("UTC")
    try:
        frame = pd.read_parquet(path, columns=[ENTITY_KEY, EVENT_TIMESTAMP],
                                filters=[(EVENT_TIMESTAMP, "<=", day),
                                         (EVENT_TIMESTAMP, ">", day - pd.Timedelta(days=horizon_days))])
    except (OSError, ValueError, TypeError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a readable parquet table with {ENTITY_KEY} and {EVENT_TIMESTAMP} "
                         f"({first[:200]})") from None
    launch = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True).dt.tz_convert(None).dt.normalize()
    out = pd.DataFrame({ENTITY_KEY: frame[ENTITY_KEY].to_numpy(np.int64), "launch_date": launch.dt.date.to_numpy()})
    return out.sort_values(ENTITY_KEY, kind="stable").drop_duplicates(ENTITY_KEY).reset_index(drop=True)
