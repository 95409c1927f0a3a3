"""Ranking diagnostics of a critic against Monte-Carlo truth (issue 20): within a state, does Q order candidate
actions the way their simulated returns do? Spearman and pairwise accuracy on candidates at least Δa apart,
regret of the Q-greedy candidate, CDA against truth, per-state parts with a paired bootstrap over states (CIs and
differences between critics on the same resamples), the truth's own reliability (the noise ceiling), and the
policy-level validity of Avg Q (Kendall τ against the A/B outcomes). ``aigp.ltve.evaluate`` computes the
Monte-Carlo branches these read.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr


def separated_candidates(actions: np.ndarray, min_gap: float) -> np.ndarray:
    """(n, K) mask of the candidates kept so that every two kept in a state are >= ``min_gap`` apart (walking the
    candidates in order of action, a candidate is kept when it is far enough from the last one kept)."""
    keep = np.zeros(actions.shape, dtype=bool)
    for i, row in enumerate(actions):
        last = -np.inf
        for j in np.argsort(row, kind="stable"):
            if row[j] - last >= min_gap - 1e-9:
                keep[i, j], last = True, row[j]
    return keep


def ranking_diagnostics(q: np.ndarray, truth: np.ndarray, se: np.ndarray, actions: np.ndarray,
                        min_gap: float) -> dict[str, float]:
    """How well Q ranks K candidate actions of the same state against their Monte-Carlo returns.

    ``q``, ``truth`` (mean return), ``se`` (its standard error) and ``actions`` are (n, K); column 0 is the
    logged (expert) action and column 1 its counterfactual. Pairs count where the two actions are >= ``min_gap``
    apart and, for accuracies, where the truth separates them (|Δ truth| > 2 SE of the difference).

    - ``mc_spearman`` pooled over states; ``mc_spearman_within_state`` mean over states of the within-state
      Spearman, all candidates; ``..._gap`` the same on candidates >= ``min_gap`` apart;
    - ``mc_pairwise_accuracy``: share of separated pairs Q orders as the truth does; ``..._gap`` pairs >= Δa apart;
    - ``mc_cda`` Q(expert) > Q(cf); ``mc_cda_vs_truth``: Q's verdict agrees with the truth's where it is clear;
    - ``mc_regret``: truth of the truly best candidate minus truth of Q's choice (mean over states), also as a
      share of each state's best-worst spread; ``mc_greedy_gain_vs_logged``: truth of Q's choice minus the logged;
    - calibration: ``mc_calibration_bias`` mean(Q − truth), ``mc_calibration_mae`` mean |Q − truth|,
      ``mc_calibration_slope`` / ``_intercept`` of the least-squares line truth ≈ a + b·Q (pooled).
    """
    n, k = q.shape
    rows = np.arange(n)
    iu = np.triu_indices(k, 1)
    dq, dt = q[:, iu[0]] - q[:, iu[1]], truth[:, iu[0]] - truth[:, iu[1]]
    clear = np.abs(dt) > 2 * np.sqrt(se[:, iu[0]] ** 2 + se[:, iu[1]] ** 2)
    apart = np.abs(actions[:, iu[0]] - actions[:, iu[1]]) >= min_gap - 1e-9
    keep = separated_candidates(actions, min_gap)
    within = [_spearman(q[i], truth[i]) for i in range(n)]
    within_gap = [_spearman(q[i, keep[i]], truth[i, keep[i]]) for i in range(n)]
    pair_truth = truth[:, 0] - truth[:, 1]
    pair_clear = np.abs(pair_truth) > 2 * np.sqrt(se[:, 0] ** 2 + se[:, 1] ** 2)
    choice, best = q.argmax(1), truth.argmax(1)
    regret = truth[rows, best] - truth[rows, choice]
    spread = truth.max(1) - truth.min(1)

    def accuracy(mask: np.ndarray) -> float:
        return float((np.sign(dq[mask]) == np.sign(dt[mask])).mean()) if mask.any() else math.nan

    x, y = q.ravel().astype(np.float64), truth.ravel().astype(np.float64)
    slope = float(np.cov(x, y, bias=True)[0, 1] / x.var()) if x.var() > 0 else math.nan
    return {
        "mc_spearman": _spearman(x, y),
        "mc_spearman_within_state": _nanmean(within),
        "mc_spearman_within_state_gap": _nanmean(within_gap),
        "mc_pairwise_accuracy": accuracy(clear),
        "mc_pairwise_accuracy_gap": accuracy(clear & apart),
        "mc_pairs_gap": float((clear & apart).sum()),
        "mc_min_action_gap": float(min_gap),
        "mc_cda": float((q[:, 0] > q[:, 1]).mean()),
        "mc_expert_truly_better": float((pair_truth > 0).mean()),
        "mc_cda_vs_truth": float((np.sign(q[:, 0] - q[:, 1]) == np.sign(pair_truth))[pair_clear].mean())
        if pair_clear.any() else math.nan,
        "mc_regret": float(regret.mean()),
        "mc_regret_share": float(np.mean(np.divide(regret, spread, out=np.zeros(n), where=spread > 0))),
        "mc_greedy_gain_vs_logged": float((truth[rows, choice] - truth[:, 0]).mean()),
        "mc_calibration_bias": float((x - y).mean()),
        "mc_calibration_mae": float(np.abs(x - y).mean()),
        "mc_calibration_slope": slope,
        "mc_calibration_intercept": float(y.mean() - slope * x.mean()) if np.isfinite(slope) else math.nan,
        "mc_return_se": float(se.mean()),
    }


def per_state_ranking(q: np.ndarray, truth: np.ndarray, se: np.ndarray, actions: np.ndarray,
                      min_gap: float) -> dict[str, np.ndarray]:
    """The per-state parts of :func:`ranking_diagnostics`, (n,) each, so that states can be resampled: the
    within-state Spearman on candidates >= ``min_gap`` apart (NaN where undefined), pairs >= Δa apart that the
    truth separates and how many of them Q orders right, whether Q's expert-vs-counterfactual verdict agrees with
    the truth (NaN where the truth does not separate them) and the regret of Q's choice.

    Averaged over all states (pairs pooled) they are ``mc_spearman_within_state_gap``,
    ``mc_pairwise_accuracy_gap``, ``mc_cda_vs_truth`` and ``mc_regret``."""
    n, k = q.shape
    iu = np.triu_indices(k, 1)
    dq, dt = q[:, iu[0]] - q[:, iu[1]], truth[:, iu[0]] - truth[:, iu[1]]
    clear = np.abs(dt) > 2 * np.sqrt(se[:, iu[0]] ** 2 + se[:, iu[1]] ** 2)
    apart = np.abs(actions[:, iu[0]] - actions[:, iu[1]]) >= min_gap - 1e-9
    counted = clear & apart
    keep = separated_candidates(actions, min_gap)
    pair_truth = truth[:, 0] - truth[:, 1]
    pair_clear = np.abs(pair_truth) > 2 * np.sqrt(se[:, 0] ** 2 + se[:, 1] ** 2)
    agree = (np.sign(q[:, 0] - q[:, 1]) == np.sign(pair_truth)).astype(np.float64)
    rows = np.arange(n)
    return {
        "spearman_gap": np.array([_spearman(q[i, keep[i]], truth[i, keep[i]]) for i in range(n)]),
        "pairs": counted.sum(1).astype(np.float64),
        "pairs_right": ((np.sign(dq) == np.sign(dt)) & counted).sum(1).astype(np.float64),
        "cda_agree": np.where(pair_clear, agree, np.nan),
        "regret": truth[rows, truth.argmax(1)] - truth[rows, q.argmax(1)],
    }


def summarise_states(stats: dict[str, np.ndarray], index: np.ndarray | None = None) -> dict[str, float]:
    """The four headline diagnostics from :func:`per_state_ranking` over the states ``index`` (a bootstrap
    resample; all states when None): mean within-state Spearman, pooled pairwise accuracy, CDA vs truth, regret."""
    pick = (lambda a: a) if index is None else (lambda a: a[index])
    pairs = pick(stats["pairs"]).sum()
    return {"mc_spearman_within_state_gap": _nanmean(list(pick(stats["spearman_gap"]))),
            "mc_pairwise_accuracy_gap": float(pick(stats["pairs_right"]).sum() / pairs) if pairs else math.nan,
            "mc_cda_vs_truth": _nanmean(list(pick(stats["cda_agree"]))),
            "mc_regret": float(pick(stats["regret"]).mean())}


def bootstrap_states(stats: dict[str, dict[str, np.ndarray]], reference: str | None, reps: int,
                     rng: np.random.Generator, level: float = 0.95) -> dict[str, dict[str, float]]:
    """Percentile bootstrap over states of every critic's headline diagnostics, each critic scored on the SAME
    resamples; with ``reference`` also the paired difference critic − reference (``<metric>_diff``).

    ``stats`` maps a critic to its :func:`per_state_ranking`. Returns per critic ``<metric>_lo`` / ``_hi`` and,
    against the reference, ``<metric>_diff``, ``_diff_lo``, ``_diff_hi``."""
    n = len(next(iter(stats.values()))["regret"])
    draws = {name: [] for name in stats}  # type: dict[str, list[dict[str, float]]]
    for _ in range(reps):
        index = rng.integers(0, n, n)
        for name, s in stats.items():
            draws[name].append(summarise_states(s, index))
    tail = (1 - level) / 2
    out: dict[str, dict[str, float]] = {}
    for name, rows in draws.items():
        table = pd.DataFrame(rows)
        res: dict[str, float] = {}
        point = summarise_states(stats[name])
        for metric in table.columns:
            res[f"{metric}_lo"], res[f"{metric}_hi"] = (float(x) for x in table[metric].quantile([tail, 1 - tail]))
            if reference is not None and name != reference:
                diff = table[metric] - pd.DataFrame(draws[reference])[metric]
                res[f"{metric}_diff"] = point[metric] - summarise_states(stats[reference])[metric]
                res[f"{metric}_diff_lo"], res[f"{metric}_diff_hi"] = (
                    float(x) for x in diff.quantile([tail, 1 - tail]))
        out[name] = res
    return out


def truth_reliability(returns: np.ndarray) -> float:
    """What the Monte-Carlo noise lets a perfect critic reach on within-state Spearman: the within-state Spearman
    between the mean returns of the even and the odd rollouts (n, K, R), stepped up to all R rollouts by the
    Spearman-Brown formula 2ρ / (1 + ρ). NaN with fewer than 2 rollouts or when the halves do not agree (ρ <= 0)."""
    if returns.shape[2] < 2:
        return math.nan
    even, odd = returns[:, :, 0::2].mean(2), returns[:, :, 1::2].mean(2)
    rho = _nanmean([_spearman(even[i], odd[i]) for i in range(len(returns))])
    return float(2 * rho / (1 + rho)) if np.isfinite(rho) and rho > 0 else math.nan  # no reliability to step up


def policy_validity(avg_q: dict[str, float], outcomes: dict[str, dict[str, float]]) -> dict[str, float]:
    """Does Avg Q rank policies the way the market does? Kendall τ between each policy's Avg Q and each of its
    A/B outcomes (``outcomes[policy][metric]``, e.g. ``gmv_14d``), over the policies present in both."""
    from scipy.stats import kendalltau

    names = [p for p in avg_q if p in outcomes and np.isfinite(avg_q[p])]
    out: dict[str, float] = {"policies": float(len(names))}
    metrics = sorted({m for p in names for m in outcomes[p]})
    for metric in metrics:
        pairs = [(avg_q[p], outcomes[p][metric]) for p in names if np.isfinite(outcomes[p].get(metric, np.nan))]
        if len(pairs) < 3:
            out[f"kendall_tau_{metric}"] = math.nan
            continue
        x, y = zip(*pairs, strict=True)
        out[f"kendall_tau_{metric}"] = float(kendalltau(x, y).statistic)
    return out


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (NaN for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def _spearman(x: Any, y: Any) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(spearmanr(x[ok], y[ok]).statistic)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan
