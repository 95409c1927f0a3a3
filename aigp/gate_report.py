"""The offline gate's report: ``gate_report.json`` and ``gate_report.html`` (tables and plots a person reads
before approving), and :class:`GateReport` -- the verdict and where the two files live, the one type the
registry (``aigp.registry.model_registry``) accepts.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aigp.gate import GATE_HTML, GATE_JSON, GateResult
from aigp.io import write_json, write_text


class GateReportError(ValueError):
    """A gate report that cannot be read or has no verdict; the message says what."""


@dataclass(frozen=True)
class GateReport:
    """What the offline gate hands the registry: its verdict and where its HTML + JSON report live."""

    status: Literal["passed", "failed"]
    html_path: Path
    json_path: Path
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in ("passed", "failed"):
            raise GateReportError(f"gate_report.status={self.status!r}: expected 'passed' or 'failed'")

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @classmethod
    def from_json(cls, json_path: str | Path, html_path: str | Path | None = None) -> GateReport:
        """Read the verdict from a gate JSON report holding ``"passed": bool`` (or ``"status"``) and
        optionally ``"reasons"``; the HTML report defaults to the same name with ``.html``."""
        json_path = Path(json_path)
        try:
            data = json.loads(json_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GateReportError(f"gate report {json_path}: cannot read JSON ({exc})") from None
        if "passed" in data and isinstance(data["passed"], bool):
            status: Literal["passed", "failed"] = "passed" if data["passed"] else "failed"
        elif data.get("status") in ("passed", "failed"):
            status = data["status"]
        else:
            raise GateReportError(f"gate report {json_path}: needs 'passed': true|false or 'status': 'passed'|'failed'")
        reasons = tuple(str(r) for r in data.get("reasons", ()))
        return cls(status, Path(html_path) if html_path else json_path.with_suffix(".html"), json_path, reasons)


def write_gate_report(result: GateResult, out_dir: str | Path) -> GateReport:
    """Write ``gate_report.json`` and ``gate_report.html`` (atomically) into ``out_dir``; return the
    :class:`GateReport` pointing at them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / GATE_JSON, out / GATE_HTML
    write_json(json_path, _jsonable(result.as_dict()))
    write_text(html_path, gate_html(result))
    return GateReport(result.status, html_path, json_path, tuple(result.reasons))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (dt.date, Path)):
        return str(value)
    return value


# The evaluate-ltve metrics (aigp.ltve.evaluate) a person weighs Avg Q by: Avg Q ranks a candidate's actions only
# as well as the critic ranks actions. mc_* need the simulator log (the Monte-Carlo truth); on real logs only the
# expert-based and decile rows exist.
CRITIC_DIAGNOSTICS = (
    ("mc_spearman_within_state", "Spearman of Q vs Monte-Carlo returns among the actions of one state"),
    ("mc_pairwise_accuracy_gap", "share of action pairs (at least Δa apart) the critic orders as the market does"),
    ("mc_cda_vs_truth", "share of states where the critic prefers the truly better of expert and counterfactual"),
    ("mc_regret_share", "return lost by the Q-greedy action, as a share of the state's spread of returns"),
    ("mc_calibration_slope", "slope of Monte-Carlo return on Q (1 = calibrated levels)"),
    ("cda", "share of held-out expert rows where Q(expert action) > Q(counterfactual)"),
    ("eama", "share of held-out expert rows where the Q-greedy action is within ε of the expert's"),
    ("spearman_decile_gmv_14d", "Spearman of Q decile vs its realised 14-day GMV"),
    ("spearman_decile_roi_14d", "Spearman of Q decile vs its realised 14-day ROI"),
)


def critic_rows(evaluation: dict[str, Any]) -> list[dict[str, Any]]:
    """The critic's diagnostics in the gate report's order; a metric the evaluation did not measure says so."""
    def value(key: str) -> Any:
        found = evaluation.get(key)
        if found is not None:
            return found
        return "not measured (needs the simulator log)" if key.startswith("mc_") else "not measured"

    return [{"metric": key, "value": value(key), "meaning": meaning} for key, meaning in CRITIC_DIAGNOSTICS]


def gate_html(result: GateResult) -> str:
    from aigp.htmlreport import figure_html, html_page, html_table

    verdict = ("<p style=\"font-size:1.3em\"><b>PASSED</b>: the candidate may be approved by a person.</p>"
               if result.passed else
               "<p style=\"font-size:1.3em;color:#b00\"><b>FAILED</b>: the candidate cannot be approved.</p><ul>"
               + "".join(f"<li>{_esc(r)}</li>" for r in result.reasons) + "</ul>")
    if result.skipped:
        verdict += ("<p><b>Not checked</b> (skipped or switched off; the verdict says nothing about these):</p><ul>"
                    + "".join(f"<li>{_esc(r)}</li>" for r in result.skipped) + "</ul>")
    check_rows = [{"check": c.name, "value": c.value, "threshold": c.threshold, "rule": c.direction,
                   "status": c.status, "reason": c.reason,
                   "css": {"failed": "firing", "passed": "quiet", "skipped": "skipped"}[c.status]}
                  for c in result.checks]
    names = sorted(set(result.candidate) | set(result.champion or {}))
    metric_rows = [{"metric": n, "candidate": result.candidate.get(n),
                    "champion": (result.champion or {}).get(n)} for n in names]
    context_rows = [{"field": k, "value": json.dumps(_jsonable(v)) if not isinstance(v, str) else v}
                    for k, v in result.context.items() if k not in ("ab", "critic")]
    sections = [("Checks", html_table(check_rows, ["check", "value", "threshold", "rule", "status", "reason"],
                                      row_class="css")),
                ("Metrics (same held-out rows)", html_table(metric_rows)),
                ("Plots", figure_html(_plot_actions(result), "proposed discount change vs the expert's")
                 + figure_html(_plot_metrics(result), "offline metrics, candidate vs champion")),
                ("Evaluation context", html_table(context_rows))]
    critic = result.context.get("critic")
    sections.insert(2, ("The critic behind Avg Q", html_table(critic_rows(critic)) if critic else
                        "<p>Not given: the gate was run without the critic's evaluation (evaluate-ltve), so how well "
                        "Avg Q ranks actions is not shown here.</p>"))
    ab = result.context.get("ab")
    if ab:
        sections.append(("Simulated paired A/B vs price-sales", html_table(ab["ab_table"])))
    return html_page("Offline gate report", sections, intro=verdict)


def _esc(text: str) -> str:
    import html

    return html.escape(text)


def _plot_actions(result: GateResult) -> bytes:
    from aigp.htmlreport import figure_png, matplotlib_agg

    plt = matplotlib_agg()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    bins = np.linspace(-0.1, 0.1, 21)
    for name, values in result.actions.items():
        # the expert's filled underneath: a candidate that matches it draws over it, and both stay visible
        filled = name == "expert"
        ax.hist(values, bins=bins, histtype="stepfilled" if filled else "step", alpha=0.3 if filled else 1.0,
                linewidth=1.6, label=name)
    ax.set_xlabel("discount change a")
    ax.set_ylabel("rows")
    ax.legend()
    return figure_png(fig)


def _plot_metrics(result: GateResult) -> bytes:
    from aigp.htmlreport import figure_png, matplotlib_agg

    plt = matplotlib_agg()
    names = [n for n in ("mae", "eama", "eama_r", "kips", "compliance_rate", "parse_failure_rate")
             if n in result.candidate]
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [result.candidate[n] for n in names], width=0.4, label="candidate")
    if result.champion:
        ax.bar(x + 0.2, [result.champion.get(n, np.nan) for n in names], width=0.4, label="champion")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.legend()
    return figure_png(fig)


def read_gate_result(json_path: str | Path) -> dict[str, Any]:
    """The gate JSON report as a dict (what ``register_model`` and the CLI read)."""
    return json.loads(Path(json_path).read_text())
