"""`aigp train sft | sample | pairs | dpo`: the alignment steps (paper §3.2, §3.4) from the command line.

Each command takes a YAML of its step config (``--config``), flags for the common knobs, writes its outputs
and ``metrics.json``, and logs to MLflow with ``--track`` (experiment ``aigp-align``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from aigp.cli._common import console, user_errors

app = typer.Typer(no_args_is_help=True, help="Alignment: LoRA SFT, [ACT_ONLY] candidates, LTVE-ranked pairs, DPO.")

EXPERIMENT = "aigp-align"


def _config(cls: Any, path: Path | None, **overrides: Any) -> Any:
    cfg = cls.from_yaml(path) if path else cls()
    return cfg.with_updates(**{k: v for k, v in overrides.items() if v is not None})


def _optim(cfg: Any, **overrides: Any) -> Any:
    values = {k: v for k, v in overrides.items() if v is not None}
    return cfg.with_updates(optim=cfg.optim.with_updates(**values)) if values else cfg


def _show(title: str, metrics: Mapping[str, float], out: Path) -> None:
    from aigp.io import write_json

    if out.is_dir():
        write_json(out / "metrics.json", dict(metrics))
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:,.4g}")
    console.print(table)


Track = Annotated[bool, typer.Option(help=f"log parameters and metrics to MLflow (experiment {EXPERIMENT})")]


@app.command("sft")
@user_errors
def sft(
    distill: Annotated[Path, typer.Option(help="distillation set (directory with distill.jsonl, or the file)")],
    base_model: Annotated[str, typer.Option(help="base model: directory, s3:// URI (cached) or HF id")],
    out: Annotated[Path, typer.Option(help="output model directory (merged model; adapter in adapter/)")],
    config: Annotated[Path | None, typer.Option(help="SFTStepConfig YAML; flags override it")] = None,
    epochs: Annotated[float | None, typer.Option(help="passes over the data")] = None,
    max_steps: Annotated[int | None, typer.Option(help="> 0 caps optimiser steps")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="peak learning rate (cosine schedule)")] = None,
    track: Track = False,
) -> None:
    """LoRA SFT of the base model on the judged teacher responses."""
    from aigp.align.sft import SFTStepConfig
    from aigp.align.steps import sft_step
    from aigp.registry.storage import localize
    from aigp.registry.tracking import step_tracker

    cfg = _optim(_config(SFTStepConfig, config), epochs=epochs, max_steps=max_steps, learning_rate=learning_rate)
    result = sft_step(distill, localize(base_model), out, cfg, tracker=step_tracker(EXPERIMENT if track else None))
    _show(f"SFT -> {result.model_dir}", result.metrics, result.model_dir)


@app.command("sample")
@user_errors
def sample(
    policy_model: Annotated[str, typer.Option(help="policy model directory (the SFT model)")],
    rows: Annotated[Path, typer.Option("--logs", "--rows", help="market log directory or prompt-rows parquet")],
    out: Annotated[Path, typer.Option(help="candidates directory")],
    config: Annotated[Path | None, typer.Option(help="SamplingConfig YAML; flags override it")] = None,
    n: Annotated[int | None, typer.Option("--n", help="prompt rows to sample")] = None,
    m: Annotated[int | None, typer.Option("--m", help="candidates per prompt")] = None,
    endpoint_url: Annotated[str | None, typer.Option(help="OpenAI-compatible API root to sample from instead")] = None,
    endpoint_model: Annotated[str | None, typer.Option(help="served model name at --endpoint-url")] = None,
    track: Track = False,
) -> None:
    """Sample M [ACT_ONLY] candidate actions per prompt, parse them with Ψ, keep those inside A_safe."""
    from aigp.align.sampling import SamplingConfig
    from aigp.align.steps import sample_step
    from aigp.registry.tracking import step_tracker

    if (endpoint_url is None) != (endpoint_model is None):
        raise ValueError("--endpoint-url and --endpoint-model go together")
    endpoint = {"base_url": endpoint_url, "model": endpoint_model} if endpoint_url else None
    cfg = _config(SamplingConfig, config, n_prompts=n, n_candidates=m, endpoint=endpoint)
    result = sample_step(policy_model, rows, out, cfg, tracker=step_tracker(EXPERIMENT if track else None))
    _show(f"candidates -> {out}", result.metrics, out)


@app.command("pairs")
@user_errors
def pairs(
    candidates: Annotated[Path, typer.Option(help="candidates directory (aigp train sample)")],
    ltve: Annotated[Path, typer.Option(help="LTVE artifact directory (aigp ltve train)")],
    out: Annotated[Path, typer.Option(help="pairs directory")],
    config: Annotated[Path | None, typer.Option(help="PairsConfig YAML; flags override it")] = None,
    delta_q: Annotated[float | None, typer.Option(help="ΔQ: minimum Q(a+) - Q(a-)")] = None,
    delta_a: Annotated[float | None, typer.Option(help="Δa: minimum |a+ - a-|")] = None,
    track: Track = False,
) -> None:
    """Score every candidate with the LTVE and keep unambiguous (a+, a-) pairs."""
    from aigp.align.pairs import PairsConfig
    from aigp.align.steps import pairs_step
    from aigp.registry.tracking import step_tracker

    cfg = _config(PairsConfig, config, delta_q=delta_q, delta_a=delta_a)
    result = pairs_step(candidates, ltve, out, cfg, tracker=step_tracker(EXPERIMENT if track else None))
    _show(f"pairs -> {out}", result.metrics, out)


@app.command("dpo")
@user_errors
def dpo(
    pairs: Annotated[Path, typer.Option(help="pairs directory (aigp train pairs)")],
    policy_model: Annotated[str, typer.Option(help="policy to optimise; also the frozen reference")],
    out: Annotated[Path, typer.Option(help="output model directory (merged model; adapter in adapter/)")],
    config: Annotated[Path | None, typer.Option(help="DPOStepConfig YAML; flags override it")] = None,
    beta: Annotated[float | None, typer.Option(help="DPO β")] = None,
    epochs: Annotated[float | None, typer.Option(help="passes over the pairs")] = None,
    max_steps: Annotated[int | None, typer.Option(help="> 0 caps optimiser steps")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="peak learning rate")] = None,
    track: Track = False,
) -> None:
    """DPO on the pairs with the input policy as the frozen reference (LoRA, no second model copy)."""
    from aigp.align.dpo import DPOStepConfig
    from aigp.align.steps import dpo_step
    from aigp.registry.tracking import step_tracker

    cfg = _optim(_config(DPOStepConfig, config, beta=beta), epochs=epochs, max_steps=max_steps,
                 learning_rate=learning_rate)
    result = dpo_step(pairs, policy_model, out, cfg, tracker=step_tracker(EXPERIMENT if track else None))
    _show(f"DPO -> {result.model_dir}", result.metrics, result.model_dir)
