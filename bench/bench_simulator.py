"""Simulator throughput: a paper-scale log vs a straightforward per-SKU Python loop of the same model.

    .venv/bin/python -m bench.bench_simulator [--skus 360000] [--loop-skus 300]

1. The full log (behaviour mix, decision-time features, reviews, parquet) of --skus SKUs x 14 days, in a
   child process so that its peak memory is measured on its own.
2. The vectorised simulator alone (static policy, no log) on the same SKUs.
3. ``bench.sim_loop.simulate_static_loop`` (one SKU and one day at a time) on --loop-skus of them.
Targets (issue 2): 5M SKU-days in under 2 minutes, peak memory under 4 GiB, at least 50x the loop.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from bench._report import markdown_table, write_section

CHILD = """
import json, resource, sys, time
from aigp.market.config import MarketConfig
from aigp.market.logs import simulate_to_directory
cfg = MarketConfig.build(n_skus=int(sys.argv[1]), launch_days=166, seed=7)
t = time.perf_counter()
logs = simulate_to_directory(cfg, sys.argv[2], overwrite=True)
print(json.dumps({"seconds": time.perf_counter() - t, "rows": logs.manifest["rows"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skus", type=int, default=360_000)
    parser.add_argument("--loop-skus", type=int, default=300)
    args = parser.parse_args()

    from aigp.market import Market, MarketConfig
    from aigp.market.policies import StaticPolicy
    from bench.sim_loop import simulate_static_loop

    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(args.skus), f"{tmp}/market"], check=True,
                              capture_output=True, text=True)
        full = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = full["rows"]["decisions"]

    market = Market(MarketConfig.build(n_skus=args.skus, launch_days=166, seed=7))
    t = time.perf_counter()
    market.run({"static": StaticPolicy()})
    vector_s = time.perf_counter() - t

    index = np.arange(args.loop_skus)
    t = time.perf_counter()
    simulate_static_loop(market, index)
    model_loop_s = time.perf_counter() - t
    t = time.perf_counter()
    loop_rows: list[dict] = []
    simulate_static_loop(market, index, loop_rows)
    with tempfile.TemporaryDirectory() as tmp:
        pd.DataFrame(loop_rows).to_parquet(f"{tmp}/loop.parquet", compression="zstd")
    loop_s = time.perf_counter() - t
    loop_rate = args.loop_skus * 14 / loop_s
    model_loop_rate = args.loop_skus * 14 / model_loop_s

    table = [
        {"run": "full log: behaviour mix + features + reviews + parquet", "SKU-days": f"{rows:,}",
         "seconds": round(full["seconds"], 1), "SKU-days/s": round(rows / full["seconds"]),
         "peak RSS (MiB)": round(full["peak_rss_mb"]), "x loop": round(rows / full["seconds"] / loop_rate, 1)},
        {"run": "vectorised model only (static policy, no log)", "SKU-days": f"{args.skus * 14:,}",
         "seconds": round(vector_s, 1), "SKU-days/s": round(args.skus * 14 / vector_s), "peak RSS (MiB)": "",
         "x loop": round(args.skus * 14 / vector_s / model_loop_rate, 1)},
        {"run": "per-SKU Python loop: model + log rows with features + parquet", "SKU-days": f"{args.loop_skus * 14:,}",
         "seconds": round(loop_s, 2), "SKU-days/s": round(loop_rate), "peak RSS (MiB)": "", "x loop": 1.0},
        {"run": "per-SKU Python loop: model only", "SKU-days": f"{args.loop_skus * 14:,}",
         "seconds": round(model_loop_s, 2), "SKU-days/s": round(model_loop_rate), "peak RSS (MiB)": "", "x loop": ""},
    ]
    body = markdown_table(table) + (
        f"\n\nTargets: 5M SKU-days in < 120 s ({'met' if full['seconds'] < 120 else 'MISSED'}), peak < 4096 MiB "
        f"({'met' if full['peak_rss_mb'] < 4096 else 'MISSED'}), >= 50x the loop "
        f"({'met' if rows / full['seconds'] / loop_rate >= 50 else 'MISSED'}). The full-log row does strictly more "
        "work than the logging loop (five behaviour policies instead of one, all 50 decision-time features, "
        "review text), so its ratio is conservative; the model-only rows compare like with like. "
        "tests/test_market_simulator.py checks that the loop reproduces the vectorised model exactly."
    )
    print(body)
    write_section("simulator", "Market simulator throughput", body,
                  f"python -m bench.bench_simulator --skus {args.skus} --loop-skus {args.loop_skus}")


if __name__ == "__main__":
    main()
