"""Ψ: from any model output to an action inside A_safe (paper §3.1, App. B.2).

``parse_action(output, prev_discount)`` takes the LAST JSON object of the output that carries an action
field, validates it and projects it onto A_safe with :func:`aigp.action.project_to_safe`. It survives prose
around the JSON, code fences, several JSON objects (the last wins), numbers written as strings or
percentages, a missing field (``new_discount`` is derived from ``discount_change`` and the reverse),
NaN / inf, and empty or hostile output. When nothing usable is found the result is a flagged fallback
that holds yesterday's discount (change 0), which is always inside A_safe.

Whatever the input, the returned ``discount_change`` / ``new_discount`` satisfy A_safe and
``new_discount == prev_discount + discount_change``; the property tests check this on arbitrary text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aigp.action import TOLERANCE, project_to_safe, validate_discount

CHANGE_KEYS = ("discount_change", "change", "delta", "discount_delta", "action")
DISCOUNT_KEYS = ("new_discount", "discount", "new_discount_rate", "target_discount")
ACTION_KEYS = frozenset(CHANGE_KEYS + DISCOUNT_KEYS)
# Both fields given but disagreeing by more than this (rounding to 2 decimals allows 0.005) is recorded.
CONSISTENCY_TOLERANCE = 0.006
# Values outside these ranges are not an action at all (garbage), not merely outside A_safe.
PLAUSIBLE_CHANGE = (-1.0, 1.0)
PLAUSIBLE_DISCOUNT = (0.0, 1.5)
MAX_SCAN_CHARS = 200_000  # outputs longer than this are read from their end (where the action is)

REASONS = ("ok", "projected", "empty", "no_json", "invalid_fields")


@dataclass(frozen=True)
class ParsedAction:
    """Ψ's result for one output."""

    discount_change: float  # the action that leaves the process (inside A_safe)
    new_discount: float  # prev_discount + discount_change, in [0.5, 1.0]
    proposed_change: float | None  # the model's proposal before projection (None if there was none)
    projected: bool  # the proposal lay outside A_safe and was moved to the nearest feasible point
    fallback: bool  # nothing usable: hold yesterday's discount
    consistent: bool  # discount_change and new_discount agreed (or only one was given)
    reason: str  # one of REASONS
    json_objects: int  # JSON objects with an action field found in the output

    @property
    def in_safe(self) -> bool:
        """The model's own action was usable and already inside A_safe."""
        return not self.fallback and not self.projected

    def as_dict(self) -> dict[str, object]:
        return {"discount_change": self.discount_change, "new_discount": self.new_discount,
                "proposed_change": self.proposed_change, "projected": self.projected, "fallback": self.fallback,
                "consistent": self.consistent, "reason": self.reason, "json_objects": self.json_objects}


MAX_DECODE_ATTEMPTS = 256  # opening braces tried, counted from the end of the output


def json_objects(text: str, max_attempts: int = MAX_DECODE_ATTEMPTS) -> list[tuple[int, int, dict]]:
    """JSON objects in ``text`` (nested ones too) as (start, end, object), ordered by end then start.

    Only the last ``max_attempts`` opening braces are tried, so hostile output cannot make this quadratic.
    """
    decoder = json.JSONDecoder()
    starts = [m.start() for m in re.finditer(r"\{", text)][-max_attempts:]
    found: list[tuple[int, int, dict]] = []
    for start in starts:
        try:
            obj, end = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError, ValueError):
            continue
        if isinstance(obj, dict):
            found.append((start, end, obj))
    found.sort(key=lambda item: (item[1], item[0]))
    return found


def has_action_field(obj: dict) -> bool:
    """The object carries a discount_change / new_discount (or alias) with a scalar value."""
    return any(_norm(k) in ACTION_KEYS and isinstance(v, int | float | str) and not isinstance(v, bool)
               for k, v in obj.items())


def last_json_object(text: str | None, *, action: bool = True) -> tuple[dict | None, int]:
    """The last JSON object of ``text`` (with an action field when ``action``), and how many qualified.

    "Last" is by where an object ends; of objects ending at the same place (one nested at the very end of
    another) the outer one is taken.
    """
    if not text:
        return None, 0
    if len(text) > MAX_SCAN_CHARS:
        text = text[-MAX_SCAN_CHARS:]
    candidates = [(start, end, obj) for start, end, obj in json_objects(text) if not action or has_action_field(obj)]
    if not candidates:
        return None, 0
    last_end = max(end for _, end, _ in candidates)
    outer = min((c for c in candidates if c[1] == last_end), key=lambda c: c[0])
    return outer[2], len(candidates)


def _norm(key: object) -> str:
    return str(key).strip().lower()


def to_number(value: object) -> float | None:
    """A finite number from a JSON value: numbers, numeric strings, percentages ("-5%" -> -0.05)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(",", ".") if value.count(",") == 1 and "." not in value else value.strip()
        percent = text.endswith("%")
        text = text.rstrip("%").strip()
        if text.startswith("+"):
            text = text[1:]
        try:
            number = float(text)
        except ValueError:
            return None
        if percent:
            number /= 100.0
    else:
        return None
    return number if math.isfinite(number) else None


def _field(obj: dict, names: Sequence[str], plausible: tuple[float, float]) -> float | None:
    lowered = {_norm(k): v for k, v in obj.items()}
    for name in names:
        if name in lowered:
            number = to_number(lowered[name])
            if number is not None and plausible[0] <= number <= plausible[1]:
                return number
    return None


def parse_action(output: str | None, prev_discount: float) -> ParsedAction:
    """Ψ for one output (see the module docstring). ``prev_discount`` must be a valid discount in effect."""
    prev = float(validate_discount(prev_discount))
    if output is None or not str(output).strip():
        return _fallback(prev, "empty", 0)
    obj, count = last_json_object(str(output))
    if obj is None:
        return _fallback(prev, "no_json", 0)
    change = _field(obj, CHANGE_KEYS, PLAUSIBLE_CHANGE)
    discount = _field(obj, DISCOUNT_KEYS, PLAUSIBLE_DISCOUNT)
    consistent = True
    if change is None and discount is None:
        return _fallback(prev, "invalid_fields", count)
    if change is None:
        assert discount is not None
        change = discount - prev
    elif discount is not None and abs(prev + change - discount) > CONSISTENCY_TOLERANCE:
        consistent = False  # the action is the change (paper: a_t = d_t - d_{t-1}); the mismatch is recorded
    safe = project_to_safe(prev, change)
    projected = bool(safe.projected)
    return ParsedAction(
        discount_change=float(safe.change), new_discount=float(safe.discount), proposed_change=float(change),
        projected=projected, fallback=False, consistent=consistent, reason="projected" if projected else "ok",
        json_objects=count,
    )


def _fallback(prev: float, reason: str, count: int) -> ParsedAction:
    return ParsedAction(discount_change=0.0, new_discount=prev, proposed_change=None, projected=False,
                        fallback=True, consistent=False, reason=reason, json_objects=count)


@dataclass(frozen=True)
class ParsedBatch:
    """Ψ over a batch, as arrays (what a policy returns) plus the per-row results."""

    change: np.ndarray
    discount: np.ndarray
    projected: np.ndarray
    fallback: np.ndarray
    results: tuple[ParsedAction, ...]

    def counts(self) -> dict[str, int]:
        reasons = [r.reason for r in self.results]
        return {reason: reasons.count(reason) for reason in REASONS}


def parse_actions(outputs: Sequence[str | None], prev_discounts: Sequence[float] | np.ndarray) -> ParsedBatch:
    prev = np.asarray(prev_discounts, dtype=np.float64)
    if len(outputs) != len(prev):
        raise ValueError(f"{len(outputs)} outputs for {len(prev)} prev_discount values")
    results = tuple(parse_action(o, float(p)) for o, p in zip(outputs, prev, strict=True))
    return ParsedBatch(
        change=np.array([r.discount_change for r in results], dtype=np.float64),
        discount=np.array([r.new_discount for r in results], dtype=np.float64),
        projected=np.array([r.projected for r in results], dtype=bool),
        fallback=np.array([r.fallback for r in results], dtype=bool),
        results=results,
    )


def is_consistent_action(change: float, discount: float, prev_discount: float) -> bool:
    """The JSON's two fields agree with each other and with the discount in effect."""
    return abs(prev_discount + change - discount) <= CONSISTENCY_TOLERANCE + TOLERANCE
