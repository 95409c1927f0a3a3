"""Alignment benchmark (issue 6): the paper's Table 3 variants on held-out expert rows, a 14-day paired A/B,
training throughput and batched vs one-prompt-at-a-time candidate generation.

    .venv/bin/python -m bench.bench_alignment [--skus 1500] [--distill 200] [--sample-prompts 120] ...

Everything runs in one process on the `small` base model: simulate a market log, train the LTVE, build the
base model and the judged distillation set, train base / SFT-only / DPO-only / FullSeq / SFT+DPO
(``aigp.align.variants``), price held-out expert rows with each (``aigp.align.policy.propose_on_rows``) and score
them with ``aigp.policy_metrics.scorecard``, then run SFT-only, SFT+DPO, price-sales and the oracle
on the same simulated cohort for 14 days (``aigp.ab.experiment.run_counterfactual``).

Scale: 2 shared CPU cores. The policies are evaluated and A/B-tested in [ACT_ONLY] mode (the JSON action
only): full reasoning costs ~500 generated tokens per decision, about 2 s per decision for this model on this
machine, which the A/B's thousands of decisions cannot afford. The table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, default=Path("runs/bench/alignment"))
    p.add_argument("--skus", type=int, default=1500, help="SKUs in the simulated market log")
    p.add_argument("--ltve-steps", type=int, default=2000)
    p.add_argument("--distill", type=int, default=200, help="prompts sent to the teacher (judged -> SFT set)")
    p.add_argument("--sft-epochs", type=float, default=2.0)
    p.add_argument("--sft-lr", type=float, default=2e-3)
    p.add_argument("--sft-lora", action="store_true", help="LoRA SFT (default: full fine-tuning of the random-init "
                   "base model; LoRA on it does not learn the answer format within this budget, see the report)")
    p.add_argument("--sft-full-examples", type=int, default=16,
                   help="full-reasoning SFT records kept besides the [ACT_ONLY] twins of all judged records")
    p.add_argument("--sft-batch", type=int, default=4)
    p.add_argument("--sample-prompts", type=int, default=120, help="prompts candidates are sampled on")
    p.add_argument("--m", type=int, default=8, help="candidates per prompt")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--delta-q", type=float, default=0.01)
    p.add_argument("--delta-a", type=float, default=0.02)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--dpo-lr", type=float, default=1e-3)
    p.add_argument("--dpo-epochs", type=float, default=2.0)
    p.add_argument("--dpo-sft-weight", type=float, default=1.0,
                   help="NLL weight on the chosen answer added to the DPO loss (RPO); 0 = plain DPO")
    p.add_argument("--dpo-guard", type=int, choices=(0, 1), default=1,
                   help="1: stop DPO and keep the last adapter when the held-out parse rate falls (aigp.align.dpo)")
    p.add_argument("--max-pairs", type=int, default=96)
    p.add_argument("--truth-rollouts", type=int, default=8,
                   help="Monte-Carlo futures per action when checking the pairs against the market")
    p.add_argument("--fullseq-prompts", type=int, default=12)
    p.add_argument("--eval-rows", type=int, default=96, help="held-out expert rows priced by every variant")
    p.add_argument("--ab-skus", type=int, default=48, help="SKUs of the paired 14-day A/B cohort")
    p.add_argument("--throughput-prompts", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--resume", action="store_true", help="reuse the outputs of finished stages under --root")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    import numpy as np
    import pandas as pd
    import torch

    from aigp.align.generation import GenerationConfig, LoadedModel, generate
    from aigp.align.policy import LLMPricingPolicy, PolicyConfig, act_only_config, propose_on_rows
    from aigp.align.training import ALL_LINEAR_MODULES
    from aigp.align.variants import VARIANT_TITLES, VARIANTS, VariantRun, VariantsConfig, train_variants
    from aigp.distillation.distill import DistillConfig, run_distill, sft_records
    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.io import write_json
    from aigp.llm.model_factory import SIZES, BaseModelConfig, build_base_model
    from aigp.llm.prompt import PromptConfig, build_prompt
    from aigp.llm.rows import load_prompt_rows
    from aigp.ltve.artifact import load_model, save_model
    from aigp.ltve.dataset import training_frame_from_logs
    from aigp.ltve.evaluate import MonteCarloConfig, pair_truth
    from aigp.ltve.train import LTVETrainConfig, train_ltve
    from aigp.market.config import MarketConfig
    from aigp.market.logs import open_logs, simulate_to_directory
    from aigp.policy_metrics import expert_rows, scorecard
    from bench._report import write_section

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    root = args.root
    root.mkdir(parents=True, exist_ok=True)

    def lap(name: str, t0: float) -> None:
        timings[name] = time.perf_counter() - t0
        print(f"[{time.perf_counter() - started:7.0f} s] {name}: {timings[name]:.0f} s", flush=True)

    # 1. market log + LTVE ---------------------------------------------------------------------------------
    t0 = time.perf_counter()
    if args.resume and (root / "ltve").exists():
        logs = open_logs(root / "market")
    else:
        logs = simulate_to_directory(MarketConfig.build(n_skus=args.skus, launch_days=60, seed=args.seed),
                                     root / "market", overwrite=True)
    frame = training_frame_from_logs(logs.path)
    if not (args.resume and (root / "ltve").exists()):
        trained = train_ltve(frame, LTVETrainConfig.build(critic={"steps": args.ltve_steps}, threads=args.threads))
        save_model(trained.model, root / "ltve")
    ltve = load_model(root / "ltve")
    cutoff = pd.Timestamp(ltve.info["split"]["cutoff"])
    lap("market log + LTVE", t0)

    # 2. base model + distillation set (training window only) ----------------------------------------------
    t0 = time.perf_counter()
    end = cutoff.date()
    teacher, corpus = KnowledgeBaseTeacher(), []
    for row in load_prompt_rows(logs.path, n=300, seed=args.seed + 1, end=end).to_dict("records"):
        for cfg in (PromptConfig(), PromptConfig(act_only=True)):
            prompt = build_prompt(row, cfg)
            corpus += [prompt.system, prompt.user, teacher.respond(prompt).text]
    base = root / "base_model"
    if not (args.resume and base.exists()):
        build_base_model(base, corpus, BaseModelConfig(size="small", seed=args.seed), overwrite=True)
    budget = SIZES["small"].prompt_budget
    distill = run_distill(logs.path, root / "distill", DistillConfig.build(
        n_prompts=args.distill, seed=args.seed, end=end, prompt={"max_prompt_tokens": budget}, tokenizer=str(base)))
    records = sft_records(distill.out_dir)
    lap("base model + distillation set", t0)

    # 3. variants --------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    sample_rows = load_prompt_rows(logs.path, n=args.sample_prompts, seed=args.seed + 2, end=end)
    gen = {"temperature": args.temperature, "top_k": 50, "top_p": 0.95, "batch_size": 16, "seed": args.seed}
    vcfg = VariantsConfig.build(
        sft={"optim": {"epochs": args.sft_epochs, "learning_rate": args.sft_lr, "batch_size": args.sft_batch,
                       "threads": args.threads, "logging_steps": 10}, "eval_steps": 20,
             "lora": {"enabled": args.sft_lora}, "max_full_examples": args.sft_full_examples},
        sampling={"n_candidates": args.m, "generation": {**gen, "max_new_tokens": 24}},
        pairs={"delta_q": args.delta_q, "delta_a": args.delta_a, "max_pairs_per_prompt": 2},
        dpo={"beta": args.beta, "max_pairs": args.max_pairs, "sft_weight": args.dpo_sft_weight,
             "guard": {"enabled": bool(args.dpo_guard)},
             "lora": {"r": 16, "alpha": 32, "target_modules": ALL_LINEAR_MODULES},
             "optim": {"epochs": args.dpo_epochs, "learning_rate": args.dpo_lr, "batch_size": 8,
                       "threads": args.threads, "logging_steps": 5}},
        fullseq_sampling={"n_candidates": 4, "prompt": {"act_only": False},
                          "generation": {**gen, "max_new_tokens": 560}},
        fullseq_prompts=args.fullseq_prompts,
    )
    saved = root / "variants" / "run.json"
    if args.resume and saved.exists():
        state = json.loads(saved.read_text())
        run = VariantRun({k: Path(v) for k, v in state["models"].items()}, state["metrics"], state["notes"])
    else:
        truth = MonteCarloConfig(rollouts=args.truth_rollouts, seed=args.seed + 3)
        run = train_variants(base, records, sample_rows, ltve, root / "variants", vcfg,
                             log=lambda s: print(f"[{time.perf_counter() - started:7.0f} s] {s}", flush=True),
                             pair_truth=lambda pairs, rows: pair_truth(ltve, pairs, rows, frame, logs.path, truth))
        write_json(saved, {"models": {k: str(v) for k, v in run.models.items()}, "metrics": run.metrics,
                           "notes": run.notes})
    lap("training the variants", t0)

    # 4. offline metrics on held-out expert rows ---------------------------------------------------------------
    t0 = time.perf_counter()
    experts = expert_rows(frame)
    experts = experts[pd.to_datetime(experts["event_timestamp"], utc=True) >= cutoff.tz_localize("UTC")
                      if cutoff.tzinfo is None else experts["event_timestamp"] >= cutoff]
    experts = experts.sample(n=min(args.eval_rows, len(experts)), random_state=args.seed).reset_index(drop=True)
    prompt_rows = load_prompt_rows(logs.path, start=cutoff.date())
    keys = ["sku_id", "event_timestamp"]
    prompt_rows = experts[keys].merge(prompt_rows, on=keys, how="left", validate="one_to_one")
    if prompt_rows["prev_discount"].isna().any():
        raise RuntimeError("held-out expert rows missing from the prompt rows")
    policy_cfg = act_only_config(PolicyConfig(generation={"batch_size": 32}), max_new_tokens=24)
    offline: list[dict[str, Any]] = []
    for name in VARIANTS:
        if name not in run.models:
            offline.append({"variant": VARIANT_TITLES[name], "note": run.notes.get(name, "not trained")})
            continue
        proposed = propose_on_rows(run.models[name], prompt_rows, policy_cfg)
        m = scorecard(experts, proposed["change"].to_numpy(), parse_ok=proposed["parse_ok"],
                      compliant=proposed["compliant"], ltve=ltve)
        offline.append({"variant": VARIANT_TITLES[name], **m, "mean_change": float(proposed["change"].mean()),
                        "std_change": float(proposed["change"].std())})
    teacher_changes = []
    tcfg = PromptConfig(act_only=True, max_prompt_tokens=budget)
    counter = LoadedModel.load(base).counter()
    from aigp.llm.parser import parse_action

    for row in prompt_rows.to_dict("records"):
        text = teacher.respond(build_prompt(row, tcfg, count_tokens=counter)).text
        teacher_changes.append(parse_action(text, float(row["prev_discount"])).discount_change)
    offline.append({"variant": "teacher (KB, reference)",
                    **scorecard(experts, np.array(teacher_changes), ltve=ltve),
                    "mean_change": float(np.mean(teacher_changes)),
                    "std_change": float(np.std(teacher_changes))})
    greedy, _ = ltve.greedy(experts)
    offline.append({"variant": "LTVE greedy (reference)", **scorecard(experts, greedy, ltve=ltve),
                    "mean_change": float(greedy.mean()),
                    "std_change": float(greedy.std())})
    offline_table = pd.DataFrame(offline)
    offline_table.to_csv(root / "offline_metrics.csv", index=False)
    lap("offline metrics", t0)

    # 5. generation throughput: batched vs one prompt at a time ------------------------------------------------
    t0 = time.perf_counter()
    policy = LoadedModel.load(run.models["sft"])
    pcfg = policy.prompt_config(PromptConfig(act_only=True))
    messages = [build_prompt(r, pcfg, count_tokens=policy.counter()).messages
                for r in sample_rows.head(args.throughput_prompts).to_dict("records")]
    throughput = {}
    for label, batch in (("batched (all prompts, one prefill per prompt)", len(messages)), ("one prompt at a time", 1)):
        g = GenerationConfig(temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=24, batch_size=batch, seed=1)
        t = time.perf_counter()
        generate(policy, messages, g, n=args.m)
        seconds = time.perf_counter() - t
        throughput[label] = len(messages) * args.m / seconds
    lap("generation throughput", t0)

    # 6. 14-day paired A/B ---------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    from aigp.ab.experiment import ABConfig, run_counterfactual
    from aigp.market.policies import build_baselines

    groups = [g for g in ("sft", "sft_dpo") if g in run.models] + ["price_sales", "oracle"]
    ab_cfg = ABConfig.build(allocation={g: 1 / len(groups) for g in groups}, cohort_skus=args.ab_skus,
                            cohort_launch_days=1, history_skus=args.skus, horizons=(7, 14), seed=args.seed)
    policies = build_baselines(["price_sales", "oracle"], dynamics=ab_cfg.cohort_market().dynamics, seed=args.seed,
                               history=lambda: (logs.read("decisions.parquet"), logs.read("skus.parquet")))
    llm_policies = {g: LLMPricingPolicy(run.models[g], act_only_config(PolicyConfig(
        generation={"batch_size": 64}), max_new_tokens=24), name=g) for g in groups if g in run.models}
    ab = run_counterfactual(ab_cfg, {**policies, **llm_policies})
    lap("14-day paired A/B", t0)

    # report ----------------------------------------------------------------------------------------------------
    body = report(args, run, offline_table, throughput, ab, llm_policies, timings, time.perf_counter() - started,
                  distill, cutoff)
    command = "python -m bench.bench_alignment " + " ".join(  # switches (store_true) appear only when set
        f"--{k.replace('_', '-')}" + ("" if isinstance(v, bool) else f" {v}")
        for k, v in vars(args).items() if k != "root" and v is not False)
    write_section("alignment", "Alignment: SFT, LTVE-ranked pairs, DPO (issue 6)", body, command)
    print(body)


def fmt(value: object, digits: int = 3) -> str:
    import math

    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def report(args, run, offline, throughput, ab, llm_policies, timings, total, distill, cutoff) -> str:
    import numpy as np

    from aigp.evaluation.harness import pair_truth_line

    resumed = (" Resumed run (`--resume`): stages with outputs under --root were reused, so their times here are "
               "load times.") if args.resume else ""
    lines = [f"Market log: {args.skus:,} SKUs (60 launch days, seed {args.seed}); LTVE {args.ltve_steps} updates, "
             f"held-out cohort = SKUs launched on or after {cutoff.date()}. `small` base model (random init, "
             f"tokenizer trained on 300 prompts). SFT set: {distill.filter.report.kept} judged teacher responses "
             f"of {distill.generations} (plus their [ACT_ONLY] twins). Wall time {total / 60:.1f} min on 2 shared "
             "cores (" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ")." + resumed, "",
             "**Scale, stated plainly.** Everything is scaled to 2 shared CPU cores: a ~1M-parameter model, "
             f"{args.sample_prompts} sampling prompts x M={args.m}, {args.eval_rows} held-out expert rows, a "
             f"{args.ab_skus}-SKU A/B cohort. Offline metrics and the A/B run every LLM in [ACT_ONLY] mode (JSON "
             "action only); the deployed full-reasoning mode costs ~500 generated tokens per decision.", ""]
    s = run.metrics.get("sampling", {})
    p = run.metrics.get("pairs", {})
    if s:
        lines += ["### Candidates and pairs", "",
                  "| samples | parse failures | inside A_safe | duplicates | kept / prompt | prompts with >= 2 | "
                  "mean action spread | pairs | pairs / prompt | Q-gap p10 / p50 / p90 | candidate Q spread |",
                  "|---|---|---|---|---|---|---|---|---|---|---|",
                  f"| {s['sampling/samples']:.0f} | {s['sampling/parse_failure_rate']:.1%} | "
                  f"{s['sampling/in_safe_rate']:.1%} | {s['sampling/duplicate_rate']:.1%} | "
                  f"{s['sampling/kept_per_prompt']:.2f} | {s['sampling/prompts_with_2plus']:.1%} | "
                  f"{s['sampling/mean_change_spread']:.3f} | {p.get('pairs/pairs', 0):.0f} | "
                  f"{p.get('pairs/per_prompt', 0):.2f} | {fmt(p.get('pairs/q_gap_p10', float('nan')), 4)} / "
                  f"{fmt(p.get('pairs/q_gap_p50', float('nan')), 4)} / {fmt(p.get('pairs/q_gap_p90', float('nan')), 4)}"
                  f" | {fmt(p.get('pairs/candidate_q_spread_mean', float('nan')), 4)} |", "",
                  f"Thresholds ΔQ = {args.delta_q}, Δa = {args.delta_a}; temperature {args.temperature}, top-k 50, "
                  "top-p 0.95.", "", *[line for line in [pair_truth_line("Pairs", p)] if line], ""]
    if "fullseq_sampling" in run.metrics:
        fs, fp = run.metrics["fullseq_sampling"], run.metrics["fullseq_pairs"]
        lines += [f"FullSeq: {fs['sampling/samples']:.0f} full-reasoning samples on {args.fullseq_prompts} prompts, "
                  f"{fs['sampling/parse_failure_rate']:.1%} unparsable, {fs['sampling/kept']:.0f} kept, "
                  f"{fp['pairs/pairs']:.0f} pairs.", ""]
    lines += ["### Offline metrics on held-out expert rows (Table 3 analogue)", "",
              "| variant | Avg Q (LTVE) | MAE | EAMA | EAMA-R | KIPS | compliance | parse failures | mean a | sd a |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in offline.to_dict("records"):
        if isinstance(r.get("note"), str) and r.get("note"):
            lines.append(f"| {r['variant']} | {r['note']} | | | | | | | | |")
            continue
        lines.append(f"| {r['variant']} | {fmt(r['avg_q'], 4)} | {fmt(r['mae'])} | {r['eama']:.1%} | "
                     f"{r['eama_r']:.1%} | {r['kips']:.3f} | {r['compliance_rate']:.1%} | "
                     f"{r['parse_failure_rate']:.1%} | "
                     f"{r['mean_change']:+.3f} | {r['std_change']:.3f} |")
    expert_q = offline["avg_q_expert"].dropna()
    lines += ["", f"Logged expert action on the same rows: Avg Q {expert_q.iloc[0]:.4f}. EAMA-R and KIPS are shares "
              "weighted by the realised 3-day return (`aigp.policy_metrics`). Compliance = the model's own proposal "
              "inside A_safe before projection; a parse failure holds yesterday's discount (a = 0).", ""]
    lines += ["### Training and generation throughput", "", "| step | examples | steps | seconds | tokens/s |",
              "|---|---|---|---|---|"]
    for name in ("sft", "dpo_only", "sft_dpo", "fullseq"):
        m = run.metrics.get(name)
        if not m:
            continue
        prefix = "sft" if name == "sft" else "dpo"
        n = m.get(f"{prefix}/train_examples", m.get("dpo/pairs", 0))
        lines.append(f"| {VARIANT_TITLES_FULL.get(name, name)} | {n:.0f} | {m[f'{prefix}/steps']:.0f} | "
                     f"{m[f'{prefix}/seconds']:.0f} | {m[f'{prefix}/tokens_per_s']:,.0f} |")
    (label_b, tp_b), (label_1, tp_1) = throughput.items()
    lines += ["", f"Candidate generation ([ACT_ONLY], M={args.m}, {args.throughput_prompts} prompts): {label_b} "
              f"{tp_b:.1f} candidates/s vs {label_1} {tp_1:.1f} candidates/s: **x{tp_b / tp_1:.2f}**. "
              "SFT tokens/s counts prompt + completion tokens through forward + backward; DPO counts both "
              "sequences of a pair (the reference pass is extra).", ""]
    for name, m in run.metrics.items():
        if name in ("sft_dpo", "dpo_only", "fullseq"):
            loss = (f"loss {m['dpo/first_loss']:.3f} -> {m.get('dpo/last_loss', float('nan')):.3f}"
                    if "dpo/first_loss" in m else  # fewer steps than logging_steps: only the run's mean loss
                    f"mean loss {m.get('dpo/train_loss', float('nan')):.3f}")
            lines.append(f"- {VARIANT_TITLES_FULL[name]}: {m.get('dpo/pairs', 0):.0f} training pairs, "
                         f"{m.get('dpo/steps', 0):.0f} steps, {loss}, reward accuracy "
                         f"{m.get('dpo/first_rewards_accuracies', float('nan')):.2f} -> "
                         f"{m.get('dpo/last_rewards_accuracies', float('nan')):.2f}, margin "
                         f"{m.get('dpo/last_rewards_margins', float('nan')):.3f}" + _guard_text(m))
        if name == "sft":
            lines.append(f"- SFT: loss {m.get('sft/first_loss', float('nan')):.3f} -> "
                         f"{m.get('sft/last_loss', float('nan')):.3f}, validation loss "
                         f"{m.get('sft/first_eval_loss', float('nan')):.3f} -> "
                         f"{m.get('sft/best_eval_loss', float('nan')):.3f} (best)")
    lines += ["", "### 14-day simulated A/B (paired: every policy prices the same SKUs)", "", ab.markdown(), ""]
    for g, pol in llm_policies.items():
        st = pol.stats()
        lines.append(f"- {g}: {st['decisions']:.0f} decisions, parse failures {st['parse_failure_rate']:.1%}, "
                     f"projected {st['projected']:.0f}")
    _ = np
    return "\n".join(lines)


def _guard_text(m: dict) -> str:
    """The parse-rate guard's outcome for one DPO run (``aigp.align.dpo``), or that it did not run."""
    if not m.get("dpo/guard_active"):
        return "; parse-rate guard off"
    stopped = (f"stopped early, kept step {m['dpo/guard_kept_step']:.0f}" if m.get("dpo/guard_stopped")
               else "ran to the end")
    return (f"; parse-rate guard on {m['dpo/guard_prompts']:.0f} "
            f"{'held-out' if m.get('dpo/guard_held_out') else 'training'} prompts: start "
            f"{m['dpo/guard_start_parse_rate']:.0%}, lowest {m['dpo/guard_min_parse_rate']:.0%}, kept "
            f"{m['dpo/guard_kept_parse_rate']:.0%} ({stopped})")


VARIANT_TITLES_FULL = {"sft": "SFT", "dpo_only": "DPO-only (from base)", "sft_dpo": "DPO (SFT+DPO)",
                       "fullseq": "DPO (FullSeq)"}


if __name__ == "__main__":
    main()
