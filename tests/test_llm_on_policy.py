"""On-policy distillation (aigp.distillation.on_policy): the states a policy visits, as prompt rows the teacher
can label."""

from __future__ import annotations

import numpy as np
import pytest

from aigp.distillation.on_policy import OnPolicyConfig, StateRecorder, on_policy_summary, visited_rows
from aigp.distillation.teacher import TeacherPolicy
from aigp.llm.prompt import PromptConfig, build_prompt
from aigp.market.policies import build_baselines


class _Shift:
    """Always proposes the same change, so where it leads differs from the teacher's path."""

    name, requires_text, requires_truth = "shift", False, False

    def __init__(self, change: float):
        self.change = change

    def act(self, obs):
        return np.full(len(obs.frame), self.change)


def test_every_decision_of_the_cohort_is_recorded_with_its_action():
    cfg = OnPolicyConfig(skus=6, seed=3, launch_days=2)
    rows = visited_rows(_Shift(-0.02), cfg)
    assert len(rows) == 6 * cfg.market().horizon_days  # one decision per SKU and priced day
    assert rows["sku_id"].min() >= cfg.sku_id_offset  # never a logged or an A/B SKU id
    np.testing.assert_allclose(rows["policy_change"], -0.02)
    prompt = build_prompt(rows.iloc[0].to_dict(), PromptConfig(act_only=True, compact=True))
    assert prompt.user  # a recorded state is a prompt the teacher can answer


def test_the_states_depend_on_who_priced_them():
    cfg = OnPolicyConfig(skus=6, seed=3, launch_days=2)
    cut, raise_ = visited_rows(_Shift(-0.03), cfg), visited_rows(_Shift(0.03), cfg)
    assert (cut["sku_id"].to_numpy() == raise_["sku_id"].to_numpy()).all()
    assert not np.allclose(cut["prev_discount"], raise_["prev_discount"])


def test_summary_scores_the_teacher_against_itself_as_exact():
    compact = PromptConfig(act_only=True, compact=True)
    teacher = TeacherPolicy(prompt_config=compact)
    rows = visited_rows(teacher, OnPolicyConfig(skus=4, seed=5, launch_days=1))
    again = TeacherPolicy(prompt_config=compact)
    answers = np.concatenate([again.act(_Obs(rows.iloc[[i]])) for i in range(len(rows))])
    assert on_policy_summary(rows, answers)["exact_agreement"] == 1.0
    assert on_policy_summary(rows, answers + 0.01)["exact_agreement"] == 0.0
    with pytest.raises(ValueError, match="teacher answers"):
        on_policy_summary(rows, answers[:-1])


def test_a_policy_that_reads_the_hidden_truth_is_refused():
    oracle = build_baselines(["oracle"], dynamics=OnPolicyConfig().market().dynamics)["oracle"]
    with pytest.raises(ValueError, match="hidden truth"):
        StateRecorder(oracle)


class _Obs:
    """A recorded row as an observation a text policy can read."""

    def __init__(self, frame):
        self.frame = frame.drop(columns=["policy_change"])

    def with_text_columns(self):
        return self.frame


def test_rounds_add_the_teacher_labels_of_the_students_own_states(tmp_path, market_logs, one_torch_thread):
    from align_support import TEST_PROMPT, act_only_records, tiny_base_model

    from aigp.align.policy import PolicyConfig
    from aigp.align.sft import SFTStepConfig
    from aigp.distillation.distill import DistillConfig
    from aigp.distillation.on_policy import on_policy_rounds
    from aigp.llm.rows import load_prompt_rows

    rows = load_prompt_rows(market_logs.path, n=8, seed=0)
    base = tiny_base_model(tmp_path, rows)
    records = act_only_records(rows)
    sft = SFTStepConfig.build(lora={"enabled": False}, act_only_copies=False, validation_share=0.0,
                              optim={"max_steps": 2, "batch_size": 2, "threads": 1})
    policy = PolicyConfig(prompt=TEST_PROMPT, generation={"max_new_tokens": 8}, threads=1)
    cohort = OnPolicyConfig(skus=2, seed=4, launch_days=1)
    distill = DistillConfig(n_prompts=None, temperature=0.0, prompt=TEST_PROMPT)
    run = on_policy_rounds(base, records, tmp_path / "dagger", rounds=1, cohort=cohort, distill=distill, sft=sft,
                           policy=policy, log=lambda _: None)
    (summary,) = run.rounds
    assert summary["states"] == 2 * cohort.market().horizon_days
    assert 0 < summary["labels"] <= summary["states"]  # the judge keeps what it passes
    assert len(run.records) == len(records) + summary["labels"] == summary["sft_set"]
    assert run.records[: len(records)] == records  # the given set is kept, the round's labels appended
    assert (run.model_dir / "config.json").exists() and run.model_dir != base
    with pytest.raises(ValueError, match="differs from the distillation prompt"):
        on_policy_rounds(base, records, tmp_path / "x", rounds=1, cohort=cohort, sft=sft, policy=policy, log=print,
                         distill=distill.with_updates(prompt=TEST_PROMPT.with_updates(reviews_max_chars=40)))
