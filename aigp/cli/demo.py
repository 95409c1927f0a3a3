"""`aigp demo`: the main job end to end on the embedded defaults, with progress and a short summary.

Stages run in order and share one typed context (:class:`~aigp.cli.demo_context.DemoContext`); each area
(features, pipeline, gate, registry, serving, monitoring) adds its stage to ``STAGES``. Alignment (SFT,
candidates, LTVE-ranked pairs, DPO) runs once, inside the training pipeline that trains the model the demo
serves; ``bench/bench_alignment.py`` and ``aigp align`` run it standalone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel

from aigp.cli import demo_pipeline as pipeline_stages
from aigp.cli import features as feature_stages
from aigp.cli import llm as llm_stages
from aigp.cli import ltve as ltve_stages
from aigp.cli import monitor as monitor_stages
from aigp.cli import price as price_stages
from aigp.cli._common import console, user_errors
from aigp.cli.demo_context import DemoContext

Stage = Callable[[DemoContext], str]  # returns a one-line summary


def stage_simulate(ctx: DemoContext) -> str:
    from aigp.market.config import MarketConfig
    from aigp.market.logs import simulate_to_directory

    cfg = MarketConfig.build(n_skus=ctx.skus, launch_days=60, seed=ctx.seed)
    logs = simulate_to_directory(cfg, ctx.root / "market", overwrite=True, progress=True)
    ctx.logs = logs
    rows = logs.manifest["rows"]
    return f"{rows['decisions']:,} SKU-days, {rows['reviews']:,} reviews -> {logs.path}"


def stage_ab_baselines(ctx: DemoContext) -> str:
    from aigp.ab.experiment import ABConfig, run_ab
    from aigp.ab.report import DailyOutcomeSink
    from aigp.io import write_text
    from aigp.market.policies import build_baselines

    logs = ctx.market
    cfg = ABConfig.build(cohort_skus=ctx.ab_skus, seed=ctx.seed, history_skus=logs.manifest["rows"]["skus"])
    policies = build_baselines(list(cfg.allocation), dynamics=logs.config.dynamics, seed=ctx.seed,
                               history=lambda: (logs.read("decisions.parquet"), logs.read("skus.parquet")))
    daily = DailyOutcomeSink(keep_first_states=True)  # the A/B report's daily GMV, |a| and Q-score inputs
    result = run_ab(cfg, policies, progress=True, sink=daily)
    ctx.ab_daily = daily
    report = result.markdown()
    write_text(ctx.root / "ab_baselines.md", report)
    console.print(report)
    ctx.ab_baselines = result
    return (f"simulated A/B of {len(cfg.allocation)} baselines on {cfg.cohort_skus:,} SKUs -> "
            f"{ctx.root / 'ab_baselines.md'}")


STAGES: list[tuple[str, Stage]] = [
    ("simulate the market", stage_simulate),
    ("simulated A/B of the baselines", stage_ab_baselines),
    ("feature store (ingest, Feast apply, materialize, training set, online lookup)", feature_stages.stage_features),
    ("Long-Term Value Estimator (train + held-out evaluation)", ltve_stages.stage_ltve),
    ("offline base model (tokenizer + Qwen3 config)", llm_stages.stage_base_model),
    ("teacher distillation set (teacher + judge)", llm_stages.stage_distill),
    ("training pipeline (kfp.local) -> gate -> registry, demo auto-approval", pipeline_stages.stage_training_pipeline),
    ("serve the promoted model and price the next day through the transformer", price_stages.stage_price),
    ("monitor what was served (drift, safety, stability) and the A/B report", monitor_stages.stage_monitor),
]


@user_errors
def demo(
    root: Annotated[Path, typer.Option(help="where the demo writes everything")] = Path("runs/demo"),
    skus: Annotated[int, typer.Option(help="SKUs in the simulated market log")] = 6000,
    ab_skus: Annotated[int, typer.Option(help="SKUs in the A/B test cohort")] = 10000,
    seed: Annotated[int, typer.Option(help="random seed")] = 7,
) -> None:
    """Run the main job end to end on the embedded defaults."""
    ctx = DemoContext(root=root, skus=skus, ab_skus=ab_skus, seed=seed)
    root.mkdir(parents=True, exist_ok=True)
    summary = []
    started = time.perf_counter()
    for i, (title, stage) in enumerate(STAGES, 1):
        console.rule(f"[bold]{i}/{len(STAGES)} {title}")
        t0 = time.perf_counter()
        line = stage(ctx)
        summary.append(f"{i}. {title} ({time.perf_counter() - t0:.0f} s): {line}")
    summary.append(f"total {time.perf_counter() - started:.0f} s")
    console.print(Panel("\n".join(summary), title="demo summary"))
