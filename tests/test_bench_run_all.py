"""`make bench` runs every benchmark module, in BENCHMARKS.md order, and names unknown areas."""

from __future__ import annotations

import pytest

from bench import run_all
from bench._report import ORDER


def test_every_benchmark_module_is_discovered_in_report_order():
    areas = run_all.discover()
    on_disk = sorted(p.stem.removeprefix("bench_") for p in run_all.BENCH_DIR.glob("bench_*.py"))
    assert sorted(areas) == on_disk and "simulator" in areas
    listed = [a for a in areas if a in ORDER]
    assert listed == sorted(listed, key=ORDER.index)
    assert areas[: len(listed)] == listed  # unlisted areas come after the listed ones


def test_list_prints_the_areas(capsys):
    assert run_all.main(["--list"]) == 0
    assert capsys.readouterr().out.split() == run_all.discover()


def test_unknown_area_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_all.main(["--only", "simulator,no_such_area"])
    assert exit_info.value.code == 2
    assert "no_such_area" in capsys.readouterr().err
