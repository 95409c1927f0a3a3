"""A trained pricing LLM as a market policy, and its proposals on held-out decision-log rows.

:class:`LLMPricingPolicy` implements ``aigp.market.observation.Policy`` the way the model is deployed (paper
§3.4: the control token removed, full reasoning + action): each observation row becomes a prompt within the
model's prompt budget, prompts are generated in batches (greedy by default), and Ψ
(``aigp.llm.parser.parse_action``) projects each answer onto A_safe; an unparsable answer holds yesterday's
discount and is counted. :func:`propose_on_rows` does the same on rows of a decision log (the offline gate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from aigp.align.generation import GenerationConfig, LoadedModel, generate
from aigp.config import StrictConfig
from aigp.llm.parser import parse_action
from aigp.llm.prompt import PromptConfig, build_prompt


class PolicyConfig(StrictConfig):
    """How a trained model prices: the prompt (full reasoning by default, as deployed) and decoding."""

    prompt: PromptConfig = Field(default_factory=PromptConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    threads: int | None = Field(None, ge=1)


PROPOSAL_COLUMNS = ("change", "raw_change", "parse_ok", "compliant", "reason", "output")


def prompt_messages(loaded: LoadedModel, records: list[dict[str, Any]], prompt: PromptConfig) -> list[Any]:
    """The chat messages of each record's prompt, within the model's prompt budget (counted by its tokenizer)."""
    prompt_cfg, count = loaded.prompt_config(prompt), loaded.counter()
    return [build_prompt(r, prompt_cfg, count_tokens=count).messages for r in records]


def proposals(loaded: LoadedModel, rows: pd.DataFrame, config: PolicyConfig, *,
              progress: bool = False) -> pd.DataFrame:
    """One proposal per row: ``change`` (after Ψ's projection; 0 = hold on a parse failure), ``raw_change``
    (the model's own proposal, NaN if unparsable), ``parse_ok``, ``compliant`` (the proposal was already
    inside A_safe), Ψ's ``reason`` and the raw ``output``."""
    records = rows.to_dict("records")
    messages = prompt_messages(loaded, records, config.prompt)
    if progress:
        from tqdm.auto import tqdm

        with tqdm(total=len(messages), desc=f"pricing ({config.prompt.mode})", unit="row", leave=False) as bar:
            texts = generate(loaded, messages, config.generation, progress=bar.update)
    else:
        texts = generate(loaded, messages, config.generation)
    out = []
    for record, (text,) in zip(records, texts, strict=True):
        parsed = parse_action(text, float(record["prev_discount"]))
        out.append({"change": parsed.discount_change,
                    "raw_change": np.nan if parsed.proposed_change is None else parsed.proposed_change,
                    "parse_ok": not parsed.fallback, "compliant": parsed.in_safe, "reason": parsed.reason,
                    "output": text})
    return pd.DataFrame(out, columns=list(PROPOSAL_COLUMNS), index=rows.index)


def propose_on_rows(model_dir: str | Path | LoadedModel, rows: pd.DataFrame, config: PolicyConfig | None = None,
                    *, progress: bool = False) -> pd.DataFrame:
    """The policy's proposed changes on decision-log / prompt rows (see :func:`proposals`)."""
    from aigp.align.generation import set_threads

    cfg = config or PolicyConfig()
    set_threads(cfg.threads)
    loaded = model_dir if isinstance(model_dir, LoadedModel) else LoadedModel.load(model_dir)
    if rows.empty:
        return pd.DataFrame(columns=list(PROPOSAL_COLUMNS))
    return proposals(loaded, rows, cfg, progress=progress)


def greedy_config(prompt: PromptConfig, generation: GenerationConfig, threads: int | None = None) -> PolicyConfig:
    """The greedy policy for answers sampled with ``prompt`` and ``generation`` (same prompt, budget and batch)."""
    return PolicyConfig(prompt=prompt, threads=threads, generation=GenerationConfig(
        max_new_tokens=generation.max_new_tokens, batch_size=generation.batch_size))


def pair_moves(pairs: pd.DataFrame, rows: pd.DataFrame, before: str | Path | LoadedModel,
               after: str | Path | LoadedModel, config: PolicyConfig | None = None) -> pd.DataFrame:
    """Per pair (``pairs``: prompt_id, chosen_change, rejected_change as :mod:`aigp.align.pairs` writes them;
    ``rows``: the prompt rows by prompt_id): the greedy action on its prompt ``before`` and ``after``, the move
    signed toward its chosen side (``toward``), whether it prefers the higher price (``up``) and whether its
    two answers have opposite signs (``crossing``: they first differ at the minus sign)."""
    from aigp.align.pairs import crosses_zero

    ids = np.unique(pairs["prompt_id"].to_numpy())
    prompts = rows.set_index("prompt_id").loc[ids].reset_index()
    greedy = {name: pd.Series(propose_on_rows(model, prompts, config)["change"].to_numpy(np.float64), index=ids)
              for name, model in (("before", before), ("after", after))}
    chosen, rejected = (pairs[c].to_numpy(np.float64) for c in ("chosen_change", "rejected_change"))
    at = pairs["prompt_id"].to_numpy()
    out = pd.DataFrame({"prompt_id": at, "before": greedy["before"].loc[at].to_numpy(),
                        "after": greedy["after"].loc[at].to_numpy(), "up": chosen > rejected,
                        "crossing": crosses_zero(chosen, rejected)})
    out["toward"] = (out["after"] - out["before"]) * np.sign(chosen - rejected)
    return out


def pair_fit(pairs: pd.DataFrame, rows: pd.DataFrame, before: str | Path | LoadedModel,
             after: str | Path | LoadedModel, config: PolicyConfig | None = None, *,
             min_move: float = 0.005) -> dict[str, float]:
    """Did preference training learn its pairs? :func:`fit_summary` of :func:`pair_moves` (``{}`` without pairs)."""
    return {} if pairs.empty else fit_summary(pair_moves(pairs, rows, before, after, config), min_move)


def fit_summary(moves: pd.DataFrame, min_move: float = 0.005) -> dict[str, float]:
    """On each pair's own prompt the greedy action after minus before, signed toward the pair's chosen side, per
    the direction the pair prefers: ``{up|down|all}_toward`` (share moved toward the chosen action by >=
    ``min_move``), ``_away`` and ``_mean`` (mean signed move), and ``{up|down}_pairs``; ``negative_before`` /
    ``negative_after``: the share of the pairs' prompts answered with a price cut (a < 0) before and after. A model
    that learns its pairs moves toward the chosen side in both directions; one that moves every answer the same
    way learns a shift, not the states."""
    toward, up = moves["toward"].to_numpy(), moves["up"].to_numpy(bool)
    out: dict[str, float] = {}
    for name, mask in (("up", up), ("down", ~up), ("all", np.ones_like(up))):
        t = toward[mask]
        out[f"{name}_pairs"] = float(mask.sum())
        if len(t):
            out |= {f"{name}_toward": float(np.mean(t >= min_move)), f"{name}_away": float(np.mean(t <= -min_move)),
                    f"{name}_mean": float(t.mean())}
    prompts = moves.drop_duplicates("prompt_id")
    return out | {"negative_before": float((prompts["before"] < 0).mean()),
                  "negative_after": float((prompts["after"] < 0).mean())}


class LLMPricingPolicy:
    """A trained model behind ``Policy.act`` (requires text: prompts carry the description and reviews)."""

    requires_text = True
    requires_truth = False

    def __init__(self, model_dir: str | Path | LoadedModel, config: PolicyConfig | None = None, *,
                 name: str = "aigp_llm", progress: bool = False):
        from aigp.align.generation import set_threads

        self.config = config or PolicyConfig()
        set_threads(self.config.threads)
        self.loaded = model_dir if isinstance(model_dir, LoadedModel) else LoadedModel.load(model_dir)
        self.name = name
        self.progress = progress
        self.decisions = 0
        self.parse_failures = 0
        self.projected = 0

    def act(self, obs: Any) -> np.ndarray:
        frame = obs.with_text_columns()
        if frame.empty:
            return np.zeros(0)
        result = proposals(self.loaded, frame.reset_index(drop=True), self.config, progress=self.progress)
        self.decisions += len(result)
        self.parse_failures += int((~result["parse_ok"]).sum())
        self.projected += int((result["parse_ok"] & ~result["compliant"]).sum())
        return result["change"].to_numpy(np.float64)

    @property
    def parse_failure_rate(self) -> float:
        return self.parse_failures / self.decisions if self.decisions else 0.0

    def stats(self) -> dict[str, float]:
        return {"decisions": float(self.decisions), "parse_failures": float(self.parse_failures),
                "projected": float(self.projected), "parse_failure_rate": self.parse_failure_rate}

    def __repr__(self) -> str:
        return f"LLMPricingPolicy(name={self.name!r}, model={self.loaded.path!r})"


class LLMSamples:
    """``m`` sampled [ACT_ONLY] answers of a trained model per observation row, read by Ψ: (N, m) discount changes
    (a fallback counts as hold). The candidates of ``aigp.ltve.policies.BestOfMPolicy(sampler=...)``: best-of-M
    over the SFT model's own samples is what DPO on that model's LTVE-ranked pairs approaches. One prefill per
    prompt is shared by its m samples (``generate(n=m)``)."""

    def __init__(self, model_dir: str | Path | LoadedModel, config: PolicyConfig | None = None, *, m: int = 8,
                 temperature: float = 1.0, top_k: int = 50, top_p: float = 0.95):
        from aigp.align.generation import set_threads

        if m < 1:
            raise ValueError(f"m={m} must be >= 1")
        cfg = config or act_only_config()
        self.config = cfg.with_updates(generation=cfg.generation.with_updates(
            temperature=temperature, top_k=top_k, top_p=top_p))
        if not self.config.generation.sampling:
            raise ValueError("LLMSamples needs temperature > 0 (greedy samples would be identical)")
        set_threads(self.config.threads)
        self.loaded = model_dir if isinstance(model_dir, LoadedModel) else LoadedModel.load(model_dir)
        self.m = m
        self.samples = 0
        self.parse_failures = 0

    def __call__(self, obs: Any) -> np.ndarray:
        frame = obs.with_text_columns().reset_index(drop=True)
        if frame.empty:
            return np.zeros((0, self.m))
        records = frame.to_dict("records")
        texts = generate(self.loaded, prompt_messages(self.loaded, records, self.config.prompt),
                         self.config.generation, n=self.m)
        out = np.zeros((len(records), self.m))
        for i, (record, samples) in enumerate(zip(records, texts, strict=True)):
            for j, text in enumerate(samples):
                parsed = parse_action(text, float(record["prev_discount"]))
                out[i, j] = parsed.discount_change
                self.parse_failures += parsed.fallback
        self.samples += out.size
        return out

    def __repr__(self) -> str:
        return f"LLMSamples(model={self.loaded.path!r}, m={self.m})"


def act_only_config(config: PolicyConfig | None = None, max_new_tokens: int = 32) -> PolicyConfig:
    """The same policy asked for the JSON action only (the [ACT_ONLY] mode DPO trains)."""
    cfg = config or PolicyConfig()
    return cfg.with_updates(prompt=cfg.prompt.with_updates(act_only=True),
                            generation=cfg.generation.with_updates(max_new_tokens=max_new_tokens))
