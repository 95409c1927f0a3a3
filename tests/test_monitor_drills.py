"""Injected drift on simulated traffic raises the right alert and no other; windows drawn from the
reference distribution stay quiet (false-alarm rate over many seeds; the benchmark runs more of them)."""

from __future__ import annotations

import numpy as np
import pytest

from aigp.monitoring.alerts import calibrate, evaluate_alerts, firing
from aigp.monitoring.drills import DRILLS, DrillConfig, drill_traffic, simulated_traffic
from aigp.monitoring.figures import MonitorConfig, prepare_windows, window_figures

DRILL = DrillConfig()
CONFIG = MonitorConfig(window_days=DRILL.window_days)
NULL_SEEDS = range(1, 11)


@pytest.fixture(scope="module")
def reference():
    return simulated_traffic(DRILL, DRILL.reference_seed, DRILL.reference_skus)


@pytest.fixture(scope="module")
def current_market():
    return simulated_traffic(DRILL, 101, DRILL.current_skus)


def _figures(reference, current, config=CONFIG):
    start, end = DRILL.steady_window
    prepared = prepare_windows(reference, current, config, end=end, reference_start=start, reference_end=end)
    return window_figures(prepared, config)


@pytest.mark.parametrize("name", [d for d in DRILLS if d != "none"])
def test_each_drill_raises_exactly_its_alerts(name, reference, current_market) -> None:
    figures = _figures(reference, drill_traffic(name, DRILL, 101, base=current_market))
    alerts = evaluate_alerts(figures, CONFIG)
    assert sorted(firing(alerts)) == sorted(DRILLS[name].expected), [a.message for a in alerts]
    for alert in alerts:
        if alert.firing:  # the alert carries the numbers that made it fire
            assert alert.value is not None and alert.message.startswith(alert.title)


def test_the_drills_fire_for_the_reasons_injected(reference, current_market) -> None:
    ctr = _figures(reference, drill_traffic("ctr_shift", DRILL, 101, base=current_market))
    assert set(ctr.drifted_alert_features) == {"ctr_1d", "ctr_3d", "ctr_7d"}
    over = _figures(reference, drill_traffic("over_discounting", DRILL, 101, base=current_market))
    assert over.mean_change_shift == pytest.approx(-0.028, abs=0.004)
    assert over.safety["projection_rate"] == 0.0  # a trained model stays inside A_safe
    rise = _figures(reference, drill_traffic("fallback_rise", DRILL, 101, base=current_market))
    daily = rise.daily["fallback_rate"].to_numpy()
    assert daily[0] < 0.01 and daily[-1] > 0.08  # rising day by day
    assert rise.safety["fallbacks_by_reason"].keys() == {"predictor_timeout"}
    mix = _figures(reference, drill_traffic("category_mix", DRILL, 101, base=current_market))
    assert not mix.drifted_alert_features  # features compared within the new mix
    unmatched = _figures(reference, drill_traffic("category_mix", DRILL, 101, base=current_market),
                         CONFIG.with_updates(match_category_mix=False))
    assert unmatched.drifted_alert_features  # ... and without the re-weighting the mix shows as feature drift


def test_reference_windows_stay_quiet(reference) -> None:
    """Independent markets over the same dates: the reference distribution, fresh SKUs and luck."""
    nulls = [_figures(reference, drill_traffic("none", DRILL, seed)) for seed in NULL_SEEDS]
    report = calibrate(nulls, CONFIG)
    assert report["false_alarm_rate"] <= 0.05, report
    # The defaults sit above what no-drift windows produce (calibrated on such windows, not on the drills).
    suggested = report["suggested"]
    assert suggested["drift_threshold"] < 1.5 * CONFIG.drift_threshold
    assert suggested["category_mix_psi"] < CONFIG.category_mix_psi
    assert suggested["over_discount_shift"] < CONFIG.over_discount_shift
    assert suggested["big_jump_increase"] < CONFIG.big_jump_increase
    # A threshold below the no-drift noise would alarm: the measurement can fail.
    tight = CONFIG.with_updates(drift_threshold=0.03)
    assert calibrate(nulls, tight)["false_alarm_rate"] > 0.5


def test_drill_traffic_refuses_the_reference_seed() -> None:
    with pytest.raises(ValueError, match="reference market's seed"):
        drill_traffic("none", DRILL, DRILL.reference_seed)
    with pytest.raises(ValueError, match="unknown drill"):
        drill_traffic("meteor", DRILL, 3)
    assert np.isfinite(DRILL.window_days) and DRILL.window_days == 27
