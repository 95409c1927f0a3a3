"""Long-Term Value Estimator (LTVE): the critic of the paper's Algorithm 1, whole, in one file.

Critic-only offline RL on logged transitions (s_t, a_t, r_t..r_{t+n-1}, s_{t+n}, done):

    q_min  = min(Q̄1(s_t, a_t), Q̄2(s_t, a_t))                          target twins
    L_V    = E[ |τ − 1(q_min − V(s_t) < 0)| · (q_min − V(s_t))² ]          expectile regression, τ = 0.8
    y      = clip(Σ_{k<n} γ^k r_{t+k} + γ^n (1 − done) V(s_{t+n}), Qmin, Qmax)
    L_Qi   = E[(Q_i(s_t, a_t) − y)²],  i = 1, 2
    Q̄i    ← η Q_i + (1 − η) Q̄i                                          soft update, η = 0.01

V learns an upper expectile of the in-data action values, so the targets bootstrap only from actions that
were taken (no max over out-of-distribution actions). The critic ranks candidate actions inside A_safe
with :meth:`LTVE.score`, which evaluates K candidates per state in one forward pass: the first layer is
split into a state part (computed once per state) and an action part (added per candidate).

``ensemble`` > 2 trains more Q heads the same way (V regresses on the min of all target heads), and
``pessimism`` > 0 scores candidates by the heads' lower confidence bound, mean − pessimism · std, instead of
their min: an action the heads disagree on (far from the data) scores lower, which a policy that maximises Q
cannot exploit as easily. ``reward_scale`` ≠ 1 trains on rewards (and clipping bounds) multiplied by it and
divides the scores back (reward normalisation: the trainer can set it to 1 / std of the training rewards). The
defaults (2 heads, min, scale 1) are Algorithm 1.

The file holds the algorithm only: data loading is ``aigp.ltve.dataset``, run tracking the CLI/component.
Layout after CORL's ``iql.py``: config dataclass, pure loss functions, networks, learner, training loop.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn


# --------------------------------------------------------------------------------------------------------
@dataclass
class LTVEConfig:
    # Algorithm 1 and the paper's Table 8
    gamma: float = 0.95  # discount factor γ
    n_steps: int = 3  # TD horizon n of the targets y^(n)
    expectile: float = 0.8  # τ of the expectile loss for V (> 0.5: V tracks the better in-data actions)
    learning_rate: float = 3e-4  # Adam learning rate of Q1, Q2 and V
    soft_update_rate: float = 0.01  # η of the target-critic soft update
    batch_size: int = 512  # transitions per update
    q_min: float = -20.0  # lower clipping bound of the targets (the trainer sets it from the reward range)
    q_max: float = 20.0  # upper clipping bound of the targets
    # networks (not given by the paper; CORL's IQL uses the same MLPs)
    hidden_dims: tuple[int, ...] = (256, 256)  # hidden layer widths of each Q and of V
    action_scale: float = 0.2  # actions enter the critics as a / action_scale (|a| <= 0.2 in A_safe -> [-1, 1])
    ensemble: int = 2  # Q heads (Algorithm 1: twins); V regresses on the min of the target heads
    pessimism: float = 0.0  # 0: score = min over heads (Algorithm 1); > 0: score = mean − pessimism · std (LCB)
    reward_scale: float = 1.0  # rewards are multiplied by this for training (Q, V learn scaled values); scores unscaled
    # run
    steps: int = 30_000  # gradient updates
    seed: int = 0  # initialisation and sampling seed

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        checks = {
            "gamma": 0 < self.gamma <= 1, "n_steps": self.n_steps >= 1, "expectile": 0 < self.expectile < 1,
            "learning_rate": self.learning_rate > 0, "soft_update_rate": 0 < self.soft_update_rate <= 1,
            "batch_size": self.batch_size >= 1, "q_max": self.q_max > self.q_min,
            "hidden_dims": len(self.hidden_dims) >= 1 and min(self.hidden_dims) >= 1,
            "action_scale": self.action_scale > 0, "steps": self.steps >= 0, "ensemble": self.ensemble >= 2,
            "pessimism": self.pessimism >= 0, "reward_scale": self.reward_scale > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"LTVEConfig.{name}={getattr(self, name)!r} is out of range")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hidden_dims": list(self.hidden_dims)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LTVEConfig:
        return _config_from_dict(cls, data)


@dataclass
class Batch:
    """A batch of n-step transitions (tensors, one row per transition)."""

    states: torch.Tensor  # (B, D) normalised s_t
    actions: torch.Tensor  # (B,) a_t
    rewards: torch.Tensor  # (B, n) r_t..r_{t+n-1}, zero after the episode's end
    next_states: torch.Tensor  # (B, D) s_{t+n} (ignored where done)
    done: torch.Tensor  # (B,) 1.0 where the episode ends within the n steps
    prev_discount: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # (B,) raw d_{t-1} of s_t
    next_prev_discount: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # (B,) raw d of s_{t+n}


# --------------------------------------------------------------------------------------------------------
# the math, as small pure functions
def expectile_loss(diff: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean of |τ − 1(u < 0)| u²: minimised over a constant c by the τ-expectile of the u + c sample."""
    weight = torch.where(diff < 0, 1.0 - tau, tau)
    return (weight * diff.square()).mean()


def n_step_targets(rewards: torch.Tensor, done: torch.Tensor, next_value: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = Σ_{k<n} γ^k r_{t+k} + γ^n (1 − done) V(s_{t+n}); rewards past the episode's end must be 0."""
    n = rewards.shape[-1]
    discounts = gamma ** torch.arange(n, dtype=rewards.dtype, device=rewards.device)
    return (rewards * discounts).sum(-1) + (gamma**n) * (1.0 - done) * next_value


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """target ← rate · source + (1 − rate) · target, parameter by parameter."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), rate)


def mlp_flops(inputs: int, hidden_dims: tuple[int, ...]) -> float:
    """FLOPs of one forward pass of an MLP with one output (a multiply-add counts 2)."""
    dims = [inputs, *hidden_dims, 1]
    return float(sum(2 * a * b for a, b in itertools.pairwise(dims)))


def update_flops(state_dim: int, hidden_dims: tuple[int, ...], ensemble: int = 2) -> float:
    """Model FLOPs of one transition in one :meth:`LTVE.update` (backward = 2 × forward).

    Per transition and Q head: target forward (1 Q) and online forward+backward (3 Q); plus V forward+backward
    on s_t (3 V) and V forward on s_{t+n} (1 V). Twins: 8 Q + 4 V forward passes.
    """
    return 4 * ensemble * mlp_flops(state_dim + 1, hidden_dims) + 4 * mlp_flops(state_dim, hidden_dims)


def lower_confidence_bound(q: torch.Tensor, pessimism: float) -> torch.Tensor:
    """Score of an ensemble of Q heads (E, ...) -> (...): the min over heads when ``pessimism`` is 0 (Algorithm 1),
    else mean − pessimism · std (population std over heads): actions the heads disagree on score lower."""
    if pessimism == 0:
        return q.min(0).values
    return q.mean(0) - pessimism * q.std(0, unbiased=False)


# --------------------------------------------------------------------------------------------------------
# networks
class VectorizedLinear(nn.Module):
    """``ensemble`` independent linear layers as one batched matmul: (E, B, in) -> (E, B, out)."""

    def __init__(self, in_features: int, out_features: int, ensemble: int, fan_in: int | None = None):
        super().__init__()
        bound = 1.0 / math.sqrt(fan_in or in_features)  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(ensemble, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(ensemble, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class TwinQ(nn.Module):
    """Q_1..Q_E(s, a) as MLPs on [s, a / action_scale], evaluated together.

    The first layer W [s; a] + b is computed as (W_s s + b) + a · w_a so that K candidate actions of a state
    share the state half: ``score`` costs one state projection per state, not per candidate.
    """

    def __init__(self, state_dim: int, hidden_dims: tuple[int, ...], action_scale: float, ensemble: int = 2):
        super().__init__()
        self.ensemble, self.action_scale = ensemble, action_scale
        width = hidden_dims[0]
        self.state_in = VectorizedLinear(state_dim, width, ensemble, fan_in=state_dim + 1)
        bound = 1.0 / math.sqrt(state_dim + 1)
        self.action_in = nn.Parameter(torch.empty(ensemble, 1, 1, width).uniform_(-bound, bound))
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(hidden_dims):
            layers += [nn.ReLU(), VectorizedLinear(a, b, ensemble)]
        layers += [nn.ReLU(), VectorizedLinear(hidden_dims[-1], 1, ensemble)]
        self.body = nn.Sequential(*layers)

    def score(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q of K candidate actions per state: states (N, D), actions (N, K) -> (E, N, K)."""
        n, k = actions.shape
        h = self.state_in(states.unsqueeze(0).expand(self.ensemble, -1, -1))  # (E, N, H)
        h = h.unsqueeze(2) + (actions / self.action_scale).unsqueeze(0).unsqueeze(-1) * self.action_in
        return self.body(h.reshape(self.ensemble, n * k, -1)).reshape(self.ensemble, n, k)

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q of one action per state: states (B, D), actions (B,) -> (E, B)."""
        return self.score(states, actions.unsqueeze(1)).squeeze(2)


class ValueNet(nn.Module):
    def __init__(self, state_dim: int, hidden_dims: tuple[int, ...]):
        super().__init__()
        dims = [state_dim, *hidden_dims]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states).squeeze(-1)


# --------------------------------------------------------------------------------------------------------
# the learner
class LTVE:
    """Twin Q, target twins and V, updated by Algorithm 1."""

    kind = "ltve"

    def __init__(self, state_dim: int, config: LTVEConfig):
        self.config, self.state_dim = config, state_dim
        torch.manual_seed(config.seed)
        self.q = TwinQ(state_dim, config.hidden_dims, config.action_scale, ensemble=config.ensemble)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.v = ValueNet(state_dim, config.hidden_dims)
        self.q_optimizer = torch.optim.Adam(self.q.parameters(), lr=config.learning_rate)
        self.v_optimizer = torch.optim.Adam(self.v.parameters(), lr=config.learning_rate)
        self.total_steps = 0

    def _update_v(self, batch: Batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            q_min = self.q_target(batch.states, batch.actions).min(0).values
        v = self.v(batch.states)
        loss = expectile_loss(q_min - v, self.config.expectile)
        self.v_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.v_optimizer.step()
        return {"loss_v": loss.detach(), "v": v.detach().mean()}

    def _update_q(self, batch: Batch) -> dict[str, torch.Tensor]:
        cfg = self.config
        with torch.no_grad():
            scale = cfg.reward_scale
            rewards = batch.rewards if scale == 1.0 else batch.rewards * scale
            y = n_step_targets(rewards, batch.done, self.v(batch.next_states), cfg.gamma)
            low, high = cfg.q_min * scale, cfg.q_max * scale
            clipped = ((y < low) | (y > high)).float().mean()
            y = y.clamp(low, high)
        q = self.q(batch.states, batch.actions)  # (E, B)
        loss = (q - y).square().mean(1).sum()
        self.q_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.q_optimizer.step()
        return {"loss_q": loss.detach(), "q": q.detach().mean(), "target": y.mean(), "clipped": clipped}

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One iteration of Algorithm 1 (lines 7-14)."""
        metrics = self._update_v(batch)
        metrics |= self._update_q(batch)
        soft_update(self.q_target, self.q, self.config.soft_update_rate)
        self.total_steps += 1
        return metrics

    @torch.no_grad()
    def score(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """min(Q1, Q2) (or the ensemble's lower confidence bound) of K candidate actions per state,
        (N, D) x (N, K) -> (N, K), in one forward pass."""
        q = lower_confidence_bound(self.q.score(states, actions), self.config.pessimism)
        return q if self.config.reward_scale == 1.0 else q / self.config.reward_scale

    @torch.no_grad()
    def value(self, states: torch.Tensor) -> torch.Tensor:
        v = self.v(states)
        return v if self.config.reward_scale == 1.0 else v / self.config.reward_scale

    def state_dict(self) -> dict[str, Any]:
        return {"q": self.q.state_dict(), "q_target": self.q_target.state_dict(), "v": self.v.state_dict(),
                "q_optimizer": self.q_optimizer.state_dict(), "v_optimizer": self.v_optimizer.state_dict(),
                "total_steps": self.total_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.v.load_state_dict(state["v"])
        self.q_optimizer.load_state_dict(state["q_optimizer"])
        self.v_optimizer.load_state_dict(state["v_optimizer"])
        self.total_steps = int(state["total_steps"])

    def flops_per_transition(self) -> float:
        return update_flops(self.state_dim, self.config.hidden_dims, self.config.ensemble)


# --------------------------------------------------------------------------------------------------------
# the training loop
def train(learner: Any, sample: Callable[[], Batch], steps: int, *, log_every: int = 1000,
          callback: Callable[[int, dict[str, float]], None] | None = None, progress: bool = False) -> list[dict]:
    """Run ``steps`` updates of ``learner`` (LTVE or CQL) on batches from ``sample``.

    Every ``log_every`` steps the window's mean metrics and its throughput (transitions/s) are appended to
    the returned history and passed to ``callback(step, metrics)``.
    """
    from tqdm.auto import tqdm

    history: list[dict] = []
    window: dict[str, torch.Tensor] = {}
    count, transitions, started = 0, 0, time.perf_counter()
    bar = tqdm(total=steps, desc=f"training {learner.kind}", disable=not progress, mininterval=2.0)
    for step in range(1, steps + 1):
        batch = sample()
        metrics = learner.update(batch)
        for key, value in metrics.items():
            window[key] = window[key] + value if key in window else value.clone()
        count += 1
        transitions += int(batch.actions.shape[0])
        if step % log_every == 0 or step == steps:
            elapsed = time.perf_counter() - started
            row = {"step": learner.total_steps, **{k: float(v) / count for k, v in window.items()},
                   "transitions_per_s": transitions / max(elapsed, 1e-9)}
            history.append(row)
            if callback is not None:
                callback(learner.total_steps, row)
            bar.set_postfix({k: f"{row[k]:.3g}" for k in ("loss_q", "q") if k in row})
            window, count, transitions, started = {}, 0, 0, time.perf_counter()
        bar.update(1)
    bar.close()
    return history


def _config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known: {sorted(known)}")
    values = dict(data)
    if "hidden_dims" in values:
        values["hidden_dims"] = tuple(values["hidden_dims"])
    return cls(**values)
