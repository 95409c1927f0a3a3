"""Artifact and model storage: local paths and ``s3://bucket/prefix`` URIs behind one small API.

S3 goes through boto3 (imported lazily, so the core imports without it). The endpoint is configurable for
S3-compatible servers (MinIO, Ceph, a test server): ``endpoint_url=`` or ``AWS_ENDPOINT_URL_S3`` /
``AWS_ENDPOINT_URL`` in the environment; credentials come from boto3's usual chain (env, profile, IRSA).

``resolve_local(uri)`` turns a model URI (a local path, ``file://`` URI or ``s3://`` URI) into a local
directory. S3 downloads are cached under ``AIGP_CACHE_DIR`` (default ``~/.cache/aigp/s3``) and atomic: the
objects land in a temporary sibling directory that is renamed into place only when every object is there,
so a reader never sees half a model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

DOWNLOAD_MANIFEST = ".aigp-download.json"


class StorageError(ValueError):
    """A storage URI or object is wrong or missing; the message names the URI."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str  # no leading slash; "" is the bucket root

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"

    def child(self, relative: str) -> S3Location:
        key = f"{self.key.rstrip('/')}/{relative}" if self.key else relative
        return S3Location(self.bucket, key)


def is_s3_uri(uri: str | os.PathLike[str]) -> bool:
    return str(uri).startswith("s3://")


def parse_s3_uri(uri: str) -> S3Location:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"not an S3 URI: {uri!r} (expected s3://bucket/prefix)")
    key = parsed.path.lstrip("/")
    if any(part == ".." for part in key.split("/")):
        raise StorageError(f"S3 URI {uri!r} contains '..'")
    return S3Location(parsed.netloc, key)


def local_path(uri: str | os.PathLike[str]) -> Path | None:
    """The local path of a plain path or ``file://`` URI; ``None`` for a remote URI."""
    text = str(uri)
    if text.startswith("file://"):
        return Path(unquote(urlparse(text).path))
    if "://" in text:
        return None
    return Path(text)


def endpoint_from_env() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A boto3 S3 client; path-style addressing when a custom endpoint is set (MinIO and friends need it)."""
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url or endpoint_from_env()
    config = Config(s3={"addressing_style": "path"} if endpoint else {},
                    retries={"max_attempts": 5, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint, region_name=region or os.environ.get("AWS_DEFAULT_REGION")
                        or "us-east-1", config=config)


def _iter_objects(client: Any, location: S3Location) -> Iterator[dict[str, Any]]:
    paginator = client.get_paginator("list_objects_v2")
    prefix = f"{location.key.rstrip('/')}/" if location.key else ""
    for page in paginator.paginate(Bucket=location.bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _relative_key(key: str, prefix: str, uri: str) -> str:
    relative = key[len(prefix):].lstrip("/")
    parts = PurePosixPath(relative).parts
    if not relative or any(part in ("..", ".") for part in parts):
        raise StorageError(f"refusing object {key!r} under {uri}: its path escapes the target directory")
    return relative


def upload(source: str | os.PathLike[str], uri: str, client: Any = None) -> list[str]:
    """Upload a file or a directory tree to ``s3://bucket/prefix``; returns the object URIs written.

    A file goes to exactly ``uri``; a directory's files go to ``uri/<relative path>``.
    """
    source = Path(source)
    location = parse_s3_uri(uri)
    if not source.exists():
        raise StorageError(f"cannot upload {source}: no such file or directory")
    client = client or s3_client()
    if source.is_file():
        if not location.key or location.key.endswith("/"):
            location = location.child(source.name)
        client.upload_file(str(source), location.bucket, location.key)
        return [location.uri]
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.name != DOWNLOAD_MANIFEST)
    if not files:
        raise StorageError(f"cannot upload {source}: the directory is empty")
    written = []
    for path in files:
        target = location.child(path.relative_to(source).as_posix())
        client.upload_file(str(path), target.bucket, target.key)
        written.append(target.uri)
    return written


def download(uri: str, target: str | os.PathLike[str], client: Any = None) -> Path:
    """Download an S3 prefix (a "directory") or a single object to ``target``, atomically.

    A prefix becomes the directory ``target``; a single object becomes the file ``target``. ``target`` must
    not exist yet; the data are fetched into a temporary sibling and renamed into place.
    """
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"download target {target} already exists")
    location = parse_s3_uri(uri)
    client = client or s3_client()
    target.parent.mkdir(parents=True, exist_ok=True)
    objects = [o for o in _iter_objects(client, location) if not o["Key"].endswith("/")]
    if not objects:
        return _download_object(client, location, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        prefix = f"{location.key.rstrip('/')}/" if location.key else ""
        entries = []
        for obj in objects:
            relative = _relative_key(obj["Key"], prefix, uri)
            path = tmp / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(location.bucket, obj["Key"], str(path))
            entries.append({"key": obj["Key"], "etag": obj.get("ETag", "").strip('"'), "size": obj.get("Size")})
        (tmp / DOWNLOAD_MANIFEST).write_text(json.dumps({"uri": uri, "objects": entries}, indent=2) + "\n")
        os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _download_object(client: Any, location: S3Location, target: Path) -> Path:
    from botocore.exceptions import ClientError

    if not location.key:
        raise StorageError(f"nothing to download at {location.uri}: the bucket is empty")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    try:
        client.download_file(location.bucket, location.key, tmp_name)
        os.replace(tmp_name, target)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NoSuchBucket"):
            raise StorageError(f"nothing at {location.uri}: no object and no objects under that prefix") from None
        raise
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def cache_root() -> Path:
    return Path(os.environ.get("AIGP_CACHE_DIR") or Path.home() / ".cache" / "aigp" / "s3")


def cached_path_for(uri: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where ``resolve_local`` keeps a copy of ``uri``: readable name + a hash, so nested prefixes never collide."""
    location = parse_s3_uri(uri)
    readable = PurePosixPath(location.key.rstrip("/")).name or location.bucket
    digest = hashlib.sha256(location.uri.rstrip("/").encode()).hexdigest()[:16]
    return Path(cache_dir or cache_root()) / location.bucket / f"{readable}-{digest}"


def resolve_local(uri: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
                  client: Any = None, refresh: bool = False) -> Path:
    """A local directory (or file) holding what ``uri`` names: the path itself for local URIs, a cached
    download for ``s3://`` URIs. Registered model versions are immutable, so a cached copy is reused unless
    ``refresh`` is set."""
    local = local_path(uri)
    if local is not None:
        if not local.exists():
            raise StorageError(f"model path {uri} does not exist")
        return local
    text = str(uri)
    if not is_s3_uri(text):
        raise StorageError(f"unsupported storage URI {text!r}: expected a local path, file:// or s3://")
    cached = cached_path_for(text, cache_dir)
    if cached.exists() and not refresh:
        return cached
    if cached.exists():
        stale = cached.with_name(f".{cached.name}.stale-{os.getpid()}")
        os.rename(cached, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        return download(text, cached, client=client)
    except FileExistsError:
        return cached  # another process finished the same download first: its copy is complete


def localize(spec: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None, client: Any = None) -> str:
    """The one way the platform locates a model (or any artifact) before the core loads it: an ``s3://`` or
    ``file://`` URI becomes a local path (a cached, atomic download for S3); a plain path or a Hugging Face model
    id passes through unchanged."""
    text = str(spec)
    if is_s3_uri(text) or text.startswith("file://"):
        return str(resolve_local(text, cache_dir=cache_dir, client=client))
    return text
