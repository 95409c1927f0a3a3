"""What SFT and DPO share: LoRA settings, the TrainingArguments fields we set, metric callbacks, token
counting, and writing a trained model directory atomically (merged model at the top, adapter in ``adapter/``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field

from aigp.config import StrictConfig

ADAPTER_DIR = "adapter"
METRICS_FILE = "metrics.json"
MetricsCallback = Callable[[int | None, Mapping[str, float]], None]


# Every linear layer of a Qwen3 block: the DPO adapter of the CPU-sized models (q/k/v/o alone barely moves a
# ~1M-parameter model in a few steps; bench/results/alignment.md).
ALL_LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraSettings(StrictConfig):
    """PEFT LoRA (paper: LoRA on q/k/v/o). ``enabled: false`` trains every weight instead (SFT only: a
    randomly initialised base model has no pretrained features for low-rank adapters to steer)."""

    enabled: bool = Field(True, description="false: full fine-tuning (SFT only; DPO keeps LoRA for its reference)")
    r: int = Field(8, ge=1, description="adapter rank")
    alpha: int = Field(16, ge=1, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
                                      min_length=1, description="module names that get an adapter")

    def peft(self) -> Any:
        from peft import LoraConfig

        if not self.enabled:
            return None
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.target_modules), task_type="CAUSAL_LM")


class OptimSettings(StrictConfig):
    """The optimisation knobs both trainers share (TRL / transformers TrainingArguments)."""

    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(2.0, gt=0, description="passes over the training data")
    max_steps: int = Field(-1, description="> 0 overrides epochs")
    batch_size: int = Field(4, ge=1, description="per-device batch size")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    scheduler: str = Field("cosine", description="transformers lr_scheduler_type")
    warmup: float = Field(0.05, ge=0, description="< 1: share of the steps, >= 1: steps")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping")
    weight_decay: float = Field(0.0, ge=0)
    logging_steps: int = Field(5, ge=1)
    seed: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None = torch's default)")

    def training_args(self, output_dir: str | Path) -> dict[str, Any]:
        import torch

        cuda = torch.cuda.is_available()
        return {
            "output_dir": str(output_dir), "learning_rate": self.learning_rate, "num_train_epochs": self.epochs,
            "max_steps": self.max_steps, "per_device_train_batch_size": self.batch_size,
            "per_device_eval_batch_size": self.batch_size, "gradient_accumulation_steps": self.grad_accum,
            "lr_scheduler_type": self.scheduler, "warmup_steps": self.warmup, "max_grad_norm": self.max_grad_norm,
            "weight_decay": self.weight_decay, "logging_steps": self.logging_steps, "seed": self.seed,
            "report_to": "none", "use_cpu": not cuda, "bf16": bool(cuda and torch.cuda.is_bf16_supported()),
            "fp16": False, "gradient_checkpointing": False, "dataloader_num_workers": 0,
            "disable_tqdm": True,
        }


def metrics_callback(callback: MetricsCallback | None, prefix: str) -> Any:
    """A transformers TrainerCallback forwarding every log line (numbers only) to ``callback``."""
    from transformers import TrainerCallback

    class _Forward(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict[str, float]] = []

        def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None,
                   **kw: Any) -> None:
            values = {f"{prefix}/{k}": float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
            self.history.append({"step": float(state.global_step), **values})
            if callback is not None and values:
                callback(int(state.global_step), values)

    return _Forward()


def sequence_tokens(tokenizer: Any, prompts: Sequence[Any], completions: Sequence[Any]) -> list[int]:
    """Tokens of prompt + completion per example, rendered with the chat template as the trainers do."""
    out = []
    for prompt, completion in zip(prompts, completions, strict=True):
        text = tokenizer.apply_chat_template(list(prompt) + list(completion), tokenize=False)
        out.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    return out


def check_context(lengths: Sequence[int], model_dir: str | Path, what: str) -> int:
    """The longest sequence, checked against the model's context (TRL would cut completions from the end)."""
    from transformers import AutoConfig

    longest = max(lengths) if lengths else 0
    context = int(AutoConfig.from_pretrained(str(model_dir)).max_position_embeddings)
    if longest > context:
        raise ValueError(f"{what}: the longest example is {longest} tokens, above the model's context of "
                         f"{context} (max_position_embeddings); shorten prompts (PromptConfig.max_prompt_tokens)")
    return longest


def save_trained(peft_model: Any, tokenizer: Any, out_dir: str | Path, *, source_model: str | Path,
                 step: Mapping[str, Any], metrics: Mapping[str, Any]) -> Path:
    """Adapter to ``out/adapter``, merged weights + tokenizer to ``out``; built under ``.partial`` and put in
    place crash-safely (``aigp.io.atomic_directory``)."""
    from aigp.align.generation import copy_model_metadata
    from aigp.io import atomic_directory, write_json

    out = Path(out_dir)
    with atomic_directory(out) as partial:
        if hasattr(peft_model, "merge_and_unload"):  # LoRA: the adapter, then the merged weights
            peft_model.save_pretrained(partial / ADAPTER_DIR)
            merged = peft_model.merge_and_unload()
        else:  # full fine-tuning
            merged = peft_model
        merged.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        copy_model_metadata(source_model, partial, step)
        write_json(partial / METRICS_FILE, dict(metrics))
    return out


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started
