"""aigp.registry.storage against a real S3-compatible HTTP server on 127.0.0.1 (moto server mode)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _registry_support import S3_ENV, s3_server

from aigp.registry import storage
from aigp.registry.storage import StorageError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_server() as url:
        yield url


@pytest.fixture
def s3(endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint, "AIGP_CACHE_DIR": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    client = storage.s3_client()
    bucket = f"b-{hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10]}"
    client.create_bucket(Bucket=bucket)
    client.test_bucket = bucket
    return client


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != storage.DOWNLOAD_MANIFEST}


def _model_dir(root: Path) -> Path:
    model = root / "model"
    (model / "adapter" / "nested").mkdir(parents=True)
    (model / "config.json").write_text('{"hidden_size": 64}')
    (model / "adapter" / "adapter_config.json").write_text('{"r": 8}')
    (model / "adapter" / "nested" / "empty.txt").write_text("")
    # 9 MiB crosses boto3's 8 MiB multipart threshold: the upload and download are multipart
    (model / "model.safetensors").write_bytes(os.urandom(9 * 1024 * 1024))
    return model


def test_directory_round_trip_with_multipart_and_nested_files(s3: Any, tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    uri = f"s3://{s3.test_bucket}/models/aigp-pricing/v1"
    written = storage.upload(model, uri)
    assert sorted(written) == sorted(f"{uri}/{rel}" for rel in _tree(model))
    listed = s3.list_objects_v2(Bucket=s3.test_bucket, Prefix="models/")["Contents"]
    assert {o["Key"]: o["Size"] for o in listed}["models/aigp-pricing/v1/model.safetensors"] == 9 * 1024 * 1024

    target = storage.download(uri, tmp_path / "copy")
    assert _tree(target) == _tree(model)
    assert not list(tmp_path.glob(".copy.*")), "the temporary download directory was left behind"
    with pytest.raises(FileExistsError, match="already exists"):
        storage.download(uri, tmp_path / "copy")


def test_single_file_upload_and_download(s3: Any, tmp_path: Path) -> None:
    report = tmp_path / "gate.json"
    report.write_text('{"passed": true}')
    assert storage.upload(report, f"s3://{s3.test_bucket}/reports/") == [f"s3://{s3.test_bucket}/reports/gate.json"]
    assert storage.upload(report, f"s3://{s3.test_bucket}/r/x.json") == [f"s3://{s3.test_bucket}/r/x.json"]
    out = storage.download(f"s3://{s3.test_bucket}/reports/gate.json", tmp_path / "dl" / "gate.json")
    assert out.read_text() == '{"passed": true}'


def test_resolve_local_caches_and_is_atomic(s3: Any, tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    uri = f"s3://{s3.test_bucket}/models/m/v2"
    storage.upload(model, uri)
    first = storage.resolve_local(uri)
    assert first.parent.parent == tmp_path / "cache" and _tree(first) == _tree(model)
    assert storage.resolve_local(uri + "/") == first  # same cache entry with or without the trailing slash
    # cached: the objects can vanish from S3 and the local copy still serves
    for obj in s3.list_objects_v2(Bucket=s3.test_bucket, Prefix="models/m/v2/")["Contents"]:
        s3.delete_object(Bucket=s3.test_bucket, Key=obj["Key"])
    assert storage.resolve_local(uri) == first and _tree(first) == _tree(model)
    with pytest.raises(StorageError, match=r"nothing at s3://.*/models/m/v2"):
        storage.resolve_local(uri, refresh=True)
    assert not first.exists()  # a refresh drops the stale copy before fetching

    # a download that dies half-way leaves neither the target nor a partial directory
    storage.upload(model, uri)
    calls = {"n": 0}

    class Flaky:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def download_file(self, *args: Any, **kwargs: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 3:
                raise ConnectionError("network dropped")
            self.inner.download_file(*args, **kwargs)

    with pytest.raises(ConnectionError):
        storage.resolve_local(uri, client=Flaky(s3))
    cached = storage.cached_path_for(uri)
    assert not cached.exists() and not [p for p in cached.parent.iterdir() if ".partial" in p.name]
    assert _tree(storage.resolve_local(uri)) == _tree(model)


def test_local_paths_and_errors(s3: Any, tmp_path: Path) -> None:
    model = _model_dir(tmp_path)
    assert storage.resolve_local(model) == model
    assert storage.resolve_local(model.as_uri()) == model
    with pytest.raises(StorageError, match="does not exist"):
        storage.resolve_local(tmp_path / "missing")
    with pytest.raises(StorageError, match="unsupported storage URI 'gs://b/m'"):
        storage.resolve_local("gs://b/m")
    with pytest.raises(StorageError, match="not an S3 URI"):
        storage.parse_s3_uri("s3:///no-bucket")
    with pytest.raises(StorageError, match=r"contains '\.\.'"):
        storage.parse_s3_uri("s3://b/models/../secrets")
    with pytest.raises(StorageError, match="directory is empty"):
        (tmp_path / "empty").mkdir()
        storage.upload(tmp_path / "empty", f"s3://{s3.test_bucket}/e")
    # an object key that would escape the target directory is refused, nothing is written
    s3.put_object(Bucket=s3.test_bucket, Key="evil/a/../../../outside.txt", Body=b"x")
    with pytest.raises(StorageError, match="escapes the target directory"):
        storage.download(f"s3://{s3.test_bucket}/evil", tmp_path / "evil")
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "outside.txt").exists()


def test_endpoint_comes_from_the_environment(s3: Any, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert storage.endpoint_from_env() == endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    assert storage.endpoint_from_env() == "http://127.0.0.1:1"  # the S3-specific variable wins
    assert storage.s3_client().meta.endpoint_url == "http://127.0.0.1:1"
    assert storage.s3_client(endpoint_url=endpoint).meta.endpoint_url == endpoint
