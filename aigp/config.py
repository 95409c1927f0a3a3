"""Typed configuration: one pydantic model per step, loadable from YAML, errors that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

ConfigT = TypeVar("ConfigT", bound="StrictConfig")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field, the value and what was expected."""


class StrictConfig(BaseModel):
    """Base for every step's config: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @classmethod
    def build(cls: type[ConfigT], **values: Any) -> ConfigT:
        """Validate ``values`` into this config, turning pydantic's report into a :class:`ConfigError`."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(format_validation_error(cls.__name__, exc)) from None

    @classmethod
    def from_yaml(cls: type[ConfigT], path: str | Path) -> ConfigT:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of field: value, got {type(data).__name__}")
        return cls.build(**data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def with_updates(self: ConfigT, **values: Any) -> ConfigT:
        """A copy with some fields replaced, validated like a fresh config."""
        return type(self).build(**{**self.model_dump(), **values})


def format_validation_error(model_name: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        value = err.get("input")
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        lines.append(f"{field}={shown}: {err['msg']}")
    return f"invalid {model_name}: " + "; ".join(lines)
