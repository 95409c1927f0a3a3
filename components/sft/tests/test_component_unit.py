"""sft component through .python_func() on a tiny base model and a tiny distillation set."""

from __future__ import annotations

import json

import pytest
from kfp.dsl import Dataset, Metrics, Model

from aigp.components.sft.component import sft
from aigp.distillation.distill import DistillConfig, run_distill
from aigp.llm.model_factory import BaseModelConfig, build_base_model
from aigp.market.config import MarketConfig
from aigp.market.logs import simulate_to_directory

PROMPT = {"act_only": True, "include_knowledge": False, "include_diagnosis": False}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft_component")
    logs = simulate_to_directory(MarketConfig.build(n_skus=20, launch_days=3, seed=3), root / "market")
    result = run_distill(logs.path, root / "distill", DistillConfig.build(n_prompts=5, temperature=0.0,
                                                                          prompt=PROMPT))
    texts = [m["content"] for line in (result.out_dir / "distill.jsonl").read_text().splitlines()
             for m in json.loads(line)["prompt"] + json.loads(line)["completion"]]
    base = build_base_model(root / "base", texts, BaseModelConfig(size="tiny", overrides={"vocab_size": 500}))
    return result.out_dir, base


def test_component_trains_and_writes_the_merged_model_and_adapter(inputs, tmp_path) -> None:
    distill_dir, base = inputs
    model, metrics = Model(uri=str(tmp_path / "model")), Metrics(uri=str(tmp_path / "metrics"))
    sft.python_func(distillation_set=Dataset(uri=str(distill_dir)), base_model=Model(uri=str(base)), model=model,
                    metrics=metrics, config_yaml="optim: {batch_size: 2, threads: 2}\nvalidation_share: 0.0",
                    max_steps=2)
    out = tmp_path / "model"
    assert (out / "model.safetensors").exists() and (out / "adapter" / "adapter_config.json").exists()
    assert metrics.metadata["sft_steps"] == 2.0 and model.metadata["step"] == "sft"
    assert json.loads((out / "metrics.json").read_text())["sft/train_examples"] == 5


def test_component_names_a_bad_config_field(inputs, tmp_path) -> None:
    from aigp.config import ConfigError

    distill_dir, base = inputs
    with pytest.raises(ConfigError, match="lora_rank"):
        sft.python_func(distillation_set=Dataset(uri=str(distill_dir)), base_model=Model(uri=str(base)),
                        model=Model(uri=str(tmp_path / "m")), metrics=Metrics(uri=str(tmp_path / "x")),
                        config_yaml="lora_rank: 4")
