"""`aigp features ...`: ingest market logs, apply the Feast repo, materialize, build training sets.

    aigp features ingest --logs runs/market            # logs -> feature_repo/data/sources (parquet)
    aigp features apply                                 # register entity, views, services
    aigp features materialize --start 2026-03-01 --end 2026-03-08        # [start, end) -> online store
    aigp features training-set --start 2026-03-01 --end 2026-03-08 --service ltve_training --out train.parquet

Defaults are those of ``feature_repo/feature_store.yaml`` (SQLite store under ``feature_repo/data``,
sources in ``$AIGP_FEATURE_DATA`` or ``feature_repo/data/sources``), so ``feast`` run in ``feature_repo/``
sees the same store. Feast itself is imported only inside the commands (it lives in ``feature_repo/``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from aigp.cli._common import console, user_errors

if TYPE_CHECKING:
    from aigp.cli.demo_context import DemoContext

app = typer.Typer(no_args_is_help=True, help="Feature store: ingest logs, apply, materialize, training sets.")

FeatureData = Annotated[Path | None, typer.Option(help="source tables (default: $AIGP_FEATURE_DATA or "
                                                       "feature_repo/data/sources)")]
StateDir = Annotated[Path | None, typer.Option(help="registry and SQLite online store (default: feature_repo/data)")]
OnlineStore = Annotated[str, typer.Option(help="online store: sqlite or redis")]
Redis = Annotated[str, typer.Option(help="Redis connection string (host:port[,password=...])")]
Day = Annotated[dt.datetime, typer.Option(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"])]


def _store(feature_data: Path | None, state_dir: Path | None, online_store: str = "sqlite",
           redis: str = "127.0.0.1:6379") -> Any:
    from aigp.feature_repo.store import open_store

    fields: dict[str, Any] = {"online_store": online_store, "redis_connection_string": redis}
    if feature_data is not None:
        fields["feature_data"] = feature_data
    if state_dir is not None:
        fields["state_dir"] = state_dir
    return open_store(**fields)


@app.command()
@user_errors
def ingest(
    logs: Annotated[Path, typer.Option(help="market log directory (`aigp simulate`)")],
    feature_data: FeatureData = None,
    overwrite: Annotated[bool, typer.Option(help="replace existing feature data")] = True,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Validate a market log and write the feature-store source tables (atomically)."""
    from aigp.feature_repo.definitions import feature_data_dir
    from aigp.ingest import ingest_logs

    out = feature_data or Path(feature_data_dir())
    report = ingest_logs(logs, out, overwrite=overwrite, progress=progress)
    table = Table(title=f"feature data: {report.out_dir}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in report.rows.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(f"{report.skus:,} SKUs ingested in {report.seconds} s")


@app.command()
@user_errors
def apply(feature_data: FeatureData = None, state_dir: StateDir = None, online_store: OnlineStore = "sqlite",
          redis: Redis = "127.0.0.1:6379") -> None:
    """Register the entity, feature views and feature services (and create the online tables)."""
    store = _store(feature_data, state_dir, online_store, redis)
    store.apply()
    console.print(f"applied {len(store.definitions.views)} feature views and {len(store.definitions.services)} "
                  f"feature services to {store.config.state_dir / 'registry.db'}")


@app.command()
@user_errors
def materialize(start: Day, end: Day, feature_data: FeatureData = None, state_dir: StateDir = None,
                online_store: OnlineStore = "sqlite", redis: Redis = "127.0.0.1:6379",
                progress: Annotated[bool, typer.Option(help="show a progress bar")] = True) -> None:
    """Load rows stamped in [start, end) into the online store, one bounded date window at a time."""
    store = _store(feature_data, state_dir, online_store, redis)
    report = store.materialize(start, end, progress=progress)
    table = Table(title=f"materialized [{report.start:%Y-%m-%d %H:%M}, {report.end:%Y-%m-%d %H:%M}) into "
                        f"{store.config.online_store}")
    for column in ("view", "windows", "rows read", "rows written", "seconds"):
        table.add_column(column, justify="left" if column == "view" else "right")
    for v in report.views:
        table.add_row(v.view, str(v.windows), f"{v.rows_read:,}", f"{v.rows_written:,}", f"{v.seconds:.2f}")
    console.print(table)


@app.command("training-set")
@user_errors
def training_set(start: Day, end: Day,
                 service: Annotated[str, typer.Option(help="feature service: ltve_training, llm_prompt or "
                                                           "monitoring")],
                 out: Annotated[Path, typer.Option(help="parquet file to write")],
                 feature_data: FeatureData = None, state_dir: StateDir = None) -> None:
    """Point-in-time training set of every decision in [start, end) with the service's features."""
    from aigp.io import write_parquet

    frame = _store(feature_data, state_dir).training_set(start, end, service)
    write_parquet(out, frame)
    console.print(f"{len(frame):,} decisions x {frame.shape[1]} columns -> {out}")


def stage_features(ctx: DemoContext) -> str:
    """`aigp demo` stage: ingest the demo's market log, apply, materialize its last week into SQLite, build
    the LTVE training set and look up the SKUs priced on the last day."""
    import pandas as pd

    from aigp.feature_repo.store import open_store
    from aigp.ingest import DECISION_EVENTS, ingest_logs, read_manifest
    from aigp.io import write_parquet

    root = ctx.root
    report = ingest_logs(ctx.market.path, root / "features", overwrite=True, progress=True)
    store = open_store(feature_data=root / "features", state_dir=root / "feature_store")
    store.apply()
    days = read_manifest(root / "features")["tables"][DECISION_EVENTS]
    end = pd.Timestamp(days["last_day"]) + pd.Timedelta(days=1)
    materialized = store.materialize(end - pd.Timedelta(days=7), end, progress=True)
    train = store.training_set(pd.Timestamp(days["first_day"]), end, "ltve_training")
    write_parquet(root / "ltve_training_set.parquet", train)
    last = pd.read_parquet(root / "features" / "pricing_history.parquet",
                           filters=[("event_timestamp", "==", (end - pd.Timedelta(days=1)).tz_localize("UTC"))])
    online = store.online_features(last["sku_id"].tolist(), "llm_prompt")
    ctx.feature_store = store
    return (f"{report.rows[DECISION_EVENTS]:,} decisions ingested; {materialized.rows_written:,} rows materialized "
            f"in {materialized.seconds:.1f} s; training set {len(train):,} x {train.shape[1]} -> "
            f"{root / 'ltve_training_set.parquet'}; online: {len(online):,} SKUs priced on the last day, "
            f"{int(online['features_missing'].sum())} with missing features")
