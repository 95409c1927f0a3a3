"""Monte-Carlo branches from logged states: the ground truth of "what would action a have been worth here".

A logged decision (SKU i at age t) is reproduced exactly by replaying the market with its logging
policies (the simulator is deterministic given the seed). From that true state every candidate first
action is applied, the rest of the horizon is priced by a continuation policy, and the future is drawn R
times with fresh seeds. The result is each branch's daily GMV and spend, from which any reward or
business metric can be computed by the caller (the value model applies its own reward function).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from aigp.market.observation import Policy
from aigp.market.simulator import Cohort, Market, dispatch


@dataclass(frozen=True)
class BranchOutcomes:
    """Outcomes of every (SKU, candidate, rollout) branch from the day priced to the end of the horizon.

    Arrays are shaped (n, K, R, days), day 0 being the branched day and ``days = horizon - min(at_age)``; a
    SKU branched later in life has NaN in the days past the end of its horizon.
    """

    sku_index: np.ndarray  # (n,) rows of market.skus
    at_age: np.ndarray  # (n,) age of the branched decision
    first_change: np.ndarray  # (n, K) the candidate after projection onto A_safe
    gmv: np.ndarray
    spend: np.ndarray
    orders: np.ndarray

    def totals(self) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative (GMV, spend) of each branch over the rest of the horizon, (n, K, R)."""
        return np.nansum(self.gmv, axis=-1), np.nansum(self.spend, axis=-1)


def branch_outcomes(
    market: Market,
    sku_index: np.ndarray,
    at_age: np.ndarray,
    candidate_changes: np.ndarray,
    *,
    history_policies: Mapping[str, Policy],
    history_groups: np.ndarray,
    continuation: Policy,
    n_rollouts: int = 8,
    branch_seed: int = 1,
    seeds: np.ndarray | None = None,
) -> BranchOutcomes:
    """Branch each logged state with K candidate first actions and R futures.

    - ``sku_index`` (n,): rows of ``market.skus``; ``at_age`` (n,): the day of life whose decision is branched.
    - ``candidate_changes`` (n, K): proposed discount changes for that day (projected onto A_safe here).
    - ``history_policies`` / ``history_groups``: the logging policies and each market SKU's group, as passed to
      ``Market.run`` when the log was made; days before ``at_age`` are replayed with them and the market seed,
      so the branched state is exactly the logged one.
    - ``continuation``: prices the days after the branched one.
    - Rollout r of every branch draws its future with seed ``branch_seed * 1_000_003 + r`` (never the
      market's own seed, so branches are fresh futures, and the same r is shared across candidates: common
      random numbers make candidate comparisons sharper).
    """
    sku_index = np.asarray(sku_index, dtype=np.int64)
    at_age = np.asarray(at_age, dtype=np.int64)
    candidates = np.asarray(candidate_changes, dtype=np.float64)
    n, horizon = len(sku_index), market.config.horizon_days
    if candidates.ndim != 2 or candidates.shape[0] != n:
        raise ValueError(f"candidate_changes must be (n, K) with n={n}, got {candidates.shape}")
    if at_age.shape != (n,) or (at_age < 0).any() or (at_age >= horizon).any():
        raise ValueError(f"at_age must be (n,) in [0, {horizon}), got {at_age.min()}..{at_age.max()}")
    if n_rollouts < 1:
        raise ValueError(f"n_rollouts={n_rollouts} must be >= 1")
    history_groups = np.asarray(history_groups, dtype=object)
    k = candidates.shape[1]
    days = horizon - int(at_age.min()) if n else 0
    shape = (n, k, n_rollouts, days)
    gmv, spend, orders = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    first = np.zeros((n, k))
    if seeds is None:
        seeds = branch_seed * 1_000_003 + np.arange(n_rollouts)
    seeds = np.asarray(seeds, dtype=np.int64)
    if seeds.shape != (n_rollouts,):
        raise ValueError(f"seeds must have n_rollouts={n_rollouts} entries, got {seeds.shape}")

    for age in np.unique(at_age):
        rows = np.flatnonzero(at_age == age)
        cohort = Cohort(market, sku_index[rows])
        groups = history_groups[sku_index[rows]]
        members = {g: (history_policies[g], np.flatnonzero(groups == g)) for g in np.unique(groups)}
        needs_text = any(p.requires_text for p, _ in members.values())
        needs_truth = any(p.requires_truth for p, _ in members.values())
        for _ in range(int(age)):
            obs = cohort.observe(text=needs_text, truth=needs_truth)
            cohort.advance(dispatch(obs, members), market.config.seed)

        branches = cohort.repeat(k * n_rollouts)  # order: SKU, then candidate, then rollout
        branch_seeds = np.tile(seeds, len(rows) * k)
        proposal = np.repeat(candidates[rows], n_rollouts, axis=1).reshape(-1)
        cont = {continuation.name: (continuation, np.arange(len(branches)))}
        for day in range(horizon - int(age)):
            if day > 0:
                obs = branches.observe(text=continuation.requires_text, truth=continuation.requires_truth)
                proposal = dispatch(obs, cont)
            safe, out, _ = branches.advance(proposal, branch_seeds)
            if day == 0:
                first[rows] = safe.change.reshape(len(rows), k, n_rollouts)[:, :, 0]
            for target, values in ((gmv, out.gmv), (spend, out.spend), (orders, out.orders)):
                target[rows, :, :, day] = values.reshape(len(rows), k, n_rollouts)
    return BranchOutcomes(sku_index=sku_index, at_age=at_age, first_change=first, gmv=gmv, spend=spend,
                          orders=orders)
