"""Messages and reports print user data as it is, never as Rich markup (#7): a path like
``reports/[/x]`` crashed with MarkupError, ``[red]x`` vanished from messages, and the USB hint
lost its ``[usb]``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from seaformer_deploy.cli import app, user_errors
from seaformer_deploy.devices.adb_link import _no_usb_support
from seaformer_deploy.errors import UserError

DATA = Path(__file__).resolve().parent / "data" / "report.json"
runner = CliRunner()


def save(folder: Path, report: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report or json.loads(DATA.read_text())))
    return folder


def test_a_path_that_closes_a_tag_is_an_error_message_not_a_crash(tmp_path):
    path = tmp_path / "reports" / "[/x]"
    result = runner.invoke(app, ["report", "show", str(path)])
    assert result.exit_code == 2, result.exception
    assert result.stderr.startswith(f"error: {path} is not a readable report")


def test_a_path_that_opens_a_tag_keeps_its_text(tmp_path):
    path = tmp_path / "[red]x"
    result = runner.invoke(app, ["report", "show", str(path)])
    assert result.exit_code == 2 and f"error: {path} is not" in result.stderr


def test_the_usb_hint_keeps_the_extra():
    """Any UserError goes through ``user_errors``: here the real USB hint of adb_link."""
    probe = typer.Typer()

    @probe.command()
    @user_errors
    def reach() -> None:
        raise UserError(_no_usb_support("0123456789ABCDEF"))

    result = CliRunner().invoke(probe, [])
    assert result.exit_code == 2
    assert "(`pip install 'adb-shell[usb]'`)" in result.stderr
    assert result.stderr.startswith("error: device '0123456789ABCDEF' is a USB serial")


def test_report_show_prints_the_report_s_own_text_as_it_is(tmp_path):
    report = json.loads(DATA.read_text())
    report["device"]["name"] = "[red]phone[/red]"
    report["device"]["core"]["reason"] = "the [bold]fastest[/] :smile:"
    report["warnings"].append("model.fp32.pte: [/x] and [link=file:///]here[/link]")
    report["artifacts"][0]["path"] = "model.fp32.pte"
    result = runner.invoke(app, ["report", "show", str(save(tmp_path / "r", report))])
    assert result.exit_code == 0, result.output
    assert "on [red]phone[/red] cpu1" in result.stdout
    assert "core choice: the [bold]fastest[/] :smile:;" in result.stdout
    assert "warning: model.fp32.pte: [/x] and [link=file:///]here[/link]" in result.stdout


def test_gate_and_baseline_update_print_paths_as_they_are(tmp_path):
    report = save(tmp_path / "[bold]r")
    out, root = tmp_path / "[red]out", tmp_path / "[/b]"
    result = runner.invoke(app, ["gate", "--baseline", str(report), "--candidate", str(report),
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"verdict: {out}/" in result.stdout and f"baseline: `{report}`" in result.stdout
    result = runner.invoke(app, ["baseline", "update", str(report), "--baselines", str(root)])
    assert result.exit_code == 0, result.output
    assert f"baseline: {root}/" in result.stdout
