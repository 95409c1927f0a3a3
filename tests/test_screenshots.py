"""docs/screenshots: every page ``bench.screenshots`` makes is committed, listed in the README with the command
that makes it, and not blank (ink in every quarter of the picture, at the window size the tool renders)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.screenshots import PAGES

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "screenshots"


def _readme_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## What the pages look like")
    return readme[start:readme.index("\n## ", start + 1)]


def test_every_screenshot_is_committed_and_listed_with_its_command() -> None:
    assert {p.stem for p in SHOTS.glob("*.png")} == set(PAGES)
    section = _readme_section()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\|.*\(docs/screenshots/(\w+)\.png\).*$", section, re.M)}
    assert set(rows) == set(PAGES)
    assert "`python -m bench.screenshots --out docs/screenshots`" in section
    for name, row in rows.items():
        assert f"`python -m bench.screenshots --out docs/screenshots --only {name}`" in row, name


@pytest.mark.parametrize("name", sorted(PAGES))
def test_screenshot_is_not_blank(name: str) -> None:
    with Image.open(SHOTS / f"{name}.png") as image:
        gray = np.asarray(image.convert("L"))
    assert gray.shape == (PAGES[name], 1280), f"{name}.png is {gray.shape}: rendered at another window size"
    quarters = np.array_split(gray, 4)
    ink = [float((q < 230).mean()) for q in quarters]
    assert min(ink) > 0.002, f"{name}.png: a quarter of it is blank (share of dark pixels per quarter: {ink})"
