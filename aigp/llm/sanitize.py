"""Untrusted text (customer reviews, merchant descriptions) made safe to place inside a prompt.

Reviews and descriptions are written by people we do not control. Before they reach a prompt they are
normalised (NFKC, so full-width look-alikes of special tokens become plain ASCII and are caught), stripped
of control and format characters (bidi overrides, zero-width joiners, NUL...), of chat-template and
special tokens of the common model families (``<|im_start|>``, ``[INST]``, ``<<SYS>>``, ``</s>``, our own
``[ACT_ONLY]`` control token) and of our own prompt structure (``<untrusted>`` delimiters, ``###``
headings); braces become parentheses so that no review carries a ready-made JSON action a model could
copy; and the result is capped in length. It is then placed between ``<untrusted source=...>``
delimiters that the system prompt declares to be data, never instructions.

None of this makes injection impossible; it makes it unlikely to work and cheap to audit. The last line of
defence is structural: whatever a model writes, the action parser projects it onto A_safe
(``aigp.action.project_to_safe``), so the worst a successful injection can do is move a price within the
safe set. ``docs/prompt_injection.md`` records the stance.
"""

from __future__ import annotations

import math
import re
import unicodedata

ACT_ONLY_TOKEN = "[ACT_ONLY]"
UNTRUSTED_OPEN = "<untrusted source=\"{source}\">"
UNTRUSTED_CLOSE = "</untrusted>"

DEFAULT_MAX_CHARS = 600
DEFAULT_MAX_LINES = 8
TRUNCATION_MARK = " [truncated]"

# Special / chat-template tokens of the usual model families, matched case-insensitively.
_SPECIAL_TOKENS = re.compile(
    r"<\|[^<>|\n]{0,64}\|>"  # ChatML / Qwen / Llama-3 / GPT: <|im_start|>, <|eot_id|>, <|endoftext|>
    r"|<\s*/?\s*(?:s|bos|eos|pad|unk|sys|system|user|assistant|untrusted)\b[^<>\n]{0,64}>"  # <s>, </s>, <untrusted ..>
    r"|<<\s*/?\s*SYS\s*>>"  # Llama-2 system block
    r"|\[\s*/?\s*INST\s*\]"  # Llama-2 / Mistral instruction block
    r"|\[\s*/?\s*ACT_ONLY\s*\]"  # our decision-only control token
    r"|<start_of_turn>|<end_of_turn>"  # Gemma
    r"|</?think>",  # reasoning-model scratchpad tags
    re.IGNORECASE,
)
_HEADING = re.compile(r"^\s*#+\s*", re.MULTILINE)
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def _is_stripped_char(ch: str) -> bool:
    if ch == "\n":
        return False
    category = unicodedata.category(ch)
    # Cc control, Cf format (bidi, zero-width), Cs surrogates, Co private use, Cn unassigned.
    return category.startswith("C")


def clean_untrusted(text: object, *, max_chars: int = DEFAULT_MAX_CHARS, max_lines: int = DEFAULT_MAX_LINES) -> str:
    """Sanitise one piece of user or merchant text for a prompt (see the module docstring).

    ``None``, NaN and non-strings become an empty string; the result never exceeds ``max_chars``
    characters (plus the truncation mark) or ``max_lines`` lines.
    """
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    value = unicodedata.normalize("NFKC", str(text))
    value = value.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    if not value.replace("\n", "").isprintable():  # the per-character filter only when needed
        value = "".join(" " if _is_stripped_char(ch) else ch for ch in value)
    # Removing one token can join the halves of another (``<|im_<|x|>start|>``): repeat to a fixed point.
    previous = None
    while previous != value:
        previous = value
        value = _SPECIAL_TOKENS.sub(" ", value)
    value = _HEADING.sub("", value)
    value = value.replace("{", "(").replace("}", ")").replace("```", "'''")
    value = _SPACES.sub(" ", value)
    value = _BLANK_LINES.sub("\n", value)
    lines = [line.strip() for line in value.split("\n") if line.strip()]
    truncated = len(lines) > max_lines
    value = "\n".join(lines[:max_lines])
    if len(value) > max_chars:
        value = value[:max_chars].rstrip()
        truncated = True
    return value + TRUNCATION_MARK if truncated and value else value


def delimit(source: str, text: str) -> str:
    """Wrap sanitised text in the delimiters the system prompt declares to be data."""
    if not re.fullmatch(r"[a-z_]+", source):
        raise ValueError(f"source={source!r}: expected a lower-case name such as 'reviews'")
    return f"{UNTRUSTED_OPEN.format(source=source)}\n{text if text else '(none)'}\n{UNTRUSTED_CLOSE}"


def contains_special_tokens(text: str) -> bool:
    """True if ``text`` still holds anything :func:`clean_untrusted` removes (used by tests and audits)."""
    normalised = unicodedata.normalize("NFKC", text)
    return bool(_SPECIAL_TOKENS.search(normalised)) or any(_is_stripped_char(ch) for ch in normalised)
