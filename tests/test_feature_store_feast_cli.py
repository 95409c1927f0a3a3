"""Feast's own command line on a copy of ``feature_repo/`` as shipped (its yaml, definitions and
.feastignore): ``feast apply``, ``feast materialize``, ``feast materialize-incremental`` and
``feast get-online-features``, each a real ``feast`` process (the console script next to this interpreter),
and every feature read back compared with the ingested source rows."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("feast")

from aigp.feature_repo.store import REPO_DIR
from aigp.ingest import ingest_logs, table_file
from aigp.schema import ENTITY_KEY, EVENT_TIMESTAMP, FEATURES, Group

pytestmark = [pytest.mark.slow]

FEAST = Path(sys.executable).with_name("feast")
# Every feature of every view, as `feast get-online-features -f` takes them (view:feature).
REFS = [f"{spec.group.value}:{name}" for name, spec in FEATURES.items()]


@pytest.fixture(scope="module")
def feature_data(market_logs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "features"
    ingest_logs(market_logs.path, out)
    return out


@pytest.fixture(scope="module")
def rows(feature_data) -> dict[Group, pd.DataFrame]:
    """What each view must serve: the daily tables indexed by (sku_id, event_timestamp); the SKU attributes
    from the catalog ingestion writes (one row per SKU, stamped at launch), indexed by sku_id."""
    return {g: pd.read_parquet(feature_data / table_file(g)).set_index(
        [ENTITY_KEY] if g is Group.SKU else [ENTITY_KEY, EVENT_TIMESTAMP]) for g in Group}


@pytest.fixture(scope="module")
def days(rows) -> list[pd.Timestamp]:
    return sorted(rows[Group.PRICING].index.get_level_values(EVENT_TIMESTAMP).unique())


@pytest.fixture(scope="module")
def repo(feature_data, tmp_path_factory) -> Path:
    """A copy of feature_repo/ as shipped, without its local state, applied with `feast apply`."""
    copy = tmp_path_factory.mktemp("repo") / "feature_repo"
    shutil.copytree(REPO_DIR, copy, ignore=shutil.ignore_patterns("data", "__pycache__"))
    out = feast(copy, feature_data, "apply")
    assert "Created feature view sku_attributes" in out and "Created feature service llm_prompt" in out
    return copy


def feast(repo: Path, feature_data: Path, *args: str) -> str:
    """Run the real `feast` CLI in ``repo``; its stdout (a failure shows stderr)."""
    assert FEAST.exists(), f"no feast console script at {FEAST}"
    env = {**os.environ, "AIGP_FEATURE_DATA": str(feature_data), "FEAST_USAGE": "False", "DO_NOT_TRACK": "1"}
    done = subprocess.run([str(FEAST), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"feast {' '.join(args[:2])} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout)  # Feast colours view names


def online(repo: Path, feature_data: Path, sku_ids: list[int]) -> pd.DataFrame:
    """`feast get-online-features -e sku_id=<int> ... -f view:feature ...`: one row per SKU, in request order."""
    args = ["get-online-features"]
    for sku in sku_ids:
        args += ["-e", f"{ENTITY_KEY}={sku}"]
    for ref in REFS:
        args += ["-f", ref]
    out = feast(repo, feature_data, *args)
    return pd.DataFrame(json.loads(out[out.index("{"):]))


def assert_equals_source(got: pd.DataFrame, rows: dict[Group, pd.DataFrame], at: dict[int, pd.Timestamp]) -> None:
    """Every daily feature of every SKU is its source row stamped ``at[sku]``, every attribute the catalog's
    (float32 compared as float32)."""
    assert got[ENTITY_KEY].tolist() == list(at)
    for name, spec in FEATURES.items():
        keys = list(at) if spec.group is Group.SKU else list(at.items())
        want = rows[spec.group].loc[keys, name].tolist()
        values = got[name].tolist()
        assert None not in values, f"{name} came back null for SKUs {got[ENTITY_KEY].tolist()}: {values}"
        if spec.dtype == "float32":
            assert np.array_equal(np.float32(values), np.float32(want)), name
        else:
            assert values == want, name


def _priced_on(rows: dict[Group, pd.DataFrame], day: pd.Timestamp) -> list[int]:
    pricing = rows[Group.PRICING].reset_index()
    return sorted(pricing.loc[pricing[EVENT_TIMESTAMP] == day, ENTITY_KEY].tolist())


def _cli_time(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S")


def test_feast_materialize_then_get_online_features_returns_every_feature(repo, feature_data, rows, days) -> None:
    """`feast materialize` of one day loads all six views, SKU attributes included, for the SKUs priced that
    day; `feast get-online-features -e sku_id=<int>` reads them back (Feast types the value by the join key)."""
    day = days[6]
    out = feast(repo, feature_data, "materialize", _cli_time(day), _cli_time(day + pd.Timedelta(hours=23, minutes=59)))
    assert "sku_attributes" in out
    priced = _priced_on(rows, day)
    launched = [s for s in priced if rows[Group.PRICING].loc[(s, day), "days_since_launch"] == 0]
    older = [s for s in priced if s not in launched]
    assert launched and len(older) > 3
    sample = [*older[:3], launched[0]]  # SKUs launched days before the window, and one launched in it
    got = online(repo, feature_data, sample)
    assert_equals_source(got, rows, {sku: day for sku in sample})
    assert got["category"].notna().all() and got["list_price"].notna().all()


def test_feast_materialize_incremental_continues_from_the_last_window(repo, feature_data, rows, days) -> None:
    """After `feast materialize`, `feast materialize-incremental END` loads the days since; a SKU priced in the
    new days shows its newest state, one launched in them shows up with its attributes."""
    first = days[6]
    feast(repo, feature_data, "materialize", _cli_time(first), _cli_time(first + pd.Timedelta(hours=23, minutes=59)))
    last = days[8]
    out = feast(repo, feature_data, "materialize-incremental", _cli_time(last + pd.Timedelta(hours=23, minutes=59)))
    assert "sku_attributes from" in out
    priced = _priced_on(rows, last)
    before = set(_priced_on(rows, first)) | set(_priced_on(rows, days[7]))
    new = [s for s in priced if s not in before]  # launched on the last day
    again = [s for s in priced if s in before]
    assert new and again
    sample = [*again[:3], new[0]]
    got = online(repo, feature_data, sample)
    assert_equals_source(got, rows, {sku: last for sku in sample})
