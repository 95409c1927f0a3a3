"""`aigp train`: the pairs step end to end through the CLI (a tiny trained LTVE), and one-line user errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from aigp.align.sampling import Candidates, SamplingConfig, parse_candidates, write_candidates
from aigp.cli import app
from aigp.llm.rows import load_prompt_rows

runner = CliRunner()


@pytest.fixture(scope="module")
def ltve_dir(market_logs, tmp_path_factory):
    from aigp.ltve.artifact import save_model
    from aigp.ltve.dataset import training_frame_from_logs
    from aigp.ltve.train import LTVETrainConfig, train_ltve

    trained = train_ltve(training_frame_from_logs(market_logs.path),
                         LTVETrainConfig.build(critic={"steps": 20, "hidden_dims": [16]}, threads=2))
    return save_model(trained.model, tmp_path_factory.mktemp("ltve") / "ltve")


def test_pairs_command_writes_pairs_and_metrics(market_logs, ltve_dir, tmp_path) -> None:
    rows = load_prompt_rows(market_logs.path, n=4, seed=3).reset_index(drop=True)
    rows.insert(0, "prompt_id", np.arange(len(rows)))
    rows["prompt_messages"] = [json.dumps([{"role": "user", "content": f"p{i}"}]) for i in range(len(rows))]
    texts = [[f'{{"discount_change": {a}}}' for a in (-0.08, 0.0, 0.08)] for _ in range(len(rows))]
    write_candidates(tmp_path / "cands", Candidates(rows, parse_candidates(texts, rows["prev_discount"].to_numpy()),
                                                    {}), config=SamplingConfig())
    # every pair here crosses zero, and a 20-step critic may prefer one side in all four states, which the default
    # sign balancing would drop whole: the thresholds are what this test checks
    (tmp_path / "pairs.yaml").write_text("balance_sign: false\n")
    result = runner.invoke(app, ["train", "pairs", "--candidates", str(tmp_path / "cands"), "--ltve", str(ltve_dir),
                                 "--out", str(tmp_path / "pairs"), "--config", str(tmp_path / "pairs.yaml"),
                                 "--delta-q", "0", "--delta-a", "0.1"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "pairs" / "metrics.json").read_text())
    lines = (tmp_path / "pairs" / "pairs.jsonl").read_text().splitlines()
    assert metrics["pairs/pairs"] == len(lines) > 0 and metrics["pairs/delta_a"] == 0.1
    for line in lines:  # |Δa| >= 0.1 leaves only the (-0.08, 0.08) pair per prompt
        record = json.loads(line)
        sides = {record["chosen"][0]["content"].split(",")[0], record["rejected"][0]["content"].split(",")[0]}
        assert sides == {'{"discount_change": -0.08', '{"discount_change": 0.08'}


def test_missing_inputs_are_one_line_errors(tmp_path) -> None:
    result = runner.invoke(app, ["train", "pairs", "--candidates", str(tmp_path / "none"), "--ltve", str(tmp_path),
                                 "--out", str(tmp_path / "p")])
    assert result.exit_code == 2 and "aigp train sample" in result.output
    (tmp_path / "c.yaml").write_text("beta_typo: 0.2\n")
    result = runner.invoke(app, ["train", "dpo", "--pairs", str(tmp_path), "--policy-model", str(tmp_path),
                                 "--out", str(tmp_path / "m"), "--config", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2 and "beta_typo" in result.output
