"""``export``: flags into ``api.export``, then the parity table and where the artifacts went."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from ..export import formats as fmts
from ..export.guard import interrupts_remembered
from .common import (CheckpointOpt, ClassesOpt, ModelOpt, SizeOpt, TrustOpt, VariantOpt, app,
                     console, csv, err_console, run_with_progress, user_errors)

if TYPE_CHECKING:
    from ..export.records import Manifest


@app.command("export")
@user_errors
def export_cmd(
    variant: VariantOpt = None, model: ModelOpt = None, checkpoint: CheckpointOpt = None,
    trust_checkpoint: TrustOpt = False, num_classes: ClassesOpt = None,
    input_size: SizeOpt = None,
    formats: Annotated[str, typer.Option(
        help=f"Comma-separated: {', '.join(fmts.names())}.")] = ",".join(fmts.export_defaults()),
    precisions: Annotated[str, typer.Option(
        help="Comma-separated: fp32, fp16, int8 (static INT8, calibrated on the sample images).")
    ] = "fp32,fp16",
    components: Annotated[bool, typer.Option(
        "--components/--no-components", help="Also export stem, context, spatial and head.")
    ] = True,
    output: Annotated[str, typer.Option(
        help="logits (1/8 resolution) or labels (resized to the input, then argmax).")
    ] = "logits",
    out: Annotated[Path, typer.Option("--out", "-o", help="Output root folder.")] = Path("models"),
    parity_gate: Annotated[bool, typer.Option(
        "--parity-gate/--no-parity-gate",
        help="Fail the export when an artifact misses the parity thresholds (else warn).")
    ] = True,
    fp32_io: Annotated[bool, typer.Option(
        "--fp32-io", help="FP16 artifacts take and return FP32 tensors (casts inside).")
    ] = False,
    rewrites: Annotated[bool, typer.Option(
        "--rewrites/--no-rewrites",
        help="Apply the deploy-form rewrites (export/rewrites.py); --no-rewrites exports the "
             "reference model as it is (folder suffix _naive).")] = True,
    ort_forms: Annotated[bool, typer.Option(
        "--ort-forms", help="Also save ONNX Runtime's optimised graph (.optimized.onnx) and ORT "
                            "format (.ort, for ONNX Runtime Mobile) of every .onnx.")] = False,
    pte_layout: Annotated[str, typer.Option(
        help="Layout of the .pte artifacts' 4-D inputs and outputs: nhwc (shape (1, H, W, C), "
             "no layout transposes at the graph's edges) or nchw.")] = "nhwc",
    seed: Annotated[int, typer.Option(help="Seed of the synthetic weights (no checkpoint).")] = 0,
    extra_work: Annotated[int, typer.Option(
        help="Gate validation only: append N identity depthwise convolutions to the logits of "
             "the model and head (outputs unchanged, latency up; folder suffix _extraN).")] = 0,
    force: Annotated[bool, typer.Option(help="Re-export even if a matching export exists.")
                     ] = False,
    jobs: Annotated[int | None, typer.Option(
        help="Worker processes exporting units side by side (default: one per usable CPU "
             "core; 1 exports in this process).")] = None,
    calibration: Annotated[Path | None, typer.Option(
        help="INT8: a folder of calibration images (any size; default: the sample images).")
    ] = None,
    keep_fp32: Annotated[str, typer.Option(
        help="INT8: comma-separated blocks (module names, e.g. backbone.smb1) left in FP32 in "
             "every INT8 artifact.")] = "",
    int8_target_agreement: Annotated[float | None, typer.Option(
        help="INT8: leave the most sensitive blocks in FP32 until the label agreement with "
             "FP32 on the sample images reaches this many percent (measured block by block).")
    ] = None,
    int8_report: Annotated[bool, typer.Option(
        "--int8-report", help="INT8: rank every block by the accuracy its quantization costs "
                              "(int8_sensitivity.json, .md, .png in the export folder).")
    ] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Also print where the export's time went, step by step.")
    ] = False,
) -> None:
    """Export ONNX and ExecuTorch artifacts (FP32/FP16, model and components) with a parity gate."""
    try:
        with interrupts_remembered():     # before the imports: see its docstring
            from ..api import export
            from ..export.pipeline import ParityError     # seconds: torch and the exporters
            from ..models import resolve_name

            name = resolve_name(variant, model)
            options = dict(
                checkpoint=checkpoint, trust_checkpoint=trust_checkpoint, num_classes=num_classes,
                input_size=input_size, formats=tuple(dict.fromkeys(csv(formats))),
                precisions=tuple(dict.fromkeys(csv(precisions))), components=components,
                output=output.strip().lower(), out_root=out, parity_gate=parity_gate,
                fp32_io=fp32_io, rewrites=rewrites, ort_forms=ort_forms,
                pte_layout=pte_layout.strip().lower(), seed=seed, extra_work=extra_work,
                force=force, jobs=jobs, calibration=calibration,
                keep_fp32=tuple(dict.fromkeys(n.strip() for n in keep_fp32.split(",")
                                              if n.strip())),
                int8_target_agreement=int8_target_agreement, int8_report=int8_report)
            try:
                result = run_with_progress(lambda p: export(name, progress=p, **options),
                                           "exporting")
            except ParityError as exc:
                print_parity(exc.manifest)
                raise
    except KeyboardInterrupt:
        # An interrupted export leaves neither its folder nor its staging folder (export()).
        err_console.print("interrupted: nothing was written", highlight=False, markup=False)
        raise typer.Exit(130) from None
    _print_result(result)
    if verbose:
        _print_timings(result)


def _print_timings(result: object) -> None:
    from ..export.timings import breakdown_lines

    manifest = result.manifest
    if result.cached or not manifest.timings:
        console.print("timings: cached export, nothing was exported now", highlight=False)
        return
    for line in breakdown_lines(manifest.timings, manifest.export_seconds):
        console.print(line, highlight=False, markup=False)


def _print_result(result: object) -> None:
    manifest = result.manifest
    print_parity(manifest)
    for warning in result.warnings:
        err_console.print(Text.assemble(("warning:", "yellow"), " ", warning), highlight=False,
                          soft_wrap=True)
    if not manifest.parity_passed:
        err_console.print("[yellow]warning:[/] parity gate off: failing artifacts were written "
                          "and are marked as failed in the manifest")
    state = "up to date (cached)" if result.cached else f"{manifest.export_seconds:.0f} s"
    console.print(Text.assemble(f"{len(manifest.artifacts)} artifacts and manifest.json in ",
                                (str(result.folder), "bold"), f" ({state})"), highlight=False)


def print_parity(manifest: Manifest) -> None:
    """The parity table: every artifact, then every component chain, against PyTorch FP32."""
    table = Table(title=f"parity of {manifest.model.name} "
                        f"{'x'.join(map(str, manifest.input.size))} "
                        f"({manifest.output.mode}) vs PyTorch FP32 eager",
                  caption="parts: XNNPACK delegate partitions of a .pte; chain: the component "
                          "artifacts run in sequence", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("artifact", no_wrap=True)
    for col in ("MB", "max|err|", "PSNR dB", "cosine", "labels %", "parts", "gate"):
        table.add_column(col, justify="right", no_wrap=True)
    rows = [(a.path, a.bytes / 1e6, a.parity, a.executorch) for a in manifest.artifacts]
    rows += [(f"chain {c.format} {c.precision}", None, c.parity, None) for c in manifest.chains]
    for name, mb, parity, et in rows:
        w = parity.worst
        table.add_row(
            name, f"{mb:.2f}" if mb is not None else "", _fmt(w.max_abs_err, ".2e"),
            _fmt(w.psnr_db, ".1f"), _fmt(w.cosine, ".6f"), _fmt(w.label_agreement, ".3f"),
            str(et["partitions"]) if et else "",
            "[green]pass[/]" if parity.passed else "[red]FAIL[/]")
    console.print(table)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
