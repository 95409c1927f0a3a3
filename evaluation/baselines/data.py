"""What the offline-RL baselines share: the training window, their rewards, the A_safe squashing, the policy.

- :func:`prepare_offline_data`: the LTVE's time split and feature normaliser (fitted on the training window only),
  the chosen reward per row, and 1-step transitions (``aigp.ltve.dataset.build_transitions``).
- Rewards: ``"ltve"`` is the paper's eq. 3 (``aigp.ltve.reward``, references fitted on the training window);
  ``"drcr"`` is Liu et al.'s difference of revenue conversion rates (:func:`drcr_rewards`).
- :func:`squash_to_safe`: an unbounded actor output u becomes a change inside A_safe(s) by construction,
  ``a = low + (high − low) · (tanh(u) + 1) / 2`` with [low, high] the feasible interval of d_{t−1}.
- :class:`ActorPolicy`: a trained deterministic actor as a market ``Policy`` (numeric state only, no text).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from aigp.action import project_to_safe
from aigp.ltve.cql import feasible_bounds
from aigp.ltve.dataset import (
    FeatureNormaliser,
    TimeSplit,
    Transitions,
    build_transitions,
    expert_skus,
    prepare_frame,
    time_split,
)
from aigp.ltve.reward import MILESTONE_DAYS, RewardConfig, RewardReferences, fit_references, frame_rewards
from aigp.schema import ENTITY_KEY

RewardKind = Literal["ltve", "drcr"]
DRCR_CLIP = 1.0  # |DRCR| is clipped: a day with almost no revenue before it would otherwise dominate


def drcr_rewards(frame: pd.DataFrame, launch_rcr: dict[str, float]) -> np.ndarray:
    """Liu et al.'s DRCR with τ = 1 day, per row of a frame sorted by SKU and day of life.

    Revenue conversion rate of day t: ``RCR_t = out_gmv_t / out_exposure_t`` (GMV per impression, the
    paper's revenue per visitor). Reward ``r_t = clip((RCR_t − RCR_{t−1}) / RCR_{t−1}, −1, 1)``: positive when
    the pricing action raised the revenue conversion rate relative to the day before. On launch day there is
    no day before, so RCR_{t−1} is the category's median launch-day RCR of the training window
    (``launch_rcr``). A zero denominator is floored at 1% of that category median.
    """
    exposure = frame["out_exposure"].to_numpy(np.float64)
    rcr = np.divide(frame["out_gmv"].to_numpy(np.float64), exposure, out=np.zeros(len(frame)), where=exposure > 0)
    sku = frame[ENTITY_KEY].to_numpy()
    first = np.r_[True, sku[1:] != sku[:-1]] if len(frame) else np.zeros(0, dtype=bool)
    category = frame["category"].astype(str)
    fallback = float(np.median(list(launch_rcr.values()))) if launch_rcr else 0.0
    launch = category.map(launch_rcr).fillna(fallback).to_numpy(np.float64)
    previous = np.where(first, launch, np.r_[0.0, rcr[:-1]])
    denominator = np.maximum(previous, 0.01 * np.maximum(launch, 1e-9))
    return np.clip((rcr - previous) / denominator, -DRCR_CLIP, DRCR_CLIP)


def launch_rcr_by_category(frame: pd.DataFrame) -> dict[str, float]:
    day0 = frame[frame["days_since_launch"] == 0]
    exposure = day0["out_exposure"].to_numpy(np.float64)
    rcr = np.divide(day0["out_gmv"].to_numpy(np.float64), exposure, out=np.zeros(len(day0)), where=exposure > 0)
    return {str(k): float(v) for k, v in pd.Series(rcr).groupby(day0["category"].astype(str).to_numpy()).median()
            .items()}


@dataclass
class OfflineData:
    """The training window of a frame as every baseline reads it."""

    split: TimeSplit
    normaliser: FeatureNormaliser
    reward_kind: str
    rewards: np.ndarray  # one per row of split.train
    transitions: Transitions  # 1-step transitions over split.train
    experts: np.ndarray  # expert SKU ids of the training window
    references: RewardReferences | None = None  # eq. 3 references (reward "ltve")
    launch_rcr: dict[str, float] = field(default_factory=dict)  # DRCR launch references (reward "drcr")

    def describe(self) -> dict[str, Any]:
        return {**self.split.describe(), "reward": self.reward_kind, "transitions": len(self.transitions),
                "state_dim": self.normaliser.dim,
                "expert_share_of_transitions": float(self.transitions.expert.float().mean())}


def prepare_offline_data(frame: pd.DataFrame, *, reward: RewardKind, eval_share: float = 0.2,
                         cutoff: str | pd.Timestamp | None = None, expert_top_share: float = 0.3,
                         reward_config: RewardConfig | None = None) -> OfflineData:
    """Split like the LTVE (same cutoff rule, no validation part), fit everything on the training window."""
    frame = prepare_frame(frame)
    split = time_split(frame, cutoff=cutoff, eval_share=eval_share, validation_share=0.0)
    train = split.train
    normaliser = FeatureNormaliser.fit(train)
    experts = expert_skus(train, expert_top_share, MILESTONE_DAYS)
    references, launch_rcr = None, {}
    if reward == "ltve":
        references = fit_references(train, reward_config or RewardConfig())
        rewards = frame_rewards(train, references, reward_config or RewardConfig())
    elif reward == "drcr":
        launch_rcr = launch_rcr_by_category(train)
        rewards = drcr_rewards(train, launch_rcr)
    else:
        raise ValueError(f"reward={reward!r}: expected 'ltve' or 'drcr'")
    transitions = build_transitions(train, rewards, normaliser.transform(train), n_steps=1,
                                    horizon_days=MILESTONE_DAYS, expert_ids=experts)
    return OfflineData(split, normaliser, reward, rewards, transitions, experts, references, launch_rcr)


# --------------------------------------------------------------------------------------------------------
def squash_to_safe(u: torch.Tensor, prev_discount: torch.Tensor) -> torch.Tensor:
    """Map an unbounded output onto A_safe(d_{t−1}): low + (high − low)(tanh u + 1)/2, inside by construction."""
    low, high = feasible_bounds(prev_discount)
    return low + (high - low) * (torch.tanh(u) + 1.0) / 2.0


def unsquash(a: torch.Tensor, prev_discount: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Inverse of :func:`squash_to_safe` (clamped away from the interval's ends): u with squash(u) ≈ a."""
    low, high = feasible_bounds(prev_discount)
    unit = ((a - low) / (high - low).clamp_min(1e-6)).clamp(eps, 1 - eps)
    return torch.atanh(2.0 * unit - 1.0)


def state_tensors(frame: pd.DataFrame, normaliser: FeatureNormaliser) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised states, raw d_{t−1}) of a frame of schema-named rows."""
    return (torch.from_numpy(normaliser.transform(frame)),
            torch.from_numpy(frame["prev_discount"].to_numpy(np.float32)))


class FramePolicy(ABC):
    """A market Policy that prices a day's observations through ``propose(frame)`` (the same computation the
    offline metrics call on a frame of logged rows)."""

    requires_text = False
    requires_truth = False

    @abstractmethod
    def propose(self, frame: pd.DataFrame) -> np.ndarray:
        """Projected daily changes, one per row of ``frame``."""

    def act(self, obs: Any) -> np.ndarray:
        if len(obs) == 0:
            return np.zeros(0)
        return self.propose(obs.frame)


class ActorPolicy(FramePolicy):
    """A deterministic actor ``(states, prev_discount) -> change`` as a market Policy.

    ``propose(frame)`` is the same computation on a frame of rows (offline metrics); every action leaves
    through ``project_to_safe`` (a no-op for a squashed actor, kept so that the guarantee is one function's).
    """

    def __init__(self, name: str, actor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 normaliser: FeatureNormaliser, batch: int = 8192):
        self.name, self.actor, self.normaliser, self.batch = name, actor, normaliser, batch

    @torch.no_grad()
    def propose(self, frame: pd.DataFrame) -> np.ndarray:
        out = np.zeros(len(frame))
        for start in range(0, len(frame), self.batch):
            part = frame.iloc[start:start + self.batch]
            states, prev = state_tensors(part, self.normaliser)
            out[start:start + len(part)] = self.actor(states, prev).double().numpy()
        return project_to_safe(frame["prev_discount"].to_numpy(np.float64), out).change

    def __repr__(self) -> str:
        return f"ActorPolicy(name={self.name!r})"


@dataclass
class TrainedBaseline:
    """A trained baseline: its market policy, training history, data description and wall time."""

    name: str
    policy: Any
    history: list[dict]
    info: dict[str, Any]
    seconds: float
