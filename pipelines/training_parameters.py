"""The training pipeline's parameters, declared once: name, type, default and description of each.

:class:`TrainingParameters` is what the pipeline function's signature is generated from
(``pipelines/training_pipeline.py``, through ``pipelines/signatures.py``); it extends
:class:`~aigp.pipelines.params.StepParameters`, the subset the ``training_configs`` step takes. The local presets
(``pipelines/runner.py``) are :class:`TrainingOptions`, so a preset's unknown key or wrong type fails in one line
naming it. (Kept apart from ``params.py``, which the steps import at run time: no step needs the whole
pipeline's parameters.)
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from aigp.pipelines.params import StepParameters

TRAINING_CACHE_PVC = "aigp-training-cache"  # manifests/base/pipelines/training-cache-pvc.yaml


class TrainingOptions(StepParameters):
    """Every training-pipeline parameter that has a default: a local preset is one of these."""

    holdout_from: str = Field("", description="SKUs launched on/after this day are held out for the gate only "
                                              "(\"\" = the latest holdout_share)")
    holdout_share: float = Field(0.2, description="share of the latest-launched SKUs held out when holdout_from "
                                                  "is \"\"")
    corpus_prompts: int = Field(300, description="prompts in the base model's pre-training corpus")
    n_prompts: int = Field(200, description="prompts the teacher answers")
    sampling_prompts: int = Field(100, description="prompts candidate actions are sampled for")
    n_candidates: int = Field(8, description="M: candidates sampled per prompt")
    ltve_steps: int = Field(0, description="> 0 caps the LTVE's training steps")
    sft_max_steps: int = Field(0, description="> 0 caps SFT's training steps")
    dpo_max_steps: int = Field(0, description="> 0 caps DPO's training steps")
    model_name: str = Field("aigp-pricing", description="the registered model the candidate is gated against "
                                                        "and registered to")
    compare_champion: bool = Field(True, description="gate the candidate against the registry's champion too")
    allow_sft_only: bool = Field(False, description="gate the SFT model when no pair clears ΔQ/Δa (else the "
                                                    "run fails)")
    shared_pvc: str = Field(TRAINING_CACHE_PVC, description="the existing PVC the GPU steps share as their "
                                                            "model cache")
    mlflow_experiment: str = Field("", description="MLflow experiment of the training steps (\"\" = each "
                                                   "step's default)")

    def arguments(self) -> dict[str, Any]:
        """The pipeline arguments this preset sets (the fields given when it was built; the rest keep the
        pipeline's defaults)."""
        return self.model_dump(exclude_unset=True)


class TrainingParameters(TrainingOptions):
    """The training pipeline's parameters: the options plus the data (no default: every run names its own)."""

    market_logs_uri: str = Field(description="the decision logs (a market log directory or its URI)")
    data_start: str = Field(description="first day of the training data (decisions priced in "
                                        "[data_start, data_end))")
    data_end: str = Field(description="day after the training data")
    online_start: str = Field(description="first day loaded into the online store")
    online_end: str = Field(description="day after the last one loaded into the online store")
