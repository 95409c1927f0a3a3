"""Offline gate: checks, verdicts, champion margins, the simulated A/B and the JSON/HTML report."""

from __future__ import annotations

import html
import json

import numpy as np
import pandas as pd
import pytest

from aigp.action import project_to_safe
from aigp.gate import (
    GATE_HTML,
    GATE_JSON,
    GateConfig,
    decide,
    evaluate_candidate,
    heldout_from_logs,
    holdout_rows,
    is_simulator_log,
    judge_metrics,
)
from aigp.gate_report import GateReport, write_gate_report


def _proposer(offset: float, *, raw_offset: float | None = None, parse_fail_every: int = 0):
    """Proposals = the expert's logged action shifted by ``offset`` (raw: ``raw_offset``), projected."""

    def propose(model_dir: str, rows: pd.DataFrame) -> pd.DataFrame:
        prev = rows["prev_discount"].to_numpy(np.float64)
        raw = rows["discount_change"].to_numpy(np.float64) + (offset if raw_offset is None else raw_offset)
        parse_ok = np.ones(len(rows), dtype=bool)
        if parse_fail_every:
            parse_ok[::parse_fail_every] = False
        raw = np.where(parse_ok, raw, np.nan)
        safe = project_to_safe(prev, np.nan_to_num(raw, nan=0.0))
        compliant = parse_ok & (np.abs(safe.change - np.nan_to_num(raw)) < 1e-9)
        return pd.DataFrame({"change": safe.change, "raw_change": raw, "parse_ok": parse_ok, "compliant": compliant})

    return propose


@pytest.fixture(scope="module")
def heldout(market_logs) -> pd.DataFrame:
    import datetime as dt

    first = market_logs.config.start_date
    return heldout_from_logs(market_logs.path, launched_from=first + dt.timedelta(days=12))


def _config(**floors) -> GateConfig:
    return GateConfig.build(eval_rows=80, judge_samples=0, ab={"enabled": False}, floors=floors)


def test_heldout_rows_are_expert_rows_of_the_window(heldout) -> None:
    rows = holdout_rows(heldout, _config())
    assert len(rows) == 80 and (rows["inventory"] > 0).all() and (rows["return_3d"] >= 0).all()
    assert {"description", "review_digest", "out_gmv", "discount_change"} <= set(rows.columns)


def test_expert_copy_passes_and_a_shifted_policy_fails_the_mae_floor(heldout) -> None:
    good = evaluate_candidate("m", heldout, _config(max_mae=0.02), proposer=_proposer(0.0), log=lambda _: None)
    assert good.passed and good.candidate["mae"] == pytest.approx(0.0) and good.candidate["eama"] == 1.0
    bad = evaluate_candidate("m", heldout, _config(max_mae=0.02), proposer=_proposer(0.06), log=lambda _: None)
    assert not bad.passed
    assert any(r.startswith("mae=") and "misses the floor <= 0.02" in r for r in bad.reasons)
    assert bad.candidate["eama"] < 0.5


def test_unsafe_raw_proposals_fail_compliance_even_though_projection_hides_them(heldout) -> None:
    result = evaluate_candidate("m", heldout, _config(max_mae=None), proposer=_proposer(0.0, raw_offset=0.5),
                                log=lambda _: None)
    assert result.candidate["compliance_rate"] == 0.0
    assert [c.metric for c in result.checks if c.status == "failed"] == ["compliance_rate"]


def test_parse_failures_are_counted_and_gated(heldout) -> None:
    result = evaluate_candidate("m", heldout, _config(max_mae=None, min_compliance_rate=None),
                                proposer=_proposer(0.0, parse_fail_every=4), log=lambda _: None)
    assert result.candidate["parse_failure_rate"] == pytest.approx(0.25)
    assert "parse_failure_rate=0.25 misses the floor <= 0.05" in result.reasons[0]


ALL_FLOORS_OFF = {"max_parse_failure_rate": None, "min_compliance_rate": None, "min_judge_score": None,
                  "max_mae": None, "min_ab_gmv_uplift": None}


def test_a_model_that_writes_no_action_fails_even_with_every_floor_switched_off(heldout) -> None:
    silent = evaluate_candidate("m", heldout, _config(**ALL_FLOORS_OFF), proposer=_proposer(0.0, parse_fail_every=1),
                                log=lambda _: None)
    assert silent.candidate["model_action_share"] == 0.0 and not silent.passed
    assert [c.metric for c in silent.checks if c.status == "failed"] == ["model_action_share"]
    assert "model_action_share=0 misses the floor >= 0.5" in silent.reasons[0]
    # the same switched-off floors with a model that answers: passes, and the report says what was not checked
    talking = evaluate_candidate("m", heldout, _config(**ALL_FLOORS_OFF), proposer=_proposer(0.0),
                                 log=lambda _: None)
    assert talking.passed and talking.candidate["model_action_share"] == 1.0
    off = {s.split(":")[1] for s in talking.skipped if "switched off" in s}
    assert {"parse_failure_rate", "compliance_rate", "judge_score", "mae", "ab_gmv_uplift"} <= off
    assert "skipped" in talking.summary() and talking.as_dict()["skipped"] == talking.skipped
    with pytest.raises(ValueError):
        GateConfig.build(floors={"min_model_action_share": None})  # cannot be switched off


def test_the_html_report_lists_the_checks_not_made(heldout) -> None:
    from aigp.gate_report import gate_html

    result = evaluate_candidate("m", heldout, _config(**ALL_FLOORS_OFF), proposer=_proposer(0.0), log=lambda _: None)
    html = gate_html(result)
    assert "Not checked" in html and "floors.max_parse_failure_rate is null" in html


def test_the_report_says_why_each_check_was_not_made(heldout) -> None:
    """Every skipped check names its cause: which config switched it off, or what was missing."""
    from aigp.gate_report import gate_html

    judge_off = "switched off: judge_samples is 0 in this gate's config (the rule judge did not run)"
    result = evaluate_candidate("m", heldout, _config(min_eama=None), proposer=_proposer(0.0), log=lambda _: None,
                                no_champion="switched off: compare_champion is false in this run")
    skipped = {c.name: c.reason for c in result.checks if c.status == "skipped"}
    assert skipped["floor:judge_score"] == judge_off == skipped["non-inferiority:judge_score"]
    assert skipped["floor:ab_gmv_uplift"] == ("switched off: ab.enabled is false in this gate's config "
                                              "(no simulated A/B)")
    assert skipped["floor:eama"] == "switched off: floors.min_eama is null in this gate's config"
    assert skipped["non-inferiority:mae"] == "switched off: compare_champion is false in this run"
    page = gate_html(result)
    listed = page.split("<b>Not checked</b>")[1].split("</ul>")[0]
    assert listed.count("<li>") == len(skipped) == len(result.skipped)
    for name, reason in skipped.items():
        assert html.escape(f"{name}: {reason}") in listed, name
    # the A/B on: skipped only for want of a simulator log, and it says so
    on = GateConfig.build(eval_rows=80, judge_samples=0, ab={"enabled": True})
    reasons = {c.name: c.reason for c in decide(result.candidate, None, on)}
    assert reasons["floor:ab_gmv_uplift"] == ("not measured: no simulator log (market_logs) was given, so no "
                                              "simulated A/B ran")


def test_non_inferiority_against_the_champion_on_the_same_rows(heldout) -> None:
    def by_model(model_dir, rows):
        return _proposer(0.0 if model_dir == "champion" else 0.07)(model_dir, rows)

    cfg = _config(max_mae=None, min_compliance_rate=None)
    result = evaluate_candidate("candidate", heldout, cfg, proposer=by_model, champion_dir="champion",
                                champion_version="3", log=lambda _: None)
    assert result.champion is not None and result.champion["mae"] == pytest.approx(0.0)
    failed = {c.metric for c in result.checks if c.status == "failed"}
    assert {"mae", "eama"} <= failed and not result.passed
    # without a champion the same candidate passes: the margins are skipped, and say why
    alone = evaluate_candidate("candidate", heldout, cfg, proposer=by_model, log=lambda _: None)
    assert alone.passed
    margins = {c.metric: c.reason for c in alone.checks if c.kind == "non-inferiority"}
    assert margins.pop("judge_score").startswith("switched off: judge_samples is 0")  # the judge is off in _config
    assert set(margins.values()) == {"no champion to compare with"}


def test_unmeasured_metric_fails_a_configured_floor() -> None:
    checks = decide({"parse_failure_rate": 0.0, "compliance_rate": 1.0, "mae": float("nan")},
                    None, GateConfig.build(judge_samples=4))
    status = {c.metric: c.status for c in checks if c.kind == "floor"}
    assert status["mae"] == "failed" and status["judge_score"] == "failed" and status["ab_gmv_uplift"] == "skipped"


def test_judge_scores_teacher_responses_high_and_garbage_low(market_logs) -> None:
    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.llm.prompt import build_prompt
    from aigp.llm.rows import load_prompt_rows

    rows = load_prompt_rows(market_logs.path, n=6, seed=1).to_dict("records")
    prompts = [build_prompt(r) for r in rows]
    teacher = KnowledgeBaseTeacher()
    good = judge_metrics(prompts, [teacher.respond(p).text for p in prompts])
    bad = judge_metrics(prompts, ["the price is fine {\"discount\": 3.0}"] * len(prompts))
    assert good["judge_score"] >= 4.5 and good["judge_perfect_share"] > 0.5
    assert bad["judge_score"] < good["judge_score"] and bad["judge_perfect_share"] == 0.0


def test_simulated_ab_runs_when_the_data_is_a_simulator_log(market_logs, heldout) -> None:
    from aigp.market.policies import ExpertPolicy

    assert is_simulator_log(market_logs.path) and not is_simulator_log(None)
    cfg = GateConfig.build(eval_rows=40, judge_samples=0, floors={"max_mae": None, "min_ab_gmv_uplift": 5.0},
                           ab={"cohort_skus": 30, "cohort_launch_days": 2, "bootstrap": 50})
    result = evaluate_candidate("m", heldout, cfg, proposer=_proposer(0.0), policy_factory=lambda _: ExpertPolicy(),
                                logs_dir=market_logs.path, log=lambda _: None)
    assert np.isfinite(result.candidate["ab_gmv_uplift"]) and result.candidate["ab_horizon"] == 14
    # a +500% GMV floor cannot be met: the A/B check is what fails
    assert [c.metric for c in result.checks if c.status == "failed"] == ["ab_gmv_uplift"]
    assert {r["group"] for r in result.context["ab"]["ab_table"]} == {"candidate", "price_sales"}


def test_report_is_written_as_json_and_html_and_read_by_the_registry(heldout, tmp_path) -> None:
    result = evaluate_candidate("m", heldout, _config(max_mae=0.02), proposer=_proposer(0.06), log=lambda _: None)
    report = write_gate_report(result, tmp_path / "gate")
    assert isinstance(report, GateReport) and report.status == "failed" and report.reasons == tuple(result.reasons)
    data = json.loads((tmp_path / "gate" / GATE_JSON).read_text())
    assert data["passed"] is False and data["candidate"]["mae"] == pytest.approx(result.candidate["mae"])
    page = (tmp_path / "gate" / GATE_HTML).read_text()
    assert "FAILED" in page and page.count("data:image/png;base64") == 2 and "misses the floor" in page
    again = GateReport.from_json(tmp_path / "gate" / GATE_JSON)
    assert again.status == "failed" and again.html_path == tmp_path / "gate" / GATE_HTML


def test_bad_proposals_are_refused(heldout) -> None:
    def wrong_length(model_dir, rows):
        return _proposer(0.0)(model_dir, rows).iloc[:-1]

    with pytest.raises(ValueError, match="proposals have 79 rows for 80"):
        evaluate_candidate("m", heldout, _config(), proposer=wrong_length, log=lambda _: None)

    def unprojected(model_dir, rows):
        out = _proposer(0.0)(model_dir, rows)
        return out.assign(change=0.5)

    with pytest.raises(ValueError, match="projected into A_safe"):
        evaluate_candidate("m", heldout, _config(), proposer=unprojected, log=lambda _: None)
