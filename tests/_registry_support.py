"""Shared helpers for the registry, storage and promotion tests: a local S3 server, an MLflow store, candidates."""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

_TEMPLATE_DB: Path | None = None


def mlflow_store(target_dir: Path) -> str:
    """A ready MLflow SQLite store in ``target_dir``: migrated once per session, copied for each user
    (creating the schema costs several seconds on 2 cores)."""
    global _TEMPLATE_DB
    if _TEMPLATE_DB is None:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        root = Path(tempfile.mkdtemp(prefix="aigp-mlflow-template-"))
        atexit.register(shutil.rmtree, root, True)
        SqlAlchemyStore(f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri())
        _TEMPLATE_DB = root / "mlflow.db"
    target_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(_TEMPLATE_DB, target_dir / "mlflow.db")
    return f"sqlite:///{target_dir / 'mlflow.db'}"


def make_candidate(root: Path, passed: bool = True, tag: str = "a") -> tuple[Path, Path, Path]:
    """A tiny model directory and its gate report (HTML + JSON). Returns (model_dir, html, json)."""
    model_dir = root / f"model-{tag}"
    (model_dir / "adapter").mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps({"model_type": "qwen2", "tag": tag}))
    (model_dir / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (model_dir / "adapter" / "adapter_config.json").write_text('{"r": 8}')
    html = root / f"gate-{tag}.html"
    html.write_text(f"<html><body>gate {'passed' if passed else 'failed'}</body></html>")
    report = root / f"gate-{tag}.json"
    report.write_text(json.dumps({"passed": passed, "reasons": [] if passed else ["avg_q 0.91 < floor 0.95"]}))
    return model_dir, html, report


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """A real S3-compatible HTTP server on 127.0.0.1 (moto's server mode); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
