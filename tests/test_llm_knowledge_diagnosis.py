"""Knowledge base (files, coverage, retrieval) and the diagnosis signals (hand calculations)."""

from __future__ import annotations

import datetime as dt

import pytest
from llm_support import LAUNCH, LOW_STOCK, MID, row

from aigp.llm.diagnosis import compute_signals, diagnosis_lines, review_label, review_score, roi_for_rest
from aigp.llm.knowledge import KnowledgeBase, query_keywords
from aigp.market.categories import DEFAULT_CATEGORIES


def test_knowledge_base_covers_every_simulator_category() -> None:
    kb = KnowledgeBase.load()
    assert set(kb.categories) == {c.name for c in DEFAULT_CATEGORIES}
    for category in DEFAULT_CATEGORIES:
        entries = kb.entries(category.name)
        kinds = [e.kind for e in entries]
        assert kinds.count("overview") == 1
        overview = next(e for e in entries if e.kind == "overview")
        assert float(overview.facts["usual_discount"]) == pytest.approx(category.market_discount)
        windows = {e.window for e in entries if e.kind == "season"}
        assert windows == {(s.start, s.end) for s in category.seasons}
        for noun in category.nouns:  # a benchmark for every product type the simulator sells
            assert any(e.kind == "benchmark" and set(noun.split()) <= e.keywords for e in entries), noun


def test_retrieval_by_category_date_and_keywords() -> None:
    kb = KnowledgeBase.load()
    got = kb.retrieve("stationery", ["planner", "roi"], date=dt.date(2026, 8, 20), k=4)
    ids = [e.id for e in got]
    assert ids[0] == "stationery-overview" and ids[1] == "rule-roi-arithmetic"
    assert "stationery-season-back-to-school" in ids and "stationery-benchmark-planner" in ids
    # A window starting within a week is retrieved; one months away is not.
    early = [e.id for e in kb.retrieve("stationery", ["roi"], date=dt.date(2026, 8, 5))]
    late = [e.id for e in kb.retrieve("stationery", ["roi"], date=dt.date(2026, 6, 1))]
    assert "stationery-season-back-to-school" in early and not any("season" in i for i in late)
    # Entries of other categories never leak; an unknown category gets platform rules only.
    assert all(e.category in ("toys", "platform") for e in kb.retrieve("toys", ["notebook", "roi", "stock"]))
    assert all(e.category == "platform" for e in kb.retrieve("unknown", ["roi"]))
    keywords = query_keywords(LOW_STOCK)
    assert "stock" in keywords and "reviews" in keywords and "launch" not in keywords
    assert "launch" in query_keywords(LAUNCH) and "season" in query_keywords(LAUNCH)


def test_a_bad_knowledge_file_is_an_error_naming_it(tmp_path) -> None:
    (tmp_path / "bad.yaml").write_text("category: toys\ntitle: T\nentries:\n- id: Bad Id\n  kind: rule\n  text: x\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*entries\.0\.id"):
        KnowledgeBase.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        KnowledgeBase.load(tmp_path / "empty")


def test_signals_match_hand_calculations() -> None:
    s = compute_signals(MID)  # day 5: 3-day window, 9 days left
    assert s.days_left == 9
    assert s.gmv_run_rate == pytest.approx(13392.7197 / 3, abs=0.05)
    assert s.projected_gmv_14d == pytest.approx(19573.8398 + round(13392.7197 / 3, 1) * 9, abs=0.05)
    assert s.milestone_pace == pytest.approx(s.projected_gmv_14d / 9280.25, abs=0.005)
    assert s.gmv_needed_per_day == 0.0  # already past tier 1
    assert s.ctr_vs_category == pytest.approx(0.0457 / 0.0431, abs=0.005)
    assert s.daily_orders == pytest.approx(889 / 3, abs=0.05)
    assert s.stock_cover_days == pytest.approx(17513 / round(889 / 3, 1), abs=0.05)
    traffic = 2501.3525 - 889 * 17.6 * (1 - 0.89)
    assert s.traffic_share == pytest.approx(max(traffic, 0) / (889 * 17.6), abs=0.0005)
    assert s.effective_price == pytest.approx(17.6 * 0.89, abs=0.005)
    launch = compute_signals(LAUNCH)
    assert launch.gmv_run_rate is None and launch.milestone_pace is None and launch.days_left == 14
    assert launch.gmv_needed_per_day == pytest.approx(9280.25 / 14, abs=0.05)
    low = compute_signals(LOW_STOCK)
    assert low.stock_cover_days == pytest.approx(63 / 457.0, abs=0.05) and low.stock_cover_days < low.days_left


def test_roi_for_rest_cases() -> None:
    # Ends exactly on the goal: (1000 + 500) / (200 + x) = 5  ->  x = 100  ->  ROI 500 / 100 = 5.
    assert roi_for_rest(1000, 200, 500, 5.0) == pytest.approx(5.0)
    assert roi_for_rest(1000, 100, 500, 5.0) == pytest.approx(2.5)  # headroom: the rest may run lower
    assert roi_for_rest(1000, 400, 500, 5.0) is None  # even with no spend it ends below the goal
    assert roi_for_rest(1000, 100, 0, 5.0) == 0.0 and roi_for_rest(1000, 300, 0, 5.0) is None


def test_diagnosis_report_states_the_derived_signals() -> None:
    lines = diagnosis_lines(MID)
    s = compute_signals(MID)
    assert lines[0] == (f"Milestone: gmv_run_rate = {s.gmv_run_rate:.1f} over days_left = 9 days gives "
                        f"projected_gmv_14d = {s.projected_gmv_14d:.1f}, milestone_pace = {s.milestone_pace:.2f}: "
                        "ahead of pace.")
    assert lines[1] == f"ROI: above target; the remaining days need roi_needed_rest = {s.roi_needed_rest:.2f}."
    assert diagnosis_lines(LAUNCH)[0].startswith("Launch day")
    assert any("sells out before day 14" in line for line in diagnosis_lines(LOW_STOCK))
    assert "unknown against target" in diagnosis_lines(row(MID, cum_roi=None))[1]  # missing values never raise


def test_review_reading() -> None:
    lines = ["Superb binding, I already ordered a second planner.", "Awful ink. Would not buy this planner again."]
    assert review_score(lines) == 0.0 and review_label(0.0, 2) == "mixed"
    assert review_label(1.5, 3) == "positive" and review_label(-1.0, 3) == "negative"
    assert review_label(2.0, 1) == "too few to judge" and review_score([]) is None
