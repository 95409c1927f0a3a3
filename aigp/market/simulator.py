"""The market simulator: SKUs launch, are priced nightly by policies for their first days, and sell.

The loop runs over SKU age (day 0..horizon-1) and is vectorised over SKUs, in chunks so that memory
stays flat at any number of SKUs; each SKU's calendar day is its launch day plus its age. Every draw is
counter-based (see ``noise``), so results do not depend on chunking or on the neighbours' policies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from aigp.action import SafeActions, project_to_safe
from aigp.features import DailyPanel, DecisionContext, SkuStatics, state_features
from aigp.market import noise
from aigp.market.catalog import COMPETITOR_EPOCH, Calendar, SkuTable, Stream, generate_skus, resolve_categories
from aigp.market.config import BEHAVIOUR_POLICIES, MarketConfig
from aigp.market.dynamics import DayContext, DayDraws, DayOutcome, MarketState, SkuDynamics, step
from aigp.market.observation import Observation, Policy, TextView, TrueView
from aigp.market.sinks import LogSink
from aigp.market.text import (
    all_reviews,
    code_score,
    render_reviews,
    review_codes,
    review_digest,
    review_index,
    sentiment_level,
)
from aigp.schema import DYNAMIC_FEATURES, FEATURES

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 65_536
SMALL_MOVE = 0.04  # the paper's Fig. 5 bin: |a| < 0.04 counts as a small adjustment


@dataclass(frozen=True)
class RunResult:
    """Per-SKU outcomes of a run (``summary``) and each SKU's daily discount changes (``changes``)."""

    summary: pd.DataFrame
    changes: np.ndarray  # (n_skus, horizon) applied discount changes
    discounts: np.ndarray  # (n_skus, horizon) discounts in effect


class Market:
    def __init__(self, config: MarketConfig):
        self.config = config
        self.categories = resolve_categories(config)
        self.skus: SkuTable = generate_skus(config)
        self.calendar = Calendar.build(config, self.categories)
        self.params = SkuDynamics.from_skus(self.skus, config.dynamics)
        self.day_offset = (config.start_date - COMPETITOR_EPOCH).days
        texts, self._review_text_code = np.unique(all_reviews(self.categories), return_inverse=True)
        self.review_texts = pd.Index(texts)

    def __len__(self) -> int:
        return len(self.skus)

    def behaviour_groups(self) -> np.ndarray:
        """Each SKU's logging policy (the configured behaviour mix)."""
        return np.array(BEHAVIOUR_POLICIES, dtype=object)[self.skus.behaviour]

    def sku_frame(self) -> pd.DataFrame:
        return self.skus.observable_frame(self.calendar)

    def run(
        self,
        policies: Mapping[str, Policy],
        groups: np.ndarray | None = None,
        *,
        sink: LogSink | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        progress: bool = False,
    ) -> RunResult:
        """Price every SKU for ``horizon_days`` days with the policy of its group.

        ``groups`` names each SKU's group (a key of ``policies``); with one policy it may be omitted.
        """
        n = len(self.skus)
        if groups is None:
            if len(policies) != 1:
                raise ValueError("groups is required when more than one policy is given")
            groups = np.full(n, next(iter(policies)), dtype=object)
        groups = np.asarray(groups, dtype=object)
        if groups.shape != (n,):
            raise ValueError(f"groups has shape {groups.shape}, expected ({n},)")
        unknown = set(np.unique(groups)) - set(policies)
        if unknown:
            raise ValueError(f"groups {sorted(unknown)} have no policy; policies are {sorted(policies)}")

        summaries, changes, discounts = [], [], []
        starts = range(0, n, chunk_size)
        bar = _progress(len(starts) * self.config.horizon_days, progress, "simulating")
        for start in starts:
            index = np.arange(start, min(n, start + chunk_size))
            summary, ch, disc = self._run_chunk(index, policies, groups[index], sink, bar)
            summaries.append(summary)
            changes.append(ch)
            discounts.append(disc)
        if bar is not None:
            bar.close()
        return RunResult(pd.concat(summaries, ignore_index=True), np.vstack(changes), np.vstack(discounts))

    # ------------------------------------------------------------------------------------------------
    def _run_chunk(self, index: np.ndarray, policies: Mapping[str, Policy], groups: np.ndarray,
                   sink: LogSink | None, bar: Any) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        cohort = Cohort(self, index)
        members = {g: rows for g in policies if (rows := np.flatnonzero(groups == g)).size}
        gmv_7 = spend_7 = orders_7 = None
        policy_names = pd.Categorical([policies[g].name for g in groups],
                                      categories=sorted({p.name for p in policies.values()}))
        for age in range(self.config.horizon_days):
            obs = cohort.observe(text=any(policies[g].requires_text for g in members),
                                 truth=any(policies[g].requires_truth for g in members))
            proposal = dispatch(obs, {g: (policies[g], rows) for g, rows in members.items()})
            safe, out, new_reviews = cohort.advance(proposal, self.config.seed)
            if sink is not None:
                sink.write_decisions(cohort.decision_rows(obs, safe, out, policy_names))
                if new_reviews is not None:
                    sink.write_reviews(cohort.review_rows(age, *new_reviews))
            if age == 6:
                gmv_7, spend_7 = cohort.state.cum_gmv.copy(), cohort.state.cum_spend.copy()
                orders_7 = cohort.panel.orders.sum(1)
            if bar is not None:
                bar.update(1)
        return cohort.summary(groups, policies, gmv_7, spend_7, orders_7), cohort.panel.change.copy(), \
            cohort.panel.discount.copy()


def dispatch(obs: Observation, members: Mapping[str, tuple[Policy, np.ndarray]]) -> np.ndarray:
    """Ask each group's policy for its rows' actions; returns the proposals in row order."""
    proposal = np.zeros(len(obs))
    for policy, rows in members.values():
        sub = obs if rows.size == len(obs) else obs.take(rows)
        action = np.asarray(policy.act(sub), dtype=np.float64)
        if action.shape != (rows.size,):
            raise ValueError(f"policy {policy.name!r} returned shape {action.shape}, expected ({rows.size},)")
        proposal[rows] = action
    return proposal


class Cohort:
    """SKUs simulated together from launch, one night and day at a time.

    Holds the true state, the panel of daily outcomes and the review memory. ``repeat`` clones every SKU
    (for Monte-Carlo branches from the same state); ``advance`` takes per-row seeds so that clones draw
    independent futures.
    """

    def __init__(self, market: Market, index: np.ndarray):
        self.market = market
        self.sk = market.skus.take(index)
        self.params = market.params.take(index)
        n, horizon = len(self.sk), market.config.horizon_days
        self.state = MarketState.at_launch(self.sk, self.params)
        self.panel = DailyPanel.empty(n, horizon)
        self.tiers = self.sk.gmv_tiers()
        self.roi_target = self.sk.category_values("roi_target")
        self.statics = SkuStatics(self.sk.list_price, self.sk.launch_discount, self.sk.launch_inventory,
                                  self.tiers[:, 0])
        self.static_frame = _static_columns(self.sk)
        self.reviews = _ReviewState(n, market.config.review_digest_size)
        self.projected = np.zeros(n, dtype=np.int64)
        self.age = 0
        self._descriptions: list[str] | None = None

    def __len__(self) -> int:
        return len(self.sk)

    @property
    def day(self) -> np.ndarray:
        """Calendar day index of the day about to be priced."""
        return self.sk.launch_day + self.age

    @property
    def day_key(self) -> np.ndarray:
        return self.market.day_offset + self.day

    def repeat(self, times: int) -> Cohort:
        """A new cohort where every SKU appears ``times`` times in a row (same history, same state)."""
        rows = np.repeat(np.arange(len(self)), times)
        clone = object.__new__(Cohort)
        clone.market = self.market
        clone.sk, clone.params, clone.state = self.sk.take(rows), self.params.take(rows), self.state.take(rows)
        clone.panel = DailyPanel(**{k: v[rows].copy() for k, v in vars(self.panel).items()})
        clone.tiers, clone.roi_target = self.tiers[rows], self.roi_target[rows]
        clone.statics = SkuStatics(*(getattr(self.statics, f)[rows] for f in
                                     ("list_price", "launch_discount", "launch_inventory", "gmv_tier1")))
        clone.static_frame = {k: (v[rows] if not isinstance(v, pd.Categorical) else v.take(rows))
                              for k, v in self.static_frame.items()}
        clone.reviews = self.reviews.take(rows)
        clone.projected = self.projected[rows].copy()
        clone.age = self.age
        clone._descriptions = None
        return clone

    def observe(self, *, text: bool = False, truth: bool = False) -> Observation:
        cal, params, sk = self.market.calendar, self.params, self.sk
        day = self.day
        season, promo, dow, _ = cal.at(sk.category, day)
        comp_prev = cal.at(sk.category, day - 1)[3]
        context = DecisionContext(dow, promo, season > 0, comp_prev, params.fair_price_base * comp_prev)
        feats = state_features(self.panel, self.age, self.statics, context)
        frame = pd.DataFrame({**self.static_frame, **_typed(feats)})
        text_view = truth_view = None
        if text:
            reviews = self.reviews
            text_view = TextView(descriptions=self.descriptions, review_digests=lambda: reviews.digests(sk),
                                 review_sentiment=reviews.mean_score)
        if truth:
            horizon = self.market.config.horizon_days
            last = self.market.calendar.n_days - 1
            truth_view = TrueView(
                params=params, state=self.state,
                contexts=lambda j: DayContext(*cal.at(sk.category, np.minimum(day + j, last))),
                days_left=np.full(len(self), horizon - self.age), gmv_tier1=self.tiers[:, 0],
                roi_target=self.roi_target,
            )
        return Observation(frame=frame, day_key=self.day_key, seed=self.market.config.seed, text=text_view,
                           truth=truth_view)

    def descriptions(self) -> list[str]:
        if self._descriptions is None:
            self._descriptions = self.sk.descriptions()
        return self._descriptions

    def advance(self, proposal: np.ndarray, seed: int | np.ndarray) -> tuple[SafeActions, DayOutcome, tuple | None]:
        """Project the proposals onto A_safe, simulate the day with the given seed(s), record it."""
        if self.age >= self.panel.shape[1]:
            raise ValueError(f"the cohort is past its {self.panel.shape[1]}-day horizon")
        cal, dyn = self.market.calendar, self.market.config.dynamics
        season, promo, dow, comp = cal.at(self.sk.category, self.day)
        safe = project_to_safe(self.state.prev_discount, proposal)
        self.projected += safe.projected
        draws = DayDraws.draw(seed, self.sk.sku_id, self.day_key)
        self.state, out = step(self.params, self.state, safe.discount, DayContext(season, promo, dow, comp), dyn,
                               draws)
        for name in ("exposure", "clicks", "orders", "gmv", "spend", "new_reviews"):
            getattr(self.panel, name)[:, self.age] = getattr(out, name)
        self.panel.discount[:, self.age] = safe.discount
        self.panel.change[:, self.age] = safe.change
        new_reviews = self.reviews.add(self.sk, out.new_reviews.astype(np.int64), self.day_key, seed,
                                       dyn.review_noise)
        self.age += 1
        return safe, out, new_reviews

    def summary(self, groups: np.ndarray, policies: Mapping[str, Policy], gmv_7: np.ndarray | None,
                spend_7: np.ndarray | None, orders_7: np.ndarray | None) -> pd.DataFrame:
        n, horizon = self.panel.shape
        missing = np.full(n, np.nan)
        change = self.panel.change
        return pd.DataFrame({
            "sku_id": self.sk.sku_id,
            "group": groups,
            "policy": [policies[g].name for g in groups],
            "category": self.sk.category_names,
            "list_price": self.sk.list_price,
            "gmv_tier1": self.tiers[:, 0],
            "roi_target": self.roi_target,
            "gmv_7d": missing if gmv_7 is None else gmv_7,
            "spend_7d": missing if spend_7 is None else spend_7,
            "orders_7d": missing if orders_7 is None else orders_7,
            f"gmv_{horizon}d": self.state.cum_gmv,
            f"spend_{horizon}d": self.state.cum_spend,
            f"orders_{horizon}d": self.panel.orders.sum(1),
            "sold_out": self.state.inventory <= 0,
            "projected_actions": self.projected,
            "mean_abs_change": np.abs(change).mean(1),
            "small_move_share": (np.abs(change) < SMALL_MOVE).mean(1),
        })

    def decision_rows(self, obs: Observation, safe: SafeActions, out: DayOutcome,
                      policy_names: pd.Categorical) -> pd.DataFrame:
        """Log rows of the day just simulated (call right after ``advance``)."""
        dates = np.asarray(self.market.calendar.dates(self.day - 1), dtype="datetime64[D]")
        frame = {
            "sku_id": self.sk.sku_id,
            "date": dates,
            "event_timestamp": pd.to_datetime(dates.astype("datetime64[us]")).tz_localize("UTC"),
            **{k: obs.frame[k].to_numpy() for k in DYNAMIC_FEATURES},
            "discount": safe.discount.astype(np.float32),
            "discount_change": safe.change.astype(np.float32),
            "projected": safe.projected,
            "behaviour_policy": policy_names,
            "out_exposure": out.exposure.astype(np.float32),
            "out_clicks": out.clicks.astype(np.float32),
            "out_orders": out.orders.astype(np.float32),
            "out_gmv": out.gmv.astype(np.float32),
            "out_spend": out.spend.astype(np.float32),
            "out_inventory_end": np.rint(self.state.inventory).astype(np.int64),
            "out_new_reviews": out.new_reviews.astype(np.int64),
        }
        return pd.DataFrame(frame)

    def review_rows(self, age: int, rows: np.ndarray, seq: np.ndarray, codes: np.ndarray) -> pd.DataFrame:
        dates = self.market.calendar.dates(self.sk.launch_day + age)
        posted = np.asarray(dates, dtype="datetime64[D]")[rows] + np.timedelta64(1, "D")
        # Review text is a few thousand distinct strings: store it dictionary-encoded.
        index = review_index(self.sk.category[rows], self.sk.noun[rows], codes)
        texts = pd.Categorical.from_codes(self.market._review_text_code[index], categories=self.market.review_texts)
        return pd.DataFrame({
            "sku_id": self.sk.sku_id[rows],
            "review_seq": seq.astype(np.int64),
            "event_timestamp": pd.to_datetime(posted.astype("datetime64[us]")).tz_localize("UTC"),
            "text": texts,
        })


class _ReviewState:
    """Per-SKU review memory: count, summed lexicon score, and the newest codes (newest first)."""

    def __init__(self, n: int, keep: int):
        self.total = np.zeros(n, dtype=np.int64)
        self.score_sum = np.zeros(n)
        self.newest = np.full((n, keep), -1, dtype=np.int64)

    def take(self, rows: np.ndarray) -> _ReviewState:
        out = _ReviewState(len(rows), self.newest.shape[1])
        out.total, out.score_sum, out.newest = self.total[rows].copy(), self.score_sum[rows].copy(), \
            self.newest[rows].copy()
        return out

    def add(self, sk: SkuTable, counts: np.ndarray, day_key: np.ndarray, seed: int | np.ndarray,
            review_noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        rows = np.flatnonzero(counts > 0)
        if rows.size == 0:
            return None
        c = counts[rows]
        rep = np.repeat(rows, c)
        j = np.arange(rep.size) - np.repeat(np.cumsum(c) - c, c)
        sku, dk = sk.sku_id[rep], np.broadcast_to(day_key, counts.shape)[rep]
        sd = np.broadcast_to(np.asarray(seed), counts.shape)[rep]
        base = Stream.REVIEW_SENTIMENT + 3 * j
        sentiment = sk.quality[rep] + review_noise * noise.normal(sd, sku, dk, base)
        codes = review_codes(sentiment_level(sentiment), noise.uniform(sd, sku, dk, base + 1),
                             noise.uniform(sd, sku, dk, base + 2))
        seq = self.total[rep] + j
        self.score_sum += np.bincount(rep, weights=code_score(codes), minlength=len(self.total))
        self.total[rows] += c
        keep = self.newest.shape[1]
        # Only a day's last `keep` reviews can stay in memory; push them oldest first.
        order = j - np.maximum(np.repeat(c, c) - keep, 0)
        for o in range(keep):
            sel = order == o
            if not sel.any():
                break
            r = rep[sel]
            self.newest[r, 1:] = self.newest[r, :-1]
            self.newest[r, 0] = codes[sel]
        return rep, seq, codes

    def mean_score(self) -> np.ndarray:
        return np.divide(self.score_sum, self.total, out=np.zeros_like(self.score_sum), where=self.total > 0)

    def digests(self, sk: SkuTable) -> list[str]:
        out = []
        for i in range(len(self.total)):
            codes = self.newest[i][self.newest[i] >= 0]
            texts = render_reviews(sk.categories[sk.category[i]], int(sk.noun[i]), codes) if codes.size else []
            out.append(review_digest(texts, int(self.total[i])))
        return out


def _static_columns(sk: SkuTable) -> dict[str, Any]:
    columns = sk.static_columns()
    columns["category"] = pd.Categorical(columns["category"], categories=[c.name for c in sk.categories])
    return columns


def _typed(feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cast features to their schema dtypes."""
    out = {}
    for name, values in feats.items():
        dtype = FEATURES[name].dtype
        out[name] = values.astype(bool if dtype == "bool" else dtype)
    return out


def _progress(total: int, enabled: bool, label: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="sku-day batch")
