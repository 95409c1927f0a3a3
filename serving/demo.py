"""The `make demo` serving stage: serve the promoted model locally and price the next day of the simulated market.

"Next day" is the latest day of the demo's market log: the feature store holds each SKU's state at decision
time for it (built from the days before), and the SKUs still in their first 14 days on that day are priced by
the nightly batch job (:func:`aigp.serving.batch.run_batch_pricing`) exactly as in production, with the
registry's champion served by the local predictor (``serving/predictor.py``) over the OpenAI-compatible API.

When the registry has no champion yet (the pipeline that trains, gates and promotes one has not run), the
stage says so loudly and serves the untrained base model of ``aigp.llm.model_factory`` instead, labelled
``base-untrained`` in every output; it promotes nothing. An untrained model writes noise, so expect its
decisions to be fallbacks that hold yesterday's discount; its completion budget is cut to keep the stage short.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

UNTRAINED_LABEL = "base-untrained"
TRAINED_MAX_TOKENS = 768  # a full rationale + JSON action of the small model (~500 tokens) with room to spare
UNTRAINED_MAX_TOKENS = 48  # noise either way: enough to show it, cheap enough to keep the demo short


def _feature_store(ctx: dict[str, Any], log: Callable[[str], Any]) -> tuple[Path, Path]:
    """(feature data, state dir) of the demo's feature store; built from the market log if no stage made one."""
    store = ctx.get("feature_store")
    if store is not None:
        return Path(store.config.feature_data), Path(store.config.state_dir)
    from aigp.feature_repo.store import open_store

    from aigp.ingest import ingest_logs

    root = Path(ctx["root"])
    log("no feature store stage ran: ingesting the market log into a feature store for pricing")
    ingest_logs(ctx["logs"].path, root / "features", overwrite=True, progress=True)
    open_store(feature_data=root / "features", state_dir=root / "feature_store").apply()
    return root / "features", root / "feature_store"


def _last_day(feature_data: Path) -> dt.date:
    from aigp.ingest import DECISION_EVENTS, read_manifest

    return dt.date.fromisoformat(read_manifest(feature_data)["tables"][DECISION_EVENTS]["last_day"])


def _champion(model_name: str, log: Callable[[str], Any]) -> tuple[str, str] | None:
    """(version, storage URI) of the registry's champion, or None (said out loud)."""
    try:
        from aigp.registry.model_registry import ModelRegistry

        version, uri = ModelRegistry().resolve(model_name, "champion")
    except Exception as exc:  # no registry, no model, no champion: all mean "nothing promoted yet"
        log(f"[bold yellow]no promoted model:[/] {exc}")
        return None
    return str(version), str(uri)


def _base_model(ctx: dict[str, Any], log: Callable[[str], Any]) -> Path:
    if ctx.get("base_model"):
        return Path(ctx["base_model"])
    from aigp.llm.model_factory import BaseModelConfig, build_base_model
    from aigp.llm.prompt import PromptConfig, build_prompt
    from aigp.llm.rows import load_prompt_rows
    from aigp.llm.teacher import KnowledgeBaseTeacher

    teacher, corpus = KnowledgeBaseTeacher(), []
    for row in load_prompt_rows(ctx["logs"].path, n=100, seed=int(ctx.get("seed", 0)) + 1).to_dict("records"):
        prompt = build_prompt(row, PromptConfig())
        corpus += [prompt.system, prompt.user, teacher.respond(prompt).text]
    log("building the small base model (no base model stage ran)")
    return build_base_model(Path(ctx["root"]) / "base_model", corpus, BaseModelConfig(size="small"), overwrite=True)


def prompt_budget(model_dir: str | Path, max_tokens: int) -> int | None:
    """The prompt token budget a model needs: its factory metadata's, else what its context leaves after the
    completion budget (None for long-context models)."""
    from aigp import storage
    from aigp.llm.model_factory import model_metadata

    spec = str(model_dir)
    path = storage.resolve_local(spec) if spec.startswith(("file://", "s3://")) else Path(spec)
    budget = (model_metadata(path).get("architecture") or {}).get("prompt_budget")
    if budget:
        return int(budget)
    context = json.loads((Path(path) / "config.json").read_text()).get("max_position_embeddings", 32768)
    return None if context >= 16384 else max(64, int(context) - max_tokens - 32)


def price_next_day(ctx: dict[str, Any], log: Callable[[str], Any] = print) -> dict[str, Any]:
    from aigp.serving.batch import BatchPricingConfig, run_batch_pricing

    from aigp.llm.prompt import PromptConfig
    from aigp.pricing import PredictorSettings, PricingConfig

    feature_data, state_dir = _feature_store(ctx, log)
    date = ctx.get("pricing_date") or _last_day(feature_data)
    from aigp.feature_repo.store import open_store

    store = open_store(feature_data=feature_data, state_dir=state_dir)
    store.materialize(date, date + dt.timedelta(days=1))  # idempotent: the state of the day priced
    store.close()

    model_name = ctx.get("model_name", "aigp-pricing")
    champion = _champion(model_name, log)
    if champion is not None:
        version, uri = champion
        label, max_tokens = f"{model_name} v{version} (champion)", TRAINED_MAX_TOKENS
        resolver = None  # the registry
        log(f"serving the promoted model {label} from {uri}")
    else:
        path = _base_model(ctx, log)
        uri, version = str(path), UNTRAINED_LABEL
        label, max_tokens = f"the UNTRAINED base model {path}", UNTRAINED_MAX_TOKENS
        log("[bold yellow]" + "!" * 100 + "[/]")
        log(f"[bold yellow]NO PROMOTED MODEL IN THE REGISTRY: pricing with {label}.[/] It is not trained, gated, "
            f"approved or registered; its decisions are labelled model_version={UNTRAINED_LABEL!r}. Its output is "
            f"noise, so expect fallbacks (yesterday's discount held); completions are capped at {max_tokens} "
            "tokens to keep the demo short. Run the training pipeline and promote a version to price with it.")
        log("[bold yellow]" + "!" * 100 + "[/]")

        def resolver(name: str, ref: str) -> tuple[str, str]:
            return version, uri

    predictor = PredictorSettings(max_tokens=max_tokens, request_size=16, concurrency=2, timeout_s=900)
    config = BatchPricingConfig(
        pricing=PricingConfig(model_name=model_name, predictor=predictor,
                              prompt=PromptConfig(max_prompt_tokens=prompt_budget(uri, max_tokens))),
        out_dir=Path(ctx["root"]) / "pricing", feature_data=feature_data, feature_state_dir=state_dir,
        report_max_skus=2000)
    summary = run_batch_pricing(date, config, resolver=resolver, serve_local=True,
                                serve_options={"max_batch_size": 32}, overwrite=True, progress=True)
    summary["model_label"] = label
    ctx["pricing_summary"] = summary
    ctx["pricing_decisions"] = summary["paths"]["decisions"]
    ctx["decision_report"] = summary["paths"]["report"]
    log(f"decision report: [bold]{summary['paths']['report']}[/]")
    return summary
