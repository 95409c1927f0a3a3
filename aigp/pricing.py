"""One pricing decision per SKU and day: feature row -> prompt -> LLM predictor -> Ψ -> A_safe.

What the pricing transformer (``serving/transformer.py``) and the nightly batch job (``serving/batch.py``)
share, with no MLOps framework in it (features arrive as rows, the predictor is an HTTP endpoint):

- :class:`PricingConfig`: the prompt (``aigp.llm.prompt.PromptConfig``), how the predictor is called, and the
  experiment (salted-hash groups, paper App. B.1, each group served by one registered model version);
- :class:`~aigp.openai_compat.client.PredictorClient` (the one OpenAI-compatible transport): the
  ``/completions`` route with the request and response shapes vLLM uses (KServe's Hugging Face runtime with
  the vLLM backend in production, the local transformers predictor of ``serving/predictor.py`` here). Up to
  ``request_size`` prompts go in one request (``"prompt": [...]``, as vLLM accepts), so the server batches them;
- :class:`PricingEngine`: prices a batch of rows. Per SKU: rows whose decision-critical features are
  missing, stale or corrupt never reach the model (fallback ``missing_features``); otherwise the prompt
  goes to the predictor, the output is parsed by Ψ (``aigp.llm.parser.parse_action``: last JSON action,
  projected onto A_safe by ``aigp.action.project_to_safe``). A timeout, an error or an unparsable output
  gets exactly ONE retry (sampled at ``retry_temperature`` with a seed fixed by SKU and day, so a resumed
  batch asks the same question), then a safe fallback that holds yesterday's discount, flagged with its
  :class:`~aigp.decisions.FallbackReason`;
- :func:`decision_records` (every SKU's outcome with the features it was priced from) and
  :func:`decisions_log`: the priced ones in the log format of :mod:`aigp.decisions` (what monitoring reads).

A SKU whose discount in effect is unknown or outside [0.5, 1.0] cannot be held safely either: it gets no
price (``new_discount`` None, ``priced`` False) and is reported, never guessed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from aigp.ab.partition import assign_groups
from aigp.action import MAX_DISCOUNT, MIN_DISCOUNT, TOLERANCE
from aigp.config import StrictConfig
from aigp.decisions import DECISION_COLUMNS, FEATURE_COLUMNS, FallbackReason, validate_decisions
from aigp.llm.knowledge import KnowledgeBase
from aigp.llm.parser import has_action_field, json_objects, parse_action
from aigp.llm.prompt import MISSING_MARKER, PROMPT_VERSION, Prompt, PromptConfig, approx_tokens, build_prompt
from aigp.openai_compat.client import CompletionResult, PredictorClient
from aigp.schema import FEATURES

FEATURE_SERVICE = "llm_prompt"  # the Feast feature service a pricing prompt reads
DEFAULT_MODEL_NAME = "aigp-pricing"
MAX_RATIONALE_CHARS = 20_000  # a rationale longer than this is cut (the raw output is kept separately)
MAX_RAW_OUTPUT_CHARS = 20_000


# ---------------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------------
class PredictorSettings(StrictConfig):
    """How the LLM predictor is called (one setting per knob; defaults are production's)."""

    timeout_s: float = Field(120.0, gt=0, description="per request; a timeout counts as one failed attempt")
    request_size: int = Field(16, ge=1, le=256, description="prompts per /completions request (server batches)")
    concurrency: int = Field(8, ge=1, le=256, description="requests in flight against the predictor")
    max_tokens: int = Field(1024, ge=1, description="completion budget (full reasoning + JSON action)")
    temperature: float = Field(0.0, ge=0, le=2, description="first attempt: 0 = greedy (reproducible)")
    retry_temperature: float = Field(0.7, ge=0, le=2, description="the one retry samples, so it can differ")
    seed: int = Field(0, ge=0, description="mixed with SKU and day into the retry's sampling seed")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="environment variable holding an API key")


class ArmConfig(StrictConfig):
    """One experiment group: its traffic share and the registered model version that prices it."""

    share: float = Field(gt=0, le=1, description="share of SKUs (hash buckets) in this group")
    model_ref: str = Field("champion", min_length=1, description="registry alias (champion/challenger) or version")
    predictor_url: str | None = Field(None, description="OpenAI API root of the predictor serving that version "
                                                        "(None: $AIGP_PREDICTOR_URL)")
    served_model: str = Field(DEFAULT_MODEL_NAME, min_length=1, description="model name on the OpenAI routes")
    max_tokens: int | None = Field(None, ge=1, description="this arm's completion budget (None: predictor.max_tokens);"
                                                           " models of different sizes reason at different lengths")

    @field_validator("predictor_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/") if value else value


class ExperimentConfig(StrictConfig):
    """Salted-hash experiment groups (``aigp.ab.partition``); a SKU keeps its group for its whole life."""

    salt: str = Field("aigp-pricing", min_length=1, description="experiment salt (a new salt = a new split)")
    arms: dict[str, ArmConfig] = Field(default_factory=lambda: {"champion": ArmConfig(share=1.0)},
                                       description="group name -> arm; shares sum to 1")

    @model_validator(mode="after")
    def _shares(self) -> ExperimentConfig:
        if not self.arms:
            raise ValueError("arms: at least one experiment group is needed")
        total = sum(a.share for a in self.arms.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"arms: shares must sum to 1, got {total:g} "
                             f"({', '.join(f'{g}={a.share:g}' for g, a in self.arms.items())})")
        return self

    def allocation(self) -> dict[str, float]:
        """Group -> share in the order of group names: the split must not depend on how a YAML file or a
        dict happens to order the arms (``yaml.safe_dump`` sorts keys, Python dicts keep insertion order)."""
        return {group: self.arms[group].share for group in sorted(self.arms)}

    def groups(self, sku_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The experiment group of each SKU (stable for its life, independent across salts)."""
        if len(sku_ids) == 0:
            return np.empty(0, dtype=object)
        return assign_groups(np.asarray(sku_ids, dtype=np.int64), self.salt, self.allocation())


class PricingConfig(StrictConfig):
    """Everything that decides how a SKU is priced."""

    model_name: str = Field(DEFAULT_MODEL_NAME, min_length=1, description="registered model name")
    prompt: PromptConfig = Field(default_factory=lambda: PromptConfig(),
                                 description="the deployed prompt (full reasoning + JSON action)")
    predictor: PredictorSettings = Field(default_factory=lambda: PredictorSettings())
    experiment: ExperimentConfig = Field(default_factory=lambda: ExperimentConfig())


@dataclass(frozen=True)
class Arm:
    """An experiment group resolved for serving: which model version, at which predictor."""

    group: str
    model_version: str
    base_url: str
    served_model: str
    storage_uri: str = ""


Resolver = Callable[[str, str], tuple[int | str, str]]  # (model_name, alias_or_version) -> (version, storage_uri)


def resolve_arms(config: PricingConfig, resolver: Resolver, *, predictor_urls: Mapping[str, str] | None = None,
                 default_url: str | None = None) -> dict[str, Arm]:
    """Each group's model version from the registry (``resolver``: ``aigp.registry.model_registry.resolve``)
    and its predictor URL (``predictor_urls[group]``, else the arm's, else ``default_url`` /
    ``$AIGP_PREDICTOR_URL``)."""
    urls = dict(predictor_urls or {})
    fallback_url = default_url or os.environ.get("AIGP_PREDICTOR_URL")
    arms: dict[str, Arm] = {}
    for group, arm in config.experiment.arms.items():
        version, uri = resolver(config.model_name, arm.model_ref)
        url = urls.get(group) or arm.predictor_url or fallback_url
        if not url:
            raise ValueError(f"experiment.arms.{group}.predictor_url: no predictor URL for group {group!r} "
                             "(set it, pass one, or set AIGP_PREDICTOR_URL)")
        arms[group] = Arm(group, str(version), url.rstrip("/"), arm.served_model, str(uri))
    return arms


# ---------------------------------------------------------------------------------------------------------
# decisions
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Decision:
    """The outcome for one SKU (what a response carries and the decisions log records)."""

    sku_id: int
    group: str
    model_version: str
    prev_discount: float | None  # discount in effect yesterday (None: unknown, the SKU is not priced)
    new_discount: float | None  # inside A_safe; None only when prev_discount is unknown
    discount_change: float  # new - prev (0 for a hold)
    proposed_change: float | None  # what the model asked for (None when nothing parseable came back)
    parse_ok: bool
    projected: bool
    fallback: bool
    fallback_reason: FallbackReason
    rationale: str = ""
    detail: str = ""  # why a fallback happened, for people
    raw_output: str = ""
    attempts: int = 0
    latency_ms: float = 0.0
    prompt_trimmed: tuple[str, ...] = ()

    @property
    def priced(self) -> bool:
        return self.new_discount is not None

    @property
    def outcome(self) -> str:
        """model | projected | fallback | unpriced (a metrics label)."""
        if not self.priced:
            return "unpriced"
        if self.fallback:
            return "fallback"
        return "projected" if self.projected else "model"

    @classmethod
    def from_response(cls, p: Mapping[str, Any]) -> Decision:
        """A decision back from a transformer response (``as_response``); raw output and timings stay server-side."""
        return cls(sku_id=int(p["sku_id"]), group=str(p["group"]), model_version=str(p["model_version"]),
                   prev_discount=p["prev_discount"], new_discount=p["new_discount"],
                   discount_change=float(p["discount_change"]), proposed_change=p["proposed_change"],
                   parse_ok=bool(p["parse_ok"]), projected=bool(p["projected"]), fallback=bool(p["fallback"]),
                   fallback_reason=FallbackReason(p["fallback_reason"]), rationale=p["rationale"] or "",
                   detail=p["detail"] or "")

    def as_response(self) -> dict[str, Any]:
        return {"sku_id": self.sku_id, "new_discount": self.new_discount, "discount_change": self.discount_change,
                "prev_discount": self.prev_discount, "proposed_change": self.proposed_change,
                "rationale": self.rationale, "model_version": self.model_version, "group": self.group,
                "parse_ok": self.parse_ok, "projected": self.projected, "fallback": self.fallback,
                "fallback_reason": self.fallback_reason.value, "detail": self.detail}


class PricingObserver(Protocol):
    """Receives what happened (serving counts it in Prometheus); every method may be a no-op."""

    def decided(self, decision: Decision) -> None: ...

    def attempt_failed(self, group: str, reason: FallbackReason, retried: bool) -> None: ...


class _NoObserver:
    def decided(self, decision: Decision) -> None:
        return None

    def attempt_failed(self, group: str, reason: FallbackReason, retried: bool) -> None:
        return None


def _finite(value: object) -> float | None:
    if value is None or value is pd.NA:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def row_problem(row: Mapping[str, Any], date: dt.date | None = None,
                launch_date: dt.date | None = None) -> tuple[FallbackReason, str] | None:
    """Why a feature row must not reach the model, or None.

    Stale rows are caught with what the row itself says about the day it describes: ``day_of_week`` is the
    calendar of the day priced, and ``days_since_launch`` must equal ``date - launch_date`` when the launch
    date is known (the batch job knows it; the transformer checks the weekday only).
    """
    missing = _missing_names(row)
    if date is not None:
        weekday = _finite(row.get("day_of_week"))
        if weekday is not None and "day_of_week" not in missing and int(weekday) != date.weekday():
            return (FallbackReason.MISSING_FEATURES, f"stale features: day_of_week={int(weekday)} describes another "
                                                     f"day than {date.isoformat()} (weekday {date.weekday()})")
        age = _finite(row.get("days_since_launch"))
        if launch_date is not None and age is not None and "days_since_launch" not in missing:
            expected = (date - launch_date).days
            if int(age) != expected:
                return (FallbackReason.MISSING_FEATURES, f"stale features: days_since_launch={int(age)}, expected "
                                                         f"{expected} for {date.isoformat()}")
    return None


def _missing_names(row: Mapping[str, Any]) -> set[str]:
    marker = row.get(MISSING_MARKER)
    if marker is None or isinstance(marker, float):
        return set()
    if isinstance(marker, str):
        return {m.strip() for m in marker.split(",") if m.strip()}
    return {str(m) for m in marker}


def prev_discount_of(row: Mapping[str, Any]) -> tuple[float | None, str]:
    """The discount in effect yesterday, if the row holds a valid one (else None and why)."""
    if "prev_discount" in _missing_names(row):
        return None, "prev_discount is missing from the feature store"
    value = _finite(row.get("prev_discount"))
    if value is None:
        return None, f"prev_discount={row.get('prev_discount')!r} is not a number"
    if value < MIN_DISCOUNT - TOLERANCE or value > MAX_DISCOUNT + TOLERANCE:
        return None, f"prev_discount={value!r} is outside [{MIN_DISCOUNT}, {MAX_DISCOUNT}] (corrupt state)"
    # Discounts are kept with 4 decimals; the online store holds float32 (0.85 comes back as 0.8500000238).
    return round(min(max(value, MIN_DISCOUNT), MAX_DISCOUNT), 4), ""


def rationale_of(output: str) -> str:
    """The reasoning of an output: the text before its last JSON action (trimmed of a code fence)."""
    if not output:
        return ""
    text = output[-200_000:]
    actions = [(start, end) for start, end, obj in json_objects(text) if has_action_field(obj)]
    if actions:
        last_end = max(end for _, end in actions)
        start = min(s for s, e in actions if e == last_end)
        text = text[:start]
    text = text.rstrip()
    for fence in ("```json", "```JSON", "```"):
        if text.endswith(fence):
            text = text[: -len(fence)].rstrip()
            break
    return text[:MAX_RATIONALE_CHARS]


def retry_seed(seed: int, sku_id: int, date: dt.date | None) -> int:
    digest = hashlib.sha256(f"{seed}:{sku_id}:{date.isoformat() if date else '-'}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


# ---------------------------------------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------------------------------------
@dataclass
class _Pending:
    index: int
    sku_id: int
    prev: float
    prompt: Prompt
    text: str = ""
    attempts: int = 0
    started: float = 0.0
    last: CompletionResult = field(default_factory=lambda: CompletionResult(None))


class PricingEngine:
    """Prices batches of feature rows against the arms' predictors (one client per arm, shared concurrency)."""

    def __init__(self, config: PricingConfig, arms: Mapping[str, Arm], *, knowledge: KnowledgeBase | None = None,
                 count_tokens: Callable[[str], int] | None = None, observer: PricingObserver | None = None,
                 transport: Any = None):
        missing = [g for g in config.experiment.arms if g not in arms]
        if missing:
            raise ValueError(f"no resolved arm for experiment group(s) {missing}")
        self.config = config
        self.arms = dict(arms)
        self.knowledge = knowledge or KnowledgeBase.load()
        self.count_tokens = count_tokens
        self.observer: PricingObserver = observer or _NoObserver()
        self.clients = {g: PredictorClient(a.base_url, a.served_model, self._settings(g), transport=transport)
                        for g, a in self.arms.items()}
        self._slots: asyncio.Semaphore | None = None

    def _settings(self, group: str) -> PredictorSettings:
        budget = self.config.experiment.arms[group].max_tokens if group in self.config.experiment.arms else None
        return self.config.predictor if budget is None else self.config.predictor.model_copy(
            update={"max_tokens": budget})

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:  # created in the running loop
            self._slots = asyncio.Semaphore(self.config.predictor.concurrency)
        return self._slots

    def groups(self, sku_ids: Sequence[int]) -> np.ndarray:
        return self.config.experiment.groups(sku_ids)

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    # ------------------------------------------------------------------------------------------------
    async def price(self, rows: Sequence[Mapping[str, Any]], *, date: dt.date | None = None,
                    groups: Sequence[str] | None = None,
                    launch_dates: Sequence[dt.date | None] | None = None) -> list[Decision]:
        """One decision per row, in order. ``rows`` are feature rows (``llm_prompt`` service) with ``sku_id``
        and the store's ``missing_features`` marker; ``groups`` default to the experiment's partition."""
        sku_ids = [int(r["sku_id"]) for r in rows]
        groups = list(groups) if groups is not None else list(self.groups(sku_ids))
        if len(groups) != len(rows):
            raise ValueError(f"{len(groups)} groups for {len(rows)} rows")
        decisions: list[Decision | None] = [None] * len(rows)
        pending: dict[str, list[_Pending]] = {}
        for i, row in enumerate(rows):
            group = groups[i]
            arm = self.arms.get(group)
            if arm is None:
                raise ValueError(f"sku_id={sku_ids[i]}: group {group!r} has no arm (groups: {sorted(self.arms)})")
            prev, why = prev_discount_of(row)
            if prev is None:
                decisions[i] = self._unpriced(sku_ids[i], arm, why)
                continue
            launch = launch_dates[i] if launch_dates is not None else None
            problem = row_problem(row, date, launch)
            prompt_row = dict(row)
            if date is not None:
                prompt_row["date"] = date
            prompt = None
            if problem is None:
                prompt = build_prompt(prompt_row, self.config.prompt, knowledge=self.knowledge,
                                      count_tokens=self.count_tokens)
                if prompt.missing_critical:
                    problem = (FallbackReason.MISSING_FEATURES,
                               f"decision-critical feature(s) missing: {', '.join(prompt.missing_critical)}")
            if problem is not None or prompt is None:
                reason, detail = problem or (FallbackReason.MISSING_FEATURES, "no prompt")
                decisions[i] = self._hold(sku_ids[i], arm, prev, reason, detail, attempts=0)
                continue
            pending.setdefault(group, []).append(_Pending(i, sku_ids[i], prev, prompt))
        size = self.config.predictor.request_size
        jobs = [self._price_chunk(self.arms[g], items[lo:lo + size], date)
                for g, items in pending.items() for lo in range(0, len(items), size)]
        for chunk in await asyncio.gather(*jobs):
            for index, decision in chunk:
                decisions[index] = decision
        out = [d for d in decisions if d is not None]
        assert len(out) == len(rows)
        for decision in out:
            self.observer.decided(decision)
        return out

    async def _request(self, arm: Arm, items: list[_Pending], *, temperature: float,
                       seed: int | None) -> list[CompletionResult]:
        prompts = [it.prompt.chatml() for it in items]
        async with self.slots:
            return await self.clients[arm.group].complete(prompts, temperature=temperature, seed=seed)

    async def _price_chunk(self, arm: Arm, items: list[_Pending], date: dt.date | None) -> list[tuple[int, Decision]]:
        settings = self.config.predictor
        started = time.perf_counter()
        for it in items:
            it.started = started
        results = await self._request(arm, items, temperature=settings.temperature, seed=None)
        done: list[tuple[int, Decision]] = []
        retry: list[_Pending] = []
        for it, result in zip(items, results, strict=True):
            it.attempts, it.last = 1, result
            decision = self._parsed(arm, it, result)
            if decision is None:
                retry.append(it)
                self.observer.attempt_failed(arm.group, self._reason(result), True)
            else:
                done.append((it.index, decision))
        if not retry:
            return done
        # The one retry: sampled (a greedy retry would repeat a greedy failure). A request the predictor
        # refused as malformed (HTTP 400) is retried prompt by prompt, so one bad prompt fails alone.
        refused = any(it.last.status == 400 for it in retry) and len(retry) > 1
        batches = [[it] for it in retry] if refused else [retry]
        seeds = [retry_seed(settings.seed, b[0].sku_id, date) for b in batches]
        answers = await asyncio.gather(*(self._request(arm, b, temperature=settings.retry_temperature, seed=s)
                                         for b, s in zip(batches, seeds, strict=True)))
        for batch, results in zip(batches, answers, strict=True):
            for it, result in zip(batch, results, strict=True):
                it.attempts, it.last = 2, result
                decision = self._parsed(arm, it, result)
                if decision is None:
                    reason = self._reason(result)
                    self.observer.attempt_failed(arm.group, reason, False)
                    detail = result.message or "the model output held no usable JSON action"
                    decision = self._hold(it.sku_id, arm, it.prev, reason, f"{detail} (after one retry)",
                                          attempts=2, raw=result.text or "", started=it.started,
                                          trimmed=it.prompt.trimmed)
                done.append((it.index, decision))
        return done

    @staticmethod
    def _reason(result: CompletionResult) -> FallbackReason:
        return result.reason if result.text is None else FallbackReason.UNPARSABLE_OUTPUT

    def _parsed(self, arm: Arm, it: _Pending, result: CompletionResult) -> Decision | None:
        """The decision from a model output, or None when the attempt failed (no answer or no action)."""
        if result.text is None:
            return None
        parsed = parse_action(result.text, it.prev)
        if parsed.fallback:
            return None
        return Decision(
            sku_id=it.sku_id, group=arm.group, model_version=arm.model_version, prev_discount=it.prev,
            new_discount=float(parsed.new_discount), discount_change=float(parsed.discount_change),
            proposed_change=parsed.proposed_change, parse_ok=True, projected=parsed.projected, fallback=False,
            fallback_reason=FallbackReason.NONE, rationale=rationale_of(result.text),
            detail="the model's action was outside A_safe and was projected" if parsed.projected else "",
            raw_output=result.text[:MAX_RAW_OUTPUT_CHARS], attempts=it.attempts,
            latency_ms=(time.perf_counter() - it.started) * 1000.0, prompt_trimmed=it.prompt.trimmed,
        )

    @staticmethod
    def _hold(sku_id: int, arm: Arm, prev: float, reason: FallbackReason, detail: str, *, attempts: int,
              raw: str = "", started: float | None = None, trimmed: tuple[str, ...] = ()) -> Decision:
        latency = (time.perf_counter() - started) * 1000.0 if started is not None else 0.0
        return Decision(sku_id=sku_id, group=arm.group, model_version=arm.model_version, prev_discount=prev,
                        new_discount=prev, discount_change=0.0, proposed_change=None, parse_ok=False,
                        projected=False, fallback=True, fallback_reason=reason,
                        detail=f"held yesterday's discount {prev:.4g}: {detail}",
                        raw_output=raw[:MAX_RAW_OUTPUT_CHARS], attempts=attempts, latency_ms=latency,
                        prompt_trimmed=trimmed)

    @staticmethod
    def _unpriced(sku_id: int, arm: Arm, why: str) -> Decision:
        return Decision(sku_id=sku_id, group=arm.group, model_version=arm.model_version, prev_discount=None,
                        new_discount=None, discount_change=0.0, proposed_change=None, parse_ok=False, projected=False,
                        fallback=True, fallback_reason=FallbackReason.MISSING_FEATURES,
                        detail=f"not priced (the discount in effect stays as it is): {why}")


# ---------------------------------------------------------------------------------------------------------
# records and the decisions log
# ---------------------------------------------------------------------------------------------------------
RECORD_COLUMNS: dict[str, str] = {
    "sku_id": "int64", "date": "datetime64[us]", "event_timestamp": "datetime64[us, UTC]", "group": "string",
    "model_version": "string", "priced": "bool", "prev_discount": "float64", "proposed_change": "float64",
    "discount_change": "float64", "new_discount": "float64", "parse_ok": "bool", "projected": "bool",
    "fallback": "bool", "fallback_reason": "string", "rationale": "string", "rationale_tokens": "int64",
    "latency_ms": "float64", "detail": "string", "raw_output": "string", "attempts": "int64",
    "prompt_trimmed": "string", "missing_features": "string",
}
TEXT_CONTEXT = [n for n, f in FEATURES.items() if f.dtype == "string"]  # category, brand, ..., review_digest


def decision_records(decisions: Sequence[Decision], rows: Sequence[Mapping[str, Any]], *, date: dt.date,
                     decided_at: dt.datetime) -> pd.DataFrame:
    """Every SKU's outcome (unpriced ones too) with the features it was priced from, text included: what the
    batch journal keeps and the decision report reads. ``rows`` are the feature rows (same order)."""
    if len(decisions) != len(rows):
        raise ValueError(f"{len(decisions)} decisions for {len(rows)} feature rows")
    stamp = pd.Timestamp(decided_at)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    nan = float("nan")
    columns: dict[str, Any] = {
        "sku_id": [d.sku_id for d in decisions],
        "date": [pd.Timestamp(date)] * len(decisions),
        "event_timestamp": [stamp] * len(decisions),
        "group": [d.group for d in decisions],
        "model_version": [d.model_version for d in decisions],
        "priced": [d.priced for d in decisions],
        "prev_discount": [nan if d.prev_discount is None else d.prev_discount for d in decisions],
        "proposed_change": [nan if d.proposed_change is None else d.proposed_change for d in decisions],
        "discount_change": [d.discount_change for d in decisions],
        "new_discount": [nan if d.new_discount is None else d.new_discount for d in decisions],
        "parse_ok": [d.parse_ok for d in decisions],
        "projected": [d.projected for d in decisions],
        "fallback": [d.fallback for d in decisions],
        "fallback_reason": [d.fallback_reason.value for d in decisions],
        "rationale": [d.rationale for d in decisions],
        "rationale_tokens": [approx_tokens(d.rationale) if d.rationale else 0 for d in decisions],
        "latency_ms": [d.latency_ms for d in decisions],
        "detail": [d.detail for d in decisions],
        "raw_output": [d.raw_output for d in decisions],
        "attempts": [d.attempts for d in decisions],
        "prompt_trimmed": [",".join(d.prompt_trimmed) for d in decisions],
        "missing_features": [",".join(sorted(_missing_names(r))) for r in rows],
    }
    frame = pd.DataFrame(columns).astype(RECORD_COLUMNS)
    for name in FEATURE_COLUMNS:
        if name not in RECORD_COLUMNS:  # prev_discount is a feature too: the decision's (validated) value stays
            frame[name] = np.array([_finite(r.get(name)) for r in rows], dtype=np.float64)
    for name in TEXT_CONTEXT:
        frame[name] = pd.array([None if r.get(name) is None else str(r.get(name)) for r in rows], dtype="string")
    return frame


def decisions_log(records: pd.DataFrame, *, experiment: str, model_name: str,
                  prompt_version: str = PROMPT_VERSION) -> pd.DataFrame:
    """The priced records in the ``aigp.decisions`` log format (prompt features alongside), validated.

    Unpriced SKUs (discount in effect unknown) are left out: the log holds decisions with a known discount."""
    priced = records[records["priced"].to_numpy(bool)].reset_index(drop=True)
    frame = pd.DataFrame({
        "sku_id": priced["sku_id"].to_numpy(np.int64),
        "date": priced["date"].astype("datetime64[us]"),
        "event_timestamp": priced["event_timestamp"].astype("datetime64[us, UTC]"),
        "experiment": experiment,
        "group": priced["group"],
        "model_name": model_name,
        "model_version": priced["model_version"],
        "prompt_version": prompt_version,
        **{c: priced[c] for c in ("prev_discount", "proposed_change", "discount_change", "new_discount", "parse_ok",
                                  "projected", "fallback", "fallback_reason", "rationale", "rationale_tokens",
                                  "latency_ms")},
    })
    for name in FEATURE_COLUMNS:
        if name not in DECISION_COLUMNS:
            frame[name] = priced[name].to_numpy(np.float64)
    return validate_decisions(frame[list(dict.fromkeys([*DECISION_COLUMNS, *FEATURE_COLUMNS]))])
