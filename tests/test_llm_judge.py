"""The judge: rule checks per dimension, the planted-defect set and the judge's agreement with its labels."""

from __future__ import annotations

import numpy as np
import pytest
from llm_support import LAUNCH, LOW_STOCK, MID, behind_pace_row, roi_below_target_row, row

from aigp.distillation import defects
from aigp.distillation.judge import (
    DIMENSIONS,
    RuleJudge,
    agreement,
    filter_report,
    judge_messages,
    parse_judge_output,
    planted_defect_set,
    read_judge_messages,
)
from aigp.distillation.teacher import KnowledgeBaseTeacher
from aigp.llm.prompt import PromptConfig, build_prompt
from aigp.llm.prompt_reader import parse_prompt

TEACHER = KnowledgeBaseTeacher()
JUDGE = RuleJudge()
ROWS = [MID, LAUNCH, LOW_STOCK, behind_pace_row(), roi_below_target_row(), row(MID, date="2026-08-20"),
        row(MID, is_promotion=True), row(LOW_STOCK, review_digest="No reviews yet.", review_count=0)]
PROMPTS = [build_prompt(r, cfg) for r in ROWS for cfg in (PromptConfig(), PromptConfig(include_knowledge=False),
                                                        PromptConfig(include_diagnosis=False))]


def test_clean_teacher_responses_score_five_on_every_dimension() -> None:
    verdicts = [JUDGE.judge(p, TEACHER.respond(p, temperature=0.0).text) for p in PROMPTS]
    assert all(v.kept for v in verdicts), [v.issues for v in verdicts if not v.kept][:1]
    report = filter_report(verdicts)
    assert report.keep_rate == 1.0 and report.mean_scores == {d: 5.0 for d in DIMENSIONS}


def test_planted_defects_are_caught_on_their_dimension_and_rewordings_are_kept() -> None:
    labelled = planted_defect_set(PROMPTS * 5, TEACHER, defect_share=0.6, variant_share=0.5, seed=3)
    kinds = {lab.kind for lab in labelled}
    assert set(defects.KINDS) <= kinds and {"clean:bullets", "clean:fenced_json", "clean:labelled_json"} <= kinds
    verdicts = [JUDGE.judge(lab.prompt, lab.response) for lab in labelled]
    result = agreement(labelled, verdicts)
    assert result.agreement == 1.0 and result.false_keep == 0 and result.false_reject == 0
    for kind, stats in result.by_kind.items():
        if kind in defects.PRIMARY:
            assert stats["primary_flagged"] == stats["n"], kind


@pytest.mark.parametrize("kind, dimension", sorted(defects.PRIMARY.items()))
def test_each_defect_kind_names_its_dimension(kind: str, dimension: str) -> None:
    for prompt in PROMPTS:
        clean = TEACHER.respond(prompt, temperature=0.0).text
        planted = defects.plant(kind, clean, parse_prompt(prompt), np.random.default_rng(0))
        if planted is None:
            continue
        verdict = JUDGE.judge(prompt, planted)
        assert not verdict.kept
        if dimension == defects.SAFE:
            assert not verdict.in_safe
        else:
            assert verdict.scores[dimension] < 5 and verdict.issues[dimension]
        return
    pytest.fail(f"defect {kind} applied to none of the prompts")


def test_act_only_responses_are_judged_on_the_action() -> None:
    prompt = build_prompt(MID, PromptConfig(act_only=True))
    good = JUDGE.judge(prompt, TEACHER.respond(prompt, temperature=0.0).text)
    assert good.kept
    two = JUDGE.judge(prompt, '{"discount_change": -0.02, "new_discount": 0.87} {"discount_change": 0.02}')
    assert not two.kept and two.scores["reasoning_decision_consistency"] < 5
    unsafe = JUDGE.judge(prompt, '{"discount_change": 0.3}')
    assert not unsafe.in_safe and not unsafe.kept
    assert not JUDGE.judge(prompt, "").kept


def test_judge_rubric_round_trip_and_output_parsing() -> None:
    prompt = build_prompt(MID)
    response = "text with <<<END RESPONSE>>> marker"
    messages = judge_messages(prompt, response)
    assert read_judge_messages(messages) == (prompt.user, "text with  marker")
    scores, issues = parse_judge_output('Reasoning... {"data_accuracy": 5, "content_completeness": "4", '
                                        '"reasoning_internal_coherence": 9, "issues": ["x"]}')
    assert scores == {"data_accuracy": 5, "content_completeness": 4, "reasoning_internal_coherence": 5,
                      "reasoning_decision_consistency": 1}
    assert "x" in issues and any("reasoning_decision_consistency" in i for i in issues)
    assert parse_judge_output("no json")[0] == {d: 1 for d in DIMENSIONS}


def test_braces_in_prose_are_part_of_the_reasoning() -> None:
    prompt = build_prompt(MID)
    clean = TEACHER.respond(prompt, temperature=0.0).text
    with_set = clean.replace("1. Milestone pace: ", "1. Milestone pace: over the set {days 0..13} ", 1)
    assert JUDGE.judge(prompt, with_set).kept
