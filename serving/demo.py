"""The `make demo` serving stage: serve the promoted model locally and price the next day of the simulated market.

"Next day" is the latest day of the demo's market log: the feature store holds each SKU's state at decision
time for it (built from the days before, materialized into the online store). The registry's champion is
served by the local predictor (``serving/predictor.py``, OpenAI-compatible routes) and the pricing
transformer runs as the InferenceService runs it (``python -m aigp.serving.transformer``); the SKUs in their
first 14 days are priced by POSTing them to the transformer's v1 endpoint over HTTP. The responses, with
the features the transformer read, become the decisions log and the decision report, as the nightly job
writes them (``<root>/pricing/decisions/`` and ``<root>/pricing/runs/<date>/report.html``).

When the registry has no champion yet (the pipeline that trains, gates and promotes one has not run), the
stage says so loudly and serves the untrained base model of ``aigp.llm.model_factory`` instead, labelled
``base-untrained`` in every output; it promotes nothing. An untrained model writes noise, so expect its
decisions to be fallbacks that hold yesterday's discount; its completion budget is cut to keep the stage short.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aigp.cli.demo_context import DemoContext
    from aigp.serving.batch import BatchSummary

UNTRAINED_LABEL = "base-untrained"
TRAINED_MAX_TOKENS = 768  # a full rationale + JSON action of the small model (~500 tokens) with room to spare
UNTRAINED_MAX_TOKENS = 16  # noise either way: enough to show it, cheap enough to keep the demo short
# SKUs priced in the demo (a spread sample of the active ones; `aigp price batch` prices all): on 2 CPU cores the
# small model writes ~10 tokens/s per sequence, batched 16-32 wide, and the untrained one is asked twice (retry).
DEMO_MAX_SKUS = {"trained": 32, "untrained": 32}
REQUEST_SKUS = 64  # SKUs per v1 request to the transformer


def _feature_store(ctx: DemoContext, log: Callable[[str], Any]) -> tuple[Path, Path]:
    """(feature data, state dir) of the demo's feature store; built from the market log if no stage made one."""
    store = ctx.feature_store
    if store is not None:
        return Path(store.config.feature_data), Path(store.config.state_dir)
    from aigp.feature_repo.store import open_store
    from aigp.ingest import ingest_logs

    root = Path(ctx.root)
    log("no feature store stage ran: ingesting the market log into a feature store for pricing")
    ingest_logs(ctx.market.path, root / "features", overwrite=True, progress=True)
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


def _base_model(ctx: DemoContext, log: Callable[[str], Any]) -> Path:
    if ctx.base_model:
        return Path(ctx.base_model)
    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.llm.model_factory import BaseModelConfig, build_base_model
    from aigp.llm.prompt import PromptConfig, build_prompt
    from aigp.llm.rows import load_prompt_rows

    teacher, corpus = KnowledgeBaseTeacher(), []
    for row in load_prompt_rows(ctx.market.path, n=100, seed=int(ctx.seed) + 1).to_dict("records"):
        prompt = build_prompt(row, PromptConfig())
        corpus += [prompt.system, prompt.user, teacher.respond(prompt).text]
    log("building the small base model (no base model stage ran)")
    return build_base_model(Path(ctx.root) / "base_model", corpus, BaseModelConfig(size="small"), overwrite=True)


def prompt_budget(model_dir: str | Path, max_tokens: int) -> int | None:
    """The prompt token budget a model needs: its factory metadata's, else what its context leaves after the
    completion budget (None for long-context models)."""
    from aigp.llm.model_factory import model_metadata
    from aigp.registry import storage

    path = Path(storage.localize(model_dir))
    budget = (model_metadata(path).get("architecture") or {}).get("prompt_budget")
    if budget:
        return int(budget)
    context = json.loads((Path(path) / "config.json").read_text()).get("max_position_embeddings", 32768)
    return None if context >= 16384 else max(64, int(context) - max_tokens - 32)


def _sample(skus: list[int], n: int, seed: int) -> list[int]:
    if len(skus) <= n:
        return skus
    import numpy as np

    return sorted(np.random.default_rng(seed).choice(skus, size=n, replace=False).tolist())


def price_next_day(ctx: DemoContext, log: Callable[[str], Any] = print, *,
                   max_skus: int | None = None) -> BatchSummary:
    """Serve the champion (or, said loudly, the base model), price the day through the transformer over HTTP,
    write the decisions log and the decision report; returns the run's summary."""
    import httpx
    from tqdm.auto import tqdm

    from aigp.feature_repo.store import open_store
    from aigp.io import write_parquet
    from aigp.llm.prompt import PromptConfig
    from aigp.pricing import Decision, PredictorSettings, PricingConfig, decision_records, decisions_log
    from aigp.serving.batch import RATIONALE_COLUMNS, REPORT, SUMMARY, RunPaths, summarize
    from aigp.serving.decision_report import write_decision_report
    from aigp.serving.features import EmbeddedFeatureSource, active_skus
    from aigp.serving.predictor import serve_local_predictor
    from aigp.serving.transformer import TransformerConfig, serve_local_transformer

    started = time.perf_counter()
    feature_data, state_dir = _feature_store(ctx, log)
    date = ctx.pricing_date or _last_day(feature_data)
    store = open_store(feature_data=feature_data, state_dir=state_dir)
    store.materialize(date, date + dt.timedelta(days=1))  # idempotent: the state of the day priced
    store.close()

    model_name = ctx.model_name
    champion = _champion(model_name, log)
    pinned = None
    prompt_fields: dict[str, Any] = {}
    if champion is not None:
        version, uri = champion
        label, max_tokens = f"{model_name} v{version} (champion)", TRAINED_MAX_TOKENS
        log(f"serving the promoted model {label} from {uri}")
        if ctx.serving_prompt:  # the demo pipeline's champion: served in the mode its gate measured
            prompt_fields, max_tokens = dict(ctx.serving_prompt), int(ctx.serving_max_tokens or 32)
            log(f"[bold yellow]DEMO:[/] the champion was aligned and gated with prompt {prompt_fields}; it is served "
                f"the same way with completions capped at {max_tokens} tokens (production serves full reasoning)")
    else:
        path = _base_model(ctx, log)
        uri, version = str(path), UNTRAINED_LABEL
        pinned = version
        label, max_tokens = f"the UNTRAINED base model {path}", UNTRAINED_MAX_TOKENS
        log("[bold yellow]" + "!" * 100 + "[/]")
        log(f"[bold yellow]NO PROMOTED MODEL IN THE REGISTRY: pricing with {label}.[/] It is not trained, gated, "
            f"approved or registered; its decisions are labelled model_version={UNTRAINED_LABEL!r}. Its output is "
            f"noise, so expect fallbacks (yesterday's discount held); completions are capped at {max_tokens} "
            "tokens to keep the demo short. Run the training pipeline and promote a version to price with it.")
        log("[bold yellow]" + "!" * 100 + "[/]")

    active = active_skus(feature_data, date)["sku_id"].tolist()
    limit = max_skus or DEMO_MAX_SKUS["untrained" if pinned else "trained"]
    skus = _sample(active, limit, int(ctx.seed))
    if len(skus) < len(active):
        log(f"pricing a sample of {len(skus)} of the {len(active)} SKUs active on {date} to keep the demo short "
            f"(`aigp price batch --date {date}` prices every one)")
    paths = RunPaths(Path(ctx.root) / "pricing", date)
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    pricing = PricingConfig(model_name=model_name,
                            predictor=PredictorSettings(max_tokens=max_tokens, request_size=16, concurrency=2,
                                                        timeout_s=900),
                            prompt=PromptConfig(**{**prompt_fields,
                                                   "max_prompt_tokens": prompt_budget(uri, max_tokens)}))
    predictions: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with serve_local_predictor(uri, model_name, max_batch_size=32, log_path=paths.run_dir / "predictor.log") as url:
        config = TransformerConfig(pricing=pricing, predictor_url=url, feature_data=feature_data,
                                   feature_state_dir=state_dir, tokenizer=uri, registry_refresh_s=0)
        with serve_local_transformer(config, model_name, pinned_version=pinned,
                                     log_path=paths.run_dir / "transformer.log") as base:
            ready = time.perf_counter()  # SKUs/s counts pricing, not starting the two servers (seconds["start"])
            log(f"pricing transformer {base}/v1/models/{model_name}:predict -> LLM predictor {url}")
            with httpx.Client(base_url=base, timeout=900) as client, tqdm(total=len(skus), desc="pricing",
                                                                          unit="SKU") as bar:
                for lo in range(0, len(skus), REQUEST_SKUS):
                    response = client.post(f"/v1/models/{model_name}:predict",
                                           json={"instances": skus[lo:lo + REQUEST_SKUS], "date": date.isoformat()})
                    if response.status_code != 200:
                        raise RuntimeError(f"the transformer answered HTTP {response.status_code}: "
                                           f"{response.text[:500]} (log: {paths.run_dir / 'transformer.log'})")
                    predictions += response.json()["predictions"]
                    bar.update(len(skus[lo:lo + REQUEST_SKUS]))
            priced = time.perf_counter()
    seconds = {"start": ready - t0, "pricing": priced - ready}

    decisions = [Decision.from_response(p) for p in predictions]
    source = EmbeddedFeatureSource.open(feature_data=feature_data, state_dir=state_dir)
    try:
        rows = source.lookup(skus)  # the features the transformer read
    finally:
        source.close()
    records = decision_records(decisions, rows, date=date, decided_at=dt.datetime.now(dt.UTC))
    write_parquet(paths.decisions, decisions_log(records, experiment=pricing.experiment.salt, model_name=model_name))
    write_parquet(paths.run_dir / "rationales.parquet", records[RATIONALE_COLUMNS])
    plan = {"date": date.isoformat(), "model_name": model_name, "experiment": pricing.experiment.salt, "chunks": 0,
            "arms": {g: {"model_version": str(version), "model_ref": a.model_ref}
                     for g, a in pricing.experiment.arms.items()}}
    seconds["total"] = time.perf_counter() - started
    summary = summarize(records, plan, paths, seconds, resumed=False, chunks_priced=0, skus_priced=len(skus))
    summary.model_label = label
    summary.active_skus = len(active)
    write_decision_report(paths.run_dir / REPORT, records, summary.model_dump())
    summary.write(paths.run_dir / SUMMARY)
    ctx.pricing_summary = summary
    ctx.pricing_decisions = Path(summary.paths.decisions)
    ctx.decision_report = Path(summary.paths.report)
    log(f"decision report: [bold]{summary.paths.report}[/]")
    return summary
