"""KFP component: the nightly run's dates from one optional parameter (logic in ``aigp.pipelines.params``)."""

from typing import NamedTuple

from kfp import dsl

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def nightly_window(date: str = "", online_days: int = 1) -> NamedTuple(  # type: ignore[valid-type]  # KFP's outputs
        "NightlyWindow", [("date", str), ("online_start", str), ("online_end", str)]):
    """``date`` to price ("" = today, UTC, what a recurring run passes) and the online-store window
    ``[date - online_days, date + 1)`` to materialize before pricing."""
    from collections import namedtuple

    from aigp.pipelines.params import nightly_dates

    days = nightly_dates(date, online_days=online_days)
    return namedtuple("NightlyWindow", ["date", "online_start", "online_end"])(  # type: ignore[call-arg]
        days["date"], days["online_start"], days["online_end"])
