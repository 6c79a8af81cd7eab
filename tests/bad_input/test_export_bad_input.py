"""`export` against broken and hostile input: every case exits 2 with one message line starting
with "error:", no traceback, and nothing written under the output root, before any export work
(the work itself is replaced by a tripwire, so a case that got that far fails loudly)."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seaformer_deploy.cli import app
from seaformer_deploy.export import pipeline

QUICK = ["--input-size", "64x64", "--formats", "onnx", "--precisions", "fp32", "--no-components"]


@pytest.fixture(autouse=True)
def no_export_work(monkeypatch):
    """Loading weights or exporting means a bad input got past the checks."""
    def tripwire(*args, **kwargs):
        raise AssertionError("export work started")
    monkeypatch.setattr(pipeline, "synthetic_model", tripwire)
    monkeypatch.setattr(pipeline, "_export_into", tripwire)


class ShellPayload:
    """Unpickling this runs a shell command (``os.system``) that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _malicious(legacy: bool):
    def make(path: Path, marker: Path) -> None:
        torch.save({"state_dict": {}, "meta": ShellPayload(marker)}, path,
                   _use_new_zipfile_serialization=not legacy)
    return make


def _truncated(path: Path, marker: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(64)}}, path)
    path.write_bytes(path.read_bytes()[:200])


def _zip(path: Path, marker: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not weights")


CHECKPOINTS = {
    "missing": (None, "does not exist"),
    "a folder": (lambda p, m: p.mkdir(), "is a folder"),
    "empty": (lambda p, m: p.write_bytes(b""), "is empty"),
    "truncated": (_truncated, "truncated, corrupt"),
    "zip, not a checkpoint": (_zip, "zip archive but not a PyTorch checkpoint"),
    "malicious zip": (_malicious(legacy=False), "posix.system"),
    "malicious legacy": (_malicious(legacy=True), "posix.system"),
    "JSON": (lambda p, m: p.write_text('{"state_dict": {}}'), "it is a JSON file"),
}

OPTIONS = {
    "unknown variant": (["--variant", "XL"], "unknown variant 'XL'"),
    "unknown model": (["--model", "deeplabv3"], "unknown model 'deeplabv3'"),
    "variant and model": (["--variant", "S", "--model", "seaformer-t"], "not both"),
    "a classifier": (["--model", "seaformer-t-cls"], "is a classifier"),
    "size 0": (["--input-size", "0"], "at least 64"),
    "negative size": (["--input-size", "-64x64"], "is not HEIGHTxWIDTH"),
    "huge size": (["--input-size", "65536x65536"], "at most 4096"),
    "non-numeric size": (["--input-size", "64xabc"], "is not HEIGHTxWIDTH"),
    "size not a multiple of 32": (["--input-size", "200x200"], "multiples of 32"),
    "unknown format": (["--formats", "tflite"], "onnx, pte, ort; tflite is not one of them"),
    "no format": (["--formats", ","], "got nothing"),
    "unknown precision": (["--precisions", "int4"], "fp32, fp16, int8; int4 is not one of them"),
    "one unknown precision": (["--precisions", "fp32,bf16"], "bf16 is not one of them"),
    "unknown output": (["--output", "probs"], "--output takes logits or labels"),
    "unknown layout": (["--pte-layout", "nwhc"], "--pte-layout takes nchw or nhwc"),
    "negative extra work": (["--extra-work", "-1"], "--extra-work takes a count >= 0"),
    "negative seed": (["--seed", "-5"], "--seed takes an integer from 0"),
    "no classes": (["--num-classes", "0"], "--num-classes takes a count from 1"),
    "negative classes": (["--num-classes", "-1"], "--num-classes takes a count from 1"),
}


def run_export(args: list[str], out: Path):
    return CliRunner().invoke(app, ["export", *QUICK, "--out", str(out), *args])


def assert_refused(result, out: Path, *phrases: str) -> None:
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text and "export work started" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), text
    for phrase in phrases:
        assert phrase in " ".join(text.split()), text
    written = list(out.rglob("*")) if out.is_dir() else []
    assert not written, f"written under the output root: {written}"


@pytest.mark.parametrize("case", OPTIONS)
def test_bad_options_fail_before_any_work(case, tmp_path):
    args, phrase = OPTIONS[case]
    out = tmp_path / "models"
    assert_refused(run_export(args, out), out, phrase)
    assert not out.exists()


@pytest.mark.parametrize("case", CHECKPOINTS)
def test_bad_checkpoints_fail_before_any_work(case, tmp_path):
    make, phrase = CHECKPOINTS[case]
    path, marker, out = tmp_path / "weights.pth", tmp_path / "pwned", tmp_path / "models"
    if make is not None:
        make(path, marker)
    result = run_export(["--checkpoint", str(path)], out)
    assert_refused(result, out, phrase)
    assert not out.exists(), "the output root was left behind"
    assert not marker.exists(), "the payload ran"


def _a_file(tmp_path: Path) -> Path:
    (tmp_path / "notes.txt").write_text("a file")
    return tmp_path / "notes.txt"


OUT_ROOTS = {
    "a file": (_a_file, "is a file, not a folder"),
    "under a file": (lambda t: _a_file(t) / "models", "cannot be created: "),
    "deep under a file": (lambda t: _a_file(t) / "a" / "b", "notes.txt is a file"),
}


@pytest.mark.parametrize("case", OUT_ROOTS)
def test_unusable_out_fails_before_any_work(case, tmp_path):
    make, phrase = OUT_ROOTS[case]
    out = make(tmp_path)
    result = run_export([], out)
    assert_refused(result, out, phrase, "--out")
    assert (tmp_path / "notes.txt").read_text() == "a file"


def test_out_that_takes_no_files_fails_before_any_work(tmp_path, monkeypatch):
    """We run as root, whom mode bits do not stop: make the write probe itself fail, as a
    read-only mount or a full disk would."""
    out = tmp_path / "models"
    out.mkdir()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert_refused(run_export([], out), out, f"--out {out} cannot be written", "Permission")


def test_out_in_a_folder_that_takes_no_files(tmp_path):
    """sysfs refuses new files even to root: a real unwritable parent."""
    try:
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        pass
    else:
        os.close(fd)
        os.unlink(probe)
        pytest.skip("/sys takes files here")
    out = Path("/sys/seaformer-models")
    assert_refused(run_export([], out), out, "cannot be created in /sys")


def test_export_folder_taken_by_a_file(tmp_path):
    out = tmp_path / "models"
    out.mkdir()
    (out / "seaformer-t_64x64_logits").write_text("in the way")
    result = run_export([], out)
    assert result.exit_code == 2 and "is a file, where the export folder would go" in \
        result.output, result.output
    assert (out / "seaformer-t_64x64_logits").read_text() == "in the way"
