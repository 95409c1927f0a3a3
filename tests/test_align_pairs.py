"""Pair selection (both thresholds, ambiguous pairs dropped), candidate parsing/dedupe, [ACT_ONLY] SFT twins."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aigp.align.pairs import PairsConfig, action_text, build_pairs, candidate_matrix, crosses_zero, select_pairs
from aigp.align.sampling import candidate_metrics, parse_candidates
from aigp.align.sft import act_only_record, split_records, with_act_only_copies
from aigp.llm.parser import parse_action
from aigp.llm.prompt import PromptConfig, task_text
from aigp.llm.sanitize import ACT_ONLY_TOKEN


class PeakedQ:
    """An analytic critic: Q(s, a) = -(a - best_s)^2, so the better of two actions is the one nearer best_s."""

    def __init__(self, best: np.ndarray):
        self.best = best
        self.calls = 0

    def q_values(self, frame: pd.DataFrame, candidates: np.ndarray) -> np.ndarray:
        self.calls += 1
        assert candidates.shape[0] == len(frame)
        return -((candidates - self.best[:, None]) ** 2)


def test_select_pairs_keeps_only_pairs_clearing_both_thresholds() -> None:
    changes = np.array([[0.00, 0.01, 0.10, -0.10]])
    q = np.array([[1.00, 0.99, 0.50, 0.97]])
    valid = np.ones_like(changes, dtype=bool)
    cfg = PairsConfig(delta_q=0.1, delta_a=0.02, max_pairs_per_prompt=10, balance_sign=False)
    triples = select_pairs(changes, q, valid, cfg)
    # 0 vs 2 (gap 0.5, |da| 0.1), 1 vs 2 (0.49, 0.09), 3 vs 2 (0.47, 0.2); 0 vs 1 fails Δa, 0 vs 3 fails ΔQ
    assert {(i, j) for _, i, j in triples} == {(0, 2)}  # rejected side used once: the largest gap wins
    cfg_many = cfg.with_updates(delta_q=0.01)
    pairs = {(i, j) for _, i, j in select_pairs(changes, q, valid, cfg_many)}
    assert (0, 1) not in pairs  # |Δa| = 0.01 < 0.02: ambiguous, dropped
    assert (0, 3) in pairs and (0, 2) in pairs
    assert not select_pairs(changes, q, np.zeros_like(valid), cfg)  # no valid candidates, no pairs


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 0.3), st.floats(0.0, 0.2), st.integers(1, 4))
def test_every_selected_pair_obeys_both_thresholds(seed: int, delta_q: float, delta_a: float, k: int) -> None:
    rng = np.random.default_rng(seed)
    changes = rng.uniform(-0.2, 0.2, size=(5, 6)).round(2)
    q = rng.normal(size=(5, 6))
    valid = rng.random((5, 6)) < 0.8
    cfg = PairsConfig(delta_q=delta_q, delta_a=delta_a, max_pairs_per_prompt=k)
    triples = select_pairs(changes, q, valid, cfg)
    for pid, i, j in triples:
        assert valid[pid, i] and valid[pid, j]
        assert q[pid, i] - q[pid, j] >= delta_q and q[pid, i] > q[pid, j]
        assert abs(changes[pid, i] - changes[pid, j]) >= delta_a
    per_prompt = pd.Series([t[0] for t in triples]).value_counts()
    assert (per_prompt <= k).all()



def test_balance_direction_keeps_equal_up_and_down_pairs_largest_gaps_first() -> None:
    # four prompts prefer the higher action (Q gaps 0.4, 0.3, 0.2, 0.1), one prefers the lower (gap 0.25)
    changes = np.array([[0.05, 0.0]] * 4 + [[-0.05, 0.0]])
    q = np.array([[0.4, 0.0], [0.3, 0.0], [0.2, 0.0], [0.1, 0.0], [0.25, 0.0]])
    valid = np.ones_like(changes, dtype=bool)
    cfg = PairsConfig(delta_q=0.01, delta_a=0.02, balance_sign=False)
    assert len(select_pairs(changes, q, valid, cfg)) == 5
    kept = select_pairs(changes, q, valid, cfg.with_updates(balance_direction=True))
    assert kept == [(0, 0, 1), (4, 0, 1)]  # the down pair and the largest-gap up pair, in prompt order


def _random_selection(seed: int, spread: float, **balance: bool) -> tuple[np.ndarray, list[tuple], list[tuple]]:
    """Random candidates of 8 prompts: their changes, every selected pair, and the pairs kept with ``balance``."""
    rng = np.random.default_rng(seed)
    changes = rng.uniform(-spread, spread, size=(8, 5)).round(2)
    q = rng.normal(size=(8, 5))
    valid = rng.random((8, 5)) < 0.9
    cfg = PairsConfig(delta_q=0.05, delta_a=0.02, max_pairs_per_prompt=3, balance_sign=False)
    return changes, select_pairs(changes, q, valid, cfg), select_pairs(changes, q, valid, cfg.with_updates(**balance))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_balanced_pairs_are_a_subset_with_as_many_up_as_down(seed: int) -> None:
    changes, every, kept = _random_selection(seed, 0.2, balance_direction=True)
    assert set(kept) <= set(every)
    up = sum(changes[p, i] > changes[p, j] for p, i, j in kept)
    assert up == len(kept) - up
    n_up = sum(changes[p, i] > changes[p, j] for p, i, j in every)
    assert len(kept) == 2 * min(n_up, len(every) - n_up)  # nothing of the rarer direction is lost


def test_balance_sign_is_the_default() -> None:
    assert PairsConfig().balance_sign and not PairsConfig().balance_direction


def test_balance_sign_balances_only_the_pairs_whose_answers_differ_at_the_minus_sign() -> None:
    # three pairs cross zero choosing the non-negative change (gaps 0.4, 0.3, 0.2), one crosses choosing the
    # negative change (0.25); two share a sign (0.5: both >= 0; 0.1: both < 0) and are kept whatever they prefer
    changes = np.array([[0.02, -0.01]] * 3 + [[-0.03, 0.0], [0.05, 0.02], [-0.05, -0.02]])
    q = np.array([[0.4, 0.0], [0.3, 0.0], [0.2, 0.0], [0.25, 0.0], [0.5, 0.0], [0.1, 0.0]])
    valid = np.ones_like(changes, dtype=bool)
    cfg = PairsConfig(delta_q=0.01, delta_a=0.02, max_pairs_per_prompt=1, balance_sign=False)
    assert len(select_pairs(changes, q, valid, cfg)) == 6
    kept = select_pairs(changes, q, valid, cfg.with_updates(balance_sign=True))
    assert kept == [(0, 0, 1), (3, 0, 1), (4, 0, 1), (5, 0, 1)]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_sign_balanced_pairs_keep_every_same_sign_pair_and_equal_crossing_pairs(seed: int) -> None:
    changes, every, kept = _random_selection(seed, 0.1, balance_sign=True)
    assert set(kept) <= set(every)
    crossing = [t for t in every if crosses_zero(changes[t[0], t[1]], changes[t[0], t[2]])]
    assert set(every) - set(crossing) <= set(kept)  # pairs whose answers share a sign are all kept
    kept_crossing = [t for t in kept if t in crossing]
    nonneg = sum(changes[p, i] >= 0 for p, i, _ in kept_crossing)
    assert nonneg == len(kept_crossing) - nonneg
    n_nonneg = sum(changes[p, i] >= 0 for p, i, _ in crossing)
    assert len(kept_crossing) == 2 * min(n_nonneg, len(crossing) - n_nonneg)


def _rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({"prompt_id": np.arange(n), "sku_id": np.arange(n) + 100, "prev_discount": [0.9] * n,
                         "prompt_messages": [json.dumps([{"role": "user", "content": f"p{i}"}]) for i in range(n)]})


def test_build_pairs_scores_all_candidates_in_one_call_and_writes_action_completions() -> None:
    rows = _rows(3)
    texts = [['{"discount_change": 0.05}', '{"discount_change": -0.10}', "garbage", '{"discount_change": 0.05}'],
             ['{"discount_change": 0.00}'],  # one candidate: no pair possible
             ['{"discount_change": 0.10}', '{"discount_change": 0.08}']]  # |Δa| = 0.02 passes Δa = 0.02
    candidates = parse_candidates(texts, rows["prev_discount"].to_numpy())
    assert candidates["kept"].sum() == 5  # garbage and the duplicate 0.05 dropped
    critic = PeakedQ(best=np.array([0.04, 0.0, 0.10]))
    result = build_pairs(rows, candidates, critic, PairsConfig(delta_q=1e-4, delta_a=0.02, balance_sign=False))
    assert critic.calls == 1
    table = result.pairs
    assert list(table["prompt_id"]) == [0, 2]
    assert table.loc[0, "chosen_change"] == pytest.approx(0.05)
    assert table.loc[0, "rejected_change"] == pytest.approx(-0.10)
    assert table.loc[1, "chosen_change"] == pytest.approx(0.10)
    assert (table["q_gap"] > 0).all()
    record = result.records[0]
    assert record["prompt"] == [{"role": "user", "content": "p0"}]
    assert record["chosen"][0]["content"] == '{"discount_change": 0.05, "new_discount": 0.95}'
    assert parse_action(record["rejected"][0]["content"], 0.9).discount_change == pytest.approx(-0.10)
    assert result.metrics["pairs/pairs"] == 2 and result.metrics["pairs/per_prompt"] == pytest.approx(2 / 3)
    assert result.metrics["pairs/crossing_zero_share"] == 0.5  # 0.05 / -0.10 crosses zero, 0.10 / 0.08 does not
    assert result.metrics["pairs/crossing_chosen_nonnegative_share"] == 1.0
    strict = build_pairs(rows, candidates, critic, PairsConfig(delta_q=1e-4, delta_a=0.03, balance_sign=False))
    assert list(strict.pairs["prompt_id"]) == [0]
    # by default the lone pair crossing zero has no counterpart choosing the negative change: dropped
    default = build_pairs(rows, candidates, critic, PairsConfig(delta_q=1e-4, delta_a=0.02))
    assert list(default.pairs["prompt_id"]) == [2] and default.metrics["pairs/balance_sign"] == 1.0
    assert default.metrics["pairs/dropped_by_balancing"] == 1.0 and "pairs/dropped_by_balancing" not in result.metrics


def test_candidates_outside_a_safe_are_not_kept_and_metrics_count_them() -> None:
    texts = [['{"discount_change": 0.5}', '{"new_discount": 0.4}', '{"discount_change": -0.05}', ""]]
    candidates = parse_candidates(texts, np.array([0.6]))
    assert list(candidates["reason"]) == ["projected", "projected", "ok", "empty"]
    assert list(candidates["kept"]) == [False, False, True, False]
    metrics = candidate_metrics(candidates, 1)
    assert metrics["sampling/parse_failure_rate"] == 0.25 and metrics["sampling/in_safe_rate"] == 0.25
    changes, valid = candidate_matrix(candidates, 2)
    assert changes.shape == (2, 1) and valid.tolist() == [[True], [False]]


def test_action_text_is_what_psi_reads_back() -> None:
    for prev, change in ((0.9, 0.05), (0.55, -0.05), (1.0, -0.2), (0.8, 0.0)):
        parsed = parse_action(action_text(change, prev), prev)
        assert parsed.in_safe and parsed.consistent and parsed.discount_change == pytest.approx(change)


def test_act_only_twin_of_a_full_record() -> None:
    full_task = task_text(PromptConfig())
    user = {"role": "user", "content": "facts\n## Task\n" + full_task}
    record = {"prompt": [{"role": "system", "content": "s"}, user],
              "completion": [{"role": "assistant", "content": '1. Milestone pace ...\n{"discount_change": -0.03, '
                                                              '"new_discount": 0.82}'}]}
    twin = act_only_record(record)
    assert twin is not None
    assert twin["prompt"][1]["content"].endswith(ACT_ONLY_TOKEN)
    assert twin["prompt"][1]["content"].startswith("facts\n## Task\n")
    assert twin["completion"][0]["content"] == '{"discount_change": -0.03, "new_discount": 0.82}'
    assert record["prompt"][1]["content"].endswith(full_task)  # the original is untouched
    assert act_only_record({**record, "completion": [{"role": "assistant", "content": "no action"}]}) is None
    assert len(with_act_only_copies([record, record])) == 4


def test_split_records_is_seeded_and_never_empty() -> None:
    records = [{"i": i} for i in range(10)]
    train, val = split_records(records, 0.2, seed=1)
    assert len(val) == 2 and len(train) == 8 and split_records(records, 0.2, seed=1) == (train, val)
    assert split_records(records, 0.0, seed=1)[1] == []
    with pytest.raises(ValueError, match="nothing to train"):
        split_records([{"i": 0}], 0.3, seed=0)


def test_max_full_examples_keeps_every_twin() -> None:
    full_task = task_text(PromptConfig())
    records = [{"prompt": [{"role": "user", "content": f"row {i}\n" + full_task}],
                "completion": [{"role": "assistant", "content": f'{{"discount_change": 0.0{i}, "new_discount": 0.9}}'}]}
               for i in range(5)]
    mixed = with_act_only_copies(records, max_full=2, seed=0)
    assert len(mixed) == 7 and sum(r["prompt"][0]["content"].endswith(ACT_ONLY_TOKEN) for r in mixed) == 5
    assert len(with_act_only_copies(records, max_full=0)) == 5


def test_pair_fit_signs_each_move_toward_the_pairs_chosen_side(monkeypatch) -> None:
    import aigp.align.policy as policy

    # prompt 0: pair prefers up (0.05 over -0.03), the model moved up 0.04 -> toward
    # prompt 1: pair prefers down (-0.05 over 0.02), the model moved up 0.02 -> away
    # prompt 2: pair prefers down, the model did not move
    before = {0: -0.01, 1: 0.0, 2: 0.01}
    after = {0: 0.03, 1: 0.02, 2: 0.01}

    def fake(model, rows, config=None):
        actions = after if model == "after" else before
        return pd.DataFrame({"change": [actions[int(i)] for i in rows["prompt_id"]]})

    monkeypatch.setattr(policy, "propose_on_rows", fake)
    pairs = pd.DataFrame({"prompt_id": [0, 1, 2], "chosen_change": [0.05, -0.05, -0.04],
                          "rejected_change": [-0.03, 0.02, -0.01]})
    rows = pd.DataFrame({"prompt_id": [2, 0, 1], "sku_id": [7, 8, 9]})
    fit = policy.pair_fit(pairs, rows, "before", "after")
    assert fit["up_pairs"] == 1 and fit["down_pairs"] == 2
    assert fit["up_toward"] == 1.0 and fit["up_away"] == 0.0 and fit["up_mean"] == pytest.approx(0.04)
    assert fit["down_toward"] == 0.0 and fit["down_away"] == 0.5 and fit["down_mean"] == pytest.approx(-0.01)
    assert fit["all_toward"] == pytest.approx(1 / 3)
    # answered with a price cut: prompt 0 before (-0.01), none after
    assert fit["negative_before"] == pytest.approx(1 / 3) and fit["negative_after"] == 0.0
    moves = policy.pair_moves(pairs, rows, "before", "after")
    assert moves["crossing"].tolist() == [True, True, False]  # -0.04 / -0.01 share the minus sign
    assert moves["up"].tolist() == [True, False, False]
    assert moves["toward"].to_numpy() == pytest.approx([0.04, -0.02, 0.0])
    assert policy.pair_fit(pairs.iloc[:0], rows, "before", "after") == {}
