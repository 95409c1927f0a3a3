"""Did DPO learn its pairs? (issue 18) On the prompts of the preference pairs it trained on, the greedy action of the
model after DPO minus before, signed toward each pair's chosen side, split by the direction the pair prefers
(``aigp.align.policy.pair_fit``). Reads a finished variants run — an evaluation's ``<work-dir>/llm/variants`` or
``aigp.align.variants.train_variants``' output: ``candidates/``, ``pairs/``, the starting model and the DPO model.

    .venv/bin/python -m bench.bench_pair_fit [--variants <work-dir>/llm/variants] [--before sft] [--after sft_dpo]

A model that learns its pairs moves toward the chosen action in both directions; one that moves its answers the
same way whatever the pair prefers has learned a shift of the whole policy, not the states.

Could it have? A gradient-boosted classifier (depth 2, 100 trees; 5 folds grouped by SKU, 3 shuffles) predicts
each pair's direction from the numbers of its state: those the compact prompt shows (when the run sampled compact
prompts; the full form shows nearly all) and all of them. A direction the prompt's numbers predict is one the
student could learn.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", type=Path, default=Path("runs/bench/alignment/variants"),
                   help="a variants run (candidates/, pairs/, models); default: bench.bench_alignment's")
    p.add_argument("--before", default="sft", help="the model DPO started from (a folder under --variants; an "
                   "evaluation with on-policy rounds started DPO from ../on_policy/round_<n>)")
    p.add_argument("--after", default="sft_dpo", help="the DPO model (a folder under --variants)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--section", default="pair_fit", help="bench/results section to write")
    p.add_argument("--no-write", action="store_true")
    return p.parse_args()


def compact_prompt_numbers() -> list[str]:
    """The state columns the compact [ACT_ONLY] prompt shows as numbers (``aigp.llm.prompt.COMPACT_*``)."""
    from aigp.llm import prompt

    fields = [f for groups in prompt.COMPACT_SECTIONS.values() for group in groups for f in group]
    return [*fields, *(f"{c}_{w}" for w in prompt.COMPACT_PERF_WINDOWS for c in prompt.COMPACT_PERF_COLUMNS),
            *prompt.COMPACT_PERF_EXTRA]


def direction_auc(pairs: Any, rows: Any, columns: list[str], folds: int, repeats: int = 3) -> float:
    """Cross-validated ROC AUC of predicting whether a pair prefers the higher price from its state's numbers."""
    import numpy as np
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_score

    state = rows.set_index("prompt_id").loc[pairs["prompt_id"].to_numpy()]
    x = state[columns].apply(lambda c: c.astype(float)).fillna(0.0).to_numpy()
    y = (pairs["chosen_change"].to_numpy() > pairs["rejected_change"].to_numpy()).astype(int)
    if min(y.sum(), len(y) - y.sum()) < folds:
        return float("nan")
    scores = [cross_val_score(GradientBoostingClassifier(max_depth=2, n_estimators=100, random_state=k), x, y,
                              cv=StratifiedGroupKFold(folds, shuffle=True, random_state=k),
                              groups=state["sku_id"].to_numpy(), scoring="roc_auc").mean() for k in range(repeats)]
    return float(np.mean(scores))


def fit_rows(fits: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Rows of the pair-fit table, per model (``aigp.align.policy.pair_fit`` output) and direction."""
    return [{"model": model, "pairs": label, "n": int(fit.get(f"{k}_pairs", 0)),
             "moved toward chosen": fit.get(f"{k}_toward"), "moved away": fit.get(f"{k}_away"),
             "mean move toward chosen": fit.get(f"{k}_mean")}
            for model, fit in fits.items()
            for k, label in (("up", "prefer the higher price"), ("down", "prefer the lower price"), ("all", "all"))]


def sign_rows(moves: Any) -> list[dict[str, Any]]:
    """The pair fit by direction and by whether the pair's two answers differ at the minus sign
    (``aigp.align.policy.pair_moves``, summarised by ``fit_summary``): DPO's gradient on a pair lands where its
    answers first differ."""
    from aigp.align.policy import fit_summary

    answers = {True: "opposite signs (differ at the minus sign)", False: "same sign (differ in the digits)"}
    fits = {crossing: fit_summary(moves[moves["crossing"] == crossing]) for crossing in answers}
    return [{"pairs": direction, "answers": answers[crossing], "n": int(fits[crossing][f"{k}_pairs"]),
             "moved toward chosen": fits[crossing].get(f"{k}_toward"), "moved away": fits[crossing].get(f"{k}_away")}
            for k, direction in (("up", "prefer the higher price"), ("down", "prefer the lower price"))
            for crossing in answers]


def main() -> None:
    import pandas as pd
    import torch

    from aigp.align.pairs import PAIRS_TABLE
    from aigp.align.policy import fit_summary, greedy_config, pair_moves
    from aigp.align.sampling import SamplingConfig, read_candidates
    from bench._report import markdown_table, write_section

    args = parse_args()
    torch.set_num_threads(args.threads)
    root = args.variants
    missing = [str(root / p) for p in ("candidates", f"pairs/{PAIRS_TABLE}", args.before, args.after)
               if not (root / p).exists()]
    if missing:
        sys.exit(f"not a finished variants run: missing {', '.join(missing)}")
    started, cpu0 = time.perf_counter(), time.process_time()
    candidates = read_candidates(root / "candidates")
    sampling = SamplingConfig.build(**json.loads((root / "candidates" / "manifest.json").read_text())["config"])
    pairs = pd.read_parquet(root / "pairs" / PAIRS_TABLE)
    greedy = greedy_config(sampling.prompt, sampling.generation, args.threads)
    moves = pair_moves(pairs, candidates.rows, root / args.before, root / args.after, greedy)
    fit = fit_summary(moves)
    every = [c for c in candidates.rows.columns if c not in ("prompt_id", "sku_id")
             and pd.api.types.is_numeric_dtype(candidates.rows[c])]
    shown = [c for c in compact_prompt_numbers() if c in every] if sampling.prompt.compact else every
    auc = [{"state numbers": label, "columns": len(cols), "ROC AUC": direction_auc(pairs, candidates.rows, cols,
                                                                                   args.folds)}
           for label, cols in (("shown in the prompt", shown), ("all", every))
           if label == "all" or sampling.prompt.compact]
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    rows = fit_rows({args.after: fit})
    body = (f"`{root / args.after}` against `{root / args.before}` on the {pairs['prompt_id'].nunique()} prompts of "
            f"its {len(pairs)} pairs (greedy [ACT_ONLY] answers, a move is >= 0.005). {wall:.0f} s wall, {cpu:.0f} s "
            f"CPU, {args.threads} torch thread(s).\n\n" + markdown_table(rows)
            + "\n\nBy where the pair's two answers first differ (the canonical JSON writes a cut with a minus sign, a "
            "rise or hold without one; DPO's gradient on a pair lands on the tokens after the common prefix). "
            f"Greedy answers with a price cut on the pairs' prompts: {100 * fit['negative_before']:.0f}% before, "
            f"{100 * fit['negative_after']:.0f}% after.\n\n" + markdown_table(sign_rows(moves))
            + "\n\nIs a pair's direction predictable from its state? (gradient-boosted trees, cross-validated "
            "over SKUs; "
            f"{int((pairs['chosen_change'] > pairs['rejected_change']).sum())} of {len(pairs)} pairs prefer the "
            "higher price; prompt columns: " + ", ".join(shown) + ")\n\n" + markdown_table(auc))
    print(body)
    if not args.no_write:
        write_section(args.section, "Did DPO learn its pairs? (issue 18: a finished SFT+DPO run on its own pairs)",
                      body, "python -m bench.bench_pair_fit " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
