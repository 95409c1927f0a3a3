"""Fire drills: simulated pricing traffic with one known problem injected, to check that the monitor raises
the right alert and no other (the tests, the benchmark and ``aigp monitor drill`` use them).

Traffic is a decisions log made from a simulated market (``decisions_from_simulation``) with serving's
facts filled in plausibly: a latency per decision (log-normal, median 0.9 s) and a rationale length
(log-normal, median ~245 tokens). Windows are the market's *steady state*: the days when SKUs launched
every day have all been priced for the full horizon, so daily volume and SKU ages are stationary. The
reference is one market (seed 0), a "no drift" current window an independent market (another seed) over
the same dates: the same distribution, fresh SKUs and fresh luck.

Injections (each touches only what its problem touches):
- ``ctr_shift``: the click-through rates the prompt shows (1, 3, 7 days) move up by a logit shift;
- ``category_mix``: most SKUs of all but two categories leave the window;
- ``over_discounting``: the model proposes deeper cuts (a bias, kept inside A_safe as a trained model
  does), from the first day of the window, so the features have not reacted yet;
- ``fallback_rise``: predictor timeouts rise day by day, those SKUs hold yesterday's price;
- ``parse_failures``: some replies cannot be parsed (they fall back too, so two alerts are right);
- ``erratic``: the model makes big jumps (|a| ~ 0.18) on some SKUs, in both directions;
- ``slow_predictor``: decisions take ~200x longer;
- ``short_rationales``: rationales shrink to a third;
- ``outage``: serving stops part-way through the last day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field

from aigp.action import feasible_change_bounds
from aigp.config import StrictConfig
from aigp.decisions import FallbackReason, decisions_from_simulation
from aigp.market.config import MarketConfig
from aigp.market.logs import logged_history
from aigp.schema import FEATURES


class DrillConfig(StrictConfig):
    reference_skus: int = Field(2000, ge=100, description="SKUs of the reference market")
    current_skus: int = Field(1000, ge=100, description="SKUs of each current market")
    launch_days: int = Field(40, ge=20, description="launch window; the steady state is its last days")
    reference_seed: int = Field(0, ge=0)
    start_date: dt.date = Field(dt.date(2026, 3, 1))
    timeout_ms: float = Field(30_000.0, gt=0, description="latency of a predictor timeout")

    def market(self, seed: int, n_skus: int) -> MarketConfig:
        return MarketConfig.build(seed=seed, n_skus=n_skus, launch_days=self.launch_days,
                                  start_date=self.start_date)

    @property
    def steady_window(self) -> tuple[dt.date, dt.date]:
        """Days when every launch cohort of the last ``horizon`` days is on the market."""
        horizon = self.market(0, 100).horizon_days
        return (self.start_date + dt.timedelta(days=horizon - 1),
                self.start_date + dt.timedelta(days=self.launch_days - 1))

    @property
    def window_days(self) -> int:
        start, end = self.steady_window
        return (end - start).days + 1


def simulated_traffic(config: DrillConfig, seed: int, n_skus: int) -> pd.DataFrame:
    """A decisions log of one simulated market (all of its days), with category, latency and rationale."""
    log, skus, _ = logged_history(config.market(seed, n_skus))
    static = skus[[c for c in skus.columns if c in FEATURES and c not in ("brand", "brand_tier", "description")]
                  + ["sku_id"]]
    log = log.merge(static, on="sku_id", how="left", validate="many_to_one")
    frame = decisions_from_simulation(log, model_name="aigp-pricing", model_version=f"sim-{seed}",
                                      experiment="drill")
    rng = np.random.default_rng([seed, 7])
    frame["category"] = log["category"].astype(str).to_numpy()
    frame["latency_ms"] = np.round(900.0 * np.exp(0.5 * rng.standard_normal(len(frame))), 1)
    frame["rationale_tokens"] = np.rint(245.0 * np.exp(0.35 * rng.standard_normal(len(frame)))).astype(np.int64)
    return frame


# ------------------------------------------------------------------------------------------------------
# injections: frame in, frame out (a copy); each gets a seeded generator
# ------------------------------------------------------------------------------------------------------
def _logit(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)


def inject_ctr_shift(frame: pd.DataFrame, rng: np.random.Generator, logit_shift: float = 0.3) -> pd.DataFrame:
    out = frame.copy()
    for column in ("ctr_1d", "ctr_3d", "ctr_7d"):
        ctr = out[column].to_numpy(np.float64)
        moved = 1.0 / (1.0 + np.exp(-(_logit(np.clip(ctr, 0.0, 1.0 - 1e-9)) + logit_shift)))
        out[column] = np.where(ctr > 0, moved, ctr)
    return out


def inject_category_mix(frame: pd.DataFrame, rng: np.random.Generator, keep_others: float = 0.3) -> pd.DataFrame:
    """Keep every SKU of two categories and ``keep_others`` of the SKUs of the rest."""
    counts = frame["category"].value_counts()
    favoured = rng.choice(counts.index.to_numpy(), size=2, replace=False)
    skus = frame.drop_duplicates("sku_id")[["sku_id", "category"]]
    keep = skus["category"].isin(favoured).to_numpy() | (rng.random(len(skus)) < keep_others)
    return frame[frame["sku_id"].isin(skus["sku_id"].to_numpy()[keep])].reset_index(drop=True)


def inject_over_discounting(frame: pd.DataFrame, rng: np.random.Generator, bias: float = 0.03) -> pd.DataFrame:
    out = frame.copy()
    model = ~out["fallback"].to_numpy(bool)
    prev = out["prev_discount"].to_numpy(np.float64)
    low, _ = feasible_change_bounds(prev)
    change = out["discount_change"].to_numpy(np.float64)
    deeper = np.where(model, np.maximum(change - bias, low), change)
    out["proposed_change"] = np.where(model, deeper, out["proposed_change"])
    out["discount_change"] = deeper
    out["new_discount"] = prev + deeper
    return out


def _hold(out: pd.DataFrame, rows: np.ndarray, reason: FallbackReason, parse_ok: bool) -> None:
    out.loc[rows, "fallback"] = True
    out.loc[rows, "fallback_reason"] = reason.value
    out.loc[rows, "parse_ok"] = parse_ok
    out.loc[rows, "projected"] = False
    out.loc[rows, "proposed_change"] = np.nan
    out.loc[rows, "discount_change"] = 0.0
    out.loc[rows, "new_discount"] = out.loc[rows, "prev_discount"]


def inject_fallback_rise(frame: pd.DataFrame, rng: np.random.Generator, final_rate: float = 0.12,
                         timeout_ms: float = 30_000.0) -> pd.DataFrame:
    """Timeouts rising linearly from none on the first day to ``final_rate`` on the last."""
    out = frame.copy()
    day = pd.to_datetime(out["date"]).dt.normalize()
    progress = ((day - day.min()).dt.days / max((day.max() - day.min()).days, 1)).to_numpy()
    rows = np.flatnonzero(rng.random(len(out)) < final_rate * progress)
    _hold(out, out.index[rows], FallbackReason.PREDICTOR_TIMEOUT, parse_ok=False)
    out.loc[out.index[rows], "latency_ms"] = timeout_ms
    out.loc[out.index[rows], "rationale_tokens"] = 0
    return out


def inject_parse_failures(frame: pd.DataFrame, rng: np.random.Generator, rate: float = 0.05) -> pd.DataFrame:
    out = frame.copy()
    rows = out.index[rng.random(len(out)) < rate]
    _hold(out, rows, FallbackReason.UNPARSABLE_OUTPUT, parse_ok=False)
    return out


def inject_erratic(frame: pd.DataFrame, rng: np.random.Generator, share: float = 0.08,
                   size: float = 0.18) -> pd.DataFrame:
    """Big jumps of ``size`` on ``share`` of the model's decisions, up or down at random where both fit."""
    out = frame.copy()
    prev = out["prev_discount"].to_numpy(np.float64)
    low, high = feasible_change_bounds(prev)
    pick = (rng.random(len(out)) < share) & ~out["fallback"].to_numpy(bool)
    up = rng.random(len(out)) < 0.5
    up = np.where(high >= size, np.where(-low >= size, up, True), False)
    jump = np.where(up, size, -size)
    change = np.where(pick, jump, out["discount_change"].to_numpy(np.float64))
    out["proposed_change"] = np.where(pick, jump, out["proposed_change"])
    out["discount_change"] = change
    out["new_discount"] = prev + change
    return out


def inject_slow_predictor(frame: pd.DataFrame, rng: np.random.Generator, factor: float = 200.0) -> pd.DataFrame:
    out = frame.copy()
    out["latency_ms"] = out["latency_ms"] * factor
    return out


def inject_short_rationales(frame: pd.DataFrame, rng: np.random.Generator, factor: float = 0.3) -> pd.DataFrame:
    out = frame.copy()
    out["rationale_tokens"] = np.rint(out["rationale_tokens"] * factor).astype(np.int64)
    return out


def inject_outage(frame: pd.DataFrame, rng: np.random.Generator, keep: float = 0.3) -> pd.DataFrame:
    """Only the first ``keep`` of the last day's decisions were made."""
    last = pd.to_datetime(frame["date"]).dt.date.to_numpy() == pd.to_datetime(frame["date"]).dt.date.max()
    rows = np.flatnonzero(last)
    drop = rows[int(len(rows) * keep):]
    return frame.drop(frame.index[drop]).reset_index(drop=True)


@dataclass(frozen=True)
class Drill:
    name: str
    inject: Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame] | None
    expected: frozenset[str]  # the alerts that must fire (and no other)
    description: str


DRILLS: dict[str, Drill] = {d.name: d for d in (
    Drill("none", None, frozenset(), "a window from the reference distribution: nothing may fire"),
    Drill("ctr_shift", inject_ctr_shift, frozenset({"feature_drift"}), "click-through rates shifted (+0.3 logit)"),
    Drill("category_mix", inject_category_mix, frozenset({"category_mix_shift"}),
          "two categories dominate the priced SKUs"),
    Drill("over_discounting", inject_over_discounting, frozenset({"over_discounting"}),
          "the model cuts 3 points deeper every day"),
    Drill("fallback_rise", inject_fallback_rise, frozenset({"fallback_rate"}),
          "predictor timeouts rise to 12% of decisions"),
    Drill("parse_failures", inject_parse_failures, frozenset({"parse_failures", "fallback_rate"}),
          "5% of the replies cannot be parsed (and fall back)"),
    Drill("erratic", inject_erratic, frozenset({"price_volatility"}), "8% of decisions jump by 0.18"),
    Drill("slow_predictor", inject_slow_predictor, frozenset({"serving_latency"}), "decisions take 200x longer"),
    Drill("short_rationales", inject_short_rationales, frozenset({"rationale_length"}),
          "rationales shrink to 30% of their length"),
    Drill("outage", inject_outage, frozenset({"decision_volume"}), "serving stopped at 30% of the last day"),
)}


def drill_traffic(name: str, config: DrillConfig, seed: int, base: pd.DataFrame | None = None) -> pd.DataFrame:
    """The current traffic of drill ``name``: an independent market (``seed``, not the reference's) with the
    injection. ``base`` is that market's traffic when already simulated (drills can share it)."""
    if name not in DRILLS:
        raise ValueError(f"unknown drill {name!r}; expected one of {list(DRILLS)}")
    if seed == config.reference_seed:
        raise ValueError(f"seed={seed} is the reference market's seed; a current window needs another one")
    frame = base if base is not None else simulated_traffic(config, seed, config.current_skus)
    drill = DRILLS[name]
    if drill.inject is None:
        return frame
    start, end = config.steady_window
    dates = pd.to_datetime(frame["date"]).dt.date
    inside = ((dates >= start) & (dates <= end)).to_numpy()
    # Inject into the monitored window only; days before it keep their history (the volume baseline).
    changed = drill.inject(frame.loc[inside].reset_index(drop=True), np.random.default_rng([seed, 11]))
    return pd.concat([frame.loc[~inside], changed], ignore_index=True)
