"""KFP component: teacher generations for sampled prompts (all logic in ``aigp.distillation.distill``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def teacher_generate(
    prompt_source: Input[Dataset],
    generations: Output[Dataset],
    metrics: Output[Metrics],
    config_yaml: str = "",
    n_prompts: int = 0,
) -> int:
    """Sample prompt rows from ``prompt_source`` (a market log directory or a prompt-rows parquet, e.g. a
    training set of the Feast ``llm_prompt`` service), build the prompts and write one teacher completion
    per prompt and sample to ``generations`` (JSON lines). Returns the number of generations.

    ``config_yaml``: a DistillConfig as YAML text ("" = defaults: the built-in teacher; set
    ``teacher_endpoint`` for a served one); ``n_prompts`` > 0 overrides its ``n_prompts``.
    """
    import yaml

    from aigp.distillation.distill import DistillConfig, data_window, generate, write_jsonl
    from aigp.llm.rows import load_prompt_rows

    cfg = DistillConfig.build(**(yaml.safe_load(config_yaml) or {}))
    if n_prompts > 0:
        cfg = cfg.with_updates(n_prompts=n_prompts)
    rows = load_prompt_rows(prompt_source.path, n=cfg.n_prompts, seed=cfg.seed, start=cfg.start, end=cfg.end)
    records = generate(rows, cfg, window=data_window(prompt_source.path, rows, cfg))
    write_jsonl(generations.path, records)
    errors = sum(r["completion"] is None for r in records)
    generations.metadata.update({"records": len(records), "mode": cfg.prompt.mode,
                                 "teacher": records[0]["teacher"]["name"] if records else None})
    metrics.log_metric("generations", len(records))
    metrics.log_metric("teacher_errors", errors)
    return len(records)
