"""The nightly pricing pipeline: materialize the day's features -> batch price every active SKU with its
A/B group's registered model -> monitor the decisions against the training window.

Registered as a KFP recurring run (``manifests/base/jobs/nightly-recurring-run.yaml``, 02:00 UTC) from the
compiled IR ``pipelines/nightly_pipeline.yaml``; that job passes no parameters, so every default here is
the production one: the Redis online store of ``manifests/`` (Service ``redis``; host, port and password in
the Secret ``aigp-redis``, key ``connection-string``), the predictor and registry from ``aigp-config``
(``pipelines/platform.py`` gives each step what it needs). Locally:
``aigp pipeline run --local --pipeline nightly --param market_logs_uri=... --param date=...``.
"""

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

from aigp.components._image import DEFAULT_IMAGES, Images
from aigp.components.batch_price.component import batch_price
from aigp.components.materialize_features.component import materialize_features
from aigp.components.monitor_pricing.component import monitor_pricing
from aigp.components.nightly_window.component import nightly_window
from aigp.pipelines.platform import building_with, on_cluster

PIPELINE_NAME = "aigp-nightly"
DESCRIPTION = "AIGP nightly pricing: materialize features, batch price, monitor"


def _nightly_pipeline(
    market_logs_uri: str = "s3://aigp-decisions/market-logs",
    reference_uri: str = "s3://aigp-feast/sources/decisions",
    date: str = "",
    online_days: int = 1,
    online_store: str = "redis",
    redis_connection_string: str = "",
    predictor_url: str = "",
    serve_local: bool = False,
    batch_config_yaml: str = "",
    monitor_config_yaml: str = "",
    monitor_window_days: int = 1,
    pushgateway: str = "",
) -> int:
    """``market_logs_uri``: the decision logs the features are built from; ``reference_uri``: the training
    window's decisions monitoring compares with; ``date``: the day priced ("" = today, UTC);
    ``redis_connection_string``: "" = ``$REDIS_CONNECTION_STRING`` (the Secret ``aigp-redis``); ``pushgateway``:
    "" = ``$AIGP_PUSHGATEWAY_URL`` (the ConfigMap ``aigp-monitoring``). Returns the
    number of monitoring alerts firing."""
    window = on_cluster(nightly_window(date=date, online_days=online_days)).set_caching_options(False)
    logs = dsl.importer(artifact_uri=market_logs_uri, artifact_class=dsl.Dataset, reimport=True)
    features = on_cluster(materialize_features(market_logs=logs.output, start=window.outputs["online_start"],
                                               end=window.outputs["online_end"], online_store=online_store,
                                               redis_connection_string=redis_connection_string), redis=True)
    features.set_caching_options(False)
    priced = on_cluster(batch_price(feature_data=features.outputs["feature_data"], date=window.outputs["date"],
                                    online_store=online_store, redis_connection_string=redis_connection_string,
                                    predictor_url=predictor_url, serve_local=serve_local,
                                    config_yaml=batch_config_yaml), s3=True, redis=True)
    priced.set_caching_options(False)
    reference = dsl.importer(artifact_uri=reference_uri, artifact_class=dsl.Dataset, reimport=False)
    monitor = on_cluster(monitor_pricing(reference=reference.output, decisions=priced.outputs["decisions"],
                                         window_days=monitor_window_days, end_date=window.outputs["date"],
                                         config_yaml=monitor_config_yaml, pushgateway=pushgateway), s3=True,
                         pushes_metrics=True)
    monitor.set_caching_options(False)
    return monitor.outputs["Output"]


def build(images: Images = DEFAULT_IMAGES) -> GraphComponent:
    """The nightly pipeline with its steps in ``images``."""
    with building_with(images):
        return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(_nightly_pipeline)


nightly_pipeline = build()
