"""Reports of saved runs: what the ``report`` command shows and writes.

    analysis.py   pure: a run as a load curve, the knee (Kneedle), saturation, the highest load meeting an SLO,
                  ``sweep_summary`` (the lines ``bench`` ends a sweep with)
    content.py    the facts and tables of a run, as plain strings (shared by the three outputs below)
    series.py     requests.jsonl and server_metrics.jsonl as time series and distributions
    terminal.py   the shell's view: rich tables, bars and sparklines within 80 columns
    plots.py      PNGs with matplotlib (optional extra ``report``, imported lazily)
    html.py       one self-contained HTML page (PNGs as data: URIs, inline CSS, no external request)
    markdown.py   report.md with the PNGs next to it

Nothing heavy is imported here: ``benchctl -e help`` must not pay for matplotlib.
"""
