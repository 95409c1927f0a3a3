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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


@dataclass
class OnPolicyRun:
    model_dir: Path  # the last round's model
    records: list[dict[str, Any]]  # the SFT set the last round trained on (given records + every round's labels)
    rounds: list[dict[str, float]] = field(default_factory=list)  # per round: visited states, agreement, labels


def on_policy_rounds(model_dir: str | Path, records: Sequence[dict[str, Any]], out_root: str | Path, *,
                     rounds: int, cohort: OnPolicyConfig, distill: Any, sft: Any, policy: Any,
                     log: Callable[[str], None] = print) -> OnPolicyRun:
    """DAgger from the SFT model ``model_dir``. Each round: the current model prices a fresh training cohort
    (``cohort``, its seed + the round), the teacher of ``distill`` (an ``aigp.distillation.distill.DistillConfig``:
    same prompt form, the judge filter) answers every state it visited, those labels join the SFT set, and SFT
    (``aigp.align.sft.SFTStepConfig``) continues from the current model on the whole set. ``policy`` is the
    ``aigp.align.policy.PolicyConfig`` the student prices with (its prompt must be ``distill``'s)."""
    from aigp.align.policy import LLMPricingPolicy
    from aigp.align.sft import run_sft
    from aigp.distillation.distill import generate, judge_filter
    from aigp.llm.parser import parse_action

    if policy.prompt != distill.prompt:
        raise ValueError("the student's prompt differs from the distillation prompt: the teacher would label "
                         "other prompts than the ones the student answered")
    current, data, summary = Path(model_dir), list(records), []
    for r in range(1, rounds + 1):
        visited = visited_rows(LLMPricingPolicy(current, policy, name="student"),
                               cohort.with_updates(seed=cohort.seed + r))
        states = visited.drop(columns=["policy_change"])
        generated = generate(states, distill.with_updates(samples_per_prompt=1))
        answers = np.array([parse_action(g["completion"][0]["content"], float(prev)).discount_change
                            if g.get("completion") else np.nan
                            for g, prev in zip(generated, states["prev_discount"], strict=True)])
        kept = judge_filter(generated, distill).kept
        data += [{"prompt": k["prompt"], "completion": k["completion"]} for k in kept]
        out = Path(out_root) / f"round_{r}"
        run_sft(data, current, out, sft)
        current = out
        summary.append({"round": float(r), **on_policy_summary(visited, answers), "labels": float(len(kept)),
                        "sft_set": float(len(data))})
        log(f"on-policy round {r}: the student agreed with the teacher on "
            f"{summary[-1]['exact_agreement']:.0%} of the {len(visited)} states it visited; "
            f"{len(kept)} labels added")
    return OnPolicyRun(model_dir=current, records=data, rounds=summary)
