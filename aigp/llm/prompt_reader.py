"""Reading a prompt back: what a prompt built by :func:`aigp.llm.prompt.build_prompt` states.

The teacher and the rule judge read the SAME text the model reads (``parse_prompt``): printed fields and numbers,
knowledge-base lines and their facts, the diagnosis, the untrusted description and review digest, and the mode.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aigp.llm.prompt import MISSING, Prompt, printed_number
from aigp.llm.sanitize import ACT_ONLY_TOKEN, UNTRUSTED_CLOSE


@dataclass(frozen=True)
class PromptFacts:
    """What a prompt states: printed fields, knowledge-base lines and facts, untrusted text, mode."""

    fields: dict[str, str]  # name -> printed text
    numbers: dict[str, float]  # name -> value of each printed numeric field
    knowledge: dict[str, dict[str, str]]  # kb id -> facts (name -> printed value)
    knowledge_text: dict[str, str]  # kb id -> rendered text
    diagnosis: tuple[str, ...]
    description: str
    reviews: tuple[str, ...]  # review lines of the digest, newest first
    review_total: int
    act_only: bool
    version: str | None
    has_knowledge_section: bool
    has_diagnosis_section: bool

    def text(self, name: str) -> str | None:
        value = self.fields.get(name)
        return None if value is None or value == MISSING else value


_UNTRUSTED_BLOCK = re.compile(r"<untrusted source=\"([a-z_]+)\">\n(.*?)\n" + re.escape(UNTRUSTED_CLOSE), re.DOTALL)
_PAIR = re.compile(r"([a-z][a-z0-9_]*): ([^|\n]+?)(?= \| |$)", re.MULTILINE)
_KB_LINE = re.compile(r"^- \[kb:([a-z0-9_-]+)\] (.*)$", re.MULTILINE)
_KB_FACTS = re.compile(r"\(facts: ([^()]*)\)$")
_REVIEW_HEADER = re.compile(r"(\d+) most recent of (\d+) review")


def user_text(prompt: str | Sequence[Mapping[str, str]] | Prompt) -> str:
    """The user message of a prompt given as a :class:`Prompt`, chat messages or ChatML / plain text."""
    if isinstance(prompt, Prompt):
        return prompt.user
    if not isinstance(prompt, str):
        users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
        return users[-1] if users else ""
    match = re.search(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", prompt, re.DOTALL)
    return match.group(1) if match else prompt


def parse_prompt(prompt: str | Sequence[Mapping[str, str]] | Prompt) -> PromptFacts:
    """Read a prompt built by :func:`build_prompt` (tolerates trimmed sections and missing fields)."""
    text = user_text(prompt)
    untrusted = {m.group(1): m.group(2) for m in _UNTRUSTED_BLOCK.finditer(text)}
    structured = _UNTRUSTED_BLOCK.sub("", text)
    sections = _split_sections(structured)
    fields: dict[str, str] = {}
    for title in ("Product", "Day priced", "Business goals", "Pricing", "Performance", "Competitors"):
        for match in _PAIR.finditer(sections.get(title, "")):
            fields[match.group(1)] = match.group(2).strip().removesuffix(" CNY")
    perf = sections.get("Performance", "").split("\n")
    if perf and perf[0].startswith("window |"):
        columns = [c.strip() for c in perf[0].split("|")[1:]]
        for line in perf[1:]:
            cells = [c.strip() for c in line.split("|")]
            if len(cells) == len(columns) + 1 and re.fullmatch(r"\d+d", cells[0]):
                for col, value in zip(columns, cells[1:], strict=True):
                    fields[f"{col}_{cells[0]}"] = value
    numbers = {n: v for n, v in ((n, printed_number(t)) for n, t in fields.items()) if v is not None}
    knowledge, knowledge_text = {}, {}
    for match in _KB_LINE.finditer(sections.get("Knowledge base", "")):
        body = match.group(2)
        facts_match = _KB_FACTS.search(body)
        facts = {}
        if facts_match:
            for item in facts_match.group(1).split(";"):
                key, sep, value = item.partition(" = ")
                if sep:
                    facts[key.strip()] = value.strip()
        knowledge[match.group(1)] = facts
        knowledge_text[match.group(1)] = body
    diag = tuple(line[2:] for line in sections.get("Diagnosis", "").split("\n") if line.startswith("- "))
    digest = untrusted.get("reviews", "")
    review_lines = tuple(line[2:].strip() for line in digest.split("\n") if line.startswith("- "))
    header = _REVIEW_HEADER.search(digest)
    total = int(header.group(2)) if header else len(review_lines)
    version = re.match(r"\[([a-z0-9.-]+)\]", text.strip())
    description = untrusted.get("description", "")
    return PromptFacts(
        fields=fields, numbers=numbers, knowledge=knowledge, knowledge_text=knowledge_text, diagnosis=diag,
        description="" if description == "(none)" else description, reviews=review_lines, review_total=total,
        act_only=text.rstrip().endswith(ACT_ONLY_TOKEN), version=version.group(1) if version else None,
        has_knowledge_section="Knowledge base" in sections, has_diagnosis_section="Diagnosis" in sections,
    )


def _split_sections(text: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    for block in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title, _, body = block.partition("\n")
        sections[title.strip()] = body.strip("\n")
    return sections
