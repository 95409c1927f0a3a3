"""Pipelines: the committed IR is current, the compiled structure (GPU, tolerations, node selectors, PVC,
caching, parameters), step configs, the runner's parameters and `aigp pipeline` commands."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from typer.testing import CliRunner

from aigp.cli import app
from aigp.config import ConfigError
from aigp.pipelines.params import STEPS, StepParameters, nightly_dates, step_configs
from aigp.pipelines.runner import (
    IR_FILES,
    PRESETS,
    compiled_text,
    ir_difference,
    local_parameters,
    parse_parameters,
    submit,
    submit_arguments,
)
from aigp.pipelines.training_parameters import TrainingOptions, TrainingParameters

HEAVY = {"exec-sft", "exec-sample-candidates", "exec-dpo"}


def _ir(name: str) -> tuple[dict, dict]:
    spec, *platform = yaml.safe_load_all(IR_FILES[name].read_text())
    return spec, platform[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if platform else {}


def _all_tasks(spec: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}

    def walk(dag: dict) -> None:
        for name, task in dag["tasks"].items():
            out[name] = task
            component = spec["components"][task["componentRef"]["name"]]
            if "dag" in component:
                walk(component["dag"])

    walk(spec["root"]["dag"])
    return out


@pytest.mark.parametrize("name", sorted(IR_FILES))
def test_committed_ir_yaml_is_what_the_source_compiles_to(name: str) -> None:
    assert IR_FILES[name].exists(), f"{IR_FILES[name]} missing: run `aigp pipeline compile`"
    assert ir_difference(IR_FILES[name].read_text(), compiled_text(name)) is None, (
        f"{IR_FILES[name].name} is stale: run `aigp pipeline compile` and commit it")


def test_ir_check_ignores_the_compiler_version_and_catches_a_changed_command() -> None:
    committed = IR_FILES["training"].read_text()
    current = compiled_text("training")
    other_sdk = committed.replace(f"sdkVersion: {yaml.safe_load_all(committed).__next__()['sdkVersion']}",
                                  "sdkVersion: kfp-2.99.0")
    assert "kfp-2.99.0" in other_sdk and other_sdk != committed
    assert ir_difference(other_sdk, current) is None

    spec, *rest = list(yaml.safe_load_all(committed))
    executors = spec["deploymentSpec"]["executors"]
    name = sorted(executors)[0]
    executors[name]["container"]["command"] = [*executors[name]["container"]["command"], "--changed"]
    changed = yaml.safe_dump_all([spec, *rest], sort_keys=False)
    reason = ir_difference(changed, current)
    assert reason is not None and f"deploymentSpec.executors.{name}.container.command" in reason

    both = changed.replace(f"sdkVersion: {spec['sdkVersion']}", "sdkVersion: kfp-2.99.0")
    reason = ir_difference(both, current)
    assert reason is not None and "compiled by kfp-2.99.0" in reason


def test_heavy_steps_request_a_gpu_tolerate_the_taint_and_share_the_volume() -> None:
    spec, k8s = _ir("training")
    executors = spec["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        accelerator = executor.get("container", {}).get("resources", {}).get("accelerator")
        if name in HEAVY:
            assert accelerator["resourceType"] == "nvidia.com/gpu" and accelerator["resourceCount"] == "1"
            assert {e["name"] for e in executor["container"]["env"]} == {"AIGP_CACHE_DIR", "HF_HOME"}
        else:
            assert accelerator is None, f"{name} must not hold a GPU"
    assert {n for n, c in k8s.items() if {"tolerations", "nodeSelector", "pvcMount"} & set(c)} == HEAVY
    for name in HEAVY:
        assert k8s[name]["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
        assert k8s[name]["nodeSelector"] == {"labels": {"nvidia.com/gpu.present": "true"}}
        (mount,) = k8s[name]["pvcMount"]
        assert mount["mountPath"] == "/mnt/aigp"
        # inside a condition the pipeline parameter arrives as "pipelinechannel--shared_pvc"
        assert mount["pvcNameParameter"]["componentInputParameter"].endswith("shared_pvc")


def test_every_step_runs_in_the_project_image_without_pip() -> None:
    spec, _ = _ir("training")
    for name, executor in spec["deploymentSpec"]["executors"].items():
        if "importer" in executor:
            continue
        image = "registry.local/aigp/platform-cuda:0.1.0" if name in HEAVY else "registry.local/aigp/platform:0.1.0"
        assert executor["container"]["image"] == image, name
        assert "pip install" not in json.dumps(executor["container"]["command"]), name


def test_training_steps_are_cached_and_gate_and_registration_never_are() -> None:
    tasks = _all_tasks(_ir("training")[0])
    components = {n for n in tasks if not n.startswith("condition")}
    uncached = {n for n in components if not tasks[n].get("cachingOptions", {}).get("enableCache")}
    assert uncached == {"offline-gate", "offline-gate-2", "register-model", "register-model-2", "fail-run",
                        "fail-run-2", "fail-run-3"}
    assert {"sft", "dpo", "sample-candidates", "train-ltve", "materialize-features"} <= components - uncached


def test_training_parameters_and_the_gate_branches() -> None:
    spec, _ = _ir("training")
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name in ("data_start", "data_end", "holdout_from", "model_size", "delta_q", "delta_a", "n_candidates",
                 "beta", "seed", "gate_config_yaml", "shared_pvc", "allow_sft_only"):
        assert name in params, name
    assert params["delta_q"]["defaultValue"] == 0.05 and params["beta"]["defaultValue"] == 0.1
    assert params["n_candidates"]["defaultValue"] == 8 and params["model_size"]["defaultValue"] == "tiny"
    tasks = _all_tasks(spec)
    # register only under "gate passed", fail_run with the gate's verdict otherwise; DPO only with pairs
    conditions = {n: t["triggerPolicy"]["condition"] for n, t in tasks.items() if "triggerPolicy" in t}
    passed = sorted(c for c in conditions.values() if c.endswith("Output'] == 'passed'"))
    assert passed == ["inputs.parameter_values['pipelinechannel--offline-gate-2-Output'] == 'passed'",
                      "inputs.parameter_values['pipelinechannel--offline-gate-Output'] == 'passed'"]
    assert "int(inputs.parameter_values['pipelinechannel--count-pairs-Output']) > 0" in conditions.values()
    reason = tasks["fail-run"]["inputs"]["parameters"]["reason"]["componentInputParameter"]
    assert reason == "pipelinechannel--offline-gate-Output"
    assert tasks["dpo"]["inputs"]["artifacts"]["policy_model"] == {
        "componentInputArtifact": "pipelinechannel--sft-model"}


def test_nightly_pipeline_materializes_then_prices_then_monitors() -> None:
    spec, _ = _ir("nightly")
    tasks = spec["root"]["dag"]["tasks"]
    price = tasks["batch-price"]["inputs"]["artifacts"]["feature_data"]["taskOutputArtifact"]
    monitor = tasks["monitor-pricing"]["inputs"]["artifacts"]["decisions"]["taskOutputArtifact"]
    assert price["producerTask"] == "materialize-features" and monitor["producerTask"] == "batch-price"
    assert spec["root"]["inputDefinitions"]["parameters"]["date"]["defaultValue"] == ""
    assert spec["pipelineInfo"]["name"] == "aigp-nightly"


# --- step configs -----------------------------------------------------------------------------------------
def test_typed_parameters_reach_each_step_config_and_keep_nested_defaults() -> None:
    configs = step_configs(StepParameters(model_size="small", delta_q=0.1, delta_a=0.03, beta=0.2, seed=4,
                                          sft_config_yaml="optim: {epochs: 1}", pairs_config_yaml="delta_q: 0.9"))
    pairs, dpo, sft = (yaml.safe_load(configs[s]) for s in ("pairs", "dpo", "sft"))
    assert pairs["delta_q"] == 0.1 and pairs["delta_a"] == 0.03  # typed parameters win over YAML
    assert dpo["beta"] == 0.2 and dpo["optim"]["seed"] == 4 and dpo["optim"]["learning_rate"] == 5e-4
    assert sft["optim"]["epochs"] == 1.0 and sft["optim"]["learning_rate"] == 2e-3  # SFT's own nested default
    assert yaml.safe_load(configs["distill"])["prompt"]["max_prompt_tokens"] == 896  # the small model's budget
    assert yaml.safe_load(configs["sampling"])["generation"]["temperature"] > 0


def test_bad_step_config_fails_naming_step_and_field() -> None:
    with pytest.raises(ConfigError, match=r"sft config.*lora_rank"):
        step_configs(StepParameters(sft_config_yaml="lora_rank: 4"))
    with pytest.raises(ConfigError, match=r"sfft_config_yaml=''.*Extra inputs are not permitted"):
        StepParameters.build(sfft_config_yaml="")
    with pytest.raises(ConfigError, match="model_size='huge'"):
        step_configs(StepParameters(model_size="huge"))


_IR_TYPES = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", bool: "BOOLEAN"}


def _interface(model: type) -> dict[str, dict]:
    """``model``'s fields as KFP IR parameter definitions (type, default, optional, description)."""
    out = {}
    for name, info in model.model_fields.items():
        spec: dict = {"parameterType": _IR_TYPES[info.annotation], "description": info.description}
        if not info.is_required():
            spec |= {"defaultValue": info.default, "isOptional": True}
        out[name] = spec
    return out


def test_the_parameter_model_is_the_compiled_pipelines_interface() -> None:
    """A parameter added to (or dropped from) TrainingParameters without recompiling, or a pipeline input that
    is not in the model, fails here: the committed IR's root inputs are the model's fields, name, type and
    default and description (every parameter has one); the training_configs step's inputs are StepParameters'."""
    spec, _ = _ir("training")
    assert spec["root"]["inputDefinitions"]["parameters"] == _interface(TrainingParameters)
    step = spec["components"]["comp-training-configs"]["inputDefinitions"]["parameters"]
    assert step == _interface(StepParameters)
    assert set(spec["components"]["comp-training-configs"]["outputDefinitions"]["parameters"]) == set(STEPS)
    # every step-config parameter reaches training_configs straight from the pipeline's own input
    task = spec["root"]["dag"]["tasks"]["training-configs"]["inputs"]["parameters"]
    assert task == {name: {"componentInputParameter": name} for name in StepParameters.model_fields}


def test_generated_signatures_follow_the_model() -> None:
    import inspect

    from pydantic import BaseModel, Field

    from aigp.pipelines.signatures import component_function, pipeline_function

    class Toy(BaseModel):
        n: int = Field(3, description="how many")
        uri: str = Field(description="where")

    func = component_function("toy", Toy, doc="A toy.", body="    return uri * n\n", returns="str")
    assert str(inspect.signature(func)) == "(uri: str, n: int = 3) -> str" and func("ab", 2) == "abab"
    assert inspect.getsource(func).startswith("def toy(\n    uri: str,\n    n: int = 3,\n) -> str:")
    run = pipeline_function(Toy, lambda p: (p.uri, p.n), name="toy")
    assert str(inspect.signature(run)) == "(uri: str, n: int = 3)" and run("x") == ("x", 3)

    class Listy(BaseModel):
        xs: list[int] = []

    with pytest.raises(TypeError, match=r"Listy\.xs: annotation"):
        pipeline_function(Listy, lambda p: None, name="listy")


def test_presets_are_typed_and_fail_in_one_line_naming_the_key() -> None:
    assert all(isinstance(preset, TrainingOptions) for preset in PRESETS.values())
    assert PRESETS["tiny"].arguments()["n_candidates"] == 6 and "seed" not in PRESETS["tiny"].arguments()
    for bad, named in (({"n_candidate": 6}, "n_candidate=6"), ({"n_candidates": "6"}, "n_candidates='6'"),
                       ({"allow_sft_only": "yes"}, "allow_sft_only='yes'"), ({"market_logs_uri": "s3://x"},
                                                                             "market_logs_uri")):
        with pytest.raises(ConfigError) as err:
            TrainingOptions.build(**bad)
        assert named in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_nightly_dates() -> None:
    assert nightly_dates("2026-04-02", online_days=2) == {"date": "2026-04-02", "online_start": "2026-03-31",
                                                          "online_end": "2026-04-03"}
    assert nightly_dates("", today=dt.date(2026, 5, 1))["date"] == "2026-05-01"
    with pytest.raises(ConfigError, match="'04/02'"):
        nightly_dates("04/02")


# --- runner -----------------------------------------------------------------------------------------------
def test_local_parameters_cover_the_log(market_logs) -> None:
    params = local_parameters(market_logs.path, seed=3)
    assert params["data_start"] == "2026-03-01" and params["seed"] == 3
    end = dt.date.fromisoformat(params["data_end"])
    assert dt.date.fromisoformat(params["online_start"]) == end - dt.timedelta(days=7)
    assert params["online_end"] == params["data_end"] and Path(params["market_logs_uri"]).is_absolute()
    with pytest.raises(FileNotFoundError, match="not a market log directory"):
        local_parameters(market_logs.path.parent)


def test_parameters_are_typed_by_the_pipeline_signature() -> None:
    parsed = parse_parameters("training", ["delta_q=0.2", "n_candidates=4", "allow_sft_only=yes",
                                           "data_start=2026-03-01"])
    assert parsed == {"delta_q": 0.2, "n_candidates": 4, "allow_sft_only": True, "data_start": "2026-03-01"}
    with pytest.raises(ValueError, match="no such parameter"):
        parse_parameters("training", ["deltaq=1"])
    with pytest.raises(ValueError, match="n_candidates='many': expected int"):
        parse_parameters("training", ["n_candidates=many"])
    inputs = set(parse_parameters.__globals__["pipeline_function"]("training").component_spec.inputs)
    for name, preset in PRESETS.items():
        assert set(preset.arguments()) <= inputs, name


def test_every_preset_validates_and_the_demo_trains_on_compact_prompts() -> None:
    import yaml

    from aigp.pipelines.params import step_configs

    for name, preset in PRESETS.items():
        configs = step_configs(preset)  # raises naming a bad field
        if name in ("demo", "tiny"):
            distill, gate = yaml.safe_load(configs["distill"]), yaml.safe_load(configs["gate"])
            assert distill["prompt"]["compact"] and distill["temperature"] == 0.0
            assert gate["policy"]["prompt"]["compact"] and gate["floors"]["min_model_action_share"] > 0


class _FakeClient:
    calls: ClassVar[list[dict]] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def create_run_from_pipeline_package(self, **kwargs):
        type(self).calls.append({"client": self.kwargs, **kwargs})
        return type("Run", (), {"run_id": "run-123"})()


def test_submit_builds_the_client_call() -> None:
    args = submit_arguments("training", host="http://kfp:8888", experiment=None, run_name=None,
                            parameters={"seed": 1})
    assert args["experiment_name"] == "aigp-training" and args["run_name"].startswith("aigp-training-")
    assert args["pipeline_file"] == str(IR_FILES["training"]) and args["arguments"] == {"seed": 1}
    _FakeClient.calls.clear()
    result = submit("nightly", host="https://kfp.example", run_name="n1", namespace="team-a",
                    client_factory=_FakeClient)
    (call,) = _FakeClient.calls
    assert result == {"run_id": "run-123", "run_name": "n1", "experiment": "aigp-nightly", "host": "https://kfp.example"}
    assert call["client"] == {"host": "https://kfp.example", "namespace": "team-a"}
    assert call["pipeline_file"].endswith("nightly_pipeline.yaml") and call["enable_caching"] is True
    with pytest.raises(ValueError, match="expected the Kubeflow Pipelines API URL"):
        submit_arguments("training", host="kfp:8888", experiment=None, run_name=None, parameters={})


def test_cli_compile_check_run_and_submit_errors(tmp_path, monkeypatch) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["pipeline", "compile", "--check"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["pipeline", "compile", "--out", str(tmp_path)])
    assert result.exit_code == 0 and (tmp_path / "training_pipeline.yaml").read_text() == compiled_text("training")
    result = runner.invoke(app, ["pipeline", "run", "--logs", str(tmp_path)])
    assert result.exit_code == 2 and "only --local runs" in result.output
    result = runner.invoke(app, ["pipeline", "run", "--local", "--param", "bogus=1"])
    assert result.exit_code == 2 and "no such parameter" in result.output
    import aigp.pipelines.runner as runner_module

    monkeypatch.setattr("kfp.Client", _FakeClient)
    _FakeClient.calls.clear()
    result = runner.invoke(app, ["pipeline", "submit", "--host", "http://kfp:8888", "--param", "seed=2",
                                 "--experiment", "exp", "--run-name", "r"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["run_id"] == "run-123"
    assert _FakeClient.calls[0]["arguments"] == {"seed": 2} and _FakeClient.calls[0]["experiment_name"] == "exp"
    del runner_module


def test_compact_presets_decode_enough_tokens_for_the_whole_action() -> None:
    """The gate and sampling caps must fit the longest JSON action in the tiny tokenizer the pipeline builds."""
    import pandas as pd
    import yaml
    from llm_support import LAUNCH, LOW_STOCK, MID

    from aigp.llm.model_factory import SIZES, train_tokenizer
    from aigp.training_sets import base_model_corpus

    corpus = base_model_corpus(pd.DataFrame([MID, LAUNCH, LOW_STOCK]), n=3)
    tokenizer = train_tokenizer(corpus, SIZES["tiny"].vocab_size)
    widest = '{"discount_change": -0.05, "new_discount": 0.875}<|im_end|>'
    needed = len(tokenizer(widest, add_special_tokens=False)["input_ids"])
    for name in ("tiny", "demo"):
        gate = yaml.safe_load(PRESETS[name].gate_config_yaml)
        sampling = yaml.safe_load(PRESETS[name].sampling_config_yaml)
        assert gate["policy"]["generation"]["max_new_tokens"] >= needed, (name, needed)
        assert sampling["generation"]["max_new_tokens"] >= needed, (name, needed)
