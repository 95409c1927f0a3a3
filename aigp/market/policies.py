"""Pricing policies behind one batched interface, ``Policy.act(obs) -> discount changes``.

- non-experts that diversify the logs: ``random``, ``random_walk``, ``aggressive``, ``static``, ``conservative``;
- ``expert``: an operations manager's rules over observable signals (traffic, conversion, ROI, stock,
  reviews, calendar), with noise;
- ``price_sales``: the production baseline of the paper, a demand model fitted on logged data plus a
  myopic optimiser (today's GMV subject to today's ROI target);
- ``oracle``: knows the latent parameters and plans over the remaining horizon on the true model
  (model-predictive control): the upper bound.

Every policy returns actions inside A_safe (each projects its own proposal through ``project_to_safe``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from aigp.action import MAX_DAILY_CHANGE, MAX_DISCOUNT, MIN_DISCOUNT, feasible_change_bounds, project_to_safe
from aigp.market import noise
from aigp.market.catalog import Stream
from aigp.market.config import DynamicsConfig
from aigp.market.dynamics import MarketState, step
from aigp.market.observation import Observation
from aigp.schema import numeric_state_features

HORIZON = 14  # the business horizon every policy plans for (the milestone window)


class BasePolicy:
    name = "base"
    requires_text = False
    requires_truth = False
    stream_offset = 0

    def propose(self, obs: Observation) -> np.ndarray:
        raise NotImplementedError

    def act(self, obs: Observation) -> np.ndarray:
        if len(obs) == 0:
            return np.zeros(0)
        return project_to_safe(obs.prev_discount, self.propose(obs)).change

    def _uniform(self, obs: Observation, k: int = 0) -> np.ndarray:
        return noise.uniform(obs.seed, obs.sku_id, obs.day_key, Stream.POLICY + 10 * self.stream_offset + k)

    def _normal(self, obs: Observation, k: int = 0) -> np.ndarray:
        return noise.normal(obs.seed, obs.sku_id, obs.day_key, Stream.POLICY + 10 * self.stream_offset + k)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class StaticPolicy(BasePolicy):
    """Holds the launch discount: never changes the price."""

    name = "static"

    def propose(self, obs: Observation) -> np.ndarray:
        return np.zeros(len(obs))


class RandomPolicy(BasePolicy):
    """Uniform over the feasible changes: the floor every policy must beat."""

    name = "random"
    stream_offset = 1

    def propose(self, obs: Observation) -> np.ndarray:
        low, high = feasible_change_bounds(obs.prev_discount)
        return low + (high - low) * self._uniform(obs)


class RandomWalkPolicy(BasePolicy):
    """Small random adjustments, as an inattentive operator makes."""

    name = "random_walk"
    stream_offset = 2

    def propose(self, obs: Observation) -> np.ndarray:
        return np.round(0.05 * self._normal(obs), 2)


class AggressivePolicy(BasePolicy):
    """Cuts hard toward the deepest allowed discount and stays there."""

    name = "aggressive"
    stream_offset = 3

    def propose(self, obs: Observation) -> np.ndarray:
        target = 0.5 + 0.1 * self._uniform(obs, 0)
        return np.clip(target - obs.prev_discount, -0.1 - 0.1 * self._uniform(obs, 1), 0.0)


class ConservativePolicy(BasePolicy):
    """Walks back to list price and protects margin."""

    name = "conservative"
    stream_offset = 4

    def propose(self, obs: Observation) -> np.ndarray:
        return np.minimum(MAX_DISCOUNT - obs.prev_discount, 0.05)


class ExpertPolicy(BasePolicy):
    """An operations manager's playbook over observable signals, applied with some noise.

    Reads: milestone pace (GMV needed per remaining day vs recent run-rate), integrated ROI vs target,
    click-through vs the category benchmark, stock cover, promotions and seasons, and the tone of the
    reviews (it reads them). Moves are moderate, as people make them.
    """

    name = "expert"
    requires_text = True
    stream_offset = 5

    def __init__(self, noise_sd: float = 0.015):
        self.noise_sd = noise_sd

    def propose(self, obs: Observation) -> np.ndarray:
        c = obs.column
        age = c("days_since_launch")
        d = obs.prev_discount
        days_left = np.maximum(HORIZON - age, 1.0)
        need_rate = np.maximum(c("gmv_tier1") - c("cum_gmv"), 0.0) / days_left
        recent_rate = c("gmv_3d") / np.clip(age, 1.0, 3.0)
        behind = (age > 0) & (recent_rate < 0.9 * need_rate)
        ahead = (age > 0) & (recent_rate > 1.3 * need_rate)
        roi_ok = c("cum_roi") >= 1.1 * c("roi_target")
        roi_bad = (age > 0) & (c("cum_roi") < c("roi_target"))
        weak_ctr = (age > 0) & (c("ctr_3d") < 0.8 * c("category_ctr"))
        stock_cover = c("inventory") / np.maximum(c("orders_3d") / np.clip(age, 1.0, 3.0), 0.1)
        sentiment = obs.text.review_sentiment() if obs.text is not None else np.zeros(len(obs))
        liked = (c("review_count") >= 2) & (sentiment >= 1.0)
        disliked = (c("review_count") >= 2) & (sentiment <= -0.5)
        event = (c("is_promotion") > 0) | (c("in_season") > 0)

        a = np.where(age == 0, np.where(d > 0.85, -0.05, 0.0), 0.0)
        a += np.where(behind & roi_ok, -0.05, 0.0)
        a += np.where(roi_bad, 0.05, 0.0)
        a += np.where(ahead & ~roi_bad, 0.03, 0.0)
        a += np.where(weak_ctr & ~roi_bad, -0.02, 0.0)
        a += np.where(liked, 0.02, 0.0) - np.where(disliked, 0.02, 0.0)
        a += np.where(event & ~roi_bad, -0.03, 0.0)
        a += np.where(stock_cover < 3.0, 0.05, 0.0)
        a += self.noise_sd * self._normal(obs)
        return np.clip(np.round(a, 2), -0.1, 0.1)


class PriceSalesPolicy(BasePolicy):
    """Production baseline: a demand model on logged data plus myopic optimisation.

    The model (gradient-boosted trees, Poisson loss) predicts today's orders from the structured state
    and a candidate discount. Each night it picks, among candidate changes in A_safe, the one with the
    highest predicted GMV whose predicted daily ROI meets the target (the highest ROI if none does).
    It sees no text and ignores what today's price does to tomorrow's traffic: that is its weakness.

    The model is fitted on *price-test traffic*: rows whose logging policy varied the price independently of
    how the SKU was doing (here the random-walk share of the logs), as production pricing teams estimate
    price response on randomised price tests. Fitted on all logged rows the model is fragile: logged prices
    are confounded with performance (operators cut prices when sales lag, deep discounters sell out), and
    depending on the sample its price response can come out flat, whereupon the optimiser prices almost
    everything at list price (measured: fine on a 12k-SKU history, 82% of days at list price on a 20k one);
    the price-test fit is stable. Evidence in BENCHMARKS.md (simulator calibration).
    """

    name = "price_sales"
    DESIGN = [f for f in numeric_state_features()] + ["category_code", "discount", "discount_change", "price",
                                                      "new_price_position"]

    def __init__(self, model: object, categories: list[str], day0_traffic_cost: dict[str, float],
                 candidates: int = 21, batch: int = 4096):
        self.model = model
        self.categories = categories
        self.day0_traffic_cost = day0_traffic_cost
        self.grid = np.linspace(-MAX_DAILY_CHANGE, MAX_DAILY_CHANGE, candidates)
        self.batch = batch

    @classmethod
    def fit(cls, decisions: pd.DataFrame, skus: pd.DataFrame, *, max_rows: int = 300_000, seed: int = 0,
            max_iter: int = 200, price_test_policies: tuple[str, ...] | None = ("random_walk",)) -> PriceSalesPolicy:
        """Fit the demand model on the log's price-test rows (all rows if ``price_test_policies`` is None)."""
        from sklearn.ensemble import HistGradientBoostingRegressor

        frame = decisions.merge(skus.drop(columns=["description"], errors="ignore"), on="sku_id", how="left",
                                validate="many_to_one")
        if frame["list_price"].isna().any():
            raise ValueError("decision log has SKUs missing from the SKU table")
        if price_test_policies is not None:
            frame = frame[frame["behaviour_policy"].isin(price_test_policies)]
            if len(frame) < 200:
                raise ValueError(f"only {len(frame)} price-test rows (behaviour_policy in {price_test_policies}); "
                                 "log more SKUs or pass price_test_policies=None")
        if len(frame) > max_rows:
            frame = frame.sample(n=max_rows, random_state=seed)
        categories = sorted(frame["category"].astype(str).unique())
        x = cls._design(frame, frame["discount"].to_numpy(np.float64), categories)
        model = HistGradientBoostingRegressor(loss="poisson", max_iter=max_iter, learning_rate=0.1,
                                              max_leaf_nodes=63, min_samples_leaf=40, random_state=seed,
                                              categorical_features=[cls.DESIGN.index("category_code")])
        model.fit(x, frame["out_orders"].to_numpy(np.float64))
        day0 = frame[frame["days_since_launch"] == 0]
        traffic = day0["out_spend"] - day0["out_orders"] * day0["list_price"] * (1 - day0["discount"])
        day0_cost = traffic.groupby(day0["category"].astype(str)).median().to_dict()
        return cls(model, categories, {str(k): float(v) for k, v in day0_cost.items()})

    @classmethod
    def _design(cls, frame: pd.DataFrame, discount: np.ndarray, categories: list[str]) -> np.ndarray:
        price = frame["list_price"].to_numpy(np.float64) * discount
        cols = {name: frame[name].to_numpy(np.float64) for name in numeric_state_features()}
        cols["category_code"] = pd.Categorical(frame["category"].astype(str), categories=categories).codes
        cols["discount"] = discount
        cols["discount_change"] = discount - frame["prev_discount"].to_numpy(np.float64)
        cols["price"] = price
        median = frame["competitor_median_price"].to_numpy(np.float64)
        cols["new_price_position"] = np.divide(price, median, out=np.ones_like(price), where=median > 0)
        return np.column_stack([cols[name] for name in cls.DESIGN]).astype(np.float32)

    def propose(self, obs: Observation) -> np.ndarray:
        out = np.zeros(len(obs))
        for start in range(0, len(obs), self.batch):
            rows = np.arange(start, min(len(obs), start + self.batch))
            out[rows] = self._choose(obs.frame.iloc[rows])
        return out

    def _choose(self, frame: pd.DataFrame) -> np.ndarray:
        n, k = len(frame), len(self.grid)
        prev = frame["prev_discount"].to_numpy(np.float64)
        safe = project_to_safe(np.repeat(prev, k), np.tile(self.grid, n))
        cand = safe.discount
        repeated = frame.iloc[np.repeat(np.arange(n), k)]
        orders = np.maximum(self.model.predict(self._design(repeated, cand, self.categories)), 0.0)  # type: ignore[attr-defined]
        list_price = np.repeat(frame["list_price"].to_numpy(np.float64), k)
        gmv = orders * list_price * cand
        subsidy = orders * list_price * (1.0 - cand)
        traffic = np.repeat(self._traffic_cost(frame), k)
        roi = gmv / np.maximum(subsidy + traffic, 1e-9)
        target = np.repeat(frame["roi_target"].to_numpy(np.float64), k)
        gmv, roi, ok = gmv.reshape(n, k), roi.reshape(n, k), (roi >= target).reshape(n, k)
        best = np.where(ok.any(1), np.argmax(np.where(ok, gmv, -np.inf), axis=1), np.argmax(roi, axis=1))
        return safe.change.reshape(n, k)[np.arange(n), best]

    def _traffic_cost(self, frame: pd.DataFrame) -> np.ndarray:
        """Yesterday's traffic cost (spend minus discount subsidy); for launch day, the category median."""
        yesterday = (frame["spend_1d"] - frame["orders_1d"] * frame["list_price"] * (1 - frame["prev_discount"]))
        day0 = frame["category"].astype(str).map(self.day0_traffic_cost).fillna(0.0)
        launch = frame["days_since_launch"].to_numpy() == 0
        return np.where(launch, day0.to_numpy(np.float64), np.maximum(yesterday.to_numpy(np.float64), 0.0))


class OraclePolicy(BasePolicy):
    """Model-predictive control on the true market: every night, roll each candidate discount plan
    forward to the end of the horizon on the SKU's true (noise-free) dynamics, keep the plan with the
    highest GMV whose integrated ROI meets the target (the highest ROI if none does), apply its first step.

    Plans: move toward a first target level, then (from a switch day) toward a second one, at a given
    maximum step per day, all inside A_safe.
    """

    name = "oracle"
    requires_truth = True

    def __init__(self, dynamics: DynamicsConfig, levels: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
                 switch_days: tuple[int, ...] = (2, 4, 7), late_levels: tuple[float, ...] = (0.8, 0.9, 1.0),
                 ramps: tuple[float, ...] = (0.05, 0.2), roi_margin: float = 1.02, batch: int = 2048):
        self.dynamics = dynamics
        self.levels, self.switch_days, self.late_levels, self.ramps = levels, switch_days, late_levels, ramps
        self.roi_margin = roi_margin
        self.batch = batch

    def plans(self, days: int) -> tuple[np.ndarray, np.ndarray]:
        """(targets (P, days), ramps (P,)) of every candidate plan."""
        targets, ramps = [], []
        for ramp in self.ramps:
            for first in self.levels:
                targets.append(np.full(days, first))
                ramps.append(ramp)
                for switch in self.switch_days:
                    if switch >= days:
                        continue
                    for late in self.late_levels:
                        if late != first:
                            targets.append(np.r_[np.full(switch, first), np.full(days - switch, late)])
                            ramps.append(ramp)
        return np.array(targets), np.array(ramps)

    def propose(self, obs: Observation) -> np.ndarray:
        if obs.truth is None:
            raise ValueError("the oracle needs the true market state (requires_truth)")
        out = np.zeros(len(obs))
        for start in range(0, len(obs), self.batch):
            rows = np.arange(start, min(len(obs), start + self.batch))
            out[rows] = self._plan(obs.truth.take(rows))
        return out

    def _plan(self, truth: object) -> np.ndarray:
        days = int(truth.days_left.max())  # type: ignore[attr-defined]
        targets, ramps = self.plans(days)
        state: MarketState = truth.state.tile(len(ramps))  # type: ignore[attr-defined]
        params = truth.params.expand()  # type: ignore[attr-defined]
        alive = np.arange(days)[None, :] < truth.days_left[:, None]  # type: ignore[attr-defined]
        first = None
        for j in range(days):
            prev = state.prev_discount
            change = np.clip(np.clip(targets[None, :, j] - prev, -ramps, ramps), -MAX_DAILY_CHANGE, MAX_DAILY_CHANGE)
            discount = np.clip(prev + change, MIN_DISCOUNT, MAX_DISCOUNT)
            if first is None:
                first = discount - prev
            nxt, _ = step(params, state, discount, truth.contexts(j).expand(), self.dynamics, None)  # type: ignore[attr-defined]
            if alive[:, j].all():
                state = nxt
            else:
                keep = alive[:, j][:, None]
                state = MarketState(**{f: np.where(keep, getattr(nxt, f), getattr(state, f))
                                       for f in MarketState.__dataclass_fields__})
        gmv, spend = state.cum_gmv, state.cum_spend
        roi = gmv / np.maximum(spend, 1e-9)
        ok = roi >= self.roi_margin * truth.roi_target[:, None]  # type: ignore[attr-defined]
        best = np.where(ok.any(1), np.argmax(np.where(ok, gmv, -np.inf), axis=1), np.argmax(roi, axis=1))
        assert first is not None
        return first[np.arange(len(best)), best]


BEHAVIOUR_CLASSES: dict[str, type[BasePolicy]] = {
    "expert": ExpertPolicy,
    "random_walk": RandomWalkPolicy,
    "aggressive": AggressivePolicy,
    "static": StaticPolicy,
    "conservative": ConservativePolicy,
}


def behaviour_policies() -> dict[str, BasePolicy]:
    """The logged behaviour mix's policies, keyed by the names MarketConfig.behaviour_mix uses."""
    return {name: cls() for name, cls in BEHAVIOUR_CLASSES.items()}


BASELINES = ("random", "static", "random_walk", "aggressive", "conservative", "expert", "price_sales", "oracle")


def build_baselines(names: list[str] | tuple[str, ...], *, dynamics: DynamicsConfig,
                    history: Callable[[], tuple[pd.DataFrame, pd.DataFrame]] | None = None,
                    seed: int = 0) -> dict[str, BasePolicy]:
    """Baseline policies by name. ``history`` supplies (decision log, SKU table) for price-sales to fit on."""
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}; built-in policies are {list(BASELINES)}")
    simple: dict[str, type[BasePolicy]] = {**BEHAVIOUR_CLASSES, "random": RandomPolicy}
    out: dict[str, BasePolicy] = {}
    for name in names:
        if name in simple:
            out[name] = simple[name]()
        elif name == "oracle":
            out[name] = OraclePolicy(dynamics)
        else:
            if history is None:
                raise ValueError("price_sales needs a logged history to fit its demand model on")
            decisions, skus = history()
            out[name] = PriceSalesPolicy.fit(decisions, skus, seed=seed)
    return out
