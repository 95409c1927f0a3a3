"""Configuration of the simulated market (one typed config; every default documented here)."""

from __future__ import annotations

import datetime as dt

from pydantic import Field, field_validator, model_validator

from aigp.action import MAX_DISCOUNT, MIN_DISCOUNT
from aigp.config import StrictConfig
from aigp.market.categories import DEFAULT_CATEGORIES

BEHAVIOUR_POLICIES = ("expert", "random_walk", "aggressive", "static", "conservative")


class DynamicsConfig(StrictConfig):
    """Coefficients of the true market model (see ``aigp.market.dynamics`` for the equations)."""

    ctr_discount_effect: float = Field(1.5, ge=0, description="alpha_d: discount-badge lift on CTR logit per (1-d)")
    ctr_quality_effect: float = Field(0.15, ge=0, description="alpha_q: quality lift on CTR logit")
    ctr_brand_effect: float = Field(0.3, ge=0, description="brand strength lift on CTR logit")
    listing_appeal_sd: float = Field(0.6, ge=0, description="sd of a SKU's listing appeal (page, title, seller) "
                                     "on the CVR logit; unrelated to quality, it blurs what conversion reveals")
    cvr_quality_effect: float = Field(0.45, ge=0, description="beta_q: quality lift on CVR logit")
    quality_elasticity_damping: float = Field(0.3, ge=0, description="xi: elasticity = eta_c * exp(-xi * q)")
    reference_gain: float = Field(0.6, ge=0, description="g+: CVR lift per relative price drop below reference")
    reference_loss: float = Field(1.8, ge=0, description="g-: CVR loss per relative price rise above reference")
    swing_penalty: float = Field(0.8, ge=0, description="zeta: CVR logit cost per unit |a_t| (distrust of swings)")
    reference_rate: float = Field(0.3, gt=0, le=1, description="EMA rate of the shoppers' reference price")
    velocity_rate: float = Field(0.2, gt=0, le=1, description="EMA rate of the ranking's order velocity")
    ctr_rank_rate: float = Field(0.5, gt=0, le=1, description="EMA rate of the ranking's CTR signal")
    ranking_velocity_power: float = Field(0.9, ge=0, description="kappa: exposure ~ ((1 + v/v_c) / 2)^kappa")
    ranking_ctr_power: float = Field(1.0, ge=0, description="rho: exposure ~ (CTR/CTR_c)^rho")
    launch_boost: float = Field(1.0, ge=0, description="extra cold-start traffic on launch day, as a multiple")
    launch_decay_days: float = Field(3.0, gt=0, description="e-folding time of the cold-start boost")
    season_exposure_effect: float = Field(0.8, ge=0, description="traffic lift per unit season strength")
    season_cvr_effect: float = Field(0.5, ge=0, description="CVR logit lift per unit season strength")
    promotion_exposure: float = Field(1.6, ge=1, description="traffic multiple on promotion days")
    promotion_elasticity: float = Field(0.3, ge=0, description="relative rise of price sensitivity on promotion days")
    weekend_exposure: float = Field(1.1, gt=0, description="traffic multiple on Saturday and Sunday")
    brand_exposure_effect: float = Field(0.4, ge=0, description="log-traffic lift per unit brand strength")
    exposure_noise: float = Field(0.15, ge=0, description="log-sd of daily traffic noise")
    ctr_noise: float = Field(0.10, ge=0, description="sd of daily CTR logit noise")
    cvr_noise: float = Field(0.10, ge=0, description="sd of daily CVR logit noise")
    demand_shock: float = Field(0.25, ge=0, description="log-sd of the daily demand shock (overdispersion)")
    review_noise: float = Field(1.0, gt=0, description="sd of a review's sentiment around the SKU's quality")
    competitor_persistence: float = Field(0.9, ge=0, lt=1, description="AR(1) coefficient of the competitor index")
    competitor_volatility: float = Field(0.02, ge=0, description="daily sd of the log competitor index")
    brand_price_premium: float = Field(0.25, ge=0, description="log list-price lift per unit brand strength")


class MarketConfig(StrictConfig):
    seed: int = Field(7, ge=0, description="seed of every random draw")
    n_skus: int = Field(20_000, ge=1, description="new SKUs launched over the launch window")
    start_date: dt.date = Field(dt.date(2026, 3, 1), description="first launch day (UTC)")
    launch_days: int = Field(150, ge=1, description="launches are spread uniformly over this many days")
    horizon_days: int = Field(14, ge=1, le=60, description="days each SKU is priced after launch (the paper's 14)")
    categories: tuple[str, ...] | None = Field(None, description="subset of category names; None = all")
    brands_per_category: int = Field(8, ge=1)
    launch_discounts: tuple[float, ...] = Field((1.0, 0.95, 0.9, 0.85, 0.8), min_length=1,
                                                description="merchant-set discount on launch, drawn uniformly")
    behaviour_mix: dict[str, float] = Field(
        default_factory=lambda: {"expert": 0.6, "random_walk": 0.1, "aggressive": 0.1, "static": 0.1,
                                 "conservative": 0.1},
        description="share of SKUs priced by each logged behaviour policy (paper: 60% expert, 40% diverse)",
    )
    review_digest_size: int = Field(3, ge=1, le=20, description="reviews shown in a review digest")
    sku_id_offset: int = Field(0, ge=0, description="first SKU id; cohorts use fresh ranges")
    dynamics: DynamicsConfig = Field(default_factory=lambda: DynamicsConfig())

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        known = {c.name for c in DEFAULT_CATEGORIES}
        unknown = [v for v in value if v not in known]
        if unknown:
            raise ValueError(f"unknown category {unknown[0]!r}; expected one of {sorted(known)}")
        if not value:
            raise ValueError("at least one category is needed")
        return value

    @field_validator("launch_discounts")
    @classmethod
    def _discounts_in_range(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        for d in value:
            if not MIN_DISCOUNT <= d <= MAX_DISCOUNT:
                raise ValueError(f"discount {d} is outside [{MIN_DISCOUNT}, {MAX_DISCOUNT}]")
        return value

    @field_validator("behaviour_mix")
    @classmethod
    def _mix_is_distribution(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = [k for k in value if k not in BEHAVIOUR_POLICIES]
        if unknown:
            raise ValueError(f"unknown behaviour policy {unknown[0]!r}; expected one of {list(BEHAVIOUR_POLICIES)}")
        if any(v < 0 for v in value.values()) or abs(sum(value.values()) - 1.0) > 1e-6:
            raise ValueError(f"shares must be >= 0 and sum to 1, got {value}")
        return value

    @model_validator(mode="after")
    def _ids_fit(self) -> MarketConfig:
        if self.sku_id_offset + self.n_skus >= 2**53:
            raise ValueError("sku_id_offset + n_skus must stay below 2**53")
        return self

    @property
    def n_calendar_days(self) -> int:
        return self.launch_days + self.horizon_days
