"""Whole benches on stock phones that differ from the SD865 default the way real ones do: thermal
zones the shell user cannot read, Android 11 without ro.soc.model, another SoC, and an x86_64
emulator whose runner runs natively. Each runs under the device's mksh and toybox, and no
command the product sent may fail for want of a tool or a flag."""

from __future__ import annotations

import pytest

from devices.adb_testdevice import PROFILES, AdbTestDevice
from devices.phone_checks import assert_commands_ran_clean
from seaformer_deploy.bench.run import BenchOptions, bench
from seaformer_deploy.bench.thermal import ThermalPolicy
from seaformer_deploy.devices.adb import ROOT
from seaformer_deploy.reports import build_report
from seaformer_deploy.reports.files import validate
from seaformer_deploy.runners.plan import Protocol

QUICK = Protocol(warmup_iterations=1, warmup_seconds=0, iterations=2, min_seconds=0, rounds=1)


@pytest.fixture
def android_home(adb_key, monkeypatch):
    monkeypatch.setenv("ANDROID_USER_HOME", str(adb_key[0].parent))


def phone(name: str, adb_key) -> AdbTestDevice:
    return AdbTestDevice(profile=PROFILES[name](), authorized_keys=[adb_key[1]])


def run_bench(device: AdbTestDevice, export, **kw) -> dict:
    opts = BenchOptions(export.folder, device=device.serial, formats=("pte",),
                        precisions=("fp32",), blocks=1, protocol=QUICK, transport="direct",
                        **{"precision": 0.0, **kw})
    report = build_report(bench(opts))
    validate(report)
    return report


def assert_complete(report: dict, target: str) -> None:
    assert report["status"] == "complete" and report["failures"] == []
    assert {a["unit"] for a in report["artifacts"]} == {"model", "stem", "context", "spatial",
                                                        "head"}
    assert all(a["parity"]["passed"] for a in report["artifacts"])
    runner = report["runners"]["pte"]
    assert (runner["target"], runner["launch"]) == (target, "bundled-loader")


def test_thermal_zones_denied_falls_back_to_the_battery(adb_key, android_home, tiny_pte_export,
                                                        arm64_exec):
    with phone("sd865-thermal-denied", adb_key) as device:
        report = run_bench(device, tiny_pte_export, thermal=ThermalPolicy(max_celsius=60))
        assert_complete(report, "android-arm64")
        assert report["blocks"][0]["state_before"]["thermal_c"] == {}
        assert any("no readable CPU thermal zone: --max-temp used the battery temperature"
                   in w for w in report["warnings"])
        assert_commands_ran_clean(device)


def test_android_11_without_soc_model(adb_key, android_home, tiny_pte_export, arm64_exec):
    with phone("sd855-android11", adb_key) as device:
        report = run_bench(device, tiny_pte_export)
        assert_complete(report, "android-arm64")
        assert "soc" not in report["device"]["properties"]
        assert report["device"]["properties"]["android"] == "11"
        assert report["device"]["profile"]["name"] == "Google Pixel 4"
        assert report["device"]["core"]["index"] == 7
        assert_commands_ran_clean(device)


def test_snapdragon_8_gen_2_pins_its_prime_core(adb_key, android_home, tiny_pte_export,
                                                 arm64_exec):
    with phone("sm8550", adb_key) as device:
        report = run_bench(device, tiny_pte_export)
        assert_complete(report, "android-arm64")
        assert report["device"]["core"]["index"] == 7      # the X3, fastest of three clusters
        assert any(call.startswith("80 ") for call in device.taskset_calls())
        assert_commands_ran_clean(device)


def test_x86_64_emulator_runs_the_host_bundle_natively(adb_key, android_home, tiny_pte_export):
    with phone("emulator-x86_64", adb_key) as device:
        report = run_bench(device, tiny_pte_export)
        assert_complete(report, "android-x86_64")
        assert report["runners"]["pte"]["abi"] == "x86_64"
        assert report["runners"]["pte"]["chosen_by"] == "ro.product.cpu.abi x86_64"
        assert not [p for p in device.host_path(ROOT).iterdir() if p.name.startswith("run-")]
        assert_commands_ran_clean(device)


def test_emulator_refuses_the_unbundled_host_runner(adb_key, android_home, tiny_pte_export):
    """The host runner names /lib64/ld-linux-x86-64.so.2, which an emulator image lacks."""
    from seaformer_deploy.runners.session import RunnerChoice, RunnerError

    with phone("emulator-x86_64", adb_key) as device:
        with pytest.raises(RunnerError, match="ELF interpreter /lib64/ld-linux-x86-64.so.2"):
            run_bench(device, tiny_pte_export, runner=RunnerChoice(prebuilt=_host_folder()))


def _host_folder():
    from seaformer_deploy.runners.native import build_runner

    return build_runner("host").folder
