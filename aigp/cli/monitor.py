"""`aigp monitor ...`: drift, safety and stability of live pricing; Prometheus metrics and alert rules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from aigp.cli._common import console, user_errors

if TYPE_CHECKING:
    from aigp.cli.demo_context import DemoContext

app = typer.Typer(no_args_is_help=True, help="Monitor live pricing: drift, safety, stability, alerts.")


@app.command("run")
@user_errors
def run(
    reference: Annotated[str, typer.Option(envvar="AIGP_MONITOR_REFERENCE_URI",
                                           help="reference (training) window: a market log directory or a decisions "
                                                "parquet file/folder; path or s3:// URI")],
    current: Annotated[str, typer.Option(envvar="AIGP_DECISIONS_URI",
                                         help="the live decisions log (parquet file or folder; path or s3:// URI)")],
    out: Annotated[str, typer.Option(envvar="AIGP_MONITORING_URI",
                                     help="output directory (or s3:// prefix) for the reports and metrics")],
    window: Annotated[int | None, typer.Option(help="days in the current window (default: the config's)")] = None,
    end: Annotated[str | None, typer.Option(help="last day of the current window, YYYY-MM-DD (default: the "
                                                 "log's last day)")] = None,
    reference_start: Annotated[str | None, typer.Option(help="first day of the reference window")] = None,
    reference_end: Annotated[str | None, typer.Option(help="last day of the reference window")] = None,
    skus: Annotated[str | None, typer.Option(help="SKU table (parquet with sku_id, category) for logs without a "
                                                  "category column")] = None,
    config: Annotated[str | None, typer.Option(envvar="AIGP_MONITOR_CONFIG", help="MonitorConfig YAML")] = None,
    drift_engine: Annotated[str | None, typer.Option(help="evidently (its report too) or scipy (same figures, much "
                                                          "faster); default: the config's")] = None,
    dated: Annotated[bool, typer.Option(help="write into OUT/<window end date>/")] = False,
    pushgateway: Annotated[str | None, typer.Option(envvar="AIGP_PUSHGATEWAY_URL",
                                                    help="also push the gauges to this Pushgateway")] = None,
    fail_on_alert: Annotated[bool, typer.Option(help="exit with code 3 when an alert fires")] = False,
) -> None:
    """Compare the current window of decisions with the reference; write reports, metrics and alerts."""
    from aigp.monitoring.figures import MonitorConfig
    from aigp.monitoring.job import run_from_paths

    cfg = MonitorConfig.from_yaml(config) if config else MonitorConfig()
    if drift_engine is not None:
        cfg = cfg.with_updates(drift_engine=drift_engine)
    result = run_from_paths(reference, current, out, config=cfg, skus=skus, window_days=window, end=end,
                            reference_start=reference_start, reference_end=reference_end, dated=dated,
                            pushgateway=pushgateway, log=lambda msg: console.print(f"[dim]monitor[/] {msg}"))
    for alert in result.alerts:
        style = "bold red" if alert.firing else ("green" if alert.evaluated else "dim")
        console.print(f"[{style}]{'FIRING' if alert.firing else 'ok    '}[/] {alert.prometheus}: {alert.message}")
    console.print(f"report: {result.location}/index.html")
    if fail_on_alert and result.firing:
        raise typer.Exit(code=3)


@app.command("export")
@user_errors
def export(
    summary: Annotated[Path, typer.Argument(help="summary.json of a monitoring run")],
    textfile: Annotated[Path | None, typer.Option(help="write the gauges here (node-exporter textfile, *.prom)")]
    = None,
    pushgateway: Annotated[str | None, typer.Option(help="push the gauges to this Pushgateway (host:port)")] = None,
    port: Annotated[int | None, typer.Option(help="serve /metrics on this port until interrupted")] = None,
    addr: Annotated[str, typer.Option(help="address to serve on")] = "127.0.0.1",
) -> None:
    """Export a run's figures as Prometheus gauges: textfile, Pushgateway or an HTTP endpoint."""
    import json
    import time

    from aigp.monitoring.exporter import push, serve, summary_registry, write_textfile

    if not summary.exists():
        raise FileNotFoundError(f"{summary} does not exist (run `aigp monitor run` first)")
    registry = summary_registry(json.loads(summary.read_text()))
    if textfile is None and pushgateway is None and port is None:
        raise ValueError("nothing to do: give --textfile, --pushgateway and/or --port")
    if textfile is not None:
        console.print(f"wrote {write_textfile(registry, textfile)}")
    if pushgateway is not None:
        push(registry, pushgateway)
        console.print(f"pushed to {pushgateway}")
    if port is not None:
        server, _ = serve(registry, port, addr)
        console.print(f"serving http://{addr}:{server.server_port}/metrics (Ctrl-C stops)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            server.shutdown()


@app.command("rules")
@user_errors
def rules(
    config: Annotated[Path | None, typer.Option(help="MonitorConfig YAML (default: the defaults)")] = None,
    out: Annotated[Path | None, typer.Option(help="write the PrometheusRule here (default: print it)")] = None,
    promtool: Annotated[bool, typer.Option(help="also write monitoring/alerts.rules.yml and alerts.test.yml "
                                                "(plain rule file and `promtool test rules` cases)")] = False,
) -> None:
    """The PrometheusRule manifest of a config (same gauges and thresholds as the job's alerts)."""
    from aigp.monitoring.figures import MonitorConfig
    from aigp.monitoring.rules import rules_yaml, write_promtool_files, write_rules

    cfg = MonitorConfig.from_yaml(config) if config else MonitorConfig()
    if promtool:
        for path in write_promtool_files(cfg):
            console.print(f"wrote {path}")
    if out is None:
        typer.echo(rules_yaml(cfg), nl=False)
    else:
        console.print(f"wrote {write_rules(cfg, out)}")


@app.command("drill")
@user_errors
def drill(
    scenario: Annotated[str, typer.Argument(help="none, ctr_shift, category_mix, over_discounting, fallback_rise, "
                                                 "parse_failures, erratic, slow_predictor, short_rationales, outage")],
    out: Annotated[Path, typer.Option(help="output directory of the drill's monitoring run")],
    seed: Annotated[int, typer.Option(help="seed of the current market (>= 1; the reference is seed 0)")] = 1,
    drift_engine: Annotated[str, typer.Option(help="evidently (its report too) or scipy (same figures)")] = "evidently",
) -> None:
    """Fire drill: simulated traffic with one injected problem; checks that exactly the right alerts fire."""
    from aigp.monitoring.drills import DRILLS, DrillConfig, drill_traffic, simulated_traffic
    from aigp.monitoring.figures import MonitorConfig
    from aigp.monitoring.job import run_monitoring

    if scenario not in DRILLS:
        raise ValueError(f"unknown drill {scenario!r}; expected one of {list(DRILLS)}")
    cfg = DrillConfig()
    console.print(f"simulating the reference ({cfg.reference_skus:,} SKUs) and the current market "
                  f"({cfg.current_skus:,} SKUs, seed {seed}): {DRILLS[scenario].description}")
    reference = simulated_traffic(cfg, cfg.reference_seed, cfg.reference_skus)
    current = drill_traffic(scenario, cfg, seed)
    start, end = cfg.steady_window
    monitor_cfg = MonitorConfig.build(window_days=cfg.window_days, drift_engine=drift_engine)
    result = run_monitoring(reference, current, monitor_cfg, out, end=end, reference_start=start, reference_end=end,
                            log=lambda msg: console.print(f"[dim]monitor[/] {msg}"))
    expected = sorted(DRILLS[scenario].expected)
    fired = sorted(result.firing)
    console.print(f"expected {expected or 'no alert'}; fired {fired or 'no alert'}; report {out}/index.html")
    if fired != expected:
        console.print("[bold red]drill failed[/]: the alerts differ from the expected ones")
        raise typer.Exit(code=1)
    console.print("[green]drill passed[/]")


def stage_monitor(ctx: DemoContext) -> str:
    """`make demo` stage: monitor what the serving stage served (its decisions log) against the training
    window, and write the A/B report of the baselines' experiment (when the demo ran it)."""
    import datetime as dt

    import pandas as pd

    from aigp.decisions import load_decisions
    from aigp.monitoring.figures import MonitorConfig
    from aigp.monitoring.job import run_monitoring

    logs = ctx.market
    market = logs.config
    served = ctx.pricing_decisions
    if served is None:
        raise ValueError("the monitoring stage reads the served decisions log (DemoContext.pricing_decisions); run the "
                         "serving stage first")
    reference = load_decisions(logs.path)
    current = load_decisions(served, skus=logs.path / "skus.parquet")
    days = sorted(pd.to_datetime(current["date"]).dt.date.unique())
    start = market.start_date + dt.timedelta(days=market.horizon_days - 1)  # steady state: all ages on sale
    reference_end = min(market.start_date + dt.timedelta(days=market.launch_days - 1), days[0] - dt.timedelta(days=1))
    cfg = MonitorConfig(window_days=(days[-1] - days[0]).days + 1)
    out = ctx.root / "monitoring"
    result = run_monitoring(reference, current, cfg, out, end=days[-1], reference_start=start,
                            reference_end=reference_end, log=lambda msg: console.print(f"[dim]monitor[/] {msg}"))
    for alert in result.alerts:
        if alert.firing:
            console.print(f"[bold red]FIRING[/] {alert.prometheus}: {alert.message}")
    ctx.monitoring = result
    line = (f"{result.figures.current_rows:,} served decisions ({result.figures.window}) vs "
            f"{result.figures.reference_rows:,}; alerts firing: "
            f"{', '.join(a.prometheus for a in result.alerts if a.firing) or 'none'} -> {out / 'index.html'}")
    if ctx.ab_baselines is not None:
        files = demo_ab_report(ctx)
        line += f"; A/B report -> {files['html']}"
    return line


def demo_ab_report(ctx: DemoContext) -> dict:
    """The A/B report of the demo's baselines experiment: per-group outcomes, daily cumulative GMV and |a|
    per group from the cohort's daily outcomes, and, with the demo's LTVE, the Q-score deciles (the LTVE's
    Q of each SKU's launch-day state and action against its realised GMV)."""
    from aigp.ab.report import attach_q, build_report, cohort_q_scores, report_config, write_report

    ab = ctx.require("ab_baselines", "'simulated A/B of the baselines'")
    sink = ctx.ab_daily
    skus = ab.run.summary.assign(group=ab.groups)
    if sink is not None and ctx.ltve is not None:
        from aigp.ltve.artifact import load_model

        skus = attach_q(skus, cohort_q_scores(load_model(ctx.ltve), sink.first_states(), ab.config), "q_score")
    report = build_report(skus, report_config(skus, ab.config), daily=sink.frame() if sink is not None else None)
    return write_report(report, ctx.root / "ab_report")
