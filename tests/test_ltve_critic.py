"""LTVE critic (Algorithm 1): the math pinned down by hand, and convergence on problems with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from aigp.ltve.critic import (
    LTVE,
    Batch,
    LTVEConfig,
    TwinQ,
    expectile_loss,
    n_step_targets,
    soft_update,
    train,
    update_flops,
)
from aigp.ltve.dataset import MixedSampler, build_transitions

# tiny networks: a second OpenMP thread only adds synchronisation (and the cores are shared)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sample_expectile(x: np.ndarray, tau: float) -> float:
    """The τ-expectile by bisection on its first-order condition τ E[(x-c)+] = (1-τ) E[(c-x)+]."""
    lo, hi = float(x.min()), float(x.max())
    for _ in range(200):
        c = (lo + hi) / 2
        if tau * np.maximum(x - c, 0).mean() > (1 - tau) * np.maximum(c - x, 0).mean():
            lo = c
        else:
            hi = c
    return (lo + hi) / 2


@pytest.mark.parametrize("tau", [0.5, 0.8, 0.95])
def test_expectile_loss_recovers_the_sample_expectile(tau: float) -> None:
    x = torch.from_numpy(np.random.default_rng(0).exponential(2.0, 4000))
    c = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([c], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = expectile_loss(x - c, tau)
        loss.backward()
        return loss

    optimiser.step(closure)
    assert c.item() == pytest.approx(sample_expectile(x.numpy(), tau), abs=1e-6)
    if tau == 0.5:
        assert c.item() == pytest.approx(float(x.mean()), abs=1e-6)


def test_expectile_loss_weights_by_sign() -> None:
    diff = torch.tensor([2.0, -2.0])
    # (0.8 * 4 + 0.2 * 4) / 2
    assert expectile_loss(diff, 0.8).item() == pytest.approx(2.0)
    assert expectile_loss(torch.tensor([1.0]), 0.8).item() == pytest.approx(0.8)
    assert expectile_loss(torch.tensor([-1.0]), 0.8).item() == pytest.approx(0.2)


def test_n_step_targets_by_hand() -> None:
    rewards = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 0.0]])
    done = torch.tensor([0.0, 1.0])
    next_value = torch.tensor([10.0, 10.0])
    y = n_step_targets(rewards, done, next_value, gamma=0.5)
    # 1 + 0.5*2 + 0.25*3 + 0.125*10 = 4.0; episode over after two rewards: 1 + 0.5*2, no bootstrap
    assert y.tolist() == pytest.approx([4.0, 2.0])


def chain_frame(rewards_by_day: list[list[float]], actions: list[float] | None = None) -> pd.DataFrame:
    """Episodes (one per inner list) of consecutive days, with the columns build_transitions reads."""
    rows = []
    for sku, rewards in enumerate(rewards_by_day):
        for day, _ in enumerate(rewards):
            rows.append({"sku_id": sku, "days_since_launch": day, "prev_discount": 0.9,
                         "discount_change": 0.0 if actions is None else actions[day]})
    return pd.DataFrame(rows)


def test_transitions_and_targets_match_a_hand_calculation_with_episode_end() -> None:
    # One 4-day episode, n = 3, γ = 0.5, V(s) = 100 for every state.
    frame = chain_frame([[1.0, 2.0, 3.0, 4.0]])
    rewards = np.array([1.0, 2.0, 3.0, 4.0])
    states = np.eye(4, dtype=np.float32)
    t = build_transitions(frame, rewards, states, n_steps=3, horizon_days=4)
    assert t.row.tolist() == [0, 1, 2, 3]
    assert t.rewards.tolist() == [[1, 2, 3], [2, 3, 4], [3, 4, 0], [4, 0, 0]]
    assert t.done.tolist() == [0, 1, 1, 1]  # day 1 + 3 = the episode's end: no s_4 to bootstrap from
    assert t.next_row.tolist()[0] == 3
    batch = t.batch(torch.arange(len(t)))
    y = n_step_targets(batch.rewards, batch.done, torch.full((4,), 100.0), gamma=0.5)
    expected = [1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 100, 2 + 0.5 * 3 + 0.25 * 4, 3 + 0.5 * 4, 4]
    assert y.tolist() == pytest.approx(expected)
    assert torch.equal(batch.next_states[0], torch.from_numpy(states[3]))


def test_truncated_episode_keeps_only_covered_transitions() -> None:
    # A 14-day episode logged only to day 4 (e.g. the log ends): from day t, n = 3 needs day t + 3.
    frame = chain_frame([[0.0] * 5])
    t = build_transitions(frame, np.arange(5.0), np.zeros((5, 2), np.float32), n_steps=3, horizon_days=14)
    assert t.row.tolist() == [0, 1]
    assert t.done.tolist() == [0, 0]


def test_transitions_reject_gaps() -> None:
    frame = chain_frame([[0.0] * 3]).drop(index=1)
    with pytest.raises(ValueError, match="sku_id=0 has a gap"):
        build_transitions(frame, np.zeros(2), np.zeros((2, 1), np.float32), n_steps=1, horizon_days=3)


def test_soft_update_arithmetic() -> None:
    source, target = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        for p in source.parameters():
            p.fill_(1.0)
        for p in target.parameters():
            p.fill_(0.0)
    soft_update(target, source, 0.01)
    assert all(torch.allclose(p, torch.full_like(p, 0.01)) for p in target.parameters())
    soft_update(target, source, 0.01)
    assert all(torch.allclose(p, torch.full_like(p, 0.0199)) for p in target.parameters())
    assert all(torch.equal(p, torch.ones_like(p)) for p in source.parameters())


def test_batched_candidate_scoring_equals_per_action_scoring() -> None:
    torch.manual_seed(0)
    learner = LTVE(6, LTVEConfig(hidden_dims=(32, 16)))
    states = torch.randn(50, 6)
    candidates = torch.rand(50, 7) * 0.4 - 0.2
    batched = learner.score(states, candidates)
    assert batched.shape == (50, 7)
    for k in range(7):
        one = learner.score(states, candidates[:, k:k + 1])[:, 0]
        twins = learner.q(states, candidates[:, k])  # the training forward, (2, N)
        assert torch.allclose(batched[:, k], one, atol=1e-6)
        assert torch.allclose(batched[:, k], twins.min(0).values, atol=1e-6)


def test_twin_q_members_are_independent() -> None:
    q = TwinQ(3, (8,), action_scale=0.2)
    out = q(torch.randn(4, 3), torch.zeros(4))
    assert out.shape == (2, 4)
    assert not torch.allclose(out[0], out[1])


def test_update_flops_counts_the_passes() -> None:
    # one hidden layer of 4 on 2 state features: Q forward 2*(3*4 + 4*1) = 32, V forward 2*(2*4 + 4) = 24
    assert update_flops(2, (4,)) == 8 * 32 + 4 * 24


def bandit_batch(n: int, rng: np.random.Generator) -> Batch:
    actions = rng.choice([-0.2, 0.0, 0.2], size=n)
    means = np.select([actions < -0.1, actions > 0.1], [1.0, -0.5], 0.25)
    rewards = means + rng.normal(0, 0.3, n)
    return Batch(states=torch.ones(n, 1), actions=torch.tensor(actions, dtype=torch.float32),
                 rewards=torch.tensor(rewards, dtype=torch.float32)[:, None], next_states=torch.ones(n, 1),
                 done=torch.ones(n))


@pytest.mark.parametrize("reward_scale", [1.0, 4.0])
def test_one_state_bandit_q_converges_to_mean_rewards(reward_scale: float) -> None:
    """Reward normalisation trains on scaled rewards; the scores come back in reward units."""
    rng = np.random.default_rng(1)
    learner = LTVE(1, LTVEConfig(hidden_dims=(32, 32), n_steps=1, learning_rate=3e-3, batch_size=256, seed=1,
                                 reward_scale=reward_scale))
    train(learner, lambda: bandit_batch(256, rng), 1500, log_every=500)
    q = learner.score(torch.ones(1, 1), torch.tensor([[-0.2, 0.0, 0.2]]))[0]
    assert q.tolist() == pytest.approx([1.0, 0.25, -0.5], abs=0.05)
    raw = learner.q.score(torch.ones(1, 1), torch.tensor([[-0.2, 0.0, 0.2]])).min(0).values[0]
    assert (raw / reward_scale).tolist() == pytest.approx(q.tolist())  # the networks hold scaled values


def test_chain_mdp_q_matches_analytic_values() -> None:
    """Three states in a row, two equally logged actions per state with deterministic rewards.

    With two equally likely actions of values q_lo < q_hi, the τ-expectile of Q over actions is
    V = τ q_hi + (1 − τ) q_lo, so Q(s, a) = r(s, a) + γ V(s') has a closed form backwards from the end.
    """
    gamma, tau, horizon = 0.9, 0.8, 3
    reward = {0: (1.0, 0.0), 1: (0.0, 2.0), 2: (0.5, -1.0)}  # r(day, action index)
    acts = (-0.1, 0.1)
    q_true = {}
    v_next = 0.0
    for day in reversed(range(horizon)):
        q_true[day] = [reward[day][i] + gamma * v_next for i in range(2)]
        v_next = tau * max(q_true[day]) + (1 - tau) * min(q_true[day])

    # Every action sequence once (8 episodes), repeated: each (state, action) is equally covered.
    episodes, actions, rewards = [], [], []
    for code in range(8):
        choice = [(code >> d) & 1 for d in range(horizon)]
        episodes.append([0.0] * horizon)
        actions += [acts[c] for c in choice]
        rewards += [reward[d][c] for d, c in enumerate(choice)]
    frame = pd.concat([chain_frame([e]).assign(sku_id=i) for i, e in enumerate(episodes)], ignore_index=True)
    frame["discount_change"] = actions
    states = np.eye(horizon, dtype=np.float32)[frame["days_since_launch"].to_numpy()]
    transitions = build_transitions(frame, np.asarray(rewards), states, n_steps=1, horizon_days=horizon)
    learner = LTVE(horizon, LTVEConfig(hidden_dims=(32, 32), n_steps=1, gamma=gamma, expectile=tau,
                                       learning_rate=3e-3, batch_size=128, soft_update_rate=0.05, seed=3))
    sampler = MixedSampler(transitions, 128, expert_share=None, seed=3)
    train(learner, sampler.sample, 3000, log_every=1000)
    q = learner.score(torch.eye(horizon), torch.tensor([list(acts)] * horizon))
    for day in range(horizon):
        assert q[day].tolist() == pytest.approx(q_true[day], abs=0.06), f"day {day}"


def test_config_rejects_out_of_range_values() -> None:
    with pytest.raises(ValueError, match="expectile"):
        LTVEConfig(expectile=1.5)
    with pytest.raises(ValueError, match="q_max"):
        LTVEConfig(q_min=1.0, q_max=0.0)
    with pytest.raises(ValueError, match="reward_scale"):
        LTVEConfig(reward_scale=0.0)
    with pytest.raises(ValueError, match="unknown LTVEConfig field"):
        LTVEConfig.from_dict({"gama": 0.9})


def test_state_dict_round_trip_restores_scores_and_step() -> None:
    learner = LTVE(4, LTVEConfig(hidden_dims=(8,), seed=0))
    rng = np.random.default_rng(0)
    batch = Batch(torch.randn(16, 4), torch.zeros(16), torch.tensor(rng.normal(size=(16, 3)), dtype=torch.float32),
                  torch.randn(16, 4), torch.zeros(16))
    learner.update(batch)
    clone = LTVE(4, LTVEConfig(hidden_dims=(8,), seed=99))
    clone.load_state_dict(learner.state_dict())
    s, a = torch.randn(5, 4), torch.rand(5, 3)
    assert torch.equal(clone.score(s, a), learner.score(s, a))
    assert clone.total_steps == 1
