"""KFP component: market logs -> feature-store source tables -> online store (logic in ``aigp.feature_repo.store``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def materialize_features(
    market_logs: Input[Dataset],
    start: str,
    end: str,
    feature_data: Output[Dataset],
    metrics: Output[Metrics],
    store_dir: str = "",
    online_store: str = "sqlite",
    redis_connection_string: str = "",
    max_window_rows: int = 250_000,
) -> int:
    """Validate and ingest ``market_logs`` into ``feature_data`` (one parquet table per feature view plus the
    decision events), register the Feast definitions and materialize the rows stamped in ``[start, end)``
    (ISO dates) into the online store, one bounded date window at a time. ``store_dir`` holds the registry
    and the SQLite store (default: ``<feature_data>/store``); ``online_store="redis"`` writes to
    ``redis_connection_string`` instead ("" = ``$REDIS_CONNECTION_STRING``, on a cluster the Secret
    ``aigp-redis``; else ``127.0.0.1:6379``). Returns the rows written to the online store.
    """
    import datetime as dt
    import os
    from pathlib import Path

    from aigp.feature_repo.store import FeatureStoreConfig, materialize_step

    state = Path(store_dir) if store_dir else Path(feature_data.path) / "store"
    config = FeatureStoreConfig.build(feature_data=Path(feature_data.path), state_dir=state,
                                      online_store=online_store,
                                      redis_connection_string=redis_connection_string
                                      or os.environ.get("REDIS_CONNECTION_STRING") or "127.0.0.1:6379",
                                      max_window_rows=max_window_rows)
    values = materialize_step(market_logs.path, feature_data.path, dt.date.fromisoformat(start),
                              dt.date.fromisoformat(end), config)
    feature_data.metadata.update({"skus": values["skus"], "decisions": values["decisions"],
                                  "online_store": online_store, "window": f"[{start}, {end})"})
    for name, value in values.items():
        metrics.log_metric(name, float(value))
    return int(values["rows_written"])
