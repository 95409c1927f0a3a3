"""Feature store: materialization throughput and memory, and online lookup latency, SQLite vs Redis.

    .venv/bin/python -m bench.bench_feature_store [--skus 200000] [--stock-skus 20000] [--workdir DIR] [--reuse]
    .venv/bin/python -m bench.bench_feature_store --writer-only [--stock-skus 20000]   # section 4 alone

1. Data: ``MarketConfig(n_skus=200_000, launch_days=1)`` (every SKU launches the same day, so one day holds
   200k SKUs in every view) is simulated and ingested (``aigp.ingest``) once into ``--workdir``.
2. Materialization, each run in its own child process (a clean peak RSS) into a fresh store:
   200k SKUs x 1 day of all six views into SQLite and into Redis (a real ``redis-server`` on loopback),
   and a 7-day window into Redis (memory must not grow with the window: windows are one day here).
   Comparison: Feast's own engine (``FeatureStore.materialize``) against ours on ``--stock-skus`` SKUs
   (Feast's engine needs ~4 min for 200k SKUs), 1 day and 7 days.
3. Online lookups for 1 and 256 random SKUs of the ``llm_prompt`` service (56 features) from the 1-day
   stores: ours as a DataFrame (``AigpFeatureStore.online_features``) and as plain records
   (``online_records``: the serving transformer's path), both with the missing marker, Feast's SDK
   (``get_online_features(...).to_dict()``) and a direct pandas lookup of the same rows (``frame.loc``).
4. Why ``online_layout`` writes Feast's layout itself (issue 16): in ONE process, on ``--stock-skus`` SKUs
   x 1 day into fresh SQLite stores, Feast's engine (``FeatureStore.materialize``), Feast's public write
   path fed by our windowed reads (``FeatureStore.write_to_online_store``: protobuf per value, the online
   store's ``online_write_batch``) and ours, in alternating order, twice; then Feast's own
   ``get_online_features`` reads the same SKUs from the three stores, which must agree. Its own section.
Targets (issue 3): 200k SKUs into SQLite in under 60 s; 256-SKU lookup p99 under 50 ms on Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._report import markdown_table, write_section

ROOT = Path(__file__).resolve().parent.parent
START = "2026-03-01"  # MarketConfig's default start_date: the launch day of every SKU here


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- children ------------------------------------------------------------------------------------------
def child_prepare(args: dict) -> dict:
    from aigp.ingest import ingest_logs
    from aigp.market.config import MarketConfig
    from aigp.market.logs import simulate_to_directory

    out = Path(args["dir"])
    t = time.perf_counter()
    simulate_to_directory(MarketConfig.build(n_skus=args["skus"], launch_days=1, seed=11), out / "logs",
                          overwrite=True, progress=True)
    simulated = time.perf_counter() - t
    report = ingest_logs(out / "logs", out / "features", overwrite=True, progress=True)
    return {"simulate_seconds": simulated, "ingest_seconds": report.seconds, "rows": report.rows,
            "peak_rss_mb": peak_rss_mb()}


def child_materialize(args: dict) -> dict:
    import datetime as dt

    from aigp.feature_repo.store import open_store

    state = Path(args["state"])
    shutil.rmtree(state, ignore_errors=True)
    extra = {"redis_connection_string": args["redis"]} if args["kind"] == "redis" else {}
    if args["kind"] == "redis":
        import redis

        redis.Redis.from_url(f"redis://{args['redis']}").flushall()
    store = open_store(feature_data=args["data"], state_dir=state, online_store=args["kind"], **extra)
    store.apply()
    before = peak_rss_mb()
    start = dt.datetime.fromisoformat(START).replace(tzinfo=dt.UTC)
    end = start + dt.timedelta(days=args["days"])
    cpu = os.times()
    t = time.perf_counter()
    if args["engine"] == "feast":  # Feast's own engine: the whole window at once, its inclusive end
        store.feast.materialize(start, end - dt.timedelta(microseconds=1))
        rows_read = values_read = None
    else:
        report = store.materialize(start, end)
        rows_read = report.rows_read
        width = {v.name: len(v.features) for v in store.definitions.views.values()}
        values_read = sum(v.rows_read * width[v.view] for v in report.views)
    seconds = time.perf_counter() - t
    now = os.times()
    return {"seconds": seconds, "cpu_seconds": (now.user - cpu.user) + (now.system - cpu.system),
            "load_average": os.getloadavg()[0], "rows_read": rows_read, "values_read": values_read,
            "rss_before_mb": before, "peak_rss_mb": peak_rss_mb()}


def child_lookup(args: dict) -> dict:
    import pandas as pd

    from aigp.feature_repo.store import open_store
    from aigp.ingest import table_file
    from aigp.schema import ENTITY_KEY, EVENT_TIMESTAMP, Group

    extra = {"redis_connection_string": args["redis"]} if args["kind"] == "redis" else {}
    store = open_store(feature_data=args["data"], state_dir=args["state"], online_store=args["kind"], **extra)
    # The same rows in a pandas frame: the day's row of every daily view joined with the SKU attributes.
    day = pd.Timestamp(START, tz="UTC")
    frame = pd.read_parquet(Path(args["data"]) / table_file(Group.SKU)).drop(columns=EVENT_TIMESTAMP)
    for group in Group:
        if group is not Group.SKU:
            part = pd.read_parquet(Path(args["data"]) / table_file(group), filters=[(EVENT_TIMESTAMP, "==", day)])
            frame = frame.merge(part.drop(columns=EVENT_TIMESTAMP), on=ENTITY_KEY)
    frame = frame.set_index(ENTITY_KEY)
    ids_all = frame.index.to_numpy()
    service = store.definitions.services["llm_prompt"]
    rng = np.random.default_rng(0)
    results = {}
    for n in (1, 256):
        reps = {"ours": 500 if n == 1 else 300, "ours_records": 500 if n == 1 else 300,
                "pandas": 500 if n == 1 else 300, "feast_sdk": 300 if n == 1 else 100}
        batches = [rng.choice(ids_all, n, replace=False).tolist() for _ in range(max(reps.values()) + 10)]
        check = store.online_features(batches[0], "llm_prompt")
        assert not check["features_missing"].any(), "benchmark SKUs must all be materialized"
        ways = {
            "ours": lambda ids: store.online_features(ids, "llm_prompt"),
            "ours_records": lambda ids: store.online_records(ids, "llm_prompt"),
            "feast_sdk": lambda ids: store.feast.get_online_features(
                features=service, entity_rows=[{ENTITY_KEY: i} for i in ids]).to_dict(),
            "pandas": lambda ids: frame.loc[ids],
        }
        for name, fn in ways.items():
            times = []
            for i, ids in enumerate(batches[:reps[name] + 10]):
                t = time.perf_counter()
                fn(ids)
                if i >= 10:  # warm-up
                    times.append((time.perf_counter() - t) * 1000)
            results[f"{name}_{n}"] = {"p50_ms": float(np.percentile(times, 50)),
                                      "p99_ms": float(np.percentile(times, 99)), "reps": len(times)}
    store.close()
    return results


class FeastPublicWriter:
    """Feast's public write path as an ``OnlineWriter``: ``FeatureStore.write_to_online_store`` per window."""

    def __init__(self, store: Any):
        self.store = store

    def write(self, view: Any, table: Any) -> int:
        if table.num_rows:
            self.store.write_to_online_store(view.name, table.to_pandas())
        return table.num_rows

    def close(self) -> None:
        pass


def child_compare(args: dict) -> dict:
    """Feast's engine, Feast's public write path and ours on the same window, in this one process."""
    import datetime as dt

    from aigp.feature_repo.store import open_store
    from aigp.schema import ENTITY_KEY, FEATURES

    start = dt.datetime.fromisoformat(START).replace(tzinfo=dt.UTC)
    end = start + dt.timedelta(days=args["days"])
    stores: dict[str, Any] = {}
    times: dict[str, list[float]] = {"feast_engine": [], "feast_write_api": [], "ours": []}
    for rep in range(args["repeats"]):
        order = list(times) if rep % 2 == 0 else list(reversed(times))
        for engine in order:
            state = Path(args["state"]) / f"{engine}_{rep}"
            shutil.rmtree(state, ignore_errors=True)
            store = open_store(feature_data=args["data"], state_dir=state, project=engine)
            store.apply()
            t = time.perf_counter()
            if engine == "feast_engine":  # the whole window at once, its inclusive end
                store.feast.materialize(start, end - dt.timedelta(microseconds=1))
            elif engine == "feast_write_api":
                store.materialize(start, end, writer=FeastPublicWriter(store.feast))
            else:
                store.materialize(start, end)
            times[engine].append(time.perf_counter() - t)
            stores[engine] = store
    # The three stores hold the same values, read by Feast's own reader.
    ids = [int(i) for i in np.random.default_rng(0).choice(args["skus"], 300, replace=False)]
    service = stores["ours"].definitions.services["llm_prompt"]
    read = {name: store.feast.get_online_features(features=service, entity_rows=[{ENTITY_KEY: i} for i in ids])
            .to_dict() for name, store in stores.items()}
    agree = all(read[name] == read["ours"] for name in read)
    present = sum(v is not None for name in FEATURES for v in read["ours"][name])
    return {"seconds": times, "agree": agree, "values_checked": present, "skus_checked": len(ids),
            "load_average": os.getloadavg()[0]}


CHILDREN = {"prepare": child_prepare, "materialize": child_materialize, "lookup": child_lookup,
            "compare": child_compare}


def run_child(kind: str, args: dict, timeout: int = 3600) -> dict:
    env = {**os.environ, "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "bench.bench_feature_store", "--child", kind, json.dumps(args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1])
    print(f"  {kind} {args.get('kind', '')} {args.get('engine', '')} {args.get('days', '')}: {result}", flush=True)
    return result


# --- redis ---------------------------------------------------------------------------------------------
class RedisServer:
    def __init__(self, workdir: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed: `apt-get install -y redis-server` (make system-deps)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        self.url = f"127.0.0.1:{self.port}"

    def used_memory_mb(self) -> float:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            info: dict[str, Any] = client.info("memory")  # type: ignore[assignment]  # sync client
            return info["used_memory"] / 2**20
        finally:
            client.close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


# --- main ----------------------------------------------------------------------------------------------
def prepare(workdir: Path, skus: int, reuse: bool) -> dict:
    """Simulate + ingest into ``workdir`` (its timings kept in prepare.json), or reuse an earlier run's."""
    from aigp.ingest import SKU_SNAPSHOTS

    manifest, record = workdir / "features" / "manifest.json", workdir / "prepare.json"
    if (reuse and manifest.exists() and record.exists() and json.loads(manifest.read_text())["skus"] == skus
            and SKU_SNAPSHOTS in json.loads(manifest.read_text())["tables"]):
        print(f"reusing {workdir}", flush=True)
        return {**json.loads(record.read_text()), "reused": True}
    print(f"simulating and ingesting {skus:,} SKUs into {workdir}", flush=True)
    result = run_child("prepare", {"dir": str(workdir), "skus": skus})
    record.write_text(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skus", type=int, default=200_000)
    parser.add_argument("--stock-skus", type=int, default=20_000, help="SKUs of the Feast-engine comparison")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "bench" / "feature_store")
    parser.add_argument("--reuse", action="store_true", help="reuse simulated + ingested data in --workdir")
    parser.add_argument("--no-write", action="store_true", help="print the tables, leave BENCHMARKS.md alone")
    parser.add_argument("--writer-only", action="store_true",
                        help="only the one-process writer comparison on --stock-skus SKUs (its own section)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each engine in the writer comparison")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](json.loads(args.child[1]))))
        return

    big, small = args.workdir / f"skus_{args.skus}", args.workdir / f"skus_{args.stock_skus}"
    small_prepared = prepare(small, args.stock_skus, args.reuse)
    compared = run_child("compare", {"data": str(small / "features"), "state": str(small / "state_compare"),
                                     "days": 1, "skus": args.stock_skus, "repeats": args.repeats})
    writer_body = writer_report(args.stock_skus, compared)
    print(writer_body)
    if not args.no_write:
        write_section("feature_store_writer", "Feature store (Feast): our online writer vs Feast's write paths",
                      writer_body, f"python -m bench.bench_feature_store --writer-only --stock-skus "
                                   f"{args.stock_skus} --repeats {args.repeats}")
    if args.writer_only:
        return
    prepared = {"big": prepare(big, args.skus, args.reuse), "small": small_prepared}
    server = RedisServer(args.workdir / "redis")
    try:
        runs: dict[str, dict] = {}

        def mat(name: str, data: Path, kind: str, days: int, engine: str = "ours") -> None:
            runs[name] = run_child("materialize", {"data": str(data / "features"), "state": str(data / f"state_{name}"),
                                                   "kind": kind, "days": days, "engine": engine, "redis": server.url})
            runs[name]["redis_used_mb"] = server.used_memory_mb() if kind == "redis" else None

        mat("sqlite_1d", big, "sqlite", 1)
        lookups = {"sqlite": run_child("lookup", {"data": str(big / "features"), "state": str(big / "state_sqlite_1d"),
                                                  "kind": "sqlite", "redis": server.url})}
        mat("redis_7d", big, "redis", 7)
        mat("redis_1d", big, "redis", 1)
        lookups["redis"] = run_child("lookup", {"data": str(big / "features"), "state": str(big / "state_redis_1d"),
                                                "kind": "redis", "redis": server.url})
        mat("small_ours_1d", small, "sqlite", 1)
        mat("small_feast_1d", small, "sqlite", 1, engine="feast")
        mat("small_ours_7d", small, "sqlite", 7)
        mat("small_feast_7d", small, "sqlite", 7, engine="feast")
    finally:
        server.stop()
    body = report(args.skus, args.stock_skus, prepared, runs, lookups)
    print(body)
    if args.no_write:
        return
    write_section("feature_store", "Feature store (Feast): materialization and online lookups", body,
                  f"python -m bench.bench_feature_store --skus {args.skus} --stock-skus {args.stock_skus}")


def writer_report(stock_skus: int, compared: dict) -> str:
    from aigp.schema import FEATURES

    times = compared["seconds"]
    best = {name: min(runs) for name, runs in times.items()}
    labels = {"feast_engine": "Feast's engine: `FeatureStore.materialize`",
              "feast_write_api": "Feast's public write path: our windowed reads + `write_to_online_store`",
              "ours": "ours: our windowed reads + `online_layout.SqliteWriter`"}
    rows = [{"path": labels[name], "runs (s)": ", ".join(f"{t:.1f}" for t in runs), "best s": round(best[name], 1),
             "best / ours": f"{best[name] / best['ours']:.1f}x"} for name, runs in times.items()]
    verdict = "agree" if compared["agree"] else "DISAGREE"
    api, engine = best["feast_write_api"] / best["ours"], best["feast_engine"] / best["ours"]
    if api >= 2:
        needed = (f"Needed: Feast's public write path (a protobuf per value, one SQLite `execute` per SKU and "
                  f"feature) is {api:.1f}x ours fed by the same reads, its whole engine {engine:.1f}x; so "
                  "`online_layout` keeps writing Feast's layout itself (with Feast's private `_mmh3` / "
                  "`compute_table_id`), guarded by the test below.")
    else:
        needed = (f"Not needed at this size: Feast's public write path is only {api:.1f}x ours (its engine "
                  f"{engine:.1f}x); the bulk writer should move onto `write_to_online_store`.")
    return f"""
{stock_skus:,} SKUs x 1 day, all six views ({len(FEATURES)} features, {6 * stock_skus:,} source rows) into fresh
SQLite stores, the three paths in one process, alternating order; the machine's 1-minute load average at the
end was {compared["load_average"]:.1f} (2 cores shared with other work: compare the ratios, not the seconds).

{markdown_table(rows)}

- Read back with the installed Feast's own `get_online_features` ({compared["skus_checked"]} random SKUs,
  {compared["values_checked"]:,} values present in ours): the three stores **{verdict}**.
- {needed}
- The guard: `test_our_writer_is_read_back_by_feasts_own_reader_as_feasts_engine_wrote`
  (tests/test_feature_store_feast.py) materializes one window both ways into SQLite and a real `redis-server`
  and fails if the installed Feast reads our layout differently from what its engine wrote.
"""


def report(skus: int, stock_skus: int, prepared: dict, runs: dict, lookups: dict) -> str:
    from aigp.schema import FEATURES

    n_features = len(FEATURES)
    rows = []
    for name, label, n, days, store in (
        ("sqlite_1d", "ours", skus, 1, "SQLite"),
        ("redis_1d", "ours", skus, 1, "Redis"),
        ("redis_7d", "ours", skus, 7, "Redis"),
        ("small_ours_1d", "ours", stock_skus, 1, "SQLite"),
        ("small_feast_1d", "Feast engine", stock_skus, 1, "SQLite"),
        ("small_ours_7d", "ours", stock_skus, 7, "SQLite"),
        ("small_feast_7d", "Feast engine", stock_skus, 7, "SQLite"),
    ):
        r = runs[name]
        same = runs[name.replace("feast", "ours")]  # Feast's engine reports no counts: the same source rows
        source_rows, values = same["rows_read"], same["values_read"]
        rows.append({
            "run": f"{label}, {n:,} SKUs x {days} day(s) -> {store}",
            "seconds": round(r["seconds"], 1),
            "CPU s": round(r["cpu_seconds"], 1),
            "load": round(r["load_average"], 1),
            "source rows": f"{source_rows:,}",
            "rows/s": f"{source_rows / r['seconds']:,.0f}",
            "values/s": f"{values / r['seconds']:,.0f}",
            "peak RSS MB": round(r["peak_rss_mb"]),
            "RSS before MB": round(r["rss_before_mb"]),
            "Redis MB": round(r["redis_used_mb"]) if r["redis_used_mb"] else "",
        })
    sqlite_s, sqlite_cpu = runs["sqlite_1d"]["seconds"], runs["sqlite_1d"]["cpu_seconds"]
    verdict_sqlite = ("met" if sqlite_s < 60 else f"missed by {sqlite_s - 60:.0f} s ({sqlite_s / 60:.2f}x the target) "
                      f"in wall time; CPU time {sqlite_cpu:.0f} s")
    ratio_small = runs["small_feast_1d"]["seconds"] / runs["small_ours_1d"]["seconds"]
    mem_1d, mem_7d = runs["redis_1d"]["peak_rss_mb"], runs["redis_7d"]["peak_rss_mb"]

    lookup_rows = []
    for store, res in lookups.items():
        for n in (1, 256):
            pandas = res[f"pandas_{n}"]
            for way, label in (("ours", "ours, DataFrame + missing marker"),
                               ("ours_records", "ours, records + missing marker (serving)"),
                               ("feast_sdk", "Feast SDK to_dict()"),
                               ("pandas", "pandas .loc (same rows)")):
                r = res[f"{way}_{n}"]
                lookup_rows.append({"store": store, "SKUs": n, "path": label, "p50 ms": round(r["p50_ms"], 2),
                                    "p99 ms": round(r["p99_ms"], 2),
                                    "p50 / pandas": f"{r['p50_ms'] / pandas['p50_ms']:.0f}x",
                                    "reps": r["reps"]})
    redis_p99 = max(lookups["redis"]["ours_256"]["p99_ms"], lookups["redis"]["ours_records_256"]["p99_ms"])
    verdict_redis = "met by both of our paths" if redis_p99 < 50 else f"missed by {redis_p99 - 50:.0f} ms"
    sdk_p99 = lookups["redis"]["feast_sdk_256"]["p99_ms"]
    prep = prepared.get("big") or {}
    prep_line = (f"Data: {skus:,} SKUs simulated in {prep['simulate_seconds']:.0f} s and ingested (rolling "
                 f"windows, point-in-time review digests) in {prep['ingest_seconds']:.0f} s, peak RSS "
                 f"{prep['peak_rss_mb']:.0f} MB{' (an earlier run, reused)' if prep.get('reused') else ''}.")
    return f"""
{prep_line} All six views ({n_features} features); "source rows" are rows of the parquet sources (one per
SKU and view per day), "values/s" counts feature values read and written. Each run is a child process on a
fresh store; peak RSS includes the imports (Feast, DuckDB: "RSS before" is the level after `apply`).
"CPU s" is the process's own CPU time (user + system; Redis's server time is not in it) and "load" the
machine's 1-minute load average when the run ended: the 2 cores were shared with other work, and where the
load exceeds 2 the wall time overstates what the code needs.

{markdown_table(rows)}

- **Target 200k SKUs into SQLite < 60 s: {verdict_sqlite}** ({sqlite_s:.1f} s). Feast's SQLite layout is one
  row per (SKU, feature): 200k x 56 = 11.2M B-tree upserts into a table with two indexes; our writer does them
  in key order in bulk (`INSERT ... SELECT ... ORDER BY`), Feast's own engine does one `execute` per value:
  {ratio_small:.1f}x slower on {stock_skus:,} SKUs above, i.e. about {ratio_small * sqlite_s / 60:.0f} min for 200k.
- Memory and the window: Redis 1 day peak {mem_1d:.0f} MB, 7 days {mem_7d:.0f} MB ({mem_7d / mem_1d:.2f}x):
  each day is its own window (a window holds at most 250k source rows), so memory follows one day, not the range.
  Feast's engine (DuckDB offline store) keeps only the latest row per SKU of the whole range, so its time does
  not grow with the window either; it loads the whole range's latest rows at once.

Online lookups, `llm_prompt` service ({n_features} features), random SKUs among the {skus:,} materialized:

{markdown_table(lookup_rows)}

- **Target 256-SKU lookup p99 < 50 ms on Redis: {verdict_redis}** (ours at most {redis_p99:.1f} ms; Feast's SDK
  {sdk_p99:.1f} ms). Ours reads Feast's Redis layout with one pipelined `HMGET` per SKU covering every view and
  decodes float columns with numpy; Feast's SDK issues one `HMGET` per SKU and view and builds a protobuf per value.
  The pandas row is the floor: an in-process index lookup with no store, no network and no missing marker.
- SQLite reads go through the `entity_key` index of a file of several GB: random pages, hence the wider tail.
"""


if __name__ == "__main__":
    main()
