"""The market simulator: SKUs launch, are priced nightly by policies for their first days, and sell.

The loop runs over SKU age (day 0..horizon-1) and is vectorised over SKUs, in chunks so that memory
stays flat at any number of SKUs; each SKU's calendar day is its launch day plus its age. Every draw is
counter-based (see ``noise``), so results do not depend on chunking or on the neighbours' policies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aigp.action import project_to_safe
from aigp.features import DailyPanel, DecisionContext, SkuStatics, state_features
from aigp.market import noise
from aigp.market.catalog import COMPETITOR_EPOCH, Calendar, SkuTable, Stream, generate_skus, resolve_categories
from aigp.market.config import BEHAVIOUR_POLICIES, MarketConfig
from aigp.market.dynamics import DayContext, DayDraws, MarketState, SkuDynamics, step
from aigp.market.observation import Observation, Policy, TextView, TrueView
from aigp.market.sinks import LogSink
from aigp.market.text import code_score, render_reviews, review_codes, review_digest, sentiment_level
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
                   sink: LogSink | None, bar: object) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        cfg, dyn, cal = self.config, self.config.dynamics, self.calendar
        sk = self.skus.take(index)
        params = self.params.take(index)
        n, horizon = len(sk), cfg.horizon_days
        state = MarketState.at_launch(sk, params)
        panel = DailyPanel.empty(n, horizon)
        tiers = sk.gmv_tiers()
        roi_target = sk.category_values("roi_target")
        statics = SkuStatics(sk.list_price, sk.launch_discount, sk.launch_inventory, tiers[:, 0])
        static_frame = _static_columns(sk)
        reviews = _ReviewState(n, cfg.review_digest_size)
        members = {g: np.flatnonzero(groups == g) for g in policies}
        members = {g: m for g, m in members.items() if m.size}
        needs_text = any(policies[g].requires_text for g in members)
        needs_truth = any(policies[g].requires_truth for g in members)
        projected = np.zeros(n, dtype=np.int64)
        gmv_7 = spend_7 = orders_7 = None
        descriptions: list[str] | None = None

        for age in range(horizon):
            day = sk.launch_day + age
            day_key = self.day_offset + day
            season, promo, dow, comp = cal.at(sk.category, day)
            comp_prev = cal.at(sk.category, day - 1)[3]
            context = DecisionContext(dow, promo, season > 0, comp_prev, params.fair_price_base * comp_prev)
            feats = state_features(panel, age, statics, context)
            frame = pd.DataFrame({**static_frame, **_typed(feats)})

            text = truth = None
            if needs_text:
                if descriptions is None:
                    descriptions = sk.descriptions()
                desc = descriptions
                text = TextView(descriptions=lambda d=desc: d,
                                review_digests=lambda r=reviews: r.digests(sk),
                                review_sentiment=lambda r=reviews: r.mean_score())
            if needs_truth:
                truth = TrueView(
                    params=params, state=state,
                    contexts=lambda j, d=day: DayContext(*cal.at(sk.category, d + j)),
                    days_left=np.full(n, horizon - age), gmv_tier1=tiers[:, 0], roi_target=roi_target,
                )
            obs = Observation(frame=frame, day_key=day_key, seed=cfg.seed, text=text, truth=truth)

            proposal = np.zeros(n)
            for group, rows in members.items():
                sub = obs if rows.size == n else obs.take(rows)
                action = np.asarray(policies[group].act(sub), dtype=np.float64)
                if action.shape != (rows.size,):
                    raise ValueError(f"policy {policies[group].name!r} returned shape {action.shape}, "
                                     f"expected ({rows.size},)")
                proposal[rows] = action
            safe = project_to_safe(state.prev_discount, proposal)
            projected += safe.projected

            draws = DayDraws.draw(cfg.seed, sk.sku_id, day_key)
            state, out = step(params, state, safe.discount, DayContext(season, promo, dow, comp), dyn, draws)
            for name in ("exposure", "clicks", "orders", "gmv", "spend", "new_reviews"):
                getattr(panel, name)[:, age] = getattr(out, name)
            panel.discount[:, age] = safe.discount
            panel.change[:, age] = safe.change
            new_codes = reviews.add(sk, out.new_reviews.astype(np.int64), day_key, cfg.seed, dyn.review_noise)

            if sink is not None:
                sink.write_decisions(self._decision_rows(sk, cal.dates(day), feats, safe, groups, policies, out,
                                                         state))
                if new_codes is not None:
                    sink.write_reviews(self._review_rows(sk, cal.dates(day), *new_codes))
            if age == 6:
                gmv_7, spend_7, orders_7 = state.cum_gmv.copy(), state.cum_spend.copy(), panel.orders.sum(1)
            if bar is not None:
                bar.update(1)  # type: ignore[attr-defined]

        summary = pd.DataFrame({
            "sku_id": sk.sku_id,
            "group": groups,
            "policy": [policies[g].name for g in groups],
            "category": sk.category_names,
            "list_price": sk.list_price,
            "gmv_tier1": tiers[:, 0],
            "roi_target": roi_target,
            "gmv_7d": gmv_7 if gmv_7 is not None else np.full(n, np.nan),
            "spend_7d": spend_7 if spend_7 is not None else np.full(n, np.nan),
            "orders_7d": orders_7 if orders_7 is not None else np.full(n, np.nan),
            f"gmv_{horizon}d": state.cum_gmv,
            f"spend_{horizon}d": state.cum_spend,
            f"orders_{horizon}d": panel.orders.sum(1),
            "sold_out": state.inventory <= 0,
            "projected_actions": projected,
            "mean_abs_change": np.abs(panel.change).mean(1),
            "small_move_share": (np.abs(panel.change) < SMALL_MOVE).mean(1),
        })
        return summary, panel.change.copy(), panel.discount.copy()

    def _decision_rows(self, sk: SkuTable, dates: np.ndarray, feats: dict[str, np.ndarray], safe: object,
                       groups: np.ndarray, policies: Mapping[str, Policy], out: object,
                       state: MarketState) -> pd.DataFrame:
        dates = np.asarray(dates, dtype="datetime64[D]")
        frame = {
            "sku_id": sk.sku_id,
            "date": dates,
            "event_timestamp": pd.to_datetime(dates.astype("datetime64[us]")).tz_localize("UTC"),
            **_typed({k: feats[k] for k in DYNAMIC_FEATURES}),
            "discount": safe.discount.astype(np.float32),  # type: ignore[attr-defined]
            "discount_change": safe.change.astype(np.float32),  # type: ignore[attr-defined]
            "projected": safe.projected,  # type: ignore[attr-defined]
            "behaviour_policy": np.array([policies[g].name for g in groups], dtype=object),
            "out_exposure": out.exposure.astype(np.float32),  # type: ignore[attr-defined]
            "out_clicks": out.clicks.astype(np.float32),  # type: ignore[attr-defined]
            "out_orders": out.orders.astype(np.float32),  # type: ignore[attr-defined]
            "out_gmv": out.gmv.astype(np.float32),  # type: ignore[attr-defined]
            "out_spend": out.spend.astype(np.float32),  # type: ignore[attr-defined]
            "out_inventory_end": np.rint(state.inventory).astype(np.int64),
            "out_new_reviews": out.new_reviews.astype(np.int64),  # type: ignore[attr-defined]
        }
        return pd.DataFrame(frame)

    def _review_rows(self, sk: SkuTable, dates: np.ndarray, rows: np.ndarray, seq: np.ndarray,
                     codes: np.ndarray) -> pd.DataFrame:
        posted = np.asarray(dates, dtype="datetime64[D]")[rows] + np.timedelta64(1, "D")
        texts = np.empty(len(rows), dtype=object)
        cat, noun = sk.category[rows], sk.noun[rows]
        for c, nn in set(zip(cat.tolist(), noun.tolist(), strict=True)):
            m = (cat == c) & (noun == nn)
            texts[m] = render_reviews(self.categories[c], nn, codes[m])
        return pd.DataFrame({
            "sku_id": sk.sku_id[rows],
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

    def add(self, sk: SkuTable, counts: np.ndarray, day_key: np.ndarray, seed: int,
            review_noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        rows = np.flatnonzero(counts > 0)
        if rows.size == 0:
            return None
        c = counts[rows]
        rep = np.repeat(rows, c)
        j = np.arange(rep.size) - np.repeat(np.cumsum(c) - c, c)
        sku, dk = sk.sku_id[rep], np.broadcast_to(day_key, counts.shape)[rep]
        base = Stream.REVIEW_SENTIMENT + 3 * j
        sentiment = sk.quality[rep] + review_noise * noise.normal(seed, sku, dk, base)
        codes = review_codes(sentiment_level(sentiment), noise.uniform(seed, sku, dk, base + 1),
                             noise.uniform(seed, sku, dk, base + 2))
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


def _static_columns(sk: SkuTable) -> dict[str, object]:
    tiers = sk.gmv_tiers()
    return {
        "sku_id": sk.sku_id,
        "category": pd.Categorical(sk.category_names, categories=[c.name for c in sk.categories]),
        "brand": sk.brand_names,
        "brand_tier": sk.brand_tiers,
        "list_price": sk.list_price.astype(np.float32),
        "unit_cost": sk.unit_cost.astype(np.float32),
        "launch_inventory": sk.launch_inventory.astype(np.int64),
        "gmv_tier1": tiers[:, 0].astype(np.float32),
        "gmv_tier2": tiers[:, 1].astype(np.float32),
        "gmv_tier3": tiers[:, 2].astype(np.float32),
        "roi_target": sk.category_values("roi_target").astype(np.float32),
        "category_ctr": sk.category_values("ctr").astype(np.float32),
        "category_cvr": sk.category_values("cvr").astype(np.float32),
    }


def _typed(feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cast features to their schema dtypes."""
    out = {}
    for name, values in feats.items():
        dtype = FEATURES[name].dtype
        out[name] = values.astype(bool if dtype == "bool" else dtype)
    return out


def _progress(total: int, enabled: bool, label: str) -> object:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=label, unit="sku-day batch")
