"""Preference pairs ranked by the LTVE (paper §3.4): (a+, a-) with Q(a+) - Q(a-) >= ΔQ and |a+ - a-| >= Δa.

All kept candidates of all prompts are scored in ONE batched call (``LTVEModel.q_values`` on an (N, K) matrix,
padded per prompt with a copy of the prompt's first candidate and ignored). Per prompt every ordered pair that
clears both thresholds is eligible; pairs below either threshold are ambiguous and dropped (a tiny Q gap is
critic noise, a tiny action gap teaches nothing). The eligible pairs are taken largest Q gap first, each
candidate at most once as the rejected side, up to ``max_pairs_per_prompt``.

``balance_direction`` keeps as many pairs whose chosen action is the higher price as pairs whose chosen action
is the lower one (all of the rarer direction, the largest Q gaps of the other). A student that reads its
prompt only weakly can lower DPO's loss on an unbalanced set by moving every answer the majority's way; on a
balanced set only the state-dependent part of the preference pays. Measured (docs/alignment.md, "Did DPO learn
its pairs?"): balancing shrinks the CPU student's move but the student still learns one direction only, so it is
off by default.

``balance_sign`` balances only the pairs whose chosen and rejected changes have opposite signs. Their canonical
answers first differ at the minus sign, so DPO's gradient on them lands on one token, the same in every state:
the majority's sign wins everywhere (measured in the evaluation: 100 such pairs chose the non-negative change,
57 the negative one, and DPO cut the student's negative answers on the pairs' prompts from 49% to 12%). With as
many of each, that token's average push cancels; pairs whose answers share a sign are kept whole. On by default:
in the evaluation it turned DPO's 14-day GMV from -10.2% to -2.0% vs price-sales (SFT-only +2.1%), MAR from -15.6%
to -5.5%, and the student moved toward the chosen action in both directions (docs/alignment.md).

A pair becomes a TRL conversational preference record: the ``[ACT_ONLY]`` prompt and two one-message
completions holding the canonical JSON action (``{"discount_change": a, "new_discount": d}``), so DPO's loss
covers exactly the action tokens.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import Field

from aigp.config import StrictConfig
from aigp.distillation.teacher import format_discount
from aigp.io import write_json, write_parquet

PAIRS_FILE = "pairs.jsonl"
PAIRS_TABLE = "pairs.parquet"
MANIFEST_FILE = "manifest.json"


class PairsConfig(StrictConfig):
    delta_q: float = Field(0.05, ge=0.0, description="ΔQ: minimum Q(a+) - Q(a-)")
    delta_a: float = Field(0.02, ge=0.0, description="Δa: minimum |a+ - a-|")
    max_pairs_per_prompt: int = Field(2, ge=1, le=32)
    balance_direction: bool = Field(
        False, description="keep as many pairs preferring the higher price as the lower (largest Q gaps first): "
        "only the state-dependent part of the critic's preference is distilled, not its average direction")
    balance_sign: bool = Field(
        True, description="among pairs whose chosen and rejected changes have opposite signs (their answers differ "
        "first at the minus sign), keep as many choosing the non-negative change as the negative one (largest Q "
        "gaps first); pairs whose answers share a sign are kept whole")
    completion: Literal["action", "sample"] = Field(
        "action", description="action: the canonical JSON action (the method, [ACT_ONLY]); sample: the sampled "
        "text itself (FullSeq: full reasoning + action)")


@dataclass(frozen=True)
class PairSet:
    pairs: pd.DataFrame  # prompt_id, chosen/rejected change + discount, q_chosen, q_rejected, q_gap
    records: list[dict[str, Any]]  # TRL prompt/chosen/rejected records
    metrics: dict[str, float]


def action_text(change: float, prev_discount: float) -> str:
    """The canonical [ACT_ONLY] answer for a discount change (the teacher's act-only format)."""
    return f'{{"discount_change": {change:.2f}, "new_discount": {format_discount(prev_discount + change)}}}'


def candidate_matrix(candidates: pd.DataFrame, n_prompts: int) -> tuple[np.ndarray, np.ndarray]:
    """(changes (N, K), valid mask (N, K)) of the kept candidates of prompts 0..N-1, padded with the first."""
    kept = candidates[candidates["kept"]]
    groups = {pid: g["change"].to_numpy(np.float64) for pid, g in kept.groupby("prompt_id")}
    width = max([len(v) for v in groups.values()] + [1])
    changes = np.zeros((n_prompts, width))
    valid = np.zeros((n_prompts, width), dtype=bool)
    for pid, values in groups.items():
        changes[pid, :len(values)] = values
        changes[pid, len(values):] = values[0]
        valid[pid, :len(values)] = True
    return changes, valid


def candidate_texts(candidates: pd.DataFrame, shape: tuple[int, int]) -> list[list[str]]:
    """The sampled texts in the column order of :func:`candidate_matrix`."""
    kept = candidates[candidates["kept"]]
    texts: list[list[str]] = [[] for _ in range(shape[0])]
    for pid, g in kept.groupby("prompt_id"):
        texts[int(pid)] = g["text"].astype(str).tolist()
    return texts


def select_pairs(changes: np.ndarray, q: np.ndarray, valid: np.ndarray, config: PairsConfig) -> list[tuple]:
    """(prompt, chosen index, rejected index) triples obeying both thresholds, then balanced as configured (see
    the module docstring)."""
    return balance(threshold_pairs(changes, q, valid, config), changes, q, config)


def threshold_pairs(changes: np.ndarray, q: np.ndarray, valid: np.ndarray, config: PairsConfig) -> list[tuple]:
    """The triples obeying both thresholds, largest Q gap first per prompt, before any balancing."""
    out = []
    for pid in range(changes.shape[0]):
        idx = [int(k) for k in np.flatnonzero(valid[pid])]
        eligible: list[tuple[float, int, int]] = []
        for i in idx:
            for j in idx:
                gap = q[pid, i] - q[pid, j]
                if gap >= config.delta_q and abs(changes[pid, i] - changes[pid, j]) >= config.delta_a and gap > 0:
                    eligible.append((float(gap), i, j))
        eligible.sort(key=lambda t: (-t[0], t[1], t[2]))
        used_rejected: set[int] = set()
        taken = 0
        for _, chosen, rejected in eligible:
            if taken >= config.max_pairs_per_prompt:
                break
            if rejected in used_rejected:
                continue
            used_rejected.add(rejected)
            out.append((pid, chosen, rejected))
            taken += 1
    return out


def balance(triples: list[tuple], changes: np.ndarray, q: np.ndarray, config: PairsConfig) -> list[tuple]:
    """``balance_direction`` then ``balance_sign`` on selected triples."""
    if config.balance_direction:
        triples = balance_directions(triples, changes, q)
    if config.balance_sign:
        triples = balance_directions(triples, changes, q, among=lambda t: bool(crosses_zero(changes[t[0], t[1]],
                                                                                            changes[t[0], t[2]])))
    return triples


def crosses_zero(chosen: npt.ArrayLike, rejected: npt.ArrayLike) -> np.ndarray:
    """Element-wise: one change negative and the other not (their canonical answers first differ at the minus
    sign)."""
    return np.not_equal(np.asarray(chosen) >= 0, np.asarray(rejected) >= 0)


def balance_directions(triples: list[tuple], changes: np.ndarray, q: np.ndarray,
                       among: Callable[[tuple], bool] | None = None) -> list[tuple]:
    """Equal numbers of pairs preferring the higher and the lower action: all of the rarer direction and the
    largest Q gaps of the other, in the input order. With ``among``, only the triples it accepts are balanced
    and the others kept."""
    pool = [t for t in triples if among is None or among(t)]
    up = [t for t in pool if changes[t[0], t[1]] > changes[t[0], t[2]]]
    down = [t for t in pool if changes[t[0], t[1]] < changes[t[0], t[2]]]
    major, minor = (up, down) if len(up) >= len(down) else (down, up)
    dropped = set(sorted(major, key=lambda t: (-(q[t[0], t[1]] - q[t[0], t[2]]), t))[len(minor):])
    dropped |= set(pool) - set(up) - set(down)  # equal actions: neither direction (Δa > 0 rules them out)
    return [t for t in triples if t not in dropped]


def build_pairs(rows: pd.DataFrame, candidates: pd.DataFrame, ltve: Any, config: PairsConfig | None = None
                ) -> PairSet:
    """Score the candidates with the LTVE and select pairs; ``rows`` are the state rows with prompt_id and
    prompt_messages (``aigp.align.sampling``)."""
    cfg = config or PairsConfig()
    rows = rows.sort_values("prompt_id").reset_index(drop=True)
    if not np.array_equal(rows["prompt_id"].to_numpy(), np.arange(len(rows))):
        raise ValueError("rows.prompt_id must be 0..N-1 (as sample_candidates writes it)")
    changes, valid = candidate_matrix(candidates, len(rows))
    q = ltve.q_values(rows, changes.astype(np.float32))  # one batched call for every (state, candidate)
    whole = threshold_pairs(changes, q, valid, cfg)
    triples = balance(whole, changes, q, cfg)
    prev = rows["prev_discount"].to_numpy(np.float64)
    table = pd.DataFrame([{
        "prompt_id": pid, "sku_id": rows.at[pid, "sku_id"] if "sku_id" in rows else pid,
        "prev_discount": prev[pid], "chosen_change": changes[pid, i], "rejected_change": changes[pid, j],
        "q_chosen": q[pid, i], "q_rejected": q[pid, j], "q_gap": q[pid, i] - q[pid, j],
    } for pid, i, j in triples], columns=["prompt_id", "sku_id", "prev_discount", "chosen_change", "rejected_change",
                                         "q_chosen", "q_rejected", "q_gap"])
    messages = rows["prompt_messages"].map(json.loads)
    texts = candidate_texts(candidates, changes.shape)

    def answer(pid: int, k: int, change: float) -> str:
        return texts[pid][k] if cfg.completion == "sample" else action_text(change, prev[pid])

    records = [{"prompt": messages[pid],
                "chosen": [{"role": "assistant", "content": answer(pid, i, changes[pid, i])}],
                "rejected": [{"role": "assistant", "content": answer(pid, j, changes[pid, j])}]}
               for pid, i, j in triples]
    metrics = pair_metrics(table, q, valid, cfg)
    if cfg.balance_direction or cfg.balance_sign:  # what balancing cost (all of it when one side is missing)
        metrics["pairs/dropped_by_balancing"] = float(len(whole) - len(triples))
    return PairSet(table, records, metrics)


def pair_metrics(table: pd.DataFrame, q: np.ndarray, valid: np.ndarray, cfg: PairsConfig) -> dict[str, float]:
    n_prompts = q.shape[0]
    spread = np.array([q[i, valid[i]].max() - q[i, valid[i]].min() if valid[i].sum() >= 2 else 0.0
                       for i in range(n_prompts)])
    gaps = table["q_gap"].to_numpy() if len(table) else np.zeros(0)
    out = {"pairs/prompts": float(n_prompts), "pairs/pairs": float(len(table)),
           "pairs/per_prompt": float(len(table) / max(n_prompts, 1)),
           "pairs/prompts_with_pair": float(table["prompt_id"].nunique() / max(n_prompts, 1)) if len(table) else 0.0,
           "pairs/candidate_q_spread_mean": float(spread.mean()) if n_prompts else 0.0,
           "pairs/delta_q": cfg.delta_q, "pairs/delta_a": cfg.delta_a,
           "pairs/balance_direction": float(cfg.balance_direction), "pairs/balance_sign": float(cfg.balance_sign)}
    if len(gaps):
        for p in (10, 50, 90):
            out[f"pairs/q_gap_p{p}"] = float(np.percentile(gaps, p))
        out["pairs/action_gap_mean"] = float(np.abs(table["chosen_change"] - table["rejected_change"]).mean())
        out["pairs/chosen_change_mean"] = float(table["chosen_change"].mean())
        out["pairs/chosen_higher_share"] = float((table["chosen_change"] > table["rejected_change"]).mean())
        chosen, rejected = table["chosen_change"].to_numpy(), table["rejected_change"].to_numpy()
        crossing = crosses_zero(chosen, rejected)
        out["pairs/crossing_zero_share"] = float(crossing.mean())
        if crossing.any():  # of those, the share whose chosen answer has no minus sign
            out["pairs/crossing_chosen_nonnegative_share"] = float((chosen[crossing] >= 0).mean())
        out["pairs/rejected_change_mean"] = float(table["rejected_change"].mean())
    return out


def write_pairs(out_dir: str | Path, result: PairSet, *, config: PairsConfig) -> Path:
    from aigp.io import write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / PAIRS_TABLE, result.pairs)
    write_text(out / PAIRS_FILE, "".join(json.dumps(r) + "\n" for r in result.records))
    write_json(out / MANIFEST_FILE, {"config": config.model_dump(mode="json"), "metrics": result.metrics})
    return out


def read_pair_records(path: str | Path) -> list[dict[str, Any]]:
    root = Path(path)
    file = root / PAIRS_FILE if root.is_dir() else root
    if not file.is_file():
        raise FileNotFoundError(f"{root}: no {PAIRS_FILE}; run `aigp train pairs`")
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def q_gap_histogram(gaps: Sequence[float], bins: Sequence[float]) -> list[tuple[str, int]]:
    counts, edges = np.histogram(np.asarray(gaps, dtype=float), bins=np.asarray(bins, dtype=float))
    return [(f"[{edges[i]:.3g}, {edges[i + 1]:.3g})", int(c)) for i, c in enumerate(counts)]
