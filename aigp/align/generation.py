"""Batched generation with a local Hugging Face causal LM, and what every alignment step shares about
model directories (the prompt budget a model was built for, metadata that travels with a trained model).

Generation pads prompts on the left, groups prompts of similar length into batches (ordered by length,
results returned in input order) and seeds torch before each batch, so the same prompts, model, batch size
and seed give the same texts after a reload.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from aigp.config import StrictConfig
from aigp.io import write_json
from aigp.llm.model_factory import METADATA_FILE, load_model, model_metadata, resolve_model, token_counter
from aigp.llm.prompt import PromptConfig

Messages = Sequence[Mapping[str, str]]
ALIGN_FILE = "aigp_align.json"  # lineage of a trained model: the steps that produced it, newest last


class GenerationConfig(StrictConfig):
    """Decoding settings (transformers ``generate``)."""

    temperature: float = Field(0.0, ge=0.0, le=5.0, description="0 = greedy (deterministic)")
    top_k: int = Field(0, ge=0, description="sample from the k most likely tokens (0 = off)")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass")
    max_new_tokens: int = Field(640, ge=1, description="completion budget (full reasoning ~500 tokens, "
                                "[ACT_ONLY] ~20)")
    batch_size: int = Field(16, ge=1, description="prompts per generate call")
    seed: int = Field(0, ge=0, description="torch seed, mixed with the batch number")

    @property
    def sampling(self) -> bool:
        return self.temperature > 0


@dataclass
class LoadedModel:
    """A model and its tokenizer in eval mode, with the directory they came from."""

    model: Any
    tokenizer: Any
    path: str

    @classmethod
    def load(cls, spec: str | Path) -> LoadedModel:
        path = resolve_model(spec)
        model, tokenizer = load_model(path)
        return cls(model, tokenizer, path)

    def prompt_config(self, base: PromptConfig | None = None) -> PromptConfig:
        """``base`` with the prompt budget the model was built for (when ``base`` sets none)."""
        return prompt_config_for(self.path, base)

    def counter(self) -> Callable[[str], int]:
        return token_counter(self.tokenizer)


def prompt_config_for(model_dir: str | Path, base: PromptConfig | None = None) -> PromptConfig:
    cfg = base or PromptConfig()
    budget = model_metadata(model_dir).get("architecture", {}).get("prompt_budget")
    if cfg.max_prompt_tokens is None and budget:
        cfg = cfg.with_updates(max_prompt_tokens=int(budget))
    return cfg


def chat_texts(tokenizer: Any, batch: Sequence[Messages]) -> list[str]:
    return [tokenizer.apply_chat_template(list(m), add_generation_prompt=True, tokenize=False) for m in batch]


def generate(loaded: LoadedModel, batch: Sequence[Messages], config: GenerationConfig, *, n: int = 1,
             progress: Callable[[int], None] | None = None) -> list[list[str]]:
    """``n`` completions per conversation (decoded without special tokens), in input order."""
    import torch

    tok, model = loaded.tokenizer, loaded.model
    texts = chat_texts(tok, batch)
    lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (lengths[i], i))
    out: list[list[str]] = [[] for _ in texts]
    kwargs: dict[str, Any] = {"max_new_tokens": config.max_new_tokens, "pad_token_id": tok.pad_token_id,
                              "eos_token_id": tok.eos_token_id, "num_return_sequences": n}
    if config.sampling:
        kwargs |= {"do_sample": True, "temperature": config.temperature, "top_k": config.top_k or None,
                   "top_p": config.top_p}
    else:
        if n > 1:
            raise ValueError(f"n={n} greedy completions would be identical; set temperature > 0")
        kwargs |= {"do_sample": False, "temperature": None, "top_k": None, "top_p": None}
    for number, start in enumerate(range(0, len(order), config.batch_size)):
        index = order[start:start + config.batch_size]
        enc = tok([texts[i] for i in index], padding=True, padding_side="left", add_special_tokens=False,
                  return_tensors="pt")
        torch.manual_seed(config.seed * 100_003 + number)
        with torch.inference_mode():
            ids = _generate_shared_prefix(model, enc, n, kwargs) if n > 1 else model.generate(**enc, **kwargs)
        decoded = tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for j, i in enumerate(index):
            out[i] = decoded[j * n:(j + 1) * n]
        if progress is not None:
            progress(len(index))
    return out


def _generate_shared_prefix(model: Any, enc: Any, n: int, kwargs: dict[str, Any]) -> Any:
    """``n`` samples per prompt with ONE prefill: the prompt's KV cache is computed once and repeated n times
    (``generate`` with ``num_return_sequences`` would run the prompt n times). Greedy outputs are identical
    to plain ``generate`` (tested)."""
    ids, mask = enc["input_ids"], enc["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: positions count real tokens only
    cache = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                  use_cache=True).past_key_values
    cache.batch_repeat_interleave(n)
    return model.generate(input_ids=ids.repeat_interleave(n, 0), attention_mask=mask.repeat_interleave(n, 0),
                          cache=cache, **{**kwargs, "num_return_sequences": 1})  # `past_key_values` is deprecated


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def copy_model_metadata(source: str | Path, target: str | Path, step: Mapping[str, Any]) -> None:
    """Carry the factory metadata (size, prompt budget) to a trained model and append ``step`` to its lineage."""
    src, dst = Path(source), Path(target)
    if (src / METADATA_FILE).exists():
        shutil.copyfile(src / METADATA_FILE, dst / METADATA_FILE)
    lineage = json.loads((src / ALIGN_FILE).read_text()) if (src / ALIGN_FILE).exists() else []
    write_json(dst / ALIGN_FILE, [*lineage, dict(step)])


def lineage(model_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(model_dir) / ALIGN_FILE
    return json.loads(path.read_text()) if path.exists() else []
