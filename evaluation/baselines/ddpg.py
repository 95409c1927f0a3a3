"""DDPG pricing after Liu et al. (2019): continuous discount changes, DRCR reward, expert pre-training.

    reward   r_t = clip((RCR_t − RCR_{t−1}) / RCR_{t−1}, −1, 1),  RCR = GMV / impressions  (baselines.data)
    critic   y = r_t + γ (1 − done) Q̄(s_{t+1}, π̄(s_{t+1})),   L_Q = E[(Q(s_t, a_t) − y)²]
    actor    pre-training (DDPGfD): L_π = E_expert[(π(s) − a_expert)²] for ``pretrain_steps`` updates, on batches
             of expert transitions only, while the critic learns from the same demonstrations;
             then plain DDPG on all logged transitions: L_π = −E[Q(s, π(s))]
    π(s)     = squash_to_safe(f(s), d_{t−1}): inside A_safe by construction
    targets  Q̄ ← η Q + (1 − η) Q̄,  π̄ ← η π + (1 − η) π̄

Offline, with no environment to correct it, the DDPG phase follows the critic wherever it extrapolates: that is
the baseline as Liu et al. run it when only logs are available, not a defect of this file.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from aigp.evaluation.baselines.data import ActorPolicy, TrainedBaseline, prepare_offline_data, squash_to_safe
from aigp.ltve.critic import Batch, n_step_targets, soft_update, train
from aigp.ltve.dataset import MixedSampler


@dataclass
class DDPGConfig:
    gamma: float = 0.95  # discount factor (as the LTVE)
    actor_lr: float = 1e-4  # Adam learning rate of the actor
    critic_lr: float = 3e-4  # Adam learning rate of the critic
    soft_update_rate: float = 0.005  # η of both target networks
    batch_size: int = 256  # transitions per update
    hidden_dims: tuple[int, ...] = (256, 256)  # MLP widths of actor and critic
    pretrain_steps: int = 2_000  # expert-demonstration updates (actor behaviour cloning) before DDPG
    steps: int = 6_000  # total updates, pre-training included
    eval_share: float = 0.2  # latest launches held out (the LTVE's split)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hidden_dims": list(self.hidden_dims)}


def mlp(inputs: int, hidden: tuple[int, ...], outputs: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inputs, width), nn.ReLU()]
        inputs = width
    return nn.Sequential(*layers, nn.Linear(inputs, outputs))


class Critic(nn.Module):
    """Q(s, a), the action entering as a / 0.2 (A_safe's |a| <= 0.2 onto [−1, 1])."""

    def __init__(self, state_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(state_dim + 1, hidden)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([states, actions[:, None] / 0.2], dim=1)).squeeze(1)


class Actor(nn.Module):
    """π(s) = squash_to_safe(f(s), d_{t−1})."""

    def __init__(self, state_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(state_dim, hidden)

    def forward(self, states: torch.Tensor, prev_discount: torch.Tensor) -> torch.Tensor:
        return squash_to_safe(self.net(states).squeeze(1), prev_discount)


class DDPG:
    kind = "ddpg"

    def __init__(self, state_dim: int, config: DDPGConfig):
        torch.manual_seed(config.seed)
        self.config = config
        self.actor, self.critic = Actor(state_dim, config.hidden_dims), Critic(state_dim, config.hidden_dims)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.total_steps = 0

    @property
    def pretraining(self) -> bool:
        return self.total_steps < self.config.pretrain_steps

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        with torch.no_grad():
            next_a = self.actor_target(batch.next_states, batch.next_prev_discount)
            y = n_step_targets(batch.rewards, batch.done, self.critic_target(batch.next_states, next_a), cfg.gamma)
        q = self.critic(batch.states, batch.actions)
        loss_q = (q - y).square().mean()
        self.critic_opt.zero_grad(set_to_none=True)
        loss_q.backward()
        self.critic_opt.step()

        pi = self.actor(batch.states, batch.prev_discount)
        # behaviour cloning of the demonstrations first, then the deterministic policy gradient
        loss_pi = (pi - batch.actions).square().mean() if self.pretraining else -self.critic(batch.states, pi).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        loss_pi.backward()
        self.actor_opt.step()
        soft_update(self.critic_target, self.critic, cfg.soft_update_rate)
        soft_update(self.actor_target, self.actor, cfg.soft_update_rate)
        self.total_steps += 1
        return {"loss_q": loss_q.detach(), "loss_pi": loss_pi.detach(), "q": q.detach().mean(),
                "mean_action": pi.detach().mean()}

    @torch.no_grad()
    def act(self, states: torch.Tensor, prev_discount: torch.Tensor) -> torch.Tensor:
        return self.actor(states, prev_discount)


def train_ddpg(frame: pd.DataFrame, config: DDPGConfig | None = None, *, name: str = "ddpg",
               progress: bool = False) -> TrainedBaseline:
    """DRCR-reward DDPG on the training window of a training frame (``aigp.ltve.dataset`` contract)."""
    config = config or DDPGConfig()
    started = time.perf_counter()
    data = prepare_offline_data(frame, reward="drcr", eval_share=config.eval_share)
    learner = DDPG(data.normaliser.dim, config)
    demos = MixedSampler(data.transitions, config.batch_size, expert_share=1.0, seed=config.seed)
    logged = MixedSampler(data.transitions, config.batch_size, expert_share=None, seed=config.seed + 1)

    def sample() -> Batch:
        return (demos if learner.pretraining else logged).sample()

    history = train(learner, sample, config.steps, log_every=max(1, config.steps // 10), progress=progress)
    info = {"algorithm": "DDPG (Liu et al. 2019, DRCR reward, expert pre-training)", "config": config.to_dict(),
            "data": data.describe(), "parameters": sum(p.numel() for p in learner.actor.parameters())
            + sum(p.numel() for p in learner.critic.parameters())}
    return TrainedBaseline(name, ActorPolicy(name, learner.act, data.normaliser), history, info,
                           time.perf_counter() - started)
