"""``bench`` and ``report show``: flags into ``api.bench``, then the report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from ..export import formats as fmts
from .common import (CheckpointOpt, ModelOpt, NdkOpt, PrefixOpt, RunnerDirOpt, RunnerTargetOpt,
                     SizeOpt, VariantOpt, app, console, csv, err_console, run_with_progress,
                     runner_choice, user_errors)


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
    formats: Annotated[str, typer.Option(
        help=f"Comma-separated: {', '.join(fmts.by_rank())}.")] = ",".join(fmts.bench_defaults()),
    precisions: Annotated[str, typer.Option(
        help="Comma-separated: fp32, fp16, int8 (static INT8, calibrated on the sample images).")
    ] = "fp32,fp16",
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
    precision: Annotated[float, typer.Option(
        help="Keep measuring each artifact until the 95 % CI of its median is within this "
             "fraction of it (0.01: +-1 %); 0: the fixed protocol alone.")] = 0.01,
    max_seconds: Annotated[float, typer.Option(
        help="Most seconds of measuring (all blocks) spent reaching --precision; an artifact "
             "still short of it is reported unstable.")] = 240.0,
    metric: Annotated[str, typer.Option(
        help="latency, or instructions: count each artifact's iterations under valgrind's "
             "callgrind on this machine (instructions and simulated cache misses: repeatable "
             "on a loaded machine, a proxy for the work done, not a latency).")] = "latency",
    counted_iterations: Annotated[int, typer.Option(
        help="--metric instructions: iterations counted per artifact.")] = 3,
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
    from ..api import bench
    from ..bench.thermal import ThermalPolicy
    from ..models import resolve_name
    from ..reports.show import render
    from ..runners.plan import Protocol

    protocol = Protocol(warmup_iterations=warmup, warmup_seconds=warmup_seconds,
                        iterations=iterations, min_seconds=min_seconds, rounds=rounds,
                        cooldown_seconds=cooldown)
    thermal = ThermalPolicy(max_celsius=max_temp, max_wait_seconds=max_temp_wait,
                            pause_seconds=block_pause)
    options = dict(device=device, formats=csv(formats), precisions=csv(precisions), core=core,
                   protocol=protocol, blocks=blocks, precision=precision,
                   max_seconds=max_seconds, metric=metric.strip().lower(),
                   counted_iterations=counted_iterations,
                   runner=runner_choice(runner_target, ndk, executorch_prefix, runner),
                   transport=adb_transport, runner_timeout=runner_timeout, wait_seconds=wait,
                   lock_freq=lock_freq, cleanup=cleanup, thermal=thermal)
    name = resolve_name(variant, model) if variant or model else None
    try:
        outcome = run_with_progress(lambda p: bench(
            artifacts, model=name, checkpoint=checkpoint, input_size=input_size,
            models_dir=models_dir, out=out, progress=p, on_export=_print_export, **options))
    except KeyboardInterrupt:
        err_console.print("interrupted before any measurement: nothing was written")
        raise typer.Exit(130) from None
    render(outcome.report, console)
    console.print(Text.assemble("report: ", (str(outcome.folder), "bold")), highlight=False)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def _print_export(result: object) -> None:
    console.print(f"artifacts: {result.folder}" + (" (cached)" if result.cached else ""),
                  highlight=False, markup=False)


report_app = typer.Typer(help="Benchmark reports.", no_args_is_help=True)
app.add_typer(report_app, name="report")


@report_app.command("show")
@user_errors
def report_show_cmd(folder: Annotated[Path, typer.Argument(help="A report folder.")]) -> None:
    """Render a report in the terminal."""
    from ..reports import read_report
    from ..reports.show import render

    render(read_report(folder), console)
