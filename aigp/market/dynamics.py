"""The true market model: one day of one SKU, vectorised over SKUs (and over plans, by broadcasting).

Per SKU i on day t (age k = t - launch), with p_t = L_i d_t the effective price:

    exposure   E_t   = E_i · launch(k) · (1 + s_E·season) · weekend · promo · ((1 + v_{t-1}/v_c) / 2)^κ
                       · (ctr_rank_{t-1} / CTR_c)^ρ · noise   (ranking feedback, set overnight)
    CTR_t            = σ(α_i + α_d (1 - d_t) + ε)                            (the discount badge shows in search)
    CVR_t            = σ(β_i - η_i (1 + promo_e·promo) log(p_t / P̃_t) + g⁺ [r_t - p_t]⁺ / r_t
                         - g⁻ [p_t - r_t]⁺ / r_t - ζ |a_t| + s_C·season + ε)
    clicks ~ Poisson(E_t CTR_t),  orders ~ Poisson(clicks · CVR_t · shock) ∧ inventory
    GMV_t  = orders · p_t,   spend_t = orders · L_i (1 - d_t) + E_t / 1000 · c_traffic
    v_t = EMA(orders) from v_{-1} = v_c, ctr_rank_t = EMA(clicks / E), r_{t+1} = EMA(p)   (delayed effects)

with α_i = α_c + α_b·brand + α_q·q_i, β_i = β_c + β_q·q_i + u_i (u_i: listing appeal — page, title, seller —
unrelated to quality, so conversion alone cannot tell a good product from a well-presented one),
η_i = η_c exp(-ξ q_i) (good products are less price sensitive), P̃_t = L_i · m_c · competitor_index_t (what
comparable products sell at) and loss aversion g⁻ > g⁺. A sold-out SKU gets no traffic and costs nothing.

``draws=None`` gives the certainty-equivalent day (noise at its mean, counts at their expectation),
which is what the oracle plans with.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from aigp.market import noise
from aigp.market.catalog import SkuTable, Stream
from aigp.market.config import DynamicsConfig


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class SkuDynamics:
    """True per-SKU coefficients (hidden from every policy except the oracle)."""

    exposure_scale: np.ndarray
    ctr_logit: np.ndarray
    cvr_logit: np.ndarray
    elasticity: np.ndarray
    list_price: np.ndarray
    fair_price_base: np.ndarray
    traffic_cost_per_1k: np.ndarray
    review_rate: np.ndarray
    ctr_ref: np.ndarray
    orders_ref: np.ndarray

    @classmethod
    def from_skus(cls, skus: SkuTable, dyn: DynamicsConfig) -> SkuDynamics:
        q, b = skus.quality, skus.brand_strength
        cat = skus.category_values
        return cls(
            exposure_scale=cat("base_exposure") * np.exp(dyn.brand_exposure_effect * b),
            ctr_logit=cat("ctr_logit") + dyn.ctr_brand_effect * b + dyn.ctr_quality_effect * q,
            cvr_logit=cat("cvr_logit") + dyn.cvr_quality_effect * q + skus.listing_appeal,
            elasticity=cat("elasticity") * np.exp(-dyn.quality_elasticity_damping * q),
            list_price=skus.list_price.astype(np.float64),
            fair_price_base=skus.list_price * cat("market_discount"),
            traffic_cost_per_1k=cat("traffic_cost_per_1k"),
            review_rate=cat("review_rate"),
            ctr_ref=cat("ctr"),
            orders_ref=cat("base_orders"),
        )

    def take(self, index: np.ndarray) -> SkuDynamics:
        return SkuDynamics(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def expand(self) -> SkuDynamics:
        """Add a trailing axis so that the coefficients broadcast against (n, plans) arrays."""
        return SkuDynamics(**{f.name: getattr(self, f.name)[:, None] for f in fields(self)})


@dataclass(frozen=True)
class MarketState:
    """True state of each SKU at the start of a day, before it is priced."""

    age: np.ndarray
    prev_discount: np.ndarray
    reference_price: np.ndarray
    velocity: np.ndarray
    ctr_rank: np.ndarray
    inventory: np.ndarray
    cum_gmv: np.ndarray
    cum_spend: np.ndarray

    @classmethod
    def at_launch(cls, skus: SkuTable, params: SkuDynamics) -> MarketState:
        n = len(skus)
        return cls(
            age=np.zeros(n, dtype=np.int64),
            prev_discount=skus.launch_discount.astype(np.float64),
            reference_price=skus.list_price * skus.launch_discount,
            velocity=params.orders_ref.copy(),  # the ranking's cold-start prior: a typical seller
            ctr_rank=params.ctr_ref.copy(),
            inventory=skus.launch_inventory.astype(np.float64),
            cum_gmv=np.zeros(n),
            cum_spend=np.zeros(n),
        )

    def take(self, index: np.ndarray) -> MarketState:
        return MarketState(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def tile(self, plans: int) -> MarketState:
        """Repeat every SKU's state along a new trailing axis of ``plans`` copies."""
        return MarketState(**{f.name: np.repeat(getattr(self, f.name)[:, None], plans, axis=1)
                              for f in fields(self)})


@dataclass(frozen=True)
class DayContext:
    season: np.ndarray
    promotion: np.ndarray
    day_of_week: np.ndarray
    competitor_index: np.ndarray

    def expand(self) -> DayContext:
        return DayContext(*(np.asarray(getattr(self, f.name))[:, None] for f in fields(self)))


@dataclass(frozen=True)
class DayDraws:
    """The day's random draws of each SKU (all from the counter-based generator)."""

    exposure: np.ndarray
    ctr: np.ndarray
    cvr: np.ndarray
    clicks: np.ndarray  # uniforms for Poisson inversion
    orders: np.ndarray
    shock: np.ndarray
    reviews: np.ndarray

    @classmethod
    def draw(cls, seed: int | np.ndarray, sku_id: np.ndarray, day_key: np.ndarray) -> DayDraws:
        n = noise.normal
        u = noise.uniform
        return cls(
            exposure=n(seed, sku_id, day_key, Stream.EXPOSURE),
            ctr=n(seed, sku_id, day_key, Stream.CTR),
            cvr=n(seed, sku_id, day_key, Stream.CVR),
            clicks=u(seed, sku_id, day_key, Stream.CLICKS),
            orders=u(seed, sku_id, day_key, Stream.ORDERS),
            shock=n(seed, sku_id, day_key, Stream.DEMAND_SHOCK),
            reviews=u(seed, sku_id, day_key, Stream.REVIEWS),
        )


@dataclass(frozen=True)
class DayOutcome:
    discount: np.ndarray
    exposure: np.ndarray
    clicks: np.ndarray
    orders: np.ndarray
    gmv: np.ndarray
    spend: np.ndarray
    new_reviews: np.ndarray
    ctr: np.ndarray  # the day's true click-through probability
    cvr: np.ndarray  # the day's true conversion probability


def launch_curve(age: np.ndarray, dyn: DynamicsConfig) -> np.ndarray:
    return 1.0 + dyn.launch_boost * np.exp(-np.asarray(age, dtype=np.float64) / dyn.launch_decay_days)


def step(
    params: SkuDynamics,
    state: MarketState,
    discount: np.ndarray,
    ctx: DayContext,
    dyn: DynamicsConfig,
    draws: DayDraws | None,
) -> tuple[MarketState, DayOutcome]:
    """Advance every SKU by one day at the given (already safe) discount."""
    d = np.asarray(discount, dtype=np.float64)
    change = d - state.prev_discount
    price = params.list_price * d
    in_stock = state.inventory > 0

    weekend = np.where(ctx.day_of_week >= 5, dyn.weekend_exposure, 1.0)
    promo = np.where(ctx.promotion, dyn.promotion_exposure, 1.0)
    # Normalised so that a SKU selling at its category's typical rate with a typical CTR gets baseline traffic.
    ranking = ((1.0 + state.velocity / params.orders_ref) / 2.0) ** dyn.ranking_velocity_power * (
        state.ctr_rank / params.ctr_ref) ** dyn.ranking_ctr_power
    exposure = (params.exposure_scale * launch_curve(state.age, dyn) * (1.0 + dyn.season_exposure_effect * ctx.season)
                * weekend * promo * ranking)
    if draws is not None:
        exposure = exposure * np.exp(dyn.exposure_noise * draws.exposure - 0.5 * dyn.exposure_noise**2)
    exposure = np.where(in_stock, exposure, 0.0)

    ctr_logit = params.ctr_logit + dyn.ctr_discount_effect * (1.0 - d)
    fair_price = params.fair_price_base * ctx.competitor_index
    elasticity = params.elasticity * (1.0 + dyn.promotion_elasticity * ctx.promotion)
    ref = state.reference_price
    gain = np.maximum(ref - price, 0.0) / ref
    loss = np.maximum(price - ref, 0.0) / ref
    cvr_logit = (params.cvr_logit - elasticity * np.log(price / fair_price) + dyn.reference_gain * gain
                 - dyn.reference_loss * loss - dyn.swing_penalty * np.abs(change) + dyn.season_cvr_effect * ctx.season)
    if draws is not None:
        ctr_logit = ctr_logit + dyn.ctr_noise * draws.ctr
        cvr_logit = cvr_logit + dyn.cvr_noise * draws.cvr
    ctr = _sigmoid(ctr_logit)
    cvr = _sigmoid(cvr_logit)

    if draws is None:
        clicks = exposure * ctr
        orders = np.minimum(clicks * cvr, state.inventory)
        new_reviews = orders * params.review_rate
    else:
        clicks = noise.poisson_from_uniform(exposure * ctr, draws.clicks).astype(np.float64)
        shock = np.exp(dyn.demand_shock * draws.shock - 0.5 * dyn.demand_shock**2)
        orders = np.minimum(noise.poisson_from_uniform(clicks * cvr * shock, draws.orders),
                            state.inventory).astype(np.float64)
        new_reviews = np.minimum(noise.poisson_from_uniform(orders * params.review_rate, draws.reviews),
                                 orders).astype(np.float64)

    gmv = orders * price
    spend = orders * params.list_price * (1.0 - d) + exposure / 1000.0 * params.traffic_cost_per_1k
    observed_ctr = np.divide(clicks, exposure, out=np.asarray(state.ctr_rank, dtype=np.float64).copy(),
                             where=exposure > 0)
    nxt = MarketState(
        age=state.age + 1,
        prev_discount=d,
        reference_price=(1.0 - dyn.reference_rate) * ref + dyn.reference_rate * price,
        velocity=(1.0 - dyn.velocity_rate) * state.velocity + dyn.velocity_rate * orders,
        ctr_rank=(1.0 - dyn.ctr_rank_rate) * state.ctr_rank + dyn.ctr_rank_rate * observed_ctr,
        inventory=state.inventory - orders,
        cum_gmv=state.cum_gmv + gmv,
        cum_spend=state.cum_spend + spend,
    )
    out = DayOutcome(discount=d, exposure=exposure, clicks=clicks, orders=orders, gmv=gmv, spend=spend,
                     new_reviews=new_reviews, ctr=ctr, cvr=cvr)
    return nxt, out


def with_state(state: MarketState, **changes: np.ndarray) -> MarketState:
    return replace(state, **changes)
