"""State features from raw daily outcomes: the one definition of every rolling and cumulative feature.

The simulator calls :func:`state_features` each night on its in-memory panel to build what its policies
see; ingestion of a logged market (ours or production's) calls the same function over every day of the
same panel (:func:`state_features_from_log`). A test asserts both give identical numbers, so a feature
means the same thing at training time and at decision time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aigp.schema import LAST_ACTIONS, ROLLED_COUNTS, ROLLING_WINDOWS

RAW_SERIES = ("discount", "change", "exposure", "clicks", "orders", "gmv", "spend", "new_reviews")


@dataclass
class DailyPanel:
    """Raw daily outcomes of n SKUs over their first ``days`` days (column t = age t)."""

    discount: np.ndarray
    change: np.ndarray
    exposure: np.ndarray
    clicks: np.ndarray
    orders: np.ndarray
    gmv: np.ndarray
    spend: np.ndarray
    new_reviews: np.ndarray

    @classmethod
    def empty(cls, n: int, days: int) -> DailyPanel:
        return cls(**{name: np.zeros((n, days), dtype=np.float64) for name in RAW_SERIES})

    @property
    def shape(self) -> tuple[int, int]:
        return self.discount.shape  # type: ignore[return-value]


@dataclass(frozen=True)
class SkuStatics:
    """Per-SKU constants the features need."""

    list_price: np.ndarray
    launch_discount: np.ndarray
    launch_inventory: np.ndarray
    gmv_tier1: np.ndarray


@dataclass(frozen=True)
class DecisionContext:
    """What is known about the market on the night before day t (per SKU)."""

    day_of_week: np.ndarray  # of day t
    is_promotion: np.ndarray  # on day t
    in_season: np.ndarray  # on day t
    competitor_price_index: np.ndarray  # observed on day t-1
    competitor_median_price: np.ndarray  # observed on day t-1


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def state_features(panel: DailyPanel, t: int, statics: SkuStatics, context: DecisionContext) -> dict[str, np.ndarray]:
    """Features of the decision for day ``t`` (0 = launch day), built from days ``< t`` only."""
    n, days = panel.shape
    if not 0 <= t <= days:
        raise ValueError(f"t={t} is outside the panel's 0..{days}")
    out: dict[str, np.ndarray] = {"days_since_launch": np.full(n, t, dtype=np.int64)}
    prev = panel.discount[:, t - 1] if t > 0 else statics.launch_discount.astype(np.float64)
    out["prev_discount"] = prev
    for k in range(1, LAST_ACTIONS + 1):
        out[f"last_action_{k}"] = panel.change[:, t - k] if t - k >= 0 else np.zeros(n)

    def window(series: np.ndarray, w: int) -> np.ndarray:
        return series[:, max(0, t - w):t].sum(axis=1)

    series = {name: getattr(panel, name) for name in ROLLED_COUNTS}
    yesterday = {m: (values[:, t - 1] if t > 0 else np.zeros(n)) for m, values in series.items()}
    _add_window(out, "1d", yesterday)
    for w in ROLLING_WINDOWS:
        _add_window(out, f"{w}d", {m: window(values, w) for m, values in series.items()})

    cum = {m: panel_sum(series[m], t) for m in ("gmv", "spend", "orders")}
    out["cum_gmv"] = cum["gmv"]
    out["cum_spend"] = cum["spend"]
    out["cum_orders"] = cum["orders"]
    out["cum_roi"] = _ratio(cum["gmv"], cum["spend"])
    out["milestone_progress"] = _ratio(cum["gmv"], statics.gmv_tier1.astype(np.float64))
    out["inventory"] = np.rint(statics.launch_inventory - cum["orders"]).astype(np.int64)
    out["review_count"] = np.rint(panel_sum(panel.new_reviews, t)).astype(np.int64)

    out["competitor_price_index"] = np.asarray(context.competitor_price_index, dtype=np.float64)
    out["competitor_median_price"] = np.asarray(context.competitor_median_price, dtype=np.float64)
    out["price_position"] = _ratio(statics.list_price * prev, out["competitor_median_price"])
    out["day_of_week"] = np.asarray(context.day_of_week, dtype=np.int64)
    out["is_promotion"] = np.asarray(context.is_promotion, dtype=bool)
    out["in_season"] = np.asarray(context.in_season, dtype=bool)
    return out


def _add_window(out: dict[str, np.ndarray], label: str, sums: dict[str, np.ndarray]) -> None:
    for m, values in sums.items():
        out[f"{m}_{label}"] = values
    out[f"ctr_{label}"] = _ratio(sums["clicks"], sums["exposure"])
    out[f"cvr_{label}"] = _ratio(sums["orders"], sums["clicks"])
    out[f"roi_{label}"] = _ratio(sums["gmv"], sums["spend"])


def panel_sum(series: np.ndarray, t: int) -> np.ndarray:
    return series[:, :t].sum(axis=1)


def panel_from_log(log: pd.DataFrame, days: int) -> tuple[np.ndarray, DailyPanel]:
    """Pivot a decision log (one row per SKU and day priced) into a panel; returns (sku ids, panel).

    Every SKU must have a contiguous run of days 0..k; a gap would silently shift rolling windows,
    so it is an error.
    """
    need = {"sku_id", "days_since_launch", "discount", "discount_change", "out_exposure", "out_clicks",
            "out_orders", "out_gmv", "out_spend", "out_new_reviews"}
    missing = sorted(need - set(log.columns))
    if missing:
        raise ValueError(f"decision log lacks column(s) {missing}")
    skus, row = np.unique(log["sku_id"].to_numpy(), return_inverse=True)
    age = log["days_since_launch"].to_numpy().astype(np.int64)
    if (age < 0).any() or (age >= days).any():
        raise ValueError(f"days_since_launch must lie in [0, {days}), got {age.min()}..{age.max()}")
    counts = np.bincount(row, minlength=len(skus))
    max_age = np.full(len(skus), -1)
    np.maximum.at(max_age, row, age)
    if (max_age + 1 != counts).any():
        bad = skus[np.flatnonzero(max_age + 1 != counts)[0]]
        raise ValueError(f"sku_id={bad} has gaps or duplicate days in its history")
    panel = DailyPanel.empty(len(skus), days)
    mapping = {"discount": "discount", "change": "discount_change", "exposure": "out_exposure",
               "clicks": "out_clicks", "orders": "out_orders", "gmv": "out_gmv", "spend": "out_spend",
               "new_reviews": "out_new_reviews"}
    for attr, column in mapping.items():
        getattr(panel, attr)[row, age] = log[column].to_numpy(dtype=np.float64)
    return skus, panel
