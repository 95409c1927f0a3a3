"""The static side of the market: SKUs (observable attributes and hidden latents) and the calendar."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import pandas as pd

from aigp.market import noise
from aigp.market.categories import (
    BRAND_TIERS,
    DEFAULT_CATEGORIES,
    PROMOTION_DAYS,
    Category,
)
from aigp.market.config import BEHAVIOUR_POLICIES, MarketConfig
from aigp.market.text import N_NOUN_SLOTS, describe


class Stream(IntEnum):
    """Independent random streams; a draw is a function of (seed, key, day, stream)."""

    CATEGORY = 1
    BRAND = 2
    PRICE = 3
    COST = 4
    LAUNCH_DAY = 5
    LAUNCH_DISCOUNT = 6
    INVENTORY = 7
    QUALITY = 8
    NOUN = 9
    DESCRIPTION_CUE = 10
    USE = 11
    BEHAVIOUR = 12
    BRAND_STRENGTH = 13
    LISTING_APPEAL = 15
    COMPETITOR = 14
    EXPOSURE = 20
    CTR = 21
    CVR = 22
    CLICKS = 23
    ORDERS = 24
    DEMAND_SHOCK = 25
    REVIEWS = 26
    REVIEW_VARIANT = 27
    REVIEW_ASPECT = 28
    POLICY = 40  # policies with randomness use POLICY + their own offset
    REVIEW_SENTIMENT = 1000  # + index of the review within the day


# Every market shares one competitor history: it is generated from this epoch, so any window of dates
# sees the same exogenous index whatever the simulation's own start date.
COMPETITOR_EPOCH = dt.date(2025, 1, 1)
_SYLLABLES = ("lu", "ma", "ki", "vo", "ze", "ra", "no", "ta", "bi", "so", "fen", "mei", "xi", "ya", "do", "ru")


def resolve_categories(config: MarketConfig) -> tuple[Category, ...]:
    if config.categories is None:
        return DEFAULT_CATEGORIES
    by_name = {c.name: c for c in DEFAULT_CATEGORIES}
    return tuple(by_name[name] for name in config.categories)


@dataclass(frozen=True)
class Brands:
    """Brands of every category: names, strength (hidden) and positioning tier (observable)."""

    names: np.ndarray  # (n_categories, per_category) object
    strength: np.ndarray  # (n_categories, per_category)
    tier: np.ndarray  # (n_categories, per_category) index into BRAND_TIERS

    @classmethod
    def generate(cls, seed: int, n_categories: int, per_category: int) -> Brands:
        keys = np.arange(n_categories * per_category, dtype=np.int64)
        strength = 0.5 * noise.normal(seed, keys, 0, Stream.BRAND_STRENGTH).reshape(n_categories, per_category)
        tier = np.digitize(strength, [-0.3, 0.3])
        u1 = noise.uniform(seed, keys, 1, Stream.BRAND)
        u2 = noise.uniform(seed, keys, 2, Stream.BRAND)
        n_syl = len(_SYLLABLES)
        names = np.array(
            [(_SYLLABLES[int(a * n_syl)] + _SYLLABLES[int(b * n_syl)]).capitalize()
             for a, b in zip(u1, u2, strict=True)],
            dtype=object,
        ).reshape(n_categories, per_category)
        # Two brands of a category must not share a name: suffix repeats with a letter.
        for c in range(n_categories):
            seen: dict[str, int] = {}
            for j in range(per_category):
                base = names[c, j]
                count = seen.get(base, 0)
                seen[base] = count + 1
                if count:
                    names[c, j] = f"{base} {chr(ord('A') + count)}"
        return cls(names=names, strength=strength, tier=tier)


@dataclass(frozen=True)
class SkuTable:
    """All SKUs of a market. Observable attributes and hidden latents live side by side here; only
    :meth:`observable_frame` leaves the simulator as data, :meth:`truth_frame` is for the oracle and tests."""

    sku_id: np.ndarray
    category: np.ndarray  # index into ``categories``
    brand: np.ndarray  # index within the category
    launch_day: np.ndarray  # calendar day index of launch
    list_price: np.ndarray
    unit_cost: np.ndarray
    launch_discount: np.ndarray
    launch_inventory: np.ndarray
    noun: np.ndarray
    description_detail: np.ndarray
    use: np.ndarray
    behaviour: np.ndarray  # index into BEHAVIOUR_POLICIES (the logging policy)
    quality: np.ndarray  # latent, standardised
    brand_strength: np.ndarray  # latent
    listing_appeal: np.ndarray  # latent, in logit units
    categories: tuple[Category, ...]
    brands: Brands

    def __len__(self) -> int:
        return len(self.sku_id)

    def take(self, index: np.ndarray) -> SkuTable:
        index = np.asarray(index)
        arrays = {k: getattr(self, k)[index] for k in _ARRAY_FIELDS}
        return SkuTable(**arrays, categories=self.categories, brands=self.brands)

    @property
    def category_names(self) -> np.ndarray:
        return np.array([c.name for c in self.categories], dtype=object)[self.category]

    @property
    def brand_names(self) -> np.ndarray:
        return self.brands.names[self.category, self.brand]

    @property
    def brand_tiers(self) -> np.ndarray:
        return np.array(BRAND_TIERS, dtype=object)[self.brands.tier[self.category, self.brand]]

    def category_values(self, attribute: str) -> np.ndarray:
        """A per-category attribute broadcast to SKUs (e.g. ``roi_target``)."""
        values = np.array([getattr(c, attribute) for c in self.categories], dtype=np.float64)
        return values[self.category]

    def gmv_tiers(self) -> np.ndarray:
        tiers = np.array([c.gmv_tiers for c in self.categories], dtype=np.float64)
        return tiers[self.category]  # (n, 3)

    def descriptions(self) -> list[str]:
        names = self.brand_names
        return [
            describe(self.categories[c], names[i], int(self.noun[i]), int(self.description_detail[i]), int(self.use[i]))
            for i, c in enumerate(self.category)
        ]

    def static_columns(self) -> dict[str, Any]:
        """The SKU's attributes as the logs and the prompt name them (schema dtypes); the one mapping the
        simulator's per-day static columns and :meth:`observable_frame` share."""
        tiers = self.gmv_tiers()
        return {
            "sku_id": self.sku_id,
            "category": self.category_names,
            "brand": self.brand_names,
            "brand_tier": self.brand_tiers,
            "list_price": self.list_price.astype(np.float32),
            "unit_cost": self.unit_cost.astype(np.float32),
            "launch_inventory": self.launch_inventory.astype(np.int64),
            "gmv_tier1": tiers[:, 0].astype(np.float32),
            "gmv_tier2": tiers[:, 1].astype(np.float32),
            "gmv_tier3": tiers[:, 2].astype(np.float32),
            "roi_target": self.category_values("roi_target").astype(np.float32),
            "category_ctr": self.category_values("ctr").astype(np.float32),
            "category_cvr": self.category_values("cvr").astype(np.float32),
        }

    def observable_frame(self, calendar: Calendar) -> pd.DataFrame:
        return pd.DataFrame(
            {
                **self.static_columns(),
                "launch_date": pd.to_datetime(calendar.dates(self.launch_day)).astype("datetime64[us]"),
                "launch_discount": self.launch_discount.astype(np.float32),
                "description": self.descriptions(),
            }
        )

    def truth_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "sku_id": self.sku_id,
                "quality": self.quality,
                "brand_strength": self.brand_strength,
                "listing_appeal": self.listing_appeal,
                "behaviour_policy": np.array(BEHAVIOUR_POLICIES, dtype=object)[self.behaviour],
            }
        )


_ARRAY_FIELDS = (
    "sku_id", "category", "brand", "launch_day", "list_price", "unit_cost", "launch_discount", "launch_inventory",
    "noun", "description_detail", "use", "behaviour", "quality", "brand_strength", "listing_appeal",
)


def generate_skus(config: MarketConfig) -> SkuTable:
    """Draw the SKUs of a market. A SKU's attributes depend on its id and the seed only."""
    cats = resolve_categories(config)
    seed = config.seed
    ids = np.arange(config.sku_id_offset, config.sku_id_offset + config.n_skus, dtype=np.int64)
    brands = Brands.generate(seed, len(cats), config.brands_per_category)
    dyn = config.dynamics

    def u(stream: Stream) -> np.ndarray:
        return noise.uniform(seed, ids, 0, stream)

    def z(stream: Stream) -> np.ndarray:
        return noise.normal(seed, ids, 0, stream)

    category = np.minimum((u(Stream.CATEGORY) * len(cats)).astype(np.int64), len(cats) - 1)
    brand = np.minimum((u(Stream.BRAND) * config.brands_per_category).astype(np.int64), config.brands_per_category - 1)
    strength = brands.strength[category, brand]
    price_level = np.array([c.price_level for c in cats])[category]
    spread = np.array([c.price_spread for c in cats])[category]
    list_price = np.round(price_level * np.exp(spread * z(Stream.PRICE) + dyn.brand_price_premium * strength), 1)
    list_price = np.maximum(list_price, 1.0)
    cost_ratio = np.array([c.cost_ratio for c in cats])[category]
    unit_cost = np.round(list_price * cost_ratio * (0.85 + 0.3 * u(Stream.COST)), 2)
    launch_day = np.minimum((u(Stream.LAUNCH_DAY) * config.launch_days).astype(np.int64), config.launch_days - 1)
    discounts = np.asarray(config.launch_discounts)
    launch_discount = discounts[np.minimum((u(Stream.LAUNCH_DISCOUNT) * len(discounts)).astype(np.int64),
                                           len(discounts) - 1)]
    base_orders = np.array([c.base_orders for c in cats])[category]
    inventory_days = np.array([c.inventory_days for c in cats])[category]
    launch_inventory = np.maximum(
        5, np.round(base_orders * inventory_days * np.exp(0.6 * z(Stream.INVENTORY)))
    ).astype(np.int64)
    quality = z(Stream.QUALITY)
    listing_appeal = dyn.listing_appeal_sd * z(Stream.LISTING_APPEAL)
    # Merchants write upbeat copy whatever the product; specific, verifiable claims are a weak quality cue.
    cue = 0.5 * quality + 0.9 * z(Stream.DESCRIPTION_CUE)
    description_detail = np.digitize(cue, [-0.5, 0.5])
    noun = (u(Stream.NOUN) * N_NOUN_SLOTS).astype(np.int64)
    use = (u(Stream.USE) * 16).astype(np.int64)
    shares = np.array([config.behaviour_mix.get(p, 0.0) for p in BEHAVIOUR_POLICIES])
    behaviour = np.minimum(np.searchsorted(np.cumsum(shares), u(Stream.BEHAVIOUR), side="right"),
                           len(BEHAVIOUR_POLICIES) - 1)
    return SkuTable(
        sku_id=ids, category=category, brand=brand, launch_day=launch_day, list_price=list_price,
        unit_cost=unit_cost, launch_discount=launch_discount, launch_inventory=launch_inventory, noun=noun,
        description_detail=description_detail, use=use, behaviour=behaviour, quality=quality,
        brand_strength=strength, listing_appeal=listing_appeal, categories=cats, brands=brands,
    )


@dataclass(frozen=True)
class Calendar:
    """Per-day market context. Arrays are indexed by calendar day + 1, so day -1 (the eve of the first
    launch, whose competitor prices the first decisions read) exists."""

    start_date: dt.date
    n_days: int
    season: np.ndarray  # (n_categories, n_days + 1) strength
    promotion: np.ndarray  # (n_days + 1,) bool
    day_of_week: np.ndarray  # (n_days + 1,)
    competitor_index: np.ndarray  # (n_categories, n_days + 1)
    season_names: np.ndarray  # (n_categories, n_days + 1) object, "" outside windows

    @classmethod
    def build(cls, config: MarketConfig, categories: tuple[Category, ...] | None = None) -> Calendar:
        cats = categories or resolve_categories(config)
        n = config.n_calendar_days
        dates = [config.start_date + dt.timedelta(days=i - 1) for i in range(n + 1)]
        month_days = [d.strftime("%m-%d") for d in dates]
        promotion = np.array([md in PROMOTION_DAYS for md in month_days])
        day_of_week = np.array([d.weekday() for d in dates], dtype=np.int64)
        season = np.zeros((len(cats), n + 1))
        names = np.full((len(cats), n + 1), "", dtype=object)
        for c, cat in enumerate(cats):
            for window in cat.seasons:
                inside = np.array([_in_window(md, window.start, window.end) for md in month_days])
                stronger = inside & (window.strength > season[c])
                season[c] = np.where(stronger, window.strength, season[c])
                names[c] = np.where(stronger, window.name, names[c])
        competitor = _competitor_index(config, len(cats), dates[0], n + 1)
        return cls(config.start_date, n, season, promotion, day_of_week, competitor, names)

    def dates(self, day: np.ndarray) -> np.ndarray:
        base = np.datetime64(self.start_date, "D")
        return base + np.asarray(day).astype("timedelta64[D]")

    def at(self, category: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(season strength, promotion, day of week, competitor index) of each (category, day) pair."""
        col = np.asarray(day) + 1
        return (self.season[category, col], self.promotion[col], self.day_of_week[col],
                self.competitor_index[category, col])


def _in_window(month_day: str, start: str, end: str) -> bool:
    if start <= end:
        return start <= month_day <= end
    return month_day >= start or month_day <= end  # a window across new year


def _competitor_index(config: MarketConfig, n_categories: int, first: dt.date, n_days: int) -> np.ndarray:
    dyn = config.dynamics
    offset = (first - COMPETITOR_EPOCH).days
    if offset < 0:
        raise ValueError(f"start_date={config.start_date} is before the competitor epoch {COMPETITOR_EPOCH}")
    keys = np.arange(n_categories, dtype=np.int64)
    x = np.zeros(n_categories)
    out = np.empty((n_categories, n_days))
    for day in range(offset + n_days):
        x = dyn.competitor_persistence * x + dyn.competitor_volatility * noise.normal(
            config.seed, keys, day, Stream.COMPETITOR)
        if day >= offset:
            out[:, day - offset] = np.exp(x)
    return out
