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
    from aigp.ab.report import DAILY_FILE, DailyOutcomeSink
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
    daily = DailyOutcomeSink()
    result = run_ab(cfg, policies, progress=True, sink=daily)
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
        write_parquet(out / DAILY_FILE, daily.frame())
        console.print(f"report written to {out}")


@app.command("report")
@user_errors
def report(
    outcomes: Annotated[Path, typer.Argument(help="per-SKU outcomes: ab_skus.parquet, or the directory `ab simulate "
                                                  "--out` wrote (its ab_daily.parquet is used too)")],
    out: Annotated[Path, typer.Option(help="directory for ab_report.html/.md/.json and plots/")],
    daily: Annotated[Path | None, typer.Option(help="per SKU-day outcomes (sku_id, day, discount_change, gmv)")]
    = None,
    q_scores: Annotated[Path | None, typer.Option(help="parquet with sku_id and the Q column (LTVE scores)")] = None,
    q_column: Annotated[str, typer.Option(help="name of the Q-score column")] = "q_score",
    config: Annotated[Path | None, typer.Option(help="the experiment's ABConfig YAML (control, horizons, ...; "
                                                     "default: the one `ab simulate` recorded in OUTCOMES)")] = None,
    control: Annotated[str | None, typer.Option(help="control group (default: the config's)")] = None,
    bootstrap: Annotated[int | None, typer.Option(help="bootstrap resamples")] = None,
) -> None:
    """GMV, ROI and MAR per group at 7 and 14 days with bootstrap CIs and uplift; plots; HTML."""
    from aigp.ab.experiment import ABConfig
    from aigp.ab.report import attach_q, build_report, experiment_config, load_inputs, report_config, write_report

    skus, daily_frame = load_inputs(outcomes, daily)
    skus = attach_q(skus, q_scores, q_column)
    base = ABConfig.from_yaml(config) if config else experiment_config(outcomes)
    cfg = report_config(skus, base, control=control, bootstrap=bootstrap)
    result = build_report(skus, cfg, daily=daily_frame, q_column=q_column)
    typer.echo(result.markdown())
    files = write_report(result, out)
    console.print(f"report written to {files['html']}")
