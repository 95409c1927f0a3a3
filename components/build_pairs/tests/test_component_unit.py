"""build_pairs component through .python_func(): candidates + a tiny trained LTVE -> pairs."""

from __future__ import annotations

import json

import numpy as np
import torch
from kfp.dsl import Dataset, Metrics, Model

from aigp.align.pairs import read_pair_records
from aigp.align.sampling import Candidates, SamplingConfig, parse_candidates, write_candidates
from aigp.components.build_pairs.component import build_pairs
from aigp.llm.parser import parse_action
from aigp.llm.rows import load_prompt_rows
from aigp.ltve.artifact import save_model
from aigp.ltve.dataset import training_frame_from_logs
from aigp.ltve.train import LTVETrainConfig, train_ltve
from aigp.market.config import MarketConfig
from aigp.market.logs import simulate_to_directory


def test_component_pairs_obey_the_thresholds(tmp_path) -> None:
    torch.set_num_threads(2)
    logs = simulate_to_directory(MarketConfig.build(n_skus=200, launch_days=40, seed=5), tmp_path / "market")
    trained = train_ltve(training_frame_from_logs(logs.path),
                         LTVETrainConfig.build(critic={"steps": 30, "hidden_dims": [16]}, threads=2))
    save_model(trained.model, tmp_path / "ltve")
    rows = load_prompt_rows(logs.path, n=5, seed=1).reset_index(drop=True)
    rows.insert(0, "prompt_id", np.arange(len(rows)))
    rows["prompt_messages"] = [json.dumps([{"role": "user", "content": f"p{i}"}]) for i in range(len(rows))]
    texts = [[f'{{"discount_change": {a}}}' for a in (-0.1, -0.05, 0.0, 0.05, 0.1)] for _ in range(len(rows))]
    candidates = parse_candidates(texts, rows["prev_discount"].to_numpy())
    write_candidates(tmp_path / "candidates", Candidates(rows, candidates, {}), config=SamplingConfig())
    out, metrics = Dataset(uri=str(tmp_path / "pairs")), Metrics(uri=str(tmp_path / "metrics"))
    build_pairs.python_func(candidates=Dataset(uri=str(tmp_path / "candidates")),
                            ltve_model=Model(uri=str(tmp_path / "ltve")), pairs=out, metrics=metrics,
                            config_yaml="delta_q: 0.0\ndelta_a: 0.06\nmax_pairs_per_prompt: 3")
    records = read_pair_records(tmp_path / "pairs")
    assert records and out.metadata["pairs"] == len(records) == metrics.metadata["pairs_pairs"]
    for record in records:
        prev = rows.loc[int(record["prompt"][0]["content"][1:]), "prev_discount"]
        chosen = parse_action(record["chosen"][0]["content"], prev).discount_change
        rejected = parse_action(record["rejected"][0]["content"], prev).discount_change
        assert abs(chosen - rejected) >= 0.06 - 1e-9
