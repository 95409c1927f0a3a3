"""The decision report: one self-contained HTML page per pricing run, for pricing operators.

For any SKU of the run the page shows the decision (discount in effect, change, new discount, whether the
model's action was projected onto A_safe or the platform fell back, and why), the model's rationale, the
features the prompt was built from (grouped by feature view, missing ones marked), the product text the
model saw, and yesterday next to today: yesterday's discount and change (from the features) and, when the
same output directory priced yesterday too, yesterday's decision and rationale.

Everything that comes from a model or from people (rationales, raw outputs, descriptions, reviews, brand
names, details) is escaped (``html.escape``) and stripped of control characters: the page renders what was
written, never runs it. A table lists every SKU shown; details are collapsible ``<details>`` blocks with an
anchor per SKU (``report.html#sku-17``); runs larger than ``max_skus`` show the SKUs an operator should look
at first (unpriced, fallbacks, projections, then the largest moves) and say how many are left out.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from aigp.io import write_text
from aigp.schema import FEATURES, Group, features_in

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_GROUP_TITLES = {Group.SKU: "Product and goals", Group.PRICING: "Pricing history", Group.PERFORMANCE: "Performance",
                 Group.COMPETITOR: "Competitors", Group.CALENDAR: "Calendar (day priced)"}

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em; color: #222;
       max-width: 1250px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 2px 7px; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td.t, th.t { text-align: left; }
tr.fallback td { background: #fff4e0; } tr.unpriced td { background: #fde2e1; } tr.projected td { background: #eef3ff; }
details { border: 1px solid #ddd; margin: 0.4em 0; padding: 0.3em 0.8em; } summary { cursor: pointer; }
pre { white-space: pre-wrap; word-wrap: break-word; background: #f8f8f8; padding: 0.6em; font-size: 0.85em;
      max-height: 28em; overflow: auto; }
.note { color: #555; font-size: 0.9em; } .miss { color: #b00; } .cols { display: flex; gap: 1.5em; flex-wrap: wrap; }
"""


def safe_text(value: Any) -> str:
    """Untrusted text as HTML: control and bidi characters removed, then escaped."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return html.escape(_CONTROL.sub("", str(value)), quote=True)


MAX_TEXT_CHARS = 1500  # longer texts (a 100 kB review) are cut in the page; the rationales file holds them whole


def clipped_text(value: Any, limit: int = MAX_TEXT_CHARS) -> str:
    """:func:`safe_text` of the first ``limit`` characters, and a note of how many more the rationales file holds."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    text = str(value)
    if len(text) <= limit:
        return safe_text(text)
    return (safe_text(text[:limit]) + f"\n<span class='note'>… {len(text) - limit:,} more characters (of "
            f"{len(text):,}): the full text is in the rationales file</span>")


def _num(value: Any, fmt: str = "{:.4g}") -> str:
    if value is None or value is pd.NA:
        return "—"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return safe_text(value)
    if math.isnan(number):
        return "—"
    return fmt.format(number)


def _change(value: Any) -> str:
    return _num(value, "{:+.4f}")


def _status(row: Mapping[str, Any]) -> str:
    if not row["priced"]:
        return "unpriced"
    if row["fallback"]:
        return "fallback"
    return "projected" if row["projected"] else "model"


def _status_text(row: Mapping[str, Any]) -> str:
    status = _status(row)
    if status in ("fallback", "unpriced"):
        return f"{status}: {safe_text(row.get('fallback_reason'))}"
    return status


def _order(records: pd.DataFrame) -> pd.DataFrame:
    """What an operator should read first: unpriced, fallbacks, projections, then the largest moves."""
    rank = (~records["priced"]).astype(int) * 8 + records["fallback"].astype(int) * 4 + records["projected"].astype(
        int) * 2
    return records.assign(_rank=rank, _move=records["discount_change"].abs()).sort_values(
        ["_rank", "_move", "sku_id"], ascending=[False, False, True], kind="stable").drop(columns=["_rank", "_move"])


def _features_table(row: Mapping[str, Any]) -> str:
    missing = {m for m in str(row.get("missing_features") or "").split(",") if m}
    blocks = []
    for group, title in _GROUP_TITLES.items():
        cells = []
        for feature in features_in(group):
            if feature.name in ("description", "review_digest"):
                continue
            value = row.get(feature.name)
            shown = safe_text(value) if feature.dtype == "string" else _num(value)
            label = '<span class="miss">missing</span>' if feature.name in missing else shown
            unit = f" {safe_text(feature.unit)}" if feature.unit and feature.unit not in ("ratio", "") else ""
            cells.append(f'<tr><td class="t">{feature.name}</td><td>{label}{unit if label == shown else ""}</td></tr>')
        blocks.append(f'<div><b>{html.escape(title)}</b><table>{"".join(cells)}</table></div>')
    return f'<div class="cols">{"".join(blocks)}</div>'


def _yesterday_block(row: Mapping[str, Any], yesterday: Mapping[int, Mapping[str, Any]] | None) -> str:
    lines = [f"<tr><td class='t'>discount in effect yesterday (d<sub>t-1</sub>)</td>"
             f"<td>{_num(row.get('prev_discount'))}"
             "</td></tr>",
             f"<tr><td class='t'>yesterday's change (a<sub>t-1</sub>)</td><td>{_change(row.get('last_action_1'))}</td>"
             "</tr>"]
    previous = (yesterday or {}).get(int(row["sku_id"]))
    if previous is not None:
        lines.append(f"<tr><td class='t'>yesterday's run</td><td>{_num(previous.get('new_discount'))} "
                     f"({_change(previous.get('discount_change'))}, {_status_text(previous)}, "
                     f"v{safe_text(previous.get('model_version'))})</td></tr>")
    table = f"<table>{''.join(lines)}</table>"
    if previous is not None and previous.get("rationale"):
        table += f"<p class='note'>Yesterday's rationale:</p><pre>{clipped_text(previous.get('rationale'))}</pre>"
    elif yesterday is None:
        table += ("<p class='note'>No run of yesterday in this output directory: yesterday is shown from the "
                  "features.</p>")
    return table


def _detail(row: Mapping[str, Any], yesterday: Mapping[int, Mapping[str, Any]] | None) -> str:
    sku = int(row["sku_id"])
    status = _status(row)
    head = (f"SKU {sku} · {safe_text(row.get('category'))} · {_num(row.get('prev_discount'))} → "
            f"{_num(row.get('new_discount'))} ({_change(row.get('discount_change'))}) · {_status_text(row)}")
    decision = [
        ("group / model version", f"{safe_text(row.get('group'))} / v{safe_text(row.get('model_version'))}"),
        ("new discount (d<sub>t</sub>)", _num(row.get("new_discount"))),
        ("change applied (a<sub>t</sub>)", _change(row.get("discount_change"))),
        ("the model proposed", _change(row.get("proposed_change"))),
        ("status", _status_text(row)),
        ("attempts", _num(row.get("attempts"), "{:.0f}")),
    ]
    if row.get("detail"):
        decision.append(("detail", clipped_text(row.get("detail"))))
    decision_html = "".join(f"<tr><td class='t'>{k}</td><td class='t'>{v}</td></tr>" for k, v in decision)
    rationale = row.get("rationale") or ""
    parts = [f"<div class='cols'><div><b>Today</b><table>{decision_html}</table></div>"
             f"<div><b>Yesterday</b>{_yesterday_block(row, yesterday)}</div></div>",
             "<b>Rationale</b>" + (f"<pre>{clipped_text(rationale)}</pre>" if rationale else
                                   "<p class='note'>(none: the decision did not come from a model rationale)</p>")]
    if status != "model" and row.get("raw_output"):
        parts.append(f"<details><summary>raw model output</summary><pre>{clipped_text(row.get('raw_output'))}</pre>"
                     "</details>")
    parts.append("<b>Features</b>" + _features_table(row))
    parts.append(f"<b>Description</b><pre>{clipped_text(row.get('description')) or '(none)'}</pre>"
                 f"<b>Reviews</b><pre>{clipped_text(row.get('review_digest')) or '(none)'}</pre>")
    return f'<details id="sku-{sku}" class="{status}"><summary>{head}</summary>{"".join(parts)}</details>'


def _summary_html(summary: Mapping[str, Any]) -> str:
    groups = "".join(
        f"<tr><td class='t'>{safe_text(g)}</td><td class='t'>v{safe_text(a.get('model_version'))} "
        f"({safe_text(a.get('model_ref'))})</td><td>{a.get('skus')}</td><td>{a.get('priced')}</td>"
        f"<td>{a.get('fallbacks')}</td><td>{a.get('projected')}</td><td>{_num(a.get('mean_new_discount'))}</td>"
        f"<td>{_num(a.get('mean_abs_change'))}</td></tr>" for g, a in summary.get("groups", {}).items())
    reasons = ", ".join(f"{safe_text(k)} {v}" for k, v in summary.get("fallbacks_by_reason", {}).items()) or "none"
    paths = summary.get("paths", {})
    return (f"<p>{summary.get('skus', 0)} SKUs active: {summary.get('priced', 0)} priced "
            f"({summary.get('model_actions', 0)} model actions, {summary.get('projected', 0)} projected onto A_safe, "
            f"{summary.get('fallbacks', 0)} fallbacks: {reasons}), {summary.get('unpriced', 0)} not priced "
            "(discount in effect unknown).</p>"
            "<table><tr><th class='t'>group</th><th class='t'>model</th><th>SKUs</th><th>priced</th><th>fallbacks</th>"
            f"<th>projected</th><th>mean new discount</th><th>mean |a|</th></tr>{groups}</table>"
            f"<p class='note'>Decisions log: {safe_text(paths.get('decisions'))}; rationales: "
            f"{safe_text(paths.get('rationales'))}.</p>")


def render_decision_report(records: pd.DataFrame, summary: Mapping[str, Any], *,
                           yesterday: pd.DataFrame | None = None, max_skus: int = 2000) -> str:
    ordered = _order(records)
    shown = ordered.head(max_skus)
    previous = None if yesterday is None else {int(r["sku_id"]): r for r in yesterday.to_dict("records")}
    rows = []
    for row in shown.to_dict("records"):
        sku = int(row["sku_id"])
        rows.append(f'<tr class="{_status(row)}"><td><a href="#sku-{sku}">{sku}</a></td>'
                    f'<td class="t">{safe_text(row.get("category"))}</td><td class="t">{safe_text(row.get("group"))}'
                    f'</td><td class="t">v{safe_text(row.get("model_version"))}</td>'
                    f'<td>{_num(row.get("prev_discount"))}</td><td>{_change(row.get("last_action_1"))}</td>'
                    f'<td>{_change(row.get("discount_change"))}</td><td>{_num(row.get("new_discount"))}</td>'
                    f'<td class="t">{_status_text(row)}</td></tr>')
    table = ("<table><tr><th>SKU</th><th class='t'>category</th><th class='t'>group</th><th class='t'>model</th>"
             "<th>d<sub>t-1</sub></th><th>a<sub>t-1</sub></th><th>a<sub>t</sub></th><th>d<sub>t</sub></th>"
             f"<th class='t'>status</th></tr>{''.join(rows)}</table>")
    left_out = len(ordered) - len(shown)
    note = (f"<p class='note'>{left_out} more SKUs are in the decisions log and the rationales file; this page shows "
            f"the {len(shown)} to read first.</p>" if left_out else "")
    details = "".join(_detail(row, previous) for row in shown.to_dict("records"))
    title = f"Pricing decisions for {summary.get('date', '')}"
    find = ("<p><label>Go to SKU <input id='q' size='10' inputmode='numeric'></label> "
            "<button onclick=\"var s=document.getElementById('q').value.replace(/[^0-9]/g,'');"
            "var e=document.getElementById('sku-'+s);if(e){e.open=true;e.scrollIntoView();}\">open</button></p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{safe_text(title)}</title><style>{STYLE}</style></head>\n<body>\n<h1>{safe_text(title)}</h1>\n"
            f"<p class='note'>Model {safe_text(summary.get('model_name'))}, experiment "
            f"{safe_text(summary.get('experiment'))}. Untrusted text (rationales, outputs, descriptions, reviews) is "
            "shown escaped.</p>"
            f"<h2>Summary</h2>{_summary_html(summary)}<h2>Decisions</h2>{find}{note}{table}"
            f"<h2>Per SKU: features, rationale, decision, yesterday</h2>{details}\n</body></html>\n")


def write_decision_report(path: str | Path, records: pd.DataFrame, summary: Mapping[str, Any], *,
                          yesterday: pd.DataFrame | None = None, max_skus: int = 2000) -> Path:
    """Render and write the page atomically."""
    return write_text(path, render_decision_report(records, summary, yesterday=yesterday, max_skus=max_skus))


__all__ = ["FEATURES", "render_decision_report", "safe_text", "write_decision_report"]
