"""Monitoring of live pricing: its configuration and the figures of a window of decisions.

Numbers over the decisions log (``aigp.decisions`` reads it and cuts the windows). ``monitoring.drift`` runs
Evidently for the drift report and feeds its per-column scores back here; ``monitoring.alerts`` turns the
figures into alerts and ``monitoring.exporter`` exports them to Prometheus.

What is measured, for a *current* window (by date) against a *reference* window (the
training window, or any earlier window):

- safety: decisions, fallback rate (and by reason), parse-failure rate (among replies the predictor gave),
  projection rate (how often the model proposed a change outside A_safe), latency percentiles;
- stability (paper Fig. 5): the tail curve Pr(|a| >= x), the binned |a| distribution (bin 0.02), the share
  of small adjustments |a| < 0.04, and the share of big jumps; over the model's own decisions (fallback
  holds are the platform's, not the model's);
- drift: one score per column (features the prompt showed, the action d and a, rationale length) and the
  category mix (PSI). Features are compared with the reference *re-weighted to the current category mix*,
  so a change of mix raises the category-mix alert only, and a feature alert means the features moved
  within categories;
- rationale length, and the daily decision volume.

Alerts are evaluated (``monitoring.alerts``) from those figures with the thresholds of :class:`MonitorConfig`;
the same thresholds generate the PrometheusRule manifest (``monitoring/rules.py``), so the nightly job and
Prometheus agree on when an alert fires.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator
from scipy import stats

from aigp.config import StrictConfig
from aigp.decisions import (
    CATEGORY,
    DERIVED,
    FEATURE_COLUMNS,
    FallbackReason,
    Window,
    harmonise_categories,
    select_window,
)
from aigp.policy_metrics import stability_figures
from aigp.schema import FEATURES, Group

ACTION_COLUMNS = ("discount_change", "new_discount")
RATIONALE_COLUMN = "rationale_tokens"
# Fallbacks where the predictor gave no reply: they are not parse failures.
NO_REPLY = (FallbackReason.MISSING_FEATURES.value, FallbackReason.PREDICTOR_TIMEOUT.value,
            FallbackReason.PREDICTOR_ERROR.value)


# ------------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------------
class MonitorConfig(StrictConfig):
    """Windows, drift test and alert thresholds of the monitoring job (every default documented here).

    Defaults were calibrated on reference-vs-reference windows of the simulated market (windows of
    1,000 SKUs x 27 days from independent markets: ``bench/bench_monitoring.py`` measures the false-alarm
    rate they give); recalibrate them on your own reference windows with :func:`calibrate`.
    """

    window_days: int = Field(1, ge=1, description="days of decisions in the current window (ending at --end)")
    min_window_decisions: int = Field(200, ge=1, description="below this many decisions, drift and stability "
                                      "alerts are not evaluated (too few to compare distributions)")
    drift_method: Literal["wasserstein", "ks"] = Field(
        "wasserstein", description="per-column two-sample test (Evidently's names): 'wasserstein' = Wasserstein "
        "distance normed by the reference std (drift when >= threshold); 'ks' = Kolmogorov-Smirnov p-value "
        "(drift when < threshold)")
    drift_threshold: float = Field(0.15, gt=0, description="per-column drift threshold of drift_method")
    drift_engine: Literal["evidently", "scipy"] = Field(
        "evidently", description="who computes the per-column drift statistic: 'evidently' (DataDriftPreset; its "
        "HTML report and snapshot are written too) or 'scipy' (the same statistic here, no report; its rendering "
        "dominates the job's time). Figures and alerts are identical")
    drift_alert_groups: tuple[str, ...] = Field(
        (Group.SKU.value, Group.PERFORMANCE.value),
        description="feature views whose drift raises the feature-drift alert; pricing history is the model's "
        "own output (see the action alerts), calendar and competitor features are market context: reported, "
        "not alerted")
    drift_ignore: tuple[str, ...] = Field((), description="features never counted toward the drift alert")
    feature_drift_min_columns: int = Field(1, ge=1, description="drifted alerting features that fire the alert")
    match_category_mix: bool = Field(True, description="compare features with the reference re-weighted to the "
                                     "current category mix")
    max_reference_rows: int = Field(200_000, ge=100, description="rows of the (mix-matched) reference sample")
    seed: int = Field(0, ge=0, description="seed of the reference resampling")
    category_mix_psi: float = Field(0.1, gt=0, description="population stability index of the category shares "
                                    "that fires the category-mix alert")
    over_discount_shift: float = Field(0.015, gt=0, description="the model's mean discount change this much below "
                                       "the reference's fires the over-discounting alert")
    big_jump: float = Field(0.15, gt=0, le=0.2, description="|a| >= big_jump is a big price jump")
    big_jump_increase: float = Field(0.02, gt=0, le=1, description="rise of the share of big jumps (vs the "
                                     "reference) that fires the volatility alert")
    fallback_rate_max: float = Field(0.02, gt=0, le=1, description="share of decisions that fell back to a hold")
    parse_failure_rate_max: float = Field(0.01, gt=0, le=1, description="share of predictor replies not parseable")
    projection_rate_max: float = Field(0.05, gt=0, le=1, description="share of parsed proposals outside A_safe")
    latency_p95_ms_max: float = Field(90_000.0, gt=0, description="95th percentile of the decision latency, ms "
                                      "(the paper's CoT takes ~60 s per SKU)")
    rationale_ratio_min: float = Field(0.5, gt=0, description="median rationale length / reference's below this "
                                       "fires the rationale alert")
    rationale_ratio_max: float = Field(2.0, gt=1, description="... and above this")
    volume_min_ratio: float = Field(0.5, gt=0, le=1, description="decisions on the window's last day / median "
                                    "daily decisions of the days before it, below which the volume alert fires")
    volume_lookback_days: int = Field(7, ge=3, description="days before the last one that set the usual volume")
    stale_after_hours: float = Field(36.0, gt=0, description="Prometheus: no successful run for this long fires "
                                     "the stale-monitoring alert")

    @field_validator("drift_alert_groups")
    @classmethod
    def _known_groups(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = [g.value for g in Group if g != Group.TEXT]
        unknown = [v for v in value if v not in known]
        if unknown:
            raise ValueError(f"unknown feature view {unknown[0]!r}; expected some of {known}")
        return value

    @field_validator("drift_ignore")
    @classmethod
    def _known_features(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in value if v not in FEATURE_COLUMNS]
        if unknown:
            raise ValueError(f"unknown feature {unknown[0]!r} in drift_ignore")
        return value

    @model_validator(mode="after")
    def _ks_threshold_is_a_level(self) -> MonitorConfig:
        if self.drift_method == "ks" and self.drift_threshold >= 1:
            raise ValueError(f"drift_threshold={self.drift_threshold} is a p-value level for 'ks': expected < 1")
        return self


# ------------------------------------------------------------------------------------------------------
# safety, stability, rationale, volume
# ------------------------------------------------------------------------------------------------------
def _rate(numerator: np.ndarray, denominator: np.ndarray) -> float:
    n = int(denominator.sum())
    return float(numerator[denominator].sum() / n) if n else float("nan")


def safety_figures(frame: pd.DataFrame) -> dict[str, Any]:
    """Fallback, parse-failure and projection rates, fallbacks by reason, and latency percentiles."""
    fallback = frame["fallback"].to_numpy(bool)
    parse_ok = frame["parse_ok"].to_numpy(bool)
    reason = frame["fallback_reason"].fillna("").astype(str).to_numpy()
    replied = ~(fallback & np.isin(reason, NO_REPLY))  # the predictor returned something
    proposed = parse_ok & ~fallback  # a parsed model proposal went through projection
    latency = frame["latency_ms"].to_numpy(np.float64)
    latency = latency[np.isfinite(latency)]
    reasons = pd.Series(reason[fallback]).replace("", "unspecified").value_counts()
    return {
        "decisions": len(frame),
        "fallbacks": int(fallback.sum()),
        "fallback_rate": float(fallback.mean()) if len(frame) else float("nan"),
        "fallbacks_by_reason": {str(k): int(v) for k, v in reasons.items()},
        "replies": int(replied.sum()),
        "parse_failures": int((~parse_ok & replied).sum()),
        "parse_failure_rate": _rate(~parse_ok, replied),
        "proposals": int(proposed.sum()),
        "projected": int((frame["projected"].to_numpy(bool) & proposed).sum()),
        "projection_rate": _rate(frame["projected"].to_numpy(bool), proposed),
        "latency_ms": {q: (float(np.percentile(latency, 100 * float(q))) if latency.size else float("nan"))
                       for q in ("0.5", "0.95", "0.99")},
        "model_versions": {f"{k[0]}:{k[1]}": int(v) for k, v in
                           frame.groupby(["model_name", "model_version"], observed=True).size().items()},
    }


def daily_safety(frame: pd.DataFrame) -> pd.DataFrame:
    """Decisions and the three safety rates per day."""
    rows = []
    for date, day in frame.groupby(pd.to_datetime(frame["date"]).dt.date, sort=True):
        s = safety_figures(day)
        rows.append({"date": date, "decisions": s["decisions"], "fallback_rate": s["fallback_rate"],
                     "parse_failure_rate": s["parse_failure_rate"], "projection_rate": s["projection_rate"]})
    return pd.DataFrame(rows, columns=["date", "decisions", "fallback_rate", "parse_failure_rate",
                                       "projection_rate"])


def model_decisions(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's own decisions: fallback holds are the platform's rule, not the model's action."""
    return frame.loc[~frame["fallback"].to_numpy(bool)]


def rationale_figures(frame: pd.DataFrame) -> dict[str, Any]:
    tokens = frame[RATIONALE_COLUMN].to_numpy(np.float64)
    tokens = tokens[np.isfinite(tokens)]
    if tokens.size == 0:
        return {"n": 0, "median_tokens": float("nan"), "mean_tokens": float("nan"), "empty_share": float("nan")}
    return {"n": int(tokens.size), "median_tokens": float(np.median(tokens)), "mean_tokens": float(tokens.mean()),
            "empty_share": float((tokens <= 0).mean())}


def volume_figures(log: pd.DataFrame, window: Window, lookback_days: int) -> dict[str, Any]:
    """Decisions on the window's last day against the median of the ``lookback_days`` days before it
    (from the whole log, not only the window): a sudden drop means serving stopped part-way."""
    dates = pd.to_datetime(log["date"]).dt.date
    counts = dates.value_counts()
    last = int(counts.get(window.end, 0))
    prior_days = [window.end - dt.timedelta(days=k) for k in range(1, lookback_days + 1)]
    prior = [int(counts.get(d, 0)) for d in prior_days if d >= dates.min()]
    if len(prior) < 3:
        return {"last_day": last, "prior_days": len(prior), "median_prior": float("nan"), "ratio": float("nan")}
    median = float(np.median(prior))
    return {"last_day": last, "prior_days": len(prior), "median_prior": median,
            "ratio": float(last / median) if median > 0 else float("nan")}


# ------------------------------------------------------------------------------------------------------
# category mix
# ------------------------------------------------------------------------------------------------------
def population_stability_index(reference: np.ndarray, current: np.ndarray, eps: float = 1e-4) -> float:
    """PSI = sum (q - p) ln(q / p) over the shares p (reference) and q (current); empty cells get ``eps``."""
    p = np.maximum(np.asarray(reference, dtype=np.float64), eps)
    q = np.maximum(np.asarray(current, dtype=np.float64), eps)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def category_mix(reference: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Share of decisions per category in both windows (categories of either), largest current first."""
    ref = reference[CATEGORY].value_counts(normalize=True)
    cur = current[CATEGORY].value_counts(normalize=True)
    mix = pd.DataFrame({"reference_share": ref, "current_share": cur}).fillna(0.0)
    mix.index.name = CATEGORY
    return mix.sort_values(["current_share", "reference_share"], ascending=False).reset_index()


def match_category_mix(reference: pd.DataFrame, current: pd.DataFrame, *, size: int,
                       seed: int) -> pd.DataFrame:
    """A sample of ``reference`` with the category shares of ``current`` (categories the reference lacks
    are left out and the others renormalised). Rows are drawn without replacement where a category has
    enough of them, with replacement otherwise."""
    rng = np.random.default_rng(seed)
    shares = current[CATEGORY].value_counts(normalize=True)
    codes = reference[CATEGORY].to_numpy()
    pools = {c: np.flatnonzero(codes == c) for c in shares.index}
    shares = shares[[c for c in shares.index if pools[c].size]]
    if shares.empty:
        raise ValueError("the reference shares no category with the current window; cannot match the mix")
    shares = shares / shares.sum()
    counts = np.floor(shares.to_numpy() * size).astype(int)
    counts[np.argmax(counts)] += size - counts.sum()  # exact total
    picks = [rng.choice(pools[c], size=k, replace=k > pools[c].size) for c, k in zip(shares.index, counts,
                                                                                       strict=True) if k]
    return reference.iloc[np.sort(np.concatenate(picks))].reset_index(drop=True)


def sample_rows(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    if len(frame) <= size:
        return frame
    rng = np.random.default_rng(seed)
    return frame.iloc[np.sort(rng.choice(len(frame), size=size, replace=False))].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------------
# drift
# ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # feature view of a feature, "action" or "rationale"
    method: str
    score: float  # normed Wasserstein distance, or KS p-value
    threshold: float
    drifted: bool
    alerting: bool  # counts toward the feature-drift alert


def column_kind(column: str) -> str:
    if column in ACTION_COLUMNS:
        return "action"
    if column == RATIONALE_COLUMN:
        return "rationale"
    return FEATURES[column].group.value


def drift_columns(reference: pd.DataFrame, current: pd.DataFrame, config: MonitorConfig) -> dict[str, bool]:
    """Columns to test (each with a finite value in both windows) -> whether it counts toward the
    feature-drift alert."""
    out: dict[str, bool] = {}
    for column in [*FEATURE_COLUMNS, *ACTION_COLUMNS, RATIONALE_COLUMN]:
        if column not in reference or column not in current:
            continue
        if not (np.isfinite(reference[column].to_numpy(np.float64)).any()
                and np.isfinite(current[column].to_numpy(np.float64)).any()):
            continue
        kind = column_kind(column)
        out[column] = kind in config.drift_alert_groups and column not in config.drift_ignore
    return out


def is_drifted(score: float, method: str, threshold: float) -> bool:
    """Evidently's decision rule: a distance at or above the threshold, or a p-value below it."""
    if not math.isfinite(score):
        return False
    return score < threshold if method == "ks" else score >= threshold


def drift_score(reference: np.ndarray, current: np.ndarray, method: str) -> float:
    """Evidently's statistics, computed the same way (non-finite values dropped; Wasserstein distance
    normed by max(std of the reference, 0.001); KS two-sided p-value)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if ref.size == 0 or cur.size == 0:
        return float("nan")
    if method == "ks":
        return float(stats.ks_2samp(ref, cur).pvalue)
    return float(stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001))


def column_drift(reference: pd.DataFrame, current: pd.DataFrame, config: MonitorConfig,
                 scores: Mapping[str, float] | None = None) -> dict[str, ColumnDrift]:
    """Per-column drift. ``scores`` are given when Evidently computed them (the report then shows the same
    numbers); otherwise they are computed here with the same statistic."""
    out = {}
    for column, alerting in drift_columns(reference, current, config).items():
        if scores is not None:
            if column not in scores:
                raise ValueError(f"no drift score for column {column!r}")
            score = float(scores[column])
        else:
            score = drift_score(reference[column].to_numpy(np.float64), current[column].to_numpy(np.float64),
                                config.drift_method)
        out[column] = ColumnDrift(column, column_kind(column), config.drift_method, score, config.drift_threshold,
                                  is_drifted(score, config.drift_method, config.drift_threshold), alerting)
    return out


# ------------------------------------------------------------------------------------------------------
# the figures of a window
# ------------------------------------------------------------------------------------------------------
@dataclass
class WindowFigures:
    window: Window
    reference_window: Window
    current_rows: int
    reference_rows: int
    reference_sample_rows: int  # the (mix-matched) reference sample the distributions are compared with
    safety: dict[str, Any]
    reference_safety: dict[str, Any]
    daily: pd.DataFrame
    stability: dict[str, dict[str, Any]]  # "reference" / "current"
    rationale: dict[str, dict[str, Any]]
    volume: dict[str, Any]
    mix: pd.DataFrame
    psi: float
    category_coverage: float  # share of current decisions whose category the reference has
    drift: dict[str, ColumnDrift]
    sufficient: bool  # enough decisions to compare distributions
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_change_shift(self) -> float:
        return self.stability["current"]["mean_change"] - self.stability["reference"]["mean_change"]

    @property
    def big_jump_increase(self) -> float:
        return self.stability["current"]["big_jump_share"] - self.stability["reference"]["big_jump_share"]

    @property
    def rationale_ratio(self) -> float:
        ref = self.rationale["reference"]["median_tokens"]
        cur = self.rationale["current"]["median_tokens"]
        return float(cur / ref) if math.isfinite(ref) and ref > 0 and math.isfinite(cur) else float("nan")

    @property
    def drifted_alert_features(self) -> list[str]:
        return [c for c, d in self.drift.items() if d.alerting and d.drifted]

    def drifted_under(self, config: MonitorConfig) -> list[str]:
        """Alerting features drifted under ``config``'s threshold and feature views (the scores are kept,
        so another config can be evaluated on the same window, as :func:`calibrate` does)."""
        out = []
        for column, d in self.drift.items():
            alerting = d.kind in config.drift_alert_groups and column not in config.drift_ignore
            if alerting and d.method == config.drift_method and is_drifted(d.score, d.method, config.drift_threshold):
                out.append(column)
        return out

    @property
    def drift_share(self) -> float:
        return float(np.mean([d.drifted for d in self.drift.values()])) if self.drift else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({
            "window": {"start": self.window.start, "end": self.window.end, "days": self.window.days},
            "reference_window": {"start": self.reference_window.start, "end": self.reference_window.end,
                                 "days": self.reference_window.days},
            "rows": {"current": self.current_rows, "reference": self.reference_rows,
                     "reference_sample": self.reference_sample_rows},
            "sufficient": self.sufficient,
            "safety": self.safety,
            "reference_safety": self.reference_safety,
            "daily": self.daily.to_dict("records"),
            "stability": self.stability,
            "actions": {"mean_change_shift": self.mean_change_shift, "big_jump_increase": self.big_jump_increase},
            "rationale": {**self.rationale, "ratio": self.rationale_ratio},
            "volume": self.volume,
            "category_mix": {"psi": self.psi, "coverage": self.category_coverage,
                             "shares": self.mix.to_dict("records")},
            "drift": {"share": self.drift_share, "drifted_alert_features": self.drifted_alert_features,
                      "columns": {c: asdict(d) for c, d in self.drift.items()}},
            **self.extra,
        })


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None  # JSON has no NaN
    return value


@dataclass(frozen=True)
class PreparedWindows:
    """The windows a run compares: current, reference, and the reference sample distributions are
    compared with (re-weighted to the current category mix when configured)."""

    current: pd.DataFrame
    window: Window
    reference: pd.DataFrame
    reference_window: Window
    reference_sample: pd.DataFrame
    log: pd.DataFrame  # the whole current log (for the daily volume)


def prepare_windows(reference_log: pd.DataFrame, current_log: pd.DataFrame, config: MonitorConfig, *,
                    end: str | dt.date | None = None, reference_start: str | dt.date | None = None,
                    reference_end: str | dt.date | None = None) -> PreparedWindows:
    current, window = select_window(current_log, days=config.window_days, end=end, name="current window")
    reference, reference_window = select_window(reference_log, start=reference_start, end=reference_end,
                                                name="reference window")
    if CATEGORY not in current or CATEGORY not in reference:
        raise ValueError("both windows need a category column (see attach_categories)")
    ref_derived = reference[CATEGORY].astype(str).str.startswith(DERIVED).any()
    cur_derived = current[CATEGORY].astype(str).str.startswith(DERIVED).any()
    if cur_derived and not ref_derived:
        harmonise_categories(reference, current)
    elif ref_derived and not cur_derived:
        harmonise_categories(current, reference)
    if config.match_category_mix:
        sample = match_category_mix(reference, current, size=min(len(reference), config.max_reference_rows),
                                     seed=config.seed)
    else:
        sample = sample_rows(reference, config.max_reference_rows, config.seed)
    return PreparedWindows(current, window, reference, reference_window, sample, current_log)


def window_figures(prepared: PreparedWindows, config: MonitorConfig,
                   drift_scores: Mapping[str, float] | None = None) -> WindowFigures:
    """Every figure of the current window against the reference. ``drift_scores`` come from Evidently
    when the job renders its report; without them the same statistic is computed here."""
    cur, ref, sample = prepared.current, prepared.reference, prepared.reference_sample
    cur_model, sample_model = model_decisions(cur), model_decisions(sample)
    mix = category_mix(ref, cur)
    covered = cur[CATEGORY].isin(set(ref[CATEGORY])).to_numpy()
    return WindowFigures(
        window=prepared.window,
        reference_window=prepared.reference_window,
        current_rows=len(cur),
        reference_rows=len(ref),
        reference_sample_rows=len(sample),
        safety=safety_figures(cur),
        reference_safety=safety_figures(ref),
        daily=daily_safety(cur),
        stability={"reference": stability_figures(sample_model["discount_change"].to_numpy(), big_jump=config.big_jump),
                   "current": stability_figures(cur_model["discount_change"].to_numpy(), big_jump=config.big_jump)},
        rationale={"reference": rationale_figures(sample_model), "current": rationale_figures(cur_model)},
        volume=volume_figures(prepared.log, prepared.window, config.volume_lookback_days),
        mix=mix,
        psi=population_stability_index(mix["reference_share"].to_numpy(), mix["current_share"].to_numpy()),
        category_coverage=float(covered.mean()),
        drift=column_drift(sample, cur, config, drift_scores),
        sufficient=len(cur) >= config.min_window_decisions,
    )


def write_summary_json(path: str | Path, summary: Mapping[str, Any]) -> Path:
    from aigp.io import write_text

    return write_text(path, json.dumps(_jsonable(summary), indent=2, sort_keys=True, allow_nan=False) + "\n")

