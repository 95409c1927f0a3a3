"""LTVE reward (eq. 3) and training data: the frame contract, time split, expert mix, normaliser."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from aigp.ltve.dataset import (
    REQUIRED_COLUMNS,
    FeatureNormaliser,
    MixedSampler,
    build_transitions,
    expert_skus,
    launch_dates,
    prepare_frame,
    time_split,
    training_frame_from_logs,
)
from aigp.ltve.reward import (
    GLOBAL,
    RewardConfig,
    RewardReferences,
    daily_rewards,
    daily_roi,
    fit_references,
    frame_rewards,
    sku_totals,
)
from aigp.market.config import MarketConfig
from aigp.schema import numeric_state_features


@pytest.fixture(scope="module")
def ltve_frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    from aigp.market.logs import simulate_to_directory

    logs = simulate_to_directory(MarketConfig.build(n_skus=900, launch_days=60, seed=11),
                                 tmp_path_factory.mktemp("ltve") / "market")
    return training_frame_from_logs(logs.path)


def test_training_frame_has_the_contract_columns_sorted(ltve_frame: pd.DataFrame) -> None:
    assert set(REQUIRED_COLUMNS) <= set(ltve_frame.columns)
    assert len(ltve_frame) == 900 * 14
    keys = ltve_frame[["sku_id", "days_since_launch"]].to_numpy()
    assert (np.lexsort((keys[:, 1], keys[:, 0])) == np.arange(len(keys))).all()
    assert ltve_frame["category"].notna().all() and (ltve_frame["gmv_tier1"] > 0).all()


def test_prepare_frame_names_the_broken_column(ltve_frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['out_spend'\]"):
        prepare_frame(ltve_frame.drop(columns=["out_spend"]))
    broken = ltve_frame.copy()
    broken.loc[3, "ctr_1d"] = np.nan
    with pytest.raises(ValueError, match="'ctr_1d' has 1 missing"):
        prepare_frame(broken)
    with pytest.raises(ValueError, match="two rows for days_since_launch"):
        prepare_frame(pd.concat([ltve_frame.head(3), ltve_frame.head(1)]))


def test_time_split_holds_out_later_launches_and_drops_straddling_skus(ltve_frame: pd.DataFrame) -> None:
    split = time_split(ltve_frame, eval_share=0.2, validation_share=0.1)
    launch = {name: launch_dates(part).groupby(part["sku_id"]).first()
              for name, part in (("train", split.train), ("validation", split.validation),
                                 ("evaluation", split.evaluation))}
    assert (launch["train"] + pd.Timedelta(days=14) <= split.cutoff).all()
    assert (launch["validation"] + pd.Timedelta(days=14) <= split.cutoff).all()
    assert launch["train"].max() < split.validation_from <= launch["validation"].min()
    assert (launch["evaluation"] >= split.cutoff).all()
    assert launch["evaluation"].size == pytest.approx(0.2 * 900, abs=20)
    ids = [set(p["sku_id"]) for p in (split.train, split.validation, split.evaluation)]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    with pytest.raises(ValueError, match="leaves no SKU whose 14 days end"):
        time_split(ltve_frame, cutoff=launch["train"].min())


def test_expert_skus_are_the_top_share_by_14_day_gmv_within_category(ltve_frame: pd.DataFrame) -> None:
    totals = sku_totals(ltve_frame)
    experts = set(expert_skus(ltve_frame, 0.3))
    for category, group in totals.groupby("category"):
        top = group.sort_values("gmv", ascending=False)
        k = len(set(group.index) & experts)
        assert k == pytest.approx(0.3 * len(group), abs=1), category
        assert set(top.index[:k]) == set(group.index) & experts


def test_references_come_from_skus_that_reached_the_milestone(ltve_frame: pd.DataFrame) -> None:
    cfg = RewardConfig()
    refs = fit_references(ltve_frame, cfg)
    totals = sku_totals(ltve_frame)
    roi = totals["gmv"] / totals["spend"]
    winners = totals[(totals["gmv"] >= totals["gmv_tier1"]) & (roi >= totals["roi_target"])].index
    rows = ltve_frame[ltve_frame["sku_id"].isin(winners)]
    assert refs.success_skus[GLOBAL] == len(winners)
    # a well-populated cell equals the hand average; a sparse one falls back
    cell = rows[rows["days_since_launch"] == 0]
    for category, group in cell.groupby(cell["category"].astype(str)):
        if group["sku_id"].nunique() >= cfg.min_reference_skus:
            assert refs.progress[category][0] == pytest.approx((group["out_gmv"] / group["gmv_tier1"]).mean())
            assert refs.log_roi[category][0] == pytest.approx(
                math.log1p(group["out_gmv"].sum() / group["out_spend"].sum()))
    assert len(refs.progress[GLOBAL]) == 14
    restored = RewardReferences.from_dict(refs.to_dict())
    assert restored == refs


def test_reward_equation_by_hand() -> None:
    refs = RewardReferences(2, {"toys": [0.1, 0.2], GLOBAL: [0.3, 0.3]}, {"toys": [1.0, 1.5], GLOBAL: [2.0, 2.0]},
                            {"toys": 30, GLOBAL: 30})
    cfg = RewardConfig(horizon_days=2)
    r = daily_rewards(gmv=np.array([500.0, 0.0, 500.0, 100.0]), spend=np.array([100.0, 0.0, 0.0, 50.0]),
                      gmv_tier1=np.array([1000.0] * 4), category=np.array(["toys", "toys", "toys", "shoes"]),
                      age=np.array([1, 0, 0, 0]), refs=refs, config=cfg)
    assert r[0] == pytest.approx(0.8 * (0.5 - 0.2) + 0.2 * (math.log(6.0) - 1.5))
    assert r[1] == pytest.approx(0.8 * (0.0 - 0.1))  # no GMV, no spend: the ROI term carries no information
    assert r[2] == pytest.approx(0.8 * (0.5 - 0.1) + 0.2 * (math.log1p(cfg.roi_cap) - 1.0))  # GMV without spend
    assert r[3] == pytest.approx(0.8 * (0.1 - 0.3) + 0.2 * (math.log(3.0) - 2.0))  # unknown category: global ref
    assert np.isnan(daily_roi(np.array([0.0]), np.array([0.0]), 10.0))[0]
    with pytest.raises(ValueError, match=r"gmv_tier1=0\.0"):
        daily_rewards(np.ones(1), np.ones(1), np.zeros(1), np.array(["toys"]), np.zeros(1, int), refs, cfg)


def test_reward_weights_are_configurable(ltve_frame: pd.DataFrame) -> None:
    refs = fit_references(ltve_frame)
    progress_only = frame_rewards(ltve_frame, refs, RewardConfig(lambda_progress=1.0, lambda_roi=0.0))
    prog_ref, _ = refs.lookup(ltve_frame["category"].to_numpy(), ltve_frame["days_since_launch"].to_numpy())
    expected = ltve_frame["out_gmv"].to_numpy(np.float64) / ltve_frame["gmv_tier1"].to_numpy(np.float64) - prog_ref
    assert np.allclose(progress_only, expected)


def test_normaliser_is_fitted_on_training_rows_and_round_trips(ltve_frame: pd.DataFrame) -> None:
    split = time_split(ltve_frame)
    norm = FeatureNormaliser.fit(split.train)
    x = norm.transform(split.train)
    assert x.shape == (len(split.train), len(numeric_state_features()) + len(norm.categories))
    numeric = x[:, : len(norm.features)]
    assert np.allclose(numeric.mean(0), 0, atol=1e-3) or (numeric.std(0) < 1e-3).any()
    assert "gmv_7d" in norm.log_features and "prev_discount" not in norm.log_features
    one_hot = x[:, len(norm.features):]
    assert (one_hot.sum(1) == 1).all()
    other = FeatureNormaliser.from_dict(norm.to_dict())
    assert np.array_equal(other.transform(split.evaluation), norm.transform(split.evaluation))
    unseen = split.evaluation.head(3).assign(category="garden")
    assert norm.transform(unseen)[:, len(norm.features):].sum() == 0
    with pytest.raises(ValueError, match="state lacks feature column"):
        norm.transform(split.evaluation.drop(columns=["cum_gmv"]))


def test_mixed_sampler_draws_the_expert_share(ltve_frame: pd.DataFrame) -> None:
    split = time_split(ltve_frame)
    experts = expert_skus(split.train)
    refs = fit_references(split.train)
    t = build_transitions(split.train, frame_rewards(split.train, refs), np.zeros((len(split.train), 1), np.float32),
                          n_steps=3, expert_ids=experts)
    assert len(t) == len(split.train)  # complete 14-day episodes: every day starts a transition
    assert float(t.expert.float().mean()) == pytest.approx(0.3, abs=0.03)
    sampler = MixedSampler(t, 512, expert_share=0.6, seed=0)
    picked = torch.cat([sampler.indices() for _ in range(20)])
    assert float(t.expert[picked].float().mean()) == pytest.approx(307 / 512, abs=1e-9)
    uniform = MixedSampler(t, 512, expert_share=None, seed=0)
    share = float(t.expert[torch.cat([uniform.indices() for _ in range(40)])].float().mean())
    assert share == pytest.approx(0.3, abs=0.03)
    assert (t.done == (t.age + 3 >= 14).float()).all()
