"""Device errors name the option at fault by its field (what a Python caller passed); the
command line prints the flag instead, also inside the records of `seaformer-deploy devices`."""

from __future__ import annotations

import tempfile

import pytest
from typer.testing import CliRunner

import seaformer_deploy as sd
from seaformer_deploy.cli import app
from seaformer_deploy.cli.common import flag
from seaformer_deploy.devices import LocalDevice, get_device
from seaformer_deploy.devices.base import CommandResult
from seaformer_deploy.devices.frequency import FrequencyLockError, root_prefix
from seaformer_deploy.devices.listing import Listing
from seaformer_deploy.errors import OptionError, UserError, option

USB_SERIAL = "R58M1234XYZ"
NO_USB = "switch the phone to TCP (`adb tcpip 5555`, then {} PHONE_IP:5555)."


def test_an_empty_device_names_the_field():
    with pytest.raises(OptionError) as raised:
        get_device("  ")
    assert raised.value.field == "device"
    assert str(raised.value).startswith("device is empty: pass a phone's adb serial")
    assert raised.value.render(flag).startswith("--device is empty: pass a phone's adb serial")


def test_local_lock_names_wait_seconds(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))   # not the real lock
    first, second = LocalDevice(), LocalDevice()
    first.acquire_lock()
    try:
        with pytest.raises(UserError) as raised:
            second.acquire_lock(wait=0)
    finally:
        first.release_lock()
    assert str(raised.value).endswith("wait for it, or pass wait_seconds SECONDS.")
    assert raised.value.render(flag).endswith("wait for it, or pass --wait SECONDS.")


class Unrooted:
    name = "R58M"

    def shell(self, script: str, timeout: float = 60) -> CommandResult:
        return CommandResult(0, "2000\n" if script == "id -u" else "", "")


def test_lock_freq_without_root_names_the_field():
    with pytest.raises(FrequencyLockError) as raised:
        root_prefix(Unrooted())
    assert str(raised.value).startswith("lock_freq needs root on R58M")
    assert "Run without lock_freq: the report" in str(raised.value)
    assert raised.value.render(flag).startswith("--lock-freq needs root on R58M")


def test_a_listing_keeps_the_error_to_spell_its_options_again():
    listing = Listing({"running": False})
    listing.add({"serial": "a", "error": UserError(f"pass {option('transport')} server")})
    listing.add({"serial": "b", "hint": "offline"})
    assert listing.devices[0]["error"] == "pass transport server" and listing.failed
    assert listing.to_dict()["devices"][0]["error"] == "pass transport server"
    assert listing.to_dict(flag)["devices"] == [
        {"serial": "a", "error": "pass --adb-transport server"}, {"serial": "b", "hint": "offline"}]


@pytest.fixture
def no_server(monkeypatch, tmp_path, free_port):
    """No adb server, a fresh adb home, and no USB support in adb-shell."""
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(free_port))
    monkeypatch.setenv("ANDROID_USER_HOME", str(tmp_path))
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    monkeypatch.setattr("seaformer_deploy.devices.adb_link._usb_supported", lambda: False)


def test_devices_records_name_the_field_and_the_command_prints_the_flag(no_server):
    listing = sd.devices([USB_SERIAL])
    assert listing.devices[0]["error"].endswith(NO_USB.format("device"))
    result = CliRunner().invoke(app, ["devices", "--device", USB_SERIAL, "--json"])
    assert result.exit_code == 1, result.output
    assert '"error": "device ' in result.stdout and NO_USB.format("--device") in result.stdout
    result = CliRunner().invoke(app, ["devices", "--device", USB_SERIAL])
    assert result.exit_code == 1 and "\x00" not in result.stdout
    assert "then --device PHONE_IP:5555)" in " ".join(result.stdout.split())
