"""Hash-based stable partitioning (paper App. B.1).

SKU id + experiment salt -> SHA-256 -> integer -> modulo buckets -> groups by traffic ratios. A SKU keeps
its group for its whole life (the hash of its id never changes) and the partitions of two experiments
with different salts are independent (no bucket coupling).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

DEFAULT_BUCKETS = 10_000


def bucket_of(sku_ids: np.ndarray | list[int], salt: str, n_buckets: int = DEFAULT_BUCKETS) -> np.ndarray:
    """Bucket in [0, n_buckets) of each SKU under ``salt``."""
    if not salt:
        raise ValueError("salt must be a non-empty string: an unsalted hash couples every experiment")
    if n_buckets < 1:
        raise ValueError(f"n_buckets={n_buckets} must be >= 1")
    prefix = salt.encode() + b":"
    out = np.empty(len(sku_ids), dtype=np.int64)
    for i, sku in enumerate(np.asarray(sku_ids).tolist()):
        digest = hashlib.sha256(prefix + str(int(sku)).encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") % n_buckets
    return out


def bucket_ranges(allocation: Mapping[str, float], n_buckets: int = DEFAULT_BUCKETS) -> dict[str, tuple[int, int]]:
    """Contiguous bucket range [start, end) of each group, in the order given."""
    if not allocation:
        raise ValueError("allocation needs at least one group")
    shares = np.array(list(allocation.values()), dtype=np.float64)
    if (shares <= 0).any() or abs(shares.sum() - 1.0) > 1e-6:
        raise ValueError(f"allocation shares must be > 0 and sum to 1, got {dict(allocation)}")
    edges = np.rint(np.concatenate([[0.0], np.cumsum(shares)]) * n_buckets).astype(np.int64)
    edges[-1] = n_buckets
    return {g: (int(edges[i]), int(edges[i + 1])) for i, g in enumerate(allocation)}


def assign_groups(sku_ids: np.ndarray | list[int], salt: str, allocation: Mapping[str, float],
                  n_buckets: int = DEFAULT_BUCKETS) -> np.ndarray:
    """The experiment group of each SKU."""
    buckets = bucket_of(sku_ids, salt, n_buckets)
    ranges = bucket_ranges(allocation, n_buckets)
    groups = np.empty(len(buckets), dtype=object)
    for group, (start, end) in ranges.items():
        groups[(buckets >= start) & (buckets < end)] = group
    return groups
