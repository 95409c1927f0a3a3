"""Decision Transformer (Chen et al., 2021), small and CPU-sized: pricing as return-conditioned sequence modelling.

    episode  (R̂_0, s_0, a_0, R̂_1, s_1, a_1, ..., R̂_13, s_13, a_13),  R̂_t = Σ_{k≥t} r_k  (eq. 3 reward, undiscounted)
    model    token embeddings + day-of-life embedding -> causal transformer -> â_t read at the s_t token
    â_t      = squash_to_safe(head(h_{s_t}), d_{t−1})                                     (inside A_safe)
    loss     masked mean of (â_t − a_t)² over the logged episodes of the training window
    acting   R̂_0 = the ``target_quantile`` of the training window's episode returns; R̂_{t+1} = R̂_t − r_t, r_t
             computed from what the next night's observation reports about day t (``gmv_1d``, ``spend_1d``)

The whole 14-day episode fits the context. :class:`DTPolicy` keeps each SKU's history (states, actions,
rewards by day of life) between nights; :meth:`DTPolicy.prime` loads logged histories so that the same policy
can be asked about logged states (offline metrics) with the logged past as its context.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from aigp.action import project_to_safe
from aigp.evaluation.baselines.data import FramePolicy, TrainedBaseline, prepare_offline_data, squash_to_safe
from aigp.ltve.dataset import FeatureNormaliser
from aigp.ltve.reward import MILESTONE_DAYS, RewardConfig, RewardReferences, daily_rewards
from aigp.schema import ENTITY_KEY


@dataclass
class DTConfig:
    embed_dim: int = 64  # token width
    layers: int = 2  # transformer blocks
    heads: int = 2  # attention heads
    dropout: float = 0.1
    learning_rate: float = 3e-4  # AdamW
    weight_decay: float = 1e-4
    batch_size: int = 64  # episodes per update
    steps: int = 2_000  # updates
    target_quantile: float = 0.9  # return asked for at launch: this quantile of the training episodes' returns
    eval_share: float = 0.2  # latest launches held out (the LTVE's split)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DecisionTransformer(nn.Module):
    def __init__(self, state_dim: int, config: DTConfig, horizon: int = MILESTONE_DAYS):
        super().__init__()
        e = config.embed_dim
        self.state, self.action, self.rtg = nn.Linear(state_dim, e), nn.Linear(1, e), nn.Linear(1, e)
        self.day = nn.Embedding(horizon, e)
        self.norm = nn.LayerNorm(e)
        block = nn.TransformerEncoderLayer(e, config.heads, 4 * e, config.dropout, batch_first=True)
        self.blocks = nn.TransformerEncoder(block, config.layers, enable_nested_tensor=False)
        self.head = nn.Linear(e, 1)

    def forward(self, rtg: torch.Tensor, states: torch.Tensor, actions: torch.Tensor, prev_discount: torch.Tensor,
                mask: torch.Tensor, first_day: int = 0) -> torch.Tensor:
        """rtg, actions, prev_discount, mask: (B, T); states: (B, T, D) -> predicted actions (B, T). Sequences start
        on day of life ``first_day``; ``mask`` is False on padding after a sequence's end."""
        b, t = rtg.shape
        day = self.day(first_day + torch.arange(t)[None, :].expand(b, t))
        tokens = torch.stack([self.rtg(rtg[..., None]) + day, self.state(states) + day,
                              self.action(actions[..., None] / 0.2) + day], dim=2).reshape(b, 3 * t, -1)
        causal = torch.triu(torch.ones(3 * t, 3 * t, dtype=torch.bool), diagonal=1)
        padding = ~mask.repeat_interleave(3, dim=1)
        h = self.blocks(self.norm(tokens), mask=causal, src_key_padding_mask=padding)
        return squash_to_safe(self.head(h[:, 1::3]).squeeze(-1), prev_discount)


@dataclass
class Episodes:
    states: torch.Tensor  # (N, T, D)
    actions: torch.Tensor  # (N, T)
    rewards: torch.Tensor  # (N, T)
    prev_discount: torch.Tensor  # (N, T)
    mask: torch.Tensor  # (N, T) bool: day logged

    @property
    def returns_to_go(self) -> torch.Tensor:
        r = self.rewards * self.mask
        return r.flip(1).cumsum(1).flip(1)


def episodes(frame: pd.DataFrame, rewards: np.ndarray, states: np.ndarray,
             horizon: int = MILESTONE_DAYS) -> Episodes:
    """Each SKU's days 0..horizon−1 of a frame sorted by SKU and day (a SKU's logged prefix from launch)."""
    sku = frame[ENTITY_KEY].to_numpy()
    age = frame["days_since_launch"].to_numpy(np.int64)
    ids, slot = np.unique(sku, return_inverse=True)
    keep = age < horizon
    n, d = len(ids), states.shape[1]
    out_s = np.zeros((n, horizon, d), np.float32)
    out_a, out_r, out_p = (np.zeros((n, horizon), np.float32) for _ in range(3))
    mask = np.zeros((n, horizon), bool)
    i, t = slot[keep], age[keep]
    out_s[i, t], out_a[i, t] = states[keep], frame["discount_change"].to_numpy(np.float32)[keep]
    out_r[i, t], out_p[i, t] = rewards[keep], frame["prev_discount"].to_numpy(np.float32)[keep]
    mask[i, t] = True
    out_p[~mask] = 1.0  # any valid discount: padded days are masked out of the loss
    mask &= np.cumprod(mask, axis=1).astype(bool)  # a contiguous prefix from launch
    return Episodes(states=torch.from_numpy(out_s), actions=torch.from_numpy(out_a), rewards=torch.from_numpy(out_r),
                    prev_discount=torch.from_numpy(out_p), mask=torch.from_numpy(mask))


class DTPolicy(FramePolicy):
    """A trained Decision Transformer as a market Policy with per-SKU memory (see the module docstring)."""

    def __init__(self, name: str, model: DecisionTransformer, normaliser: FeatureNormaliser,
                 references: RewardReferences, reward_config: RewardConfig, target_return: float,
                 rtg_scale: float, horizon: int = MILESTONE_DAYS):
        self.name, self.model, self.normaliser = name, model.eval(), normaliser
        self.references, self.reward_config = references, reward_config
        self.target_return, self.rtg_scale, self.horizon = target_return, rtg_scale, horizon
        self.memory: dict[int, dict[str, np.ndarray]] = {}

    def fresh(self) -> DTPolicy:
        return DTPolicy(self.name, self.model, self.normaliser, self.references, self.reward_config,
                        self.target_return, self.rtg_scale, self.horizon)

    def _slot(self, sku: int) -> dict[str, np.ndarray]:
        if sku not in self.memory:
            self.memory[sku] = {"s": np.zeros((self.horizon, self.normaliser.dim), np.float32),
                                "a": np.zeros(self.horizon, np.float32), "r": np.zeros(self.horizon, np.float32),
                                "p": np.ones(self.horizon, np.float32), "known": np.zeros(self.horizon, bool)}
        return self.memory[sku]

    def prime(self, frame: pd.DataFrame) -> DTPolicy:
        """Load logged histories (rows with states, ``discount_change`` and ``out_gmv``/``out_spend``)."""
        states = self.normaliser.transform(frame)
        rewards = self._rewards(frame, frame["out_gmv"], frame["out_spend"], frame["days_since_launch"])
        skus, ages = frame[ENTITY_KEY].to_numpy(), frame["days_since_launch"].to_numpy()
        for i, (sku, age) in enumerate(zip(skus, ages, strict=True)):
            if age < self.horizon:
                m = self._slot(int(sku))
                m["s"][age], m["a"][age], m["r"][age] = states[i], frame["discount_change"].iloc[i], rewards[i]
                m["p"][age], m["known"][age] = frame["prev_discount"].iloc[i], True
        return self

    def _rewards(self, frame: pd.DataFrame, gmv: Any, spend: Any, age: Any) -> np.ndarray:
        return daily_rewards(np.asarray(gmv, np.float64), np.asarray(spend, np.float64),
                             frame["gmv_tier1"].to_numpy(np.float64), frame["category"].astype(str).to_numpy(),
                             np.asarray(age, np.int64), self.references, self.reward_config)

    @torch.no_grad()
    def propose(self, frame: pd.DataFrame) -> np.ndarray:
        states = self.normaliser.transform(frame)
        ages = np.minimum(frame["days_since_launch"].to_numpy(np.int64), self.horizon - 1)
        skus = frame[ENTITY_KEY].to_numpy()
        yesterday = self._rewards(frame, frame["gmv_1d"], frame["spend_1d"], np.maximum(ages - 1, 0))
        prev = frame["prev_discount"].to_numpy(np.float32)
        out = np.zeros(len(frame))
        starts = np.zeros(len(frame), np.int64)
        for i in range(len(frame)):
            m, t = self._slot(int(skus[i])), ages[i]
            m["s"][t], m["p"][t], m["known"][t] = states[i], prev[i], True
            if t > 0:
                m["r"][t - 1] = yesterday[i]
            gaps = np.flatnonzero(~m["known"][: t + 1])  # the context starts after the last day with no record
            starts[i] = int(gaps[-1]) + 1 if gaps.size else 0
        for t, start in sorted({(int(a), int(s)) for a, s in zip(ages, starts, strict=True)}):
            rows = np.flatnonzero((ages == t) & (starts == start))
            span = slice(start, t + 1)
            mem = [self.memory[int(skus[i])] for i in rows]
            ctx_s = np.stack([m["s"][span] for m in mem])
            ctx_a, ctx_r, ctx_p = (np.stack([m[k][span] for m in mem]) for k in ("a", "r", "p"))
            before = ctx_r.cumsum(1) - ctx_r  # rewards of the context's days before each day
            rtg = (self.target_return - before) / self.rtg_scale
            pred = self.model(torch.from_numpy(rtg.astype(np.float32)), torch.from_numpy(ctx_s),
                              torch.from_numpy(ctx_a), torch.from_numpy(ctx_p),
                              torch.ones(ctx_r.shape, dtype=torch.bool), first_day=start)[:, -1]
            out[rows] = pred.double().numpy()
            for m, value in zip(mem, out[rows], strict=True):
                m["a"][t] = value
        return project_to_safe(frame["prev_discount"].to_numpy(np.float64), out).change

    def __repr__(self) -> str:
        return f"DTPolicy(name={self.name!r}, target_return={self.target_return:.3g})"


def train_dt(frame: pd.DataFrame, config: DTConfig | None = None, *, name: str = "dt",
             progress: bool = False) -> TrainedBaseline:
    """Fit the Decision Transformer on the training window's episodes (eq. 3 reward)."""
    from tqdm.auto import tqdm

    config = config or DTConfig()
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    data = prepare_offline_data(frame, reward="ltve", eval_share=config.eval_share)
    train = data.split.train
    eps = episodes(train, data.rewards, data.normaliser.transform(train))
    rtg = eps.returns_to_go
    initial = rtg[:, 0][eps.mask[:, 0]]
    rtg_scale = float(max(initial.std().item(), 1e-3))
    target = float(torch.quantile(initial, config.target_quantile))
    model = DecisionTransformer(data.normaliser.dim, config)
    opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    window, log_every = [], max(1, config.steps // 10)
    model.train()
    for step in tqdm(range(1, config.steps + 1), desc="training dt", disable=not progress, mininterval=2.0):
        idx = torch.randint(len(eps.mask), (config.batch_size,), generator=generator)
        mask = eps.mask[idx]
        pred = model(rtg[idx] / rtg_scale, eps.states[idx], eps.actions[idx], eps.prev_discount[idx], mask)
        loss = ((pred - eps.actions[idx]).square() * mask).sum() / mask.sum().clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        window.append(float(loss.detach()))
        if step % log_every == 0 or step == config.steps:
            history.append({"step": step, "loss": float(np.mean(window))})
            window = []
    assert data.references is not None
    policy = DTPolicy(name, model, data.normaliser, data.references, RewardConfig(), target, rtg_scale)
    info = {"algorithm": "Decision Transformer (eq. 3 reward, return-conditioned)", "config": config.to_dict(),
            "data": {**data.describe(), "episodes": int(eps.mask[:, 0].sum())}, "target_return": target,
            "rtg_scale": rtg_scale, "parameters": sum(p.numel() for p in model.parameters())}
    return TrainedBaseline(name, policy, history, info, time.perf_counter() - started)
