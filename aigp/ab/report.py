"""The A/B report of an experiment's outcomes: GMV, ROI and MAR per group at 7 and 14 days with bootstrap
confidence intervals and uplift over the control (``aigp.ab.experiment.analyse``), plus plots of the
cumulative GMV per group, the |a| distribution per group and, when LTVE Q-scores are given, realised GMV
per Q decile; written as markdown, JSON and one self-contained HTML page.

Inputs (what ``aigp ab simulate --out DIR`` writes; a live experiment provides the same columns):
- the experiment's config (``ab_metrics.json``, optional): control, ceiling, horizons, bootstrap, seed;
- per-SKU outcomes (``ab_skus.parquet``): ``sku_id``, ``group``, ``gmv_{h}d`` and ``spend_{h}d`` for each
  horizon h, ``gmv_tier1`` and ``roi_target`` (the milestone of the SKU's category), optionally a Q column;
- per SKU-day outcomes (``ab_daily.parquet``, optional): ``sku_id``, ``day`` (age, 0 = launch day),
  ``discount_change``, ``gmv``; without it the cumulative-GMV plot shows the 7/14-day points only and the
  |a| plot is left out;
- Q-scores (optional): a column of the per-SKU table or a parquet with ``sku_id`` and that column (several
  rows per SKU are averaged), e.g. the LTVE's Q(s, a) of each SKU's launch-day decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from aigp.ab.experiment import METRICS, ABConfig, ABResult, analyse, format_markdown, sku_outcomes
from aigp.htmlreport import figure_html, figure_png, html_page, html_table, matplotlib_agg
from aigp.io import atomic_path, write_json, write_text
from aigp.market.simulator import RunResult
from aigp.policy_metrics import TAIL_GRID, stability_figures

SKU_FILE = "ab_skus.parquet"
DAILY_FILE = "ab_daily.parquet"
METRICS_FILE = "ab_metrics.json"  # written by `aigp ab simulate --out` with the experiment's config
DAILY_COLUMNS = ("sku_id", "day", "discount_change", "gmv")


class DailyOutcomeSink:
    """A simulation log sink that keeps only what the A/B report needs per SKU-day (a few columns, so a
    20k-SKU cohort costs a few MB)."""

    def __init__(self, keep_first_states: bool = False) -> None:
        self._parts: list[pd.DataFrame] = []
        self._first: list[pd.DataFrame] = []
        self.keep_first_states = keep_first_states  # also keep every column of each SKU's launch-day decision

    def write_decisions(self, frame: pd.DataFrame) -> None:
        if self.keep_first_states:
            self._first.append(frame[frame["days_since_launch"].to_numpy() == 0])
        self._parts.append(pd.DataFrame({
            "sku_id": frame["sku_id"].to_numpy(np.int64),
            "day": frame["days_since_launch"].to_numpy(np.int64),
            "discount_change": frame["discount_change"].to_numpy(np.float64),
            "gmv": frame["out_gmv"].to_numpy(np.float64),
        }))

    def write_reviews(self, frame: pd.DataFrame) -> None:  # reviews are not part of the report
        return None

    def frame(self) -> pd.DataFrame:
        if not self._parts:
            return pd.DataFrame({c: pd.Series(dtype="int64" if c in ("sku_id", "day") else "float64")
                                 for c in DAILY_COLUMNS})
        return pd.concat(self._parts, ignore_index=True)


    def first_states(self) -> pd.DataFrame:
        """Each SKU's launch-day decision row (state and action), when ``keep_first_states``."""
        if not self._first:
            raise ValueError("no launch-day decisions kept: create the sink with keep_first_states=True")
        return pd.concat(self._first, ignore_index=True)


def cohort_q_scores(ltve: Any, first_states: pd.DataFrame, config: ABConfig, q_column: str = "q_score"
                    ) -> pd.DataFrame:
    """The LTVE's Q of each cohort SKU's launch-day state and the action its group's policy took there
    (``sku_id``, ``q_column``): the state joins the day's dynamic features with the cohort's static ones."""
    from aigp.market.simulator import Market

    static = Market(config.cohort_market()).sku_frame()
    keep = ["sku_id", *[c for c in static.columns if c not in first_states.columns]]
    states = first_states.merge(static[keep], on="sku_id", how="left", validate="one_to_one")
    q = ltve.q_values(states, states["discount_change"].to_numpy(np.float32)[:, None])[:, 0]
    return pd.DataFrame({"sku_id": states["sku_id"].to_numpy(), q_column: q})


def load_inputs(path: str | Path, daily: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(per-SKU outcomes, per SKU-day outcomes or None) from a file, or from a directory holding
    ``ab_skus.parquet`` and possibly ``ab_daily.parquet``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (run `aigp ab simulate --out DIR` first)")
    if path.is_dir():
        skus_path = path / SKU_FILE
        if not skus_path.exists():
            raise FileNotFoundError(f"{path} holds no {SKU_FILE}")
        if daily is None and (path / DAILY_FILE).exists():
            daily = path / DAILY_FILE
    else:
        skus_path = path
    return pd.read_parquet(skus_path), (pd.read_parquet(daily) if daily is not None else None)


def experiment_config(path: str | Path) -> ABConfig | None:
    """The ABConfig `aigp ab simulate --out DIR` recorded in DIR, if any."""
    import json

    metrics = Path(path) / METRICS_FILE
    if not Path(path).is_dir() or not metrics.exists():
        return None
    return ABConfig.build(**json.loads(metrics.read_text())["config"])


def attach_q(skus: pd.DataFrame, q_scores: str | Path | pd.DataFrame | None, q_column: str) -> pd.DataFrame:
    """The per-SKU table with a ``q_column`` from ``q_scores`` (mean per SKU) when given."""
    if q_scores is None:
        return skus
    table = q_scores if isinstance(q_scores, pd.DataFrame) else pd.read_parquet(q_scores)
    missing = [c for c in ("sku_id", q_column) if c not in table]
    if missing:
        raise ValueError(f"Q-scores lack column(s) {missing}; they have {list(table.columns)}")
    per_sku = table.groupby("sku_id")[q_column].mean()
    out = skus.drop(columns=[q_column], errors="ignore")
    out[q_column] = out["sku_id"].map(per_sku).to_numpy()
    if out[q_column].isna().all():
        raise ValueError("no Q-score matches a SKU of the experiment (check sku_id)")
    return out


def report_config(skus: pd.DataFrame, base: ABConfig | None = None, *, control: str | None = None,
                  ceiling: str | None = None, bootstrap: int | None = None) -> ABConfig:
    """The experiment's ABConfig with the allocation the data shows (groups and their shares)."""
    if "group" not in skus:
        raise ValueError("the per-SKU outcomes need a 'group' column")
    shares = skus["group"].astype(str).value_counts(normalize=True).sort_index()
    base = base or ABConfig()
    control = control or base.control
    if control not in shares:
        raise ValueError(f"control={control!r} is not a group of the data {list(shares.index)}")
    ceiling = ceiling if ceiling is not None else base.ceiling
    horizons = tuple(h for h in base.horizons if f"gmv_{h}d" in skus and f"spend_{h}d" in skus)
    if not horizons:
        raise ValueError(f"the per-SKU outcomes lack gmv_<h>d / spend_<h>d for every horizon {base.horizons}")
    for column in ("gmv_tier1", "roi_target"):
        if column not in skus:
            raise ValueError(f"the per-SKU outcomes lack column {column!r} (the milestone of MAR)")
    return base.with_updates(allocation={str(g): float(s) for g, s in shares.items()}, control=control,
                             ceiling=ceiling if ceiling in shares else None, horizons=horizons,
                             **({"bootstrap": bootstrap} if bootstrap else {}))


@dataclass
class ABReport:
    result: ABResult
    skus: pd.DataFrame
    daily: pd.DataFrame | None
    q_column: str
    q_deciles: pd.DataFrame | None = None
    q_spearman: dict[str, float] = field(default_factory=dict)
    plots: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    @property
    def config(self) -> ABConfig:
        return self.result.config

    def markdown(self) -> str:
        text = format_markdown(self.result)
        if self.q_deciles is not None:
            text += "\n**Q-score deciles vs realised GMV** (Spearman of decile means: " + ", ".join(
                f"{k} {v:.3f}" for k, v in self.q_spearman.items()) + ")\n"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.model_dump(mode="json"), "design": self.result.design,
                "metrics": self.result.metrics.to_dict("records"), "uplift": self.result.uplift.to_dict("records"),
                "q_deciles": None if self.q_deciles is None else self.q_deciles.to_dict("records"),
                "q_spearman": self.q_spearman}


def q_decile_table(skus: pd.DataFrame, q_column: str, horizons: tuple[int, ...]) -> tuple[pd.DataFrame, dict]:
    """Mean realised GMV per decile of Q, and Spearman correlations (decile means, as the paper; and per SKU)."""
    frame = skus[np.isfinite(skus[q_column].to_numpy(np.float64))]
    if len(frame) < 10:
        raise ValueError(f"only {len(frame)} SKUs have a finite {q_column}: too few for deciles")
    decile = pd.qcut(frame[q_column].rank(method="first"), 10, labels=False)
    table = frame.groupby(decile).agg(q_mean=(q_column, "mean"), skus=("sku_id", "size"),
                                      **{f"gmv_{h}d": (f"gmv_{h}d", "mean") for h in horizons})
    table.index.name = "decile"
    table = table.reset_index()
    table["decile"] += 1
    rho = {}
    for h in horizons:
        rho[f"deciles_gmv_{h}d"] = float(stats.spearmanr(table["decile"], table[f"gmv_{h}d"]).statistic)
        rho[f"skus_gmv_{h}d"] = float(stats.spearmanr(frame[q_column], frame[f"gmv_{h}d"]).statistic)
    return table, rho


def build_report(skus: pd.DataFrame, config: ABConfig, *, daily: pd.DataFrame | None = None,
                 q_column: str = "q_score", plots: bool = True) -> ABReport:
    """Analyse the experiment (``analyse`` on ``sku_outcomes`` of every group and horizon) and plot it."""
    skus = skus.reset_index(drop=True)
    groups = skus["group"].astype(str).to_numpy()
    frames = {h: {g: sku_outcomes(skus[groups == g], h).reset_index(drop=True) for g in config.allocation}
              for h in config.horizons}
    metrics, uplift = analyse(frames, config)
    if daily is not None:
        missing = [c for c in DAILY_COLUMNS if c not in daily]
        if missing:
            raise ValueError(f"the per SKU-day outcomes lack column(s) {missing}")
        daily = daily.merge(skus[["sku_id", "group"]], on="sku_id", how="inner")
        if daily.empty:
            raise ValueError("no per SKU-day row matches a SKU of the experiment (check sku_id)")
    changes = (np.empty((len(skus), 0)) if daily is None else
               daily.pivot_table(index="sku_id", columns="day", values="discount_change")
               .reindex(skus["sku_id"]).to_numpy())
    run = RunResult(summary=skus, changes=changes, discounts=np.empty((len(skus), 0)))
    result = ABResult(config=config, run=run, groups=groups, metrics=metrics, uplift=uplift,
                      design="hash-partitioned A/B")
    report = ABReport(result, skus, daily, q_column)
    if q_column in skus:
        report.q_deciles, report.q_spearman = q_decile_table(skus, q_column, config.horizons)
    if plots:
        report.plots = report_plots(report)
    return report


# ------------------------------------------------------------------------------------------------------
# plots and page
# ------------------------------------------------------------------------------------------------------
def _colors(groups: list[str]) -> dict[str, Any]:
    plt = matplotlib_agg()
    cmap = plt.get_cmap("tab10")
    return {g: cmap(i % 10) for i, g in enumerate(groups)}


def plot_cumulative_gmv(report: ABReport) -> bytes:
    plt = matplotlib_agg()
    cfg = report.config
    colors = _colors(list(cfg.allocation))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    m = report.result.metrics.query("metric == 'gmv'")
    for group in cfg.allocation:
        color = colors[group]
        if report.daily is not None:
            day = report.daily[report.daily["group"] == group]
            per_sku = day.pivot_table(index="sku_id", columns="day", values="gmv", aggfunc="sum").fillna(0.0)
            cumulative = per_sku.cumsum(axis=1)
            mean = cumulative.mean(0)
            se = cumulative.std(0, ddof=1) / np.sqrt(max(len(cumulative), 1))
            x = mean.index.to_numpy() + 1
            ax.plot(x, mean.to_numpy(), color=color, lw=1.6, label=f"{group} ({len(cumulative):,} SKUs)")
            ax.fill_between(x, (mean - 1.96 * se).to_numpy(), (mean + 1.96 * se).to_numpy(), color=color, alpha=0.15)
        g = m[m["group"] == group]
        ax.errorbar(g["horizon"], g["value"], yerr=[g["value"] - g["ci_low"], g["ci_high"] - g["value"]], fmt="o",
                    color=color, capsize=3, label=None if report.daily is not None else group)
    ax.set_xlabel("days since launch")
    ax.set_ylabel("cumulative GMV per SKU (CNY)")
    ax.set_title("Cumulative GMV per group (points: bootstrap CI at the report horizons)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def plot_abs_change(report: ABReport) -> bytes:
    plt = matplotlib_agg()
    assert report.daily is not None
    cfg = report.config
    colors = _colors(list(cfg.allocation))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.02 / (len(cfg.allocation) + 1)
    for k, group in enumerate(cfg.allocation):
        figures = stability_figures(report.daily.loc[report.daily["group"] == group, "discount_change"].to_numpy())
        axes[0].plot([float(x) for x in figures["tail"]], list(figures["tail"].values()), marker="o", ms=3,
                     color=colors[group], label=f"{group} (|a|<0.04: {figures['small_move_share']:.0%})")
        lo = np.array([float(x) for x in figures["bins"]])
        axes[1].bar(lo + width * (k + 0.5), list(figures["bins"].values()), width=width, color=colors[group],
                    label=group)
    axes[0].set_yscale("log")
    axes[0].set_xlim(0, TAIL_GRID[-1])
    axes[0].set_xlabel("x")
    axes[0].set_ylabel("Pr(|a| >= x)")
    axes[0].set_title("Tail of daily changes per group (Fig. 5a)", fontsize=10)
    axes[1].set_xlabel("|a| (bins of 0.02)")
    axes[1].set_ylabel("share of decisions")
    axes[1].set_title("Binned |a| per group (Fig. 5b)", fontsize=10)
    for ax in axes:
        ax.legend(fontsize=7)
    return figure_png(fig)


def plot_q_deciles(report: ABReport) -> bytes:
    plt = matplotlib_agg()
    assert report.q_deciles is not None
    table = report.q_deciles
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for h in report.config.horizons:
        rho = report.q_spearman[f"deciles_gmv_{h}d"]
        ax.plot(table["decile"], table[f"gmv_{h}d"], marker="o", label=f"{h}-day GMV (Spearman {rho:.2f})")
    ax.set_xticks(table["decile"])
    ax.set_xlabel(f"decile of {report.q_column} (1 = lowest)")
    ax.set_ylabel("mean realised GMV per SKU (CNY)")
    ax.set_title("Q-score decile vs realised GMV", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def report_plots(report: ABReport) -> dict[str, tuple[bytes, str]]:
    plots = {"cumulative_gmv": (plot_cumulative_gmv(report), "cumulative GMV per SKU by group")}
    if report.daily is not None:
        plots["abs_change"] = (plot_abs_change(report), "|a| distribution per group")
    if report.q_deciles is not None:
        plots["q_deciles"] = (plot_q_deciles(report), "realised GMV per Q-score decile")
    return plots


def _interval(value: float, low: float, high: float, fmt: str) -> str:
    return f"{fmt.format(value)} [{fmt.format(low)}, {fmt.format(high)}]"


def report_html(report: ABReport) -> str:
    cfg = report.config
    fmt = {"gmv": "{:,.0f}", "roi": "{:.2f}", "mar": "{:.1%}"}
    sections = []
    for h in cfg.horizons:
        rows = []
        for group in cfg.allocation:
            m = report.result.metrics.query("group == @group and horizon == @h").set_index("metric")
            u = report.result.uplift.query("group == @group and horizon == @h").set_index("metric")
            row: dict[str, Any] = {"group": group, "SKUs": int(m.loc["gmv", "n_skus"])}
            for metric in METRICS:
                row[metric.upper()] = _interval(m.loc[metric, "value"], m.loc[metric, "ci_low"],
                                                m.loc[metric, "ci_high"], fmt[metric])
            for metric in METRICS:
                row[f"{metric.upper()} uplift"] = ("control" if group == cfg.control else _interval(
                    u.loc[metric, "uplift"], u.loc[metric, "ci_low"], u.loc[metric, "ci_high"], "{:+.1%}"))
            rows.append(row)
        sections.append((f"{h}-day outcomes", html_table(rows)))
    if "cumulative_gmv" in report.plots:
        sections.append(("Cumulative GMV", figure_html(*report.plots["cumulative_gmv"])))
    if "abs_change" in report.plots:
        sections.append(("Price-change stability per group", figure_html(*report.plots["abs_change"])))
    else:
        sections.append(("Price-change stability per group",
                         '<p class="note">No per SKU-day outcomes given (ab_daily.parquet): no |a| distribution.</p>'))
    if report.q_deciles is not None:
        rho = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in report.q_spearman.items())
        sections.append(("Q-score deciles vs realised GMV", figure_html(*report.plots["q_deciles"])
                         + f"<p>Spearman: {rho}.</p>" + html_table(report.q_deciles)))
    else:
        sections.append(("Q-score deciles vs realised GMV",
                         f'<p class="note">No {report.q_column} column given: no Q-decile analysis.</p>'))
    intro = (f"<p>{report.result.design}; control <b>{cfg.control}</b>; {cfg.confidence:.0%} bootstrap intervals "
             f"over SKUs ({cfg.bootstrap} resamples); uplift = group / control - 1. GMV is per SKU, ROI the "
             "group's integrated GMV / spend, MAR the share of SKUs reaching the milestone (prorated at 7 days)."
             "</p>")
    return html_page("AIGP A/B report", sections, intro=intro)


def write_report(report: ABReport, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    files = {}
    for name, (png, _) in report.plots.items():
        path = out / "plots" / f"ab_{name}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(png)
        files[f"plot_{name}"] = path
    files["markdown"] = write_text(out / "ab_report.md", report.markdown())
    files["json"] = write_json(out / "ab_report.json", report.to_dict())
    files["html"] = write_text(out / "ab_report.html", report_html(report))
    return files
