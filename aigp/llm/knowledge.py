"""The operations knowledge base: per-category entries retrieved into pricing prompts.

Entries are data (``aigp/llm/kb/<category>.yaml``, plus ``platform.yaml`` for rules that hold in every
category), each of one kind:

- ``overview``: how comparable products are priced (the usual discount), price sensitivity, the traffic
  cost share at launch: the priors a cold-start SKU needs (paper §5 case 2);
- ``season``: a seasonal window by month-day and what it does to demand;
- ``benchmark``: list and typical selling prices of related products, for analogical pricing;
- ``rule``: operational rules (ROI arithmetic, momentum, reference prices, stock, reviews, milestones);
  a rule's ``priority`` lifts it in retrieval (the ROI arithmetic comes right after the overview).

An entry renders as one prompt line, ``[kb:<id>] <text> (facts: name = value; ...)``, so a model can cite
it by id and read its facts; the judge checks that every cited id was in the prompt. Retrieval is by
category plus keywords drawn from the feature row (:func:`query_keywords`): no embeddings, no service,
deterministic, and cheap enough for every SKU every night.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from aigp.config import StrictConfig, format_validation_error

KB_DIR = Path(__file__).resolve().parent / "kb"
PLATFORM = "platform"
KINDS = ("overview", "season", "benchmark", "rule")
DEFAULT_K = 5
SEASON_LOOKAHEAD_DAYS = 7  # a window starting within this many days is already worth knowing about

_WORD = re.compile(r"[a-z]+")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Window(StrictConfig):
    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _month_day(cls, value: str) -> str:
        try:
            dt.datetime.strptime(f"2024-{value}", "%Y-%m-%d")
        except ValueError:
            raise ValueError(f"expected MM-DD, got {value!r}") from None
        return value


class _Benchmark(StrictConfig):
    product: str
    list_price: float = Field(gt=0)
    typical_price: float = Field(gt=0)


class _EntryFile(StrictConfig):
    id: str = Field(pattern=r"^[a-z0-9_]+(?:-[a-z0-9_]+)*$")
    kind: Literal["overview", "season", "benchmark", "rule"]
    text: str = Field(min_length=10)
    keywords: tuple[str, ...] = ()
    facts: dict[str, float | str] = Field(default_factory=dict)
    window: _Window | None = None
    benchmarks: tuple[_Benchmark, ...] = ()
    priority: float = Field(0.0, ge=0, le=100, description="added to a rule's retrieval score")


class _KnowledgeFile(StrictConfig):
    category: str
    title: str
    entries: tuple[_EntryFile, ...] = Field(min_length=1)


@dataclass(frozen=True)
class KnowledgeEntry:
    id: str
    category: str  # a market category, or "platform" for rules of every category
    kind: str
    text: str
    keywords: frozenset[str]
    facts: Mapping[str, float | str] = field(default_factory=dict)
    window: tuple[str, str] | None = None  # (MM-DD, MM-DD) for seasons
    benchmarks: tuple[tuple[str, float, float], ...] = ()  # (product, list price, typical price)
    priority: float = 0.0  # a rule's retrieval boost (core rules come right after the overview)

    def render(self) -> str:
        """The entry as one prompt line."""
        line = f"[kb:{self.id}] {self.text}"
        if self.facts:
            line += " (facts: " + "; ".join(f"{k} = {_fact(v)}" for k, v in self.facts.items()) + ")"
        return line

    def render_facts(self) -> str:
        """The entry as one compact prompt line: its id and stated facts (``(rule)`` when it states none)."""
        if not self.facts:  # the compact prompt shows rules by id and leaves fact-less examples out
            return f"[kb:{self.id}] (rule)"
        return f"[kb:{self.id}] (facts: " + "; ".join(f"{k} = {_fact(v)}" for k, v in self.facts.items()) + ")"

    def active_on(self, date: dt.date, lookahead_days: int = 0) -> bool:
        """True if the seasonal window covers ``date`` or starts within ``lookahead_days`` after it."""
        return self.window is not None and _window_active(self.window, date, lookahead_days)


def _fact(value: float | str) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


@lru_cache(maxsize=4096)
def _window_active(window: tuple[str, str], date: dt.date, lookahead_days: int) -> bool:
    """Cached: every SKU priced on one night asks about the same few windows on the same date."""
    return any(_in_window((date + dt.timedelta(days=j)).strftime("%m-%d"), *window) for j in range(lookahead_days + 1))


def _in_window(month_day: str, start: str, end: str) -> bool:
    if start <= end:
        return start <= month_day <= end
    return month_day >= start or month_day <= end  # a window across new year


class KnowledgeBase:
    """All entries, by category; load once (``KnowledgeBase.load()`` is cached for the packaged files)."""

    def __init__(self, entries: Iterable[KnowledgeEntry]):
        self._entries = list(entries)
        self._by_id: dict[str, KnowledgeEntry] = {}
        self._by_category: dict[str, list[tuple[int, KnowledgeEntry]]] = {}  # retrieval scans one category
        for order, entry in enumerate(self._entries):
            if entry.id in self._by_id:
                raise ValueError(f"knowledge base: duplicate entry id {entry.id!r}")
            self._by_id[entry.id] = entry
            self._by_category.setdefault(entry.category, []).append((order, entry))

    @classmethod
    def load(cls, directory: str | Path | None = None) -> KnowledgeBase:
        if directory is None:
            return _packaged()
        return cls(_read_directory(Path(directory)))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._by_id

    def get(self, entry_id: str) -> KnowledgeEntry:
        try:
            return self._by_id[entry_id]
        except KeyError:
            raise KeyError(f"no knowledge-base entry {entry_id!r}") from None

    @property
    def categories(self) -> list[str]:
        return sorted({e.category for e in self._entries if e.category != PLATFORM})

    def entries(self, category: str) -> list[KnowledgeEntry]:
        return [e for e in self._entries if e.category == category]

    def retrieve(self, category: str, keywords: Iterable[str] = (), *, date: dt.date | None = None,
                 in_season: bool = False, k: int = DEFAULT_K) -> list[KnowledgeEntry]:
        """The ``k`` most relevant entries for a SKU of ``category``.

        The category overview always comes first; then the seasonal window that covers ``date`` (or starts
        within a week of it; without a date, the category's windows when ``in_season``); then the benchmark
        and the rules whose keywords overlap ``keywords`` most. An unknown category gets platform rules only.
        """
        words = {w for kw in keywords for w in _WORD.findall(str(kw).lower())}
        scored: list[tuple[float, int, KnowledgeEntry]] = []
        candidates = self._by_category.get(category, []) if category != PLATFORM else []
        for order, entry in [*candidates, *self._by_category.get(PLATFORM, [])]:
            overlap = len(entry.keywords & words)
            if entry.kind == "overview":
                score = 100.0
            elif entry.kind == "season":
                if date is not None:
                    score = 60.0 if entry.active_on(date) else (40.0 if entry.active_on(date, SEASON_LOOKAHEAD_DAYS)
                                                               else 0.0)
                else:
                    score = 50.0 if in_season else 0.0
            elif entry.kind == "benchmark":
                # The product's own noun must match: a benchmark of another product is noise.
                nouns = entry.keywords - {"benchmark", "cold", "start"}
                score = 30.0 + overlap if nouns and nouns <= words else 0.0
            else:
                score = 10.0 * overlap + (entry.priority if overlap else 0.0)
            if score > 0:
                scored.append((score, order, entry))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [entry for _, _, entry in scored[:k]]


def query_keywords(row: Mapping[str, object]) -> list[str]:
    """Retrieval keywords from a feature row: the product words and the situation the signals describe."""
    words: list[str] = []
    description = row.get("description")
    if isinstance(description, str):
        words.extend(_WORD.findall(description.lower()))
    words += ["roi", "milestone"]
    age = _number(row.get("days_since_launch"))
    if age is not None and age <= 1:
        words += ["launch", "momentum"]
    if _truthy(row.get("is_promotion")):
        words.append("promotion")
    if _truthy(row.get("in_season")):
        words.append("season")
    reviews = _number(row.get("review_count"))
    if reviews is not None and reviews > 0:
        words.append("reviews")
    inventory, orders_3d = _number(row.get("inventory")), _number(row.get("orders_3d"))
    if inventory is not None and orders_3d is not None and age:
        daily = orders_3d / min(max(age, 1.0), 3.0)
        if daily > 0 and inventory / daily < 14 - age:
            words.append("stock")
    last = _number(row.get("last_action_1"))
    if last is not None and last < 0:
        words.append("raise")
    return words


def _number(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if out == out else None  # NaN -> None


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    try:
        return bool(value) and value == value  # NaN is not true
    except ValueError:
        return False


def _read_directory(directory: Path) -> list[KnowledgeEntry]:
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"no knowledge-base files (*.yaml) in {directory}")
    entries = []
    for path in files:
        try:
            raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
            parsed = _KnowledgeFile.model_validate(raw)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML: {exc}") from None
        except ValidationError as exc:
            raise ValueError(f"{path}: {format_validation_error('knowledge file', exc)}") from None
        for e in parsed.entries:
            if e.kind == "season" and e.window is None:
                raise ValueError(f"{path}: season entry {e.id!r} has no window")
            entries.append(KnowledgeEntry(
                id=e.id, category=parsed.category, kind=e.kind, text=" ".join(e.text.split()),
                keywords=frozenset(w for kw in e.keywords for w in _WORD.findall(kw.lower())),
                facts=dict(e.facts), window=(e.window.start, e.window.end) if e.window else None,
                benchmarks=tuple((b.product, b.list_price, b.typical_price) for b in e.benchmarks),
                priority=e.priority,
            ))
    return entries


@lru_cache(maxsize=1)
def _packaged() -> KnowledgeBase:
    return KnowledgeBase(_read_directory(KB_DIR))
