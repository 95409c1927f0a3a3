"""Tiny models and data for the alignment tests: a `tiny` Qwen3 base model whose tokenizer is trained on the
prompts it will see, teacher [ACT_ONLY] answers as SFT records, and a quickly trained LTVE."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from aigp.distillation.teacher import KnowledgeBaseTeacher
from aigp.llm.prompt import PromptConfig, build_prompt

# Short prompts keep the tiny model's sequences near 800 tokens (CPU test time); the alignment code does
# not depend on which sections a prompt has.
TEST_PROMPT = PromptConfig(act_only=True, include_knowledge=False, include_diagnosis=False,
                           description_max_chars=60, reviews_max_chars=60)


def tiny_base_model(root: Path, rows: pd.DataFrame) -> Path:
    from aigp.llm.model_factory import BaseModelConfig, build_base_model

    teacher, corpus = KnowledgeBaseTeacher(), []
    for row in rows.to_dict("records"):
        for cfg in (TEST_PROMPT, TEST_PROMPT.with_updates(act_only=False)):
            prompt = build_prompt(row, cfg)
            corpus += [prompt.system, prompt.user, teacher.respond(prompt).text]
    return build_base_model(root / "tiny_base", corpus, BaseModelConfig(size="tiny", overrides={"vocab_size": 700}),
                            overwrite=True)


def act_only_records(rows: pd.DataFrame) -> list[dict]:
    """SFT records: the [ACT_ONLY] prompt and the teacher's JSON action."""
    teacher = KnowledgeBaseTeacher()
    out = []
    for row in rows.to_dict("records"):
        prompt = build_prompt(row, TEST_PROMPT)
        out.append({"prompt": prompt.messages,
                    "completion": [{"role": "assistant", "content": teacher.respond(prompt).text}]})
    return out
