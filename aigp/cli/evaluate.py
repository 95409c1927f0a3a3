"""`aigp evaluate`: the paper's evaluation reproduced end to end on the simulator (``aigp.evaluation``)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from aigp.cli._common import console, user_errors


@user_errors
def evaluate(
    out: Annotated[Path, typer.Option(help="markdown report to write (an .html twin is written beside it)")] = Path(
        "EVALUATION.md"),
    work_dir: Annotated[Path, typer.Option(help="market log, models and raw results")] = Path("runs/evaluation"),
    config: Annotated[Path | None, typer.Option(help="EvaluationSettings YAML")] = None,
    quick: Annotated[bool, typer.Option(help="tiny sizes (tests): every table, numbers not meaningful")] = False,
    llm_model: Annotated[list[str] | None, typer.Option(
        help="VARIANT=DIR of a trained model (base, sft_only, dpo_only, fullseq, sft_dpo); repeatable")] = None,
    align: Annotated[bool, typer.Option(help="train the LLM variants with aigp.align when it provides them")] = True,
    label: Annotated[str | None, typer.Option(help="name of this configuration in the report")] = None,
    render_only: Annotated[Path | None, typer.Option(
        help="re-write the report from a results.json of an earlier run (nothing is re-run)")] = None,
    command_line: Annotated[str | None, typer.Option(
        help="with --render-only: the command that made the results, if results.json lacks it")] = None,
) -> None:
    """Simulate, train and measure; write Tables 2-5 and 7, Fig. 3-5 and the judge scores beside the paper's."""
    from aigp.evaluation.harness import (
        EvaluationSettings,
        findings,
        llm_alignment_hook,
        load_results,
        run_evaluation,
        write_report,
    )

    if render_only is not None:
        if not render_only.exists():
            raise FileNotFoundError(f"--render-only {render_only}: no such results.json")
        ev = load_results(render_only)
        command = ev.record.get("command") or command_line or (
            f"aigp evaluate (configuration `{ev.settings.label}`, recorded below)")
        md, html = write_report(ev, out, command=command, findings=findings(ev))
        console.print(f"re-wrote {md} and {html} from {render_only}")
        return
    settings = EvaluationSettings.from_yaml(config) if config else (
        EvaluationSettings.quick() if quick else EvaluationSettings())
    models = dict(settings.llm_models)
    for item in llm_model or []:
        variant, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--llm-model {item!r}: expected VARIANT=DIR")
        models[variant] = path
    settings = settings.with_updates(llm_models=models, **({"label": label} if label else {}))
    hook = llm_alignment_hook(settings) if align else None
    ev = run_evaluation(settings, work_dir, progress=True, llm_hook=hook)
    command = "aigp " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "aigp evaluate"
    ev.record["command"] = command
    md, html = write_report(ev, out, command=command, findings=findings(ev))
    console.print(f"wrote {md} and {html} in {ev.timings['total']:.0f} s")
