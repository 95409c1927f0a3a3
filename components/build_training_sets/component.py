"""KFP component: point-in-time training sets from the feature store, split by launch date into training SKUs
and the held-out cohort of the offline gate (logic in ``aigp.training_sets`` and ``aigp.feature_repo.store``)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def build_training_sets(
    feature_data: Input[Dataset],
    start: str,
    end: str,
    training_set: Output[Dataset],
    prompt_rows: Output[Dataset],
    heldout_set: Output[Dataset],
    metrics: Output[Metrics],
    holdout_from: str = "",
    holdout_share: float = 0.2,
    max_prompt_rows: int = 0,
    seed: int = 0,
) -> str:
    """One point-in-time join (Feast ``llm_prompt`` service: every feature as of each decision time, plus the
    decision's action and outcome labels) of the decisions priced in ``[start, end)`` (ISO dates), split by
    SKU launch date: SKUs launched before ``holdout_from`` (ISO date; "" = the latest ``holdout_share`` of
    SKUs are held out) train, the others are the held-out cohort.

    ``training_set``: parquet, rows of the training SKUs (the LTVE trains on it); ``prompt_rows``: parquet,
    the same rows (a seeded sample of ``max_prompt_rows`` when > 0) for teacher prompts and sampling;
    ``heldout_set``: parquet, every row of the held-out SKUs. Returns the held-out cohort's first launch day.
    """
    import datetime as dt
    import tempfile
    from pathlib import Path

    from aigp.feature_repo.store import open_store
    from aigp.io import write_parquet
    from aigp.training_sets import SplitConfig, split_training_sets

    config = SplitConfig.build(holdout_from=dt.date.fromisoformat(holdout_from) if holdout_from else None,
                               holdout_share=holdout_share, max_prompt_rows=max_prompt_rows, seed=seed)
    with tempfile.TemporaryDirectory(prefix="aigp-feast-") as state:  # the input artifact stays read-only
        store = open_store(feature_data=Path(feature_data.path), state_dir=Path(state))
        store.apply()
        frame = store.training_set(dt.date.fromisoformat(start), dt.date.fromisoformat(end), "llm_prompt")
        store.close()
    sets = split_training_sets(frame, config)
    write_parquet(training_set.path, sets.training)
    write_parquet(prompt_rows.path, sets.prompts)
    write_parquet(heldout_set.path, sets.heldout)
    window = f"[{start}, {end})"
    for artifact, rows in ((training_set, sets.training), (prompt_rows, sets.prompts), (heldout_set, sets.heldout)):
        artifact.metadata.update({"rows": len(rows), "window": window, "holdout_from": str(sets.holdout_from)})
    for name, value in sets.metrics().items():
        metrics.log_metric(name, value)
    return str(sets.holdout_from)
