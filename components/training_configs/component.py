"""KFP component: the training pipeline's typed parameters -> validated per-step config YAML (logic in
``aigp.pipelines.params``).

Its inputs are :class:`aigp.pipelines.params.StepParameters`' fields: the function is generated from the model
(``aigp.pipelines.signatures.component_function``), and its generated source is what the IR embeds."""

from kfp import dsl

from aigp.components._image import AIGP_IMAGE
from aigp.pipelines.params import STEPS, StepParameters
from aigp.pipelines.signatures import args_section, component_function

DOC = ("Merge ΔQ, Δa, β, the seed and the model size's prompt budget into each step's YAML override and\n"
       "validate every config (a bad field fails here, naming it, before any training step runs).\n\n"
       + args_section(StepParameters))

BODY = """\
    arguments = dict(locals())
    from aigp.pipelines.params import step_outputs

    return step_outputs(arguments)
"""

training_configs = dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)(component_function(
    "training_configs", StepParameters, doc=DOC, body=BODY, namespace={"__name__": __name__},
    returns=f"NamedTuple('StepConfigs', [{', '.join(f'({s!r}, str)' for s in STEPS)}])"))
