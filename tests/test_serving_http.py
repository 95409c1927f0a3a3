"""Real KServe ModelServers on loopback ports, called over HTTP with real clients.

- the LLM predictor (``python -m aigp.serving.predictor``, the tiny model): the ``openai`` client on the
  OpenAI-compatible routes vLLM exposes;
- the pricing transformer (``python -m aigp.serving.transformer``, as the InferenceService runs it): httpx on
  v1 ``:predict`` and v2 ``/infer``, with the embedded Feast store, the model registry (champion and
  challenger = two experiment groups), group A answered by a scriptable loopback predictor in this process and
  group B by the tiny-model predictor above. The request schema is fuzzed (never a 5xx), a hostile review
  corpus goes through the whole path (never outside A_safe), failures show up in ``/metrics``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm_support import LAUNCH, LOW_STOCK, MID
from serving_support import HOSTILE_TEXTS, MODEL, ScriptedPredictor, build_feature_store, in_a_safe, registry_env

from aigp.ingest import table_file
from aigp.openai_compat.local_endpoint import LocalOpenAIServer
from aigp.pricing import ExperimentConfig
from aigp.schema import ENTITY_KEY, EVENT_TIMESTAMP, Group

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent
SALT = "http-test"
ARMS = {"A": 0.75, "B": 0.25}


def _free_port() -> int:
    from aigp.serving.predictor import free_port

    return free_port()


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    from aigp.serving.predictor import wait_until_ready

    try:
        wait_until_ready(url, proc, timeout)
    except (RuntimeError, TimeoutError) as exc:
        proc.kill()
        raise RuntimeError(f"{exc}\n--- {log} ---\n{log.read_text()[-4000:]}") from None


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.llm.model_factory import BaseModelConfig, build_base_model
    from aigp.llm.prompt import PromptConfig, build_prompt

    teacher, corpus = KnowledgeBaseTeacher(), []
    for row in (MID, LAUNCH, LOW_STOCK):
        prompt = build_prompt(row, PromptConfig())
        corpus += [prompt.system, prompt.user, teacher.respond(prompt).text]
    return build_base_model(tmp_path_factory.mktemp("models") / "tiny", corpus,
                            BaseModelConfig(size="tiny", overrides={"vocab_size": 600}))


@pytest.fixture(scope="module")
def stack(market_logs, tiny_model, tmp_path_factory):
    """Feature store, registry, scripted predictor (group A), tiny-model predictor (group B), transformer."""
    root = tmp_path_factory.mktemp("serving")
    feature_data, state, date = build_feature_store(market_logs.path, root)
    env = {**os.environ, **registry_env(root), "TOKENIZERS_PARALLELISM": "false", "AIGP_MODEL_NAME": MODEL}
    for key in ("AIGP_PREDICTOR_URL", "AIGP_FEATURE_SERVER_URL", "AIGP_PRICING_CONFIG"):
        env.pop(key, None)
    scripted = ScriptedPredictor()
    server = LocalOpenAIServer({MODEL: scripted}).start()
    predictor_port, transformer_port = _free_port(), _free_port()
    predictor_url = f"http://127.0.0.1:{predictor_port}/openai/v1"
    config = {"pricing": {"predictor": {"request_size": 1, "concurrency": 8, "timeout_s": 60, "max_tokens": 1024},
                          "experiment": {"salt": SALT, "arms": {
                              "A": {"share": ARMS["A"], "model_ref": "champion", "predictor_url": server.base_url},
                              "B": {"share": ARMS["B"], "model_ref": "challenger", "predictor_url": predictor_url,
                                    "max_tokens": 16}}}},
              "registry_refresh_s": 0, "max_skus_per_request": 300}
    (root / "transformer.yaml").write_text(yaml.safe_dump(config))
    logs = {"predictor": root / "predictor.log", "transformer": root / "transformer.log"}
    procs = {
        "predictor": subprocess.Popen(
            [sys.executable, "-m", "aigp.serving.predictor", f"--model_name={MODEL}", f"--model_dir={tiny_model}",
             f"--http_port={predictor_port}", "--enable_grpc=false", "--max_batch_size=8", "--threads=1"],
            stdout=logs["predictor"].open("wb"), stderr=subprocess.STDOUT, env=env, cwd=root),
        "transformer": subprocess.Popen(
            [sys.executable, "-m", "aigp.serving.transformer", f"--model_name={MODEL}",
             f"--http_port={transformer_port}", "--enable_grpc=false", f"--pricing_config={root / 'transformer.yaml'}"],
            stdout=logs["transformer"].open("wb"), stderr=subprocess.STDOUT,
            env={**env, "AIGP_FEATURE_DATA": str(feature_data), "AIGP_FEATURE_STATE_DIR": str(state)}, cwd=root),
    }
    base = f"http://127.0.0.1:{transformer_port}"
    try:
        _wait(f"{predictor_url}/models", procs["predictor"], logs["predictor"])
        _wait(f"{base}/v1/models/{MODEL}", procs["transformer"], logs["transformer"])
        with httpx.Client(base_url=base, timeout=120) as client:
            yield {"client": client, "scripted": scripted, "predictor_url": predictor_url, "date": date,
                   "feature_data": feature_data, "state": state, "root": root, "logs": logs}
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        server.stop()


def _active(stack: dict, group: str | None = None) -> list[int]:
    """SKUs with a state row on the day priced (optionally of one experiment group)."""
    day = pd.Timestamp(stack["date"]).tz_localize("UTC")
    rows = pd.read_parquet(stack["feature_data"] / table_file(Group.PRICING), columns=[ENTITY_KEY, EVENT_TIMESTAMP],
                           filters=[(EVENT_TIMESTAMP, "==", day)])
    ids = sorted(rows[ENTITY_KEY].tolist())
    if group is None:
        return ids
    groups = ExperimentConfig.build(salt=SALT, arms={g: {"share": s} for g, s in ARMS.items()}).groups(ids)
    return [i for i, g in zip(ids, groups, strict=True) if g == group]


def _v1(stack: dict, body: Any) -> httpx.Response:
    return stack["client"].post(f"/v1/models/{MODEL}:predict", json=body)


def _check_safe(prediction: dict) -> None:
    if prediction["new_discount"] is None:
        assert prediction["fallback"] and prediction["fallback_reason"] == "missing_features"
        assert prediction["discount_change"] == 0.0
    else:
        assert in_a_safe(prediction["prev_discount"], prediction["discount_change"], prediction["new_discount"])


# --- the predictor: OpenAI-compatible routes, the openai client ---------------------------------------------
def test_kserve_typed_openai_models_still_need_vllm() -> None:
    """Why ``serving/predictor.py`` parses the OpenAI routes itself: KServe's typed request models import vllm.
    When this starts failing (KServe's types import without vllm), move the routes onto them."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed: the claim is about installs without it")
    result = subprocess.run([sys.executable, "-c", "import kserve.protocol.rest.openai.types"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "vllm" in result.stderr, "KServe's OpenAI types import without vllm now"


def test_predictor_serves_openai_routes_to_the_openai_client(stack, tiny_model) -> None:
    import openai

    client = openai.OpenAI(base_url=stack["predictor_url"], api_key="unused", max_retries=0, timeout=60)
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    prompts = ["<|im_start|>user\nprice SKU 1<|im_end|>\n<|im_start|>assistant\n", "abc", "def ghi"]
    batch = client.completions.create(model=MODEL, prompt=prompts, max_tokens=6, temperature=0)
    assert [c.index for c in batch.choices] == [0, 1, 2]
    assert all(c.finish_reason in ("stop", "length") for c in batch.choices)
    assert batch.usage.completion_tokens <= 18 and batch.usage.prompt_tokens > 3
    singles = [client.completions.create(model=MODEL, prompt=p, max_tokens=6, temperature=0).choices[0].text
               for p in prompts]
    assert singles == [c.text for c in batch.choices]  # batched greedy generation = one at a time
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}],
                                          max_tokens=5, temperature=0.8, seed=11)
    again = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello"}],
                                           max_tokens=5, temperature=0.8, seed=11)
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].message.content == \
        again.choices[0].message.content  # seeded sampling is reproducible
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="other", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="maximum context length is 4096"):
        client.completions.create(model=MODEL, prompt="x", max_tokens=5000)
    with pytest.raises(openai.BadRequestError, match="prompt"):
        client.completions.create(model=MODEL, prompt=[], max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.completions.create(model=MODEL, prompt="x", max_tokens=2, temperature=3)
    raw = httpx.post(f"{stack['predictor_url']}/completions", content=b"{not json", timeout=30)
    assert raw.status_code == 400 and "not JSON" in raw.json()["error"]["message"]


def test_batched_generation_equals_one_at_a_time_and_batches(tiny_model) -> None:
    from aigp.llm.model_factory import load_model
    from aigp.serving.predictor import BatchedGenerator, Sampling

    model, tokenizer = load_model(tiny_model)
    generator = BatchedGenerator(model, tokenizer, max_batch_size=8, batch_wait_ms=200)
    try:
        texts = ["<|im_start|>user\nhi<|im_end|>\n", "a much longer prompt " * 12, "x", "y z"]
        greedy = Sampling(0.0, 1.0, None)
        futures = [generator.submit(generator.encode(t), 8, greedy) for t in texts]
        together = [f.result(timeout=60) for f in futures]
        assert generator.batches == 1 and generator.sequences == 4
        alone = [generator.submit(generator.encode(t), 8, greedy).result(timeout=60) for t in texts]
        assert [g.text for g in together] == [g.text for g in alone]
        assert [g.completion_tokens for g in together] == [g.completion_tokens for g in alone]
        sampled = Sampling(0.9, 1.0, 5)
        f1, f2 = (generator.submit(generator.encode("x"), 8, s) for s in (sampled, greedy))
        f1.result(timeout=60), f2.result(timeout=60)
        assert generator.batches == 4 + 1 + 2  # different sampling settings never share a batch
    finally:
        generator.close()


def test_a_batch_groups_similar_prompt_lengths_and_passes_over_a_job_at_most_twice() -> None:
    from aigp.serving.predictor import Sampling, _Job, pick_batch

    greedy, sampled = Sampling(0.0, 1.0, None), Sampling(0.7, 1.0, 3)

    def job(length: int, sampling: Sampling = greedy) -> _Job:
        return _Job([7] * length, 8, sampling, ())

    # arrival order mixes short and long prompts: first-come batches would pad every short one to the longest
    waiting = [job(30), job(10), job(50), job(12), job(52), job(11, sampled), job(49), job(13)]
    assert [len(j.ids) for j in pick_batch(waiting, 3)] == [10, 12, 13]  # the least padding (3 + 1 tokens)
    assert len(pick_batch(waiting, 32)) == 7  # everything that fits with the oldest's sampling settings
    assert pick_batch(waiting[5:], 3) == [waiting[5]]  # a sampled job never shares a greedy batch
    waiting[0].skipped = 2  # passed over twice: the next batch is the least-padded one around it
    assert [len(j.ids) for j in pick_batch(waiting, 3)] == [30, 49, 50]
    # the worker's rule: every job is generated within max_skips + 1 batches of becoming the oldest
    queue = [job(n) for n in (500, *range(100, 140))]
    batches = 0
    while any(len(j.ids) == 500 for j in queue):
        batch = pick_batch(queue, 8)
        queue = [j for j in queue if all(j is not b for b in batch)]
        for j in queue:
            j.skipped += 1
        batches += 1
    assert batches == 3


def test_the_local_predictor_waits_passively_for_cores_it_shares(monkeypatch, tmp_path) -> None:
    import contextlib

    import aigp.serving.predictor as predictor

    seen: list[dict] = []

    @contextlib.contextmanager
    def fake(argv, ready_url, **options):
        seen.append(options["env"])
        yield "http://127.0.0.1:1/openai/v1"

    monkeypatch.setattr(predictor, "serve_subprocess", fake)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with predictor.serve_local_predictor(tmp_path, port=1):
        pass
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a policy set by the operator is kept
    with predictor.serve_local_predictor(tmp_path, port=1):
        pass
    assert [env["OMP_WAIT_POLICY"] for env in seen] == ["PASSIVE", "ACTIVE"]


def test_a_request_is_queued_whole_padded_by_length_or_refused_whole(tiny_model) -> None:
    import asyncio

    from aigp.llm.model_factory import load_model
    from aigp.serving.predictor import BatchedGenerator, LLMPredictor, RequestError, Sampling

    model, tokenizer = load_model(tiny_model)
    generator = BatchedGenerator(model, tokenizer, max_batch_size=2, batch_wait_ms=0)
    predictor = LLMPredictor(MODEL, str(tiny_model))
    predictor.generator = generator
    try:
        short, long = "price it", "a much longer prompt about the price " * 8
        body = {"model": MODEL, "prompt": [short, long, short, long], "max_tokens": 2, "temperature": 0}
        answer = asyncio.run(predictor.create_completion(body))
        assert [c["index"] for c in answer["choices"]] == [0, 1, 2, 3]
        # queued at once, then batched by length: two batches, no padding (first-come: two padded batches)
        assert generator.batches == 2 and generator.sequences == 4 and generator.padding_tokens == 0
        assert "4 sequences in 2 batches" in generator.stats()
        v1 = asyncio.run(predictor.predict({"instances": [{"prompt": long, "max_tokens": 2}, {"prompt": short,
                                                                                              "max_tokens": 2}]}))
        assert [p["text"] for p in v1["predictions"]] == [answer["choices"][1]["text"], answer["choices"][0]["text"]]
        too_long = {**body, "prompt": [short, "word " * 5000]}
        with pytest.raises(RequestError, match="maximum context length"):
            asyncio.run(predictor.create_completion(too_long))
        generator.submit(generator.encode(short), 2, Sampling(0.0, 1.0, None)).result(timeout=60)
        assert generator.sequences == 7  # the refused request's first prompt was never generated
    finally:
        generator.close()


# --- the transformer: v1 and v2 -------------------------------------------------------------------------------
def test_v1_prices_one_sku_with_its_group_and_version(stack) -> None:
    stack["scripted"].reset("teacher")
    sku = _active(stack, "A")[0]
    response = _v1(stack, {"instances": [sku], "date": stack["date"].isoformat()})
    assert response.status_code == 200, response.text
    body = response.json()
    (p,) = body["predictions"]
    assert body["date"] == stack["date"].isoformat() and body["model_name"] == MODEL
    assert p["sku_id"] == sku and p["group"] == "A" and p["model_version"] == "1"
    assert not p["fallback"] and p["fallback_reason"] == "" and p["parse_ok"], p["detail"]
    assert "1. Milestone pace" in p["rationale"]
    _check_safe(p)


def test_v1_batch_of_256_skus_in_request_order(stack) -> None:
    stack["scripted"].reset("teacher")
    active = _active(stack)
    ids = (active + [10_000_000 + i for i in range(256)])[:256]
    ids = ids[::-1]  # any order, kept
    response = _v1(stack, {"instances": [{"sku_id": i} for i in ids], "date": stack["date"].isoformat()})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["sku_id"] for p in predictions] == ids
    groups = ExperimentConfig.build(salt=SALT, arms={g: {"share": s} for g, s in ARMS.items()}).groups(ids)
    for p, group in zip(predictions, groups, strict=True):
        _check_safe(p)
        assert p["group"] == group and p["model_version"] == {"A": "1", "B": "2"}[group]
        if p["sku_id"] >= 10_000_000:  # unknown SKU: no features, nothing changed
            assert p["new_discount"] is None and p["fallback_reason"] == "missing_features"
        elif group == "A":  # the teacher's well-formed answers
            assert not p["fallback"]
        else:  # the untrained tiny model writes noise: one retry, then a hold
            assert p["fallback"] and p["fallback_reason"] == "unparsable_output" and p["new_discount"] is not None
    assert sum(1 for p in predictions if p["group"] == "B" and p["sku_id"] < 10_000_000) > 0


def test_stale_features_fall_back(stack) -> None:
    sku = _active(stack, "A")[0]
    tomorrow = stack["date"] + dt.timedelta(days=1)
    (p,) = _v1(stack, {"instances": [sku], "date": tomorrow.isoformat()}).json()["predictions"]
    assert p["fallback"] and p["fallback_reason"] == "missing_features" and "stale" in p["detail"]
    assert p["new_discount"] == p["prev_discount"]


def test_v2_open_inference_protocol(stack) -> None:
    stack["scripted"].reset("json:-0.05")
    ids = [*_active(stack, "A")[:3], 10000001]
    body = {"id": "req-42", "inputs": [
        {"name": "sku_id", "shape": [len(ids)], "datatype": "INT64", "data": ids},
        {"name": "date", "shape": [1], "datatype": "BYTES", "data": [stack["date"].isoformat()]}]}
    response = stack["client"].post(f"/v2/models/{MODEL}/infer", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["id"] == "req-42" and out["model_name"] == MODEL
    tensors = {o["name"]: o for o in out["outputs"]}
    assert tensors["sku_id"]["data"] == ids and tensors["sku_id"]["datatype"] == "INT64"
    assert tensors["group"]["data"] == ["A"] * 4 and tensors["model_version"]["data"] == ["1"] * 4
    assert tensors["fallback"]["data"] == [False, False, False, True]
    assert tensors["fallback_reason"]["data"][3] == "missing_features"
    new, prev, change = (tensors[n]["data"] for n in ("new_discount", "prev_discount", "discount_change"))
    for i in range(3):
        assert in_a_safe(prev[i], change[i], new[i])
        assert change[i] == pytest.approx(max(-0.05, 0.5 - prev[i]), abs=1e-9)  # projected at the floor if needed
    assert new[3] is None or math.isnan(new[3])  # unpriced: NaN in FP64
    no_id = stack["client"].post(f"/v2/models/{MODEL}/infer", json={"inputs": [body["inputs"][0]]})
    assert no_id.status_code == 200 and len(no_id.json()["id"]) >= 32  # a uuid when the client sent no id


@pytest.mark.parametrize(("path", "body", "message"), [
    ("v1", {"instances": "17"}, "instances="),
    ("v1", {"instances": []}, "instances: expected at least one"),
    ("v1", {"instances": [1, "2"]}, "instances[1]="),
    ("v1", {"instances": [1, True]}, "instances[1]=True"),
    ("v1", {"instances": [{"sku": 1}]}, "instances[0].sku: unknown field"),
    ("v1", {"instances": [{}]}, "instances[0].sku_id: required"),
    ("v1", {"instances": [-1]}, "instances[0]=-1"),
    ("v1", {"instances": [2**64]}, "instances[0]="),
    ("v1", {"instances": [1], "date": "2026-02-30"}, "date='2026-02-30': not a calendar date"),
    ("v1", {"instances": [1], "date": 20260301}, "date=20260301"),
    ("v1", {"instances": [1], "dates": "x"}, "'dates': unknown field"),
    ("v1", {"instances": list(range(301))}, "301 SKU ids exceed the limit of 300"),
    ("v1", [1, 2], "expected a JSON object"),
    ("v2", {"inputs": [{"name": "sku", "shape": [1], "datatype": "INT64", "data": [1]}]}, "inputs[0].name='sku'"),
    ("v2", {"inputs": [{"name": "sku_id", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
     "inputs.sku_id.datatype='FP32'"),
    ("v2", {"inputs": [{"name": "sku_id", "shape": [2], "datatype": "INT64", "data": [1]}]}, "data has 1"),
    ("v2", {"inputs": [{"name": "sku_id", "shape": [1], "datatype": "INT64", "data": [1]},
                       {"name": "date", "shape": [1], "datatype": "BYTES", "data": ["tomorrow"]}]},
     "inputs.date.data[0]='tomorrow'"),
])
def test_malformed_requests_are_400_naming_the_field(stack, path, body, message) -> None:
    url = f"/v1/models/{MODEL}:predict" if path == "v1" else f"/v2/models/{MODEL}/infer"
    response = stack["client"].post(url, json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"], response.json()["error"]


def test_bodies_that_are_not_json_are_4xx(stack) -> None:
    for url in (f"/v1/models/{MODEL}:predict", f"/v2/models/{MODEL}/infer"):
        response = stack["client"].post(url, content=b"\xff{not json", headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (url, response.status_code, response.text)


_json = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
                     | st.text(max_size=12), lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_sku = st.one_of(st.integers(-5, 400), st.integers(2**62, 2**64), st.text(max_size=4), st.booleans(), st.floats(),
                 st.none(), st.fixed_dictionaries({"sku_id": st.integers(0, 400)}), st.dictionaries(
                     st.sampled_from(["sku_id", "x"]), st.integers(0, 400) | st.text(max_size=3), max_size=2))
_v1_bodies = st.one_of(
    _json,
    st.fixed_dictionaries({"instances": st.lists(_sku, max_size=6)},
                          optional={"date": st.one_of(st.dates().map(str), st.text(max_size=12), st.integers()),
                                    "extra": _json}),
)
_datatypes = st.sampled_from(["INT64", "INT32", "UINT8", "FP32", "BYTES", "BOOL", "int64", "FOO"])
_tensor = st.fixed_dictionaries({"name": st.sampled_from(["sku_id", "date", "other"]),
                                 "shape": st.lists(st.integers(-1, 4), max_size=3), "datatype": _datatypes,
                                 "data": st.lists(_sku | st.text(max_size=11), max_size=5)})
_v2_bodies = st.one_of(_json, st.fixed_dictionaries({"inputs": st.lists(_tensor, max_size=3)},
                                                    optional={"id": st.text(max_size=5), "parameters": _json}))


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(v1=_v1_bodies, v2=_v2_bodies)
def test_fuzzed_requests_never_get_a_5xx_or_a_price_outside_a_safe(stack, v1, v2) -> None:
    stack["scripted"].reset("json:0.15")
    for url, body in ((f"/v1/models/{MODEL}:predict", v1), (f"/v2/models/{MODEL}/infer", v2)):
        # json.dumps writes NaN / Infinity tokens (as Python clients do) where httpx's json= refuses to encode them
        response = stack["client"].post(url, content=json.dumps(body).encode(),
                                        headers={"content-type": "application/json"})
        assert response.status_code < 500, (url, body, response.status_code, response.text)
        if response.status_code != 200:
            assert response.status_code in (400, 422) and response.json()
            continue
        if "predictions" in response.json():
            for p in response.json()["predictions"]:
                _check_safe(p)
        else:
            tensors = {o["name"]: o["data"] for o in response.json()["outputs"]}
            for prev, change, new in zip(tensors["prev_discount"], tensors["discount_change"],
                                         tensors["new_discount"], strict=True):
                if new is not None and not (isinstance(new, float) and math.isnan(new)):
                    assert in_a_safe(prev, change, new)


# --- hostile text through the whole path ----------------------------------------------------------------------
def _write_hostile_skus(stack: dict, texts: list[str], first_id: int) -> list[int]:
    """Copy an active SKU's rows in every feature view to new SKU ids whose description, reviews and brand are
    hostile, and write them to the online store the transformer reads."""
    from aigp.feature_repo.online_layout import open_writer
    from aigp.feature_repo.store import open_store

    store = open_store(feature_data=stack["feature_data"], state_dir=stack["state"])
    day = pd.Timestamp(stack["date"]).tz_localize("UTC")
    template = _active(stack)[0]
    ids = [first_id + i for i in range(len(texts))]
    writer = open_writer(store.repo_config)
    try:
        for group in Group:
            source = pd.read_parquet(stack["feature_data"] / table_file(group), filters=[(ENTITY_KEY, "==", template)])
            if group is not Group.SKU:
                source = source[source[EVENT_TIMESTAMP] == day]
            row = source.iloc[[0]]
            frame = pd.concat([row] * len(ids), ignore_index=True)
            frame[ENTITY_KEY] = ids
            if group is Group.TEXT:
                frame["description"] = texts
                frame["review_digest"] = texts[::-1]
            if group is Group.SKU:
                frame["brand"] = [t[:200] for t in texts]
            writer.write(store.view(group), pa.Table.from_pandas(frame, preserve_index=False))
    finally:
        writer.close()
        store.close()
    return ids


def test_hostile_review_corpus_never_moves_a_price_outside_a_safe(stack) -> None:
    ids = _write_hostile_skus(stack, HOSTILE_TEXTS, 20_000_000)
    stack["scripted"].reset("hostile")  # group A: echoes the prompt and appends out-of-range / malformed actions
    for _ in range(2):  # the hostile predictor cycles through its tails
        response = _v1(stack, {"instances": ids, "date": stack["date"].isoformat()})
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert [p["sku_id"] for p in predictions] == ids
        for p in predictions:
            assert p["new_discount"] is not None  # the features are complete: every SKU is priced or held
            _check_safe(p)
    v2 = stack["client"].post(f"/v2/models/{MODEL}/infer", json={"inputs": [
        {"name": "sku_id", "shape": [len(ids)], "datatype": "INT64", "data": ids}]})
    assert v2.status_code == 200
    tensors = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    assert all(in_a_safe(*t) for t in zip(tensors["prev_discount"], tensors["discount_change"],
                                          tensors["new_discount"], strict=True))


# --- counters -------------------------------------------------------------------------------------------------
def _counters(stack: dict) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = stack["client"].get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("aigp_serving_"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_fallbacks_retries_and_bad_requests_are_counted_in_metrics(stack) -> None:
    before = _counters(stack)
    stack["scripted"].reset("error")
    ids = _active(stack, "A")[:3]
    predictions = _v1(stack, {"instances": ids}).json()["predictions"]
    assert all(p["fallback_reason"] == "predictor_error" and p["new_discount"] == p["prev_discount"]
               for p in predictions)
    assert stack["scripted"].requests == 6  # one retry each
    _v1(stack, {"instances": "nope"})
    after = _counters(stack)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("aigp_serving_fallbacks_total", group="A", reason="predictor_error") == 3
    assert delta("aigp_serving_decisions_total", group="A", model_version="1", outcome="fallback") == 3
    assert delta("aigp_serving_predictor_failures_total", group="A", reason="predictor_error", retried="true") == 3
    assert delta("aigp_serving_predictor_failures_total", group="A", reason="predictor_error", retried="false") == 3
    assert delta("aigp_serving_requests_total", protocol="v1", status="bad_request") == 1
    assert delta("aigp_serving_requests_total", protocol="v1", status="ok") == 1
    assert delta("aigp_serving_request_seconds_count", protocol="v1") == 1


# --- configuration: the manifest's arguments, the feature server ------------------------------------------------
def test_the_manifest_command_and_configmap_configure_the_transformer(monkeypatch) -> None:
    from _kustomize import build

    from aigp.serving.transformer import build_parser, config_from_args

    resources = build(ROOT / "manifests" / "overlays" / "production")
    service = next(r for r in resources if r["kind"] == "InferenceService" and r["metadata"]["name"] == MODEL)
    container = service["spec"]["predictor"]["containers"][0]
    assert container["command"] == ["python", "-m", "aigp.serving.transformer"]
    data = next(r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == "aigp-config")["data"]
    environ = {**data, "REDIS_CONNECTION_STRING": "redis:6379,password=x"}
    args, unknown = build_parser().parse_known_args(container["args"])
    assert unknown == [] and args.model_name == MODEL and args.http_port == 8080
    config = config_from_args(args, environ)
    assert config.predictor_url == data["AIGP_PREDICTOR_URL"]
    assert config.feature_server_url == data["AIGP_FEATURE_SERVER_URL"]
    assert config.pricing.model_name == data["AIGP_MODEL_NAME"]
    assert config.redis_connection_string == "redis:6379,password=x"
    source = config.feature_source()  # the feature server wins over the embedded store
    assert type(source).__name__ == "FeatureServerSource" and source.url == data["AIGP_FEATURE_SERVER_URL"]


def test_feature_server_source_reads_what_the_embedded_store_holds(stack) -> None:
    import asyncio

    from feast.feature_server import get_app

    from aigp.feature_repo.store import open_store
    from aigp.serving.features import EmbeddedFeatureSource, FeatureServerSource

    store = open_store(feature_data=stack["feature_data"], state_dir=stack["state"])
    ids = [*_active(stack)[:5], 10000003]
    embedded = EmbeddedFeatureSource(store).lookup(ids)
    app = get_app(store.feast)

    async def remote() -> list[dict]:
        source = FeatureServerSource("http://feast", transport=httpx.ASGITransport(app=app))
        try:
            return await source.rows(ids)
        finally:
            await source._http.aclose()

    served = asyncio.run(remote())
    store.close()
    for a, b in zip(embedded, served, strict=True):
        assert a["sku_id"] == b["sku_id"] and sorted(a["missing_features"]) == sorted(b["missing_features"])
        for name in ("prev_discount", "cum_gmv", "category", "review_digest", "days_since_launch", "is_promotion"):
            if isinstance(a[name], float):
                assert b[name] == pytest.approx(a[name], rel=1e-6), name
            else:
                assert a[name] == b[name], name
    assert served[-1]["missing_features"] and served[-1]["prev_discount"] is None


def test_transformer_logged_no_server_errors(stack) -> None:
    """KServe's 400 handler logs each refused request (InvalidInput, body not JSON) with its traceback;
    a traceback logged anywhere else is a defect."""
    text = stack["logs"]["transformer"].read_text()
    assert 'HTTP/1.1" 5' not in text, text[-3000:]
    errors = [line for line in text.splitlines() if re.match(r"^\S+ \S+ \d+ \S+ (ERROR|CRITICAL) ", line)]
    assert errors  # the malformed and fuzzed requests above were refused
    assert all("[errors.py:invalid_input_handler():" in line for line in errors), errors[:5]
    raised = {m.group(1) for m in re.finditer(r"^([A-Za-z_][\w.]*(?:Error|Exception|InvalidInput)): ", text, re.M)}
    assert raised <= {"kserve.errors.InvalidInput", "orjson.JSONDecodeError"}, raised
