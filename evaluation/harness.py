"""The paper's evaluation (§4), reproduced end to end on the market simulator: ``aigp evaluate``.

From a clean state: simulate a market log (fixed seeds), train what the tables need on its training window,
then measure on held-out data only, and write ``EVALUATION.md`` + an HTML page with the figures:

- **Table 2**: the LTVE with n ∈ {1, 3, 5}: MAE, EAMA, CDA on the held-out expert rows, Spearman of Q deciles vs
  realised 7/14-day GMV, ROI and MAR, and Spearman of Q vs Monte-Carlo returns branched in the simulator
  (``aigp.ltve.evaluate.evaluate_model``).
- **Table 3**: Avg Q (the n = 3 LTVE), MAE, EAMA, EAMA-R, KIPS (``aigp.policy_metrics``) of every policy on one
  sample of held-out expert rows. Every policy sees exactly the logged state: the log is replayed in the
  simulator up to each row's day (deterministic given the market seed, checked against the logged discount),
  so numeric baselines, LLM policies (text) and the oracle (true latent state) answer the same question.
- **Table 4**: the paired simulated A/B (``aigp.ab.experiment.run_counterfactual``: every policy prices the same
  fresh cohort) at 7 and 14 days: GMV, ROI, MAR relative to price-sales with joint-bootstrap CIs and the share
  of the price-sales → oracle gap closed.
- **Table 5**: prompt ablations (no diagnosis, no knowledge base) of each aligned variant (and of the built-in
  knowledge-base teacher, which needs no trained model).
- **Table 7**: CDA robustness (overall, cold-start ≤ 3 days, boundary |a| ≥ 0.15) of the LTVE, CQL and the
  policies. A critic's CDA is Q(s, a_expert) > Q(s, a_cf); a *policy's* CDA (the paper does not define it) is
  the share of rows where its action is closer to the expert's than to the counterfactual.
- **Fig. 3** (Q deciles vs realised outcomes), **Fig. 5** (|a| tail probabilities and bins in the A/B), and the
  rule judge's scores (Fig. 4) of every variant that writes reasoning.

LLM rows come from :mod:`aigp.align` (``LLMPricingPolicy``, ``propose_on_rows``); when the models are not
available the rows say "not run" and why. No parameter is tuned on the evaluation cohort: every model is
fitted on the training window, and the A/B cohort is a fresh simulated market.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from aigp.config import StrictConfig
from aigp.io import write_json, write_text
from aigp.markdown import markdown_table

NOT_RUN = "not run"
LLM_VARIANTS = ("base", "sft", "dpo_only", "fullseq", "sft_dpo")  # names of aigp.align.variants
CRITIC_POLICIES = ("ltve_greedy", "best_of_teacher")  # act on the LTVE directly (aigp.ltve.policies)
BEST_OF_SFT = "best_of_sft"  # best-of-M by the LTVE over the SFT model's samples (needs the sft variant)
LLM_LABELS = {"base": "base model (untrained)", "sft": "AIGP (SFT-only)", "dpo_only": "AIGP (DPO-only)",
              "fullseq": "AIGP (FullSeq)", "sft_dpo": "AIGP (SFT+DPO)"}
ABLATED = ("sft", "dpo_only", "sft_dpo")
ABLATIONS = ("no_diag", "no_kb", "no_reviews")  # Table 5's prompts with a section removed (the paper: first two)
SAME_ACTION = 0.005  # actions print with 2 decimals: closer than half a cent is the same action
COMPACT_REVIEW_CHARS = 160  # the compact prompt's review digest (pipelines/runner.py COMPACT_PROMPT, bench_student)
# how DPO's candidates and best-of-M over the SFT model's samples are drawn
CANDIDATE_SAMPLING: dict[str, Any] = {"temperature": 1.0, "top_k": 50, "top_p": 0.95}
ACTION_TOKENS = 40  # decoding cap of an [ACT_ONLY] answer: the JSON action is 22-32 tokens (pipelines/runner.py)

# The paper's numbers (Tao Factory), printed beside ours.
PAPER_TABLE2 = {1: (0.045, 0.877, 0.912), 3: (0.027, 0.907, 0.975), 5: (0.056, 0.864, 0.897)}  # MAE, EAMA, CDA
PAPER_SPEARMAN = {"gmv_7d": 0.93, "gmv_14d": 0.94, "roi_7d": 0.97, "roi_14d": 0.96, "mar_7d": 0.97, "mar_14d": 0.98}
PAPER_TABLE3 = {  # Avg Q, MAE, EAMA, EAMA-R, KIPS
    "price_sales": (2.564, 0.084, 0.7108, 11.62, 11.68), "dt": (2.694, 0.078, 0.7389, 11.65, 11.71),
    "ddpg": (2.364, 0.110, 0.5691, 11.41, 11.47), "sac": (2.494, 0.097, 0.6395, 11.52, 11.57),
    "base": (2.585, 0.085, 0.6922, 11.74, 11.80), "sft": (2.554, 0.086, 0.6898, 11.71, 11.77),
    "dpo_only": (2.794, 0.067, 0.7926, 11.81, 11.84), "fullseq": (2.591, 0.082, 0.7132, 11.73, 11.78),
    "sft_dpo": (2.836, 0.062, 0.8251, 11.83, 11.86),
}
PAPER_TABLE4 = {  # (MAR, GMV, ROI) uplift vs price-sales at 7 and 14 days
    "dt": {7: (0.0133, 0.0402, 0.0571), 14: (0.0088, 0.0904, 0.0346)},
    "base": {7: (0.0088, 0.0222, 0.0229), 14: (-0.0298, 0.0489, 0.0433)},
    "sft": {7: (0.0559, 0.0482, 0.0800), 14: (0.0334, 0.0785, 0.0529)},
    "sft_dpo": {7: (0.0692, 0.1104, 0.0823), 14: (0.0820, 0.1321, 0.0759)},
}
PAPER_TABLE5 = {  # Avg Q, EAMA-R, KIPS: full, w/o Diag, w/o KB
    "sft": ((2.554, 11.71, 11.77), (2.470, 11.66, 11.73), (2.330, 11.56, 11.63)),
    "dpo_only": ((2.794, 11.81, 11.84), (2.680, 11.68, 11.75), (2.480, 11.57, 11.69)),
    "sft_dpo": ((2.836, 11.83, 11.86), (2.660, 11.67, 11.75), (2.600, 11.59, 11.73)),
}
PAPER_TABLE7 = {"ltve": (0.975, 0.893, 0.912), "cql": (0.931, 0.835, 0.807), "sft_dpo": (0.969, 0.946, 0.941)}
PAPER_JUDGE = {"base": 18.13, "sft": 19.24, "sft_dpo": 19.52, "teacher (Qwen3-235B)": 19.80}


class EvaluationSettings(StrictConfig):
    """Every size and seed of one evaluation run (recorded in the report). The defaults are the full configuration
    (twice the reduced run's market, LTVE and CQL updates, 1.5x its offline rows and A/B cohort; sized from the
    reduced run's stage timings, ``docs/evaluation-reduced.yaml``). Measured end to end with the student recipe
    (``tiny`` model, 12k judged labels, 3,000 SFT steps, two on-policy rounds, DPO) on the shared 2-core machine
    (2026-12-03, beside other benchmarks): 4,753 s wall (79 min, within the 90-minute budget), 4,706 s CPU, of
    which the LLM variants' alignment stage took 3,465 s; per-stage wall and CPU time are in
    EVALUATION.md's run record."""

    label: str = Field("full", description="name of this configuration, printed in the report")
    seed: int = Field(7, ge=0, description="seed of the logged market")
    log_skus: int = Field(6_000, ge=100, description="SKUs in the logged market")
    log_launch_days: int = Field(90, ge=20, description="launch window of the logged market (days)")
    eval_share: float = Field(0.2, gt=0, lt=1, description="latest launches held out (the LTVE's split)")
    ltve_steps: int = Field(6_000, ge=1, description="updates of each LTVE critic")
    cql_steps: int = Field(2_000, ge=1, description="updates of the CQL critic (5x the cost of an LTVE update)")
    ltve_n_steps: tuple[int, ...] = Field((1, 3, 5), min_length=1, description="TD horizons of Table 2")
    ltve_expert_rows: int = Field(20_000, ge=10, description="held-out expert rows for MAE/EAMA/CDA (paper: 30k)")
    mc_states: int = Field(200, ge=2, description="states branched for the Monte-Carlo truth")
    mc_rollouts: int = Field(8, ge=1, description="futures per branched (state, action)")
    ltve_best_of: int = Field(8, ge=1, description="M of the best-of-M-by-LTVE policies (over the teacher's samples "
                              "and over the SFT model's)")
    llm_best_of_sft: bool = Field(True, description="price best-of-M by the LTVE over the SFT model's own samples "
                                  "(the ceiling of DPO on its pairs) in Tables 3 and 4, when SFT is trained")
    baseline_steps: int = Field(4_000, ge=1, description="updates of DDPG and SAC")
    ddpg_pretrain_steps: int = Field(1_500, ge=0, description="DDPG expert pre-training updates")
    dt_steps: int = Field(600, ge=1, description="updates of the Decision Transformer")
    baseline_hidden: tuple[int, ...] = Field((256, 256), description="MLP widths of DDPG and SAC")
    offline_rows: int = Field(1_000, ge=10, description="held-out expert rows every policy answers (Tables 3, 5, 7)")
    judge_rows: int = Field(12, ge=1, description="of those rows, responses scored by the rule judge")
    ab_cohort_skus: int = Field(240, ge=10, description="SKUs of the fresh A/B cohort (every policy prices all)")
    ab_launch_days: int = Field(14, ge=1, description="launch window of the A/B cohort (days)")
    ab_bootstrap: int = Field(1_000, ge=50)
    ab_seed: int = Field(11, ge=0, description="seed of the A/B cohort market (not the logged market's)")
    llm_models: dict[str, str] = Field(default_factory=dict,
                                       description="variant -> trained model dir (base, sft, ...): skips training")
    llm_variants: tuple[str, ...] = Field(LLM_VARIANTS, description="variants trained with aigp.align")
    llm_size: str = Field("tiny", description="base model size (aigp.llm.model_factory.SIZES)")
    llm_prompt: str = Field("compact", pattern="^(compact|full)$",
                            description="prompt form the variants are distilled on and price with: `compact` = "
                            "the short [ACT_ONLY] form a from-scratch model learns from (bench/bench_student.py); "
                            "`full` = the full prompt's [ACT_ONLY] form")
    llm_distill_prompts: int = Field(12_000, ge=1, description="training-window prompts the teacher labels (SFT set)")
    llm_distill_temperature: float = Field(0.0, ge=0.0, le=2.0, description="teacher temperature of the SFT labels")
    llm_sft_steps: int | None = Field(3_000, ge=1, description="SFT optimiser steps (None: llm_sft_epochs)")
    llm_sft_epochs: float = Field(3.0, gt=0, description="SFT epochs when llm_sft_steps is None")
    llm_sft_batch: int = Field(16, ge=1)
    llm_sft_lora: bool = Field(False, description="LoRA SFT; off = full fine-tuning, which the random-init base "
                               "model needs to learn the answer format in minutes (bench/bench_alignment.py)")
    llm_on_policy_rounds: int = Field(2, ge=0, description="on-policy distillation (DAgger) rounds after SFT: the "
                                      "student prices a training cohort of its own, the teacher labels every state "
                                      "it visited, SFT continues on the grown set (aigp.distillation.on_policy)")
    llm_on_policy_skus: int = Field(300, ge=1, description="SKUs of each on-policy round's training cohort")
    llm_on_policy_steps: int = Field(400, ge=1, description="SFT steps of each on-policy round")
    llm_sample_prompts: int = Field(400, ge=1, description="training-window prompts [ACT_ONLY] candidates are drawn on")
    llm_candidates: int = Field(8, ge=2, description="M candidates per prompt")
    llm_dpo_epochs: float = Field(2.0, gt=0)
    llm_pairs_balance_sign: bool = Field(True, description="DPO pairs balanced by sign (PairsConfig.balance_sign): "
                                         "without it the pairs' majority sign shifts every answer (docs/alignment.md)")
    llm_fullseq_prompts: int = Field(8, ge=1, description="prompts sampled in full-reasoning mode for FullSeq")
    llm_ab_variants: tuple[str, ...] = Field(("sft", "sft_dpo"), description="LLM variants priced in the A/B")
    threads: int = Field(1, ge=1, description="torch CPU threads (on a busy 2-core machine 2 threads run 5x slower)")

    @model_validator(mode="after")
    def _on_policy_needs_compact(self) -> EvaluationSettings:
        if self.llm_on_policy_rounds and self.llm_prompt != "compact":
            raise ValueError("llm_on_policy_rounds needs llm_prompt: compact (the teacher labels the prompts the "
                             "student answered; the full form trains on reasoning twins)")
        return self

    @classmethod
    def quick(cls, **overrides: Any) -> EvaluationSettings:
        """Minutes-sized: every table produced on a tiny market (for tests; numbers are not meaningful)."""
        small = dict(label="quick", log_skus=600, log_launch_days=40, ltve_steps=100, cql_steps=40,
                     ltve_expert_rows=400, mc_states=4, mc_rollouts=2, baseline_steps=60, ddpg_pretrain_steps=20,
                     dt_steps=20, baseline_hidden=(32, 32), offline_rows=32, judge_rows=2, ab_cohort_skus=16,
                     ab_launch_days=5, ab_bootstrap=100, llm_variants=("base",), llm_size="tiny",
                     llm_distill_prompts=60, llm_sft_steps=20, llm_on_policy_rounds=0, llm_sample_prompts=8,
                     llm_ab_variants=("base",))
        return cls.build(**{**small, **overrides})


@dataclass
class Evaluation:
    """Everything measured, as plain tables (DataFrames) plus the run record."""

    settings: EvaluationSettings
    record: dict[str, Any] = field(default_factory=dict)
    table2: pd.DataFrame | None = None
    table3: pd.DataFrame | None = None
    table4: pd.DataFrame | None = None
    table5: pd.DataFrame | None = None
    table7: pd.DataFrame | None = None
    judge: pd.DataFrame | None = None
    stability: pd.DataFrame | None = None
    deciles: pd.DataFrame | None = None
    decile_metrics: dict[str, float] = field(default_factory=dict)
    ab_markdown: str = ""
    notes: list[str] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per stage
    cpu_timings: dict[str, float] = field(default_factory=dict)  # CPU seconds per stage (this process)


# --------------------------------------------------------------------------------------------------------
# replaying logged states: every policy answers for exactly the logged state
@dataclass
class Replay:
    """Observations at the logged states of ``rows`` (grouped by day of life; ``parts`` = (row positions, obs))."""

    rows: pd.DataFrame
    parts: list[tuple[np.ndarray, Any]]

    def actions(self, policy: Any) -> np.ndarray:
        out = np.zeros(len(self.rows))
        for positions, obs in self.parts:
            out[positions] = policy.act(obs)
        return out

    def text_rows(self) -> pd.DataFrame:
        """The rows as prompt rows (schema features, description, review digest as of the decision, date)."""
        frames = []
        for positions, obs in self.parts:
            frame = obs.with_text_columns()
            frame.index = positions
            frames.append(frame)
        out = pd.concat(frames).sort_index()
        out["date"] = pd.to_datetime(self.rows["event_timestamp"], utc=True).dt.date.to_numpy()
        return out.reset_index(drop=True)


def replay_logged_states(log_dir: str | Path, rows: pd.DataFrame) -> Replay:
    """Re-simulate each row's SKU from launch with its logging policy up to the row's day (market seed)."""
    from aigp.market.logs import open_logs
    from aigp.market.policies import behaviour_policies
    from aigp.market.simulator import Cohort, Market, dispatch

    market = Market(open_logs(log_dir).config)
    ids = market.skus.sku_id
    sku = rows["sku_id"].to_numpy()
    index = np.searchsorted(ids, sku)
    if (index >= len(ids)).any() or (ids[np.minimum(index, len(ids) - 1)] != sku).any():
        raise ValueError(f"{log_dir}: rows hold SKUs this market log does not simulate")
    history, groups = behaviour_policies(), market.behaviour_groups()
    ages = rows["days_since_launch"].to_numpy(np.int64)
    parts = []
    for age in np.unique(ages):
        positions = np.flatnonzero(ages == age)
        cohort = Cohort(market, index[positions])
        g = groups[index[positions]]
        members = {str(name): (history[str(name)], np.flatnonzero(g == name)) for name in np.unique(g)}
        for _ in range(int(age)):
            obs = cohort.observe(text=True, truth=False)
            cohort.advance(dispatch(obs, members), market.config.seed)
        obs = cohort.observe(text=True, truth=True)
        logged = rows["prev_discount"].to_numpy(np.float64)[positions]
        if not np.allclose(obs.prev_discount, logged, atol=1e-3):
            raise ValueError(f"{log_dir}: replay does not reproduce the logged discount at day {age}; the log was "
                             "written by another simulator version or seed")
        parts.append((positions, obs))
    return Replay(rows.reset_index(drop=True), parts)


# --------------------------------------------------------------------------------------------------------
# small helpers
def policy_cda(actions: np.ndarray, expert: np.ndarray, counterfactual: np.ndarray) -> np.ndarray:
    """Per row: the policy's action is closer to the expert's than to the counterfactual (ties lose)."""
    return np.abs(actions - expert) < np.abs(actions - counterfactual)


def _jsonable_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): ({str(a): float(b) for a, b in v.items() if isinstance(b, int | float)} if isinstance(v, Mapping)
                     else v) for k, v in metrics.items()}


def _timer(ev: Evaluation, name: str) -> Callable[[], None]:
    """Adds the stage's wall time to ``ev.timings`` and its CPU time (this process, all threads) to
    ``ev.cpu_timings``: on a shared machine the two differ by what the other processes took."""
    started, cpu_started = time.perf_counter(), time.process_time()

    def stop() -> None:
        ev.timings[name] = ev.timings.get(name, 0.0) + time.perf_counter() - started
        ev.cpu_timings[name] = ev.cpu_timings.get(name, 0.0) + time.process_time() - cpu_started

    return stop


def _params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _say(progress: bool, text: str) -> None:
    if progress:
        from rich.console import Console

        Console(soft_wrap=True).print(f"[bold]evaluate[/bold] {text}")


# --------------------------------------------------------------------------------------------------------
def run_evaluation(settings: EvaluationSettings, work_dir: str | Path, *, progress: bool = False,
                   llm_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Evaluation:
    """Run every stage; ``work_dir`` receives the market log, models and raw results.

    ``llm_hook(ctx)`` may return {variant: model directory} to add (e.g. variants trained on the fly by
    ``aigp.align``); ``settings.llm_models`` names pre-trained ones."""
    import torch

    from aigp.ltve.dataset import training_frame_from_logs
    from aigp.market.config import MarketConfig
    from aigp.market.logs import simulate_to_directory

    torch.set_num_threads(settings.threads)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    ev = Evaluation(settings)
    started, cpu_started = time.perf_counter(), time.process_time()
    ev.record = {"started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                 "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU(s), Python "
                            f"{platform.python_version()}", "torch_threads": settings.threads}

    stop = _timer(ev, "simulate log")
    market_cfg = MarketConfig.build(seed=settings.seed, n_skus=settings.log_skus,
                                    launch_days=settings.log_launch_days)
    log_dir = work / "market"
    _say(progress, f"simulating {settings.log_skus:,} SKUs (seed {settings.seed})")
    logs = simulate_to_directory(market_cfg, log_dir, overwrite=True)
    frame = training_frame_from_logs(log_dir)
    stop()
    ev.record["log"] = {"skus": settings.log_skus, "rows": len(frame), "seed": settings.seed,
                        "launch_days": settings.log_launch_days, "dir": str(log_dir)}

    ltve, cql = _table2(ev, frame, log_dir, progress)
    baselines = _train_baselines(ev, frame, logs, progress)
    baselines |= _critic_policies(settings, ltve)
    llm = _llm_models(ev, {"settings": settings, "work_dir": work, "log_dir": log_dir, "ltve": ltve, "frame": frame},
                      llm_hook)
    if settings.llm_best_of_sft and "sft" in llm:
        baselines[BEST_OF_SFT] = _best_of_sft(settings, ltve, llm["sft"])
    _offline_tables(ev, frame, log_dir, ltve, cql, baselines, llm, progress)
    write_json(work / "results_offline.json", results_dict(ev))  # kept if the A/B fails
    _ab_table(ev, baselines, llm, progress, ltve)
    ev.timings["total"] = time.perf_counter() - started
    ev.cpu_timings["total"] = time.process_time() - cpu_started
    ev.record["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return ev


# --------------------------------------------------------------------------------------------------------
def _table2(ev: Evaluation, frame: pd.DataFrame, log_dir: Path, progress: bool) -> tuple[Any, Any]:
    from aigp.ltve.evaluate import EvaluationConfig, evaluate_model
    from aigp.ltve.train import LTVETrainConfig, train_ltve

    s = ev.settings
    eval_cfg = EvaluationConfig(expert_rows=s.ltve_expert_rows,
                                monte_carlo={"states": s.mc_states, "rollouts": s.mc_rollouts})
    rows, models = [], {}
    for n in s.ltve_n_steps:
        _say(progress, f"LTVE n={n}: {s.ltve_steps:,} updates")
        stop = _timer(ev, f"LTVE n={n} (train + evaluate)")
        result = train_ltve(frame, LTVETrainConfig(critic={"steps": s.ltve_steps, "n_steps": n},
                                                   eval_share=s.eval_share, threads=s.threads))
        report = evaluate_model(result.model, frame, eval_cfg, log_dir=log_dir)
        stop()
        m = report.metrics
        models[n] = (result.model, report)
        paper = PAPER_TABLE2.get(n, (np.nan,) * 3)
        rows.append({"n": n, "mae": m["mae"], "paper_mae": paper[0], "eama": m["eama"], "paper_eama": paper[1],
                     "cda": m["cda"], "paper_cda": paper[2], "cda_cold_start": m["cda_cold_start"],
                     "cda_boundary": m["cda_boundary"], "mc_spearman": m.get("mc_spearman", np.nan),
                     "mc_spearman_within_state": m.get("mc_spearman_within_state", np.nan),
                     "mc_cda_vs_truth": m.get("mc_cda_vs_truth", np.nan), "mc_regret": m.get("mc_regret", np.nan),
                     **{k: m.get(k, np.nan) for k in ("mc_spearman_within_state_gap", "mc_pairwise_accuracy_gap",
                                                      "mc_regret_share", "mc_calibration_slope")},
                     **{f"spearman_{k}": m.get(f"spearman_decile_{k}", np.nan) for k in PAPER_SPEARMAN},
                     "expert_rows": m["expert_rows"], "transitions": result.model.metrics["train/transitions"]})
        if n == 3 or "split" not in ev.record:
            ev.record["split"] = result.model.info["split"]
    ev.table2 = pd.DataFrame(rows)
    main_n = 3 if 3 in models else s.ltve_n_steps[0]
    ltve, report = models[main_n]
    ev.deciles, ev.decile_metrics = report.deciles, report.metrics
    from aigp.htmlreport import figure_png
    from aigp.ltve.evaluate import _decile_figure

    ev.figures["fig3_q_deciles.png"] = figure_png(_decile_figure(report.deciles, report.metrics))
    ev.record["ltve"] = {"n_steps": main_n, "parameters": _params(ltve.learner.q) + _params(ltve.learner.v),  # type: ignore[union-attr]
                         "hidden_dims": list(ltve.config.hidden_dims), "steps": s.ltve_steps}

    _say(progress, f"CQL: {s.cql_steps:,} updates")
    stop = _timer(ev, "CQL (train + evaluate)")
    cql = train_ltve(frame, LTVETrainConfig(kind="cql", critic={"steps": s.cql_steps}, eval_share=s.eval_share,
                                            threads=s.threads)).model
    cql_report = evaluate_model(cql, frame, eval_cfg.with_updates(monte_carlo={"enabled": False}))
    stop()
    ev.record["critic_cda"] = {"ltve": {k: report.metrics[k] for k in ("cda", "cda_cold_start", "cda_boundary")},
                               "cql": {k: cql_report.metrics[k] for k in ("cda", "cda_cold_start", "cda_boundary")},
                               "rows": report.metrics["expert_rows"]}
    return ltve, cql


def _train_baselines(ev: Evaluation, frame: pd.DataFrame, logs: Any, progress: bool) -> dict[str, Any]:
    from aigp.distillation.teacher import TeacherPolicy
    from aigp.evaluation.baselines.ddpg import DDPGConfig, train_ddpg
    from aigp.evaluation.baselines.dt import DTConfig, train_dt
    from aigp.evaluation.baselines.sac import SACConfig, train_sac
    from aigp.ltve.dataset import time_split
    from aigp.market.policies import ExpertPolicy, OraclePolicy, PriceSalesPolicy, StaticPolicy

    s = ev.settings
    out: dict[str, Any] = {}
    stop = _timer(ev, "price-sales fit")
    split = time_split(frame, eval_share=s.eval_share, validation_share=0.0)
    decisions = logs.read("decisions.parquet")
    train_ids = split.train["sku_id"].unique()
    out["price_sales"] = PriceSalesPolicy.fit(decisions[decisions["sku_id"].isin(train_ids)],
                                              logs.read("skus.parquet"), seed=s.seed)
    stop()
    trained: dict[str, Any] = {}
    trainers: tuple[tuple[str, Any, Any], ...] = (
        ("ddpg", train_ddpg, DDPGConfig(steps=s.baseline_steps, pretrain_steps=s.ddpg_pretrain_steps,
                                        hidden_dims=s.baseline_hidden, eval_share=s.eval_share)),
        ("sac", train_sac, SACConfig(steps=s.baseline_steps, hidden_dims=s.baseline_hidden, eval_share=s.eval_share)),
        ("dt", train_dt, DTConfig(steps=s.dt_steps, eval_share=s.eval_share)),
    )
    for name, fn, cfg in trainers:
        _say(progress, f"training {name}")
        stop = _timer(ev, f"{name} train")
        trained[name] = fn(frame, cfg)
        stop()
        out[name] = trained[name].policy
    ev.record["baselines"] = {name: {"parameters": t.info["parameters"], "seconds": round(t.seconds, 1),
                                     "final": t.history[-1] if t.history else {}, "config": t.info["config"]}
                              for name, t in trained.items()}
    out["kb_teacher"] = TeacherPolicy()
    out["expert"] = ExpertPolicy()
    out["static"] = StaticPolicy()
    out["oracle"] = OraclePolicy(logs.config.dynamics)
    return out


def _critic_policies(settings: EvaluationSettings, ltve: Any) -> dict[str, Any]:
    """The policies that act on the LTVE directly (issue 20): the ceiling of DPO on LTVE-ranked pairs."""
    from aigp.ltve.policies import BestOfMPolicy, LTVEGreedyPolicy

    return {"ltve_greedy": LTVEGreedyPolicy(ltve, name="ltve_greedy"),
            "best_of_teacher": BestOfMPolicy(ltve, m=settings.ltve_best_of, name="best_of_teacher")}


def _best_of_sft(settings: EvaluationSettings, ltve: Any, sft_dir: Path) -> Any:
    """Best-of-M by the LTVE over the SFT model's own [ACT_ONLY] samples, drawn as DPO's candidates are: what
    following the critic over the student's answers is worth, the ceiling of DPO on those pairs."""
    from aigp.align.policy import LLMSamples
    from aigp.ltve.policies import BestOfMPolicy

    sampler = LLMSamples(sft_dir, _llm_policy_config(settings), m=settings.ltve_best_of, **CANDIDATE_SAMPLING)
    return BestOfMPolicy(ltve, m=settings.ltve_best_of, sampler=sampler, name=BEST_OF_SFT)


def _llm_models(ev: Evaluation, ctx: dict[str, Any],
                hook: Callable[[dict[str, Any]], dict[str, Any]] | None) -> dict[str, Path]:
    models = {k: Path(v) for k, v in ev.settings.llm_models.items()}
    unknown = sorted(set(models) - set(LLM_VARIANTS))
    if unknown:
        raise ValueError(f"llm_models has unknown variant(s) {unknown}; expected {list(LLM_VARIANTS)}")
    missing: dict[str, str] = {}
    if hook is None and not models:
        missing = {v: "the alignment package (aigp.align.variants) is missing" for v in LLM_VARIANTS}
    if hook is not None and not models:
        stop = _timer(ev, "LLM variants (alignment)")
        try:
            models |= {k: Path(v) for k, v in hook(ctx).items()}
        except Exception as exc:  # the tables without LLM rows are still worth writing; the reason is reported
            missing = {v: f"alignment failed ({type(exc).__name__}: {exc})" for v in LLM_VARIANTS}
            ev.notes.append(f"LLM variants: training failed: {type(exc).__name__}: {exc}")
        finally:
            stop()
        ev.notes += ctx.get("notes", [])
        ev.record["llm_training"] = _jsonable_metrics(ctx.get("metrics", {}))
        for variant, note in ctx.get("variant_notes", {}).items():
            missing.setdefault(variant, note)
    ev.record["llm_missing"] = missing
    absent = [k for k in models if not Path(models[k]).exists()]
    if absent:
        raise FileNotFoundError(f"LLM model directory missing for {absent}: {[str(models[k]) for k in absent]}")
    if not models:
        ev.notes.append("LLM rows: not run — no aligned model was given or trained.")
    ev.record["llm_models"] = {k: str(v) for k, v in models.items()}
    return models


# --------------------------------------------------------------------------------------------------------
def _changed_share(changed: np.ndarray, sku: np.ndarray, reps: int, seed: int) -> dict[str, float]:
    """Share of rows whose decision changed, with a 95% percentile bootstrap over SKUs (a SKU's rows move together:
    resampling rows would understate the interval)."""
    _, cluster = np.unique(sku, return_inverse=True)
    hits = np.bincount(cluster, weights=changed.astype(np.float64))
    counts = np.bincount(cluster).astype(np.float64)
    draw = np.random.default_rng(seed).integers(0, len(counts), (reps, len(counts)))
    lo, hi = np.quantile(hits[draw].sum(1) / counts[draw].sum(1), [0.025, 0.975])
    return {"changed": float(changed.mean()), "changed_lo": float(lo), "changed_hi": float(hi)}


def _offline_tables(ev: Evaluation, frame: pd.DataFrame, log_dir: Path, ltve: Any, cql: Any,
                    baselines: Mapping[str, Any], llm: Mapping[str, Path], progress: bool) -> None:
    from aigp.ltve.evaluate import boundary_actions, counterfactual_actions, evaluation_cohort
    from aigp.policy_metrics import expert_rows, offline_policy_metrics, scorecard

    s = ev.settings
    cohort = evaluation_cohort(frame, ltve)
    experts = expert_rows(cohort)
    rows = experts.sample(n=min(s.offline_rows, len(experts)), random_state=s.seed).reset_index(drop=True)
    _say(progress, f"replaying {len(rows)} held-out expert states")
    stop = _timer(ev, "replay logged states")
    replay = replay_logged_states(log_dir, rows)
    stop()
    ev.record["offline_rows"] = {"rows": len(rows), "skus": int(rows["sku_id"].nunique()),
                                 "cohort_skus": int(cohort["sku_id"].nunique()), "expert_rows": len(experts)}
    rng = np.random.default_rng(s.seed)
    prev, expert = rows["prev_discount"].to_numpy(np.float64), rows["discount_change"].to_numpy(np.float64)
    cf = counterfactual_actions(prev, expert, 0.1, rng)
    boundary = boundary_actions(prev, 0.15, rng)
    cold = rows["days_since_launch"].to_numpy() <= 3

    actions: dict[str, np.ndarray] = {}
    flags: dict[str, dict[str, np.ndarray]] = {}  # a model's parse_ok / compliant per row (the scorecard's)
    for name in ("price_sales", "dt", "ddpg", "sac", "kb_teacher", *CRITIC_POLICIES, BEST_OF_SFT, "expert", "static",
                 "oracle"):
        if name == BEST_OF_SFT and name not in baselines:
            continue
        policy = baselines[name]
        if name == "dt":
            policy = policy.fresh().prime(cohort)  # the logged past of each SKU as its context
        stop = _timer(ev, f"offline actions {name}")
        actions[name] = replay.actions(policy)
        stop()

    text_rows = replay.text_rows()
    judged: dict[str, list[float]] = {}
    ablations: dict[tuple[str, str], np.ndarray] = {}
    _judge_teacher(ev, text_rows, judged)
    for variant, model_dir in llm.items():
        _say(progress, f"LLM {variant}: [ACT_ONLY] proposals on {len(rows)} rows, reasoning on {s.judge_rows}")
        stop = _timer(ev, f"offline actions {variant}")
        props = _llm_proposals(model_dir, text_rows, s)
        stop()
        actions[variant] = props["change"].to_numpy(np.float64)
        flags[variant] = {"parse_ok": props["parse_ok"].to_numpy(bool), "compliant": props["compliant"].to_numpy(bool)}
        stop = _timer(ev, f"judge {variant}")
        judged[variant] = _llm_judge_scores(model_dir, text_rows.head(s.judge_rows), s)
        stop()
        if variant in ABLATED:
            for mode in ABLATIONS:
                stop = _timer(ev, f"ablation {variant} {mode}")
                ablations[(variant, mode)] = _llm_proposals(model_dir, text_rows, s, mode=mode)[
                    "change"].to_numpy(np.float64)
                stop()
    for mode in ABLATIONS:
        ablations[("kb_teacher", mode)] = _teacher_actions(text_rows, ev.settings, mode)

    order = ["price_sales", "dt", "ddpg", "sac", *LLM_VARIANTS, "kb_teacher", *CRITIC_POLICIES, BEST_OF_SFT, "expert",
             "static", "oracle"]
    t3, t7 = [], []
    for name in order:
        paper = PAPER_TABLE3.get(name, (np.nan,) * 5)
        label = _label(name)
        if name not in actions:
            t3.append({"policy": label, "key": name, "status": _missing_reason(ev, name),
                       "paper_avg_q": paper[0], "paper_mae": paper[1], "paper_eama": paper[2],
                       "paper_eama_r": paper[3], "paper_kips": paper[4]})
            continue
        flag = flags.get(name, {})
        m = scorecard(rows, actions[name], parse_ok=flag.get("parse_ok"), compliant=flag.get("compliant"), ltve=ltve)
        t3.append({"policy": label, "key": name, "status": "ok", "rows": len(rows),
                   "avg_q": m["avg_q"], "paper_avg_q": paper[0], "mae": m["mae"], "paper_mae": paper[1],
                   "eama": m["eama"], "paper_eama": paper[2], "eama_r": m["eama_r"], "paper_eama_r": paper[3],
                   "kips": m["kips"], "paper_kips": paper[4], "mean_abs_action": m["mean_abs_action"],
                   "avg_q_expert": m["avg_q_expert"],
                   "same_as_teacher": float(np.mean(np.abs(actions[name] - actions["kb_teacher"]) < SAME_ACTION))
                   if "kb_teacher" in actions else np.nan,
                   **({"parse_failure_rate": m["parse_failure_rate"], "compliance": m["compliance_rate"]}
                      if name in flags else {})})
        a = actions[name]
        t7.append({"scorer": label, "key": name, "kind": "policy", "rows": len(rows),
                   "cda": float(policy_cda(a, expert, cf).mean()),
                   "cda_cold_start": float(policy_cda(a[cold], expert[cold], cf[cold]).mean()) if cold.any()
                   else np.nan, "cda_boundary": float(policy_cda(a, expert, boundary).mean())})
    ev.table3 = pd.DataFrame(t3)

    # Critics on the same rows (Table 7), next to the larger-sample numbers of evaluate_model (record).
    q = {name: model.q_values(rows, np.stack([expert, cf, boundary], axis=1)) for name, model in
         (("ltve", ltve), ("cql", cql))}
    critic_rows = []
    for name, values in q.items():
        wins, wins_b = values[:, 0] > values[:, 1], values[:, 0] > values[:, 2]
        critic_paper = PAPER_TABLE7[name]
        critic_rows.append({"scorer": name.upper(), "key": name, "kind": "critic", "rows": len(rows),
                            "cda": float(wins.mean()), "cda_cold_start": float(wins[cold].mean()) if cold.any()
                            else np.nan, "cda_boundary": float(wins_b.mean()), "paper_cda": critic_paper[0],
                            "paper_cda_cold_start": critic_paper[1], "paper_cda_boundary": critic_paper[2]})
    for t7_row in t7:
        cda_paper = PAPER_TABLE7.get(str(t7_row["key"]))
        if cda_paper:
            t7_row |= {"paper_cda": cda_paper[0], "paper_cda_cold_start": cda_paper[1],
                       "paper_cda_boundary": cda_paper[2]}
    ev.table7 = pd.DataFrame(critic_rows + t7)
    ev.record["table7_rows"] = {"rows": len(rows), "cold_start_rows": int(cold.sum())}

    t5 = []
    for variant in [*[v for v in ABLATED], "kb_teacher"]:
        ablation_paper = PAPER_TABLE5.get(variant)
        for i, mode in enumerate(("full", *ABLATIONS)):
            chosen = actions.get(variant) if mode == "full" else ablations.get((variant, mode))
            t5_row: dict[str, Any] = {"policy": _label(variant), "key": variant, "prompt": mode}
            if ablation_paper and i < len(ablation_paper):
                t5_row |= {"paper_avg_q": ablation_paper[i][0], "paper_eama_r": ablation_paper[i][1],
                           "paper_kips": ablation_paper[i][2]}
            if chosen is None:
                t5_row["status"] = _missing_reason(ev, variant)
            else:
                m = offline_policy_metrics(rows, chosen, ltve=ltve)
                t5_row |= {"status": "ok", "avg_q": m["avg_q"], "eama": m["eama"], "eama_r": m["eama_r"],
                           "kips": m["kips"],
                           **(_changed_share(np.abs(chosen - actions[variant]) >= SAME_ACTION,
                                             rows["sku_id"].to_numpy(), s.ab_bootstrap, s.seed)
                              if variant in actions else {"changed": np.nan})}
            t5.append(t5_row)
    table5 = pd.DataFrame(t5)
    if "avg_q" in table5:
        full = table5[table5["prompt"] == "full"].set_index("key")["avg_q"]
        table5["delta_avg_q"] = table5["avg_q"] - table5["key"].map(full)
    ev.table5 = table5

    judge_rows = []
    for name, scores in judged.items():
        judge_rows.append({"policy": _label(name), "key": name, "responses": len(scores),
                           "mean_total": float(np.mean(scores)) if scores else np.nan,
                           "kept_share": float(np.mean([x == 20 for x in scores])) if scores else np.nan,
                           "paper_total": PAPER_JUDGE.get(name, np.nan)})
    ev.judge = pd.DataFrame(judge_rows)


def _missing_reason(ev: Evaluation, variant: str) -> str:
    if variant == BEST_OF_SFT:
        return (f"{NOT_RUN}: needs the sft variant" if ev.settings.llm_best_of_sft
                else f"{NOT_RUN}: llm_best_of_sft is off")
    reason = ev.record.get("llm_missing", {}).get(variant)
    if reason:
        return f"{NOT_RUN}: {reason}"
    if variant not in ev.settings.llm_variants:
        return f"{NOT_RUN}: not in this configuration (llm_variants)"
    return f"{NOT_RUN}: no model"


def _label(name: str) -> str:
    return {"price_sales": "Price-Sales", "dt": "RL-DT", "ddpg": "RL-DDPG (DRCR)", "sac": "RL-SAC",
            "kb_teacher": "KB teacher (rules, no model)", "expert": "ops expert rules", "oracle": "oracle (ceiling)",
            "static": "hold (a = 0 always)", "ltve_greedy": "LTVE-greedy (argmax Q over A_safe)",
            "best_of_teacher": "best-of-M teacher samples by LTVE", BEST_OF_SFT: "best-of-M SFT samples by LTVE",
            **LLM_LABELS}.get(name, name)


def _prompt_config(settings: EvaluationSettings, mode: str = "full") -> Any:
    """The [ACT_ONLY] prompt the LLM variants price with (``settings.llm_prompt``), whole or with a section
    removed (Table 5's ablations)."""
    from aigp.llm.prompt import PromptConfig

    base = (PromptConfig(act_only=True, compact=True, reviews_max_chars=COMPACT_REVIEW_CHARS)
            if settings.llm_prompt == "compact" else PromptConfig(act_only=True))
    return {"full": base, "no_diag": base.with_updates(include_diagnosis=False),
            "no_kb": base.with_updates(include_knowledge=False),
            "no_reviews": base.with_updates(include_reviews=False)}[mode]


def _teacher_actions(text_rows: pd.DataFrame, settings: EvaluationSettings, mode: str) -> np.ndarray:
    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.llm.parser import parse_action
    from aigp.llm.prompt import build_prompt

    teacher, cfg = KnowledgeBaseTeacher(), _prompt_config(settings, mode)
    out = np.zeros(len(text_rows))
    for i, row in enumerate(text_rows.to_dict("records")):
        response = teacher.respond(build_prompt(row, cfg), temperature=0.0, seed=int(row["sku_id"]))
        out[i] = parse_action(response.text, float(row["prev_discount"])).discount_change
    return out


def _judge_teacher(ev: Evaluation, text_rows: pd.DataFrame, judged: dict[str, list[float]]) -> None:
    from aigp.distillation.judge import RuleJudge
    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.llm.prompt import build_prompt

    judge, teacher = RuleJudge(), KnowledgeBaseTeacher()
    scores = []
    for row in text_rows.head(ev.settings.judge_rows).to_dict("records"):
        prompt = build_prompt(row)
        scores.append(float(judge.judge(prompt, teacher.respond(prompt, temperature=0.0,
                                                                seed=int(row["sku_id"])).text).total))
    judged["kb_teacher"] = scores


def _llm_policy_config(settings: EvaluationSettings, mode: str = "full", act_only: bool = True) -> Any:
    """How an LLM variant prices here: the [ACT_ONLY] JSON action (the mode DPO trains; full reasoning costs
    ~500 generated tokens, about 2 s per decision for the small model on 2 shared cores) with greedy decoding.
    ``act_only=False``: the full-reasoning prompt (what the judge scores), whatever ``llm_prompt`` is."""
    from aigp.align.policy import PolicyConfig
    from aigp.llm.prompt import PromptConfig

    if not act_only:
        return PolicyConfig(prompt=PromptConfig(), generation={"batch_size": 32}, threads=settings.threads)
    return PolicyConfig(prompt=_prompt_config(settings, mode), threads=settings.threads,
                        generation={"batch_size": 32, "max_new_tokens": ACTION_TOKENS})


def _llm_proposals(model_dir: Path, text_rows: pd.DataFrame, settings: EvaluationSettings, *,
                   mode: str = "full") -> pd.DataFrame:
    from aigp.align.policy import propose_on_rows

    return propose_on_rows(model_dir, text_rows, _llm_policy_config(settings, mode))


def _llm_judge_scores(model_dir: Path, text_rows: pd.DataFrame, settings: EvaluationSettings) -> list[float]:
    """The rule judge's totals of the variant's full-reasoning answers (as deployed) on ``text_rows``."""
    from aigp.align.generation import LoadedModel
    from aigp.align.policy import propose_on_rows
    from aigp.distillation.judge import RuleJudge
    from aigp.llm.prompt import build_prompt

    if text_rows.empty:
        return []
    loaded = LoadedModel.load(model_dir)
    config = _llm_policy_config(settings, act_only=False).with_updates(generation={"batch_size": 8})
    props = propose_on_rows(loaded, text_rows, config)
    judge, prompt_cfg, count = RuleJudge(), loaded.prompt_config(config.prompt), loaded.counter()
    return [float(judge.judge(build_prompt(row, prompt_cfg, count_tokens=count), output).total)
            for row, output in zip(text_rows.to_dict("records"), props["output"], strict=True)]


def train_llm_variants(ctx: dict[str, Any]) -> dict[str, Path]:
    """The LLM variants with ``aigp.align.variants`` on the training window only: a base model whose tokenizer is
    trained on prompts and teacher answers, the judged distillation set, then SFT / pairs / DPO (as
    ``bench/bench_alignment.py`` wires them)."""
    from aigp.align.training import ALL_LINEAR_MODULES
    from aigp.align.variants import VariantsConfig, train_variants
    from aigp.distillation.distill import DistillConfig, run_distill, sft_records
    from aigp.distillation.on_policy import OnPolicyConfig, on_policy_rounds
    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.llm.model_factory import SIZES, BaseModelConfig, build_base_model
    from aigp.llm.prompt import PromptConfig, build_prompt
    from aigp.llm.rows import load_prompt_rows
    from aigp.ltve.evaluate import MonteCarloConfig, pair_truth

    s: EvaluationSettings = ctx["settings"]
    root, log_dir, ltve = Path(ctx["work_dir"]) / "llm", ctx["log_dir"], ctx["ltve"]
    end = pd.Timestamp(ltve.info["split"]["cutoff"]).date()  # nothing from the evaluation cohort
    variants = tuple(v for v in s.llm_variants if v in LLM_VARIANTS)
    prompt, teacher = _prompt_config(s), KnowledgeBaseTeacher()
    optim: dict[str, Any] = {"learning_rate": 3e-3, "batch_size": s.llm_sft_batch, "threads": s.threads,
                             "logging_steps": 50, "seed": s.seed, "warmup": 0.03,
                             **({"max_steps": s.llm_sft_steps} if s.llm_sft_steps else {"epochs": s.llm_sft_epochs})}
    distill_cfg: dict[str, Any] = {"n_prompts": s.llm_distill_prompts, "seed": s.seed, "end": end,
                                   "temperature": s.llm_distill_temperature}
    if s.llm_prompt == "compact":
        # the student recipe (bench/bench_student.py): judged teacher answers to compact [ACT_ONLY] prompts, a
        # tokenizer trained on those prompts and answers, full fine-tuning on the answers as they are
        distill = run_distill(log_dir, root / "distill", DistillConfig.build(**distill_cfg,
                                                                             prompt=prompt.model_dump()))
        records = sft_records(distill.out_dir)
        corpus = [m["content"] for r in records[:4000] for m in (*r["prompt"], *r["completion"])]
        base = build_base_model(root / "base_model", corpus, BaseModelConfig(size=s.llm_size, seed=s.seed),
                                overwrite=True)
        sft: dict[str, Any] = {"act_only_copies": False, "validation_share": 0.0}
    else:  # the full prompt: reasoning answers, trained as their [ACT_ONLY] twins
        corpus = []
        for row in load_prompt_rows(log_dir, n=min(300, 2 * s.llm_distill_prompts), seed=s.seed + 1,
                                    end=end).to_dict("records"):
            for cfg in (PromptConfig(), PromptConfig(act_only=True)):
                built = build_prompt(row, cfg)
                corpus += [built.system, built.user, teacher.respond(built).text]
        base = build_base_model(root / "base_model", corpus, BaseModelConfig(size=s.llm_size, seed=s.seed),
                                overwrite=True)
        distill = run_distill(log_dir, root / "distill", DistillConfig.build(
            **distill_cfg, prompt={"max_prompt_tokens": SIZES[s.llm_size].prompt_budget}, tokenizer=str(base)))
        records = sft_records(distill.out_dir)
        sft = {"max_full_examples": 0, "eval_steps": 20}
    if set(variants) <= {"base"}:
        return {"base": Path(base)} if variants else {}
    sample_rows = load_prompt_rows(log_dir, n=s.llm_sample_prompts, seed=s.seed + 2, end=end)
    gen = {**CANDIDATE_SAMPLING, "batch_size": 16, "seed": s.seed}
    config = VariantsConfig.build(
        sft={**sft, "optim": optim, "lora": {"enabled": s.llm_sft_lora}},
        sampling={"n_candidates": s.llm_candidates, "prompt": prompt.model_dump(),
                  "generation": {**gen, "max_new_tokens": ACTION_TOKENS}},
        pairs={"delta_q": 0.01, "delta_a": 0.02, "max_pairs_per_prompt": 2,
               "balance_sign": s.llm_pairs_balance_sign},
        # the NLL term on the chosen action and the parse-rate guard (aigp.align.dpo): blind DPO at this learning
        # rate collapsed both DPO variants to unparsable output in the reduced run
        dpo={"beta": 0.1, "sft_weight": 1.0, "guard": {"enabled": True},
             "optim": {"epochs": s.llm_dpo_epochs, "learning_rate": 2e-3, "batch_size": 8, "threads": s.threads,
                       "logging_steps": 5},
             "lora": {"r": 16, "alpha": 32, "target_modules": ALL_LINEAR_MODULES}},
        fullseq_sampling={"n_candidates": 4, "prompt": {"act_only": False},
                          "generation": {**gen, "max_new_tokens": 640}},
        fullseq_prompts=s.llm_fullseq_prompts, variants=variants,
    )
    after_sft = None
    if s.llm_on_policy_rounds:
        def after_sft(model: Path) -> Path:
            result = on_policy_rounds(
                model, records, root / "on_policy", rounds=s.llm_on_policy_rounds,
                cohort=OnPolicyConfig(skus=s.llm_on_policy_skus), policy=_llm_policy_config(s),
                distill=DistillConfig.build(**distill_cfg, prompt=prompt.model_dump()),
                sft=config.sft.with_updates(optim=config.sft.optim.with_updates(max_steps=s.llm_on_policy_steps)),
                log=lambda text: None)
            ctx["on_policy"] = result.rounds
            return result.model_dir

    truth = MonteCarloConfig(rollouts=s.mc_rollouts, seed=s.seed + 3)
    run = train_variants(base, records, sample_rows, ltve, root / "variants", config, after_sft=after_sft,
                         log=lambda text: None,
                         pair_truth=lambda pairs, rows: pair_truth(ltve, pairs, rows, ctx["frame"], log_dir, truth))
    ctx["notes"] = [f"LLM {k}: {v}" for k, v in run.notes.items()] + [
        f"On-policy distillation round {r['round']:.0f}: the student priced {r['states']:.0f} states of a training "
        f"cohort of its own and chose the teacher's action on {r['exact_agreement']:.0%} of them (mean change "
        f"{r['mean_student_change']:+.3f} vs the teacher's {r['mean_teacher_change']:+.3f}); {r['labels']:.0f} "
        f"teacher labels added, SFT set {r['sft_set']:.0f}" for r in ctx.get("on_policy", [])]
    ctx["variant_notes"] = dict(run.notes)
    ctx["metrics"] = run.metrics
    return {k: Path(v) for k, v in run.models.items() if k in variants}


# --------------------------------------------------------------------------------------------------------
REWARD_PAIRS = (("sft_dpo", "sft"), (BEST_OF_SFT, "sft"), ("best_of_teacher", "kb_teacher"))  # (policy, its base)


def _ab_table(ev: Evaluation, baselines: Mapping[str, Any], llm: Mapping[str, Path], progress: bool,
              ltve: Any = None) -> None:
    """Table 4: the paired A/B. With the LTVE, every policy's realised reward (eq. 3 — what the critic's Q
    estimates and DPO's pairs rank by) is scored on each of its decision days and summed per SKU."""
    from aigp.ab.experiment import METRICS, ABConfig, run_counterfactual
    from aigp.policy_metrics import stability_figures

    s = ev.settings
    policies: dict[str, Any] = {name: baselines[name]
                                for name in ("price_sales", "dt", "ddpg", "sac", "kb_teacher", *CRITIC_POLICIES,
                                             "static")}
    policies["dt"] = baselines["dt"].fresh()
    if llm:
        from aigp.align.policy import LLMPricingPolicy

        for variant in s.llm_ab_variants:
            if variant in llm:
                policies[variant] = LLMPricingPolicy(llm[variant], _llm_policy_config(s), name=variant)
        if BEST_OF_SFT in baselines and "sft" in policies:
            policies[BEST_OF_SFT] = baselines[BEST_OF_SFT]
        left = [v for v in llm if v not in policies]
        if left:
            ev.notes.append(f"LLM variants not priced in the A/B (cost; llm_ab_variants): {', '.join(left)}.")
    policies["oracle"] = baselines["oracle"]
    config = ABConfig.build(allocation={g: 1.0 / len(policies) for g in policies}, control="price_sales",
                            ceiling="oracle", seed=s.ab_seed, cohort_skus=s.ab_cohort_skus,
                            cohort_launch_days=s.ab_launch_days, bootstrap=s.ab_bootstrap)
    _say(progress, f"paired A/B: {len(policies)} policies x {s.ab_cohort_skus:,} SKUs x 14 days")
    stop = _timer(ev, "paired A/B")
    result = run_counterfactual(config, policies, daily_value=ltve.daily_rewards if ltve is not None else None)
    stop()
    ev.ab_markdown = result.markdown()
    rows = []
    for group in policies:
        row: dict[str, Any] = {"policy": _label(group), "key": group}
        for h in config.horizons:
            m = result.metrics.query("group == @group and horizon == @h").set_index("metric")
            row[f"skus_{h}d"] = int(m.loc["gmv", "n_skus"])
            for metric in METRICS:
                row[f"{metric}_{h}d"] = float(m.loc[metric, "value"])
                row[f"{metric}_{h}d_ci"] = (float(m.loc[metric, "ci_low"]), float(m.loc[metric, "ci_high"]))
            u = result.uplift.query("group == @group and horizon == @h").set_index("metric")
            paper = PAPER_TABLE4.get(group, {}).get(h)
            for j, metric in enumerate(("mar", "gmv", "roi")):
                if group != config.control:
                    r = u.loc[metric]
                    row[f"{metric}_{h}d_uplift"] = float(r.uplift)
                    row[f"{metric}_{h}d_uplift_ci"] = (float(r.ci_low), float(r.ci_high))
                    row[f"{metric}_{h}d_gap_closed"] = float(r.gap_closed)
                row[f"paper_{metric}_{h}d_uplift"] = paper[j] if paper else np.nan
            if result.values is not None:
                v = result.values.query("group == @group and horizon == @h").iloc[0]
                row[f"reward_{h}d"] = float(v.value)
                row[f"reward_{h}d_ci"] = (float(v.ci_low), float(v.ci_high))
                if group != config.control:
                    row[f"reward_{h}d_diff"] = float(v["diff"])
                    row[f"reward_{h}d_diff_ci"] = (float(v.diff_ci_low), float(v.diff_ci_high))
        rows.append(row)
    ev.table4 = pd.DataFrame(rows)
    if result.values is not None:
        ev.record["ab_reward_pairs"] = [
            {"policy": a, "base": b, **dict(zip(("diff", "ci_low", "ci_high"), result.value_difference(a, b, 14),
                                               strict=True))}
            for a, b in REWARD_PAIRS if a in policies and b in policies]
    ev.record["ab"] = {"cohort_skus": s.ab_cohort_skus, "seed": s.ab_seed, "launch_days": s.ab_launch_days,
                       "bootstrap": s.ab_bootstrap, "design": result.design,
                       "llm": {k: p.stats() for k, p in policies.items() if hasattr(p, "stats")}}
    stab = []
    for group in policies:
        changes = result.run.changes[result.groups == group]
        f = stability_figures(changes.ravel())
        stab.append({"policy": _label(group), "key": group, "decisions": f["n"],
                     "mean_abs_change": f["mean_abs_change"], "small_move_share": f["small_move_share"],
                     "big_jump_share": f["big_jump_share"],
                     **{f"tail_{k}": v for k, v in f["tail"].items()}, **{f"bin_{k}": v for k, v in f["bins"].items()}})
    ev.stability = pd.DataFrame(stab)
    ev.figures["fig5_stability.png"] = _stability_figure(ev.stability)


def _stability_figure(table: pd.DataFrame) -> bytes:
    from aigp.htmlreport import figure_png, matplotlib_agg

    plt = matplotlib_agg()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    tails = [c for c in table.columns if c.startswith("tail_")]
    bins = [c for c in table.columns if c.startswith("bin_")]
    width = 0.8 / max(len(table), 1)
    for k, values in enumerate(table.to_dict("records")):
        left.plot([float(c[5:]) for c in tails], [values[c] for c in tails], "o-", ms=3, label=values["policy"])
        right.bar(np.arange(len(bins)) + k * width, [values[c] for c in bins], width=width, label=values["policy"])
    left.set_yscale("log")
    left.set_xlabel("x")
    left.set_ylabel("Pr(|a| ≥ x)")
    left.set_title("(a) tail probability of daily adjustments")
    right.set_xticks(np.arange(len(bins)) + 0.4 - width / 2)
    right.set_xticklabels([c[4:] for c in bins], rotation=45)
    right.set_xlabel("|a| bin (width 0.02)")
    right.set_ylabel("share of decisions")
    right.set_title("(b) binned |a|")
    left.grid(alpha=0.3)
    right.legend(fontsize=7, ncol=2)
    fig.suptitle("Pricing adjustment stability, first 14 days (paired A/B cohort)")
    fig.tight_layout()
    return figure_png(fig)


# --------------------------------------------------------------------------------------------------------
# report
def _pct(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.1%}"


def _num(v: Any, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"


def _signed(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:+.1%}"


def _md(headers: list[str], rows: list[list[str]]) -> str:
    return markdown_table(headers, rows)


def _policy_validity(ev: Evaluation) -> dict[str, float]:
    """Kendall τ of Avg Q (Table 3) vs the 14-day A/B levels (Table 4) over the policies in both."""
    from aigp.ltve.diagnostics import policy_validity

    t3, t4 = ev.table3, ev.table4
    if t3 is None or t4 is None or "avg_q" not in t3 or "gmv_14d" not in t4:
        return {}
    avg_q = {str(k): float(v) for k, v in t3.set_index("key")["avg_q"].items() if not _nan(v)}
    metrics = ("gmv", "roi", "mar", "reward") if "reward_14d" in t4 else ("gmv", "roi", "mar")
    outcomes = {str(r["key"]): {f"{m}_14d": float(r[f"{m}_14d"]) for m in metrics} for r in t4.to_dict("records")}
    return policy_validity(avg_q, outcomes)


def _get(row: Mapping[str, Any], key: str) -> Any:
    value = row.get(key)
    return np.nan if value is None else value


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def table_sections(ev: Evaluation) -> list[tuple[str, str]]:
    """(title, markdown body) of every table, in the paper's order."""
    out = []
    t2 = ev.table2
    assert t2 is not None
    rows = [[str(int(r["n"])), f"{_num(r['mae'])} ({_num(r['paper_mae'])})",
             f"{_pct(r['eama'])} ({_pct(r['paper_eama'])})",
             f"{_pct(r['cda'])} ({_pct(r['paper_cda'])})", _num(r["mc_spearman"], 2),
             _num(r["mc_spearman_within_state"], 2), _num(_get(r, "mc_spearman_within_state_gap"), 2),
             _pct(_get(r, "mc_pairwise_accuracy_gap")), _pct(r["mc_cda_vs_truth"]), _pct(_get(r, "mc_regret_share")),
             _num(_get(r, "mc_calibration_slope"), 2)]
            for r in t2.to_dict("records")]
    body = _md(["n", "MAE (paper)", "EAMA (paper)", "CDA (paper)", "Spearman Q vs MC return", "within state",
                "within state (≥ Δa)", "pairwise acc. (≥ Δa)", "CDA vs MC truth", "regret (share of spread)",
                "calibration slope"], rows)
    spear = [[k.replace("_", " "), _num(t2.set_index("n").loc[3 if 3 in set(t2["n"]) else t2["n"].iloc[0],
                                                              f"spearman_{k}"], 2), _num(v, 2)]
             for k, v in PAPER_SPEARMAN.items()]
    body += ("\n\nSpearman of the Q-score decile index vs the decile's mean realised outcome (n = 3; Fig. 3):\n\n"
             + _md(["outcome", "ours", "paper"], spear))
    out.append(("Table 2 — LTVE with n ∈ {1, 3, 5}", body))

    t3 = ev.table3
    assert t3 is not None
    rows = []
    for r in t3.to_dict("records"):
        if r["status"] != "ok":
            rows.append([r["policy"], f"{r['status']} ({_num(r['paper_avg_q'])})", f"— ({_num(r['paper_mae'])})",
                         f"— ({_pct(r['paper_eama'])})", f"— ({_num(r['paper_eama_r'], 2)})",
                         f"— ({_num(r['paper_kips'], 2)})", "—", "—", "—"])
            continue
        rows.append([r["policy"], f"{_num(r['avg_q'])} ({_num(r['paper_avg_q'])})",
                     f"{_num(r['mae'])} ({_num(r['paper_mae'])})", f"{_pct(r['eama'])} ({_pct(r['paper_eama'])})",
                     f"{_num(r['eama_r'])} ({_num(r['paper_eama_r'], 2)})",
                     f"{_num(r['kips'])} ({_num(r['paper_kips'], 2)})", _num(r["mean_abs_action"]),
                     _pct(_get(r, "same_as_teacher")), _pct(_get(r, "parse_failure_rate"))])
    expert_q = t3.loc[t3["status"] == "ok", "avg_q_expert"]
    body = _md(["policy", "Avg Q (paper)", "MAE (paper)", "EAMA (paper)", "EAMA-R (paper)", "KIPS (paper)", "mean |a|",
                "= KB teacher", "unparsable"], rows)
    body += (f"\n\nRows: {ev.record['offline_rows']['rows']} held-out expert decisions "
             f"({ev.record['offline_rows']['skus']} SKUs). The logged expert action itself scores Avg Q "
             f"{_num(expert_q.iloc[0]) if len(expert_q) else '—'}. LLM variants answer in [ACT_ONLY] mode (greedy; "
             "an unparsable answer holds the price, a = 0). EAMA-R and KIPS are shares in [0, 1] (eqs. 11/12 "
             "as written); the paper's are on an unstated scale near 11.8: compare rankings, not values. "
             "`= KB teacher`: share of rows where the policy chose the knowledge-base teacher's action to the cent "
             "(the student is distilled from it).")
    out.append(("Table 3 — offline metrics on held-out expert decisions", body))

    t4 = ev.table4
    if t4 is not None:
        rows = []
        rewarded = "reward_14d" in t4
        for r in t4.to_dict("records"):
            cells = [r["policy"], str(r["skus_14d"])]
            for h in (7, 14):
                for metric in ("mar", "gmv", "roi"):
                    if r["key"] == "price_sales":
                        cells.append(f"{r[f'{metric}_{h}d']:.3g}" if metric != "mar" else _pct(r[f"{metric}_{h}d"]))
                        continue
                    lo, hi = r[f"{metric}_{h}d_uplift_ci"]
                    paper = _get(r, f"paper_{metric}_{h}d_uplift")
                    cells.append(f"{_signed(r[f'{metric}_{h}d_uplift'])} [{_signed(lo)}, {_signed(hi)}]"
                                 + (f" ({_signed(paper)})" if not _nan(paper) else ""))
            gap = [_get(r, f"{m}_14d_gap_closed") for m in ("mar", "gmv", "roi")]
            cells.append(" / ".join("n.s." if _nan(g) else f"{g:.0%}" for g in gap)
                         if r["key"] != "price_sales" else "0%")
            if rewarded:
                if r["key"] == "price_sales":
                    cells.append(f"{r['reward_14d']:.3f}")
                else:
                    lo, hi = r["reward_14d_diff_ci"]
                    cells.append(f"{r['reward_14d_diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            rows.append(cells)
        heads = ["policy", "SKUs"] + [f"{h}d {m}" for h in (7, 14) for m in ("MAR", "GMV", "ROI")] + [
            "14d gap closed (MAR / GMV / ROI)"] + (["14d reward (eq. 3)"] if rewarded else [])
        body = ("Uplift vs price-sales [95% joint-bootstrap CI] (paper in parentheses); the price-sales row shows its "
                "levels (MAR, GMV per SKU, ROI). Every policy priced the same cohort (paired counterfactual).\n\n"
                + _md(heads, rows) + "\n\nLevels with 95% CIs:\n\n" + (ev.ab_markdown or _ab_levels(t4)))
        if rewarded:
            body += ("\n\n`14d reward (eq. 3)`: the LTVE's own reward (λ1 milestone progress + λ2 log ROI, relative to "
                     "the successful SKUs' references) realised on each decision day and summed over a SKU's first "
                     "14 days — the quantity the critic's Q estimates and DPO's pairs are ranked by; difference from "
                     "price-sales per SKU [95% paired-bootstrap CI], price-sales' own level in its row."
                     + "".join(f" {_label(p['policy'])} − {_label(p['base'])}: {p['diff']:+.3f} "
                               f"[{p['ci_low']:+.3f}, {p['ci_high']:+.3f}]."
                               for p in ev.record.get("ab_reward_pairs", [])))
        validity = _policy_validity(ev)
        if validity:
            body += ("\n\nPolicy-level validity of the critic: Kendall τ between each policy's Avg Q (Table 3) and "
                     f"its 14-day A/B outcome, over the {int(validity['policies'])} policies in both tables: GMV "
                     f"{_num(validity.get('kendall_tau_gmv_14d'), 2)}, ROI "
                     f"{_num(validity.get('kendall_tau_roi_14d'), 2)}, MAR "
                     f"{_num(validity.get('kendall_tau_mar_14d'), 2)} (target >= 0.6 for GMV and ROI)"
                     + (f"; realised reward (what Q estimates) {_num(validity['kendall_tau_reward_14d'], 2)}"
                        if "kendall_tau_reward_14d" in validity else "") + ".")
        out.append(("Table 4 — simulated online A/B at 7 and 14 days vs price-sales", body))

    t5 = ev.table5
    if t5 is not None:
        rows = []
        for r in t5.to_dict("records"):
            paper = _num(_get(r, "paper_avg_q"))
            if r["status"] != "ok":
                rows.append([r["policy"], r["prompt"], r["status"], "—", "—", f"({paper})", "—", "—"])
                continue
            changed = "—" if r["prompt"] == "full" else _pct(_get(r, "changed")) + (
                f" [{_pct(r['changed_lo'])}, {_pct(r['changed_hi'])}]" if np.isfinite(_get(r, "changed_lo")) else "")
            rows.append([r["policy"], r["prompt"], _num(r["avg_q"]), f"{_get(r, 'delta_avg_q'):+.3f}", changed,
                         f"({paper})", _num(r["eama_r"]), _num(r["kips"])])
        body = _md(["policy", "prompt", "Avg Q", "Δ vs full", "decisions changed", "paper Avg Q", "EAMA-R", "KIPS"],
                   rows)
        body += ("\n\n`decisions changed`: share of the rows whose action moves (by a cent or more) when the section "
                 "is removed from the prompt: a model that ignores a section changes none. In brackets, its 95% "
                 "interval (bootstrap over SKUs).")
        out.append(("Table 5 — prompt ablations (w/o diagnosis, w/o knowledge base, w/o reviews)", body))

    t7 = ev.table7
    if t7 is not None:
        rows = []
        for r in t7.to_dict("records"):
            rows.append([r["scorer"], r["kind"], f"{_pct(r['cda'])} ({_pct(_get(r, 'paper_cda'))})",
                         f"{_pct(r['cda_cold_start'])} ({_pct(_get(r, 'paper_cda_cold_start'))})",
                         f"{_pct(r['cda_boundary'])} ({_pct(_get(r, 'paper_cda_boundary'))})"])
        c = ev.record.get("critic_cda", {})
        body = _md(["scorer", "kind", "overall (paper)", "cold-start ≤ 3 d (paper)", "boundary |a| ≥ 0.15 (paper)"],
                   rows)
        body += (f"\n\nSame {ev.record['table7_rows']['rows']} rows for every scorer "
                 f"({ev.record['table7_rows']['cold_start_rows']} cold-start). Critic: Q(s, a_expert) > Q(s, a_cf). "
                 "Policy: its action is closer to a_expert than to a_cf (the paper does not define CDA for a policy). "
                 f"On the larger sample of `evaluate_model` ({int(c.get('rows', 0))} rows): LTVE "
                 + " / ".join(_pct(c.get('ltve', {}).get(k)) for k in ('cda', 'cda_cold_start', 'cda_boundary'))
                 + ", CQL "
                 + " / ".join(_pct(c.get('cql', {}).get(k)) for k in ('cda', 'cda_cold_start', 'cda_boundary'))
                 + ".")
        out.append(("Table 7 — CDA robustness", body))

    if ev.judge is not None:
        rows = [[r["policy"], str(r["responses"]), _num(r["mean_total"], 2), _pct(r["kept_share"]),
                 _num(r["paper_total"], 2)] for r in ev.judge.to_dict("records")]
        body = _md(["variant", "responses", "mean judge total /20", "all four 5/5", "paper (Fig. 4)"], rows)
        body += "\n\nRule judge (`aigp.distillation.judge.RuleJudge`); paper: Qwen3-235B teacher 19.80."
        out.append(("Fig. 4 — judge scores", body))

    if ev.stability is not None:
        rows = [[r["policy"], str(r["decisions"]), _num(r["mean_abs_change"]), _pct(r["small_move_share"]),
                 _pct(r["big_jump_share"]), _pct(r.get("tail_0.10")), _pct(r.get("tail_0.20"))]
                for r in ev.stability.to_dict("records")]
        body = _md(["policy", "decisions", "mean |a|", "|a| < 0.04", "|a| ≥ 0.15", "Pr(|a| ≥ 0.10)", "Pr(|a| ≥ 0.20)"],
                   rows)
        body += ("\n\nPaper (Fig. 5): AIGP puts more adjustments in small bins (|a| < 0.04) and has lower tail "
                 "probability than the production baselines.")
        out.append(("Fig. 5 — adjustment stability (A/B cohort)", body))
    return out


def _ab_levels(t4: pd.DataFrame) -> str:
    """Each group's GMV per SKU, ROI and MAR with their CIs (from the table, when the A/B's own markdown is absent)."""
    out = []
    for h in (7, 14):
        rows = []
        for r in t4.to_dict("records"):
            (g_lo, g_hi), (r_lo, r_hi), (m_lo, m_hi) = (r[f"{m}_{h}d_ci"] for m in ("gmv", "roi", "mar"))
            rows.append([r["policy"], str(r[f"skus_{h}d"]), f"{r[f'gmv_{h}d']:.0f} [{g_lo:.0f}, {g_hi:.0f}]",
                         f"{r[f'roi_{h}d']:.2f} [{r_lo:.2f}, {r_hi:.2f}]",
                         f"{_pct(r[f'mar_{h}d'])} [{_pct(m_lo)}, {_pct(m_hi)}]"])
        out.append(f"**{h}-day**\n\n" + _md(["policy", "SKUs", "GMV / SKU", "ROI", "MAR"], rows))
    return "\n\n".join(out)


def record_section(ev: Evaluation) -> str:
    s = ev.settings
    lines = [f"- configuration `{s.label}`: " + ", ".join(f"{k}={v}" for k, v in s.model_dump(mode='json').items()
                                                           if k not in ("label", "llm_models")),
             f"- machine: {ev.record.get('machine')}; started {ev.record.get('started_at')}, finished "
             f"{ev.record.get('finished_at')}",
             f"- logged market: {ev.record['log']['skus']:,} SKUs, {ev.record['log']['rows']:,} decision rows, seed "
             f"{ev.record['log']['seed']}; split: {json.dumps(ev.record.get('split', {}), sort_keys=True)}",
             f"- LTVE: {json.dumps(ev.record.get('ltve', {}), sort_keys=True)}",
             "- baselines: " + "; ".join(f"{k}: {v['parameters']:,} parameters, {v['seconds']} s"
                                         for k, v in sorted(ev.record.get("baselines", {}).items())),
             f"- LLM models: {json.dumps(ev.record.get('llm_models', {}), sort_keys=True)}",
             *_dpo_record_lines(ev.record.get("llm_training", {})),
             f"- A/B: {json.dumps({k: v for k, v in ev.record.get('ab', {}).items() if k != 'llm'}, sort_keys=True)}",
             "- wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in ev.timings.items())]
    if ev.cpu_timings:
        lines.append("- CPU time (s, this process, all threads): "
                     + ", ".join(f"{k} {v:.0f}" for k, v in ev.cpu_timings.items()))
    return "\n".join(lines)


def _dpo_record_lines(training: Mapping[str, Any]) -> list[str]:
    """One line per DPO-trained variant: pairs, steps, loss and implicit rewards, and the parse-rate guard; first,
    how often the LTVE's pairs agree with the simulated market."""
    lines = [line for key, title in (("pairs", "[ACT_ONLY] pairs"), ("fullseq_pairs", "FullSeq pairs"))
             if (line := pair_truth_line(title, training.get(key) or {}))]
    for variant in ("sft_dpo", "dpo_only", "fullseq"):
        m = training.get(variant) or {}
        if "dpo/steps" not in m:
            continue
        weight = m.get("dpo/sft_weight")
        loss = "" if weight is None else " (DPO)" if weight == 0 else f" (DPO + {weight:g} x NLL on the chosen action)"
        text = (f"- DPO {_label(variant)}: {m['dpo/pairs']:.0f} pairs, {m['dpo/steps']:.0f} steps, loss{loss} "
                f"{m.get('dpo/first_loss', float('nan')):.3f} → {m.get('dpo/last_loss', float('nan')):.3f}, "
                f"rewards chosen / rejected at the end "
                f"{m.get('dpo/last_rewards_chosen', float('nan')):+.3f} / "
                f"{m.get('dpo/last_rewards_rejected', float('nan')):+.3f}; ")
        if m.get("dpo/guard_active"):
            text += (f"parse-rate guard on {m['dpo/guard_prompts']:.0f} "
                     f"{'held-out' if m.get('dpo/guard_held_out') else 'training'} prompts: start "
                     f"{m['dpo/guard_start_parse_rate']:.0%}, lowest {m['dpo/guard_min_parse_rate']:.0%}, kept step "
                     f"{m['dpo/guard_kept_step']:.0f} at {m['dpo/guard_kept_parse_rate']:.0%}"
                     + (" (**stopped early**: the format was breaking)" if m.get("dpo/guard_stopped") else ""))
        else:
            text += "parse-rate guard not run (long completions)"
        if "dpo/fit_all_pairs" in m:
            text += "; " + pair_fit_text(m, prefix="dpo/fit_")
        lines.append(text)
    return lines


def pair_fit_text(m: Mapping[str, float], prefix: str = "") -> str:
    """Whether DPO learned its pairs in both directions (``aigp.align.policy.pair_fit``), in words."""
    def side(k: str, what: str) -> str:
        n = m.get(f"{prefix}{k}_pairs", 0.0)
        if not n:
            return f"no pairs prefer {what}"
        return (f"of the {n:.0f} pairs preferring {what} it moved toward the chosen action on "
                f"{m[f'{prefix}{k}_toward']:.0%} and away on {m[f'{prefix}{k}_away']:.0%}")

    cuts = (f"; its answers cut the price on {m[f'{prefix}negative_before']:.0%} of those prompts before DPO and "
            f"{m[f'{prefix}negative_after']:.0%} after" if f"{prefix}negative_after" in m else "")
    return ("on the pairs' own prompts (greedy, after vs before DPO), " + side("up", "the higher price") + ", "
            + side("down", "the lower price") + cuts)


def pair_truth_line(title: str, m: Mapping[str, float]) -> str:
    """How often the preference pairs DPO trains on agree with the market's Monte-Carlo truth (empty if unchecked)."""
    if "pairs/truth_agreement" not in m:
        return ""
    return (f"- {title} against the market (Monte-Carlo, {m['pairs/truth_rollouts']:.0f} futures per action, the "
            f"LTVE's reward): the chosen action earns more on {m['pairs/truth_agreement']:.0%} "
            f"[{m['pairs/truth_agreement_low']:.0%}, {m['pairs/truth_agreement_high']:.0%}] of "
            f"{m['pairs/truth_pairs']:.0f} pairs; the truth separates {m['pairs/truth_clear_share']:.0%} of them "
            f"(> 2 SE), where the LTVE is right on {m['pairs/truth_agreement_clear']:.0%}; mean true gain "
            f"{m['pairs/truth_gain_mean']:+.4f}, Spearman(Q gap, true gap) {m['pairs/truth_gap_spearman']:.2f}"
            + (f"; the chosen action also has the higher GMV on {m['pairs/truth_gmv_agreement']:.0%} and the higher "
               f"ROI on {m['pairs/truth_roi_agreement']:.0%} (over the days left)"
               if "pairs/truth_gmv_agreement" in m else ""))


def write_report(ev: Evaluation, out: str | Path, *, assets: str | Path | None = None,
                 command: str = "aigp evaluate", findings: str = "") -> tuple[Path, Path]:
    """EVALUATION.md (figures as PNG files beside it under ``assets``), a self-contained HTML page, results JSON."""
    from aigp.htmlreport import figure_html, html_page

    out = Path(out)
    assets_dir = Path(assets) if assets else out.with_name(out.stem.lower() + "_files")
    assets_dir.mkdir(parents=True, exist_ok=True)
    for name, png in ev.figures.items():
        tmp = assets_dir / (name + ".partial")
        tmp.write_bytes(png)
        tmp.replace(assets_dir / name)
    rel = assets_dir.relative_to(out.parent) if assets_dir.is_relative_to(out.parent) else assets_dir
    sections = table_sections(ev)
    title = "AIGP evaluation on the market simulator"
    head = (f"# {title}\n\nRegenerate: `{command}`. Configuration **{ev.settings.label}**. Every number below was "
            "measured by that command on the simulator; the paper's figure (Tao Factory) is beside ours in "
            "parentheses or its own column. Nothing is tuned on the evaluation cohort.\n")
    notes = "".join(f"- {n}\n" for n in ev.notes)
    md = [head, notes, findings]
    for title_, body in sections:
        md.append(f"## {title_}\n\n{body}\n")
        if title_.startswith("Table 2"):
            md.append(f"![Fig. 3: Q deciles vs realised outcomes]({rel}/fig3_q_deciles.png)\n")
        if title_.startswith("Fig. 5") and "fig5_stability.png" in ev.figures:
            md.append(f"![Fig. 5: adjustment stability]({rel}/fig5_stability.png)\n")
    md.append("## Run record\n\n" + record_section(ev) + "\n")
    write_text(out, "\n".join(md))

    html_out = out.with_suffix(".html")
    html_sections = []
    for title_, body in sections:
        fig = ""
        if title_.startswith("Table 2") and "fig3_q_deciles.png" in ev.figures:
            fig = figure_html(ev.figures["fig3_q_deciles.png"], "Fig. 3: Q-score deciles vs realised outcomes")
        if title_.startswith("Fig. 5") and "fig5_stability.png" in ev.figures:
            fig = figure_html(ev.figures["fig5_stability.png"], "Fig. 5: adjustment stability")
        html_sections.append((title_, _md_to_html(body) + fig))
    html_sections.append(("Run record", _md_to_html(record_section(ev))))
    write_text(html_out, html_page(title, html_sections, intro=_md_to_html(notes + findings)))
    write_json(assets_dir / "results.json", results_dict(ev))
    return out, html_out


def _md_to_html(text: str) -> str:
    """The few markdown constructs the report uses (tables, bullet lines, paragraphs, `code`, **bold**)."""
    import html as html_mod
    import re

    def inline(s: str) -> str:
        s = html_mod.escape(s)
        s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
        return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)

    parts: list[str] = []
    table: list[str] = []
    bullets: list[str] = []

    def flush() -> None:
        if table:
            head, *body = [r for r in table if not set(r.replace("|", "").strip()) <= {"-"}]

            def cells(r: str, tag: str) -> str:
                return "".join(f"<{tag}>{inline(c.strip())}</{tag}>" for c in r.strip().strip("|").split("|"))

            parts.append("<table><thead><tr>" + cells(head, "th") + "</tr></thead><tbody>"
                         + "".join("<tr>" + cells(r, "td") + "</tr>" for r in body) + "</tbody></table>")
            table.clear()
        if bullets:
            parts.append("<ul>" + "".join(f"<li>{inline(b)}</li>" for b in bullets) + "</ul>")
            bullets.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
        elif line.startswith("- "):
            bullets.append(line[2:])
        else:
            flush()
            if line.strip():
                parts.append(f"<p>{inline(line)}</p>")
    flush()
    return "\n".join(parts)


def results_dict(ev: Evaluation) -> dict[str, Any]:
    def frame(df: pd.DataFrame | None) -> Any:
        if df is None:
            return None
        def plain(v: Any) -> Any:  # exact floats (to_json rounds to 15 digits), None for NaN, lists for tuples
            if isinstance(v, tuple | list):
                return [plain(x) for x in v]
            if isinstance(v, np.generic):
                v = v.item()
            return None if isinstance(v, float) and np.isnan(v) else v

        return [{str(k): plain(v) for k, v in r.items()} for r in df.to_dict("records")]

    return {"settings": ev.settings.model_dump(mode="json"), "record": ev.record, "timings": ev.timings,
            "timing_order": list(ev.timings), "cpu_timings": ev.cpu_timings,
            "notes": ev.notes, "table2": frame(ev.table2), "table3": frame(ev.table3), "table4": frame(ev.table4),
            "table5": frame(ev.table5), "table7": frame(ev.table7), "judge": frame(ev.judge),
            "stability": frame(ev.stability), "deciles": frame(ev.deciles), "ab_markdown": ev.ab_markdown}


# --------------------------------------------------------------------------------------------------------
def llm_alignment_hook(settings: EvaluationSettings) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """:func:`train_llm_variants` when ``aigp.align.variants`` is installed, else None (LLM rows "not run")."""
    try:
        from aigp.align import variants  # noqa: F401
    except ImportError:
        return None
    return train_llm_variants


@dataclass(frozen=True)
class Finding:
    """One computed statement of the report: ``topic`` names the claim (``ab.gmv.sft_dpo``, ``cda``, ...),
    ``verdict`` is one of :data:`VERDICTS`, ``text`` is the sentence the report prints."""

    topic: str
    verdict: str
    text: str


VERDICTS = ("agrees", "contradicts", "not significant", "untested")


def _verdict(holds: bool) -> str:
    return "agrees" if holds else "contradicts"


def _interval_verdict(low: float, high: float, claimed_above: float = 0.0) -> str:
    """A claim that a quantity lies above ``claimed_above``, judged on its 95% interval: agrees when the whole
    interval is above, contradicts when it is all below, not significant when it contains the value."""
    return "agrees" if low > claimed_above else "contradicts" if high < claimed_above else "not significant"


def finding_records(ev: Evaluation) -> list[Finding]:
    """Where our numbers agree or disagree with the paper's claims (computed, not written), as records."""
    records: list[Finding] = []

    def add(topic: str, verdict: str, text: str) -> None:
        assert verdict in VERDICTS, verdict
        records.append(Finding(topic, verdict, text))

    t2, t3, t4 = ev.table2, ev.table3, ev.table4
    # A variant that never wrote a parsable action held every price: comparing it with anything tests the hold
    # policy, not the paper's claim for that variant, so no claim involving it is scored.
    unparsable: set[str] = set()
    if t2 is not None and len(t2) > 1:
        best = t2.sort_values("cda", ascending=False).iloc[0]
        claim = "n = 3 has the best CDA" if int(best["n"]) == 3 else f"n = {int(best['n'])} has the best CDA, not n = 3"
        add("ltve.horizon", _verdict(int(best["n"]) == 3),
            f"LTVE horizon, paper: n = 3 is best on MAE, EAMA and CDA. Ours: {claim} "
                     f"({', '.join(f'n={int(r.n)}: {r.cda:.1%}' for r in t2.itertuples())}) — "
                     + ("agrees." if int(best["n"]) == 3 else "**contradicts the paper**."))
    if t3 is not None:
        ok = t3[t3["status"] == "ok"].set_index("key")

        def q(name: str) -> float:
            return float(ok.loc[name, "avg_q"]) if name in ok.index else float("nan")

        for key, row in ok.iterrows():
            failure = row.get("parse_failure_rate")
            if failure is not None and np.isfinite(failure) and failure >= 0.99:
                unparsable.add(str(key))
                add(f"unparsable.{key}", "untested",
                    f"**{_label(str(key))} wrote no parsable action** ({failure:.0%} of answers), so every "
                             "decision fell back to holding the price: its rows equal the hold policy's and say "
                             "nothing about the paper's claim for that variant.")
        if {"dpo_only", "base"} <= unparsable:
            add("dpo_only.untested", "untested",
                "DPO-only starts from the base model, which writes no parsable action either (randomly "
                         "initialised and never trained on the task, unlike the paper's pretrained Qwen3): the DPO "
                         "adapter and its NLL term on the chosen actions did not teach it the answer format, so the "
                         "paper's DPO-only claims (above SFT-only, Tables 3 and 5) are untested here.")
        missing_llm = [v for v in LLM_VARIANTS if v in t3.set_index("key").index
                       and t3.set_index("key").loc[v, "status"] != "ok"]
        if missing_llm:
            add("llm.not_measured", "untested",
                "**Not measured in this run**: " + ", ".join(_label(v) for v in missing_llm)
                         + " (see their rows for why); the paper's DPO claims (Tables 3-5, 7) are untested here.")
        for a, b, claim in (("dt", "price_sales", "RL-DT above Price-Sales"),
                            ("price_sales", "ddpg", "Price-Sales above RL-DDPG"),
                            ("price_sales", "sac", "Price-Sales above RL-SAC"),
                            ("dpo_only", "sft", "DPO-only above SFT-only"),
                            ("sft_dpo", "fullseq", "SFT+DPO above FullSeq"),
                            ("sft_dpo", "sft", "SFT+DPO above SFT-only"),
                            ("sft_dpo", "price_sales", "SFT+DPO above Price-Sales")):
            if np.isnan(q(a)) or np.isnan(q(b)) or {a, b} & unparsable:
                continue
            holds = q(a) > q(b)
            add(f"avg_q.{a}.{b}", _verdict(holds),
                f"Avg Q, paper: {claim}. Ours: {_label(a)} {q(a):.3f} vs {_label(b)} {q(b):.3f} — "
                         + ("agrees." if holds else "**contradicts the paper**."))
    t5 = ev.table5
    if t5 is not None and "delta_avg_q" in t5:
        for variant in ABLATED:
            rows5 = t5[(t5["key"] == variant) & (t5["status"] == "ok")].set_index("prompt")
            if variant in unparsable or not {"no_diag", "no_kb"} <= set(rows5.index):
                continue
            d_diag, d_kb = (float(rows5.loc[m, "delta_avg_q"]) for m in ("no_diag", "no_kb"))
            changed = [float(_get(rows5.loc[m].to_dict(), "changed")) for m in ("no_diag", "no_kb")]
            reads = ("" if any(np.isnan(changed)) else
                     f" Removing them changes {changed[0]:.0%} / {changed[1]:.0%} of its decisions")
            if reads and "no_reviews" in rows5.index and np.isfinite(_get(rows5.loc["no_reviews"].to_dict(),
                                                                          "changed")):
                reads += f"; removing the reviews, {float(rows5.loc['no_reviews', 'changed']):.0%}"
            reads += "." if reads else ""
            paper = PAPER_TABLE5[variant]
            holds = d_diag < 0 and d_kb < 0
            ignores = (max(changed) < 0.01) if not any(np.isnan(changed)) else max(abs(d_diag), abs(d_kb)) < 0.005
            add(f"ablation.{variant}", _verdict(holds),
                f"Ablation, paper: removing the diagnosis or the knowledge base lowers {_label(variant)}'s "
                         f"Avg Q ({paper[1][0] - paper[0][0]:+.3f} / {paper[2][0] - paper[0][0]:+.3f}). Ours: "
                         f"{d_diag:+.3f} / {d_kb:+.3f} — " + ("agrees." if holds else "**contradicts the paper**"
                                                                  + (" (its answers do not depend on those prompt "
                                                                     "sections)." if ignores else "."))
                + reads)
    t7 = ev.table7
    if t7 is not None and {"ltve", "cql"} <= set(t7["key"]):
        cda = t7.set_index("key")["cda"]
        add("cda", _verdict(cda["ltve"] > cda["cql"]),
            f"CDA, paper: the LTVE ranks the expert's action above a counterfactual more often than CQL "
                     f"({PAPER_TABLE7['ltve'][0]:.1%} vs {PAPER_TABLE7['cql'][0]:.1%}). Ours: {cda['ltve']:.1%} vs "
                     f"{cda['cql']:.1%} — " + ("agrees." if cda["ltve"] > cda["cql"] else "**contradicts the paper**."))
    judge = ev.judge
    if judge is not None and len(judge):
        totals = judge.set_index("key")["mean_total"]
        trained = [v for v in ("sft", "sft_dpo") if v in totals and np.isfinite(totals[v])]
        if "base" in totals and trained and all(totals[v] == totals["base"] for v in trained):
            add("judge.untested", "untested",
                f"Judge: every variant, the untrained base model included, scores {totals['base']:.2f} /20 "
                         "(the trained variants learned the [ACT_ONLY] answer, not the reasoning sections the judge "
                         "scores), so the paper's judge claims (Fig. 4) are untested here.")
            totals = totals.drop(index=[v for v in totals.index if v in LLM_VARIANTS])
        for a, b, claim in (("sft", "base", "SFT raises the judge score over the base model"),
                            ("sft_dpo", "sft", "SFT+DPO keeps or raises the SFT judge score")):
            if (a in totals and b in totals and np.isfinite(totals[a]) and np.isfinite(totals[b])
                    and not {a, b} & unparsable):
                holds = totals[a] > totals[b] if a == "sft" else totals[a] >= totals[b]
                add(f"judge.{a}.{b}", _verdict(holds),
                    f"Judge, paper: {claim}. Ours: {_label(a)} {totals[a]:.2f} vs {_label(b)} "
                             f"{totals[b]:.2f} /20 — " + ("agrees." if holds else "**contradicts the paper**."))
    if t4 is not None:
        for r in t4.to_dict("records"):
            if r["key"] not in ("sft_dpo", "dt") or r["key"] in unparsable:
                continue
            for metric in ("mar", "gmv"):
                if f"{metric}_14d_uplift" not in r:
                    continue
                lo, hi = r[f"{metric}_14d_uplift_ci"]
                paper = _get(r, f"paper_{metric}_14d_uplift")
                if not (lo > 0 or hi < 0):
                    verdict, said = "not significant", "not significant"
                elif paper is None or not np.isfinite(paper) or (lo > 0) == (paper > 0):
                    verdict, said = "agrees", "significant, agrees"
                else:
                    verdict, said = "contradicts", "significant, **contradicts the paper**"
                add(f"ab.{metric}.{r['key']}", verdict, f"A/B 14-day {metric.upper()} of {r['policy']} vs Price-Sales: "
                             f"{r[f'{metric}_14d_uplift']:+.1%} [{lo:+.1%}, {hi:+.1%}]; paper {_signed(paper)} — "
                             f"{said}.")
    if t4 is not None and {"sft", "sft_dpo", BEST_OF_SFT} <= set(t4["key"]) and not {"sft", "sft_dpo"} & unparsable:
        r4 = t4.set_index("key")

        def up(key: str, metric: str) -> str:
            lo, hi = r4.loc[key, f"{metric}_14d_uplift_ci"]
            return f"{r4.loc[key, f'{metric}_14d_uplift']:+.1%} [{lo:+.1%}, {hi:+.1%}]"

        sft_gmv = float(r4.loc["sft", "gmv_14d_uplift"])
        lo, hi = r4.loc[BEST_OF_SFT, "gmv_14d_uplift_ci"]
        # conservative (not paired): the ceiling's GMV interval against SFT-only's point estimate
        verdict = _interval_verdict(lo, hi, sft_gmv)
        said = {"agrees": "raises GMV over SFT-only (its 95% CI lies above SFT-only's uplift) — agrees.",
                "contradicts": "lowers GMV below SFT-only (its 95% CI lies below SFT-only's uplift) — **contradicts "
                               "the paper**: the signal is lost in the critic's ranking, before DPO.",
                "not significant": f"does not measurably raise GMV over SFT-only (its 95% CI contains SFT-only's "
                                   f"{sft_gmv:+.1%}) — not significant: whatever the critic adds is ROI, not GMV, "
                                   "so DPO on its pairs has no GMV to distil."}[verdict]
        add("dpo.ceiling", verdict,
            "DPO's premise, paper: the LTVE's preferred actions earn more, so DPO on its pairs raises GMV. Ours, "
            "14-day GMV / ROI vs Price-Sales: SFT-only " + f"{up('sft', 'gmv')} / {up('sft', 'roi')}; best-of-M by "
            f"the LTVE over the SFT model's own samples (DPO's ceiling) {up(BEST_OF_SFT, 'gmv')} / "
            f"{up(BEST_OF_SFT, 'roi')}; SFT+DPO {up('sft_dpo', 'gmv')} / {up('sft_dpo', 'roi')}. Following the "
            "critic over the student's samples " + said)
    reward_pairs = {(p["policy"], p["base"]): p for p in ev.record.get("ab_reward_pairs", [])}
    own = reward_pairs.get(("sft_dpo", "sft"))
    if own is not None and not {"sft", "sft_dpo"} & unparsable:
        lo, hi = own["ci_low"], own["ci_high"]
        verdict = _interval_verdict(lo, hi)
        ceiling = reward_pairs.get((BEST_OF_SFT, "sft"))
        add("dpo.own_objective", verdict,
            "DPO's objective, paper: DPO on LTVE-ranked pairs raises the long-term value the LTVE estimates. Ours, "
            "the realised 14-day reward (eq. 3) per SKU in the A/B, SFT+DPO − SFT-only: "
            f"{own['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
            + (f" (best-of-M by the LTVE over the SFT samples − SFT-only: {ceiling['diff']:+.3f} "
               f"[{ceiling['ci_low']:+.3f}, {ceiling['ci_high']:+.3f}])" if ceiling else "") + " — "
            + {"agrees": "agrees.",
               "contradicts": "**contradicts the paper**: DPO lowers the very reward its pairs were ranked by, so "
                              "the critic's per-state preferences, applied on every day, do not add up to a better "
                              "14-day policy.",
               "not significant": "not significant."}[verdict])
    fit = (ev.record.get("llm_training") or {}).get("sft_dpo") or {}
    if fit.get("dpo/fit_up_pairs") and fit.get("dpo/fit_down_pairs"):
        learned = {k: fit[f"dpo/fit_{k}_toward"] > fit[f"dpo/fit_{k}_away"] for k in ("up", "down")}
        add("dpo.pairs_learned", _verdict(all(learned.values())),
            "What DPO learns, paper: DPO aligns the model with the LTVE's per-state preferences. Ours, "
            + pair_fit_text(fit, prefix="dpo/fit_") + " — "
            + ("agrees." if all(learned.values()) else
               "**contradicts the paper**: the student learned the pairs of one direction and unlearned the "
               "other's, a shift of the whole policy toward "
               + ("higher" if learned["up"] else "lower") + " prices rather than the states' preferences."))
    if t4 is not None and "reward_14d" in t4 and t4["reward_14d"].notna().sum() >= 3:
        from aigp.ltve.diagnostics import policy_validity

        r4 = t4[t4["reward_14d"].notna()].set_index("key")
        taus = policy_validity({str(k): float(v) for k, v in r4["reward_14d"].items()},
                               {str(k): {m: float(r4.loc[k, f"{m}_14d"]) for m in ("gmv", "roi", "mar")}
                                for k in r4.index})
        top = str(r4["reward_14d"].idxmax())
        holds = all(taus.get(f"kendall_tau_{m}", np.nan) > 0 for m in ("gmv", "roi", "mar"))

        def uplift(metric: str) -> str:
            return "control" if top == "price_sales" else f"{r4.loc[top, f'{metric}_14d_uplift']:+.1%}"

        add("reward.market", _verdict(holds),
            "The reward, paper: eq. 3 (milestone progress and log ROI) encodes the long-term value the A/B measures. "
            f"Ours, Kendall τ of the realised 14-day reward against 14-day GMV / ROI / MAR over {len(r4)} policies: "
            + " / ".join(f"{taus.get(f'kendall_tau_{m}', np.nan):+.2f}" for m in ("gmv", "roi", "mar"))
            + f"; the policy with the most reward is {_label(top)} (GMV {uplift('gmv')}, ROI {uplift('roi')}, MAR "
            f"{uplift('mar')} vs Price-Sales) — " + ("agrees." if holds else "**contradicts the paper**: a policy "
                                                     "that maximises eq. 3 on this market need not win the A/B, so "
                                                     "the critic can be right about its reward and still lead "
                                                     "pricing astray."))
    stability = ev.stability
    if stability is not None and "sft_dpo" in set(stability["key"]) and "sft_dpo" not in unparsable:
        st = stability.set_index("key")
        a, b = st.loc["sft_dpo"], st.loc["price_sales"]
        holds = a["small_move_share"] > b["small_move_share"] and a["big_jump_share"] <= b["big_jump_share"]
        add("stability", _verdict(holds),
            f"Stability, paper: AIGP makes more small moves (|a| < 0.04) and fewer big jumps than the "
                     f"production baseline. Ours: {a['small_move_share']:.1%} vs {b['small_move_share']:.1%} small, "
                     f"{a['big_jump_share']:.1%} vs {b['big_jump_share']:.1%} big — "
                     + ("agrees." if holds else "**contradicts the paper**."))
    return records


def findings(ev: Evaluation) -> str:
    """The report's findings section: one bullet per :class:`Finding`."""
    lines = [finding.text for finding in finding_records(ev)]
    if not lines:
        return ""
    return "## Findings against the paper (computed from the tables below)\n\n" + "".join(f"- {x}\n" for x in lines)


def load_results(path: str | Path) -> Evaluation:
    """An :class:`Evaluation` back from a ``results.json`` (figures from the PNG files beside it): re-render the
    report without re-running anything (``aigp evaluate --render-only``)."""
    path = Path(path)
    data = json.loads(path.read_text())

    def frame(key: str) -> pd.DataFrame | None:
        return pd.DataFrame(data[key]) if data.get(key) is not None else None

    timings = {k: data["timings"][k] for k in data.get("timing_order", sorted(data["timings"]))}
    ev = Evaluation(EvaluationSettings.build(**data["settings"]), record=data["record"], timings=timings,
                    cpu_timings={k: data["cpu_timings"][k] for k in timings if k in data.get("cpu_timings", {})},
                    notes=list(data["notes"]), table2=frame("table2"), table3=frame("table3"), table4=frame("table4"),
                    table5=frame("table5"), table7=frame("table7"), judge=frame("judge"),
                    stability=frame("stability"), deciles=frame("deciles"), ab_markdown=data.get("ab_markdown", ""))
    for name in ("fig3_q_deciles.png", "fig5_stability.png"):
        if (path.parent / name).exists():
            ev.figures[name] = (path.parent / name).read_bytes()
    return ev
