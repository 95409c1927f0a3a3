"""Direct Preference Optimisation on LTVE-ranked pairs (paper §3.4): TRL ``DPOTrainer`` + PEFT LoRA.

The reference is the frozen starting policy with no second model copy: the trainer gets a LoRA
``peft_config`` and ``ref_model=None``, so the reference log-probabilities come from the same weights with the
adapter disabled. Start from the SFT model for the method (reference = SFT), from the base model for the
DPO-only ablation (reference = base). β = 0.1 by default. ``[ACT_ONLY]`` pairs have one-message completions
holding only the JSON action, so the loss covers exactly the action tokens (and the end-of-turn token);
``max_length`` is the longest prompt + completion in the data, checked against the model's context, because
TRL cuts sequences from the end (the action) otherwise.

DPO can destroy the answer format while its loss still falls: on the CPU-sized models, all-linear LoRA at a
learning rate of 2e-3 drove both the chosen and the rejected log-probabilities down (rewards -1.8 / -1.9) and the
SFT+DPO model wrote ``0.0000.0.0.…`` for every prompt (EVALUATION.md, reduced run). Two defences, both on by
default:

- ``sft_weight``: an NLL term on the chosen completion added to the DPO loss (RPO, Pang et al. 2024; TRL 1.16's
  ``loss_type=["sigmoid", "sft"]`` with ``loss_weights=[1, sft_weight]``), which keeps the chosen answers likely;
- ``guard`` (:class:`ParseGuardSettings`): a few distinct pair prompts are held out of training, and the policy
  answers them greedily before training and every ``every_steps`` steps. When its parse rate falls below the
  starting model's by more than ``margin``, training stops and the adapter of the last check within the margin
  is restored, so the saved model writes the format at least as well as the start minus the margin. Every check
  is recorded in the metrics (``dpo/guard_*``).
"""

from __future__ import annotations

import json
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


class ParseGuardSettings(StrictConfig):
    """The parse-rate guard (module docstring). It checks only short completions ([ACT_ONLY] actions): a
    full-reasoning answer (FullSeq) costs hundreds of generated tokens per prompt and check."""

    enabled: bool = Field(True, description="false: train blind (the reduced evaluation's DPO collapse)")
    prompts: int = Field(12, ge=1, description="distinct pair prompts held out of training and answered greedily "
                         "at every check (from training prompts when fewer than twice this many exist)")
    every_steps: int = Field(5, ge=1, description="optimizer steps between checks (and one after the last step)")
    margin: float = Field(0.2, ge=0.0, le=1.0, description="stop when the parse rate falls below the starting "
                          "model's minus this; the last checkpoint within it is kept")
    max_new_tokens: int = Field(48, ge=1, description="the guard runs only when every chosen completion fits in "
                                "this many tokens")


class DPOStepConfig(StrictConfig):
    """DPO. Defaults suit the ``small`` model on CPU (paper: β 0.1, lr 1e-5, 3 epochs on a 30B model)."""

    beta: float = Field(0.1, gt=0, description="KL strength of the implicit reward")
    sft_weight: float = Field(1.0, ge=0.0, description="weight of the NLL term on the chosen completion (RPO); "
                              "0 = plain DPO")
    guard: ParseGuardSettings = Field(default_factory=ParseGuardSettings)
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
        raise ValueError("no preference pairs: lower PairsConfig.delta_q / delta_a or sample more candidates (when "
                         "the pairs metrics show pairs/dropped_by_balancing > 0, every pair crossing zero chose the "
                         "same sign: balance_sign: false keeps them)")
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
    if config.sft_weight > 0:
        args |= {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, config.sft_weight]}
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
    train, guard_records, held_out = split_guard_prompts(records, cfg.guard, cfg.optim.seed)
    out = Path(out_dir)
    work = out.with_name(out.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    trainer, tokenizer, lengths = dpo_trainer(train, policy_model, work, cfg, callback=callback)
    guard = ParseGuard.build(guard_records, tokenizer, cfg.guard, held_out=held_out)
    if guard.active:
        trainer.add_callback(guard.callback())
    clock = Stopwatch()
    output = trainer.train()
    guard.restore(trainer.model)
    seconds = clock.seconds
    history = _history(trainer)
    metrics = dpo_metrics(trainer, output, history, lengths, len(train), seconds) | guard.metrics()
    if callback is not None:
        callback(None, metrics)
    step = {"step": "dpo", "policy_model": str(resolve_model(policy_model)), "reference": "policy_model (frozen, "
            "adapter disabled)", "config": cfg.model_dump(mode="json"), "pairs": len(train),
            "guard": guard.summary()}
    model_dir = save_trained(trainer.model, tokenizer, out, source_model=resolve_model(policy_model), step=step,
                             metrics=metrics)
    shutil.rmtree(work, ignore_errors=True)
    return DPOResult(model_dir, metrics, history)


def split_guard_prompts(records: Sequence[Mapping[str, Any]], guard: ParseGuardSettings,
                        seed: int) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]], bool]:
    """(training pairs, one pair per guard prompt, held out?): ``guard.prompts`` distinct prompts (seeded) and all
    their pairs leave the training set when at least twice as many distinct prompts exist; otherwise the guard
    asks the first ``guard.prompts`` training prompts (recorded as not held out)."""
    records = list(records)
    if not guard.enabled:
        return records, [], False
    by_prompt: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        by_prompt.setdefault(json.dumps(r["prompt"], sort_keys=True), []).append(r)
    keys = list(by_prompt)
    if len(keys) >= 2 * guard.prompts:
        chosen = set(random.Random(seed).sample(keys, guard.prompts))
        train = [r for k in keys if k not in chosen for r in by_prompt[k]]
        return train, [by_prompt[k][0] for k in keys if k in chosen], True
    return records, [by_prompt[k][0] for k in keys[:guard.prompts]], False


def _completion_text(messages: Sequence[Mapping[str, Any]]) -> str:
    return "".join(str(m.get("content", "")) for m in messages)


def _prev_discount(chosen: str) -> float:
    """The discount in effect, from the chosen JSON (``new_discount - discount_change``); Ψ's parse/fallback
    decision does not depend on it, so list price stands in when the chosen text does not say."""
    from aigp.action import MAX_DISCOUNT, MIN_DISCOUNT
    from aigp.llm.parser import last_json_object

    obj, _ = last_json_object(chosen)
    try:
        prev = float(obj["new_discount"]) - float(obj["discount_change"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return MAX_DISCOUNT
    return prev if MIN_DISCOUNT <= prev <= MAX_DISCOUNT else MAX_DISCOUNT


def guard_parse_rate(model: Any, tokenizer: Any, prompts: Sequence[Any], prev_discounts: Sequence[float],
                     max_new_tokens: int) -> float:
    """Share of greedy answers Ψ parses (``aigp.llm.parser.parse_action`` without fallback)."""
    from aigp.align.generation import GenerationConfig, LoadedModel, generate
    from aigp.llm.parser import parse_action

    was_training = model.training
    model.eval()
    try:
        texts = generate(LoadedModel(model, tokenizer, ""), prompts,
                         GenerationConfig(temperature=0.0, max_new_tokens=max_new_tokens, batch_size=len(prompts)))
    finally:
        if was_training:
            model.train()
    return sum(not parse_action(t, p).fallback for (t,), p in zip(texts, prev_discounts, strict=True)) / len(texts)


class ParseGuard:
    """The parse-rate guard as a transformers callback (see the module docstring); built by :meth:`build`."""

    def __init__(self, settings: ParseGuardSettings, tokenizer: Any, prompts: list[Any], prevs: list[float],
                 max_new_tokens: int, *, held_out: bool, skipped: str = ""):
        self.settings, self.tokenizer, self.prompts, self.prevs = settings, tokenizer, prompts, prevs
        self.max_new_tokens, self.held_out, self.skipped = max_new_tokens, held_out, skipped
        self.checks: list[tuple[int, float]] = []  # (step, parse rate)
        self.start_rate: float | None = None
        self.kept: tuple[int, float] | None = None
        self.snapshot: dict[str, Any] | None = None
        self.stopped_at: int | None = None

    @classmethod
    def build(cls, guard_records: Sequence[Mapping[str, Any]], tokenizer: Any, settings: ParseGuardSettings, *,
              held_out: bool) -> Any:
        if not settings.enabled or not guard_records:
            return cls(settings, tokenizer, [], [], 0, held_out=False, skipped="disabled")
        chosen = [_completion_text(r["chosen"]) for r in guard_records]
        longest = max(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in chosen)
        if longest + 8 > settings.max_new_tokens:
            return cls(settings, tokenizer, [], [], 0, held_out=False,
                       skipped=f"chosen completions up to {longest} tokens (> guard.max_new_tokens - 8)")
        return cls(settings, tokenizer, [list(r["prompt"]) for r in guard_records],
                   [_prev_discount(c) for c in chosen], longest + 8, held_out=held_out)

    @property
    def active(self) -> bool:
        return bool(self.prompts)

    @property
    def floor(self) -> float:
        return (self.start_rate or 0.0) - self.settings.margin

    def check(self, model: Any, step: int) -> bool:
        """Measure; keep a snapshot when within the margin; False when the rate fell below the floor."""
        from peft import get_peft_model_state_dict

        rate = guard_parse_rate(model, self.tokenizer, self.prompts, self.prevs, self.max_new_tokens)
        self.checks.append((step, rate))
        if self.start_rate is None:
            self.start_rate = rate
        if rate >= self.floor - 1e-12:
            self.kept = (step, rate)
            self.snapshot = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
            return True
        return False

    def restore(self, model: Any) -> None:
        """Put back the adapter of the last check within the margin (when a later check fell below it)."""
        from peft import set_peft_model_state_dict

        if self.stopped_at is not None and self.snapshot is not None:
            set_peft_model_state_dict(model, self.snapshot)
        self.snapshot = None

    def callback(self) -> Any:
        """A transformers TrainerCallback: a check before training, every ``every_steps`` steps and after the
        last step; a check below the floor stops training (:meth:`restore` then puts the kept adapter back)."""
        from transformers import TrainerCallback

        guard = self

        class _Guard(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
                guard.check(model, 0)

            def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
                step = int(state.global_step)
                due = step % guard.settings.every_steps == 0 or step >= state.max_steps
                if due and not guard.check(model, step):
                    guard.stopped_at = step
                    control.should_training_stop = True

        return _Guard()

    def metrics(self) -> dict[str, float]:
        if not self.active:
            return {"dpo/guard_active": 0.0}
        rates = [r for _, r in self.checks]
        kept_step, kept_rate = self.kept if self.kept else (0, float("nan"))
        return {"dpo/guard_active": 1.0, "dpo/guard_prompts": float(len(self.prompts)),
                "dpo/guard_held_out": float(self.held_out), "dpo/guard_checks": float(len(self.checks)),
                "dpo/guard_start_parse_rate": float(self.start_rate if self.start_rate is not None else float("nan")),
                "dpo/guard_min_parse_rate": min(rates) if rates else float("nan"),
                "dpo/guard_last_parse_rate": rates[-1] if rates else float("nan"),
                "dpo/guard_kept_step": float(kept_step), "dpo/guard_kept_parse_rate": kept_rate,
                "dpo/guard_stopped": float(self.stopped_at is not None)}

    def summary(self) -> dict[str, Any]:
        return {"settings": self.settings.model_dump(mode="json"), "active": self.active, "skipped": self.skipped,
                "held_out": self.held_out, "checks": [{"step": s, "parse_rate": r} for s, r in self.checks],
                "kept_step": self.kept[0] if self.kept else None, "stopped_at": self.stopped_at}


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
    weights = dict(zip(trainer.args.loss_type, trainer.args.loss_weights or [1.0] * len(trainer.args.loss_type),
                       strict=True))
    out = {"dpo/pairs": float(n_pairs), "dpo/steps": float(steps), "dpo/epochs": float(trainer.state.epoch or 0.0),
           "dpo/sft_weight": float(weights.get("sft", 0.0)),
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
