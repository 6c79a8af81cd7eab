"""`gate` (report mode, and the argument errors of --ab) and `baseline update` on hostile and
broken input: exit 2 with one "error:" line naming the file, no traceback, the --out folder left
empty and the baselines folder unchanged. Nothing is measured: a device is never opened."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import seaformer_deploy.gate.ab as ab
from bad_input.hostile import (AWKWARD_NAMES, CASES, NOT_BASELINES, VALID, invoke, refusal,
                               snapshot, valid_report, write)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def skip_for_root(case) -> None:
    if case.root_skips and IS_ROOT:
        pytest.skip("root reads a file whatever its mode")


@pytest.fixture
def out(tmp_path) -> Path:
    """An empty --out folder that must stay empty."""
    folder = tmp_path / "gate-out"
    folder.mkdir()
    return folder


def gate(out: Path, *args: str):
    return invoke("gate", *args, "--out", out, "--json", out.parent / "verdict.json",
                  "--baselines", out.parent / "no-baselines")


def assert_nothing_written(out: Path) -> None:
    assert list(out.iterdir()) == [] and not (out.parent / "verdict.json").exists()


def test_two_valid_reports_pass(out):
    result = gate(out, "--baseline", str(VALID), "--candidate", str(VALID))
    assert result.exit_code == 0, result.output
    assert len(list(out.iterdir())) == 1


# Both sides go through one loader: the schema cases (a required key removed, ~100 of them) run
# as the candidate only, to keep the suite fast.
GATE_CASES = [(case, side) for case in CASES for side in ("candidate", "baseline")
              if side == "candidate" or not case.id.startswith("without-")]


@pytest.mark.parametrize("case, side", GATE_CASES, ids=[f"{c.id}-{s}" for c, s in GATE_CASES])
def test_gate_refuses(tmp_path, out, case, side):
    skip_for_root(case)
    target = case.make(tmp_path)
    other = "baseline" if side == "candidate" else "candidate"
    message = refusal(gate(out, f"--{side}", str(target), f"--{other}", str(VALID)))
    assert case.says in message and str(target) in message
    assert_nothing_written(out)


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_gate_prints_awkward_paths_as_they_are(tmp_path, name):
    folder = write(tmp_path / name / "cand", valid_report())
    out = tmp_path / name / "out"
    result = gate(out, "--baseline", str(VALID), "--candidate", str(folder))
    assert result.exit_code == 0, result.output
    assert f"candidate: `{folder}`" in result.stdout
    assert f"verdict: {out}/" in result.stdout
    message = refusal(gate(out, "--baseline", str(VALID), "--candidate", str(folder / "x")))
    assert str(folder / "x") in message


REPORT_MODE_ERRORS = [
    ([], "pass --candidate REPORT"),
    (["--candidate", "{good}"], "no baseline at"),            # and --baselines has none
    (["--candidate", "{good}", "--baseline", "{good}", "--alpha", "0.7"], "alpha must be"),
    (["--candidate", "{good}", "--baseline", "{good}", "--min-effect", "1.5"],
     "minimum effect must be"),
    (["--candidate", "{good}", "--baseline", "{good}", "--formats", "tflite"],
     "no artifact of either report matches"),
]
AB_ERRORS = [
    (["--ab", "--baseline-artifacts", "{empty}", "--candidate-artifacts", "{empty}",
      "--candidate", "{good}"], "one mode or the other"),
    (["--ab", "--baseline-artifacts", "{empty}"], "--candidate-artifacts DIR"),
    (["--baseline-artifacts", "{empty}", "--candidate-artifacts", "{empty}"], "need --ab"),
    (["--ab", "--baseline-artifacts", "{missing}", "--candidate-artifacts", "{empty}"],
     "the baseline artifacts folder {missing} holds no valid export"),
    (["--ab", "--baseline-artifacts", "{report}", "--candidate-artifacts", "{report}"],
     "holds no valid export"),                             # a report folder, not an export
    *[(["--ab", "--baseline-artifacts", "{empty}", "--candidate-artifacts", "{empty}", option,
        value], f"{option} {value} is below")
      for option, value in (("--blocks", "0"), ("--rounds", "0"), ("--iterations", "0"),
                            ("--warmup", "-1"), ("--wait", "-5.0"))],
    (["--ab", "--baseline-artifacts", "{empty}", "--candidate-artifacts", "{empty}",
      "--runner", "{empty}", "--runner-target", "linux-arm64"], "pass one or the other"),
    (["--ab", "--baseline-artifacts", "{empty}", "--candidate-artifacts", "{empty}",
      "--alpha", "0"], "alpha must be"),
]


@pytest.mark.parametrize("args, says", REPORT_MODE_ERRORS + AB_ERRORS,
                         ids=[f"{i}:{s[:30]}" for i, (_, s) in
                              enumerate(REPORT_MODE_ERRORS + AB_ERRORS)])
def test_gate_argument_errors(tmp_path, out, monkeypatch, args, says):
    def no_device(*_a, **_k):
        raise AssertionError("an argument error must be found before a device is opened")

    monkeypatch.setattr(ab, "get_device", no_device)
    paths = {"good": VALID, "empty": tmp_path / "[red]empty", "missing": tmp_path / "[/x]",
             "report": VALID.parent}
    paths["empty"].mkdir()
    message = refusal(gate(out, *(a.format(**paths) for a in args)))
    assert says.format(**paths) in message
    assert_nothing_written(out)


@pytest.mark.parametrize("where", ["out-is-a-file", "json-is-a-folder"])
def test_gate_outputs_that_cannot_be_written_are_refused_first(tmp_path, where):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    out, json_out = ((tmp_path / "file", tmp_path / "v.json") if where == "out-is-a-file"
                     else (tmp_path / "out", tmp_path / "folder"))
    result = invoke("gate", "--baseline", VALID, "--candidate", VALID, "--out", out, "--json",
                    json_out)
    assert str(out if where == "out-is-a-file" else json_out) in refusal(result)
    assert not (tmp_path / "out").exists() and list((tmp_path / "folder").iterdir()) == []


# --- baseline update -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def baselines(tmp_path_factory) -> Path:
    """A baselines root that already holds an accepted baseline, so "unchanged" means
    something (shared: every test checks it is left as it was)."""
    root = tmp_path_factory.mktemp("baselines")
    result = invoke("baseline", "update", VALID, "--baselines", root)
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.parametrize("case", CASES + NOT_BASELINES, ids=repr)
def test_baseline_update_refuses(tmp_path, baselines, case):
    skip_for_root(case)
    target = case.make(tmp_path)
    before = snapshot(baselines)
    message = refusal(invoke("baseline", "update", target, "--baselines", baselines))
    assert case.says in message and str(target) in message
    assert snapshot(baselines) == before


def test_baseline_update_says_which_rule_a_partial_report_breaks(tmp_path, baselines):
    [case] = [c for c in NOT_BASELINES if c.id == "failed-artifact"]
    message = refusal(invoke("baseline", "update", case.make(tmp_path), "--baselines",
                             baselines))
    assert "a baseline needs at least one measured artifact and no failed or unmeasured one" \
        in message.lower()


def test_baseline_update_into_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    message = refusal(invoke("baseline", "update", VALID, "--baselines", tmp_path / "file"))
    assert "cannot write the baseline" in message and str(tmp_path / "file") in message
    assert (tmp_path / "file").read_text() == "x"


def test_baseline_update_over_a_damaged_baseline_says_what_to_remove(tmp_path, baselines):
    baselines = Path(shutil.copytree(baselines, tmp_path / "copy"))      # damaged below
    [path] = [p for p in baselines.glob("*/*.json") if p.name != "fingerprint.json"]
    path.write_text("{")
    before = snapshot(baselines)
    message = refusal(invoke("baseline", "update", VALID, "--baselines", baselines))
    assert "the baseline this report would replace is damaged" in message
    assert f"git rm {path}" in message and snapshot(baselines) == before


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_baseline_update_prints_awkward_paths_as_they_are(tmp_path, name):
    root = tmp_path / name
    result = invoke("baseline", "update", VALID, "--baselines", root)
    assert result.exit_code == 0, result.output
    [path] = [p for p in root.glob("*/*.json") if p.name != "fingerprint.json"]
    assert f"baseline: {path}; commit it" in result.stdout
