"""KFP component: LoRA SFT of the base model on the judged distillation set (all logic in ``aigp.align``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def sft(
    distillation_set: Input[Dataset],
    base_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
    config_yaml: str = "",
    max_steps: int = 0,
    mlflow_experiment: str = "",
) -> None:
    """Fine-tune ``base_model`` (a Hugging Face model folder) with LoRA on ``distillation_set`` (a folder with
    distill.jsonl, or the file); ``model`` gets the merged model, the adapter in ``adapter/``.

    ``config_yaml``: an SFTStepConfig as YAML ("" = defaults); ``max_steps`` > 0 caps the optimiser steps;
    ``mlflow_experiment`` non-empty logs params and metrics to that MLflow experiment.
    """
    import yaml

    from aigp.align.sft import SFTStepConfig
    from aigp.align.steps import sft_step
    from aigp.registry.tracking import step_tracker

    cfg = SFTStepConfig.build(**(yaml.safe_load(config_yaml) or {}))
    if max_steps > 0:
        cfg = cfg.with_updates(optim=cfg.optim.with_updates(max_steps=max_steps))
    result = sft_step(distillation_set.path, base_model.path, model.path, cfg, tracker=step_tracker(mlflow_experiment))
    model.metadata.update({"step": "sft", "train_examples": int(result.metrics["sft/train_examples"])})
    for name, value in result.metrics.items():
        metrics.log_metric(name.replace("/", "_"), float(value))
