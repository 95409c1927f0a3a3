"""Benchmark results: each benchmark writes its own section; BENCHMARKS.md is assembled from them.

Sections live in ``bench/results/<name>.md`` so that benchmarks of different areas never overwrite each
other; :func:`write_section` records the command that produced a table and rebuilds BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from pathlib import Path

from aigp.markdown import markdown_table as core_markdown_table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BENCHMARKS = ROOT / "BENCHMARKS.md"

# Order of sections in BENCHMARKS.md; sections not listed follow alphabetically.
ORDER = ("simulator", "simulator_calibration", "ab_baselines", "feature_store", "feature_store_writer", "ltve",
         "ltve_diagnostics", "ltve_improvements", "ltve_more_variants", "ltve_ceiling", "reward_market", "llm_core",
         "student", "student_dpo", "student_dpo_progress", "student_dpo_reward", "student_dpo_on_policy",
         "student_dpo_4k", "student_dpo_balanced", "student_dpo_balanced_4k", "student_dpo_nonll",
         "student_dpo_balanced_nonll", "student_dpo_balanced_nll03", "student_dpo_balanced_lowlr", "student_dpo_dq20",
         "student_dpo_sign", "student_dpo_sign_4k", "student_dpo_distil", "student_dagger",
         "smollm2", "alignment", "pair_fit", "pipeline", "serving", "served_vs_inprocess", "monitoring", "evaluation")

HEADER = """# Benchmarks

Every table below was produced by the command shown above it, on the machine it names; benchmarks run
ours and its comparison in the same process. Regenerate a section by re-running its command
(`make bench` runs them all). Sections are kept in `bench/results/` and assembled here.
"""


def machine() -> str:
    cpus = os.cpu_count()
    return f"{platform.machine()}, {cpus} CPU(s), Python {sys.version.split()[0]}, {platform.system()}"


def command_line(module: str, args: argparse.Namespace, parser: argparse.ArgumentParser,
                 skip: tuple[str, ...] = ("no_write",)) -> str:
    """``python -m MODULE`` with the options of ``args`` that differ from the parser's defaults (the command a
    section records)."""
    options = [f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in vars(args).items()
               if v != parser.get_default(k) and k not in skip]
    return " ".join(["python -m", module, *options])


def write_section(name: str, title: str, body: str, command: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = f"## {title}\n\n`{command}` — {stamp}, {machine()}\n\n{body.strip()}\n"
    path = RESULTS / f"{name}.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    rebuild()
    return path


def rebuild() -> None:
    sections = {p.stem: p.read_text() for p in RESULTS.glob("*.md")}
    names = [n for n in ORDER if n in sections] + sorted(n for n in sections if n not in ORDER)
    text = HEADER + "\n" + "\n".join(sections[n] for n in names)
    tmp = BENCHMARKS.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(BENCHMARKS)


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])
    return core_markdown_table(columns, ([_cell(row.get(c, "")) for c in columns] for row in rows))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)
