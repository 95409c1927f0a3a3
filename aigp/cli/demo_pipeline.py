"""`aigp demo` stage: the Kubeflow training pipeline, run locally on the demo's market, then the registry.

Runs ``pipelines/training_pipeline.py`` under kfp.local (what ``aigp pipeline run --local`` does) with the
``demo`` preset (compact [ACT_ONLY] prompts, a few thousand greedy teacher answers, full fine-tuning of the
tiny from-scratch model): features -> training sets -> LTVE -> teacher distillation -> SFT -> candidates -> pairs ->
DPO (or, with no pair, the SFT model, said) -> offline gate -> registration. A model trained for minutes on
2 CPU cores does not write full reasoning a judge accepts, and its A/B on a 10-SKU cohort is noise, so the demo
gate switches the format/judge/A/B floors off and SAYS SO (the gate report lists every check it skipped and
why), and prints what the production thresholds decide on the same metrics. The floor on the share of SKUs the
model prices itself (``min_model_action_share``) cannot be switched off: a model that writes no parsable action
fails the demo gate too. Only in the demo is the registered version then approved and promoted automatically, loudly,
so the serving stage that follows has a champion to serve.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aigp.cli.demo_context import DemoContext

# The demo's model (minutes of CPU training) writes a parsable action on every row, so the parse-failure floor and
# the model-action-share floor (which cannot be switched off) stay on; it proposes outside A_safe on some rows
# (Ψ projects them), writes no reasoning for the judge and gets no A/B before the gate: those floors are off.
DEMO_FLOORS = "floors: {min_compliance_rate: null, min_judge_score: null, min_ab_gmv_uplift: null}"
DEMO_BY = "aigp-demo (automatic)"


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[Path]:
    """Send stdout and stderr to ``path`` for the block: ``sys.stdout``/``sys.stderr`` (kfp.local's logger and
    the task output it relays with print) and file descriptors 1 and 2 (anything a subprocess writes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    with open(path, "a", encoding="utf-8", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
        try:
            yield path
        finally:
            log.flush()
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            os.close(saved_fds[0])
            os.close(saved_fds[1])


_TASK_STATE = re.compile(r"Task '([^']+)' finished with status (\S+)")


def task_lines(log_path: Path) -> list[str]:
    """One line per task of the kfp.local log: its name and final status."""
    if not log_path.exists():
        return []
    text = re.sub(r"\x1b\[[0-9;]*m", "", log_path.read_text(errors="replace"))
    return [f"{name}: {status}" for name, status in _TASK_STATE.findall(text)]


def stage_training_pipeline(ctx: DemoContext) -> str:
    import yaml

    from aigp.cli._common import console
    from aigp.gate import GateConfig, decide
    from aigp.pipelines.runner import PRESETS, latest_output, local_parameters, run_local
    from aigp.pricing import DEFAULT_MODEL_NAME
    from aigp.registry.model_registry import ModelRegistry

    root = Path(ctx.root) / "pipeline"
    preset = PRESETS[ctx.pipeline_size].arguments()
    preset["gate_config_yaml"] = preset["gate_config_yaml"] + "\n" + DEMO_FLOORS
    params = local_parameters(ctx.market.path, seed=ctx.seed, **preset)
    console.print("[bold yellow]DEMO GATE:[/] the compliance, judge and A/B floors are OFF in the demo (a "
                  "minutes-old CPU model proposes outside A_safe on some rows, which Ψ projects, and writes no "
                  "reasoning for the judge); the parse-failure and model-action floors stay on. The production "
                  "verdict on the same metrics is printed below.")
    log_path = root / "kfp-local.log"
    console.print(f"kfp.local runs every task as a subprocess; its output (each task's inputs, logs) -> {log_path}")
    try:
        with output_to(log_path):
            run_local("training", params, root)
        error = None
    except RuntimeError as exc:  # the gate (or a step) failed the run: show why, promote nothing
        error = f"{exc} (the tasks' output: {log_path})"
    for line in task_lines(log_path):
        console.print(f"[dim]kfp.local[/] {line}")
    gate_json = latest_output(root, "offline-gate*", "gate_json")
    gate_html = latest_output(root, "offline-gate*", "report.html")
    report = json.loads(gate_json.read_text()) if gate_json else None
    if report is not None:
        production = decide(report["candidate"], report.get("champion"), GateConfig())
        failed = [c.reason for c in production if c.status == "failed"]
        console.print(f"gate report: {gate_html}")
        share = report["candidate"].get("model_action_share")
        console.print("share of the gate's rows the model priced itself (not the hold fallback): "
                      + (f"{share:.0%}" if share is not None else "not measured"))
        for line in report.get("skipped", []):
            console.print(f"[yellow]not checked:[/] {line}")
        console.print("production thresholds on the same metrics: "
                      + ("passed" if not failed else "FAILED: " + "; ".join(failed)))
    if error is not None:
        console.print(f"[bold red]training pipeline failed:[/] {error}")
        return f"pipeline failed, nothing registered or promoted -> {gate_html or root}"
    assert report is not None and gate_json is not None
    output = json.loads((gate_json.parents[1].glob("register-model*/executor_output.json").__next__()).read_text())
    registry = ModelRegistry()
    info = registry.get(DEFAULT_MODEL_NAME, int(output["parameterValues"]["Output"]))
    banner = "[bold red]" + "!" * 100 + "[/]"
    console.print(banner)
    console.print(f"[bold red]DEMO ONLY: auto-approving and promoting {info.name} v{info.version} to champion.[/] "
                  "In production a person reads the gate report and runs `aigp registry approve` / `promote`.")
    console.print(banner)
    reason = (f"AUTOMATIC DEMO APPROVAL of the demo pipeline's candidate (demo gate passed; production thresholds: "
              f"{'passed' if not failed else 'failed'}); never done outside `aigp demo`")
    registry.approve(info.name, info.version, by=DEMO_BY, reason=reason)
    promoted = registry.promote(info.name, info.version, by=DEMO_BY, reason=reason)
    ctx.pipeline_gate_report = gate_html
    ctx.promoted_version = promoted.version
    # Serve the champion as the gate evaluated it: the CPU-sized demo model is aligned in [ACT_ONLY] mode on short
    # prompts, and in full-reasoning mode it would write noise up to the completion cap for every SKU.
    policy = yaml.safe_load(preset["gate_config_yaml"]).get("policy", {})
    ctx.serving_prompt = policy.get("prompt", {})
    ctx.serving_max_tokens = policy.get("generation", {}).get("max_new_tokens")
    steps = report.get("context", {}).get("training_steps", "?")
    window = yaml.safe_dump(list(info.data_window), default_flow_style=True).strip()
    return (f"gate {report['status']} (demo thresholds; production: {'passed' if not failed else 'failed'}), "
            f"{info.name} v{promoted.version} [{steps}] data {window} registered, AUTO-approved and promoted to "
            f"champion (demo only) -> {gate_html}")
