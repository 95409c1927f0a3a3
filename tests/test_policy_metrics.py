"""Offline policy metrics (Avg Q, MAE, EAMA, EAMA-R, KIPS) on hand-built rows and on a simulated log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aigp.action import project_to_safe
from aigp.ltve.dataset import training_frame_from_logs
from aigp.policy_metrics import (
    RETURN,
    OfflineMetricsConfig,
    expert_rows,
    offline_policy_metrics,
    realised_returns,
    scorecard,
)


def _rows(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"sku_id": np.arange(n), "prev_discount": np.full(n, 0.8), "discount_change": np.zeros(n),
            "out_gmv": np.zeros(n), "out_spend": np.ones(n), "gmv_tier1": np.full(n, 100.0),
            "roi_target": np.full(n, 2.0)}
    return pd.DataFrame(base | columns)


def test_realised_return_sums_the_next_days_of_the_same_sku_only():
    rows = _rows(sku_id=np.array([1, 1, 1, 1, 2]), out_gmv=np.array([10.0, 20.0, 30.0, 40.0, 50.0]),
                 out_spend=np.array([5.0, 5.0, 5.0, 5.0, 10.0]))
    config = OfflineMetricsConfig(lambda_gmv=1.0, lambda_roi=0.0)
    # days t..t+2 of SKU 1, cut at its last day; SKU 2's GMV never leaks into SKU 1's window
    np.testing.assert_allclose(realised_returns(rows, config), np.array([60, 90, 70, 40, 50]) / 100.0)
    roi_only = realised_returns(rows, OfflineMetricsConfig(lambda_gmv=0.0, lambda_roi=1.0))
    np.testing.assert_allclose(roi_only, np.array([60 / 15, 90 / 15, 70 / 10, 40 / 5, 50 / 10]) / 2.0)
    with pytest.raises(ValueError, match="sorted"):
        realised_returns(rows.iloc[::-1])


def test_eama_r_weights_matches_by_the_expert_decisions_return():
    rows = _rows(discount_change=np.array([0.05, -0.05, 0.0, 0.1]), **{RETURN: np.array([3.0, 1.0, 0.0, 4.0])})
    policy = np.array([0.05, 0.05, 0.0, 0.0])  # matches rows 0 and 2; 0.1 off on rows 1 and 3
    m = offline_policy_metrics(rows, policy)
    assert m["mae"] == pytest.approx((0 + 0.1 + 0 + 0.1) / 4)
    assert m["eama"] == pytest.approx(0.5)
    assert m["eama_r"] == pytest.approx(3.0 / 8.0)  # the zero-return match counts for nothing
    kernel_off = np.exp(-(0.1 ** 2) / (2 * 0.05 ** 2))
    assert m["kips"] == pytest.approx((3.0 + kernel_off * (1.0 + 4.0)) / 8.0)
    assert m["eama_r"] < m["kips"] < 1.0


def test_avg_q_scores_the_policy_and_the_expert_with_the_ltve():
    class SumCritic:  # Q(s, a) = prev_discount + a: enough to check which action is scored
        def q_values(self, frame, candidates):
            return frame["prev_discount"].to_numpy()[:, None] + candidates

    rows = _rows(discount_change=np.array([0.0, 0.02]), **{RETURN: np.ones(2)})
    m = offline_policy_metrics(rows, np.array([0.04, 0.06]), ltve=SumCritic())
    assert m["avg_q"] == pytest.approx(0.85)
    assert m["avg_q_expert"] == pytest.approx(0.81)


def test_scorecard_adds_what_a_text_model_can_get_wrong_and_a_rule_policy_cannot():
    class SumCritic:
        def q_values(self, frame, candidates):
            return frame["prev_discount"].to_numpy()[:, None] + candidates

    rows = _rows(discount_change=np.array([0.0, 0.02, 0.0, 0.0]), **{RETURN: np.ones(4)})
    actions = np.array([0.04, 0.0, 0.0, 0.02])
    model = scorecard(rows, actions, parse_ok=np.array([True, False, False, True]),
                      compliant=np.array([True, False, True, True]), ltve=SumCritic())
    assert model["parse_failure_rate"] == 0.5 and model["model_action_share"] == 0.5
    assert model["compliance_rate"] == 0.75
    assert model["q_gain"] == pytest.approx(model["avg_q"] - model["avg_q_expert"])
    assert model["q_gain"] == pytest.approx((0.06 - 0.02) / 4)
    assert {k: model[k] for k in ("mae", "eama", "kips")} == {
        k: v for k, v in offline_policy_metrics(rows, actions).items() if k in ("mae", "eama", "kips")}
    rule = scorecard(rows, actions)
    assert rule["parse_failure_rate"] == 0.0 and rule["compliance_rate"] == 1.0 and "q_gain" not in rule
    with pytest.raises(ValueError, match="one flag per row"):
        scorecard(rows, actions, parse_ok=np.ones(3, dtype=bool))


def test_refuses_unsafe_or_misshapen_actions():
    rows = _rows(discount_change=np.zeros(2), **{RETURN: np.ones(2)})
    with pytest.raises(ValueError, match="A_safe"):
        offline_policy_metrics(rows, np.array([0.0, 0.5]))  # |a| > 0.2
    with pytest.raises(ValueError, match="A_safe"):
        offline_policy_metrics(rows, np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="one change per row"):
        offline_policy_metrics(rows, np.zeros(3))
    with pytest.raises(ValueError, match="return_3d"):
        offline_policy_metrics(rows.drop(columns=[RETURN]), np.zeros(2))


def test_on_a_simulated_log_the_expert_matches_itself_and_a_shifted_policy_does_not(market_logs):
    frame = training_frame_from_logs(market_logs.path)
    experts = expert_rows(frame)
    assert 0 < len(experts) < len(frame)
    assert (experts[RETURN] >= 0).all() and experts[RETURN].sum() > 0
    logged = experts["discount_change"].to_numpy()
    same = offline_policy_metrics(experts, logged)
    assert same["mae"] == pytest.approx(0.0, abs=1e-6)
    assert same["eama"] == same["eama_r"] == pytest.approx(1.0)
    assert same["kips"] == pytest.approx(1.0)

    shifted = project_to_safe(experts["prev_discount"].to_numpy(), logged + 0.1).change
    moved = np.abs(shifted - logged) >= 0.05
    m = offline_policy_metrics(experts, shifted)
    assert m["eama"] == pytest.approx(1.0 - moved.mean())
    assert m["kips"] < 1.0 and m["mae"] > 0.0
