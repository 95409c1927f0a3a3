"""DPO on the distilled student (issue 18): does DPO on LTVE-ranked pairs move the SFT student where the market
rewards it? Continues a ``bench.bench_student`` run (its market log and its SFT model under ``--root``).

    .venv/bin/python -m bench.bench_student_dpo --root /tmp/student --size tiny --train 8000 --test 300
        [--prompts 400] [--m 8] [--ab-skus 60]

One process, 2 shared CPU cores, no hub:

1. the LTVE trained on the same market log (training window: SKUs launched before its cutoff);
2. M ``[ACT_ONLY]`` candidates sampled from the SFT student on ``--prompts`` training-window prompt rows (compact
   prompts, as the student was trained), ranked by the LTVE into preference pairs (``aigp.align.pairs``), and each
   pair checked against the market (``aigp.ltve.evaluate.pair_truth``: the chosen and the rejected action branched
   from the logged state, the LTVE's reward, common futures);
3. DPO from the SFT model with the demo preset's settings (all-linear LoRA, NLL on the chosen action, the
   parse-rate guard) — the product's recipe, not one tuned here;
4. offline: Avg Q (the LTVE) of teacher / SFT / SFT+DPO actions on the held-out prompts and how far each moved;
5. a 14-day paired counterfactual A/B on a fresh cohort: price-sales (control), the knowledge-base teacher, SFT,
   SFT+DPO (with ``--best-of M``: best-of-M by the LTVE over the SFT student's own samples, DPO's ceiling) and the
   oracle, every policy on the same SKUs (``aigp.ab.run_counterfactual``), with each policy's realised LTVE reward.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # defaults: bench.bench_student's (``make bench`` runs it first); pass the student run's own otherwise
    p.add_argument("--root", type=Path, default=Path("runs/bench/student"),
                   help="a bench.bench_student --root (market/ and sft_<size>/)")
    p.add_argument("--size", default="small", help="which of the student's models (sft_<size>)")
    p.add_argument("--train", type=int, default=20000, help="the student run's --train (its train/test split)")
    p.add_argument("--test", type=int, default=400, help="the student run's --test")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--reviews-chars", type=int, default=160)
    p.add_argument("--ltve-steps", type=int, default=3000)
    p.add_argument("--lambda-progress", type=float, default=0.8, help="the LTVE reward's λ1 (paper: 0.8)")
    p.add_argument("--lambda-roi", type=float, default=0.2, help="the LTVE reward's λ2 on log ROI (paper: 0.2)")
    p.add_argument("--section", default="student_dpo", help="bench/results section to write")
    p.add_argument("--prompts", type=int, default=400, help="training-window prompts candidates are sampled on")
    p.add_argument("--states", choices=("logged", "on_policy"), default="logged",
                   help="where the candidate prompts come from: logged training-window states, or the states the SFT "
                   "student visits pricing a training cohort of its own (aigp.distillation.on_policy)")
    p.add_argument("--on-policy-skus", type=int, default=100, help="SKUs of that training cohort (14 days each)")
    p.add_argument("--m", type=int, default=8, help="candidates per prompt")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--delta-q", type=float, default=0.05)
    p.add_argument("--delta-a", type=float, default=0.02)
    p.add_argument("--balance-direction", action="store_true",
                   help="as many pairs preferring the higher price as the lower (PairsConfig.balance_direction)")
    p.add_argument("--balance-sign", action="store_true",
                   help="of the pairs whose answers differ at the minus sign, as many choosing the non-negative "
                   "change as the negative one (PairsConfig.balance_sign; the product's default, off here so "
                   "the recorded sections without it reproduce)")
    p.add_argument("--dpo-epochs", type=float, default=2.0)
    p.add_argument("--dpo-lr", type=float, default=2e-3)
    p.add_argument("--dpo-beta", type=float, default=0.1, help="DPO's β (KL strength; the product's 0.1)")
    p.add_argument("--sft-weight", type=float, default=1.0, help="weight of the NLL term on the chosen action")
    p.add_argument("--sft-dir", type=Path, default=None,
                   help="the SFT model DPO starts from (default <root>/sft_<size>; e.g. an evaluation's "
                   "<work-dir>/llm/variants/sft with --root holding its market/)")
    p.add_argument("--truth-rollouts", type=int, default=8)
    p.add_argument("--ab-skus", type=int, default=60)
    p.add_argument("--distil-best", action="store_true", help="also train and price SFT continued on the LTVE's "
                   "best candidate of each sampled prompt (best-of-M distilled by plain SFT, same LoRA and budget as "
                   "DPO): is DPO's loss, rather than the critic's choice, what moves the policy?")
    p.add_argument("--best-of", type=int, default=0, help="also price best-of-M by the LTVE over the SFT student's "
                   "own samples (M = this, sampled as the candidates are) in the A/B: DPO's ceiling (0: off)")
    p.add_argument("--ab-seed", type=int, default=None, help="the A/B cohort's seed (default --seed); choose "
                   "settings on one cohort, report them on another")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true")
    return p.parse_args()


def student_ab(logs: Any, students: dict[str, Any], *, prompt: Any, skus: int, seed: int, cohort_seed: int,
               ltve: Any = None) -> Any:
    """The students' 14-day paired A/B on a fresh cohort (launched over 2 days): price-sales (control, fitted on
    ``logs``), the knowledge-base teacher on the students' ``prompt``, each student, and the oracle (ceiling);
    with ``ltve``, each policy's realised reward (the critic's eq. 3) on its decision days too."""
    from aigp.ab.experiment import ABConfig, run_counterfactual
    from aigp.distillation.teacher import TeacherPolicy
    from aigp.market.policies import build_baselines

    groups = ["price_sales", "kb_teacher", *students, "oracle"]
    config = ABConfig.build(allocation={g: 1 / len(groups) for g in groups}, cohort_skus=skus, cohort_launch_days=2,
                            history_skus=len(logs.read("skus.parquet")), horizons=(7, 14), seed=cohort_seed)
    policies: dict[str, Any] = dict(build_baselines(
        ["price_sales", "oracle"], dynamics=config.cohort_market().dynamics, seed=seed,
        history=lambda: (logs.read("decisions.parquet"), logs.read("skus.parquet"))))
    policies |= {"kb_teacher": TeacherPolicy(prompt_config=prompt), **students}
    return run_counterfactual(config, policies, daily_value=ltve.daily_rewards if ltve is not None else None)


def best_candidate_records(candidates: Any, ltve: Any) -> list[dict[str, Any]]:
    """For every sampled prompt with a kept candidate, the prompt and the candidate the LTVE scores highest, as an
    SFT record (the canonical [ACT_ONLY] action, as DPO's pairs write it): best-of-M as training data."""
    import json

    import numpy as np

    from aigp.align.pairs import action_text, candidate_matrix

    rows = candidates.rows.sort_values("prompt_id").reset_index(drop=True)
    changes, valid = candidate_matrix(candidates.candidates, len(rows))
    q = np.where(valid, ltve.q_values(rows, changes.astype(np.float32)), -np.inf)
    best = q.argmax(1)
    prev = rows["prev_discount"].to_numpy(np.float64)
    return [{"prompt": json.loads(rows.at[i, "prompt_messages"]),
             "completion": [{"role": "assistant", "content": action_text(changes[i, best[i]], prev[i])}]}
            for i in range(len(rows)) if valid[i].any()]


def reward_table(ab: Any, pairs: tuple[tuple[str, str], ...]) -> str:
    """The A/B's realised LTVE reward per SKU (14 days) with paired differences, as markdown."""
    from bench._report import markdown_table

    rows = [{"policy": r.group, "reward / SKU": round(r.value, 3), "95% CI": f"[{r.ci_low:.3f}, {r.ci_high:.3f}]",
             "vs price_sales": f"{r.diff:+.3f} [{r.diff_ci_low:+.3f}, {r.diff_ci_high:+.3f}]"}
            for r in ab.values.query("horizon == 14").itertuples(index=False)]
    lines = [f"{a} − {b}: {d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for a, b in pairs
             for d, lo, hi in [ab.value_difference(a, b, 14)]]
    return markdown_table(rows) + "\n\nPaired: " + "; ".join(lines) + "."


def main() -> None:
    import numpy as np
    import pandas as pd
    import torch

    from aigp.align.dpo import DPOStepConfig, run_dpo
    from aigp.align.generation import LoadedModel
    from aigp.align.pairs import PairsConfig, build_pairs
    from aigp.align.policy import LLMPricingPolicy, LLMSamples, PolicyConfig, pair_fit, propose_on_rows
    from aigp.align.sampling import SamplingConfig, sample_candidates
    from aigp.align.sft import SFTStepConfig, run_sft
    from aigp.align.training import ALL_LINEAR_MODULES
    from aigp.distillation.on_policy import OnPolicyConfig, visited_rows
    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.evaluation.harness import pair_truth_line
    from aigp.llm.parser import parse_action
    from aigp.llm.prompt import PromptConfig, build_prompt
    from aigp.ltve.dataset import training_frame_from_logs
    from aigp.ltve.evaluate import MonteCarloConfig, pair_truth
    from aigp.ltve.policies import BestOfMPolicy
    from aigp.ltve.train import LTVETrainConfig, train_ltve
    from aigp.market.logs import open_logs
    from bench._report import markdown_table, write_section
    from bench.bench_pair_fit import fit_rows
    from bench.bench_student import split_rows

    args = parse_args()
    torch.set_num_threads(args.threads)
    root, started, cpu0 = args.root, time.perf_counter(), time.process_time()
    sft_dir = args.sft_dir or root / f"sft_{args.size.replace(':', '_')}"
    if not (sft_dir / "config.json").exists():
        sys.exit(f"{sft_dir}: no SFT model; run bench.bench_student --root {root} first")
    logs = open_logs(root / "market")
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> None:
        timings[name] = time.perf_counter() - t0
        print(f"[{time.perf_counter() - started:6.0f} s] {name}: {timings[name]:.0f} s", flush=True)

    # 1. LTVE on the same log
    t0 = time.perf_counter()
    frame = training_frame_from_logs(logs.path)
    reward = {"lambda_progress": args.lambda_progress, "lambda_roi": args.lambda_roi}
    ltve = train_ltve(frame, LTVETrainConfig.build(critic={"steps": args.ltve_steps}, reward=reward,
                                                   threads=args.threads)).model
    cutoff = pd.Timestamp(ltve.info["split"]["cutoff"]).date()
    lap("LTVE", t0)

    # 2. candidates from the SFT student on training-window prompts, pairs, the market's verdict on them
    t0 = time.perf_counter()
    compact = PromptConfig(act_only=True, compact=True, reviews_max_chars=args.reviews_chars)
    train_rows, test_rows, _ = split_rows(logs.path, args.train, args.test, args.seed)
    horizon = int(logs.config.horizon_days)
    policy_cfg = PolicyConfig.build(prompt=compact.model_dump(), threads=args.threads,
                                    generation={"max_new_tokens": args.max_new_tokens, "batch_size": 32})
    if args.states == "logged":
        pool = train_rows[(pd.to_datetime(train_rows["date"]).dt.date < cutoff)
                          & (train_rows["days_since_launch"] < horizon)]
    else:
        cohort = OnPolicyConfig(skus=args.on_policy_skus, seed=1_000 + args.seed)
        pool = visited_rows(LLMPricingPolicy(sft_dir, policy_cfg, name="sft"), cohort).drop(columns=["policy_change"])
    sample_rows = pool.sample(n=min(args.prompts, len(pool)), random_state=args.seed).reset_index(drop=True)
    sft = LoadedModel.load(sft_dir)
    candidates = sample_candidates(sample_rows, sft, SamplingConfig.build(
        n_candidates=args.m, prompt=compact.model_dump(), threads=args.threads,
        generation={"temperature": args.temperature, "top_k": 50, "top_p": 0.95,
                    "max_new_tokens": args.max_new_tokens, "batch_size": 32, "seed": args.seed}))
    pairs_cfg = PairsConfig(delta_q=args.delta_q, delta_a=args.delta_a, max_pairs_per_prompt=2,
                            balance_direction=args.balance_direction, balance_sign=args.balance_sign)
    pairs = build_pairs(candidates.rows, candidates.candidates, ltve, pairs_cfg)
    lap("sampling + pairs", t0)
    t0 = time.perf_counter()
    truth_cfg = MonteCarloConfig(rollouts=args.truth_rollouts, seed=args.seed + 3)
    if args.states == "logged":  # the Monte-Carlo truth branches from logged states
        truth_table, truth = pair_truth(ltve, pairs.pairs, candidates.rows, frame, logs.path, truth_cfg)
        pairs.metrics.update(truth)
    else:
        truth_table = pd.DataFrame()
    lap("pairs vs the market (Monte-Carlo)", t0)

    # 3. DPO from the student, the demo preset's recipe
    t0 = time.perf_counter()
    dpo_cfg = DPOStepConfig.build(
        beta=args.dpo_beta, sft_weight=args.sft_weight, guard={"enabled": True},
        lora={"r": 16, "alpha": 32, "target_modules": ALL_LINEAR_MODULES},
        optim={"epochs": args.dpo_epochs, "learning_rate": args.dpo_lr, "batch_size": 8, "threads": args.threads,
               "logging_steps": 10, "seed": args.seed})
    dpo = run_dpo(pairs.records, sft_dir, root / "dpo", dpo_cfg)
    lap("DPO", t0)
    if args.distil_best:
        t0 = time.perf_counter()
        best_records = best_candidate_records(candidates, ltve)
        best_dir = run_sft(best_records, sft_dir, root / "sft_best", SFTStepConfig.build(
            lora={"enabled": True, "r": 16, "alpha": 32, "target_modules": ALL_LINEAR_MODULES},
            validation_share=0.0, act_only_copies=False,
            optim={"epochs": args.dpo_epochs, "learning_rate": args.dpo_lr, "batch_size": 8, "threads": args.threads,
                   "logging_steps": 10, "seed": args.seed})).model_dir
        lap(f"SFT on the best candidates ({len(best_records)} prompts)", t0)

    # 4. offline on the held-out prompts: Avg Q of each policy's action, and how often DPO moved the student
    t0 = time.perf_counter()
    keys = ["sku_id", "days_since_launch"]
    state = test_rows[keys].merge(frame.drop_duplicates(keys), on=keys, how="left", validate="one_to_one")
    known = state["prev_discount"].notna().to_numpy()
    teacher = KnowledgeBaseTeacher()
    prev = test_rows["prev_discount"].to_numpy(np.float64)
    actions = {"teacher (KB)": np.array([
        parse_action(teacher.respond(build_prompt(r, compact), temperature=0.0).text, pv).discount_change
        for r, pv in zip(test_rows.to_dict("records"), prev, strict=True)])}
    parse = {"teacher (KB)": 1.0}
    offline_models = [("SFT", sft_dir), ("SFT+DPO", dpo.model_dir)]
    if args.distil_best:
        offline_models.append(("SFT on best-of-M", best_dir))
    for label, model_dir in offline_models:
        out = propose_on_rows(model_dir, test_rows, policy_cfg)
        actions[label], parse[label] = out["change"].to_numpy(np.float64), float(out["parse_ok"].mean())
    hold = np.zeros(len(test_rows))
    offline = []
    for label, a in {**actions, "hold (a = 0)": hold}.items():
        q = ltve.q_values(state[known], a[known][:, None].astype(np.float32))[:, 0]
        offline.append({"policy": label, "rows": int(known.sum()), "Avg Q": float(q.mean()),
                        "parse": parse.get(label, 1.0), "mean a": float(a.mean()), "sd a": float(a.std()),
                        "same action as the teacher": float(np.mean(np.abs(a - actions["teacher (KB)"]) < 0.005))})
    moved = float(np.mean(np.abs(actions["SFT+DPO"] - actions["SFT"]) >= 0.005))
    fits = {"SFT+DPO": pair_fit(pairs.pairs, candidates.rows, sft_dir, dpo.model_dir, policy_cfg)}
    if args.distil_best:  # is it DPO, or distilling the critic's choices at all?
        fits["SFT on best-of-M"] = pair_fit(pairs.pairs, candidates.rows, sft_dir, best_dir, policy_cfg)
    fit_table = fit_rows(fits)
    lap("offline", t0)

    # 5. 14-day paired A/B on a fresh cohort
    t0 = time.perf_counter()
    llm_policies = {"sft": LLMPricingPolicy(sft_dir, policy_cfg, name="sft"),
                    "sft_dpo": LLMPricingPolicy(dpo.model_dir, policy_cfg, name="sft_dpo")}
    if args.distil_best:
        llm_policies["sft_best"] = LLMPricingPolicy(best_dir, policy_cfg, name="sft_best")
    students: dict[str, Any] = dict(llm_policies)
    if args.best_of:
        sampler = LLMSamples(sft_dir, policy_cfg, m=args.best_of, temperature=args.temperature, top_k=50, top_p=0.95)
        students["best_of_sft"] = BestOfMPolicy(ltve, m=args.best_of, sampler=sampler, name="best_of_sft")
    ab = student_ab(logs, students, prompt=compact, skus=args.ab_skus, seed=args.seed,
                    cohort_seed=args.seed if args.ab_seed is None else args.ab_seed, ltve=ltve)
    lap("14-day paired A/B", t0)

    from aigp.ab.experiment import format_markdown

    m = dpo.metrics
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    sm = candidates.metrics
    body = "\n\n".join([
        (f"Continues `bench.bench_student --root {root}` (its market log, its held-out prompts and its SFT model "
         f"`{sft_dir}`)" if args.sft_dir is None else
         f"Continues a student trained elsewhere: the SFT model `{sft_dir}` and the market log it was trained on "
         f"under `{root}/market` (for an evaluation's student, `--root` holds a link to `<work-dir>/market` and "
         f"`--sft-dir` is `<work-dir>/llm/variants/sft`)")
        + f". DPO β {args.dpo_beta}, NLL weight {args.sft_weight}, {args.dpo_epochs} epochs at lr {args.dpo_lr}. "
        f"LTVE: {args.ltve_steps} updates on the same log, cutoff {cutoff}, reward λ_progress {args.lambda_progress}, "
        f"λ_ROI {args.lambda_roi}. This run: "
        f"{wall:.0f} s wall, {cpu:.0f} s CPU, {args.threads} torch thread(s) (" + ", ".join(
            f"{k} {v:.0f} s" for k, v in timings.items()) + ").",
        "### Candidates and pairs\n\n" + markdown_table([{
            "prompts": len(sample_rows), "M": args.m, "samples": int(sm["sampling/samples"]),
            "parse failures": sm["sampling/parse_failure_rate"], "inside A_safe": sm["sampling/in_safe_rate"],
            "kept / prompt": sm["sampling/kept_per_prompt"], "mean action spread": sm["sampling/mean_change_spread"],
            "pairs": int(pairs.metrics["pairs/pairs"]), "ΔQ": args.delta_q, "Δa": args.delta_a}])
        + "\n\n" + pair_truth_line("Pairs", pairs.metrics),
        "### DPO\n\n" + markdown_table([{
            "pairs": m.get("dpo/pairs"), "steps": m.get("dpo/steps"), "first loss": m.get("dpo/first_loss"),
            "last loss": m.get("dpo/last_loss"), "guard start parse": m.get("dpo/guard_start_parse_rate"),
            "guard lowest parse": m.get("dpo/guard_min_parse_rate"), "stopped early": m.get("dpo/guard_stopped"),
            "kept step": m.get("dpo/guard_kept_step")}]),
        f"### Offline, {int(known.sum())} held-out prompts\n\n" + markdown_table(offline)
        + f"\n\nDPO changed the student's action on {moved:.0%} of the held-out prompts.",
        "### DPO on its own training prompts (greedy action after training minus before, per pair's preferred "
        "direction)\n\n" + markdown_table(fit_table),
        "### 14-day paired A/B (every policy prices the same fresh SKUs)\n\n" + format_markdown(ab),
        "### Realised LTVE reward in the A/B (eq. 3 on every decision day, summed over a SKU's 14 days: what the "
        "critic's Q estimates and the pairs are ranked by)\n\n"
        + reward_table(ab, tuple((arm, "sft") for arm in students if arm != "sft")),
        "Decisions: " + "; ".join(f"{name} {p.decisions} (parse failures {p.parse_failures}, projected "
                                  f"{p.projected})" for name, p in llm_policies.items()) + ".",
    ])
    print(body)
    truth_table.to_parquet(root / "pair_truth.parquet")
    if not args.no_write:
        command = "python -m bench.bench_student_dpo " + " ".join(sys.argv[1:])
        title = "DPO on the distilled student (issue 18: LTVE-ranked pairs, checked against the market)"
        if (args.lambda_progress, args.lambda_roi) != (0.8, 0.2):
            title += f", reward λ_progress {args.lambda_progress} / λ_ROI {args.lambda_roi}"
        if args.states == "on_policy":
            title += ", candidates on the student's own states"
        if args.delta_q not in (0.01, 0.05):  # the evaluation's ΔQ and the product's default
            title += f", only pairs with ΔQ ≥ {args.delta_q:g}"
        if args.balance_direction:
            title += ", pairs balanced by direction"
        if args.balance_sign:
            title += ", pairs crossing zero balanced by sign"
        if args.sft_weight != 1.0:
            title += ", DPO alone (no NLL term)" if args.sft_weight == 0 else f", NLL weight {args.sft_weight:g}"
        if (args.dpo_lr, args.dpo_epochs) != (2e-3, 2.0):
            title += f", lr {args.dpo_lr:g} x {args.dpo_epochs:g} epochs"
        write_section(args.section, title, body, command.strip())


if __name__ == "__main__":
    main()
