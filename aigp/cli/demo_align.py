"""`aigp demo` stage: alignment (SFT -> [ACT_ONLY] candidates -> LTVE-ranked pairs -> DPO) on a demo-sized slice.

Sized for ~4 minutes on 2 CPU cores with the `small` model: SFT on the [ACT_ONLY] twins of 96 judged teacher
responses (full fine-tuning: the demo's base model is randomly initialised, and LoRA on it does not learn the
answer format in minutes; full-reasoning SFT costs ~1.3k tokens per example), 24 prompts x 4 candidates, DPO
(LoRA, with an NLL term on the chosen action and the parse-rate guard of ``aigp.align.dpo``) for one epoch; the
two models then price 16 logged decisions in [ACT_ONLY] mode.
``bench/bench_alignment.py`` runs the full comparison.
"""

from __future__ import annotations

from typing import Any


def stage_align(ctx: dict[str, Any]) -> str:
    import numpy as np

    from aigp.align.policy import PolicyConfig, act_only_config, propose_on_rows
    from aigp.align.training import ALL_LINEAR_MODULES
    from aigp.align.variants import VariantsConfig, train_variants
    from aigp.cli._common import console
    from aigp.llm.distill import sft_records
    from aigp.llm.rows import load_prompt_rows
    from aigp.ltve.artifact import load_model

    ltve = load_model(ctx["ltve"])
    logs = ctx["logs"]
    seed = ctx["seed"]
    cfg = VariantsConfig.build(
        sft={"optim": {"epochs": 2.5, "learning_rate": 3e-3, "batch_size": 2, "logging_steps": 10},
             "max_examples": ctx.get("align_sft_examples", 96), "eval_steps": 20, "lora": {"enabled": False},
             "max_full_examples": 0},
        sampling={"n_candidates": 4, "generation": {"temperature": 0.7, "top_k": 50, "top_p": 0.95,
                                                    "max_new_tokens": 32, "batch_size": 12, "seed": seed}},
        pairs={"delta_q": 0.01, "delta_a": 0.02},
        # NLL term on the chosen action + parse-rate guard: blind DPO at this rate destroys the answer format
        dpo={"sft_weight": 1.0, "guard": {"enabled": True},
             "optim": {"epochs": 1.0, "learning_rate": 2e-3, "batch_size": 8, "logging_steps": 5},
             "lora": {"r": 16, "alpha": 32, "target_modules": ALL_LINEAR_MODULES}},
        variants=("sft", "sft_dpo"),
    )
    rows = load_prompt_rows(logs.path, n=ctx.get("align_prompts", 24), seed=seed + 3)
    run = train_variants(ctx["base_model"], sft_records(ctx["distill"].out_dir), rows, ltve, ctx["root"] / "align",
                         cfg, log=console.print)
    ctx["align"] = run
    held = load_prompt_rows(logs.path, n=16, seed=seed + 4)
    policy = act_only_config(PolicyConfig(generation={"batch_size": 16}), max_new_tokens=32)
    parts = []
    for name in ("sft", "sft_dpo"):
        if name not in run.models:
            parts.append(f"{name}: {run.notes.get(name, 'not trained')}")
            continue
        out = propose_on_rows(run.models[name], held, policy)
        q = ltve.q_values(held, out["change"].to_numpy(np.float32)[:, None])[:, 0]
        parts.append(f"{name}: avg Q {q.mean():.3f}, parse failures {(~out['parse_ok']).mean():.0%}")
    pairs = run.metrics.get("pairs", {})
    return (f"SFT loss {run.metrics['sft'].get('sft/first_loss', float('nan')):.2f} -> "
            f"{run.metrics['sft'].get('sft/last_loss', float('nan')):.2f}; {pairs.get('pairs/pairs', 0):.0f} pairs; "
            + "; ".join(parts) + f" -> {ctx['root'] / 'align'}")
