"""Wall time of `make demo` (`aigp demo`), stage by stage, against its 15-minute budget on 2 cores.

    .venv/bin/python -m bench.bench_demo [--root runs/bench_demo]

Runs the demo's STAGES in order with the demo's defaults (the same context `aigp demo` builds), timing each.
"""

from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path

from bench._report import markdown_table, write_section

BUDGET_S = 15 * 60


def main(argv: list[str] | None = None) -> int:
    from aigp.cli import demo as demo_cli
    from aigp.cli.demo_context import DemoContext

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("runs/bench_demo"))
    args = parser.parse_args(argv)
    defaults = {name: p.default for name, p in inspect.signature(demo_cli.demo).parameters.items()
                if name in ("skus", "ab_skus", "seed")}
    ctx = DemoContext(root=args.root, **defaults)
    args.root.mkdir(parents=True, exist_ok=True)
    rows, started = [], time.perf_counter()
    for i, (title, stage) in enumerate(demo_cli.STAGES, 1):
        t0 = time.perf_counter()
        summary = stage(ctx)
        seconds = time.perf_counter() - t0
        rows.append({"#": i, "stage": title, "seconds": f"{seconds:.0f}", "summary": summary.replace("|", "/")[:160]})
        print(f"{i}. {title}: {seconds:.0f} s")
        # written after every stage: an interrupted run still records the stages it measured
        _write(rows, defaults, time.perf_counter() - started, done=i == len(demo_cli.STAGES))
    total = time.perf_counter() - started
    print(f"total {total:.0f} s ({total / BUDGET_S:.2f} x budget)")
    return 0


def _write(rows: list[dict], defaults: dict, total: float, *, done: bool) -> None:
    table = [*rows, {"#": "", "stage": "**total**" if done else "**so far (run incomplete)**",
                     "seconds": f"**{total:.0f}**", "summary": ""}]
    verdict = ("within" if total <= BUDGET_S else "OVER") + " budget"
    body = (f"Demo defaults: {defaults}. {'Total' if done else 'Incomplete run, so far'} {total:.0f} s = "
            f"{total / BUDGET_S:.2f} x the {BUDGET_S // 60}-minute budget ({verdict}). The machine may be shared "
            "with other work while it runs: stage times are upper bounds.\n\n" + markdown_table(table))
    write_section("demo", "`make demo` wall time (stage by stage)", body, "python -m bench.bench_demo")


if __name__ == "__main__":
    raise SystemExit(main())
