"""The `make demo` serving stage end to end: the registry's champion (the tiny model, registered, approved and
promoted) served by the local predictor, the pricing transformer started as the InferenceService runs it,
the day priced by POSTing SKUs to it over HTTP, the decisions log and the decision report written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from _registry_support import mlflow_store
from llm_support import LAUNCH, LOW_STOCK, MID
from serving_support import MODEL, build_feature_store, in_a_safe

from aigp.cli.demo_context import DemoContext
from aigp.decisions import validate_decisions

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def champion(tmp_path_factory) -> tuple[dict[str, str], str]:
    """A registry whose champion is a real (tiny) model; returns its environment and storage URI."""
    import os

    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.gate_report import GateReport
    from aigp.llm.model_factory import BaseModelConfig, build_base_model
    from aigp.llm.prompt import PromptConfig, build_prompt
    from aigp.registry.model_registry import ModelRegistry

    root = tmp_path_factory.mktemp("demo_registry")
    teacher, corpus = KnowledgeBaseTeacher(), []
    for row in (MID, LAUNCH, LOW_STOCK):
        prompt = build_prompt(row, PromptConfig())
        corpus += [prompt.system, prompt.user, teacher.respond(prompt).text]
    model = build_base_model(root / "tiny", corpus, BaseModelConfig(size="tiny", overrides={"vocab_size": 600}))
    (root / "gate.json").write_text(json.dumps({"passed": True, "reasons": []}))
    (root / "gate.html").write_text("<html><body>gate passed</body></html>")
    env = {"MLFLOW_TRACKING_URI": mlflow_store(root / "mlflow"), "AIGP_REGISTRY_AUDIT": str(root / "audit"),
           "AIGP_MLFLOW_ARTIFACTS": (root / "artifacts").as_uri()}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        registry = ModelRegistry()
        info = registry.register_candidate(model, GateReport.from_json(root / "gate.json", root / "gate.html"),
                                           {"avg_q": 1.0}, model_name=MODEL, data_window=("2026-03-01", "2026-03-15"))
        registry.approve(MODEL, info.version, by="tester", reason="gate read")
        registry.promote(MODEL, info.version, by="tester", reason="demo champion")
        _, uri = registry.resolve(MODEL, "champion")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return env, str(uri)


def test_demo_stage_prices_the_day_through_the_transformer_with_the_champion(market_logs, champion, tmp_path,
                                                                            monkeypatch) -> None:
    from aigp.cli.demo import STAGES
    from aigp.cli.price import stage_price
    from aigp.serving import demo

    env, _ = champion
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(demo, "TRAINED_MAX_TOKENS", 16)  # the tiny model's output is noise; keep it short
    monkeypatch.setattr(demo, "DEMO_MAX_SKUS", {"trained": 12, "untrained": 12})
    lines: list[str] = []
    monkeypatch.setattr("aigp.cli.price.console.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    # the feature store stage's output (the serving tests' store, already materialized for its day)
    from aigp.feature_repo.store import open_store

    feature_data, state, date = build_feature_store(market_logs.path, tmp_path / "store")
    store = open_store(feature_data=feature_data, state_dir=state)
    ctx = DemoContext(root=tmp_path, logs=market_logs, seed=3, feature_store=store, pricing_date=date)
    try:
        line = stage_price(ctx)
    finally:
        store.close()

    summary = ctx.pricing_summary
    assert summary.model_label == f"{MODEL} v1 (champion)" and "NO PROMOTED MODEL" not in "\n".join(lines)
    report = Path(ctx.decision_report)
    assert report.exists() and str(report) in line and any(str(report) in x for x in lines)
    log = validate_decisions(pd.read_parquet(ctx.pricing_decisions))
    assert len(log) == summary.priced == 12 < summary.active_skus
    assert summary.date == date.isoformat() and (log["date"] == pd.Timestamp(date)).all()
    # SKUs/s is the pricing's rate: starting the two servers is timed apart (it is most of a 12-SKU demo run)
    pricing = summary.seconds["pricing"]  # rounded to 0.01 s, the rate to 0.01 SKU/s
    assert summary.seconds["start"] > 0 and summary.skus_per_second is not None
    assert 12 / (pricing + 0.01) - 0.01 <= summary.skus_per_second <= 12 / max(pricing - 0.01, 1e-3) + 0.01
    assert summary.seconds["start"] + summary.seconds["pricing"] < summary.seconds["total"]
    assert log["sku_id"].is_unique and set(log["model_version"]) == {"1"}
    assert all(in_a_safe(*r) for r in log[["prev_discount", "discount_change", "new_discount"]].itertuples(False))
    page = report.read_text()
    assert all(f'id="sku-{s}"' in page for s in log["sku_id"])
    # the transformer served the requests (KServe's access log of the v1 route)
    transformer_log = (report.parent / "transformer.log").read_text()
    assert transformer_log.count("POST /v1/models/aigp-pricing%3Apredict HTTP/1.1\" 200") >= 1
    # `make demo` then monitors what it served: the decisions log just written, its day, its alerts
    from aigp.cli.monitor import stage_monitor

    order = [stage for _, stage in STAGES]
    assert order.index(stage_monitor) == order.index(stage_price) + 1
    monkeypatch.setattr("aigp.cli.monitor.console.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
    monitored = stage_monitor(ctx)
    result = ctx.monitoring
    assert result.figures.current_rows == len(log) and str(result.figures.window.end) == date.isoformat()
    served = result.figures.safety
    assert served["fallback_rate"] == pytest.approx(log["fallback"].mean())
    fired = [a.prometheus for a in result.alerts if a.firing]
    assert f"alerts firing: {', '.join(fired) or 'none'}" in monitored
    if log["fallback"].mean() >= 0.02:  # the tiny model's noise falls back: the summary must say what fires
        assert "AigpPricingFallbackRateHigh" in monitored
