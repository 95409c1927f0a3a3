"""`aigp distill`: teacher generation + judge filter -> a distillation set (paper §3.2)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from aigp.cli._common import console, user_errors

if TYPE_CHECKING:
    from aigp.cli.demo_context import DemoContext


def _endpoint(url: str | None, model: str | None, role: str, concurrency: int) -> dict | None:
    if url is None and model is None:
        return None
    if url is None or model is None:
        raise ValueError(f"--{role}-url and --{role}-model go together (got url={url!r}, model={model!r})")
    return {"base_url": url, "model": model, "concurrency": concurrency}


@user_errors
def distill(
    source: Annotated[Path, typer.Option(
        "--logs", "--rows",
        help="market log directory or prompt-rows parquet (e.g. a Feast llm_prompt training set)",
    )] = Path("runs/market"),
    out: Annotated[Path, typer.Option(help="directory for distill.jsonl, rejected.jsonl, manifest.json")] = Path(
        "runs/distill"),
    config: Annotated[Path | None, typer.Option(help="DistillConfig YAML; flags override it")] = None,
    n: Annotated[int | None, typer.Option("--n", help="prompt rows to sample")] = None,
    seed: Annotated[int | None, typer.Option(help="sampling seed")] = None,
    start: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="first day priced")] = None,
    end: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="end of the window (exclusive)")] = None,
    samples: Annotated[int | None, typer.Option(help="teacher samples per prompt")] = None,
    temperature: Annotated[float | None, typer.Option(help="teacher sampling temperature")] = None,
    act_only: Annotated[bool, typer.Option(help="[ACT_ONLY] prompts (JSON action only)")] = False,
    no_kb: Annotated[bool, typer.Option(help="ablation: prompts without the knowledge base")] = False,
    no_diag: Annotated[bool, typer.Option(help="ablation: prompts without the diagnosis report")] = False,
    max_prompt_tokens: Annotated[int | None, typer.Option(help="prompt token budget")] = None,
    tokenizer: Annotated[str | None, typer.Option(help="model whose tokenizer counts the budget")] = (
        None),
    teacher_url: Annotated[str | None, typer.Option(help="OpenAI-compatible teacher API root (default: built-in)")] = (
        None),
    teacher_model: Annotated[str | None, typer.Option(help="served teacher model name")] = None,
    judge_url: Annotated[str | None, typer.Option(help="OpenAI-compatible judge API root (rules only if unset)")] = (
        None),
    judge_model: Annotated[str | None, typer.Option(help="served judge model name")] = None,
    concurrency: Annotated[int, typer.Option(help="requests in flight per endpoint")] = 4,
    track: Annotated[bool, typer.Option(help="log parameters and metrics to an MLflow run")] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Generate teacher reasoning for sampled prompts, judge it, keep the perfect ones."""
    from aigp.distillation.distill import DistillConfig, run_distill
    from aigp.io import write_json

    cfg = DistillConfig.from_yaml(config) if config else DistillConfig()
    prompt = cfg.prompt.model_dump()
    prompt.update({k: v for k, v in {"act_only": act_only or None, "include_knowledge": False if no_kb else None,
                                     "include_diagnosis": False if no_diag else None,
                                     "max_prompt_tokens": max_prompt_tokens}.items() if v is not None})
    overrides = {"n_prompts": n, "seed": seed, "start": start.date() if start else None,
                 "end": end.date() if end else None, "samples_per_prompt": samples, "temperature": temperature,
                 "tokenizer": tokenizer,
                 "teacher_endpoint": _endpoint(teacher_url, teacher_model, "teacher", concurrency),
                 "judge_endpoint": _endpoint(judge_url, judge_model, "judge", concurrency)}
    cfg = cfg.with_updates(prompt=prompt, **{k: v for k, v in overrides.items() if v is not None})
    result = run_distill(source, out, cfg, progress=progress)
    metrics = result.filter.metrics()
    write_json(out / "metrics.json", metrics)
    if track:
        from aigp.registry.tracking import log_artifacts, log_metrics, tracked_run

        with tracked_run("aigp-distill", f"distill-{cfg.prompt.mode}", params=cfg.model_dump(mode="json")):
            log_metrics(metrics)
            log_artifacts(out / "manifest.json")
    table = Table(title=f"distillation set: {out}")
    table.add_column("")
    table.add_column("value", justify="right")
    report = result.filter.report
    table.add_row("generations", f"{result.generations:,}")
    table.add_row("kept (5/5 x 4, in A_safe)", f"{report.kept:,} ({report.keep_rate:.1%})")
    for dim, count in report.failures.items():
        table.add_row(f"failed {dim}", f"{count:,}")
    if result.filter.failed_generations:
        table.add_row("teacher errors", f"{result.filter.failed_generations:,}")
    console.print(table)


# ---------------------------------------------------------------------------------------------------------
# demo stages (registered in aigp/cli/demo.py STAGES)


def stage_base_model(ctx: DemoContext) -> str:
    """The `small` base model: a tokenizer trained on prompts (full and [ACT_ONLY]) and teacher responses
    from the logs, a Qwen3 config; SFT and DPO start from it."""
    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.llm.model_factory import BaseModelConfig, build_base_model, model_metadata
    from aigp.llm.prompt import PromptConfig, build_prompt
    from aigp.llm.rows import load_prompt_rows

    teacher, corpus = KnowledgeBaseTeacher(), []
    for row in load_prompt_rows(ctx.market.path, n=ctx.corpus_prompts, seed=ctx.seed + 1).to_dict(
            "records"):
        for cfg in (PromptConfig(), PromptConfig(act_only=True)):
            prompt = build_prompt(row, cfg)
            corpus += [prompt.system, prompt.user, teacher.respond(prompt).text]
    path = build_base_model(ctx.root / "base_model", corpus, BaseModelConfig(size="small", seed=ctx.seed),
                            overwrite=True)
    ctx.base_model = path
    meta = model_metadata(path)
    return f"Qwen3 `small`: {meta['parameters']:,} parameters, vocabulary {meta['vocab_size']:,} -> {path}"


def stage_distill(ctx: DemoContext) -> str:
    """Teacher reasoning for 300 logged decisions within the base model's prompt budget, judged; the kept
    pairs are the SFT data."""
    from aigp.distillation.distill import DistillConfig, run_distill
    from aigp.llm.model_factory import SIZES

    cfg = DistillConfig.build(n_prompts=ctx.distill_prompts, seed=ctx.seed,
                              prompt={"max_prompt_tokens": SIZES["small"].prompt_budget},
                              tokenizer=str(ctx.base_model))
    result = run_distill(ctx.market.path, ctx.root / "distill", cfg, progress=True)
    ctx.distill = result
    report = result.filter.report
    return (f"{report.kept} of {result.generations} teacher responses kept ({report.keep_rate:.0%}, 5/5 on all four "
            f"judge dimensions) -> {result.out_dir}")
