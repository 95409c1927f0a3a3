"""DPO's defences against destroying the answer format: the parse-rate guard (held-out prompts, early stop,
the last checkpoint within the margin restored) and the NLL term on the chosen answer (RPO)."""

from __future__ import annotations

import json

import pytest
from align_support import tiny_base_model

from aigp.align.dpo import (
    DPOStepConfig,
    ParseGuard,
    ParseGuardSettings,
    dpo_trainer,
    guard_parse_rate,
    run_dpo,
    split_guard_prompts,
)
from aigp.align.generation import LoadedModel, lineage
from aigp.align.pairs import action_text
from aigp.align.sft import SFTStepConfig, run_sft
from aigp.llm.rows import load_prompt_rows

GUARD = {"prompts": 6, "every_steps": 1, "margin": 0.2}


def _prompt(i: int, prev: float) -> list[dict[str, str]]:
    """Short prompts (the guard checks the answer format, whatever the prompt): SFT teaches the tiny model the
    JSON action in seconds instead of minutes of ~800-token sequences."""
    return [{"role": "system", "content": "You set the next day's discount. Answer with the JSON action only."},
            {"role": "user", "content": f"SKU {i}: discount in effect {prev:.2f}, days since launch {i % 14}."}]


@pytest.fixture(scope="module")
def parsing(market_logs, tmp_path_factory):
    """A tiny model fully fine-tuned until it writes the JSON action, and one pair per prompt (24 prompts)."""
    root = tmp_path_factory.mktemp("guard")
    base = tiny_base_model(root, load_prompt_rows(market_logs.path, n=16, seed=5))
    pairs = []
    for i in range(24):
        prev = round(0.6 + 0.4 * ((i * 7) % 24) / 23, 2)
        good = -0.05 if prev > 0.8 else 0.05
        pairs.append({"prompt": _prompt(i, prev), "chosen": [{"role": "assistant", "content": action_text(good, prev)}],
                      "rejected": [{"role": "assistant", "content": action_text(-good, prev)}]})
    cfg = SFTStepConfig.build(optim={"batch_size": 4, "learning_rate": 1e-2, "max_steps": 60, "logging_steps": 10,
                                     "threads": 2}, validation_share=0.0, lora={"enabled": False})
    sft = run_sft([{"prompt": p["prompt"], "completion": p["chosen"]} for p in pairs], base, root / "sft", cfg)
    return {"root": root, "sft": sft.model_dir, "pairs": pairs}


def _parse_rate(model_dir, records):
    """The guard's own measurement (same prompts, discounts in effect and token budget) on a saved model."""
    loaded = LoadedModel.load(model_dir)
    guard = ParseGuard.build(records, loaded.tokenizer, ParseGuardSettings(**GUARD), held_out=True)
    return guard_parse_rate(loaded.model, loaded.tokenizer, guard.prompts, guard.prevs, guard.max_new_tokens)


def test_guard_prompts_are_held_out_by_prompt(parsing) -> None:
    pairs = parsing["pairs"] + parsing["pairs"][:4]  # four prompts with two pairs each
    train, guard, held_out = split_guard_prompts(pairs, ParseGuardSettings(**GUARD), seed=3)
    assert held_out and len(guard) == 6
    guard_prompts = {json.dumps(r["prompt"]) for r in guard}
    assert len(guard_prompts) == 6 and not guard_prompts & {json.dumps(r["prompt"]) for r in train}
    assert len(train) + sum(sum(json.dumps(p["prompt"]) == g for p in pairs) for g in guard_prompts) == len(pairs)
    # too few distinct prompts to hold any out: the guard asks training prompts, and says so
    train, guard, held_out = split_guard_prompts(pairs[:8], ParseGuardSettings(**GUARD), seed=3)
    assert not held_out and len(train) == 8 and len(guard) == 6
    assert split_guard_prompts(pairs, ParseGuardSettings(enabled=False), seed=3) == (pairs, [], False)


@pytest.mark.slow
def test_guard_restores_the_last_checkpoint_that_still_writes_the_format(parsing) -> None:
    """A learning rate that wrecks the model within a few steps: the saved model must still parse."""
    pairs = parsing["pairs"]
    _, guard_records, _ = split_guard_prompts(pairs, ParseGuardSettings(**GUARD), seed=0)
    start = _parse_rate(parsing["sft"], guard_records)
    assert start >= 0.5, "the fine-tuned tiny model should write the JSON action"
    # sft_weight 0 and a huge constant learning rate: plain DPO wrecks the format within a step or two
    cfg = DPOStepConfig.build(sft_weight=0.0, guard=GUARD, lora={"r": 16, "alpha": 32},
                              optim={"batch_size": 2, "learning_rate": 0.3, "max_steps": 6, "warmup": 0,
                                     "scheduler": "constant", "logging_steps": 1, "threads": 2})
    result = run_dpo(pairs, parsing["sft"], parsing["root"] / "wrecked", cfg)
    m = result.metrics
    assert m["dpo/guard_active"] == 1 and m["dpo/guard_held_out"] == 1 and m["dpo/guard_prompts"] == 6
    assert m["dpo/sft_weight"] == 0
    assert m["dpo/guard_start_parse_rate"] == pytest.approx(start)
    assert m["dpo/guard_min_parse_rate"] < start - 0.2, "this learning rate should destroy the format"
    assert m["dpo/guard_stopped"] == 1 and m["dpo/steps"] < 6
    assert m["dpo/guard_kept_parse_rate"] >= start - 0.2
    # the saved model is the kept checkpoint, not the wrecked last step
    assert _parse_rate(result.model_dir, guard_records) == pytest.approx(m["dpo/guard_kept_parse_rate"])
    checks = lineage(result.model_dir)[-1]["guard"]["checks"]
    assert checks[0]["step"] == 0 and checks[-1]["parse_rate"] < start - 0.2
    assert m["dpo/pairs"] == len(pairs) - 6


def test_nll_weight_adds_trl_sft_loss_and_guard_skips_long_answers(parsing, tmp_path) -> None:
    pairs = parsing["pairs"][:4]
    trainer, _, _ = dpo_trainer(pairs, parsing["sft"], tmp_path / "w", DPOStepConfig.build(sft_weight=0.5))
    assert list(trainer.args.loss_type) == ["sigmoid", "sft"] and list(trainer.args.loss_weights) == [1.0, 0.5]
    plain, _, _ = dpo_trainer(pairs, parsing["sft"], tmp_path / "p", DPOStepConfig.build(sft_weight=0.0))
    assert list(plain.args.loss_type) == ["sigmoid"]
    long = [{**r, "chosen": [{"role": "assistant", "content": "reasoning " * 60 + r["chosen"][0]["content"]}]}
            for r in pairs]
    cfg = DPOStepConfig.build(guard={**GUARD, "prompts": 2}, optim={"max_steps": 1, "batch_size": 2, "threads": 2})
    result = run_dpo(long, parsing["sft"], tmp_path / "long", cfg)
    assert result.metrics["dpo/guard_active"] == 0
    assert "chosen completions" in lineage(result.model_dir)[-1]["guard"]["skipped"]
