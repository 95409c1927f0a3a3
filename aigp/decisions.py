"""The pricing decisions log: what serving writes for every SKU it prices and monitoring reads.

One row per (SKU, day priced). Alongside the decision it keeps the prompt's numeric features (schema
names) so that drift can be measured on exactly what the model saw, and the safety facts of the
decision: was the model output parseable, did the action need projecting onto A_safe, did the platform
fall back to holding yesterday's discount and why.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pandas as pd

from aigp.action import project_to_safe
from aigp.schema import numeric_state_features


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
