"""What a policy sees on the night before a day: the observable state of a batch of SKUs.

``frame`` holds the schema's structured features (one row per SKU). Text is rendered only when a policy
asks for it, and the true latent state only reaches a policy that declares ``requires_truth`` (the oracle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from aigp.market.dynamics import DayContext, MarketState, SkuDynamics


@dataclass(frozen=True)
class TrueView:
    """The hidden truth of the SKUs in an observation, for the oracle only."""

    params: SkuDynamics
    state: MarketState
    # contexts(j) -> DayContext of the day j days after the day being priced (j = 0 is that day)
    contexts: Callable[[int], DayContext]
    days_left: np.ndarray  # days still to price, this one included
    gmv_tier1: np.ndarray
    roi_target: np.ndarray

    def take(self, index: np.ndarray) -> TrueView:
        parent = self.contexts
        return TrueView(
            params=self.params.take(index), state=self.state.take(index),
            contexts=lambda j: DayContext(*(getattr(parent(j), f.name)[index] for f in fields(DayContext))),
            days_left=self.days_left[index], gmv_tier1=self.gmv_tier1[index], roi_target=self.roi_target[index],
        )


@dataclass(frozen=True)
class TextView:
    """Text of the SKUs in an observation: rendered on demand, never needed by numeric policies."""

    descriptions: Callable[[], list[str]]
    review_digests: Callable[[], list[str]]
    # Mean lexicon score over every review so far: what a person reading the reviews concludes.
    review_sentiment: Callable[[], np.ndarray]

    def take(self, index: np.ndarray) -> TextView:
        parent = self
        return TextView(
            descriptions=lambda: [parent.descriptions()[i] for i in index],
            review_digests=lambda: [parent.review_digests()[i] for i in index],
            review_sentiment=lambda: parent.review_sentiment()[index],
        )


@dataclass(frozen=True)
class Observation:
    frame: pd.DataFrame  # schema features, one row per SKU, plus sku_id
    day_key: np.ndarray  # absolute day number of the day priced (keys policies' own randomness)
    seed: int
    text: TextView | None = None
    truth: TrueView | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def sku_id(self) -> np.ndarray:
        return self.frame["sku_id"].to_numpy()

    @property
    def prev_discount(self) -> np.ndarray:
        return self.frame["prev_discount"].to_numpy(dtype=np.float64)

    def column(self, name: str) -> np.ndarray:
        return self.frame[name].to_numpy(dtype=np.float64)

    def take(self, index: np.ndarray) -> Observation:
        index = np.asarray(index)
        return Observation(
            frame=self.frame.iloc[index].reset_index(drop=True),
            day_key=self.day_key[index],
            seed=self.seed,
            text=self.text.take(index) if self.text is not None else None,
            truth=self.truth.take(index) if self.truth is not None else None,
        )

    def with_text_columns(self) -> pd.DataFrame:
        """The frame with the text features added (for prompt building)."""
        if self.text is None:
            raise ValueError("this observation carries no text")
        frame = self.frame.copy()
        frame["description"] = self.text.descriptions()
        frame["review_digest"] = self.text.review_digests()
        return frame


@runtime_checkable
class Policy(Protocol):
    """A pricing policy over a batch: proposed discount changes, one per row of the observation.

    The simulator projects every proposal onto A_safe before it takes effect and counts projections, so a
    policy that leaves A_safe is visible in the results; every built-in policy stays inside it.
    """

    name: str
    requires_text: bool
    requires_truth: bool

    def act(self, obs: Observation) -> np.ndarray: ...
