"""Market logs on disk: what ``aigp simulate`` writes and every later stage reads.

A log directory holds
- ``decisions.parquet``: one row per SKU and day priced: the state at decision time (schema features),
  the action, and the day's outcome in ``out_*`` columns;
- ``skus.parquet``: observable static attributes and the description;
- ``reviews.parquet``: every review with the time it was posted;
- ``market_daily.parquet``: per category and day, season, promotion and competitor index;
- ``sku_truth.parquet``: hidden latents (quality, brand strength, behaviour policy): for evaluation only,
  never for features;
- ``summary.parquet``: per-SKU 7/14-day outcomes; ``config.yaml``; ``manifest.json`` (written last,
  with row counts and checksums).

The directory is built under a ``.partial`` name and renamed when complete, so a reader never sees a
half-written log.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import aigp
from aigp.io import replace_directory, sha256_of, write_json, write_parquet, write_text
from aigp.market.catalog import Calendar
from aigp.market.config import MarketConfig
from aigp.market.policies import behaviour_policies
from aigp.market.simulator import Market, RunResult
from aigp.market.sinks import MemorySink, ParquetSink

LOG_FILES = ("decisions.parquet", "skus.parquet", "reviews.parquet", "market_daily.parquet", "sku_truth.parquet",
             "summary.parquet")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class LogDirectory:
    path: Path
    manifest: dict

    def read(self, name: str) -> pd.DataFrame:
        if name not in LOG_FILES:
            raise ValueError(f"unknown log table {name!r}; expected one of {LOG_FILES}")
        return pd.read_parquet(self.path / name)

    @property
    def config(self) -> MarketConfig:
        return MarketConfig.build(**self.manifest["config"])


def market_daily_frame(calendar: Calendar, categories: list[str]) -> pd.DataFrame:
    days = np.arange(-1, calendar.n_days)
    dates = pd.to_datetime(calendar.dates(days).astype("datetime64[us]")).tz_localize("UTC")
    frames = []
    for c, name in enumerate(categories):
        frames.append(pd.DataFrame({
            "category": name,
            "date": calendar.dates(days),
            "event_timestamp": dates,
            "season_strength": calendar.season[c].astype(np.float32),
            "season_name": calendar.season_names[c],
            "is_promotion": calendar.promotion,
            "day_of_week": calendar.day_of_week,
            "competitor_price_index": calendar.competitor_index[c].astype(np.float32),
        }))
    return pd.concat(frames, ignore_index=True)


def simulate_to_directory(config: MarketConfig, out_dir: str | Path, *, overwrite: bool = False,
                          progress: bool = False, chunk_size: int = 65_536) -> LogDirectory:
    """Simulate the logged behaviour mix and write a complete log directory."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    started = time.perf_counter()
    try:
        market = Market(config)
        with ParquetSink(partial) as sink:
            result = market.run(behaviour_policies(), market.behaviour_groups(), sink=sink, progress=progress,
                                chunk_size=chunk_size)
        write_parquet(partial / "skus.parquet", market.sku_frame())
        write_parquet(partial / "sku_truth.parquet", market.skus.truth_frame())
        write_parquet(partial / "market_daily.parquet",
                      market_daily_frame(market.calendar, [c.name for c in market.categories]))
        write_parquet(partial / "summary.parquet", result.summary)
        write_text(partial / "config.yaml", config.to_yaml())
        manifest = {
            "aigp_version": aigp.__version__,
            "config": config.model_dump(mode="json"),
            "rows": {"decisions": int(sink.decisions.rows), "reviews": int(sink.reviews.rows),
                     "skus": len(market.skus)},
            "files": {name: sha256_of(partial / name) for name in LOG_FILES},
            "seconds": round(time.perf_counter() - started, 2),
        }
        write_json(partial / MANIFEST, manifest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_directory(partial, out)
    return LogDirectory(out, manifest)


def open_logs(path: str | Path, *, verify: bool = False) -> LogDirectory:
    """Open a log directory; with ``verify`` every file's checksum is compared with the manifest."""
    import json

    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(f"{path} is not a complete market log (no {MANIFEST}); re-run `aigp simulate`")
    manifest = json.loads(manifest_path.read_text())
    if verify:
        for name, digest in manifest["files"].items():
            if sha256_of(path / name) != digest:
                raise ValueError(f"{path / name} does not match its checksum in {MANIFEST}: corrupt or edited")
    return LogDirectory(path, manifest)


def logged_history(config: MarketConfig) -> tuple[pd.DataFrame, pd.DataFrame, RunResult]:
    """Simulate the behaviour mix in memory: (decision log, SKU table, run result)."""
    market = Market(config)
    sink = MemorySink()
    result = market.run(behaviour_policies(), market.behaviour_groups(), sink=sink)
    return sink.decisions, market.sku_frame(), result
