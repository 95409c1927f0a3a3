"""Plots of a monitoring window (matplotlib, PNG bytes): Fig. 5 stability curves, action distributions,
drift scores, category mix, daily safety rates, rationale length and latency."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from aigp.htmlreport import figure_png, matplotlib_agg
from aigp.market.simulator import SMALL_MOVE
from aigp.monitoring.figures import PreparedWindows, WindowFigures, model_decisions
from aigp.policy_metrics import BIN_WIDTH

REF, CUR = "#7f8c8d", "#c0392b"


def _legend_labels(figures: WindowFigures) -> tuple[str, str]:
    return f"reference {figures.reference_window}", f"current {figures.window}"


def stability_tail(figures: WindowFigures) -> bytes:
    plt = matplotlib_agg()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for key, color, label in zip(("reference", "current"), (REF, CUR), _legend_labels(figures), strict=True):
        tail = figures.stability[key]["tail"]
        ax.plot([float(x) for x in tail], list(tail.values()), marker="o", ms=3, color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("x")
    ax.set_ylabel("Pr(|a| >= x) (log scale)")
    ax.set_title("Tail of daily price changes (paper Fig. 5a)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def stability_bins(figures: WindowFigures) -> bytes:
    plt = matplotlib_agg()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for k, (key, color, label) in enumerate(zip(("reference", "current"), (REF, CUR), _legend_labels(figures),
                                                strict=True)):
        bins = figures.stability[key]["bins"]
        lo = np.array([float(x) for x in bins])
        ax.bar(lo + BIN_WIDTH * (0.25 + 0.5 * k), list(bins.values()), width=BIN_WIDTH / 2, color=color, label=label)
    ax.axvline(SMALL_MOVE, color="k", ls=":", lw=1)
    ax.set_xlabel("|a| (bins of 0.02)")
    ax.set_ylabel("share of decisions")
    ax.set_title("Binned |a| (paper Fig. 5b); dotted: |a| = 0.04")
    ax.legend(fontsize=8)
    return figure_png(fig)


def actions(figures: WindowFigures, prepared: PreparedWindows) -> bytes:
    plt = matplotlib_agg()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    ref, cur = model_decisions(prepared.reference_sample), model_decisions(prepared.current)
    for ax, column, edges, title in ((axes[0], "discount_change", np.arange(-0.2, 0.2001, 0.01), "a = d_t - d_{t-1}"),
                                     (axes[1], "new_discount", np.arange(0.5, 1.0001, 0.025), "d (1 = list price)")):
        for frame, color, label in ((ref, REF, "reference"), (cur, CUR, "current")):
            values = frame[column].to_numpy(np.float64)
            ax.hist(values[np.isfinite(values)], bins=edges, density=True, histtype="step", lw=1.6, color=color,
                    label=label)
        ax.set_title(f"model actions: {title}")
        ax.legend(fontsize=8)
    return figure_png(fig)


def drift_scores_figure(figures: WindowFigures, top: int = 30) -> Any:
    """Bars of the per-column drift scores on a log axis: one column far off (rationale length against a
    reference without rationales scores ~10^5) must not flatten the alerting features' bars near the
    threshold. Each bar carries its value; the axis spans the scores and the threshold."""
    plt = matplotlib_agg()
    drift = sorted(figures.drift.values(), key=lambda d: d.score if d.method != "ks" else -d.score, reverse=True)
    drift = [d for d in drift if np.isfinite(d.score)][:top][::-1]
    fig, ax = plt.subplots(figsize=(7.5, max(2.5, 0.24 * len(drift) + 1)))
    if not drift:
        ax.set_title("Drift per column: no column to compare", fontsize=9)
        return fig
    threshold, method = drift[0].threshold, drift[0].method
    positive = [d.score for d in drift if d.score > 0]
    low = max(min([*positive, threshold]) / 3.0, threshold / 100.0)  # below: at the left edge, value written
    high = max([*positive, threshold]) * 3.0
    scores = [max(d.score, low) for d in drift]  # a zero score (identical windows) sits at the axis' left edge
    colors = [CUR if d.drifted and d.alerting else ("#e67e22" if d.drifted else REF) for d in drift]
    ax.barh([f"{d.column} ({d.kind})" for d in drift], [s - low for s in scores], left=low, color=colors)
    for y, (d, s) in enumerate(zip(drift, scores, strict=True)):
        ax.text(s * 1.08, y, f"{d.score:.3g}", va="center", fontsize=6)
    ax.set_xscale("log")
    ax.set_xlim(low, high * 3.0)
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel(("normed Wasserstein distance" if method == "wasserstein" else "KS p-value") + " (log scale)")
    ax.set_title("Drift per column (red: drifted, counts toward the alert; orange: drifted, context only)",
                 fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    return fig


def drift_scores(figures: WindowFigures, top: int = 30) -> bytes:
    return figure_png(drift_scores_figure(figures, top))


def category_mix(figures: WindowFigures) -> bytes:
    plt = matplotlib_agg()
    mix = figures.mix.iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.3 * len(mix) + 1)))
    y = np.arange(len(mix))
    ax.barh(y - 0.2, mix["reference_share"], height=0.4, color=REF, label="reference")
    ax.barh(y + 0.2, mix["current_share"], height=0.4, color=CUR, label="current")
    ax.set_yticks(y, mix["category"], fontsize=8)
    ax.set_xlabel("share of decisions")
    ax.set_title(f"Category mix (PSI {figures.psi:.3f})")
    ax.legend(fontsize=8)
    return figure_png(fig)


def daily_safety(figures: WindowFigures) -> bytes:
    plt = matplotlib_agg()
    daily = figures.daily
    fig, ax = plt.subplots(figsize=(7, 3.4))
    x = pd.to_datetime(daily["date"])
    ax2 = ax.twinx()
    ax2.bar(x, daily["decisions"], color="#d5dbdb", width=0.8, label="decisions")
    ax2.set_ylabel("decisions per day")
    for column, color in (("fallback_rate", "#c0392b"), ("parse_failure_rate", "#8e44ad"),
                          ("projection_rate", "#2980b9")):
        ax.plot(x, daily[column], marker="o", ms=3, color=color, label=column.replace("_", " "))
    top = np.nanmax(daily[["fallback_rate", "parse_failure_rate", "projection_rate"]].to_numpy(np.float64),
                    initial=0.0)
    ax.set_ylim(0.0, max(0.05, 1.2 * top))
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_ylabel("rate")
    ax.set_title("Safety per day")
    ax.legend(fontsize=8, loc="upper left")
    fig.autofmt_xdate()
    return figure_png(fig)


def distribution(prepared: PreparedWindows, column: str, title: str, xlabel: str, log: bool = False) -> bytes | None:
    """Histogram of ``column`` over the model's decisions of both windows; None if nothing to show."""
    ref = model_decisions(prepared.reference_sample)[column].to_numpy(np.float64)
    cur = model_decisions(prepared.current)[column].to_numpy(np.float64)
    ref, cur = ref[np.isfinite(ref) & (ref > 0)], cur[np.isfinite(cur) & (cur > 0)]
    if ref.size == 0 and cur.size == 0:
        return None
    plt = matplotlib_agg()
    both = np.concatenate([ref, cur])
    edges = (np.geomspace(both.min(), both.max() * 1.0001, 40) if log and both.min() > 0
             else np.linspace(both.min(), both.max() * 1.0001, 40))
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for values, color, label in ((ref, REF, "reference"), (cur, CUR, "current")):
        if values.size:
            ax.hist(values, bins=edges, density=True, histtype="step", lw=1.6, color=color, label=label)
    if log:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor tick labels (2x10^2, 3x10^2, ...) overlap
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return figure_png(fig)


def all_plots(figures: WindowFigures, prepared: PreparedWindows) -> dict[str, tuple[bytes, str]]:
    """name -> (PNG, caption), in page order."""
    plots: dict[str, tuple[bytes, str]] = {
        "stability_tail": (stability_tail(figures), "Pr(|a| >= x), model decisions (Fig. 5a)"),
        "stability_bins": (stability_bins(figures), "binned |a| (Fig. 5b)"),
        "actions": (actions(figures, prepared), "distribution of the model's a and d"),
        "drift_scores": (drift_scores(figures), "per-column drift scores"),
        "category_mix": (category_mix(figures), "category mix"),
        "daily_safety": (daily_safety(figures), "safety rates and decisions per day"),
    }
    rationale = distribution(prepared, "rationale_tokens", "Rationale length", "tokens")
    if rationale is not None:
        plots["rationale_length"] = (rationale, "rationale length (tokens)")
    latency = distribution(prepared, "latency_ms", "Decision latency", "ms (log scale)", log=True)
    if latency is not None:
        plots["latency"] = (latency, "decision latency")
    return plots
