"""`aigp evaluate --quick`: every table of the paper's evaluation is produced and internally consistent."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from aigp.evaluation.harness import EvaluationSettings, policy_cda


def test_policy_cda_counts_rows_closer_to_the_expert():
    policy = np.array([0.0, 0.05, 0.1, 0.05])
    expert = np.array([0.0, 0.0, 0.0, 0.0])
    counterfactual = np.array([0.1, 0.1, 0.1, -0.1])
    np.testing.assert_array_equal(policy_cda(policy, expert, counterfactual), [True, False, False, True])


def test_changed_share_interval_resamples_skus_not_rows():
    from aigp.evaluation.harness import _changed_share

    # 20 SKUs of 10 rows each; a SKU's rows change together, half the SKUs change
    sku = np.repeat(np.arange(20), 10)
    changed = sku % 2 == 0
    share = _changed_share(changed, sku, reps=2000, seed=0)
    assert share["changed"] == 0.5
    # resampling 200 independent rows would give about ±0.07; 20 independent SKUs give about ±0.22
    assert share["changed_lo"] < 0.33 and share["changed_hi"] > 0.67
    rows_independent = _changed_share(changed, np.arange(200), reps=2000, seed=0)
    assert rows_independent["changed_lo"] > 0.4 and rows_independent["changed_hi"] < 0.6
    everything = _changed_share(np.ones(200, dtype=bool), sku, reps=200, seed=0)
    assert everything["changed_lo"] == everything["changed_hi"] == 1.0


def test_settings_refuse_unknown_fields():
    from aigp.config import ConfigError

    with pytest.raises(ConfigError, match="log_sku"):
        EvaluationSettings.build(log_sku=10)


def test_replay_reproduces_logged_states(market_logs):
    from aigp.evaluation.harness import replay_logged_states
    from aigp.ltve.dataset import training_frame_from_logs

    frame = training_frame_from_logs(market_logs.path)
    rows = frame[frame["days_since_launch"].isin([0, 4])].sample(n=12, random_state=0).reset_index(drop=True)
    replay = replay_logged_states(market_logs.path, rows)
    for positions, obs in replay.parts:
        logged = rows.iloc[positions]
        np.testing.assert_allclose(obs.column("cum_gmv"), logged["cum_gmv"], rtol=1e-4, atol=1e-2)
        assert obs.truth is not None and obs.text is not None  # the oracle and the LLM policies can answer
    text = replay.text_rows()
    assert len(text) == len(rows) and {"description", "review_digest", "date"} <= set(text.columns)


@pytest.mark.slow
def test_quick_evaluation_writes_every_table(tmp_path):
    from aigp.cli import app

    out = tmp_path / "EVALUATION.md"
    result = CliRunner().invoke(app, ["evaluate", "--quick", "--out", str(out), "--work-dir", str(tmp_path / "work")])
    assert result.exit_code == 0, result.output
    md = out.read_text()
    for title in ("Table 2", "Table 3", "Table 4", "Table 5", "Table 7", "Fig. 4", "Fig. 5", "Run record"):
        assert f"## {title}" in md, title
    html = out.with_suffix(".html").read_text()
    assert html.count("data:image/png;base64,") == 2  # Fig. 3 and Fig. 5 embedded
    assets = tmp_path / "evaluation_files"
    assert (assets / "fig3_q_deciles.png").stat().st_size > 1000
    data = json.loads((assets / "results.json").read_text())

    t2 = pd.DataFrame(data["table2"])
    assert list(t2["n"]) == [1, 3, 5]
    assert t2[["mae", "eama", "cda"]].notna().all().all() and t2["paper_cda"].notna().all()

    t3 = pd.DataFrame(data["table3"]).set_index("key")
    ran = t3[t3["status"] == "ok"]
    for name in ("price_sales", "dt", "ddpg", "sac", "oracle", "base"):
        assert t3.loc[name, "status"] == "ok", name
    assert ran["rows"].nunique() == 1  # every policy answered the same held-out rows
    assert ((ran["eama"] >= 0) & (ran["eama"] <= 1) & (ran["mae"] >= 0)).all()
    assert t3.loc[t3["status"] != "ok", "status"].str.startswith("not run").all()
    assert np.isclose(t3.loc["price_sales", "paper_avg_q"], 2.564)

    assert (t3.loc[["ltve_greedy", "best_of_teacher"], "status"] == "ok").all()

    t4 = pd.DataFrame(data["table4"]).set_index("key")
    assert {"price_sales", "oracle", "dt", "ddpg", "sac", "base", "ltve_greedy", "best_of_teacher"} <= set(t4.index)
    assert "Kendall τ between each policy's Avg Q" in md
    for h in (7, 14):
        assert t4[f"skus_{h}d"].nunique() == 1  # same SKU cohort in every group (paired design)
        for key, row in t4.drop(index="price_sales").iterrows():
            lo, hi = row[f"gmv_{h}d_uplift_ci"]
            assert lo <= row[f"gmv_{h}d_uplift"] <= hi, key
            lo, hi = row[f"gmv_{h}d_ci"]
            assert lo <= row[f"gmv_{h}d"] <= hi, key
    # every policy's realised LTVE reward (eq. 3), scored on its own decision days: the price-sales row has a
    # level only, the others a paired difference from it that lies inside its interval
    assert t4["reward_14d"].notna().all() and "14d reward (eq. 3)" in md
    for key, row in t4.drop(index="price_sales").iterrows():
        lo, hi = row["reward_14d_diff_ci"]
        assert lo <= row["reward_14d_diff"] <= hi, key
        assert row["reward_14d_diff"] == pytest.approx(row["reward_14d"] - t4.loc["price_sales", "reward_14d"])
    assert "realised reward (what Q estimates)" in md
    # the oracle closes its own gap: exactly 1 (a NaN here means the gap was not computed)
    assert np.isfinite(t4.loc["oracle", "gmv_14d_gap_closed"]) and t4.loc["oracle", "gmv_14d_gap_closed"] == 1.0

    t5 = pd.DataFrame(data["table5"])
    teacher = t5[t5["key"] == "kb_teacher"].set_index("prompt")
    assert list(teacher.index) == ["full", "no_diag", "no_kb", "no_reviews"] and (teacher["status"] == "ok").all()
    for mode in ("no_diag", "no_kb", "no_reviews"):
        assert teacher.loc[mode, "changed_lo"] <= teacher.loc[mode, "changed"] <= teacher.loc[mode, "changed_hi"]

    t7 = pd.DataFrame(data["table7"])
    assert {"ltve", "cql", "price_sales"} <= set(t7["key"]) and t7["rows"].nunique() == 1
    assert t7[["cda", "cda_boundary"]].apply(lambda c: c.between(0, 1)).all().all()

    judge = pd.DataFrame(data["judge"]).set_index("key")
    assert judge.loc["kb_teacher", "mean_total"] == 20.0  # the teacher's answers pass the rule judge
    assert judge.loc["base", "responses"] >= 1

    stability = pd.DataFrame(data["stability"]).set_index("key")
    assert (stability["decisions"] == stability["decisions"].iloc[0]).all()
    assert np.allclose(stability.filter(like="bin_").sum(axis=1), 1.0)
    assert data["record"]["log"]["rows"] > 0 and data["timings"]["total"] > 0

    again = tmp_path / "again" / "EVALUATION.md"
    result = CliRunner().invoke(app, ["evaluate", "--render-only", str(assets / "results.json"), "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert again.read_text().split("## Findings", 1)[1] == md.split("## Findings", 1)[1]  # nothing re-run, same report


def test_findings_say_plainly_where_the_paper_is_contradicted():
    from aigp.evaluation.harness import Evaluation, finding_records, findings

    ev = Evaluation(EvaluationSettings.quick())
    ab = {"policy": "AIGP (SFT+DPO)", "key": "sft_dpo"}
    for metric, (value, ci, paper) in {"mar": (0.01, (-0.02, 0.04), 0.082),
                                       "gmv": (-0.3, (-0.4, -0.2), 0.132)}.items():
        ab |= {f"{metric}_14d_uplift": value, f"{metric}_14d_uplift_ci": ci, f"paper_{metric}_14d_uplift": paper}
    ev.table4 = pd.DataFrame([ab])
    ev.judge = pd.DataFrame({"key": ["kb_teacher", "base", "sft", "sft_dpo"], "mean_total": [20.0, 15.0, 15.0, 15.0]})
    ev.table5 = pd.DataFrame({"key": ["sft_dpo"] * 3, "prompt": ["full", "no_diag", "no_kb"], "status": ["ok"] * 3,
                              "avg_q": [0.9, 0.9, 0.8], "delta_avg_q": [0.0, 0.0, -0.1]})
    ev.table7 = pd.DataFrame({"key": ["ltve", "cql"], "cda": [0.69, 0.88]})
    verdicts = {f.topic: f.verdict for f in finding_records(ev)}
    assert verdicts["ab.gmv.sft_dpo"] == "contradicts"  # significant and of the opposite sign
    assert verdicts["ab.mar.sft_dpo"] == "not significant"  # the CI spans 0
    assert verdicts["judge.untested"] == "untested" and not any(t.startswith("judge.sft") for t in verdicts)
    assert verdicts["ablation.sft_dpo"] == "contradicts"  # removing the diagnosis changed nothing
    assert verdicts["cda"] == "contradicts"  # CQL ranks better than the LTVE here
    # the section is the records, one bullet each
    assert findings(ev).count("\n- ") == len(verdicts)

    ev.table7 = pd.DataFrame({"key": ["ltve", "cql"], "cda": [0.95, 0.88]})
    ev.table4 = pd.DataFrame([{**ab, "gmv_14d_uplift": 0.1, "gmv_14d_uplift_ci": (0.05, 0.15)}])
    verdicts = {f.topic: f.verdict for f in finding_records(ev)}
    assert verdicts["cda"] == "agrees" and verdicts["ab.gmv.sft_dpo"] == "agrees"
    assert "dpo.ceiling" not in verdicts  # needs SFT-only and best-of-M over its samples in the A/B

    def row(key: str, gmv: float, roi: float) -> dict:
        return {"policy": key, "key": key, "gmv_14d_uplift": gmv, "gmv_14d_uplift_ci": (gmv - 0.05, gmv + 0.05),
                "roi_14d_uplift": roi, "roi_14d_uplift_ci": (roi - 0.1, roi + 0.1)}

    for best_gmv, verdict in ((-0.04, "contradicts"), (0.06, "not significant"), (0.1, "agrees")):
        ev.table4 = pd.DataFrame([row("sft", 0.04, 0.2), row("sft_dpo", -0.1, 0.9), row("best_of_sft", best_gmv, 0.5)])
        records = {f.topic: f for f in finding_records(ev)}
        assert records["dpo.ceiling"].verdict == verdict, best_gmv
    assert "best-of-M by the LTVE over the SFT model's own samples (DPO's ceiling) +10.0% [+5.0%, +15.0%]" in \
        records["dpo.ceiling"].text

    # DPO against its own objective: the realised eq.-3 reward of SFT+DPO minus SFT-only's, paired in the A/B
    assert "dpo.own_objective" not in records  # only when the A/B scored the LTVE's reward
    for low, high, verdict in ((-0.5, -0.1, "contradicts"), (-0.1, 0.2, "not significant"), (0.05, 0.3, "agrees")):
        ev.record["ab_reward_pairs"] = [{"policy": "sft_dpo", "base": "sft", "diff": (low + high) / 2,
                                         "ci_low": low, "ci_high": high}]
        records = {f.topic: f for f in finding_records(ev)}
        assert records["dpo.own_objective"].verdict == verdict, (low, high)
    assert "SFT+DPO − SFT-only: +0.175 [+0.050, +0.300]" in records["dpo.own_objective"].text

    # did DPO learn its pairs in both directions? (aigp.align.policy.pair_fit, recorded by train_variants)
    assert "dpo.pairs_learned" not in records
    def fit(up: tuple[float, float], down: tuple[float, float]) -> dict:
        return {"dpo/fit_up_pairs": 10.0, "dpo/fit_up_toward": up[0], "dpo/fit_up_away": up[1],
                "dpo/fit_down_pairs": 8.0, "dpo/fit_down_toward": down[0], "dpo/fit_down_away": down[1]}

    ev.record["llm_training"] = {"sft_dpo": fit((0.5, 0.0), (0.1, 0.5))}
    record = {f.topic: f for f in finding_records(ev)}["dpo.pairs_learned"]
    assert record.verdict == "contradicts" and "toward higher prices" in record.text
    assert "of the 8 pairs preferring the lower price it moved toward the chosen action on 10% and away on 50%" in \
        record.text
    assert "cut the price" not in record.text  # a run that did not record the price-cut shares
    ev.record["llm_training"] = {"sft_dpo": fit((0.5, 0.0), (0.1, 0.5)) | {"dpo/fit_negative_before": 0.49,
                                                                          "dpo/fit_negative_after": 0.12}}
    assert "its answers cut the price on 49% of those prompts before DPO and 12% after" in \
        {f.topic: f for f in finding_records(ev)}["dpo.pairs_learned"].text
    ev.record["llm_training"] = {"sft_dpo": fit((0.4, 0.1), (0.3, 0.1))}
    assert {f.topic: f.verdict for f in finding_records(ev)}["dpo.pairs_learned"] == "agrees"

    # does the reward rank policies as the market does? τ of the realised reward against GMV / ROI / MAR
    def market(key: str, reward: float, gmv: float, roi: float, mar: float) -> dict:
        return {**row(key, gmv, roi), "reward_14d": reward, "gmv_14d": 1 + gmv, "roi_14d": 5 * (1 + roi),
                "mar_14d": 0.5 * (1 + mar), "mar_14d_uplift": mar}

    aligned = [market("price_sales", 0.0, 0, 0, 0), market("sft", 1.0, 0.1, 0.1, 0.1),
               market("oracle", 2.0, 0.2, 0.3, 0.2)]
    ev.table4 = pd.DataFrame(aligned)
    assert {f.topic: f.verdict for f in finding_records(ev)}["reward.market"] == "agrees"
    ev.table4 = pd.DataFrame([*aligned, market("sac", 3.0, 0.5, -0.6, -0.6)])  # most reward, worst ROI and MAR
    record = {f.topic: f for f in finding_records(ev)}["reward.market"]
    assert record.verdict == "contradicts" and "most reward is RL-SAC (GMV +50.0%, ROI -60.0%, MAR -60.0%" in \
        record.text


def test_on_policy_rounds_need_the_compact_prompt():
    from aigp.config import ConfigError

    assert EvaluationSettings.quick(llm_prompt="full").llm_on_policy_rounds == 0  # the earlier recipe still builds
    with pytest.raises(ConfigError, match="llm_on_policy_rounds needs llm_prompt: compact"):
        EvaluationSettings.build(llm_prompt="full", llm_on_policy_rounds=2)
    with pytest.raises(ConfigError, match="llm_prompt"):
        EvaluationSettings.build(llm_prompt="reasoning")
