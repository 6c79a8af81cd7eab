"""``seaformer-deploy report show DIR``: a report rendered in the terminal (rich).

Everything taken from the report goes through ``rich.text.Text``, never through markup: names,
paths and warnings are data, and a ``[red]`` or ``[/x]`` in them must print as it is.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .files import as_report
from .records import COMPONENTS, Report
from .summary import component_rows, measurement_table


def render(report: Report | dict, console: Console) -> None:
    report = as_report(report)
    exp, dev = report.export, report.device
    size = "x".join(map(str, exp.input.size))
    console.print(Text.assemble(
        (f"{exp.model.name} {size}", "bold"), f" ({exp.output.mode}) on ",
        (dev.name, "bold"), f" cpu{dev.core.index} - {report.status}, {report.created}"),
        highlight=False)
    console.print(Text(f"core choice: {dev.core.reason}; fingerprint "
                       f"{dev.fingerprint.digest}"), highlight=False)
    columns, rows, title = measurement_table(report)
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for col in columns:
        table.add_column(col, justify="left" if col == "artifact" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*map(Text, row))
    console.print(table)
    if report.components:
        comps = Table(title="components: median ms (share of their sum)", box=box.SIMPLE_HEAD)
        for col in ("", *COMPONENTS, "sum", "whole", "sum/whole"):
            comps.add_column(col, justify="left" if not col else "right", no_wrap=True)
        for row in component_rows(report):
            comps.add_row(*map(Text, row))
        console.print(comps)
    if report.noise:
        console.print(Text.assemble(("noise:", "bold"), " ", report.noise.diagnosis),
                      highlight=False)
    for line in report.events + report.warnings:
        console.print(Text.assemble(("warning:", "yellow"), " ", line), highlight=False)
