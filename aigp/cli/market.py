"""`aigp simulate`: write a simulated market log."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aigp.cli._common import console, user_errors
from aigp.market.config import MarketConfig


@user_errors
def simulate(
    out: Annotated[Path, typer.Option(help="log directory to write")] = Path("runs/market"),
    skus: Annotated[int | None, typer.Option(help="number of SKUs launched")] = None,
    launch_days: Annotated[int | None, typer.Option(help="days over which SKUs launch")] = None,
    start_date: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="first launch day")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    config: Annotated[Path | None, typer.Option(help="MarketConfig YAML; flags override it")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing log directory")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Simulate new SKUs priced by the logged behaviour mix (60% expert, 40% diverse) and write the logs."""
    from aigp.market.logs import simulate_to_directory

    base = MarketConfig.from_yaml(config) if config else MarketConfig()
    overrides = {k: v for k, v in {"n_skus": skus, "launch_days": launch_days, "seed": seed,
                                   "start_date": start_date.date() if start_date else None}.items() if v is not None}
    cfg = base.with_updates(**overrides)
    logs = simulate_to_directory(cfg, out, overwrite=overwrite, progress=progress)
    table = Table(title=f"market log: {logs.path}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in logs.manifest["rows"].items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    console.print(f"simulated in {logs.manifest['seconds']} s")
