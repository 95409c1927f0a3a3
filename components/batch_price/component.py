"""KFP component: nightly batch pricing of every active SKU (all logic in ``aigp.serving.batch``)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def batch_price(
    feature_data: Input[Dataset],
    decisions: Output[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
    date: str,
    store_dir: str = "",
    online_store: str = "sqlite",
    redis_connection_string: str = "",
    predictor_url: str = "",
    serve_local: bool = False,
    work_dir: str = "",
    config_yaml: str = "",
    overwrite: bool = False,
) -> int:
    """Price every SKU active on ``date`` (ISO) with its experiment group's registered model version
    (``aigp.serving.batch.run_batch_pricing``, what ``aigp price batch`` runs). Returns the decisions logged.

    ``feature_data``: what ``materialize_features`` outputs (source tables; its online store in
    ``store_dir``, default ``<feature_data>/store``, or Redis with ``online_store="redis"``). Each group's
    predictor: ``predictor_url`` (an OpenAI API root, for every group), else the config's arms, else
    ``$AIGP_PREDICTOR_URL``; ``serve_local`` serves each group's registered model in the step instead.
    Model versions come from the registry (``MLFLOW_TRACKING_URI``). ``redis_connection_string``: "" =
    ``$REDIS_CONNECTION_STRING`` (on a cluster the Secret ``aigp-redis``). ``work_dir``: where the run's journal
    lives (a persistent volume or bucket mount lets a retried step resume; "" = next to the outputs).
    ``config_yaml``: a ``BatchPricingConfig`` as YAML text (experiment arms, predictor settings; "" = defaults).

    ``decisions``: a folder holding ``decisions-<date>.parquet`` (the ``aigp.decisions`` log monitoring reads);
    ``report``: the decision report (features, rationale and decision per SKU, next to yesterday's).
    """
    import datetime as dt
    import os
    import shutil
    from pathlib import Path

    import yaml

    from aigp.serving.batch import BatchPricingConfig, run_batch_pricing

    try:
        day = dt.date.fromisoformat(date)
    except ValueError as exc:
        raise ValueError(f"date={date!r}: expected a calendar date YYYY-MM-DD ({exc})") from None
    source = Path(feature_data.path)
    out_dir = Path(work_dir) if work_dir else Path(decisions.path).parent / "batch_price_work"
    updates = {"out_dir": out_dir, "feature_data": source,
               "feature_state_dir": Path(store_dir) if store_dir else source / "store", "online_store": online_store}
    redis = redis_connection_string or os.environ.get("REDIS_CONNECTION_STRING", "")
    if redis:
        updates["redis_connection_string"] = redis
    config = BatchPricingConfig.build(**(yaml.safe_load(config_yaml) or {})).with_updates(**updates)
    urls = {group: predictor_url for group in config.pricing.experiment.arms} if predictor_url else None
    summary = run_batch_pricing(day, config, predictor_urls=urls, serve_local=serve_local, overwrite=overwrite,
                                progress=False)

    target = Path(decisions.path)
    target.mkdir(parents=True, exist_ok=True)
    log_file = Path(summary.paths.decisions)
    shutil.copyfile(log_file, target / log_file.name)
    shutil.copyfile(summary.paths.report, report.path)
    decisions.metadata.update({"date": summary.date, "model_name": summary.model_name,
                               "experiment": summary.experiment, "run_dir": summary.paths.run_dir,
                               "model_versions": {g: a.model_version for g, a in summary.groups.items()}})
    figures = {"skus": summary.skus, "priced": summary.priced, "unpriced": summary.unpriced,
               "model_actions": summary.model_actions, "projected": summary.projected,
               "fallbacks": summary.fallbacks, "retried": summary.retried,
               "fallback_rate": summary.fallbacks / summary.priced if summary.priced else 0.0,
               "skus_per_second": summary.skus_per_second or 0.0}
    for name, value in figures.items():
        metrics.log_metric(name, float(value))
    for group, g in summary.groups.items():
        metrics.log_metric(f"{group}_priced", float(g.priced))
        metrics.log_metric(f"{group}_fallbacks", float(g.fallbacks))
    return int(summary.priced)
