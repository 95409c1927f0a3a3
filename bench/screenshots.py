"""Headless-Chromium screenshots of the HTML pages the platform writes, made from small real runs:

- ``monitoring.png`` / ``drift.png``: the monitoring job (``run_monitoring``, Evidently on) on simulated live
  traffic whose click-through rates shifted (the ``ctr_shift`` drill) against a simulated market log;
- ``ab.png``: the A/B report of a simulated experiment (static vs random discounts) with its daily outcomes and
  the Q-scores of an LTVE trained for a few steps on the market log (``aigp.cli.monitor.demo_ab_report``);
- ``gate.png``: the offline gate's report of a candidate that proposes the logged expert's action (projected
  onto A_safe; no LLM, so the page renders in seconds), judge and A/B off.

    python -m bench.screenshots --out docs/screenshots [--work /tmp/aigp-screens]

Needs ``chromium`` (Debian package). Pages are rendered with
``chromium --headless --no-sandbox --disable-gpu --disable-background-networking --screenshot=PNG URL``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

WINDOW = "1280,{height}"


def screenshot(page: Path, png: Path, height: int = 2400) -> Path:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise FileNotFoundError("chromium not found (apt-get install chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--hide-scrollbars", f"--window-size={WINDOW.format(height=height)}", f"--screenshot={png}",
                    page.resolve().as_uri()], check=True, capture_output=True, timeout=180)
    from PIL import Image

    with Image.open(png) as image:  # 256 colours: a few times smaller, the pages are flat colours and text
        small = image.convert("RGB").quantize(colors=256)
    small.save(png, optimize=True)
    return png


def monitoring_pages(work: Path) -> tuple[Path, Path, Path]:
    from aigp.decisions import load_decisions
    from aigp.market.config import MarketConfig
    from aigp.market.logs import simulate_to_directory
    from aigp.monitoring.drills import DrillConfig, inject_ctr_shift, simulated_traffic
    from aigp.monitoring.figures import MonitorConfig
    from aigp.monitoring.job import run_monitoring

    market = MarketConfig.build(n_skus=400, launch_days=20, seed=0)
    logs = simulate_to_directory(market, work / "market", overwrite=True)
    drill = DrillConfig(current_skus=400, launch_days=20, start_date=market.start_date)
    live = inject_ctr_shift(simulated_traffic(drill, 4, 400), np.random.default_rng(0), logit_shift=0.5)
    end = market.start_date + dt.timedelta(days=market.launch_days - 1)
    reference = load_decisions(logs.path)
    run_monitoring(reference, live, MonitorConfig(window_days=14, min_window_decisions=100), work / "monitoring",
                   end=end, reference_end=end)
    return work / "monitoring" / "index.html", work / "monitoring" / "drift_report.html", logs.path


def ab_page(work: Path, logs_dir: Path) -> Path:
    from aigp.ab.experiment import ABConfig, run_ab
    from aigp.ab.report import DailyOutcomeSink
    from aigp.cli.monitor import demo_ab_report
    from aigp.ltve.artifact import save_model
    from aigp.ltve.dataset import training_frame_from_logs
    from aigp.ltve.train import LTVETrainConfig, train_ltve
    from aigp.market.policies import RandomPolicy, StaticPolicy

    config = ABConfig.build(allocation={"static": 0.5, "random": 0.5}, control="static", ceiling=None,
                            cohort_skus=800, cohort_launch_days=5, bootstrap=300, seed=3)
    sink = DailyOutcomeSink(keep_first_states=True)
    result = run_ab(config, {"static": StaticPolicy(), "random": RandomPolicy()}, sink=sink)
    trained = train_ltve(training_frame_from_logs(logs_dir),
                         LTVETrainConfig.build(critic={"steps": 200, "hidden_dims": [32]}, threads=2))
    ctx = {"root": work, "ab_baselines": result, "ab_daily": sink, "ltve": save_model(trained.model, work / "ltve")}
    return demo_ab_report(ctx)["html"]


def gate_page(work: Path, logs_dir: Path) -> Path:
    from aigp.action import project_to_safe
    from aigp.gate import GateConfig, evaluate_candidate, heldout_from_logs
    from aigp.gate_report import write_gate_report
    from aigp.market.logs import open_logs

    def expert_copy(model_dir: str, rows: pd.DataFrame) -> pd.DataFrame:
        raw = rows["discount_change"].to_numpy(np.float64)
        safe = project_to_safe(rows["prev_discount"].to_numpy(np.float64), raw)
        return pd.DataFrame({"change": safe.change, "raw_change": raw, "parse_ok": np.ones(len(rows), bool),
                             "compliant": np.abs(safe.change - raw) < 1e-9})

    first = open_logs(logs_dir).config.start_date
    heldout = heldout_from_logs(logs_dir, launched_from=first + dt.timedelta(days=12))
    config = GateConfig.build(eval_rows=200, judge_samples=0, ab={"enabled": False})
    result = evaluate_candidate("expert-copy", heldout, config, proposer=expert_copy,
                                context={"candidate_uri": "the logged expert's actions (screenshot run)"})
    return write_gate_report(result, work / "gate").html_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/aigp-screens"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    index, drift, logs_dir = monitoring_pages(args.work)
    pages = {"monitoring": (index, 3600), "drift": (drift, 2000)}
    pages["ab"] = (ab_page(args.work, logs_dir), 2600)
    pages["gate"] = (gate_page(args.work, logs_dir), 2600)
    for name, (page, height) in pages.items():
        print(f"{name}: {page} -> {screenshot(page, args.out / f'{name}.png', height)}")


if __name__ == "__main__":
    main()
