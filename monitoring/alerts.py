"""The alerts of live pricing: one :class:`AlertSpec` per alert (name, Prometheus alert, gauge, comparison,
threshold fields of :class:`~aigp.monitoring.figures.MonitorConfig`), their evaluation on a window's figures,
and the calibration of the thresholds on no-drift windows. ``monitoring.rules`` writes the PrometheusRule from
the same specs, so the nightly job and Prometheus agree on when an alert fires.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from aigp.monitoring.figures import MonitorConfig, WindowFigures

# ------------------------------------------------------------------------------------------------------
# alerts
# ------------------------------------------------------------------------------------------------------
Comparison = Literal[">=", "<=", "<", "outside"]


@dataclass(frozen=True)
class AlertSpec:
    name: str  # key in summaries and the runbook anchor
    prometheus: str  # alert name in the PrometheusRule
    metric: str  # the gauge the exporter writes and the rule compares
    comparison: Comparison
    severity: Literal["critical", "warning", "info"]
    title: str
    needs_window: bool = True  # only evaluated with >= min_window_decisions decisions

    def thresholds(self, config: MonitorConfig) -> tuple[float, ...]:
        return tuple(float(getattr(config, f)) * s for f, s in _THRESHOLD_FIELDS[self.name])

    def fires(self, value: float, thresholds: tuple[float, ...]) -> bool:
        """The alert's condition: the job's verdict, and (as PromQL, ``promql``) the PrometheusRule's."""
        return _fires(value, self.comparison, thresholds)

    def promql(self, thresholds: tuple[float, ...]) -> str:
        """The same condition over the gauge ``metric``. The exporter writes NaN for an alert the job did
        not evaluate, and every comparison with NaN is false in PromQL as in :meth:`fires`."""
        if self.comparison == "outside":
            return f"{self.metric} < {_exact(thresholds[0])} or {self.metric} > {_exact(thresholds[1])}"
        return f"{self.metric} {self.comparison} {_exact(thresholds[0])}"


def _exact(value: float) -> str:
    """The shortest text of ``value`` that reads back as the same float (a rule compares the same number)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


# alert -> (config field, sign) of its threshold(s)
_THRESHOLD_FIELDS: dict[str, tuple[tuple[str, float], ...]] = {
    "feature_drift": (("feature_drift_min_columns", 1.0),),
    "category_mix_shift": (("category_mix_psi", 1.0),),
    "over_discounting": (("over_discount_shift", -1.0),),
    "price_volatility": (("big_jump_increase", 1.0),),
    "fallback_rate": (("fallback_rate_max", 1.0),),
    "parse_failures": (("parse_failure_rate_max", 1.0),),
    "projection_rate": (("projection_rate_max", 1.0),),
    "serving_latency": (("latency_p95_ms_max", 0.001),),  # the gauge is in seconds (Prometheus base unit)
    "rationale_length": (("rationale_ratio_min", 1.0), ("rationale_ratio_max", 1.0)),
    "decision_volume": (("volume_min_ratio", 1.0),),
}

ALERTS: tuple[AlertSpec, ...] = (
    AlertSpec("feature_drift", "AigpPricingFeatureDrift", "aigp_pricing_drifted_features", ">=", "warning",
              "prompt features drifted within categories"),
    AlertSpec("category_mix_shift", "AigpPricingCategoryMixShift", "aigp_pricing_category_mix_psi", ">=", "warning",
              "the category mix of priced SKUs changed"),
    AlertSpec("over_discounting", "AigpPricingOverDiscounting", "aigp_pricing_action_mean_shift", "<=", "critical",
              "the model cuts prices deeper than in the reference"),
    AlertSpec("price_volatility", "AigpPricingVolatility", "aigp_pricing_big_jump_share_increase", ">=", "warning",
              "more big daily price jumps than in the reference"),
    AlertSpec("fallback_rate", "AigpPricingFallbackRateHigh", "aigp_pricing_fallback_rate", ">=", "critical",
              "many SKUs fell back to holding yesterday's price", needs_window=False),
    AlertSpec("parse_failures", "AigpPricingParseFailures", "aigp_pricing_parse_failure_rate", ">=", "critical",
              "the model's replies cannot be parsed", needs_window=False),
    AlertSpec("projection_rate", "AigpPricingProjectionRateHigh", "aigp_pricing_projection_rate", ">=", "warning",
              "the model proposes changes outside A_safe", needs_window=False),
    AlertSpec("serving_latency", "AigpPricingLatencyHigh", "aigp_pricing_latency_p95_seconds", ">=", "warning",
              "decisions are slow (95th percentile, seconds)", needs_window=False),
    AlertSpec("rationale_length", "AigpPricingRationaleLength", "aigp_pricing_rationale_length_ratio", "outside",
              "warning", "the rationales got much shorter or longer"),
    AlertSpec("decision_volume", "AigpPricingDecisionVolumeLow", "aigp_pricing_decision_volume_ratio", "<",
              "critical", "far fewer decisions than usual on the last day", needs_window=False),
)
ALERT_BY_NAME = {a.name: a for a in ALERTS}
# Prometheus-only: the nightly job itself stopped reporting.
STALE_ALERT = AlertSpec("monitor_stale", "AigpPricingMonitorStale",
                        "aigp_pricing_monitor_last_success_timestamp_seconds", ">=", "warning",
                        "the monitoring job has not succeeded recently", needs_window=False)


@dataclass(frozen=True)
class Alert:
    name: str
    prometheus: str
    severity: str
    title: str
    firing: bool
    evaluated: bool  # False when the data cannot decide (too few decisions, nothing to compare)
    value: float | None
    thresholds: tuple[float, ...]
    comparison: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def alert_value(name: str, figures: WindowFigures, config: MonitorConfig) -> float:
    """The number an alert compares with its threshold(s) (NaN when it cannot be computed)."""
    if name == "feature_drift":
        return float(len(figures.drifted_under(config)))
    if name == "category_mix_shift":
        return figures.psi
    if name == "over_discounting":
        return figures.mean_change_shift
    if name == "price_volatility":
        return figures.big_jump_increase
    if name == "fallback_rate":
        return figures.safety["fallback_rate"]
    if name == "parse_failures":
        return figures.safety["parse_failure_rate"]
    if name == "projection_rate":
        return figures.safety["projection_rate"]
    if name == "serving_latency":
        p95 = figures.safety["latency_ms"]["0.95"]
        return math.nan if p95 is None else float(p95) / 1000.0
    if name == "rationale_length":
        return figures.rationale_ratio
    if name == "decision_volume":
        return figures.volume["ratio"]
    raise ValueError(f"unknown alert {name!r}; expected one of {list(ALERT_BY_NAME)}")


def _fires(value: float, comparison: str, thresholds: tuple[float, ...]) -> bool:
    if comparison == ">=":
        return value >= thresholds[0]
    if comparison == "<=":
        return value <= thresholds[0]
    if comparison == "<":
        return value < thresholds[0]
    return value < thresholds[0] or value > thresholds[1]


def _details(name: str, figures: WindowFigures, config: MonitorConfig) -> dict[str, Any]:
    if name == "feature_drift":
        return {"features": {c: figures.drift[c].score for c in figures.drifted_under(config)}}
    if name == "category_mix_shift":
        top = figures.mix.assign(change=figures.mix.current_share - figures.mix.reference_share)
        top = top.reindex(top.change.abs().sort_values(ascending=False).index).head(5)
        return {"largest_changes": {r.category: round(float(r.change), 4) for r in top.itertuples()}}
    if name in ("over_discounting", "price_volatility"):
        return {k: {"reference": figures.stability["reference"][k], "current": figures.stability["current"][k]}
                for k in ("mean_change", "big_jump_share", "small_move_share")}
    if name == "fallback_rate":
        return {"by_reason": figures.safety["fallbacks_by_reason"]}
    if name == "decision_volume":
        return dict(figures.volume)
    return {}


def evaluate_alerts(figures: WindowFigures, config: MonitorConfig) -> list[Alert]:
    """Every alert with whether it fires, the number that decided it and its threshold(s)."""
    out = []
    for spec in ALERTS:
        value = alert_value(spec.name, figures, config)
        thresholds = spec.thresholds(config)
        evaluated = math.isfinite(value) and (figures.sufficient or not spec.needs_window)
        firing = evaluated and spec.fires(value, thresholds)
        bound = (f"outside [{thresholds[0]:g}, {thresholds[1]:g}]" if spec.comparison == "outside"
                 else f"{spec.comparison} {thresholds[0]:g}")
        if not evaluated:
            why = "too few decisions" if math.isfinite(value) else "nothing to compare"
            message = f"{spec.title}: not evaluated ({why})"
        else:
            message = f"{spec.title}: {value:.4g} ({'fires at' if firing else 'quiet; fires at'} {bound})"
        out.append(Alert(spec.name, spec.prometheus, spec.severity, spec.title, firing, evaluated,
                         value if math.isfinite(value) else None, thresholds, spec.comparison, message,
                         _details(spec.name, figures, config) if firing else {}))
    return out


def firing(alerts: Iterable[Alert]) -> list[str]:
    return [a.name for a in alerts if a.firing]


def gauge_value(alert: Alert | Mapping[str, Any]) -> float:
    """What the exporter writes for an alert's gauge: the deciding value when the job evaluated the alert,
    else NaN (which no PromQL comparison matches), so Prometheus fires exactly the alerts the job fired."""
    evaluated = alert.evaluated if isinstance(alert, Alert) else alert["evaluated"]
    value = alert.value if isinstance(alert, Alert) else alert["value"]
    return float(value) if evaluated and value is not None else math.nan


# ------------------------------------------------------------------------------------------------------
# calibration
# ------------------------------------------------------------------------------------------------------
def calibrate(null_figures: list[WindowFigures], config: MonitorConfig, *, quantile: float = 0.99,
              margin: float = 1.5) -> dict[str, Any]:
    """Thresholds suggested by reference-vs-reference windows (no drift by construction): the ``quantile``
    of each statistic over those windows times ``margin`` (away from the no-drift value). Also returns the
    false-alarm rate of ``config`` on the same windows, alert by alert."""
    if not null_figures:
        raise ValueError("calibrate needs at least one reference-vs-reference window")
    max_score = [max((d.score for d in f.drift.values() if d.alerting), default=0.0) for f in null_figures]
    q = lambda values: float(np.nanquantile(np.asarray(values, dtype=np.float64), quantile))  # noqa: E731
    fired = [firing(evaluate_alerts(f, config)) for f in null_figures]
    return {
        "windows": len(null_figures),
        "suggested": {
            # a distance threshold; for 'ks' (p-values) read the false-alarm rate instead
            "drift_threshold": q(max_score) * margin if config.drift_method == "wasserstein" else None,
            "category_mix_psi": q([f.psi for f in null_figures]) * margin,
            # one-sided alerts, calibrated on the size of the no-drift movement in either direction
            "over_discount_shift": q([abs(f.mean_change_shift) for f in null_figures]) * margin,
            "big_jump_increase": q([abs(f.big_jump_increase) for f in null_figures]) * margin,
        },
        "false_alarm_rate": float(np.mean([bool(f) for f in fired])),
        "false_alarms_by_alert": {a.name: int(sum(a.name in f for f in fired)) for a in ALERTS},
    }
