"""The monitoring job: a window of live pricing decisions against the reference (training) window.

Steps: select the windows by date; re-weight the reference to the current category mix; Evidently
``DataDriftPreset`` over the prompt features, the action (d, a) and rationale length; safety, stability
and volume figures; alerts; then the outputs, each written atomically (``summary.json`` last, so its
presence means the run completed):

    drift_report.html / drift_report.json   Evidently's report and snapshot (``drift_engine: evidently``)
    plots/*.png                             stability (Fig. 5), actions, drift, category mix, safety, ...
    index.html                              summary page: alerts, figures, plots embedded
    metrics.prom                            the Prometheus gauges (node-exporter textfile format)
    summary.json                            every figure, every alert with its numbers, the config

``MonitorConfig.drift_engine: scipy`` skips Evidently (its report rendering dominates the run time) and computes
the same per-column statistic in ``aigp.monitoring.figures``; the figures and alerts are identical (a test checks
this).
"""

from __future__ import annotations

import datetime as dt
import html as html_lib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

import aigp
from aigp.decisions import load_decisions
from aigp.htmlreport import figure_html, html_page, html_table
from aigp.io import atomic_path, write_text
from aigp.monitoring.alerts import Alert, evaluate_alerts, firing
from aigp.monitoring.figures import (
    MonitorConfig,
    PreparedWindows,
    WindowFigures,
    drift_columns,
    prepare_windows,
    window_figures,
    write_summary_json,
)

Log = Callable[[str], None]


@dataclass
class MonitorResult:
    out_dir: Path
    figures: WindowFigures
    alerts: list[Alert]
    summary: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    location: str = ""  # where the outputs ended up (out_dir, or the s3:// prefix they were uploaded to)

    @property
    def firing(self) -> list[str]:
        return firing(self.alerts)


def analyse(reference_log: pd.DataFrame, current_log: pd.DataFrame, config: MonitorConfig, *,
            end: str | dt.date | None = None, reference_start: str | dt.date | None = None,
            reference_end: str | dt.date | None = None,
            log: Log | None = None) -> tuple[PreparedWindows, WindowFigures, list[Alert], Any, dict[str, float]]:
    """Figures and alerts of the window (no files). Returns (windows, figures, alerts, Evidently drift or
    None, seconds per step)."""
    say = log or (lambda _msg: None)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    prepared = prepare_windows(reference_log, current_log, config, end=end, reference_start=reference_start,
                               reference_end=reference_end)
    seconds["windows"] = time.perf_counter() - t0
    say(f"current window {prepared.window}: {len(prepared.current):,} decisions; reference "
        f"{prepared.reference_window}: {len(prepared.reference):,} ({len(prepared.reference_sample):,} sampled"
        f"{', matched to the current category mix' if config.match_category_mix else ''})")
    evidently = None
    scores = None
    if config.drift_engine == "evidently":
        from aigp.monitoring.drift import evidently_drift

        t = time.perf_counter()
        columns = list(drift_columns(prepared.reference_sample, prepared.current, config))
        say(f"Evidently DataDriftPreset over {len(columns)} columns ({config.drift_method}, "
            f"threshold {config.drift_threshold:g})")
        evidently = evidently_drift(prepared.reference_sample, prepared.current, columns, config)
        scores = evidently.scores
        seconds["evidently"] = time.perf_counter() - t
    t = time.perf_counter()
    figures = window_figures(prepared, config, scores)
    alerts = evaluate_alerts(figures, config)
    seconds["figures"] = time.perf_counter() - t
    return prepared, figures, alerts, evidently, seconds


def run_monitoring(reference_log: pd.DataFrame, current_log: pd.DataFrame, config: MonitorConfig,
                   out_dir: str | Path, *, end: str | dt.date | None = None,
                   reference_start: str | dt.date | None = None, reference_end: str | dt.date | None = None,
                   plots: bool = True, log: Log | None = None) -> MonitorResult:
    """Run the job on two decisions logs and write its outputs to ``out_dir``."""
    from aigp.monitoring.exporter import summary_registry, write_textfile

    say = log or (lambda _msg: None)
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prepared, figures, alerts, evidently, seconds = analyse(
        reference_log, current_log, config, end=end, reference_start=reference_start,
        reference_end=reference_end, log=say)
    files: dict[str, Path] = {}
    t = time.perf_counter()
    if evidently is not None:
        files["drift_report"] = evidently.save_html(out / "drift_report.html")
        files["drift_snapshot"] = evidently.save_json(out / "drift_report.json")
    figs = {}
    if plots:
        from aigp.monitoring.plots import all_plots

        figs = all_plots(figures, prepared)
        for name, (png, _) in figs.items():
            path = out / "plots" / f"{name}.png"
            with atomic_path(path) as tmp:
                tmp.write_bytes(png)
            files[f"plot_{name}"] = path
    seconds["outputs"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - started
    summary = {
        **figures.to_dict(),
        "alerts": [_alert_dict(a) for a in alerts],
        "firing": firing(alerts),
        "config": config.model_dump(mode="json"),
        "engine": "evidently" if evidently is not None else "aigp.monitoring.figures (scipy)",
        "evidently_drifted_count": evidently.drifted_count if evidently is not None else None,
        "seconds": seconds,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "finished_at_unix": time.time(),
        "aigp_version": aigp.__version__,
    }
    files["index"] = write_text(out / "index.html", summary_page(summary, figs, evidently is not None))
    files["metrics"] = write_textfile(summary_registry(summary), out / "metrics.prom")
    files["summary"] = write_summary_json(out / "summary.json", summary)
    fired = firing(alerts)
    say(f"alerts firing: {', '.join(fired) if fired else 'none'}; report {files['index']}")
    return MonitorResult(out, figures, alerts, summary, files, location=str(out))


def _alert_dict(alert: Alert) -> dict[str, Any]:
    return {"name": alert.name, "prometheus": alert.prometheus, "severity": alert.severity, "title": alert.title,
            "firing": alert.firing, "evaluated": alert.evaluated, "value": alert.value,
            "thresholds": list(alert.thresholds), "comparison": alert.comparison, "message": alert.message,
            "details": alert.details}


# ------------------------------------------------------------------------------------------------------
# from paths (CLI, KFP component), local or s3://
# ------------------------------------------------------------------------------------------------------
def _is_s3(uri: str | Path) -> bool:
    return str(uri).startswith("s3://")


def _local(uri: str | Path, scratch: Path, name: str) -> Path:
    if _is_s3(uri):
        from aigp.registry.storage import download

        return download(str(uri), scratch / name)
    return Path(uri)


def run_from_paths(reference: str | Path, current: str | Path, out: str | Path, *,
                   config: MonitorConfig | str | Path | None = None, skus: str | Path | None = None,
                   window_days: int | None = None, end: str | dt.date | None = None,
                   reference_start: str | dt.date | None = None, reference_end: str | dt.date | None = None,
                   dated: bool = False, pushgateway: str | None = None,
                   log: Log | None = None) -> MonitorResult:
    """The job over logs named by path or ``s3://`` URI (a decisions parquet file/folder, or a market log
    directory as the reference); ``out`` may be an ``s3://`` prefix (written locally, then uploaded).
    ``dated`` writes into ``out/<end date>/``; ``pushgateway`` also pushes the gauges there."""
    cfg = config if isinstance(config, MonitorConfig) else (MonitorConfig.from_yaml(config) if config
                                                              else MonitorConfig())
    if window_days is not None:
        cfg = cfg.with_updates(window_days=window_days)
    with tempfile.TemporaryDirectory(prefix="aigp-monitor-") as scratch_name:
        scratch = Path(scratch_name)
        skus_path = _local(skus, scratch, "skus") if skus else None
        reference_log = load_decisions(_local(reference, scratch, "reference"), skus=skus_path)
        current_log = load_decisions(_local(current, scratch, "current"), skus=skus_path)
        remote = _is_s3(out)
        local_out = scratch / "out" if remote else Path(out)
        if dated:
            last = end or pd.to_datetime(current_log["date"]).max().date()
            local_out = local_out / str(last)
        result = run_monitoring(reference_log, current_log, cfg, local_out, end=end,
                                reference_start=reference_start, reference_end=reference_end, log=log)
        if pushgateway:
            from aigp.monitoring.exporter import push, summary_registry

            push(summary_registry(result.summary), pushgateway)
        if remote:
            from aigp.registry.storage import upload

            target = str(out).rstrip("/") + (f"/{local_out.name}" if dated else "")
            upload(local_out, target)
            result.location = target
    return result


# ------------------------------------------------------------------------------------------------------
# the summary page
# ------------------------------------------------------------------------------------------------------
def _pct(value: Any) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def summary_page(summary: dict[str, Any], plots: dict[str, tuple[bytes, str]], has_evidently: bool) -> str:
    w, rw = summary["window"], summary["reference_window"]
    rows = summary["rows"]
    fired = summary["firing"]
    intro = (f"<p>Current window <b>{w['start']} .. {w['end']}</b> ({rows['current']:,} decisions) against the "
             f"reference <b>{rw['start']} .. {rw['end']}</b> ({rows['reference']:,} decisions; "
             f"{rows['reference_sample']:,} sampled for the distributions"
             f"{', re-weighted to the current category mix' if summary['config']['match_category_mix'] else ''})."
             f" Alerts firing: <b>{html_lib.escape(', '.join(fired)) if fired else 'none'}</b>.</p>")
    if not summary["sufficient"]:
        intro += (f'<p class="note">Fewer than {summary["config"]["min_window_decisions"]} decisions: drift and '
                  "stability alerts were not evaluated.</p>")
    alerts = [{"alert": a["prometheus"], "severity": a["severity"],
               "state": "firing" if a["firing"] else ("quiet" if a["evaluated"] else "not evaluated"),
               "value": a["value"], "threshold": a["comparison"] + " " + " / ".join(f"{t:g}" for t in a["thresholds"]),
               "what": a["title"], "cls": "firing" if a["firing"] else ("quiet" if a["evaluated"] else "skipped")}
              for a in summary["alerts"]]
    s = summary["safety"]
    usual = "—" if summary["volume"]["median_prior"] is None else f"{summary['volume']['median_prior']:,.0f}"
    safety = [
        {"figure": "decisions", "value": f"{s['decisions']:,}"},
        {"figure": "fallback rate", "value": _pct(s["fallback_rate"])},
        {"figure": "fallbacks by reason", "value": ", ".join(f"{k}: {v}" for k, v in s["fallbacks_by_reason"].items())
         or "none"},
        {"figure": "parse-failure rate (of replies)", "value": _pct(s["parse_failure_rate"])},
        {"figure": "projection rate (of parsed proposals)", "value": _pct(s["projection_rate"])},
        {"figure": "latency p50 / p95 / p99 (ms)",
         "value": " / ".join("—" if v is None else f"{v:,.0f}" for v in s["latency_ms"].values())},
        {"figure": "model versions", "value": ", ".join(f"{k} ({v:,})" for k, v in s["model_versions"].items())},
        {"figure": "decisions last day / usual", "value": f"{summary['volume']['last_day']:,} / " + usual},
    ]
    stab = summary["stability"]
    stability = [{"figure": label, "reference": stab["reference"][key], "current": stab["current"][key]}
                 for label, key in (("decisions of the model", "n"), ("mean a", "mean_change"),
                                    ("mean |a|", "mean_abs_change"), ("share |a| < 0.04", "small_move_share"),
                                    ("share of big jumps", "big_jump_share"))]
    stability += [{"figure": f"Pr(|a| >= {x})", "reference": stab["reference"]["tail"][x],
                   "current": stab["current"]["tail"][x]} for x in ("0.05", "0.10", "0.15")]
    drift = summary["drift"]
    drift_rows = sorted(({"column": c, "kind": d["kind"], "score": d["score"], "drifted": "yes" if d["drifted"] else "",
                          "alerting": "yes" if d["alerting"] else "", "cls": "firing" if d["drifted"] and d["alerting"]
                          else ""} for c, d in drift["columns"].items()),
                        key=lambda r: -(r["score"] or 0.0) if summary["config"]["drift_method"] != "ks"
                        else (r["score"] or 1.0))
    mix = summary["category_mix"]

    def plot(name: str) -> str:
        return figure_html(*plots[name]) if name in plots else ""

    evidently_link = ('<p><a href="drift_report.html">Evidently drift report</a> (all columns, distributions)</p>'
                      if has_evidently else '<p class="note">Evidently report not rendered (drift_engine: scipy).</p>')
    sections = [
        ("Alerts", html_table(alerts, ["alert", "severity", "state", "value", "threshold", "what"], row_class="cls")),
        ("Safety", html_table(safety) + plot("daily_safety") + plot("latency")),
        ("Stability of the model's price changes (paper Fig. 5)",
         html_table(stability, formats={"reference": "{:.4g}", "current": "{:.4g}"})
         + plot("stability_tail") + plot("stability_bins") + plot("actions")),
        ("Drift", f"<p>{len(drift['columns'])} columns, {drift['share'] or 0:.1%} drifted; alerting features drifted: "
                  f"{html_lib.escape(', '.join(drift['drifted_alert_features'])) or 'none'}.</p>" + evidently_link
                  + plot("drift_scores")
                  + html_table(drift_rows[:25], ["column", "kind", "score", "drifted", "alerting"], row_class="cls",
                               formats={"score": "{:.4f}"})),
        ("Category mix", f"<p>PSI {mix['psi']:.4f}; {mix['coverage']:.1%} of the current decisions are in categories "
                         "the reference has.</p>" + plot("category_mix")
                         + html_table(mix["shares"], formats={"reference_share": "{:.2%}", "current_share": "{:.2%}"})),
        ("Rationales", plot("rationale_length") + html_table(
            [{"window": k, **v} for k, v in summary["rationale"].items() if isinstance(v, dict)])),
        ("Configuration", "<pre>" + html_lib.escape(MonitorConfig.build(**summary["config"]).to_yaml()) + "</pre>"),
    ]
    return html_page(f"AIGP pricing monitor: {w['start']} .. {w['end']}", sections, intro=intro)
