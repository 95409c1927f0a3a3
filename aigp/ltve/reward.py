"""The LTVE reward (paper eq. 3): category-normalised milestone progress and ROI, relative to successful SKUs.

    r_t = λ1 (prog_t − prog_ref) + λ2 (log(1 + ROI_t) − log(1 + ROI_ref))

- ``prog_t = GMV_t / gmv_tier1``: day t's contribution toward the 14-day GMV milestone (tier 1, the MAR tier),
  so a SKU that exactly reaches the milestone collects progress 1.0 over its 14 days.
- ``ROI_t = GMV_t / spend_t``: the day's ROI. A day with neither GMV nor spend (sold out, no traffic) carries no
  profitability information and its ROI term is 0 (ROI_t := ROI_ref); GMV with zero spend (possible in
  production logs, never in the simulator) counts as ``roi_cap``.
- References are averages over the SKUs that *reached the milestone within 14 days*, fitted on the
  training window only. Decisions taken here (the paper leaves them open):

  * "reached the milestone" means the MAR criterion: 14-day GMV >= tier 1 **and** 14-day ROI >= the
    category's ROI target (``success="milestone"``). With GMV alone (``success="gmv_tier"``) SKUs that bought
    their GMV with deep discounts and ROI ~1 (the aggressive behaviour: 96% reach tier 1 at ROI 1.1 in a
    20k-SKU log) would set the ROI reference, rewarding over-discounting.
  * references are per **category and day of life** (``by_age=True``): the launch boost makes a successful
    SKU's first days worth several times its later ones, so "on track" at day 1 and at day 10 differ. A cell
    with fewer than ``min_reference_skus`` successful SKUs falls back to the category's all-age average, then
    to the all-category average at that age, then to the all-category all-age average.
  * ``prog_ref`` is the mean daily progress; ``ROI_ref`` is the integrated ROI (Σ GMV / Σ spend) of the
    successful SKUs' days, robust to the heavy right tail of daily ROI.

Only ``out_gmv`` and ``out_spend`` (outcome labels) and ``gmv_tier1``, ``roi_target``, ``category`` and
``days_since_launch`` (state) are read, so the same function scores logged days and simulator rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from aigp.config import StrictConfig

MILESTONE_DAYS = 14
GLOBAL = "*"  # key of the all-category fallback in the reference tables


class RewardConfig(StrictConfig):
    """Reward of eq. 3 (defaults: the paper's Table 8)."""

    lambda_progress: float = Field(0.8, ge=0, description="λ1: weight of milestone progress")
    lambda_roi: float = Field(0.2, ge=0, description="λ2: weight of log ROI")
    horizon_days: int = Field(MILESTONE_DAYS, ge=1, description="milestone window and episode length, days")
    success: Literal["milestone", "gmv_tier"] = Field(
        "milestone", description="which SKUs define the references: joint GMV+ROI milestone (MAR) or GMV tier only")
    by_age: bool = Field(True, description="references per category and day of life (else per category)")
    min_reference_skus: int = Field(20, ge=1, description="successful SKUs a reference cell needs before falling back")
    roi_cap: float = Field(1000.0, gt=0, description="ROI of a day with GMV but no spend")


@dataclass(frozen=True)
class RewardReferences:
    """prog_ref and log(1 + ROI_ref) per (category, day of life); ``GLOBAL`` rows are the fallback."""

    horizon_days: int
    progress: dict[str, list[float]]  # category -> per-age reference progress (length horizon_days)
    log_roi: dict[str, list[float]]  # category -> per-age log(1 + ROI_ref)
    success_skus: dict[str, int]  # category -> successful SKUs the references were fitted on

    def lookup(self, category: np.ndarray, age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(prog_ref, log(1+ROI_ref)) per row; unknown categories use the all-category reference."""
        age = np.clip(np.asarray(age, dtype=np.int64), 0, self.horizon_days - 1)
        names = sorted(self.progress)
        table_p = np.array([self.progress[c] for c in names])
        table_r = np.array([self.log_roi[c] for c in names])
        codes = pd.Categorical(np.asarray(category).astype(str), categories=names).codes.astype(np.int64)
        codes = np.where(codes < 0, names.index(GLOBAL), codes)
        return table_p[codes, age], table_r[codes, age]

    def to_dict(self) -> dict[str, Any]:
        return {"horizon_days": self.horizon_days, "progress": self.progress, "log_roi": self.log_roi,
                "success_skus": self.success_skus}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RewardReferences:
        refs = cls(int(data["horizon_days"]), {k: [float(x) for x in v] for k, v in data["progress"].items()},
                   {k: [float(x) for x in v] for k, v in data["log_roi"].items()},
                   {k: int(v) for k, v in data["success_skus"].items()})
        if GLOBAL not in refs.progress or GLOBAL not in refs.log_roi:
            raise ValueError("reward references lack the all-category fallback")
        return refs


def daily_roi(gmv: np.ndarray, spend: np.ndarray, roi_cap: float) -> np.ndarray:
    """GMV / spend per day; NaN where there was neither (no information), ``roi_cap`` for GMV without spend."""
    gmv = np.asarray(gmv, dtype=np.float64)
    spend = np.asarray(spend, dtype=np.float64)
    roi = np.divide(gmv, spend, out=np.full_like(gmv, np.nan), where=spend > 0)
    roi = np.where((spend <= 0) & (gmv > 0), roi_cap, roi)
    return np.minimum(roi, roi_cap)


def sku_totals(frame: pd.DataFrame, horizon_days: int = MILESTONE_DAYS) -> pd.DataFrame:
    """Per SKU: GMV and spend over its first ``horizon_days`` days, and whether all those days are logged."""
    first = frame[frame["days_since_launch"] < horizon_days]
    grouped = first.groupby("sku_id", sort=True)
    totals = grouped.agg(gmv=("out_gmv", "sum"), spend=("out_spend", "sum"), days=("out_gmv", "size"),
                         category=("category", "first"), gmv_tier1=("gmv_tier1", "first"),
                         roi_target=("roi_target", "first"))
    totals["complete"] = totals["days"] == horizon_days
    totals["category"] = totals["category"].astype(str)
    return totals


def reached_milestone(totals: pd.DataFrame, success: str = "milestone") -> pd.Series:
    """Which SKUs (rows of :func:`sku_totals`) reached the milestone within the window."""
    hit = totals["gmv"] >= totals["gmv_tier1"]
    if success == "milestone":
        roi = np.divide(totals["gmv"], totals["spend"], out=np.zeros(len(totals)), where=totals["spend"] > 0)
        hit &= roi >= totals["roi_target"]
    return hit & totals["complete"]


def fit_references(frame: pd.DataFrame, config: RewardConfig | None = None) -> RewardReferences:
    """Fit prog_ref and ROI_ref on a training frame (decision rows with ``out_gmv``/``out_spend``)."""
    config = config or RewardConfig()
    h = config.horizon_days
    totals = sku_totals(frame, h)
    winners = totals.index[reached_milestone(totals, config.success)]
    if len(winners) == 0:
        raise ValueError("no SKU in the training window reached the milestone within "
                         f"{h} days (success={config.success!r}); cannot fit reward references")
    rows = frame[frame["sku_id"].isin(winners) & (frame["days_since_launch"] < h)]
    category = rows["category"].astype(str).to_numpy()
    age = rows["days_since_launch"].to_numpy(np.int64) if config.by_age else np.zeros(len(rows), np.int64)
    progress = rows["out_gmv"].to_numpy(np.float64) / rows["gmv_tier1"].to_numpy(np.float64)
    gmv, spend = rows["out_gmv"].to_numpy(np.float64), rows["out_spend"].to_numpy(np.float64)
    cells = pd.DataFrame({"category": category, "age": age, "progress": progress, "gmv": gmv, "spend": spend,
                          "sku_id": rows["sku_id"].to_numpy()})

    def summarise(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
        g = table.groupby(keys, sort=True) if keys else table.assign(_all=0).groupby("_all")
        out = g.agg(progress=("progress", "mean"), gmv=("gmv", "sum"), spend=("spend", "sum"),
                    skus=("sku_id", "nunique"))
        out["log_roi"] = np.log1p(_integrated_roi(out["gmv"].to_numpy(), out["spend"].to_numpy(), config.roi_cap))
        return out

    by_cell = summarise(cells, ["category", "age"])
    by_cat = summarise(cells, ["category"])
    by_age = summarise(cells, ["age"])
    overall = summarise(cells, []).iloc[0]
    minimum = config.min_reference_skus

    def reference(cat: str | None, a: int) -> tuple[float, float]:
        candidates = []
        if cat is not None:
            candidates += [by_cell.loc[(cat, a)] if (cat, a) in by_cell.index else None,
                           by_cat.loc[cat] if cat in by_cat.index else None]
        candidates.append(by_age.loc[a] if a in by_age.index else None)
        for cell in candidates:
            if cell is not None and cell["skus"] >= minimum:
                return float(cell["progress"]), float(cell["log_roi"])
        return float(overall["progress"]), float(overall["log_roi"])

    ages = range(h) if config.by_age else [0] * h
    progress_table: dict[str, list[float]] = {}
    roi_table: dict[str, list[float]] = {}
    for cat in [*sorted(set(category)), None]:
        values = [reference(cat, a) for a in ages]
        key = GLOBAL if cat is None else cat
        progress_table[key] = [p for p, _ in values]
        roi_table[key] = [r for _, r in values]
    counts = totals.loc[winners, "category"].value_counts()
    success_skus = {str(k): int(v) for k, v in counts.items()} | {GLOBAL: len(winners)}
    return RewardReferences(h, progress_table, roi_table, success_skus)


def _integrated_roi(gmv: np.ndarray, spend: np.ndarray, cap: float) -> np.ndarray:
    return np.minimum(np.divide(gmv, spend, out=np.full_like(gmv, cap, dtype=np.float64), where=spend > 0), cap)


def daily_rewards(gmv: np.ndarray, spend: np.ndarray, gmv_tier1: np.ndarray, category: np.ndarray,
                  age: np.ndarray, refs: RewardReferences, config: RewardConfig | None = None) -> np.ndarray:
    """Eq. 3 for arrays of days (any matching shapes; ``category``/``gmv_tier1`` broadcast per SKU)."""
    config = config or RewardConfig()
    gmv = np.asarray(gmv, dtype=np.float64)
    tier = np.asarray(gmv_tier1, dtype=np.float64)
    if (tier <= 0).any() or not np.isfinite(tier).all():
        bad = tier[(tier <= 0) | ~np.isfinite(tier)].flat[0]
        raise ValueError(f"gmv_tier1={float(bad)!r}: the milestone tier must be a positive number")
    shape = np.broadcast_shapes(gmv.shape, np.shape(spend), tier.shape, np.shape(age), np.shape(category))
    cat = np.broadcast_to(np.asarray(category, dtype=object), shape)
    age_b = np.broadcast_to(np.asarray(age), shape)
    prog_ref, log_roi_ref = refs.lookup(cat.reshape(-1), age_b.reshape(-1))
    prog_ref, log_roi_ref = prog_ref.reshape(shape), log_roi_ref.reshape(shape)
    progress = np.broadcast_to(gmv / tier, shape)
    log_roi = np.log1p(daily_roi(np.broadcast_to(gmv, shape), np.broadcast_to(spend, shape), config.roi_cap))
    roi_term = np.where(np.isnan(log_roi), 0.0, log_roi - log_roi_ref)
    return config.lambda_progress * (progress - prog_ref) + config.lambda_roi * roi_term


def frame_rewards(frame: pd.DataFrame, refs: RewardReferences, config: RewardConfig | None = None) -> np.ndarray:
    """Eq. 3 for every row of a training frame."""
    return daily_rewards(frame["out_gmv"].to_numpy(np.float64), frame["out_spend"].to_numpy(np.float64),
                         frame["gmv_tier1"].to_numpy(np.float64), frame["category"].astype(str).to_numpy(),
                         frame["days_since_launch"].to_numpy(np.int64), refs, config)
