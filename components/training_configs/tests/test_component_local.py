"""training_configs under kfp.local: the executor runs the function source the IR embeds, which is generated
from StepParameters (aigp.pipelines.signatures), so this is the check that generated source runs."""

import yaml
from kfp import local

from aigp.components.training_configs.component import training_configs


def test_generated_component_runs_locally(tmp_path) -> None:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True, enable_caching=False)
    task = training_configs(seed=5, delta_q=0.2, gate_config_yaml="eval_rows: 30")
    assert yaml.safe_load(task.outputs["pairs"])["delta_q"] == 0.2
    gate = yaml.safe_load(task.outputs["gate"])
    assert gate["eval_rows"] == 30 and gate["seed"] == 5
