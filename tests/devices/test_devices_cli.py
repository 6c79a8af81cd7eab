"""`seaformer-deploy devices`: what the adb server lists (with states) and --device reached
directly, each probed, with its profile check; and what it says without a server."""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from devices.adb_testdevice import AdbTestDevice
from seaformer_deploy.cli import app
from seaformer_deploy.devices.adb_server import AdbServer


def devices(*args: str, env: dict) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["devices", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.fixture
def env(adb_key):
    """The key AdbDevice uses for direct connections, as ~/.android would hold it."""
    return {"ANDROID_USER_HOME": str(adb_key[0].parent), "ANDROID_ADB_SERVER_ADDRESS": None}


def connect_and_wait(real_adb, serial: str, state: str) -> None:
    real_adb("connect", serial)
    server, deadline = AdbServer("127.0.0.1", real_adb.port), time.monotonic() + 10
    while (listed := server.find(serial)) is None or listed.state != state:
        assert time.monotonic() < deadline, server.devices()
        time.sleep(0.1)


def test_devices_through_the_adb_server(real_adb, adb_testdevice, env):
    env["ANDROID_ADB_SERVER_PORT"] = str(real_adb.port)
    with AdbTestDevice() as stranger:              # trusts no key: unauthorized
        connect_and_wait(real_adb, adb_testdevice.serial, "device")
        connect_and_wait(real_adb, stranger.serial, "unauthorized")
        code, text = devices(env=env)
        assert code == 0, text
        assert f"adb server 127.0.0.1:{real_adb.port} (adb 1.0." in text
        for expected in ("unauthorized", "did not accept this computer's adb key",
                         "cpu0-3: 4x Cortex-A55 1.80 GHz", "cpu4-6: 3x Cortex-A77 2.42 GHz",
                         "cpu7: 1x Cortex-A77 2.84 GHz", "cpu7: OnePlus 8 Pro profile",
                         "hottest zone 42.0 °C (cpu-1-6-usr), battery 28.5 °C",
                         "93.6 GiB in /data/local/tmp", "SM8250 / kona",
                         "12 (SDK 31), arm64-v8a",
                         "OnePlus 8 Pro (oneplus-8-pro.toml): matches the probe"):
            assert expected in text, expected

        code, text = devices("--json", env=env)
        found = json.loads(text)
        assert found["server"]["running"] and found["server"]["version"].startswith("1.0.")
        listed = {d["serial"]: d for d in found["devices"]}
        phone = listed[adb_testdevice.serial]
        assert (phone["state"], phone["via"], phone["model"], phone["soc"], phone["pin_core"],
                phone["profile"]["name"], phone["mismatches"]) == (
            "device", "adb server", "IN2023", "SM8250", 7, "OnePlus 8 Pro", [])
        assert phone["transport"].startswith(f"adb server 127.0.0.1:{real_adb.port} (adb 1.0.")
        assert phone["free_bytes"] == adb_testdevice.sandbox.profile.df_avail_kb * 1024
        assert [c["max_khz"] for c in phone["clusters"]] == [1_804_800, 2_419_200, 2_841_600]
        assert listed[stranger.serial]["state"] == "unauthorized"
        assert "Allow USB debugging?" in listed[stranger.serial]["hint"]


def test_devices_direct_without_a_server(adb_testdevice, env, free_port):
    env["ANDROID_ADB_SERVER_PORT"] = str(free_port)
    adb_testdevice.write_file("/sys/devices/system/cpu/cpufreq/policy7/cpuinfo_max_freq",
                              "2419200\n")                # a capped prime core
    code, text = devices("--device", adb_testdevice.serial, env=env)
    assert code == 0, text
    assert f"no adb server at 127.0.0.1:{free_port}" in text and "adb start-server" in text
    assert "adb-shell over TCP (no adb server)" in text
    assert "cpu 7: max frequency 2419200 kHz, the profile says 2841600 kHz" in text
    assert not AdbServer("127.0.0.1", free_port).running()      # nobody started one

    code, text = devices("--device", adb_testdevice.serial, "--json", env=env)
    found = json.loads(text)
    assert found["server"] == {"address": f"127.0.0.1:{free_port}", "running": False}
    (phone,) = found["devices"]
    assert (phone["via"], phone["state"], phone["pin_core"]) == ("direct", "device", 7)
    assert phone["mismatches"] == [
        "cpu 7: max frequency 2419200 kHz, the profile says 2841600 kHz (capped?)"]


def test_unreachable_device_is_an_error(env, free_port):
    env["ANDROID_ADB_SERVER_PORT"] = str(free_port)
    code, text = devices("--device", f"127.0.0.1:{free_port}", env=env)
    assert code == 1
    assert f"cannot reach 127.0.0.1:{free_port}" in text and "unreachable" in text
