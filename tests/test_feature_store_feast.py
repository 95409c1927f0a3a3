"""The Feast feature store over the ingested logs: definitions, point-in-time training sets, online lookups
against SQLite and a real redis-server, missing markers, idempotent materialization, the CLIs."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

feast = pytest.importorskip("feast")

from aigp.cli.demo_context import DemoContext  # noqa: E402
from aigp.feature_repo import definitions as repo_definitions  # noqa: E402
from aigp.feature_repo.definitions import FEAST_TYPES, build_definitions  # noqa: E402
from aigp.feature_repo.online_layout import serialize_column, serialize_sku_keys  # noqa: E402
from aigp.feature_repo.store import (  # noqa: E402
    FEATURES_MISSING,
    MISSING_FEATURES,
    REPO_DIR,
    FeatureStoreConfig,
    open_store,
)
from aigp.ingest import DECISION_EVENTS, SKU_SNAPSHOTS, ingest_logs, read_manifest, source_table, table_file  # noqa: E402
from aigp.schema import (  # noqa: E402
    ENTITY_KEY,
    EVENT_TIMESTAMP,
    FEATURES,
    FORBIDDEN_SUBSTRINGS,
    Group,
    features_in,
    numeric_state_features,
)

ROOT = Path(__file__).resolve().parent.parent


def WINDOW(days: list[pd.Timestamp]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The week the online tests materialize: late enough that the first SKUs finished pricing before it."""
    return days[18], days[25]


# --- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def feature_data(market_logs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fs") / "features"
    ingest_logs(market_logs.path, out)
    return out


@pytest.fixture(scope="module")
def sources(feature_data) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(feature_data / table_file(name))
            for name in [*(g.value for g in Group), DECISION_EVENTS]}


@pytest.fixture(scope="module")
def days(sources) -> list[pd.Timestamp]:
    return sorted(sources[DECISION_EVENTS][EVENT_TIMESTAMP].unique())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """A real redis-server on a free loopback port (`.ci/run` and `make test` install it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: `apt-get install -y redis-server` (make system-deps)")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"redis-server did not start on port {port}")
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    client.close()
    proc.terminate()
    proc.wait(timeout=10)


def _open(feature_data: Path, state: Path, kind: str, redis_url: str | None = None, **kw):
    extra = {"redis_connection_string": redis_url} if kind == "redis" else {}
    store = open_store(feature_data=feature_data, state_dir=state, online_store=kind, **extra, **kw)
    store.apply()
    return store


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def online_store(request, feature_data, tmp_path_factory):
    """A store of each online kind with the second week of the log materialized."""
    redis_url = request.getfixturevalue("redis_server") if request.param == "redis" else None
    if redis_url:
        import redis

        redis.Redis.from_url(f"redis://{redis_url}").flushall()
    store = _open(feature_data, tmp_path_factory.mktemp(f"state_{request.param}"), request.param, redis_url)
    return store


@pytest.fixture(scope="module")
def sqlite_store(feature_data, tmp_path_factory):
    return _open(feature_data, tmp_path_factory.mktemp("state_pit"), "sqlite")


# --- definitions ----------------------------------------------------------------------------------------
def test_views_are_generated_from_the_schema_one_field_per_feature(feature_data) -> None:
    defs = build_definitions(str(feature_data))
    assert set(defs.views) == set(Group)
    seen = {}
    for group, view in defs.views.items():
        assert view.name == group.value
        assert [e.name for e in view.entity_columns] == [ENTITY_KEY]
        for field in view.features:
            assert FEATURES[field.name].group is group
            assert field.dtype == FEAST_TYPES[FEATURES[field.name].dtype], field.name
            seen[field.name] = group
        assert view.batch_source.path == str(feature_data / table_file(source_table(group)))
    assert set(seen) == set(FEATURES)
    assert defs.views[Group.SKU].ttl == dt.timedelta(0)
    assert defs.views[Group.PERFORMANCE].ttl == dt.timedelta(days=1)
    assert defs.entity.join_key == ENTITY_KEY


def test_feature_services(feature_data) -> None:
    defs = build_definitions(str(feature_data))
    names = {name: [f.name for p in svc.feature_view_projections for f in p.features]
             for name, svc in defs.services.items()}
    assert set(names) == {"ltve_training", "llm_prompt", "monitoring"}
    assert sorted(names["ltve_training"]) == sorted(numeric_state_features())
    assert sorted(names["llm_prompt"]) == sorted(FEATURES)
    assert "review_digest" not in names["monitoring"] and "prev_discount" in names["monitoring"]
    assert all(FEATURES[n].dtype != "string" for n in names["ltve_training"])


def test_identity_blind_no_user_level_entity_or_feature_anywhere(feature_data) -> None:
    defs = build_definitions(str(feature_data))
    names = [defs.entity.name, defs.entity.join_key]
    for view in defs.views.values():
        names += [view.name, view.batch_source.name, *(f.name for f in view.features),
                  *(e.name for e in view.entity_columns)]
    for service in defs.services.values():
        names.append(service.name)
    for name in names:
        assert not any(bad in name.lower() for bad in FORBIDDEN_SUBSTRINGS), name
    assert len([o for o in defs.objects() if isinstance(o, feast.Entity)]) == 1


def test_feast_cli_sees_only_the_definitions_module() -> None:
    from feast.repo_operations import get_repo_files

    assert [p.name for p in get_repo_files(REPO_DIR)] == ["definitions.py"]
    # The module-level objects Feast discovers are the generated ones.
    assert repo_definitions.daily_performance.name == Group.PERFORMANCE.value
    assert repo_definitions.llm_prompt.name == "llm_prompt"


def test_production_yaml_is_redis_with_an_s3_registry(monkeypatch) -> None:
    from feast.repo_config import load_repo_config

    monkeypatch.setenv("REDIS_CONNECTION_STRING", "redis-master:6379,password=secret")
    monkeypatch.setenv("AIGP_FEAST_REGISTRY", "s3://aigp-feast/registry.db")
    monkeypatch.setenv("AIGP_OFFLINE_STORE", "duckdb")
    cfg = load_repo_config(REPO_DIR, REPO_DIR / "feature_store.production.yaml")
    assert cfg.online_store.type == "redis"
    assert cfg.online_store.connection_string == "redis-master:6379,password=secret"
    assert cfg.registry.path == "s3://aigp-feast/registry.db"
    assert cfg.offline_store.type == "duckdb"
    assert cfg.entity_key_serialization_version == 3
    embedded = load_repo_config(REPO_DIR, REPO_DIR / "feature_store.yaml")
    assert (embedded.online_store.type, embedded.offline_store.type) == ("sqlite", "duckdb")


# --- the bulk writers produce Feast's bytes -------------------------------------------------------------
def test_bulk_serialization_matches_feast() -> None:
    import pyarrow as pa
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    rng = np.random.default_rng(0)
    floats = np.concatenate([rng.normal(size=50).astype(np.float32) * 1e3, [0.0, -0.0, np.inf, 1e-38, np.nan]])
    cases = {
        "float32": (pa.array(floats, pa.float32()), ValueType.FLOAT),
        "int64": (pa.array([0, 1, -1, 2**40, -(2**62), None, 7], pa.int64()), ValueType.INT64),
        "bool": (pa.array([True, False, None, True]), ValueType.BOOL),
        "string": (pa.array(["", "a", "ünï", None, "x" * 300]), ValueType.STRING),
    }
    for dtype, (array, value_type) in cases.items():
        ours = serialize_column(array, dtype)
        values = [None if (v is None or (isinstance(v, float) and np.isnan(v))) else v for v in array.to_pylist()]
        theirs = [p.SerializeToString() for p in python_values_to_proto_values(values, value_type)]
        assert ours == theirs, dtype
    ids = np.array([0, 1, 255, 2**31, 2**53 - 1, 123456789], dtype=np.int64)
    expected = [serialize_entity_key(EntityKey(join_keys=[ENTITY_KEY], entity_values=[Value(int64_val=int(i))]), 3)
                for i in ids]
    assert serialize_sku_keys(ids) == expected


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_our_writer_is_read_back_by_feasts_own_reader_as_feasts_engine_wrote(kind, feature_data, days, request,
                                                                             tmp_path) -> None:
    """The guard on ``online_layout``'s writers (they write Feast's layout with Feast's private helpers): the
    same window through Feast's engine (``FeatureStore.materialize``) and through ours, each into its own
    project of the same store kind; the installed Feast's own ``get_online_features`` reads both back, and
    every feature of every SKU priced in the window is equal and present. A Feast upgrade that changes the
    layout (table names, key or field hashing, value encoding) fails here."""
    redis_url = request.getfixturevalue("redis_server") if kind == "redis" else None
    start, end = days[10].to_pydatetime(), days[12].to_pydatetime()
    stock = _open(feature_data, tmp_path / "stock", kind, redis_url, project="feast_engine")
    stock.feast.materialize(start, end - dt.timedelta(microseconds=1))
    ours = _open(feature_data, tmp_path / "ours", kind, redis_url, project="aigp_writer")
    report = ours.materialize(start, end)
    assert report.rows_written == report.rows_read > 0
    priced = pd.read_parquet(feature_data / table_file(Group.PRICING),
                             filters=[(EVENT_TIMESTAMP, ">=", days[10]), (EVENT_TIMESTAMP, "<", days[12])])
    ids = [*sorted(set(priced[ENTITY_KEY].tolist())), 10**9]  # every SKU priced in the window, and an unknown one
    assert len(ids) > 100
    service = ours.definitions.services["llm_prompt"]
    rows = [{ENTITY_KEY: i} for i in ids]
    theirs = stock.feast.get_online_features(features=service, entity_rows=rows).to_dict()
    mine = ours.feast.get_online_features(features=service, entity_rows=rows).to_dict()
    assert set(mine) == set(theirs) == {ENTITY_KEY, *FEATURES}
    for name in FEATURES:
        assert mine[name] == theirs[name], name
        assert None not in mine[name][:-1] and mine[name][-1] is None, name
    # On SQLite, also the same rows underneath: every (entity, feature) row with the same value bytes and time.
    if kind == "sqlite":
        for group in Group:
            q = "SELECT entity_key, feature_name, value, event_ts FROM {}_{} ORDER BY 1, 2"
            with sqlite3.connect(tmp_path / "stock" / "online.db") as s:
                expected = s.execute(q.format("feast_engine", group.value)).fetchall()
            with sqlite3.connect(tmp_path / "ours" / "online.db") as o:
                written = o.execute(q.format("aigp_writer", group.value)).fetchall()
            assert written == expected and len(written) == (len(ids) - 1) * len(features_in(group)), group


# --- point-in-time training sets ------------------------------------------------------------------------
def test_training_set_is_point_in_time_with_every_decision_kept(sqlite_store, sources, days) -> None:
    start, end = days[3].to_pydatetime(), days[17].to_pydatetime()
    train = sqlite_store.training_set(start, end, "llm_prompt")
    events = sources[DECISION_EVENTS]
    wanted = events[(events[EVENT_TIMESTAMP] >= start) & (events[EVENT_TIMESTAMP] < end)]
    assert len(train) == len(wanted) > 1000  # count in == count out
    assert not train.duplicated([ENTITY_KEY, EVENT_TIMESTAMP]).any()
    # Every feature equals the source row stamped at the decision time (the state known then) ...
    for group in Group:
        src = sources[group.value]
        on = [ENTITY_KEY] if group is Group.SKU else [ENTITY_KEY, EVENT_TIMESTAMP]
        merged = train[[ENTITY_KEY, EVENT_TIMESTAMP]].merge(src.drop(columns=EVENT_TIMESTAMP) if group is Group.SKU
                                                            else src, on=on, how="left")
        for name in (c for c in src.columns if c not in (ENTITY_KEY, EVENT_TIMESTAMP)):
            got, want = train[name].to_numpy(), merged[name].to_numpy()
            assert (got == want).all(), f"{group.value}.{name}"
    # ... and the labels are that decision's action and outcome.
    labelled = train.merge(wanted, on=[ENTITY_KEY, EVENT_TIMESTAMP], suffixes=("", "_event"))
    assert (labelled["out_gmv"] == labelled["out_gmv_event"]).all()
    assert np.allclose(labelled["discount"], labelled["discount_change"] + labelled["prev_discount"], atol=1e-6)


def test_no_training_row_sees_a_value_stamped_after_its_event_time(sqlite_store, sources, days) -> None:
    """Entity rows one microsecond before each decision must get the previous day's state (or none)."""
    events = sources[DECISION_EVENTS]
    rows = events[(events[EVENT_TIMESTAMP] >= days[5]) & (events[EVENT_TIMESTAMP] < days[9])][[ENTITY_KEY,
                                                                                                EVENT_TIMESTAMP]]
    early = rows.assign(**{EVENT_TIMESTAMP: rows[EVENT_TIMESTAMP] - pd.Timedelta(microseconds=1)})
    features = [f"{Group.PRICING.value}:days_since_launch", f"{Group.PERFORMANCE.value}:cum_gmv",
                f"{Group.TEXT.value}:review_digest", f"{Group.SKU.value}:list_price"]
    got = sqlite_store.feast.get_historical_features(entity_df=early, features=features).to_df()
    assert len(got) == len(early)  # nothing dropped, even rows with no earlier state
    got = got.merge(sources[Group.PRICING.value].rename(columns={"days_since_launch": "age_at_decision"}),
                    left_on=[ENTITY_KEY, got[EVENT_TIMESTAMP] + pd.Timedelta(microseconds=1)],
                    right_on=[ENTITY_KEY, EVENT_TIMESTAMP], suffixes=("", "_decision"))
    launch_day = got["age_at_decision"] == 0
    assert launch_day.sum() > 20 and (~launch_day).sum() > 100
    # Launch-day decisions have no earlier state: null, not the launch-day row.
    assert got.loc[launch_day, "days_since_launch"].isna().all()
    assert got.loc[launch_day, "cum_gmv"].isna().all()
    # Later decisions see yesterday's state.
    assert (got.loc[~launch_day, "days_since_launch"] == got.loc[~launch_day, "age_at_decision"] - 1).all()
    # A SKU launched at exactly that instant is not yet known either; one launched earlier is.
    assert got.loc[launch_day, "list_price"].isna().all() and got.loc[~launch_day, "list_price"].notna().all()


def test_training_set_errors(sqlite_store, days) -> None:
    with pytest.raises(ValueError, match="unknown feature service 'prices'"):
        sqlite_store.training_set(days[0], days[3], "prices")
    with pytest.raises(ValueError, match="no decisions in"):
        sqlite_store.training_set(dt.date(2020, 1, 1), dt.date(2020, 1, 2), "ltve_training")


# --- online lookups, the same tests on SQLite and Redis --------------------------------------------------
def test_online_features_are_the_latest_state_of_each_sku(online_store, sources, days) -> None:
    start, end = WINDOW(days)
    report = online_store.materialize(start, end)
    assert report.rows_read == report.rows_written > 0
    pricing = sources[Group.PRICING.value]
    in_window = pricing[(pricing[EVENT_TIMESTAMP] >= start) & (pricing[EVENT_TIMESTAMP] < end)]
    latest = in_window.sort_values(EVENT_TIMESTAMP).groupby(ENTITY_KEY).tail(1)
    sample = latest.sample(40, random_state=1)
    got = online_store.online_features(sample[ENTITY_KEY].tolist(), "llm_prompt")
    assert list(got[ENTITY_KEY]) == sample[ENTITY_KEY].tolist()  # request order
    assert not got[FEATURES_MISSING].any() and (got[MISSING_FEATURES].map(len) == 0).all()
    for group in Group:
        src = sources[group.value]
        key = [ENTITY_KEY] if group is Group.SKU else [ENTITY_KEY, EVENT_TIMESTAMP]
        want = sample[key].merge(src, on=key, how="left") if group is not Group.SKU else sample[[ENTITY_KEY]].merge(
            src, on=ENTITY_KEY, how="left")
        for name in (c for c in src.columns if c not in (ENTITY_KEY, EVENT_TIMESTAMP)):
            assert (got[name].to_numpy() == want[name].to_numpy()).all(), f"{online_store.config.online_store} {name}"
    assert str(got["list_price"].dtype) == "float32" and str(got["inventory"].dtype) == "Int64"
    _assert_same_as_feast_sdk(online_store, got)


def _assert_same_as_feast_sdk(store, got: pd.DataFrame) -> None:
    """Our batched read of Feast's layout returns what Feast's own get_online_features returns, as a frame and
    as the plain records serving uses (None where missing, the same missing marker)."""
    ids = [int(i) for i in got[ENTITY_KEY]]
    sdk = store.feast.get_online_features(features=store.definitions.services["llm_prompt"],
                                          entity_rows=[{ENTITY_KEY: i} for i in ids]).to_dict()
    records = store.online_records(ids, "llm_prompt")
    assert [r[ENTITY_KEY] for r in records] == ids
    assert [r[MISSING_FEATURES] for r in records] == got[MISSING_FEATURES].tolist()
    assert [r[FEATURES_MISSING] for r in records] == got[FEATURES_MISSING].tolist()
    for name in FEATURES:
        ours = [None if pd.isna(v) else v for v in got[name].tolist()]
        assert ours == sdk[name], name
        assert [r[name] for r in records] == sdk[name], name


def test_missing_sku_comes_back_with_an_explicit_marker(online_store, sources, days) -> None:
    start, end = WINDOW(days)
    online_store.materialize(start, end)
    pricing = sources[Group.PRICING.value]
    priced = int(pricing[pricing[EVENT_TIMESTAMP] == end - pd.Timedelta(days=1)][ENTITY_KEY].iloc[0])
    finished = pricing.groupby(ENTITY_KEY)[EVENT_TIMESTAMP].max()  # last priced before the window: not loaded
    stale = int(finished[finished < start].index[0])
    got = online_store.online_features([priced, 10**9, stale, priced], "llm_prompt").set_index(pd.RangeIndex(4))
    assert got[FEATURES_MISSING].tolist() == [False, True, True, False]
    assert got.loc[1, MISSING_FEATURES] == list(got.columns[1:-2])  # unknown SKU: every feature missing
    assert got.loc[1, ENTITY_KEY] == 10**9 and got.loc[1, ["list_price", "review_digest"]].isna().all()
    # A SKU not priced in the window has no state in it, attributes included (as `feast materialize` loads it).
    assert got.loc[2, MISSING_FEATURES] == list(got.columns[1:-2]) and pd.isna(got.loc[2, "list_price"])
    _assert_same_as_feast_sdk(online_store, got)
    empty = online_store.online_features([], "ltve_training")
    assert len(empty) == 0 and FEATURES_MISSING in empty.columns


def test_rematerializing_a_window_is_idempotent_and_never_rolls_back(online_store, days) -> None:
    online_store.materialize(*WINDOW(days))
    ids = list(range(0, 400, 7))
    first = online_store.online_features(ids, "llm_prompt")
    snapshot = _dump(online_store)
    report = online_store.materialize(*WINDOW(days))  # the same window again
    assert report.rows_written == report.rows_read  # same instants: rewritten, not duplicated
    assert _dump(online_store) == snapshot
    # An older window: rows of SKUs already stored are older than theirs and skipped; SKUs that finished
    # pricing before the window (nothing stored so far) gain their older state.
    online_store.materialize(days[2], days[5])
    after = online_store.online_features(ids, "llm_prompt")
    complete = ~first[FEATURES_MISSING]
    assert complete.sum() > 10 and (~complete).sum() > 3
    pd.testing.assert_frame_equal(after[complete], first[complete])
    assert after.loc[~complete, "days_since_launch"].notna().any()
    now = _dump(online_store)
    for table, rows in snapshot.items():  # nothing stored before was changed
        if isinstance(rows, list):
            assert set(rows) <= set(now[table]), table
        else:
            assert rows.items() <= now[table].items()


def _dump(store) -> object:
    if store.config.online_store == "sqlite":
        with sqlite3.connect(store.config.state_dir / "online.db") as conn:
            return {g.value: conn.execute(f"SELECT * FROM aigp_{g.value} ORDER BY entity_key, feature_name").fetchall()
                    for g in Group}
    import redis

    client = redis.Redis.from_url(f"redis://{store.config.redis_connection_string}")
    return {key: client.hgetall(key) for key in sorted(client.keys("*"))}


def test_materialize_is_chunked_into_bounded_windows(feature_data, days, tmp_path) -> None:
    per_day = read_manifest(feature_data)["tables"][Group.PERFORMANCE.value]["rows_per_day"]
    ten_days = [per_day[d.strftime("%Y-%m-%d")] for d in days[:10]]
    small = _open(feature_data, tmp_path / "small", "sqlite", max_window_rows=50).materialize(days[0], days[10])
    perf = {v.view: v for v in small.views}[Group.PERFORMANCE.value]
    # Days never split; a day larger than the budget is a window of its own: one window per day here.
    assert perf.windows == 10 and perf.max_window_rows == max(ten_days) and perf.rows_read == sum(ten_days)
    big = _open(feature_data, tmp_path / "big", "sqlite").materialize(days[0], days[10])
    assert {v.view: v for v in big.views}[Group.PERFORMANCE.value].windows == 1  # 10 days fit one budget
    assert big.rows_written < small.rows_written  # one window keeps each SKU's latest row only
    # The attributes are windowed like the daily views: their snapshot's rows of the days in the range.
    snapshots = read_manifest(feature_data)["tables"][SKU_SNAPSHOTS]["rows_per_day"]
    static = {v.view: v for v in small.views}[Group.SKU.value]
    assert static.windows == 10 and static.rows_read == sum(snapshots[d.strftime("%Y-%m-%d")] for d in days[:10])
    later = _open(feature_data, tmp_path / "later", "sqlite").materialize(days[9], days[10])
    assert {v.view: v for v in later.views}[Group.SKU.value].rows_read == ten_days[9] > 10
    with pytest.raises(ValueError, match="must be after start"):
        later_store = open_store(feature_data=feature_data, state_dir=tmp_path / "later")
        later_store.materialize(days[5], days[5])


def test_materialize_before_apply_is_a_clear_error(feature_data, days, tmp_path) -> None:
    store = open_store(feature_data=feature_data, state_dir=tmp_path / "fresh")
    with pytest.raises(ValueError, match="run `aigp features apply` first"):
        store.materialize(days[0], days[1])
    with pytest.raises(FileNotFoundError, match="aigp features ingest"):
        open_store(feature_data=tmp_path / "nothing", state_dir=tmp_path / "fresh").materialize(days[0], days[1])


def test_config_rejects_unknown_online_store(tmp_path) -> None:
    from aigp.config import ConfigError

    with pytest.raises(ConfigError, match="online_store"):
        FeatureStoreConfig.build(feature_data=tmp_path, online_store="dynamodb")


# --- command lines --------------------------------------------------------------------------------------
def test_aigp_features_cli_end_to_end(market_logs, days, tmp_path) -> None:
    from typer.testing import CliRunner

    from aigp.cli import app

    runner = CliRunner()
    data, state = tmp_path / "features", tmp_path / "state"
    common = ["--feature-data", str(data), "--state-dir", str(state)]
    result = runner.invoke(app, ["features", "ingest", "--logs", str(market_logs.path), "--feature-data", str(data)])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["features", "apply", *common]).exit_code == 0
    start, end = days[4].strftime("%Y-%m-%d"), days[8].strftime("%Y-%m-%d")
    result = runner.invoke(app, ["features", "materialize", "--start", start, "--end", end, *common])
    assert result.exit_code == 0, result.output
    out = tmp_path / "train.parquet"
    result = runner.invoke(app, ["features", "training-set", "--start", start, "--end", end, "--service",
                                 "ltve_training", "--out", str(out), *common])
    assert result.exit_code == 0, result.output
    train = pd.read_parquet(out)
    events = pd.read_parquet(data / table_file(DECISION_EVENTS))
    assert len(train) == ((events[EVENT_TIMESTAMP] >= days[4]) & (events[EVENT_TIMESTAMP] < days[8])).sum()
    assert set(numeric_state_features()) <= set(train.columns)
    bad = runner.invoke(app, ["features", "training-set", "--start", start, "--end", end, "--service", "nope",
                              "--out", str(out), *common])
    assert bad.exit_code == 2 and "unknown feature service 'nope'" in " ".join(bad.output.split())
    bad = runner.invoke(app, ["features", "ingest", "--logs", str(tmp_path / "missing"), "--feature-data",
                              str(tmp_path / "x")])
    assert bad.exit_code == 2 and "does not exist" in " ".join(bad.output.split())  # rich wraps lines


def test_demo_stage(market_logs, tmp_path) -> None:
    from aigp.cli.features import stage_features

    ctx = DemoContext(root=tmp_path, logs=market_logs)
    line = stage_features(ctx)
    train = pd.read_parquet(tmp_path / "ltve_training_set.parquet")
    assert len(train) == len(market_logs.read("decisions.parquet"))
    assert f"training set {len(train):,} x" in line and "0 with missing features" in line
    assert ctx.feature_store.config.state_dir == tmp_path / "feature_store"
