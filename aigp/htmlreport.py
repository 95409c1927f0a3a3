"""Self-contained HTML report pages: tables and matplotlib figures embedded as PNG data URIs, so a page
opens anywhere (a KFP artifact viewer, a mail attachment, a browser from S3) with no side files."""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em; color: #222;
       max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.text, th.text { text-align: left; }
tr.firing td { background: #fde2e1; } tr.quiet td { background: #e8f5e9; } tr.skipped td { color: #888; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 560px; } .note { color: #555; font-size: 0.9em; }
"""


def matplotlib_agg() -> Any:
    """pyplot on the non-interactive Agg backend (no display on servers and in pipelines)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """PNG bytes of a matplotlib figure; the figure is closed."""
    plt = matplotlib_agg()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def img_tag(png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def figure_html(png: bytes, caption: str) -> str:
    return f"<figure>{img_tag(png, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _cell(value: Any, fmt: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if fmt and isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt.format(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def html_table(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, columns: Sequence[str] | None = None, *,
               formats: Mapping[str, str] | None = None, row_class: str | None = None) -> str:
    """A table; text columns align left; ``row_class`` names a key whose value becomes the row's CSS class."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    if not records:
        return '<p class="note">(no rows)</p>'
    columns = list(columns or [c for c in records[0] if c != row_class])
    formats = formats or {}
    text = {c for c in columns if all(isinstance(r.get(c), str) for r in records if r.get(c) is not None)}
    head = "".join(f'<th class="{"text" if c in text else ""}">{html.escape(c)}</th>' for c in columns)
    body = []
    for r in records:
        cls = f' class="{html.escape(str(r[row_class]))}"' if row_class and r.get(row_class) else ""
        cells = "".join(f'<td class="{"text" if c in text else ""}">{_cell(r.get(c), formats.get(c))}</td>'
                        for c in columns)
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_page(title: str, sections: Iterable[tuple[str, str]], *, intro: str = "") -> str:
    """One page: a title, an optional intro paragraph (HTML) and (heading, HTML body) sections."""
    parts = [f"<h2>{html.escape(heading)}</h2>\n{body}" for heading, body in sections]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{intro}\n" + "\n".join(parts) + "\n</body></html>\n")
