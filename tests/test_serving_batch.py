"""Nightly batch pricing (``aigp price batch``) killed with SIGKILL at random points of a real subprocess
(start-up and planning, pricing, mid-chunk writes, finalisation) resumes to exactly one decision per active
SKU, the same decisions an uninterrupted run makes, with atomic outputs and no temporary files left."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from serving_support import MODEL, ScriptedPredictor, build_feature_store, in_a_safe, registry_env

from aigp.decisions import validate_decisions
from aigp.openai_compat.local_endpoint import LocalOpenAIServer
from aigp.serving.batch import BatchPricingConfig, BatchSummary, RunConflict, RunPaths, run_batch_pricing
from aigp.serving.features import active_skus

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CONFIG = {"pricing": {"model_name": MODEL,
                      "experiment": {"salt": "batch-test", "arms": {"champion": {"share": 0.7},
                                                                    "challenger": {"share": 0.3,
                                                                                   "model_ref": "challenger"}}},
                      "predictor": {"request_size": 1, "concurrency": 2, "timeout_s": 30}},
          "chunk_size": 16}


@pytest.fixture(scope="module")
def setup(market_logs, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    feature_data, state, date = build_feature_store(market_logs.path, root)
    backend = ScriptedPredictor()
    backend.sleep = 0.02  # a few seconds of pricing, so kills land inside it
    with LocalOpenAIServer({MODEL: backend}) as server:
        yield {"root": root, "feature_data": feature_data, "state": state, "date": date, "backend": backend,
               "url": server.base_url, "env": registry_env(root)}


def _config(setup: dict, out: Path) -> BatchPricingConfig:
    return BatchPricingConfig.build(**CONFIG, out_dir=out, feature_data=setup["feature_data"],
                                    feature_state_dir=setup["state"])


def _start(setup: dict, out: Path, log: Path) -> subprocess.Popen:
    config = out.parent / "batch.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    argv = [str(Path(sys.executable).parent / "aigp"), "price", "batch", "--date", setup["date"].isoformat(),
            "--config", str(config), "--out", str(out), "--feature-data", str(setup["feature_data"]),
            "--state-dir", str(setup["state"]), "--predictor-url", setup["url"], "--no-serve-local", "--no-progress"]
    env = {**os.environ, **setup["env"], "TOKENIZERS_PARALLELISM": "false"}
    env.pop("AIGP_PREDICTOR_URL", None)
    return subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)


def _kill(proc: subprocess.Popen) -> bool:
    """SIGKILL (no cleanup handlers run); True when it was still running."""
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return alive


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _decisions(path: Path) -> pd.DataFrame:
    return validate_decisions(pd.read_parquet(path)).sort_values("sku_id").reset_index(drop=True)


def test_killed_at_random_points_resumes_to_one_decision_per_sku(setup, tmp_path, monkeypatch) -> None:
    for key, value in setup["env"].items():
        monkeypatch.setenv(key, value)
    date = setup["date"]
    urls = {"champion": setup["url"], "challenger": setup["url"]}
    reference = run_batch_pricing(date, _config(setup, tmp_path / "reference"), predictor_urls=urls,
                                  progress=False)
    expected = _decisions(Path(reference.paths.decisions))
    active = active_skus(setup["feature_data"], date)["sku_id"].tolist()
    assert sorted(expected["sku_id"]) == active and len(active) > 100

    out, log = tmp_path / "killed", tmp_path / "batch.log"
    paths = RunPaths(out, date)
    chunks = reference.chunks["total"]
    rng = random.Random(20260316)
    kills: list[str] = []

    def chunk_count() -> int:
        return len(paths.done_chunks())

    # 1) during start-up or planning (before any chunk is priced)
    proc = _start(setup, out, log)
    time.sleep(rng.uniform(0.5, 4.0))
    if _kill(proc):
        kills.append("start-up/plan")
    # 2) twice inside pricing: after a random number of journaled chunks, plus a random delay (mid-write)
    for _ in range(2):
        target = min(chunk_count() + rng.randint(1, max(1, chunks // 4)), chunks - 1)
        proc = _start(setup, out, log)
        if _wait_for(lambda t=target: chunk_count() >= t, proc):
            time.sleep(rng.uniform(0.0, 0.15))
            if _kill(proc):
                kills.append(f"pricing after {chunk_count()}/{chunks} chunks")
        else:
            _kill(proc)
        # whatever survives a kill is whole: every journaled chunk reads back, none holds a SKU twice
        done = [pd.read_parquet(paths.chunk(k)) for k in sorted(paths.done_chunks())]
        seen = pd.concat(done)["sku_id"] if done else pd.Series(dtype="int64")
        assert seen.is_unique
        assert not paths.decisions.exists()
    # 3) during finalisation: once every chunk is journaled, before the summary is written
    proc = _start(setup, out, log)
    if _wait_for(lambda: chunk_count() == chunks, proc):
        time.sleep(rng.uniform(0.0, 0.3))
        if _kill(proc):
            kills.append("finalisation")
    else:
        _kill(proc)
    assert sum(k.startswith("pricing") for k in kills) >= 1, (kills, log.read_text()[-3000:])

    # the last run finishes
    proc = _start(setup, out, log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    summary = BatchSummary.read(paths.run_dir / "summary.json")
    got = _decisions(paths.decisions)
    assert got["sku_id"].is_unique and sorted(got["sku_id"]) == active  # nothing lost, nothing twice
    assert summary.skus == len(active) and summary.resumed
    compare = ["sku_id", "group", "model_version", "prev_discount", "discount_change", "new_discount", "fallback",
               "fallback_reason", "rationale"]
    pd.testing.assert_frame_equal(got[compare], expected[compare])  # the decisions an uninterrupted run makes
    assert all(in_a_safe(*r) for r in got[["prev_discount", "discount_change", "new_discount"]].itertuples(False))
    assert set(got["model_version"]) == {"1", "2"}
    rationales = pd.read_parquet(paths.run_dir / "rationales.parquet")
    assert sorted(rationales["sku_id"]) == active
    assert not [p.name for p in out.rglob("*.tmp")]  # stale temporaries of killed writes are cleaned up

    # a finished day is not priced again
    requests = setup["backend"].requests
    again = run_batch_pricing(date, _config(setup, out), predictor_urls=urls, progress=False)
    assert again == summary and setup["backend"].requests == requests
    assert _decisions(paths.decisions).equals(got)


def test_resuming_with_another_configuration_is_refused(setup, tmp_path, monkeypatch) -> None:
    for key, value in setup["env"].items():
        monkeypatch.setenv(key, value)
    config = _config(setup, tmp_path / "out")
    paths = RunPaths(tmp_path / "out", setup["date"])
    from aigp.registry.model_registry import registry_resolver
    from aigp.serving.batch import load_or_make_plan

    load_or_make_plan(paths, config, registry_resolver())  # a run planned, then killed
    other = config.with_updates(chunk_size=8)
    with pytest.raises(RunConflict, match="another configuration"):
        run_batch_pricing(setup["date"], other, predictor_urls={"champion": setup["url"],
                                                                "challenger": setup["url"]}, progress=False)
