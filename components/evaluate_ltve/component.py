"""KFP component: evaluate an LTVE artifact on the held-out cohort (all logic in ``aigp.ltve.evaluate``)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def evaluate_ltve(
    model: Input[Model],
    evaluation_set: Input[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
    evaluation: Output[Artifact],
    market_logs: str = "",
    config_yaml: str = "",
    mlflow_experiment: str = "",
) -> None:
    """MAE, EAMA, CDA (cold-start and boundary slices), Q deciles vs realised outcomes and, when
    ``market_logs`` names the simulator log the set came from, the Monte-Carlo ground-truth check.

    ``evaluation`` gets the metrics as JSON, for the offline gate's report (how far its Avg Q can be trusted).
    ``evaluation_set``: a parquet file or folder with the ltve_training columns covering SKUs launched after
    the model's training cutoff; ``config_yaml``: an EvaluationConfig as YAML text ("" = defaults).
    """
    import contextlib
    import json
    import math
    from pathlib import Path

    import pandas as pd
    import yaml

    from aigp.ltve.artifact import load_model
    from aigp.ltve.evaluate import EvaluationConfig, evaluate_model

    cfg = EvaluationConfig.build(**(yaml.safe_load(config_yaml) or {}))
    critic = load_model(model.path)
    frame = pd.read_parquet(evaluation_set.path)
    run: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if mlflow_experiment:
        from aigp.registry.tracking import tracked_run

        run = tracked_run(mlflow_experiment, f"evaluate-{critic.kind}", {"config": cfg.model_dump_json()})
    with run:
        result = evaluate_model(critic, frame, cfg, log_dir=market_logs or None)
        if mlflow_experiment:
            from aigp.registry.tracking import log_metrics

            log_metrics(result.metrics)
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(result.html(), encoding="utf-8")
    Path(evaluation.path).parent.mkdir(parents=True, exist_ok=True)
    Path(evaluation.path).write_text(json.dumps({k: v for k, v in result.metrics.items() if math.isfinite(v)}),
                                     encoding="utf-8")
    for name, value in result.metrics.items():
        if math.isfinite(value):
            metrics.log_metric(name, float(value))
