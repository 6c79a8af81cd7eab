"""Committed baselines: ``reports/baselines/<device fingerprint>/<model>_<H>x<W>_<output>.json``.

A baseline is a complete bench report (raw samples included), accepted with ``seaformer-deploy
baseline update``. The folder name is readable and exact: a slug of the device model and core
plus the fingerprint digest, which covers SoC and model, OS build, runtime versions, the core,
its type and frequency, and its governor. Precision and format are per artifact inside the file.
Beside the baselines, ``fingerprint.json`` spells the fingerprint's fields out for reviewers.

A baseline must be a complete measurement: at least one measured artifact, and no artifact the
bench planned without a result (failed, or never reached); otherwise those artifacts would be
INCOMPARABLE in every gate against it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import option
from ..export import manifest as mf
from ..reports.files import ReportError, as_report, read_report
from ..reports.records import Report
from .compare import GateError

ROOT = Path("reports") / "baselines"
FINGERPRINT = "fingerprint.json"


def device_folder(report: Report) -> str:
    fp = report.device.fingerprint
    model = fp.fields.get("device_model")
    label = (model if model and model != "unknown" else None) or fp.fields.get("cpu_model") \
        or report.device.name
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{label} cpu{fp.fields.get('core')}").strip("-")
    return f"{slug.lower()[:60]}_{fp.digest}"


def file_name(report: Report) -> str:
    export = report.export
    h, w = export.input.size
    return f"{export.model.name}_{h}x{w}_{export.output.mode}.json"


def baseline_path(report: Report | dict, root: Path = ROOT) -> Path:
    """Where the baseline for ``report``'s device, model, size and output lives."""
    report = as_report(report)
    return Path(root) / device_folder(report) / file_name(report)


def find(candidate: Report, root: Path = ROOT) -> Path:
    """The committed baseline matching ``candidate``, or a GateError saying what exists."""
    path = baseline_path(candidate, root)
    if path.is_file():
        return path
    same = same_device_baselines(candidate, root)
    if len(same) == 1:
        return same[0]
    known = sorted(str(p.relative_to(root)) for p in Path(root).glob("*/*.json")
                   if p.name != FINGERPRINT) if Path(root).is_dir() else []
    fields = candidate.device.fingerprint.fields
    several = (f"Several baselines fit this device ({', '.join(map(str, same))}): "
               if same else "")
    raise GateError(
        f"no baseline at {path} for this device fingerprint "
        f"({', '.join(f'{k}={v}' for k, v in fields.items())}).\n"
        f"{several}Known baselines under {root}: {', '.join(known) or 'none'}.\n"
        f"Pass {option('baseline')} REPORT, or accept a reference run with "
        f"`seaformer-deploy baseline update REPORT`.")


def same_device_baselines(candidate: Report, root: Path = ROOT) -> list[Path]:
    """Baselines whose fingerprint differs from the candidate's only in runtimes the candidate
    did not use: a phone benched with ``--formats pte`` has its own digest, yet gates against a
    baseline of .pte and .onnx (the gate compares runtimes per format)."""
    fields, formats = candidate.device.fingerprint.fields, candidate.formats()
    found = []
    for fingerprint in sorted(Path(root).glob(f"*/{FINGERPRINT}")):
        other = _read_fields(fingerprint)
        path = fingerprint.parent / file_name(candidate)
        if other is not None and _same_device(fields, other, formats) and path.is_file():
            found.append(path)
    return found


def _read_fields(fingerprint: Path) -> dict | None:
    """A baseline folder's fingerprint fields; None when unreadable (that folder is skipped)."""
    try:
        fields = json.loads(fingerprint.read_text())["fields"]
    except (OSError, ValueError, LookupError, TypeError):
        return None
    return fields if isinstance(fields, dict) else None


def _same_device(a: dict, b: dict, formats: set[str]) -> bool:
    if any(a.get(k) != b.get(k) for k in a.keys() | b.keys() if k != "runtimes"):
        return False
    ra, rb = a.get("runtimes"), b.get("runtimes")
    if not (isinstance(ra, dict) and isinstance(rb, dict)):
        return ra == rb
    return all(ra.get(f) == rb.get(f) for f in formats)


def update(report_path: Path, root: Path = ROOT, force: bool = False
           ) -> tuple[Path, Report | None]:
    """Accept a report as the baseline; return its path and the baseline it replaced."""
    report = read_report(report_path)
    check_acceptable(report, report_path, force)
    path = baseline_path(report, root)
    previous = _previous(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mf.write_json(path, report.to_dict())
        mf.write_json(path.parent / FINGERPRINT, report.device.fingerprint.to_dict())
    except OSError as exc:
        raise GateError(f"cannot write the baseline {path} ({exc.strerror or exc}): pass "
                        f"{option('baselines')} a folder you can write to.") from None
    return path, previous


def check_acceptable(report: Report | dict, source: object, force: bool = False) -> None:
    """Refuse a report that cannot serve as a baseline, saying which rule it breaks."""
    report = as_report(report, str(source))
    if report.status != "complete":
        raise GateError(f"{source} is an {report.status} run; a baseline must be "
                        f"complete. Re-run the benchmark.")
    lacking = without_result(report)
    if lacking or not report.artifacts:
        what = (f"no result for {_listing(lacking)}" if lacking
                else "it measured no artifact (its artifacts list is empty, whatever its "
                     "status says)")
        raise GateError(f"{source} cannot be a baseline: {what}. A baseline needs at least one "
                        f"measured artifact and no failed or unmeasured one (those would be "
                        f"INCOMPARABLE in every gate). Re-run the benchmark; limit it with "
                        f"{option('formats')}/{option('precisions')} to what this device can "
                        f"run.")
    failed = report.parity_failures()
    if failed and not force:
        raise GateError(f"{source}: on-device parity failed for {', '.join(failed)}; a "
                        f"baseline of wrong outputs gates nothing. Fix the export, or pass "
                        f"{option('force')}.")


def without_result(report: Report) -> list[str]:
    """The artifacts the bench planned that have no result, each with why."""
    measured = {a.path for a in report.artifacts}
    lacking = {f.path: f"the runner {f.reason} in block {f.block}"
               for f in report.failures if f.path not in measured}
    for block in report.blocks:
        for path in block["artifacts"]:
            if path not in measured and path not in lacking:
                lacking[path] = f"planned in block {block['index']}, never measured"
    return [f"{path} ({why})" for path, why in lacking.items()]


def _listing(items: list[str], most: int = 4) -> str:
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def _previous(path: Path) -> Report | None:
    """The baseline about to be replaced, so the caller can say which run it was."""
    if not path.is_file():
        return None
    try:
        return read_report(path)
    except ReportError as exc:
        raise GateError(f"the baseline this report would replace is damaged: {exc} Remove it "
                        f"(`git rm {path}`), then run baseline update again.") from None
