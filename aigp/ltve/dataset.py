"""From a training set to LTVE transitions: time split, expert labels, feature normaliser, n-step transitions.

Input contract: a *training frame*, one row per SKU and day priced, with exactly the columns the Feast
``ltve_training`` feature service returns (schema names): ``sku_id``, ``event_timestamp``, the numeric state
features of :func:`aigp.schema.numeric_state_features`, ``category``, the action ``discount_change`` and the
outcome labels ``out_gmv`` and ``out_spend``. :func:`training_frame_from_logs` builds the same frame from a
market log directory with a plain pandas join (no Feast), so everything here runs without a feature store.

An episode is a SKU's first ``horizon_days`` (14) days. A transition from day t carries the rewards of days
t..t+n-1 and the state of day t+n; when the episode ends inside those n days the rewards after the last day
are 0 and ``done`` is set (no bootstrap). A SKU whose log stops before its last day (a truncated episode)
keeps only the transitions whose n-step window it fully covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from aigp.ltve.critic import Batch
from aigp.ltve.reward import MILESTONE_DAYS, sku_totals
from aigp.schema import ENTITY_KEY, EVENT_TIMESTAMP, OUTCOME_COLUMNS, STATIC_FEATURES, numeric_state_features

ACTION = "discount_change"
STATE_FEATURES: tuple[str, ...] = tuple(numeric_state_features())
REQUIRED_COLUMNS: tuple[str, ...] = (ENTITY_KEY, EVENT_TIMESTAMP, *STATE_FEATURES, "category", ACTION,
                                     "out_gmv", "out_spend")


# --------------------------------------------------------------------------------------------------------
# the training frame
def training_frame_from_logs(log_dir: str | Path) -> pd.DataFrame:
    """Decision log joined with the static SKU attributes on ``sku_id``: the ``ltve_training`` columns.

    Reads only the columns the LTVE uses and attaches each SKU's attributes by position rather than with a
    merge: on a 5M-row log this keeps the peak near the size of the result (a merge of the whole log held
    several copies of it: 11 GB for a 1.8 GB frame)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from aigp.market.logs import open_logs

    logs = open_logs(log_dir)
    path = logs.path / "decisions.parquet"
    available = set(pq.read_schema(path).names)
    wanted = list(dict.fromkeys((*REQUIRED_COLUMNS, "date", "discount", "behaviour_policy", *OUTCOME_COLUMNS)))
    text = [c for c in ("behaviour_policy",) if c in available]  # a few distinct strings: read as categories
    table = pq.read_table(path, columns=[c for c in wanted if c in available and c not in STATIC_FEATURES],
                          read_dictionary=text)
    skus = logs.read("skus.parquet")[[ENTITY_KEY, *STATIC_FEATURES]].drop_duplicates(ENTITY_KEY)
    position = pd.Index(skus[ENTITY_KEY]).get_indexer(table[ENTITY_KEY].to_numpy())
    if (position < 0).any():
        missing = table[ENTITY_KEY].to_numpy()[np.flatnonzero(position < 0)[0]]
        raise ValueError(f"{log_dir}: sku_id={missing} is in decisions.parquet but not in skus.parquet")
    for name in STATIC_FEATURES:
        if name in wanted:
            table = table.append_column(name, pa.array(skus[name].to_numpy()[position]))
    table = table.select([c for c in wanted if c in table.column_names])
    # Sorted in Arrow, then handed to pandas without a copy (split blocks): one copy of the log in memory
    # at a time. prepare_frame finds it in order and keeps it as it is.
    table = table.take(_sku_age_order(table[ENTITY_KEY].to_numpy(), table["days_since_launch"].to_numpy()))
    return prepare_frame(table.to_pandas(split_blocks=True, self_destruct=True))


def _sku_age_order(sku: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Row order by SKU, then day of life (stable)."""
    return np.lexsort((age, sku))


def prepare_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Check the contract and sort by SKU and day of life; errors name the missing or broken column.

    A frame already in that order (with a default index) comes back as it is, not copied: callers treat the
    result as read-only (every one here derives new frames with ``assign`` / boolean selection)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"training frame lacks column(s) {missing}; expected the ltve_training feature service "
                         f"columns (see aigp.ltve.dataset.REQUIRED_COLUMNS)")
    for column in (*STATE_FEATURES, ACTION, "out_gmv", "out_spend"):
        values = frame[column].to_numpy()
        if values.dtype == object or not np.isfinite(values.astype(np.float64)).all():
            bad = int((~np.isfinite(pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64))).sum())
            raise ValueError(f"training frame column {column!r} has {bad} missing or non-numeric value(s)")
    sku, age = frame[ENTITY_KEY].to_numpy(), frame["days_since_launch"].to_numpy()
    order = _sku_age_order(sku, age)
    in_order = bool((order == np.arange(len(order))).all())
    if not in_order:
        sku, age = sku[order], age[order]
    duplicated = np.flatnonzero((sku[1:] == sku[:-1]) & (age[1:] == age[:-1]))  # sorted: duplicates are adjacent
    if len(duplicated):
        raise ValueError(f"sku_id={sku[duplicated[0]]} has two rows for days_since_launch={age[duplicated[0]]}")
    if in_order:  # no copy of a frame that is already in order (a multi-GB log read by training_frame_from_logs)
        return frame if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1 \
            else frame.reset_index(drop=True)
    return frame.take(order).reset_index(drop=True)


def launch_dates(frame: pd.DataFrame) -> pd.Series:
    """Each row's SKU launch date (UTC day): the day priced minus its age."""
    day = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True).dt.tz_localize(None).dt.floor("D")
    return day - pd.to_timedelta(frame["days_since_launch"].to_numpy(np.int64), unit="D")


@dataclass(frozen=True)
class TimeSplit:
    """SKUs whose 14 days end before ``cutoff`` train (the latest of them validate); SKUs launched on or after
    ``cutoff`` are the held-out evaluation cohort. SKUs launched in the 13 days before the cutoff are in neither:
    their episodes straddle it."""

    train: pd.DataFrame
    validation: pd.DataFrame
    evaluation: pd.DataFrame
    cutoff: pd.Timestamp
    validation_from: pd.Timestamp

    def describe(self) -> dict[str, Any]:
        return {"cutoff": str(self.cutoff.date()), "validation_from": str(self.validation_from.date()),
                **{f"{name}_skus": int(getattr(self, name)[ENTITY_KEY].nunique())
                   for name in ("train", "validation", "evaluation")},
                **{f"{name}_rows": len(getattr(self, name)) for name in ("train", "validation", "evaluation")}}


def time_split(frame: pd.DataFrame, *, cutoff: str | pd.Timestamp | None = None, eval_share: float = 0.2,
               validation_share: float = 0.1, horizon_days: int = MILESTONE_DAYS) -> TimeSplit:
    """Split by launch date; without ``cutoff`` the latest ``eval_share`` of SKUs (by launch) are held out."""
    launch = launch_dates(frame)
    per_sku = launch.groupby(frame[ENTITY_KEY]).first().sort_values(kind="stable")
    if cutoff is None:
        if not 0 < eval_share < 1:
            raise ValueError(f"eval_share={eval_share} must be in (0, 1)")
        cutoff_ts = per_sku.iloc[int(len(per_sku) * (1 - eval_share))]
    else:
        cutoff_ts = pd.Timestamp(cutoff).tz_localize(None) if pd.Timestamp(cutoff).tzinfo else pd.Timestamp(cutoff)
    horizon = pd.Timedelta(days=horizon_days)
    train_skus = per_sku[per_sku + horizon <= cutoff_ts]
    if train_skus.empty:
        raise ValueError(f"cutoff={cutoff_ts.date()} leaves no SKU whose {horizon_days} days end before it")
    if not 0 <= validation_share < 1:
        raise ValueError(f"validation_share={validation_share} must be in [0, 1)")
    validation_from = train_skus.iloc[min(int(len(train_skus) * (1 - validation_share)), len(train_skus) - 1)]
    if validation_share == 0:
        validation_from = train_skus.iloc[-1] + pd.Timedelta(days=1)
    sku_launch = frame[ENTITY_KEY].map(per_sku)
    in_train = frame[ENTITY_KEY].isin(train_skus.index)
    evaluation = frame[(sku_launch >= cutoff_ts).to_numpy()]
    if evaluation.empty:
        raise ValueError(f"cutoff={cutoff_ts.date()} leaves no SKU launched on or after it to evaluate on")
    return TimeSplit(
        train=frame[(in_train & (sku_launch < validation_from)).to_numpy()].reset_index(drop=True),
        validation=frame[(in_train & (sku_launch >= validation_from)).to_numpy()].reset_index(drop=True),
        evaluation=evaluation.reset_index(drop=True), cutoff=cutoff_ts, validation_from=validation_from,
    )


def expert_skus(frame: pd.DataFrame, top_share: float = 0.3, horizon_days: int = MILESTONE_DAYS) -> np.ndarray:
    """SKU ids of expert trajectories: the top ``top_share`` by cumulative 14-day GMV within their category
    (complete episodes only)."""
    if not 0 < top_share <= 1:
        raise ValueError(f"expert top_share={top_share} must be in (0, 1]")
    totals = sku_totals(frame, horizon_days)
    totals = totals[totals["complete"]]
    rank = totals.groupby("category")["gmv"].rank(ascending=False, method="first", pct=True)
    return totals.index[rank <= top_share].to_numpy()


# --------------------------------------------------------------------------------------------------------
# derived state features: what an action's effect depends on, as ratios an MLP would otherwise have to learn
def _past_discounts(frame: pd.DataFrame) -> np.ndarray:
    """(rows, 4) discounts in effect 1..4 days before the day priced, from d_{t-1} and the last 3 changes."""
    d = frame["prev_discount"].to_numpy(np.float64)
    out = [d]
    for k in (1, 2, 3):
        d = d - frame[f"last_action_{k}"].to_numpy(np.float64)
        out.append(d)
    return np.stack(out, axis=1)


def _reference_gap(frame: pd.DataFrame) -> np.ndarray:
    """(mean of the last 4 days' discounts − d_{t-1}) / that mean: > 0 when yesterday's price sits below the
    recent level shoppers remember (a proxy of the reference-price gap; the market's own reference is hidden)."""
    ref = _past_discounts(frame).mean(1)
    return (ref - frame["prev_discount"].to_numpy(np.float64)) / np.maximum(ref, 1e-6)


def _stock_cover(frame: pd.DataFrame) -> np.ndarray:
    """Days of stock left at the last 3 days' order rate (capped at 100)."""
    rate = frame["orders_3d"].to_numpy(np.float64) / 3.0
    return np.minimum(frame["inventory"].to_numpy(np.float64) / np.maximum(rate, 0.1), 100.0)


def _exposure_momentum(frame: pd.DataFrame) -> np.ndarray:
    """Yesterday's exposure over the last 7 days' daily mean (ranking feedback: > 1 while traffic grows)."""
    return frame["exposure_1d"].to_numpy(np.float64) / np.maximum(frame["exposure_7d"].to_numpy(np.float64) / 7, 1.0)


DERIVED_FEATURES = {"ref_price_gap": _reference_gap, "stock_cover_days": _stock_cover,
                    "exposure_momentum": _exposure_momentum}


def feature_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A state feature's values: the frame's column, or a :data:`DERIVED_FEATURES` entry computed from it."""
    if name in frame.columns:
        return frame[name].to_numpy(np.float64)
    if name in DERIVED_FEATURES:
        return DERIVED_FEATURES[name](frame)
    raise ValueError(f"state lacks feature column(s) {[name]}")


# --------------------------------------------------------------------------------------------------------
# the feature normaliser (fitted on the training window, saved with the model)
@dataclass(frozen=True)
class FeatureNormaliser:
    """State encoding: log1p on heavy-tailed non-negative features, then standardisation, then clipping;
    the category one-hot follows. Unknown categories encode as all zeros."""

    features: list[str]
    log_features: list[str]
    mean: list[float]
    std: list[float]
    categories: list[str]
    clip: float = 10.0

    HEAVY_TAIL = 20.0  # a non-negative feature whose 99.9th percentile exceeds this is log-transformed

    @classmethod
    def fit(cls, frame: pd.DataFrame, features: tuple[str, ...] = STATE_FEATURES) -> FeatureNormaliser:
        log_features, mean, std = [], [], []
        for name in features:
            x = feature_column(frame, name)
            if x.min() >= 0 and np.quantile(x, 0.999) > cls.HEAVY_TAIL:
                log_features.append(name)
                x = np.log1p(x)
            mean.append(float(x.mean()))
            std.append(float(max(x.std(), 1e-6)))
        categories = sorted(frame["category"].astype(str).unique())
        return cls(list(features), log_features, mean, std, categories)

    @property
    def dim(self) -> int:
        return len(self.features) + len(self.categories)

    @property
    def names(self) -> list[str]:
        return [*self.features, *(f"category={c}" for c in self.categories)]

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in (*self.features, "category") if c not in frame.columns and c not in DERIVED_FEATURES]
        if missing:
            raise ValueError(f"state lacks feature column(s) {missing}")
        out = np.zeros((len(frame), self.dim), dtype=np.float32)
        logs = set(self.log_features)
        for j, name in enumerate(self.features):
            x = feature_column(frame, name)
            if not np.isfinite(x).all():
                raise ValueError(f"state feature {name!r} has {int((~np.isfinite(x)).sum())} missing or "
                                 f"non-finite value(s)")
            if name in logs:
                x = np.log1p(np.maximum(x, 0.0))
            out[:, j] = np.clip((x - self.mean[j]) / self.std[j], -self.clip, self.clip)
        codes = pd.Categorical(frame["category"].astype(str), categories=self.categories).codes
        known = codes >= 0
        out[np.flatnonzero(known), len(self.features) + codes[known]] = 1.0
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features, "log_features": self.log_features, "mean": self.mean, "std": self.std,
                "categories": self.categories, "clip": self.clip}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureNormaliser:
        norm = cls(list(data["features"]), list(data["log_features"]), [float(x) for x in data["mean"]],
                   [float(x) for x in data["std"]], list(data["categories"]), float(data["clip"]))
        if not len(norm.features) == len(norm.mean) == len(norm.std):
            raise ValueError("normaliser: features, mean and std differ in length")
        return norm


# --------------------------------------------------------------------------------------------------------
# n-step transitions
@dataclass
class Transitions:
    """n-step transitions over the rows of one frame. ``states``/``prev_discount`` are indexed by frame row;
    the other arrays by transition (``row`` = the row of s_t, ``next_row`` = the row of s_{t+n})."""

    states: torch.Tensor  # (rows, D) normalised states
    prev_discount: torch.Tensor  # (rows,) raw d_{t-1}, for A_safe bounds
    row: torch.Tensor  # (T,) int64
    next_row: torch.Tensor  # (T,) int64 (== row where done)
    actions: torch.Tensor  # (T,) a_t
    rewards: torch.Tensor  # (T, n) r_t..r_{t+n-1}, 0 after the episode's end
    done: torch.Tensor  # (T,) 1.0 where the episode ends within the n steps
    expert: torch.Tensor  # (T,) bool
    age: torch.Tensor  # (T,) day of life of s_t

    def __len__(self) -> int:
        return int(self.row.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.rewards.shape[1])

    def batch(self, index: torch.Tensor) -> Batch:
        row, nxt = self.row[index], self.next_row[index]
        return Batch(states=self.states[row], actions=self.actions[index], rewards=self.rewards[index],
                     next_states=self.states[nxt], done=self.done[index], prev_discount=self.prev_discount[row],
                     next_prev_discount=self.prev_discount[nxt])


def build_transitions(frame: pd.DataFrame, rewards: np.ndarray, states: np.ndarray, *, n_steps: int,
                      horizon_days: int = MILESTONE_DAYS, expert_ids: np.ndarray | None = None) -> Transitions:
    """n-step transitions of a frame sorted by (sku_id, days_since_launch) (see :func:`prepare_frame`)."""
    if n_steps < 1:
        raise ValueError(f"n_steps={n_steps} must be >= 1")
    m = len(frame)
    if rewards.shape != (m,) or states.shape[0] != m:
        raise ValueError(f"rewards {rewards.shape} and states {states.shape} must have one row per frame row ({m})")
    sku = frame[ENTITY_KEY].to_numpy()
    age = frame["days_since_launch"].to_numpy(np.int64)
    same = np.r_[False, sku[1:] == sku[:-1]]
    gaps = same & (age != np.r_[-1, age[:-1]] + 1)
    if gaps.any():
        bad = np.flatnonzero(gaps)[0]
        raise ValueError(f"sku_id={sku[bad]} has a gap or unsorted days at days_since_launch={age[bad]}; "
                         "sort with prepare_frame() and keep whole episodes")
    starts = np.flatnonzero(~same)
    ends = np.r_[starts[1:], m] - 1  # last row of each SKU
    last_row = np.repeat(ends, np.diff(np.r_[starts, m]))
    rows = np.arange(m)

    # Rewards r_{t+k} for k < n while the day stays inside the episode (day < horizon).
    k = np.arange(n_steps)
    day = age[:, None] + k[None, :]
    inside = day < horizon_days
    target = rows[:, None] + k[None, :]
    logged = target <= last_row[:, None]
    reward_matrix = np.where(inside & logged, rewards[np.minimum(target, m - 1)], 0.0)
    done = age + n_steps >= horizon_days
    # Keep a transition when it starts inside the episode and every needed day is logged:
    # all in-episode rewards (done) or the rewards and s_{t+n} (not done).
    needed_last = np.where(done, rows + (horizon_days - 1 - age), rows + n_steps)
    keep = (age < horizon_days) & (needed_last <= last_row)
    next_row = np.where(done, rows, rows + n_steps)
    expert = np.zeros(m, dtype=bool) if expert_ids is None else np.isin(sku, expert_ids)

    idx = np.flatnonzero(keep)
    return Transitions(
        states=torch.from_numpy(np.ascontiguousarray(states, dtype=np.float32)),
        prev_discount=torch.from_numpy(frame["prev_discount"].to_numpy(np.float32)),
        row=torch.from_numpy(idx.astype(np.int64)),
        next_row=torch.from_numpy(next_row[idx].astype(np.int64)),
        actions=torch.from_numpy(frame[ACTION].to_numpy(np.float32)[idx]),
        rewards=torch.from_numpy(reward_matrix[idx].astype(np.float32)),
        done=torch.from_numpy(done[idx].astype(np.float32)),
        expert=torch.from_numpy(expert[idx]),
        age=torch.from_numpy(age[idx]),
    )


class MixedSampler:
    """Batches with a fixed share of expert transitions (the paper's 60% expert / 40% diverse mix).

    ``expert_share=None`` samples uniformly. With no expert (or no non-expert) transition it samples uniformly
    too, since a fixed share of an empty group is impossible.
    """

    def __init__(self, transitions: Transitions, batch_size: int, *, expert_share: float | None = 0.6,
                 seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if len(transitions) == 0:
            raise ValueError("no transitions to sample from")
        self.transitions = transitions
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.expert_index = torch.nonzero(transitions.expert).flatten()
        self.other_index = torch.nonzero(~transitions.expert).flatten()
        mixed = expert_share is not None and len(self.expert_index) > 0 and len(self.other_index) > 0
        if expert_share is not None and not 0 <= expert_share <= 1:
            raise ValueError(f"expert_share={expert_share} must be in [0, 1]")
        self.n_expert = round(batch_size * expert_share) if mixed and expert_share is not None else None

    def indices(self) -> torch.Tensor:
        g = self.generator
        if self.n_expert is None:
            return torch.randint(len(self.transitions), (self.batch_size,), generator=g)
        e = self.expert_index[torch.randint(len(self.expert_index), (self.n_expert,), generator=g)]
        o = self.other_index[torch.randint(len(self.other_index), (self.batch_size - self.n_expert,), generator=g)]
        return torch.cat([e, o])

    def sample(self) -> Batch:
        return self.transitions.batch(self.indices())

    def __iter__(self):
        while True:
            yield self.sample()
