"""The training pipeline: features -> training sets -> LTVE -> teacher distillation -> SFT -> candidate
sampling -> LTVE-ranked pairs -> DPO -> offline gate -> registry.

The same pipeline runs on Kubeflow (compiled IR: ``pipelines/training_pipeline.yaml``) and locally under
``kfp.local`` (``aigp pipeline run --local``): kfp-kubernetes settings (GPU requests, tolerations, node
selectors, the shared PVC) only take effect on a cluster.

Heavy steps (SFT, candidate sampling, DPO) run in the CUDA build of the project image, request one GPU
(``nvidia.com/gpu``), tolerate the GPU node taint, are pinned to GPU nodes by label, and mount one shared
ReadWriteMany PVC (``shared_pvc``: ``aigp-training-cache``, ``manifests/base/pipelines/``) at ``/mnt/aigp`` as
the model/tokenizer cache (``AIGP_CACHE_DIR``, ``HF_HOME``), so three steps do not download the same base
weights three times. Every step gets ``aigp-config`` and the Secrets it needs (``pipelines/platform.py``).
Steps are cached by KFP (same inputs -> reused outputs) except the gate and registration, which depend on
the registry's current champion and must run every time.

The gate ends a failing run: ``offline_gate`` returns ``"passed"`` or ``"failed: <reasons>"``; on failure the
``fail_run`` step raises with the reasons (the run is marked failed, the candidate is not registered); on
success ``register_model`` registers the version (approval and promotion stay a person's decision).

When no sampled candidate pair clears ΔQ and Δa, DPO has nothing to learn from: the run fails saying so,
unless ``allow_sft_only`` is set, in which case the SFT model is gated and registered as what it is (its
lineage, shown in the gate report, ends with ``sft``). A CPU-sized model that has not learned the action
format yet (every sample unparsable) is the usual cause.
"""

from typing import Any

from kfp import dsl, kubernetes
from kfp.dsl.graph_component import GraphComponent

from aigp.components._image import DEFAULT_IMAGES, Images
from aigp.components.build_base_model.component import build_base_model
from aigp.components.build_pairs.component import build_pairs
from aigp.components.build_training_sets.component import build_training_sets
from aigp.components.count_pairs.component import count_pairs
from aigp.components.dpo.component import dpo
from aigp.components.evaluate_ltve.component import evaluate_ltve
from aigp.components.judge_filter.component import judge_filter
from aigp.components.materialize_features.component import materialize_features
from aigp.components.offline_gate.component import offline_gate
from aigp.components.register_model.component import fail_run, register_model
from aigp.components.sample_candidates.component import sample_candidates
from aigp.components.sft.component import sft
from aigp.components.teacher_generate.component import teacher_generate
from aigp.components.train_ltve.component import train_ltve
from aigp.components.training_configs.component import training_configs
from aigp.pipelines.params import StepParameters
from aigp.pipelines.platform import building_with, on_cluster
from aigp.pipelines.signatures import args_section, pipeline_function
from aigp.pipelines.training_parameters import TrainingParameters

PIPELINE_NAME = "aigp-training"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")
SHARED_MOUNT = "/mnt/aigp"
HEAVY_STEPS = ("sft", "sample-candidates", "dpo")  # task names that get a GPU, tolerations and the PVC
UNCACHED_STEPS = ("offline-gate", "register-model", "fail-run")


def _on_gpu(task: dsl.PipelineTask, shared_pvc: str, *, cpu: str = "4", memory: str = "32G") -> dsl.PipelineTask:
    """The CUDA image, one GPU, the GPU node taint tolerated, GPU nodes only, the shared cache volume."""
    on_cluster(task, gpu=True, s3=True)
    task.set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(1)
    task.set_cpu_request(cpu).set_memory_request(memory).set_memory_limit(memory)
    kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    kubernetes.add_node_selector(task, label_key=GPU_NODE_LABEL[0], label_value=GPU_NODE_LABEL[1])
    kubernetes.mount_pvc(task, pvc_name=shared_pvc, mount_path=SHARED_MOUNT)
    task.set_env_variable("AIGP_CACHE_DIR", f"{SHARED_MOUNT}/cache")
    task.set_env_variable("HF_HOME", f"{SHARED_MOUNT}/hf")
    return task


def _gate_then_register(candidate: Any, gate_inputs: dict, register_inputs: dict, *,
                        description: str) -> None:
    """The offline gate on ``candidate``; registration when it passes, the run failed with its reasons when not.
    Neither is cached: both depend on the registry's current state (the champion, the next version)."""
    gate = on_cluster(offline_gate(candidate=candidate, **gate_inputs), s3=True)
    gate.set_caching_options(False)
    with dsl.If(gate.outputs["Output"] == "passed", name="gate-passed"):
        on_cluster(register_model(model=candidate, gate_json=gate.outputs["gate_json"],
                                  gate_report=gate.outputs["report"], description=description, **register_inputs),
                   s3=True).set_caching_options(False)
    with dsl.Else(name="gate-failed"):
        on_cluster(fail_run(reason=gate.outputs["Output"])).set_caching_options(False)


DESCRIPTION = "AIGP: LTVE, teacher distillation, SFT, LTVE-guided DPO, offline gate and registration of the candidate"


def _training_pipeline(p: TrainingParameters) -> None:
    """The steps, wired. ``p`` holds the pipeline's parameters (:class:`TrainingParameters`, the one place
    they are declared); ``p.gate_config_yaml`` also sets the gate's simulated A/B (run when the logs come from
    the simulator; ``ab: {enabled: false}`` turns it off)."""
    configs = on_cluster(training_configs(**{name: getattr(p, name) for name in StepParameters.model_fields}))
    logs = dsl.importer(artifact_uri=p.market_logs_uri, artifact_class=dsl.Dataset, reimport=False)
    features = on_cluster(materialize_features(market_logs=logs.output, start=p.online_start, end=p.online_end),
                          redis=True)
    sets = on_cluster(build_training_sets(feature_data=features.outputs["feature_data"], start=p.data_start,
                                          end=p.data_end, holdout_from=p.holdout_from,
                                          holdout_share=p.holdout_share, seed=p.seed),
                      redis=True)  # opens the feature store (its online store)

    ltve = on_cluster(train_ltve(training_set=sets.outputs["training_set"], config_yaml=configs.outputs["ltve"],
                                 steps=p.ltve_steps, mlflow_experiment=p.mlflow_experiment), s3=True)
    critic_eval = on_cluster(evaluate_ltve(model=ltve.outputs["model"], evaluation_set=sets.outputs["training_set"],
                                           mlflow_experiment=p.mlflow_experiment), s3=True)

    base = on_cluster(build_base_model(prompt_rows=sets.outputs["prompt_rows"], size=p.model_size,
                                       corpus_prompts=p.corpus_prompts, seed=p.seed),
                      s3=True)  # base weights: s3:// too
    generations = on_cluster(teacher_generate(prompt_source=sets.outputs["prompt_rows"],
                                              config_yaml=configs.outputs["distill"], n_prompts=p.n_prompts))
    distilled = on_cluster(judge_filter(generations=generations.outputs["generations"],
                                        config_yaml=configs.outputs["distill"],
                                        mlflow_experiment=p.mlflow_experiment), s3=True)
    sft_task = _on_gpu(sft(distillation_set=distilled.outputs["distillation_set"], base_model=base.outputs["model"],
                           config_yaml=configs.outputs["sft"], max_steps=p.sft_max_steps,
                           mlflow_experiment=p.mlflow_experiment), p.shared_pvc)
    sampled = _on_gpu(sample_candidates(policy_model=sft_task.outputs["model"], prompt_rows=sets.outputs["prompt_rows"],
                                        config_yaml=configs.outputs["sampling"], n_prompts=p.sampling_prompts,
                                        n_candidates=p.n_candidates, mlflow_experiment=p.mlflow_experiment),
                      p.shared_pvc)
    pairs = on_cluster(build_pairs(candidates=sampled.outputs["candidates"], ltve_model=ltve.outputs["model"],
                                   config_yaml=configs.outputs["pairs"], mlflow_experiment=p.mlflow_experiment),
                       s3=True)
    n_pairs = on_cluster(count_pairs(pairs=pairs.outputs["pairs"]))

    gate_inputs = {"heldout_set": sets.outputs["heldout_set"], "ltve_model": ltve.outputs["model"],
                   "config_yaml": configs.outputs["gate"], "market_logs": logs.output, "model_name": p.model_name,
                   "compare_champion": p.compare_champion, "critic_evaluation": critic_eval.outputs["evaluation"]}
    register_inputs = {"data_start": p.data_start, "data_end": p.data_end, "model_name": p.model_name,
                       "pipeline_run_id": dsl.PIPELINE_JOB_NAME_PLACEHOLDER}
    with dsl.If(n_pairs.output > 0, name="preference-pairs"):
        dpo_task = _on_gpu(dpo(pairs=pairs.outputs["pairs"], policy_model=sft_task.outputs["model"],
                               config_yaml=configs.outputs["dpo"], max_steps=p.dpo_max_steps,
                               mlflow_experiment=p.mlflow_experiment), p.shared_pvc)
        _gate_then_register(dpo_task.outputs["model"], gate_inputs, register_inputs,
                            description="SFT + LTVE-guided DPO (aigp-training pipeline)")
    with dsl.Else(name="no-preference-pairs"):
        with dsl.If(p.allow_sft_only == True, name="sft-only-allowed"):  # noqa: E712 (a pipeline condition)
            _gate_then_register(sft_task.outputs["model"], gate_inputs, register_inputs,
                                description="SFT only: no candidate pair cleared ΔQ/Δa, DPO skipped "
                                            "(aigp-training pipeline)")
        with dsl.Else(name="sft-only-refused"):
            on_cluster(fail_run(reason="no preference pair cleared ΔQ/Δa and the sign balancing, so DPO has nothing "
                                       "to learn from: lower delta_q / delta_a, sample more candidates (n_candidates, "
                                       "sampling_prompts) or train SFT longer (build-pairs' pairs/dropped_by_balancing "
                                       "counts the pairs balancing removed); allow_sft_only=True gates the SFT model "
                                       "instead"
                                ).set_caching_options(False))


def build(images: Images = DEFAULT_IMAGES) -> GraphComponent:
    """The training pipeline with its steps in ``images`` (the GPU steps in ``images.cuda``)."""
    with building_with(images):
        return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(
            pipeline_function(TrainingParameters, _training_pipeline, name="training_pipeline",
                              doc=f"{DESCRIPTION}\n\n{args_section(TrainingParameters)}"))  # inputs' descriptions


training_pipeline = build()
