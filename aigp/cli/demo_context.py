"""What the stages of ``aigp demo`` hand each other: one typed context instead of a dict of string keys.

The first four fields are the demo's options; the rest start empty and are filled, in stage order, by the stage
named beside each. A stage that needs a field an earlier stage did not fill says so (``require``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigp.pricing import DEFAULT_MODEL_NAME

if TYPE_CHECKING:
    from aigp.ab.experiment import ABResult
    from aigp.ab.report import DailyOutcomeSink
    from aigp.distillation.distill import DistillResult
    from aigp.feature_repo.store import AigpFeatureStore
    from aigp.market.logs import LogDirectory
    from aigp.monitoring.job import MonitorResult
    from aigp.serving.batch import BatchSummary


@dataclass
class DemoContext:
    root: Path
    seed: int = 7
    skus: int = 6000  # SKUs in the simulated market log
    ab_skus: int = 10000  # SKUs in the A/B cohort
    # knobs the tests and benchmarks turn down
    ltve_steps: int = 3000
    corpus_prompts: int = 300
    distill_prompts: int = 300
    pipeline_size: str = "demo"
    model_name: str = DEFAULT_MODEL_NAME
    # filled by the stages
    logs: LogDirectory | None = None  # simulate the market
    ab_baselines: ABResult | None = None  # simulated A/B of the baselines
    ab_daily: DailyOutcomeSink | None = None  # ... its daily outcomes (the A/B report)
    feature_store: AigpFeatureStore | None = None  # feature store
    pricing_date: dt.date | None = None  # ... the day served (default: the log's last day)
    ltve: Path | None = None  # LTVE
    base_model: Path | None = None  # offline base model
    distill: DistillResult | None = None  # teacher distillation set
    pipeline_gate_report: Path | None = None  # training pipeline -> gate -> registry
    promoted_version: int | None = None
    serving_prompt: dict[str, Any] = field(default_factory=dict)  # the champion's prompt mode, as gated
    serving_max_tokens: int | None = None
    pricing_summary: BatchSummary | None = None  # serve and price the next day
    pricing_decisions: Path | None = None
    decision_report: Path | None = None
    monitoring: MonitorResult | None = None  # monitor what was served

    def require(self, name: str, stage: str) -> Any:
        """The field ``name``, or a ValueError naming the stage that fills it."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"the demo context has no {name}: run the {stage} stage first")
        return value

    @property
    def market(self) -> LogDirectory:
        return self.require("logs", "'simulate the market'")
