"""Which runner build a device gets, and what a runner that cannot start says."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from seaformer_deploy.cli import app
from seaformer_deploy.cli.common import flag
from seaformer_deploy.devices.base import CommandResult, DeviceInfo
from seaformer_deploy.devices.probe import Topology
from seaformer_deploy.errors import UserError
from seaformer_deploy.runners.bundle import Launch
from seaformer_deploy.runners.native import build_runner
from seaformer_deploy.runners.session import (Runner, RunnerChoice, RunnerError, check_start,
                                              choose_target, native_runner, onnx_runner)


class Phone:
    """Just enough of a Device for the choice: a kind, a name, and a shell that answers."""

    kind, name = "adb", "R58M"

    def __init__(self, abi: str | None = "arm64-v8a", run_result=None, present=()):
        self.abi, self.run_result, self.present = abi, run_result, set(present)

    def properties(self) -> dict:
        return {"abi": self.abi} if self.abi else {}

    def run(self, argv, timeout, cwd=None, env=None):
        return self.run_result

    def shell(self, script, timeout=60):
        path = script.split("'")[1] if "'" in script else script.split()[2]
        return CommandResult(0 if path in self.present else 1, "", "")


def info(device: Phone) -> DeviceInfo:
    return DeviceInfo(device.name, device.kind, "test", Topology([], None, None),
                      device.properties())


PROFILE = {"name": "OnePlus 8 Pro", "file": "oneplus-8-pro.toml", "runner_target": "android-arm64"}


@pytest.mark.parametrize("abi, choice, profile, expected", [
    ("arm64-v8a", RunnerChoice(), None, ("android-arm64", "ro.product.cpu.abi arm64-v8a")),
    ("x86_64", RunnerChoice(), None, ("android-x86_64", "ro.product.cpu.abi x86_64")),
    ("arm64-v8a", RunnerChoice(), PROFILE,
     ("android-arm64", "OnePlus 8 Pro profile (oneplus-8-pro.toml)")),
    ("arm64-v8a", RunnerChoice("linux-arm64"), PROFILE, ("linux-arm64", "--runner-target")),
    ("arm64-v8a", RunnerChoice(ndk=Path("/ndk"), executorch_prefix=Path("/et")), PROFILE,
     ("android-arm64", "--ndk (the NDK build)")),
])
def test_target_comes_from_the_probe_unless_overridden(abi, choice, profile, expected):
    phone = Phone(abi)
    assert choose_target(phone, info(phone), choice, profile) == expected


@pytest.mark.parametrize("abi, message", [
    ("armeabi-v7a", "R58M is armeabi-v7a: the runner is built for arm64-v8a phones and x86_64"),
    (None, "did not report ro.product.cpu.abi"),
])
def test_unknown_abi_is_a_clear_error(abi, message):
    phone = Phone(abi)
    with pytest.raises(RunnerError, match=message):
        choose_target(phone, info(phone), RunnerChoice(), None)


def test_prebuilt_folder_is_used_as_it_is_and_checked_against_the_device():
    built = build_runner("android-x86_64")
    phone = Phone("x86_64")
    runner = native_runner(phone, info(phone), RunnerChoice(prebuilt=built.folder), None)
    assert runner.identity["chosen_by"] == f"--runner {built.folder}"
    assert runner.identity["launch"] == "bundled-loader"
    arm = Phone("arm64-v8a")
    with pytest.raises(RunnerError, match="built for x86_64, but R58M is arm64-v8a"):
        native_runner(arm, info(arm), RunnerChoice(prebuilt=built.folder), None)


def _runner(program: Path, mode: str) -> Runner:
    runner = Runner("pte", {"target": "linux-arm64"}, {"seaformer-runner": program},
                    Launch(mode, "seaformer-runner", None, ("lib",)))
    runner.argv = ["/data/x/seaformer-runner"]
    return runner


def test_start_check_names_a_missing_interpreter():
    program = build_runner("host").binary          # its interpreter: /lib64/ld-linux-x86-64.so.2
    phone = Phone(run_result=CommandResult(127, "", "sh: /data/x/seaformer-runner: not found"))
    with pytest.raises(RunnerError) as raised:
        check_start(phone, _runner(program, "direct"), "/data/x")
    assert "ELF interpreter /lib64/ld-linux-x86-64.so.2 does not exist there" in str(raised.value)


def test_start_check_names_a_missing_library():
    program = build_runner("host").binary
    phone = Phone(run_result=CommandResult(
        127, "", "seaformer-runner: error while loading shared libraries: libfoo.so.1: cannot "
                 "open shared object file: No such file or directory"),
        present={"/lib64/ld-linux-x86-64.so.2"})
    with pytest.raises(RunnerError, match="it needs libfoo.so.1, which is neither"):
        check_start(phone, _runner(program, "direct"), "/data/x")


def test_start_check_returns_the_runners_own_description():
    program = build_runner("host").binary
    phone = Phone(run_result=CommandResult(0, '{"runner":"seaformer-native-runner",'
                                              '"runtime":"executorch"}\n', ""))
    assert check_start(phone, _runner(program, "direct"), "/x")["runtime"] == "executorch"


# -- messages name the fields; the command line prints the flags ----------------------------

class Local(Phone):
    kind, name, formats = "local", "local", ("pte", "onnx")


def test_a_phone_target_on_the_local_device_names_the_field():
    local = Local()
    with pytest.raises(RunnerError) as raised:
        choose_target(local, info(local), RunnerChoice("android-arm64"), None)
    assert raised.value.field == "target"
    assert str(raised.value) == ("target android-arm64 is for adb devices; the local device "
                                 "runs the host runner.")
    assert raised.value.render(flag).startswith("--runner-target android-arm64 is for adb")


def test_onnx_on_a_phone_names_formats():
    phone = Phone()
    phone.formats = ("pte",)
    with pytest.raises(RunnerError) as raised:
        onnx_runner(phone)
    assert str(raised.value).endswith("run on the local device only; pass formats pte.")
    assert raised.value.render(flag).endswith("; pass --formats pte.")


def test_a_runner_for_another_cpu_says_to_drop_target_and_prebuilt():
    phone = Phone(run_result=CommandResult(126, "", "sh: seaformer-runner: Exec format error"))
    with pytest.raises(RunnerError) as raised:
        check_start(phone, Runner("pte", {"target": "linux-arm64"}), "/data/x")
    assert "Drop target and prebuilt to get the build for its ABI." in str(raised.value)
    assert "Drop --runner-target and --runner to get" in raised.value.render(flag)


def test_build_options_name_fields_and_each_command_its_own_flags(tmp_path, monkeypatch):
    with pytest.raises(UserError) as raised:
        build_runner("host", ndk=tmp_path, executorch_prefix=tmp_path)
    assert raised.value.fields() == ["ndk", "executorch_prefix", "target"]
    assert str(raised.value) == (
        "ndk and executorch_prefix build the android-arm64 runner (executorch_prefix also "
        "linux-arm64); the host runner takes neither: drop them or pass target android-arm64.")
    # bench and gate spell the build target --runner-target; `runner build` spells it --target
    assert raised.value.render(flag).endswith("or pass --runner-target android-arm64.")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["runner", "build", "--target", "host", "--ndk",
                                      str(tmp_path), "--executorch-prefix", str(tmp_path)])
    assert result.exit_code == 2
    assert " ".join(result.stderr.split()) == (
        "error: --ndk and --executorch-prefix build the android-arm64 runner "
        "(--executorch-prefix also linux-arm64); the host runner takes neither: drop them or "
        "pass --target android-arm64.")
    with pytest.raises(UserError, match="needs both ndk PATH .* and executorch_prefix PATH"):
        build_runner("android-arm64", ndk=tmp_path)
