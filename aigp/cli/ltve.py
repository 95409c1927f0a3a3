"""`aigp ltve train | evaluate`: the Long-Term Value Estimator from a market log or a training-set parquet."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aigp.cli._common import console, user_errors

if TYPE_CHECKING:
    from aigp.cli.demo_context import DemoContext

app = typer.Typer(no_args_is_help=True, help="Long-Term Value Estimator: train and evaluate the offline-RL critic.")

EXPERIMENT = "ltve"


def load_frame(logs: Path | None, training_set: Path | None) -> Any:
    """The training frame from a market log directory or a training-set parquet (e.g. Feast's ltve_training)."""
    import pandas as pd

    from aigp.ltve.dataset import prepare_frame, training_frame_from_logs

    if (logs is None) == (training_set is None):
        raise ValueError("give exactly one of --logs (a market log directory) or --training-set (a parquet file)")
    if logs is not None:
        return training_frame_from_logs(logs)
    assert training_set is not None
    if not training_set.exists():
        raise FileNotFoundError(f"training set {training_set} does not exist")
    return prepare_frame(pd.read_parquet(training_set))


@app.command("train")
@user_errors
def train(
    out: Annotated[Path, typer.Option(help="artifact directory to write")],
    logs: Annotated[Path | None, typer.Option(help="market log directory (aigp simulate)")] = None,
    training_set: Annotated[Path | None, typer.Option(help="parquet with the ltve_training columns")] = None,
    config: Annotated[Path | None, typer.Option(help="LTVETrainConfig YAML")] = None,
    kind: Annotated[str | None, typer.Option(help="ltve (Algorithm 1) or cql")] = None,
    steps: Annotated[int | None, typer.Option(help="gradient updates")] = None,
    n_steps: Annotated[int | None, typer.Option(help="TD horizon n")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
    track: Annotated[bool, typer.Option(help="log params and metrics to MLflow")] = True,
) -> None:
    """Fit the critic on the training window and write the artifact (weights, config, normaliser, metrics)."""
    from aigp.ltve.artifact import save_model
    from aigp.ltve.train import LTVETrainConfig, train_ltve

    cfg = LTVETrainConfig.from_yaml(config) if config else LTVETrainConfig()
    critic = dict(cfg.critic) | {k: v for k, v in {"steps": steps, "n_steps": n_steps}.items() if v is not None}
    cfg = cfg.with_updates(critic=critic, **{k: v for k, v in {"kind": kind, "threads": threads}.items()
                                             if v is not None})
    frame = load_frame(logs, training_set)
    console.print(f"training {cfg.kind} on {len(frame):,} rows")
    with _tracking(track, f"train-{cfg.kind}", _flat({"train": cfg.model_dump(mode="json")})) as log:
        result = train_ltve(frame, cfg, callback=log, progress=True)
        save_model(result.model, out)
        log(None, result.model.metrics)
        _log_artifacts(track, out)
    m = result.model.metrics
    console.print(f"{m['train/transitions']:,} transitions, {m['train/steps']:,} updates at "
                  f"{m['train/transitions_per_s']:,.0f} transitions/s; validation TD MSE "
                  f"{m.get('validation/td_mse', float('nan')):.4g} -> {out}")


@app.command("evaluate")
@user_errors
def evaluate(
    model: Annotated[Path, typer.Option(help="artifact directory (aigp ltve train)")],
    out: Annotated[Path, typer.Option(help="report directory")],
    logs: Annotated[Path | None, typer.Option(help="market log directory; enables the Monte-Carlo check")] = None,
    training_set: Annotated[Path | None, typer.Option(help="frame parquet (no Monte-Carlo check)")] = None,
    config: Annotated[Path | None, typer.Option(help="EvaluationConfig YAML")] = None,
    mc_states: Annotated[int | None, typer.Option(help="states branched in the Monte-Carlo check")] = None,
    monte_carlo: Annotated[bool, typer.Option(help="run the Monte-Carlo check (needs --logs)")] = True,
    track: Annotated[bool, typer.Option(help="log metrics to MLflow")] = True,
) -> None:
    """Held-out metrics: MAE, EAMA, CDA (+ slices), Q deciles vs outcomes, Monte-Carlo ground truth."""
    from aigp.ltve.artifact import load_model
    from aigp.ltve.evaluate import EvaluationConfig, evaluate_model

    cfg = EvaluationConfig.from_yaml(config) if config else EvaluationConfig()
    mc = cfg.monte_carlo.with_updates(enabled=monte_carlo and cfg.monte_carlo.enabled,
                                      **({"states": mc_states} if mc_states is not None else {}))
    cfg = cfg.with_updates(monte_carlo=mc.model_dump())
    critic = load_model(model)
    frame = load_frame(logs, training_set)
    params = _flat({"evaluate": cfg.model_dump(mode="json"), "model": str(model), "kind": critic.kind})
    with _tracking(track, f"evaluate-{critic.kind}", params) as log:
        report = evaluate_model(critic, frame, cfg, log_dir=logs, progress=True)
        report.write(out)
        log(None, report.metrics)
        _log_artifacts(track, out)
    shown = ("mae", "eama", "cda", "cda_cold_start", "cda_boundary", "spearman_decile_gmv_14d", "mc_spearman",
             "mc_spearman_within_state_gap", "mc_pairwise_accuracy_gap", "mc_cda_vs_truth", "mc_regret",
             "mc_calibration_slope")
    console.print(" ".join(f"{k}={report.metrics[k]:.4g}" for k in shown if k in report.metrics) + f" -> {out}")


class _tracking:
    """An MLflow run (or nothing) whose ``log(step, metrics)`` logs metrics."""

    def __init__(self, enabled: bool, run_name: str, params: dict[str, Any]):
        self.enabled, self.run_name, self.params = enabled, run_name, params
        self._run: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda step, metrics: None
        from aigp.registry.tracking import log_metrics, tracked_run

        self._run = tracked_run(EXPERIMENT, self.run_name, self.params)
        self._run.__enter__()

        def log(step: int | None, metrics: dict[str, Any]) -> None:
            log_metrics(metrics, step=step)

        return log

    def __exit__(self, *exc: Any) -> None:
        if self._run is not None:
            self._run.__exit__(*exc)


def _log_artifacts(track: bool, path: Path) -> None:
    if track:
        from aigp.registry.tracking import log_artifacts

        log_artifacts(path, artifact_path=path.name)


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{name}.")
        else:
            out[name] = value
    return out


def stage_ltve(ctx: DemoContext) -> str:
    """Demo stage: train the LTVE on the demo's market log and evaluate it on the held-out cohort."""
    from aigp.ltve.artifact import save_model
    from aigp.ltve.dataset import training_frame_from_logs
    from aigp.ltve.evaluate import EvaluationConfig, evaluate_model
    from aigp.ltve.train import LTVETrainConfig, train_ltve

    logs = ctx.market
    frame = training_frame_from_logs(logs.path)
    result = train_ltve(frame, LTVETrainConfig(critic={"steps": ctx.ltve_steps}), progress=True)
    model_dir = save_model(result.model, ctx.root / "ltve")
    report = evaluate_model(result.model, frame, EvaluationConfig(monte_carlo={"states": 200, "rollouts": 8}),
                            log_dir=logs.path, progress=True)
    report.write(ctx.root / "ltve_eval")
    ctx.ltve = model_dir
    m = report.metrics
    return (f"{result.model.metrics['train/transitions']:,} transitions, EAMA {m['eama']:.1%}, CDA {m['cda']:.1%}, "
            f"MC Spearman {m.get('mc_spearman', float('nan')):.2f} -> {model_dir}")
