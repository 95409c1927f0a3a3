"""The training pipeline's step-config parameters and the per-step config YAML they become.

:class:`StepParameters` declares, once, the pipeline parameters that shape the step configs (name, type, default,
description): the ``training_configs`` step's signature is generated from it (``pipelines/signatures.py``), and
the pipeline's own parameters (``pipelines/training_parameters.py``) extend it.

The pipeline exposes the paper's knobs as typed parameters (ΔQ, Δa, M, β, seeds, model size) and the full
step configs as optional YAML overrides; :func:`step_configs` merges the two and validates every step's config
*before* any step runs, so a typo fails the run in the first second with the field named, not after an
hour of SFT. Typed parameters win over the same field in a YAML override.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

import yaml
from pydantic import ConfigDict, Field, ValidationError

from aigp.config import ConfigError, StrictConfig, format_validation_error

STEPS = ("distill", "ltve", "sft", "sampling", "pairs", "dpo", "gate")


def _override(step: str) -> Any:
    return Field("", description=f"YAML overrides of the {step} step's config (typed parameters win)")


class StepParameters(StrictConfig):
    """The parameters that shape the step configs: the ``training_configs`` step's inputs."""

    model_config = ConfigDict(strict=True)  # a preset's "8" for an int is an error, not an 8

    model_size: str = Field("tiny", description="base model size: tiny | small (also the teacher prompts' "
                                                "token budget)")
    delta_q: float = Field(0.05, description="ΔQ: the LTVE Q gap a preference pair needs")
    delta_a: float = Field(0.02, description="Δa: the action gap a preference pair needs")
    beta: float = Field(0.1, description="β: DPO's KL strength")
    seed: int = Field(0, description="seeds every step")
    threads: int = Field(0, description="torch threads of the CPU-bound steps (0 = torch's default)")
    distill_config_yaml: str = _override("distill")
    ltve_config_yaml: str = _override("ltve")
    sft_config_yaml: str = _override("sft")
    sampling_config_yaml: str = _override("sampling")
    pairs_config_yaml: str = _override("pairs")
    dpo_config_yaml: str = _override("dpo")
    gate_config_yaml: str = _override("gate")

    def overrides(self) -> dict[str, str]:
        """Step -> the YAML text of its config overrides."""
        return {step: getattr(self, f"{step}_config_yaml") for step in STEPS}


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


def step_configs(parameters: StepParameters | None = None) -> dict[str, str]:
    """YAML text of every step's config (keys: :data:`STEPS`), validated by the step's config class.

    ``parameters`` (default: the defaults): the typed knobs plus each step's YAML overrides; ``threads`` > 0
    caps torch threads in the CPU-bound steps (local runs)."""
    from aigp.align.dpo import DPOStepConfig
    from aigp.align.pairs import PairsConfig
    from aigp.align.sampling import SamplingConfig
    from aigp.align.sft import SFTStepConfig
    from aigp.distillation.distill import DistillConfig
    from aigp.gate import GateConfig
    from aigp.llm.model_factory import SIZES
    from aigp.ltve.train import LTVETrainConfig

    p = parameters or StepParameters()
    if p.model_size not in SIZES:
        raise ConfigError(f"model_size={p.model_size!r}: expected one of {sorted(SIZES)}")
    cpu = {"threads": p.threads} if p.threads > 0 else {}
    budget = SIZES[p.model_size].prompt_budget
    typed: dict[str, dict[str, Any]] = {
        "distill": {"seed": p.seed, **({"prompt": {"max_prompt_tokens": budget}} if budget else {})},
        "ltve": {**cpu},
        "sft": {"optim": {"seed": p.seed, **cpu}},
        "sampling": {"seed": p.seed, **cpu},
        "pairs": {"delta_q": p.delta_q, "delta_a": p.delta_a},
        "dpo": {"beta": p.beta, "optim": {"seed": p.seed, **cpu}},
        "gate": {"seed": p.seed},
    }
    classes: dict[str, type[StrictConfig]] = {
        "distill": DistillConfig, "ltve": LTVETrainConfig, "sft": SFTStepConfig, "sampling": SamplingConfig,
        "pairs": PairsConfig, "dpo": DPOStepConfig, "gate": GateConfig,
    }
    overrides = p.overrides()
    out = {}
    for step in STEPS:
        # start from the step's defaults so a partial nested override (``optim: {seed: 1}``) keeps the
        # step's own nested defaults instead of the nested class's
        values = _merge(_merge(classes[step]().model_dump(mode="json"), _load(overrides[step], step)), typed[step])
        try:
            config = classes[step].build(**values)
        except ConfigError as exc:
            raise ConfigError(f"{step} config: {exc}") from None
        out[step] = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True)
    return out


StepConfigs = namedtuple("StepConfigs", STEPS)  # type: ignore[misc]  # the training_configs step's outputs


def step_outputs(arguments: dict[str, Any]) -> StepConfigs:
    """The ``training_configs`` step: its arguments -> validated step configs, one output per step."""
    try:  # KFP has typed the arguments already: lax, so a JSON 0.0 for an int is still a 0
        parameters = StepParameters.model_validate(arguments, strict=False)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(StepParameters.__name__, exc)) from None
    configs = step_configs(parameters)
    return StepConfigs(*(configs[s] for s in STEPS))


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
