"""KFP component: M [ACT_ONLY] candidate actions per prompt from the policy (all logic in ``aigp.align``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def sample_candidates(
    policy_model: Input[Model],
    prompt_rows: Input[Dataset],
    candidates: Output[Dataset],
    metrics: Output[Metrics],
    config_yaml: str = "",
    n_prompts: int = 0,
    n_candidates: int = 0,
    mlflow_experiment: str = "",
) -> None:
    """Sample candidates with ``policy_model`` for rows of ``prompt_rows`` (a market log folder or a
    prompt-rows parquet); ``candidates`` gets rows.parquet, candidates.parquet and manifest.json.

    ``config_yaml``: a SamplingConfig as YAML ("" = defaults); ``n_prompts`` / ``n_candidates`` > 0 override
    the rows sampled and M; ``mlflow_experiment`` non-empty logs to MLflow.
    """
    import yaml

    from aigp.align.sampling import SamplingConfig
    from aigp.align.steps import sample_step
    from aigp.registry.tracking import step_tracker

    cfg = SamplingConfig.build(**(yaml.safe_load(config_yaml) or {}))
    if n_prompts > 0:
        cfg = cfg.with_updates(n_prompts=n_prompts)
    if n_candidates > 0:
        cfg = cfg.with_updates(n_candidates=n_candidates)
    result = sample_step(policy_model.path, prompt_rows.path, candidates.path, cfg,
                         tracker=step_tracker(mlflow_experiment))
    candidates.metadata.update({"prompts": len(result.rows), "kept": int(result.candidates["kept"].sum())})
    for name, value in result.metrics.items():
        metrics.log_metric(name.replace("/", "_"), float(value))
