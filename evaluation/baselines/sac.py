"""Soft actor-critic (Haarnoja et al., 2018) trained offline on the logged transitions, eq. 3 reward.

    u ~ N(μ(s), σ(s)),  a = squash_to_safe(u, d_{t−1}) = low + (high − low)(tanh u + 1)/2     (inside A_safe)
    log π(a|s) = log N(u; μ, σ) − log((high − low)/2 · (1 − tanh² u))
    y    = r_t + γ (1 − done) [min(Q̄1, Q̄2)(s_{t+1}, a') − α log π(a'|s_{t+1})],  a' ~ π(·|s_{t+1})
    L_Q  = Σ_i E[(Q_i(s_t, a_t) − y)²]
    L_π  = E[α log π(a|s) − min(Q1, Q2)(s, a)],  a ~ π(·|s)
    L_α  = −E[log α · (log π(a|s) + H_target)]
    acting: the mean action squash_to_safe(μ(s)) (deterministic, as evaluated)

The reward is the LTVE's eq. 3 (references fitted on the training window), one-step TD. Plain SAC has no
guard against actions the logs never took: it is the paper's off-the-shelf RL baseline.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from aigp.evaluation.baselines.data import ActorPolicy, TrainedBaseline, prepare_offline_data, squash_to_safe
from aigp.evaluation.baselines.ddpg import Critic, mlp
from aigp.ltve.cql import feasible_bounds
from aigp.ltve.critic import Batch, n_step_targets, soft_update, train
from aigp.ltve.dataset import MixedSampler


@dataclass
class SACConfig:
    gamma: float = 0.95  # discount factor (as the LTVE)
    learning_rate: float = 3e-4  # Adam learning rate of actor, critics and α
    soft_update_rate: float = 0.005  # η of the target critics
    batch_size: int = 256  # transitions per update
    hidden_dims: tuple[int, ...] = (256, 256)  # MLP widths
    target_entropy: float = -3.0  # H_target in discount-change units (a Gaussian of σ ≈ 0.012)
    initial_alpha: float = 0.1  # starting entropy temperature
    steps: int = 6_000  # updates
    eval_share: float = 0.2  # latest launches held out (the LTVE's split)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hidden_dims": list(self.hidden_dims)}


class GaussianActor(nn.Module):
    LOG_STD = (-5.0, 2.0)

    def __init__(self, state_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(state_dim, hidden, outputs=2)

    def forward(self, states: torch.Tensor, prev_discount: torch.Tensor,
                deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(action inside A_safe, its log-probability)."""
        mean, log_std = self.net(states).unbind(1)
        std = log_std.clamp(*self.LOG_STD).exp()
        u = mean if deterministic else mean + std * torch.randn_like(mean)
        log_prob = -0.5 * ((u - mean) / std).square() - std.log() - 0.5 * math.log(2 * math.pi)
        low, high = feasible_bounds(prev_discount)
        log_prob = log_prob - torch.log((high - low) / 2 * (1 - torch.tanh(u).square()) + 1e-6)
        return squash_to_safe(u, prev_discount), log_prob


class SAC:
    kind = "sac"

    def __init__(self, state_dim: int, config: SACConfig):
        torch.manual_seed(config.seed)
        self.config = config
        self.actor = GaussianActor(state_dim, config.hidden_dims)
        self.q1, self.q2 = Critic(state_dim, config.hidden_dims), Critic(state_dim, config.hidden_dims)
        self.q1_target = copy.deepcopy(self.q1).requires_grad_(False)
        self.q2_target = copy.deepcopy(self.q2).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(config.initial_alpha), requires_grad=True)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.learning_rate)
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=config.learning_rate)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=config.learning_rate)
        self.total_steps = 0

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_a, next_logp = self.actor(batch.next_states, batch.next_prev_discount)
            next_q = torch.min(self.q1_target(batch.next_states, next_a), self.q2_target(batch.next_states, next_a))
            y = n_step_targets(batch.rewards, batch.done, next_q - alpha * next_logp, cfg.gamma)
        q1, q2 = self.q1(batch.states, batch.actions), self.q2(batch.states, batch.actions)
        loss_q = (q1 - y).square().mean() + (q2 - y).square().mean()
        self.q_opt.zero_grad(set_to_none=True)
        loss_q.backward()
        self.q_opt.step()

        a, logp = self.actor(batch.states, batch.prev_discount)
        q_pi = torch.min(self.q1(batch.states, a), self.q2(batch.states, a))
        loss_pi = (alpha * logp - q_pi).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        loss_pi.backward()
        self.actor_opt.step()
        loss_alpha = -(self.log_alpha * (logp.detach() + cfg.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        loss_alpha.backward()
        self.alpha_opt.step()
        soft_update(self.q1_target, self.q1, cfg.soft_update_rate)
        soft_update(self.q2_target, self.q2, cfg.soft_update_rate)
        self.total_steps += 1
        return {"loss_q": loss_q.detach(), "loss_pi": loss_pi.detach(), "q": q1.detach().mean(),
                "alpha": alpha, "entropy": -logp.detach().mean()}

    @torch.no_grad()
    def act(self, states: torch.Tensor, prev_discount: torch.Tensor) -> torch.Tensor:
        return self.actor(states, prev_discount, deterministic=True)[0]


def train_sac(frame: pd.DataFrame, config: SACConfig | None = None, *, name: str = "sac",
              progress: bool = False) -> TrainedBaseline:
    """SAC on the training window of a training frame (``aigp.ltve.dataset`` contract), eq. 3 reward."""
    config = config or SACConfig()
    started = time.perf_counter()
    data = prepare_offline_data(frame, reward="ltve", eval_share=config.eval_share)
    learner = SAC(data.normaliser.dim, config)
    sampler = MixedSampler(data.transitions, config.batch_size, expert_share=None, seed=config.seed)
    history = train(learner, sampler.sample, config.steps, log_every=max(1, config.steps // 10), progress=progress)
    info = {"algorithm": "SAC (offline, eq. 3 reward)", "config": config.to_dict(), "data": data.describe(),
            "parameters": sum(p.numel() for m in (learner.actor, learner.q1, learner.q2) for p in m.parameters())}
    return TrainedBaseline(name, ActorPolicy(name, learner.act, data.normaliser), history, info,
                           time.perf_counter() - started)
