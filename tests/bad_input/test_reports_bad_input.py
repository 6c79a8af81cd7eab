"""`report show` and the report reader on hostile and broken input.

Every refusal: exit 2, one line starting with "error:" that names the file (and the field),
no traceback, nothing written. Hypothesis feeds the reader arbitrary JSON and mutated valid
reports: each loads, or is refused with the project's UserError, never another exception; a
report that loads also renders, gates against itself and is judged as a baseline without
crashing."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console
from bad_input.hostile import (AWKWARD_NAMES, CASES, NOT_BASELINES, VALID, edited, invoke,
                               refusal, sample, snapshot, valid_report, write)
from seaformer_deploy.errors import UserError
from seaformer_deploy.gate.baselines import baseline_path, check_acceptable
from seaformer_deploy.gate.compare import Selection, compare_reports
from seaformer_deploy.gate.output import document, markdown
from seaformer_deploy.gate.verdict import Rule
from seaformer_deploy.reports import load_report
from seaformer_deploy.reports.show import render

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def show(path: Path):
    return invoke("report", "show", path)


def skip_for_root(case) -> None:
    if case.root_skips and IS_ROOT:
        pytest.skip("root reads a file whatever its mode")


def test_the_valid_report_shows():
    result = show(VALID)
    assert result.exit_code == 0, result.output
    assert "model.fp32.pte" in result.stdout and result.stderr == ""


@pytest.mark.parametrize("case", [c for c in CASES + NOT_BASELINES if not c.shows], ids=repr)
def test_report_show_refuses(tmp_path, case):
    skip_for_root(case)
    target = case.make(tmp_path)
    before = snapshot(tmp_path)
    message = refusal(show(target))
    assert case.says in message and str(target) in message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case", [c for c in CASES + NOT_BASELINES if c.shows], ids=repr)
def test_report_show_displays_what_gate_and_baseline_refuse(tmp_path, case):
    """An interrupted or partial report is still worth looking at."""
    result = show(case.make(tmp_path))
    assert result.exit_code == 0, result.output
    assert "error" not in result.stderr


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_paths_print_as_they_are(tmp_path, name):
    """Markup, emoji codes, spaces and quotes in a path: no crash, nothing lost (#7)."""
    folder = write(tmp_path / name, valid_report())
    assert show(folder).exit_code == 0
    for bad in (edited(sample(math.nan))(folder / "nan"), folder / "missing"):
        message = refusal(show(bad))
        assert str(bad) in message


def test_a_real_process_prints_one_line_and_exits_2(tmp_path):
    """Outside CliRunner too: no Rich traceback, and exit 2 (CI reads 1 as a regression)."""
    nan, out = edited(sample(math.nan))(tmp_path / "[red]nan"), tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "seaformer_deploy.cli", "gate", "--baseline",
                           str(VALID), "--candidate", str(nan), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1
    assert f"{nan}/report.json: artifacts[1].samples_ms[3] (head.fp32.pte) is NaN" in proc.stderr
    assert not out.exists()


# --- property-based: the reader never fails in any other way --------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=16)
PROPERTY = settings(max_examples=100, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
VALID_REPORT = valid_report()


def all_paths(node: object, path: tuple = ()) -> list[tuple]:
    """Every key and index of the valid report (what a mutation may hit)."""
    found = [path] if path else []
    items = node.items() if isinstance(node, dict) else (
        enumerate(node) if isinstance(node, list) else ())
    for key, child in items:
        found += all_paths(child, (*path, key))
    return found


PATHS = all_paths(VALID_REPORT)


def read_back(content: str | bytes) -> dict | None:
    """load_report on ``content``: the report, or None when refused with a UserError."""
    with tempfile.TemporaryDirectory() as folder:
        write(Path(folder), content)
        try:
            return load_report(Path(folder))
        except UserError:
            return None


def use(report: dict) -> None:
    """What the commands do with a loaded report; only a UserError may come out."""
    for step in (lambda: render(report, Console(file=io.StringIO(), width=120)),
                 lambda: markdown(compare_reports(report, report, Rule(), Selection())),
                 lambda: document(compare_reports(report, report, Rule(), Selection())),
                 lambda: check_acceptable(report, "mutated"),
                 lambda: baseline_path(report, Path("root")).resolve().relative_to(
                     Path("root").resolve())):
        try:
            step()
        except UserError:
            pass


@PROPERTY
@given(JSON)
def test_any_json_value_is_refused_with_a_user_error(value):
    assert read_back(json.dumps(value)) is None


@PROPERTY
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_any_bytes_are_refused_with_a_user_error(content):
    assert read_back(content) is None


@st.composite
def mutated(draw) -> dict:
    """The valid report with one to three keys deleted or values replaced by any JSON
    (NaN and infinities included)."""
    report = copy.deepcopy(VALID_REPORT)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        try:
            parent = report
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]]
        except (LookupError, TypeError):
            continue                                # an earlier mutation removed it
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON)
    return report


@PROPERTY
@given(mutated())
def test_a_mutated_report_loads_or_is_refused_and_never_crashes_a_command(report):
    loaded = read_back(json.dumps(report))
    if loaded is not None:
        use(loaded)


@PROPERTY
@given(st.integers(0, len(VALID.read_text()) - 1), st.sampled_from(["cut", "byte"]))
def test_a_damaged_file_loads_or_is_refused(position, how):
    data = VALID.read_bytes()
    damaged = data[:position] if how == "cut" else \
        data[:position] + bytes([data[position] ^ 0x5A]) + data[position + 1:]
    loaded = read_back(damaged)
    if loaded is not None:
        use(loaded)
