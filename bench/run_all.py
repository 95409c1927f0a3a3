"""Run every benchmark (`make bench`): each `bench/bench_<area>.py` in its own process, in BENCHMARKS.md order.

    .venv/bin/python -m bench.run_all [--only simulator,ltve] [--skip alignment] [--list]

A benchmark that fails does not stop the others; the exit status is non-zero if any failed, and the summary
names them. Each benchmark writes its own section of BENCHMARKS.md (``bench/_report.write_section``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from bench._report import ORDER

BENCH_DIR = Path(__file__).resolve().parent


def discover() -> list[str]:
    """Benchmark areas present on disk, in the order of BENCHMARKS.md, unlisted ones last (alphabetical)."""
    areas = sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(areas, key=lambda a: (rank.get(a, len(ORDER)), a))


def _names(value: str | None) -> set[str]:
    return {v.strip() for v in value.split(",") if v.strip()} if value else set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated areas to run (default: all)")
    parser.add_argument("--skip", help="comma-separated areas to leave out")
    parser.add_argument("--list", action="store_true", help="print the areas and exit")
    args = parser.parse_args(argv)
    areas = discover()
    unknown = (_names(args.only) | _names(args.skip)) - set(areas)
    if unknown:
        parser.error(f"unknown benchmark area(s) {sorted(unknown)}; known: {', '.join(areas)}")
    if args.list:
        print("\n".join(areas))
        return 0
    only, skip = _names(args.only), _names(args.skip)
    selected = [a for a in areas if (not only or a in only) and a not in skip]
    results: list[tuple[str, int, float]] = []
    for i, area in enumerate(selected, 1):
        print(f"\n=== [{i}/{len(selected)}] bench.bench_{area} ===", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"bench.bench_{area}"], cwd=BENCH_DIR.parent)
        results.append((area, code, time.perf_counter() - start))
    print("\n| benchmark | status | minutes |\n|---|---|---|")
    for area, code, seconds in results:
        print(f"| {area} | {'ok' if code == 0 else f'FAILED (exit {code})'} | {seconds / 60:.1f} |")
    return 1 if any(code for _, code, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
