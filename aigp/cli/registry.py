"""`aigp registry ...`: list, inspect, approve, reject, promote and roll back model versions.

Every change is recorded in the registry's audit log with who (``--by``, default $USER), when and why
(``--reason``, required for approve / reject / rollback). ``promote`` and ``rollback`` also render the KServe
InferenceService of the version that now serves and apply it when a cluster is configured (otherwise they
write the YAML and say so).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from aigp.cli._common import console, user_errors
from aigp.pricing import DEFAULT_MODEL_NAME

app = typer.Typer(no_args_is_help=True, help="Model registry: candidates, approval, promotion, rollback, audit log.")

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="registered model name")]
ByOpt = Annotated[str | None, typer.Option("--by", help="who makes the change (default: $USER)")]
STATE_STYLE = {"candidate": "yellow", "approved": "cyan", "rejected": "red", "production": "green",
               "rolled_back": "magenta"}


def _registry() -> Any:
    from aigp.registry.model_registry import ModelRegistry

    return ModelRegistry()


def _out() -> Any:
    from rich.console import Console

    return Console()


def _state(value: str) -> str:
    return f"[{STATE_STYLE.get(value, 'white')}]{_plain(value)}[/]"


def _plain(value: object) -> str:
    """Text from the registry as the terminal should show it: control and format characters (ESC, BEL, newline,
    bidi overrides) written as escapes, Rich markup shown literally."""
    import unicodedata

    from rich.markup import escape

    text = "".join(c if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp") else repr(c)[1:-1]
                   if ord(c) < 0x10000 and repr(c)[1:-1] != c else f"\\u{ord(c):04x}" for c in str(value))
    return escape(text)


@app.command("list")
@user_errors
def list_versions(
    model: Annotated[str | None, typer.Option("--model", "-m", help="only this model (default: all)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Every registered version: state, gate, aliases, data window, code version, key metrics."""
    versions = _registry().list_versions(model)
    if as_json:
        typer.echo(json.dumps([_summary(v) for v in versions], indent=2))
        return
    table = Table(title="model registry", show_lines=False)
    # key columns never shrink below their longest value; the rest folds on narrow terminals
    for column, min_width in (("model", 0), ("v", 0), ("state", 11), ("gate", 6), ("aliases", 10), ("data window", 0),
                              ("code", 0), ("pipeline run", 0), ("metrics", 0)):
        table.add_column(column, min_width=min_width or None, overflow="fold")
    for v in versions:
        metrics = ", ".join(f"{k}={val:.4g}" for k, val in list(v.metrics.items())[:4])
        table.add_row(_plain(v.name), str(v.version), _state(v.state.value),
                      "[green]passed[/]" if v.gate_status == "passed" else f"[red]{_plain(v.gate_status)}[/]",
                      ", ".join(v.aliases), _plain(f"{v.data_window[0]}..{v.data_window[1]}"),
                      _plain(v.code_version[:8]), _plain(v.pipeline_run_id or "-"), _plain(metrics))
    _out().print(table if versions else "no versions registered")


@app.command("show")
@user_errors
def show(
    version: Annotated[str, typer.Argument(help="version number, or champion / challenger")],
    model: ModelOpt = DEFAULT_MODEL_NAME,
) -> None:
    """One version in full: provenance, gate report, metrics, storage URI and its audit trail."""
    registry = _registry()
    from aigp.registry.model_registry import ALIASES

    if version in ALIASES:
        aliases = {a: v for v in registry.list_versions(model) for a in v.aliases}
        if version not in aliases:
            raise ValueError(f"model {model!r} has no {version}")
        info = aliases[version]
    else:
        info = registry.get(model, version)
    out = _out()
    facts = Table(title=f"{_plain(info.name)} v{info.version}", show_header=False)
    facts.add_column("field", style="bold")
    facts.add_column("value", overflow="fold")
    facts.add_row("state", _state(info.state.value))
    for key, value in (("aliases", ", ".join(info.aliases) or "-"),
                       ("gate", info.gate_status), ("gate reasons", "; ".join(info.gate_reasons) or "-"),
                       ("gate report (HTML)", info.gate_report_html), ("gate report (JSON)", info.gate_report_json),
                       ("data window", f"{info.data_window[0]} .. {info.data_window[1]}"),
                       ("code version", info.code_version), ("pipeline run", info.pipeline_run_id or "-"),
                       ("MLflow run", info.run_id), ("storage URI", info.storage_uri),
                       ("created (UTC)", info.created_at)):
        facts.add_row(key, _plain(value))
    out.print(facts)
    metrics = Table(title="metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for key, value in sorted(info.metrics.items()):
        metrics.add_row(_plain(key), f"{value:.6g}")
    out.print(metrics)
    out.print(_audit_table(info.audit, f"audit trail of v{info.version}"))


@app.command("audit")
@user_errors
def audit(model: ModelOpt = DEFAULT_MODEL_NAME) -> None:
    """The model's whole audit log (every transition of every version) and a completeness check."""
    registry = _registry()
    out = _out()
    out.print(_audit_table(registry.audit_log(model), f"audit log of {model} ({registry.audit.where(model)})"))
    problems = registry.verify_audit(model)
    if problems:
        for problem in problems:
            console.print(f"[bold red]audit problem:[/] {_plain(problem)}")
        raise typer.Exit(code=1)
    out.print("[green]audit log complete: file and MLflow tags agree, no gaps, states replay[/]")


@app.command("approve")
@user_errors
def approve(
    version: Annotated[str, typer.Argument(help="version number")],
    reason: Annotated[str, typer.Option("--reason", help="why (recorded in the audit log)")],
    model: ModelOpt = DEFAULT_MODEL_NAME,
    by: ByOpt = None,
) -> None:
    """candidate -> approved. Refused unless the version passed the offline gate."""
    info = _registry().approve(model, version, by=by, reason=reason)
    _out().print(f"approved {info.name} v{info.version} (by {_plain(info.audit[-1].by)}: "
                 f"{_plain(info.audit[-1].reason)})")


@app.command("reject")
@user_errors
def reject(
    version: Annotated[str, typer.Argument(help="version number")],
    reason: Annotated[str, typer.Option("--reason", help="why (recorded in the audit log)")],
    model: ModelOpt = DEFAULT_MODEL_NAME,
    by: ByOpt = None,
) -> None:
    """-> rejected (final: a rejected version can never be promoted)."""
    info = _registry().reject(model, version, by=by, reason=reason)
    _out().print(f"rejected {info.name} v{info.version} (by {_plain(info.audit[-1].by)}: "
                 f"{_plain(info.audit[-1].reason)})")


DeployOpts = dict[str, Any]


def _deploy(model: str, version: int, storage_uri: str, opts: DeployOpts, alias: str = "champion") -> None:
    from aigp.serving.inference_service import LLMServingConfig, deploy, publish_model, render_inference_service

    uri = storage_uri
    if opts["publish_to"]:
        uri = publish_model(storage_uri, opts["publish_to"], model, version)
        _out().print(f"published {model} v{version} to {uri}")
    cfg = LLMServingConfig.from_yaml(opts["serving_config"]) if opts["serving_config"] else LLMServingConfig()
    updates = {k: opts[k] for k in ("max_model_len", "gpus", "lora_adapter", "namespace") if opts[k] is not None}
    if alias == "challenger":  # the A/B challenger is a second predictor beside the champion's
        updates["name"] = f"{cfg.name}-challenger"
    cfg = cfg.with_updates(**updates)
    manifest = render_inference_service(uri, cfg, model_name=model, model_version=version)
    out = opts["out"] or Path("runs/registry") / f"inferenceservice-{model}-v{version}-{alias}.yaml"
    result = deploy(manifest, out, use_cluster=opts["apply"], namespace=opts["namespace"])
    _out().print(result.message)


def _deploy_options(out: Path | None, apply: bool | None, namespace: str | None, max_model_len: int | None,
                    gpus: int | None, lora_adapter: str | None, publish_to: str | None,
                    serving_config: Path | None) -> DeployOpts:
    return {"out": out, "apply": apply, "namespace": namespace, "max_model_len": max_model_len, "gpus": gpus,
            "lora_adapter": lora_adapter, "publish_to": publish_to, "serving_config": serving_config}


OutOpt = Annotated[Path | None, typer.Option("--out", help="where to write the InferenceService YAML")]
ApplyOpt = Annotated[bool | None, typer.Option("--apply/--no-apply",
                                               help="apply to the cluster (default: when one is configured)")]
NamespaceOpt = Annotated[str | None, typer.Option("--namespace", help="Kubernetes namespace")]
MaxLenOpt = Annotated[int | None, typer.Option("--max-model-len", help="vLLM --max-model-len")]
GpusOpt = Annotated[int | None, typer.Option("--gpus", help="GPUs per predictor replica")]
LoraOpt = Annotated[str | None, typer.Option("--lora-adapter", help="serve this adapter folder of the model dir too")]
PublishOpt = Annotated[str | None, typer.Option("--publish-to", help="copy the model to s3://bucket/prefix first")]
ServingCfgOpt = Annotated[Path | None, typer.Option("--serving-config", help="LLMServingConfig YAML")]


@app.command("promote")
@user_errors
def promote(
    version: Annotated[str, typer.Argument(help="version number")],
    model: ModelOpt = DEFAULT_MODEL_NAME,
    alias: Annotated[str, typer.Option("--alias", help="champion (serves traffic) or challenger (A/B)")] = "champion",
    reason: Annotated[str, typer.Option("--reason", help="why (recorded in the audit log)")] = "",
    by: ByOpt = None,
    out: OutOpt = None, apply: ApplyOpt = None, namespace: NamespaceOpt = None, max_model_len: MaxLenOpt = None,
    gpus: GpusOpt = None, lora_adapter: LoraOpt = None, publish_to: PublishOpt = None,
    serving_config: ServingCfgOpt = None,
) -> None:
    """approved -> production under an alias; renders (and applies) the version's InferenceService."""
    info = _registry().promote(model, version, by=by, reason=reason, alias=alias)
    _out().print(f"promoted {info.name} v{info.version} to {alias} (by {_plain(info.audit[-1].by)})")
    _deploy(model, info.version, info.storage_uri,
            _deploy_options(out, apply, namespace, max_model_len, gpus, lora_adapter, publish_to, serving_config),
            alias)


@app.command("rollback")
@user_errors
def rollback(
    reason: Annotated[str, typer.Option("--reason", help="why (recorded in the audit log)")],
    model: ModelOpt = DEFAULT_MODEL_NAME,
    by: ByOpt = None,
    out: OutOpt = None, apply: ApplyOpt = None, namespace: NamespaceOpt = None, max_model_len: MaxLenOpt = None,
    gpus: GpusOpt = None, lora_adapter: LoraOpt = None, publish_to: PublishOpt = None,
    serving_config: ServingCfgOpt = None,
) -> None:
    """Move champion back to the previous production version and redeploy it."""
    old, new = _registry().rollback(model, by=by, reason=reason)
    _out().print(f"rolled back {model}: v{old.version} -> v{new.version} is the champion again")
    _deploy(model, new.version, new.storage_uri,
            _deploy_options(out, apply, namespace, max_model_len, gpus, lora_adapter, publish_to, serving_config))


def _audit_table(events: Any, title: str) -> Table:
    table = Table(title=title)
    for column in ("#", "when (UTC)", "version", "action", "from", "to", "by", "reason"):
        table.add_column(column, overflow="fold")
    for e in events:
        table.add_row(str(e.seq), _plain(e.at[:19]), f"v{e.version}", _plain(e.action), _plain(e.from_state or "-"),
                      _state(e.to_state), _plain(e.by), _plain(e.reason))
    return table


def _summary(v: Any) -> dict[str, Any]:
    return {"model": v.name, "version": v.version, "state": v.state.value, "gate": v.gate_status,
            "aliases": list(v.aliases), "data_window": list(v.data_window), "code_version": v.code_version,
            "pipeline_run_id": v.pipeline_run_id, "metrics": v.metrics, "storage_uri": v.storage_uri,
            "gate_report_html": v.gate_report_html, "gate_report_json": v.gate_report_json,
            "created_at": v.created_at}
