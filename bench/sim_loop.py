"""A straightforward per-SKU, per-day Python loop of the market model: the benchmark's comparison.

It implements the equations of ``aigp.market.dynamics`` with scalars and ``math`` (one SKU at a time, as
a first implementation would), draws the same counter-based noise, and prices with the static policy
(hold the launch discount). tests/test_market_simulator.py checks it reproduces the vectorised simulator.
"""

from __future__ import annotations

import math

import numpy as np

from aigp.market import noise
from aigp.market.catalog import Stream
from aigp.market.simulator import Market


def _poisson(lam: float, u: float) -> int:
    if lam <= 0:
        return 0
    if lam >= 40.0:
        return max(0, math.floor(lam + math.sqrt(lam) * float(noise.ndtri(u)) + 0.5))
    k, pmf = 0, math.exp(-lam)
    cdf = pmf
    while u > cdf and k < 200:
        k += 1
        pmf *= lam / k
        cdf += pmf
    return k


def simulate_static_loop(market: Market, index: np.ndarray, rows: list[dict] | None = None) -> dict[str, np.ndarray]:
    """Daily exposure, orders, GMV and spend of the given SKUs under the static policy, one SKU at a time.

    With ``rows`` (a list), it also appends one log row per SKU-day with the decision-time state features
    (rolling and cumulative sums recomputed from the SKU's history, as a first implementation would) and
    the day's outcome, i.e. the same log the vectorised simulator writes.
    """
    cfg, dyn, cal, p = market.config, market.config.dynamics, market.calendar, market.params
    horizon = cfg.horizon_days
    out = {k: np.zeros((len(index), horizon)) for k in ("exposure", "orders", "gmv", "spend")}
    for row, i in enumerate(index):
        sku = int(market.skus.sku_id[i])
        cat = int(market.skus.category[i])
        d = float(market.skus.launch_discount[i])
        list_price = float(p.list_price[i])
        ref = list_price * d
        velocity = float(p.orders_ref[i])
        ctr_rank = float(p.ctr_ref[i])
        inventory = float(market.skus.launch_inventory[i])
        history: dict[str, list[float]] = {k: [] for k in ("exposure", "clicks", "orders", "gmv", "spend")}
        for age in range(horizon):
            day = int(market.skus.launch_day[i]) + age
            key = market.day_offset + day
            col = day + 1
            season, promo = float(cal.season[cat, col]), bool(cal.promotion[col])
            dow, comp = int(cal.day_of_week[col]), float(cal.competitor_index[cat, col])

            def z(stream: int, sku: int = sku, key: int = key) -> float:
                return float(noise.normal(cfg.seed, np.array([sku]), key, stream)[0])

            def u(stream: int, sku: int = sku, key: int = key) -> float:
                return float(noise.uniform(cfg.seed, np.array([sku]), key, stream)[0])

            price = list_price * d
            exposure = 0.0
            if inventory > 0:
                ranking = ((1 + velocity / p.orders_ref[i]) / 2) ** dyn.ranking_velocity_power * (
                    ctr_rank / p.ctr_ref[i]) ** dyn.ranking_ctr_power
                launch = 1 + dyn.launch_boost * math.exp(-age / dyn.launch_decay_days)
                exposure = (p.exposure_scale[i] * launch * (1 + dyn.season_exposure_effect * season)
                            * (dyn.weekend_exposure if dow >= 5 else 1.0) * (dyn.promotion_exposure if promo else 1.0)
                            * ranking * math.exp(dyn.exposure_noise * z(Stream.EXPOSURE) - dyn.exposure_noise**2 / 2))
            ctr = 1 / (1 + math.exp(-(p.ctr_logit[i] + dyn.ctr_discount_effect * (1 - d)
                                      + dyn.ctr_noise * z(Stream.CTR))))
            elasticity = p.elasticity[i] * (1 + dyn.promotion_elasticity * promo)
            gain = max(ref - price, 0) / ref
            loss = max(price - ref, 0) / ref
            cvr = 1 / (1 + math.exp(-(p.cvr_logit[i] - elasticity * math.log(price / (p.fair_price_base[i] * comp))
                                      + dyn.reference_gain * gain - dyn.reference_loss * loss
                                      - dyn.swing_penalty * 0.0  # the static policy never changes the price
                                      + dyn.season_cvr_effect * season + dyn.cvr_noise * z(Stream.CVR))))
            clicks = _poisson(exposure * ctr, u(Stream.CLICKS))
            shock = math.exp(dyn.demand_shock * z(Stream.DEMAND_SHOCK) - dyn.demand_shock**2 / 2)
            orders = min(_poisson(clicks * cvr * shock, u(Stream.ORDERS)), inventory)
            gmv = orders * price
            spend = orders * list_price * (1 - d) + exposure / 1000 * p.traffic_cost_per_1k[i]
            observed_ctr = clicks / exposure if exposure > 0 else ctr_rank
            ref = (1 - dyn.reference_rate) * ref + dyn.reference_rate * price
            velocity = (1 - dyn.velocity_rate) * velocity + dyn.velocity_rate * orders
            ctr_rank = (1 - dyn.ctr_rank_rate) * ctr_rank + dyn.ctr_rank_rate * observed_ctr
            inventory -= orders
            for name, value in (("exposure", exposure), ("orders", orders), ("gmv", gmv), ("spend", spend)):
                out[name][row, age] = value
            if rows is not None:
                rows.append(_log_row(sku, age, d, history, inventory + orders, float(market.params.orders_ref[i])))
                rows[-1].update(out_exposure=exposure, out_clicks=clicks, out_orders=orders, out_gmv=gmv,
                                out_spend=spend)
            for name, value in (("exposure", exposure), ("clicks", clicks), ("orders", orders), ("gmv", gmv),
                                ("spend", spend)):
                history[name].append(value)
    return out


def _log_row(sku: int, age: int, discount: float, history: dict[str, list[float]], inventory: float,
             _: float) -> dict:
    row: dict = {"sku_id": sku, "days_since_launch": age, "prev_discount": discount, "discount": discount,
                 "discount_change": 0.0, "inventory": inventory}
    for window in (1, 3, 7):
        sums = {k: sum(v[-window:]) if v else 0.0 for k, v in history.items()}
        for k, v in sums.items():
            row[f"{k}_{window}d"] = v
        row[f"ctr_{window}d"] = sums["clicks"] / sums["exposure"] if sums["exposure"] else 0.0
        row[f"cvr_{window}d"] = sums["orders"] / sums["clicks"] if sums["clicks"] else 0.0
        row[f"roi_{window}d"] = sums["gmv"] / sums["spend"] if sums["spend"] else 0.0
    for k in ("gmv", "spend", "orders"):
        row[f"cum_{k}"] = sum(history[k])
    row["cum_roi"] = row["cum_gmv"] / row["cum_spend"] if row["cum_spend"] else 0.0
    return row
