"""Atomic file output: write to a temporary sibling, fsync, rename. A reader never sees half a file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` in one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(target: str | Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_json(target: str | Path, payload: Any) -> Path:
    return write_text(target, json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_parquet(target: str | Path, frame: pd.DataFrame) -> Path:
    """Parquet with microsecond timestamps (DuckDB and Feast reject nanoseconds)."""
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False, coerce_timestamps="us", allow_truncated_timestamps=False)
    return Path(target)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def replace_directory(partial: str | Path, out: str | Path) -> Path:
    """Move a fully written ``partial`` directory to ``out``, replacing any existing ``out``: the old one is
    renamed aside first and deleted only after the new one is in place, so a crash never leaves ``out``
    half-written (at worst ``out`` is missing and ``<out>.old`` holds the previous version)."""
    partial, out = Path(partial), Path(out)
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        partial.rename(out)
        shutil.rmtree(old)
    else:
        partial.rename(out)
    return out


@contextlib.contextmanager
def atomic_directory(out: str | Path) -> Iterator[Path]:
    """Build a directory under ``<out>.partial``; when the block completes it replaces ``out`` (see
    :func:`replace_directory`), when it raises the partial directory is removed and ``out`` is untouched. Every
    saved artifact (models, LTVE, logs) goes through this or :func:`replace_directory`."""
    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    replace_directory(partial, out)
