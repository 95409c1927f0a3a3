"""The pricing decisions log: what serving writes for every SKU it prices and monitoring reads.

One row per (SKU, day priced). Alongside the decision it keeps the prompt's numeric features (schema
names) so that drift can be measured on exactly what the model saw, and the safety facts of the
decision: was the model output parseable, did the action need projecting onto A_safe, did the platform
fall back to holding yesterday's discount and why.

Readers: :func:`load_decisions` reads a decisions log (what serving writes), a market log or the feature store's
source tables as one decisions frame, and :func:`select_window` cuts a window of days out of it (monitoring's
reference and current windows).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from aigp.action import project_to_safe
from aigp.schema import Group, numeric_state_features, to_date


class FallbackReason(StrEnum):
    NONE = ""
    MISSING_FEATURES = "missing_features"
    PREDICTOR_TIMEOUT = "predictor_timeout"
    PREDICTOR_ERROR = "predictor_error"
    UNPARSABLE_OUTPUT = "unparsable_output"


# column -> pandas dtype
DECISION_COLUMNS: dict[str, str] = {
    "sku_id": "int64",
    "date": "datetime64[us]",  # the day priced
    "event_timestamp": "datetime64[us, UTC]",  # when the decision was made
    "experiment": "string",  # experiment salt
    "group": "string",  # experiment group of the SKU
    "model_name": "string",
    "model_version": "string",
    "prompt_version": "string",
    "prev_discount": "float64",
    "proposed_change": "float64",  # what the model asked for (NaN when nothing parseable came back)
    "discount_change": "float64",  # what was applied, inside A_safe
    "new_discount": "float64",
    "parse_ok": "bool",
    "projected": "bool",  # the proposal was outside A_safe and was projected
    "fallback": "bool",  # held yesterday's discount instead of the model's action
    "fallback_reason": "string",
    "rationale": "string",
    "rationale_tokens": "int64",
    "latency_ms": "float64",
}
FEATURE_COLUMNS = numeric_state_features()
CATEGORY = "category"  # joined from the SKU table where the log lacks it


def empty_decisions() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=t) for c, t in DECISION_COLUMNS.items()})
    for f in FEATURE_COLUMNS:
        frame[f] = pd.Series(dtype="float64")
    return frame


def validate_decisions(frame: pd.DataFrame) -> pd.DataFrame:
    """Check columns and the A_safe invariant; returns the frame with the declared dtypes."""
    missing = [c for c in DECISION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"decisions log lacks column(s) {missing}")
    out = frame.astype({c: t for c, t in DECISION_COLUMNS.items() if c not in ("date", "event_timestamp")})
    safe = project_to_safe(out["prev_discount"].to_numpy(), out["discount_change"].to_numpy())
    if safe.projected.any():
        row = out.iloc[int(np.flatnonzero(safe.projected)[0])]
        raise ValueError(f"decision for sku_id={row.sku_id} on {row.date} is outside A_safe: "
                         f"prev_discount={row.prev_discount}, discount_change={row.discount_change}")
    return out


def decisions_from_simulation(log: pd.DataFrame, *, model_name: str, model_version: str, group: str = "treatment",
                              experiment: str = "simulation", prompt_version: str = "") -> pd.DataFrame:
    """A decisions log from a simulator decision log (every action parsed, no fallbacks, no rationale).

    Lets monitoring, reports and tests run on simulated traffic with the same schema serving writes.
    """
    n = len(log)
    frame = pd.DataFrame({
        "sku_id": log["sku_id"].to_numpy(np.int64),
        "date": pd.to_datetime(log["date"]).astype("datetime64[us]"),
        "event_timestamp": log["event_timestamp"],
        "experiment": experiment,
        "group": group,
        "model_name": model_name,
        "model_version": model_version,
        "prompt_version": prompt_version,
        "prev_discount": log["prev_discount"].to_numpy(np.float64),
        "proposed_change": log["discount_change"].to_numpy(np.float64),
        "discount_change": log["discount_change"].to_numpy(np.float64),
        "new_discount": log["discount"].to_numpy(np.float64),
        "parse_ok": np.ones(n, dtype=bool),
        "projected": log["projected"].to_numpy(bool) if "projected" in log else np.zeros(n, dtype=bool),
        "fallback": np.zeros(n, dtype=bool),
        "fallback_reason": FallbackReason.NONE.value,
        "rationale": "",
        "rationale_tokens": np.zeros(n, dtype=np.int64),
        "latency_ms": np.zeros(n),
    })
    for f in FEATURE_COLUMNS:
        frame[f] = log[f].to_numpy(np.float64) if f in log else np.nan
    return validate_decisions(frame)


# ------------------------------------------------------------------------------------------------------
# reading a log, and windows of it
# ------------------------------------------------------------------------------------------------------
def load_decisions(path: str | Path, *, skus: str | Path | pd.DataFrame | None = None) -> pd.DataFrame:
    """A decisions log from ``path``: a decisions parquet file or folder of parquet files (what serving
    writes), a market log directory (``aigp simulate``) or the feature store's source tables (``aigp
    features ingest``); the last two turn the logged behaviour into a decisions log, so the training window
    can be the reference. ``skus`` (a parquet path or frame with ``sku_id`` and
    ``category``) supplies the category where the log lacks it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"decisions log {path} does not exist")
    if path.is_dir() and (path / "manifest.json").exists() and (path / "decision_events.parquet").exists():
        frame = _decisions_from_feature_sources(path)
    elif path.is_dir() and (path / "manifest.json").exists():
        frame = _decisions_from_market_log(path)
    else:
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a non-parquet input
            raise ValueError(f"{path} is not a decisions parquet file/folder or a market log: {exc}") from None
        if "date" in frame:
            frame["date"] = pd.to_datetime(frame["date"]).dt.tz_localize(None).astype("datetime64[us]")
        frame = validate_decisions(frame)
    return attach_categories(frame, skus)


def _decisions_from_market_log(path: Path) -> pd.DataFrame:
    from aigp.decisions import decisions_from_simulation
    from aigp.market.logs import open_logs

    logs = open_logs(path)
    log = logs.read("decisions.parquet")
    static = logs.read("skus.parquet")
    keep = [c for c in static.columns if c in FEATURE_COLUMNS or c in ("sku_id", CATEGORY)]
    log = log.merge(static[keep], on="sku_id", how="left", validate="many_to_one")
    frame = decisions_from_simulation(log, model_name="behaviour_policies", model_version="logged",
                                      group="logged", experiment="market_log")
    frame[CATEGORY] = log[CATEGORY].astype(str).to_numpy()
    return frame


def _decisions_from_feature_sources(path: Path) -> pd.DataFrame:
    """The feature store's source tables (``aigp features ingest``: one table per feature view plus the
    decision events) joined back into a decisions log: the training window as the model's inputs saw it."""
    from aigp.decisions import decisions_from_simulation
    from aigp.schema import ENTITY_KEY, EVENT_TIMESTAMP

    keys = [ENTITY_KEY, EVENT_TIMESTAMP]
    frame = pd.read_parquet(path / "decision_events.parquet")
    for group in (Group.PERFORMANCE, Group.PRICING, Group.COMPETITOR, Group.CALENDAR):
        table = path / f"{group.value}.parquet"
        if not table.exists():
            raise FileNotFoundError(f"{path} lacks the {group.value} table ({table.name})")
        frame = frame.merge(pd.read_parquet(table), on=keys, how="left", validate="one_to_one")
    static = pd.read_parquet(path / f"{Group.SKU.value}.parquet").drop(columns=[EVENT_TIMESTAMP])
    frame = frame.merge(static, on=ENTITY_KEY, how="left", validate="many_to_one")
    if "date" not in frame:
        frame["date"] = frame[EVENT_TIMESTAMP].dt.tz_convert(None).dt.normalize()
    decisions = decisions_from_simulation(frame, model_name="behaviour_policies", model_version="logged",
                                          group="logged", experiment="feature_store")
    decisions[CATEGORY] = frame[CATEGORY].astype(str).to_numpy()
    return decisions


def attach_categories(frame: pd.DataFrame, skus: str | Path | pd.DataFrame | None = None) -> pd.DataFrame:
    """Give every row a ``category``: its own column, else the SKU table's, else a label made of the
    category benchmarks (category_ctr and category_cvr are constants of a category, so they identify it)."""
    if CATEGORY in frame and frame[CATEGORY].notna().all():
        frame[CATEGORY] = frame[CATEGORY].astype(str)
        return frame
    if skus is not None:
        table = skus if isinstance(skus, pd.DataFrame) else pd.read_parquet(skus, columns=["sku_id", CATEGORY])
        if "sku_id" not in table or CATEGORY not in table:
            raise ValueError(f"the SKU table needs columns sku_id and {CATEGORY}, got {list(table.columns)}")
        lookup = table.drop_duplicates("sku_id").set_index("sku_id")[CATEGORY].astype(str)
        frame[CATEGORY] = frame["sku_id"].map(lookup).fillna("unknown").to_numpy()
        return frame
    frame[CATEGORY] = benchmark_labels(frame)
    return frame


DERIVED = "benchmarks "  # prefix of a category label derived from the category benchmarks


def benchmark_labels(frame: pd.DataFrame) -> np.ndarray:
    """A category label per row from its category benchmarks (constants of a category)."""
    ctr = frame.get("category_ctr", pd.Series(np.nan, index=frame.index)).to_numpy(np.float64)
    cvr = frame.get("category_cvr", pd.Series(np.nan, index=frame.index)).to_numpy(np.float64)
    labels = np.array([f"{DERIVED}ctr={a:.4f} cvr={b:.4f}" for a, b in zip(ctr, cvr, strict=True)], dtype=object)
    labels[~(np.isfinite(ctr) & np.isfinite(cvr))] = "unknown"
    return labels


def harmonise_categories(named: pd.DataFrame, derived: pd.DataFrame) -> None:
    """Rename the derived labels of ``derived`` to the category names ``named`` uses for the same
    benchmarks (in place), so that both windows speak of the same categories."""
    lookup = (pd.DataFrame({"key": benchmark_labels(named), "name": named[CATEGORY].to_numpy()})
              .groupby("key")["name"].agg(lambda s: s.mode().iloc[0]))
    labels = derived[CATEGORY].astype(str)
    is_derived = labels.str.startswith(DERIVED).to_numpy()
    derived.loc[is_derived, CATEGORY] = labels[is_derived].map(lookup).fillna(labels[is_derived]).to_numpy()


@dataclass(frozen=True)
class Window:
    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def __str__(self) -> str:
        return f"{self.start} .. {self.end} ({self.days} day{'s' if self.days != 1 else ''})"


def _as_date(value: str | dt.date | None, name: str) -> dt.date | None:
    return None if value is None or value == "" else to_date(value, name)


def select_window(frame: pd.DataFrame, *, days: int | None = None, end: str | dt.date | None = None,
                  start: str | dt.date | None = None, name: str = "window") -> tuple[pd.DataFrame, Window]:
    """Rows whose ``date`` lies in [start, end]; ``end`` defaults to the last date of the log and
    ``start`` to ``end - days + 1`` (all of the log when neither ``start`` nor ``days`` is given)."""
    if frame.empty:
        raise ValueError(f"{name}: the decisions log is empty")
    dates = pd.to_datetime(frame["date"]).dt.date
    end_d = _as_date(end, f"{name} end") or dates.max()
    start_d = _as_date(start, f"{name} start")
    if start_d is None:
        start_d = end_d - dt.timedelta(days=days - 1) if days else dates.min()
    if start_d > end_d:
        raise ValueError(f"{name}: start {start_d} is after end {end_d}")
    mask = ((dates >= start_d) & (dates <= end_d)).to_numpy()
    if not mask.any():
        raise ValueError(f"{name}: no decisions between {start_d} and {end_d} "
                         f"(the log covers {dates.min()} .. {dates.max()})")
    return frame.loc[mask].reset_index(drop=True), Window(start_d, end_d)
