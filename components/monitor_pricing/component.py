"""KFP component: monitor live pricing over a window of decisions (all logic in ``aigp.monitoring.figures`` and
``aigp.monitoring.job``)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def monitor_pricing(
    reference: Input[Dataset],
    decisions: Input[Dataset],
    report: Output[HTML],
    drift_report: Output[HTML],
    outputs: Output[Artifact],
    metrics: Output[Metrics],
    window_days: int = 1,
    end_date: str = "",
    config_yaml: str = "",
    drift_engine: str = "",
    pushgateway: str = "",
) -> int:
    """Compare the last ``window_days`` of ``decisions`` (a decisions parquet file/folder, ending at
    ``end_date``, default its last day) with ``reference`` (a market log directory = the training window,
    or a decisions log). Returns the number of alerts firing.

    ``report``: the summary page (alerts, figures, plots); ``drift_report``: Evidently's report (with
    ``drift_engine`` "evidently", the default; "scipy": same figures, no report; "" = the config's);
    ``outputs``: every file of the run (summary.json, metrics.prom, plots/); ``config_yaml``: a
    MonitorConfig as YAML text ("" = defaults); ``pushgateway``: where the gauges are pushed ("" = the
    ``AIGP_PUSHGATEWAY_URL`` environment, which the cluster sets from the ConfigMap aigp-monitoring; neither
    = no push).
    """
    import math
    import os
    import shutil
    from pathlib import Path

    import yaml

    from aigp.monitoring.figures import MonitorConfig
    from aigp.monitoring.job import run_from_paths

    cfg = MonitorConfig.build(**(yaml.safe_load(config_yaml) or {})).with_updates(window_days=window_days)
    if drift_engine:
        cfg = cfg.with_updates(drift_engine=drift_engine)
    result = run_from_paths(reference.path, decisions.path, outputs.path, config=cfg, end=end_date or None,
                            pushgateway=pushgateway or os.environ.get("AIGP_PUSHGATEWAY_URL") or None,
                            log=print)
    out = Path(outputs.path)
    shutil.copyfile(out / "index.html", report.path)
    if (out / "drift_report.html").exists():
        shutil.copyfile(out / "drift_report.html", drift_report.path)
    else:
        Path(drift_report.path).write_text("<html><body><p>Evidently report not rendered (drift_engine: scipy).</p>"
                                           "</body></html>\n")
    summary = result.summary
    figures = {
        "decisions": summary["safety"]["decisions"],
        "fallback_rate": summary["safety"]["fallback_rate"],
        "parse_failure_rate": summary["safety"]["parse_failure_rate"],
        "projection_rate": summary["safety"]["projection_rate"],
        "drift_share": summary["drift"]["share"],
        "category_mix_psi": summary["category_mix"]["psi"],
        "action_mean_shift": summary["actions"]["mean_change_shift"],
        "small_move_share": summary["stability"]["current"]["small_move_share"],
        "alerts_firing": len(result.firing),
    }
    for name, value in figures.items():
        if value is not None and math.isfinite(float(value)):
            metrics.log_metric(name, float(value))
    outputs.metadata.update({"window_start": summary["window"]["start"], "window_end": summary["window"]["end"],
                             "firing": result.firing})
    return len(result.firing)
