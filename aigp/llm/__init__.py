"""The LLM pricing policy core (paper §3.2, App. B.2): prompts, knowledge base, diagnosis, the action parser Ψ,
untrusted-text handling, the offline base-model factory, the teacher, the judge and the distillation set.

Entry points (see ``docs/llm_core.md``):

- ``aigp.llm.prompt``: ``build_prompt(row, PromptConfig(act_only=..., include_knowledge=..., ...))``;
  ``aigp.llm.prompt_reader``: ``parse_prompt(prompt)`` (what the teacher and judge read back);
- ``aigp.llm.parser``: ``parse_action(output, prev_discount)`` (Ψ) and ``parse_actions`` for a batch;
- ``aigp.llm.model_factory``: ``build_base_model(out_dir, corpus, BaseModelConfig(size=...))``, ``load_model(spec)``
  and ``resolve_model(spec)`` (local path or HF id; S3 URIs are localized by the platform first);
- ``aigp.llm.teacher``: ``KnowledgeBaseTeacher`` (built-in), ``teacher_backend`` (to serve it),
  ``TeacherPolicy`` (the teacher as a simulator policy);
- ``aigp.llm.judge``: ``RuleJudge``, ``LLMJudge``, ``CombinedJudge`` and the planted-defect set;
- ``aigp.llm.distill``: ``generate``, ``judge_filter``, ``write_distillation_set``, ``sft_records``;
- ``aigp.llm.client`` / ``aigp.llm.local_endpoint``: the OpenAI-compatible client and a loopback server.
"""
