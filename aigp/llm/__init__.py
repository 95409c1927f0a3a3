"""The LLM pricing policy's contract (paper §3.2, App. B.2): what the model reads and what it must write.
Prompts, knowledge base, diagnosis, the action parser Ψ, untrusted-text handling and the offline base-model
factory. The synthetic teacher and judge live in ``aigp.distillation``; the OpenAI-compatible transport in
``aigp.openai_compat``.

Entry points (see ``docs/llm_core.md``):

- ``aigp.llm.prompt``: ``build_prompt(row, PromptConfig(act_only=..., include_knowledge=..., ...))``;
  ``aigp.llm.prompt_reader``: ``parse_prompt(prompt)`` (what the teacher and judge read back);
- ``aigp.llm.parser``: ``parse_action(output, prev_discount)`` (Ψ) and ``parse_actions`` for a batch;
- ``aigp.llm.model_factory``: ``build_base_model(out_dir, corpus, BaseModelConfig(size=...))``, ``load_model(spec)``
  and ``resolve_model(spec)`` (local path or HF id; S3 URIs are localized by the platform first);
- ``aigp.llm.rows``: the prompt rows (state + text features) read from a market log or a parquet file.
"""
