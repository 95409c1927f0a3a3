"""Why the simulator's dynamics are what they are: the evidence, reproducible.

    .venv/bin/python -m bench.bench_simulator_calibration

Everything here was decided before any learned policy existed, judging only the hand-written baselines and
the oracle, and is re-run whenever the dynamics change:
1. Price response: the true order uplift of a discount change (branched from the same states) against what
   the price-sales demand model predicts, fitted on all logged rows vs on price-test rows only.
2. Ranking feedback: how baseline and oracle outcomes move with its strength (kappa, velocity EMA rate),
   i.e. how much foresight is worth over a myopic optimiser.
3. Information: how much of a SKU's latent quality structured day-7 data explains, with and without reviews.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from bench._report import markdown_table, write_section

HISTORY = 12_000
COHORT = 2_500


def _price_response() -> list[dict]:
    from sklearn.ensemble import HistGradientBoostingRegressor

    from aigp.action import project_to_safe
    from aigp.market import Market, MarketConfig
    from aigp.market.logs import logged_history
    from aigp.market.policies import ExpertPolicy, PriceSalesPolicy
    from aigp.market.simulator import Cohort

    decisions, skus, _ = logged_history(MarketConfig.build(n_skus=HISTORY, seed=11))
    market = Market(MarketConfig.build(n_skus=1500, seed=11, sku_id_offset=10_000_000,
                                       start_date=dt.date(2026, 8, 15), launch_days=28))
    changes = np.array([-0.2, -0.1, 0.0, 0.1])
    cohort, expert, probes = Cohort(market, np.arange(1500)), ExpertPolicy(), {}
    for age in range(10):
        if age in (0, 4, 9):
            obs = cohort.observe()
            twins = cohort.repeat(len(changes))
            safe = project_to_safe(twins.state.prev_discount, np.tile(changes, 1500))
            _, out, _ = twins.advance(safe.change, 777)
            probes[age] = (obs.frame, out.orders.reshape(1500, -1), safe.discount.reshape(1500, -1))
        obs = cohort.observe(text=True)
        cohort.advance(expert.act(obs), market.config.seed)

    rows = []
    frame = decisions.merge(skus.drop(columns=["description"]), on="sku_id")
    categories = sorted(frame["category"].astype(str).unique())
    fits = {"all logged rows": frame, "price-test rows": frame[frame.behaviour_policy == "random_walk"]}
    models = {}
    for label, data in fits.items():
        x = PriceSalesPolicy._design(data, data["discount"].to_numpy(float), categories)
        model = HistGradientBoostingRegressor(loss="poisson", max_iter=200, max_leaf_nodes=63, min_samples_leaf=40,
                                              random_state=0,
                                              categorical_features=[PriceSalesPolicy.DESIGN.index("category_code")])
        models[label] = model.fit(x, data["out_orders"].to_numpy(float))
    for age, (obs_frame, orders, discount) in probes.items():
        row = {"day of life": age, "true": " / ".join(f"{v:.2f}" for v in orders.sum(0) / orders[:, 2].sum())}
        for label, model in models.items():
            pred = np.stack([model.predict(PriceSalesPolicy._design(obs_frame, discount[:, k], categories))
                             for k in range(len(changes))], 1)
            row[label] = " / ".join(f"{v:.2f}" for v in pred.sum(0) / pred[:, 2].sum())
        rows.append(row)
    return rows


def _price_sales_fits() -> list[dict]:
    """The policy each fit produces, on two history sizes (same test SKUs)."""
    from aigp.ab.experiment import sku_outcomes
    from aigp.market import Market, MarketConfig
    from aigp.market.logs import logged_history
    from aigp.market.policies import PriceSalesPolicy

    market = Market(MarketConfig.build(n_skus=COHORT, seed=11, sku_id_offset=10_000_000,
                                       start_date=dt.date(2026, 8, 15), launch_days=28))
    rows = []
    for history in (HISTORY, 20_000):
        decisions, skus, _ = logged_history(MarketConfig.build(n_skus=history, seed=11))
        for label, tests in (("price-test rows", ("random_walk",)), ("all logged rows", None)):
            policy = PriceSalesPolicy.fit(decisions, skus, seed=0, price_test_policies=tests)
            run = market.run({"price_sales": policy})
            o = sku_outcomes(run.summary, 14)
            rows.append({"history SKUs": f"{history:,}", "fitted on": label, "GMV / SKU": round(o.gmv.mean()),
                         "ROI": round(o.gmv.sum() / o.spend.sum(), 2), "MAR": f"{o.mar.mean():.1%}",
                         "days at list price": f"{np.mean(run.discounts > 0.99):.0%}"})
    return rows


def _feedback() -> list[dict]:
    from aigp.ab.experiment import sku_outcomes
    from aigp.market import Market, MarketConfig
    from aigp.market.config import DynamicsConfig
    from aigp.market.logs import logged_history
    from aigp.market.policies import OraclePolicy, PriceSalesPolicy, StaticPolicy

    rows = []
    default = DynamicsConfig()
    for kappa, rate in ((0.5, 0.4), (0.7, 0.25), (default.ranking_velocity_power, default.velocity_rate)):
        dyn = DynamicsConfig.build(ranking_velocity_power=kappa, velocity_rate=rate)
        decisions, skus, _ = logged_history(MarketConfig.build(n_skus=HISTORY, seed=11, dynamics=dyn))
        price_sales = PriceSalesPolicy.fit(decisions, skus, seed=0)
        market = Market(MarketConfig.build(n_skus=COHORT, seed=11, sku_id_offset=10_000_000,
                                           start_date=dt.date(2026, 8, 15), launch_days=28, dynamics=dyn))
        out = {}
        for name, policy in {"static": StaticPolicy(), "price_sales": price_sales,
                             "oracle": OraclePolicy(dyn)}.items():
            run = market.run({name: policy})
            o = sku_outcomes(run.summary, 14)
            out[name] = (o.gmv.mean(), o.gmv.sum() / o.spend.sum(), o.mar.mean(), run.summary.sold_out.mean())
        rows.append({
            "kappa / velocity EMA": f"{kappa} / {rate}" + (" (default)" if kappa == default.ranking_velocity_power
                                                           and rate == default.velocity_rate else ""),
            **{f"{k} GMV, ROI, MAR, sold out": f"{v[0]:,.0f}, {v[1]:.2f}, {v[2]:.1%}, {v[3]:.0%}"
               for k, v in out.items()},
            "oracle vs price-sales GMV (paired)": f"{out['oracle'][0] / out['price_sales'][0] - 1:+.1%}",
        })
    return rows


def _information() -> dict:
    from aigp.market import Market, MarketConfig
    from aigp.market.policies import StaticPolicy
    from aigp.market.sinks import MemorySink
    from aigp.market.text import read_review_sentiment

    market = Market(MarketConfig.build(n_skus=3000, launch_days=20, seed=12))
    sink = MemorySink()
    market.run({"static": StaticPolicy()}, sink=sink)
    day7 = sink.decisions[sink.decisions.days_since_launch == 7].set_index("sku_id")
    reviews = sink.reviews
    seen = reviews[reviews.event_timestamp <= day7["event_timestamp"].reindex(reviews.sku_id).to_numpy()]
    text = seen.assign(s=seen.text.astype(str).map(read_review_sentiment)).groupby("sku_id").s.mean()
    text = text.reindex(day7.index)
    sk = market.sku_frame().set_index("sku_id").loc[day7.index]
    x = pd.DataFrame({"lcvr": np.log(day7.cvr_7d + 1e-3) - np.log(sk.category_cvr),
                      "lctr": np.log(day7.ctr_7d + 1e-3) - np.log(sk.category_ctr),
                      "pos": day7.price_position, "d": day7.prev_discount}).fillna(0)
    q = market.skus.truth_frame().set_index("sku_id").loc[day7.index, "quality"].to_numpy()

    def r2(frame: pd.DataFrame) -> float:
        a = np.column_stack([np.ones(len(frame)), frame.to_numpy()])
        resid = q - a @ np.linalg.lstsq(a, q, rcond=None)[0]
        return float(1 - resid.var() / q.var())

    return {"structured only": r2(x), "with reviews": r2(x.assign(t=text.fillna(0), h=text.notna().astype(float))),
            "SKUs with a review by day 7": float(text.notna().mean())}


def main() -> None:
    response = _price_response()
    fits = _price_sales_fits()
    feedback = _feedback()
    info = _information()
    body = (
        "### 1. Price response: order uplift for a discount change of -0.2 / -0.1 / 0 / +0.1 (x orders at hold)\n\n"
        + markdown_table(response)
        + "\n\nThe resulting price-sales policy by fit (same test SKUs, 14 days):\n\n" + markdown_table(fits)
        + "\n\nThe price-sales baseline is fitted on price-test rows (the random-walk share of the logs): on all "
        "rows the logged prices are confounded with how a SKU is doing, and whether the model still sees the "
        "price response depends on the sample; when it does not, its optimiser prices nearly everything at list "
        "price.\n\n"
        "### 2. Ranking feedback strength (same SKUs under each policy, 14 days)\n\n"
        + markdown_table(feedback)
        + "\n\nStronger ranking feedback (new products' traffic following early sales velocity) is what makes "
        "foresight worth something over a myopic optimiser; the default keeps launch stock-outs to a minority "
        "under the baselines.\n\n"
        "### 3. What structured data and reviews reveal about latent quality (R^2, day 7, static policy)\n\n"
        + markdown_table([{k: (f"{v:.2f}" if "SKUs" not in k else f"{v:.0%}") for k, v in info.items()}])
    )
    print(body)
    write_section("simulator_calibration", "Simulator calibration evidence", body,
                  "python -m bench.bench_simulator_calibration")


if __name__ == "__main__":
    main()
