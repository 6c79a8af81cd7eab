"""Writing a report folder (JSON, CSV, Markdown, plots) atomically, and reading one back.

Reading is strict: the gate turns what it reads into a CI verdict, so a report that is not what
``bench`` writes is refused with one ReportError (exit 2) naming the file, the field and what to
do, rather than half-read into a traceback (which CI would take for a regression).
"""

from __future__ import annotations

import functools
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..export.manifest import StagingDir, write_json
from ..export.formats import with_format_enum
from .records import SCHEMA_NAME, SCHEMA_VERSION, Report
from .plots import plot_components, plot_distributions
from .summary import markdown

REPORT = "report.json"
USE = "pass a report folder written by `seaformer-deploy bench`, or its report.json"
REDO = ("re-run the benchmark (`seaformer-deploy bench`), or restore the file (a committed "
        "baseline: `git checkout` it)")
# Documents of the project that are not reports, named when one is passed by mistake.
OTHER_KINDS = {"seaformer-deploy/gate-verdict": "a gate verdict (`gate` writes those)",
               "seaformer-deploy/export-manifest": "an export manifest (an export folder's)"}


class ReportError(UserError):
    """A report that is missing, unreadable, off-schema, damaged or from a newer version."""


def schema() -> dict:
    return with_format_enum(json.loads(Path(__file__).with_name("report.schema.json").read_text()))


@functools.cache
def _validator():
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


def validate(report: dict, source: str = "the report") -> None:
    """Raise a ReportError naming the field when ``report`` is off the schema or holds a value
    no reader can use (see ``_first_bad_value``)."""
    import jsonschema

    if (found := _first_bad_value(report)) is not None:
        where, problem = found
        raise ReportError(f"{source}: {_field(report, where)} is {problem}"
                          f"{_latency_hint(where)}; {REDO}.")
    error = jsonschema.exceptions.best_match(_validator().iter_errors(report))
    if error is not None:
        raise ReportError(f"{source} does not follow the report schema at "
                          f"{_field(report, tuple(error.absolute_path))}: "
                          f"{_short(error.message)}{_latency_hint(error.absolute_path)}; {REDO}.")


MAX_DEPTH = 32                        # a report nests 7 levels; far deeper is not one


def _first_bad_value(value: object) -> tuple[tuple, str] | None:
    """The first value, in document order, that JSON Schema lets through but a reader cannot
    use, with where it is: NaN and infinities (Python's json writes and reads them), integers
    beyond a float's range, text that cannot be printed (lone surrogates), deep nesting.

    An infinity inside an artifact's ``parity`` is allowed: export/parity.py records device
    outputs that are not finite that way, a measured parity failure rather than damage."""
    stack = [((), value)]
    while stack:                      # iterative: nesting depth is what is being checked
        where, v = stack.pop()
        if (problem := _bad_scalar(v, where)) is not None:
            return where, problem
        if isinstance(v, (dict, list)) and len(where) >= MAX_DEPTH:
            return where, f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(v, dict):
            for key in v:
                if _bad_scalar(key, where) is not None:
                    return (*where, key), "a key that is not valid Unicode text"
            stack.extend(reversed([((*where, k), x) for k, x in v.items()]))
        elif isinstance(v, list):
            stack.extend(reversed([((*where, i), x) for i, x in enumerate(v)]))
    return None


def _bad_scalar(v: object, where: tuple) -> str | None:
    if isinstance(v, float) and not math.isfinite(v):
        if math.isinf(v) and _in_parity(where):
            return None
        token = "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
        return f"{token}, not a finite number"
    if isinstance(v, int) and not isinstance(v, bool):
        try:
            float(v)
        except OverflowError:
            return "a number too large for a float"
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return "text that is not valid Unicode (a lone surrogate)"
    return None


def _in_parity(where: tuple) -> bool:
    return len(where) >= 3 and where[0] == "artifacts" and where[2] == "parity"


def _field(report: object, where: tuple) -> str:
    """``artifacts[2].samples_ms[7] (model.fp32.pte)``: the field, and the artifact it is in."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where).lstrip(".")
    try:
        name = report["artifacts"][where[1]]["path"] if where[0] == "artifacts" else None
    except (LookupError, TypeError):
        name = None
    return (text or "(top level)") + (f" ({name})" if isinstance(name, str) else "")


def _latency_hint(where: object) -> str:
    return (": a latency is a finite number of milliseconds above 0"
            if "samples_ms" in list(where) else "")


def _short(text: str, limit: int = 160) -> str:
    """jsonschema quotes the offending value whole; a message stays one readable line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def folder_name(report: Report) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    device = re.sub(r"[^A-Za-z0-9._-]+", "-", report.device.name)
    return f"{stamp}_{device}_{report.export.model.name}"


def samples_frame(report: Report | dict) -> pd.DataFrame:
    """Long format: one row per timed iteration."""
    rows = []
    for a in as_report(report).artifacts:
        for i, (ms, cpu, block, rnd) in enumerate(zip(a.samples_ms, a.cpus, a.blocks, a.rounds,
                                                      strict=True)):
            rows.append({"artifact": a.path, "unit": a.unit, "format": a.format,
                         "precision": a.precision, "block": block, "round": rnd,
                         "iteration": i, "latency_ms": ms, "cpu": cpu})
    return pd.DataFrame(rows)


def write_report(report: Report | dict, root: Path) -> Path:
    """Validate, then write every file into a staging folder renamed into place at the end."""
    doc = report.to_dict() if isinstance(report, Report) else report
    validate(doc)
    typed = typed_report(doc)
    final = Path(root) / folder_name(typed)
    with StagingDir(final) as staging:
        write_json(staging.path / REPORT, doc)
        samples_frame(typed).to_csv(staging.path / "results.csv", index=False)
        (staging.path / "summary.md").write_text(markdown(typed))
        plot_components(typed, staging.path / "components.png")
        plot_distributions(typed, staging.path / "latency.png")
        staging.commit()
    return final


def read_report(path: Path) -> Report:
    """A report from its folder or its report.json as a typed record (see ``load_report``)."""
    return typed_report(load_report(path), str(path))


def as_report(report: Report | dict, source: str = "the report") -> Report:
    """``report`` as the record; its JSON document (as ``load_report`` returns) is read."""
    return report if isinstance(report, Report) else typed_report(report, source)


def typed_report(doc: dict, source: str = "the report") -> Report:
    """A validated report's JSON as the record; a value the schema lets through but the record
    cannot hold is a ReportError, not a traceback."""
    import cattrs

    try:
        return Report.from_dict(doc)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        found = "; ".join(_short(m) for m in cattrs.transform_error(exc)) if isinstance(
            exc, cattrs.BaseValidationError) else _short(exc)
        raise ReportError(f"{source} does not hold what bench writes: {found}; {REDO}.") from None


def load_report(path: Path) -> dict:
    """A report from its folder or its report.json, validated; a ReportError says what is
    wrong with it and what to do."""
    try:
        file = _report_file(Path(path))
    except (OSError, ValueError) as exc:          # e.g. a name too long for the file system
        raise ReportError(f"{path} is not a readable report ({exc}); {USE}.") from None
    report = _parse(file)
    _check_kind(report, file)
    validate(report, str(file))
    return report


def _report_file(path: Path) -> Path:
    file = path / REPORT if path.is_dir() else path
    if not file.exists():
        why = f"the folder has no {REPORT}" if path.is_dir() else "no such file or folder"
        raise ReportError(f"{path} is not a readable report: {why}; {USE}.")
    if not file.is_file():                        # a folder named report.json, a device, a FIFO
        raise ReportError(f"{file} is not a readable report: it is not a regular file; {USE}.")
    return file


def _parse(file: Path) -> object:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ReportError(f"{file} is not a readable report: it is not UTF-8 text; "
                          f"{USE}.") from None
    except OSError as exc:
        raise ReportError(f"{file} is not a readable report: {exc.strerror or exc}; check "
                          f"that you may read it, or {USE}.") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ReportError(f"{file} is not a readable report: its JSON nests too deeply; "
                          f"{USE}.") from None
    except ValueError as exc:
        raise ReportError(f"{file} is not a readable report: invalid JSON ({_short(exc)}), "
                          f"the file is truncated or damaged; {REDO}.") from None


def _check_kind(report: object, file: Path) -> None:
    """A JSON object that says it is a bench report of a version this code reads."""
    if not isinstance(report, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(report), "a number")
        raise ReportError(f"{file} is not a readable report: it holds {kind}, not a JSON "
                          f"object; {USE}.")
    name = report.get("schema")
    if name != SCHEMA_NAME:
        what = OTHER_KINDS.get(name) if isinstance(name, str) else None
        raise ReportError(f"{file} is not a seaformer-deploy bench report: " + (
            f"it is {what}" if what else f'its "schema" is {_short(repr(name), 60)}, not '
                                         f'"{SCHEMA_NAME}"') + f"; {USE}.")
    version = report.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        tools = report.get("tools")
        wrote = tools.get("seaformer-deploy") if isinstance(tools, dict) else None
        raise ReportError(
            f"{file} is a version-{version} report; this seaformer-deploy reads version "
            f"{SCHEMA_VERSION}: read it with the seaformer-deploy that wrote it"
            + (f" ({_short(wrote, 40)})" if isinstance(wrote, str) else "")
            + ", or update this one.")
