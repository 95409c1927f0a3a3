"""The pricing engine (aigp.pricing) against a real loopback OpenAI-compatible server: model actions, Ψ and
A_safe, exactly one retry on timeouts / errors / unparsable output then a flagged hold, missing, stale and
corrupt features, A/B groups routed to their own predictors, and the decisions log monitoring reads."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest
from llm_support import LAUNCH, LOW_STOCK, MID
from serving_support import MODEL, ScriptedPredictor, in_a_safe

from aigp.ab.partition import assign_groups
from aigp.config import ConfigError
from aigp.decisions import FallbackReason
from aigp.openai_compat.local_endpoint import LocalOpenAIServer
from aigp.pricing import (
    Arm,
    ExperimentConfig,
    PricingConfig,
    PricingEngine,
    decision_records,
    decisions_log,
    rationale_of,
    resolve_arms,
)

DAY = dt.date(2026, 3, 13)  # a Friday: MID's day_of_week is 4


def _rows(n: int, base: dict[str, Any] = MID, start: int = 100) -> list[dict[str, Any]]:
    return [{**base, "sku_id": start + i, "missing_features": []} for i in range(n)]


class Counting:
    def __init__(self) -> None:
        self.decisions: list[Any] = []
        self.failures: list[tuple[str, FallbackReason, bool]] = []

    def decided(self, decision: Any) -> None:
        self.decisions.append(decision)

    def attempt_failed(self, group: str, reason: FallbackReason, retried: bool) -> None:
        self.failures.append((group, reason, retried))


@pytest.fixture(scope="module")
def predictor():
    backend = ScriptedPredictor()
    with LocalOpenAIServer({MODEL: backend}) as server:
        yield backend, server.base_url


def _price(url: str, rows: list[dict[str, Any]], *, date: dt.date | None = DAY, observer: Any = None,
           **predictor: Any) -> list[Any]:
    settings = {"request_size": 1, "concurrency": 4, "timeout_s": 20.0, **predictor}
    config = PricingConfig.build(predictor=settings)
    arms = {"champion": Arm("champion", "7", url, MODEL)}

    async def run() -> list[Any]:
        engine = PricingEngine(config, arms, observer=observer)
        try:
            return await engine.price(rows, date=date)
        finally:
            await engine.aclose()

    return asyncio.run(run())


def test_model_actions_are_parsed_inside_a_safe_with_their_rationale(predictor) -> None:
    backend, url = predictor
    backend.reset("teacher")
    rows = [*_rows(3), {**LOW_STOCK, "sku_id": 200, "missing_features": [], "day_of_week": DAY.weekday()},
            {**LAUNCH, "sku_id": 201, "missing_features": [], "day_of_week": DAY.weekday()}]
    observer = Counting()
    decisions = _price(url, rows, observer=observer)
    assert [d.sku_id for d in decisions] == [100, 101, 102, 200, 201]
    for d, row in zip(decisions, rows, strict=True):
        assert not d.fallback and d.parse_ok and d.fallback_reason is FallbackReason.NONE and d.attempts == 1
        assert d.prev_discount == pytest.approx(row["prev_discount"])
        assert in_a_safe(d.prev_discount, d.discount_change, d.new_discount)
        assert d.model_version == "7" and d.group == "champion"
        assert "1. Milestone pace" in d.rationale and '{"discount_change"' not in d.rationale  # reasoning, no JSON
        assert d.latency_ms > 0
    assert len(observer.decisions) == 5 and observer.failures == []
    assert backend.requests == 5


def test_an_action_outside_a_safe_is_projected_not_passed_through(predictor) -> None:
    backend, url = predictor
    backend.reset("json:-0.9")
    (d,) = _price(url, _rows(1))
    assert d.projected and not d.fallback and d.proposed_change == pytest.approx(-0.9)
    assert d.discount_change == pytest.approx(-0.2) and d.new_discount == pytest.approx(0.69)
    backend.reset("json:0.5")
    (d,) = _price(url, _rows(1))
    assert d.projected and d.new_discount == pytest.approx(1.0) and d.discount_change == pytest.approx(0.11)


@pytest.mark.parametrize(("mode", "reason"), [
    ("garbage", FallbackReason.UNPARSABLE_OUTPUT),
    ("error", FallbackReason.PREDICTOR_ERROR),
    ("slow:1.5", FallbackReason.PREDICTOR_TIMEOUT),
])
def test_a_failure_gets_exactly_one_retry_then_a_flagged_hold(predictor, mode, reason) -> None:
    backend, url = predictor
    backend.reset(mode)
    observer = Counting()
    rows = _rows(2)
    decisions = _price(url, rows, observer=observer, timeout_s=0.5)
    for d, row in zip(decisions, rows, strict=True):
        assert d.fallback and d.fallback_reason is reason and d.attempts == 2
        assert d.new_discount == row["prev_discount"] and d.discount_change == 0.0 and not d.parse_ok
        assert "after one retry" in d.detail and "held yesterday's discount" in d.detail
        assert backend.calls[row["sku_id"]] == 2  # one retry, not more
    assert sorted(observer.failures) == sorted([("champion", reason, True)] * 2 + [("champion", reason, False)] * 2)


def test_the_retry_can_succeed(predictor) -> None:
    backend, url = predictor
    backend.reset("garbage_then_teacher")
    (d,) = _price(url, _rows(1))
    assert not d.fallback and d.attempts == 2 and d.parse_ok and backend.calls[100] == 2


def test_overloaded_predictor_counts_as_an_error(predictor) -> None:
    backend, url = predictor
    backend.reset("overloaded")
    (d,) = _price(url, _rows(1))
    assert d.fallback_reason is FallbackReason.PREDICTOR_ERROR and "HTTP 503" in d.detail


def test_missing_stale_and_corrupt_features_never_reach_the_model(predictor) -> None:
    backend, url = predictor
    backend.reset("teacher")
    critical = {**MID, "sku_id": 1, "cum_roi": None, "missing_features": ["cum_roi"]}
    optional = {**MID, "sku_id": 2, "brand": None, "missing_features": ["brand"]}  # not critical: priced
    stale = {**MID, "sku_id": 3, "day_of_week": (DAY.weekday() + 1) % 7, "missing_features": []}
    unknown = {"sku_id": 4, "missing_features": ["prev_discount", "category"], "prev_discount": None}
    corrupt = {**MID, "sku_id": 5, "prev_discount": 1.3, "missing_features": []}
    d1, d2, d3, d4, d5 = _price(url, [critical, optional, stale, unknown, corrupt])
    assert d1.fallback_reason is FallbackReason.MISSING_FEATURES and "cum_roi" in d1.detail and d1.attempts == 0
    assert d1.new_discount == MID["prev_discount"]
    assert not d2.fallback
    assert d3.fallback_reason is FallbackReason.MISSING_FEATURES and "stale features" in d3.detail
    for d in (d4, d5):  # the discount in effect is unknown: nothing is changed, nothing is guessed
        assert not d.priced and d.new_discount is None and d.fallback and d.outcome == "unpriced"
    assert "outside [0.5, 1.0]" in d5.detail
    assert set(backend.calls) == {2}  # only the priceable row reached the predictor


def test_batched_requests_split_per_prompt_when_the_server_refuses_the_batch(predictor) -> None:
    """The loopback server takes one prompt per request (HTTP 400 for a list); vLLM and serving/predictor.py
    take lists. A refused batch is retried prompt by prompt, so every SKU still gets its answer."""
    backend, url = predictor
    backend.reset("teacher")
    decisions = _price(url, _rows(5), request_size=4)  # one request of 4 prompts, one of 1
    assert all(not d.fallback for d in decisions)
    assert [d.attempts for d in decisions] == [2, 2, 2, 2, 1]


def test_groups_go_to_their_own_predictor_and_version() -> None:
    a, b = ScriptedPredictor(), ScriptedPredictor(mode="json:-0.05")
    with LocalOpenAIServer({MODEL: a}) as sa, LocalOpenAIServer({MODEL: b}) as sb:
        config = PricingConfig.build(experiment={"salt": "exp-7", "arms": {
            "control": {"share": 0.5, "model_ref": "champion", "predictor_url": sa.base_url},
            "treatment": {"share": 0.5, "model_ref": "challenger", "predictor_url": sb.base_url}}},
            predictor={"request_size": 1})
        versions = {"champion": (3, "s3://m/v3"), "challenger": (4, "s3://m/v4")}
        arms = resolve_arms(config, lambda name, ref: versions[ref])
        rows = _rows(40)
        expected = assign_groups([r["sku_id"] for r in rows], "exp-7", {"control": 0.5, "treatment": 0.5})

        async def run() -> list[Any]:
            engine = PricingEngine(config, arms)
            try:
                return await engine.price(rows, date=DAY)
            finally:
                await engine.aclose()

        decisions = asyncio.run(run())
    assert [d.group for d in decisions] == list(expected)
    assert {d.model_version for d in decisions if d.group == "control"} == {"3"}
    treated = [d for d in decisions if d.group == "treatment"]
    assert {d.model_version for d in treated} == {"4"}
    assert [d.discount_change for d in treated] == pytest.approx([-0.05] * len(treated))
    assert a.requests == int((expected == "control").sum()) and b.requests == len(treated)


def test_groups_do_not_depend_on_the_order_arms_are_listed_in() -> None:
    ids = list(range(1000, 1400))
    forward = ExperimentConfig.build(salt="s", arms={"a": {"share": 0.7}, "b": {"share": 0.3}}).groups(ids)
    backward = ExperimentConfig.build(salt="s", arms={"b": {"share": 0.3}, "a": {"share": 0.7}}).groups(ids)
    assert list(forward) == list(backward) and 0.6 < (forward == "a").mean() < 0.8


def test_experiment_and_arm_config_errors_name_the_field(monkeypatch) -> None:
    with pytest.raises(ConfigError, match="arms"):
        ExperimentConfig.build(arms={"a": {"share": 0.5}, "b": {"share": 0.4}})
    with pytest.raises(ConfigError, match="predictor_url"):
        PricingConfig.build(experiment={"arms": {"a": {"share": 1.0, "predictor_url": "ftp://x"}}})
    monkeypatch.delenv("AIGP_PREDICTOR_URL", raising=False)
    with pytest.raises(ValueError, match=r"experiment.arms.champion.predictor_url"):
        resolve_arms(PricingConfig(), lambda name, ref: (1, "s3://m/v1"))


def test_rationale_is_the_text_before_the_last_json_action() -> None:
    text = 'step 1 {"note": 1}\nstep 2\n```json\n{"discount_change": -0.05, "new_discount": 0.8}\n```'
    assert rationale_of(text) == 'step 1 {"note": 1}\nstep 2'
    assert rationale_of("no action at all") == "no action at all"
    assert rationale_of("") == ""


def test_records_and_the_decisions_log_monitoring_reads(predictor, tmp_path) -> None:
    from aigp.decisions import load_decisions
    from aigp.io import write_parquet

    backend, url = predictor
    backend.reset("teacher")
    backend.per_sku[101] = "garbage"
    rows = [*_rows(3), {"sku_id": 9, "missing_features": ["prev_discount"], "prev_discount": None}]
    decisions = _price(url, rows)
    stamp = dt.datetime(2026, 3, 13, 1, 30, tzinfo=dt.UTC)
    records = decision_records(decisions, rows, date=DAY, decided_at=stamp)
    assert len(records) == 4 and records["priced"].tolist() == [True, True, True, False]
    assert records.loc[3, "missing_features"] == "prev_discount"
    assert records["description"].iloc[0] == MID["description"]
    log = decisions_log(records, experiment="exp", model_name=MODEL)
    assert len(log) == 3 and log["fallback_reason"].tolist() == ["", "unparsable_output", ""]
    assert log["rationale_tokens"].iloc[1] == 0 and log["rationale_tokens"].iloc[0] > 100
    assert log["cum_gmv"].tolist() == pytest.approx([MID["cum_gmv"]] * 3)
    assert (log["date"] == pd.Timestamp(DAY)).all() and (log["event_timestamp"] == pd.Timestamp(stamp)).all()
    write_parquet(tmp_path / "decisions" / "d.parquet", log)
    loaded = load_decisions(tmp_path / "decisions")
    assert len(loaded) == 3 and np.allclose(loaded["new_discount"], log["new_discount"])
