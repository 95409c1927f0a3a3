"""The aigp command line. Each area registers its commands here from its own module."""

from __future__ import annotations

import typer

from aigp.cli import ab, demo, evaluate, features, llm, ltve, market, monitor, price, registry, train
from aigp.cli import pipeline as pipeline_commands

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="AIGP pricing platform: simulate, build features, train, gate, serve and monitor.")
app.command("simulate")(market.simulate)
app.add_typer(ab.app, name="ab")
app.add_typer(features.app, name="features")
app.add_typer(ltve.app, name="ltve")
app.command("distill")(llm.distill)
app.add_typer(registry.app, name="registry")
app.add_typer(monitor.app, name="monitor")
app.add_typer(price.app, name="price")
app.add_typer(train.app, name="train")
app.command("demo")(demo.demo)
app.command("evaluate")(evaluate.evaluate)
app.add_typer(pipeline_commands.app, name="pipeline")


def main() -> None:
    app()
