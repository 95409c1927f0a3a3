"""The LTVE as a reward DPO can trust (issue 20): ranking diagnostics against the Monte-Carlo truth, policy-level
validity, and the policies that act on the critic directly, priced in the paired A/B.

    .venv/bin/python -m bench.bench_ltve_diagnostics [--variants paper,features,...] [--steps 6000]

1. The market log of the evaluation configuration (``aigp.evaluation.harness.EvaluationSettings`` defaults: 6,000 SKUs
   launched over 90 days, seed 7) is simulated once into ``--cache``.
2. Every critic variant trains on the same training window (the evaluation's split, 20% latest launches held
   out) with the evaluation's ``ltve_steps``; wall time, CPU time and transitions/s are recorded.
3. The Monte-Carlo truth is branched ONCE, from the same held-out expert states and the same candidate actions
   (logged, counterfactual, 7-point grid over A_safe; ``aigp.ltve.evaluate.monte_carlo_branches``), and every
   variant is scored against it (``ranking_diagnostics``): within-state Spearman and pairwise accuracy on
   candidates at least Δa apart, CDA against the truth, regret of the Q-greedy candidate, calibration; with 95%
   CIs from a bootstrap over the states, every critic on the same resamples, and its paired difference to the
   paper critic. A variant is chosen (and drives the A/B) only where that difference's CI lies above 0.
   Variants with ``trained_as`` rescore another variant's trained critic (e.g. the ensemble by its LCB).
4. The paired A/B (every policy prices the same fresh cohort, ``aigp.ab.experiment.run_counterfactual``):
   price-sales (control), the KB teacher, LTVE-greedy and best-of-M over the teacher's samples (by the paper
   critic and by the chosen critic), SAC (the policy that exploits the critic), the ops expert, hold, random
   and the oracle. Avg Q of each policy on held-out expert states (as Table 3) against its 14-day A/B GMV and
   ROI: Kendall τ (``policy_validity``), for each critic.
Acceptance (issue 20): within-state Spearman >= 0.9; pairwise accuracy >= 90%; CDA vs truth >= 97.5%; τ(Avg Q,
GMV 14d) >= 0.6 and τ(Avg Q, ROI 14d) >= 0.6; best-of-8 beats the teacher on 14-day GMV at ROI not lower;
LTVE-greedy not below price-sales on 14-day GMV; training >= 25k transitions/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench._report import command_line, markdown_table, write_section

ALL_DERIVED = ["ref_price_gap", "stock_cover_days", "exposure_momentum"]
# Critic variants: LTVETrainConfig overrides on top of the evaluation's (n = 3, twins, τ = 0.8).
VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {},
    "n=5": {"critic": {"n_steps": 5}},
    "n=1": {"critic": {"n_steps": 1}},
    "features": {"derived_features": ALL_DERIVED},
    "ref_gap": {"derived_features": ["ref_price_gap"]},
    "reward_norm": {"normalise_reward": True},
    "ensemble5": {"critic": {"ensemble": 5}},
    # the same trained critic as ensemble5 (pessimism only changes how candidates are scored), scored by its LCB
    "ensemble5_lcb": {"trained_as": "ensemble5", "score": {"pessimism": 1.0}},
    "ensemble5_lcb2": {"trained_as": "ensemble5", "score": {"pessimism": 2.0}},
    "paper_seed1": {"critic": {"seed": 1}},
    "paper_seed2": {"critic": {"seed": 2}},
    "steps_x2": {"critic": {"steps_factor": 2}},
    "steps_x4": {"critic": {"steps_factor": 4}},
    "tau0.5": {"critic": {"expectile": 0.5}},
    "uniform_batches": {"expert_batch_share": None},
}
SECTION_TITLES = {
    "ltve_diagnostics": "LTVE as a reward DPO can trust (issue 20)",
    "ltve_improvements": "LTVE improvements chosen by the diagnostics, on the same held-out states (issue 20)",
    "ltve_more_variants": "LTVE improvements, second round: n = 1, the reference-price gap, uniform batches, 4x the "
                          "updates (issue 20)",
}
TARGETS = {"mc_spearman_within_state_gap": 0.9, "mc_pairwise_accuracy_gap": 0.9, "mc_cda_vs_truth": 0.975}


def chosen_variant(rows: list[dict[str, Any]]) -> str:
    """The critic the A/B policies use: the best on within-state Spearman (Δa) among the variants whose paired
    bootstrap CI against the paper critic lies above 0 (a win on the held-out states, not state-sampling noise)
    and that also beat every other training seed of the paper critic (not seed noise); else the paper critic (or,
    without it, the best point estimate)."""
    names = {r["variant"] for r in rows}
    if "paper" not in names:
        return str(max(rows, key=lambda r: r["mc_spearman_within_state_gap"])["variant"])
    key = "mc_spearman_within_state_gap"
    seeds = max(r[key] for r in rows if r["variant"] == "paper" or r["variant"].startswith("paper_seed"))
    winners = [r for r in rows if r.get("ci", {}).get(key + "_diff_lo", -1.0) > 0 and r[key] > seeds]
    return str(max(winners, key=lambda r: r["mc_spearman_within_state_gap"])["variant"]) if winners else "paper"


def cpu_s() -> float:
    return time.process_time()


def variant_config(name: str, steps: int, threads: int) -> Any:
    from aigp.ltve.train import LTVETrainConfig

    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}; known: {sorted(VARIANTS)}")
    spec = json.loads(json.dumps(VARIANTS[name]))
    if "trained_as" in spec:
        return variant_config(spec["trained_as"], steps, threads)
    critic = spec.pop("critic", {})
    factor = critic.pop("steps_factor", 1)
    return LTVETrainConfig.build(critic={"steps": steps * factor, **critic}, eval_share=0.2, threads=threads,
                                 **spec)


def ensure_log(cache: Path, skus: int, launch_days: int, seed: int) -> dict[str, Any]:
    from aigp.market.config import MarketConfig
    from aigp.market.logs import simulate_to_directory

    manifest = cache / "manifest.json"
    if manifest.exists():
        cfg = json.loads(manifest.read_text())["config"]
        if (cfg["n_skus"], cfg["launch_days"], cfg["seed"]) == (skus, launch_days, seed):
            return {"cached": True}
    t, c = time.perf_counter(), cpu_s()
    simulate_to_directory(MarketConfig.build(seed=seed, n_skus=skus, launch_days=launch_days), cache,
                          overwrite=True)
    return {"cached": False, "wall_s": time.perf_counter() - t, "cpu_s": cpu_s() - c}


def branches_path(cache: Path, skus: int, launch_days: int, seed: int, expert_rows: int, states: int,
                  rollouts: int) -> Path:
    """Where the held-out Monte-Carlo branches of one log and truth configuration are kept (bench_ltve_ceiling
    reads them as its test set)."""
    return cache / f"branches_{skus}_{launch_days}_{seed}_{expert_rows}_{states}_{rollouts}.pkl"


def trained_name(name: str) -> str:
    """The variant whose trained critic ``name`` uses (itself unless it only rescores another's)."""
    return str(VARIANTS[name].get("trained_as", name))


def scored_as(model: Any, name: str) -> Any:
    """``model`` scoring candidates as variant ``name`` says (e.g. by the ensemble's LCB): same weights."""
    import copy
    import dataclasses

    score = VARIANTS[name].get("score")
    if not score:
        return model
    learner = copy.copy(model.learner)
    learner.config = dataclasses.replace(learner.config, **score)
    out = copy.copy(model)
    out.learner = learner
    return out


def load_cached(path: Path, cfg: Any, log: Path) -> tuple[Any, tuple[float, float]] | None:
    """A model an earlier run of this benchmark trained with exactly ``cfg`` (and its recorded train times).

    The recorded config is read back through today's ``LTVETrainConfig`` so that a field added since (with a
    default that reproduces the old behaviour) does not force a retrain."""
    from aigp.ltve.artifact import ArtifactError, load_model
    from aigp.ltve.train import LTVETrainConfig

    try:
        model = load_model(path)
    except ArtifactError:
        return None
    try:
        recorded = LTVETrainConfig.model_validate(model.info.get("train_config") or {}).model_dump(mode="json")
    except ValueError:
        return None
    if recorded != cfg.model_dump(mode="json") or model.metrics.get("bench/log") != str(log):
        return None
    return model, (float(model.metrics["bench/train_wall_s"]), float(model.metrics["bench/train_cpu_s"]))


def throughput(model_config: Any, data: Any, threads: int, steps: int) -> float:
    """transitions/s of ``steps`` updates at ``threads`` threads (after 100 warm-up updates)."""
    from aigp.ltve.critic import LTVE, train
    from aigp.ltve.dataset import MixedSampler

    torch.set_num_threads(threads)
    learner = LTVE(data.normaliser.dim, model_config)
    sampler = MixedSampler(data.train, model_config.batch_size, expert_share=0.6)
    train(learner, sampler.sample, 100, log_every=100)
    t = time.perf_counter()
    train(learner, sampler.sample, steps, log_every=steps)
    return steps * model_config.batch_size / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skus", type=int, default=6000)
    parser.add_argument("--launch-days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=Path("runs/bench/market_eval"))
    parser.add_argument("--steps", type=int, default=6000, help="updates per critic (the evaluation's ltve_steps)")
    parser.add_argument("--variants", default="paper,features,ensemble5_lcb,n=5")
    parser.add_argument("--chosen", default=None, help="variant whose critic drives the A/B policies (default: "
                        "the best on within-state Spearman (Δa))")
    parser.add_argument("--expert-rows", type=int, default=20_000)
    parser.add_argument("--mc-states", type=int, default=200)
    parser.add_argument("--mc-rollouts", type=int, default=8)
    parser.add_argument("--min-action-gap", type=float, default=0.02)
    parser.add_argument("--offline-rows", type=int, default=360)
    parser.add_argument("--ab-skus", type=int, default=240)
    parser.add_argument("--ab-launch-days", type=int, default=14)
    parser.add_argument("--ab-seed", type=int, default=11)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--best-of", type=int, default=8)
    parser.add_argument("--sample-temperature", type=float, default=1.0)
    parser.add_argument("--sac-steps", type=int, default=4000, help="0 leaves SAC out")
    parser.add_argument("--no-ab", action="store_true")
    parser.add_argument("--ab-critics", default="", help="further variants (comma-separated) whose LTVE-greedy "
                        "policy enters the A/B and whose Avg Q is held against it (Kendall τ)")
    parser.add_argument("--no-diagnostics", action="store_true", help="critics and the A/B only (needs --chosen)")
    parser.add_argument("--ab-from", type=Path, default=None,
                        help="take the A/B part from an earlier run's results.json (same log and critics)")
    parser.add_argument("--throughput-from", type=Path, default=None,
                        help="take the throughput from an earlier run's results.json (with --throughput-steps 0)")
    parser.add_argument("--models-dir", type=Path, default=None, help="trained critics (default: OUT/models)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--throughput-threads", type=int, default=2)
    parser.add_argument("--throughput-steps", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/ltve_diagnostics"))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--section", default="ltve_diagnostics", help="bench/results/<SECTION>.md to write (another "
                        "name keeps the A/B tables of the default section when this run has no A/B)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))

    from aigp.ltve.artifact import save_model
    from aigp.ltve.dataset import expert_skus, training_frame_from_logs
    from aigp.ltve.diagnostics import bootstrap_states, per_state_ranking
    from aigp.ltve.evaluate import (
        EvaluationConfig,
        action_metrics,
        evaluation_cohort,
        monte_carlo_branches,
        monte_carlo_metrics,
    )
    from aigp.ltve.train import prepare_data, train_ltve
    from aigp.schema import ENTITY_KEY

    started, started_cpu = time.perf_counter(), cpu_s()
    timings: dict[str, tuple[float, float]] = {}

    def timed(label: str, t: float, c: float) -> None:
        timings[label] = (time.perf_counter() - t, cpu_s() - c)
        print(f"[{label}] wall {timings[label][0]:.0f} s, CPU {timings[label][1]:.0f} s", flush=True)

    t, c = time.perf_counter(), cpu_s()
    log_info = ensure_log(args.cache, args.skus, args.launch_days, args.seed)
    frame = training_frame_from_logs(args.cache)
    timed("market log + frame", t, c)

    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    eval_cfg = EvaluationConfig(expert_rows=args.expert_rows, monte_carlo={
        "states": args.mc_states, "rollouts": args.mc_rollouts, "min_action_gap": args.min_action_gap})
    models: dict[str, Any] = {}
    rows_out: list[dict[str, Any]] = []
    per_state: dict[str, dict[str, np.ndarray]] = {}
    truth_noise: dict[str, float] = {}
    branches = expert = None
    for name in names:
        cfg = variant_config(name, args.steps, args.threads)
        saved = (args.models_dir or args.out / "models") / trained_name(name).replace("=", "")
        cached = load_cached(saved, cfg, args.cache)
        if cached is not None:  # trained by an earlier run with the same config and log
            model, (train_wall, train_cpu) = cached
        else:
            t, c = time.perf_counter(), cpu_s()
            model = train_ltve(frame, cfg).model
            train_wall, train_cpu = time.perf_counter() - t, cpu_s() - c
            model.metrics |= {"bench/train_wall_s": train_wall, "bench/train_cpu_s": train_cpu,
                              "bench/log": str(args.cache)}
            save_model(model, saved)
        model = scored_as(model, name)
        models[name] = model
        print(f"[{name}] trained{' (cached)' if cached else ''}: {train_wall:.0f} s wall / {train_cpu:.0f} s CPU",
              flush=True)
        if args.no_diagnostics:
            rows_out.append({"variant": name, "train_wall_s": train_wall, "train_cpu_s": train_cpu})
            continue
        if branches is None:  # the same held-out states and candidates for every critic
            t, c = time.perf_counter(), cpu_s()
            cohort = evaluation_cohort(frame, model)
            cohort = cohort[cohort["days_since_launch"] < model.reward_config.horizon_days].reset_index(drop=True)
            in_stock = cohort["inventory"].to_numpy() > 0
            experts = np.isin(cohort[ENTITY_KEY].to_numpy(), expert_skus(cohort, eval_cfg.expert_top_share)) & in_stock
            expert = cohort[experts].sample(n=min(args.expert_rows, int(experts.sum())), random_state=0)
            expert = expert.reset_index(drop=True)
            stored = branches_path(args.cache, args.skus, args.launch_days, args.seed, args.expert_rows,
                                   args.mc_states, args.mc_rollouts)
            if stored.exists():  # an earlier run of this benchmark branched the same states
                branches = pickle.loads(stored.read_bytes())
            else:
                branches = monte_carlo_branches(expert, args.cache, eval_cfg, np.random.default_rng(1))
                stored.write_bytes(pickle.dumps(branches))
            timed("Monte-Carlo branches", t, c)
        t, c = time.perf_counter(), cpu_s()
        table, mc = monte_carlo_metrics(model, branches, eval_cfg)
        n_states, k_cand = branches.actions.shape
        q_t, truth_t, se_t, actions_t = (table[c].to_numpy().reshape(n_states, k_cand) for c in (
            "q", "mc_return", "mc_se", "action"))
        per_state[name] = per_state_ranking(q_t, truth_t, se_t, actions_t, args.min_action_gap)
        if not truth_noise:  # what one logged future tells about an action's effect (same for every critic)
            truth = table["mc_return"].to_numpy().reshape(n_states, k_cand)
            one_future = table["mc_se"].to_numpy().reshape(n_states, k_cand) * np.sqrt(args.mc_rollouts)
            truth_noise.update(effect_sd=float(truth.std(1).mean()), one_future_sd=float(one_future.mean()),
                               best_minus_logged=float((truth.max(1) - truth[:, 0]).mean()))
        am = action_metrics(model, expert, eval_cfg, np.random.default_rng(0))
        eval_wall, eval_cpu = time.perf_counter() - t, cpu_s() - c
        rows_out.append({"variant": name, **mc, "cda_logged_expert": am["cda"], "eama": am["eama"],
                         "transitions": model.metrics["train/transitions"],
                         "train_transitions_per_s": model.metrics["train/transitions_per_s"],
                         "train_wall_s": train_wall, "train_cpu_s": train_cpu, "eval_wall_s": eval_wall,
                         "eval_cpu_s": eval_cpu, "config": cfg.model_dump(mode="json")})
        print(f"[{name}] " + " ".join(f"{k}={mc[k]:.3f}" for k in (
            "mc_spearman_within_state", "mc_spearman_within_state_gap", "mc_pairwise_accuracy_gap",
            "mc_cda_vs_truth", "mc_regret", "mc_calibration_slope")), flush=True)

    if args.no_diagnostics and not args.chosen:
        raise SystemExit("--no-diagnostics needs --chosen")
    if per_state:  # 95% CIs over the Monte-Carlo states, every critic on the same resamples, paired vs paper
        reference = "paper" if "paper" in per_state else None
        cis = bootstrap_states(per_state, reference, args.bootstrap, np.random.default_rng(0))
        for r in rows_out:
            r["ci"] = cis[r["variant"]]
    chosen = args.chosen or chosen_variant(rows_out)
    print(f"chosen critic: {chosen}", flush=True)
    # 2-core throughput of the paper critic and the chosen one (the issue's >= 25k transitions/s)
    speed: dict[str, float] = {}
    loads: dict[str, str] = {}
    for name in dict.fromkeys(["paper", chosen]):
        if name not in models or args.throughput_steps <= 0:
            continue
        cfg = variant_config(name, args.steps, args.threads)
        data = prepare_data(frame, cfg, models[name].config.n_steps, models[name].config.gamma)
        before = os.getloadavg()[0]
        speed[name] = throughput(models[name].config, data, args.throughput_threads, args.throughput_steps)
        loads[name] = f"{before:.1f}/{os.getloadavg()[0]:.1f}"
        print(f"[{name}] throughput at {args.throughput_threads} threads: {speed[name]:,.0f} transitions/s "
              f"(load {loads[name]})", flush=True)
    torch.set_num_threads(args.threads)

    ab: dict[str, Any] = {}
    if args.ab_from is not None:
        earlier = json.loads(args.ab_from.read_text())
        ab = earlier["ab"]
        ab.setdefault("from", str(args.ab_from))
        ab.setdefault("args", earlier["args"])
        ab.setdefault("timings", {k: v for k, v in earlier["timings"].items() if k not in timings})
    elif not args.no_ab:
        ab = run_ab(args, frame, models, chosen, timed)
    if args.throughput_from is not None and not speed:  # measured by an earlier run (same code and critics)
        earlier = json.loads(args.throughput_from.read_text())
        speed, loads = earlier["throughput"], earlier.get("throughput_load", {})

    results = {"args": {k: str(v) for k, v in vars(args).items()}, "log": log_info, "chosen": chosen,
               "variants": rows_out, "truth_noise": truth_noise, "throughput": speed, "throughput_load": loads,
               "ab": ab, "timings": timings,
               "total_wall_s": time.perf_counter() - started, "total_cpu_s": cpu_s() - started_cpu}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    if args.no_diagnostics:
        print(f"A/B only: {args.out / 'results.json'}")
        return
    body = report(results, args)
    print(body)
    if not args.no_write:
        command = command_line("bench.bench_ltve_diagnostics", args, parser)
        title = SECTION_TITLES.get(args.section, SECTION_TITLES["ltve_improvements"])
        write_section(args.section, title, body, command)


def run_ab(args: argparse.Namespace, frame: pd.DataFrame, models: dict[str, Any], chosen: str, timed: Any
           ) -> dict[str, Any]:
    from aigp.ab.experiment import ABConfig, analyse, run_counterfactual, sku_outcomes
    from aigp.distillation.teacher import TeacherPolicy
    from aigp.evaluation.harness import replay_logged_states
    from aigp.ltve.dataset import time_split
    from aigp.ltve.diagnostics import policy_validity
    from aigp.ltve.evaluate import evaluation_cohort
    from aigp.ltve.policies import BestOfMPolicy, LTVEGreedyPolicy
    from aigp.market.logs import open_logs
    from aigp.market.policies import ExpertPolicy, OraclePolicy, PriceSalesPolicy, RandomPolicy, StaticPolicy
    from aigp.policy_metrics import expert_rows, offline_policy_metrics

    logs = open_logs(args.cache)
    paper = models.get("paper", models[chosen])
    extra = [c.strip() for c in args.ab_critics.split(",") if c.strip()]
    critics = {"paper": paper, chosen: models[chosen], **{c: models[c] for c in extra}}
    t, c = time.perf_counter(), time.process_time()
    split = time_split(frame, eval_share=0.2, validation_share=0.0)
    decisions = logs.read("decisions.parquet")
    policies: dict[str, Any] = {
        "price_sales": PriceSalesPolicy.fit(decisions[decisions["sku_id"].isin(split.train["sku_id"].unique())],
                                            logs.read("skus.parquet"), seed=args.seed),
        "kb_teacher": TeacherPolicy(),
    }
    for name, model in critics.items():
        policies[f"ltve_greedy[{name}]"] = LTVEGreedyPolicy(model, name=f"ltve_greedy[{name}]")
    # best-of-M by the chosen critic only (M teacher samples per decision: the costliest policy here)
    policies[f"best_of_{args.best_of}[{chosen}]"] = BestOfMPolicy(
        models[chosen], m=args.best_of, temperature=args.sample_temperature, name=f"best_of_{args.best_of}[{chosen}]")
    if args.sac_steps:
        from aigp.evaluation.baselines.sac import SACConfig, train_sac

        policies["sac"] = train_sac(frame, SACConfig(steps=args.sac_steps, hidden_dims=(256, 256),
                                                     eval_share=0.2)).policy
    policies |= {"expert": ExpertPolicy(), "static": StaticPolicy(), "random": RandomPolicy(),
                 "oracle": OraclePolicy(logs.config.dynamics)}
    timed("A/B policies (price-sales fit, SAC)", t, c)

    # Avg Q on held-out expert states (Table 3's rows), every policy answering for exactly the logged state
    t, c = time.perf_counter(), time.process_time()
    cohort = evaluation_cohort(frame, paper)
    experts = expert_rows(cohort)
    rows = experts.sample(n=min(args.offline_rows, len(experts)), random_state=args.seed).reset_index(drop=True)
    replay = replay_logged_states(args.cache, rows)
    avg_q: dict[str, dict[str, float]] = {name: {} for name in critics}
    for pname, policy in policies.items():
        actions = replay.actions(policy)
        for cname, model in critics.items():
            avg_q[cname][pname] = offline_policy_metrics(rows, actions, ltve=model)["avg_q"]
    timed("Avg Q on held-out states", t, c)

    t, c = time.perf_counter(), time.process_time()
    for policy in policies.values():  # fresh counters for the A/B
        for attr in ("decisions", "distinct_candidates", "changed_vs_first"):
            if hasattr(policy, attr):
                setattr(policy, attr, 0)
    config = ABConfig.build(allocation={g: 1.0 / len(policies) for g in policies}, control="price_sales",
                            ceiling="oracle", seed=args.ab_seed, cohort_skus=args.ab_skus,
                            cohort_launch_days=args.ab_launch_days, bootstrap=args.bootstrap)
    result = run_counterfactual(config, policies)
    timed("paired A/B", t, c)
    values = result.metrics.set_index(["group", "horizon", "metric"])["value"]
    outcomes = {g: {f"{m}_{h}d": float(values.loc[(g, h, m)]) for h in config.horizons for m in ("gmv", "roi", "mar")}
                for g in policies}
    validity = {cname: policy_validity(avg_q[cname], outcomes) for cname in critics}
    # best-of-M and LTVE-greedy against the teacher, paired on the same SKUs
    frames = {h: {g: sku_outcomes(result.run.summary[result.groups == g], h).reset_index(drop=True)
                  for g in policies} for h in config.horizons}
    _, vs_teacher = analyse(frames, config.with_updates(control="kb_teacher", ceiling=None), paired=True)
    stats = {g: p.stats() for g, p in policies.items() if hasattr(p, "stats")}
    return {"markdown": result.markdown(), "outcomes": outcomes, "avg_q": avg_q, "validity": validity,
            "uplift": result.uplift.to_dict("records"), "vs_teacher": vs_teacher.to_dict("records"),
            "policy_stats": stats, "offline_rows": len(rows), "cohort_skus": args.ab_skus}


def _pct(x: float) -> str:
    return f"{x:.1%}" if x == x else "—"


CI_METRICS = (("mc_spearman_within_state_gap", "within-state ρ (Δa)", False),
              ("mc_pairwise_accuracy_gap", "pairwise acc. (Δa)", True), ("mc_cda_vs_truth", "CDA vs truth", True),
              ("mc_regret", "regret", False))


def _ci(r: dict[str, Any], key: str, pct: bool) -> str:
    f = _pct if pct else (lambda x: f"{x:.3f}")
    return f"{f(r[key])} [{f(r['ci'][key + '_lo'])}, {f(r['ci'][key + '_hi'])}]"


def _diff(r: dict[str, Any], key: str, pct: bool) -> str:
    c = r["ci"]
    if key + "_diff" not in c:
        return "—"
    scale, unit = (100, " pp") if pct else (1, "")
    return (f"{scale * c[key + '_diff']:+.3g}{unit} [{scale * c[key + '_diff_lo']:+.3g}, "
            f"{scale * c[key + '_diff_hi']:+.3g}]")


def ci_section(rows: list[dict[str, Any]], reps: int) -> list[str]:
    """Each variant's headline diagnostics with 95% bootstrap CIs over the Monte-Carlo states, the paired
    difference to the paper critic, and the spread over training seeds of the paper critic."""
    rows = [r for r in rows if "ci" in r]
    if not rows:
        return []
    table = []
    for r in rows:
        row: dict[str, Any] = {"variant": r["variant"]}
        for key, label, pct in CI_METRICS:
            row[label] = _ci(r, key, pct)
            row[f"Δ {label} vs paper"] = _diff(r, key, pct)
        table.append(row)
    out = ["### The same, with 95% CIs (bootstrap over the held-out Monte-Carlo states, every critic on the same "
           f"{reps} resamples; Δ = paired difference to `paper`)", "", markdown_table(table), ""]
    seeds = [r for r in rows if r["variant"] == "paper" or r["variant"].startswith("paper_seed")]
    if len(seeds) > 1:
        parts = []
        for key, label, pct in CI_METRICS:
            values = np.array([r[key] for r in seeds])
            scale = 100 if pct else 1
            parts.append(f"{label} {scale * values.mean():.3g} ± {scale * values.std(ddof=1):.2g}"
                         f"{' %' if pct else ''} (range {scale * values.min():.3g}-{scale * values.max():.3g})")
        out += [f"Training-seed spread of the paper critic ({len(seeds)} seeds, mean ± sd): " + "; ".join(parts) +
                ". A variant's difference smaller than this spread is not a difference of the method.", ""]
        key = "mc_spearman_within_state_gap"
        low, high = min(r[key] for r in seeds), max(r[key] for r in seeds)
        others = [r for r in rows if r not in seeds]
        inside = [r["variant"] for r in others if r[key] <= high]
        above = [r["variant"] for r in others if r[key] > high]
        out += [f"Within-state ρ of the paper critic's seeds spans {low:.3f}-{high:.3f}; at or below its best seed: "
                + (", ".join(f"`{v}`" for v in inside) or "none") + "; above it: "
                + (", ".join(f"`{v}`" for v in above) or "none") + ".", ""]
    return out


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    out = [f"Evaluation configuration: {args.skus:,} SKUs launched over {args.launch_days} days (seed {args.seed}), "
           f"{args.steps:,} updates per critic at {args.threads} torch thread(s), 20% latest launches held out. "
           f"Monte-Carlo truth: {args.mc_states} held-out expert states x 9 candidates (logged, counterfactual "
           f"±0.1, 7-point grid over A_safe) x {args.mc_rollouts} futures continued by each SKU's logging "
           f"policy, branched once and shared by every critic; pairs and within-state Spearman on candidates "
           f">= Δa = {args.min_action_gap} apart. Total {results['total_wall_s']:.0f} s wall / "
           f"{results['total_cpu_s']:.0f} s CPU.", "", "### Ranking diagnostics against the Monte-Carlo truth", ""]
    cols = ["variant", "within-state ρ (Δa)", "within-state ρ (all)", "MC noise ceiling of ρ", "pairwise acc. (Δa)",
            "pairs", "CDA vs truth",
            "CDA vs logged expert", "regret", "regret share", "greedy gain vs logged", "calib. slope",
            "calib. bias", "pooled ρ", "train s / CPU s", "transitions/s (1 thread)"]
    table = []
    for r in results["variants"]:
        table.append({"variant": r["variant"], "within-state ρ (Δa)": r["mc_spearman_within_state_gap"],
                      "within-state ρ (all)": r["mc_spearman_within_state"],
                      "MC noise ceiling of ρ": r.get("mc_spearman_within_state_ceiling", float("nan")),
                      "pairwise acc. (Δa)": _pct(r["mc_pairwise_accuracy_gap"]), "pairs": int(r["mc_pairs_gap"]),
                      "CDA vs truth": _pct(r["mc_cda_vs_truth"]), "CDA vs logged expert": _pct(r["cda_logged_expert"]),
                      "regret": r["mc_regret"], "regret share": _pct(r["mc_regret_share"]),
                      "greedy gain vs logged": r["mc_greedy_gain_vs_logged"],
                      "calib. slope": r["mc_calibration_slope"], "calib. bias": r["mc_calibration_bias"],
                      "pooled ρ": r["mc_spearman"],
                      "train s / CPU s": f"{r['train_wall_s']:.0f} / {r['train_cpu_s']:.0f}",
                      "transitions/s (1 thread)": r["train_transitions_per_s"]})
    out += [markdown_table(table, cols), ""]
    out += ci_section(results["variants"], args.bootstrap)
    noise = results.get("truth_noise") or {}
    if noise:
        out += [f"Signal against noise in the data a critic learns from: across a state's 9 candidates the true "
                f"return varies by {noise['effect_sd']:.3f} (mean within-state sd), while one future of one "
                f"candidate (what a logged trajectory is) scatters by {noise['one_future_sd']:.3f} (sd over the "
                f"{args.mc_rollouts} Monte-Carlo futures): the action's effect is "
                f"{noise['effect_sd'] / noise['one_future_sd']:.2f}x the noise of the return it is learned from. "
                f"The best candidate beats the logged one by {noise['best_minus_logged']:.3f} on average.", ""]
    variants = {r["variant"]: r for r in results["variants"]}
    out.append("Variants: " + "; ".join(f"`{n}` = {json.dumps(VARIANTS[n])}" for n in variants) +
               f". The truly best action is the logged expert's on "
               f"{_pct(next(iter(variants.values()))['mc_true_best_within_eps_of_expert'])} of the states (±ε); "
               f"the expert is truly better than its counterfactual on "
               f"{_pct(next(iter(variants.values()))['mc_expert_truly_better'])}.")
    out += [] if not results["throughput"] else ["", "Training throughput on "
            f"{args.throughput_threads} threads ({args.throughput_steps} updates): " + ", ".join(
                f"`{k}` {v:,.0f} transitions/s (1-min load average before/after "
                f"{results['throughput_load'].get(k, '?')} on {os.cpu_count()} CPUs)"
                for k, v in results["throughput"].items()) + " (target >= 25,000)."]
    ab = results.get("ab") or {}
    if ab:
        out += ["", f"### Paired A/B ({ab['cohort_skus']} fresh SKUs, every policy prices all of them)", "",
                ab["markdown"], "", "### Avg Q (held-out expert states) against the 14-day A/B outcome", ""]
        critics = list(ab["avg_q"])
        trows = []
        for g, o in ab["outcomes"].items():
            trows.append({"policy": g, **{f"Avg Q [{c}]": ab["avg_q"][c][g] for c in critics},
                          "GMV 14d": o["gmv_14d"], "ROI 14d": o["roi_14d"], "MAR 14d": _pct(o["mar_14d"])})
        out += [markdown_table(trows), ""]
        vrows = [{"critic": c, "policies": int(v["policies"]), "τ(Avg Q, GMV 14d)": v["kendall_tau_gmv_14d"],
                  "τ(Avg Q, ROI 14d)": v["kendall_tau_roi_14d"], "τ(Avg Q, MAR 14d)": v["kendall_tau_mar_14d"]}
                 for c, v in ab["validity"].items()]
        out += [markdown_table(vrows), ""]
        vt = pd.DataFrame(ab["vs_teacher"])
        vt = vt[vt["horizon"] == 14]
        rows = []
        for g in vt["group"].unique():
            s = vt[vt["group"] == g].set_index("metric")
            rows.append({"policy": g, **{f"{m.upper()} vs teacher": f"{s.loc[m, 'uplift']:+.1%} "
                                         f"[{s.loc[m, 'ci_low']:+.1%}, {s.loc[m, 'ci_high']:+.1%}]"
                                         for m in ("gmv", "roi", "mar")}})
        out += ["14-day uplift over the KB teacher (paired bootstrap CI):", "", markdown_table(rows), ""]
        if ab["policy_stats"]:
            out += ["Best-of-M samples: " + "; ".join(
                f"`{g}`: {s['mean_distinct_candidates']:.2f} distinct actions among the samples per decision, "
                f"the LTVE picks another than sample 0 on {_pct(s['share_changed_vs_first_sample'])}"
                for g, s in ab["policy_stats"].items()), ""]
    stages = {**results["timings"], **{f"{k} (A/B run)": v for k, v in ab.get("timings", {}).items()}}
    out += ["", f"Stage times (wall s / CPU s of this process; the machine's {os.cpu_count()} cores were shared with "
            f"other jobs, 1-min load average {os.getloadavg()[0]:.1f} when this report was written, so wall time is "
            "several times CPU time): " + "; ".join(
                f"{k} {w:.0f} / {c:.0f}" for k, (w, c) in stages.items()) +
            (f". The A/B part comes from `{ab['from']}` (same log, same cached critics; its run: SAC "
             f"{ab['args']['sac_steps']} updates, best-of-{ab['args']['best_of']} at temperature "
             f"{ab['args']['sample_temperature']}, {ab['args']['offline_rows']} held-out states for Avg Q)."
             if "from" in ab else "."),
            "", "### Acceptance (issue 20)", "", *verdicts(results, args)]
    return "\n".join(out)


def verdicts(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    chosen = results["chosen"]
    r = {v["variant"]: v for v in results["variants"]}[chosen]
    lines = [f"Chosen critic: `{chosen}`."]
    for key, label in (("mc_spearman_within_state_gap", "within-state Spearman vs MC (Δa)"),
                       ("mc_pairwise_accuracy_gap", "pairwise accuracy (Δa)"), ("mc_cda_vs_truth", "CDA vs truth")):
        ok = r[key] >= TARGETS[key]
        ci = r.get("ci", {})
        band = f" (95% CI over states [{ci[key + '_lo']:.3f}, {ci[key + '_hi']:.3f}])" if ci else ""
        lines.append(f"- {label}: **{'met' if ok else 'missed'}**, {r[key]:.3f}{band} vs >= {TARGETS[key]}")
    for name, v in results["throughput"].items():
        lines.append(f"- throughput `{name}`: **{'met' if v >= 25_000 else 'missed'}**, {v:,.0f} transitions/s "
                     f"on {args.throughput_threads} threads vs >= 25,000 (measured at a 1-min load average of "
                     f"{results.get('throughput_load', {}).get(name, '?')} on {os.cpu_count()} CPUs: the machine was "
                     "oversubscribed, two torch threads thrash; the default critic's update is the code whose "
                     "throughput bench/results/ltve.md records)")
    ab = results.get("ab") or {}
    if ab:
        for c, v in ab["validity"].items():
            for m in ("gmv", "roi"):
                tau = v[f"kendall_tau_{m}_14d"]
                lines.append(f"- τ(Avg Q [{c}], {m.upper()} 14d): **{'met' if tau >= 0.6 else 'missed'}**, "
                             f"{tau:.2f} vs >= 0.6 over {int(v['policies'])} policies")
        vt = pd.DataFrame(ab["vs_teacher"])
        vt = vt[vt["horizon"] == 14].set_index(["group", "metric"])
        for g in [g for g in ab["outcomes"] if g.startswith("best_of_")]:
            gmv, roi = vt.loc[(g, "gmv")], vt.loc[(g, "roi")]
            ok = gmv["ci_low"] > 0 and roi["uplift"] >= 0
            lines.append(f"- `{g}` beats the teacher on 14-day GMV at ROI not lower: **{'met' if ok else 'missed'}**"
                         f", GMV {gmv['uplift']:+.1%} [{gmv['ci_low']:+.1%}, {gmv['ci_high']:+.1%}], ROI "
                         f"{roi['uplift']:+.1%} [{roi['ci_low']:+.1%}, {roi['ci_high']:+.1%}]")
        o = ab["outcomes"]
        for g in [g for g in o if g.startswith("ltve_greedy")]:
            ok = o[g]["gmv_14d"] >= o["price_sales"]["gmv_14d"]
            lines.append(f"- `{g}` not below price-sales on 14-day GMV: **{'met' if ok else 'missed'}**, "
                         f"{o[g]['gmv_14d']:.0f} vs {o['price_sales']['gmv_14d']:.0f}")
    return lines


if __name__ == "__main__":
    main()
