"""The LTVE artifact: weights, configs, feature normaliser, reward references and metrics in one directory.

Layout (written to ``<dir>.partial`` and renamed, so a reader never sees half an artifact)::

    ltve.json      format, format_version, kind (ltve | cql), critic config, normaliser, reward config and
                   references, training-data description, sha256 of the weights
    weights.pt     the learner's state dict (networks and optimisers: training can resume)
    metrics.json   training (and, once evaluated, evaluation) metrics

:func:`load_model` checks the format version and the weights' checksum and names what is wrong with an
artifact it cannot use. :class:`LTVEModel` is what the rest of the platform calls: Q of candidate actions for
states given as schema-named feature frames.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from aigp.action import feasible_change_bounds
from aigp.io import replace_directory, sha256_of, write_json
from aigp.ltve.cql import CQL, CQLConfig
from aigp.ltve.critic import LTVE, LTVEConfig
from aigp.ltve.dataset import ACTION, FeatureNormaliser
from aigp.ltve.reward import RewardConfig, RewardReferences, frame_rewards

FORMAT = "aigp-ltve"
FORMAT_VERSION = 1
MANIFEST = "ltve.json"
WEIGHTS = "weights.pt"
METRICS = "metrics.json"
LEARNERS: dict[str, tuple[Any, Any]] = {"ltve": (LTVE, LTVEConfig), "cql": (CQL, CQLConfig)}
SCORE_CHUNK = 262_144  # (state, candidate) pairs per forward pass when scoring


class ArtifactError(ValueError):
    """An LTVE artifact is missing, corrupt or from an incompatible format version."""


@dataclass
class LTVEModel:
    """A trained critic with everything needed to score raw states: the normaliser and the reward it learned."""

    learner: LTVE | CQL
    normaliser: FeatureNormaliser
    reward_config: RewardConfig
    references: RewardReferences
    info: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.learner.kind

    @property
    def config(self) -> LTVEConfig | CQLConfig:
        return self.learner.config

    def daily_rewards(self, frame: pd.DataFrame) -> np.ndarray:
        """The reward this critic learned (eq. 3, its references) of every day of ``frame`` (decision rows with
        ``out_gmv``/``out_spend`` and the SKU's ``category``/``gmv_tier1``): what its Q estimates the discounted
        sum of."""
        return frame_rewards(frame, self.references, self.reward_config)

    def encode(self, frame: pd.DataFrame) -> torch.Tensor:
        return torch.from_numpy(self.normaliser.transform(frame))

    def q_values(self, frame: pd.DataFrame, candidate_actions: np.ndarray) -> np.ndarray:
        """Q(s, a) of K candidate actions per state row: frame (N rows), candidates (N, K) -> (N, K)."""
        candidates = np.asarray(candidate_actions, dtype=np.float32)
        if candidates.ndim == 1:
            candidates = candidates[:, None]
        if candidates.ndim != 2 or candidates.shape[0] != len(frame):
            raise ValueError(f"candidate_actions must be (N, K) with N={len(frame)} rows, got {candidates.shape}")
        if not np.isfinite(candidates).all():
            raise ValueError("candidate_actions contain NaN or inf; project proposals onto A_safe first")
        return self.score_encoded(self.encode(frame), torch.from_numpy(candidates)).numpy()

    def score_encoded(self, states: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Q of (N, K) candidates for already encoded states, in chunks that bound memory."""
        n, k = candidates.shape
        step = max(1, SCORE_CHUNK // max(k, 1))
        out = torch.empty(n, k)
        for start in range(0, n, step):
            stop = min(n, start + step)
            out[start:stop] = self.learner.score(states[start:stop], candidates[start:stop])
        return out

    def q_logged(self, frame: pd.DataFrame) -> np.ndarray:
        """Q of the logged action of each row."""
        return self.q_values(frame, frame[ACTION].to_numpy(np.float32)[:, None])[:, 0]

    def greedy(self, frame: pd.DataFrame, grid_size: int = 41) -> tuple[np.ndarray, np.ndarray]:
        """The Q-greedy action inside A_safe on a grid of ``grid_size`` feasible changes; (actions, Q)."""
        grid = action_grid(frame["prev_discount"].to_numpy(np.float64), grid_size)
        q = self.q_values(frame, grid)
        best = q.argmax(1)
        rows = np.arange(len(frame))
        return grid[rows, best], q[rows, best]


def action_grid(prev_discount: np.ndarray, size: int) -> np.ndarray:
    """(N, size) evenly spaced changes spanning A_safe(s) from each d_{t-1} (ends included)."""
    if size < 2:
        raise ValueError(f"grid size={size} must be >= 2")
    low, high = feasible_change_bounds(prev_discount)
    return (low[:, None] + (high - low)[:, None] * np.linspace(0.0, 1.0, size)[None, :]).astype(np.float32)


# --------------------------------------------------------------------------------------------------------
def save_model(model: LTVEModel, path: str | Path, *, overwrite: bool = True) -> Path:
    """Write the artifact directory atomically (build under ``.partial``, then rename)."""
    out = Path(path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        torch.save(model.learner.state_dict(), partial / WEIGHTS)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": model.kind,
            "state_dim": model.learner.state_dim,
            "config": model.config.to_dict(),
            "normaliser": model.normaliser.to_dict(),
            "reward_config": model.reward_config.model_dump(mode="json"),
            "reward_references": model.references.to_dict(),
            "info": model.info,
            "weights_sha256": sha256_of(partial / WEIGHTS),
        }
        write_json(partial / MANIFEST, manifest)
        write_json(partial / METRICS, model.metrics)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return replace_directory(partial, out)


def load_model(path: str | Path) -> LTVEModel:
    """Load an artifact written by :func:`save_model`; :class:`ArtifactError` says what is wrong otherwise."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"{path} is not an LTVE artifact (no {MANIFEST}); train one with `aigp ltve train`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{manifest_path} is corrupt: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{manifest_path} is not an LTVE manifest (format={_get(manifest, 'format')!r}, "
                            f"expected {FORMAT!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{path}: artifact format_version={version!r}, this aigp reads {FORMAT_VERSION}; "
                            "retrain the LTVE with this version")
    kind = manifest.get("kind")
    if kind not in LEARNERS:
        raise ArtifactError(f"{path}: unknown critic kind={kind!r}; expected one of {sorted(LEARNERS)}")
    weights = path / WEIGHTS
    if not weights.is_file():
        raise ArtifactError(f"{path}: {WEIGHTS} is missing")
    if sha256_of(weights) != manifest.get("weights_sha256"):
        raise ArtifactError(f"{weights} does not match the checksum in {MANIFEST}: corrupt or replaced")
    learner_cls, config_cls = LEARNERS[kind]
    try:
        config = config_cls.from_dict(manifest["config"])
        normaliser = FeatureNormaliser.from_dict(manifest["normaliser"])
        reward_config = RewardConfig.build(**manifest["reward_config"])
        references = RewardReferences.from_dict(manifest["reward_references"])
        state_dim = int(manifest["state_dim"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{manifest_path} is incomplete or inconsistent: {exc}") from None
    if state_dim != normaliser.dim:
        raise ArtifactError(f"{path}: state_dim={state_dim} but the normaliser encodes {normaliser.dim} features")
    learner = learner_cls(state_dim, config)
    try:
        learner.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ArtifactError(f"{weights} cannot be loaded into a {kind} critic: {exc}") from None
    metrics_path = path / METRICS
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return LTVEModel(learner, normaliser, reward_config, references, manifest.get("info", {}), metrics)


def _get(data: Any, key: str) -> Any:
    return data.get(key) if isinstance(data, dict) else None
