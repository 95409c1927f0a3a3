"""`aigp ab report`: per-group GMV/ROI/MAR with CIs and uplift (the A/B analysis reused), plots, HTML."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from aigp.ab.experiment import ABConfig, run_ab
from aigp.ab.report import DAILY_FILE, METRICS_FILE, SKU_FILE, DailyOutcomeSink, build_report, report_config
from aigp.cli import app
from aigp.cli.demo_context import DemoContext
from aigp.io import write_json, write_parquet
from aigp.market.policies import RandomPolicy, StaticPolicy

runner = CliRunner()
CONFIG = ABConfig.build(allocation={"static": 0.5, "random": 0.5}, control="static", ceiling=None, cohort_skus=500,
                        cohort_launch_days=5, bootstrap=200, seed=3)


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.pngs: list[bytes] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs) -> None:
        src = dict(attrs).get("src", "")
        if tag == "img" and src.startswith("data:image/png;base64,"):
            self.pngs.append(base64.b64decode(src.split(",", 1)[1]))
        self._in_cell = tag == "td"

    def handle_data(self, data) -> None:
        if self._in_cell:
            self.cells.append(data)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory):
    """A small simulated A/B written the way `aigp ab simulate --out` writes it, with LTVE-like Q-scores."""
    sink = DailyOutcomeSink()
    result = run_ab(CONFIG, {"static": StaticPolicy(), "random": RandomPolicy()}, sink=sink)
    skus = result.run.summary.assign(group=result.groups)
    rng = np.random.default_rng(0)
    skus["q_score"] = np.log1p(skus["gmv_14d"]) + rng.normal(0.0, 0.3, len(skus))  # informative about GMV
    out = tmp_path_factory.mktemp("ab_report")
    write_parquet(out / SKU_FILE, skus)
    write_parquet(out / DAILY_FILE, sink.frame())
    write_json(out / METRICS_FILE, {"config": CONFIG.model_dump(mode="json")})  # as `ab simulate --out` does
    return out, result, skus, sink.frame()


def test_daily_outcomes_add_up_to_the_summary(experiment) -> None:
    _, result, skus, daily = experiment
    assert len(daily) == len(skus) * 14 and set(daily["day"]) == set(range(14))
    for h in (7, 14):
        total = daily[daily["day"] < h].groupby("sku_id")["gmv"].sum().reindex(skus["sku_id"]).to_numpy()
        np.testing.assert_allclose(total, skus[f"gmv_{h}d"].to_numpy(), rtol=1e-4)
    changes = daily.pivot(index="sku_id", columns="day", values="discount_change").reindex(skus["sku_id"])
    np.testing.assert_allclose(changes.to_numpy(), result.run.changes, atol=1e-6)


def test_report_reuses_the_ab_analysis(experiment) -> None:
    _, result, skus, daily = experiment
    report = build_report(skus, report_config(skus, CONFIG), daily=daily, plots=False)
    ours = report.result.metrics.set_index(["group", "horizon", "metric"])["value"]
    theirs = result.metrics.set_index(["group", "horizon", "metric"])["value"]
    pd.testing.assert_series_equal(ours.sort_index(), theirs.sort_index())
    up = report.result.uplift.set_index(["group", "horizon", "metric"])["uplift"].sort_index()
    pd.testing.assert_series_equal(up, result.uplift.set_index(["group", "horizon", "metric"])["uplift"].sort_index())
    m = report.result.metrics
    assert ((m.ci_low <= m.value + 1e-9) & (m.value <= m.ci_high + 1e-9)).all()
    assert "| static |" in report.markdown() and "| random |" in report.markdown()


def test_q_deciles_follow_informative_scores_and_not_random_ones(experiment) -> None:
    _, _, skus, _ = experiment
    cfg = report_config(skus, CONFIG)
    informative = build_report(skus, cfg, plots=False)
    table = informative.q_deciles
    assert list(table["decile"]) == list(range(1, 11)) and table["skus"].sum() == len(skus)
    assert informative.q_spearman["deciles_gmv_14d"] > 0.9 and informative.q_spearman["skus_gmv_14d"] > 0.8
    noise = skus.assign(q_score=np.random.default_rng(1).normal(size=len(skus)))
    assert abs(build_report(noise, cfg, plots=False).q_spearman["skus_gmv_14d"]) < 0.2


def test_cli_writes_an_html_report_with_its_plots(experiment, tmp_path) -> None:
    directory, *_ = experiment
    result = runner.invoke(app, ["ab", "report", str(directory), "--out", str(tmp_path / "report"),
                                 "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    page = _Images()
    page.feed((tmp_path / "report" / "ab_report.html").read_text())
    assert len(page.pngs) == 3 and all(p.startswith(b"\x89PNG") for p in page.pngs)  # GMV, |a|, Q deciles
    assert {"static", "random", "control"} <= set(page.cells)
    saved = json.loads((tmp_path / "report" / "ab_report.json").read_text())
    assert {r["horizon"] for r in saved["metrics"]} == {7, 14} and saved["q_deciles"]
    assert sorted(p.name for p in (tmp_path / "report" / "plots").glob("*.png")) == [
        "ab_abs_change.png", "ab_cumulative_gmv.png", "ab_q_deciles.png"]


def test_report_without_daily_outcomes_or_q(experiment, tmp_path) -> None:
    _, _, skus, _ = experiment
    only_skus = tmp_path / "skus.parquet"
    write_parquet(only_skus, skus.drop(columns=["q_score"]))
    q = tmp_path / "q.parquet"
    write_parquet(q, pd.DataFrame({"sku_id": np.repeat(skus["sku_id"].to_numpy(), 2),
                                   "q": np.repeat(skus["q_score"].to_numpy(), 2)}))
    result = runner.invoke(app, ["ab", "report", str(only_skus), "--out", str(tmp_path / "r1"), "--bootstrap", "60",
                                 "--control", "static"])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r1" / "ab_report.html").read_text()
    assert "no |a| distribution" in html and "No q_score column" in html
    page = _Images()
    page.feed(html)
    assert len(page.pngs) == 1
    result = runner.invoke(app, ["ab", "report", str(only_skus), "--out", str(tmp_path / "r2"), "--bootstrap", "60",
                                 "--control", "static", "--q-scores", str(q), "--q-column", "q"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r2" / "ab_report.json").read_text())["q_spearman"]["deciles_gmv_14d"] > 0.9


def test_report_errors_name_what_is_wrong(experiment, tmp_path, monkeypatch) -> None:
    from aigp.cli._common import console

    monkeypatch.setattr(console, "_width", 30)  # a narrow terminal must not break the one-line error
    directory, _, skus, _ = experiment
    result = runner.invoke(app, ["ab", "report", str(directory), "--out", str(tmp_path), "--control", "oracle"])
    assert result.exit_code == 2 and "control='oracle'" in result.output
    broken = tmp_path / "broken.parquet"
    write_parquet(broken, skus.drop(columns=["roi_target"]))
    result = runner.invoke(app, ["ab", "report", str(broken), "--out", str(tmp_path), "--control", "static"])
    assert result.exit_code == 2 and "roi_target" in result.output
    missing = tmp_path / ("a-long-directory-name-" * 4) / "nothing"
    result = runner.invoke(app, ["ab", "report", str(missing), "--out", str(tmp_path)])
    assert result.exit_code == 2
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert f"{missing} does not exist" in line


def test_simulate_then_report(tmp_path) -> None:
    """`ab simulate --out` writes what `ab report` reads (config, per-SKU and per SKU-day outcomes)."""
    config = tmp_path / "ab.yaml"
    config.write_text("cohort_skus: 200\ncohort_launch_days: 3\nhistory_skus: 300\nhistory_launch_days: 10\n"
                      "bootstrap: 100\n")
    result = runner.invoke(app, ["ab", "simulate", "--config", str(config), "--out", str(tmp_path / "ab")])
    assert result.exit_code == 0, result.output
    daily = pd.read_parquet(tmp_path / "ab" / DAILY_FILE)
    assert len(daily) == 200 * 14
    result = runner.invoke(app, ["ab", "report", str(tmp_path / "ab"), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "report" / "ab_report.json").read_text())
    assert saved["config"]["control"] == "price_sales" and saved["config"]["bootstrap"] == 100
    assert {r["group"] for r in saved["metrics"]} == {"random", "static", "expert", "price_sales", "oracle"}
    page = _Images()
    page.feed((tmp_path / "report" / "ab_report.html").read_text())
    assert len(page.pngs) == 2  # cumulative GMV and |a| per group (no Q-scores given)


def test_demo_ab_report_fills_every_section_with_daily_cumulative_gmv(market_logs, tmp_path) -> None:
    """The demo's A/B report: the cohort's daily outcomes give a cumulative-GMV curve for every day (not only the
    7/14-day points) and the |a| section; the demo's LTVE scores each SKU's launch-day state for the Q section."""
    from aigp.cli.monitor import demo_ab_report
    from aigp.ltve.artifact import save_model
    from aigp.ltve.dataset import training_frame_from_logs
    from aigp.ltve.train import LTVETrainConfig, train_ltve

    trained = train_ltve(training_frame_from_logs(market_logs.path),
                         LTVETrainConfig.build(critic={"steps": 20, "hidden_dims": [16]}, threads=2))
    sink = DailyOutcomeSink(keep_first_states=True)
    result = run_ab(CONFIG, {"static": StaticPolicy(), "random": RandomPolicy()}, sink=sink)
    assert len(sink.first_states()) == CONFIG.cohort_skus
    ltve = save_model(trained.model, tmp_path / "ltve")
    ctx = DemoContext(root=tmp_path, ab_baselines=result, ab_daily=sink, ltve=ltve)
    files = demo_ab_report(ctx)
    html = files["html"].read_text()
    assert "no |a| distribution" not in html and "No q_score column" not in html
    page = _Images()
    page.feed(html)
    assert len(page.pngs) == 3  # cumulative GMV, |a| per group, Q deciles
    saved = json.loads(files["json"].read_text())
    assert saved["q_deciles"] and np.isfinite(saved["q_spearman"]["deciles_gmv_14d"])
    # the cumulative-GMV curve has a point per day: it ends at each group's 14-day GMV per SKU
    from aigp.ab.report import build_report, report_config

    skus = result.run.summary.assign(group=result.groups)
    report = build_report(skus, report_config(skus, CONFIG), daily=sink.frame(), plots=False)
    per_day = report.daily.groupby(["group", "day"])["gmv"].sum().groupby("group").cumsum()
    assert per_day.index.get_level_values("day").nunique() == 14
    for group, frame in skus.groupby("group"):
        assert per_day.loc[(group, 13)] / len(frame) == pytest.approx(frame["gmv_14d"].mean(), rel=1e-6)
