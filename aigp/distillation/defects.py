"""Reasoning defects planted into a response: the teacher's sampling errors and the judge's labelled test set.

Each defect kind edits a clean response (the reasoning lines and the JSON action) the way a sampled LLM
goes wrong, and is labelled with the judge dimension it violates (``PRIMARY``); ``unsafe_action`` violates
A_safe rather than a reasoning dimension. A function returns ``None`` when its defect does not apply to a
response (e.g. no reviews to misread), so callers can pick another kind.

The built-in teacher samples from :data:`TEACHER_DEFECTS`; the judge's planted-defect set
(``aigp.distillation.judge.planted_defect_set``) uses every kind, including ones the teacher never makes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from aigp.llm.diagnosis import SIGNAL_DECIMALS
from aigp.llm.prompt_reader import PromptFacts

DATA, COMPLETE, COHERENT, CONSISTENT, SAFE = (
    "data_accuracy", "content_completeness", "reasoning_internal_coherence", "reasoning_decision_consistency",
    "a_safe",
)

PRIMARY: dict[str, str] = {
    "digit_slip": DATA,  # a number copied from the prompt with one digit changed
    "derived_error": DATA,  # a derived signal (pace, stock cover...) computed wrong
    "unit_slip": DATA,  # a discount written in percent (85 instead of 0.85)
    "review_misread": DATA,  # reviews read with the opposite sentiment
    "hallucinated_kb": DATA,  # a knowledge-base entry cited that the prompt does not contain
    "dropped_factor": COMPLETE,  # one factor of the analysis skipped
    "no_kb_use": COMPLETE,  # the knowledge base not applied
    "truncated": COMPLETE,  # the response stops half way (no decision, no JSON)
    "flipped_comparison": COHERENT,  # "above" where the numbers say "below"
    "arithmetic_error": COHERENT,  # the target does not follow from the stated base and adjustments
    "direction_word": COHERENT,  # says "raise the price" and cuts it
    "json_mismatch": CONSISTENT,  # the JSON action differs from the concluded one
    "json_inconsistent_fields": CONSISTENT,  # new_discount != prev_discount + discount_change
    "trailing_json": CONSISTENT,  # a second, different JSON action after the first
    "missing_json": CONSISTENT,  # no JSON action at all
    "unsafe_action": SAFE,  # concludes and emits an action outside A_safe
}
TEACHER_DEFECTS = ("digit_slip", "derived_error", "dropped_factor", "flipped_comparison", "arithmetic_error",
                   "json_mismatch", "trailing_json")
KINDS = tuple(PRIMARY)

CITATION = re.compile(r"(?<![a-z0-9_])([a-z][a-z0-9_]*) = (-?\d+(?:\.\d+)?)")
_JSON_LINE = re.compile(r"\{[^{}]*\"discount_change\"[^{}]*\}\s*$")
_FACTOR_LINE = re.compile(r"^(\d+)\. ([A-Z][A-Za-z ]+): ", re.MULTILINE)


def _split(text: str) -> tuple[str, str]:
    """(reasoning, json line) of a response whose last line is the JSON action ('' if none)."""
    match = _JSON_LINE.search(text)
    if not match:
        return text, ""
    return text[:match.start()].rstrip("\n"), match.group(0).strip()


def _join(reasoning: str, action: str) -> str:
    return reasoning + ("\n" + action if action else "")


def _replace_span(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def _decimals(value: str) -> int:
    return len(value.split(".")[1]) if "." in value else 0


def digit_slip(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    cands = [m for m in CITATION.finditer(reasoning)
             if m.group(1) in facts.numbers and sum(ch.isdigit() for ch in m.group(2)) >= 2]
    if not cands:
        return None
    m = cands[int(rng.integers(len(cands)))]
    value = m.group(2)
    digits = [i for i, ch in enumerate(value) if ch.isdigit()]
    pos = digits[int(rng.integers(len(digits)))]
    new_digit = str((int(value[pos]) + int(rng.integers(1, 9))) % 10)
    slipped = value[:pos] + new_digit + value[pos + 1:]
    return _join(_replace_span(reasoning, m.start(2), m.end(2), slipped), action)


def derived_error(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    cands = [m for m in CITATION.finditer(reasoning)
             if m.group(1) in SIGNAL_DECIMALS and m.group(1) != "days_left" and abs(float(m.group(2))) > 0.05]
    if not cands:
        return None
    m = cands[int(rng.integers(len(cands)))]
    wrong = float(m.group(2)) * float(rng.uniform(1.3, 1.8))
    return _join(_replace_span(reasoning, m.start(2), m.end(2), f"{wrong:.{_decimals(m.group(2))}f}"), action)


def unit_slip(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    m = re.search(r"prev_discount = (\d\.\d+)", reasoning)
    if not m:
        return None
    percent = f"{float(m.group(1)) * 100:.0f}"
    return _join(_replace_span(reasoning, m.start(1), m.end(1), percent), action)


def review_misread(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    m = re.search(r"review_score = (-?\d+\.\d+) \((positive|negative|mixed)\)", reasoning)
    if not m:
        return None
    score = float(m.group(1))
    flipped = -score if abs(score) >= 0.5 else (1.5 if score <= 0 else -1.5)
    label = "positive" if flipped >= 1.0 else ("negative" if flipped <= -0.5 else "mixed")
    return _join(_replace_span(reasoning, m.start(), m.end(), f"review_score = {flipped:.2f} ({label})"), action)


def hallucinated_kb(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    m = re.search(r"\[kb:([a-z0-9_-]+)\]", reasoning)
    if not m:
        return None
    return _join(_replace_span(reasoning, m.start(1), m.end(1), "rule-price-matching-guarantee"), action)


def _factor_lines(reasoning: str) -> list[tuple[int, int, str]]:
    """(start, end, title) of each numbered line."""
    lines = []
    for m in _FACTOR_LINE.finditer(reasoning):
        end = reasoning.find("\n", m.start())
        lines.append((m.start(), len(reasoning) if end < 0 else end, m.group(2)))
    return lines


def _renumber(reasoning: str) -> str:
    counter = iter(range(1, 100))
    return _FACTOR_LINE.sub(lambda m: f"{next(counter)}. {m.group(2)}: ", reasoning)


def dropped_factor(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    lines = [line for line in _factor_lines(reasoning) if line[2] != "Decision"]
    if not lines:
        return None
    start, end, _ = lines[int(rng.integers(len(lines)))]
    cut = reasoning[:start] + reasoning[end + 1:] if end < len(reasoning) else reasoning[:start].rstrip("\n")
    return _join(_renumber(cut), action)


def no_kb_use(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    m = re.search(r"^(\d+)\. Knowledge base: .*$", reasoning, re.MULTILINE)
    if not m:
        return None
    return _join(_replace_span(reasoning, m.start(), m.end(), f"{m.group(1)}. Knowledge base: nothing specific "
                                                              "applies to this product."), action)


def truncated(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, _ = _split(text)
    lines = _factor_lines(reasoning)
    if len(lines) < 4:
        return None
    start = lines[int(rng.integers(2, len(lines) - 1))][0]
    cut = start + int(rng.integers(5, 30))
    return reasoning[:cut]


def flipped_comparison(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    cands = list(re.finditer(r"(?<= )(above|below)(?= [a-z][a-z0-9_]* = )", reasoning))
    if not cands:
        return None
    m = cands[int(rng.integers(len(cands)))]
    return _join(_replace_span(reasoning, m.start(), m.end(), "below" if m.group(1) == "above" else "above"), action)


def arithmetic_error(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    m = re.search(r"target_discount = (\d\.\d+)", reasoning)
    if not m:
        return None
    value = float(m.group(1))
    delta = float(rng.choice([-1, 1])) * float(rng.uniform(0.03, 0.08))
    wrong = min(max(value + delta, 0.5), 1.0)
    if abs(wrong - value) < 0.02:
        wrong = value - 0.04 if value > 0.6 else value + 0.04
    return _join(_replace_span(reasoning, m.start(1), m.end(1), f"{wrong:.2f}"), action)


_DIRECTIONS = {"deepen the discount": "raise the price", "raise the price": "deepen the discount",
               "hold the price": "raise the price"}


def direction_word(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    m = re.search(r"I (deepen the discount|raise the price|hold the price)", reasoning)
    if not m:
        return None
    return _join(_replace_span(reasoning, m.start(1), m.end(1), _DIRECTIONS[m.group(1)]), action)


def _action_values(action: str) -> tuple[float, float] | None:
    m = re.search(r"\"discount_change\": (-?\d+\.\d+), \"new_discount\": (\d\.\d+)", action)
    return (float(m.group(1)), float(m.group(2))) if m else None


def _json(change: float, new: float) -> str:
    text = f"{new:.4f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f'{{"discount_change": {change:.2f}, "new_discount": {whole}.{frac.ljust(2, "0")}}}'


def _other_action(change: float, new: float, rng: np.random.Generator) -> tuple[float, float]:
    prev = new - change
    for _ in range(20):
        delta = float(rng.choice([-0.03, -0.02, -0.01, 0.01, 0.02, 0.03]))
        other = round(change + delta, 2)
        if abs(other) <= 0.2 and 0.5 <= prev + other <= 1.0:
            return other, round(prev + other, 4)
    return change, new


def json_mismatch(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    values = _action_values(action)
    if values is None:
        return None
    other = _other_action(*values, rng)
    return None if other == values else _join(reasoning, _json(*other))


def json_inconsistent_fields(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    values = _action_values(action)
    if values is None:
        return None
    change, new = values
    wrong = new + (0.03 if new <= 0.9 else -0.03)
    return _join(reasoning, _json(change, wrong))


def trailing_json(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    values = _action_values(action)
    if values is None:
        return None
    other = _other_action(*values, rng)
    if other == values:
        return None
    return _join(reasoning, action) + "\nOn second thought: " + _json(*other)


def missing_json(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    return reasoning if action else None


def unsafe_action(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    values = _action_values(action)
    m = re.search(r"discount_change = (-?\d+\.\d+)(.*?)new_discount = (\d\.\d+)", reasoning)
    if values is None or not m:
        return None
    change, new = values
    prev = new - change
    unsafe = -0.25 if prev >= 0.75 else 0.25
    unsafe_new = prev + unsafe
    reasoning = _replace_span(reasoning, m.start(), m.end(),
                              f"discount_change = {unsafe:.2f}{m.group(2)}new_discount = {unsafe_new:.2f}")
    return _join(reasoning, _json(unsafe, unsafe_new))


PLANTERS: dict[str, Callable[[str, PromptFacts, np.random.Generator], str | None]] = {
    "digit_slip": digit_slip, "derived_error": derived_error, "unit_slip": unit_slip,
    "review_misread": review_misread, "hallucinated_kb": hallucinated_kb, "dropped_factor": dropped_factor,
    "no_kb_use": no_kb_use, "truncated": truncated, "flipped_comparison": flipped_comparison,
    "arithmetic_error": arithmetic_error, "direction_word": direction_word, "json_mismatch": json_mismatch,
    "json_inconsistent_fields": json_inconsistent_fields, "trailing_json": trailing_json,
    "missing_json": missing_json, "unsafe_action": unsafe_action,
}
assert set(PLANTERS) == set(PRIMARY)


# Legitimate rewordings of a clean response: a judge must still keep them (they test false rejections).
def bullets(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    out = _FACTOR_LINE.sub(lambda m: f"- {m.group(2)}: ", text)
    return out if out != text else None


def fenced_json(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    return f"{reasoning}\n```json\n{action}\n```" if action else None


def labelled_json(text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    reasoning, action = _split(text)
    return f"{reasoning}\nFinal action: {action}" if action else None


CLEAN_VARIANTS: dict[str, Callable[[str, PromptFacts, np.random.Generator], str | None]] = {
    "bullets": bullets, "fenced_json": fenced_json, "labelled_json": labelled_json,
}


def plant(kind: str, text: str, facts: PromptFacts, rng: np.random.Generator) -> str | None:
    """``text`` with one defect of ``kind`` planted, or None when the kind does not apply to it."""
    if kind not in PLANTERS:
        raise ValueError(f"unknown defect kind {kind!r}; expected one of {list(PLANTERS)}")
    out = PLANTERS[kind](text, facts, rng)
    return None if out is None or out == text else out
