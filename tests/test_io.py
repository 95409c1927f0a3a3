"""aigp.io: crash-safe directory saves (every model and artifact directory goes through them)."""

from __future__ import annotations

import pytest

from aigp.io import atomic_directory


def test_atomic_directory_replaces_only_when_the_block_completes(tmp_path) -> None:
    out = tmp_path / "model"
    with atomic_directory(out) as partial:
        (partial / "weights").write_text("v1")
        assert not out.exists()  # nothing visible while it is being written
    assert (out / "weights").read_text() == "v1" and not (tmp_path / "model.partial").exists()

    with pytest.raises(RuntimeError, match="disk full"), atomic_directory(out) as partial:
        (partial / "weights").write_text("half of v2")
        raise RuntimeError("disk full")
    assert (out / "weights").read_text() == "v1"  # the previous version is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no partial or .old left behind

    with atomic_directory(out) as partial:
        (partial / "weights").write_text("v2")
    assert (out / "weights").read_text() == "v2" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
