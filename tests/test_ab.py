"""Hash partitioning and the simulated A/B analysis."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from aigp.ab.experiment import ABConfig, run_ab, run_counterfactual
from aigp.ab.partition import assign_groups, bucket_of
from aigp.config import ConfigError
from aigp.market.policies import RandomPolicy, StaticPolicy

ALLOCATION = {"a": 0.5, "b": 0.3, "c": 0.2}
IDS = np.arange(1_000_000, 1_060_000)


def test_partition_is_stable_and_deterministic() -> None:
    first = assign_groups(IDS, "exp-1", ALLOCATION)
    again = assign_groups(IDS[::-1], "exp-1", ALLOCATION)[::-1]
    np.testing.assert_array_equal(first, again)
    # A SKU's group does not depend on which other SKUs are partitioned with it.
    np.testing.assert_array_equal(assign_groups(IDS[:100], "exp-1", ALLOCATION), first[:100])


def test_partition_follows_the_traffic_ratios() -> None:
    groups = assign_groups(IDS, "exp-1", ALLOCATION)
    observed = np.array([(groups == g).sum() for g in ALLOCATION])
    expected = np.array(list(ALLOCATION.values())) * len(IDS)
    assert stats.chisquare(observed, expected).pvalue > 0.001


def test_partitions_under_different_salts_are_independent() -> None:
    a = assign_groups(IDS, "exp-1", ALLOCATION)
    b = assign_groups(IDS, "exp-2", ALLOCATION)
    table = np.array([[((a == x) & (b == y)).sum() for y in ALLOCATION] for x in ALLOCATION])
    assert stats.chi2_contingency(table).pvalue > 0.001
    assert (a != b).mean() > 0.5  # not the same assignment


def test_partition_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="salt"):
        bucket_of(IDS[:3], "")
    with pytest.raises(ValueError, match="sum to 1"):
        assign_groups(IDS[:3], "s", {"a": 0.5, "b": 0.4})


def test_ab_and_counterfactual_report_every_group_with_consistent_intervals() -> None:
    cfg = ABConfig.build(allocation={"static": 0.5, "random": 0.5}, control="static", ceiling=None,
                         cohort_skus=400, cohort_launch_days=5, bootstrap=200, seed=3)
    policies = {"static": StaticPolicy(), "random": RandomPolicy()}
    for result in (run_ab(cfg, policies), run_counterfactual(cfg, policies)):
        m = result.metrics
        assert set(m.group) == {"static", "random"} and set(m.horizon) == {7, 14}
        assert ((m.ci_low <= m.value + 1e-9) & (m.value <= m.ci_high + 1e-9)).all()
        u = result.uplift
        assert set(u.group) == {"random"}
        assert ((u.ci_low <= u.uplift + 1e-9) & (u.uplift <= u.ci_high + 1e-9)).all()
        table = result.markdown()
        assert "| static |" in table and "| random |" in table
    # Random pricing spends far more per unit of GMV than holding the price: the test must see it.
    roi = result.uplift.query("metric == 'roi' and horizon == 14").iloc[0]
    assert roi.ci_high < 0


def test_paired_design_has_narrower_intervals_than_hash_partitioning() -> None:
    cfg = ABConfig.build(allocation={"static": 0.5, "random": 0.5}, control="static", ceiling=None,
                         cohort_skus=600, cohort_launch_days=5, bootstrap=300, seed=4)
    policies = {"static": StaticPolicy(), "random": RandomPolicy()}
    width = {}
    for name, result in (("hash", run_ab(cfg, policies)), ("paired", run_counterfactual(cfg, policies))):
        u = result.uplift.query("metric == 'gmv' and horizon == 14").iloc[0]
        width[name] = u.ci_high - u.ci_low
    assert width["paired"] < 0.6 * width["hash"]


def test_ab_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="control"):
        ABConfig.build(allocation={"a": 1.0}, control="b", ceiling=None)


def test_uplift_over_a_zero_control_is_undefined_without_a_warning() -> None:
    """A control whose MAR is 0 (no SKU reached its milestone, common at 7 days on a small cohort): the MAR
    uplift is NaN, the other metrics' uplifts are numbers, and no divide-by-zero warning is raised."""
    import warnings

    import pandas as pd

    from aigp.ab.experiment import analyse, relative_change

    rng = np.random.default_rng(0)
    frame = lambda mar: pd.DataFrame({"gmv": rng.uniform(50, 150, 200), "spend": rng.uniform(5, 15, 200),  # noqa: E731
                                      "mar": mar})
    cfg = ABConfig.build(allocation={"static": 0.5, "random": 0.5}, control="static", ceiling=None, bootstrap=100,
                         horizons=(7,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, uplift = analyse({7: {"static": frame(np.zeros(200)), "random": frame(rng.uniform(0, 1, 200) > 0.5)}},
                            cfg)
    by_metric = uplift.set_index("metric")
    assert np.isnan(by_metric.loc["mar", "uplift"]) and np.isnan(by_metric.loc["mar", "ci_low"])
    assert np.isfinite(by_metric.loc["gmv", "uplift"]) and np.isfinite(by_metric.loc["roi", "ci_high"])
    assert relative_change(np.array([2.0, 1.0]), np.array([1.0, 0.0]))[0] == 1.0


def test_counterfactual_scores_every_decision_day_with_daily_value() -> None:
    """``daily_value`` sums a per-day score over each SKU's first h days: scored with the day's GMV it must give
    back the summary's GMV, and its paired difference the GMV difference; a scorer that does not return one
    number per day is refused."""
    cfg = ABConfig.build(allocation={"static": 0.5, "random": 0.5}, control="static", ceiling=None,
                         cohort_skus=120, cohort_launch_days=3, bootstrap=200, seed=5)
    policies = {"static": StaticPolicy(), "random": RandomPolicy()}
    seen = []

    def day_gmv(days):
        seen.append(days)
        return days["out_gmv"].to_numpy()

    result = run_counterfactual(cfg, policies, daily_value=day_gmv)
    assert {"category", "gmv_tier1", "out_spend", "days_since_launch"} <= set(seen[0].columns)
    v = result.values.set_index(["group", "horizon"])
    m = result.metrics.query("metric == 'gmv'").set_index(["group", "horizon"])
    for key in v.index:
        assert v.loc[key, "value"] == pytest.approx(m.loc[key, "value"], rel=1e-6)
        assert v.loc[key, "ci_low"] <= v.loc[key, "value"] <= v.loc[key, "ci_high"]
    diff = v.loc[("random", 14), "diff"]
    assert diff == pytest.approx(m.loc[("random", 14), "value"] - m.loc[("static", 14), "value"], rel=1e-6)
    assert v.loc[("random", 14), "diff_ci_low"] <= diff <= v.loc[("random", 14), "diff_ci_high"]
    assert v.loc[("static", 14), "diff"] == 0.0
    back = result.value_difference("static", "random", 14)  # the other way round: the same interval, negated
    assert back[0] == pytest.approx(-diff) and back[1] == pytest.approx(-v.loc[("random", 14), "diff_ci_high"])
    with pytest.raises(ValueError, match="one finite number per decision day"):
        run_counterfactual(cfg, policies, daily_value=lambda days: np.zeros(3))
