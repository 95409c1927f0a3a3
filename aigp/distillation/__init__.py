"""Judge-filtered teacher distillation (paper §3.3): the knowledge-base teacher, the judge and the SFT set.

- ``aigp.distillation.teacher``: ``KnowledgeBaseTeacher`` (built-in), ``teacher_backend`` (to serve it),
  ``TeacherPolicy`` (the teacher as a simulator policy);
- ``aigp.distillation.judge``: ``RuleJudge``, ``LLMJudge``, ``CombinedJudge`` and the planted-defect set;
- ``aigp.distillation.defects``: the reasoning defects the teacher samples and the judge is tested on;
- ``aigp.distillation.distill``: ``generate``, ``judge_filter``, ``write_distillation_set``, ``sft_records``;
- ``aigp.distillation.on_policy``: on-policy distillation (DAgger): the states a student visits when it prices,
  labelled by the teacher for the next SFT round (``visited_rows``, ``on_policy_rounds``).

A teacher or judge served elsewhere is reached through ``aigp.openai_compat.client``.
"""
