"""aigp.monitoring.figures and .alerts: a window's figures on hand-made numbers, windows, category mix, alert rules."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from aigp.config import ConfigError
from aigp.decisions import FallbackReason, attach_categories, decisions_from_simulation, load_decisions, select_window
from aigp.monitoring.alerts import ALERTS, evaluate_alerts, firing
from aigp.monitoring.figures import (
    MonitorConfig,
    drift_score,
    match_category_mix,
    population_stability_index,
    prepare_windows,
    safety_figures,
    volume_figures,
    window_figures,
)
from aigp.policy_metrics import stability_figures


def _frame(n: int, **columns) -> pd.DataFrame:
    """A minimal decisions frame: holds at 0.9 unless columns say otherwise."""
    base = {
        "sku_id": np.arange(n), "date": pd.Timestamp("2026-05-01"), "model_name": "m", "model_version": "1",
        "prev_discount": 0.9, "proposed_change": 0.0, "discount_change": 0.0, "new_discount": 0.9,
        "parse_ok": True, "projected": False, "fallback": False, "fallback_reason": "", "latency_ms": 100.0,
        "rationale_tokens": 200,
    }
    base.update(columns)
    return pd.DataFrame(base)


def test_stability_figures_match_the_paper_definitions() -> None:
    a = np.array([0.0, 0.01, -0.03, 0.04, -0.1, 0.2])
    s = stability_figures(a, big_jump=0.15)
    assert s["n"] == 6
    assert s["small_move_share"] == pytest.approx(3 / 6)  # 0, 0.01, -0.03 (0.04 is not < 0.04)
    assert s["tail"]["0.04"] == pytest.approx(3 / 6) and s["tail"]["0.00"] == 1.0 and s["tail"]["0.20"] == 1 / 6
    assert s["big_jump_share"] == pytest.approx(1 / 6)
    assert s["bins"]["0.00"] == pytest.approx(2 / 6) and s["bins"]["0.02"] == pytest.approx(1 / 6)
    assert s["bins"]["0.04"] == s["bins"]["0.10"] == s["bins"]["0.18"] == pytest.approx(1 / 6)
    assert sum(s["bins"].values()) == pytest.approx(1.0)
    assert s["mean_change"] == pytest.approx(a.mean()) and s["mean_abs_change"] == pytest.approx(np.abs(a).mean())
    assert stability_figures(np.array([np.nan]))["n"] == 0


def test_safety_rates_use_the_right_denominators() -> None:
    frame = _frame(10)
    timeout = FallbackReason.PREDICTOR_TIMEOUT.value
    unparsable = FallbackReason.UNPARSABLE_OUTPUT.value
    frame.loc[[0, 1], ["fallback", "parse_ok", "fallback_reason"]] = [True, False, timeout]
    frame.loc[[2], ["fallback", "parse_ok", "fallback_reason"]] = [True, False, unparsable]
    frame.loc[[3, 4], "projected"] = True
    frame.loc[:, "latency_ms"] = np.arange(1, 11) * 100.0
    s = safety_figures(frame)
    assert s["fallback_rate"] == pytest.approx(0.3)
    assert s["fallbacks_by_reason"] == {timeout: 2, unparsable: 1}
    # Timeouts gave no reply: the parse-failure rate is over the 8 replies, projection over 7 proposals.
    assert s["replies"] == 8 and s["parse_failure_rate"] == pytest.approx(1 / 8)
    assert s["proposals"] == 7 and s["projection_rate"] == pytest.approx(2 / 7)
    assert s["latency_ms"]["0.5"] == pytest.approx(550.0)


def test_psi_and_drift_score_by_hand() -> None:
    expected = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert population_stability_index(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(expected)
    assert population_stability_index(np.array([0.3, 0.7]), np.array([0.3, 0.7])) == pytest.approx(0.0)
    ref = np.array([0.0, 1.0, 2.0, 3.0])
    # Wasserstein distance of a shift by 1 is 1; normed by the reference std (population std, as Evidently).
    assert drift_score(ref, ref + 1.0, "wasserstein") == pytest.approx(1.0 / np.std(ref))
    assert drift_score(ref, np.array([np.nan, 5.0]), "wasserstein") == pytest.approx(3.5 / np.std(ref))
    assert math.isnan(drift_score(ref, np.array([np.nan]), "wasserstein"))
    assert drift_score(np.zeros(50), np.zeros(50), "wasserstein") == 0.0  # constant columns: no drift
    assert drift_score(ref, ref, "ks") == pytest.approx(1.0)


def test_category_matching_reproduces_the_current_mix() -> None:
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"category": rng.choice(["a", "b", "c"], size=3000, p=[0.6, 0.3, 0.1]),
                              "x": rng.normal(size=3000)})
    current = pd.DataFrame({"category": ["a"] * 100 + ["c"] * 300 + ["d"] * 50})
    matched = match_category_mix(reference, current, size=2000, seed=1)
    assert len(matched) == 2000
    shares = matched["category"].value_counts(normalize=True)
    # d is absent from the reference: a and c are renormalised to 1/4 and 3/4.
    assert shares["a"] == pytest.approx(0.25, abs=1e-3) and shares["c"] == pytest.approx(0.75, abs=1e-3)
    assert "b" not in shares
    assert set(matched["x"]).issubset(set(reference["x"]))  # rows come from the reference only


def test_select_window_by_days_and_end() -> None:
    frame = _frame(10)
    frame["date"] = pd.date_range("2026-05-01", periods=10, freq="D")
    window, w = select_window(frame, days=3)
    assert (w.start, w.end, w.days) == (dt.date(2026, 5, 8), dt.date(2026, 5, 10), 3) and len(window) == 3
    window, w = select_window(frame, days=2, end="2026-05-04")
    assert list(window["sku_id"]) == [2, 3]
    assert len(select_window(frame)[0]) == 10
    with pytest.raises(ValueError, match="no decisions between 2026-06-01"):
        select_window(frame, days=1, end="2026-06-01")
    with pytest.raises(ValueError, match="not a date"):
        select_window(frame, days=1, end="yesterday")


def test_volume_compares_the_last_day_with_the_usual() -> None:
    frame = pd.concat([_frame(100 if d < 9 else 30).assign(date=pd.Timestamp("2026-05-01") + pd.Timedelta(days=d))
                       for d in range(10)], ignore_index=True)
    _, w = select_window(frame, days=1)
    v = volume_figures(frame, w, lookback_days=7)
    assert v["last_day"] == 30 and v["median_prior"] == 100 and v["ratio"] == pytest.approx(0.3)
    _, w = select_window(frame, days=1, end="2026-05-02")
    assert math.isnan(volume_figures(frame, w, 7)["ratio"])  # too little history to know the usual volume


def test_config_errors_name_the_field(tmp_path) -> None:
    with pytest.raises(ConfigError, match="drift_alert_groups"):
        MonitorConfig.build(drift_alert_groups=["no_such_view"])
    with pytest.raises(ConfigError, match="drift_ignore"):
        MonitorConfig.build(drift_ignore=["ctr_99d"])
    with pytest.raises(ConfigError, match="drift_threshold"):
        MonitorConfig.build(drift_method="ks", drift_threshold=1.5)
    path = tmp_path / "monitor.yaml"
    path.write_text("window_days: 3\nfallback_rate_max: 0.05\n")
    cfg = MonitorConfig.from_yaml(path)
    assert cfg.window_days == 3 and cfg.fallback_rate_max == 0.05
    assert MonitorConfig.build(**MonitorConfig.model_validate(cfg.model_dump()).model_dump()) == cfg


def test_loading_a_market_log_and_a_decisions_parquet(market_logs, tmp_path) -> None:
    from aigp.io import write_parquet

    reference = load_decisions(market_logs.path)
    assert len(reference) == market_logs.manifest["rows"]["decisions"]
    assert reference["category"].nunique() > 3 and not reference["category"].str.startswith("benchmarks").any()
    assert reference["list_price"].notna().all()  # static features come from the SKU table
    live = reference.drop(columns=["category"]).head(500)
    write_parquet(tmp_path / "decisions.parquet", live)
    loaded = load_decisions(tmp_path / "decisions.parquet")
    assert loaded["category"].str.startswith("benchmarks ").all()  # derived from the category benchmarks
    with_skus = load_decisions(tmp_path / "decisions.parquet", skus=market_logs.path / "skus.parquet")
    np.testing.assert_array_equal(with_skus["category"], reference["category"].head(500))
    # Derived labels are renamed to the reference's names, so the category mix compares like with like.
    prepared = prepare_windows(reference, loaded, MonitorConfig(window_days=60))
    assert set(prepared.current["category"]) <= set(reference["category"])
    write_parquet(tmp_path / "broken.parquet", live.drop(columns=["parse_ok"]))
    with pytest.raises(ValueError, match="parse_ok"):
        load_decisions(tmp_path / "broken.parquet")
    with pytest.raises(FileNotFoundError):
        load_decisions(tmp_path / "missing.parquet")


def test_alerts_fire_at_their_thresholds_and_wait_for_enough_data(market_logs) -> None:
    reference = load_decisions(market_logs.path)
    cfg = MonitorConfig(window_days=60, min_window_decisions=100)
    current = reference.copy()
    # Windows end on the last launch day: after it the simulated market winds down (volume drops).
    end = {"end": "2026-03-20", "reference_end": "2026-03-20"}
    figures = window_figures(prepare_windows(reference, current, cfg, **end), cfg)
    alerts = {a.name: a for a in evaluate_alerts(figures, cfg)}
    assert set(alerts) == {a.name for a in ALERTS}
    assert firing(alerts.values()) == []  # the reference against itself
    assert alerts["category_mix_shift"].value == pytest.approx(0.0, abs=1e-9)
    # Exactly at the threshold fires; just below does not.
    fallback = current.copy()
    inside = np.flatnonzero(fallback["date"] <= pd.Timestamp(end["end"]))
    n = round(cfg.fallback_rate_max * len(inside))
    fallback.loc[fallback.index[inside[:n]], ["fallback", "fallback_reason"]] = [True, "predictor_error"]
    rate = n / len(inside)
    for limit, fires in ((rate, True), (rate + 1e-6, False)):
        c = cfg.with_updates(fallback_rate_max=limit)
        f = window_figures(prepare_windows(reference, fallback, c, **end), c)
        assert ("fallback_rate" in firing(evaluate_alerts(f, c))) is fires
    # Too few decisions: distribution alerts are not evaluated; safety alerts still are.
    small = cfg.with_updates(min_window_decisions=len(inside) + 1)
    alerts = {a.name: a for a in evaluate_alerts(
        window_figures(prepare_windows(reference, fallback, small, **end), small), small)}
    assert not alerts["feature_drift"].evaluated and "too few" in alerts["feature_drift"].message
    assert alerts["fallback_rate"].evaluated


def test_simulated_decisions_carry_categories_through_attach() -> None:
    frame = _frame(4, category_ctr=[0.04, 0.04, 0.05, np.nan], category_cvr=[0.06, 0.06, 0.07, 0.07])
    labels = attach_categories(frame)["category"].tolist()
    assert labels[0] == labels[1] != labels[2] and labels[3] == "unknown"
    assert decisions_from_simulation is not None  # the contract the job consumes


def test_the_feature_store_sources_give_the_same_reference_as_the_market_log(market_logs, tmp_path) -> None:
    from aigp.decisions import FEATURE_COLUMNS
    from aigp.ingest import ingest_logs

    ingest_logs(market_logs.path, tmp_path / "sources")
    from_sources = load_decisions(tmp_path / "sources").sort_values(["sku_id", "date"]).reset_index(drop=True)
    from_log = load_decisions(market_logs.path).sort_values(["sku_id", "date"]).reset_index(drop=True)
    assert len(from_sources) == len(from_log)
    np.testing.assert_array_equal(from_sources["category"], from_log["category"])
    np.testing.assert_array_equal(from_sources["date"], from_log["date"])
    for column in [*FEATURE_COLUMNS, "discount_change", "new_discount", "prev_discount"]:
        np.testing.assert_allclose(from_sources[column], from_log[column], rtol=1e-5, atol=1e-6, err_msg=column)
