"""KFP component: judge teacher generations and keep the perfect ones (all logic in ``aigp.distillation.distill``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def judge_filter(
    generations: Input[Dataset],
    distillation_set: Output[Dataset],
    metrics: Output[Metrics],
    config_yaml: str = "",
    mlflow_experiment: str = "",
) -> float:
    """Score every generation on the paper's four dimensions (rule checks, plus the LLM judge endpoint of the
    config's ``judge_endpoint`` when set), keep 5/5 on all four with an action in A_safe, and write the
    distillation set folder (distill.jsonl, rejected.jsonl, manifest.json) to ``distillation_set``.
    Returns the keep rate. ``mlflow_experiment`` non-empty logs the metrics to that MLflow experiment.
    """
    import contextlib

    import yaml

    from aigp.distillation.distill import DistillConfig, read_jsonl, write_distillation_set
    from aigp.distillation.distill import judge_filter as filter_generations

    cfg = DistillConfig.build(**(yaml.safe_load(config_yaml) or {}))
    result = filter_generations(read_jsonl(generations.path), cfg)
    write_distillation_set(distillation_set.path, result, config=cfg)
    values = result.metrics()
    run: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if mlflow_experiment:
        from aigp.registry.tracking import log_metrics, tracked_run

        run = tracked_run(mlflow_experiment, "judge-filter", {"config": cfg.model_dump_json()})
    with run:
        if mlflow_experiment:
            log_metrics(values)
    distillation_set.metadata.update({"records": len(result.kept), "keep_rate": result.report.keep_rate})
    for name, value in values.items():
        metrics.log_metric(name, float(value))
    return float(result.report.keep_rate)
