"""`aigp pipeline run --local | compile | submit`: the Kubeflow pipelines from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from aigp.cli._common import console, user_errors
from aigp.components._image import REGISTRY, TAG, Images

app = typer.Typer(no_args_is_help=True, help="Kubeflow pipelines: run locally (kfp.local), compile, submit.")

PipelineName = Annotated[str, typer.Option("--pipeline", "-p", help="training | nightly")]
Params = Annotated[list[str] | None, typer.Option("--param", help="KEY=VALUE pipeline parameter (repeatable)")]
Registry = Annotated[str, typer.Option(help="image registry the steps pull from: <registry>/aigp/platform:<tag>, "
                                            "GPU steps <registry>/aigp/platform-cuda:<tag> (make image)")]
Tag = Annotated[str, typer.Option(help="image tag of both images")]


@app.command("run")
@user_errors
def run(
    local: Annotated[bool, typer.Option("--local", help="run under kfp.local (SubprocessRunner, this venv)")] = False,
    pipeline: PipelineName = "training",
    logs: Annotated[Path | None, typer.Option(help="market log directory (training: sets the data windows)")] = None,
    size: Annotated[str, typer.Option(help="training preset: tiny (tests) | small (demo)")] = "tiny",
    root: Annotated[Path, typer.Option(help="pipeline root: every task's outputs")] = Path("runs/pipeline"),
    param: Params = None,
    cache: Annotated[bool, typer.Option(help="reuse outputs of identical earlier tasks")] = True,
) -> None:
    """Run a pipeline locally, the same pipeline a cluster runs. Training: the whole log is the data window,
    its last week goes to the online store; --param overrides any pipeline parameter."""
    from aigp.pipelines.runner import PRESETS, latest_output, local_parameters, parse_parameters, run_local

    if not local:
        raise ValueError("only --local runs start here; on a cluster use `aigp pipeline submit --host URL`")
    overrides = parse_parameters(pipeline, list(param or []))
    if pipeline == "training":
        if size not in PRESETS:
            raise ValueError(f"--size {size!r}: expected one of {sorted(PRESETS)}")
        if logs is None and "market_logs_uri" not in overrides:
            raise ValueError("--logs DIR (a market log directory, `aigp simulate`) is required for training")
        preset = PRESETS[size].arguments()
        arguments: dict[str, Any] = local_parameters(logs, **{**preset, **overrides}) if logs else {
            **preset, **overrides}
    else:
        arguments = overrides
    console.print(f"running the {pipeline} pipeline locally under {root}")
    try:
        run_local(pipeline, arguments, root, caching=cache)
    finally:
        report = latest_output(root, "offline-gate*", "report.html") if pipeline == "training" else None
        if report is not None:
            console.print(f"gate report: {report}")
    console.print(f"[green]{pipeline} pipeline finished[/]")


@app.command("compile")
@user_errors
def compile_(
    out: Annotated[Path | None, typer.Option(help="write the IR YAML here (default: next to the sources)")] = None,
    check: Annotated[bool, typer.Option("--check", help="fail when a committed IR YAML is stale")] = False,
    registry: Registry = REGISTRY,
    tag: Tag = TAG,
) -> None:
    """Compile the pipelines to KFP IR YAML (committed next to pipelines/*.py, in the default images; use --out
    with another --registry/--tag)."""
    from aigp.pipelines.runner import compile_pipelines, stale_ir

    if check:
        stale = stale_ir()
        for path, reason in stale.items():
            typer.echo(f"stale: {path}: {reason}; run `aigp pipeline compile` and commit", err=True)
        if stale:
            raise typer.Exit(code=1)
        console.print("compiled pipelines are up to date (pipeline spec compared; the kfp version is not)",
                      soft_wrap=True)
        return
    for name, path in compile_pipelines(out, images=Images.of(registry, tag)).items():
        console.print(f"{name}: {path}")


@app.command("submit")
@user_errors
def submit(
    host: Annotated[str, typer.Option(help="Kubeflow Pipelines API, e.g. http://ml-pipeline.kubeflow:8888")],
    pipeline: PipelineName = "training",
    experiment: Annotated[str | None, typer.Option(help="experiment (default aigp-<pipeline>)")] = None,
    run_name: Annotated[str | None, typer.Option(help="run name (default aigp-<pipeline>-<UTC time>)")] = None,
    param: Params = None,
    package: Annotated[Path | None, typer.Option(help="compiled IR YAML (default: the committed one)")] = None,
    namespace: Annotated[str | None, typer.Option(help="Kubeflow profile namespace (multi-user)")] = None,
    registry: Registry = REGISTRY,
    tag: Tag = TAG,
) -> None:
    """Create a run of a compiled pipeline on a Kubeflow Pipelines endpoint (another --registry/--tag than the
    defaults: the pipeline is compiled for those images first)."""
    from aigp.pipelines.runner import parse_parameters
    from aigp.pipelines.runner import submit as submit_run

    result = submit_run(pipeline, host=host, experiment=experiment, run_name=run_name,
                        parameters=parse_parameters(pipeline, list(param or [])), package=package, namespace=namespace,
                        images=Images.of(registry, tag))
    typer.echo(json.dumps(result))
