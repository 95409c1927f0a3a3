"""Candidate actions for preference pairs (paper §3.4): M samples per prompt in ``[ACT_ONLY]`` mode.

Each prompt row becomes an ``[ACT_ONLY]`` prompt (within the model's prompt budget); the policy samples
``n_candidates`` JSON actions with temperature / top-k / top-p, in batches with transformers in-process or
through an OpenAI-compatible endpoint (``aigp.openai_compat.client``) when one is configured. Every sample is read by Ψ
(``aigp.llm.parser.parse_action``); only candidates whose own proposal is inside A_safe are kept (the paper
keeps candidates in A_safe; a projected proposal is not what the model said), and duplicates (the same
discount change, to 4 decimals) are removed per prompt.

Output (``write_candidates``): a directory with ``rows.parquet`` (the state rows, one per prompt, with
``prompt_id``), ``candidates.parquet`` (prompt_id, sample, text, change, new_discount, reason, kept) and
``manifest.json`` (counts, validity and diversity).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from aigp.align.generation import GenerationConfig, LoadedModel, generate
from aigp.config import StrictConfig
from aigp.io import write_json, write_parquet
from aigp.llm.parser import parse_action
from aigp.llm.prompt import PromptConfig, build_prompt
from aigp.openai_compat.client import EndpointConfig

ROWS_FILE = "rows.parquet"
CANDIDATES_FILE = "candidates.parquet"
MANIFEST_FILE = "manifest.json"
CHANGE_DECIMALS = 4  # candidates equal to this precision are duplicates


class SamplingConfig(StrictConfig):
    """M candidates per prompt (paper: temperature, top-k, top-p sampling in [ACT_ONLY] mode)."""

    n_candidates: int = Field(8, ge=2, le=64, description="M: samples per prompt")
    generation: GenerationConfig = Field(default_factory=lambda: GenerationConfig(
        temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=32, batch_size=16))
    prompt: PromptConfig = Field(default_factory=lambda: PromptConfig(act_only=True),
                                 description="[ACT_ONLY] (the method); act_only=false samples full reasoning "
                                 "(the FullSeq ablation; raise generation.max_new_tokens)")
    n_prompts: int | None = Field(None, ge=1, description="prompt rows sampled from the source (None = all)")
    seed: int = Field(0, ge=0, description="row sampling seed")
    endpoint: EndpointConfig | None = Field(None, description="sample from this OpenAI-compatible endpoint "
                                            "instead of loading the model in-process")
    threads: int | None = Field(None, ge=1)


@dataclass(frozen=True)
class Candidates:
    rows: pd.DataFrame  # the state rows, with prompt_id and the prompt's messages (JSON)
    candidates: pd.DataFrame
    metrics: dict[str, float]


def build_prompts(rows: pd.DataFrame, config: PromptConfig, count_tokens: Any = None) -> list[list[dict[str, str]]]:
    return [build_prompt(r, config, count_tokens=count_tokens).messages for r in rows.to_dict("records")]


def sample_texts(messages: Sequence[list[dict[str, str]]], config: SamplingConfig,
                 loaded: LoadedModel | None) -> list[list[str]]:
    """``n_candidates`` raw outputs per prompt, in-process or from the endpoint."""
    if config.endpoint is not None:
        from aigp.openai_compat.client import OpenAICompatibleClient

        g = config.generation
        endpoint = config.endpoint.with_updates(temperature=min(g.temperature, 2.0), top_p=g.top_p,
                                                top_k=g.top_k or None, max_tokens=g.max_new_tokens)
        with OpenAICompatibleClient(endpoint) as client:
            seeds = [g.seed * 1_000_003 + i for i in range(len(messages))]
            completions = client.complete_many(list(messages), n=config.n_candidates, seeds=seeds,
                                               progress=True, desc="sampling candidates")
        # a failed request yields no text: its samples count as empty (parse failures), never as lost rows
        return [list(c.texts) + [""] * (config.n_candidates - len(c.texts)) for c in completions]
    if loaded is None:
        raise ValueError("no model loaded and no endpoint configured")
    from tqdm.auto import tqdm

    with tqdm(total=len(messages), desc="sampling candidates", unit="prompt", leave=False) as bar:
        return generate(loaded, messages, config.generation, n=config.n_candidates, progress=bar.update)


def parse_candidates(texts: Sequence[Sequence[str]], prev_discounts: np.ndarray) -> pd.DataFrame:
    """One row per sample with Ψ's reading; ``kept`` = inside A_safe as proposed and not a duplicate."""
    records = []
    for pid, (samples, prev) in enumerate(zip(texts, prev_discounts, strict=True)):
        seen: set[float] = set()
        for k, text in enumerate(samples):
            parsed = parse_action(text, float(prev))
            key = round(parsed.discount_change, CHANGE_DECIMALS)
            duplicate = parsed.in_safe and key in seen
            if parsed.in_safe:
                seen.add(key)
            records.append({"prompt_id": pid, "sample": k, "text": text, "change": parsed.discount_change,
                            "new_discount": parsed.new_discount, "reason": parsed.reason,
                            "in_safe": parsed.in_safe, "duplicate": duplicate,
                            "kept": parsed.in_safe and not duplicate})
    return pd.DataFrame(records, columns=["prompt_id", "sample", "text", "change", "new_discount", "reason",
                                          "in_safe", "duplicate", "kept"])


def candidate_metrics(candidates: pd.DataFrame, n_prompts: int) -> dict[str, float]:
    kept = candidates[candidates["kept"]]
    per_prompt = kept.groupby("prompt_id").size().reindex(range(n_prompts), fill_value=0)
    spread = kept.groupby("prompt_id")["change"].agg(lambda s: float(s.max() - s.min()))
    return {
        "sampling/prompts": float(n_prompts), "sampling/samples": float(len(candidates)),
        "sampling/parse_failure_rate": float((~candidates["reason"].isin(["ok", "projected"])).mean()),
        "sampling/in_safe_rate": float(candidates["in_safe"].mean()),
        "sampling/duplicate_rate": float(candidates["duplicate"].mean()),
        "sampling/kept": float(len(kept)), "sampling/kept_per_prompt": float(per_prompt.mean()),
        "sampling/prompts_with_2plus": float((per_prompt >= 2).mean()),
        "sampling/mean_change_spread": float(spread.mean()) if len(spread) else 0.0,
    }


def sample_candidates(rows: pd.DataFrame, model: str | Path | LoadedModel | None,
                      config: SamplingConfig | None = None) -> Candidates:
    """Sample, parse and deduplicate candidates for every row (``model`` may be None with an endpoint)."""
    from aigp.align.generation import prompt_config_for, set_threads

    cfg = config or SamplingConfig()
    if rows.empty:
        raise ValueError("no prompt rows to sample candidates for")
    set_threads(cfg.threads)
    loaded = None
    prompt_cfg = cfg.prompt
    count = None
    if cfg.endpoint is None:
        if model is None:
            raise ValueError("give a policy model or configure an endpoint")
        loaded = model if isinstance(model, LoadedModel) else LoadedModel.load(model)
        prompt_cfg, count = loaded.prompt_config(cfg.prompt), loaded.counter()
    elif model is not None and not isinstance(model, LoadedModel):
        prompt_cfg = prompt_config_for(model, cfg.prompt)
    rows = rows.reset_index(drop=True).copy()
    messages = build_prompts(rows, prompt_cfg, count)
    texts = sample_texts(messages, cfg, loaded)
    candidates = parse_candidates(texts, rows["prev_discount"].to_numpy(np.float64))
    rows.insert(0, "prompt_id", np.arange(len(rows)))
    rows["prompt_messages"] = [json.dumps(m) for m in messages]
    return Candidates(rows, candidates, candidate_metrics(candidates, len(rows)))


def write_candidates(out_dir: str | Path, result: Candidates, *, config: SamplingConfig,
                     source: dict[str, Any] | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / ROWS_FILE, result.rows)
    write_parquet(out / CANDIDATES_FILE, result.candidates)
    write_json(out / MANIFEST_FILE, {"config": config.model_dump(mode="json"), "metrics": result.metrics,
                                     "source": source or {}})
    return out


def read_candidates(path: str | Path) -> Candidates:
    root = Path(path)
    for name in (ROWS_FILE, CANDIDATES_FILE):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root} is not a candidates directory (no {name}); run `aigp train sample`")
    manifest = json.loads((root / MANIFEST_FILE).read_text()) if (root / MANIFEST_FILE).exists() else {}
    return Candidates(pd.read_parquet(root / ROWS_FILE), pd.read_parquet(root / CANDIDATES_FILE),
                      manifest.get("metrics", {}))
