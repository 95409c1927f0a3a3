"""Categories of the simulated marketplace: demand, price level, elasticity, seasons, goals.

Parameters are plausible for a value marketplace of new products (prices in CNY). Milestone tiers are
not free numbers: they are multiples of each category's *reference GMV*, the expected 14-day GMV of a
median SKU held at the category's usual discount with no ranking feedback (see ``reference_gmv``), so
they move with the category's demand and not with any policy's results.
"""

from __future__ import annotations

import math

from pydantic import Field, field_validator, model_validator

from aigp.config import StrictConfig

# Tier multiples of the reference GMV (tier 1 is the MAR tier).
TIER_MULTIPLES = (3.6, 5.8, 9.0)


class SeasonWindow(StrictConfig):
    """A seasonal window by month-day (inclusive); ``strength`` lifts conversion logit and traffic."""

    start: str = Field(description="MM-DD")
    end: str = Field(description="MM-DD")
    strength: float = Field(ge=0.0, le=1.5)
    name: str = ""

    @field_validator("start", "end")
    @classmethod
    def _month_day(cls, value: str) -> str:
        parts = value.split("-")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"expected MM-DD, got {value!r}")
        month, day = int(parts[0]), int(parts[1])
        if not (1 <= month <= 12 and 1 <= day <= 31):
            raise ValueError(f"expected a real month-day, got {value!r}")
        return value


class Category(StrictConfig):
    name: str
    price_level: float = Field(gt=0, description="median list price, CNY")
    price_spread: float = Field(default=0.35, ge=0, le=1.5, description="log-sd of list prices")
    base_exposure: float = Field(gt=0, description="daily impressions of a median new SKU")
    ctr_logit: float = Field(description="logit of the benchmark click-through rate")
    cvr_logit: float = Field(description="logit of the benchmark conversion rate")
    elasticity: float = Field(gt=0, description="price elasticity of conversion for a median-quality SKU")
    market_discount: float = Field(default=0.85, ge=0.5, le=1.0, description="usual discount of comparables")
    cost_ratio: float = Field(gt=0, lt=1, description="unit cost / list price")
    traffic_cost_per_1k: float = Field(ge=0, description="CNY of marketing spend per 1000 impressions")
    roi_target: float = Field(gt=0)
    inventory_days: float = Field(default=400.0, gt=0, description="median launch stock, in days of base demand")
    review_rate: float = Field(default=0.04, ge=0, le=1, description="share of orders that leave a written review")
    seasons: tuple[SeasonWindow, ...] = ()
    aspects: tuple[str, ...] = Field(min_length=2, description="what reviews talk about")
    nouns: tuple[str, ...] = Field(min_length=1, description="product nouns for descriptions")

    @property
    def ctr(self) -> float:
        return 1.0 / (1.0 + math.exp(-self.ctr_logit))

    @property
    def cvr(self) -> float:
        return 1.0 / (1.0 + math.exp(-self.cvr_logit))

    @property
    def base_orders(self) -> float:
        """Expected daily orders of a median SKU at the usual discount, before any feedback."""
        return self.base_exposure * self.ctr * self.cvr

    @property
    def reference_gmv(self) -> float:
        """Expected 14-day GMV of a median SKU at the usual discount with no ranking feedback."""
        return 14.0 * self.base_orders * self.price_level * self.market_discount

    @property
    def gmv_tiers(self) -> tuple[float, float, float]:
        ref = self.reference_gmv
        return tuple(round(ref * m, 2) for m in TIER_MULTIPLES)  # type: ignore[return-value]

    @model_validator(mode="after")
    def _logits_are_rates(self) -> Category:
        if not -8.0 < self.ctr_logit < 0.0 or not -8.0 < self.cvr_logit < 0.0:
            raise ValueError(f"{self.name}: ctr_logit/cvr_logit must be in (-8, 0) (rates below 50%)")
        return self


def _c(**kw: object) -> Category:
    return Category.build(**kw)


DEFAULT_CATEGORIES: tuple[Category, ...] = (
    _c(name="womens_apparel", price_level=79, base_exposure=3200, ctr_logit=-3.3, cvr_logit=-3.2, elasticity=2.2,
       cost_ratio=0.38, traffic_cost_per_1k=5.0, roi_target=4.0, market_discount=0.85,
       seasons=({"start": "09-10", "end": "10-31", "strength": 0.35, "name": "autumn new season"},
                {"start": "03-01", "end": "03-08", "strength": 0.45, "name": "women's day"}),
       aspects=("fabric", "fit", "stitching", "colour"),
       nouns=("dress", "blouse", "cardigan", "skirt")),
    _c(name="mens_apparel", price_level=89, base_exposure=2600, ctr_logit=-3.4, cvr_logit=-3.3, elasticity=1.9,
       cost_ratio=0.40, traffic_cost_per_1k=5.0, roi_target=4.0, market_discount=0.85,
       seasons=({"start": "09-15", "end": "11-10", "strength": 0.35, "name": "autumn wardrobe"},),
       aspects=("fabric", "fit", "collar", "durability"),
       nouns=("shirt", "jacket", "chinos", "hoodie")),
    _c(name="shoes", price_level=129, base_exposure=2400, ctr_logit=-3.3, cvr_logit=-3.5, elasticity=1.8,
       cost_ratio=0.42, traffic_cost_per_1k=6.0, roi_target=3.6, market_discount=0.85,
       seasons=({"start": "04-15", "end": "05-15", "strength": 0.3, "name": "spring outdoors"},),
       aspects=("sole", "comfort", "sizing", "upper"),
       nouns=("sneakers", "loafers", "sandals", "boots")),
    _c(name="stationery", price_level=19, base_exposure=4200, ctr_logit=-3.1, cvr_logit=-2.7, elasticity=2.6,
       cost_ratio=0.35, traffic_cost_per_1k=2.5, roi_target=3.6, market_discount=0.85, inventory_days=520,
       seasons=({"start": "08-10", "end": "09-10", "strength": 0.8, "name": "back to school"},
                {"start": "02-15", "end": "03-05", "strength": 0.5, "name": "spring term"}),
       aspects=("ink", "paper", "binding", "packaging"),
       nouns=("notebook set", "gel pens", "planner", "pencil case")),
    _c(name="home_kitchen", price_level=49, base_exposure=3000, ctr_logit=-3.4, cvr_logit=-3.0, elasticity=2.0,
       cost_ratio=0.40, traffic_cost_per_1k=4.0, roi_target=3.8, market_discount=0.88,
       seasons=({"start": "04-20", "end": "05-05", "strength": 0.3, "name": "spring cleaning"},),
       aspects=("material", "size", "sturdiness", "finish"),
       nouns=("storage box", "frying pan", "knife set", "mug")),
    _c(name="beauty", price_level=69, base_exposure=3600, ctr_logit=-3.2, cvr_logit=-3.1, elasticity=1.4,
       cost_ratio=0.30, traffic_cost_per_1k=6.0, roi_target=4.4, market_discount=0.88,
       seasons=({"start": "03-01", "end": "03-08", "strength": 0.5, "name": "women's day"},
                {"start": "05-15", "end": "05-21", "strength": 0.35, "name": "520 gifting"}),
       aspects=("scent", "texture", "packaging", "skin feel"),
       nouns=("serum", "lip tint", "face mask", "cleanser")),
    _c(name="phone_accessories", price_level=39, base_exposure=3400, ctr_logit=-3.2, cvr_logit=-3.1, elasticity=2.8,
       cost_ratio=0.33, traffic_cost_per_1k=4.0, roi_target=3.4, market_discount=0.82,
       seasons=({"start": "06-01", "end": "06-18", "strength": 0.45, "name": "618 electronics"},),
       aspects=("charging speed", "cable", "fit", "build"),
       nouns=("fast charger", "phone case", "power bank", "earbuds")),
    _c(name="toys", price_level=45, base_exposure=2500, ctr_logit=-3.3, cvr_logit=-3.2, elasticity=2.1,
       cost_ratio=0.38, traffic_cost_per_1k=4.0, roi_target=3.8, market_discount=0.85,
       seasons=({"start": "05-20", "end": "06-01", "strength": 0.7, "name": "children's day"},),
       aspects=("safety", "colours", "assembly", "sturdiness"),
       nouns=("building blocks", "plush toy", "puzzle", "toy car")),
    _c(name="sports_outdoor", price_level=99, base_exposure=2200, ctr_logit=-3.5, cvr_logit=-3.4, elasticity=1.7,
       cost_ratio=0.42, traffic_cost_per_1k=5.0, roi_target=3.6, market_discount=0.85,
       seasons=({"start": "05-01", "end": "07-31", "strength": 0.4, "name": "summer sports"},),
       aspects=("grip", "weight", "durability", "breathability"),
       nouns=("yoga mat", "water bottle", "backpack", "sun hat")),
    _c(name="snacks", price_level=25, base_exposure=3800, ctr_logit=-3.0, cvr_logit=-2.8, elasticity=2.4,
       cost_ratio=0.45, traffic_cost_per_1k=3.0, roi_target=3.4, market_discount=0.85, inventory_days=300,
       seasons=({"start": "01-10", "end": "02-10", "strength": 0.6, "name": "new year gifting"},
                {"start": "07-01", "end": "08-15", "strength": 0.25, "name": "summer drinks"}),
       aspects=("taste", "freshness", "portion", "packaging"),
       nouns=("nut mix", "dried mango", "tea bags", "biscuits")),
)

# Platform-wide promotion days (month-day), known in advance: traffic up, shoppers more price sensitive.
PROMOTION_DAYS: tuple[str, ...] = (
    "03-08", "05-20", "06-16", "06-17", "06-18", "08-08", "09-09", "11-09", "11-10", "11-11", "12-12",
)

BRAND_TIERS = ("value", "mainstream", "premium")


def categories_by_name(categories: tuple[Category, ...]) -> dict[str, Category]:
    return {c.name: c for c in categories}
