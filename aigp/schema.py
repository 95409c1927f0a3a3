"""The one feature schema: every observable a pricing decision may use, named, typed and described once.

The simulator writes these columns, the Feast feature views are generated from them, the prompt
builder renders them and the value model (LTVE) reads the numeric ones. A row of the decision log is
the state *at decision time* for day ``t`` (built only from days before ``t``), the action taken for day
``t`` and, in separate ``out_*`` columns, day ``t``'s outcome. Outcomes are never features: they become
known a day later and reach the next row as ``*_1d`` values.

Identity-blind by construction: there is no user-level entity or feature anywhere (paper §3.1).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum


class Group(StrEnum):
    """Which feature view a feature belongs to."""

    SKU = "sku_attributes"  # static per SKU (and its category's goals and benchmarks)
    PERFORMANCE = "daily_performance"  # yesterday's outcomes and rolling aggregates
    PRICING = "pricing_history"  # discount in effect and the last actions
    COMPETITOR = "competitor_stats"
    CALENDAR = "calendar"
    TEXT = "text_context"  # untrusted user / merchant text


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str  # one of "int64", "float32", "string", "bool"
    group: Group
    unit: str
    description: str

    @property
    def is_numeric(self) -> bool:
        return self.dtype in ("int64", "float32", "bool")


def _f(name: str, dtype: str, group: Group, unit: str, description: str) -> Feature:
    return Feature(name, dtype, group, unit, description)


S, P, H, C, K, T = Group.SKU, Group.PERFORMANCE, Group.PRICING, Group.COMPETITOR, Group.CALENDAR, Group.TEXT

ROLLING_WINDOWS = (3, 7)
ROLLED_COUNTS = ("exposure", "clicks", "orders", "gmv", "spend")
LAST_ACTIONS = 3  # k in "the last k actions"

_FEATURES: list[Feature] = [
    # --- static SKU attributes and the category's goals / benchmarks --------------------------------
    _f("category", "string", S, "", "product category"),
    _f("brand", "string", S, "", "brand name"),
    _f("brand_tier", "string", S, "", "brand positioning: value, mainstream or premium"),
    _f("list_price", "float32", S, "CNY", "list (original) price L; the effective price is L * discount"),
    _f("unit_cost", "float32", S, "CNY", "merchant's unit cost"),
    _f("launch_inventory", "int64", S, "units", "stock at launch"),
    _f("gmv_tier1", "float32", S, "CNY", "14-day cumulative GMV milestone, tier 1 (the MAR tier)"),
    _f("gmv_tier2", "float32", S, "CNY", "14-day cumulative GMV milestone, tier 2"),
    _f("gmv_tier3", "float32", S, "CNY", "14-day cumulative GMV milestone, tier 3"),
    _f("roi_target", "float32", S, "ratio", "category ROI target (GMV / marketing spend)"),
    _f("category_ctr", "float32", S, "ratio", "category benchmark click-through rate"),
    _f("category_cvr", "float32", S, "ratio", "category benchmark conversion rate"),
    # --- pricing history ------------------------------------------------------------------------------
    _f("days_since_launch", "int64", H, "days", "age of the SKU on the day being priced (0 = launch day)"),
    _f("prev_discount", "float32", H, "ratio", "discount d_{t-1} in effect yesterday (1.0 = list price)"),
    *[
        _f(f"last_action_{k}", "float32", H, "ratio", f"discount change applied {k} day(s) before the day priced")
        for k in range(1, LAST_ACTIONS + 1)
    ],
    # --- yesterday and rolling performance -----------------------------------------------------------
    *[_f(f"{m}_1d", "float32", P, u, f"{m} yesterday") for m, u in
      (("exposure", "impressions"), ("clicks", "clicks"), ("orders", "units"), ("gmv", "CNY"), ("spend", "CNY"))],
    _f("ctr_1d", "float32", P, "ratio", "click-through rate yesterday"),
    _f("cvr_1d", "float32", P, "ratio", "conversion rate (orders / clicks) yesterday"),
    _f("roi_1d", "float32", P, "ratio", "GMV / spend yesterday"),
    *[
        _f(f"{m}_{w}d", "float32", P, "", f"{m} summed over the last {w} days")
        for w in ROLLING_WINDOWS for m in ROLLED_COUNTS
    ],
    *[_f(f"{r}_{w}d", "float32", P, "ratio", f"{r} over the last {w} days") for w in ROLLING_WINDOWS for r in
      ("ctr", "cvr", "roi")],
    _f("cum_gmv", "float32", P, "CNY", "GMV since launch"),
    _f("cum_spend", "float32", P, "CNY", "marketing spend (discount subsidy + traffic) since launch"),
    _f("cum_orders", "float32", P, "units", "orders since launch"),
    _f("cum_roi", "float32", P, "ratio", "GMV / spend since launch (integrated ROI)"),
    _f("milestone_progress", "float32", P, "ratio", "cum_gmv / gmv_tier1"),
    _f("inventory", "int64", P, "units", "stock left"),
    _f("review_count", "int64", P, "reviews", "reviews received since launch"),
    # --- competitor statistics ----------------------------------------------------------------------
    _f("competitor_price_index", "float32", C, "ratio", "category price index of comparable products (1.0 = usual)"),
    _f("competitor_median_price", "float32", C, "CNY", "median effective price of comparable products yesterday"),
    _f("price_position", "float32", C, "ratio", "yesterday's effective price / competitor_median_price"),
    # --- calendar (of the day being priced; known in advance) ----------------------------------------
    _f("day_of_week", "int64", K, "0=Mon", "day of week of the day priced"),
    _f("is_promotion", "bool", K, "", "a platform promotion runs on the day priced"),
    _f("in_season", "bool", K, "", "the day priced is in one of the category's seasonal windows"),
    # --- text context: untrusted, delimited and sanitised before any prompt ---------------------------
    _f("description", "string", T, "", "merchant's product description"),
    _f("review_digest", "string", T, "", "the most recent customer reviews, newest first"),
]

FEATURES: dict[str, Feature] = {f.name: f for f in _FEATURES}
if len(FEATURES) != len(_FEATURES):  # pragma: no cover - guards edits to the list above
    raise RuntimeError("duplicate feature name in aigp.schema")

ENTITY_KEY = "sku_id"
EVENT_TIMESTAMP = "event_timestamp"  # decision time: 00:00 UTC of the day priced (µs precision)
DATE = "date"  # the day priced

# Columns of the decision log that are not features.
ACTION_COLUMNS = ("discount", "discount_change", "projected", "behaviour_policy")
OUTCOME_COLUMNS = (
    "out_exposure", "out_clicks", "out_orders", "out_gmv", "out_spend", "out_inventory_end", "out_new_reviews",
)


def features_in(group: Group) -> list[Feature]:
    return [f for f in _FEATURES if f.group == group]


def numeric_state_features() -> list[str]:
    """The structured state the value model and the numeric baselines read (no text, no strings)."""
    return [f.name for f in _FEATURES if f.is_numeric]


STATIC_FEATURES = [f.name for f in features_in(Group.SKU)]
DYNAMIC_FEATURES = [f.name for f in _FEATURES if f.group not in (Group.SKU, Group.TEXT)]
TEXT_FEATURES = [f.name for f in features_in(Group.TEXT)]

# Business-critical fields a prompt may never drop, whatever its token budget.
DECISION_CRITICAL = (
    "category", "list_price", "prev_discount", "days_since_launch", "cum_gmv", "cum_roi",
    "milestone_progress", "gmv_tier1", "roi_target", "inventory",
)

# Names that must never appear: user-level data would break the identity-blind guarantee.
FORBIDDEN_SUBSTRINGS = ("user", "customer_id", "buyer", "member", "device", "ip_address", "profile")


def to_date(value: object, name: str = "date") -> dt.date:
    """A day from a ``date``, a ``datetime`` / pandas ``Timestamp``, or text starting ``YYYY-MM-DD``; the one date
    coercion of the core. Raises ``ValueError`` naming ``name`` and the value otherwise."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if hasattr(value, "date") and callable(value.date):  # numpy/pandas datetime-likes
        return to_date(value.date(), name)
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a date (expected YYYY-MM-DD)") from None
