"""Offline-RL baselines (aigp.evaluation.baselines): rewards, A_safe by construction, training, the Policy plug."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from aigp.action import is_safe
from aigp.evaluation.baselines.data import drcr_rewards, prepare_offline_data, squash_to_safe, unsquash
from aigp.evaluation.baselines.ddpg import DDPGConfig, train_ddpg
from aigp.evaluation.baselines.dt import DTConfig, train_dt
from aigp.evaluation.baselines.sac import SACConfig, train_sac
from aigp.market.config import MarketConfig
from aigp.market.observation import Policy
from aigp.market.simulator import Market

TINY = {"hidden_dims": (16, 16), "batch_size": 32}


@pytest.fixture(scope="module")
def frame(market_logs):
    from aigp.ltve.dataset import training_frame_from_logs

    return training_frame_from_logs(market_logs.path)


@pytest.fixture(scope="module")
def trained(frame):
    torch.set_num_threads(1)
    return {
        "ddpg": train_ddpg(frame, DDPGConfig(steps=30, pretrain_steps=10, **TINY)),
        "sac": train_sac(frame, SACConfig(steps=30, **TINY)),
        "dt": train_dt(frame, DTConfig(steps=10, embed_dim=16, batch_size=16)),
    }


def test_drcr_is_the_relative_change_of_gmv_per_impression():
    frame = pd.DataFrame({"sku_id": [1, 1, 1, 2], "category": ["a", "a", "a", "b"],
                          "out_gmv": [100.0, 150.0, 0.0, 30.0], "out_exposure": [1000.0, 1000.0, 500.0, 100.0]})
    r = drcr_rewards(frame, {"a": 0.2, "b": 0.3})
    # day 0 vs the category's launch RCR 0.2: (0.1 - 0.2) / 0.2; then (0.15 - 0.1) / 0.1; then clipped -1; SKU 2 flat
    np.testing.assert_allclose(r, [-0.5, 0.5, -1.0, 0.0])


def test_squash_stays_inside_a_safe_for_any_output_and_inverts():
    prev = torch.linspace(0.5, 1.0, 51).repeat(5)
    u = torch.cat([torch.full((51,), v) for v in (-1e4, -3.0, 0.0, 3.0, 1e4)])
    a = squash_to_safe(u, prev)
    assert is_safe(prev.double().numpy(), a.double().numpy()).all()
    inner = torch.tensor([-0.1, 0.0, 0.05]), torch.tensor([0.8, 0.8, 0.9])
    np.testing.assert_allclose(squash_to_safe(unsquash(*inner), inner[1]).numpy(), inner[0].numpy(), atol=1e-4)


def test_offline_data_uses_the_training_window_only(frame):
    data = prepare_offline_data(frame, reward="drcr")
    train_ids = set(data.split.train["sku_id"])
    assert train_ids.isdisjoint(set(data.split.evaluation["sku_id"]))
    assert len(data.rewards) == len(data.split.train) and np.isfinite(data.rewards).all()
    assert np.abs(data.rewards).max() <= 1.0
    with pytest.raises(ValueError, match="reward="):
        prepare_offline_data(frame, reward="revenue")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["ddpg", "sac", "dt"])
def test_trained_policy_proposes_inside_a_safe(trained, frame, name):
    result = trained[name]
    assert result.history and all(np.isfinite(v) for v in result.history[-1].values())
    assert result.info["parameters"] > 0 and result.info["data"]["transitions"] > 0
    rows = frame.sample(n=300, random_state=0).sort_values(["sku_id", "days_since_launch"])
    policy = result.policy.fresh() if name == "dt" else result.policy
    actions = policy.propose(rows)
    assert actions.shape == (len(rows),) and np.isfinite(actions).all()
    assert is_safe(rows["prev_discount"].to_numpy(), actions).all()


@pytest.mark.parametrize("name", ["ddpg", "sac", "dt"])
def test_policy_plugs_into_market_run(trained, name):
    policy = trained[name].policy.fresh() if name == "dt" else trained[name].policy
    assert isinstance(policy, Policy)
    market = Market(MarketConfig.build(seed=21, n_skus=25, launch_days=3, sku_id_offset=10_000_000))
    run = market.run({name: policy})
    assert run.changes.shape == (25, 14)
    assert (run.summary["projected_actions"] == 0).all()  # every proposal was already inside A_safe
    prev = np.c_[np.ones((25, 1)) * np.nan, run.discounts[:, :-1]]
    assert is_safe(prev[:, 1:], run.changes[:, 1:]).all()
    assert (run.discounts >= 0.5 - 1e-9).all() and (run.discounts <= 1.0 + 1e-9).all()


def test_dt_uses_the_logged_past_as_context(trained, frame):
    dt = trained["dt"].policy
    sku = frame[frame["days_since_launch"] == 5]["sku_id"].iloc[0]
    episode = frame[frame["sku_id"] == sku]
    day5 = episode[episode["days_since_launch"] == 5]
    policy = dt.fresh().prime(episode[episode["days_since_launch"] < 5])
    primed = policy.propose(day5)
    assert policy.memory[int(sku)]["known"][:6].all()  # days 0-4 logged + day 5 observed: a full context
    cold = dt.fresh()
    cold.propose(day5)  # no history: the context is the day itself
    assert cold.memory[int(sku)]["known"].sum() == 1
    assert is_safe(day5["prev_discount"].to_numpy(), primed).all()
