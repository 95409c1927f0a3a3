"""KFP component: train the Long-Term Value Estimator on a training set (all logic in ``aigp.ltve``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def train_ltve(
    training_set: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    config_yaml: str = "",
    steps: int = 0,
    mlflow_experiment: str = "",
) -> None:
    """Fit the LTVE critic on the training window of ``training_set`` (a parquet file or folder with the
    ltve_training columns) and write the artifact folder to ``model``.

    ``config_yaml``: an LTVETrainConfig as YAML text ("" = defaults); ``steps`` > 0 overrides the critic's
    update count; ``mlflow_experiment`` non-empty logs params and metrics to that MLflow experiment.
    """
    import contextlib

    import pandas as pd
    import yaml

    from aigp.ltve.artifact import save_model
    from aigp.ltve.train import LTVETrainConfig, train_ltve

    cfg = LTVETrainConfig.build(**(yaml.safe_load(config_yaml) or {}))
    if steps > 0:
        cfg = cfg.with_updates(critic={**cfg.critic, "steps": steps})
    frame = pd.read_parquet(training_set.path)
    run: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    log = None
    if mlflow_experiment:
        from aigp.registry.tracking import log_metrics, tracked_run

        run = tracked_run(mlflow_experiment, f"train-{cfg.kind}", {"config": cfg.model_dump_json()})

        def log(step, values):
            log_metrics(values, step=step)
    with run:
        result = train_ltve(frame, cfg, callback=log)
        save_model(result.model, model.path)
        if log is not None:
            log(None, result.model.metrics)
    model.metadata.update({"kind": cfg.kind, "n_steps": result.model.config.n_steps,
                           "cutoff": result.model.info["split"]["cutoff"]})
    for name, value in result.model.metrics.items():
        metrics.log_metric(name.replace("/", "_"), float(value))
