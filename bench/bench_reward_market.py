"""Does the LTVE's reward rank policies the way the market does? (issue 20) Eq. 3 summed over each SKU's first 14
days in a paired counterfactual A/B of rule policies (no learning: the reward's own validity, not a critic's),
against 14-day GMV, ROI and MAR; beside it the same reward with progress read as *contribution toward the
milestone* (a day's GMV counts only until the SKU's cumulative GMV reaches its tier-1 milestone; references refitted
the same way), the reading under which buying GMV past the milestone would stop paying.

    .venv/bin/python -m bench.bench_reward_market [--logs DIR | --skus 6000] [--ab-skus 240] [--ab-seed 11]

References are fitted on the training window of the log as ``aigp.ltve.train`` fits them (latest 20% of launches
held out, 10% for validation). Policies: price-sales (fitted on the log), the knowledge-base teacher, the logged
expert, static, aggressive, conservative, random walk, random, and the oracle.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logs", type=Path, default=None, help="a market log (default: simulate one under --root)")
    p.add_argument("--root", type=Path, default=Path("runs/bench/reward_market"))
    p.add_argument("--skus", type=int, default=6000, help="SKUs of the simulated log (the evaluation's 6,000)")
    p.add_argument("--launch-days", type=int, default=90)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--ab-skus", type=int, default=240)
    p.add_argument("--ab-seed", type=int, default=11, help="the A/B cohort's seed (the evaluation's 11)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--section", default="reward_market")
    p.add_argument("--no-write", action="store_true")
    return p.parse_args()


def milestone_progress(days: Any) -> Any:
    """Each day's contribution toward the 14-day GMV milestone: (min(cum, tier) − min(cum before, tier)) / tier,
    cumulating over each SKU's days in order of age."""
    import numpy as np
    import pandas as pd

    ordered = days.sort_values(["sku_id", "days_since_launch"], kind="stable")
    tier = ordered["gmv_tier1"].to_numpy(np.float64)
    gmv = ordered["out_gmv"].to_numpy(np.float64)
    cum = ordered.groupby("sku_id", sort=False)["out_gmv"].cumsum().to_numpy(np.float64)
    progress = (np.minimum(cum, tier) - np.minimum(cum - gmv, tier)) / tier
    return pd.Series(progress, index=ordered.index).reindex(days.index).to_numpy()


def main() -> None:
    import numpy as np
    import pandas as pd
    from scipy.stats import kendalltau

    from aigp.ab.experiment import ABConfig, run_counterfactual
    from aigp.distillation.teacher import TeacherPolicy
    from aigp.ltve.dataset import prepare_frame, time_split, training_frame_from_logs
    from aigp.ltve.reward import (
        RewardConfig,
        RewardReferences,
        daily_rewards,
        fit_references,
        reached_milestone,
        sku_totals,
    )
    from aigp.market.config import MarketConfig
    from aigp.market.logs import open_logs, simulate_to_directory
    from aigp.market.policies import (
        AggressivePolicy,
        ConservativePolicy,
        ExpertPolicy,
        OraclePolicy,
        PriceSalesPolicy,
        RandomPolicy,
        RandomWalkPolicy,
        StaticPolicy,
    )
    from bench._report import markdown_table, write_section

    args = parse_args()
    started, cpu0 = time.perf_counter(), time.process_time()
    if args.logs is not None:
        logs = open_logs(args.logs)
    else:
        logs = simulate_to_directory(MarketConfig.build(n_skus=args.skus, launch_days=args.launch_days, seed=args.seed),
                                     args.root / "market", overwrite=True)
    frame = prepare_frame(training_frame_from_logs(logs.path))
    train = time_split(frame, eval_share=0.2, validation_share=0.1).train
    paper = RewardConfig()
    refs = fit_references(train, paper)
    # the capped reading: progress references are the successful SKUs' mean *capped* daily progress (each of them
    # collects exactly 1.0 over its 14 days); the ROI references are eq. 3's
    totals = sku_totals(train)
    winners = train[train["sku_id"].isin(totals.index[reached_milestone(totals)])].copy()
    winners["out_gmv"] = milestone_progress(winners) * winners["gmv_tier1"] * (1 + 1e-9)  # float-safe >= tier
    capped_progress = fit_references(winners, RewardConfig(success="gmv_tier")).progress
    capped_refs = RewardReferences(refs.horizon_days, capped_progress, refs.log_roi, refs.success_skus)
    scored: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def score(days: pd.DataFrame) -> np.ndarray:
        gmv, spend = days["out_gmv"].to_numpy(np.float64), days["out_spend"].to_numpy(np.float64)
        tier, category = days["gmv_tier1"].to_numpy(np.float64), days["category"].astype(str).to_numpy()
        age = days["days_since_launch"].to_numpy(np.int64)
        reward = daily_rewards(gmv, spend, tier, category, age, refs, paper)
        roi_term = daily_rewards(gmv, spend, tier, category, age, capped_refs, RewardConfig(lambda_progress=0.0))
        capped = paper.lambda_progress * (milestone_progress(days) - capped_refs.lookup(category, age)[0]) + roi_term
        scored.append((days["sku_id"].to_numpy(), age, reward, capped))
        return reward

    decisions = logs.read("decisions.parquet")
    policies: dict[str, Any] = {
        "price_sales": PriceSalesPolicy.fit(decisions[decisions["sku_id"].isin(train["sku_id"].unique())],
                                            logs.read("skus.parquet"), seed=args.seed),
        "kb_teacher": TeacherPolicy(), "expert": ExpertPolicy(), "static": StaticPolicy(),
        "aggressive": AggressivePolicy(), "conservative": ConservativePolicy(), "random_walk": RandomWalkPolicy(),
        "random": RandomPolicy(), "oracle": OraclePolicy(logs.config.dynamics)}
    config = ABConfig.build(allocation={g: 1.0 / len(policies) for g in policies}, control="price_sales",
                            ceiling="oracle", seed=args.ab_seed, cohort_skus=args.ab_skus, cohort_launch_days=14,
                            bootstrap=args.bootstrap)
    result = run_counterfactual(config, policies, daily_value=score)
    rows = []
    for group, (sku, age, reward, capped) in zip(policies, scored, strict=True):
        m = result.metrics.query("group == @group and horizon == 14").set_index("metric")["value"]
        first = age < 14
        n = len(np.unique(sku))
        rows.append({"policy": group, "GMV / SKU": float(m["gmv"]), "ROI": float(m["roi"]), "MAR": float(m["mar"]),
                     "eq. 3 reward / SKU": float(reward[first].sum() / n),
                     "capped-progress reward / SKU": float(capped[first].sum() / n)})
    table = pd.DataFrame(rows)
    taus = [{"reward": col, **{f"τ vs {k}": float(kendalltau(table[col], table[k]).statistic)
                                for k in ("GMV / SKU", "ROI", "MAR")},
             "most rewarded": str(table.loc[table[col].idxmax(), "policy"])}
            for col in ("eq. 3 reward / SKU", "capped-progress reward / SKU")]
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    body = (f"Log `{logs.path}` ({frame['sku_id'].nunique():,} SKUs), references on its training window "
            f"({refs.success_skus.get('*', 0):,} SKUs reached the milestone); A/B cohort {args.ab_skus} SKUs "
            f"launched over 14 days (seed {args.ab_seed}), every policy on the same SKUs. {wall:.0f} s wall, "
            f"{cpu:.0f} s CPU.\n\n" + markdown_table(rows) + "\n\nKendall τ over the "
            f"{len(table)} policies:\n\n" + markdown_table(taus))
    print(body)
    if not args.no_write:
        write_section(args.section, "Does the LTVE's reward rank policies as the market does? (issue 20: eq. 3 and "
                      "a milestone-capped reading, rule policies)", body,
                      "python -m bench.bench_reward_market " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
