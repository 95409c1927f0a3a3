"""Typed training-pipeline parameters -> the per-step config YAML each component reads.

The pipeline exposes the paper's knobs as typed parameters (ΔQ, Δa, M, β, seeds, model size) and the full
step configs as optional YAML overrides; this module merges the two and validates every step's config
*before* any step runs, so a typo fails the run in the first second with the field named, not after an
hour of SFT. Typed parameters win over the same field in a YAML override.
"""

from __future__ import annotations

from typing import Any

import yaml

from aigp.config import ConfigError, StrictConfig

STEPS = ("distill", "ltve", "sft", "sampling", "pairs", "dpo", "gate")


def _load(text: str, step: str) -> dict[str, Any]:
    try:
        value = yaml.safe_load(text or "") or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{step}_config_yaml is not valid YAML: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{step}_config_yaml must be a mapping of config fields, got {type(value).__name__}")
    return value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def step_configs(*, model_size: str = "tiny", delta_q: float = 0.05, delta_a: float = 0.02, beta: float = 0.1,
                 seed: int = 0, threads: int = 0, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """YAML text of every step's config (keys: :data:`STEPS`), validated by the step's config class.

    ``overrides`` maps a step to YAML text of its config fields; ``threads`` > 0 caps torch threads in the
    CPU-bound steps (local runs)."""
    from aigp.align.dpo import DPOStepConfig
    from aigp.align.pairs import PairsConfig
    from aigp.align.sampling import SamplingConfig
    from aigp.align.sft import SFTStepConfig
    from aigp.gate import GateConfig
    from aigp.llm.distill import DistillConfig
    from aigp.llm.model_factory import SIZES
    from aigp.ltve.train import LTVETrainConfig

    if model_size not in SIZES:
        raise ConfigError(f"model_size={model_size!r}: expected one of {sorted(SIZES)}")
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(STEPS))
    if unknown:
        raise ConfigError(f"no step named {unknown}; steps are {list(STEPS)}")
    cpu = {"threads": threads} if threads > 0 else {}
    budget = SIZES[model_size].prompt_budget
    typed: dict[str, dict[str, Any]] = {
        "distill": {"seed": seed, **({"prompt": {"max_prompt_tokens": budget}} if budget else {})},
        "ltve": {**cpu},
        "sft": {"optim": {"seed": seed, **cpu}},
        "sampling": {"seed": seed, **cpu},
        "pairs": {"delta_q": delta_q, "delta_a": delta_a},
        "dpo": {"beta": beta, "optim": {"seed": seed, **cpu}},
        "gate": {"seed": seed},
    }
    classes: dict[str, type[StrictConfig]] = {
        "distill": DistillConfig, "ltve": LTVETrainConfig, "sft": SFTStepConfig, "sampling": SamplingConfig,
        "pairs": PairsConfig, "dpo": DPOStepConfig, "gate": GateConfig,
    }
    out = {}
    for step in STEPS:
        # start from the step's defaults so a partial nested override (``optim: {seed: 1}``) keeps the
        # step's own nested defaults instead of the nested class's
        values = _merge(_merge(classes[step]().model_dump(mode="json"), _load(overrides.get(step, ""), step)),
                        typed[step])
        try:
            config = classes[step].build(**values)
        except ConfigError as exc:
            raise ConfigError(f"{step} config: {exc}") from None
        out[step] = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True)
    return out


def nightly_dates(date: str = "", *, today: Any = None, online_days: int = 1) -> dict[str, str]:
    """The nightly run's days (ISO): ``date`` priced ("" = today, UTC), the online-store window
    ``[date - online_days, date + 1)`` materialized before pricing, and ``date`` as the monitoring end."""
    import datetime as dt

    if date:
        try:
            day = dt.date.fromisoformat(date)
        except ValueError:
            raise ConfigError(f"date={date!r}: expected an ISO date (YYYY-MM-DD) or '' for today") from None
    else:
        day = today or dt.datetime.now(dt.UTC).date()
    if online_days < 1:
        raise ConfigError(f"online_days={online_days}: expected >= 1")
    return {"date": day.isoformat(), "online_start": (day - dt.timedelta(days=online_days)).isoformat(),
            "online_end": (day + dt.timedelta(days=1)).isoformat()}
