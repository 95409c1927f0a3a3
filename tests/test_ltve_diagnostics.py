"""Issue 20: the LTVE's ranking diagnostics against Monte-Carlo truth, policy-level validity, the ensemble's
lower confidence bound, derived state features and the policies that act on the critic."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from aigp.action import feasible_change_bounds, is_safe
from aigp.ltve.critic import LTVE, LTVEConfig, lower_confidence_bound, update_flops
from aigp.ltve.dataset import DERIVED_FEATURES, FeatureNormaliser, training_frame_from_logs
from aigp.ltve.diagnostics import (
    bootstrap_states,
    per_state_ranking,
    policy_validity,
    ranking_diagnostics,
    separated_candidates,
    summarise_states,
    wilson_interval,
)
from aigp.ltve.evaluate import (
    EvaluationConfig,
    MonteCarloConfig,
    branch_candidates,
    discounted_returns,
    monte_carlo_branches,
    monte_carlo_metrics,
    pair_truth,
)
from aigp.ltve.train import LTVETrainConfig, train_ltve

# tiny networks: a second OpenMP thread only adds synchronisation (and the cores are shared)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------------------
# ranking diagnostics: pinned on hand-made Q and truth
ACTIONS = np.array([[0.00, 0.10, -0.10, 0.05], [0.00, -0.10, 0.10, 0.20]])
TRUTH = np.array([[1.0, 2.0, 0.5, 1.5], [3.0, 1.0, 2.0, 0.0]])
TIGHT = np.full(TRUTH.shape, 0.01)  # standard errors small enough that every pair is separated


def test_a_perfect_critic_scores_perfectly() -> None:
    d = ranking_diagnostics(TRUTH.copy(), TRUTH, TIGHT, ACTIONS, 0.02)
    assert d["mc_spearman_within_state"] == pytest.approx(1.0)
    assert d["mc_spearman_within_state_gap"] == pytest.approx(1.0)
    assert d["mc_pairwise_accuracy"] == d["mc_pairwise_accuracy_gap"] == 1.0
    assert d["mc_cda_vs_truth"] == 1.0 and d["mc_regret"] == 0.0 and d["mc_regret_share"] == 0.0
    assert d["mc_calibration_slope"] == pytest.approx(1.0) and d["mc_calibration_bias"] == pytest.approx(0.0)
    # state 0: Q's choice (truth 2.0) beats the logged action (1.0); state 1: the logged one is the best
    assert d["mc_greedy_gain_vs_logged"] == pytest.approx(0.5)
    assert d["mc_expert_truly_better"] == 0.5  # state 0: cf better; state 1: expert better


def test_a_reversed_critic_scores_the_opposite() -> None:
    d = ranking_diagnostics(-TRUTH, TRUTH, TIGHT, ACTIONS, 0.02)
    assert d["mc_spearman_within_state"] == pytest.approx(-1.0)
    assert d["mc_pairwise_accuracy_gap"] == 0.0 and d["mc_cda_vs_truth"] == 0.0
    # it picks the worst candidate: regret = best - worst, the whole spread
    assert d["mc_regret"] == pytest.approx(((2.0 - 0.5) + (3.0 - 0.0)) / 2)
    assert d["mc_regret_share"] == pytest.approx(1.0)
    assert d["mc_calibration_slope"] == pytest.approx(-1.0)


def test_calibration_line_and_bias() -> None:
    d = ranking_diagnostics(2 * TRUTH + 1, TRUTH, TIGHT, ACTIONS, 0.02)
    assert d["mc_calibration_slope"] == pytest.approx(0.5)  # truth = -0.5 + 0.5 Q
    assert d["mc_calibration_intercept"] == pytest.approx(-0.5)
    assert d["mc_calibration_bias"] == pytest.approx(TRUTH.mean() + 1)
    assert d["mc_spearman_within_state_gap"] == pytest.approx(1.0)  # an affine Q ranks perfectly


def test_pairs_closer_than_delta_a_are_left_out() -> None:
    actions = np.array([[0.0, 0.01, 0.10, 0.20]])
    truth = np.array([[1.0, 1.5, 3.0, 4.0]])
    q = np.array([[1.2, 1.1, 3.0, 3.5]])  # misorders only the two candidates 0.01 apart
    d = ranking_diagnostics(q, truth, np.full((1, 4), 0.01), actions, 0.02)
    assert d["mc_pairwise_accuracy"] == pytest.approx(5 / 6)
    assert d["mc_pairwise_accuracy_gap"] == 1.0 and d["mc_pairs_gap"] == 5
    assert d["mc_spearman_within_state"] < 1.0
    assert d["mc_spearman_within_state_gap"] == pytest.approx(1.0)  # candidate 0.01 dropped


def test_separated_candidates_walks_in_action_order() -> None:
    keep = separated_candidates(np.array([[0.06, 0.0, 0.05, 0.01, 0.2]]), 0.02)
    assert keep.tolist() == [[False, True, True, False, True]]
    assert separated_candidates(np.array([[0.0, 0.0]]), 0.0).all()


def test_unclear_pairs_do_not_count() -> None:
    wide = np.full(TRUTH.shape, 10.0)  # the truth separates nothing
    d = ranking_diagnostics(-TRUTH, TRUTH, wide, ACTIONS, 0.02)
    assert math.isnan(d["mc_pairwise_accuracy_gap"]) and math.isnan(d["mc_cda_vs_truth"])
    assert d["mc_pairs_gap"] == 0


def _noisy_case(seed: int = 0, n: int = 40, k: int = 6) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    actions = np.round(rng.uniform(-0.2, 0.2, (n, k)), 2)
    truth = rng.normal(size=(n, k))
    return truth + rng.normal(scale=0.8, size=(n, k)), truth, rng.uniform(0.05, 0.4, (n, k)), actions


def test_per_state_parts_average_to_the_ranking_diagnostics() -> None:
    q, truth, se, actions = _noisy_case()
    whole = ranking_diagnostics(q, truth, se, actions, 0.02)
    parts = summarise_states(per_state_ranking(q, truth, se, actions, 0.02))
    for key, value in parts.items():
        assert value == pytest.approx(whole[key]), key
    assert 0.2 < parts["mc_pairwise_accuracy_gap"] < 0.99  # the case is neither trivial nor hopeless


def test_bootstrap_pairs_critics_on_the_same_resamples() -> None:
    q, truth, se, actions = _noisy_case()
    stats = {"noisy": per_state_ranking(q, truth, se, actions, 0.02),
             "same": per_state_ranking(q.copy(), truth, se, actions, 0.02),
             "perfect": per_state_ranking(truth.copy(), truth, se, actions, 0.02)}
    ci = bootstrap_states(stats, "noisy", 200, np.random.default_rng(0))
    point = summarise_states(stats["noisy"])
    for metric, value in point.items():
        assert ci["noisy"][f"{metric}_lo"] <= value <= ci["noisy"][f"{metric}_hi"], metric
        assert ci["noisy"][f"{metric}_lo"] < ci["noisy"][f"{metric}_hi"], metric  # resampling moves it
        # the same critic on the same resamples differs by exactly 0; a perfect one wins on every resample
        assert ci["same"][f"{metric}_diff_lo"] == ci["same"][f"{metric}_diff_hi"] == 0.0
    assert ci["perfect"]["mc_spearman_within_state_gap_lo"] == pytest.approx(1.0)
    assert ci["perfect"]["mc_spearman_within_state_gap_diff_lo"] > 0
    assert ci["perfect"]["mc_regret_diff_hi"] < 0
    assert "mc_regret_diff" not in ci["noisy"]  # the reference is not compared with itself


def test_truth_reliability_is_the_step_up_split_half_spearman() -> None:
    from aigp.ltve.diagnostics import truth_reliability

    ordered = np.broadcast_to(np.arange(5.0)[None, :, None], (3, 5, 4))  # every rollout ranks alike
    assert truth_reliability(ordered) == pytest.approx(1.0)
    halves = np.stack([np.arange(5.0), -np.arange(5.0)], axis=-1)[None]  # even vs odd rollouts disagree fully
    assert math.isnan(truth_reliability(halves))  # ρ = -1: no reliability to step up
    noisy = np.stack([[0.0, 1.0, 2.0, 3.0], [0.0, 2.0, 1.0, 3.0]], axis=-1)[None]  # halves agree at ρ = 0.8
    assert truth_reliability(noisy) == pytest.approx(2 * 0.8 / 1.8)
    assert math.isnan(truth_reliability(ordered[:, :, :1]))


def test_policy_validity_is_kendall_tau_over_shared_policies() -> None:
    avg_q = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "only_offline": 9.0}
    outcomes = {"a": {"gmv_14d": 10.0, "roi_14d": 4.0}, "b": {"gmv_14d": 20.0, "roi_14d": 3.0},
                "c": {"gmv_14d": 30.0, "roi_14d": 2.0}, "d": {"gmv_14d": 25.0, "roi_14d": 1.0}}
    v = policy_validity(avg_q, outcomes)
    assert v["policies"] == 4
    assert v["kendall_tau_roi_14d"] == pytest.approx(-1.0)
    assert v["kendall_tau_gmv_14d"] == pytest.approx(4 / 6)  # 5 concordant, 1 discordant of 6 pairs


# ---------------------------------------------------------------------------------------------------------
# the critic: ensemble and its lower confidence bound
def test_lower_confidence_bound() -> None:
    q = torch.tensor([[1.0, 4.0], [3.0, 4.0], [5.0, 4.0]])  # 3 heads, 2 actions
    assert lower_confidence_bound(q, 0.0).tolist() == [1.0, 4.0]  # Algorithm 1: the min
    sd = math.sqrt(8 / 3)
    assert lower_confidence_bound(q, 1.0).tolist() == pytest.approx([3.0 - sd, 4.0])
    assert lower_confidence_bound(q, 2.0)[0].item() == pytest.approx(3.0 - 2 * sd)


def test_an_ensemble_critic_trains_and_scores_by_its_lcb() -> None:
    cfg = LTVEConfig(hidden_dims=(8,), ensemble=4, pessimism=1.0, batch_size=16)
    learner = LTVE(3, cfg)
    assert learner.q.ensemble == 4
    q_flops, v_flops = 2 * 4 * 8 + 2 * 8, 2 * 3 * 8 + 2 * 8  # [s, a] -> 8 -> 1 and s -> 8 -> 1
    assert learner.flops_per_transition() == update_flops(3, (8,), 4) == 16 * q_flops + 4 * v_flops
    g = torch.Generator().manual_seed(0)
    from aigp.ltve.critic import Batch

    batch = Batch(torch.randn(16, 3, generator=g), torch.rand(16, generator=g) * 0.4 - 0.2,
                  torch.randn(16, 3, generator=g), torch.randn(16, 3, generator=g), torch.zeros(16))
    before = learner.q.action_in.detach().clone()
    metrics = learner.update(batch)
    assert math.isfinite(float(metrics["loss_q"])) and not torch.equal(before, learner.q.action_in)
    states, actions = torch.randn(5, 3, generator=g), torch.rand(5, 7, generator=g) * 0.4 - 0.2
    heads = learner.q.score(states, actions)
    assert heads.shape == (4, 5, 7)
    assert torch.allclose(learner.score(states, actions), heads.mean(0) - heads.std(0, unbiased=False), atol=1e-6)
    with pytest.raises(ValueError, match="ensemble"):
        LTVEConfig(ensemble=1)


# ---------------------------------------------------------------------------------------------------------
# derived state features
def test_derived_features_by_hand() -> None:
    frame = pd.DataFrame({"prev_discount": [0.8], "last_action_1": [-0.1], "last_action_2": [0.0],
                          "last_action_3": [0.0], "inventory": [30], "orders_3d": [9.0], "exposure_1d": [200.0],
                          "exposure_7d": [700.0], "category": ["x"]})
    # discounts 1..4 days back: 0.8, 0.9, 0.9, 0.9 -> mean 0.875
    assert DERIVED_FEATURES["ref_price_gap"](frame)[0] == pytest.approx((0.875 - 0.8) / 0.875)
    assert DERIVED_FEATURES["stock_cover_days"](frame)[0] == pytest.approx(10.0)
    assert DERIVED_FEATURES["exposure_momentum"](frame)[0] == pytest.approx(2.0)
    norm = FeatureNormaliser.fit(pd.concat([frame] * 3), ("prev_discount", "ref_price_gap"))
    assert norm.names == ["prev_discount", "ref_price_gap", "category=x"]
    assert norm.transform(frame).shape == (1, 3)
    with pytest.raises(ValueError, match="lacks feature"):
        norm.transform(frame.drop(columns=["prev_discount"]))


# ---------------------------------------------------------------------------------------------------------
# Monte-Carlo branches and the policies, on a small market
@pytest.fixture(scope="module")
def frame(market_logs) -> pd.DataFrame:
    return training_frame_from_logs(market_logs.path)


@pytest.fixture(scope="module")
def model(frame):
    torch.set_num_threads(1)
    config = LTVETrainConfig(critic={"hidden_dims": [32, 32], "steps": 150}, derived_features=["ref_price_gap"],
                             log_every=150)
    return train_ltve(frame, config).model


def test_reward_normalisation_scales_by_the_training_rewards_std(frame) -> None:
    from aigp.ltve.reward import frame_rewards
    from aigp.ltve.train import prepare_data

    config = LTVETrainConfig(critic={"hidden_dims": [8], "steps": 5, "batch_size": 32}, normalise_reward=True,
                             log_every=5)
    model = train_ltve(frame, config).model
    data = prepare_data(frame, config, 3, 0.95)
    std = frame_rewards(data.split.train, data.references, config.reward).std()
    assert model.config.reward_scale == pytest.approx(1.0 / std) and model.config.reward_scale != 1.0
    assert (model.config.q_min, model.config.q_max) == pytest.approx(data.q_bounds)  # bounds stay in reward units
    with pytest.raises(ValueError, match="normalise_reward"):
        LTVETrainConfig(kind="cql", normalise_reward=True)


def test_branches_hold_each_state_from_its_own_day(model, frame, market_logs) -> None:
    """Rows branched at different ages share one array: day 0 of every row is its branched day."""
    from aigp.market.policies import behaviour_policies
    from aigp.market.rollout import branch_outcomes
    from aigp.market.simulator import Market

    rows = frame[(frame["days_since_launch"] < 14) & (frame["inventory"] > 0)]
    rows = pd.concat([rows[rows["days_since_launch"] == 2].head(3), rows[rows["days_since_launch"] == 9].head(3)])
    cfg = EvaluationConfig(monte_carlo={"states": 6, "rollouts": 2, "grid": 2})
    branches = monte_carlo_branches(rows, market_logs.path, cfg, np.random.default_rng(0))
    assert branches.gmv.shape == (6, 4, 2, 12)
    market = Market(market_logs.config)
    for i in range(6):
        row = branches.rows.iloc[[i]]
        index = np.searchsorted(market.skus.sku_id, row["sku_id"].to_numpy())
        groups = market.behaviour_groups()
        alone = branch_outcomes(market, index, row["days_since_launch"].to_numpy(), branches.actions[[i]],
                                history_policies=behaviour_policies(), history_groups=groups,
                                continuation=behaviour_policies()[str(groups[index[0]])], n_rollouts=2, branch_seed=1)
        width = alone.gmv.shape[-1]
        assert np.allclose(branches.gmv[i, ..., :width], alone.gmv[0], equal_nan=True)
        assert np.isnan(branches.gmv[i, ..., width:]).all()
    table, metrics = monte_carlo_metrics(model, branches, cfg)
    returns = discounted_returns(model, branches.rows, branches.gmv, branches.spend).mean(2)
    assert np.allclose(table["mc_return"].to_numpy(), returns.ravel())
    for key in ("mc_spearman_within_state_gap", "mc_regret", "mc_calibration_slope", "mc_greedy_gain_vs_logged",
                "mc_spearman_within_state_ceiling"):
        assert math.isfinite(metrics[key]), key


def test_pair_truth_scores_each_pair_on_common_futures(model, frame, market_logs) -> None:
    """The pair check branches each pair's logged state with chosen and rejected, scores both with the model's
    reward, and says how often the chosen one earns more; swapping the sides swaps the verdict."""
    rows = frame[(frame["days_since_launch"] < 12) & (frame["inventory"] > 0)].head(8).reset_index(drop=True)
    state_rows = rows[["sku_id", "days_since_launch"]].assign(prompt_id=np.arange(len(rows)))
    low, high = feasible_change_bounds(rows["prev_discount"].to_numpy())
    pairs = pd.DataFrame({"prompt_id": np.arange(len(rows)), "chosen_change": high, "rejected_change": low,
                          "q_gap": np.linspace(0.1, 0.8, len(rows))})
    cfg = MonteCarloConfig(rollouts=3, seed=5)
    table, m = pair_truth(model, pairs, state_rows, frame, market_logs.path, cfg)
    branches = branch_candidates(rows, np.column_stack([high, low]), market_logs.path, cfg)
    returns = discounted_returns(model, branches.rows, branches.gmv, branches.spend)
    assert np.allclose(table["truth_gap"], (returns[:, 0] - returns[:, 1]).mean(1))
    assert m["pairs/truth_pairs"] == 8 and m["pairs/truth_agreement"] == pytest.approx((table["truth_gap"] > 0).mean())
    assert m["pairs/truth_agreement_low"] <= m["pairs/truth_agreement"] <= m["pairs/truth_agreement_high"]
    swapped = pairs.rename(columns={"chosen_change": "rejected_change", "rejected_change": "chosen_change"})
    table2, m2 = pair_truth(model, swapped, state_rows, frame, market_logs.path, cfg)
    assert m2["pairs/truth_agreement"] == pytest.approx(1 - m["pairs/truth_agreement"])
    assert np.allclose(table2["gmv_gap"], -table["gmv_gap"]) and np.allclose(table2["roi_gap"], -table["roi_gap"])
    assert m["pairs/truth_gmv_agreement"] == pytest.approx((table["gmv_gap"] > 0).mean())
    assert m2["pairs/truth_gain_mean"] == pytest.approx(-m["pairs/truth_gain_mean"])
    stranger = state_rows.assign(days_since_launch=state_rows["days_since_launch"] + 1000)
    with pytest.raises(ValueError, match="missing from the training frame"):
        pair_truth(model, pairs, stranger, frame, market_logs.path, cfg)


def test_wilson_interval_matches_the_textbook_value() -> None:
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def _observation(market_logs, day: int, count: int = 12):
    from aigp.market.policies import behaviour_policies
    from aigp.market.simulator import Cohort, Market, dispatch

    market = Market(market_logs.config)
    cohort = Cohort(market, np.arange(count))
    groups = market.behaviour_groups()[:count]
    history = behaviour_policies()
    members = {str(g): (history[str(g)], np.flatnonzero(groups == g)) for g in np.unique(groups)}
    for _ in range(day):
        cohort.advance(dispatch(cohort.observe(text=True), members), market.config.seed)
    return cohort.observe(text=True)


def test_ltve_greedy_takes_the_q_argmax_inside_a_safe(model, market_logs) -> None:
    from aigp.ltve.policies import LTVEGreedyPolicy

    obs = _observation(market_logs, 3)
    policy = LTVEGreedyPolicy(model, grid_size=21)
    actions = policy.act(obs)
    assert is_safe(obs.prev_discount, actions).all()
    expected, _ = model.greedy(obs.frame, 21)
    assert np.allclose(actions, expected, atol=1e-6)
    q_chosen = model.q_values(obs.frame, actions[:, None])[:, 0]
    from aigp.ltve.artifact import action_grid

    assert (q_chosen >= model.q_values(obs.frame, action_grid(obs.prev_discount, 21)).max(1) - 1e-5).all()


def test_best_of_m_picks_the_best_sample_and_best_of_one_is_the_teacher(model, market_logs) -> None:
    from aigp.distillation.teacher import TeacherPolicy
    from aigp.ltve.policies import BestOfMPolicy

    obs = _observation(market_logs, 4)
    policy = BestOfMPolicy(model, m=6, temperature=1.0)
    candidates = policy.candidates(obs)
    assert candidates.shape == (len(obs), 6)
    assert all(is_safe(obs.prev_discount, candidates[:, j]).all() for j in range(6))
    chosen = policy.act(obs)
    q = model.q_values(obs.frame, candidates)
    assert np.allclose(model.q_values(obs.frame, chosen[:, None])[:, 0], q.max(1), atol=1e-6)
    assert policy.stats()["decisions"] == len(obs)
    # one greedy sample of the [ACT_ONLY] answer is the teacher's own full-reasoning decision
    one = BestOfMPolicy(model, m=1, temperature=0.0).act(obs)
    assert np.allclose(one, TeacherPolicy().act(obs), atol=1e-9)
