"""Did DPO learn its pairs? (issue 18) On the prompts of the preference pairs it trained on, the greedy action of the
model after DPO minus before, signed toward each pair's chosen side, split by the direction the pair prefers
(``aigp.align.policy.pair_fit``). Reads a finished variants run — an evaluation's ``<work-dir>/llm/variants`` or
``aigp.align.variants.train_variants``' output: ``candidates/``, ``pairs/``, the starting model and the DPO model.

    .venv/bin/python -m bench.bench_pair_fit [--variants <work-dir>/llm/variants] [--before sft] [--after sft_dpo]

A model that learns its pairs moves toward the chosen action in both directions; one that moves its answers the
same way whatever the pair prefers has learned a shift of the whole policy, not the states.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", type=Path, default=Path("runs/bench/alignment/variants"),
                   help="a variants run (candidates/, pairs/, models); default: bench.bench_alignment's")
    p.add_argument("--before", default="sft", help="the model DPO started from (a folder under --variants)")
    p.add_argument("--after", default="sft_dpo", help="the DPO model (a folder under --variants)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--section", default="pair_fit", help="bench/results section to write")
    p.add_argument("--no-write", action="store_true")
    return p.parse_args()


def main() -> None:
    import pandas as pd
    import torch

    from aigp.align.generation import GenerationConfig
    from aigp.align.pairs import PAIRS_TABLE
    from aigp.align.policy import PolicyConfig, pair_fit
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
    greedy = PolicyConfig(prompt=sampling.prompt, threads=args.threads,
                          generation=GenerationConfig(max_new_tokens=sampling.generation.max_new_tokens,
                                                      batch_size=sampling.generation.batch_size))
    fit = pair_fit(pairs, candidates.rows, root / args.before, root / args.after, greedy)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    rows = [{"pairs": label, "n": int(fit.get(f"{k}_pairs", 0)), "moved toward chosen": fit.get(f"{k}_toward"),
             "moved away": fit.get(f"{k}_away"), "mean move toward chosen": fit.get(f"{k}_mean")}
            for k, label in (("up", "prefer the higher price"), ("down", "prefer the lower price"), ("all", "all"))]
    body = (f"`{root / args.after}` against `{root / args.before}` on the {pairs['prompt_id'].nunique()} prompts of "
            f"its {len(pairs)} pairs (greedy [ACT_ONLY] answers, a move is >= 0.005). {wall:.0f} s wall, {cpu:.0f} s "
            f"CPU, {args.threads} torch thread(s).\n\n" + markdown_table(rows))
    print(body)
    if not args.no_write:
        write_section(args.section, "Did DPO learn its pairs? (issue 18: a finished SFT+DPO run on its own pairs)",
                      body, "python -m bench.bench_pair_fit " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
