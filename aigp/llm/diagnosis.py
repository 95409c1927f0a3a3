"""The product diagnosis report: derived signals from a SKU's structured features, as numbers and as text.

Every signal is a plain function of the feature row (no hidden state) and is rounded to the precision the
report prints, so the report, a model that cites it and the judge that checks the citation all see the same
number. The same :func:`compute_signals` serves the prompt's diagnosis section, the built-in teacher (which
computes the signals itself when the diagnosis is ablated away) and the judge's data-accuracy check.

Signals (name = meaning):

- ``days_left``: days of the 14-day milestone window still to price, this one included;
- ``gmv_run_rate``: GMV per day over the last (up to) 3 days; ``projected_gmv_14d``: cum_gmv plus the run
  rate over the days left; ``milestone_pace``: projected / gmv_tier1; ``gmv_needed_per_day``;
- ``ctr_vs_category`` / ``cvr_vs_category``: 3-day CTR / CVR over the category benchmark;
  ``ctr_trend`` / ``cvr_trend``: yesterday over the 3-day value (below 1 = weakening);
- ``daily_orders`` and ``stock_cover_days``: days of stock left at the recent order rate (capped at 99.9);
- ``traffic_share``: traffic cost per order as a share of the list price (3 days; spend minus the discount
  subsidy at yesterday's discount);
- ``roi_needed_rest``: the ROI the remaining days must run at for the 14-day ROI to end exactly on target
  at the current run rate (0 when the target is already banked, ``None`` when out of reach);
- ``effective_price`` = list_price x prev_discount.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from aigp.market.text import read_review_sentiment

HORIZON = 14  # the milestone window (paper: 14 days after launch)

# Display precision of each signal (decimals); values are rounded to it when computed.
SIGNAL_DECIMALS: dict[str, int] = {
    "days_left": 0, "gmv_run_rate": 1, "projected_gmv_14d": 1, "milestone_pace": 2, "gmv_needed_per_day": 1,
    "ctr_vs_category": 2, "cvr_vs_category": 2, "ctr_trend": 2, "cvr_trend": 2, "daily_orders": 1,
    "stock_cover_days": 1, "traffic_share": 3, "roi_needed_rest": 2, "effective_price": 2,
}
PACE_BEHIND, PACE_AHEAD = 0.9, 1.1
POSITIVE_REVIEWS, NEGATIVE_REVIEWS = 1.0, -0.5  # mean lexicon score of the reviews shown
MIN_REVIEWS = 2  # fewer reviews say nothing reliable about quality
MAX_COVER_DAYS = 99.9  # stock cover is capped: beyond the horizon the exact number says nothing
WEAK_RATIO, STRONG_RATIO = 0.8, 1.2


@dataclass(frozen=True)
class Signals:
    days_left: int
    gmv_run_rate: float | None
    projected_gmv_14d: float | None
    milestone_pace: float | None
    gmv_needed_per_day: float | None
    ctr_vs_category: float | None
    cvr_vs_category: float | None
    ctr_trend: float | None
    cvr_trend: float | None
    daily_orders: float | None
    stock_cover_days: float | None
    traffic_share: float | None
    roi_needed_rest: float | None
    effective_price: float | None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def _num(fields: Mapping[str, object], name: str) -> float | None:
    value = fields.get(name)
    if value is None or isinstance(value, bool | str):
        return float(value) if isinstance(value, bool) else None
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def _round(name: str, value: float | None) -> float | None:
    return None if value is None else round(value, SIGNAL_DECIMALS[name])


def roi_for_rest(cum_gmv: float, cum_spend: float, future_gmv: float, goal: float) -> float | None:
    """The ROI the remaining days must run at for the window's ROI to end exactly at ``goal``.

    0 when the goal is banked whatever is spent (no future GMV expected and the ROI already meets it);
    ``None`` when it is out of reach: even with no further spend the window would end below the goal.
    """
    spend_allowed = (cum_gmv + future_gmv) / goal - cum_spend
    if future_gmv <= 0:
        return 0.0 if spend_allowed >= 0 else None
    if spend_allowed <= 0:
        return None
    return future_gmv / spend_allowed


def compute_signals(fields: Mapping[str, object]) -> Signals:
    """Derived signals of one feature row (a mapping of schema names to values; missing values allowed)."""
    n = lambda name: _num(fields, name)  # noqa: E731 - a local shorthand
    age = n("days_since_launch")
    days_left = max(HORIZON - int(age), 1) if age is not None else HORIZON
    history_days = min(max(age, 1.0), 3.0) if age is not None else None
    has_history = age is not None and age > 0

    run_rate = _ratio(n("gmv_3d"), history_days) if has_history else None
    cum_gmv, tier1 = n("cum_gmv"), n("gmv_tier1")
    run_rate = _round("gmv_run_rate", run_rate)
    projected = cum_gmv + run_rate * days_left if (run_rate is not None and cum_gmv is not None) else None
    projected = _round("projected_gmv_14d", projected)
    needed = max(tier1 - cum_gmv, 0.0) / days_left if (tier1 is not None and cum_gmv is not None) else None

    daily_orders = _ratio(n("orders_3d"), history_days) if has_history else None
    daily_orders = _round("daily_orders", daily_orders)
    inventory = n("inventory")
    cover = _ratio(inventory, daily_orders) if daily_orders else None
    cover = min(cover, MAX_COVER_DAYS) if cover is not None else None

    list_price, prev = n("list_price"), n("prev_discount")
    traffic_share = None
    orders_3d, spend_3d = n("orders_3d"), n("spend_3d")
    if has_history and orders_3d and spend_3d is not None and list_price and prev is not None:
        traffic = max(spend_3d - orders_3d * list_price * (1.0 - prev), 0.0)
        traffic_share = traffic / (orders_3d * list_price)

    roi_needed = None
    cum_spend, target = n("cum_spend"), n("roi_target")
    if has_history and run_rate is not None and cum_gmv is not None and cum_spend is not None and target:
        roi_needed = roi_for_rest(cum_gmv, cum_spend, run_rate * days_left, target)

    return Signals(
        days_left=days_left,
        gmv_run_rate=run_rate,
        projected_gmv_14d=projected,
        milestone_pace=_round("milestone_pace", _ratio(projected, tier1)),
        gmv_needed_per_day=_round("gmv_needed_per_day", needed),
        ctr_vs_category=_round("ctr_vs_category", _ratio(n("ctr_3d"), n("category_ctr")) if has_history else None),
        cvr_vs_category=_round("cvr_vs_category", _ratio(n("cvr_3d"), n("category_cvr")) if has_history else None),
        ctr_trend=_round("ctr_trend", _ratio(n("ctr_1d"), n("ctr_3d")) if has_history else None),
        cvr_trend=_round("cvr_trend", _ratio(n("cvr_1d"), n("cvr_3d")) if has_history else None),
        daily_orders=daily_orders,
        stock_cover_days=_round("stock_cover_days", cover),
        traffic_share=_round("traffic_share", traffic_share),
        roi_needed_rest=_round("roi_needed_rest", roi_needed),
        effective_price=_round("effective_price", list_price * prev if list_price and prev is not None else None),
    )


def review_score(lines: Sequence[str]) -> float | None:
    """Mean lexicon score of the review lines shown (``aigp.market.text.read_review_sentiment``)."""
    if not lines:
        return None
    return round(sum(read_review_sentiment(line) for line in lines) / len(lines), 2)


def review_label(score: float | None, shown: int) -> str:
    if score is None or shown < MIN_REVIEWS:
        return "too few to judge"
    return "positive" if score >= POSITIVE_REVIEWS else ("negative" if score <= NEGATIVE_REVIEWS else "mixed")


def fmt(value: float | None, decimals: int) -> str:
    """How the report prints a number (``n/a`` for a missing one)."""
    if value is None:
        return "n/a"
    return f"{value:.{decimals}f}"


def _s(signals: Signals, name: str) -> str:
    return f"{name} = {fmt(getattr(signals, name), SIGNAL_DECIMALS[name])}"


def pace_word(pace: float | None) -> str:
    if pace is None:
        return "no pace yet"
    return "behind pace" if pace < PACE_BEHIND else ("ahead of pace" if pace > PACE_AHEAD else "on pace")


def ratio_word(ratio: float | None) -> str:
    if ratio is None:
        return "no data yet"
    return "weak" if ratio < WEAK_RATIO else ("strong" if ratio > STRONG_RATIO else "normal")


def diagnosis_lines(fields: Mapping[str, object]) -> list[str]:
    """The diagnosis report, one line per factor: the derived signals as ``name = value`` and what they mean.

    Fields the prompt already shows are not repeated here (tokens are the budget of a small model).
    """
    s = compute_signals(fields)
    age = _num(fields, "days_since_launch")
    launch = age is None or age <= 0
    lines = []
    if launch:
        lines.append(f"Launch day: no sales history; {_s(s, 'days_left')}, {_s(s, 'gmv_needed_per_day')}.")
    else:
        lines.append(f"Milestone: {_s(s, 'gmv_run_rate')} over {_s(s, 'days_left')} days gives "
                     f"{_s(s, 'projected_gmv_14d')}, {_s(s, 'milestone_pace')}: {pace_word(s.milestone_pace)}.")
    cum_roi, target = _num(fields, "cum_roi"), _num(fields, "roi_target")
    if launch:
        lines.append("ROI: no spend yet.")
    else:
        rest = ("out of reach at the current run rate" if s.roi_needed_rest is None
                else f"the remaining days need {_s(s, 'roi_needed_rest')}")
        state = ("unknown against target" if cum_roi is None or target is None else
                 "above target" if cum_roi >= target else "below target")
        lines.append(f"ROI: {state}; {rest}.")
        lines.append(f"Traffic: {_s(s, 'ctr_vs_category')} ({ratio_word(s.ctr_vs_category)}), {_s(s, 'ctr_trend')}; "
                     f"conversion: {_s(s, 'cvr_vs_category')} ({ratio_word(s.cvr_vs_category)}), "
                     f"{_s(s, 'cvr_trend')}.")
        if s.stock_cover_days is None:
            lines.append("Stock: no recent orders.")
        else:
            enough = "enough" if s.stock_cover_days >= s.days_left else "sells out before day 14"
            lines.append(f"Stock: {_s(s, 'stock_cover_days')} at {_s(s, 'daily_orders')}: {enough}.")
        lines.append(f"Cost: {_s(s, 'traffic_share')} of list price per order goes to traffic.")
    pos = _num(fields, "price_position")
    where = ("no comparison with" if pos is None else
             "above" if pos > 1.02 else "below" if pos < 0.98 else "in line with")
    lines.append(f"Price: {_s(s, 'effective_price')} CNY, {where} comparable products.")
    return lines


COMPACT_SIGNALS = ("days_left", "gmv_run_rate", "milestone_pace", "roi_needed_rest", "traffic_share",
                   "ctr_vs_category", "stock_cover_days")


def compact_diagnosis_lines(fields: Mapping[str, object]) -> list[str]:
    """The diagnosis of the compact [ACT_ONLY] prompt: the signals the decision uses as ``name = value`` in a
    fixed order (``n/a`` when not computable, e.g. on launch day) and the one-word readings, without prose."""
    s = compute_signals(fields)
    cum_roi, target = _num(fields, "cum_roi"), _num(fields, "roi_target")
    roi = ("unknown" if cum_roi is None or target is None else "above" if cum_roi >= target else "below")
    stock = ("no orders" if s.stock_cover_days is None else
             "enough" if s.stock_cover_days >= s.days_left else "sells out")
    return [" | ".join(_s(s, name) for name in COMPACT_SIGNALS),
            f"pace: {pace_word(s.milestone_pace)} | roi: {roi} target | ctr: {ratio_word(s.ctr_vs_category)} | "
            f"stock: {stock}"]
