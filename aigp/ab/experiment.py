"""Simulated online A/B test: a fresh cohort of new SKUs, hash-partitioned into groups, each group priced
by its policy for 14 days; GMV, ROI and MAR at 7 and 14 days with bootstrap confidence intervals, uplift
over the control (the price-sales baseline) and the share of the control→ceiling (oracle) gap closed.

Metric definitions (per group, over its SKUs):
- GMV: mean cumulative GMV per SKU over the first h days (groups differ in size, so a mean, not a sum);
- ROI: integrated ROI, total GMV / total spend of the group over the first h days;
- MAR: share of SKUs with GMV_h >= tier1 · h/14 and ROI_h >= the category's ROI target (the milestone
  tier is defined on 14 days; at 7 days it is prorated).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from aigp.ab.partition import assign_groups
from aigp.config import StrictConfig
from aigp.markdown import markdown_table
from aigp.market.config import MarketConfig
from aigp.market.observation import Policy
from aigp.market.simulator import Market, RunResult
from aigp.market.sinks import LogSink, MemorySink

DailyValue = Callable[[pd.DataFrame], np.ndarray]

METRICS = ("gmv", "roi", "mar")
MILESTONE_DAYS = 14


class ABConfig(StrictConfig):
    salt: str = Field("aigp-ab-2026", min_length=1, description="experiment salt of the hash partition")
    allocation: dict[str, float] = Field(
        default_factory=lambda: {"random": 0.2, "static": 0.2, "expert": 0.2, "price_sales": 0.2, "oracle": 0.2},
        description="group -> traffic share; a group's name is its policy's name unless `policies` maps it",
    )
    policies: dict[str, str] = Field(default_factory=dict, description="group -> policy name, where they differ")
    control: str = Field("price_sales", description="the group uplift is measured against")
    ceiling: str | None = Field("oracle", description="the group whose gap to the control is the 100% mark")
    seed: int = Field(11, ge=0)
    cohort_skus: int = Field(20_000, ge=10)
    cohort_start: dt.date = Field(dt.date(2026, 8, 15), description="first launch day of the test cohort")
    cohort_launch_days: int = Field(28, ge=1)
    history_skus: int = Field(20_000, ge=100, description="logged SKUs the price-sales model is fitted on")
    history_start: dt.date = Field(dt.date(2026, 3, 1))
    history_launch_days: int = Field(150, ge=1)
    horizons: tuple[int, ...] = Field((7, 14), min_length=1)
    bootstrap: int = Field(1000, ge=50)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)

    @model_validator(mode="after")
    def _groups_known(self) -> ABConfig:
        if self.control not in self.allocation:
            raise ValueError(f"control={self.control!r} is not a group of allocation {list(self.allocation)}")
        if self.ceiling is not None and self.ceiling not in self.allocation:
            raise ValueError(f"ceiling={self.ceiling!r} is not a group of allocation {list(self.allocation)}")
        if max(self.horizons) > MILESTONE_DAYS:
            raise ValueError(f"horizons {self.horizons} exceed the {MILESTONE_DAYS}-day milestone window")
        return self

    def policy_of(self, group: str) -> str:
        return self.policies.get(group, group)

    def cohort_market(self) -> MarketConfig:
        return MarketConfig.build(seed=self.seed, n_skus=self.cohort_skus, start_date=self.cohort_start,
                                  launch_days=self.cohort_launch_days, sku_id_offset=10_000_000)

    def history_market(self) -> MarketConfig:
        return MarketConfig.build(seed=self.seed, n_skus=self.history_skus, start_date=self.history_start,
                                  launch_days=self.history_launch_days)


@dataclass(frozen=True)
class ABResult:
    config: ABConfig
    run: RunResult
    groups: np.ndarray
    metrics: pd.DataFrame  # group, horizon, metric, value, ci_low, ci_high, n_skus
    uplift: pd.DataFrame  # group, horizon, metric, uplift, ci_low, ci_high, gap_closed, gap_ci_low, gap_ci_high
    design: str = "hash-partitioned A/B"
    # with ``daily_value`` (run_counterfactual): group, horizon, value, ci_low, ci_high, diff, diff_ci_low,
    # diff_ci_high (mean per-SKU sum over the first h days; diff = paired difference from the control)
    values: pd.DataFrame | None = None
    value_sums: dict[str, dict[int, np.ndarray]] | None = None  # group -> horizon -> per-SKU sum (cohort order)

    def value_difference(self, group: str, other: str, horizon: int) -> tuple[float, float, float]:
        """Paired difference of ``daily_value`` sums, ``group`` minus ``other`` at ``horizon``: (mean, CI low, high)."""
        if self.value_sums is None:
            raise ValueError("this A/B was run without daily_value")
        return paired_difference(self.value_sums[group][horizon], self.value_sums[other][horizon],
                                 bootstrap=self.config.bootstrap, confidence=self.config.confidence,
                                 seed=self.config.seed + 1)

    def table(self) -> pd.DataFrame:
        """One row per group: every metric at every horizon with its CI, uplift and gap closed."""
        rows = []
        for group in self.config.allocation:
            row: dict[str, object] = {"group": group, "policy": self.config.policy_of(group),
                                      "skus": int((self.groups == group).sum())}
            for h in self.config.horizons:
                for m in METRICS:
                    v = self.metrics.query("group == @group and horizon == @h and metric == @m").iloc[0]
                    row[f"{m}_{h}d"] = v.value
                    row[f"{m}_{h}d_ci"] = (v.ci_low, v.ci_high)
                    u = self.uplift.query("group == @group and horizon == @h and metric == @m")
                    if len(u):
                        row[f"{m}_{h}d_uplift"] = u.iloc[0].uplift
                        row[f"{m}_{h}d_uplift_ci"] = (u.iloc[0].ci_low, u.iloc[0].ci_high)
                        row[f"{m}_{h}d_gap_closed"] = u.iloc[0].gap_closed
            rows.append(row)
        return pd.DataFrame(rows)

    def markdown(self) -> str:
        return format_markdown(self)


def sku_outcomes(summary: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Per-SKU GMV, spend and milestone success over the first ``horizon`` days."""
    gmv, spend = summary[f"gmv_{horizon}d"].to_numpy(), summary[f"spend_{horizon}d"].to_numpy()
    roi = np.divide(gmv, spend, out=np.zeros_like(gmv), where=spend > 0)
    tier = summary["gmv_tier1"].to_numpy() * horizon / MILESTONE_DAYS
    mar = (gmv >= tier) & (roi >= summary["roi_target"].to_numpy())
    return pd.DataFrame({"gmv": gmv, "spend": spend, "mar": mar.astype(np.float64)})


def _metric_draws(outcomes: pd.DataFrame, idx: np.ndarray) -> dict[str, np.ndarray]:
    """The three group metrics on each bootstrap resample (rows of ``idx`` index SKUs)."""
    gmv, spend, mar = (outcomes[c].to_numpy() for c in ("gmv", "spend", "mar"))
    g, s = gmv[idx].sum(1), spend[idx].sum(1)
    return {"gmv": g / idx.shape[1], "roi": g / np.maximum(s, 1e-12), "mar": mar[idx].mean(1)}


def _bootstrap(frames: Mapping[str, pd.DataFrame], n_boot: int, rng: np.random.Generator,
               paired: bool) -> dict[str, dict[str, np.ndarray]]:
    """Bootstrap distributions of every group's metrics, resampling SKUs (jointly across groups if paired)."""
    draws: dict[str, dict[str, list[np.ndarray]]] = {g: {m: [] for m in METRICS} for g in frames}
    largest = max(len(f) for f in frames.values())
    for block in np.array_split(np.arange(n_boot), max(1, n_boot * largest // 5_000_000)):
        shared = rng.integers(0, largest, size=(len(block), largest)) if paired else None
        for group, frame in frames.items():
            idx = shared if shared is not None else rng.integers(0, len(frame), size=(len(block), len(frame)))
            for m, values in _metric_draws(frame, idx).items():
                draws[group][m].append(values)
    return {g: {m: np.concatenate(v) for m, v in d.items()} for g, d in draws.items()}


def relative_change(value: np.ndarray | float, base: np.ndarray | float) -> np.ndarray:
    """value / base - 1, NaN where the base is 0 or not finite (an uplift over nothing is undefined)."""
    value, base = np.asarray(value, dtype=np.float64), np.asarray(base, dtype=np.float64)
    ok = np.isfinite(base) & (base != 0)
    return np.divide(value, base, out=np.full(np.broadcast(value, base).shape, np.nan), where=ok) - 1.0


def _point(outcomes: pd.DataFrame) -> dict[str, float]:
    spend = outcomes["spend"].sum()
    return {"gmv": float(outcomes["gmv"].mean()),
            "roi": float(outcomes["gmv"].sum() / spend) if spend > 0 else float("nan"),
            "mar": float(outcomes["mar"].mean())}


def analyse(frames_by_horizon: Mapping[int, Mapping[str, pd.DataFrame]], config: ABConfig,
            paired: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group metrics with bootstrap CIs, and uplift / gap closed vs the control.

    ``frames_by_horizon[h][group]`` holds the per-SKU outcomes (``sku_outcomes``) of a group. With ``paired``
    every group holds the same SKUs in the same order (a counterfactual run) and resampling is joint,
    which is what makes paired differences precise. The gap closed is reported only where the
    ceiling-control gap itself is significant (its CI excludes zero); otherwise it is NaN.
    """
    rng = np.random.default_rng(config.seed)
    alpha = (1.0 - config.confidence) / 2.0
    metric_rows, uplift_rows = [], []
    ctrl, ceil = config.control, config.ceiling
    for h, frames in frames_by_horizon.items():
        if paired and len({len(f) for f in frames.values()}) != 1:
            raise ValueError("a paired analysis needs every group to hold the same SKUs")
        point = {g: _point(f) for g, f in frames.items()}
        boot = _bootstrap(frames, config.bootstrap, rng, paired)
        for group, frame in frames.items():
            for m in METRICS:
                lo, hi = np.quantile(boot[group][m], [alpha, 1 - alpha])
                metric_rows.append({"group": group, "horizon": h, "metric": m, "value": point[group][m],
                                    "ci_low": lo, "ci_high": hi, "n_skus": len(frame)})
        for group in frames:
            if group == ctrl:
                continue
            for m in METRICS:
                rel = relative_change(boot[group][m], boot[ctrl][m])
                finite = rel[np.isfinite(rel)]
                low, high = np.quantile(finite, [alpha, 1 - alpha]) if finite.size else (np.nan, np.nan)
                row = {"group": group, "horizon": h, "metric": m,
                       "uplift": float(relative_change(np.float64(point[group][m]), np.float64(point[ctrl][m]))),
                       "ci_low": low, "ci_high": high,
                       "gap_closed": np.nan, "gap_ci_low": np.nan, "gap_ci_high": np.nan}
                if ceil is not None:
                    gap = boot[ceil][m] - boot[ctrl][m]
                    lo, hi = np.quantile(gap, [alpha, 1 - alpha])
                    if lo > 0 or hi < 0:
                        row["gap_closed"] = (point[group][m] - point[ctrl][m]) / (point[ceil][m] - point[ctrl][m])
                        with np.errstate(divide="ignore", invalid="ignore"):
                            share = (boot[group][m] - boot[ctrl][m]) / gap
                        row["gap_ci_low"], row["gap_ci_high"] = np.nanquantile(share, [alpha, 1 - alpha])
                uplift_rows.append(row)
    return pd.DataFrame(metric_rows), pd.DataFrame(uplift_rows)


def run_ab(config: ABConfig, policies: Mapping[str, Policy], *, progress: bool = False,
           sink: LogSink | None = None) -> ABResult:
    """Run the simulated A/B: ``policies`` maps each group of ``config.allocation`` to its policy; ``sink``
    receives the cohort's daily decision log (e.g. ``aigp.ab.report.DailyOutcomeSink``)."""
    missing = [g for g in config.allocation if g not in policies]
    if missing:
        raise ValueError(f"no policy for group(s) {missing}")
    market = Market(config.cohort_market())
    groups = assign_groups(market.skus.sku_id, config.salt, config.allocation)
    empty = [g for g in config.allocation if not (groups == g).any()]
    if empty:
        raise ValueError(f"group(s) {empty} received no SKUs; enlarge the cohort or their share")
    run = market.run({g: policies[g] for g in config.allocation}, groups, progress=progress, sink=sink)
    frames = {h: {g: sku_outcomes(run.summary[groups == g], h).reset_index(drop=True) for g in config.allocation}
              for h in config.horizons}
    metrics, uplift = analyse(frames, config)
    return ABResult(config=config, run=run, groups=groups, metrics=metrics, uplift=uplift)


def run_counterfactual(config: ABConfig, policies: Mapping[str, Policy], *, progress: bool = False,
                       daily_value: DailyValue | None = None) -> ABResult:
    """Every group's policy prices the WHOLE cohort (same SKUs, same luck): paired comparisons.

    Only a simulator can do this; it answers "what would each policy have done on these SKUs" with far
    tighter intervals than a hash-partitioned test. ``result.run`` holds the runs stacked group by group.

    ``daily_value`` scores every decision day (the decision-log rows joined with the SKU's attributes, as a
    training frame holds them: ``out_gmv``, ``out_spend``, ``category``, ``gmv_tier1``, ``days_since_launch``, ...)
    — e.g. the LTVE's reward (``aigp.ltve.artifact.LTVEModel.daily_rewards``): ``result.values`` then holds each
    group's mean per-SKU sum over the first h days and its paired difference from the control, with CIs.
    """
    market = Market(config.cohort_market())
    attributes = market.sku_frame() if daily_value is not None else None
    runs, sums = {}, {}
    for group in config.allocation:
        sink = MemorySink() if daily_value is not None else None
        runs[group] = market.run({group: policies[group]}, progress=progress, sink=sink)
        if sink is not None and attributes is not None and daily_value is not None:
            sums[group] = _value_sums(sink.decisions, attributes, daily_value, runs[group].summary["sku_id"],
                                      config.horizons)
    frames = {h: {g: sku_outcomes(r.summary, h) for g, r in runs.items()} for h in config.horizons}
    metrics, uplift = analyse(frames, config, paired=True)
    values = analyse_values(sums, config) if sums else None
    stacked = RunResult(summary=pd.concat([r.summary for r in runs.values()], ignore_index=True),
                        changes=np.vstack([r.changes for r in runs.values()]),
                        discounts=np.vstack([r.discounts for r in runs.values()]))
    groups = np.concatenate([np.full(len(r.summary), g, dtype=object) for g, r in runs.items()])
    return ABResult(config=config, run=stacked, groups=groups, metrics=metrics, uplift=uplift,
                    design="paired counterfactual (every policy on the same SKUs)", values=values,
                    value_sums=sums or None)


def _value_sums(decisions: pd.DataFrame, attributes: pd.DataFrame, daily_value: DailyValue, sku_ids: pd.Series,
                horizons: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Per horizon, each SKU's (in ``sku_ids`` order) sum of ``daily_value`` over its first h days."""
    keep = [c for c in attributes.columns if c == "sku_id" or c not in decisions.columns]
    days = decisions.merge(attributes[keep], on="sku_id", how="left", validate="many_to_one")
    scores = np.asarray(daily_value(days), dtype=np.float64)
    if scores.shape != (len(days),) or not np.isfinite(scores).all():
        raise ValueError(f"daily_value must return one finite number per decision day ({len(days)}), "
                         f"got shape {scores.shape}")
    age = days["days_since_launch"].to_numpy()
    out = {}
    for h in horizons:
        per_sku = pd.Series(scores[age < h]).groupby(days["sku_id"].to_numpy()[age < h]).sum()
        out[h] = per_sku.reindex(sku_ids.to_numpy(), fill_value=0.0).to_numpy(np.float64)
    return out


def paired_difference(x: np.ndarray, y: np.ndarray, *, bootstrap: int, confidence: float, seed: int
                      ) -> tuple[float, float, float]:
    """Mean of x - y over paired SKUs and its bootstrap CI: (mean, low, high)."""
    d = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(d), size=(bootstrap, len(d)))
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(d[idx].mean(1), [alpha, 1 - alpha])
    return float(d.mean()), float(lo), float(hi)


def analyse_values(sums: Mapping[str, Mapping[int, np.ndarray]], config: ABConfig) -> pd.DataFrame:
    """Mean per-SKU value of each group and its paired difference from the control (SKU bootstrap)."""
    rows = []
    for h in config.horizons:
        control = sums[config.control][h]
        for group, by_h in sums.items():
            x = by_h[h]
            _, lo, hi = paired_difference(x, np.zeros_like(x), bootstrap=config.bootstrap,
                                          confidence=config.confidence, seed=config.seed + 1)
            diff, dlo, dhi = paired_difference(x, control, bootstrap=config.bootstrap, confidence=config.confidence,
                                               seed=config.seed + 1)
            rows.append({"group": group, "horizon": h, "value": float(x.mean()), "ci_low": lo, "ci_high": hi,
                         "diff": diff, "diff_ci_low": dlo, "diff_ci_high": dhi})
    return pd.DataFrame(rows)


def format_markdown(result: ABResult) -> str:
    cfg = result.config
    lines = []
    if cfg.ceiling:
        lines.append(f"Gap closed = share of the `{cfg.control}` → `{cfg.ceiling}` gap; n.s. where that gap is not "
                     "significant.\n")
    for h in cfg.horizons:
        lines.append(f"**{h}-day**, {result.design} (control = `{cfg.control}`; "
                     f"CI = {cfg.confidence:.0%} bootstrap over SKUs)\n")
        head = ["group", "SKUs", "GMV / SKU", "ROI", "MAR", "GMV uplift", "ROI uplift", "MAR uplift"]
        if cfg.ceiling:
            head.append("gap closed (GMV / ROI / MAR)")
        rows = []
        for group in cfg.allocation:
            m = result.metrics.query("group == @group and horizon == @h").set_index("metric")
            cells = [group, str(int(m.loc["gmv", "n_skus"])),
                     f"{m.loc['gmv', 'value']:.0f} [{m.loc['gmv', 'ci_low']:.0f}, {m.loc['gmv', 'ci_high']:.0f}]",
                     f"{m.loc['roi', 'value']:.2f} [{m.loc['roi', 'ci_low']:.2f}, {m.loc['roi', 'ci_high']:.2f}]",
                     f"{m.loc['mar', 'value']:.1%} [{m.loc['mar', 'ci_low']:.1%}, {m.loc['mar', 'ci_high']:.1%}]"]
            u = result.uplift.query("group == @group and horizon == @h").set_index("metric")
            for metric in METRICS:
                if group == cfg.control:
                    cells.append("—")
                else:
                    r = u.loc[metric]
                    cells.append(f"{r.uplift:+.1%} [{r.ci_low:+.1%}, {r.ci_high:+.1%}]")
            if cfg.ceiling:
                if group == cfg.control:
                    cells.append("0%")
                else:
                    cells.append(" / ".join("n.s." if np.isnan(u.loc[k].gap_closed) else f"{u.loc[k].gap_closed:.0%}"
                                            for k in METRICS))
            rows.append(cells)
        lines += [markdown_table(head, rows), ""]
    return "\n".join(lines)
