"""Direct Preference Optimisation on LTVE-ranked pairs (paper §3.4): TRL ``DPOTrainer`` + PEFT LoRA.

The reference is the frozen starting policy with no second model copy: the trainer gets a LoRA
``peft_config`` and ``ref_model=None``, so the reference log-probabilities come from the same weights with the
adapter disabled. Start from the SFT model for the method (reference = SFT), from the base model for the
DPO-only ablation (reference = base). β = 0.1 by default. ``[ACT_ONLY]`` pairs have one-message completions
holding only the JSON action, so the loss covers exactly the action tokens (and the end-of-turn token);
``max_length`` is the longest prompt + completion in the data, checked against the model's context, because
TRL cuts sequences from the end (the action) otherwise.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from aigp.align.training import (
    LoraSettings,
    MetricsCallback,
    OptimSettings,
    Stopwatch,
    check_context,
    metrics_callback,
    save_trained,
    sequence_tokens,
)
from aigp.config import StrictConfig


class DPOStepConfig(StrictConfig):
    """DPO. Defaults suit the ``small`` model on CPU (paper: β 0.1, lr 1e-5, 3 epochs on a 30B model)."""

    beta: float = Field(0.1, gt=0, description="KL strength of the implicit reward")
    lora: LoraSettings = Field(default_factory=LoraSettings)
    optim: OptimSettings = Field(default_factory=lambda: OptimSettings(learning_rate=5e-4, epochs=3.0,
                                                                       batch_size=8))
    max_pairs: int | None = Field(None, ge=1, description="use at most this many pairs (seeded sample)")


@dataclass(frozen=True)
class DPOResult:
    model_dir: Path
    metrics: dict[str, float]
    history: list[dict[str, float]]


def validate_pairs(records: Sequence[Mapping[str, Any]]) -> None:
    if not records:
        raise ValueError("no preference pairs: lower PairsConfig.delta_q / delta_a or sample more candidates")
    for i, r in enumerate(records):
        for key in ("prompt", "chosen", "rejected"):
            if not isinstance(r.get(key), list) or not r[key]:
                raise ValueError(f"pair {i}: {key!r} must be a non-empty list of chat messages")


def dpo_trainer(records: Sequence[Mapping[str, Any]], policy_model: str | Path, work_dir: str | Path,
                config: DPOStepConfig, *, callback: MetricsCallback | None = None) -> tuple[Any, Any, list[int]]:
    """(trainer, tokenizer, sequence lengths): the configured TRL DPOTrainer, not yet trained."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from aigp.llm.model_factory import resolve_model

    validate_pairs(records)
    if not config.lora.enabled:
        raise ValueError("DPO needs lora.enabled=true: the reference is the policy with its adapter disabled")
    path = resolve_model(policy_model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = [r["prompt"] for r in records]
    lengths = sequence_tokens(tokenizer, prompts + prompts, [r["chosen"] for r in records]
                              + [r["rejected"] for r in records])
    longest = check_context(lengths, path, "DPO")
    args = config.optim.training_args(work_dir) | {"beta": config.beta, "max_length": longest,
                                                   "save_strategy": "no", "eval_strategy": "no"}
    trainer = DPOTrainer(
        model=path, ref_model=None, processing_class=tokenizer, args=DPOConfig(**args),
        train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in records]),
        peft_config=config.lora.peft(), callbacks=[metrics_callback(callback, "dpo")],
    )
    return trainer, tokenizer, lengths


def run_dpo(records: Sequence[Mapping[str, Any]], policy_model: str | Path, out_dir: str | Path,
            config: DPOStepConfig | None = None, *, callback: MetricsCallback | None = None) -> DPOResult:
    """DPO of ``policy_model`` (reference = itself, frozen) on ``records``; see the module docstring."""
    from aigp.align.generation import set_threads
    from aigp.llm.model_factory import resolve_model

    cfg = config or DPOStepConfig()
    set_threads(cfg.optim.threads)
    records = list(records)
    if cfg.max_pairs is not None and len(records) > cfg.max_pairs:
        records = random.Random(cfg.optim.seed).sample(records, cfg.max_pairs)
    out = Path(out_dir)
    work = out.with_name(out.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    trainer, tokenizer, lengths = dpo_trainer(records, policy_model, work, cfg, callback=callback)
    clock = Stopwatch()
    output = trainer.train()
    seconds = clock.seconds
    history = _history(trainer)
    metrics = dpo_metrics(trainer, output, history, lengths, len(records), seconds)
    if callback is not None:
        callback(None, metrics)
    step = {"step": "dpo", "policy_model": str(resolve_model(policy_model)), "reference": "policy_model (frozen, "
            "adapter disabled)", "config": cfg.model_dump(mode="json"), "pairs": len(records)}
    model_dir = save_trained(trainer.model, tokenizer, out, source_model=resolve_model(policy_model), step=step,
                             metrics=metrics)
    shutil.rmtree(work, ignore_errors=True)
    return DPOResult(model_dir, metrics, history)


def _history(trainer: Any) -> list[dict[str, float]]:
    for cb in trainer.callback_handler.callbacks:
        if hasattr(cb, "history"):
            return list(cb.history)
    return []


def dpo_metrics(trainer: Any, output: Any, history: list[dict[str, float]], lengths: Sequence[int], n_pairs: int,
                seconds: float) -> dict[str, float]:
    """Loss, reward accuracy and margins at the start and end, and training tokens per second (each pair
    is two sequences through the policy, plus two reference passes without gradients)."""
    steps = int(trainer.state.global_step)
    batch = trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
    pairs_seen = min(steps * batch, round(trainer.state.num_train_epochs * n_pairs) or steps * batch)
    mean_pair_tokens = 2 * sum(lengths) / max(len(lengths), 1)
    tokens = pairs_seen * mean_pair_tokens
    out = {"dpo/pairs": float(n_pairs), "dpo/steps": float(steps), "dpo/epochs": float(trainer.state.epoch or 0.0),
           "dpo/train_loss": float(output.training_loss), "dpo/seconds": seconds,
           "dpo/mean_sequence_tokens": sum(lengths) / max(len(lengths), 1),
           "dpo/max_sequence_tokens": float(max(lengths)), "dpo/train_tokens": tokens,
           "dpo/tokens_per_s": tokens / max(seconds, 1e-9)}
    for key in ("loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected"):
        values = [h[f"dpo/{key}"] for h in history if f"dpo/{key}" in h]
        if values:
            name = key.replace("/", "_")
            out[f"dpo/first_{name}"] = values[0]
            out[f"dpo/last_{name}"] = values[-1]
    return out
