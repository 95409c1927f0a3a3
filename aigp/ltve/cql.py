"""Conservative Q-Learning (Kumar et al., 2020) critic on the LTVE transitions: the paper's Table 7 baseline.

Critic-only, like the LTVE, so that the two differ only in how they handle actions the logs do not cover:

    y      = clip(Σ_{k<n} γ^k r_{t+k} + γ^n (1 − done) max_{a' ∈ G(s_{t+n})} min(Q̄1, Q̄2)(s_{t+n}, a'), Qmin, Qmax)
    L_Qi   = E[(Q_i(s_t, a_t) − y)²] + α E[ log Σ_{a ∈ U(s_t) ∪ {a_t}} exp Q_i(s_t, a) − Q_i(s_t, a_t) ]

G(s) is a grid of ``target_grid`` actions spanning A_safe(s) (a max over a fine grid stands in for the actor,
the action being one-dimensional) and U(s) are ``cql_samples`` actions drawn uniformly from A_safe(s): the
CQL(H) regulariser pushes Q down on actions at large and up on the logged one. Same networks, n-step targets,
soft update and optimiser as the LTVE (``aigp.ltve.critic``).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch

from aigp.action import MAX_DAILY_CHANGE, MAX_DISCOUNT, MIN_DISCOUNT
from aigp.ltve.critic import Batch, TwinQ, _config_from_dict, mlp_flops, n_step_targets, soft_update


@dataclass
class CQLConfig:
    gamma: float = 0.95  # discount factor γ (as the LTVE)
    n_steps: int = 3  # TD horizon n (as the LTVE)
    learning_rate: float = 3e-4  # Adam learning rate
    soft_update_rate: float = 0.01  # η of the target soft update
    batch_size: int = 512  # transitions per update
    q_min: float = -20.0  # target clipping bounds (the trainer sets them from the reward range)
    q_max: float = 20.0
    cql_alpha: float = 1.0  # α: weight of the conservative regulariser
    cql_samples: int = 10  # actions drawn uniformly from A_safe(s) per state for the logsumexp
    target_grid: int = 11  # actions on the grid G(s') the bootstrap maximises over
    hidden_dims: tuple[int, ...] = (256, 256)  # hidden widths of each Q
    action_scale: float = 0.2  # actions enter as a / action_scale
    steps: int = 30_000  # gradient updates
    seed: int = 0

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        if self.cql_alpha < 0 or self.cql_samples < 1 or self.target_grid < 2 or self.q_max <= self.q_min:
            raise ValueError(f"CQLConfig out of range: {self}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hidden_dims": list(self.hidden_dims)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CQLConfig:
        return _config_from_dict(cls, data)


def feasible_bounds(prev_discount: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A_safe's interval of changes from each d_{t-1} (torch twin of ``aigp.action.feasible_change_bounds``)."""
    low = torch.clamp(MIN_DISCOUNT - prev_discount, min=-MAX_DAILY_CHANGE)
    high = torch.clamp(MAX_DISCOUNT - prev_discount, max=MAX_DAILY_CHANGE)
    return low, torch.maximum(high, low)


class CQL:
    kind = "cql"

    def __init__(self, state_dim: int, config: CQLConfig):
        self.config, self.state_dim = config, state_dim
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.q = TwinQ(state_dim, config.hidden_dims, config.action_scale)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=config.learning_rate)
        self.total_steps = 0
        self._grid = torch.linspace(0.0, 1.0, config.target_grid)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        if batch.prev_discount.numel() == 0:
            raise ValueError("CQL needs prev_discount and next_prev_discount in the batch (A_safe bounds)")
        with torch.no_grad():
            low, high = feasible_bounds(batch.next_prev_discount)
            grid = low[:, None] + (high - low)[:, None] * self._grid[None, :]
            next_q = self.q_target.score(batch.next_states, grid).min(0).values.max(1).values
            y = n_step_targets(batch.rewards, batch.done, next_q, cfg.gamma).clamp(cfg.q_min, cfg.q_max)
            low, high = feasible_bounds(batch.prev_discount)
            u = torch.rand(len(low), cfg.cql_samples, generator=self.generator)
            sampled = low[:, None] + (high - low)[:, None] * u
        candidates = torch.cat([batch.actions[:, None], sampled], dim=1)  # data action first
        q_all = self.q.score(batch.states, candidates)  # (2, B, 1 + samples)
        q_data = q_all[:, :, 0]
        td = (q_data - y).square().mean(1).sum()
        conservative = (torch.logsumexp(q_all, dim=2) - q_data).mean(1).sum()
        loss = td + cfg.cql_alpha * conservative
        self.q_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.q_optimizer.step()
        soft_update(self.q_target, self.q, cfg.soft_update_rate)
        self.total_steps += 1
        return {"loss_q": td.detach(), "loss_cql": conservative.detach(), "q": q_data.detach().mean(),
                "target": y.mean()}

    @torch.no_grad()
    def score(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.q.score(states, actions).min(0).values

    def state_dict(self) -> dict[str, Any]:
        return {"q": self.q.state_dict(), "q_target": self.q_target.state_dict(),
                "q_optimizer": self.q_optimizer.state_dict(), "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.q_optimizer.load_state_dict(state["q_optimizer"])
        self.total_steps = int(state["total_steps"])

    def flops_per_transition(self) -> float:
        # target twins on the grid of s', online twins forward+backward on the data action and the samples
        # (counting the shared state projection once per action: an upper bound).
        per_q = mlp_flops(self.state_dim + 1, self.config.hidden_dims)
        return per_q * (2 * self.config.target_grid + 6 * (1 + self.config.cql_samples))
