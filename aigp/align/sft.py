"""Supervised fine-tuning on the judged distillation set (paper §3.2): TRL ``SFTTrainer`` + PEFT LoRA.

Prompt/completion conversational records give a completion-only loss (the prompt tokens are masked), the
learning rate follows a cosine schedule with warm-up, gradients are clipped, a seeded validation split drives
early stopping (the best checkpoint by validation loss is kept), and bf16 is used where a GPU supports it.
``max_length`` is the longest example, checked against the model's context, so nothing is truncated.

Output: the merged model in ``out`` (loadable like any HF model), the adapter in ``out/adapter``, metrics in
``out/metrics.json`` and the lineage in ``out/aigp_align.json``.
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


class SFTStepConfig(StrictConfig):
    """LoRA SFT. Defaults suit the ``small`` base model on CPU (paper: lr 5e-5, 2 epochs on a 30B model)."""

    lora: LoraSettings = Field(default_factory=LoraSettings)
    optim: OptimSettings = Field(default_factory=lambda: OptimSettings(learning_rate=2e-3, epochs=2.0))
    validation_share: float = Field(0.1, ge=0.0, lt=0.5, description="held-out share for early stopping (0 = none)")
    eval_steps: int = Field(20, ge=1, description="validate every this many optimiser steps")
    patience: int = Field(3, ge=1, description="validations without improvement before stopping")
    max_examples: int | None = Field(None, ge=2, description="use at most this many records (seeded sample)")
    max_full_examples: int | None = Field(None, ge=0, description="keep at most this many full-reasoning records "
                                          "(seeded; their [ACT_ONLY] twins are made from all records); 0 = train the "
                                          "[ACT_ONLY] mode only (a budget that cannot afford full sequences)")
    act_only_copies: bool = Field(True, description="also train the [ACT_ONLY] mode: each full-reasoning record "
                                  "once more with the [ACT_ONLY] prompt and its judged JSON action only (what "
                                  "sampling and DPO use; a small model does not follow the control token untaught)")


@dataclass(frozen=True)
class SFTResult:
    model_dir: Path
    metrics: dict[str, float]
    history: list[dict[str, float]]


def split_records(records: Sequence[Mapping[str, Any]], share: float, seed: int) -> tuple[list, list]:
    """(train, validation): a seeded shuffle; at least one validation record when ``share`` > 0."""
    items = [dict(r) for r in records]
    random.Random(seed).shuffle(items)
    n_val = 0 if share <= 0 else max(1, round(share * len(items)))
    if n_val >= len(items):
        raise ValueError(f"{len(items)} records leave nothing to train on with validation_share={share}")
    return items[n_val:], items[:n_val]


def act_only_record(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The [ACT_ONLY] twin of a full-reasoning record: same prompt content with the act-only task and control
    token, the completion reduced to the record's JSON action (None when the record is not a full one)."""
    from aigp.distillation.teacher import format_discount
    from aigp.llm.parser import last_json_object
    from aigp.llm.prompt import PromptConfig, task_text

    messages = [dict(m) for m in record["prompt"]]
    user = messages[-1]["content"]
    for include_knowledge in (True, False):
        full = task_text(PromptConfig(include_knowledge=include_knowledge))
        if user.endswith(full):
            act = task_text(PromptConfig(act_only=True, include_knowledge=include_knowledge))
            messages[-1]["content"] = user[: -len(full)] + act
            break
    else:
        return None
    obj, _ = last_json_object(record["completion"][-1]["content"])
    if obj is None or "discount_change" not in obj or "new_discount" not in obj:
        return None
    text = (f'{{"discount_change": {float(obj["discount_change"]):.2f}, '
            f'"new_discount": {format_discount(float(obj["new_discount"]))}}}')
    return {"prompt": messages, "completion": [{"role": "assistant", "content": text}]}


def with_act_only_copies(records: Sequence[Mapping[str, Any]], max_full: int | None = None,
                         seed: int = 0) -> list[dict[str, Any]]:
    """The records (at most ``max_full`` of them, seeded) followed by the [ACT_ONLY] twins of all of them."""
    full = [dict(r) for r in records]
    if max_full is not None and len(full) > max_full:
        full = random.Random(seed).sample(full, max_full)
    return full + [twin for twin in (act_only_record(r) for r in records) if twin is not None]


def validate_records(records: Sequence[Mapping[str, Any]]) -> None:
    if not records:
        raise ValueError("the SFT set is empty: no kept teacher responses")
    for i, r in enumerate(records):
        for key in ("prompt", "completion"):
            if not isinstance(r.get(key), list) or not r[key]:
                raise ValueError(f"SFT record {i}: {key!r} must be a non-empty list of chat messages")


def run_sft(records: Sequence[Mapping[str, Any]], base_model: str | Path, out_dir: str | Path,
            config: SFTStepConfig | None = None, *, callback: MetricsCallback | None = None) -> SFTResult:
    """LoRA SFT of ``base_model`` on prompt/completion ``records``; see the module docstring."""
    from datasets import Dataset
    from transformers import AutoTokenizer, EarlyStoppingCallback
    from trl import SFTConfig, SFTTrainer

    from aigp.align.generation import set_threads
    from aigp.llm.model_factory import resolve_model

    cfg = config or SFTStepConfig()
    validate_records(records)
    set_threads(cfg.optim.threads)
    base = resolve_model(base_model)
    records = list(records)
    if cfg.max_examples is not None and len(records) > cfg.max_examples:
        records = random.Random(cfg.optim.seed).sample(records, cfg.max_examples)
    train, val = split_records(records, cfg.validation_share, cfg.optim.seed)
    if cfg.act_only_copies:  # after the split, so a prompt and its twin are on the same side
        train, val = (with_act_only_copies(part, cfg.max_full_examples, cfg.optim.seed) for part in (train, val))
        records = train + val
    elif cfg.max_full_examples == 0:
        raise ValueError("max_full_examples=0 leaves nothing to train without act_only_copies")
    tokenizer = AutoTokenizer.from_pretrained(base)
    lengths = sequence_tokens(tokenizer, [r["prompt"] for r in records], [r["completion"] for r in records])
    longest = check_context(lengths, base, "SFT")
    out = Path(out_dir)
    work = out.with_name(out.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    args = cfg.optim.training_args(work) | {"max_length": longest, "completion_only_loss": True}
    callbacks = [metrics_callback(callback, "sft")]
    if val:
        args |= {"eval_strategy": "steps", "eval_steps": cfg.eval_steps, "save_strategy": "steps",
                 "save_steps": cfg.eval_steps, "save_total_limit": 2, "load_best_model_at_end": True,
                 "metric_for_best_model": "eval_loss", "greater_is_better": False, "save_only_model": True}
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.patience))
    else:
        args |= {"save_strategy": "no", "eval_strategy": "no"}
    trainer = SFTTrainer(
        model=base, processing_class=tokenizer, args=SFTConfig(**args), peft_config=cfg.lora.peft(),
        train_dataset=Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in train]),
        eval_dataset=Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in val])
        if val else None,
        callbacks=callbacks,
    )
    clock = Stopwatch()
    output = trainer.train()
    seconds = clock.seconds
    history = callbacks[0].history
    metrics = training_metrics(trainer, output, history, lengths, len(train), len(val), seconds, "sft")
    if val:
        metrics["sft/eval_loss_final"] = float(trainer.evaluate()["eval_loss"])
    if callback is not None:
        callback(None, metrics)
    step = {"step": "sft", "base_model": str(base), "config": cfg.model_dump(mode="json"),
            "train_examples": len(train), "validation_examples": len(val)}
    model_dir = save_trained(trainer.model, tokenizer, out, source_model=base, step=step, metrics=metrics)
    shutil.rmtree(work, ignore_errors=True)
    return SFTResult(model_dir, metrics, history)


def training_metrics(trainer: Any, output: Any, history: list[dict[str, float]], lengths: Sequence[int],
                     n_train: int, n_val: int, seconds: float, prefix: str) -> dict[str, float]:
    """Loss at the start/end, steps, examples and training tokens per second (forward + backward)."""
    losses = [h[f"{prefix}/loss"] for h in history if f"{prefix}/loss" in h]
    evals = [h[f"{prefix}/eval_loss"] for h in history if f"{prefix}/eval_loss" in h]
    steps = int(trainer.state.global_step)
    batch = trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
    mean_len = sum(lengths) / max(len(lengths), 1)
    examples_seen = min(steps * batch, int(trainer.state.num_train_epochs * n_train) or steps * batch)
    tokens = examples_seen * mean_len
    metrics = {
        f"{prefix}/train_examples": float(n_train), f"{prefix}/validation_examples": float(n_val),
        f"{prefix}/steps": float(steps), f"{prefix}/epochs": float(trainer.state.epoch or 0.0),
        f"{prefix}/train_loss": float(output.training_loss), f"{prefix}/seconds": seconds,
        f"{prefix}/mean_sequence_tokens": mean_len, f"{prefix}/max_sequence_tokens": float(max(lengths)),
        f"{prefix}/train_tokens": tokens, f"{prefix}/tokens_per_s": tokens / max(seconds, 1e-9),
    }
    if losses:
        metrics |= {f"{prefix}/first_loss": losses[0], f"{prefix}/last_loss": losses[-1]}
    if evals:
        metrics |= {f"{prefix}/first_eval_loss": evals[0], f"{prefix}/best_eval_loss": min(evals)}
    return metrics
