"""Train an LTVE (or the CQL baseline) from a training frame: split, reward, normaliser, transitions, critic.

One typed config (:class:`LTVETrainConfig`) holds every choice; the critic's own hyper-parameters are the
fields of :class:`aigp.ltve.critic.LTVEConfig` (or :class:`aigp.ltve.cql.CQLConfig`), overridden by name in
``critic``. Everything is fitted on the training window only: reward references, the feature normaliser,
expert labels and the target clipping bounds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator, model_validator

from aigp.config import StrictConfig
from aigp.ltve.artifact import LEARNERS, LTVEModel
from aigp.ltve.dataset import (
    STATE_FEATURES,
    FeatureNormaliser,
    MixedSampler,
    TimeSplit,
    Transitions,
    build_transitions,
    expert_skus,
    prepare_frame,
    time_split,
)
from aigp.ltve.reward import RewardConfig, RewardReferences, fit_references, frame_rewards


class LTVETrainConfig(StrictConfig):
    kind: Literal["ltve", "cql"] = Field("ltve", description="the paper's LTVE (Algorithm 1) or the CQL baseline")
    critic: dict[str, Any] = Field(default_factory=dict,
                                   description="overrides of LTVEConfig / CQLConfig fields, e.g. {n_steps: 5}")
    reward: RewardConfig = Field(default_factory=RewardConfig)
    cutoff: dt.date | None = Field(None, description="first launch day of the held-out cohort; None: eval_share")
    eval_share: float = Field(0.2, gt=0, lt=1, description="share of SKUs (latest launches) held out")
    validation_share: float = Field(0.1, ge=0, lt=1, description="latest training SKUs kept for validation")
    expert_top_share: float = Field(0.3, gt=0, le=1, description="expert = top share by 14-day GMV in category")
    expert_batch_share: float | None = Field(0.6, ge=0, le=1,
                                             description="share of expert transitions per batch (None: uniform)")
    derived_features: tuple[str, ...] = Field((), description="derived state features added to the schema's "
                                              "(aigp.ltve.dataset.DERIVED_FEATURES), e.g. [ref_price_gap]")
    normalise_reward: bool = Field(False, description="train on rewards divided by their standard deviation on the "
                                   "training window (critic reward_scale); Q is reported in reward units")
    log_every: int = Field(1000, ge=1, description="updates between logged metric windows")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")

    @field_validator("critic")
    @classmethod
    def _plain_values(cls, value: dict[str, Any]) -> dict[str, Any]:
        return dict(value)

    @field_validator("derived_features")
    @classmethod
    def _known_derived(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from aigp.ltve.dataset import DERIVED_FEATURES

        unknown = [v for v in value if v not in DERIVED_FEATURES]
        if unknown:
            raise ValueError(f"derived_features {unknown} unknown; known: {sorted(DERIVED_FEATURES)}")
        return tuple(value)

    @model_validator(mode="after")
    def _critic_fields_exist(self) -> LTVETrainConfig:
        _, config_cls = LEARNERS[self.kind]
        known = {f.name for f in dataclasses.fields(config_cls)}
        unknown = sorted(set(self.critic) - known)
        if unknown:
            raise ValueError(f"critic has unknown field(s) {unknown} for kind={self.kind!r}; known: {sorted(known)}")
        if self.normalise_reward and "reward_scale" not in known:
            raise ValueError(f"normalise_reward=True needs kind='ltve' (kind={self.kind!r} has no reward_scale)")
        return self

    def critic_config(self, **derived: Any) -> Any:
        """The learner's dataclass config: defaults, then ``derived`` values (bounds), then explicit overrides."""
        _, config_cls = LEARNERS[self.kind]
        return config_cls.from_dict({**derived, **self.critic})


@dataclass
class PreparedData:
    split: TimeSplit
    references: RewardReferences
    normaliser: FeatureNormaliser
    train: Transitions
    validation: Transitions | None
    q_bounds: tuple[float, float]
    experts: np.ndarray
    reward_std: float = 1.0  # of the training transitions' daily rewards


@dataclass
class TrainResult:
    model: LTVEModel
    history: list[dict]
    data: PreparedData
    seconds: float


def value_bounds(rewards: np.ndarray, gamma: float, horizon_days: int) -> tuple[float, float]:
    """[Qmin, Qmax] that contain every discounted return of an episode: the reward range times Σ_{k<H} γ^k."""
    span = sum(gamma**k for k in range(horizon_days))
    return float(min(rewards.min(), 0.0) * span), float(max(rewards.max(), 0.0) * span)


def prepare_data(frame: pd.DataFrame, config: LTVETrainConfig, n_steps: int, gamma: float) -> PreparedData:
    frame = prepare_frame(frame)
    h = config.reward.horizon_days
    split = time_split(frame, cutoff=pd.Timestamp(config.cutoff) if config.cutoff else None,
                       eval_share=config.eval_share, validation_share=config.validation_share, horizon_days=h)
    references = fit_references(split.train, config.reward)
    normaliser = FeatureNormaliser.fit(split.train, (*STATE_FEATURES, *config.derived_features))
    experts = expert_skus(split.train, config.expert_top_share, h)

    def transitions(part: pd.DataFrame) -> tuple[np.ndarray, Transitions]:
        rewards = frame_rewards(part, references, config.reward)
        return rewards, build_transitions(part, rewards, normaliser.transform(part), n_steps=n_steps,
                                          horizon_days=h, expert_ids=experts)

    train_rewards, train = transitions(split.train)
    validation = transitions(split.validation)[1] if len(split.validation) else None
    return PreparedData(split, references, normaliser, train, validation,
                        value_bounds(train_rewards, gamma, h), experts, float(max(train_rewards.std(), 1e-6)))


def train_ltve(frame: pd.DataFrame, config: LTVETrainConfig | None = None, *,
               callback: Callable[[int, dict[str, float]], None] | None = None,
               progress: bool = False) -> TrainResult:
    """Fit the critic on the training window of ``frame``; returns the model (with its metrics) and history."""
    config = config or LTVETrainConfig()
    if config.threads:
        torch.set_num_threads(config.threads)
    defaults = config.critic_config()
    started = time.perf_counter()
    data = prepare_data(frame, config, defaults.n_steps, defaults.gamma)
    q_min, q_max = data.q_bounds
    derived: dict[str, Any] = {"q_min": q_min, "q_max": q_max}
    if config.normalise_reward:
        derived["reward_scale"] = 1.0 / data.reward_std
    critic_config = config.critic_config(**derived)
    learner_cls, _ = LEARNERS[config.kind]
    learner = learner_cls(data.normaliser.dim, critic_config)
    sampler = MixedSampler(data.train, critic_config.batch_size, expert_share=config.expert_batch_share,
                           seed=critic_config.seed)
    prepared_s = time.perf_counter() - started
    fit_started = time.perf_counter()
    history = _fit(learner, sampler, critic_config.steps, config.log_every, callback, progress)
    fit_s = time.perf_counter() - fit_started

    metrics: dict[str, Any] = {
        "train/transitions": len(data.train),
        "train/expert_share_of_transitions": float(data.train.expert.float().mean()),
        "train/steps": learner.total_steps,
        "train/prepare_seconds": prepared_s,
        "train/fit_seconds": fit_s,
        "train/transitions_per_s": critic_config.steps * critic_config.batch_size / max(fit_s, 1e-9),
    }
    if history:
        metrics |= {f"train/final_{k}": v for k, v in history[-1].items() if k not in ("step", "transitions_per_s")}
    if data.validation is not None:
        metrics |= {f"validation/{k}": v for k, v in td_error(learner, data.validation).items()}
    info = {"split": data.split.describe(), "kind": config.kind, "train_config": config.model_dump(mode="json"),
            "q_bounds": [q_min, q_max], "trained_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    model = LTVEModel(learner, data.normaliser, config.reward, data.references, info, metrics)
    return TrainResult(model, history, data, time.perf_counter() - started)


def _fit(learner: Any, sampler: MixedSampler, steps: int, log_every: int,
         callback: Callable[[int, dict[str, float]], None] | None, progress: bool) -> list[dict]:
    from aigp.ltve.critic import train

    return train(learner, sampler.sample, steps, log_every=log_every, callback=callback, progress=progress)


@torch.no_grad()
def td_error(learner: Any, transitions: Transitions, max_transitions: int = 200_000) -> dict[str, float]:
    """Mean squared n-step TD error of min(Q1, Q2) on held-out transitions, bootstrapping like training
    (from V for the LTVE, from the grid max for CQL), and the Monte-Carlo-free mean of Q."""
    from aigp.ltve.critic import n_step_targets

    n = min(len(transitions), max_transitions)
    index = torch.arange(n)
    batch = transitions.batch(index)
    cfg = learner.config
    q = learner.score(batch.states, batch.actions[:, None])[:, 0]
    if hasattr(learner, "v"):
        next_value = learner.value(batch.next_states)
    else:
        from aigp.ltve.cql import feasible_bounds

        low, high = feasible_bounds(batch.next_prev_discount)
        grid = low[:, None] + (high - low)[:, None] * torch.linspace(0, 1, cfg.target_grid)[None, :]
        next_value = learner.score(batch.next_states, grid).max(1).values
    y = n_step_targets(batch.rewards, batch.done, next_value, cfg.gamma).clamp(cfg.q_min, cfg.q_max)
    return {"td_mse": float((q - y).square().mean()), "q_mean": float(q.mean())}
