"""KFP components: register a gated candidate in the model registry (logic in
``aigp.registry.model_registry``), or end the run with a reason (the gate's verdict)."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Model

from aigp.components._image import AIGP_IMAGE


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def register_model(
    model: Input[Model],
    gate_json: Input[Artifact],
    gate_report: Input[HTML],
    data_start: str,
    data_end: str,
    model_name: str = "aigp-pricing",
    pipeline_run_id: str = "",
    code_version: str = "",
    description: str = "",
) -> int:
    """Register ``model`` as a new candidate version of ``model_name`` with its gate report (JSON + HTML),
    the gate's metrics, the data window ``[data_start, data_end]`` (ISO days), the code version (""
    = ``AIGP_CODE_VERSION`` or the git SHA) and the pipeline run id. Returns the version number.

    The registry is MLflow's (``MLFLOW_TRACKING_URI``; SQLite + local artifacts by default). Approval and
    promotion are a person's decision (``aigp registry approve|promote``), never this step's."""
    import math

    from aigp.gate_report import GateReport, read_gate_result
    from aigp.registry.model_registry import ModelRegistry

    report = GateReport.from_json(gate_json.path, gate_report.path)
    data = read_gate_result(gate_json.path)
    metrics = {k: float(v) for k, v in data.get("candidate", {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    info = ModelRegistry().register_candidate(model.path, report, metrics, model_name=model_name,
                                              data_window=(data_start, data_end), pipeline_run_id=pipeline_run_id,
                                              code_version=code_version or None, description=description)
    print(f"registered {info.name} v{info.version} ({info.state}, gate {info.gate_status}) -> {info.storage_uri}")
    return int(info.version)


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def fail_run(reason: str) -> None:
    """End the run as failed with ``reason`` (e.g. the offline gate's verdict and reasons)."""
    raise RuntimeError(reason)

