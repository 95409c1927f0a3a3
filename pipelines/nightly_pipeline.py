"""The nightly pricing pipeline: materialize the day's features -> batch price every active SKU with its
A/B group's registered model -> monitor the decisions against the training window.

Registered as a KFP recurring run (``manifests/base/jobs/nightly-recurring-run.yaml``, 02:00 UTC) from the
compiled IR ``pipelines/nightly_pipeline.yaml``; that job passes no parameters, so every default here is
the production one (Redis online store, the predictor and registry from ``aigp-config``). Locally:
``aigp pipeline run --local --pipeline nightly --param market_logs_uri=... --param date=...``.
"""

from aigp.components.batch_price.component import batch_price
from aigp.components.materialize_features.component import materialize_features
from aigp.components.monitor_pricing.component import monitor_pricing
from aigp.components.nightly_window.component import nightly_window
from kfp import dsl

PIPELINE_NAME = "aigp-nightly"


@dsl.pipeline(name=PIPELINE_NAME, description="AIGP nightly pricing: materialize features, batch price, monitor")
def nightly_pipeline(
    market_logs_uri: str = "s3://aigp-decisions/market-logs",
    reference_uri: str = "s3://aigp-feast/sources/decisions",
    date: str = "",
    online_days: int = 1,
    online_store: str = "redis",
    redis_connection_string: str = "redis-master:6379",
    predictor_url: str = "",
    serve_local: bool = False,
    batch_config_yaml: str = "",
    monitor_config_yaml: str = "",
    monitor_window_days: int = 1,
    pushgateway: str = "",
) -> int:
    """``market_logs_uri``: the decision logs the features are built from; ``reference_uri``: the training
    window's decisions monitoring compares with; ``date``: the day priced ("" = today, UTC). Returns the
    number of monitoring alerts firing."""
    window = nightly_window(date=date, online_days=online_days).set_caching_options(False)
    logs = dsl.importer(artifact_uri=market_logs_uri, artifact_class=dsl.Dataset, reimport=True)
    features = materialize_features(market_logs=logs.output, start=window.outputs["online_start"],
                                    end=window.outputs["online_end"], online_store=online_store,
                                    redis_connection_string=redis_connection_string)
    features.set_caching_options(False)
    priced = batch_price(feature_data=features.outputs["feature_data"], date=window.outputs["date"],
                         online_store=online_store, redis_connection_string=redis_connection_string,
                         predictor_url=predictor_url, serve_local=serve_local, config_yaml=batch_config_yaml)
    priced.set_caching_options(False)
    reference = dsl.importer(artifact_uri=reference_uri, artifact_class=dsl.Dataset, reimport=False)
    monitor = monitor_pricing(reference=reference.output, decisions=priced.outputs["decisions"],
                              window_days=monitor_window_days, end_date=window.outputs["date"],
                              config_yaml=monitor_config_yaml, pushgateway=pushgateway)
    monitor.set_caching_options(False)
    return monitor.outputs["Output"]
