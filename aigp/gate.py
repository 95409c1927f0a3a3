"""The offline gate: is a trained pricing policy good enough to become a registry candidate that a person may
approve?

A candidate is evaluated on a held-out time window of decision logs (rows it never trained on):

- the paper's offline metrics (Avg Q, MAE, EAMA, EAMA-R, KIPS; :mod:`aigp.policy_metrics`) of its projected
  actions on the window's expert rows;
- the format/parse failure rate of its raw outputs, and its A_safe compliance *before* projection (the
  projection hides an unsafe proposal; the gate does not);
- the rule judge's score (:class:`aigp.distillation.judge.RuleJudge`, four dimensions, 1-5) of a sample of its
  full-reasoning outputs;
- where the data comes from the simulator, a paired counterfactual A/B (:func:`aigp.ab.run_counterfactual`):
  the candidate and the price-sales baseline price the same fresh cohort.

Thresholds (:class:`GateConfig`) are absolute floors plus non-inferiority margins against the current
champion evaluated on the same rows (paired; when there is no champion the margins are skipped and the
report says so). Every check is a :class:`GateCheck` with its value, threshold and a reason; the verdict
is ``passed`` only when no check fails. :func:`aigp.gate_report.write_gate_report` writes ``gate_report.json``
and ``gate_report.html`` (tables and plots) and returns a :class:`~aigp.gate_report.GateReport` -- the one type
the registry (``aigp.registry.model_registry``) accepts.

The model itself is reached through a *proposer*: ``proposer(model_dir, rows) -> DataFrame`` with one row
per input row and the columns ``change`` (projected into A_safe), ``raw_change`` (as proposed, NaN when
unparsable), ``parse_ok`` and ``compliant``, plus optionally ``judge_prompt`` / ``judge_response`` (a
full-reasoning answer and its prompt) on the rows the judge scores.
The default is :func:`aigp.align.policy.propose_on_rows`; tests pass any function of that shape.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from aigp.config import StrictConfig
from aigp.policy_metrics import EXPERT_ACTION, OfflineMetricsConfig, expert_rows, scorecard

GATE_JSON = "gate_report.json"
GATE_HTML = "gate_report.html"
PROPOSAL_COLUMNS = ("change", "raw_change", "parse_ok", "compliant")

Proposer = Callable[[str, pd.DataFrame], pd.DataFrame]


class GateThresholds(StrictConfig):
    """Absolute floors (None = switched off: the report lists it as skipped, with the reason). Rates are shares
    in [0, 1]; the judge score is 1-5. ``min_model_action_share`` cannot be switched off: a model that writes no
    parsable action prices nothing itself (every SKU falls back to holding its price) and never passes."""

    min_model_action_share: float = Field(0.5, gt=0, le=1, description="share of rows priced by the model's own "
                                          "parsed action, not the hold fallback; always checked")
    max_parse_failure_rate: float | None = Field(0.05, ge=0, le=1, description="unparsable outputs")
    min_compliance_rate: float | None = Field(0.95, ge=0, le=1, description="proposals inside A_safe before projection")
    min_judge_score: float | None = Field(3.0, ge=1, le=5, description="rule-judge score: the worst dimension's mean")
    max_mae: float | None = Field(0.15, ge=0, description="mean |π(s) − a_expert|")
    min_eama: float | None = Field(None, ge=0, le=1)
    min_eama_r: float | None = Field(None, ge=0, le=1)
    min_kips: float | None = Field(None, ge=0, le=1)
    min_q_gain: float | None = Field(None, description="Avg Q of the candidate minus Avg Q of the expert's actions")
    min_ab_gmv_uplift: float | None = Field(-0.05, description="simulated A/B: GMV uplift over price-sales (relative, "
                                                               "longest horizon); the floor of its point estimate")


class NonInferiorityMargins(StrictConfig):
    """How much worse than the champion (same rows) a candidate may be; None = not compared."""

    avg_q: float | None = Field(0.0, ge=0, description="candidate Avg Q >= champion's − margin")
    mae: float | None = Field(0.02, ge=0, description="candidate MAE <= champion's + margin")
    eama: float | None = Field(0.03, ge=0)
    eama_r: float | None = Field(0.03, ge=0)
    kips: float | None = Field(0.03, ge=0)
    parse_failure_rate: float | None = Field(0.02, ge=0)
    compliance_rate: float | None = Field(0.02, ge=0)
    judge_score: float | None = Field(0.25, ge=0)


class GateABConfig(StrictConfig):
    """The simulated paired A/B (only when the held-out data comes from the simulator)."""

    enabled: bool = True
    cohort_skus: int = Field(40, ge=10, description="SKUs of the fresh cohort both policies price")
    cohort_launch_days: int = Field(3, ge=1)
    horizons: tuple[int, ...] = Field((7, 14), min_length=1)
    bootstrap: int = Field(200, ge=50)
    seed: int = Field(11, ge=0)
    history_skus: int | None = Field(3000, ge=100, description="logged SKUs (seeded sample) price-sales is fitted "
                                     "on; None = the whole log")


class GateConfig(StrictConfig):
    """The offline gate: what to evaluate on, and the thresholds. Load with ``GateConfig.from_yaml``."""

    eval_rows: int = Field(200, ge=1, description="expert rows of the held-out window evaluated (seeded sample)")
    policy: dict[str, Any] = Field(default_factory=dict, description="aigp.align.policy.PolicyConfig fields: how "
                                   "the model is prompted and decoded (default: full reasoning, greedy, as deployed)")
    judge_samples: int = Field(16, ge=0, description="full-reasoning outputs judged (0 = judge off)")
    judge_max_new_tokens: int = Field(640, ge=1, description="completion budget of the judged full-reasoning "
                                      "outputs (when the policy itself is prompted [ACT_ONLY])")
    seed: int = Field(0, ge=0)
    metrics: OfflineMetricsConfig = Field(default_factory=OfflineMetricsConfig)
    floors: GateThresholds = Field(default_factory=GateThresholds)
    non_inferiority: NonInferiorityMargins = Field(default_factory=NonInferiorityMargins)
    ab: GateABConfig = Field(default_factory=GateABConfig)


# --------------------------------------------------------------------------------------------------------
# checks
@dataclass(frozen=True)
class GateCheck:
    name: str
    kind: Literal["floor", "non-inferiority"]
    metric: str
    value: float | None
    threshold: float | None
    direction: str  # ">=" or "<=": which side of the threshold passes
    status: Literal["passed", "failed", "skipped"]
    reason: str


# metric -> (direction a good value goes, floor field)
_FLOORS: dict[str, tuple[str, str]] = {
    "model_action_share": (">=", "min_model_action_share"),
    "parse_failure_rate": ("<=", "max_parse_failure_rate"),
    "compliance_rate": (">=", "min_compliance_rate"),
    "judge_score": (">=", "min_judge_score"),
    "mae": ("<=", "max_mae"),
    "eama": (">=", "min_eama"),
    "eama_r": (">=", "min_eama_r"),
    "kips": (">=", "min_kips"),
    "q_gain": (">=", "min_q_gain"),
    "ab_gmv_uplift": (">=", "min_ab_gmv_uplift"),
}
_HIGHER_IS_BETTER = {"avg_q": True, "mae": False, "eama": True, "eama_r": True, "kips": True,
                     "parse_failure_rate": False, "compliance_rate": True, "judge_score": True}


def _compare(value: float, threshold: float, direction: str) -> bool:  # direction: ">=" | "<="
    return value >= threshold - 1e-12 if direction == ">=" else value <= threshold + 1e-12


def _switched_off(metric: str, config: GateConfig) -> str | None:
    """Why this gate's config does not measure ``metric`` at all (None: it is measured)."""
    if metric == "judge_score" and config.judge_samples == 0:
        return "switched off: judge_samples is 0 in this gate's config (the rule judge did not run)"
    if metric == "ab_gmv_uplift" and not config.ab.enabled:
        return "switched off: ab.enabled is false in this gate's config (no simulated A/B)"
    return None


NO_CHAMPION = "no champion to compare with"


def decide(candidate: Mapping[str, float], champion: Mapping[str, float] | None, config: GateConfig,
           no_champion: str = NO_CHAMPION) -> list[GateCheck]:
    """Every check of the gate on the candidate's metrics (and the champion's, same rows, for the margins).

    A configured check whose metric is missing or not finite FAILS (a gate must not pass on what it could not
    measure), except the A/B, which is skipped when it is switched off or no simulator data was available, and
    the judge, skipped when ``judge_samples`` is 0. Every skipped check says why; ``no_champion`` is the reason
    the margins give when ``champion`` is None."""
    checks: list[GateCheck] = []
    floors = config.floors
    for metric, (direction, field_name) in _FLOORS.items():
        threshold = getattr(floors, field_name)
        if threshold is None:
            checks.append(GateCheck(f"floor:{metric}", "floor", metric, candidate.get(metric), None, direction,
                                    "skipped", f"switched off: floors.{field_name} is null in this gate's config"))
            continue
        value = candidate.get(metric)
        if metric == "model_action_share" and value is None and candidate.get("parse_failure_rate") is not None:
            value = 1.0 - candidate["parse_failure_rate"]  # a report written before the share was recorded
        off = _switched_off(metric, config)
        if value is None and (off is not None or metric == "ab_gmv_uplift"):
            checks.append(GateCheck(f"floor:{metric}", "floor", metric, None, threshold, direction, "skipped",
                                    off or "not measured: no simulator log (market_logs) was given, so no "
                                    "simulated A/B ran"))
            continue
        if value is None or not math.isfinite(value):
            checks.append(GateCheck(f"floor:{metric}", "floor", metric, value, threshold, direction, "failed",
                                    f"{metric} could not be measured"))
            continue
        ok = _compare(value, threshold, direction)
        checks.append(GateCheck(f"floor:{metric}", "floor", metric, float(value), threshold, direction,
                                "passed" if ok else "failed",
                                f"{metric}={value:.4g} {'meets' if ok else 'misses'} the floor "
                                f"{direction} {threshold:.4g}"))
    margins = config.non_inferiority
    for metric, higher in _HIGHER_IS_BETTER.items():
        margin = getattr(margins, metric)
        direction = ">=" if higher else "<="
        name = f"non-inferiority:{metric}"
        if margin is None:
            checks.append(GateCheck(name, "non-inferiority", metric, candidate.get(metric), None, direction,
                                    "skipped", f"switched off: non_inferiority.{metric} is null in this gate's "
                                    "config"))
            continue
        off = _switched_off(metric, config)
        if off is not None:
            checks.append(GateCheck(name, "non-inferiority", metric, candidate.get(metric), None, direction,
                                    "skipped", off))
            continue
        if champion is None:
            checks.append(GateCheck(name, "non-inferiority", metric, candidate.get(metric), None, direction,
                                    "skipped", no_champion))
            continue
        ref, value = champion.get(metric), candidate.get(metric)
        if ref is None or not math.isfinite(ref):
            checks.append(GateCheck(name, "non-inferiority", metric, value, None, direction, "skipped",
                                    f"the champion has no {metric}"))
            continue
        threshold = ref - margin if higher else ref + margin
        if value is None or not math.isfinite(value):
            checks.append(GateCheck(name, "non-inferiority", metric, value, threshold, direction, "failed",
                                    f"{metric} could not be measured for the candidate"))
            continue
        ok = _compare(value, threshold, direction)
        checks.append(GateCheck(name, "non-inferiority", metric, float(value), threshold, direction,
                                "passed" if ok else "failed",
                                f"{metric}={value:.4g} vs champion {ref:.4g} (margin {margin:.4g}): "
                                f"{'non-inferior' if ok else 'inferior'}"))
    return checks


# --------------------------------------------------------------------------------------------------------
# evaluation
def holdout_rows(frame: pd.DataFrame, config: GateConfig) -> pd.DataFrame:
    """The evaluated rows of a held-out cohort (SKUs launched after the training data, whole episodes): its
    expert rows (``expert_rows``: realised return attached, computed on the whole window first), then a
    seeded sample of ``eval_rows``."""
    if "date" not in frame.columns:
        if "event_timestamp" not in frame.columns:
            raise ValueError("held-out rows need a 'date' or 'event_timestamp' column")
        frame = frame.assign(date=pd.to_datetime(frame["event_timestamp"], utc=True).dt.date)
    missing = [c for c in ("sku_id", "prev_discount", EXPERT_ACTION, "out_gmv", "out_spend", "gmv_tier1",
                           "roi_target") if c not in frame.columns]
    if missing:
        raise ValueError(f"held-out rows lack column(s) {missing}: expected a decision-log window with outcomes "
                         "(e.g. the llm_prompt training set of build_training_sets)")
    experts = expert_rows(frame, config.metrics)
    if experts.empty:
        raise ValueError("the held-out window has no expert rows (in-stock days of top-GMV SKUs)")
    if len(experts) > config.eval_rows:
        experts = experts.sample(n=config.eval_rows, random_state=config.seed).sort_index()
    return experts.reset_index(drop=True)


def heldout_from_logs(logs_dir: str | Path, launched_from: dt.date | None = None,
                      launched_before: dt.date | None = None) -> pd.DataFrame:
    """A held-out cohort straight from a market log directory (no feature store): every decision of the SKUs
    launched in ``[launched_from, launched_before)`` (whole episodes: the expert set needs each SKU's 14
    days), as prompt rows (features, text as of decision time) with the logged action and outcomes."""
    from aigp.llm.rows import rows_from_logs
    from aigp.market.logs import open_logs
    from aigp.schema import ACTION_COLUMNS, DATE, ENTITY_KEY, OUTCOME_COLUMNS

    rows = select_launch_window(rows_from_logs(logs_dir), launched_from, launched_before)
    if rows.empty:
        raise ValueError(f"{logs_dir}: no SKU launched in [{launched_from}, {launched_before})")
    decisions = open_logs(logs_dir).read("decisions.parquet")
    labels = [c for c in (*ACTION_COLUMNS, *OUTCOME_COLUMNS) if c in decisions.columns and c not in rows.columns]
    return rows.merge(decisions[[ENTITY_KEY, DATE, *labels]], on=[ENTITY_KEY, DATE], how="left",
                      validate="one_to_one")


def select_launch_window(frame: pd.DataFrame, launched_from: dt.date | None = None,
                         launched_before: dt.date | None = None) -> pd.DataFrame:
    """Rows of the SKUs launched in ``[launched_from, launched_before)`` (None = open end)."""
    from aigp.ltve.dataset import launch_dates

    launch = launch_dates(frame).dt.date
    keep = np.ones(len(frame), dtype=bool)
    if launched_from is not None:
        keep &= (launch >= launched_from).to_numpy()
    if launched_before is not None:
        keep &= (launch < launched_before).to_numpy()
    return frame[keep].reset_index(drop=True)


def check_proposals(rows: pd.DataFrame, proposals: pd.DataFrame) -> pd.DataFrame:
    """Validate a proposer's output: one row per input row, the required columns, projected actions in A_safe."""
    from aigp.action import is_safe

    missing = [c for c in PROPOSAL_COLUMNS if c not in proposals.columns]
    if missing:
        raise ValueError(f"proposals lack column(s) {missing}; a proposer returns {PROPOSAL_COLUMNS}")
    if len(proposals) != len(rows):
        raise ValueError(f"proposals have {len(proposals)} rows for {len(rows)} evaluated rows")
    proposals = proposals.reset_index(drop=True)
    change = proposals["change"].to_numpy(np.float64)
    if not np.isfinite(change).all() or not is_safe(rows["prev_discount"].to_numpy(np.float64), change).all():
        raise ValueError("proposals' 'change' must be projected into A_safe (aigp.action.project_to_safe)")
    return proposals


def proposal_metrics(rows: pd.DataFrame, proposals: pd.DataFrame, *, ltve: Any | None = None,
                     config: GateConfig | None = None) -> dict[str, float]:
    """The scorecard (:func:`aigp.policy_metrics.scorecard`) of one policy's checked proposals on ``rows``."""
    config = config or GateConfig()
    proposals = check_proposals(rows, proposals)
    return scorecard(rows, proposals["change"].to_numpy(np.float64), parse_ok=proposals["parse_ok"],
                     compliant=proposals["compliant"], ltve=ltve, config=config.metrics)


def judge_metrics(prompts: Sequence[Any], responses: Sequence[str | None]) -> dict[str, float]:
    """Rule-judge score of full-reasoning outputs: ``judge_score`` = the lowest of the four dimensions' mean
    scores (1-5), each dimension's mean and the share judged perfect (what the SFT filter keeps)."""
    from aigp.distillation.judge import DIMENSIONS, RuleJudge

    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    if not prompts:
        return {}
    verdicts = RuleJudge().judge_many(list(zip(prompts, responses, strict=True)))
    out = {f"judge_{d}": float(np.mean([v.scores[d] for v in verdicts])) for d in DIMENSIONS}
    # the WORST dimension's mean: text with nothing checkable scores 5 on data accuracy and coherence, so an
    # average over dimensions lets reasoning-free output through (seen on an untrained model: 5, 5, 4, 1)
    out["judge_score"] = float(min(out[f"judge_{d}"] for d in DIMENSIONS))
    out["judge_perfect_share"] = float(np.mean([v.kept for v in verdicts]))
    out["judge_samples"] = float(len(verdicts))
    return out


def simulated_ab(candidate_policy: Any, logs_dir: str | Path, config: GateABConfig) -> dict[str, Any]:
    """Paired counterfactual A/B of the candidate vs price-sales (fitted on the log) on a fresh cohort."""
    from aigp.ab.experiment import ABConfig, run_counterfactual
    from aigp.market.logs import open_logs
    from aigp.market.policies import build_baselines

    logs = open_logs(logs_dir)
    ab_cfg = ABConfig.build(allocation={"candidate": 0.5, "price_sales": 0.5}, control="price_sales", ceiling=None,
                            cohort_skus=config.cohort_skus, cohort_launch_days=config.cohort_launch_days,
                            horizons=config.horizons, bootstrap=config.bootstrap, seed=config.seed,
                            history_skus=max(100, int(logs.manifest["rows"]["skus"])))
    baseline = build_baselines(["price_sales"], dynamics=logs.config.dynamics, seed=config.seed,
                               history=lambda: _history(logs, config))
    result = run_counterfactual(ab_cfg, {"candidate": candidate_policy, "price_sales": baseline["price_sales"]})
    h = max(config.horizons)
    uplift = result.uplift.query("group == 'candidate' and horizon == @h").set_index("metric")
    return {
        "ab_gmv_uplift": float(uplift.loc["gmv", "uplift"]),
        "ab_gmv_uplift_ci": [float(uplift.loc["gmv", "ci_low"]), float(uplift.loc["gmv", "ci_high"])],
        "ab_roi_uplift": float(uplift.loc["roi", "uplift"]),
        "ab_mar_uplift": float(uplift.loc["mar", "uplift"]),
        "ab_horizon": float(h),
        "ab_table": result.metrics.to_dict("records"),
        "ab_markdown": result.markdown(),
    }


def _history(logs: Any, config: GateABConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(decisions, SKU table) price-sales is fitted on: a seeded sample of ``history_skus`` logged SKUs."""
    decisions, skus = logs.read("decisions.parquet"), logs.read("skus.parquet")
    if config.history_skus is not None and len(skus) > config.history_skus:
        keep = np.random.default_rng(config.seed).choice(skus["sku_id"].to_numpy(), config.history_skus, replace=False)
        decisions = decisions[decisions["sku_id"].isin(keep)].reset_index(drop=True)
        skus = skus[skus["sku_id"].isin(keep)].reset_index(drop=True)
    return decisions, skus


def is_simulator_log(path: str | Path | None) -> bool:
    """True when ``path`` is a market-simulator log directory (its manifest and hidden truth are there)."""
    return path is not None and (Path(path) / "manifest.json").exists() and (Path(path) / "sku_truth.parquet").exists()


@dataclass
class GateResult:
    passed: bool
    checks: list[GateCheck]
    candidate: dict[str, float]
    champion: dict[str, float] | None
    context: dict[str, Any] = field(default_factory=dict)  # window, model, rows, champion version, A/B table
    actions: dict[str, list[float]] = field(default_factory=dict)  # expert / candidate / champion changes (plots)

    @property
    def status(self) -> Literal["passed", "failed"]:
        return "passed" if self.passed else "failed"

    @property
    def reasons(self) -> list[str]:
        return [c.reason for c in self.checks if c.status == "failed"]

    @property
    def skipped(self) -> list[str]:
        """Every check that was skipped or switched off, with why (the report lists them beside the verdict)."""
        return [f"{c.name}: {c.reason}" for c in self.checks if c.status == "skipped"]

    def summary(self) -> str:
        """One line: the verdict and, on failure, why."""
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        if self.passed:
            return f"passed ({sum(c.status == 'passed' for c in self.checks)} checks{skipped})"
        return "failed: " + "; ".join(self.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "status": self.status, "reasons": self.reasons, "skipped": self.skipped,
                "checks": [asdict(c) for c in self.checks], "candidate": self.candidate,
                "champion": self.champion, "context": self.context,
                "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def evaluate_candidate(model_dir: str | Path, heldout: pd.DataFrame, config: GateConfig | None = None, *,
                       ltve: Any | None = None, champion_dir: str | Path | None = None,
                       champion_version: str = "", logs_dir: str | Path | None = None,
                       proposer: Proposer | None = None, policy_factory: Callable[[str], Any] | None = None,
                       context: Mapping[str, Any] | None = None, no_champion: str = NO_CHAMPION,
                       log: Callable[[str], None] = print) -> GateResult:
    """Run the gate on ``model_dir`` over the held-out decision-log window ``heldout``.

    ``ltve``: the LTVE model (Avg Q); ``champion_dir``: the current champion's model, evaluated on the same
    rows for the non-inferiority margins; ``logs_dir``: the simulator log the window comes from (enables the
    A/B); ``proposer`` / ``policy_factory`` default to :mod:`aigp.align.policy`; ``no_champion``: why there is no
    ``champion_dir`` (the margins' skip reason, e.g. switched off or none registered)."""
    config = config or GateConfig()
    if proposer is None:
        proposer = model_proposer(config)
    if policy_factory is None and config.ab.enabled:
        def policy_factory(path: str) -> Any:
            from aigp.align.policy import LLMPricingPolicy, PolicyConfig

            return LLMPricingPolicy(path, PolicyConfig.build(**config.policy), name="candidate")
    rows = holdout_rows(heldout, config)
    log(f"gate: evaluating {model_dir} on {len(rows)} held-out expert rows")
    proposals = check_proposals(rows, proposer(str(model_dir), rows))
    candidate = proposal_metrics(rows, proposals, ltve=ltve, config=config)
    candidate.update(_judge_sample(proposals, config))
    actions = {"expert": rows[EXPERT_ACTION].astype(float).tolist(),
               "candidate": proposals["change"].astype(float).tolist()}
    champion = None
    if champion_dir is not None:
        log(f"gate: evaluating the champion {champion_version or champion_dir} on the same rows")
        champ_proposals = check_proposals(rows, proposer(str(champion_dir), rows))
        champion = proposal_metrics(rows, champ_proposals, ltve=ltve, config=config)
        champion.update(_judge_sample(champ_proposals, config))
        actions["champion"] = champ_proposals["change"].astype(float).tolist()
    ctx: dict[str, Any] = {"model_dir": str(model_dir), "rows": len(rows), "champion_version": champion_version,
                           "window": _window_of(rows), **(context or {})}
    if config.ab.enabled and is_simulator_log(logs_dir) and policy_factory is not None:
        log(f"gate: simulated paired A/B vs price-sales on {config.ab.cohort_skus} SKUs")
        ab = simulated_ab(policy_factory(str(model_dir)), logs_dir, config.ab)  # type: ignore[arg-type]
        candidate.update({k: v for k, v in ab.items() if k.startswith("ab_") and isinstance(v, float)})
        ctx["ab"] = {k: v for k, v in ab.items() if not isinstance(v, float)}
    elif config.ab.enabled:
        ctx["ab_skipped"] = "the held-out data is not a simulator log: no simulated A/B"
    checks = decide(candidate, champion, config, no_champion)
    result = GateResult(passed=not any(c.status == "failed" for c in checks), checks=checks, candidate=candidate,
                        champion=champion, context=ctx, actions=actions)
    log(f"gate: {result.summary()}")
    return result


def model_proposer(config: GateConfig) -> Proposer:
    """The proposer of a trained model directory (:mod:`aigp.align.policy`, prompted and decoded as
    ``config.policy`` says). The first ``judge_samples`` rows also carry a full-reasoning output and the exact
    prompt it answered (``judge_prompt``, ``judge_response``): generated again in full mode when the policy is
    prompted [ACT_ONLY], since the judge's data, completeness and coherence checks need reasoning."""

    def propose(model_dir: str, rows: pd.DataFrame) -> pd.DataFrame:
        from aigp.align.generation import LoadedModel
        from aigp.align.policy import PolicyConfig, proposals
        from aigp.llm.prompt import build_prompt

        policy = PolicyConfig.build(**config.policy)
        loaded = LoadedModel.load(model_dir)
        rows = rows.reset_index(drop=True)
        out = proposals(loaded, rows, policy, progress=True)
        judged = rows.head(config.judge_samples)
        full = policy
        if policy.prompt.act_only:
            # the full-reasoning form of the same prompt (the compact form exists only in [ACT_ONLY] mode)
            full = policy.with_updates(prompt=policy.prompt.with_updates(act_only=False, compact=False),
                                       generation=policy.generation.with_updates(
                                           max_new_tokens=config.judge_max_new_tokens))
        responses = (out["output"].head(len(judged)).tolist() if full is policy
                     else proposals(loaded, judged, full)["output"].tolist()) if len(judged) else []
        prompt_cfg, count = loaded.prompt_config(full.prompt), loaded.counter()
        prompts = [build_prompt(r, prompt_cfg, count_tokens=count) for r in judged.to_dict("records")]
        pad = [None] * (len(rows) - len(judged))
        return out.rename(columns={"output": "response"}).assign(judge_prompt=prompts + pad,
                                                                  judge_response=responses + pad)

    return propose


def _judge_sample(proposals: pd.DataFrame, config: GateConfig) -> dict[str, float]:
    if config.judge_samples == 0 or "judge_response" not in proposals.columns:
        return {}
    sample = proposals.head(config.judge_samples)
    return judge_metrics(sample["judge_prompt"].tolist(), sample["judge_response"].tolist())


def _window_of(rows: pd.DataFrame) -> list[str]:
    days = pd.to_datetime(rows["date"])
    return [str(days.min().date()), str(days.max().date())]
