"""Serving benchmark: pricing-transformer overhead and batch pricing throughput.

1. **Transformer overhead** (everything except the LLM): ``python -m aigp.serving.transformer`` on a loopback
   port, as the InferenceService runs it, with the embedded feature store (SQLite) and a predictor stub that
   answers every prompt instantly over HTTP with a valid JSON action. A client (httpx) sends v1 requests of 1
   and of 256 SKUs: request parsing, the online feature read, prompt building, the predictor round trips
   (16 prompts per request), Ψ, A_safe and the response. Targets: p99 < 20 ms (1 SKU), < 200 ms (256 SKUs).
   For comparison, the same client's round trip to the stub alone.
2. **Batch pricing throughput**: the nightly job (``run_batch_pricing``) with the `small` base model served by
   the local predictor (``serving/predictor.py``), batched (16 prompts per request, 2 requests in flight,
   batches of up to 32 sequences) vs one SKU at a time (1 prompt per request, 1 in flight, batches of 1),
   on the same SKUs with the same completion budget; SKUs/s and the ratio.

    python -m bench.bench_serving [--skus 600] [--requests-1 400] [--requests-256 40] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from bench._report import markdown_table, write_section

MODEL = "aigp-pricing"
STUB_ANSWER = 'Demand is steady and stock is fine, so I hold the price.\n{"discount_change": 0.0}'


# ---------------------------------------------------------------------------------------------------------
# a predictor stub: OpenAI /completions, answers every prompt instantly (its own process)
# ---------------------------------------------------------------------------------------------------------
class _Stub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: without this, 40 ms of delayed ACK each

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        payload = json.dumps({"id": "cmpl-stub", "object": "text_completion", "model": body["model"],
                              "choices": [{"index": i, "text": STUB_ANSWER, "finish_reason": "stop"}
                                          for i in range(len(prompts))]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        return None


def _serve_stub(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), _Stub).serve_forever()


# ---------------------------------------------------------------------------------------------------------
def _feature_store(root: Path, n_skus: int, seed: int) -> tuple[Path, Path, dt.date]:
    from aigp.feature_repo.store import open_store
    from aigp.ingest import ingest_logs, read_manifest
    from aigp.market.config import MarketConfig
    from aigp.market.logs import simulate_to_directory

    logs = simulate_to_directory(MarketConfig.build(n_skus=n_skus, launch_days=20, seed=seed), root / "market")
    ingest_logs(logs.path, root / "features", overwrite=True)
    store = open_store(feature_data=root / "features", state_dir=root / "state")
    store.apply()
    first = dt.date.fromisoformat(read_manifest(root / "features")["tables"]["decision_events"]["first_day"])
    date = first + dt.timedelta(days=15)
    store.materialize(date, date + dt.timedelta(days=1))
    store.close()
    return root / "features", root / "state", date


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000.0
    return {"p50 ms": float(np.percentile(ms, 50)), "p99 ms": float(np.percentile(ms, 99)),
            "mean ms": float(ms.mean())}


def breakdown(feature_data: Path, state: Path, date: dt.date, repeats: int, seed: int) -> list[dict]:
    """Where a request's time goes, stage by stage, measured in this process (same machine, same load)."""
    from aigp.llm.knowledge import KnowledgeBase
    from aigp.llm.parser import parse_action
    from aigp.llm.prompt import PromptConfig, build_prompt
    from aigp.serving.features import EmbeddedFeatureSource, active_skus

    skus = active_skus(feature_data, date)["sku_id"].to_numpy()
    rng = np.random.default_rng(seed)
    source = EmbeddedFeatureSource.open(feature_data=feature_data, state_dir=state)
    knowledge, config = KnowledgeBase.load(), PromptConfig()
    out = []
    try:
        timings: dict[str, dict[int, list[float]]] = {"online feature read (one batch)": {}, "prompt building": {},
                                                      "Ψ + A_safe on the answers": {}}
        for n in (1, 256):
            for _ in range(repeats if n == 1 else max(5, repeats // 10)):
                ids = rng.choice(skus, n, replace=False)
                t0 = time.perf_counter()
                rows = source.lookup(ids.tolist())
                t1 = time.perf_counter()
                prompts = [build_prompt({**r, "date": date}, config, knowledge=knowledge).chatml() for r in rows]
                t2 = time.perf_counter()
                for r in rows:
                    parse_action(STUB_ANSWER, float(r["prev_discount"]))
                t3 = time.perf_counter()
                assert len(prompts) == n
                for name, seconds in zip(timings, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    timings[name].setdefault(n, []).append(seconds)
        for name, by_n in timings.items():
            out.append({"stage": name, "1 SKU, median ms": float(np.median(by_n[1])) * 1000,
                        "256 SKUs, median ms": float(np.median(by_n[256])) * 1000})
    finally:
        source.close()
    return out


def overhead(root: Path, feature_data: Path, state: Path, date: dt.date, n1: int, n256: int,
             seed: int) -> tuple[list[dict], dict]:
    import httpx

    from aigp.pricing import PricingConfig
    from aigp.serving.features import active_skus
    from aigp.serving.predictor import free_port, wait_until_ready
    from aigp.serving.transformer import TransformerConfig, serve_local_transformer

    port = free_port()
    stub = multiprocessing.get_context("fork").Process(target=_serve_stub, args=(port,), daemon=True)
    stub.start()
    stub_url = f"http://127.0.0.1:{port}/openai/v1"
    rng = np.random.default_rng(seed)
    skus = active_skus(feature_data, date)["sku_id"].to_numpy()
    assert len(skus) >= 256, f"only {len(skus)} active SKUs"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(f"{stub_url}/completions", json={"model": MODEL, "prompt": "x"}, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        config = TransformerConfig(pricing=PricingConfig.build(predictor={"request_size": 16, "concurrency": 8}),
                                   predictor_url=stub_url, feature_data=feature_data, feature_state_dir=state,
                                   registry_refresh_s=0, max_skus_per_request=256)
        rows: list[dict] = []
        extra: dict = {}
        with serve_local_transformer(config, MODEL, pinned_version="bench", log_path=root / "transformer.log") as base:
            wait_until_ready(f"{base}/v1/models/{MODEL}")
            with httpx.Client(base_url=base, timeout=60) as client, httpx.Client(timeout=60) as direct:
                url = f"/v1/models/{MODEL}:predict"

                def call(ids: np.ndarray) -> float:
                    t0 = time.perf_counter()
                    response = client.post(url, json={"instances": [int(i) for i in ids], "date": date.isoformat()})
                    elapsed = time.perf_counter() - t0
                    assert response.status_code == 200, response.text[:300]
                    predictions = response.json()["predictions"]
                    assert len(predictions) == len(ids) and not any(p["fallback"] for p in predictions), \
                        [p["detail"] for p in predictions if p["fallback"]][:3]
                    return elapsed

                for _ in range(30):  # warm-up: connections, the SQLite page cache, KServe's first-request work
                    call(rng.choice(skus, 1))
                call(rng.choice(skus, 256, replace=False))
                one = [call(rng.choice(skus, 1)) for _ in range(n1)]
                many = [call(rng.choice(skus, 256, replace=False)) for _ in range(n256)]
                stub_alone = []
                for _ in range(n1):
                    t0 = time.perf_counter()
                    direct.post(f"{stub_url}/completions", json={"model": MODEL, "prompt": "x" * 4000})
                    stub_alone.append(time.perf_counter() - t0)
                v2 = []
                for _ in range(max(50, n1 // 4)):
                    t0 = time.perf_counter()
                    r = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [
                        {"name": "sku_id", "datatype": "INT64", "shape": [1], "data": [int(rng.choice(skus))]},
                        {"name": "date", "datatype": "BYTES", "shape": [1], "data": [date.isoformat()]}]})
                    v2.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text[:300]
        rows = [
            {"request": "v1, 1 SKU", "requests": n1, **_percentiles(one), "target p99 ms": 20.0,
             "met": "yes" if np.percentile(one, 99) * 1000 < 20 else "no"},
            {"request": "v2, 1 SKU", "requests": len(v2), **_percentiles(v2), "target p99 ms": 20.0,
             "met": "yes" if np.percentile(v2, 99) * 1000 < 20 else "no"},
            {"request": "v1, 256 SKUs", "requests": n256, **_percentiles(many), "target p99 ms": 200.0,
             "met": "yes" if np.percentile(many, 99) * 1000 < 200 else "no"},
            {"request": "comparison: the stub alone (1 prompt)", "requests": n1, **_percentiles(stub_alone),
             "target p99 ms": "", "met": ""},
        ]
        extra = {"per_sku_ms_256": float(np.median(many)) * 1000 / 256, "active": len(skus)}
        return rows, extra
    finally:
        stub.terminate()
        stub.join(timeout=10)


def throughput(root: Path, feature_data: Path, state: Path, date: dt.date, max_tokens: int,
               seed: int) -> tuple[list[dict], float]:
    from aigp.distillation.teacher import KnowledgeBaseTeacher
    from aigp.llm.model_factory import BaseModelConfig, build_base_model, model_metadata
    from aigp.llm.prompt import PromptConfig, build_prompt
    from aigp.pricing import PredictorSettings, PricingConfig
    from aigp.serving.batch import BatchPricingConfig, run_batch_pricing
    from aigp.serving.features import EmbeddedFeatureSource, active_skus

    skus = active_skus(feature_data, date, horizon_days=1)["sku_id"].tolist()
    source = EmbeddedFeatureSource.open(feature_data=feature_data, state_dir=state)
    teacher, corpus = KnowledgeBaseTeacher(), []
    for row in source.lookup(skus[:40]):
        prompt = build_prompt({**row, "date": date}, PromptConfig())
        corpus += [prompt.system, prompt.user, teacher.respond(prompt).text]
    source.close()
    model = build_base_model(root / "small_model", corpus, BaseModelConfig(size="small", seed=seed), overwrite=True)
    budget = (model_metadata(model).get("architecture") or {}).get("prompt_budget")
    resolver = lambda name, ref: ("base-small", str(model))  # noqa: E731 - the untrained model, no registry
    rows, rates = [], {}
    for mode, request_size, concurrency, batch in (("batched", 16, 2, 32), ("one SKU at a time", 1, 1, 1)):
        pricing = PricingConfig(predictor=PredictorSettings(max_tokens=max_tokens, request_size=request_size,
                                                            concurrency=concurrency, timeout_s=1800),
                                prompt=PromptConfig(max_prompt_tokens=budget))
        config = BatchPricingConfig(pricing=pricing, out_dir=root / mode.replace(" ", "_"), horizon_days=1,
                                    chunk_size=32, feature_data=feature_data, feature_state_dir=state)
        summary = run_batch_pricing(date, config, resolver=resolver, serve_local=True,
                                    serve_options={"max_batch_size": batch, "batch_wait_ms": 5.0}, overwrite=True,
                                    progress=False)
        generations = summary.skus + summary.retried
        rates[mode] = summary.skus / summary.seconds["pricing"]
        rows.append({"mode": mode, "prompts/request": request_size, "in flight": concurrency,
                     "max batch": batch, "SKUs": summary.skus, "generations": generations,
                     "pricing s": summary.seconds["pricing"], "SKUs/s": rates[mode]})
    return rows, rates["batched"] / rates["one SKU at a time"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=600, help="SKUs in the simulated market (20 launch days)")
    parser.add_argument("--requests-1", type=int, default=400)
    parser.add_argument("--requests-256", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=16, help="completion budget in the throughput runs")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="aigp-bench-serving-") as tmp:
        root = Path(tmp)
        feature_data, state, date = _feature_store(root, args.skus, args.seed)
        print(f"feature store ready ({time.perf_counter() - started:.0f} s); measuring the transformer overhead")
        latency, extra = overhead(root, feature_data, state, date, args.requests_1, args.requests_256, args.seed)
        print(markdown_table(latency))
        stages = breakdown(feature_data, state, date, 100, args.seed)
        print(markdown_table(stages))
        print("batch pricing throughput with the small model")
        rates, ratio = throughput(root, feature_data, state, date, args.max_tokens, args.seed)
        print(markdown_table(rates))
        print(f"batched / one at a time: {ratio:.2f}x")
    body = (
        "### Transformer overhead (everything except the LLM)\n\n"
        "`python -m aigp.serving.transformer` on loopback with the embedded feature store (SQLite) and a predictor "
        "stub answering every prompt instantly over HTTP (16 prompts per predictor request, 8 in flight); "
        f"client: httpx, one request at a time, random SKUs of the {extra['active']} active on the day priced. "
        "Each request: parse and validate, one batched online feature read, prompt building, predictor round "
        "trips, Ψ, A_safe, response.\n\n"
        + markdown_table(latency)
        + f"\n\nPer SKU in a 256-SKU request: {extra['per_sku_ms_256']:.2f} ms (median). Where the time goes, "
        "stage by stage in the benchmark's process (the transformer runs the same code):\n\n"
        + markdown_table(stages) + "\n\n"
        "### Batch pricing throughput, `small` model, 2 CPU cores\n\n"
        "`run_batch_pricing` on the SKUs launched on the day priced, the untrained `small` base model served by "
        f"`serving/predictor.py`, {args.max_tokens} completion tokens; an untrained model writes no action, so "
        "every SKU is asked twice (the one retry) in both modes and falls back; the work is the same.\n\n"
        + markdown_table(rates)
        + f"\n\n**Batched / one SKU at a time: {ratio:.2f}x** SKUs/s.\n\n"
        f"Total benchmark wall time {time.perf_counter() - started:.0f} s."
    )
    write_section("serving", "Serving: transformer overhead and batch pricing throughput", body,
                  f"python -m bench.bench_serving --skus {args.skus} --requests-1 {args.requests_1} "
                  f"--requests-256 {args.requests_256} --max-tokens {args.max_tokens}")


if __name__ == "__main__":
    main()
