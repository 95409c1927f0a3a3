"""Monitoring benchmark: the job at scale, Evidently against plain scipy, false alarms and detection.

    .venv/bin/python -m bench.bench_monitoring [--decisions 200000] [--null-seeds 100] [--drill-seeds 5]

1. The monitoring job on ~200k current decisions (and a ~200k-decision reference) with every prompt feature:
   wall time per step and peak memory (each run in a child process, so its peak RSS is its own), with the
   Evidently report and with ``--no-html``.
2. Evidently's DataDriftPreset against a plain scipy two-sample test of the same columns on the same windows:
   time, and per column whether they agree (scipy Wasserstein normed like Evidently's; and scipy KS, which
   at this size flags differences no one would act on).
3. False alarms: windows drawn from the reference distribution (independent markets over the same dates),
   many seeds, the default thresholds; what calibration on those windows suggests; and each drill's
   detection rate (the right alert) and collateral rate (any other alert) over several seeds.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from aigp.ltve.diagnostics import wilson_interval
from bench._report import markdown_table, write_section


def _child_job(reference: str, current: str, out: str, html: bool) -> None:
    """Run in a child process: the job on two decisions parquets; prints its timings as JSON."""
    from aigp.decisions import load_decisions
    from aigp.monitoring.figures import MonitorConfig
    from aigp.monitoring.job import run_monitoring

    started = time.perf_counter()
    ref, cur = load_decisions(reference), load_decisions(current)
    loaded = time.perf_counter() - started
    engine = "evidently" if html else "scipy"
    result = run_monitoring(ref, cur, MonitorConfig(window_days=400, drift_engine=engine), out)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load": loaded, **result.summary["seconds"], "peak_mib": peak_mib,
                      "rows": [len(ref), len(cur)], "columns": len(result.figures.drift)}))


def _run_child(reference: Path, current: Path, out: Path, html: bool) -> dict:
    command = [sys.executable, "-m", "bench.bench_monitoring", "--child", str(reference), str(current), str(out),
               "1" if html else "0"]
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["wall"] = time.perf_counter() - started  # includes interpreter start and imports
    return report


def _traffic(seed: int, decisions: int):
    from aigp.monitoring.drills import DrillConfig, simulated_traffic

    cfg = DrillConfig()
    return simulated_traffic(cfg, seed, int(np.ceil(decisions / 14)))


def scale_section(decisions: int, root: Path) -> tuple[str, dict]:
    from aigp.io import write_parquet

    t = time.perf_counter()
    reference, current = _traffic(0, decisions), _traffic(1, decisions)
    simulated = time.perf_counter() - t
    write_parquet(root / "reference.parquet", reference)
    write_parquet(root / "current.parquet", current)
    rows = []
    results = {}
    for html in (True, False):
        r = _run_child(root / "reference.parquet", root / "current.parquet", root / f"out_{int(html)}", html)
        results[html] = r
        rows.append({"engine": "Evidently report" if html else "--no-html (scipy, same statistic)",
                     "reference rows": r["rows"][0], "current rows": r["rows"][1], "columns tested": r["columns"],
                     "load s": r["load"], "Evidently s": r.get("evidently", 0.0), "figures s": r["figures"],
                     "outputs s": r["outputs"], "job s": r["total"], "process wall s": r["wall"],
                     "peak RSS MiB": r["peak_mib"]})
    html_size = (root / "out_1" / "drift_report.html").stat().st_size / 2**20
    body = (f"Simulated traffic: {len(reference):,} reference and {len(current):,} current decisions "
            f"({simulated:.0f} s to simulate), every numeric prompt feature plus the action (d, a) and rationale "
            f"length; the whole current log is the window. Evidently's HTML report: {html_size:.1f} MiB.\n\n"
            + markdown_table(rows))
    return body, results


def agreement_section(decisions: int, root: Path) -> str:
    """Evidently vs scipy on the same windows and columns, in this process (imports excluded)."""
    from scipy import stats

    from aigp.decisions import load_decisions
    from aigp.monitoring.drift import evidently_drift
    from aigp.monitoring.figures import MonitorConfig, drift_columns, drift_score, is_drifted, prepare_windows

    cfg = MonitorConfig(window_days=400)
    prepared = prepare_windows(load_decisions(root / "reference.parquet"), load_decisions(root / "current.parquet"),
                               cfg)
    ref, cur = prepared.reference_sample, prepared.current
    columns = list(drift_columns(ref, cur, cfg))
    import evidently  # noqa: F401  (import time is not part of the comparison)

    t = time.perf_counter()
    ev = evidently_drift(ref, cur, columns, cfg)
    evidently_s = time.perf_counter() - t
    t = time.perf_counter()
    ev.save_html(root / "agreement.html")
    render_s = time.perf_counter() - t
    t = time.perf_counter()
    wasserstein = {c: drift_score(ref[c].to_numpy(), cur[c].to_numpy(), "wasserstein") for c in columns}
    scipy_w_s = time.perf_counter() - t
    t = time.perf_counter()
    ks = {}
    for c in columns:
        a, b = ref[c].to_numpy(np.float64), cur[c].to_numpy(np.float64)
        ks[c] = stats.ks_2samp(a[np.isfinite(a)], b[np.isfinite(b)]).pvalue
    scipy_ks_s = time.perf_counter() - t
    ev_flag = {c: is_drifted(ev.scores[c], "wasserstein", cfg.drift_threshold) for c in columns}
    w_flag = {c: is_drifted(wasserstein[c], "wasserstein", cfg.drift_threshold) for c in columns}
    ks_flag = {c: bool(ks[c] < 0.05) for c in columns}
    max_diff = max(abs(ev.scores[c] - wasserstein[c]) for c in columns)
    rows = [
        {"test": "Evidently DataDriftPreset (wasserstein, 0.15)", "seconds": evidently_s,
         "ratio to scipy W": evidently_s / scipy_w_s, "columns drifted": sum(ev_flag.values()),
         "agree with Evidently": f"{len(columns)}/{len(columns)}"},
        {"test": "scipy wasserstein_distance / std (same rule)", "seconds": scipy_w_s, "ratio to scipy W": 1.0,
         "columns drifted": sum(w_flag.values()),
         "agree with Evidently": f"{sum(ev_flag[c] == w_flag[c] for c in columns)}/{len(columns)}"},
        {"test": "scipy ks_2samp, p < 0.05", "seconds": scipy_ks_s, "ratio to scipy W": scipy_ks_s / scipy_w_s,
         "columns drifted": sum(ks_flag.values()),
         "agree with Evidently": f"{sum(ev_flag[c] == ks_flag[c] for c in columns)}/{len(columns)}"},
    ]
    disagree = sorted(c for c in columns if ks_flag[c] != ev_flag[c])
    return (f"Same windows ({len(ref):,} vs {len(cur):,} rows, two independent simulated markets), same "
            f"{len(columns)} columns. Evidently's run includes building its report widgets (its `run` renders "
            f"them); writing the HTML took another {render_s:.1f} s. Evidently / scipy time ratio: "
            f"**{evidently_s / scipy_w_s:.0f}x**. Largest difference between Evidently's and scipy's normed "
            f"Wasserstein scores: {max_diff:.2e}.\n\n" + markdown_table(rows)
            + f"\n\nKS disagrees with Evidently on {len(disagree)} column(s)"
            + (f" ({', '.join(disagree[:12])}{', ...' if len(disagree) > 12 else ''})" if disagree else "")
            + ": two markets with the same distribution differ by a little in every column, and at this size KS "
            "calls every little difference significant; an effect-size rule (normed Wasserstein) does not.")


def null_and_drill_section(null_seeds: int, drill_seeds: int, evidently_seeds: int) -> str:
    from aigp.monitoring.alerts import ALERTS, calibrate, evaluate_alerts, firing
    from aigp.monitoring.drills import DRILLS, DrillConfig, drill_traffic, simulated_traffic
    from aigp.monitoring.figures import MonitorConfig, prepare_windows, window_figures
    from aigp.monitoring.job import analyse

    drill = DrillConfig()
    cfg = MonitorConfig(window_days=drill.window_days)
    start, end = drill.steady_window
    window = {"end": end, "reference_start": start, "reference_end": end}
    t = time.perf_counter()
    reference = simulated_traffic(drill, drill.reference_seed, drill.reference_skus)
    nulls = []
    for seed in range(1, null_seeds + 1):
        nulls.append(window_figures(prepare_windows(reference, drill_traffic("none", drill, seed), cfg, **window),
                                    cfg))
    null_s = time.perf_counter() - t
    report = calibrate(nulls, cfg)
    # Evidently on a subset of the same null windows: the same decisions?
    same = 0
    ev_fired = 0
    for seed in range(1, evidently_seeds + 1):
        current = drill_traffic("none", drill, seed)
        _, figures, alerts, _, _ = analyse(reference, current, cfg.with_updates(drift_engine="evidently"), **window)
        core = {c: d.score for c, d in nulls[seed - 1].drift.items()}
        same += all(abs(core[c] - d.score) < 1e-9 for c, d in figures.drift.items())
        ev_fired += bool(firing(alerts))
    rate = report["false_alarm_rate"]
    hi = wilson_interval(round(rate * null_seeds), null_seeds)[1]
    fa = [{"alert": a.prometheus, "false alarms": f"{report['false_alarms_by_alert'][a.name]}/{null_seeds}"}
          for a in ALERTS]
    suggested = report["suggested"]
    calib = [{"threshold": k, "configured": getattr(cfg, k), "suggested (99% of no-drift x 1.5)": v}
             for k, v in suggested.items() if v is not None]
    drills = []
    for name, spec in DRILLS.items():
        if name == "none":
            continue
        right = other = 0
        for seed in range(1, drill_seeds + 1):
            base = simulated_traffic(drill, 1000 + seed, drill.current_skus)
            figures = window_figures(prepare_windows(reference, drill_traffic(name, drill, 1000 + seed, base=base), cfg,
                                                     **window), cfg)
            fired = set(firing(evaluate_alerts(figures, cfg)))
            right += spec.expected <= fired
            other += bool(fired - spec.expected)
        drills.append({"drill": name, "injected": spec.description, "expected": ", ".join(sorted(spec.expected)),
                       "detected": f"{right}/{drill_seeds}", "other alerts": f"{other}/{drill_seeds}"})
    return (f"Reference: one simulated market ({drill.reference_skus:,} SKUs, seed 0), steady-state window "
            f"{start} .. {end}. No-drift windows: {null_seeds} independent markets of {drill.current_skus:,} SKUs "
            f"(seeds 1..{null_seeds}) over the same dates, default `MonitorConfig` ({null_s:.0f} s with the scipy "
            f"statistic).\n\n**False-alarm rate: {rate:.1%}** ({round(rate * null_seeds)}/{null_seeds} windows "
            f"with any alert; 95% upper bound {hi:.1%}). With Evidently on the first {evidently_seeds} of these "
            f"windows: identical scores in {same}/{evidently_seeds}, alerts in {ev_fired}/{evidently_seeds}.\n\n"
            + markdown_table(fa) + "\n\nThresholds suggested by the no-drift windows "
            "(`aigp.monitoring.alerts.calibrate`) next to the configured defaults:\n\n" + markdown_table(calib)
            + f"\n\nDrills ({drill_seeds} independent current markets each, seeds 1001..): the expected alert "
            "fired / any other alert fired.\n\n" + markdown_table(drills))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=200_000)
    parser.add_argument("--null-seeds", type=int, default=100)
    parser.add_argument("--drill-seeds", type=int, default=5)
    parser.add_argument("--evidently-seeds", type=int, default=5)
    parser.add_argument("--child", nargs=4, metavar=("REFERENCE", "CURRENT", "OUT", "HTML"))
    args = parser.parse_args()
    if args.child:
        reference, current, out, html = args.child
        _child_job(reference, current, out, html=html == "1")
        return
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        root = Path(tmp)
        scale, _ = scale_section(args.decisions, root)
        print(scale, flush=True)
        agreement = agreement_section(args.decisions, root)
        print(agreement, flush=True)
    quality = null_and_drill_section(args.null_seeds, args.drill_seeds, args.evidently_seeds)
    print(quality)
    body = ("### The job at scale\n\n" + scale + "\n\n### Evidently vs a plain scipy two-sample test\n\n" + agreement
            + "\n\n### False alarms and detection\n\n" + quality
            + f"\n\nTotal benchmark wall time {time.perf_counter() - started:.0f} s.")
    write_section("monitoring", "Monitoring: drift job, Evidently vs scipy, false alarms", body,
                  f"python -m bench.bench_monitoring --decisions {args.decisions} --null-seeds {args.null_seeds} "
                  f"--drill-seeds {args.drill_seeds} --evidently-seeds {args.evidently_seeds}")


if __name__ == "__main__":
    main()
