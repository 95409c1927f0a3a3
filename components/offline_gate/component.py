"""KFP component: the offline gate (all logic in ``aigp.gate``)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def offline_gate(
    candidate: Input[Model],
    heldout_set: Input[Dataset],
    ltve_model: Input[Model],
    report: Output[HTML],
    gate_json: Output[Artifact],
    metrics: Output[Metrics],
    config_yaml: str = "",
    market_logs: Input[Dataset] = None,
    model_name: str = "aigp-pricing",
    compare_champion: bool = True,
    critic_evaluation: Input[Artifact] = None,
) -> str:
    """Evaluate ``candidate`` on the held-out cohort ``heldout_set`` (parquet with labels, from
    build_training_sets): Avg Q (with ``ltve_model``), MAE, EAMA, EAMA-R, KIPS, parse failures, A_safe
    compliance before projection, the rule judge's score and, when ``market_logs`` is the simulator log
    the data came from, a simulated paired A/B vs price-sales (``ab.enabled`` in the config). Thresholds:
    ``config_yaml`` (an ``aigp.gate.GateConfig`` as YAML, "" = defaults). With ``compare_champion`` the
    registry's ``champion`` of ``model_name`` (if any) is evaluated on the same rows for the non-inferiority
    margins. ``critic_evaluation`` (evaluate_ltve's ``evaluation``) puts the critic's diagnostics beside Avg Q.

    Writes ``report`` (HTML, its uri ending in ``.html``) and ``gate_json`` (the JSON report); returns ``"passed"`` or
    ``"failed: <reasons>"`` -- the pipeline registers on ``"passed"`` and stops with the reasons otherwise.
    """
    import json
    import shutil
    import tempfile
    from pathlib import Path

    import pandas as pd
    import yaml

    from aigp.gate import GateConfig, evaluate_candidate
    from aigp.gate_report import write_gate_report
    from aigp.ltve.artifact import load_model

    cfg = GateConfig.build(**(yaml.safe_load(config_yaml) or {}))
    heldout = pd.read_parquet(heldout_set.path)
    champion_dir, champion_version = None, ""
    no_champion = "switched off: compare_champion is false in this run"  # the margins' skip reason
    if compare_champion:
        from aigp.registry.model_registry import RegistryError, resolve

        try:
            champion = resolve(model_name, "champion")
        except RegistryError as exc:  # no registered model or no champion yet: margins are skipped
            no_champion = f"no champion of {model_name} in the registry to compare with ({exc})"
            print(f"offline_gate: {no_champion}")
        else:
            from aigp.registry import storage

            champion_version = str(champion.version)
            champion_dir = storage.localize(champion.storage_uri)
    from aigp.align.generation import lineage

    steps = [str(s.get("step")) for s in lineage(candidate.path)]
    critic = ({"critic": json.loads(Path(critic_evaluation.path).read_text())} if critic_evaluation is not None
              else {})
    result = evaluate_candidate(candidate.path, heldout, cfg, ltve=load_model(ltve_model.path),
                                champion_dir=champion_dir, champion_version=champion_version,
                                logs_dir=market_logs.path if market_logs is not None else None, no_champion=no_champion,
                                context={"candidate_uri": candidate.uri, "heldout_uri": heldout_set.uri,
                                         "training_steps": " -> ".join(steps) or "unknown", **critic})
    # KFP names an output's file after the output ("report"); an .html name makes the object store, the KFP UI's
    # download and MLflow serve it as a page. KFP's launcher (and kfp.local) keep the uri a component sets.
    if not report.uri.endswith(".html"):
        report.uri += ".html"
    with tempfile.TemporaryDirectory(prefix="aigp-gate-") as out:
        gate = write_gate_report(result, out)
        Path(report.path).parent.mkdir(parents=True, exist_ok=True)
        Path(gate_json.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(gate.html_path, report.path)
        shutil.copyfile(gate.json_path, gate_json.path)
    gate_json.metadata.update({"passed": result.passed, "reasons": result.reasons})
    for name, value in result.candidate.items():
        if isinstance(value, float) and value == value:
            metrics.log_metric(name, value)
    metrics.log_metric("gate_passed", 1.0 if result.passed else 0.0)
    return "passed" if result.passed else result.summary()
