"""The distillation set (paper §3.2): teacher generations filtered by the judge, with provenance.

Two steps, so a pipeline can run (and cache) them separately:

- :func:`generate`: prompt rows -> prompts (``aigp.llm.prompt``) -> teacher completions, from the built-in
  knowledge-base teacher or a teacher endpoint (``aigp.openai_compat.client``), ``samples_per_prompt`` each;
- :func:`judge_filter`: generations -> judge verdicts (rules, plus an LLM judge endpoint when configured)
  -> kept (5/5 on all four dimensions and an action in A_safe) and rejected records, with the keep rate
  and failures per dimension.

:func:`write_distillation_set` writes ``distill.jsonl`` (kept), ``rejected.jsonl`` and ``manifest.json``
atomically. A kept record is a TRL conversational prompt/completion pair plus provenance::

    {"id", "prompt": [system, user], "completion": [assistant], "sku_id", "date", "prompt_version", "mode",
     "teacher": {...}, "judge": {"scores", "issues", "source"}, "action": {...}, "data_window": {...}}

:func:`sft_records` returns only ``prompt`` / ``completion`` for a trainer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

import aigp
from aigp.config import StrictConfig
from aigp.distillation.judge import CombinedJudge, FilterReport, LLMJudge, RuleJudge, filter_report
from aigp.distillation.teacher import KnowledgeBaseTeacher, TeacherConfig
from aigp.io import write_json, write_text
from aigp.llm.prompt import PROMPT_VERSION, PromptConfig, build_prompt
from aigp.openai_compat.client import EndpointConfig, OpenAICompatibleClient

DISTILL_FILE = "distill.jsonl"
REJECTED_FILE = "rejected.jsonl"
GENERATIONS_FILE = "generations.jsonl"
MANIFEST_FILE = "manifest.json"


class DistillConfig(StrictConfig):
    """Teacher generation and judge filtering; every default documented here."""

    n_prompts: int | None = Field(200, ge=1, description="prompt rows sampled from the source (None = all)")
    seed: int = Field(0, ge=0, description="row sampling and teacher sampling seed")
    start: dt.date | None = Field(None, description="first day priced of the data window (inclusive)")
    end: dt.date | None = Field(None, description="end of the data window (exclusive)")
    samples_per_prompt: int = Field(1, ge=1, le=16, description="teacher samples per prompt")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="teacher sampling temperature")
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="the built-in teacher")
    teacher_endpoint: EndpointConfig | None = Field(None, description="a served teacher instead of the built-in")
    judge_endpoint: EndpointConfig | None = Field(None, description="an LLM judge in addition to the rule checks")
    tokenizer: str | None = Field(None, description="model path / URI whose tokenizer counts prompt.max_prompt_tokens "
                                  "(the student's); None = a character-based estimate")


def _row_value(row: dict[str, Any], name: str) -> Any:
    value = row.get(name)
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return str(value)[:10]
    if value is not None and hasattr(value, "item"):
        return value.item()
    return value


def generate(rows: pd.DataFrame, config: DistillConfig, *, window: dict[str, Any] | None = None,
             progress: bool = False) -> list[dict[str, Any]]:
    """Teacher completions for every row (``samples_per_prompt`` each), one record per completion;
    ``window`` (see :func:`data_window`) is recorded in every record as its provenance."""
    count = None
    if config.tokenizer is not None:
        from transformers import AutoTokenizer

        from aigp.llm.model_factory import resolve_model, token_counter

        count = token_counter(AutoTokenizer.from_pretrained(resolve_model(config.tokenizer)))
    prompts = [build_prompt(row, config.prompt, count_tokens=count) for row in rows.to_dict("records")]
    meta = rows.to_dict("records")
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    k = config.samples_per_prompt
    if config.teacher_endpoint is not None:
        endpoint = config.teacher_endpoint
        batch = [p.messages for p in prompts for _ in range(k)]
        seeds = [config.seed * 1_000_003 + i for i in range(len(batch))]
        with OpenAICompatibleClient(endpoint) as client:
            completions = client.complete_many(batch, seeds=seeds, temperature=config.temperature,
                                               progress=progress, desc="teacher")
        teacher = {"name": endpoint.model, "endpoint": endpoint.base_url, "route": endpoint.route,
                   "temperature": config.temperature}
        outputs = [(c.text if c.ok else None, c.finish_reasons[0] if c.finish_reasons else None, c.error,
                    seeds[i]) for i, c in enumerate(completions)]
    else:
        builtin = KnowledgeBaseTeacher(config.teacher)
        teacher = {"name": builtin.name, "endpoint": None, "route": "in-process",
                   "temperature": config.temperature}
        outputs = []
        iterator: Iterable[int] = range(len(prompts) * k)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc="teacher", unit="prompt")
        for i in iterator:
            prompt = prompts[i // k]
            seed = config.seed * 1_000_003 + i
            response = builtin.respond(prompt, temperature=config.temperature, seed=seed, sample_index=i % k)
            outputs.append((response.text, "stop", None, seed))
    for i, (text, finish, error, seed) in enumerate(outputs):
        prompt, row = prompts[i // k], meta[i // k]
        records.append({
            "id": _record_id(prompt.user, i % k, seed),
            "prompt": prompt.messages,
            "completion": None if text is None else [{"role": "assistant", "content": text}],
            "sku_id": _row_value(row, "sku_id"), "date": _row_value(row, "date"),
            "prompt_version": prompt.version, "mode": prompt.config.mode,
            "missing_critical": list(prompt.missing_critical), "trimmed": list(prompt.trimmed),
            "teacher": {**teacher, "seed": seed, "sample_index": i % k, "finish_reason": finish},
            "error": error, "data_window": window,
        })
    elapsed = time.perf_counter() - started
    for record in records:
        record["teacher"]["batch_seconds"] = round(elapsed, 3)
    return records


def _record_id(user: str, sample: int, seed: int) -> str:
    return hashlib.sha256(f"{user}\n{sample}\n{seed}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FilterResult:
    kept: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    report: FilterReport
    failed_generations: int  # records with no completion (endpoint errors)

    def metrics(self) -> dict[str, float]:
        out = {"judged": float(self.report.judged), "kept": float(self.report.kept),
               "keep_rate": self.report.keep_rate, "failed_generations": float(self.failed_generations)}
        out.update({f"failures_{k}": float(v) for k, v in self.report.failures.items()})
        out.update({f"mean_{k}": v for k, v in self.report.mean_scores.items()})
        return out


def judge_filter(records: Sequence[dict[str, Any]], config: DistillConfig, *,
                 progress: bool = False) -> FilterResult:
    """Judge every generation; keep 5/5 on all four dimensions with an action inside A_safe."""
    judged = [r for r in records if r.get("completion")]
    pairs = [(r["prompt"], r["completion"][0]["content"]) for r in judged]
    llm = None
    client = None
    if config.judge_endpoint is not None:
        client = OpenAICompatibleClient(config.judge_endpoint)
        llm = LLMJudge(client)
    try:
        judge = CombinedJudge(RuleJudge(), llm)
        verdicts = judge.judge_many(pairs, progress=progress)
    finally:
        if client is not None:
            client.close()
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for record, verdict in zip(judged, verdicts, strict=True):
        out = {**record, "judge": {"name": judge.name, **verdict.as_dict()},
               "action": verdict.action.as_dict() if verdict.action is not None else None}
        (kept if verdict.kept else rejected).append(out)
    failed = [dict(r, judge=None, action=None) for r in records if not r.get("completion")]
    return FilterResult(kept=kept, rejected=rejected + failed, report=filter_report(verdicts),
                        failed_generations=len(failed))


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    return write_text(path, "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in records))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def data_window(source: str | Path, rows: pd.DataFrame, config: DistillConfig) -> dict[str, Any]:
    """Where the prompts came from: the source, its manifest checksum, the days priced covered."""
    path = Path(source)
    manifest = path / "manifest.json" if path.is_dir() else None
    digest = None
    if manifest is not None and manifest.exists():
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
    elif path.is_file():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    dates = pd.to_datetime(rows["date"]) if "date" in rows.columns and len(rows) else None
    return {"source": str(path), "source_sha256": digest, "rows": len(rows),
            "start": str(config.start) if config.start else None, "end": str(config.end) if config.end else None,
            "first_day": str(dates.min().date()) if dates is not None else None,
            "last_day": str(dates.max().date()) if dates is not None else None}


def write_distillation_set(out_dir: str | Path, result: FilterResult, *, config: DistillConfig) -> Path:
    """``distill.jsonl``, ``rejected.jsonl`` and ``manifest.json`` (written last) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / DISTILL_FILE, result.kept)
    write_jsonl(out / REJECTED_FILE, result.rejected)
    windows = {json.dumps(r.get("data_window"), sort_keys=True) for r in [*result.kept, *result.rejected]}
    write_json(out / MANIFEST_FILE, {
        "aigp_version": aigp.__version__, "prompt_version": PROMPT_VERSION, "mode": config.prompt.mode,
        "records": len(result.kept), "rejected": len(result.rejected),
        "data_windows": [json.loads(w) for w in sorted(windows)],
        "filter": result.report.as_dict(), "failed_generations": result.failed_generations,
        "config": config.model_dump(mode="json"),
        "files": {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in (DISTILL_FILE,
                                                                                          REJECTED_FILE)},
    })
    return out


def sft_records(path: str | Path) -> list[dict[str, Any]]:
    """The kept pairs of a distillation set as TRL prompt/completion records (provenance dropped)."""
    target = Path(path)
    file = target / DISTILL_FILE if target.is_dir() else target
    return [{"prompt": r["prompt"], "completion": r["completion"]} for r in read_jsonl(file)]


@dataclass(frozen=True)
class DistillResult:
    out_dir: Path
    generations: int
    filter: FilterResult


def run_distill(source: str | Path, out_dir: str | Path, config: DistillConfig, *,
                progress: bool = False) -> DistillResult:
    """Rows from ``source`` (a market log directory or a prompt-rows parquet) -> teacher -> judge -> set."""
    from aigp.llm.rows import load_prompt_rows

    rows = load_prompt_rows(source, n=config.n_prompts, seed=config.seed, start=config.start, end=config.end)
    records = generate(rows, config, window=data_window(source, rows, config), progress=progress)
    result = judge_filter(records, config, progress=progress)
    out = write_distillation_set(out_dir, result, config=config)
    return DistillResult(out_dir=out, generations=len(records), filter=result)
