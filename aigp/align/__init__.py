"""Alignment (paper §3.2, §3.4, App. A): LoRA SFT on the judged teacher set, [ACT_ONLY] candidate sampling,
LTVE-ranked preference pairs, DPO, the trained model as a market policy, and the ablation variants.

Data moves one way: distillation set -> :mod:`~aigp.align.sft` -> :mod:`~aigp.align.sampling` ->
:mod:`~aigp.align.pairs` -> :mod:`~aigp.align.dpo`; :mod:`~aigp.align.policy` runs any of the resulting model
directories as a pricing policy, :mod:`~aigp.align.variants` wires the steps for the paper's ablations.
"""
