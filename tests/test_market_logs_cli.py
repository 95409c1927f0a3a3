"""Market logs on disk and the `aigp simulate` / `aigp ab simulate` commands."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from aigp.cli import app
from aigp.market.logs import LOG_FILES, open_logs, simulate_to_directory
from aigp.schema import FEATURES, FORBIDDEN_SUBSTRINGS

runner = CliRunner()


def test_log_directory_is_complete_typed_and_identity_blind(market_logs) -> None:
    logs = open_logs(market_logs.path, verify=True)
    decisions = logs.read("decisions.parquet")
    assert len(decisions) == logs.manifest["rows"]["decisions"] == 400 * 14
    assert str(decisions["event_timestamp"].dtype) == "datetime64[us, UTC]"
    for name, feature in FEATURES.items():
        if name in decisions and feature.dtype in ("float32", "int64"):
            assert str(decisions[name].dtype) == feature.dtype, name
    for table in ("decisions.parquet", "skus.parquet", "reviews.parquet"):
        columns = logs.read(table).columns
        assert not [c for c in columns if any(s in c.lower() for s in FORBIDDEN_SUBSTRINGS)], table
    # Hidden latents never leave the simulator except in the truth table.
    assert "quality" not in decisions.columns and "quality" not in logs.read("skus.parquet").columns
    assert "quality" in logs.read("sku_truth.parquet").columns


def test_reviews_are_posted_after_the_day_they_describe(market_logs) -> None:
    reviews = market_logs.read("reviews.parquet")
    first = market_logs.read("decisions.parquet").groupby("sku_id").event_timestamp.min()
    assert (reviews.event_timestamp.to_numpy() > first.reindex(reviews.sku_id).to_numpy()).all()


def test_existing_logs_are_not_overwritten_without_consent(market_logs, tmp_path) -> None:
    target = tmp_path / "copy"
    shutil.copytree(market_logs.path, target)
    with pytest.raises(FileExistsError, match="overwrite"):
        simulate_to_directory(market_logs.config, target)


def test_a_corrupt_log_file_is_detected(market_logs, tmp_path) -> None:
    target = tmp_path / "corrupt"
    shutil.copytree(market_logs.path, target)
    with open(target / "decisions.parquet", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00garbage\x00")
    with pytest.raises(ValueError, match="checksum"):
        open_logs(target, verify=True)
    (target / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a complete market log"):
        open_logs(target)


def test_cli_simulate_writes_logs_and_reports_bad_config_in_one_line(tmp_path) -> None:
    out = tmp_path / "m"
    result = runner.invoke(app, ["simulate", "--out", str(out), "--skus", "30", "--launch-days", "3",
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert all((out / name).exists() for name in LOG_FILES)
    assert pd.read_parquet(out / "decisions.parquet").sku_id.nunique() == 30
    bad = runner.invoke(app, ["simulate", "--out", str(tmp_path / "x"), "--skus", "-3", "--no-progress"])
    assert bad.exit_code == 2
    assert "n_skus" in bad.output and "Traceback" not in bad.output


def test_cli_ab_simulate_prints_and_writes_the_table(tmp_path) -> None:
    config = tmp_path / "ab.yaml"
    config.write_text("cohort_skus: 200\ncohort_launch_days: 3\nhistory_skus: 300\nhistory_launch_days: 10\n"
                      "bootstrap: 100\n")
    result = runner.invoke(app, ["ab", "simulate", "--config", str(config), "--out", str(tmp_path / "ab")])
    assert result.exit_code == 0, result.output
    for group in ("random", "static", "expert", "price_sales", "oracle"):
        assert f"| {group} |" in result.output
    assert (tmp_path / "ab" / "ab_report.md").exists() and (tmp_path / "ab" / "ab_metrics.json").exists()
