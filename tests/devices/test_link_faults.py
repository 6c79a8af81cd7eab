"""adb-shell's USB transport failing the way phones on a cable do (unplugged, reset, stalled,
held by an adb server, no udev permission): every failure becomes LinkLost (the bench
reconnects), LinkTimeout, or an AdbError that says what to do, never a libusb traceback.

Neither libusb nor a USB phone is needed: ``usb1`` (python-libusb1, installed only with
adb-shell's USB extra) is replaced by a stand-in module with its exception classes, and adb-shell's
``AdbDeviceUsb`` by a fake whose calls raise what a script says and otherwise run the command in
a local ``sh``."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
from adb_shell import adb_device as adb_shell_device
from adb_shell.exceptions import UsbDeviceNotFoundError, UsbReadFailedError, UsbWriteFailedError

from seaformer_deploy.cli.common import flag
from seaformer_deploy.devices.adb import AdbDevice
from seaformer_deploy.devices.adb_link import (
    AdbError,
    AdbShellLink,
    LinkLost,
    LinkTimeout,
    is_tcp_serial,
    usb_failure,
)

SERIAL = "R58M1234XYZ"


def fake_usb1() -> types.ModuleType:
    """python-libusb1's exception classes, as usb1 3.x builds them (USBError + one subclass
    per LIBUSB_ERROR_* code, printed as 'LIBUSB_ERROR_NO_DEVICE [-4]')."""
    usb1 = types.ModuleType("usb1")

    class USBError(Exception):
        value = None
        label = "LIBUSB_ERROR_OTHER"

        def __init__(self, value=None):
            super().__init__()
            if value is not None:
                self.value = value

        def __str__(self):
            return f"{self.label} [{self.value}]"

    usb1.USBError = USBError
    for name, label, value in [("USBErrorIO", "LIBUSB_ERROR_IO", -1),
                               ("USBErrorAccess", "LIBUSB_ERROR_ACCESS", -3),
                               ("USBErrorNoDevice", "LIBUSB_ERROR_NO_DEVICE", -4),
                               ("USBErrorNotFound", "LIBUSB_ERROR_NOT_FOUND", -5),
                               ("USBErrorBusy", "LIBUSB_ERROR_BUSY", -6),
                               ("USBErrorTimeout", "LIBUSB_ERROR_TIMEOUT", -7),
                               ("USBErrorPipe", "LIBUSB_ERROR_PIPE", -9)]:
        setattr(usb1, name, type(name, (USBError,), {"value": value, "label": label}))
    return usb1


class FakeUsbDevice:
    """Stands in for adb-shell's ``AdbDeviceUsb``. ``script`` maps a step ("find",
    "connect", "shell", "push", "pull") to the exceptions its next calls raise, in order;
    commands run in a local sh, with the phone's /data/local/tmp at ``tmp``."""

    script: dict[str, list[BaseException]] = {}
    found: list[FakeUsbDevice] = []
    tmp = "/tmp"

    def __init__(self, serial=None, port_path=None, default_transport_timeout_s=None):
        self._fail("find")
        self.serial, self.available = serial, False
        FakeUsbDevice.found.append(self)

    def _fail(self, step: str) -> None:
        if self.script.get(step):
            raise self.script[step].pop(0)

    def connect(self, **kwargs):
        self._fail("connect")
        self.available = True

    def shell(self, command, **kwargs):
        self._fail("shell")
        command = command.replace("/data/local/tmp", self.tmp)
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
        return done.stdout + done.stderr

    def push(self, local, remote, **kwargs):
        self._fail("push")

    def pull(self, remote, local, **kwargs):
        self._fail("pull")

    def close(self):
        self.available = False


@pytest.fixture
def usb1(monkeypatch):
    """The stand-in usb1, as adb-shell's USB transport would have imported it."""
    module = fake_usb1()
    monkeypatch.setitem(sys.modules, "usb1", module)
    return module


@pytest.fixture
def usb(monkeypatch, usb1, tmp_path):
    """adb-shell with USB support, whose only phone is the fake; returns its script."""
    monkeypatch.setattr(adb_shell_device, "UsbTransport", object(), raising=False)
    monkeypatch.setattr(adb_shell_device, "AdbDeviceUsb", FakeUsbDevice)
    monkeypatch.setattr(FakeUsbDevice, "script", {})
    monkeypatch.setattr(FakeUsbDevice, "found", [])
    monkeypatch.setattr(FakeUsbDevice, "tmp", str(tmp_path))
    monkeypatch.setenv("ANDROID_USER_HOME", str(tmp_path / "android"))   # a fresh host key
    return FakeUsbDevice.script


def connected_link() -> AdbShellLink:
    link = AdbShellLink(SERIAL, timeout=5)
    link.connect()
    return link


def test_serials_on_the_network_and_on_usb():
    assert is_tcp_serial("192.168.1.20:5555") and is_tcp_serial("127.0.0.1:40123")
    assert not any(map(is_tcp_serial, [SERIAL, "emulator-5554", ":5555", "host:port",
                                       "127.0.0.1:1;touch pwned"]))


def test_a_usb_link_runs_commands(usb):
    link = connected_link()
    assert link.description == "adb-shell over USB (no adb server)"
    assert link.shell("echo hi", timeout=5) == "hi\n"


# What adb-shell 0.4.4 and libusb raise mid-command, and what it must become.
MID_COMMAND = [
    ("unplugged while reading", lambda u: UsbReadFailedError(
        "Could not receive data from R58M1234XYZ (timeout 5000ms)", u.USBErrorNoDevice()),
     LinkLost, "LIBUSB_ERROR_NO_DEVICE"),
    ("I/O error while reading", lambda u: UsbReadFailedError("Could not receive data",
                                                             u.USBErrorIO()),
     LinkLost, "LIBUSB_ERROR_IO"),
    ("endpoint stalled while writing", lambda u: UsbWriteFailedError(
        "Could not send data to R58M1234XYZ (timeout 5000ms)", u.USBErrorPipe()),
     LinkLost, r"UsbWriteFailedError: Could not send data to R58M1234XYZ \(timeout 5000ms\): "
               r"LIBUSB_ERROR_PIPE \[-9\]\)$"),
    ("transport closed by another opener", lambda u: UsbWriteFailedError(
        "This transport has been closed, probably due to another being opened.", None),
     LinkLost, "This transport has been closed"),
    ("libusb unwrapped", lambda u: u.USBErrorNoDevice(), LinkLost, "USBErrorNoDevice"),
    ("read timed out", lambda u: UsbReadFailedError("Could not receive data",
                                                    u.USBErrorTimeout()),
     LinkTimeout, "no answer within 5 s to 'echo hi'"),
    ("write timed out, unwrapped", lambda u: u.USBErrorTimeout(), LinkTimeout,
     "no answer within 5 s to 'echo hi'"),
]


@pytest.mark.parametrize("case, error, expected, message", MID_COMMAND,
                         ids=[case[0] for case in MID_COMMAND])
def test_usb_failures_mid_command_become_link_errors(usb, usb1, case, error, expected,
                                                     message):
    link = connected_link()
    usb["shell"] = [error(usb1)]
    with pytest.raises(expected, match=message) as caught:
        link.shell("echo hi", timeout=5)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    if expected is LinkLost:
        assert str(caught.value).startswith(f"{SERIAL}: connection lost during 'echo hi'")


def test_usb_failures_during_transfers_are_link_lost(usb, usb1, tmp_path):
    link = connected_link()
    (tmp_path / "model.pte").write_bytes(b"x")
    usb["push"] = [UsbWriteFailedError("Could not send data", usb1.USBErrorNoDevice())]
    with pytest.raises(LinkLost, match="during 'push model.pte'"):
        link.push(tmp_path / "model.pte", "/data/local/tmp/model.pte", 0o644, timeout=5)
    usb["pull"] = [UsbReadFailedError("Could not receive data", usb1.USBErrorTimeout())]
    with pytest.raises(LinkTimeout, match="no answer within 5 s to 'pull /data/local/tmp/out'"):
        link.pull("/data/local/tmp/out", tmp_path / "out", timeout=5)


def test_other_errors_are_not_taken_for_usb_ones(usb):
    link = connected_link()
    usb["shell"] = [ValueError("a bug of ours")]
    with pytest.raises(ValueError, match="a bug of ours"):
        link.shell("echo hi", timeout=5)


def test_usb_device_not_found_on_connect_says_what_to_do(usb):
    usb["find"] = [UsbDeviceNotFoundError("No device available, or it is in the wrong "
                                          "configuration.")]
    with pytest.raises(LinkLost) as caught:
        AdbShellLink(SERIAL, timeout=5).connect()
    message = str(caught.value)
    assert message.startswith(f"no USB device with serial {SERIAL} answers adb")
    for advice in ("check the cable", "`adb devices -l`", "`adb kill-server`",
                   "use it (transport server)"):
        assert advice in message
    assert "use it (--adb-transport server)" in caught.value.render(flag)


def test_usb_interface_held_by_an_adb_server_is_a_clear_error(usb, usb1):
    usb["connect"] = [usb1.USBErrorBusy()]
    with pytest.raises(AdbError) as caught:
        AdbShellLink(SERIAL, timeout=5).connect()
    assert not isinstance(caught.value, LinkLost)          # retrying would not help
    assert caught.value.render(flag) == (
        f"{SERIAL}: another program holds the phone's USB interface (USBErrorBusy: "
        f"LIBUSB_ERROR_BUSY [-6]), usually an adb server: use it (--adb-transport server) or "
        f"stop it (`adb kill-server`), then retry.")


def test_no_permission_to_open_the_usb_device_names_udev_rules(usb, usb1):
    usb["find"] = [usb1.USBErrorAccess()]
    with pytest.raises(AdbError, match="no permission to open the phone's USB device .* "
                                       "udev rules .* plugdev"):
        AdbShellLink(SERIAL, timeout=5).connect()


def test_usb_timeout_on_connect_asks_to_accept_the_prompt(usb, usb1):
    usb["connect"] = [UsbReadFailedError("Could not receive data", usb1.USBErrorTimeout())]
    with pytest.raises(AdbError, match=r"accept the 'Allow USB debugging\?' prompt"):
        AdbShellLink(SERIAL, timeout=5).connect()


def test_unplugged_on_connect_is_link_lost(usb, usb1):
    usb["connect"] = [usb1.USBErrorNoDevice()]
    with pytest.raises(LinkLost, match=f"cannot reach {SERIAL} over USB .*check the cable"):
        AdbShellLink(SERIAL, timeout=5).connect()


def test_a_replugged_phone_is_found_again_on_reconnect(usb, usb1, monkeypatch):
    """The bench's reconnect: the phone dropped off the bus mid-command, is not there on the
    first retry, then is back as a new USB device."""
    monkeypatch.setattr("seaformer_deploy.devices.adb.time.sleep", lambda s: None)
    phone = AdbDevice(SERIAL, timeout=5, transport="direct")
    assert phone.shell("echo ready").stdout == "ready\n"
    usb["shell"] = [UsbReadFailedError("Could not receive data", usb1.USBErrorNoDevice())]
    with pytest.raises(LinkLost):
        phone.shell("echo lost")
    usb["find"] = [UsbDeviceNotFoundError("No device available")]
    assert phone.reconnect().startswith(f"reconnected to {SERIAL} after 2 attempt(s)")
    assert len(FakeUsbDevice.found) == 2 and not FakeUsbDevice.found[0].available
    assert phone.shell("echo back").stdout == "back\n"


def test_usb1_is_never_imported_to_classify(monkeypatch):
    monkeypatch.delitem(sys.modules, "usb1", raising=False)
    assert usb_failure(UsbReadFailedError("This transport has been closed", None)) == "lost"
    assert usb_failure(UsbDeviceNotFoundError("No device available")) == "not-found"
    assert usb_failure(OSError("not USB")) is None
    assert "usb1" not in sys.modules


def test_without_usb_support_a_usb_serial_says_what_to_do(monkeypatch):
    monkeypatch.setattr(adb_shell_device, "UsbTransport", None, raising=False)
    with pytest.raises(AdbError, match=r"pip install 'adb-shell\[usb\]'.*adb tcpip 5555"):
        AdbShellLink(SERIAL)
