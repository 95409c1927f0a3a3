"""Tiny-model SFT and DPO (weights change where LoRA sits, nothing else), DPO's loss mask, reproducible
sampling after a reload, and the trained model as a market policy / on decision-log rows."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from align_support import TEST_PROMPT, act_only_records, tiny_base_model
from safetensors.torch import load_file

from aigp.align.dpo import DPOStepConfig, dpo_trainer, run_dpo
from aigp.align.generation import GenerationConfig, LoadedModel, _generate_shared_prefix, chat_texts, generate, lineage
from aigp.align.pairs import action_text
from aigp.align.policy import LLMPricingPolicy, LLMSamples, PolicyConfig, act_only_config, propose_on_rows
from aigp.align.sft import SFTStepConfig, run_sft
from aigp.llm.prompt import build_prompt
from aigp.llm.rows import load_prompt_rows

FAST = {"batch_size": 2, "learning_rate": 1e-2, "logging_steps": 1, "threads": 2}


@pytest.fixture(scope="module")
def tiny(market_logs, tmp_path_factory):
    root = tmp_path_factory.mktemp("align")
    rows = load_prompt_rows(market_logs.path, n=12, seed=4)
    base = tiny_base_model(root, rows)
    cfg = SFTStepConfig.build(optim={**FAST, "max_steps": 4}, validation_share=0.25, eval_steps=2)
    sft = run_sft(act_only_records(rows), base, root / "sft", cfg)
    return {"root": root, "rows": rows, "base": base, "sft": sft}


def _pairs(rows):
    records = []
    for record, row in zip(act_only_records(rows), rows.to_dict("records"), strict=True):
        prev = float(row["prev_discount"])
        good = json.loads(record["completion"][0]["content"])["discount_change"]
        bad = 0.1 if prev <= 0.9 and good < 0.05 else -0.1
        records.append({"prompt": record["prompt"], "chosen": record["completion"],
                        "rejected": [{"role": "assistant", "content": action_text(bad, prev)}]})
    return records


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_sft_changes_the_lora_targets_and_nothing_else(tiny) -> None:
    base, sft = _weights(tiny["base"]), _weights(tiny["sft"].model_dir)
    assert base.keys() == sft.keys()
    changed = {k for k in base if not torch.equal(base[k], sft[k])}
    assert changed and all(k.split(".")[-2] in {"q_proj", "k_proj", "v_proj", "o_proj"} for k in changed)
    assert {k.split(".")[-2] for k in changed} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    adapter = json.loads((tiny["sft"].model_dir / "adapter" / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    metrics = json.loads((tiny["sft"].model_dir / "metrics.json").read_text())
    assert metrics["sft/steps"] == 4 and metrics["sft/validation_examples"] == 3
    assert np.isfinite(metrics["sft/best_eval_loss"]) and metrics["sft/tokens_per_s"] > 0
    assert [s["step"] for s in lineage(tiny["sft"].model_dir)] == ["sft"]
    assert LoadedModel.load(tiny["sft"].model_dir).prompt_config().max_prompt_tokens is None  # tiny: no budget


def test_full_fine_tuning_changes_every_weight_kind_and_dpo_refuses_it(tiny, tmp_path) -> None:
    # two steps: the first has learning rate 0 (warm-up)
    cfg = SFTStepConfig.build(optim={**FAST, "max_steps": 2}, validation_share=0.0, lora={"enabled": False})
    result = run_sft(act_only_records(tiny["rows"].head(4)), tiny["base"], tmp_path / "full", cfg)
    base, tuned = _weights(tiny["base"]), _weights(result.model_dir)
    assert any("mlp" in k and not torch.equal(base[k], tuned[k]) for k in base)
    assert not (result.model_dir / "adapter").exists()
    with pytest.raises(ValueError, match=r"lora\.enabled"):
        run_dpo(_pairs(tiny["rows"].head(2)), result.model_dir, tmp_path / "dpo",
                DPOStepConfig.build(lora={"enabled": False}))


def test_sft_rejects_examples_longer_than_the_context(tiny, tmp_path) -> None:
    records = act_only_records(tiny["rows"].head(3))
    records[0]["completion"][0]["content"] = "x " * 5000
    with pytest.raises(ValueError, match="context"):
        run_sft(records, tiny["base"], tmp_path / "sft", SFTStepConfig.build(optim={**FAST, "max_steps": 1}))


def test_dpo_changes_the_weights_with_the_sft_model_as_reference(tiny) -> None:
    cfg = DPOStepConfig.build(optim={**FAST, "max_steps": 3})
    result = run_dpo(_pairs(tiny["rows"]), tiny["sft"].model_dir, tiny["root"] / "dpo", cfg)
    sft, dpo = _weights(tiny["sft"].model_dir), _weights(result.model_dir)
    assert any(not torch.equal(sft[k], dpo[k]) for k in sft)
    assert all(torch.equal(sft[k], dpo[k]) for k in sft if "mlp" in k or "embed" in k)
    assert result.metrics["dpo/steps"] == 3 and np.isfinite(result.metrics["dpo/train_loss"])
    assert "dpo/last_rewards_margins" in result.metrics
    steps = lineage(result.model_dir)
    assert [s["step"] for s in steps] == ["sft", "dpo"] and steps[1]["config"]["beta"] == 0.1


def test_dpo_loss_mask_covers_exactly_the_action_tokens(tiny, tmp_path) -> None:
    records = _pairs(tiny["rows"].head(4))
    trainer, tok, lengths = dpo_trainer(records, tiny["sft"].model_dir, tmp_path / "work", DPOStepConfig())
    assert trainer.args.max_length == max(lengths)  # nothing is truncated
    examples = [trainer.train_dataset[i] for i in range(len(records))]
    batch = trainer.data_collator(examples)
    ids, mask = batch["input_ids"], batch["completion_mask"].bool()
    answers = [r["chosen"][0]["content"] for r in records] + [r["rejected"][0]["content"] for r in records]
    for row, answer in enumerate(answers):
        expected = tok(answer + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
        assert ids[row][mask[row]].tolist() == expected
        decoded = tok.decode(ids[row][mask[row]], skip_special_tokens=True).strip()
        assert decoded == answer  # the JSON action, and nothing of the prompt


def test_generation_after_reload_is_reproducible_with_a_seed(tiny) -> None:
    messages = [build_prompt(r, TEST_PROMPT).messages for r in tiny["rows"].head(3).to_dict("records")]
    cfg = GenerationConfig(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=6, batch_size=2, seed=7)
    first = generate(LoadedModel.load(tiny["sft"].model_dir), messages, cfg, n=2)
    again = generate(LoadedModel.load(tiny["sft"].model_dir), messages, cfg, n=2)
    other = generate(LoadedModel.load(tiny["sft"].model_dir), messages, cfg.with_updates(seed=8), n=2)
    assert first == again and first != other
    assert all(len(samples) == 2 for samples in first)


def test_shared_prefix_sampling_matches_plain_generate(tiny) -> None:
    loaded = LoadedModel.load(tiny["sft"].model_dir)
    tok = loaded.tokenizer
    messages = [build_prompt(r, TEST_PROMPT).messages for r in tiny["rows"].head(3).to_dict("records")]
    enc = tok(chat_texts(tok, messages), padding=True, padding_side="left", add_special_tokens=False,
              return_tensors="pt")
    kwargs = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": tok.pad_token_id,
              "eos_token_id": tok.eos_token_id, "temperature": None, "top_k": None, "top_p": None}
    with torch.inference_mode():
        plain = loaded.model.generate(**enc, **kwargs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            shared = _generate_shared_prefix(loaded.model, enc, 3, kwargs)
    assert torch.equal(plain.repeat_interleave(3, 0), shared)
    ours = [str(w.message) for w in caught if "aigp" in str(w.filename)]
    assert not ours, ours  # no deprecated `generate` argument of ours (past_key_values -> cache)


def test_policy_holds_on_unparsable_output_and_counts_it(tiny) -> None:
    from aigp.market.config import MarketConfig
    from aigp.market.simulator import Market

    config = act_only_config(PolicyConfig(prompt=TEST_PROMPT.with_updates(act_only=False)), max_new_tokens=6)
    policy = LLMPricingPolicy(tiny["sft"].model_dir, config, name="tiny_llm")
    market = Market(MarketConfig.build(n_skus=4, launch_days=1, seed=9, horizon_days=3))
    run = market.run({"tiny_llm": policy})
    assert policy.decisions == 12
    assert 0 <= policy.parse_failures <= policy.decisions
    assert policy.stats()["parse_failure_rate"] == pytest.approx(policy.parse_failures / 12)
    assert np.all((run.discounts >= 0.5 - 1e-9) & (run.discounts <= 1.0 + 1e-9))


def test_best_of_m_over_the_models_own_samples_takes_the_critics_choice(tiny) -> None:
    from aigp.action import is_safe
    from aigp.ltve.policies import BestOfMPolicy
    from aigp.market.config import MarketConfig
    from aigp.market.simulator import Cohort, Market

    class DeepestCut:  # a critic that prefers the lowest discount change
        def q_values(self, frame, candidates):
            return -np.asarray(candidates, dtype=np.float64)

    config = act_only_config(PolicyConfig(prompt=TEST_PROMPT), max_new_tokens=6)
    samples = LLMSamples(tiny["sft"].model_dir, config, m=4)
    policy = BestOfMPolicy(DeepestCut(), m=4, sampler=samples, name="best_of_sft")
    obs = Cohort(Market(MarketConfig.build(n_skus=5, launch_days=1, seed=9, horizon_days=3)),
                 np.arange(5)).observe(text=True)
    candidates = policy.candidates(obs)  # the model's samples, read by Ψ and projected onto A_safe
    assert candidates.shape == (5, 4)
    assert all(is_safe(obs.prev_discount, candidates[:, j]).all() for j in range(4))
    assert samples.samples == 20 and 0 <= samples.parse_failures <= 20
    # the same prompts and seed sample the same answers: the policy serves the critic's pick among them
    assert np.allclose(policy.act(obs), candidates.min(1))
    assert policy.stats()["decisions"] == 5
    with pytest.raises(ValueError, match="temperature > 0"):
        LLMSamples(tiny["sft"].model_dir, config, m=2, temperature=0.0)


def test_propose_on_rows_reports_raw_and_projected_changes(tiny) -> None:
    rows = tiny["rows"].head(4)
    config = act_only_config(PolicyConfig(prompt=TEST_PROMPT), max_new_tokens=6)
    out = propose_on_rows(tiny["sft"].model_dir, rows, config)
    assert list(out.index) == list(rows.index)
    assert {"change", "raw_change", "parse_ok", "compliant"} <= set(out.columns)
    failed = ~out["parse_ok"]
    assert (out.loc[failed, "change"] == 0).all() and out.loc[failed, "raw_change"].isna().all()
    assert not out.loc[failed, "compliant"].any()
    prev = rows["prev_discount"].to_numpy()
    assert np.all(np.abs(out["change"]) <= 0.2 + 1e-9) and np.all(prev + out["change"] >= 0.5 - 1e-9)
