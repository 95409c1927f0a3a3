"""Policies that act on the LTVE directly: the ceiling of what DPO on LTVE-ranked pairs can deliver.

DPO only moves the LLM toward actions the critic prefers, so a policy that simply takes the critic's
preferred action shows how far that preference is worth following in the market:

- :class:`LTVEGreedyPolicy`: argmax of Q(s, a) over ``grid_size`` evenly spaced changes spanning A_safe(s);
- :class:`BestOfMPolicy`: M samples of a teacher's action (the [ACT_ONLY] answer, sampled as the DPO
  candidates are), each parsed and projected onto A_safe, then the one the LTVE scores highest. This is the
  policy DPO on LTVE-ranked pairs over the same samples approaches in the limit. With a ``sampler`` the
  samples come from elsewhere, e.g. a trained model's own (``aigp.align.policy.LLMSamples``): best-of-M over
  the SFT model's samples is the ceiling of DPO on that model's pairs.

Both follow ``aigp.market.observation.Policy`` (``act(obs) -> discount changes``) and return actions inside
A_safe. They read the critic's state features from the observation's frame (the schema's numeric features
and the category, the same columns the LTVE is trained on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from aigp.action import project_to_safe
from aigp.ltve.artifact import LTVEModel


class LTVEGreedyPolicy:
    """The Q-greedy action inside A_safe (``LTVEModel.greedy``)."""

    requires_text = False
    requires_truth = False

    def __init__(self, model: LTVEModel, *, grid_size: int = 41, name: str = "ltve_greedy"):
        if grid_size < 2:
            raise ValueError(f"grid_size={grid_size} must be >= 2")
        self.model, self.grid_size, self.name = model, grid_size, name
        self.decisions = 0

    def act(self, obs: Any) -> np.ndarray:
        if len(obs) == 0:
            return np.zeros(0)
        actions, _ = self.model.greedy(obs.frame, self.grid_size)
        self.decisions += len(obs)
        return project_to_safe(obs.prev_discount, actions.astype(np.float64)).change

    def __repr__(self) -> str:
        return f"LTVEGreedyPolicy(name={self.name!r}, grid_size={self.grid_size})"


class BestOfMPolicy:
    """Best of ``m`` teacher samples by the LTVE.

    Sample i of a decision is the teacher's answer to the [ACT_ONLY] prompt at ``temperature`` with
    ``sample_index=i`` (seeded by the SKU and the prompt, so a run is reproducible). Samples whose parse falls
    back (no valid action) are still candidates: Ψ turns them into "hold", which is what would be served.
    """

    requires_text = True
    requires_truth = False

    def __init__(self, model: LTVEModel, *, teacher: Any | None = None, m: int = 8, temperature: float = 1.0,
                 prompt_config: Any | None = None, name: str | None = None,
                 sampler: Callable[[Any], np.ndarray] | None = None):
        from aigp.distillation.teacher import KnowledgeBaseTeacher
        from aigp.llm.prompt import PromptConfig

        if m < 1:
            raise ValueError(f"m={m} must be >= 1")
        if temperature < 0:
            raise ValueError(f"temperature={temperature} must be >= 0")
        self.model, self.m, self.temperature = model, m, temperature
        self.teacher = teacher or KnowledgeBaseTeacher()
        self.prompt_config = (prompt_config or PromptConfig()).with_updates(act_only=True)
        self.sampler = sampler or self.teacher_samples  # obs -> (N, m) parsed changes
        self.name = name or f"best_of_{m}_{'teacher' if sampler is None else 'samples'}"
        self.decisions = 0
        self.distinct_candidates = 0  # summed over decisions: how many different actions the samples offered
        self.changed_vs_first = 0  # decisions where the chosen sample is not sample 0's action

    def teacher_samples(self, obs: Any) -> np.ndarray:
        """(N, m) changes Ψ reads from the teacher's sampled [ACT_ONLY] answers (the default sampler)."""
        from aigp.llm.parser import parse_action
        from aigp.llm.prompt import build_prompt

        frame = obs.with_text_columns()
        out = np.zeros((len(frame), self.m))
        for i, row in enumerate(frame.to_dict("records")):
            prompt = build_prompt(row, self.prompt_config)
            for j in range(self.m):
                response = self.teacher.respond(prompt, temperature=self.temperature, seed=int(row["sku_id"]),
                                                sample_index=j)
                out[i, j] = parse_action(response.text, float(row["prev_discount"])).discount_change
        return out

    def candidates(self, obs: Any) -> np.ndarray:
        """(N, m) parsed, A_safe-projected sampled changes."""
        prev = obs.prev_discount
        out = np.asarray(self.sampler(obs), dtype=np.float64)
        if out.shape != (len(prev), self.m):
            raise ValueError(f"sampler returned {out.shape} changes, expected ({len(prev)}, {self.m})")
        return project_to_safe(np.repeat(prev[:, None], self.m, axis=1), out).change

    def act(self, obs: Any) -> np.ndarray:
        if len(obs) == 0:
            return np.zeros(0)
        cand = self.candidates(obs)
        q = self.model.q_values(obs.frame, cand)
        pick = q.argmax(1)
        chosen = cand[np.arange(len(cand)), pick]
        self.decisions += len(cand)
        self.distinct_candidates += int(sum(len(np.unique(np.round(row, 4))) for row in cand))
        self.changed_vs_first += int((np.abs(chosen - cand[:, 0]) > 1e-9).sum())
        return chosen

    def stats(self) -> dict[str, float]:
        d = max(self.decisions, 1)
        return {"decisions": float(self.decisions), "mean_distinct_candidates": self.distinct_candidates / d,
                "share_changed_vs_first_sample": self.changed_vs_first / d}

    def __repr__(self) -> str:
        return f"BestOfMPolicy(name={self.name!r}, m={self.m}, temperature={self.temperature})"
