"""Counter-based randomness: every draw is a pure function of (seed, sku_id, day, stream).

Why not a sequential generator: with counter-based draws a SKU's outcome depends only on its own
parameters, its own actions and the seed, never on which other SKUs share the batch, how the cohort is
chunked, or which policy priced its neighbours. That makes the simulator chunk-invariant (flat memory
at any scale), lets a per-SKU Python loop reproduce the vectorised run exactly, gives every policy the
same luck on the same SKU (common random numbers), and lets Monte-Carlo rollouts branch from a state
simply by changing the seed.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

__all__ = ["ndtri", "normal", "poisson_from_uniform", "uniform"]

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_KEY_SKU = np.uint64(0xD6E8FEB86659FD93)
_KEY_DAY = np.uint64(0xA0761D6478BD642F)
_KEY_STREAM = np.uint64(0xE7037ED1A0B428DB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijective avalanche on uint64."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def uniform(seed: np.ndarray | int, sku_id: np.ndarray, day: np.ndarray | int,
            stream: np.ndarray | int) -> np.ndarray:
    """Uniform(0, 1) draws, open at both ends, one per element of ``sku_id`` (broadcast with the others).

    ``seed`` may be an array too: Monte-Carlo rollouts give each copy of a SKU its own seed.
    """
    with np.errstate(over="ignore"):
        sku = np.asarray(sku_id, dtype=np.uint64)
        d = np.asarray(day, dtype=np.uint64)
        st = np.asarray(stream, dtype=np.uint64)
        sd = np.asarray(seed, dtype=np.uint64)
        key = _mix(sd * _GOLDEN + st * _KEY_STREAM)
        x = _mix(key ^ (sku * _KEY_SKU))
        x = _mix(x ^ (d * _KEY_DAY) ^ key)
    # 53 random bits -> (0, 1): add half an ulp so that 0 is never returned.
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def normal(seed: np.ndarray | int, sku_id: np.ndarray, day: np.ndarray | int, stream: np.ndarray | int) -> np.ndarray:
    return ndtri(uniform(seed, sku_id, day, stream))


def poisson_from_uniform(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Poisson(lam) by inversion of a given uniform, vectorised.

    Exact inversion below ``lam = 40``; above, the normal approximation with continuity correction,
    whose error there is far below the model's own noise.
    """
    lam = np.asarray(lam, dtype=np.float64)
    u = np.broadcast_to(np.asarray(u, dtype=np.float64), lam.shape)
    out = np.zeros(lam.shape, dtype=np.int64)
    big = lam >= 40.0
    if big.any():
        lb = lam[big]
        out[big] = np.maximum(0, np.floor(lb + np.sqrt(lb) * ndtri(u[big]) + 0.5)).astype(np.int64)
    small = np.flatnonzero(~big & (lam > 0))
    if small.size:
        ls, us = lam.reshape(-1)[small], u.reshape(-1)[small]
        k = np.zeros(small.size, dtype=np.int64)
        pmf = np.exp(-ls)
        cdf = pmf.copy()
        active = np.flatnonzero(us > cdf)
        step = 0
        while active.size and step < 200:
            step += 1
            k[active] += 1
            pmf[active] *= ls[active] / k[active]
            cdf[active] += pmf[active]
            active = active[us[active] > cdf[active]]
        flat = out.reshape(-1)
        flat[small] = k
    return out
