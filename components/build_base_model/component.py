"""KFP component: the untrained base model SFT starts from (logic in ``aigp.llm.model_factory``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def build_base_model(
    prompt_rows: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    size: str = "tiny",
    corpus_prompts: int = 300,
    seed: int = 0,
    overrides_yaml: str = "",
) -> int:
    """A Qwen3 causal LM of preset ``size`` (``tiny`` | ``small``, ``aigp.llm.model_factory.SIZES``; fields
    changed by ``overrides_yaml``) with a BPE tokenizer trained on the prompts (full and [ACT_ONLY]) of
    ``corpus_prompts`` rows of ``prompt_rows`` and the built-in teacher's answers. Returns its parameter count.

    With a hub model instead, import it with ``dsl.importer`` and skip this step."""
    import pandas as pd
    import yaml

    from aigp.llm.model_factory import BaseModelConfig, build_base_model, model_metadata
    from aigp.training_sets import base_model_corpus

    rows = pd.read_parquet(prompt_rows.path)
    corpus = base_model_corpus(rows, n=corpus_prompts, seed=seed)
    cfg = BaseModelConfig.build(size=size, seed=seed, overrides=yaml.safe_load(overrides_yaml) or {})
    build_base_model(model.path, corpus, cfg, overwrite=True)
    meta = model_metadata(model.path)
    model.metadata.update({"size": size, "parameters": meta["parameters"], "vocab_size": meta["vocab_size"]})
    metrics.log_metric("parameters", float(meta["parameters"]))
    metrics.log_metric("vocab_size", float(meta["vocab_size"]))
    return int(meta["parameters"])
