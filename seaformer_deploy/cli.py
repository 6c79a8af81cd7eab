"""The ``seaformer-deploy`` command line."""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from .errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Export SeaFormer-family segmenters to ONNX / ExecuTorch and measure them.")
# Rich assumes 80 columns when output is not a terminal (CI logs, files); tables would be cropped.
console = Console() if sys.stdout.isatty() else Console(width=120)
err_console = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=120)

VariantOpt = Annotated[Optional[str], typer.Option(
    "--variant", "-v", help="SeaFormer segmentation variant: T, S, B or L (default T).")]
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", help="Any registered model, e.g. seaformer-t++, topformer-b "
                          "(see `seaformer-deploy models`).")]
CheckpointOpt = Annotated[Optional[Path], typer.Option(
    "--checkpoint", "-c", help="Official checkpoint (.pth, mmseg or timm format).")]
TrustOpt = Annotated[bool, typer.Option(
    "--trust-checkpoint", help="Unpickle the checkpoint with full privileges. Only for files from "
                               "a source you trust: code stored in them runs as you.")]
ClassesOpt = Annotated[Optional[int], typer.Option(
    "--num-classes", help="Number of classes (default: the checkpoint's, else 150 / 1000).")]
SizeOpt = Annotated[Optional[str], typer.Option(
    "--input-size", "-s", help="HEIGHTxWIDTH, e.g. 512x512 (default: the model's).")]
RunnerTargetOpt = Annotated[Optional[str], typer.Option(
    help="adb devices: the native runner build (default: from the device's ABI, android-arm64 "
         "or android-x86_64; linux-arm64 for glibc ARM64 boards).")]
NdkOpt = Annotated[Optional[Path], typer.Option(
    help="Android NDK: build the android-arm64 runner with its toolchain (with "
         "--executorch-prefix).")]
PrefixOpt = Annotated[Optional[Path], typer.Option(
    help="ExecuTorch install prefix built for the target (the NDK build; optional for "
         "linux-arm64).")]
RunnerDirOpt = Annotated[Optional[Path], typer.Option(
    "--runner", help="A prebuilt runner folder (with its runner.json), e.g. from "
                     "`seaformer-deploy runner build` on another machine.")]


def check_artifacts_options(artifacts: Path, variant: str | None, model: str | None,
                            input_size: str | None, checkpoint: Path | None) -> None:
    """With --artifacts, --variant/--model/--input-size must describe that export, and
    --checkpoint (which only an export uses) is refused rather than ignored."""
    from .bench.inputs import BenchInputError, check_export_matches
    from .export import manifest as mf
    from .models import resolve_name

    if checkpoint is not None:
        raise BenchInputError("--checkpoint is for the export; with --artifacts the export "
                              "is already made: drop one of the two.")
    if variant is None and model is None and input_size is None:
        return
    name = resolve_name(variant, model) if (variant or model) else None
    check_export_matches(mf.read(artifacts), artifacts, name, parse_size(input_size))


def _runner_choice(target: str | None, ndk: Path | None, prefix: Path | None,
                   prebuilt: Path | None):
    from .runners.session import RunnerChoice

    if prebuilt is not None and (target or ndk or prefix):
        raise UserError("--runner names a prebuilt runner folder; --runner-target, --ndk and "
                        "--executorch-prefix build one: pass one or the other.")
    if prebuilt is not None:
        from .runners.native import load_prebuilt

        load_prebuilt(prebuilt)             # checked now, not after an export
    return RunnerChoice(target, ndk, prefix, prebuilt)


def user_errors(fn: Callable) -> Callable:
    """Turn a ``UserError`` into one message on stderr and a non-zero exit, without a traceback.

    The message is plain text after a styled prefix, never Rich markup: it carries paths and
    other user data, and a ``[/x]`` in them must neither crash the print nor vanish from it."""
    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> object:
        from rich.text import Text

        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            err_console.print(Text.assemble(("error:", "bold red"), " ", str(exc)),
                              highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
    return wrapper


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX*,]\s*(\d+))?\s*", text)
    if not match:
        raise UserError(f"--input-size {text!r} is not HEIGHTxWIDTH (e.g. 512x512 or 512x1024).")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


@app.command("models")
def models_cmd() -> None:
    """List the registered models."""
    from .models import MODELS

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
    from .models import build_skeleton, create, get_spec, resolve_name
    from .models.complexity import analyze

    name = resolve_name(variant, model)
    size = parse_size(input_size)
    if size is not None:                 # a bad size fails before the checkpoint is read
        build_skeleton(name).check_input_size(*size)
    net = create(name, num_classes, checkpoint, trust_checkpoint)
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


def _csv(text: str) -> tuple[str, ...]:
    return tuple(v.strip().lower() for v in text.split(",") if v.strip())


@app.command("export")
@user_errors
def export_cmd(
    variant: VariantOpt = None, model: ModelOpt = None, checkpoint: CheckpointOpt = None,
    trust_checkpoint: TrustOpt = False, num_classes: ClassesOpt = None,
    input_size: SizeOpt = None,
    formats: Annotated[str, typer.Option(help="Comma-separated: onnx, pte.")] = "onnx,pte",
    precisions: Annotated[str, typer.Option(help="Comma-separated: fp32, fp16.")] = "fp32,fp16",
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
        help="Memory order of the .pte artifacts' 4-D inputs and outputs: nhwc (channels-last, "
             "no layout transposes at the graph's edges) or nchw.")] = "nhwc",
    seed: Annotated[int, typer.Option(help="Seed of the synthetic weights (no checkpoint).")] = 0,
    extra_work: Annotated[int, typer.Option(
        help="Gate validation only: append N identity depthwise convolutions to the logits of "
             "the model and head (outputs unchanged, latency up; folder suffix _extraN).")] = 0,
    force: Annotated[bool, typer.Option(help="Re-export even if a matching export exists.")
                     ] = False,
) -> None:
    """Export ONNX and ExecuTorch artifacts (FP32/FP16, model and components) with a parity gate."""
    try:
        from .export.pipeline import ExportOptions, ParityError, check, export   # seconds
        from .models import resolve_name

        opts = ExportOptions(
            model=resolve_name(variant, model), checkpoint=checkpoint,
            trust_checkpoint=trust_checkpoint, num_classes=num_classes,
            input_size=parse_size(input_size), formats=tuple(dict.fromkeys(_csv(formats))),
            precisions=tuple(dict.fromkeys(_csv(precisions))), components=components,
            output=output.strip().lower(), out_root=out, parity_gate=parity_gate,
            fp32_io=fp32_io, rewrites=rewrites, ort_forms=ort_forms,
            pte_layout=pte_layout.strip().lower(), seed=seed, extra_work=extra_work,
            force=force)
        check(opts)                  # every option, size and path, before any work
        try:
            result = _run_with_progress(lambda progress: export(opts, progress), "exporting")
        except ParityError as exc:
            print_parity(exc.manifest)
            raise
    except KeyboardInterrupt:
        # An interrupted export leaves neither its folder nor its staging folder (export()).
        err_console.print("interrupted: nothing was written", highlight=False, markup=False)
        raise typer.Exit(130) from None
    manifest = result.manifest
    print_parity(manifest)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    if not manifest["parity_passed"]:
        err_console.print("[yellow]warning:[/] parity gate off: failing artifacts were written "
                          "and are marked as failed in the manifest")
    state = "up to date (cached)" if result.cached else f"{manifest['export_seconds']:.0f} s"
    console.print(f"{len(manifest['artifacts'])} artifacts and manifest.json in "
                  f"[bold]{result.folder}[/] ({state})", highlight=False)


@app.command("bench")
@user_errors
def bench_cmd(
    device: Annotated[Optional[str], typer.Option(
        help="Where to run: local (this machine; the default unless ANDROID_SERIAL is set), "
             "a phone's adb serial or HOST:PORT, or adb (the only phone adb lists).")] = None,
    variant: VariantOpt = None, model: ModelOpt = None,
    artifacts: Annotated[Optional[Path], typer.Option(
        help="An export folder; default: export --variant/--model first (cached).")] = None,
    checkpoint: CheckpointOpt = None, input_size: SizeOpt = None,
    formats: Annotated[str, typer.Option(help="Comma-separated: pte, onnx.")] = "pte,onnx",
    precisions: Annotated[str, typer.Option(help="Comma-separated: fp32, fp16.")] = "fp32,fp16",
    core: Annotated[Optional[int], typer.Option(help="CPU to pin (default: the fastest).")
                    ] = None,
    warmup: Annotated[int, typer.Option(help="Minimum warm-up iterations per artifact.")] = 10,
    warmup_seconds: Annotated[float, typer.Option(help="Minimum warm-up seconds.")] = 0.5,
    iterations: Annotated[int, typer.Option(help="Minimum timed iterations per artifact.")] = 50,
    min_seconds: Annotated[float, typer.Option(help="Minimum timed seconds per artifact.")
                           ] = 2.0,
    rounds: Annotated[int, typer.Option(help="Interleaved rounds per artifact.")] = 6,
    blocks: Annotated[int, typer.Option(help="Blocks alternating between runners.")] = 2,
    cooldown: Annotated[float, typer.Option(
        help="Seconds the runner pauses before each artifact's block of timed iterations.")
                        ] = 0.0,
    cv_limit: Annotated[float, typer.Option(help="CV above which a result is unstable.")
                        ] = 0.05,
    runner_target: RunnerTargetOpt = None, ndk: NdkOpt = None,
    executorch_prefix: PrefixOpt = None, runner: RunnerDirOpt = None,
    adb_transport: Annotated[str, typer.Option(
        help="adb devices: auto (the adb server when it runs: it must list a USB serial; a "
             "HOST:PORT it does not list is reached directly), server, or direct (adb-shell, "
             "no server).")] = "auto",
    max_temp: Annotated[Optional[float], typer.Option(
        help="Before each block, wait until the hottest CPU thermal zone is below this many "
             "degrees C (the battery's temperature where no CPU zone is readable, flagged in "
             "the report).")] = None,
    max_temp_wait: Annotated[float, typer.Option(
        help="Longest wait for --max-temp, in seconds (then the block runs, flagged).")
                             ] = 600.0,
    block_pause: Annotated[float, typer.Option(
        help="Fixed pause in seconds before each block (a cool-down where thermal zones "
             "cannot be read).")] = 0.0,
    lock_freq: Annotated[bool, typer.Option(
        "--lock-freq", help="Rooted devices: hold the pinned core at its top frequency "
                            "(restored afterwards).")] = False,
    runner_timeout: Annotated[Optional[float], typer.Option(
        help="Seconds before a runner process counts as hung (default: from the protocol).")
                              ] = None,
    wait: Annotated[float, typer.Option(
        help="Seconds to wait for another bench to free the device.")] = 0.0,
    cleanup: Annotated[bool, typer.Option(
        "--cleanup", help="Also delete the files cached on the device (runner, artifacts).")
                       ] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Reports root folder.")
                   ] = Path("reports"),
    models_dir: Annotated[Path, typer.Option(help="Where exports live.")] = Path("models"),
) -> None:
    """Measure the whole model and its components on one pinned core; write a report."""
    from .bench.inputs import check_options
    from .bench.run import BenchOptions, bench
    from .paths import check_writable_folder
    from .bench.thermal import ThermalPolicy
    from .export.pipeline import ExportOptions, export
    from .models import resolve_name
    from .reports import build_report, write_report
    from .reports.show import render
    from .runners.plan import Protocol

    protocol = Protocol(warmup_iterations=warmup, warmup_seconds=warmup_seconds,
                        iterations=iterations, min_seconds=min_seconds, rounds=rounds,
                        cooldown_seconds=cooldown)
    opts = BenchOptions(artifacts=artifacts or models_dir, device=device,
                        formats=_csv(formats), precisions=_csv(precisions), core=core,
                        protocol=protocol, blocks=blocks, cv_limit=cv_limit,
                        runner=_runner_choice(runner_target, ndk, executorch_prefix, runner),
                        transport=adb_transport, runner_timeout=runner_timeout,
                        wait_seconds=wait, lock_freq=lock_freq, cleanup=cleanup,
                        thermal=ThermalPolicy(max_celsius=max_temp,
                                              max_wait_seconds=max_temp_wait,
                                              pause_seconds=block_pause))
    check_options(opts)                          # before any export or measurement
    check_writable_folder(out, "--out")
    if artifacts is None:
        name = resolve_name(variant, model)
        result = _run_with_progress(lambda p: export(ExportOptions(
            model=name, checkpoint=checkpoint, input_size=parse_size(input_size),
            out_root=models_dir), p), "exporting")
        artifacts = result.folder
        console.print(f"artifacts: {artifacts}" + (" (cached)" if result.cached else ""),
                      highlight=False, markup=False)
        opts = replace(opts, artifacts=artifacts)
    else:
        check_artifacts_options(artifacts, variant, model, input_size, checkpoint)
    written = {}

    def finish(run) -> None:          # inside the device lock: see bench()
        written["report"] = build_report(run)
        written["folder"] = write_report(written["report"], out)

    try:
        run = _run_with_progress(lambda p: bench(opts, p, finish=finish), "benchmarking")
    except KeyboardInterrupt:
        err_console.print("interrupted before any measurement: nothing was written")
        raise typer.Exit(130) from None
    report, folder = written["report"], written["folder"]
    render(report, console)
    console.print(Text.assemble("report: ", (str(folder), "bold")), highlight=False)
    if run.status == "interrupted":
        raise typer.Exit(130)
    if report["failures"] or any(a["parity"] is not None and not a["parity"]["passed"]
                                 for a in report["artifacts"]):
        raise typer.Exit(1)


report_app = typer.Typer(help="Benchmark reports.", no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("show")
@user_errors
def report_show_cmd(folder: Annotated[Path, typer.Argument(help="A report folder.")]) -> None:
    """Render a report in the terminal."""
    from .reports import load_report
    from .reports.show import render

    render(load_report(folder), console)


@app.command("gate")
@user_errors
def gate_cmd(
    baseline: Annotated[Optional[Path], typer.Option(
        help="Baseline report (folder or report.json); default: the committed baseline for the "
             "candidate's device fingerprint under --baselines.")] = None,
    candidate: Annotated[Optional[Path], typer.Option(help="Candidate report.")] = None,
    ab: Annotated[bool, typer.Option(
        "--ab", help="Interleaved A/B: measure --baseline-artifacts and --candidate-artifacts "
                     "side by side on one core now, and decide on the paired rounds.")] = False,
    device: Annotated[Optional[str], typer.Option(help="A/B: local (default) or an adb serial.")
                      ] = None,
    baseline_artifacts: Annotated[Optional[Path], typer.Option(
        help="A/B: the baseline export folder.")] = None,
    candidate_artifacts: Annotated[Optional[Path], typer.Option(
        help="A/B: the candidate export folder.")] = None,
    formats: Annotated[Optional[str], typer.Option(
        help="Comma-separated formats to gate (default: all in reports; pte in A/B).")] = None,
    precisions: Annotated[Optional[str], typer.Option(
        help="Comma-separated precisions (default: all in reports; fp32,fp16 in A/B).")] = None,
    units: Annotated[Optional[str], typer.Option(
        help="Comma-separated units: model, stem, context, spatial, head (default: all).")
    ] = None,
    min_effect: Annotated[float, typer.Option(
        help="Smallest slowdown that is a regression (0.05 = 5 %).")] = 0.05,
    alpha: Annotated[float, typer.Option(help="One-sided significance level of the rank test.")
                     ] = 0.01,
    unstable_is_failure: Annotated[bool, typer.Option(
        "--unstable-is-failure", help="Exit 1 (not 3) when a result is unstable.")] = False,
    core: Annotated[Optional[int], typer.Option(help="A/B: CPU to pin (default: the fastest).")
                    ] = None,
    blocks: Annotated[int, typer.Option(help="A/B: runner processes, alternating which side "
                                             "goes first.")] = 4,
    rounds: Annotated[int, typer.Option(help="A/B: paired rounds per block.")] = 8,
    iterations: Annotated[int, typer.Option(help="A/B: timed iterations per side per round.")
                          ] = 5,
    warmup: Annotated[int, typer.Option(help="A/B: warm-up iterations per artifact and block.")
                      ] = 5,
    runner_target: RunnerTargetOpt = None, ndk: NdkOpt = None,
    executorch_prefix: PrefixOpt = None, runner: RunnerDirOpt = None,
    wait: Annotated[float, typer.Option(
        help="A/B: seconds to wait for another bench to free the device.")] = 0.0,
    json_out: Annotated[Optional[Path], typer.Option(
        "--json", help="Also write the verdict JSON here.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the verdict folders.")
                   ] = Path("reports") / "gate",
    baselines: Annotated[Path, typer.Option(help="Committed baselines root.")
                         ] = Path("reports") / "baselines",
) -> None:
    """Decide whether a candidate is slower than a baseline: exit 0 pass, 1 regression,
    2 error or incomparable, 3 unstable (see docs/ci.md)."""
    from .gate import baselines as bl
    from .gate.ab import ABOptions, check_inputs, gate_ab, measurements, run_ab
    from .gate.compare import GateError, Selection, compare_reports
    from .gate.output import check_destinations, markdown, write
    from .gate.verdict import Rule
    from .reports import load_report

    try:
        rule = Rule(alpha=alpha, min_effect=min_effect)
    except ValueError as exc:
        raise GateError(f"{exc}; see --alpha and --min-effect.") from None
    check_destinations(out, json_out)
    pick = lambda text, default: _csv(text) if text else default  # noqa: E731
    extra = None
    if ab:
        if baseline is not None or candidate is not None:
            raise GateError("--ab measures two export folders now; --baseline and --candidate "
                            "take reports: use one mode or the other.")
        if baseline_artifacts is None or candidate_artifacts is None:
            raise GateError("--ab needs --baseline-artifacts DIR and --candidate-artifacts DIR "
                            "(export folders).")
        selection = Selection(pick(formats, ("pte",)), pick(precisions, ("fp32", "fp16")),
                              pick(units, None))
        opts = ABOptions(baseline_artifacts, candidate_artifacts, device, selection, core,
                         blocks, rounds, iterations, warmup,
                         runner=_runner_choice(runner_target, ndk, executorch_prefix, runner),
                         wait_seconds=wait)
        inputs = check_inputs(opts)             # errors print alone, before the progress bar
        try:
            run = _run_with_progress(lambda p: run_ab(opts, p, inputs=inputs), "A/B")
        except KeyboardInterrupt:
            err_console.print("interrupted: no verdict (nothing was written)")
            raise typer.Exit(130) from None
        result = gate_ab(run, rule, unstable_is_failure)
        extra = {"measurements": measurements(run)}
    else:
        if baseline_artifacts is not None or candidate_artifacts is not None:
            raise GateError("--baseline-artifacts and --candidate-artifacts need --ab.")
        if candidate is None:
            raise GateError("pass --candidate REPORT (and --baseline REPORT, or rely on the "
                            "committed baseline), or --ab with two export folders.")
        cand = load_report(candidate)
        base_path = baseline if baseline is not None else bl.find(cand, baselines)
        selection = Selection(pick(formats, None), pick(precisions, None), pick(units, None))
        result = compare_reports(load_report(base_path), cand, rule, selection,
                                 (str(base_path), str(candidate)), unstable_is_failure)
    folder = write(result, out, json_out, extra)
    # Plain text: the table and the path carry artifact names, reasons and user paths.
    console.print(markdown(result), highlight=False, markup=False, emoji=False, soft_wrap=True)
    console.print(f"verdict: {folder / 'verdict.json'}", highlight=False, markup=False,
                  emoji=False, soft_wrap=True)
    raise typer.Exit(result.exit_code)


baseline_app = typer.Typer(help="Committed baselines for gating.", no_args_is_help=True)
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("update")
@user_errors
def baseline_update_cmd(
    report: Annotated[Path, typer.Argument(help="The report to accept (folder or report.json).")],
    baselines: Annotated[Path, typer.Option(help="Committed baselines root.")
                         ] = Path("reports") / "baselines",
    force: Annotated[bool, typer.Option(help="Accept even if on-device parity failed.")
                     ] = False,
) -> None:
    """Accept a complete report as the baseline for its device fingerprint, model and size.

    A baseline needs at least one measured artifact and no failed or unmeasured one."""
    from rich.text import Text

    from .gate.baselines import update

    path, previous = update(report, baselines, force)
    replaced = f" (replaces the run of {previous['created']})" if previous else ""
    console.print(Text.assemble("baseline: ", (str(path), "bold"), replaced,
                                "; commit it to gate against it."), highlight=False,
                  soft_wrap=True)


runner_app = typer.Typer(help="The native benchmark runner.", no_args_is_help=True)
app.add_typer(runner_app, name="runner")


@runner_app.command("build")
@user_errors
def runner_build_cmd(
    target: Annotated[str, typer.Option(
        help="host, linux-arm64 (glibc boards), android-arm64 (any arm64-v8a phone: bundled "
             "with glibc, or the NDK build with --ndk) or android-x86_64 (emulators).")
    ] = "host",
    ndk: NdkOpt = None, executorch_prefix: PrefixOpt = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if cached.")] = False,
) -> None:
    """Build (or find in the cache) the native ExecuTorch runner for a target."""
    from .runners.native import build_runner

    build = build_runner(target, ndk, executorch_prefix, force)
    console.print(f"{build.target} runner for {build.abi} ({build.toolchain}, launch "
                  f"{build.launch.mode}, ExecuTorch {build.executorch_version}): "
                  f"{build.folder}", highlight=False, markup=False)
    for name, path in sorted(build.files.items()):
        console.print(f"  {name}" + ("" if build.folder in path.parents else f" ({path})"),
                      highlight=False, markup=False)
    command = json.loads((build.folder / "runner.json").read_text())["command"]
    console.print(f"start it with: {command}  (see runner.json; `bench --runner "
                  f"{build.folder}` uses this folder)", highlight=False, markup=False)


@app.command("devices")
@user_errors
def devices_cmd(
    device: Annotated[Optional[list[str]], typer.Option(
        "--device", "-d", help="Also reach this serial or HOST:PORT directly (adb-shell, no "
                               "adb server); repeatable.")] = None,
    profiles: Annotated[Optional[Path], typer.Option(
        help="Device profiles folder (default: the repository's devices/).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the phones within reach (the adb server's, and --device) and probe each.

    For each: model, SoC, Android, cores, the core a bench pins, temperatures, free space, the
    transport, the matching profile (devices/) and where the probe disagrees with it. Exits 1
    when a device that should answer (state device, or --device) cannot be probed."""
    from .devices.adb_server import AdbServer, server_address
    from .devices.profiles import load_profiles

    known = load_profiles(profiles)
    server = AdbServer(*server_address())
    found: dict = {"server": {"address": server.address, "running": server.running()},
                   "devices": []}
    if found["server"]["running"]:
        found["server"]["version"] = server.version()
        for listed in server.devices():
            entry = {"serial": listed.serial, "state": listed.state, "via": "adb server",
                     "model": listed.model}
            found["devices"].append(entry | (_describe_device(listed.serial, "server", known)
                                             if listed.state == "device"
                                             else {"hint": _state_hint(listed)}))
    for serial in device or []:
        entry = {"serial": serial, "state": "device", "via": "direct"}
        found["devices"].append(entry | _describe_device(serial, "direct", known))
    if as_json:
        typer.echo(json.dumps(found, indent=2))
    else:
        _print_devices(found)
    if any(d.get("error") for d in found["devices"]):
        raise typer.Exit(1)


def _state_hint(listed: object) -> str:
    """What to do about a device the server lists but cannot use."""
    from .devices.adb_link import unauthorized_message

    if listed.state == "unauthorized":
        return unauthorized_message(listed.serial)
    if listed.state == "offline":
        return (f"{listed.serial} is offline: check the cable or network, then "
                f"`adb reconnect`; it may just be booting.")
    return f"{listed.serial} is in state {listed.state!r}, not ready for adb commands."


def _describe_device(serial: str, transport: str, profiles: list) -> dict:
    """Probe one device; a failure becomes the entry's error, so the others still show."""
    from .devices import device_profile, pick_core
    from .devices.adb import AdbDevice

    try:
        dev = AdbDevice(serial, transport=transport)
    except UserError as exc:
        return {"state": "unreachable", "error": str(exc)}
    try:
        info, state = dev.probe(), dev.state()
        profile = device_profile(info, profiles)
        choice = pick_core(dev, info, None, profile)
        free = dev.free_bytes("/data/local/tmp")
    except UserError as exc:
        return {"transport": dev.transport, "error": str(exc)}
    finally:
        dev.close()
    props = info.properties
    hottest = max(state.thermal_c.items(), key=lambda kv: kv[1], default=None)
    return {
        "transport": dev.transport, "model": props.get("model"),
        "manufacturer": props.get("manufacturer"), "soc": props.get("soc"),
        "board": props.get("board"), "android": props.get("android"), "sdk": props.get("sdk"),
        "abi": props.get("abi"), "clusters": _clusters(info.topology),
        "pin_core": choice.core, "pin_reason": choice.reason,
        "hottest_zone": {"zone": hottest[0].partition(":")[2] or hottest[0],
                         "celsius": hottest[1]} if hottest else None,
        "battery_c": state.battery_c, "free_bytes": free,
        "profile": {k: v for k, v in profile.items() if k != "mismatches"} if profile else None,
        "mismatches": profile["mismatches"] if profile else [],
    }


def _clusters(topology: object) -> list[dict]:
    """Consecutive cores of one cluster, max frequency and core type, as one group."""
    from itertools import groupby

    return [{"cpus": [c.index for c in group], "core_type": key[2], "max_khz": key[1]}
            for key, group in groupby(topology.cores,
                                      lambda c: (c.cluster, c.max_khz, c.core_type))]


def _print_devices(found: dict) -> None:
    from rich.markup import escape

    server = found["server"]
    if server["running"]:
        console.print(f"adb server {server['address']} (adb {server['version']}): "
                      f"{sum(d['via'] == 'adb server' for d in found['devices'])} device(s)",
                      highlight=False)
    else:
        console.print(f"no adb server at {server['address']}: phones on USB show up once one "
                      f"runs (`adb start-server`; this command never starts one). --device "
                      f"HOST:PORT reaches a phone on the network without it.", highlight=False)
    if not found["devices"]:
        console.print("no devices within reach.")
        return
    table = Table(title="devices", box=box.SIMPLE_HEAD)
    for col in ("serial", "state", "via", "model", "SoC", "profile"):
        table.add_column(col, no_wrap=col != "profile")
    for d in found["devices"]:
        profile = d.get("profile")
        table.add_row(*map(escape, (d["serial"], d["state"], d["via"], d.get("model") or "-",
                                    d.get("soc") or d.get("board") or "-",
                                    profile["name"] if profile else "-")))
    console.print(table)
    for d in found["devices"]:
        _print_device(d)


def _print_device(d: dict) -> None:
    from rich.markup import escape

    table = Table(title=f"{d['serial']} ({d['via']})", show_header=False, box=box.SIMPLE)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    if d.get("transport"):
        table.add_row("transport", escape(d["transport"]))
    if d.get("error") or d.get("hint"):
        table.add_row("[red]error[/]" if d.get("error") else "[yellow]to do[/]",
                      escape(d.get("error") or d["hint"]))
        console.print(table)
        return
    ghz = lambda khz: f"{khz / 1e6:.2f} GHz" if khz else "? GHz"  # noqa: E731
    table.add_row("model", f"{d.get('manufacturer') or ''} {d.get('model') or '-'}".strip())
    table.add_row("SoC", " / ".join(filter(None, [d.get("soc"), d.get("board")])) or "-")
    table.add_row("Android", f"{d.get('android') or '?'} (SDK {d.get('sdk') or '?'}), "
                             f"{d.get('abi') or '?'}")
    table.add_row("cores", "\n".join(
        f"cpu{_cpu_range(c['cpus'])}: {len(c['cpus'])}x {c['core_type'] or '?'} "
        f"{ghz(c['max_khz'])}" for c in d["clusters"]))
    table.add_row("bench pins", escape(f"cpu{d['pin_core']}: {d['pin_reason']}"))
    hot, battery = d["hottest_zone"], d["battery_c"]
    table.add_row("temperatures", ", ".join(filter(None, [
        f"hottest zone {hot['celsius']:.1f} °C ({escape(hot['zone'])})" if hot else None,
        f"battery {battery:.1f} °C" if battery is not None else None])) or "-")
    free = d["free_bytes"]
    table.add_row("free space", f"{free / 2**30:.1f} GiB in /data/local/tmp"
                  if free is not None else "-")
    profile = d["profile"]
    if profile is None:
        table.add_row("profile", "none matches: add one under devices/ (devices/README.md)")
    elif d["mismatches"]:
        table.add_row("profile", f"{profile['name']} ({profile['file']}), but:\n" + "\n".join(
            f"[yellow]- {escape(m)}[/]" for m in d["mismatches"]))
    else:
        table.add_row("profile", f"{profile['name']} ({profile['file']}): matches the probe")
    console.print(table)


def _cpu_range(cpus: list[int]) -> str:
    return f"{cpus[0]}-{cpus[-1]}" if len(cpus) > 1 else str(cpus[0])


def _run_with_progress(job: Callable, label: str) -> object:
    from .quiet import quiet_third_party_logs
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    quiet_third_party_logs()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def progress(step: str, done: int, total: int) -> None:
            bar.update(task, description=f"{label}: {step}", completed=done, total=total)
        return job(progress)


def print_parity(manifest: dict) -> None:
    """The parity table: every artifact, then every component chain, against PyTorch FP32."""
    table = Table(title=f"parity of {manifest['model']['name']} "
                        f"{'x'.join(map(str, manifest['input']['size']))} "
                        f"({manifest['output']['mode']}) vs PyTorch FP32 eager",
                  caption="parts: XNNPACK delegate partitions of a .pte; chain: the component "
                          "artifacts run in sequence", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("artifact", no_wrap=True)
    for col in ("MB", "max|err|", "PSNR dB", "cosine", "labels %", "parts", "gate"):
        table.add_column(col, justify="right", no_wrap=True)
    rows = [(a["path"], a["bytes"] / 1e6, a["parity"], a.get("executorch"))
            for a in manifest["artifacts"]]
    rows += [(f"chain {c['format']} {c['precision']}", None, c["parity"], None)
             for c in manifest["chains"]]
    for name, mb, parity, et in rows:
        w = parity["worst"]
        table.add_row(
            name, f"{mb:.2f}" if mb is not None else "", _fmt(w["max_abs_err"], ".2e"),
            _fmt(w["psnr_db"], ".1f"), _fmt(w["cosine"], ".6f"),
            _fmt(w["label_agreement"], ".3f"),
            str(et["partitions"]) if et else "",
            "[green]pass[/]" if parity["passed"] else "[red]FAIL[/]")
    console.print(table)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
