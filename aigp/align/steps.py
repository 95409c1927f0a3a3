"""The four alignment steps from paths to paths, as the CLI (``aigp train``) and the KFP components call them.

Each step reads its inputs, runs the library function, writes its outputs and a metrics JSON atomically, and,
when a ``tracker`` is given, runs inside it: ``tracker(run_name, config)`` is a context manager yielding a metrics
callback (the platform's MLflow tracker is ``aigp.registry.tracking.step_tracker(experiment)``; the core does not
import MLflow).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from aigp.align.dpo import DPOResult, DPOStepConfig, run_dpo
from aigp.align.pairs import PairsConfig, PairSet, build_pairs, read_pair_records, write_pairs
from aigp.align.sampling import Candidates, SamplingConfig, read_candidates, sample_candidates, write_candidates
from aigp.align.sft import SFTResult, SFTStepConfig, run_sft
from aigp.align.training import MetricsCallback
from aigp.io import write_json

StepTracker = Callable[[str, Any], AbstractContextManager[MetricsCallback | None]]
"""``tracker(run_name, config)``: a context manager around one step that yields a metrics callback."""


def tracking(tracker: StepTracker | None, run_name: str, config: Any) -> AbstractContextManager[MetricsCallback | None]:
    return tracker(run_name, config) if tracker is not None else contextlib.nullcontext()


def sft_step(distillation_set: str | Path, base_model: str | Path, out: str | Path,
             config: SFTStepConfig | None = None, *, tracker: StepTracker | None = None) -> SFTResult:
    from aigp.distillation.distill import sft_records

    cfg = config or SFTStepConfig()
    records = sft_records(distillation_set)
    with tracking(tracker, "sft", cfg) as log:
        return run_sft(records, base_model, out, cfg, callback=log)


def sample_step(policy_model: str | Path, prompt_rows: str | Path, out: str | Path,
                config: SamplingConfig | None = None, *, tracker: StepTracker | None = None) -> Candidates:
    from aigp.llm.rows import load_prompt_rows

    cfg = config or SamplingConfig()
    rows = load_prompt_rows(prompt_rows, n=cfg.n_prompts, seed=cfg.seed)
    with tracking(tracker, "sample_candidates", cfg) as log:
        result = sample_candidates(rows, policy_model, cfg)
        write_candidates(out, result, config=cfg, source={"policy_model": str(policy_model),
                                                         "prompt_rows": str(prompt_rows)})
        if log is not None:
            log(None, result.metrics)
    return result


def pairs_step(candidates: str | Path, ltve_model: str | Path, out: str | Path,
               config: PairsConfig | None = None, *, tracker: StepTracker | None = None) -> PairSet:
    from aigp.ltve.artifact import load_model

    cfg = config or PairsConfig()
    sampled = read_candidates(candidates)
    with tracking(tracker, "build_pairs", cfg) as log:
        result = build_pairs(sampled.rows, sampled.candidates, load_model(ltve_model), cfg)
        write_pairs(out, result, config=cfg)
        if log is not None:
            log(None, result.metrics)
    return result


def dpo_step(pairs: str | Path, policy_model: str | Path, out: str | Path, config: DPOStepConfig | None = None,
             *, tracker: StepTracker | None = None) -> DPOResult:
    cfg = config or DPOStepConfig()
    records = read_pair_records(pairs)
    with tracking(tracker, "dpo", cfg) as log:
        return run_dpo(records, policy_model, out, cfg, callback=log)


def write_metrics(path: str | Path, metrics: Mapping[str, float]) -> Path:
    return write_json(path, dict(metrics))
