"""KFP component: DPO of the policy on LTVE-ranked pairs, reference = the frozen input policy (``aigp.align``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def dpo(
    pairs: Input[Dataset],
    policy_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
    config_yaml: str = "",
    max_steps: int = 0,
    mlflow_experiment: str = "",
) -> None:
    """DPO with a LoRA adapter on ``policy_model`` (the SFT model; its adapter-disabled self is the reference,
    no second copy); ``model`` gets the merged model, the adapter in ``adapter/``.

    ``config_yaml``: a DPOStepConfig as YAML ("" = defaults, beta 0.1); ``max_steps`` > 0 caps the optimiser
    steps; ``mlflow_experiment`` non-empty logs params and metrics to MLflow.
    """
    import yaml

    from aigp.align.dpo import DPOStepConfig
    from aigp.align.steps import dpo_step
    from aigp.registry.tracking import step_tracker

    cfg = DPOStepConfig.build(**(yaml.safe_load(config_yaml) or {}))
    if max_steps > 0:
        cfg = cfg.with_updates(optim=cfg.optim.with_updates(max_steps=max_steps))
    result = dpo_step(pairs.path, policy_model.path, model.path, cfg, tracker=step_tracker(mlflow_experiment))
    model.metadata.update({"step": "dpo", "pairs": int(result.metrics["dpo/pairs"]), "beta": cfg.beta})
    for name, value in result.metrics.items():
        metrics.log_metric(name.replace("/", "_"), float(value))
