"""Log a step's parameters, metrics and artifacts to an MLflow run.

The tracking URI comes from ``MLFLOW_TRACKING_URI``; the embedded default is a SQLite store under
``runs/mlflow`` (the production value is a tracking server backed by Postgres and S3). MLflow is imported
inside the functions so that the core imports without it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

DEFAULT_ROOT = Path("runs/mlflow")


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    DEFAULT_ROOT.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_ROOT.resolve() / 'mlflow.db'}"


def _configure(experiment: str) -> Any:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    if mlflow.get_experiment_by_name(experiment) is None:
        artifact_root = os.environ.get("AIGP_MLFLOW_ARTIFACTS")
        if artifact_root is None and tracking_uri().startswith("sqlite:"):
            artifact_root = (Path(tracking_uri()[len("sqlite:///"):]).parent / "artifacts").as_uri()
        mlflow.create_experiment(experiment, artifact_location=artifact_root)
    mlflow.set_experiment(experiment)
    return mlflow


@contextlib.contextmanager
def tracked_run(experiment: str, run_name: str, params: Mapping[str, Any] | None = None,
                tags: Mapping[str, str] | None = None) -> Iterator[Any]:
    """An MLflow run as a context manager; yields the active run (``run.info.run_id``)."""
    mlflow = _configure(experiment)
    with mlflow.start_run(run_name=run_name, tags=dict(tags or {})) as run:
        if params:
            mlflow.log_params({k: _param(v) for k, v in params.items()})
        yield run


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    import math

    import mlflow

    clean = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(float(v))}
    if clean:
        mlflow.log_metrics(clean, step=step)


def log_artifacts(path: str | Path, artifact_path: str | None = None) -> None:
    import mlflow

    path = Path(path)
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path=artifact_path)
    else:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def _param(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 500 else text[:497] + "..."


def step_tracker(experiment: str | None) -> Callable[[str, Any], contextlib.AbstractContextManager[Any]] | None:
    """The tracker ``aigp.align.steps`` runs a step in: an MLflow run named after the step, with its config as a
    parameter and a metrics callback; None (no tracking) when ``experiment`` is empty."""
    if not experiment:
        return None
    name = experiment

    @contextlib.contextmanager
    def track(run_name: str, config: Any) -> Iterator[Callable[[int | None, Mapping[str, float]], None]]:
        def log(step: int | None, values: Mapping[str, float]) -> None:
            log_metrics({k.replace("/", "_"): v for k, v in values.items()}, step=step)

        with tracked_run(name, run_name, {"config": config.model_dump_json()}):
            yield log

    return track
