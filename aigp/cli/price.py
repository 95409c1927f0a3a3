"""`aigp price batch --date D`: nightly batch pricing of every active SKU, and the `make demo` serving stage.

    aigp price batch --date 2026-03-16                              # predictors from the config / $AIGP_PREDICTOR_URL
    aigp price batch --date 2026-03-16 --serve-local                # serve each group's registered model locally
    aigp price batch --date 2026-03-16 --predictor-url http://127.0.0.1:8080/openai/v1

Killed, it resumes where it stopped when run again with the same arguments; a finished day is not priced
twice (``--overwrite`` prices it again). Outputs: ``OUT/decisions/decisions-D.parquet`` (the decisions log
monitoring reads), ``OUT/runs/D/`` (rationales, decision report, summary, journal). The logic is
``aigp.serving.batch.run_batch_pricing`` (what the nightly pipeline calls).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from aigp.cli._common import console, user_errors

if TYPE_CHECKING:
    from aigp.cli.demo_context import DemoContext
    from aigp.serving.batch import BatchSummary

app = typer.Typer(no_args_is_help=True, help="Price SKUs with the registered LLM policy: nightly batch runs.")


@app.command("batch")
@user_errors
def batch(
    date: Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d"], help="the day priced")],
    config: Annotated[Path | None, typer.Option(help="BatchPricingConfig YAML; flags override it")] = None,
    out: Annotated[Path | None, typer.Option(help="output directory (decisions/ and runs/<date>/)")] = None,
    feature_data: Annotated[Path | None, typer.Option(help="feature source tables (default: $AIGP_FEATURE_DATA)")]
    = None,
    state_dir: Annotated[Path | None, typer.Option(help="feature store state: registry + SQLite online store")] = None,
    online_store: Annotated[str | None, typer.Option(help="sqlite or redis")] = None,
    redis: Annotated[str | None, typer.Option(envvar="REDIS_CONNECTION_STRING", help="Redis host:port[,password=]")]
    = None,
    predictor_url: Annotated[str | None, typer.Option(help="OpenAI API root for every group (default: each arm's "
                                                           "predictor_url, else $AIGP_PREDICTOR_URL)")] = None,
    serve_local: Annotated[bool | None, typer.Option(
        "--serve-local/--no-serve-local",
        help="serve each group's registered model locally for the run (default: when no predictor URL is set)")]
    = None,
    concurrency: Annotated[int | None, typer.Option(help="requests in flight per predictor")] = None,
    request_size: Annotated[int | None, typer.Option(help="prompts per predictor request")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="completion token budget")] = None,
    overwrite: Annotated[bool, typer.Option(help="price the day again even if it is finished")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Price every SKU active on DATE with its experiment group's registered model version."""
    from aigp.serving.batch import BatchPricingConfig, run_batch_pricing

    cfg = BatchPricingConfig.from_yaml(config) if config else BatchPricingConfig()
    predictor = cfg.pricing.predictor.model_dump()
    predictor.update({k: v for k, v in {"concurrency": concurrency, "request_size": request_size,
                                        "max_tokens": max_tokens}.items() if v is not None})
    cfg = cfg.with_updates(
        pricing={**cfg.pricing.model_dump(), "predictor": predictor},
        **{k: v for k, v in {"out_dir": out, "feature_data": feature_data, "feature_state_dir": state_dir,
                             "online_store": online_store, "redis_connection_string": redis}.items() if v is not None})
    urls = {group: predictor_url for group in cfg.pricing.experiment.arms} if predictor_url else None
    if serve_local is None:
        configured = predictor_url or os.environ.get("AIGP_PREDICTOR_URL") or all(
            a.predictor_url for a in cfg.pricing.experiment.arms.values())
        serve_local = not configured
    if serve_local:
        console.print("serving each group's registered model locally for this run (serving/predictor.py)")
    summary = run_batch_pricing(date.date(), cfg, predictor_urls=urls, serve_local=serve_local, overwrite=overwrite,
                                progress=progress)
    print_summary(summary)


def print_summary(summary: BatchSummary) -> None:
    table = Table(title=f"batch pricing {summary.date} ({'resumed' if summary.resumed else 'fresh run'})")
    table.add_column("group")
    for column in ("model", "SKUs", "priced", "fallbacks", "projected", "mean new d", "mean |a|"):
        table.add_column(column, justify="right")
    for group, g in summary.groups.items():
        mean_d = "-" if g.mean_new_discount is None else f"{g.mean_new_discount:.3f}"
        mean_a = "-" if g.mean_abs_change is None else f"{g.mean_abs_change:.3f}"
        table.add_row(group, f"v{g.model_version} ({g.model_ref})", str(g.skus), str(g.priced),
                      str(g.fallbacks), str(g.projected), mean_d, mean_a)
    console.print(table)
    reasons = ", ".join(f"{k} {v}" for k, v in summary.fallbacks_by_reason.items()) or "none"
    rate = f", {summary.skus_per_second} SKUs/s" if summary.skus_per_second else ""
    console.print(f"{summary.skus} SKUs: {summary.model_actions} model actions, "
                  f"{summary.projected} projected, "
                  f"{summary.fallbacks} fallbacks ({reasons}), {summary.unpriced} unpriced; "
                  f"{summary.seconds.get('total', 0):.0f} s{rate}")
    console.print(f"decisions: {summary.paths.decisions}")
    console.print(f"decision report: {summary.paths.report}")


# ---------------------------------------------------------------------------------------------------------
# demo stage (registered in aigp/cli/demo.py STAGES)
# ---------------------------------------------------------------------------------------------------------
def stage_price(ctx: DemoContext) -> str:
    """Serve the promoted model locally and price the latest day of the simulated market through the pricing
    transformer over HTTP."""
    from aigp.serving.demo import price_next_day

    summary = price_next_day(ctx, log=console.print)
    return (f"{summary.skus} SKUs priced for {summary.date} through the transformer with "
            f"{summary.model_label}: "
            f"{summary.model_actions} model actions, {summary.fallbacks} fallbacks -> decision report "
            f"{summary.paths.report}")
