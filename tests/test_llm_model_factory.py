"""The offline base model: build, save, reload with from_pretrained, identical token ids and generations."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_support import LAUNCH, LOW_STOCK, MID, behind_pace_row

from aigp.distillation.teacher import KnowledgeBaseTeacher
from aigp.llm.model_factory import (
    SIZES,
    BaseModelConfig,
    build_base_model,
    load_model,
    model_metadata,
    resolve_model,
    token_counter,
)
from aigp.llm.prompt import PromptConfig, build_prompt, render_chatml
from aigp.llm.sanitize import ACT_ONLY_TOKEN
from aigp.registry import storage
from aigp.registry.storage import StorageError


def _corpus() -> list[str]:
    teacher, texts = KnowledgeBaseTeacher(), []
    for features in (MID, LAUNCH, LOW_STOCK, behind_pace_row()):
        for cfg in (PromptConfig(), PromptConfig(act_only=True)):
            prompt = build_prompt(features, cfg)
            texts += [prompt.system, prompt.user, teacher.respond(prompt).text]
    return texts


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tokenizer_corpus = _corpus()
    path = build_base_model(tmp_path_factory.mktemp("models") / "tiny", tokenizer_corpus,
                            BaseModelConfig(size="tiny", overrides={"vocab_size": 600}))
    return path, tokenizer_corpus


def test_tiny_model_builds_and_reloads_like_a_hub_model(tiny) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, corpus = tiny
    meta = model_metadata(path)
    assert meta["size"] == "tiny" and meta["parameters"] < 5_000_000 and meta["vocab_size"] <= 600
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in path.iterdir()}
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert model.config.model_type == "qwen3" and type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id is not None
    assert len(tokenizer.tokenize(ACT_ONLY_TOKEN)) == 1

    prompt = build_prompt(MID, PromptConfig(act_only=True))
    rendered = tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
    assert rendered == render_chatml(prompt.messages)
    enc = tokenizer.apply_chat_template(prompt.messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    with torch.no_grad():
        first = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)

    # Save again through save_pretrained and reload: token ids and greedy generations are identical.
    again_dir = path.parent / "tiny-resaved"
    model.save_pretrained(again_dir)
    tokenizer.save_pretrained(again_dir)
    tokenizer2 = AutoTokenizer.from_pretrained(again_dir)
    model2 = AutoModelForCausalLM.from_pretrained(again_dir).eval()
    for text in [*corpus[:6], "cum_gmv = 19573.8, 0.0457 1336 [ACT_ONLY] 价格"]:
        assert tokenizer(text)["input_ids"] == tokenizer2(text)["input_ids"]
    enc2 = tokenizer2.apply_chat_template(prompt.messages, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)
    assert enc2["input_ids"].tolist() == enc["input_ids"].tolist()
    with torch.no_grad():
        second = model2.generate(**enc2, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer2.pad_token_id)
    assert second.tolist() == first.tolist()
    assert token_counter(tokenizer)(prompt.user) == len(tokenizer(prompt.user, add_special_tokens=False)["input_ids"])


def test_numbers_tokenize_digit_by_digit(tiny) -> None:
    """A from-scratch model reads numbers as digits (Qwen2's pre-tokenizer splits them): a merged "0.85" token
    would be a value it must memorise rather than a digit sequence it can compare."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny[0])
    pieces = [t.lstrip("Ġ") for t in tokenizer.tokenize("prev_discount: 0.8523 | cum_gmv: 19573.8")]
    digits = [t for t in pieces if any(c.isdigit() for c in t)]
    assert digits == list("08523") + list("195738") and all(len(t) == 1 for t in digits)


def test_resolve_model_paths_and_errors(tiny, tmp_path) -> None:
    path, _ = tiny
    assert resolve_model(path) == str(path)
    assert resolve_model("Qwen/Qwen3-30B-A3B") == "Qwen/Qwen3-30B-A3B"  # a hub id passes through
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        resolve_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model(tmp_path / "nowhere" / "model")
    with pytest.raises(FileExistsError):
        build_base_model(path, ["text"], BaseModelConfig(size="tiny"))
    with pytest.raises(ValueError, match="empty"):
        build_base_model(tmp_path / "x", [], BaseModelConfig(size="tiny"))
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_an_s3_uri_resolves_to_a_downloaded_copy(tiny, tmp_path, monkeypatch) -> None:
    import boto3
    from moto import mock_aws

    path, _ = tiny
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="models")
        uploaded = storage.upload(path, "s3://models/base/tiny")
        local = storage.localize("s3://models/base/tiny", cache_dir=tmp_path / "cache")
        files = sorted(p.name for p in path.iterdir() if p.is_file())
        assert len(uploaded) == len(files)
        assert sorted(p.name for p in Path(local).iterdir() if p.name in files) == files
        _, tokenizer = load_model(resolve_model(local))
        assert tokenizer("roi_target")["input_ids"] == load_model(path)[1]("roi_target")["input_ids"]
        with pytest.raises(StorageError, match="nothing at"):
            storage.localize("s3://models/missing", cache_dir=tmp_path / "cache")
    assert Path(local).is_relative_to(tmp_path / "cache")
    with pytest.raises(ValueError, match="remote URI: localize it first"):
        resolve_model("s3://models/base/tiny")  # the core never reaches the network itself
    assert storage.localize(path) == str(path) and storage.localize("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"


def test_sizes_are_consistent() -> None:
    for name, size in SIZES.items():
        assert size.num_attention_heads % size.num_key_value_heads == 0, name
    assert BaseModelConfig(size="small", overrides={"num_hidden_layers": 2}).architecture().num_hidden_layers == 2
