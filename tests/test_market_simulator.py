"""The market simulator: determinism, safety, the mechanisms the paper's method depends on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aigp.action import is_safe
from aigp.config import ConfigError
from aigp.features import DecisionContext, SkuStatics, panel_from_log, state_features
from aigp.market import Market, MarketConfig
from aigp.market.policies import (
    AggressivePolicy,
    ExpertPolicy,
    OraclePolicy,
    PriceSalesPolicy,
    RandomPolicy,
    StaticPolicy,
    behaviour_policies,
)
from aigp.market.rollout import branch_outcomes
from aigp.market.simulator import Cohort
from aigp.market.sinks import MemorySink
from aigp.market.text import code_score, read_review_sentiment, render_reviews, review_table
from aigp.schema import DYNAMIC_FEATURES


def _log(config: MarketConfig, policies=None, groups=None, chunk_size=65_536):
    market = Market(config)
    sink = MemorySink()
    policies = policies or behaviour_policies()
    result = market.run(policies, market.behaviour_groups() if groups is None and len(policies) > 1 else groups,
                        sink=sink, chunk_size=chunk_size)
    return market, result, sink


def test_same_seed_same_market_and_chunking_changes_nothing() -> None:
    cfg = MarketConfig.build(n_skus=150, launch_days=10, seed=3)
    _, r1, s1 = _log(cfg)
    _, r2, s2 = _log(cfg, chunk_size=37)
    pd.testing.assert_frame_equal(s1.decisions.sort_values(["sku_id", "days_since_launch"]).reset_index(drop=True),
                                  s2.decisions.sort_values(["sku_id", "days_since_launch"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(r1.summary, r2.summary)
    _, r3, _ = _log(cfg.with_updates(seed=4))
    assert not np.allclose(r1.summary["gmv_14d"], r3.summary["gmv_14d"])


def test_a_skus_outcome_does_not_depend_on_its_neighbours_policies() -> None:
    market = Market(MarketConfig.build(n_skus=60, launch_days=5, seed=2))
    alone = market.run({"static": StaticPolicy()}).summary
    groups = np.where(np.arange(60) % 2 == 0, "static", "random")
    mixed = market.run({"static": StaticPolicy(), "random": RandomPolicy()}, groups).summary
    even = np.arange(60) % 2 == 0
    np.testing.assert_allclose(alone["gmv_14d"][even], mixed["gmv_14d"][even])


def test_per_sku_python_loop_reproduces_the_vectorised_model() -> None:
    from bench.sim_loop import simulate_static_loop

    market, _, sink = _log(MarketConfig.build(n_skus=40, launch_days=30, seed=9), {"static": StaticPolicy()})
    log = sink.decisions.sort_values(["sku_id", "days_since_launch"])
    loop = simulate_static_loop(market, np.arange(40))
    np.testing.assert_array_equal(log["out_orders"].to_numpy().reshape(40, 14), loop["orders"])
    np.testing.assert_allclose(log["out_gmv"].to_numpy().reshape(40, 14), loop["gmv"], rtol=1e-6)
    np.testing.assert_allclose(log["out_spend"].to_numpy().reshape(40, 14), loop["spend"], rtol=1e-5)


def test_logged_features_equal_the_features_recomputed_from_raw_outcomes() -> None:
    market, _, sink = _log(MarketConfig.build(n_skus=80, launch_days=10, seed=1))
    log = sink.decisions.sort_values(["sku_id", "days_since_launch"]).reset_index(drop=True)
    skus, panel = panel_from_log(log, 14)
    order = np.searchsorted(market.skus.sku_id, skus)
    sk = market.skus.take(order)
    statics = SkuStatics(sk.list_price, sk.launch_discount, sk.launch_inventory, sk.gmv_tiers()[:, 0])
    for t in (0, 1, 5, 13):
        rows = log[log.days_since_launch == t].set_index("sku_id").loc[skus]
        ctx = DecisionContext(rows.day_of_week.to_numpy(), rows.is_promotion.to_numpy(), rows.in_season.to_numpy(),
                              rows.competitor_price_index.to_numpy(), rows.competitor_median_price.to_numpy())
        feats = state_features(panel, t, statics, ctx)
        for name in DYNAMIC_FEATURES:
            np.testing.assert_allclose(feats[name], rows[name].to_numpy(np.float64), rtol=2e-5, atol=1e-3,
                                       err_msg=f"{name} at t={t}")


def test_no_built_in_policy_ever_leaves_a_safe(market_logs) -> None:
    cfg = MarketConfig.build(n_skus=120, launch_days=5, seed=8, sku_id_offset=5_000_000)
    price_sales = PriceSalesPolicy.fit(market_logs.read("decisions.parquet"), market_logs.read("skus.parquet"),
                                       max_iter=30)
    policies = {**behaviour_policies(), "random": RandomPolicy(), "price_sales": price_sales,
                "oracle": OraclePolicy(cfg.dynamics)}
    groups = np.array(list(policies))[np.arange(120) % len(policies)]
    _market, result, sink = _log(cfg, policies, groups)
    log = sink.decisions
    assert (result.summary["projected_actions"] == 0).all(), result.summary.groupby("policy").projected_actions.sum()
    assert is_safe(log["prev_discount"], log["discount_change"]).all()
    assert log["discount"].between(0.5, 1.0).all()


def test_reviews_carry_the_quality_signal_that_structured_data_only_partly_has() -> None:
    market, _, sink = _log(MarketConfig.build(n_skus=3000, launch_days=20, seed=12), {"static": StaticPolicy()})
    reviews = sink.reviews
    score = reviews.assign(s=reviews.text.map(read_review_sentiment)).groupby("sku_id").s.agg(["mean", "count"])
    truth = market.skus.truth_frame().set_index("sku_id")
    joined = score[score["count"] >= 3].join(truth)
    assert np.corrcoef(joined["mean"], joined["quality"])[0, 1] > 0.6

    # Day-7 structured state vs the same plus the reviews read so far: how much of quality each explains.
    day7 = sink.decisions[sink.decisions.days_since_launch == 7].set_index("sku_id")
    seen = reviews[reviews.event_timestamp <= day7["event_timestamp"].reindex(reviews.sku_id).to_numpy()]
    text = seen.assign(s=seen.text.map(read_review_sentiment)).groupby("sku_id").s.mean().reindex(day7.index)
    sk = market.sku_frame().set_index("sku_id").loc[day7.index]
    structured = pd.DataFrame({"lcvr": np.log(day7.cvr_7d + 1e-3) - np.log(sk.category_cvr),
                               "lctr": np.log(day7.ctr_7d + 1e-3) - np.log(sk.category_ctr),
                               "pos": day7.price_position, "d": day7.prev_discount}).fillna(0)
    q = truth.loc[day7.index, "quality"].to_numpy()

    def r2(x: pd.DataFrame) -> float:
        a = np.column_stack([np.ones(len(x)), x.to_numpy()])
        coef = np.linalg.lstsq(a, q, rcond=None)[0]
        return 1 - np.var(q - a @ coef) / np.var(q)

    blind = r2(structured)
    with_text = r2(structured.assign(text=text.fillna(0), has=text.notna().astype(float)))
    print(f"quality R2 from day-7 numbers {blind:.2f}, with reviews {with_text:.2f}")
    assert blind < 0.7, f"text-blind R2={blind:.2f}: quality should not be recoverable from numbers alone"
    assert with_text > blind + 0.1, f"reviews should add signal: {blind:.2f} -> {with_text:.2f}"


def test_rendered_reviews_read_back_to_their_sentiment_level() -> None:
    market = Market(MarketConfig.build(n_skus=10))
    for cat in market.categories:
        for noun in range(len(cat.nouns)):
            table = review_table(cat, noun)
            scores = [read_review_sentiment(t) for t in table]
            np.testing.assert_array_equal(scores, code_score(np.arange(len(table))))
    assert render_reviews(market.categories[0], 0, np.array([0]))[0]


def test_a_discount_today_raises_traffic_for_the_next_days() -> None:
    market = Market(MarketConfig.build(n_skus=400, launch_days=10, seed=6))
    cohort = Cohort(market, np.arange(400))
    for _ in range(3):
        cohort.advance(np.zeros(400), market.config.seed)
    twins = cohort.repeat(2)  # rows 2i (hold) and 2i+1 (discount) share history and future noise
    first = np.tile([0.0, -0.15], 400)
    exposure = []
    for day in range(4):
        _, out, _ = twins.advance(first if day == 0 else np.zeros(800), market.config.seed)
        exposure.append(out.exposure.reshape(400, 2))
    for day in (1, 2, 3):
        held, cut = exposure[day][:, 0], exposure[day][:, 1]
        live = held > 0
        assert (cut[live] >= held[live]).mean() > 0.9 and cut[live].sum() > 1.05 * held[live].sum(), day


def test_stock_outs_stop_sales() -> None:
    _, _result, sink = _log(MarketConfig.build(n_skus=300, launch_days=10, seed=2), {"aggressive": AggressivePolicy()})
    log = sink.decisions
    empty = log[log.inventory == 0]
    assert len(empty) > 0, "aggressive discounting should sell some SKUs out"
    assert (empty.out_orders == 0).all() and (empty.out_exposure == 0).all() and (empty.out_spend == 0).all()
    assert (log.out_orders <= log.inventory).all()


def test_branch_with_the_market_seed_and_logging_policy_reproduces_the_log() -> None:
    cfg = MarketConfig.build(n_skus=50, launch_days=5, seed=21)
    market, _, sink = _log(cfg)
    log = sink.decisions.set_index(["sku_id", "days_since_launch"])
    idx, ages = np.array([3, 11, 30]), np.array([0, 4, 12])
    groups = market.behaviour_groups()
    for i, age in zip(idx, ages, strict=True):
        sku = int(market.skus.sku_id[i])
        logged = float(log.loc[(sku, age), "discount_change"])
        policy = behaviour_policies()[groups[i]]
        b = branch_outcomes(market, np.array([i]), np.array([age]), np.array([[logged]]),
                            history_policies=behaviour_policies(), history_groups=groups, continuation=policy,
                            n_rollouts=1, seeds=np.array([cfg.seed]))
        expected = log.loc[sku].loc[age:, "out_gmv"].to_numpy()
        np.testing.assert_allclose(b.gmv[0, 0, 0, : 14 - age], expected, rtol=1e-5)


def test_expert_and_oracle_respect_the_business_goals_better_than_random() -> None:
    market = Market(MarketConfig.build(n_skus=600, launch_days=20, seed=31))
    from aigp.ab.experiment import sku_outcomes

    res = {name: sku_outcomes(market.run({name: p}).summary, 14)
           for name, p in {"random": RandomPolicy(), "expert": ExpertPolicy(),
                           "oracle": OraclePolicy(market.config.dynamics)}.items()}
    roi = {k: v.gmv.sum() / v.spend.sum() for k, v in res.items()}
    assert res["oracle"].mar.mean() > res["random"].mar.mean() + 0.2
    assert roi["oracle"] > 1.5 * roi["random"] and roi["expert"] > 1.5 * roi["random"]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("n_skus", -5, "n_skus"),
    ("categories", ("shoes", "spaceships"), "spaceships"),
    ("launch_discounts", (0.9, 0.3), "launch_discounts"),
    ("behaviour_mix", {"expert": 0.5, "static": 0.2}, "behaviour_mix"),
    ("horizon_days", 0, "horizon_days"),
])
def test_bad_configuration_fails_naming_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MarketConfig.build(**{field: value})
