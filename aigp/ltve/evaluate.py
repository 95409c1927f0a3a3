"""Evaluate an LTVE on the held-out cohort: the paper's metrics and what only a simulator can check.

The cohort is the SKUs launched on or after the training cutoff recorded in the model. Metrics:

Action metrics use rows with stock left (``inventory > 0``): a sold-out SKU gets no traffic, so its action
changes nothing and no action can be better than another.

- **MAE / EAMA** (ε = 0.05) of the Q-greedy action vs the logged expert action. The Q-greedy action is the
  argmax of Q over ``grid_size`` evenly spaced changes spanning A_safe(s) (one batched forward pass). Expert
  rows are the paper's "held-out expert set": SKUs in the top 30% of their category by 14-day GMV. Where the
  log names the behaviour policy, the same numbers are reported for the simulated operations expert.
- **CDA**: share of expert rows with Q(s, a_expert) > Q(s, a_cf), a_cf = a_expert ± ``counterfactual_shift``
  (random sign; the other sign where A_safe excludes it). Slices: cold-start (on shelf <= 3 days) and
  boundary counterfactuals (a_cf drawn uniformly from the feasible part of 0.15 <= |a| <= 0.2).
- **Q deciles vs realised outcomes** (paper Fig. 3): Q(s, a_logged) of up to 50k rows split into 10 deciles;
  per decile the mean realised GMV and the integrated ROI over the *subsequent* 7 / 14 days (truncated at the
  episode end) and MAR at the window's end (GMV since launch >= tier1 · days/14 and ROI since launch >= target),
  after dropping each decile's top and bottom 5% of rows by the window's GMV; Spearman of decile vs value.
- **Monte-Carlo ground truth** (simulator logs only): for sampled expert rows, K candidate first actions (the
  logged one, its counterfactual, a grid over A_safe) are branched in the simulator from the exact logged
  state (``aigp.market.rollout.branch_outcomes``), continued with each SKU's own logging policy (the future the
  critic's data has; configurable) for R fresh futures, and scored with the model's own reward; Spearman of Q
  vs the Monte-Carlo return (pooled and within state, also on candidates >= Δa apart), pairwise ranking
  accuracy (also on pairs >= Δa apart), CDA against the truly better of (expert, counterfactual), regret of
  the Q-choice and calibration (Q level against the return): :func:`ranking_diagnostics`. A few decisions are
  first replayed with the market's own seed: they must reproduce the logged GMV, or the log is from another
  simulator version.
- **Policy-level validity** (:func:`policy_validity`): Kendall τ between the Avg Q of policies and their A/B
  outcomes — the check that a policy cannot score high on Q by exploiting the critic.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from aigp.action import MAX_DAILY_CHANGE, feasible_change_bounds, project_to_safe
from aigp.config import StrictConfig
from aigp.io import write_json, write_parquet, write_text
from aigp.ltve.artifact import LTVEModel
from aigp.ltve.dataset import ACTION, expert_skus, launch_dates, prepare_frame
from aigp.ltve.diagnostics import _spearman, ranking_diagnostics, truth_reliability, wilson_interval
from aigp.ltve.reward import daily_rewards
from aigp.markdown import markdown_table
from aigp.schema import ENTITY_KEY

HORIZONS = (7, 14)
OUTCOMES = ("gmv", "roi", "mar")


class MonteCarloConfig(StrictConfig):
    enabled: bool = Field(True, description="run the simulator check when a market log directory is given")
    states: int = Field(300, ge=1, description="expert rows branched")
    grid: int = Field(7, ge=2, description="evenly spaced A_safe candidates besides the logged and counterfactual")
    rollouts: int = Field(16, ge=1, description="fresh futures per (state, candidate)")
    continuation: str = Field("logged", description="policy pricing the days after the branched one: 'logged' "
                              "(each SKU's own logging policy, what the critic's data continues with) or a name")
    seed: int = Field(1, ge=0, description="branch seed (never the market's own)")
    min_action_gap: float = Field(0.02, ge=0, description="Δa: the ranking diagnostics compare candidates at least "
                                  "this far apart (the DPO pairs' Δa, aigp.align.pairs.PairsConfig.delta_a)")


class EvaluationConfig(StrictConfig):
    grid_size: int = Field(41, ge=2, description="candidates spanning A_safe for the Q-greedy action")
    eama_epsilon: float = Field(0.05, gt=0, description="EAMA tolerance ε")
    counterfactual_shift: float = Field(0.1, gt=0, le=MAX_DAILY_CHANGE, description="|a_cf - a_expert| for CDA")
    boundary_action: float = Field(0.15, gt=0, le=MAX_DAILY_CHANGE, description="|a| of a boundary action")
    cold_start_days: int = Field(3, ge=0, description="cold-start slice: days_since_launch <= this")
    expert_top_share: float = Field(0.3, gt=0, le=1, description="expert set: top share by 14-day GMV in category")
    expert_rows: int = Field(30_000, ge=1, description="expert rows sampled for MAE/EAMA/CDA (paper: 30k)")
    decile_rows: int = Field(50_000, ge=100, description="rows sampled for the decile analysis (paper: 50k)")
    decile_trim: float = Field(0.05, ge=0, lt=0.5, description="share dropped at each end of a decile")
    seed: int = Field(0, ge=0)
    monte_carlo: MonteCarloConfig = Field(default_factory=MonteCarloConfig)


@dataclass
class EvaluationReport:
    metrics: dict[str, float]
    deciles: pd.DataFrame
    monte_carlo: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        table = markdown_table(["metric", "value"], [(k, _fmt(v)) for k, v in sorted(self.metrics.items())])
        deciles = self.deciles.round(4).to_markdown(index=False) if _has_tabulate() else self.deciles.to_string()
        notes = "".join(f"- {n}\n" for n in self.notes)
        return f"# LTVE evaluation\n\n{notes}\n{table}\n\n## Q deciles vs realised outcomes\n\n{deciles}\n"

    def plot(self, path: str | Path) -> Path:
        return plot_deciles(self.deciles, self.metrics, path)

    def html(self) -> str:
        buffer = io.BytesIO()
        _decile_figure(self.deciles, self.metrics).savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        image = base64.b64encode(buffer.getvalue()).decode()
        rows = "".join(f"<tr><td>{k}</td><td>{_fmt(v)}</td></tr>" for k, v in sorted(self.metrics.items()))
        notes = "".join(f"<li>{n}</li>" for n in self.notes)
        return (f"<html><body><h1>LTVE evaluation</h1><ul>{notes}</ul><table>{rows}</table>"
                f"<h2>Q deciles vs realised outcomes (paper Fig. 3)</h2><img src='data:image/png;base64,{image}'/>"
                f"</body></html>")

    def write(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", self.metrics)
        write_text(out / "report.md", self.markdown())
        write_text(out / "report.html", self.html())
        write_parquet(out / "deciles.parquet", self.deciles)
        if self.monte_carlo is not None:
            write_parquet(out / "monte_carlo.parquet", self.monte_carlo)
        self.plot(out / "q_deciles.png")
        return out


# --------------------------------------------------------------------------------------------------------
def evaluation_cohort(frame: pd.DataFrame, model: LTVEModel) -> pd.DataFrame:
    """Rows of the SKUs launched on or after the model's training cutoff."""
    cutoff = pd.Timestamp(model.info["split"]["cutoff"])
    frame = prepare_frame(frame)
    launch = launch_dates(frame).groupby(frame[ENTITY_KEY]).transform("first")
    cohort = frame[(launch >= cutoff).to_numpy()].reset_index(drop=True)
    if cohort.empty:
        raise ValueError(f"no SKU in the frame launched on or after the training cutoff {cutoff.date()}")
    return cohort


def counterfactual_actions(prev_discount: np.ndarray, action: np.ndarray, shift: float,
                           rng: np.random.Generator) -> np.ndarray:
    """a ± shift with a random sign, the other sign where A_safe excludes the first (one always fits)."""
    low, high = feasible_change_bounds(prev_discount)
    sign = np.where(rng.random(len(action)) < 0.5, -1.0, 1.0)
    first = action + sign * shift
    ok = (first >= low - 1e-9) & (first <= high + 1e-9)
    return project_to_safe(prev_discount, np.where(ok, first, action - sign * shift)).change


def boundary_actions(prev_discount: np.ndarray, threshold: float, rng: np.random.Generator) -> np.ndarray:
    """A random feasible change with threshold <= |a| <= 0.2 (every d_{t-1} in [0.5, 1] admits one side)."""
    low, high = feasible_change_bounds(prev_discount)
    up_ok, down_ok = high >= threshold, low <= -threshold
    up = rng.random(len(low)) < 0.5
    up = np.where(up_ok & down_ok, up, up_ok)
    magnitude = threshold + (MAX_DAILY_CHANGE - threshold) * rng.random(len(low))
    return project_to_safe(prev_discount, np.where(up, magnitude, -magnitude)).change


def forward_outcomes(frame: pd.DataFrame, horizons: tuple[int, ...] = HORIZONS,
                     horizon_days: int = 14) -> pd.DataFrame:
    """Per row: GMV and ROI over days t..t+h-1 (within the episode) and MAR at the end of that window."""
    sku = frame[ENTITY_KEY].to_numpy()
    age = frame["days_since_launch"].to_numpy(np.int64)
    m = len(frame)
    starts = np.flatnonzero(np.r_[True, sku[1:] != sku[:-1]])
    last = np.repeat(np.r_[starts[1:], m] - 1, np.diff(np.r_[starts, m]))
    gmv, spend = frame["out_gmv"].to_numpy(np.float64), frame["out_spend"].to_numpy(np.float64)
    cg, cs = np.r_[0.0, np.cumsum(gmv)], np.r_[0.0, np.cumsum(spend)]
    rows = np.arange(m)
    out = {}
    for h in horizons:
        end = np.minimum.reduce([rows + h - 1, last, rows + (horizon_days - 1 - age)])
        window_gmv, window_spend = cg[end + 1] - cg[rows], cs[end + 1] - cs[rows]
        days = age + (end - rows) + 1  # days since launch at the window's end
        total_gmv = frame["cum_gmv"].to_numpy(np.float64) + window_gmv
        total_spend = frame["cum_spend"].to_numpy(np.float64) + window_spend
        roi_total = np.divide(total_gmv, total_spend, out=np.zeros(m), where=total_spend > 0)
        mar = (total_gmv >= frame["gmv_tier1"].to_numpy(np.float64) * days / horizon_days) & (
            roi_total >= frame["roi_target"].to_numpy(np.float64))
        out[f"gmv_{h}d"], out[f"spend_{h}d"], out[f"mar_{h}d"] = window_gmv, window_spend, mar.astype(np.float64)
    return pd.DataFrame(out, index=frame.index)


def decile_table(q: np.ndarray, outcomes: pd.DataFrame, trim: float, horizons: tuple[int, ...] = HORIZONS
                 ) -> tuple[pd.DataFrame, dict[str, float]]:
    """Mean outcome per Q decile (trimmed by the window's GMV) and Spearman of decile index vs value."""
    decile = pd.qcut(pd.Series(q).rank(method="first"), 10, labels=False).to_numpy() + 1
    rows = []
    for d in range(1, 11):
        sel = outcomes[decile == d]
        row: dict[str, float] = {"decile": d, "rows": len(sel), "q_mean": float(q[decile == d].mean())}
        for h in horizons:
            g = sel[f"gmv_{h}d"]
            lo, hi = g.quantile(trim), g.quantile(1 - trim)
            kept = sel[(g >= lo) & (g <= hi)] if trim > 0 else sel
            row[f"gmv_{h}d"] = float(kept[f"gmv_{h}d"].mean())
            spent = kept[f"spend_{h}d"].sum()
            row[f"roi_{h}d"] = float(kept[f"gmv_{h}d"].sum() / spent) if spent > 0 else float("nan")
            row[f"mar_{h}d"] = float(kept[f"mar_{h}d"].mean())
        rows.append(row)
    table = pd.DataFrame(rows)
    rho = {f"spearman_decile_{o}_{h}d": _spearman(table["decile"], table[f"{o}_{h}d"])
           for o in OUTCOMES for h in horizons}
    return table, rho


def plot_deciles(table: pd.DataFrame, metrics: dict[str, float], path: str | Path) -> Path:
    from aigp.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        _decile_figure(table, metrics).savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def _decile_figure(table: pd.DataFrame, metrics: dict[str, float]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    labels = {"gmv": "mean GMV over the next h days (CNY)", "roi": "integrated ROI", "mar": "MAR at window end"}
    for ax, outcome in zip(axes, OUTCOMES, strict=True):
        for h, style in zip(HORIZONS, ("o-", "s--"), strict=True):
            rho = metrics.get(f"spearman_decile_{outcome}_{h}d", float("nan"))
            ax.plot(table["decile"], table[f"{outcome}_{h}d"], style, label=f"{h}d (ρ={rho:.2f})")
        ax.set_xlabel("Q-score decile")
        ax.set_ylabel(labels[outcome])
        ax.set_xticks(range(1, 11))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("LTVE Q-score deciles vs realised outcomes (held-out cohort)")
    fig.tight_layout()
    plt.close(fig)
    return fig


# --------------------------------------------------------------------------------------------------------
def evaluate_model(model: LTVEModel, frame: pd.DataFrame, config: EvaluationConfig | None = None, *,
                   log_dir: str | Path | None = None, cohort_ready: bool = False,
                   progress: bool = False) -> EvaluationReport:
    """All offline metrics on the held-out cohort of ``frame``; the Monte-Carlo check when ``log_dir`` is a
    simulator log (the one ``frame`` came from)."""
    config = config or EvaluationConfig()
    cohort = prepare_frame(frame) if cohort_ready else evaluation_cohort(frame, model)
    rng = np.random.default_rng(config.seed)
    h = model.reward_config.horizon_days
    cohort = cohort[cohort["days_since_launch"] < h].reset_index(drop=True)
    in_stock = cohort["inventory"].to_numpy() > 0
    experts = np.isin(cohort[ENTITY_KEY].to_numpy(), expert_skus(cohort, config.expert_top_share, h)) & in_stock
    metrics: dict[str, float] = {"rows": float(len(cohort)), "skus": float(cohort[ENTITY_KEY].nunique()),
                                 "expert_rows": float(experts.sum())}
    expert = cohort[experts]
    expert = expert.sample(n=min(config.expert_rows, len(expert)), random_state=config.seed).reset_index(drop=True)
    metrics |= action_metrics(model, expert, config, rng)
    if "behaviour_policy" in cohort.columns:
        ops = cohort[(cohort["behaviour_policy"] == "expert").to_numpy() & in_stock].reset_index(drop=True)
        ops = ops.sample(n=min(config.expert_rows, len(ops)), random_state=config.seed).reset_index(drop=True)
        if len(ops):
            metrics |= {f"{k}_ops_expert": v for k, v in action_metrics(model, ops, config, rng).items()}

    forward = forward_outcomes(cohort, HORIZONS, h)
    sample = cohort.sample(n=min(config.decile_rows, len(cohort)), random_state=config.seed)
    q = model.q_logged(sample)
    outcomes = forward.loc[sample.index]
    deciles, rho = decile_table(q, outcomes, config.decile_trim)
    metrics |= rho
    for h_ in HORIZONS:
        metrics[f"spearman_rows_gmv_{h_}d"] = _spearman(q, outcomes[f"gmv_{h_}d"])
    # The same on launch-day decisions only: one per SKU, all with the whole episode ahead, so the windows are
    # the SKU's first 7 / 14 days (the paper's business horizons) and MAR is the SKU's milestone outcome.
    launch = cohort[cohort["days_since_launch"] == 0]
    launch = launch.sample(n=min(config.decile_rows, len(launch)), random_state=config.seed)
    if len(launch) >= 100:
        _, rho_launch = decile_table(model.q_logged(launch), forward.loc[launch.index], config.decile_trim)
        metrics |= {k.replace("spearman_decile", "spearman_launch_decile"): v for k, v in rho_launch.items()}
    notes = [f"model kind={model.kind}, n_steps={model.config.n_steps}, cohort: SKUs launched on or after "
             f"{model.info.get('split', {}).get('cutoff', '?')}"]
    mc = None
    if log_dir is not None and config.monte_carlo.enabled:
        mc, mc_metrics = monte_carlo_check(model, expert, log_dir, config, rng, progress=progress)
        metrics |= mc_metrics
    return EvaluationReport(metrics, deciles, mc, notes)


def action_metrics(model: LTVEModel, rows: pd.DataFrame, config: EvaluationConfig,
                   rng: np.random.Generator) -> dict[str, float]:
    """MAE and EAMA of the Q-greedy action vs the logged action, and CDA with its robustness slices."""
    if rows.empty:
        return {}
    logged = rows[ACTION].to_numpy(np.float64)
    prev = rows["prev_discount"].to_numpy(np.float64)
    greedy, _ = model.greedy(rows, config.grid_size)
    error = np.abs(greedy - logged)
    cf = counterfactual_actions(prev, logged, config.counterfactual_shift, rng)
    boundary = boundary_actions(prev, config.boundary_action, rng)
    q = model.q_values(rows, np.stack([logged, cf, boundary], axis=1))
    cold = rows["days_since_launch"].to_numpy() <= config.cold_start_days
    wins, wins_boundary = q[:, 0] > q[:, 1], q[:, 0] > q[:, 2]
    return {
        "mae": float(error.mean()),
        "eama": float((error < config.eama_epsilon).mean()),
        "cda": float(wins.mean()),
        "cda_cold_start": float(wins[cold].mean()) if cold.any() else float("nan"),
        "cda_boundary": float(wins_boundary.mean()),
        "greedy_mean_action": float(greedy.mean()),
        "greedy_boundary_share": float((np.abs(greedy) >= config.boundary_action - 1e-6).mean()),
    }


@dataclass
class Branches:
    """Monte-Carlo branches of K candidate first actions from n logged states (the truth any critic is held to)."""

    rows: pd.DataFrame  # (n) the logged state rows
    actions: np.ndarray  # (n, K) candidates after projection onto A_safe; column 0 logged, 1 counterfactual
    gmv: np.ndarray  # (n, K, R, days) daily GMV of each branch (NaN past the horizon)
    spend: np.ndarray  # (n, K, R, days)


def monte_carlo_check(model: LTVEModel, expert_rows: pd.DataFrame, log_dir: str | Path, config: EvaluationConfig,
                      rng: np.random.Generator, *, progress: bool = False) -> tuple[pd.DataFrame, dict[str, float]]:
    """Q vs Monte-Carlo returns of branched candidate actions from exactly the logged states."""
    return monte_carlo_metrics(model, monte_carlo_branches(expert_rows, log_dir, config, rng), config)


def monte_carlo_branches(expert_rows: pd.DataFrame, log_dir: str | Path, config: EvaluationConfig,
                         rng: np.random.Generator) -> Branches:
    """Branch sampled expert rows with the logged action, its counterfactual and a grid over A_safe."""
    mc_cfg = config.monte_carlo
    horizon = _market_horizon(log_dir)
    rows = expert_rows[expert_rows["days_since_launch"] < horizon]
    rows = rows.sample(n=min(mc_cfg.states, len(rows)), random_state=mc_cfg.seed).reset_index(drop=True)
    prev = rows["prev_discount"].to_numpy(np.float64)
    logged = rows[ACTION].to_numpy(np.float64)
    cf = counterfactual_actions(prev, logged, config.counterfactual_shift, rng)
    low, high = feasible_change_bounds(prev)
    grid = low[:, None] + (high - low)[:, None] * np.linspace(0, 1, mc_cfg.grid)[None, :]
    return branch_candidates(rows, np.column_stack([logged, cf, grid]), log_dir, mc_cfg)


def _market_horizon(log_dir: str | Path) -> int:
    from aigp.market.logs import open_logs

    return int(open_logs(log_dir).config.horizon_days)


def branch_candidates(rows: pd.DataFrame, candidates: np.ndarray, log_dir: str | Path, mc_cfg: MonteCarloConfig
                      ) -> Branches:
    """Branch logged state rows (the training frame's: the logged action and outcome, for the replay check) with
    K candidate first actions each, (n, K), for ``mc_cfg.rollouts`` futures continued by ``mc_cfg.continuation``."""
    from aigp.market.logs import open_logs
    from aigp.market.policies import BEHAVIOUR_CLASSES, behaviour_policies, build_baselines
    from aigp.market.rollout import branch_outcomes
    from aigp.market.simulator import Market

    allowed = ("logged", *BEHAVIOUR_CLASSES, "random", "oracle")
    if mc_cfg.continuation not in allowed:
        raise ValueError(f"monte_carlo.continuation={mc_cfg.continuation!r}: expected one of {list(allowed)}")
    logs = open_logs(log_dir)
    market = Market(logs.config)
    horizon = market.config.horizon_days
    if (rows["days_since_launch"].to_numpy() >= horizon).any():
        raise ValueError(f"rows past the {horizon}-day horizon cannot be branched")
    ids = market.skus.sku_id
    index = np.searchsorted(ids, rows[ENTITY_KEY].to_numpy())
    if (index >= len(ids)).any() or (ids[np.minimum(index, len(ids) - 1)] != rows[ENTITY_KEY].to_numpy()).any():
        raise ValueError(f"{log_dir}: the frame has SKUs this market log does not simulate; pass the log the "
                         "frame was built from")
    history = behaviour_policies()
    groups = market.behaviour_groups()
    if mc_cfg.continuation == "logged":
        continuations = {str(g): history[str(g)] for g in np.unique(groups[index])}
        members = {name: np.flatnonzero(groups[index] == name) for name in continuations}
    else:
        policy = build_baselines([mc_cfg.continuation], dynamics=market.config.dynamics)[mc_cfg.continuation]
        continuations, members = {mc_cfg.continuation: policy}, {mc_cfg.continuation: np.arange(len(rows))}
    ages = rows["days_since_launch"].to_numpy(np.int64)
    verify_replay(market, rows, index, history, groups, log_dir)
    first = np.zeros(candidates.shape)
    days = horizon - int(ages.min())
    gmv, spend = (np.full((*candidates.shape, mc_cfg.rollouts, days), np.nan) for _ in range(2))
    for name, member in members.items():
        out = branch_outcomes(market, index[member], ages[member], candidates[member], history_policies=history,
                              history_groups=groups, continuation=continuations[name], n_rollouts=mc_cfg.rollouts,
                              branch_seed=mc_cfg.seed)
        first[member] = out.first_change
        width = out.gmv.shape[-1]  # day 0 is the branched day; a group branched later has fewer days left
        gmv[member, ..., :width] = out.gmv
        spend[member, ..., :width] = out.spend
    return Branches(rows, first, gmv, spend)


def pair_truth(model: LTVEModel, pairs: pd.DataFrame, state_rows: pd.DataFrame, frame: pd.DataFrame,
               log_dir: str | Path, mc_cfg: MonteCarloConfig | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """Do the LTVE's preference pairs agree with the market? Each pair's state (``state_rows`` by ``prompt_id``:
    sku_id, days_since_launch) is found in the training ``frame``, branched in the simulator with the chosen and
    the rejected action (common random numbers, ``mc_cfg.rollouts`` futures continued as the critic's data is)
    and scored with the model's own reward.

    Metrics (``pairs/truth_*``): ``agreement`` share of pairs whose chosen action has the higher Monte-Carlo
    return, with a 95% Wilson interval; ``agreement_clear`` the same where the truth separates the two (|Δ| > 2
    SE of the paired difference) and ``clear_share`` how often it does; ``gain_mean`` mean return of chosen
    minus rejected; ``gap_spearman`` Spearman of the Q gap against the true gap (does a wider Q gap mean a
    surer preference?); ``gmv_agreement`` / ``roi_agreement`` how often the chosen action also has the higher
    GMV / ROI over the days left (what the reward trades against what). The table: one row per pair with q_gap,
    truth_gap and its SE, gmv_gap and roi_gap.
    """
    mc_cfg = mc_cfg or MonteCarloConfig()
    if pairs.empty:
        return pairs.assign(truth_gap=[], truth_se=[]), {"pairs/truth_pairs": 0.0}
    keys = [ENTITY_KEY, "days_since_launch"]
    states = pairs[["prompt_id"]].merge(state_rows[["prompt_id", *keys]], on="prompt_id", how="left",
                                        validate="many_to_one")
    logged = prepare_frame(frame) if ACTION not in frame.columns or "out_gmv" not in frame.columns else frame
    rows = states.merge(logged.drop_duplicates(keys), on=keys, how="left", validate="many_to_one")
    if rows[ACTION].isna().any():
        missing = rows.loc[rows[ACTION].isna(), keys].head(3).to_dict("records")
        raise ValueError(f"pair states missing from the training frame of {log_dir} (e.g. {missing}): the pairs "
                         "were not sampled from this market log")
    candidates = pairs[["chosen_change", "rejected_change"]].to_numpy(np.float64)
    branches = branch_candidates(rows.reset_index(drop=True), candidates, log_dir, mc_cfg)
    returns = discounted_returns(model, branches.rows, branches.gmv, branches.spend)  # (n, 2, R)
    diff = returns[:, 0] - returns[:, 1]  # paired over the common futures
    r = diff.shape[1]
    gap = diff.mean(1)
    se = diff.std(1, ddof=1) / math.sqrt(r) if r > 1 else np.zeros(len(gap))
    gmv = np.nansum(branches.gmv, axis=-1).mean(2)  # (n, 2): mean GMV over the days left, per action
    spend = np.nansum(branches.spend, axis=-1).mean(2)
    roi = gmv / np.maximum(spend, 1e-9)
    table = pairs.assign(truth_gap=gap, truth_se=se, gmv_gap=gmv[:, 0] - gmv[:, 1], roi_gap=roi[:, 0] - roi[:, 1])
    agree = gap > 0
    clear = np.abs(gap) > 2 * se
    low, high = wilson_interval(int(agree.sum()), len(agree))
    metrics = {"pairs/truth_pairs": float(len(gap)), "pairs/truth_rollouts": float(r),
               "pairs/truth_agreement": float(agree.mean()), "pairs/truth_agreement_low": low,
               "pairs/truth_agreement_high": high,
               "pairs/truth_clear_share": float(clear.mean()),
               "pairs/truth_agreement_clear": float(agree[clear].mean()) if clear.any() else float("nan"),
               "pairs/truth_gain_mean": float(gap.mean()),
               "pairs/truth_gap_spearman": _spearman(pairs["q_gap"].to_numpy(np.float64), gap),
               # the same pairs judged by GMV and by ROI alone over the days left: which the reward trades
               "pairs/truth_gmv_agreement": float((gmv[:, 0] > gmv[:, 1]).mean()),
               "pairs/truth_roi_agreement": float((roi[:, 0] > roi[:, 1]).mean())}
    return table, metrics


def monte_carlo_metrics(model: LTVEModel, branches: Branches, config: EvaluationConfig
                        ) -> tuple[pd.DataFrame, dict[str, float]]:
    """Score every branch with the model's own reward and compare its Q with the mean return."""
    rows, first = branches.rows, branches.actions
    returns = discounted_returns(model, rows, branches.gmv, branches.spend)  # (n, K, R)
    truth = returns.mean(2)
    r = returns.shape[2]
    se = returns.std(2, ddof=1) / math.sqrt(r) if r > 1 else np.zeros(truth.shape)
    q = model.q_values(rows, first)
    n, k = q.shape
    logged = rows[ACTION].to_numpy(np.float64)
    metrics = {"mc_states": float(n), "mc_candidates": float(k), "mc_rollouts": float(r),
               **ranking_diagnostics(q, truth, se, first, config.monte_carlo.min_action_gap),
               "mc_spearman_within_state_ceiling": truth_reliability(returns),
               "mc_true_best_within_eps_of_expert": float(
                   (np.abs(first[np.arange(n), truth.argmax(1)] - logged) < config.eama_epsilon).mean())}
    table = pd.DataFrame({
        "state": np.repeat(np.arange(n), k), ENTITY_KEY: np.repeat(rows[ENTITY_KEY].to_numpy(), k),
        "days_since_launch": np.repeat(rows["days_since_launch"].to_numpy(), k),
        "candidate": np.tile(np.arange(k), n), "action": first.ravel(), "q": q.ravel(),
        "mc_return": truth.ravel(), "mc_se": se.ravel(),
    })
    return table, metrics


def verify_replay(market: Any, rows: pd.DataFrame, index: np.ndarray, history: dict, groups: np.ndarray,
                  log_dir: str | Path, checks: int = 16) -> None:
    """Replay a few logged decisions with the market's own seed: the day's GMV must be the logged one.

    A log written by another simulator version (or another seed) would silently give a wrong "truth"."""
    from aigp.market.policies import StaticPolicy
    from aigp.market.rollout import branch_outcomes

    take = np.arange(min(checks, len(rows)))
    out = branch_outcomes(market, index[take], rows["days_since_launch"].to_numpy(np.int64)[take],
                          rows[ACTION].to_numpy(np.float64)[take, None], history_policies=history,
                          history_groups=groups, continuation=StaticPolicy(), n_rollouts=1,
                          seeds=np.array([market.config.seed]))
    replayed, logged = out.gmv[:, 0, 0, 0], rows["out_gmv"].to_numpy(np.float64)[take]
    if not np.allclose(replayed, logged, rtol=1e-4, atol=1e-2):
        bad = int(np.flatnonzero(~np.isclose(replayed, logged, rtol=1e-4, atol=1e-2))[0])
        raise ValueError(f"{log_dir}: replaying sku_id={rows[ENTITY_KEY].iloc[bad]} gives GMV {replayed[bad]:.2f}, the "
                         f"log says {logged[bad]:.2f}: the log was written by another simulator version or seed; "
                         "re-simulate it before the Monte-Carlo check")


def discounted_returns(model: LTVEModel, rows: pd.DataFrame, gmv: np.ndarray, spend: np.ndarray) -> np.ndarray:
    """Σ_d γ^d r_{t+d} of branched daily outcomes (n, K, R, days) with the model's reward; NaN days (past the
    horizon) contribute nothing."""
    n = len(rows)
    days = gmv.shape[-1]
    age = rows["days_since_launch"].to_numpy(np.int64)[:, None, None, None] + np.arange(days)
    valid = ~np.isnan(gmv)
    shape = (n, 1, 1, 1)
    r = daily_rewards(np.nan_to_num(gmv), np.nan_to_num(spend),
                      rows["gmv_tier1"].to_numpy(np.float64).reshape(shape),
                      rows["category"].astype(str).to_numpy().reshape(shape), age, model.references,
                      model.reward_config)
    discount = model.config.gamma ** np.arange(days)
    return (np.where(valid, r, 0.0) * discount).sum(-1)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
