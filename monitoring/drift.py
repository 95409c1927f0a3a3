"""Evidently 0.7 drift report over the monitored columns (the only module here that imports evidently).

``DataDriftPreset`` runs the per-column test of ``MonitorConfig.drift_method`` with its threshold on
every column ``aigp.monitoring.figures.drift_columns`` selects (prompt features, the action d and a, rationale
length). The per-column scores it reports are handed back to ``aigp.monitoring.figures`` so that the alerts, the
JSON summary and the HTML report show the same numbers.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from aigp.io import atomic_path
from aigp.monitoring.figures import MonitorConfig


@dataclass
class EvidentlyDrift:
    scores: dict[str, float]  # column -> score (normed Wasserstein distance or KS p-value)
    drifted_count: int  # Evidently's own count of drifted columns
    snapshot: Any  # evidently Snapshot (save_html / save_json / dict)

    def save_html(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            self.snapshot.save_html(str(tmp))
        return Path(path)

    def save_json(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            self.snapshot.save_json(str(tmp))
        return Path(path)


def evidently_drift(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str],
                    config: MonitorConfig) -> EvidentlyDrift:
    """Run ``DataDriftPreset`` on ``columns`` of both windows (numerical columns only)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if not columns:
        raise ValueError("no column to test for drift: the windows share no column with finite values")
    definition = DataDefinition(numerical_columns=list(columns))
    ref = Dataset.from_pandas(reference[columns].astype("float64"), data_definition=definition)
    cur = Dataset.from_pandas(current[columns].astype("float64"), data_definition=definition)
    # include_tests=False: the alerts are decided in aigp.monitoring.alerts; Evidently's tests would only add time.
    preset = DataDriftPreset(columns=list(columns), method=config.drift_method, threshold=config.drift_threshold,
                             include_tests=False)
    with warnings.catch_warnings():
        # Evidently correlates every column pair for its widgets; constant columns make numpy warn.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = Report([preset]).run(current_data=cur, reference_data=ref)  # current first (Evidently 0.7)
    scores: dict[str, float] = {}
    drifted_count = -1
    for metric in snapshot.dict()["metrics"]:
        kind = metric["config"].get("type", "")
        if kind.endswith("ValueDrift"):
            scores[metric["config"]["column"]] = float(metric["value"])
        elif kind.endswith("DriftedColumnsCount"):
            drifted_count = int(metric["value"]["count"])
    missing = [c for c in columns if c not in scores]
    if missing:
        raise RuntimeError(f"Evidently returned no drift score for {missing}")
    return EvidentlyDrift(scores, drifted_count, snapshot)
