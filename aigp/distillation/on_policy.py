"""On-policy distillation (DAgger): the teacher labels the states the *student* visits.

A student trained only on logged states meets other states once it prices: its own small errors move stock, rank
and price to places the logging policy never went, where nothing taught it. Over a 14-day launch those errors
compound (``bench/bench_student_dagger.py`` measures it). DAgger (Ross et al., 2011) closes the loop: let the
student price a training cohort, record every state it decided on, have the teacher answer those states, add them
to the SFT set and train again.

The teacher is free, so the only cost is the student's own generation. On the simulator the training cohort is a
market of its own (its own seed and SKU ids, never the A/B cohort); in production it is the canary's served
decisions, which the decision log already records as prompt rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field

from aigp.config import StrictConfig
from aigp.market.config import MarketConfig
from aigp.market.observation import Observation, Policy
from aigp.market.simulator import Market


class OnPolicyConfig(StrictConfig):
    """One DAgger round's training cohort: fresh launches the student prices for ``days`` days."""

    skus: int = Field(300, ge=1, description="SKUs of the training cohort")
    seed: int = Field(1_000, ge=0, description="seed of the training cohort's market (keep it off the A/B's)")
    start_date: dt.date = Field(dt.date(2026, 7, 1), description="first launch day of the training cohort")
    launch_days: int = Field(14, ge=1, description="launch window of the training cohort (days)")
    sku_id_offset: int = Field(20_000_000, ge=0, description="keeps the cohort's SKU ids apart from logs and A/B")

    def market(self) -> MarketConfig:
        return MarketConfig.build(seed=self.seed, n_skus=self.skus, start_date=self.start_date,
                                  launch_days=self.launch_days, sku_id_offset=self.sku_id_offset)


class StateRecorder:
    """A policy that acts as ``policy`` does and keeps every state it was asked about, as prompt rows."""

    requires_text = True
    requires_truth = False

    def __init__(self, policy: Policy, name: str | None = None):
        if getattr(policy, "requires_truth", False):
            raise ValueError(f"{policy!r} needs the simulator's hidden truth; a recorded state would not carry it")
        self.policy = policy
        self.name = name or f"recorded_{policy.name}"
        self.frames: list[pd.DataFrame] = []
        self.actions: list[np.ndarray] = []

    def act(self, obs: Observation) -> np.ndarray:
        action = np.asarray(self.policy.act(obs), dtype=np.float64)
        self.frames.append(obs.with_text_columns())
        self.actions.append(action)
        return action

    def rows(self) -> pd.DataFrame:
        """Every recorded state, in decision order, with the action the policy took (``policy_change``)."""
        if not self.frames:
            return pd.DataFrame()
        rows = pd.concat(self.frames, ignore_index=True)
        rows["policy_change"] = np.concatenate(self.actions)
        return rows


def visited_rows(policy: Policy, config: OnPolicyConfig | None = None, *, progress: bool = False) -> pd.DataFrame:
    """The prompt rows of every decision ``policy`` makes on the training cohort of ``config`` (its whole horizon)."""
    cfg = config or OnPolicyConfig()
    recorder = StateRecorder(policy)
    Market(cfg.market()).run({recorder.name: recorder}, progress=progress)
    return recorder.rows()


def on_policy_summary(rows: pd.DataFrame, teacher_change: Any, *, exact: float = 0.005) -> dict[str, float]:
    """How far the student's own decisions on its visited states are from the teacher's answers there."""
    student = rows["policy_change"].to_numpy(np.float64)
    teacher = np.asarray(teacher_change, dtype=np.float64)
    if len(student) != len(teacher):
        raise ValueError(f"{len(student)} visited states but {len(teacher)} teacher answers")
    ok = np.isfinite(teacher)
    return {"states": float(len(student)), "teacher_answered": float(ok.mean()) if len(ok) else 0.0,
            "exact_agreement": float(np.mean(np.abs(student[ok] - teacher[ok]) < exact)) if ok.any() else float("nan"),
            "mean_student_change": float(student.mean()) if len(student) else float("nan"),
            "mean_teacher_change": float(teacher[ok].mean()) if ok.any() else float("nan")}
