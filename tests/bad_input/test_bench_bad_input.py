"""`bench` against broken and hostile input: each case exits 2 with one actionable message, no
traceback, and writes no report; a damaged artifact that only the runner can find fails alone,
and the rest is still measured and reported."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seaformer_deploy.cli import app
from seaformer_deploy.devices.local import LocalDevice

QUICK = ["--formats", "pte", "--precisions", "fp32", "--precision", "0", "--iterations", "1",
         "--min-seconds", "0", "--rounds", "1", "--warmup", "0", "--warmup-seconds", "0",
         "--blocks", "1"]


@pytest.fixture
def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def export_copy(small_export, tmp_path) -> Path:
    """A private copy of the session's export, free to break."""
    folder = tmp_path / "export"
    shutil.copytree(small_export.folder, folder)
    return folder


def edit_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def bench_cli(args: list[str], tmp_path: Path, env: dict | None = None):
    out = tmp_path / "reports"
    result = CliRunner().invoke(app, ["bench", *args, "--out", str(out)], env=env)
    return result, out


def assert_refused(result, out: Path, *phrases: str) -> None:
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text and result.exception is None or isinstance(
        result.exception, SystemExit), text
    assert [line for line in text.splitlines() if line.startswith("error:")], text
    for phrase in phrases:
        assert phrase in " ".join(text.split()), text
    assert not out.exists() or not any(out.iterdir()), "a report was written"


def _entry(manifest: dict, path: str) -> dict:
    return next(a for a in manifest["artifacts"] if a["path"] == path)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# Each case: (what it breaks, how, extra CLI args, phrases the message must hold).
CASES = {
    "sha256 edited in the manifest": (
        lambda f: edit_manifest(f, lambda m: _entry(m, "model.fp32.pte").update(
            sha256="0" * 64)),
        [], ["differs from the manifest's sha256", "nothing was measured"]),
    "weights flipped in a .pte": (
        lambda f: _flip(f / "model.fp32.pte", (f / "model.fp32.pte").stat().st_size // 2),
        [], ["model.fp32.pte differs from the manifest's sha256"]),
    "input tensor missing": (
        lambda f: next((f / "tensors").glob("image*")).unlink(), [], ["is missing"]),
    "artifact path leaves the folder": (
        lambda f: edit_manifest(f, lambda m: _entry(m, "model.fp32.pte").update(
            path="../other/model.fp32.pte")), [], ["names files outside its folder"]),
    "absolute tensor path": (
        lambda f: edit_manifest(f, lambda m: m["tensors"][0].update(path="/etc/passwd")),
        [], ["names files outside its folder"]),
    "manifest not JSON": (
        lambda f: (f / "manifest.json").write_text("{not json"), [], ["is not valid JSON"]),
    "manifest NaN": (
        lambda f: (f / "manifest.json").write_text(
            (f / "manifest.json").read_text().replace('"bytes": ', '"bytes": NaN, "x": ', 1)),
        [], ["is not valid JSON"]),
    "manifest off-schema": (
        lambda f: edit_manifest(f, lambda m: m.pop("artifacts")), [],
        ["does not follow the manifest schema", "artifacts"]),
    "manifest missing": (
        lambda f: (f / "manifest.json").unlink(), [], ["has no manifest.json"]),
    "variant of another model": (lambda f: None, ["--variant", "S"], ["holds seaformer-t"]),
    "input size of another export": (lambda f: None, ["--input-size", "512x512"],
                                     ["was exported at 256x256"]),
    "checkpoint with artifacts": (lambda f: None, ["--checkpoint", "x.pth"],
                                  ["--checkpoint is for the export"]),
    "negative iterations": (lambda f: None, ["--iterations", "-5"], ["--iterations -5"]),
    "zero rounds": (lambda f: None, ["--rounds", "0"], ["--rounds 0"]),
    "zero blocks": (lambda f: None, ["--blocks", "0"], ["--blocks 0"]),
    "nan seconds": (lambda f: None, ["--min-seconds", "nan"], ["--min-seconds nan"]),
    "int4 precision": (lambda f: None, ["--precisions", "int4"],
                       ["--precisions int4", "fp32, fp16 and int8"]),
    "unknown format": (lambda f: None, ["--formats", "tflite"], ["--formats tflite"]),
    "negative core": (lambda f: None, ["--core", "-1"], ["--core -1"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_input_is_refused_before_measuring(case, export_copy, tmp_path, monkeypatch):
    breaks, extra, phrases = CASES[case]
    breaks(export_copy)
    ran = []
    monkeypatch.setattr(LocalDevice, "run", lambda *a, **k: ran.append(a) or 1 / 0)
    args = ["--artifacts", str(export_copy), *QUICK, *extra]
    result, out = bench_cli(args, tmp_path)
    assert_refused(result, out, *phrases)
    assert ran == [], "a runner was started"


def test_out_that_is_a_file_or_under_a_file_fails_first(export_copy, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        result = CliRunner().invoke(app, ["bench", "--artifacts", str(export_copy), *QUICK,
                                          "--out", str(out)])
        assert result.exit_code == 2 and "--out" in result.output, result.output
        assert "Traceback" not in result.output


def test_android_serial_means_a_phone_never_this_machine(export_copy, tmp_path, monkeypatch,
                                                         free_tcp_port):
    monkeypatch.setenv("ANDROID_SERIAL", f"127.0.0.1:{free_tcp_port}")
    monkeypatch.setattr(LocalDevice, "run", lambda *a, **k: 1 / 0)
    result, out = bench_cli(["--artifacts", str(export_copy), *QUICK], tmp_path)
    assert_refused(result, out, f"cannot reach 127.0.0.1:{free_tcp_port}")


def test_empty_device_is_refused(export_copy, tmp_path):
    result, out = bench_cli(["--device", "", "--artifacts", str(export_copy), *QUICK], tmp_path)
    assert_refused(result, out, "--device is empty")


def test_corrupted_pte_header_fails_that_artifact_only(export_copy, tmp_path):
    """A .pte whose header is garbage (and whose manifest hash was updated to match, so only
    the runner can tell) fails alone; the others are measured and the report is written."""
    pte = export_copy / "head.fp32.pte"
    data = bytearray(pte.read_bytes())
    data[:16] = bytes(range(0xF0, 0x100))            # not UTF-8, not a flatbuffer header
    pte.write_bytes(bytes(data))
    from seaformer_deploy.export.manifest import sha256_path

    edit_manifest(export_copy, lambda m: _entry(m, "head.fp32.pte").update(
        sha256=sha256_path(pte)))
    result, out = bench_cli(["--artifacts", str(export_copy), *QUICK], tmp_path)
    assert result.exit_code == 1, result.output              # a failed artifact, not an error
    assert "Traceback" not in result.output
    [folder] = out.iterdir()
    report = json.loads((folder / "report.json").read_text())
    assert [f["path"] for f in report["failures"]] == ["head.fp32.pte"]
    assert {a["path"] for a in report["artifacts"]} == {
        "model.fp32.pte", "stem.fp32.pte", "context.fp32.pte", "spatial.fp32.pte"}


def test_report_is_on_disk_before_the_device_lock_is_released(export_copy, tmp_path,
                                                              monkeypatch):
    out = tmp_path / "reports"
    seen = []
    real = LocalDevice.release_lock

    def release(self):
        seen.append(list(out.glob("*/report.json")) if out.exists() else [])
        real(self)

    monkeypatch.setattr(LocalDevice, "release_lock", release)
    result = CliRunner().invoke(app, ["bench", "--artifacts", str(export_copy), *QUICK,
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert seen and len(seen[-1]) == 1, "the lock was released before the report existed"


def test_report_records_the_hashes_of_the_files_that_ran(export_copy, tmp_path):
    from seaformer_deploy.export.manifest import sha256_path

    result, out = bench_cli(["--artifacts", str(export_copy), *QUICK], tmp_path)
    assert result.exit_code == 0, result.output
    [folder] = out.iterdir()
    report = json.loads((folder / "report.json").read_text())
    for art in report["artifacts"]:
        assert art["sha256"] == sha256_path(export_copy / art["path"])
