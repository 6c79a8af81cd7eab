"""`runner build`, `devices` and the runner options of `bench` against bad input: exit 2, one
`error:` message, no traceback, nothing built, no device contacted."""

from __future__ import annotations

import socket

import pytest
from typer.testing import CliRunner

from seaformer_deploy.cli import app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(args: list[str], *phrases: str, env: dict | None = None) -> str:
    result = CliRunner().invoke(app, args, env=env)
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and text.startswith("error:"), result.output
    for phrase in phrases:
        assert phrase in text, result.output
    return text


@pytest.mark.parametrize("args, phrases", [
    (["--target", "ios"], ["unknown runner target 'ios'"]),
    (["--target", "android-arm64", "--ndk", "/nonexistent"], ["needs both --ndk"]),
    (["--target", "android-arm64", "--ndk", "/tmp", "--executorch-prefix", "/tmp"],
     ["/tmp is not an Android NDK"]),
    (["--target", "host", "--ndk", "/tmp", "--executorch-prefix", "/tmp"],
     ["the host runner takes neither"]),
    (["--target", "android-x86_64", "--executorch-prefix", "/tmp"],
     ["the android-x86_64 runner takes neither"]),
])
def test_runner_build_refuses_bad_targets_and_inputs(args, phrases, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    refused(["runner", "build", *args], *phrases)
    assert not (tmp_path / "seaformer-deploy" / "runner").exists(), "something was built"


@pytest.mark.parametrize("args, phrases", [
    (["--runner", "/nonexistent"], ["is not a runner folder"]),
    (["--runner", "/tmp", "--runner-target", "android-arm64"], ["--runner names a prebuilt"]),
])
def test_bench_runner_options(args, phrases, tmp_path):
    refused(["bench", "--artifacts", str(tmp_path), *args, "--out", str(tmp_path / "r")],
            *phrases)


def test_prebuilt_runner_folder_that_is_not_one(tmp_path):
    from seaformer_deploy.errors import UserError
    from seaformer_deploy.runners.native import load_prebuilt

    (tmp_path / "runner.json").write_text('{"target": "x"}')
    with pytest.raises(UserError, match="lacks abi, launch, program, files"):
        load_prebuilt(tmp_path)
    (tmp_path / "runner.json").write_text("not json")
    with pytest.raises(UserError, match="not a runner folder"):
        load_prebuilt(tmp_path)


@pytest.mark.parametrize("serial", ["a;reboot", "$(touch /tmp/pwned)", "-s", "x y", ""])
def test_devices_refuses_hostile_serials_before_any_shell(serial, monkeypatch, tmp_path):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(_free_port()))    # no server there
    monkeypatch.setenv("ANDROID_USER_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["devices", "--device", serial])
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "pwned").exists()


def test_devices_refuses_a_missing_profiles_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(_free_port()))
    refused(["devices", "--profiles", str(tmp_path / "nowhere")], "does not exist")
