"""Hostile and broken inputs for the commands that read reports (``report show``, ``gate``,
``baseline update``), and the checks every refusal must pass.

Each ``Case`` writes its input under a folder and returns the path to pass on the command line.
The valid report they start from is a real bench report, trimmed (tests/reports/data)."""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import typer
from click.testing import CliRunner

from seaformer_deploy.cli import app
from seaformer_deploy.reports.files import schema

VALID = Path(__file__).resolve().parents[1] / "reports" / "data" / "report.json"
# Folder names that Rich would read as markup or emoji, or a shell would split or quote.
AWKWARD_NAMES = ["plain", "[/x]", "[red]x", "with space", "quote'\"s", "emoji:smile:",
                 "[bold]b[/bold]"]


# Built once: typer's own test runner rebuilds the command tree on every call (~60 ms), and this
# suite makes hundreds of calls.
COMMAND = typer.main.get_command(app)


def invoke(*args: object):
    """Run the command line in process, as typer's CliRunner does."""
    return CliRunner().invoke(COMMAND, [str(a) for a in args])


def valid_report() -> dict:
    return json.loads(VALID.read_text())


def write(folder: Path, content: dict | str | bytes) -> Path:
    """``folder/report.json`` holding ``content`` (a dict is dumped as Python does: NaN and
    Infinity included); returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "report.json"
    if isinstance(content, bytes):
        file.write_bytes(content)
    else:
        file.write_text(content if isinstance(content, str) else json.dumps(content))
    return folder


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path], Path]      # writes the input under a folder; returns what to pass
    shows: bool = False               # `report show` displays it (gate and baseline refuse it)
    says: str = ""                    # a phrase the error must contain
    root_skips: bool = False          # needs a permission that root ignores

    def __repr__(self) -> str:        # pytest ids
        return self.id


def edited(change: Callable[[dict], object]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        report = valid_report()
        change(report)
        return write(folder, report)
    return make


def text(content: str | bytes) -> Callable[[Path], Path]:
    return lambda folder: write(folder, content)


def sample(value: float) -> Callable[[dict], None]:
    return lambda r: r["artifacts"][1]["samples_ms"].__setitem__(3, value)


def _unreadable(folder: Path) -> Path:
    write(folder, valid_report())
    os.chmod(folder / "report.json", 0)
    return folder


def _report_json_is_a_folder(folder: Path) -> Path:
    (folder / "report.json").mkdir(parents=True)
    return folder


def _removed(path: tuple) -> Callable[[dict], None]:
    def change(report: dict) -> None:
        node = report
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return change


def required_paths(instance: object, node: dict | None = None, path: tuple = ()
                   ) -> Iterator[tuple]:
    """Every required key the schema asks for that the valid report has, found by walking the
    schema and the report together (the first item stands for each array)."""
    root = schema()
    node = root if node is None else node
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
    if isinstance(instance, dict):
        yield from ((*path, key) for key in node.get("required", []) if key in instance)
        for key, sub in node.get("properties", {}).items():
            if key in instance:
                yield from required_paths(instance[key], sub, (*path, key))
    elif isinstance(instance, list) and instance and isinstance(node.get("items"), dict):
        yield from required_paths(instance[0], node["items"], (*path, 0))


def dotted(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _overflow(folder: Path) -> Path:
    """A literal too large for a float: Python's json reads 1e999 as infinity."""
    report = valid_report()
    sample(123456.125)(report)
    return write(folder, json.dumps(report).replace("123456.125", "1e999"))


def _nested(depth: int) -> list:
    node: list = []
    for _ in range(depth):
        node = [node]
    return node


def _half(folder: Path) -> Path:
    whole = VALID.read_text()
    return write(folder, whole[:len(whole) // 2])


CASES = [
    Case("missing-folder", lambda d: d / "nowhere", says="no such file or folder"),
    Case("missing-file", lambda d: d / "nowhere" / "report.json", says="no such file"),
    Case("folder-without-report", lambda d: (d / "empty").mkdir() or d / "empty",
         says="has no report.json"),
    Case("report-json-is-a-folder", _report_json_is_a_folder, says="not a regular file"),
    Case("unreadable", _unreadable, says="Permission denied", root_skips=True),
    Case("empty-file", text(""), says="invalid JSON"),
    Case("truncated", _half, says="invalid JSON"),
    Case("not-utf8", text(b"\xff\xfe{\x00"), says="not UTF-8"),
    Case("deep-nesting", text("[" * 100_000 + "]" * 100_000), says="is not a readable report"),
    Case("json-array", text("[]"), says="holds an array"),
    Case("json-string", text('"report"'), says="holds a string"),
    Case("json-number", text("42"), says="holds a number"),
    Case("json-null", text("null"), says="holds null"),
    Case("json-bool", text("true"), says="holds a boolean"),
    Case("gate-verdict", text('{"schema": "seaformer-deploy/gate-verdict"}'),
         says="it is a gate verdict"),
    Case("other-json-object", text('{"hello": "world"}'), says="not a seaformer-deploy bench"),
    Case("future-version", edited(lambda r: r.update(schema_version=2)),
         says="version-2 report; this seaformer-deploy reads version 1"),
    Case("version-zero", edited(lambda r: r.update(schema_version=0)), says="schema_version"),
    Case("sample-nan", edited(sample(math.nan)), says="samples_ms[3] (head.fp32.pte) is NaN"),
    Case("sample-inf", edited(sample(math.inf)), says="samples_ms[3] (head.fp32.pte) is Infinity"),
    Case("sample-minus-inf", edited(sample(-math.inf)), says="is -Infinity"),
    Case("sample-negative", edited(sample(-3.0)), says="samples_ms[3] (head.fp32.pte)"),
    Case("sample-zero", edited(sample(0.0)), says="samples_ms[3] (head.fp32.pte)"),
    Case("sample-string", edited(sample("fast")), says="samples_ms[3]"),
    Case("sample-overflow", _overflow, says="samples_ms[3] (head.fp32.pte) is Infinity"),
    Case("no-samples", edited(lambda r: r["artifacts"][0].update(samples_ms=[])),
         says="samples_ms"),
    Case("stats-nan", edited(lambda r: r["artifacts"][0]["stats"].update(median=math.nan)),
         says="stats.median (model.fp32.pte) is NaN"),
    Case("stats-null", edited(lambda r: r["artifacts"][0]["stats"].update(median=None)),
         says="stats.median"),
    Case("wall-seconds-nan", edited(lambda r: r.update(wall_seconds=math.nan)),
         says="wall_seconds is NaN"),
    Case("status-edited", edited(lambda r: r.update(status="done")), says="status"),
    Case("status-interrupted", edited(lambda r: r.update(status="interrupted")), shows=True,
         says="interrupted"),
    Case("complete-without-artifacts",
         edited(lambda r: r.update(artifacts=[], components=[], blocks=[])), shows=True,
         says="measured no artifact"),
    Case("model-name-climbs-out", edited(lambda r: r["export"]["model"].update(name="../../x")),
         says="export.model.name"),
    Case("digest-climbs-out",
         edited(lambda r: r["device"]["fingerprint"].update(digest="../../x")),
         says="device.fingerprint.digest"),
    Case("artifacts-not-a-list", edited(lambda r: r.update(artifacts={"a": 1})),
         says="artifacts"),
    Case("huge-integer", edited(lambda r: r["artifacts"][0].update(bytes=10 ** 400)),
         says="artifacts[0].bytes (model.fp32.pte) is a number too large"),
    Case("lone-surrogate", lambda d: write(d, json.dumps(valid_report()).replace(
        '"name": "local"', '"name": "\\ud800"', 1)), says="device.name is text that is not"),
    Case("nested-40-deep", edited(lambda r: r["paper"].update(extra=_nested(40))),
         says="nested deeper than 32 levels"),
    *[Case(f"without-{dotted(p)}", edited(_removed(p)),
           says=("not a seaformer-deploy bench report" if p == ("schema",)
                 else f"'{p[-1]}' is a required property"))
      for p in required_paths(valid_report())],
]
# Inputs `baseline update` refuses besides CASES (gate compares them: rows say why).
NOT_BASELINES = [
    Case("failed-artifact", edited(lambda r: r.update(
        artifacts=r["artifacts"][:2],
        failures=[{"path": "model.fp32.onnx", "unit": "model", "format": "onnx",
                   "precision": "fp32", "block": 1, "reason": "hung", "runner": "onnx",
                   "returncode": None, "signal": None, "stderr_tail": "",
                   "samples_ms": []}])),
        shows=True, says="no result for model.fp32.onnx (the runner hung in block 1)"),
    Case("planned-never-measured", edited(lambda r: r.update(artifacts=r["artifacts"][1:])),
         shows=True, says="model.fp32.pte (planned in block 0, never measured)"),
]


def refusal(result) -> str:
    """Check a refused command: exit 2, no crash or traceback, nothing on stdout, and exactly
    one stderr line starting with "error:" (the first). Returns that line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("error:"), result.stderr
    assert sum(line.startswith("error:") for line in lines) == 1, result.stderr
    return result.stderr


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (empty when it does not exist)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*")) if not p.is_symlink()}


def deep(report: dict) -> dict:
    return copy.deepcopy(report)
