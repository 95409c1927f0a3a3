"""KFP component: LTVE-ranked preference pairs from sampled candidates (all logic in ``aigp.align``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def build_pairs(
    candidates: Input[Dataset],
    ltve_model: Input[Model],
    pairs: Output[Dataset],
    metrics: Output[Metrics],
    config_yaml: str = "",
    mlflow_experiment: str = "",
) -> None:
    """Score every candidate with ``ltve_model`` in one batched call and keep (a+, a-) with
    Q(a+) - Q(a-) >= delta_q and |a+ - a-| >= delta_a; ``pairs`` gets pairs.jsonl (TRL prompt/chosen/rejected),
    pairs.parquet and manifest.json.

    ``config_yaml``: a PairsConfig as YAML ("" = defaults); ``mlflow_experiment`` non-empty logs to MLflow.
    """
    import yaml

    from aigp.align.pairs import PairsConfig
    from aigp.align.steps import pairs_step
    from aigp.registry.tracking import step_tracker

    cfg = PairsConfig.build(**(yaml.safe_load(config_yaml) or {}))
    result = pairs_step(candidates.path, ltve_model.path, pairs.path, cfg, tracker=step_tracker(mlflow_experiment))
    pairs.metadata.update({"pairs": len(result.records)})
    for name, value in result.metrics.items():
        metrics.log_metric(name.replace("/", "_"), float(value))
