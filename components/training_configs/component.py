"""KFP component: the training pipeline's typed parameters -> validated per-step config YAML (logic in
``aigp.pipelines.params``)."""

from typing import NamedTuple

from kfp import dsl

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def training_configs(
    model_size: str = "tiny",
    delta_q: float = 0.05,
    delta_a: float = 0.02,
    beta: float = 0.1,
    seed: int = 0,
    threads: int = 0,
    distill_config_yaml: str = "",
    ltve_config_yaml: str = "",
    sft_config_yaml: str = "",
    sampling_config_yaml: str = "",
    pairs_config_yaml: str = "",
    dpo_config_yaml: str = "",
    gate_config_yaml: str = "",
) -> NamedTuple(  # type: ignore[valid-type]  # KFP's named outputs
        "StepConfigs", [("distill", str), ("ltve", str), ("sft", str), ("sampling", str), ("pairs", str),
                        ("dpo", str), ("gate", str)]):
    """Merge ΔQ, Δa, β, the seed and the model size's prompt budget into each step's YAML override and
    validate every config (a bad field fails here, naming it, before any training step runs)."""
    from collections import namedtuple

    from aigp.pipelines.params import STEPS, step_configs

    configs = step_configs(model_size=model_size, delta_q=delta_q, delta_a=delta_a, beta=beta, seed=seed,
                           threads=threads,
                           overrides={"distill": distill_config_yaml, "ltve": ltve_config_yaml,
                                      "sft": sft_config_yaml, "sampling": sampling_config_yaml,
                                      "pairs": pairs_config_yaml, "dpo": dpo_config_yaml, "gate": gate_config_yaml})
    return namedtuple("StepConfigs", STEPS)(*(configs[s] for s in STEPS))
