"""Gate errors name the option at fault by its field (the keyword of ``seaformer_deploy.gate``
or of ``baselines.update``); `seaformer-deploy gate` and `baseline update` print its flag."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import seaformer_deploy as sd
from seaformer_deploy.cli import app
from seaformer_deploy.cli.common import flag
from seaformer_deploy.gate import baselines
from seaformer_deploy.gate.compare import GateError

REPORT = Path(__file__).resolve().parents[1] / "reports" / "data" / "report.json"


def refusal(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    return " ".join(result.stderr.split())


def test_a_selection_that_keeps_nothing_names_the_fields():
    with pytest.raises(GateError) as raised:
        sd.gate(candidate=REPORT, baseline=REPORT, units=("nosuch",))
    assert str(raised.value) == ("no artifact of either report matches "
                                 "formats/precisions/units.")
    assert refusal(["gate", "--candidate", str(REPORT), "--baseline", str(REPORT), "--units",
                    "nosuch"]) == ("error: no artifact of either report matches "
                                   "--formats/--precisions/--units.")


def test_no_committed_baseline_names_baseline(tmp_path):
    with pytest.raises(GateError) as raised:
        sd.gate(candidate=REPORT, baselines=tmp_path)
    assert "Pass baseline REPORT, or accept a reference run" in str(raised.value)
    assert "Pass --baseline REPORT, or accept a reference run" in refusal(
        ["gate", "--candidate", str(REPORT), "--baselines", str(tmp_path)])


def test_an_unwritable_baselines_root_names_baselines(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(GateError) as raised:
        baselines.update(REPORT, blocked)
    assert str(raised.value).endswith(": pass baselines a folder you can write to.")
    assert refusal(["baseline", "update", str(REPORT), "--baselines", str(blocked)]).endswith(
        ": pass --baselines a folder you can write to.")


def test_failed_parity_names_force(tmp_path):
    report = json.loads(REPORT.read_text())
    failing = copy.deepcopy(report)
    art = failing["artifacts"][0]
    art["parity"] = {**(art.get("parity") or {}), "passed": False}
    with pytest.raises(GateError) as raised:
        baselines.check_acceptable(failing, "r.json")
    assert raised.value.field == "force"
    assert str(raised.value).endswith("Fix the export, or pass force.")
    assert raised.value.render(flag).endswith("or pass --force.")
