"""dpo component through .python_func() on a tiny policy and hand-written preference pairs."""

from __future__ import annotations

import json

import pandas as pd
import torch
from kfp.dsl import Dataset, Metrics, Model
from safetensors.torch import load_file

from aigp.align.pairs import PairsConfig, PairSet, action_text, write_pairs
from aigp.components.dpo.component import dpo
from aigp.llm.model_factory import BaseModelConfig, build_base_model
from aigp.llm.prompt import SYSTEM_PROMPT


def test_component_optimises_the_policy_and_keeps_the_adapter(tmp_path) -> None:
    prompts = [[{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"prev_discount = 0.{80 + i} [ACT_ONLY]"}] for i in range(6)]
    records = [{"prompt": p, "chosen": [{"role": "assistant", "content": action_text(0.05, 0.8)}],
                "rejected": [{"role": "assistant", "content": action_text(-0.1, 0.8)}]} for p in prompts]
    write_pairs(tmp_path / "pairs", PairSet(pd.DataFrame(), records, {}), config=PairsConfig())
    texts = [m["content"] for r in records for m in r["prompt"] + r["chosen"] + r["rejected"]] * 3
    base = build_base_model(tmp_path / "base", texts, BaseModelConfig(size="tiny", overrides={"vocab_size": 400}))
    model, metrics = Model(uri=str(tmp_path / "model")), Metrics(uri=str(tmp_path / "metrics"))
    dpo.python_func(pairs=Dataset(uri=str(tmp_path / "pairs")), policy_model=Model(uri=str(base)), model=model,
                    metrics=metrics, config_yaml="beta: 0.2\noptim: {batch_size: 2, learning_rate: 0.01, threads: 2}",
                    max_steps=2)
    before, after = load_file(str(base / "model.safetensors")), load_file(str(tmp_path / "model" / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / "model" / "adapter" / "adapter_model.safetensors").exists()
    assert model.metadata["beta"] == 0.2 and model.metadata["pairs"] == 6 and metrics.metadata["dpo_steps"] == 2.0
    lineage = json.loads((tmp_path / "model" / "aigp_align.json").read_text())
    assert lineage[-1]["step"] == "dpo" and lineage[-1]["config"]["beta"] == 0.2
