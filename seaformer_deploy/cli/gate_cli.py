"""``gate`` and ``baseline update``: flags into ``api.gate``, then the verdict table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from ..export import formats as fmts
from .common import (NdkOpt, PrefixOpt, RunnerDirOpt, RunnerTargetOpt, app, console, csv,
                     err_console, run_with_progress, runner_choice, user_errors)


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
        help=f"Comma-separated formats to gate, of {', '.join(fmts.by_rank())} (default: all in "
             f"reports; {fmts.PTE.name} in A/B).")] = None,
    precisions: Annotated[Optional[str], typer.Option(
        help="Comma-separated precisions (default: all in reports; fp32,fp16 in A/B).")] = None,
    units: Annotated[Optional[str], typer.Option(
        help="Comma-separated units: model, stem, context, spatial, head (default: all).")
    ] = None,
    min_effect: Annotated[Optional[float], typer.Option(
        help="Smallest slowdown that is a regression (default 0.05 = 5 % of latency; 0.005 of "
             "instruction counts).")] = None,
    metric: Annotated[Optional[str], typer.Option(
        help="A/B: latency (default) or instructions (both sides counted under callgrind on "
             "this machine; see bench --metric). Reports: checks what they hold.")] = None,
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
    from ..api import gate
    from ..gate.output import markdown

    selected = lambda text: csv(text) if text else None  # noqa: E731
    options = dict(
        ab=ab, baseline_artifacts=baseline_artifacts, candidate_artifacts=candidate_artifacts,
        device=device, formats=selected(formats), precisions=selected(precisions),
        units=selected(units), min_effect=min_effect, alpha=alpha,
        metric=metric.strip().lower() if metric else None,
        unstable_is_failure=unstable_is_failure, core=core, blocks=blocks, rounds=rounds,
        iterations=iterations, warmup_iterations=warmup,
        runner=runner_choice(runner_target, ndk, executorch_prefix, runner), wait_seconds=wait,
        out=out, json_out=json_out, baselines=baselines)
    try:
        outcome = run_with_progress(
            lambda p: gate(candidate, baseline, progress=p, **options), "A/B")
    except KeyboardInterrupt:
        if not ab:
            raise
        err_console.print("interrupted: no verdict (nothing was written)")
        raise typer.Exit(130) from None
    # Plain text: the table and the path carry artifact names, reasons and user paths.
    console.print(markdown(outcome.result), highlight=False, markup=False, emoji=False,
                  soft_wrap=True)
    console.print(f"verdict: {outcome.folder / 'verdict.json'}", highlight=False, markup=False,
                  emoji=False, soft_wrap=True)
    raise typer.Exit(outcome.exit_code)


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
    from ..gate.baselines import update

    path, previous = update(report, baselines, force)
    replaced = f" (replaces the run of {previous.created})" if previous else ""
    console.print(Text.assemble("baseline: ", (str(path), "bold"), replaced,
                                "; commit it to gate against it."), highlight=False,
                  soft_wrap=True)
