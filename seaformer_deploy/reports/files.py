"""Writing a report folder (JSON, CSV, Markdown, plots) atomically, and reading one back."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..export.manifest import StagingDir, write_json
from .build import SCHEMA_NAME
from .plots import plot_components, plot_distributions
from .summary import markdown

REPORT = "report.json"


def schema() -> dict:
    return json.loads(Path(__file__).with_name("report.schema.json").read_text())


def validate(report: dict) -> None:
    import jsonschema

    jsonschema.validate(report, schema())


def folder_name(report: dict) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    device = re.sub(r"[^A-Za-z0-9._-]+", "-", report["device"]["name"])
    return f"{stamp}_{device}_{report['export']['model']['name']}"


def samples_frame(report: dict) -> pd.DataFrame:
    """Long format: one row per timed iteration."""
    rows = []
    for a in report["artifacts"]:
        for i, (ms, cpu, block, rnd) in enumerate(zip(a["samples_ms"], a["cpus"], a["blocks"],
                                                      a["rounds"], strict=True)):
            rows.append({"artifact": a["path"], "unit": a["unit"], "format": a["format"],
                         "precision": a["precision"], "block": block, "round": rnd,
                         "iteration": i, "latency_ms": ms, "cpu": cpu})
    return pd.DataFrame(rows)


def write_report(report: dict, root: Path) -> Path:
    """Validate, then write every file into a staging folder renamed into place at the end."""
    validate(report)
    final = Path(root) / folder_name(report)
    with StagingDir(final) as staging:
        write_json(staging.path / REPORT, report)
        samples_frame(report).to_csv(staging.path / "results.csv", index=False)
        (staging.path / "summary.md").write_text(markdown(report))
        plot_components(report, staging.path / "components.png")
        plot_distributions(report, staging.path / "latency.png")
        staging.commit()
    return final


def load_report(path: Path) -> dict:
    """A report from its folder or its report.json; a clear error if it is not one."""
    path = Path(path)
    file = path / REPORT if path.is_dir() else path
    try:
        report = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{file} is not a readable report ({exc}).") from None
    if report.get("schema") != SCHEMA_NAME:
        raise UserError(f"{file} is not a seaformer-deploy bench report.")
    try:
        validate(report)
    except Exception as exc:  # noqa: BLE001 - jsonschema.ValidationError
        raise UserError(f"{file} does not follow the report schema: "
                        f"{str(exc).splitlines()[0]}") from None
    return report
