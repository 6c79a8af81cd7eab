"""One gate run, in either mode, from its options to a written verdict.

Reports mode compares a candidate bench report with a baseline report (by default the baseline
committed for the candidate's device fingerprint); A/B mode measures two export folders now,
interleaved on one core. Which options belong to which mode is decided here, so the command
line and the Python API refuse the same mixtures with the same words.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..bench.instructions import METRICS
from ..errors import option
from ..export import formats as fmts
from ..runners.session import RunnerChoice
from . import baselines as bl
from .compare import GateError, GateResult, Selection
from .verdict import INSTRUCTION_EFFECT, Rule

Progress = Callable[[str, int, int], None]
AB_FORMATS = (fmts.PTE.name,)                # what an A/B run gates unless told otherwise
AB_PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class GateOptions:
    candidate: Path | None = None            # reports: the candidate report
    baseline: Path | None = None             # reports: the baseline (None: the committed one)
    ab: bool = False                         # measure two export folders instead
    baseline_artifacts: Path | None = None   # A/B: the export folders
    candidate_artifacts: Path | None = None
    device: str | None = None                # A/B: local (default) or an adb serial
    formats: tuple[str, ...] | None = None   # None: all in reports; AB_FORMATS in A/B
    precisions: tuple[str, ...] | None = None
    units: tuple[str, ...] | None = None
    min_effect: float | None = None          # None: 5 % of latency, 0.5 % of instructions
    alpha: float = Rule.alpha
    metric: str | None = None                # A/B: latency (default) or instructions
    unstable_is_failure: bool = False
    core: int | None = None                  # A/B: the CPU to pin (None: the fastest)
    blocks: int = 4                          # A/B: runner processes
    rounds: int = 8                          # A/B: paired rounds per block
    iterations: int = 5                      # A/B: timed iterations per side per round
    warmup_iterations: int = 5
    runner: RunnerChoice = RunnerChoice()
    wait_seconds: float = 0.0                # A/B: wait this long for a busy device
    out: Path | None = None                  # verdict folders go here (None: nothing written)
    json_out: Path | None = None             # with out: a copy of the verdict JSON
    baselines: Path = bl.ROOT                # committed baselines root


@dataclass
class GateOutcome:
    result: GateResult
    folder: Path | None                      # the verdict folder (None: nothing written)

    @property
    def exit_code(self) -> int:
        return self.result.exit_code


def run_gate(opts: GateOptions, progress: Progress | None = None) -> GateOutcome:
    """Decide, then write the verdict (when ``opts.out`` is set). Bad or mixed options and
    unwritable destinations fail before any report is read or anything is measured."""
    from .output import check_destinations, write

    rule = _rule(opts)                       # checked before anything is read or measured
    if opts.metric not in (None, *METRICS):
        raise GateError(f"{option('metric')} {opts.metric!r}: must be one of "
                        f"{', '.join(METRICS)}.")
    if opts.out is not None:
        check_destinations(opts.out, opts.json_out)
    elif opts.json_out is not None:
        raise GateError(f"{option('json_out')} copies the verdict written under "
                        f"{option('out')}: pass {option('out')} too.")
    if opts.ab and opts.metric == "instructions":
        result, extra = _counted_ab(opts, progress)
    elif opts.ab:
        result, extra = _ab(opts, rule, progress)
    else:
        result, extra = _reports(opts), None
    folder = write(result, opts.out, opts.json_out, extra) if opts.out is not None else None
    return GateOutcome(result, folder)


def _rule(opts: GateOptions, metric: str = "latency") -> Rule:
    default = INSTRUCTION_EFFECT if metric == "instructions" else Rule.min_effect
    effect = opts.min_effect if opts.min_effect is not None else default
    try:
        return Rule(alpha=opts.alpha, min_effect=effect)
    except ValueError as exc:
        raise GateError(f"{exc}; see {option('alpha')} and {option('min_effect')}.") from None


def _reports(opts: GateOptions) -> GateResult:
    from ..reports import read_report
    from .compare import compare_reports

    if opts.baseline_artifacts is not None or opts.candidate_artifacts is not None:
        raise GateError(f"{option('baseline_artifacts')} and {option('candidate_artifacts')} "
                        f"need {option('ab')}.")
    if opts.candidate is None:
        raise GateError(f"pass {option('candidate')} REPORT (and {option('baseline')} REPORT, "
                        f"or rely on the committed baseline), or {option('ab')} with two "
                        f"export folders.")
    candidate = read_report(opts.candidate)
    if opts.metric is not None and opts.metric != candidate.metric:
        raise GateError(f"{option('metric')} {opts.metric}: the candidate report "
                        f"{opts.candidate} holds {candidate.metric}; the gate compares what the "
                        f"reports measured (drop {option('metric')}, or bench with it).")
    base_path = opts.baseline if opts.baseline is not None else bl.find(candidate,
                                                                         opts.baselines)
    selection = Selection(opts.formats, opts.precisions, opts.units)
    return compare_reports(read_report(base_path), candidate, _rule(opts, candidate.metric),
                           selection, (str(base_path), str(opts.candidate)),
                           opts.unstable_is_failure)


def _counted_ab(opts: GateOptions, progress: Progress | None) -> tuple[GateResult, dict]:
    """A/B on instruction counts: both export folders counted under callgrind, one after the
    other (counts do not drift, so nothing needs interleaving), then compared."""
    from ..bench.run import BenchOptions, bench
    from ..reports import build_report
    from ..runners.choice import check_runner_choice
    from .compare import compare_reports

    _check_ab_folders(opts)
    selection = Selection(opts.formats or AB_FORMATS, opts.precisions or AB_PRECISIONS,
                          opts.units)
    reports = []
    for side, folder in (("baseline", opts.baseline_artifacts),
                         ("candidate", opts.candidate_artifacts)):
        side_progress = ((lambda step, done, total, side=side:
                          progress(f"{side}: {step}", done, total)) if progress else None)
        run = bench(BenchOptions(folder, device=opts.device, formats=selection.formats,
                                 precisions=selection.precisions, core=opts.core,
                                 metric="instructions", counted_iterations=opts.iterations,
                                 runner=check_runner_choice(opts.runner),
                                 wait_seconds=opts.wait_seconds), side_progress)
        reports.append(build_report(run))
    result = compare_reports(reports[0], reports[1], _rule(opts, "instructions"), selection,
                             (str(opts.baseline_artifacts), str(opts.candidate_artifacts)),
                             opts.unstable_is_failure)
    result.mode = "ab"
    return result, {"reports": reports}


def _check_ab_folders(opts: GateOptions) -> None:
    if opts.baseline is not None or opts.candidate is not None:
        raise GateError(f"{option('ab')} measures two export folders now; {option('baseline')} "
                        f"and {option('candidate')} take reports: use one mode or the other.")
    if opts.baseline_artifacts is None or opts.candidate_artifacts is None:
        raise GateError(f"{option('ab')} needs {option('baseline_artifacts')} DIR and "
                        f"{option('candidate_artifacts')} DIR (export folders).")


def _ab(opts: GateOptions, rule: Rule, progress: Progress | None) -> tuple[GateResult, dict]:
    from ..runners.choice import check_runner_choice
    from .ab import ABOptions, gate_ab, measurements, run_ab

    _check_ab_folders(opts)
    selection = Selection(opts.formats or AB_FORMATS, opts.precisions or AB_PRECISIONS,
                          opts.units)
    ab = ABOptions(opts.baseline_artifacts, opts.candidate_artifacts, opts.device, selection,
                   opts.core, opts.blocks, opts.rounds, opts.iterations, opts.warmup_iterations,
                   runner=check_runner_choice(opts.runner), wait_seconds=opts.wait_seconds)
    run = run_ab(ab, progress)           # reads and checks both exports before any progress
    return gate_ab(run, rule, opts.unstable_is_failure), {"measurements": measurements(run)}
