"""The simulated A/B of the baselines (issue 2's acceptance table), hash-partitioned and paired.

    .venv/bin/python -m bench.bench_ab_baselines [--skus 60000] [--paired-skus 12000]

Price-sales is fitted on a logged history of the behaviour mix; then a fresh cohort is hash-partitioned
into random / static / expert / price-sales / oracle (20% each) and priced for 14 days. The paired table
runs every policy on the same SKUs (only a simulator can), which gives much tighter intervals.
"""

from __future__ import annotations

import argparse
import time

from bench._report import write_section


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skus", type=int, default=60_000)
    parser.add_argument("--paired-skus", type=int, default=12_000)
    parser.add_argument("--history-skus", type=int, default=20_000)
    args = parser.parse_args()

    from aigp.ab.experiment import ABConfig, run_ab, run_counterfactual
    from aigp.market.logs import logged_history
    from aigp.market.policies import build_baselines

    cfg = ABConfig.build(cohort_skus=args.skus, history_skus=args.history_skus)
    started = time.perf_counter()
    policies = build_baselines(list(cfg.allocation), dynamics=cfg.cohort_market().dynamics, seed=cfg.seed,
                               history=lambda: logged_history(cfg.history_market())[:2])
    hashed = run_ab(cfg, policies)
    paired = run_counterfactual(cfg.with_updates(cohort_skus=args.paired_skus), policies)
    seconds = time.perf_counter() - started
    ps = hashed.metrics.query("group == 'price_sales' and horizon == 14").set_index("metric").value
    oracle = hashed.metrics.query("group == 'oracle' and horizon == 14").set_index("metric").value
    body = (
        f"History: {cfg.history_skus:,} logged SKUs (price-sales fitted on its price-test rows). "
        f"Cohort: {args.skus:,} new SKUs launching over {cfg.cohort_launch_days} days from {cfg.cohort_start}, "
        f"salt `{cfg.salt}`; paired run on {args.paired_skus:,} of them. Wall time {seconds:.0f} s.\n\n"
        "### Hash-partitioned A/B\n\n" + hashed.markdown() + "\n### Paired counterfactual\n\n" + paired.markdown()
        + f"\nAcceptance: oracle vs price-sales at 14 days: GMV {oracle.gmv / ps.gmv - 1:+.1%} at ROI "
        f"{oracle.roi:.2f} vs {ps.roi:.2f}; price-sales vs random: see the MAR and ROI columns."
    )
    print(body)
    write_section("ab_baselines", "Simulated A/B of the baselines (14 days)", body,
                  f"python -m bench.bench_ab_baselines --skus {args.skus} --paired-skus {args.paired_skus}")


if __name__ == "__main__":
    main()
