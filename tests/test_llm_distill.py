"""The distillation set: rows from logs, teacher generation, judge filter, atomic files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from aigp.cli import app
from aigp.cli.demo_context import DemoContext
from aigp.distillation.distill import (
    DISTILL_FILE,
    MANIFEST_FILE,
    REJECTED_FILE,
    DistillConfig,
    generate,
    judge_filter,
    read_jsonl,
    run_distill,
    sft_records,
)
from aigp.distillation.judge import rule_judge_backend
from aigp.distillation.teacher import teacher_backend
from aigp.llm.parser import parse_action
from aigp.llm.rows import load_prompt_rows
from aigp.openai_compat.local_endpoint import LocalOpenAIServer


def test_rows_from_logs_are_point_in_time(market_logs) -> None:
    rows = load_prompt_rows(market_logs.path, n=200, seed=1)
    assert len(rows) == 200
    for column in ("description", "review_digest", "category", "list_price", "prev_discount", "gmv_3d", "date"):
        assert column in rows.columns and rows[column].notna().all(), column
    # The digest counts exactly the reviews posted before the decision: the review_count feature.
    counts = rows["review_digest"].str.extract(r"most recent of (\d+)")[0].fillna(0).astype(int)
    np.testing.assert_array_equal(counts.to_numpy(), rows["review_count"].to_numpy())
    # A window selects days priced; the same seed samples the same rows.
    days = pd.to_datetime(rows["date"]).dt.date
    start = sorted(days)[len(days) // 2]
    windowed = load_prompt_rows(market_logs.path, start=start)
    assert (pd.to_datetime(windowed["date"]).dt.date >= start).all()
    pd.testing.assert_frame_equal(rows, load_prompt_rows(market_logs.path, n=200, seed=1))


def test_distillation_set_keeps_only_perfect_responses_with_provenance(market_logs, tmp_path) -> None:
    cfg = DistillConfig(n_prompts=40, seed=2, temperature=1.0, samples_per_prompt=2)
    result = run_distill(market_logs.path, tmp_path / "set", cfg)
    kept, rejected = read_jsonl(tmp_path / "set" / DISTILL_FILE), read_jsonl(tmp_path / "set" / REJECTED_FILE)
    manifest = json.loads((tmp_path / "set" / MANIFEST_FILE).read_text())
    assert result.generations == 80 and len(kept) + len(rejected) == 80
    assert 0 < len(kept) < 80  # the teacher's sampling defects are filtered out
    assert manifest["records"] == len(kept) and manifest["filter"]["keep_rate"] == pytest.approx(len(kept) / 80,
                                                                                                  abs=1e-4)
    assert sum(manifest["filter"]["failures"].values()) >= len(rejected)
    for record in kept:
        assert all(score == 5 for score in record["judge"]["scores"].values()) and record["judge"]["in_safe"]
        assert record["prompt"][0]["role"] == "system" and record["completion"][0]["role"] == "assistant"
        assert record["teacher"]["name"] == "aigp-kb-teacher" and record["prompt_version"] == "aigp-pricing-v1"
        assert record["data_window"]["source"] == str(market_logs.path) and record["data_window"]["source_sha256"]
        prev = float(record["prompt"][1]["content"].split("prev_discount: ")[1].split(" ")[0])
        assert parse_action(record["completion"][0]["content"], prev).in_safe
    assert all(r["judge"]["issues"] for r in rejected)
    assert [p.name for p in (tmp_path / "set").iterdir() if p.name.startswith(".")] == []  # no temp files left
    assert sft_records(tmp_path / "set")[0].keys() == {"prompt", "completion"}


def test_generation_and_judging_through_endpoints(market_logs) -> None:
    rows = load_prompt_rows(market_logs.path, n=6, seed=4)
    backends = {"teacher": teacher_backend(), "judge": rule_judge_backend()}
    with LocalOpenAIServer(backends) as server:
        endpoint = {"base_url": server.base_url, "api_key_env": None, "backoff_s": 0.01}
        cfg = DistillConfig.build(n_prompts=6, temperature=0.0, teacher_endpoint={**endpoint, "model": "teacher"},
                                  judge_endpoint={**endpoint, "model": "judge"})
        remote = generate(rows, cfg)
        result = judge_filter(remote, cfg)
    local = generate(rows, cfg.with_updates(teacher_endpoint=None))
    assert [r["completion"] for r in remote] == [r["completion"] for r in local]
    assert remote[0]["teacher"]["endpoint"] == server.base_url
    assert result.report.keep_rate == 1.0 and result.kept[0]["judge"]["source"] == "rule+llm"
    # A dead endpoint: every generation fails, none is kept, the failures are counted.
    dead = cfg.with_updates(teacher_endpoint={**endpoint, "model": "teacher", "base_url": server.base_url,
                                              "max_retries": 0, "timeout_s": 1.0})
    failed = judge_filter(generate(rows, dead), cfg.with_updates(judge_endpoint=None))
    assert failed.failed_generations == 6 and failed.kept == [] and failed.report.judged == 0


def test_distill_cli(market_logs, tmp_path) -> None:
    out = tmp_path / "cli-set"
    runner = CliRunner()
    result = runner.invoke(app, ["distill", "--logs", str(market_logs.path), "--out", str(out), "--n", "12",
                                 "--act-only", "--no-progress"])
    assert result.exit_code == 0, result.output
    kept = read_jsonl(out / DISTILL_FILE)
    assert kept and all(r["mode"] == "act_only" and r["completion"][0]["content"].startswith("{") for r in kept)
    assert json.loads((out / "metrics.json").read_text())["judged"] == 12.0
    bad = runner.invoke(app, ["distill", "--logs", str(tmp_path / "missing"), "--out", str(out)])
    assert bad.exit_code == 2 and "missing" in bad.output
    half = runner.invoke(app, ["distill", "--logs", str(market_logs.path), "--teacher-url", "http://x"])
    assert half.exit_code == 2 and "go together" in half.output


def test_demo_stages(market_logs, tmp_path) -> None:
    from aigp.cli.llm import stage_base_model, stage_distill
    from aigp.llm.model_factory import SIZES, model_metadata

    ctx = DemoContext(logs=market_logs, root=tmp_path, seed=1, distill_prompts=10, corpus_prompts=20)
    assert "Qwen3 `small`" in stage_base_model(ctx)
    assert model_metadata(ctx.base_model)["size"] == "small"
    assert "of 10 teacher responses kept" in stage_distill(ctx)
    records = read_jsonl(ctx.distill.out_dir / DISTILL_FILE) + read_jsonl(ctx.distill.out_dir / REJECTED_FILE)
    # Prompts were trimmed to the small model's budget, counted with its own tokenizer.
    from transformers import AutoTokenizer

    from aigp.llm.model_factory import token_counter

    count = token_counter(AutoTokenizer.from_pretrained(ctx.base_model))
    assert all(sum(count(m["content"]) for m in r["prompt"]) <= SIZES["small"].prompt_budget for r in records)
    assert all("knowledge_to_2" in r["trimmed"] for r in records)
