"""Committed baselines: ``reports/baselines/<device fingerprint>/<model>_<H>x<W>_<output>.json``.

A baseline is a complete bench report (raw samples included), accepted with ``seaformer-deploy
baseline update``. The folder name is readable and exact: a slug of the device model and core
plus the fingerprint digest, which covers SoC and model, OS build, runtime versions, the core,
its type and frequency, and its governor. Precision and format are per artifact inside the file.
Beside the baselines, ``fingerprint.json`` spells the fingerprint's fields out for reviewers.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..export import manifest as mf
from ..reports.files import load_report
from .compare import GateError

ROOT = Path("reports") / "baselines"
FINGERPRINT = "fingerprint.json"


def device_folder(report: dict) -> str:
    fp = report["device"]["fingerprint"]
    fields = fp["fields"]
    model = fields.get("device_model")
    label = (model if model and model != "unknown" else None) or fields.get("cpu_model") \
        or report["device"]["name"]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{label} cpu{fields.get('core')}").strip("-").lower()
    return f"{slug[:60]}_{fp['digest']}"


def file_name(report: dict) -> str:
    export = report["export"]
    h, w = export["input"]["size"]
    return f"{export['model']['name']}_{h}x{w}_{export['output']['mode']}.json"


def baseline_path(report: dict, root: Path = ROOT) -> Path:
    """Where the baseline for ``report``'s device, model, size and output lives."""
    return Path(root) / device_folder(report) / file_name(report)


def find(candidate: dict, root: Path = ROOT) -> Path:
    """The committed baseline matching ``candidate``, or a GateError saying what exists."""
    path = baseline_path(candidate, root)
    if path.is_file():
        return path
    known = sorted(str(p.relative_to(root)) for p in Path(root).glob("*/*.json")
                   if p.name != FINGERPRINT) if Path(root).is_dir() else []
    fields = candidate["device"]["fingerprint"]["fields"]
    raise GateError(
        f"no baseline at {path} for this device fingerprint "
        f"({', '.join(f'{k}={v}' for k, v in fields.items())}).\n"
        f"Known baselines under {root}: {', '.join(known) or 'none'}.\n"
        f"Pass --baseline REPORT, or accept a reference run with "
        f"`seaformer-deploy baseline update REPORT`.")


def update(report_path: Path, root: Path = ROOT, force: bool = False) -> tuple[Path, dict | None]:
    """Accept a report as the baseline; return its path and the baseline it replaced."""
    report = load_report(report_path)
    if report["status"] != "complete":
        raise GateError(f"{report_path} is an {report['status']} run; a baseline must be "
                        f"complete. Re-run the benchmark.")
    failed = [a["path"] for a in report["artifacts"]
              if a.get("parity") and not a["parity"]["passed"]]
    if failed and not force:
        raise GateError(f"{report_path}: on-device parity failed for {', '.join(failed)}; a "
                        f"baseline of wrong outputs gates nothing. Fix the export, or pass "
                        f"--force.")
    path = baseline_path(report, root)
    previous = load_report(path) if path.is_file() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    fp = report["device"]["fingerprint"]
    mf.write_json(path.parent / FINGERPRINT, {"digest": fp["digest"], "fields": fp["fields"]})
    mf.write_json(path, report)
    return path, previous
