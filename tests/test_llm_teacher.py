"""The built-in knowledge-base teacher: decisions from the prompt only, reasoning, noise, simulator policy."""

from __future__ import annotations

import re

import numpy as np
import pytest
from llm_support import LAUNCH, LOW_STOCK, MID, behind_pace_row, roi_below_target_row, row

from aigp.action import is_safe
from aigp.distillation.judge import RuleJudge
from aigp.distillation.teacher import KnowledgeBaseTeacher, TeacherConfig, TeacherPolicy
from aigp.llm.parser import parse_action
from aigp.llm.prompt import PromptConfig, build_prompt
from aigp.llm.prompt_reader import parse_prompt
from aigp.market.config import MarketConfig
from aigp.market.policies import RandomPolicy
from aigp.market.simulator import Market

TEACHER = KnowledgeBaseTeacher()


def _decide(features: dict, **prompt) -> tuple[str, float]:
    text = TEACHER.respond(build_prompt(features, PromptConfig(**prompt)), temperature=0.0).text
    return text, parse_action(text, features["prev_discount"]).discount_change


def test_decisions_follow_the_playbook_in_clear_situations() -> None:
    assert _decide(roi_below_target_row())[1] > 0  # ROI under water: raise the price
    assert _decide(behind_pace_row())[1] < 0  # behind pace with ROI headroom: deepen
    assert _decide(LOW_STOCK)[1] == pytest.approx(0.05)  # sells out before day 14: raise
    assert _decide(LAUNCH)[1] == 0.0  # launch at the usual discount of comparables: hold
    assert _decide(row(LAUNCH, prev_discount=1.0))[1] == pytest.approx(-0.05)  # launch at list price: move toward it
    # Without the knowledge base's ROI rule the teacher steers by the signs of the gaps.
    text, change = _decide(roi_below_target_row(), include_knowledge=False)
    assert change > 0 and "roi_lean = +0.03" in text and "[kb:" not in text


def test_the_response_reasons_over_every_factor_and_ends_in_the_json_action() -> None:
    text, change = _decide(MID)
    steps = re.findall(r"^(\d+)\. ([A-Za-z ]+):", text, re.MULTILINE)
    assert [t for _, t in steps] == ["Milestone pace", "ROI budget", "Traffic and conversion", "Stock", "Reviews",
                                     "Calendar", "Competitor price", "Knowledge base", "Decision"]
    assert text.splitlines()[-1].startswith('{"discount_change": ')
    assert "[kb:rule-roi-arithmetic]" in text and "review_score = 1.33 (positive)" in text
    facts = parse_prompt(build_prompt(MID))
    for name in ("cum_gmv", "gmv_tier1", "cum_roi", "roi_target", "price_position"):
        assert f"{name} = {facts.fields[name]}" in text  # cites the prompt's numbers verbatim
    act = TEACHER.respond(build_prompt(MID, PromptConfig(act_only=True)), temperature=0.0).text
    assert act.startswith("{") and "\n" not in act.strip()
    assert parse_action(act, MID["prev_discount"]).discount_change == change


def test_the_teacher_reads_only_the_prompt() -> None:
    prompt = build_prompt(MID)
    # The same prompt as chat messages, ChatML or text gives the same answer ...
    answers = {TEACHER.respond(p, temperature=0.0).text for p in (prompt, prompt.messages, prompt.chatml())}
    assert len(answers) == 1
    # ... and editing a number in the prompt text changes the decision.
    edited = prompt.user.replace("cum_spend: 4255.4", "cum_spend: 9000.0")
    assert TEACHER.respond(edited, temperature=0.0).text != answers.pop()


def test_missing_critical_fields_give_a_hold() -> None:
    text = TEACHER.respond(build_prompt(row(MID, roi_target=None)), temperature=0.0).text
    result = parse_action(text, MID["prev_discount"])
    assert result.discount_change == 0.0 and not result.fallback


def test_sampling_noise_is_seeded_and_judged() -> None:
    teacher = KnowledgeBaseTeacher(TeacherConfig(defect_rate=0.5))
    prompts = [build_prompt(features) for features in (MID, LOW_STOCK, behind_pace_row(), roi_below_target_row())]
    responses = [teacher.respond(p, temperature=1.0, seed=s) for p in prompts for s in range(25)]
    again = [teacher.respond(p, temperature=1.0, seed=s) for p in prompts for s in range(25)]
    assert [r.text for r in responses] == [r.text for r in again]
    defective = [r for r in responses if r.defect]
    assert 0.3 < len(defective) / len(responses) < 0.7  # P(defect) = 0.5 x temperature 1.0
    judge = RuleJudge()
    for p, r in zip([p for p in prompts for _ in range(25)], responses, strict=True):
        assert judge.judge(p, r.text).kept == (r.defect is None), (r.defect, r.text)


def test_teacher_policy_in_the_simulator() -> None:
    market = Market(MarketConfig.build(n_skus=60, launch_days=10, seed=3))
    policy = TeacherPolicy()
    taught = market.run({"teacher": policy})
    random = market.run({"random": RandomPolicy()})
    assert policy.decisions == 60 * 14 and policy.fallbacks == 0 and policy.projected == 0
    assert taught.summary["projected_actions"].sum() == 0
    prev = np.hstack([np.asarray(market.skus.launch_discount)[:, None], taught.discounts[:, :-1]])
    assert is_safe(prev, taught.changes).all() and np.abs(taught.changes).max() <= 0.05 + 1e-9
    # On the same SKUs the teacher keeps the 14-day ROI far above what random pricing achieves.
    roi = lambda s: s["gmv_14d"].sum() / s["spend_14d"].sum()  # noqa: E731
    assert roi(taught.summary) > 1.5 * roi(random.summary)
