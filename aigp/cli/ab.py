"""`aigp ab ...`: the simulated online A/B test."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from aigp.cli._common import console, user_errors

app = typer.Typer(no_args_is_help=True, help="Simulated online A/B tests on hash-partitioned SKU cohorts.")


@app.command("simulate")
@user_errors
def simulate(
    config: Annotated[Path | None, typer.Option(help="ABConfig YAML")] = None,
    skus: Annotated[int | None, typer.Option(help="SKUs in the test cohort")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    out: Annotated[Path | None, typer.Option(help="directory for the report (markdown, JSON, per-SKU parquet)")] = None,
    paired: Annotated[bool, typer.Option(help="also run every policy on the whole cohort (paired, simulator-only)")]
    = False,
) -> None:
    """Run the baselines (random, static, expert, price-sales, oracle) on a fresh cohort for 14 days."""
    from aigp.ab.experiment import ABConfig, run_ab, run_counterfactual
    from aigp.io import write_json, write_parquet, write_text
    from aigp.market.logs import logged_history
    from aigp.market.policies import build_baselines

    cfg = ABConfig.from_yaml(config) if config else ABConfig()
    cfg = cfg.with_updates(**{k: v for k, v in {"cohort_skus": skus, "seed": seed}.items() if v is not None})
    console.print(f"fitting price-sales on {cfg.history_skus:,} logged SKUs, then {cfg.cohort_skus:,} test SKUs")
    names = sorted({cfg.policy_of(g) for g in cfg.allocation})
    by_name = build_baselines(names, dynamics=cfg.cohort_market().dynamics,
                              history=lambda: logged_history(cfg.history_market())[:2], seed=cfg.seed)
    policies = {g: by_name[cfg.policy_of(g)] for g in cfg.allocation}
    result = run_ab(cfg, policies, progress=True)
    report = result.markdown()
    if paired:
        report += "\n" + run_counterfactual(cfg, policies).markdown()
    typer.echo(report)
    if out is not None:
        write_text(out / "ab_report.md", report)
        write_json(out / "ab_metrics.json", {"config": cfg.model_dump(mode="json"),
                                             "metrics": result.metrics.to_dict("records"),
                                             "uplift": result.uplift.to_dict("records")})
        summary = result.run.summary.assign(group=result.groups)
        write_parquet(out / "ab_skus.parquet", summary)
        console.print(f"report written to {out}")
