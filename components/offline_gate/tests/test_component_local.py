"""offline_gate under kfp.local (a subprocess of this virtualenv, as a KFP task): the report output is an
``.html`` file and the next step receives it under that name; in the compiled IR it is an ``system.HTML``
artifact, the type KFP's UI renders as a page."""

import pytest
import yaml
from kfp import dsl, local
from kfp.dsl import HTML, Input

from aigp.components._image import AIGP_IMAGE
from aigp.components.offline_gate.component import offline_gate
from aigp.pipelines.runner import IR_FILES


@dsl.component(base_image=AIGP_IMAGE, install_kfp_package=False)
def report_file_name(report: Input[HTML]) -> str:
    """What a downstream step (register_model) gets: the file name of the gate's report."""
    import os

    return os.path.basename(report.path)


@dsl.pipeline(name="offline-gate-local")
def gate_pipeline(candidate_uri: str, heldout_uri: str, ltve_uri: str, gate_yaml: str) -> str:
    candidate = dsl.importer(artifact_uri=candidate_uri, artifact_class=dsl.Model, reimport=False)
    heldout = dsl.importer(artifact_uri=heldout_uri, artifact_class=dsl.Dataset, reimport=False)
    ltve = dsl.importer(artifact_uri=ltve_uri, artifact_class=dsl.Model, reimport=False)
    gate = offline_gate(candidate=candidate.output, heldout_set=heldout.output, ltve_model=ltve.output,
                        config_yaml=gate_yaml, compare_champion=False)
    return report_file_name(report=gate.outputs["report"]).output


@pytest.mark.slow
def test_the_report_is_an_html_file_downstream(gate_inputs, gate_yaml, tmp_path) -> None:
    root, _ = gate_inputs
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               raise_on_error=True)
    task = gate_pipeline(candidate_uri=str(root / "candidate"), heldout_uri=str(root / "heldout.parquet"),
                         ltve_uri=str(root / "ltve"), gate_yaml=gate_yaml)
    assert task.output == "report.html"
    (task_dir,) = (tmp_path / "root").glob("*/offline-gate")
    assert sorted(p.name for p in task_dir.iterdir() if p.name.startswith("report")) == ["report.html"]
    assert (task_dir / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_compiled_ir_types_the_report_as_html() -> None:
    """Every offline-gate of the committed training IR outputs ``report`` as system.HTML, and every component
    that takes it (register_model's ``gate_report``, the condition groups passing it on) declares HTML too."""
    components = next(yaml.safe_load_all(IR_FILES["training"].read_text()))["components"]
    gates = [name for name in components if name.startswith("comp-offline-gate")]
    assert gates
    for name in gates:
        report = components[name]["outputDefinitions"]["artifacts"]["report"]["artifactType"]
        assert report == {"schemaTitle": "system.HTML", "schemaVersion": "0.0.1"}, (name, report)
    takers = {(comp, key): art["artifactType"]["schemaTitle"] for comp, spec in components.items()
              for key, art in spec.get("inputDefinitions", {}).get("artifacts", {}).items()
              if key == "gate_report" or (key.startswith("pipelinechannel--offline-gate") and key.endswith("-report"))}
    assert any(key == "gate_report" for _, key in takers)
    assert set(takers.values()) == {"system.HTML"}, takers
