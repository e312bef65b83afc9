"""The self-contained HTML report: one file with the run's facts, the sweep analysis, every table and every PNG
embedded as a ``data:`` URI, inline CSS and no external reference of any kind -- it opens offline, from a mail
attachment or a login node's scratch, and its Content-Security-Policy forbids the browser to fetch anything.

A tiny inline script marks ``<body data-images-ok="yes">`` once every image has decoded with a non-zero size,
so a headless browser (the integration test) can tell a rendered page from a broken one from the DOM alone.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchctl import __version__
from benchctl.bench.results import RunResult, now_iso
from benchctl.report.content import DataTable, facts, notes, tables, who
from benchctl.report.plots import Plot

# Nothing may be fetched: images only from data: URIs, style and script only inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd;
     padding-bottom: 0.2em; margin-top: 1.8em; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-variant-numeric: tabular-nums; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e5e5e5; text-align: right; white-space: nowrap; }
th { background: #f4f4f6; } th:first-child, td:first-child { text-align: left; }
table.facts td { text-align: left; white-space: normal; } table.facts td:first-child { font-weight: 600; }
tr.flagged td { color: #b00020; font-weight: 600; }
.note { color: #555; font-size: 0.9em; }
ul.analysis li { margin: 0.3em 0; } ul.analysis b { font-weight: 600; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
.missing { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.5em 1em; }
footer { margin-top: 3em; color: #888; font-size: 0.85em; }
"""

# Sets data-images (how many) and data-images-ok ("yes", or "no: <alt of the broken ones>") on <body>.
CHECK_IMAGES = """(function () {
  function check() {
    var imgs = Array.prototype.slice.call(document.images);
    var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
    document.body.setAttribute("data-images", String(imgs.length));
    document.body.setAttribute("data-images-ok",
      bad.length ? "no: " + bad.map(function (i) { return i.alt; }).join(", ") : "yes");
  }
  if (document.readyState === "complete") { check(); } else { window.addEventListener("load", check); }
})();"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def table_html(table: DataTable) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in table.headers)
    flagged = ' class="flagged"'
    rows = "".join(
        f"<tr{flagged if i in table.flagged else ''}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>"
        for i, row in enumerate(table.rows))
    note = f'<p class="note">{_e(table.note)}</p>' if table.note else ""
    return f"<h3>{_e(table.title)}</h3>\n<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{note}"


def image_html(plot: Plot) -> str:
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    return (f'<figure id="plot-{_e(plot.name)}"><img alt="{_e(plot.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption><b>{_e(plot.title)}</b>: {_e(plot.caption)}</figcaption></figure>")


def _config_rows(config: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        text = v if isinstance(v, str) else json.dumps(v, default=str)
        return text if len(text) <= 300 else text[:300] + " ..."

    return "".join(f"<tr><td>{_e(k)}</td><td>{_e(value(v))}</td></tr>" for k, v in config.items())


def render(run: RunResult, plots: Sequence[Plot], lines: Sequence[str], *, plots_note: str = "") -> str:
    """The page as a string. ``lines``: the sweep analysis; ``plots_note``: why there are no plots, if so."""
    sections = [
        '<section id="facts"><h2>Run</h2><table class="facts">'
        + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in facts(run)) + "</table></section>"]
    if lines:
        items = "".join(f"<li><b>{_e(line.split(':', 1)[0])}</b>:{_e(line.split(':', 1)[1])}</li>" if ":" in line
                        else f"<li>{_e(line)}</li>" for line in lines)
        sections.append(f'<section id="analysis"><h2>Sweep analysis</h2><ul class="analysis">{items}</ul></section>')
    body = "\n".join(table_html(t) for t in tables(run))
    body += "".join(f'<p class="note">{_e(n)}</p>' for n in notes(run))
    sections.append(f'<section id="tables"><h2>Results</h2>{body}</section>')
    if plots:
        sections.append('<section id="plots"><h2>Plots</h2>' + "\n".join(image_html(p) for p in plots)
                        + "</section>")
    elif plots_note:
        sections.append(f'<section id="plots"><h2>Plots</h2><p class="missing">{_e(plots_note)}</p></section>')
    if run.config:
        sections.append(f'<section id="config"><h2>Configuration</h2><table class="facts">'
                        f"{_config_rows(run.config)}</table></section>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>benchctl report {_e(run.run_id)}</title>
<style>{STYLE}</style></head>
<body data-images-ok="pending">
<header id="top"><h1>benchctl report: {_e(who(run))}</h1><p class="sub">run {_e(run.run_id)}</p></header>
{chr(10).join(sections)}
<footer>Written by benchctl {_e(__version__)} at {_e(now_iso()[:19].replace("T", " "))} UTC from
{_e(run.path or run.run_id)}. Self-contained: nothing on this page is fetched from anywhere.</footer>
<script>{CHECK_IMAGES}</script>
</body></html>
"""


def write_html(run: RunResult, plots: Sequence[Plot], lines: Sequence[str], path: Path, *,
               plots_note: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(run, plots, lines, plots_note=plots_note), encoding="utf-8")
    return path


__all__ = ["CSP", "render", "table_html", "write_html"]
