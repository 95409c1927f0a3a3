"""nightly_window through .python_func()."""

from __future__ import annotations

import datetime as dt

import pytest

from aigp.components.nightly_window.component import nightly_window
from aigp.config import ConfigError


def test_explicit_and_default_dates() -> None:
    out = nightly_window.python_func(date="2026-04-02", online_days=3)
    assert (out.date, out.online_start, out.online_end) == ("2026-04-02", "2026-03-30", "2026-04-03")
    today = nightly_window.python_func().date
    assert abs((dt.date.fromisoformat(today) - dt.datetime.now(dt.UTC).date()).days) <= 1
    with pytest.raises(ConfigError, match="ISO date"):
        nightly_window.python_func(date="tomorrow")
