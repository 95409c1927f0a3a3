"""Feature rows for prompts, from a market log directory or from a feature-store export.

A *prompt row* has the schema's feature names (``aigp.schema``) plus ``sku_id`` and ``date`` (the day
priced): exactly what ``aigp.llm.prompt.build_prompt`` reads. Two sources:

- a parquet file of rows (e.g. a point-in-time training set of the Feast ``llm_prompt`` feature service),
  read as is;
- a market log directory (``aigp.market.logs``): the decision log already holds each decision's state
  features; static attributes and the description come from the SKU table, and the review digest is
  rebuilt from the reviews posted at or before the decision time (newest first, the log's digest size), so
  no row sees a review written after it was priced: the same digest the feature store serves
  (``aigp.ingest.review_digests``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from aigp.schema import DATE, ENTITY_KEY, EVENT_TIMESTAMP, FEATURES, TEXT_FEATURES

DEFAULT_DIGEST_SIZE = 3


def load_prompt_rows(source: str | Path, *, n: int | None = None, seed: int = 0, start: dt.date | None = None,
                     end: dt.date | None = None) -> pd.DataFrame:
    """Prompt rows from a parquet file or a market log directory; ``n`` sampled rows (seeded) of the days
    priced in [start, end)."""
    path = Path(source)
    if path.is_dir():
        return rows_from_logs(path, n=n, seed=seed, start=start, end=end)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such prompt-rows parquet file or market log directory")
    rows = pd.read_parquet(path)
    missing = [c for c in ("prev_discount", "category") if c not in rows.columns]
    if missing:
        raise ValueError(f"{path}: prompt rows lack column(s) {missing}")
    rows = _window(rows, start, end)
    return _sample(rows, n, seed)


def _dates(rows: pd.DataFrame) -> pd.Series:
    if DATE in rows.columns:
        return pd.to_datetime(rows[DATE]).dt.date
    if EVENT_TIMESTAMP in rows.columns:
        return pd.to_datetime(rows[EVENT_TIMESTAMP], utc=True).dt.date
    raise ValueError(f"prompt rows need a {DATE!r} or {EVENT_TIMESTAMP!r} column to select a data window")


def _window(rows: pd.DataFrame, start: dt.date | None, end: dt.date | None) -> pd.DataFrame:
    if start is None and end is None:
        return rows
    days = _dates(rows)
    keep = np.ones(len(rows), dtype=bool)
    if start is not None:
        keep &= (days >= start).to_numpy()
    if end is not None:
        keep &= (days < end).to_numpy()
    return rows[keep].reset_index(drop=True)


def _sample(rows: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    if n is None or n >= len(rows):
        return rows.reset_index(drop=True)
    return rows.sample(n=n, random_state=seed).sort_index().reset_index(drop=True)


def rows_from_logs(logs_dir: str | Path, *, n: int | None = None, seed: int = 0, start: dt.date | None = None,
                   end: dt.date | None = None) -> pd.DataFrame:
    from aigp.ingest import review_digests  # the feature store's digest; heavy imports, only for log directories
    from aigp.market.logs import open_logs

    logs = open_logs(logs_dir)
    decisions = _window(logs.read("decisions.parquet"), start, end)
    if decisions.empty:
        raise ValueError(f"{logs_dir}: no decisions in the window [{start}, {end})")
    decisions = _sample(decisions, n, seed)
    skus = logs.read("skus.parquet")
    static = [c for c in skus.columns if c in FEATURES or c == ENTITY_KEY]
    rows = decisions.merge(skus[static], on=ENTITY_KEY, how="left", validate="many_to_one")
    if rows["list_price"].isna().any():
        raise ValueError(f"{logs_dir}: decisions of SKUs missing from skus.parquet")
    size = int(logs.manifest.get("config", {}).get("review_digest_size", DEFAULT_DIGEST_SIZE))
    rows["review_digest"] = review_digests(rows[ENTITY_KEY].to_numpy(), rows[EVENT_TIMESTAMP],
                                           logs.read("reviews.parquet"), size)
    keep = [ENTITY_KEY, DATE, EVENT_TIMESTAMP] + [c for c in FEATURES if c in rows.columns]
    rows = rows[keep]
    for name in TEXT_FEATURES:
        rows[name] = rows[name].fillna("").astype(str)
    return rows
