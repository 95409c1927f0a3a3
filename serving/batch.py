"""Nightly batch pricing: every SKU active on a day, priced by its experiment group's model version.

    summary = run_batch_pricing(dt.date(2026, 3, 16), BatchPricingConfig.build(out_dir="runs/pricing"))

One run per day priced, in ``<out_dir>/runs/<date>/``:

1. **plan** (``plan.parquet`` then ``plan.json``, each written atomically; the JSON is the marker): the SKUs
   active on the day (launched at most ``horizon_days - 1`` days before, from the SKU attribute table of the
   feature data), each SKU's experiment group (salted hash, ``aigp.ab.partition``), each group's model version
   from the registry (resolved once, so a promotion during the night never mixes versions within a run), and
   the SKUs cut into journal chunks of ``chunk_size`` (one group per chunk);
2. **pricing**: chunks not yet in the journal are priced with :class:`aigp.pricing.PricingEngine` (features
   from the online store, ``concurrency`` requests in flight against each group's predictor, progress bar);
   each finished chunk is written to ``journal/chunk-NNNNNN.parquet`` atomically (temporary file, fsync,
   rename), so a kill loses at most the chunks in flight, which the next run prices again;
3. **finalisation** (idempotent): the journal is read back, checked to hold exactly one decision per
   planned SKU, and turned into the outputs, each written atomically: the decisions log
   ``<out_dir>/decisions/decisions-<date>.parquet`` (the :mod:`aigp.decisions` format monitoring reads; that
   folder holds nothing else), ``rationales.parquet`` (every SKU's rationale, raw output, fallback detail and
   the text it was shown), the decision report ``report.html`` and, last, ``summary.json``.

Re-running a finished day returns its summary (``overwrite=True`` prices it again from scratch); re-running an
interrupted one resumes it. ``serve_local=True`` serves each group's registered model with the local
predictor (``serving/predictor.py``) for the run; otherwise each group's predictor URL comes from
``predictor_urls``, the config or ``$AIGP_PREDICTOR_URL`` (KServe / vLLM in the cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from aigp.config import StrictConfig
from aigp.io import write_json, write_parquet
from aigp.pricing import (
    Arm,
    PricingConfig,
    PricingEngine,
    Resolver,
    decision_records,
    decisions_log,
    resolve_arms,
)
from aigp.serving.decision_report import write_decision_report
from aigp.serving.features import EmbeddedFeatureSource, active_skus

log = logging.getLogger(__name__)

PLAN_JSON = "plan.json"
PLAN_TABLE = "plan.parquet"
JOURNAL = "journal"
RATIONALES = "rationales.parquet"
REPORT = "report.html"
SUMMARY = "summary.json"
RATIONALE_COLUMNS = ["sku_id", "group", "model_version", "priced", "prev_discount", "new_discount",
                     "discount_change", "proposed_change", "projected", "fallback", "fallback_reason", "attempts",
                     "detail", "rationale", "raw_output", "missing_features", "prompt_trimmed"]


class BatchPricingConfig(StrictConfig):
    """One nightly run: what to price with, where the features are, where outputs go."""

    pricing: PricingConfig = Field(default_factory=lambda: PricingConfig())
    out_dir: Path = Field(Path("runs/pricing"), description="decisions/ and runs/<date>/ go here")
    horizon_days: int = Field(14, ge=1, le=60, description="a SKU is priced during its first horizon_days days")
    chunk_size: int = Field(32, ge=1, le=4096, description="SKUs per journal chunk (the unit a kill can lose)")
    feature_data: Path | None = Field(None, description="source tables (default: $AIGP_FEATURE_DATA or "
                                                        "feature_repo/data/sources)")
    feature_state_dir: Path | None = Field(None, description="registry + SQLite online store "
                                                             "(default: feature_repo/data)")
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection_string: str | None = None
    tokenizer: str | None = Field(None, description="model directory whose tokenizer counts the prompt budget "
                                                    "(default: the served model's, when served locally)")
    report_max_skus: int = Field(2000, ge=1, description="SKUs shown in full in the report (the files hold all)")

    def fingerprint(self) -> str:
        """What must not change between a run and its resumption."""
        keep = {"pricing": self.pricing.model_dump(mode="json"), "horizon_days": self.horizon_days,
                "chunk_size": self.chunk_size}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RunPaths:
    out_dir: Path
    date: dt.date

    @property
    def run_dir(self) -> Path:
        return self.out_dir / "runs" / self.date.isoformat()

    @property
    def journal(self) -> Path:
        return self.run_dir / JOURNAL

    @property
    def decisions(self) -> Path:
        return self.out_dir / "decisions" / f"decisions-{self.date.isoformat()}.parquet"

    def chunk(self, index: int) -> Path:
        return self.journal / f"chunk-{index:06d}.parquet"

    def done_chunks(self) -> set[int]:
        if not self.journal.is_dir():
            return set()
        return {int(p.stem.split("-")[1]) for p in self.journal.glob("chunk-*.parquet")}


class RunConflict(ValueError):
    """The run directory holds a run made differently; resuming it would mix decisions."""


# ---------------------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------------------
def _feature_data(config: BatchPricingConfig) -> Path:
    if config.feature_data is not None:
        return config.feature_data
    from aigp.feature_repo.definitions import feature_data_dir

    return Path(feature_data_dir())


def make_plan(date: dt.date, config: BatchPricingConfig, resolver: Resolver) -> tuple[dict[str, Any], pd.DataFrame]:
    skus = active_skus(_feature_data(config), date, config.horizon_days)
    groups = config.pricing.experiment.groups(skus["sku_id"].to_numpy())
    table = skus.assign(group=pd.array(groups, dtype="string"))
    order = list(config.pricing.experiment.arms)
    table["_order"] = table["group"].map({g: i for i, g in enumerate(order)})
    table = table.sort_values(["_order", "sku_id"], kind="stable").drop(columns="_order").reset_index(drop=True)
    chunk = np.zeros(len(table), dtype=np.int64)
    next_chunk = 0
    for group in order:  # chunks never mix groups: one chunk, one predictor
        rows = np.flatnonzero(table["group"].to_numpy(dtype=object) == group)
        chunk[rows] = next_chunk + np.arange(len(rows)) // config.chunk_size
        next_chunk += -(-len(rows) // config.chunk_size)
    table["chunk"] = chunk
    arms = {}
    for group, arm in config.pricing.experiment.arms.items():
        version, uri = resolver(config.pricing.model_name, arm.model_ref)
        arms[group] = {"model_ref": arm.model_ref, "model_version": str(version), "storage_uri": str(uri),
                       "share": arm.share, "skus": int((table["group"] == group).sum())}
    plan = {"date": date.isoformat(), "fingerprint": config.fingerprint(), "model_name": config.pricing.model_name,
            "experiment": config.pricing.experiment.salt, "skus": len(table), "chunks": int(next_chunk),
            "arms": arms, "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    return plan, table


def load_or_make_plan(paths: RunPaths, config: BatchPricingConfig, resolver: Resolver) -> tuple[dict, pd.DataFrame,
                                                                                                  bool]:
    """(plan, table, resumed). A plan made with another config is a :class:`RunConflict`."""
    plan_file = paths.run_dir / PLAN_JSON
    if plan_file.exists():
        plan = json.loads(plan_file.read_text())
        if plan["fingerprint"] != config.fingerprint():
            raise RunConflict(f"{paths.run_dir} holds a run planned with another configuration (fingerprint "
                              f"{plan['fingerprint']}, now {config.fingerprint()}); resume it with the same "
                              "configuration, or pass overwrite=True (--overwrite) to price the day again")
        return plan, pd.read_parquet(paths.run_dir / PLAN_TABLE), True
    if paths.done_chunks():
        raise RunConflict(f"{paths.journal} holds decisions but {plan_file} is missing; pass overwrite=True "
                          "(--overwrite) to price the day again")
    plan, table = make_plan(paths.date, config, resolver)
    write_parquet(paths.run_dir / PLAN_TABLE, table)
    write_json(plan_file, plan)  # last: the plan exists once this file does
    return plan, table, False


# ---------------------------------------------------------------------------------------------------------
# pricing the chunks
# ---------------------------------------------------------------------------------------------------------
def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="pricing", unit="SKU")


async def _price_chunks(paths: RunPaths, plan: dict, table: pd.DataFrame, config: BatchPricingConfig,
                        arms: dict[str, Arm], source: EmbeddedFeatureSource, count_tokens: Any,
                        progress: bool, transport: Any = None) -> tuple[int, int]:
    """Price the chunks missing from the journal; returns (chunks, SKUs) priced."""
    done = paths.done_chunks()
    todo = sorted(set(table["chunk"].tolist()) - done)
    if not todo:
        return 0, 0
    by_chunk = {k: frame for k, frame in table.groupby("chunk", sort=True) if k in set(todo)}
    engine = PricingEngine(config.pricing, arms, count_tokens=count_tokens, transport=transport)
    bar = _progress(len(table), int(len(table) - sum(len(f) for f in by_chunk.values())), progress)
    date = dt.date.fromisoformat(plan["date"])
    work: asyncio.Queue[int] = asyncio.Queue()
    for k in todo:
        work.put_nowait(k)

    async def worker() -> None:
        while True:
            try:
                k = work.get_nowait()
            except asyncio.QueueEmpty:
                return
            frame = by_chunk[k]
            ids = frame["sku_id"].tolist()
            rows = source.lookup(ids)
            decisions = await engine.price(rows, date=date, groups=frame["group"].tolist(),
                                           launch_dates=list(frame["launch_date"]))
            records = decision_records(decisions, rows, date=date, decided_at=dt.datetime.now(dt.UTC))
            write_parquet(paths.chunk(k), records)
            if bar is not None:
                bar.update(len(ids))

    paths.journal.mkdir(parents=True, exist_ok=True)
    try:
        workers = max(1, config.pricing.predictor.concurrency)
        await asyncio.gather(*(worker() for _ in range(min(workers, len(todo)))))
    finally:
        await engine.aclose()
        if bar is not None:
            bar.close()
    return len(todo), sum(len(f) for f in by_chunk.values())


# ---------------------------------------------------------------------------------------------------------
# finalisation
# ---------------------------------------------------------------------------------------------------------
def read_journal(paths: RunPaths, table: pd.DataFrame) -> pd.DataFrame:
    """The journal as one table, checked: exactly one record per planned SKU."""
    expected = set(table["chunk"].tolist())
    present = paths.done_chunks()
    if present != expected:
        raise RuntimeError(f"journal of {paths.run_dir} lacks chunk(s) {sorted(expected - present)[:10]} or holds "
                           f"unplanned one(s) {sorted(present - expected)[:10]}")
    frames = [pd.read_parquet(paths.chunk(k)) for k in sorted(expected)]
    records = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"sku_id": pd.Series(dtype="int64")})
    duplicated = records["sku_id"][records["sku_id"].duplicated()]
    if len(duplicated):
        raise RuntimeError(f"journal of {paths.run_dir} holds {len(duplicated)} duplicate decision(s), e.g. "
                           f"sku_id={int(duplicated.iloc[0])}")
    planned, got = set(table["sku_id"].tolist()), set(records["sku_id"].tolist())
    if planned != got:
        raise RuntimeError(f"journal of {paths.run_dir} misses {len(planned - got)} planned SKU(s) and holds "
                           f"{len(got - planned)} unplanned one(s)")
    return records.sort_values("sku_id", kind="stable").reset_index(drop=True)


def _yesterday(paths: RunPaths) -> pd.DataFrame | None:
    """Yesterday's run of the same output directory (its rationales), if there was one."""
    previous = RunPaths(paths.out_dir, paths.date - dt.timedelta(days=1))
    path = previous.run_dir / RATIONALES
    if not (previous.run_dir / SUMMARY).exists() or not path.exists():
        return None
    return pd.read_parquet(path)


class GroupSummary(BaseModel):
    """One experiment group's outcome in a batch run."""

    model_version: str
    model_ref: str
    skus: int
    priced: int
    fallbacks: int
    projected: int
    mean_new_discount: float | None
    mean_abs_change: float | None


class RunFiles(BaseModel):
    decisions: str
    rationales: str
    report: str
    run_dir: str


class BatchSummary(BaseModel):
    """What a batch run did (written as ``summary.json``, last, so its presence means the run finished)."""

    date: str
    model_name: str
    experiment: str
    skus: int  # active SKUs of the day
    priced: int
    unpriced: int
    unpriced_sku_ids: list[int]  # the first 100
    model_actions: int
    projected: int
    fallbacks: int
    fallbacks_by_reason: dict[str, int]
    retried: int
    groups: dict[str, GroupSummary]
    chunks: dict[str, int]
    skus_priced_this_run: int
    resumed: bool
    seconds: dict[str, float]
    skus_per_second: float | None
    paths: RunFiles
    finished_at: str
    model_label: str | None = None  # `aigp demo`: which model served, as said on screen
    active_skus: int | None = None  # `aigp demo`: SKUs active on the day (it prices a sample)

    def write(self, path: str | Path) -> Path:
        return write_json(path, self.model_dump(mode="json"))

    @classmethod
    def read(cls, path: str | Path) -> BatchSummary:
        return cls.model_validate_json(Path(path).read_text())


def summarize(records: pd.DataFrame, plan: dict, paths: RunPaths, seconds: dict[str, float], *,
              resumed: bool, chunks_priced: int, skus_priced: int) -> BatchSummary:
    priced = records[records["priced"]]
    fallbacks = priced[priced["fallback"]]
    groups = {}
    for group, arm in plan["arms"].items():
        rows = records[records["group"] == group]
        ok = rows[rows["priced"]]
        groups[group] = GroupSummary(
            model_version=str(arm["model_version"]), model_ref=str(arm["model_ref"]), skus=len(rows), priced=len(ok),
            fallbacks=int(ok["fallback"].sum()), projected=int(ok["projected"].sum()),
            mean_new_discount=float(ok["new_discount"].mean()) if len(ok) else None,
            mean_abs_change=float(ok["discount_change"].abs().mean()) if len(ok) else None)
    unpriced = records.loc[~records["priced"], "sku_id"].astype(int).tolist()
    pricing_s = seconds.get("pricing", 0.0)
    return BatchSummary(
        date=plan["date"], model_name=plan["model_name"], experiment=plan["experiment"],
        skus=len(records), priced=len(priced), unpriced=len(unpriced), unpriced_sku_ids=unpriced[:100],
        model_actions=int((~priced["fallback"]).sum()), projected=int(priced["projected"].sum()),
        fallbacks=len(fallbacks), fallbacks_by_reason={str(k): int(v) for k, v in
                                                       fallbacks["fallback_reason"].value_counts().items()},
        retried=int((records["attempts"] >= 2).sum()), groups=groups,
        chunks={"total": plan["chunks"], "priced_this_run": chunks_priced}, skus_priced_this_run=skus_priced,
        resumed=resumed, seconds={k: round(v, 2) for k, v in seconds.items()},
        skus_per_second=round(skus_priced / pricing_s, 2) if skus_priced and pricing_s > 0 else None,
        paths=RunFiles(decisions=str(paths.decisions), rationales=str(paths.run_dir / RATIONALES),
                       report=str(paths.run_dir / REPORT), run_dir=str(paths.run_dir)),
        finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def finalize(paths: RunPaths, plan: dict, table: pd.DataFrame, config: BatchPricingConfig,
             seconds: dict[str, float], *, resumed: bool, chunks_priced: int, skus_priced: int) -> BatchSummary:
    """Journal -> decisions log, rationales, report, summary (each atomic; summary last). Idempotent."""
    records = read_journal(paths, table)
    log_frame = decisions_log(records, experiment=plan["experiment"], model_name=plan["model_name"],
                              prompt_version=_prompt_version())
    write_parquet(paths.decisions, log_frame)
    write_parquet(paths.run_dir / RATIONALES, records[RATIONALE_COLUMNS + _context_columns(records)])
    summary = summarize(records, plan, paths, seconds, resumed=resumed, chunks_priced=chunks_priced,
                        skus_priced=skus_priced)
    write_decision_report(paths.run_dir / REPORT, records, summary.model_dump(), yesterday=_yesterday(paths),
                          max_skus=config.report_max_skus)
    summary.write(paths.run_dir / SUMMARY)
    return summary


def _context_columns(records: pd.DataFrame) -> list[str]:
    from aigp.pricing import TEXT_CONTEXT

    return [c for c in TEXT_CONTEXT if c in records.columns]


def _prompt_version() -> str:
    from aigp.llm.prompt import PROMPT_VERSION

    return PROMPT_VERSION


# ---------------------------------------------------------------------------------------------------------
# the entry point (the nightly pipeline calls this)
# ---------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _local_predictors(arms: Mapping[str, dict], served_model: Callable[[str], str], log_dir: Path,
                      **serve: Any) -> Iterator[dict[str, str]]:
    """One local predictor per distinct model version of the plan; yields group -> OpenAI API root."""
    serve_local_predictor = import_without_argv("aigp.serving.predictor").serve_local_predictor

    with contextlib.ExitStack() as stack:
        by_uri: dict[str, str] = {}
        urls = {}
        for group, arm in arms.items():
            uri = arm["storage_uri"]
            if uri not in by_uri:
                log_dir.mkdir(parents=True, exist_ok=True)
                by_uri[uri] = stack.enter_context(serve_local_predictor(
                    uri, served_model(group), log_path=log_dir / f"predictor-v{arm['model_version']}.log", **serve))
            urls[group] = by_uri[uri]
        yield urls


def import_without_argv(module: str) -> Any:
    """Import a module that imports KServe, whose ``model_server`` parses ``sys.argv`` when first imported (and
    would read ``aigp price batch --config FILE`` as its own ``--configure_logging``): the command line is hidden
    from it for the import."""
    import importlib
    import sys

    saved = sys.argv
    sys.argv = saved[:1]
    try:
        return importlib.import_module(module)
    finally:
        sys.argv = saved


def token_counter_for(spec: str | None) -> Any:
    """Token counting with the tokenizer of a model directory or storage URI (None: none given)."""
    if not spec:
        return None
    from transformers import AutoTokenizer

    from aigp.llm.model_factory import token_counter
    from aigp.registry import storage

    return token_counter(AutoTokenizer.from_pretrained(storage.localize(spec)))


def run_batch_pricing(date: dt.date, config: BatchPricingConfig | None = None, *,
                      predictor_urls: Mapping[str, str] | None = None, resolver: Resolver | None = None,
                      serve_local: bool = False, serve_options: Mapping[str, Any] | None = None,
                      overwrite: bool = False, progress: bool = True, transport: Any = None) -> BatchSummary:
    """Price every SKU active on ``date`` (see the module docstring); returns the run's summary.

    ``resolver`` maps (model name, alias or version) to (version, storage URI); default: the model
    registry (only approved or production versions resolve). ``serve_local`` starts the local predictor for
    each group's version for the duration of the run (``serve_options``: ``max_batch_size``, ``threads``, ...).
    """
    config = config or BatchPricingConfig()
    started = time.perf_counter()
    paths = RunPaths(Path(config.out_dir), date)
    if overwrite and paths.run_dir.exists():
        shutil.rmtree(paths.run_dir)
    summary_file = paths.run_dir / SUMMARY
    if summary_file.exists() and paths.decisions.exists():
        log.info("%s is priced already (%s); pass overwrite=True to price it again", date, summary_file)
        return BatchSummary.read(summary_file)
    from aigp.registry.model_registry import registry_resolver

    resolver = resolver or registry_resolver()
    with _run_lock(paths):
        return _run_locked(paths, config, resolver, started, predictor_urls=predictor_urls, serve_local=serve_local,
                           serve_options=serve_options, progress=progress, transport=transport)


@contextlib.contextmanager
def _run_lock(paths: RunPaths) -> Iterator[None]:
    """One process per day priced (a retried pod while the first still runs would price chunks twice); the
    kernel releases the lock when its holder dies, killed or not. Stale temporaries of killed writes go."""
    import fcntl

    paths.run_dir.mkdir(parents=True, exist_ok=True)
    with open(paths.run_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunConflict(f"another process is pricing {paths.date} in {paths.run_dir} right now") from None
        for stale in [*paths.run_dir.rglob(".*.tmp"), *paths.decisions.parent.glob(f".{paths.decisions.name}.*.tmp")]:
            stale.unlink(missing_ok=True)
        yield


def _run_locked(paths: RunPaths, config: BatchPricingConfig, resolver: Resolver, started: float, *,
                predictor_urls: Mapping[str, str] | None, serve_local: bool, serve_options: Mapping[str, Any] | None,
                progress: bool, transport: Any) -> BatchSummary:
    summary_file = paths.run_dir / SUMMARY
    if summary_file.exists() and paths.decisions.exists():  # finished while we waited for the lock
        return BatchSummary.read(summary_file)
    plan, table, resumed = load_or_make_plan(paths, config, resolver)
    seconds = {"plan": time.perf_counter() - started}
    source = EmbeddedFeatureSource.open(feature_data=config.feature_data, state_dir=config.feature_state_dir,
                                        online_store=config.online_store,
                                        redis_connection_string=config.redis_connection_string)
    try:
        served = {g: a.served_model for g, a in config.pricing.experiment.arms.items()}
        with contextlib.ExitStack() as stack:
            urls = dict(predictor_urls or {})
            pending = set(table["chunk"].tolist()) - paths.done_chunks()
            if serve_local and pending:
                try:
                    urls = stack.enter_context(_local_predictors(plan["arms"], served.__getitem__, paths.run_dir,
                                                                 **dict(serve_options or {})))
                except BaseException:
                    if not resumed and not paths.done_chunks():  # nothing priced: leave no plan behind
                        for name in (PLAN_JSON, PLAN_TABLE):
                            (paths.run_dir / name).unlink(missing_ok=True)
                    raise
            elif pending and resumed:
                _check_versions(plan, config, resolver)
            arms = resolve_arms(config.pricing, _planned(plan), predictor_urls=urls) if pending else {}
            tokenizer = config.tokenizer or (next(iter(plan["arms"].values()))["storage_uri"]
                                             if serve_local and len({a["storage_uri"] for a in plan["arms"].values()})
                                             == 1 else None)
            count_tokens = token_counter_for(tokenizer) if pending and config.pricing.prompt.max_prompt_tokens else None
            t0 = time.perf_counter()
            chunks_priced, skus_priced = asyncio.run(_price_chunks(
                paths, plan, table, config, arms, source, count_tokens, progress, transport)) if pending else (0, 0)
            seconds["pricing"] = time.perf_counter() - t0
    finally:
        source.close()
    t0 = time.perf_counter()
    summary = finalize(paths, plan, table, config, seconds, resumed=resumed, chunks_priced=chunks_priced,
                       skus_priced=skus_priced)
    seconds["finalize"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - started
    summary.seconds = {k: round(v, 2) for k, v in seconds.items()}
    summary.write(summary_file)
    return summary


def _planned(plan: dict) -> Resolver:
    """Resolve arms to the versions recorded in the plan (a resumed run keeps its versions)."""
    by_ref = {(plan["model_name"], a["model_ref"]): (a["model_version"], a["storage_uri"])
              for a in plan["arms"].values()}
    return lambda name, ref: by_ref[(name, ref)]


def _check_versions(plan: dict, config: BatchPricingConfig, resolver: Resolver) -> None:
    """Remote predictors serve whatever is deployed now: refuse to go on if that is not the planned version."""
    for group, arm in plan["arms"].items():
        version, _ = resolver(plan["model_name"], arm["model_ref"])
        if str(version) != arm["model_version"]:
            raise RunConflict(f"group {group!r}: {arm['model_ref']} is now v{version} but this run was planned with "
                              f"v{arm['model_version']}; finish it with that version served (serve_local) or "
                              "price the day again with overwrite=True")
