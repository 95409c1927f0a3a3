"""The paper's alignment variants (Table 3 / Table 5 ablations), wired from the four steps.

- ``base``: the base model, untrained;
- ``sft``: SFT-only (LoRA SFT on the judged teacher set);
- ``sft_dpo``: the method: DPO on [ACT_ONLY] pairs sampled from the SFT model and ranked by the LTVE, with the
  SFT model as the frozen reference;
- ``dpo_only``: the same pairs, DPO applied to the base model (reference = base). The base model writes no
  parsable action to sample from (it has never seen the task), so DPO-only reuses the SFT model's pairs;
- ``fullseq``: DPO on full reasoning + action, no control token: candidates sampled in full-reasoning mode from
  the SFT model, ranked by the LTVE on their parsed action, the sampled texts themselves as completions.

Prompt ablations (``PromptConfig(include_knowledge=False)`` / ``include_diagnosis=False``) are the same
pipeline run with another ``prompt`` in the distillation, sampling and evaluation configs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

from aigp.align.dpo import DPOStepConfig, run_dpo
from aigp.align.generation import GenerationConfig, LoadedModel
from aigp.align.pairs import PairsConfig, PairSet, build_pairs, write_pairs
from aigp.align.policy import greedy_config, pair_fit
from aigp.align.sampling import SamplingConfig, sample_candidates, write_candidates
from aigp.align.sft import SFTStepConfig, run_sft
from aigp.config import StrictConfig
from aigp.io import write_parquet
from aigp.llm.prompt import PromptConfig

VARIANTS = ("base", "sft", "dpo_only", "fullseq", "sft_dpo")
PAIR_TRUTH_TABLE = "truth.parquet"
# (pairs table, state rows) -> (the table with each pair's true return gap, metrics): aigp.ltve.evaluate.pair_truth
PairTruth = Callable[[pd.DataFrame, pd.DataFrame], tuple[pd.DataFrame, dict[str, float]]]
VARIANT_TITLES = {"base": "base", "sft": "SFT-only", "dpo_only": "DPO-only", "fullseq": "FullSeq",
                  "sft_dpo": "SFT+DPO"}


class VariantsConfig(StrictConfig):
    sft: SFTStepConfig = Field(default_factory=SFTStepConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)
    dpo: DPOStepConfig = Field(default_factory=DPOStepConfig)
    fullseq_sampling: SamplingConfig = Field(default_factory=lambda: SamplingConfig(
        n_candidates=4, prompt=PromptConfig(act_only=False),
        generation=GenerationConfig(temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=640, batch_size=16)))
    fullseq_prompts: int = Field(32, ge=1, description="prompts sampled in full-reasoning mode for FullSeq")
    variants: tuple[str, ...] = Field(VARIANTS, description="which variants to train")


@dataclass
class VariantRun:
    models: dict[str, Path] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    artefacts: dict[str, Any] = field(default_factory=dict)


def train_variants(base_model: str | Path, sft_records: list[dict[str, Any]], prompt_rows: pd.DataFrame,
                   ltve: Any, out_root: str | Path, config: VariantsConfig | None = None, *,
                   log: Callable[[str], None] = print, pair_truth: PairTruth | None = None,
                   after_sft: Callable[[Path], Path] | None = None) -> VariantRun:
    """Train the requested variants under ``out_root``; ``prompt_rows`` are the states candidates are sampled on.

    ``pair_truth(pairs, state_rows) -> (table, metrics)`` (on a simulated market: ``aigp.ltve.evaluate.pair_truth``)
    checks each set of preference pairs against the market before DPO trains on it; its metrics join the pairs'
    and its table is written beside them (``truth.parquet``). ``after_sft(sft_model) -> model`` continues training
    from the SFT model (on-policy distillation rounds: ``aigp.distillation.on_policy.on_policy_rounds``); what it
    returns is the SFT-only variant and the model SFT+DPO starts from."""
    cfg = config or VariantsConfig()
    unknown = set(cfg.variants) - set(VARIANTS)
    if unknown:
        raise ValueError(f"unknown variant(s) {sorted(unknown)}; expected some of {VARIANTS}")
    root = Path(out_root)
    run = VariantRun(models={"base": Path(base_model)})
    wanted = set(cfg.variants)
    if wanted <= {"base"}:
        return run
    log("SFT")
    sft = run_sft(sft_records, base_model, root / "sft", cfg.sft)
    sft_model = Path(sft.model_dir) if after_sft is None else Path(after_sft(Path(sft.model_dir)))
    run.models["sft"], run.metrics["sft"] = sft_model, sft.metrics
    if wanted & {"sft_dpo", "dpo_only"}:
        log("sampling [ACT_ONLY] candidates from the SFT model")
        policy = LoadedModel.load(sft_model)
        candidates = sample_candidates(prompt_rows, policy, cfg.sampling)
        write_candidates(root / "candidates", candidates, config=cfg.sampling)
        pairs = build_pairs(candidates.rows, candidates.candidates, ltve, cfg.pairs)
        _check_pairs(pairs, candidates.rows, pair_truth, root / "pairs", log)
        write_pairs(root / "pairs", pairs, config=cfg.pairs)
        run.metrics["sampling"], run.metrics["pairs"] = candidates.metrics, pairs.metrics
        run.artefacts |= {"candidates": candidates, "pairs": pairs}
        for name, start in (("sft_dpo", sft_model), ("dpo_only", Path(base_model))):
            if name not in wanted:
                continue
            if not pairs.records:
                run.notes[name] = "no preference pairs (see pairs metrics)"
                continue
            log(f"DPO: {VARIANT_TITLES[name]}")
            result = run_dpo(pairs.records, start, root / name, cfg.dpo)
            run.models[name], run.metrics[name] = result.model_dir, dict(result.metrics)
            if name == "sft_dpo":  # did DPO learn its pairs, in both directions? (greedy, on their own prompts)
                greedy = greedy_config(cfg.sampling.prompt, cfg.sampling.generation, cfg.sampling.threads)
                fit = pair_fit(pairs.pairs, candidates.rows, sft_model, result.model_dir, greedy)
                run.metrics[name] |= {f"dpo/fit_{k}": v for k, v in fit.items()}
    if "fullseq" in wanted:
        log("sampling full-reasoning candidates from the SFT model (FullSeq)")
        full_cfg = cfg.fullseq_sampling
        if full_cfg.prompt.act_only:
            raise ValueError("fullseq_sampling.prompt.act_only must be false: FullSeq has no control token")
        rows = prompt_rows.head(cfg.fullseq_prompts)
        candidates = sample_candidates(rows, LoadedModel.load(sft_model), full_cfg)
        pairs_cfg = cfg.pairs.with_updates(completion="sample")
        pairs = build_pairs(candidates.rows, candidates.candidates, ltve, pairs_cfg)
        _check_pairs(pairs, candidates.rows, pair_truth, root / "fullseq_pairs", log)
        write_pairs(root / "fullseq_pairs", pairs, config=pairs_cfg)
        run.metrics["fullseq_sampling"], run.metrics["fullseq_pairs"] = candidates.metrics, pairs.metrics
        if pairs.records:
            log("DPO: FullSeq")
            result = run_dpo(pairs.records, sft_model, root / "fullseq", cfg.dpo)
            run.models["fullseq"], run.metrics["fullseq"] = result.model_dir, result.metrics
        else:
            run.notes["fullseq"] = (f"no pairs: {int(candidates.candidates['kept'].sum())} of "
                                    f"{len(candidates.candidates)} full-reasoning samples parsed inside A_safe")
    return run


def _check_pairs(pairs: PairSet, rows: pd.DataFrame, pair_truth: PairTruth | None, out: Path,
                 log: Callable[[str], None]) -> None:
    if pair_truth is None or pairs.pairs.empty:
        return
    table, metrics = pair_truth(pairs.pairs, rows)
    pairs.metrics.update(metrics)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / PAIR_TRUTH_TABLE, table)
    log(f"pairs agree with the market's truth on {metrics['pairs/truth_agreement']:.0%} of "
        f"{metrics['pairs/truth_pairs']:.0f}")
