"""`models` and `info` against broken and hostile input: every case exits 2 with one message
line starting with "error:" that says what was wrong, and no traceback.

The checkpoints here are hostile on purpose (a pickle that would run a shell command, files of
other kinds named .pth); none is ever unpickled with privileges, and the payload writes a marker
file that each case checks is still absent.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from seaformer_deploy.cli import app


class ShellPayload:
    """Unpickling this runs a shell command (``os.system``) that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _weights() -> dict:
    return {"decode_head.conv_seg.weight": torch.zeros(19, 8, 1, 1)}


def _malicious(legacy: bool, protocol: int = 2):
    def make(path: Path, marker: Path) -> None:
        torch.save({"state_dict": _weights(), "meta": {"x": ShellPayload(marker)}}, path,
                   _use_new_zipfile_serialization=not legacy, pickle_protocol=protocol)
    return make


def _truncated(legacy: bool):
    def make(path: Path, marker: Path) -> None:
        torch.save({"state_dict": _weights()}, path, _use_new_zipfile_serialization=not legacy)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return make


def _zip(path: Path, marker: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not weights")


def _torchscript(path: Path, marker: Path) -> None:
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), path)


REFUSED = "holds Python objects outside the safe allow-list"
# name -> (how to make the file at `path`, a phrase the message must hold)
CHECKPOINTS = {
    "missing": (None, "does not exist"),
    "a folder": (lambda p, m: p.mkdir(), "is a folder"),
    "empty": (lambda p, m: p.write_bytes(b""), "is empty (0 bytes)"),
    "truncated zip": (_truncated(legacy=False), "truncated, corrupt"),
    "truncated legacy": (_truncated(legacy=True), "truncated, corrupt"),
    "zip, not a checkpoint": (_zip, "zip archive but not a PyTorch checkpoint"),
    "malicious zip": (_malicious(legacy=False), f"{REFUSED}: posix.system"),
    "malicious zip, protocol 4": (_malicious(legacy=False, protocol=4), f"{REFUSED}: posix.system"),
    "malicious legacy": (_malicious(legacy=True), f"{REFUSED}: posix.system"),
    "malicious legacy, protocol 4": (_malicious(legacy=True, protocol=4),
                                     f"{REFUSED}: posix.system"),
    "JSON": (lambda p, m: p.write_text(json.dumps({"state_dict": {}})), "it is a JSON file"),
    "HTML page": (lambda p, m: p.write_text("<!DOCTYPE html><html>Sign in</html>"),
                  "an HTML page"),
    "plain pickle": (lambda p, m: p.write_bytes(pickle.dumps({"w": [1.0]})),
                     "not one torch.save wrote"),
    "TorchScript": (_torchscript, "TorchScript program"),
}


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def assert_refused(result, *phrases: str) -> None:
    """Exit 2, one message line that starts with "error:", no traceback."""
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), text
    for phrase in phrases:
        assert phrase in text, text


@pytest.mark.parametrize("case", CHECKPOINTS)
def test_info_refuses_broken_and_hostile_checkpoints(case, tmp_path):
    make, phrase = CHECKPOINTS[case]
    path, marker = tmp_path / "weights.pth", tmp_path / "pwned"
    if make is not None:
        make(path, marker)
    result = run("info", "--checkpoint", str(path), "--input-size", "64x64")
    assert_refused(result, phrase, str(path))
    assert "warning" not in result.output.lower()       # torch's warnings stay out of it
    assert not marker.exists(), "the payload ran"


def test_a_malicious_checkpoint_is_called_so(tmp_path):
    path, marker = tmp_path / "evil.pth", tmp_path / "pwned"
    _malicious(legacy=True)(path, marker)
    result = run("info", "--checkpoint", str(path))
    assert_refused(result, "can run commands", "looks malicious")
    assert "(Weights only load failed)" not in result.output


# name -> (arguments of `info`, a phrase the message must hold)
INFO_OPTIONS = {
    "unknown variant": (["--variant", "Q"], "unknown variant 'Q'"),
    "unknown model": (["--model", "segformer-b0"], "unknown model 'segformer-b0'"),
    "variant and model": (["--variant", "T", "--model", "seaformer-s"], "not both"),
    "size 0": (["--input-size", "0"], "at least 64"),
    "size 0x0": (["--input-size", "0x0"], "at least 64"),
    "negative size": (["--input-size", "-64x64"], "is not HEIGHTxWIDTH"),
    "huge size": (["--input-size", "100000x100000"], "at most 4096"),
    "non-numeric size": (["--input-size", "big"], "is not HEIGHTxWIDTH"),
    "size not a multiple of 32": (["--input-size", "100x100"], "multiples of 32"),
    "three sizes": (["--input-size", "64x64x64"], "is not HEIGHTxWIDTH"),
    "TopFormer size": (["--model", "topformer-t", "--input-size", "96x96"], "multiples of 64"),
    "no classes": (["--num-classes", "0"], "--num-classes takes a count from 1"),
    "negative classes": (["--num-classes", "-1"], "--num-classes takes a count from 1"),
    "a billion classes": (["--num-classes", "1000000000"], "--num-classes takes a count from 1"),
}


@pytest.mark.parametrize("case", INFO_OPTIONS)
def test_info_refuses_bad_options(case):
    args, phrase = INFO_OPTIONS[case]
    assert_refused(run("info", *args), phrase)


@pytest.mark.parametrize("args", [["models", "extra"], ["models", "--bogus"],
                                  ["info", "--num-classes", "many"], ["info", "--input-size"]])
def test_usage_errors_exit_2_without_a_traceback(args):
    """Click's own usage errors (types, unknown options): exit 2 and no traceback. Their
    wording and layout are Typer's, the same for every command."""
    result = run(*args)
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output


def test_models_lists_every_model():
    result = run("models")
    assert result.exit_code == 0, result.output
    assert "seaformer-t" in result.output and "topformer-b" in result.output
