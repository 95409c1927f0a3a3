"""Offline metrics of a pricing policy on held-out expert decisions (paper §4.4.1, Table 3).

One implementation, used by the offline gate, the alignment benchmark and the evaluation report:

- **Avg Q**: mean LTVE score Q(s, π(s)) of the policy's (projected) actions;
- **MAE**: mean |π(s) − a_expert|;
- **EAMA**: share of rows with |π(s) − a_expert| < ε (ε = 0.05);
- **EAMA-R** (eq. 11): the EAMA indicator weighted by the realised 3-day return R of the expert's decision,
  Σ 1(|π − a| < ε)·R / Σ R;
- **KIPS** (eq. 12): the indicator replaced by the Gaussian kernel exp(−(π − a)² / 2h²), h = 0.05.

EAMA-R and KIPS use no LTVE at all: R comes from observed outcomes only. The paper writes
R = λ1·GMV_3d + λ2·ROI_3d without fixing the units; summed raw, GMV (thousands) would drown ROI (units), so
each term is first put on the category's own scale: GMV_3d over the 14-day GMV milestone (``gmv_tier1``) and
ROI_3d over the category's ROI target, λ1/λ2 defaulting to the LTVE reward's 0.8/0.2. The paper reports
EAMA-R and KIPS as numbers near 11.8 rather than shares; its normalisation is not given, so ours are shares
in [0, 1] as eqs. (11)/(12) are written: compare rankings with the paper, not values.

Which rows are "expert" is the caller's choice (:func:`expert_rows` gives the paper's held-out expert set:
SKUs in the top 30% of their category by 14-day GMV, in-stock days).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from aigp.action import TOLERANCE, is_safe
from aigp.config import StrictConfig
from aigp.market.simulator import SMALL_MOVE  # the paper's Fig. 5: |a| < 0.04 is a small adjustment
from aigp.schema import ENTITY_KEY

EXPERT_ACTION = "discount_change"  # the logged action of a decision row
RETURN = "return_3d"


class OfflineMetricsConfig(StrictConfig):
    """ε, the kernel bandwidth and the realised-return weights (defaults: the paper)."""

    epsilon: float = Field(0.05, gt=0, description="EAMA match threshold on |π(s) − a_expert|")
    kernel_bandwidth: float = Field(0.05, gt=0, description="h of the KIPS Gaussian kernel")
    return_days: int = Field(3, ge=1, description="days of realised outcome in R (the decision day included)")
    lambda_gmv: float = Field(0.8, ge=0, description="λ1: weight of GMV_3d / 14-day GMV milestone")
    lambda_roi: float = Field(0.2, ge=0, description="λ2: weight of ROI_3d / category ROI target")
    expert_top_share: float = Field(0.3, gt=0, le=1, description="expert set: top share by 14-day GMV in category")


def realised_returns(frame: pd.DataFrame, config: OfflineMetricsConfig | None = None) -> np.ndarray:
    """R of each decision row: the realised outcome of days t .. t+return_days−1 of the same SKU.

    ``frame`` is a decision log (rows with ``out_gmv``/``out_spend``), sorted by SKU then date, each SKU's
    days consecutive: compute R on the whole window first, then select rows. Windows are cut at the SKU's
    last logged day, so late rows of the window see fewer days (as the logged outcome does)."""
    config = config or OfflineMetricsConfig()
    sku = frame[ENTITY_KEY].to_numpy()
    if len(sku) > 1 and (np.diff(sku.astype(np.int64)) < 0).any():
        raise ValueError("realised_returns needs rows sorted by SKU then date (compute on the window, then select)")
    m = len(frame)
    starts = np.flatnonzero(np.r_[True, sku[1:] != sku[:-1]]) if m else np.zeros(0, dtype=np.int64)
    last = np.repeat(np.r_[starts[1:], m] - 1, np.diff(np.r_[starts, m])) if m else np.zeros(0, dtype=np.int64)
    rows = np.arange(m)
    end = np.minimum(rows + config.return_days - 1, last)
    gmv = np.r_[0.0, np.cumsum(frame["out_gmv"].to_numpy(np.float64))]
    spend = np.r_[0.0, np.cumsum(frame["out_spend"].to_numpy(np.float64))]
    window_gmv, window_spend = gmv[end + 1] - gmv[rows], spend[end + 1] - spend[rows]
    roi = np.divide(window_gmv, window_spend, out=np.zeros(m), where=window_spend > 0)
    tier = frame["gmv_tier1"].to_numpy(np.float64)
    target = frame["roi_target"].to_numpy(np.float64)
    return config.lambda_gmv * window_gmv / tier + config.lambda_roi * roi / target


def expert_rows(frame: pd.DataFrame, config: OfflineMetricsConfig | None = None) -> pd.DataFrame:
    """The held-out expert set of a decision-log window (``ltve_training`` columns, e.g.
    ``aigp.ltve.dataset.training_frame_from_logs``), with R attached (column ``return_3d``): rows of SKUs
    in the top ``expert_top_share`` of their category by 14-day GMV, on days the SKU had stock."""
    from aigp.ltve.dataset import expert_skus, prepare_frame  # the one definition of an expert trajectory

    config = config or OfflineMetricsConfig()
    frame = prepare_frame(frame)  # checked, sorted by SKU and day of life
    frame = frame.assign(**{RETURN: realised_returns(frame, config)})
    experts = np.isin(frame[ENTITY_KEY].to_numpy(), expert_skus(frame, config.expert_top_share))
    if "inventory" in frame.columns:
        experts &= frame["inventory"].to_numpy(np.float64) > 0
    return frame[experts].reset_index(drop=True)


def offline_policy_metrics(rows: pd.DataFrame, actions: np.ndarray | pd.Series, *, ltve: Any | None = None,
                           returns: np.ndarray | None = None,
                           config: OfflineMetricsConfig | None = None) -> dict[str, float]:
    """Avg Q, MAE, EAMA, EAMA-R and KIPS of ``actions`` (the policy's projected discount changes, one per row)
    against the logged expert action of ``rows``.

    ``returns`` defaults to the rows' ``return_3d`` column (:func:`expert_rows` adds it); ``ltve`` (an
    ``aigp.ltve.artifact.LTVEModel``) adds ``avg_q`` and the expert's own ``avg_q_expert`` for reference.
    Actions outside A_safe are refused: project proposals first (compliance before projection is the
    caller's metric)."""
    config = config or OfflineMetricsConfig()
    policy = np.asarray(actions, dtype=np.float64)
    if policy.shape != (len(rows),):
        raise ValueError(f"actions must be one change per row: got shape {policy.shape} for {len(rows)} rows")
    if len(rows) == 0:
        raise ValueError("no rows to evaluate")
    prev = rows["prev_discount"].to_numpy(np.float64)
    if not np.isfinite(policy).all() or not is_safe(prev, policy).all():
        raise ValueError("actions must be finite and inside A_safe (project proposals with project_to_safe)")
    if returns is None:
        if RETURN not in rows.columns:
            raise ValueError(f"rows have no {RETURN!r} column: pass returns= or select rows with expert_rows()")
        returns = rows[RETURN].to_numpy(np.float64)
    weight = np.asarray(returns, dtype=np.float64)
    if weight.shape != policy.shape or not np.isfinite(weight).all() or (weight < 0).any():
        raise ValueError("returns must be one finite non-negative value per row")
    expert = rows[EXPERT_ACTION].to_numpy(np.float64)
    gap = policy - expert
    match = np.abs(gap) < config.epsilon
    kernel = np.exp(-(gap ** 2) / (2 * config.kernel_bandwidth ** 2))
    total = weight.sum()
    metrics = {
        "rows": float(len(rows)),
        "mae": float(np.abs(gap).mean()),
        "eama": float(match.mean()),
        "eama_r": float((match * weight).sum() / total) if total > 0 else float("nan"),
        "kips": float((kernel * weight).sum() / total) if total > 0 else float("nan"),
        "mean_abs_action": float(np.abs(policy).mean()),
    }
    if ltve is not None:
        q = ltve.q_values(rows, np.stack([policy, expert], axis=1).astype(np.float32))
        metrics["avg_q"] = float(q[:, 0].mean())
        metrics["avg_q_expert"] = float(q[:, 1].mean())
    return metrics


def scorecard(rows: pd.DataFrame, actions: np.ndarray | pd.Series, *, parse_ok: np.ndarray | pd.Series | None = None,
              compliant: np.ndarray | pd.Series | None = None, ltve: Any | None = None,
              config: OfflineMetricsConfig | None = None) -> dict[str, float]:
    """One policy's offline scorecard, the same for the gate, the evaluation and the benchmarks: the offline
    metrics (:func:`offline_policy_metrics`), the Q gain over the logged expert, and for a model that writes text
    ``parse_failure_rate`` / ``model_action_share`` (``parse_ok``: Ψ read an action rather than falling back to
    holding the price) and ``compliance_rate`` (``compliant``: its own proposal was inside A_safe before
    projection). A rule policy (no ``parse_ok``) always acts and always complies."""
    metrics = offline_policy_metrics(rows, actions, ltve=ltve, config=config)
    n = len(rows)
    parsed = np.ones(n, dtype=bool) if parse_ok is None else np.asarray(parse_ok, dtype=bool)
    inside = np.ones(n, dtype=bool) if compliant is None else np.asarray(compliant, dtype=bool)
    if parsed.shape != (n,) or inside.shape != (n,):
        raise ValueError(f"parse_ok and compliant must be one flag per row ({n} rows)")
    metrics["parse_failure_rate"] = float(1.0 - parsed.mean())
    metrics["model_action_share"] = float(parsed.mean())  # not the hold fallback
    metrics["compliance_rate"] = float(inside.mean())
    if "avg_q" in metrics:
        metrics["q_gain"] = metrics["avg_q"] - metrics["avg_q_expert"]
    return metrics


# --------------------------------------------------------------------------------------------------------
# stability of the actions (the paper's Fig. 5): the evaluation, the A/B report and monitoring share it
BIN_WIDTH = 0.02  # Fig. 5(b)
TAIL_GRID = tuple(round(0.01 * i, 2) for i in range(21))  # x of Pr(|a| >= x), 0 .. 0.20
# Float noise of discounts stored with 4 decimals (float32 in the logs): |a| >= x is decided with this slack.
_EPS = TOLERANCE


def stability_figures(change: np.ndarray, *, big_jump: float = 0.15) -> dict[str, Any]:
    """The paper's Fig. 5 over daily changes a: Pr(|a| >= x) on TAIL_GRID, the |a| histogram (bin 0.02),
    the share of small adjustments |a| < 0.04 and of big jumps |a| >= ``big_jump``."""
    a = np.abs(np.asarray(change, dtype=np.float64))
    a = a[np.isfinite(a)]
    n = a.size
    if n == 0:
        nan = float("nan")
        return {"n": 0, "mean_change": nan, "mean_abs_change": nan, "small_move_share": nan,
                "big_jump_share": nan, "tail": {f"{x:.2f}": nan for x in TAIL_GRID},
                "bins": {f"{x:.2f}": nan for x in TAIL_GRID[:-1:2]}}
    signed = np.asarray(change, dtype=np.float64)
    signed = signed[np.isfinite(signed)]
    edges = np.arange(0.0, 0.2 + BIN_WIDTH / 2, BIN_WIDTH)
    # |a| on a bin edge belongs to the bin above (0.04 is not < 0.04); 0.2 itself goes to the last bin.
    index = np.minimum(np.floor((a + _EPS) / BIN_WIDTH).astype(int), len(edges) - 2)
    counts = np.bincount(index, minlength=len(edges) - 1)
    return {
        "n": int(n),
        "mean_change": float(signed.mean()),
        "mean_abs_change": float(a.mean()),
        "small_move_share": float((a < SMALL_MOVE - _EPS).mean()),
        "big_jump_share": float((a >= big_jump - _EPS).mean()),
        "tail": {f"{x:.2f}": float((a >= x - _EPS).mean()) for x in TAIL_GRID},
        "bins": {f"{lo:.2f}": float(c / n) for lo, c in zip(edges[:-1], counts, strict=True)},
    }
