"""The HTML pieces the report is assembled from: escaping, tables, embedded pictures, the page.

Every value that came from a run (prompts, rationales, failures, names) goes through `esc`; the
page links nothing and runs nothing, so it can be opened from an e-mail or an archive.
"""

from __future__ import annotations

import base64
import html
import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #212529; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #dee2e6; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .88rem; }
th, td { border: 1px solid #dee2e6; padding: .25rem .5rem; vertical-align: top; text-align: left; }
th { background: #f1f3f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre, .prompt { white-space: pre-wrap; background: #f8f9fa; border: 1px solid #e9ecef; padding: .6rem;
               font-size: .85rem; }
img { max-width: 100%; }
.muted { color: #6c757d; } .kept { color: #2a9d8f; font-weight: 600; } .failed { color: #e76f51; }
details summary { cursor: pointer; }
table.diff { font-family: ui-monospace, monospace; font-size: .8rem; border: 1px solid #dee2e6; }
table.diff td { border: none; padding: 0 .3rem; white-space: pre-wrap; }
.diff_header { background-color: #e0e0e0; } td.diff_header { text-align: right; }
.diff_next { background-color: #c0c0c0; }
.diff_add { background-color: #aaffaa; } .diff_chg { background-color: #ffff77; } .diff_sub { background-color: #ffaaaa; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def num(value: float | None, digits: int = 2) -> str:
    """A number for a table cell; "-" where there is none (a failed candidate has no reward)."""
    return "-" if value is None else f"{value:.{digits}f}"


def table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    """An HTML table; `rows` hold ready HTML (escape values first), `numeric` columns align right."""
    numeric = numeric or set()
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def png(figure: Figure, alt: str) -> str:
    """The figure as an <img> with an embedded base64 PNG (Agg canvas; no pyplot state)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def details(summary: str, content_html: str) -> str:
    """A folded block: long prompts stay out of the way until asked for."""
    return f"<details><summary>{esc(summary)}</summary>{content_html}</details>"


def page(title: str, header_html: str, sections: list[tuple[str, str]]) -> str:
    """The whole document: a title, a header paragraph, then one <h2> per (title, HTML) section."""
    body = "\n".join(f"<h2>{esc(name)}</h2>\n{content}" for name, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head>"
        f"<body><h1>DRPO run report</h1>{header_html}\n{body}\n</body></html>\n"
    )
