"""``models`` and ``info``: the model zoo and one model's costs."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Column, Table

from .common import (CheckpointOpt, ClassesOpt, ModelOpt, SizeOpt, TrustOpt, VariantOpt, app,
                     console, parse_size, user_errors)


@app.command("models")
def models_cmd() -> None:
    """List the registered models."""
    from ..models import MODELS

    table = Table(Column("name", no_wrap=True), Column("task", no_wrap=True),
                  "official params", "paper params")
    for spec in MODELS.values():
        table.add_row(spec.name, spec.task,
                      f"{spec.official_params:,}" if spec.official_params else "-",
                      f"{spec.paper.params_m}M" if spec.paper else "-")
    console.print(table)


@app.command("info")
@user_errors
def info_cmd(variant: VariantOpt = None, model: ModelOpt = None, input_size: SizeOpt = None,
             checkpoint: CheckpointOpt = None, trust_checkpoint: TrustOpt = False,
             num_classes: ClassesOpt = None,
             as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Parameters and MACs per component and in total, with each component's tensor shapes."""
    from ..api import create_model
    from ..models import build_skeleton, get_spec, resolve_name
    from ..models.complexity import analyze

    name = resolve_name(variant, model)
    size = parse_size(input_size)
    if size is not None:                 # a bad size fails before the checkpoint is read
        build_skeleton(name).check_input_size(*size)
    net = create_model(name, num_classes=num_classes, checkpoint=checkpoint,
                       trust_checkpoint=trust_checkpoint)
    height, width = size or net.default_input_size
    cost = analyze(net, height, width)
    paper = get_spec(name).paper
    if as_json:
        payload = asdict(cost) | {"paper": asdict(paper) if paper else None}
        typer.echo(json.dumps(payload, indent=2))
        return
    _print_cost(cost, paper)


def _print_cost(cost: object, paper: object) -> None:
    h, w = cost.input_size
    table = Table(title=f"{cost.name} at {h}x{w}",
                  caption="GMACs: conv + matmul. mmcv: plus BN, activation and bias element "
                          "operations, the convention of the papers' FLOPs.")
    for col in ("component", "params", "GMACs", "GMACs (mmcv)", "MAC share"):
        table.add_column(col, justify="left" if col == "component" else "right")
    total = cost.total
    for name, c in cost.components.items():
        table.add_row(name, f"{c.params:,}", f"{c.macs / 1e9:.3f}", f"{c.macs_mmcv / 1e9:.3f}",
                      f"{100 * c.macs / total.macs:.1f}%")
    table.add_row("total", f"{total.params:,}", f"{total.macs / 1e9:.3f}",
                  f"{total.macs_mmcv / 1e9:.3f}", "100%", style="bold", end_section=True)
    if paper is not None:
        table.add_row("paper", f"{paper.params_m}M", "",
                      f"{paper.gmacs}" if paper.gmacs is not None else "-", "", style="dim")
    console.print(table)
    shapes = Table(title="tensor interface", show_lines=False)
    for col in ("component", "inputs", "outputs"):
        shapes.add_column(col)
    for name, c in (cost.components or {"total": total}).items():
        shapes.add_row(name, _shapes(c.inputs), _shapes(c.outputs), end_section=True)
    console.print(shapes)


def _shapes(shapes: dict[str, tuple[int, ...]]) -> str:
    return "\n".join(f"{n} {'x'.join(map(str, s))}" for n, s in shapes.items())
