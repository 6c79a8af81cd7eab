"""Gate two benchmark reports: comparability first, then one verdict per artifact.

Two reports are comparable when the device fingerprint (SoC and model, OS build, core, its type
and top frequency, governor), the model, its input size and output mode, and the thread count
agree; an artifact (model or component, format, precision) is compared only with the artifact
of the same name, and only when the runtime of its format matches (a .pte row needs the same
ExecuTorch, an .onnx row the same ONNX Runtime: a phone benched with ``--formats pte`` has no
ONNX Runtime and still gates against a baseline that has both). Anything else is INCOMPARABLE: a
latency from another device or another runtime says nothing about a regression.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..bench.noise import wander
from ..errors import UserError, option
from ..export import formats as fmts
from ..export import manifest as mf
from ..reports.files import as_report
from ..export.records import Manifest
from ..reports.records import ExportInfo, Measured, Report
from .stats import Shift, latency_problem, unpaired_shift, with_session_noise
from .verdict import INCOMPARABLE, UNSTABLE, Rule, decide, decide_counts, exit_code


class GateError(UserError):
    """Bad or unusable input (missing or corrupt report, interrupted run): exit 2."""


@dataclass(frozen=True)
class Selection:
    """Which artifacts to gate; ``None`` takes all."""

    formats: tuple[str, ...] | None = None
    precisions: tuple[str, ...] | None = None
    units: tuple[str, ...] | None = None

    def keeps(self, artifact: Measured) -> bool:
        """Whether a report's artifact is selected."""
        return self.allows(artifact.format, artifact.precision, artifact.unit)

    def allows(self, fmt: str, precision: str, unit: str) -> bool:
        return all(allowed is None or value in allowed for value, allowed in (
            (fmt, self.formats), (precision, self.precisions), (unit, self.units)))


@dataclass
class Row:
    artifact: str
    unit: str
    format: str
    precision: str
    verdict: str
    reason: str
    shift: Shift | None = None

    def to_dict(self) -> dict:
        return {"artifact": self.artifact, "unit": self.unit, "format": self.format,
                "precision": self.precision, "verdict": self.verdict, "reason": self.reason,
                "shift": self.shift.to_dict() if self.shift else None}


@dataclass
class GateResult:
    mode: str                        # "reports" or "ab"
    rule: Rule
    rows: list[Row]
    baseline: dict                   # what was compared: source, model, device, ...
    candidate: dict
    notes: list[str] = field(default_factory=list)
    unstable_is_failure: bool = False
    metric: str = "latency"          # or instructions: rows compare callgrind's counts

    @property
    def exit_code(self) -> int:
        return exit_code([r.verdict for r in self.rows], self.unstable_is_failure)


def identity(report: Report, source: str) -> dict:
    """What a verdict file records about one side (the digest pins the report's content)."""
    export = report.export
    digest = mf.sha256_bytes(json.dumps(report.to_dict(), sort_keys=True).encode())
    return {"source": source, "report_sha256": digest, "created": report.created,
            "status": report.status, "model": export.model.name,
            "input_size": export.input.size, "output": export.output.mode,
            "weights": export.weights, "device": report.device.name,
            "fingerprint": report.device.fingerprint.to_dict()}


def compare_reports(baseline: Report | dict, candidate: Report | dict, rule: Rule,
                    selection: Selection, sources: tuple[str, str] = ("baseline", "candidate"),
                    unstable_is_failure: bool = False) -> GateResult:
    """One row per artifact of either report; a report may be given as its JSON document."""
    baseline, candidate = as_report(baseline, sources[0]), as_report(candidate, sources[1])
    sides = {"baseline": (baseline, sources[0]), "candidate": (candidate, sources[1])}
    for name, (report, source) in sides.items():
        _check_usable(report, name, source)
    mismatch = report_mismatch(baseline, candidate)
    arts_a = {a.path: a for a in baseline.artifacts if selection.keeps(a)}
    arts_b = {a.path: a for a in candidate.artifacts if selection.keeps(a)}
    rows = [_row(path, arts_a.get(path), arts_b.get(path), mismatch, baseline, candidate, rule)
            for path in sorted(arts_a.keys() | arts_b.keys(), key=artifact_order)]
    if not rows:
        raise GateError(f"no artifact of either report matches {option('formats')}/"
                        f"{option('precisions')}/{option('units')}.")
    result = GateResult("reports", rule, rows, identity(baseline, sources[0]),
                        identity(candidate, sources[1]), unstable_is_failure=unstable_is_failure,
                        metric=candidate.metric if not mismatch else "latency")
    result.notes += _parity_notes(candidate)
    return result


def _check_usable(report: Report, name: str, source: str) -> None:
    """A complete run with at least one artifact, every one with latencies the tests can use."""
    if report.status != "complete":
        raise GateError(f"the {name} report {source} is {report.status}, not complete: its "
                        f"samples are partial. Re-run the benchmark.")
    if not report.artifacts:
        failed = len(report.failures)
        why = (f"all {failed} failed, see its failures" if failed
               else "its artifacts list is empty, whatever its status says")
        raise GateError(f"the {name} report {source} measured no artifact ({why}): there is "
                        f"nothing to gate. Re-run the benchmark.")
    for i, art in enumerate(report.artifacts):
        if report.metric == "instructions" and not (art.counts and art.counts.get("Ir")):
            raise GateError(f"the {name} report {source}: artifacts[{i}] ({art.path}) has no "
                            f"instruction counts, though the report's metric is instructions; "
                            f"the report is damaged. Re-run the benchmark.")
        if problem := latency_problem(art.samples_ms):
            raise GateError(f"the {name} report {source}: artifacts[{i}].samples_ms "
                            f"({art.path}) {problem}; a latency is a finite number of "
                            f"milliseconds above 0, so the report is damaged. Re-run the "
                            f"benchmark, or restore the file.")


def _row(path: str, a: Measured | None, b: Measured | None, mismatch: str, baseline: Report,
         candidate: Report, rule: Rule) -> Row:
    """One artifact's verdict; INCOMPARABLE (with the reason) unless both sides can be tested."""
    meta = a or b
    row = Row(path, meta.unit, meta.format, meta.precision, INCOMPARABLE, "")
    if mismatch:
        row.reason = mismatch
    elif a is None:
        row.reason = _missing_reason(path, meta.format, "baseline", baseline, candidate)
    elif b is None:
        row.reason = _missing_reason(path, meta.format, "candidate", candidate, baseline)
    elif runtimes := runtime_mismatch(baseline, candidate, meta.format):
        row.reason = runtimes
    elif candidate.metric == "instructions":
        row.verdict, row.reason, row.shift = decide_counts(a.counts["Ir"], b.counts["Ir"], rule)
    elif (n := min(len(a.samples_ms), len(b.samples_ms))) < 2:
        # The rank test needs two values per side; with fewer nothing can be decided.
        row.verdict = UNSTABLE
        row.reason = (f"{n} iteration(s) per side, fewer than the {rule.min_samples} needed "
                      f"to decide")
    else:
        x, y = np.asarray(a.samples_ms), np.asarray(b.samples_ms)
        # From the samples (in time order), not the reports' stats: older reports lack it.
        moved = wander(x), wander(y)
        row.shift = with_session_noise(unpaired_shift(x, y, rule.confidence), *moved)
        row.verdict, row.reason = decide(row.shift, rule)
        if row.shift.session_sd:
            row.reason += (f"; the machine's speed wandered within the runs (baseline "
                           f"+-{100 * moved[0].level:.1f} %, candidate "
                           f"+-{100 * moved[1].level:.1f} %), which the interval includes")
            if row.verdict == UNSTABLE:
                row.reason += "; gate --ab compares side by side, where that cancels"
    return row


def _missing_reason(path: str, fmt: str, side: str, lacking: Report, other: Report) -> str:
    """Why ``lacking`` has no result for ``path``, and what to do about it."""
    failure = next((f for f in lacking.failures if f.path == path), None)
    if failure is not None:
        return f"no result in the {side}: the runner {failure.reason} in block {failure.block}"
    if fmt not in lacking.formats():
        both = sorted(lacking.formats() & other.formats())
        hint = f": pass --formats {','.join(both)} to gate what both measured" if both else ""
        return f"not measured in the {side}, which has no .{fmt} artifact{hint}"
    return f"not measured in the {side}"


def report_mismatch(a: Report, b: Report) -> str:
    """Why two reports cannot be compared at all, or '' when they can (runtimes are compared
    per artifact format: see ``runtime_mismatch``)."""
    if a.metric != b.metric:
        return (f"metric: {a.metric} vs {b.metric}: instruction counts and latencies measure "
                f"different things; bench both sides with the same --metric")
    fa, fb = a.device.fingerprint.fields, b.device.fingerprint.fields
    problems = [f"device {key}: {fa.get(key)!r} vs {fb.get(key)!r}"
                for key in sorted(fa.keys() | fb.keys())
                if key != "runtimes" and fa.get(key) != fb.get(key)]
    problems += export_mismatch(a.export, b.export)
    if (ta := a.protocol.get("threads")) != (tb := b.protocol.get("threads")):
        problems.append(f"threads: {ta} vs {tb}")
    return "; ".join(problems)


def runtime_mismatch(a: Report, b: Report, fmt: str) -> str:
    """Why ``fmt`` artifacts of the two reports ran on different runtimes, or '' when they did
    not: only that format's runtime counts, the other runners never touched them."""
    ra, rb = (r.device.fingerprint.fields.get("runtimes") for r in (a, b))
    if isinstance(ra, dict) and isinstance(rb, dict):
        x, y = ra.get(fmt), rb.get(fmt)
        return "" if x == y else f"device runtimes ({fmt}): {x!r} vs {y!r}"
    return "" if ra == rb else f"device runtimes: {ra!r} vs {rb!r}"


def export_mismatch(a: Manifest | ExportInfo, b: Manifest | ExportInfo) -> list[str]:
    """Model, input size, output mode, classes: what makes two exports different workloads.

    ``a`` and ``b`` are manifests or a report's ``export`` section (the same records)."""
    checks = (("model", a.model.name, b.model.name),
              ("classes", a.model.num_classes, b.model.num_classes),
              ("input size", a.input.size, b.input.size),
              ("output", a.output.mode, b.output.mode))
    return [f"{name}: {x!r} vs {y!r}" for name, x, y in checks if x != y]


def _parity_notes(report: Report) -> list[str]:
    return [f"{a.path}: the candidate failed on-device parity ({'; '.join(a.parity.failures)})"
            for a in report.artifacts if a.parity is not None and not a.parity.passed]


UNIT_ORDER = ("model", "stem", "context", "spatial", "head")


def artifact_order(path: str) -> tuple:
    """Rows in reading order: formats in table order (.pte, .onnx, ...), FP32 before FP16, then
    model, stem, context, spatial, head."""
    unit, precision, fmt = path.split(".")[:3] if path.count(".") >= 2 else (path, "", "")
    rank = UNIT_ORDER.index(unit) if unit in UNIT_ORDER else len(UNIT_ORDER)
    known = fmts.of_path(path)
    return (fmts.rank(known.name if known else fmt), fmt, precision != "fp32", precision, rank,
            path)
