"""On-policy distillation (issue 18): does labelling the states the student itself visits (DAgger) close the gap
between a student that agrees with its teacher offline and one that prices like it over a 14-day launch?

    .venv/bin/python -m bench.bench_student_dagger [--root runs/bench/student_dagger] [--train 8000] [--steps 1500]
        [--rounds 2] [--round-skus 300] [--round-steps 400] [--ab-skus 120]

One process, 2 shared CPU cores, no hub:

1. the student of ``bench.bench_student`` (same market, split, compact ``[ACT_ONLY]`` prompts, judged teacher labels,
   full fine-tuning), trained ``--steps`` steps: ``sft0``;
2. two arms continue from ``sft0`` for ``--rounds`` rounds of ``--round-steps`` steps each, the same optimiser:
   - ``more steps`` trains on the logged-state labels only (the control: as much training, no new states);
   - ``on-policy`` (``aigp.distillation.on_policy.on_policy_rounds``) lets its current model price a training
     cohort of ``--round-skus`` fresh launches for 14 days (the cohort's own seed, never the A/B's), has the teacher
     label every state it visited (the same ``generate`` + ``judge_filter``), adds them to its set and trains;
3. offline: exact agreement and Spearman with the teacher on the held-out logged prompts, and on the states the
   student visits itself (what each round's rollout measured);
4. a 14-day paired A/B on a fresh cohort: price-sales (control), the teacher, both arms and the oracle.
"""

from __future__ import annotations

import argparse
import json
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
    p.add_argument("--root", type=Path, default=Path("runs/bench/student_dagger"))
    p.add_argument("--skus", type=int, default=2500, help="SKUs in the simulated market log")
    p.add_argument("--train", type=int, default=8000, help="logged prompt rows labelled by the teacher")
    p.add_argument("--test", type=int, default=300, help="held-out logged prompt rows (SKUs disjoint)")
    p.add_argument("--size", default="tiny")
    p.add_argument("--steps", type=int, default=1500, help="SFT steps of the starting student")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--round-skus", type=int, default=300, help="SKUs of each round's training cohort")
    p.add_argument("--round-steps", type=int, default=400, help="SFT steps per round (both arms)")
    p.add_argument("--ab-skus", type=int, default=120)
    p.add_argument("--ab-seed", type=int, default=7)
    p.add_argument("--reviews-chars", type=int, default=160)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true")
    return p.parse_args()


def main() -> None:
    import numpy as np
    import torch

    from aigp.ab.experiment import format_markdown
    from aigp.align.policy import LLMPricingPolicy, PolicyConfig, propose_on_rows
    from aigp.align.sft import SFTStepConfig, run_sft
    from aigp.distillation.distill import DistillConfig, generate, judge_filter
    from aigp.distillation.on_policy import OnPolicyConfig, on_policy_rounds, on_policy_summary, visited_rows
    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.llm.model_factory import build_base_model
    from aigp.llm.parser import parse_action
    from aigp.llm.prompt import PromptConfig, build_prompt
    from aigp.market.config import MarketConfig
    from aigp.market.logs import open_logs, simulate_to_directory
    from bench._report import markdown_table, write_section
    from bench.bench_student import agreement, size_config, split_rows
    from bench.bench_student_dpo import student_ab

    args = parse_args()
    torch.set_num_threads(args.threads)
    root, started, cpu0 = args.root, time.perf_counter(), time.process_time()
    root.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> None:
        timings[name] = time.perf_counter() - t0
        print(f"[{time.perf_counter() - started:6.0f} s] {name}: {timings[name]:.0f} s", flush=True)

    t0 = time.perf_counter()
    market_dir = root / "market"
    if (market_dir / "manifest.json").exists():
        logs = open_logs(market_dir)
    else:
        logs = simulate_to_directory(MarketConfig.build(n_skus=args.skus, launch_days=60, seed=args.seed),
                                     market_dir, overwrite=True)
    train_rows, test_rows, _ = split_rows(logs.path, args.train, args.test, args.seed)
    compact = PromptConfig(act_only=True, compact=True, reviews_max_chars=args.reviews_chars)
    distill_cfg = DistillConfig(n_prompts=None, temperature=0.0, seed=args.seed, prompt=compact)

    def labels(rows: Any) -> list[dict[str, Any]]:
        kept = judge_filter(generate(rows, distill_cfg), distill_cfg).kept
        return [{"prompt": r["prompt"], "completion": r["completion"]} for r in kept]

    teacher = KnowledgeBaseTeacher()

    def teacher_changes(rows: Any) -> np.ndarray:
        return np.array([parse_action(teacher.respond(build_prompt(r, compact), temperature=0.0).text,
                                      float(r["prev_discount"])).discount_change for r in rows.to_dict("records")])

    logged = labels(train_rows)
    lap("market log + teacher labels", t0)

    sft_cfg = SFTStepConfig.build(
        lora={"enabled": False}, act_only_copies=False, validation_share=0.0,
        optim={"learning_rate": args.lr, "batch_size": args.batch, "max_steps": args.steps, "logging_steps": 50,
               "threads": args.threads, "seed": args.seed, "warmup": 0.03})
    round_cfg = sft_cfg.with_updates(optim=sft_cfg.optim.with_updates(max_steps=args.round_steps))
    sft0 = root / "sft0"
    t0 = time.perf_counter()
    if not (sft0 / "config.json").exists():
        _, base_cfg = size_config(args.size)
        corpus = [r["prompt"][0]["content"] + "\n" + r["prompt"][1]["content"] for r in logged[:4000]]
        build_base_model(root / "base", corpus, base_cfg, overwrite=True)
        run_sft(logged, root / "base", sft0, sft_cfg)
    lap(f"SFT {args.steps} steps (sft0)", t0)

    policy_cfg = PolicyConfig.build(prompt=compact.model_dump(), threads=args.threads,
                                    generation={"max_new_tokens": args.max_new_tokens, "batch_size": 32})
    t0 = time.perf_counter()  # the on-policy arm: the library's DAgger loop
    dagger = on_policy_rounds(sft0, logged, root / "on_policy", rounds=args.rounds, cohort=OnPolicyConfig(
        skus=args.round_skus, seed=1_000 + 10 * args.seed), distill=distill_cfg, sft=round_cfg, policy=policy_cfg)
    rounds = [{"round": int(r["round"]), "visited states": int(r["states"]), "labels kept": int(r["labels"]),
               "student = teacher on its own states": r["exact_agreement"], "student mean a": r["mean_student_change"],
               "teacher mean a": r["mean_teacher_change"], "SFT set": int(r["sft_set"])} for r in dagger.rounds]
    lap(f"on-policy arm, {args.rounds} rounds", t0)
    t0 = time.perf_counter()  # the control: as many steps, from the same start, on the logged-state labels only
    arms = {"more steps": sft0, "on-policy": dagger.model_dir}
    for r in range(1, args.rounds + 1):
        out = root / f"more_steps_{r}"
        run_sft(logged, arms["more steps"], out, round_cfg)
        arms["more steps"] = out
    lap(f"more-steps arm, {args.rounds} rounds", t0)

    t0 = time.perf_counter()
    reference = teacher_changes(test_rows)
    final_cohort = OnPolicyConfig(skus=args.round_skus, seed=1_000 + 10 * args.seed + args.rounds + 1)
    offline = []
    for label, model in (("sft0", sft0), *arms.items()):
        out = propose_on_rows(model, test_rows, policy_cfg)
        got = agreement(out["change"].to_numpy(np.float64), reference)
        visited = visited_rows(LLMPricingPolicy(model, policy_cfg, name=label), final_cohort)
        own = on_policy_summary(visited, teacher_changes(visited))
        offline.append({"student": label, "steps": args.steps + (0 if label == "sft0" else args.rounds
                                                                 * args.round_steps),
                        "parse (logged prompts)": float(out["parse_ok"].mean()),
                        "exact (logged prompts)": got["exact"], "Spearman (logged prompts)": got["spearman"],
                        "exact (its own states)": own["exact_agreement"],
                        "own states": int(own["states"])})
        print(offline[-1], flush=True)
    lap("offline + own-state agreement", t0)

    t0 = time.perf_counter()
    ab = student_ab(logs, {"sft0": LLMPricingPolicy(sft0, policy_cfg, name="sft0"),
                           "more_steps": LLMPricingPolicy(arms["more steps"], policy_cfg, name="more_steps"),
                           "on_policy": LLMPricingPolicy(arms["on-policy"], policy_cfg, name="on_policy")},
                    prompt=compact, skus=args.ab_skus, seed=args.seed, cohort_seed=args.ab_seed)
    lap("14-day paired A/B", t0)

    table = ab.table().set_index("group")
    teacher_ci = {m: table.loc["kb_teacher", f"{m}_14d_uplift_ci"] for m in ("gmv", "roi", "mar")}
    inside = []
    for g in ("sft0", "more_steps", "on_policy"):
        row = {"student": g}
        for m in ("gmv", "roi", "mar"):
            u = table.loc[g, f"{m}_14d_uplift"]
            lo, hi = teacher_ci[m]
            row[f"14d {m.upper()} uplift"] = f"{u:+.1%}"
            row[f"inside the teacher's CI [{lo:+.1%}, {hi:+.1%}]"] = "yes" if lo <= u <= hi else "no"
        inside.append(row)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    body = "\n\n".join([
        f"Student: `{args.size}`, compact `[ACT_ONLY]` prompts, {len(logged)} judged teacher labels on logged "
        f"states, {args.steps} SFT steps (batch {args.batch}, lr {args.lr}); then {args.rounds} rounds of "
        f"{args.round_steps} steps per arm. Each on-policy round's cohort: {args.round_skus} fresh launches priced "
        f"by the current student for 14 days (seeds off the A/B's). This run: {wall:.0f} s wall, {cpu:.0f} s CPU, "
        f"{args.threads} torch thread(s) (" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ").",
        "### On-policy rounds\n\n" + markdown_table(rounds),
        "### Agreement with the teacher\n\nLogged prompts: the held-out rows of the log (as `bench.bench_student`). "
        f"Its own states: every decision of a {args.round_skus}-SKU cohort the student priced itself for 14 days "
        "(one cohort, the same for every student), against the teacher's answer to the same state.\n\n"
        + markdown_table(offline),
        "### 14-day paired A/B (every policy prices the same fresh SKUs)\n\n" + format_markdown(ab),
        "### The students against the teacher's 14-day CIs\n\n" + markdown_table(inside),
    ])
    print(body)
    (root / "result.json").write_text(json.dumps({"rounds": rounds, "offline": offline}, default=float))
    if not args.no_write:
        command = "python -m bench.bench_student_dagger " + " ".join(sys.argv[1:])
        write_section("student_dagger", "On-policy distillation: the teacher labels the student's own states "
                      "(issue 18)", body, command.strip())


if __name__ == "__main__":
    main()
