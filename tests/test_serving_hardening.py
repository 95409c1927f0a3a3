"""Serving hardening (issue 19): hostile bodies over real HTTP (NaN / Infinity, charsets), batch pricing's local
predictor (the batch command line hidden from KServe, a corrupt model named in one line, the predictor dying with
its parent), corrupt inputs as one message naming the file, and the decision report's size.

The transformer here runs as the InferenceService runs it (``python -m aigp.serving.transformer``) but with a
feature server and a predictor that do not answer: every SKU is a fallback, which is what the request-validation
tests need and what keeps this module cheap (the full stack is ``test_serving_http.py``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from aigp.serving.decision_report import render_decision_report

ROOT = Path(__file__).resolve().parent.parent
MODEL = "aigp-pricing"
V2 = f"/v2/models/{MODEL}/infer"
V1 = f"/v1/models/{MODEL}:predict"


@pytest.fixture(scope="module")
def transformer(tmp_path_factory):
    from aigp.serving.predictor import free_port, wait_until_ready

    root = tmp_path_factory.mktemp("hardening")
    port, dead = free_port(), free_port()
    log = root / "transformer.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGP_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aigp.serving.transformer", f"--model_name={MODEL}", f"--http_port={port}",
         "--enable_grpc=false", "--pinned_version=7", f"--predictor_url=http://127.0.0.1:{dead}/openai/v1",
         f"--feature_server_url=http://127.0.0.1:{dead}"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**env, "OMP_NUM_THREADS": "1"}, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(f"{base}/v1/models/{MODEL}", proc, 300)
        yield {"base": base, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- defect 1: NaN / Infinity in a v2 body -------------------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ('{"inputs":[{"name":"sku_id","shape":[1],"datatype":"INT64","data":[9]}],"id":NaN}', "id"),
    ('{"inputs":[{"name":"sku_id","shape":[NaN],"datatype":"INT64","data":[9]}]}', "inputs.0.shape.0"),
    ('{"inputs":[{"name":"sku_id","shape":[Infinity],"datatype":"INT64","data":[9]}]}', "inputs.0.shape.0"),
    ('{"inputs":[{"name":"sku_id","shape":[1],"datatype":"INT64","data":[NaN]}]}', "inputs.sku_id.data[0]"),
    ('{"inputs":[{"name":NaN,"shape":[1],"datatype":"INT64","data":[1]}]}', "inputs.0.name"),
    ('{"inputs":[{"name":"sku_id","shape":[1],"datatype":"INT64","data":[-Infinity]}]}', "inputs.sku_id.data[0]"),
])
def test_nan_and_infinity_in_a_v2_body_are_400_naming_the_field(transformer, body: str, field: str) -> None:
    with httpx.Client(base_url=transformer["base"], timeout=60) as client:
        response = client.post(V2, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        assert response.json()["error"].startswith(field), response.json()
        # the same keep-alive connection still serves the next request
        after = client.post(V2, json={"inputs": [{"name": "sku_id", "shape": [1], "datatype": "INT64",
                                                  "data": [3]}]})
        assert after.status_code == 200, after.text


# --- defect 2: v1 with a charset -------------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/json;charset=UTF-8",
                                          "application/octet-stream", "application/json"])
def test_v1_accepts_json_with_a_charset(transformer, content_type: str) -> None:
    response = httpx.post(transformer["base"] + V1, content=b'{"instances": [5, {"sku_id": 6}]}',
                          headers={"content-type": content_type}, timeout=60)
    assert response.status_code == 200, response.text
    assert [p["sku_id"] for p in response.json()["predictions"]] == [5, 6]


@pytest.mark.parametrize("content_type, body, message", [
    ("application/json; charset=latin-1", b'{"instances": [5]}', "charset='latin-1'"),
    ("text/csv", b"5,6", "content-type='text/csv'"),
    ("application/json; charset=utf-8", b'{"instances": [NaN]}', "not JSON"),
    ("application/json; charset=utf-8", b"\xff\xfe{", "not JSON"),
])
def test_v1_refuses_other_media_types_and_non_json_in_one_line(transformer, content_type, body, message) -> None:
    response = httpx.post(transformer["base"] + V1, content=body, headers={"content-type": content_type}, timeout=60)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


# --- the bounded fuzz suite (bench/bench_fuzz_serving.py) -----------------------------------------------------
def test_bounded_fuzz_of_v1_and_v2_gets_no_5xx_no_hang_and_nothing_outside_a_safe(transformer) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.bench_fuzz_serving import fuzz_http

    figures = fuzz_http(transformer["base"], MODEL, n=160, seed=19, timeout_s=30.0)
    assert figures["requests"] == 160 + figures["follow_ups"]
    assert figures["5xx"] == 0 and figures["hangs"] == 0 and figures["connection errors"] == 0, figures
    assert figures["outside A_safe"] == 0
    assert figures["4xx"] > 40 and figures["2xx"] > 10  # the suite exercises both sides


# --- defects 6, 7, 8 (weights): batch pricing's local predictor -------------------------------------------------
def _corrupt_model(root: Path) -> Path:
    """A model directory whose tokenizer and config load and whose weights are truncated."""
    from tokenizers import Tokenizer, models

    root.mkdir(parents=True, exist_ok=True)
    Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]")).save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast",
                                                            "unk_token": "[UNK]"}))
    (root / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 16, "intermediate_size": 32,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 8}))
    header = json.dumps({"w": {"dtype": "F32", "shape": [8, 16], "data_offsets": [0, 512]}}).encode()
    (root / "model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header[: len(header) // 2])
    return root


def test_batch_local_predictor_ignores_the_batch_command_line_and_names_a_corrupt_model(tmp_path: Path) -> None:
    model = _corrupt_model(tmp_path / "model")
    script = textwrap.dedent(f"""
        import sys
        sys.argv = ["aigp", "price", "batch", "--date", "2026-03-16", "--config", "batch.yaml", "--serve-local"]
        from aigp.serving.batch import _local_predictors
        try:
            with _local_predictors({{"A": {{"storage_uri": {str(model)!r}, "model_version": "3"}}}},
                                   lambda group: "aigp-pricing", __import__("pathlib").Path({str(tmp_path)!r})):
                print("STARTED")
        except ValueError as exc:
            print("ERROR", exc)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]  # KServe did not read --config as --configure_logging
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("ERROR the local predictor for " + str(model)), result.stdout
    assert "SafetensorError" in line and str(tmp_path / "predictor-v3.log") in line


_PARENT = textwrap.dedent("""
    import sys, time
    from aigp.serving.predictor import serve_subprocess
    port = int(sys.argv[1])
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with serve_subprocess(argv, lambda base: base + "/", port=port) as base:
        print("UP", flush=True)
        time.sleep(600)
""")


def test_a_killed_parent_takes_its_local_server_with_it(tmp_path: Path) -> None:
    from aigp.serving.predictor import free_port

    port = free_port()
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "UP"
        children = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 1
        child = int(children[0])
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.1)
        alive = _alive(child)
        if alive:
            os.kill(child, signal.SIGKILL)
        assert not alive, "the server outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


# --- defect 8: corrupt inputs, one line naming the file ---------------------------------------------------------
def test_a_damaged_online_store_is_one_error_naming_the_file(tmp_path: Path) -> None:
    from aigp.feature_repo.store import FeatureStoreError
    from aigp.serving.features import EmbeddedFeatureSource

    (tmp_path / "state").mkdir()
    (tmp_path / "features").mkdir()
    db = tmp_path / "state" / "online.db"
    db.write_bytes(b"SQLite format 3\x00\x10\x00" + b"\x00" * 80)  # a truncated database
    source = EmbeddedFeatureSource.open(feature_data=tmp_path / "features", state_dir=tmp_path / "state")
    try:
        with pytest.raises(FeatureStoreError) as caught:
            source.lookup([1, 2])
    finally:
        source.close()
    message = str(caught.value)
    assert message.startswith(f"online store {db}:") and "\n" not in message


def test_a_truncated_parquet_source_is_named_by_its_path(tmp_path: Path) -> None:
    from aigp.ingest import table_file
    from aigp.schema import Group
    from aigp.serving.features import active_skus

    path = tmp_path / table_file(Group.SKU)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"sku_id": [1, 2], "event_timestamp": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True)}
                 ).to_parquet(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError) as caught:
        active_skus(tmp_path, dt.date(2026, 1, 3))
    assert str(caught.value).startswith(f"{path}: not a readable parquet table") and "\n" not in str(caught.value)


def test_price_batch_reports_a_truncated_source_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aigp.cli import app
    from aigp.ingest import table_file
    from aigp.schema import Group

    path = tmp_path / "features" / table_file(Group.SKU)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1" + b"\x00" * 64)
    result = CliRunner().invoke(app, ["price", "batch", "--date", "2026-03-16", "--feature-data",
                                      str(tmp_path / "features"), "--out", str(tmp_path / "out"),
                                      "--predictor-url", "http://127.0.0.1:9/openai/v1", "--no-progress"],
                                env={"COLUMNS": "400", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
                                     "AIGP_REGISTRY_AUDIT": str(tmp_path / "audit")})
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert str(path) in " ".join(result.output.split()) and "Traceback" not in result.output


# --- defect 9: the decision report's size ------------------------------------------------------------------------
def _records(n: int, text: str, rationale: str) -> pd.DataFrame:
    return pd.DataFrame({
        "sku_id": range(n), "group": "A", "model_version": "1", "priced": True, "prev_discount": 0.8,
        "new_discount": 0.75, "discount_change": -0.05, "proposed_change": -0.05, "projected": False,
        "fallback": False, "fallback_reason": "none", "attempts": 1, "detail": "", "rationale": rationale,
        "raw_output": "", "missing_features": "", "prompt_trimmed": False, "category": "pens",
        "description": text, "review_digest": text})


def test_the_report_clips_long_texts_and_the_records_keep_them() -> None:
    from aigp.serving.decision_report import MAX_TEXT_CHARS

    review = "review " * 14_000 + "END-OF-REVIEW"
    n = 120
    records = _records(n, review, "r " * 3000)
    page = render_decision_report(records, {"date": "2026-03-16"})
    short = render_decision_report(_records(n, "short", "r"), {"date": "2026-03-16"})
    # the texts add at most their clipped length and a note per SKU (in full: 3 x 100 kB per SKU, 24 MB)
    assert len(page) - len(short) <= n * 3 * (MAX_TEXT_CHARS + 150), (len(page), len(short))
    assert "END-OF-REVIEW" not in page
    assert "96,513 more characters (of 98,013): the full text is in the rationales file" in page
    assert records["review_digest"].str.endswith("END-OF-REVIEW").all()
