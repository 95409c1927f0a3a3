"""Compile, run locally (kfp.local) and submit (kfp.Client) the project's pipelines.

- :func:`compile_pipelines` writes the IR YAML committed next to each pipeline's source (steps in the default
  images, ``registry.local/aigp/platform[-cuda]:0.1.0``; ``images=Images.of(registry, tag)`` for others);
- :func:`local_parameters` derives the data windows of a training run from a market log directory;
- :func:`run_local` runs a pipeline under ``kfp.local.SubprocessRunner(use_venv=False)``: every step is a
  subprocess of this interpreter, so the installed ``aigp`` package is what runs (no image, no cluster);
- :func:`submit` creates a run on a Kubeflow Pipelines endpoint (experiment, run name, parameters).
"""

import datetime as dt
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigp.components._image import DEFAULT_IMAGES, Images
from aigp.pipelines.training_parameters import TrainingOptions

PIPELINES_DIR = Path(__file__).resolve().parent
IR_FILES = {"training": PIPELINES_DIR / "training_pipeline.yaml", "nightly": PIPELINES_DIR / "nightly_pipeline.yaml"}
DEFAULT_EXPERIMENTS = {"training": "aigp-training", "nightly": "aigp-nightly"}


def pipeline_function(name: str, images: Images | None = None) -> Callable[..., Any]:
    """The pipeline ``name``, its steps in ``images`` (default: the project's default images)."""
    if name == "training":
        from aigp.pipelines import training_pipeline as module
    elif name == "nightly":
        from aigp.pipelines import nightly_pipeline as module  # type: ignore[no-redef]
    else:
        raise ValueError(f"unknown pipeline {name!r}; expected one of {sorted(IR_FILES)}")
    if images is None or images == DEFAULT_IMAGES:
        return getattr(module, f"{name}_pipeline")
    return module.build(images)


def compile_pipelines(out_dir: str | Path | None = None, names: tuple[str, ...] = tuple(IR_FILES),
                      images: Images | None = None) -> dict[str, Path]:
    """Compile each pipeline to its IR YAML (next to the source by default); written atomically. ``images``:
    the images the steps run in (default: the project's defaults, what the committed IR holds)."""
    from kfp import compiler

    from aigp.io import atomic_path

    written = {}
    for name in names:
        target = IR_FILES[name] if out_dir is None else Path(out_dir) / IR_FILES[name].name
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:  # the compiler insists on a .yaml name: compile beside, then copy in
            yaml_tmp = tmp.with_suffix(".yaml")
            try:
                compiler.Compiler().compile(pipeline_function(name, images), str(yaml_tmp))
                tmp.write_bytes(yaml_tmp.read_bytes())
            finally:
                yaml_tmp.unlink(missing_ok=True)
        written[name] = target
    return written


def compiled_text(name: str) -> str:
    """The IR YAML the current source compiles to."""
    import tempfile

    from kfp import compiler

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.yaml"
        compiler.Compiler().compile(pipeline_function(name), str(path))
        return path.read_text()


# Top-level IR fields that record who compiled the file, not what runs.
_PROVENANCE_FIELDS = ("sdkVersion",)


def _ir_documents(text: str) -> list[Any]:
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def ir_spec(text: str) -> list[Any]:
    """The parts of an IR YAML that define the pipeline: every document, less the compiler's provenance."""
    docs = _ir_documents(text)
    return [{k: v for k, v in doc.items() if k not in _PROVENANCE_FIELDS} if isinstance(doc, dict) else doc
            for doc in docs]


def _sdk_version(text: str) -> str:
    docs = _ir_documents(text)
    return str(docs[0].get("sdkVersion", "unknown")) if docs and isinstance(docs[0], dict) else "unknown"


def ir_difference(committed: str, current: str) -> str | None:
    """None when the committed IR defines the same pipeline as ``current`` (the source compiled now), else one
    line naming the first difference. A different compiler version alone is not a difference; the line says
    which kfp compiled each when the spec differs too."""
    old, new = ir_spec(committed), ir_spec(current)
    if old == new:
        return None
    path = _first_difference(old, new, "")
    versions = (f" (committed file compiled by {_sdk_version(committed)}, this SDK is {_sdk_version(current)})"
                if _sdk_version(committed) != _sdk_version(current) else "")
    return f"pipeline spec differs at {path or '<root>'}{versions}"


def _first_difference(a: Any, b: Any, path: str) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b or a[key] != b[key]:
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
        if len(a) != len(b):
            return f"{path}[{min(len(a), len(b))}]"
    return path


def stale_ir(names: tuple[str, ...] = tuple(IR_FILES)) -> dict[str, str]:
    """Committed IR files that no longer define what their source compiles to: {path: reason}."""
    stale = {}
    for name in names:
        path = IR_FILES[name]
        if not path.exists():
            stale[str(path)] = "missing"
            continue
        reason = ir_difference(path.read_text(), compiled_text(name))
        if reason is not None:
            stale[str(path)] = reason
    return stale


# DPO of the small presets: an all-linear LoRA (aigp.align.training.ALL_LINEAR_MODULES, spelled out here so
# the CLI does not import torch), the NLL term on the chosen action and the parse-rate guard (aigp.align.dpo).
DPO_ALL_LINEAR_YAML = ("lora: {r: 16, alpha: 32, target_modules: [q_proj, k_proj, v_proj, o_proj, gate_proj, "
                       "up_proj, down_proj]}\noptim: {learning_rate: 0.002}\nsft_weight: 1.0\nguard: {enabled: true}")


# Short [ACT_ONLY] prompts keep a CPU-sized model's sequences short (the alignment tests use the same).
SHORT_PROMPT = ("{act_only: true, include_knowledge: false, include_diagnosis: false, description_max_chars: 60, "
                "reviews_max_chars: 60}")

# The compact [ACT_ONLY] prompt (aigp.llm.prompt.COMPACT_SECTIONS): ~450 tokens with the tiny model's tokenizer
# instead of ~1.5k, so a from-scratch model can see thousands of teacher answers in minutes (bench/bench_student.py).
COMPACT_PROMPT = "{act_only: true, compact: true, reviews_max_chars: 160}"
# Decoding cap of the compact presets: the JSON action is ~22 tokens with the pipeline's tiny tokenizer (trained
# on prompts and teacher answers) and ~32 with one trained on prompts only (bench/bench_student.py); 40 fits both

# Local presets of the training pipeline (a cluster run uses the pipeline's own defaults + parameters).
# `tiny`: the smallest run that exercises every step (tests); `small`: the earlier demo size; `demo`: what
# `aigp demo` runs: the compact prompt, thousands of greedy (temperature 0) judged teacher answers, full
# fine-tuning of the tiny from-scratch model, no judge (a compact-prompt model writes no reasoning to judge:
# the gate report lists the judge floor as skipped). Each is a TrainingOptions (pipelines/training_parameters.py): an
# unknown key or a wrong type fails on import, naming it.
PRESETS: dict[str, TrainingOptions] = {
    "tiny": TrainingOptions.build(
        # compact prompts and enough SFT steps that the tiny model writes parsable actions (the gate's
        # min_model_action_share floor cannot be switched off); delta_q near 0: the 3-step LTVE's Q gaps are small,
        # and the test needs DPO to run
        model_size="tiny", corpus_prompts=20, n_prompts=48, sampling_prompts=8, n_candidates=6,
        ltve_steps=40, sft_max_steps=200, dpo_max_steps=2, threads=1, allow_sft_only=True,
        delta_q=0.001,
        ltve_config_yaml="critic: {hidden_dims: [16], n_steps: 3}",
        distill_config_yaml=f"temperature: 0.0\nprompt: {COMPACT_PROMPT}",
        sft_config_yaml=("lora: {enabled: false}\nact_only_copies: false\nvalidation_share: 0.0\n"
                         "optim: {learning_rate: 0.01, batch_size: 4}"),
        sampling_config_yaml=f"generation: {{max_new_tokens: 40, temperature: 1.0}}\nprompt: {COMPACT_PROMPT}",
        gate_config_yaml=("eval_rows: 12\njudge_samples: 0\n"
                          f"policy: {{generation: {{max_new_tokens: 40}}, prompt: {COMPACT_PROMPT}}}\n"
                          "ab: {cohort_skus: 10, cohort_launch_days: 1, bootstrap: 50}"),
    ),
    "small": TrainingOptions.build(
        model_size="small", corpus_prompts=300, n_prompts=120, sampling_prompts=48, n_candidates=6,
        ltve_steps=1500, sft_max_steps=60, dpo_max_steps=20, threads=2, allow_sft_only=True,
        distill_config_yaml=f"prompt: {SHORT_PROMPT}",
        # full fine-tuning on the [ACT_ONLY] twins: LoRA on the random-init base never learns the action format
        # in this budget (bench/results/alignment.md); DPO keeps an all-linear LoRA for its reference
        sft_config_yaml=("lora: {enabled: false}\nmax_full_examples: 0\n"
                         "optim: {learning_rate: 0.003, batch_size: 2}"),
        # NLL term on the chosen action + parse-rate guard (aigp.align.dpo): blind DPO at this learning rate
        # destroyed the answer format in the reduced evaluation
        dpo_config_yaml=DPO_ALL_LINEAR_YAML,
        sampling_config_yaml=f"generation: {{max_new_tokens: 24, temperature: 1.0}}\nprompt: {SHORT_PROMPT}",
        gate_config_yaml=("eval_rows: 60\njudge_samples: 8\njudge_max_new_tokens: 160\n"
                          f"policy: {{generation: {{max_new_tokens: 24}}, "
                          f"prompt: {SHORT_PROMPT}}}\nab: {{cohort_skus: 40, cohort_launch_days: 2}}"),
    ),
}


PRESETS["demo"] = TrainingOptions.build(
    model_size="tiny", corpus_prompts=300, n_prompts=2000, sampling_prompts=48, n_candidates=8,
    ltve_steps=1500, sft_max_steps=240, dpo_max_steps=20, threads=2, allow_sft_only=True,
    distill_config_yaml=f"temperature: 0.0\nprompt: {COMPACT_PROMPT}",
    sft_config_yaml=("lora: {enabled: false}\nact_only_copies: false\nvalidation_share: 0.0\n"
                     "optim: {learning_rate: 0.003, batch_size: 16, warmup: 0.03}"),
    dpo_config_yaml=DPO_ALL_LINEAR_YAML,
    sampling_config_yaml=f"generation: {{max_new_tokens: 40, temperature: 1.0}}\nprompt: {COMPACT_PROMPT}",
    gate_config_yaml=("eval_rows: 60\njudge_samples: 0\n"
                      f"policy: {{generation: {{max_new_tokens: 40}}, prompt: {COMPACT_PROMPT}}}\n"
                      "ab: {cohort_skus: 40, cohort_launch_days: 2}"),
)


def parse_parameters(name: str, pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> pipeline arguments typed by the pipeline's signature (errors name the key)."""
    import inspect

    signature = inspect.signature(pipeline_function(name).pipeline_func)  # type: ignore[attr-defined]
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"--param {pair!r}: expected KEY=VALUE")
        if key not in signature.parameters:
            raise ValueError(f"--param {key}: the {name} pipeline has no such parameter "
                             f"(parameters: {', '.join(signature.parameters)})")
        kind = signature.parameters[key].annotation
        try:
            if kind is bool:
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                out[key] = value.lower() in ("true", "1", "yes")
            elif kind in (int, float):
                out[key] = kind(value)
            else:
                out[key] = value.replace("\\n", "\n")
        except ValueError:
            raise ValueError(f"--param {key}={value!r}: expected {getattr(kind, '__name__', kind)}") from None
    return out


@dataclass(frozen=True)
class LogWindow:
    first_day: dt.date
    last_day: dt.date


def log_window(logs_dir: str | Path) -> LogWindow:
    """First and last day priced in a market log directory."""
    import pandas as pd

    path = Path(logs_dir) / "decisions.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{logs_dir}: not a market log directory (no decisions.parquet)")
    days = pd.to_datetime(pd.read_parquet(path, columns=["date"])["date"])
    return LogWindow(days.min().date(), days.max().date())


def local_parameters(logs_dir: str | Path, *, online_days: int = 7, **overrides: Any) -> dict[str, Any]:
    """Training-pipeline arguments for a market log: the whole log as the data window, its last
    ``online_days`` days into the online store; ``overrides`` are any other pipeline parameters."""
    window = log_window(logs_dir)
    end = window.last_day + dt.timedelta(days=1)
    params: dict[str, Any] = {
        "market_logs_uri": str(Path(logs_dir).resolve()),
        "data_start": window.first_day.isoformat(),
        "data_end": end.isoformat(),
        "online_start": max(window.first_day, end - dt.timedelta(days=online_days)).isoformat(),
        "online_end": end.isoformat(),
    }
    params.update(overrides)
    return params


def run_local(name: str, arguments: Mapping[str, Any], pipeline_root: str | Path, *, caching: bool = True) -> Any:
    """Run a pipeline under kfp.local (SubprocessRunner, this virtualenv). Raises ``RuntimeError`` naming the
    failed task (for the training pipeline, ``gate-failed`` carries the gate's reasons)."""
    from kfp import local

    Path(pipeline_root).mkdir(parents=True, exist_ok=True)
    root = Path(pipeline_root).resolve()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True,
               enable_caching=caching, cache_root=str(root / ".cache"))
    return pipeline_function(name)(**dict(arguments))


def latest_output(pipeline_root: str | Path, task: str, output: str) -> Path | None:
    """The newest ``<pipeline_root>/<run>/<task>/<output>`` written by a local run (None if there is none)."""
    candidates = sorted(Path(pipeline_root).glob(f"*/{task}/{output}"), key=lambda p: p.stat().st_mtime)
    return candidates[-1] if candidates else None


def submit_arguments(name: str, *, host: str, experiment: str | None, run_name: str | None,
                     parameters: Mapping[str, Any], package: str | Path | None = None) -> dict[str, Any]:
    """The keyword arguments of ``kfp.Client(host).create_run_from_pipeline_package`` for a pipeline run."""
    if not host.startswith(("http://", "https://")):
        raise ValueError(f"host={host!r}: expected the Kubeflow Pipelines API URL (http[s]://...)")
    package = Path(package) if package else IR_FILES[name]
    if not package.exists():
        raise FileNotFoundError(f"{package}: compile it first (aigp pipeline compile)")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return {"pipeline_file": str(package), "arguments": dict(parameters),
            "experiment_name": experiment or DEFAULT_EXPERIMENTS[name],
            "run_name": run_name or f"{DEFAULT_EXPERIMENTS[name]}-{stamp}", "enable_caching": True}


def submit(name: str, *, host: str, experiment: str | None = None, run_name: str | None = None,
           parameters: Mapping[str, Any] | None = None, package: str | Path | None = None,
           namespace: str | None = None, client_factory: Callable[..., Any] | None = None,
           images: Images | None = None) -> dict[str, Any]:
    """Create a run of the compiled pipeline on ``host``; returns the run id, name and experiment. The token
    comes from ``KF_PIPELINES_SA_TOKEN_PATH``/in-cluster credentials, as kfp.Client reads them. ``images``
    other than the defaults: the pipeline is compiled for them and that package is submitted."""
    if images is not None and images != DEFAULT_IMAGES:
        if package is not None:
            raise ValueError("give either a compiled package or the images to compile the pipeline for, not both")
        import tempfile

        with tempfile.TemporaryDirectory(prefix="aigp-pipeline-") as tmp:
            compiled = compile_pipelines(tmp, (name,), images)[name]
            return submit(name, host=host, experiment=experiment, run_name=run_name, parameters=parameters,
                          package=compiled, namespace=namespace, client_factory=client_factory)
    kwargs = submit_arguments(name, host=host, experiment=experiment, run_name=run_name,
                              parameters=parameters or {}, package=package)
    if client_factory is None:
        import kfp

        client_factory = kfp.Client
    namespace = namespace or os.environ.get("AIGP_KFP_NAMESPACE")
    client = client_factory(host=host, **({"namespace": namespace} if namespace else {}))
    result = client.create_run_from_pipeline_package(**kwargs)
    return {"run_id": getattr(result, "run_id", None), "run_name": kwargs["run_name"],
            "experiment": kwargs["experiment_name"], "host": host}
