"""training_configs through .python_func(): typed parameters into validated step configs."""

from __future__ import annotations

import pytest
import yaml

from aigp.components.training_configs.component import training_configs
from aigp.config import ConfigError


def test_component_returns_one_validated_yaml_per_step() -> None:
    out = training_configs.python_func(model_size="tiny", delta_q=0.2, delta_a=0.04, beta=0.3, seed=5, threads=1,
                                       gate_config_yaml="eval_rows: 30\nfloors: {max_mae: 0.1}")
    assert out._fields == ("distill", "ltve", "sft", "sampling", "pairs", "dpo", "gate")
    assert yaml.safe_load(out.pairs)["delta_q"] == 0.2 and yaml.safe_load(out.dpo)["beta"] == 0.3
    gate = yaml.safe_load(out.gate)
    assert gate["eval_rows"] == 30 and gate["floors"]["max_mae"] == 0.1 and gate["seed"] == 5
    assert gate["floors"]["max_parse_failure_rate"] == 0.05  # the rest of the floors keep their defaults
    assert yaml.safe_load(out.ltve)["threads"] == 1 and yaml.safe_load(out.distill)["seed"] == 5


def test_component_fails_fast_on_a_bad_field() -> None:
    with pytest.raises(ConfigError, match="gate config"):
        training_configs.python_func(gate_config_yaml="floors: {max_mea: 0.1}")
