"""Prometheus exporter of a monitoring run: the figures of ``summary.json`` as gauges, written as a
node-exporter textfile, pushed to a Pushgateway, or served on an HTTP ``/metrics`` endpoint.

Every alert's deciding number is one gauge (``AlertSpec.metric``); the PrometheusRule manifest compares
exactly those gauges with the thresholds of the same config (``monitoring/rules.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, start_http_server, write_to_textfile

from aigp.monitoring.alerts import ALERT_BY_NAME, ALERTS, STALE_ALERT, gauge_value

PREFIX = "aigp_pricing"


def _num(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def summary_registry(summary: Mapping[str, Any]) -> CollectorRegistry:
    """Gauges of one monitoring run (``summary`` as written to summary.json)."""
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=registry)

    alerts = {a["name"]: a for a in summary["alerts"]}
    for spec in ALERTS:
        # NaN when the job did not evaluate the alert: the rule's comparison is then false, as the job's verdict
        gauge(spec.metric, f"{spec.title} (alert {spec.prometheus}; NaN: not evaluated)").set(
            gauge_value(alerts[spec.name]))
    firing = gauge(f"{PREFIX}_alert_firing", "1 when the monitoring job found the alert firing",
                   ("alert", "severity"))
    for name, alert in alerts.items():
        firing.labels(ALERT_BY_NAME[name].prometheus, alert["severity"]).set(1.0 if alert["firing"] else 0.0)

    drift = summary["drift"]
    gauge(f"{PREFIX}_drift_share", "share of monitored columns that drifted").set(_num(drift["share"]))
    score = gauge(f"{PREFIX}_feature_drift_score", "per-column drift score (normed Wasserstein or KS p-value)",
                  ("column", "kind", "alerting"))
    flag = gauge(f"{PREFIX}_feature_drifted", "1 when the column drifted", ("column", "kind", "alerting"))
    for column, d in drift["columns"].items():
        labels = (column, d["kind"], "true" if d["alerting"] else "false")
        score.labels(*labels).set(_num(d["score"]))
        flag.labels(*labels).set(1.0 if d["drifted"] else 0.0)

    safety = summary["safety"]
    gauge(f"{PREFIX}_decisions", "decisions in the monitored window").set(safety["decisions"])
    gauge(f"{PREFIX}_decisions_last_day", "decisions on the window's last day").set(summary["volume"]["last_day"])
    reasons = gauge(f"{PREFIX}_fallbacks", "decisions that fell back to a hold, by reason", ("reason",))
    for reason, count in safety["fallbacks_by_reason"].items():
        reasons.labels(reason).set(count)
    # a gauge may not carry a `quantile` label (that is a summary's); percentiles get their own label
    latency = gauge(f"{PREFIX}_latency_percentile_seconds", "decision latency percentiles in the window",
                    ("percentile",))
    for q, value in safety["latency_ms"].items():
        latency.labels(f"{100 * float(q):g}").set(_num(value) / 1000.0)

    small = gauge(f"{PREFIX}_small_move_share", "share of the model's changes with |a| < 0.04", ("window",))
    tail = gauge(f"{PREFIX}_tail_probability", "Pr(|a| >= x) of the model's changes", ("window", "x"))
    for window in ("reference", "current"):
        stability = summary["stability"][window]
        small.labels(window).set(_num(stability["small_move_share"]))
        for x, p in stability["tail"].items():
            tail.labels(window, x).set(_num(p))
    gauge(f"{PREFIX}_rationale_median_tokens", "median rationale length of the window").set(
        _num(summary["rationale"]["current"]["median_tokens"]))
    gauge(f"{PREFIX}_monitor_duration_seconds", "wall time of the monitoring run").set(
        _num(summary.get("seconds", {}).get("total")))
    gauge(STALE_ALERT.metric, "unix time of the last successful monitoring run").set(
        _num(summary.get("finished_at_unix", time.time())))
    return registry


def write_textfile(registry: CollectorRegistry, path: str | Path) -> Path:
    """Prometheus text format, replaced atomically (node-exporter textfile collector: name it *.prom)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    return path


def push(registry: CollectorRegistry, gateway: str, job: str = "aigp-monitor") -> None:
    """Replace this job's metrics on a Pushgateway (``host:port`` or URL)."""
    push_to_gateway(gateway, job=job, registry=registry)


def serve(registry: CollectorRegistry, port: int, addr: str = "127.0.0.1") -> tuple[Any, Any]:
    """Serve ``/metrics`` in a background thread; returns (server, thread); ``server.shutdown()`` stops it."""
    return start_http_server(port, addr=addr, registry=registry)
