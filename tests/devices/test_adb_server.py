"""Our adb host-protocol client against Debian's real adb server, which reaches the test device
over TCP (``adb connect``): version, listing with states, shell, sync, and every error a user
can meet (unauthorized, unknown serial, full storage, hung command, server or device gone);
which transport ``auto`` takes when the server does not list the serial, and which device is
meant when no serial is given."""

from __future__ import annotations

import os
import stat
import time

import pytest

from devices.adb_testdevice import AdbTestDevice
from seaformer_deploy.cli.common import flag
from seaformer_deploy.devices.adb import AdbDevice
from seaformer_deploy.devices.adb_link import (
    AdbError,
    LinkLost,
    LinkTimeout,
    unauthorized_message,
)
from seaformer_deploy.devices.adb_server import (
    AdbServer,
    ListedDevice,
    ServerLink,
    parse_devices,
    resolve_serial,
    server_address,
)

USB_SERIAL = "R58M1234XYZ"


def wait_for_state(server: AdbServer, serial: str, state: str) -> None:
    """adb connect returns before the handshake ends; poll the listing (at most 10 s)."""
    deadline = time.monotonic() + 10
    while (listed := server.find(serial)) is None or listed.state != state:
        assert time.monotonic() < deadline, server.devices()
        time.sleep(0.1)


@pytest.fixture
def server(real_adb) -> AdbServer:
    return AdbServer("127.0.0.1", real_adb.port, timeout=10)


@pytest.fixture
def link(server, real_adb, adb_testdevice):
    assert "connected to" in real_adb("connect", adb_testdevice.serial).stdout
    wait_for_state(server, adb_testdevice.serial, "device")
    link = server.link(adb_testdevice.serial)
    link.connect()
    return link


# -- without a server ----------------------------------------------------------------------
def test_no_server_is_reported_and_never_started(free_port):
    server = AdbServer("127.0.0.1", free_port)
    assert not server.running()
    with pytest.raises(LinkLost, match="no adb server answers at 127.0.0.1:.*adb start-server"):
        server.devices()
    assert not server.running()                    # asking did not start one


def test_server_address_follows_adb_environment(monkeypatch):
    monkeypatch.delenv("ANDROID_ADB_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("ANDROID_ADB_SERVER_PORT", raising=False)
    assert server_address() == ("127.0.0.1", 5037)
    monkeypatch.setenv("ANDROID_ADB_SERVER_ADDRESS", "10.0.0.2")
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "5038")
    assert server_address() == ("10.0.0.2", 5038)
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", "adb")
    with pytest.raises(AdbError, match="ANDROID_ADB_SERVER_PORT='adb' is not a TCP port"):
        server_address()


def test_parse_devices_long_listing():
    text = ("0123456789ABCDEF       device usb:1-1.2 product:kona model:IN2023 device:OnePlus8Pro"
            " transport_id:3\n"
            "R58M1234              no permissions (missing udev rules? user is in the plugdev "
            "group); see [http://developer.android.com/tools/device.html] usb:1-2 "
            "transport_id:4\n"
            "emulator-5554          offline transport_id:5\n")
    usb, perm, emu = parse_devices(text)
    assert (usb.serial, usb.state, usb.usb, usb.product, usb.model, usb.device,
            usb.transport_id) == ("0123456789ABCDEF", "device", "1-1.2", "kona", "IN2023",
                                  "OnePlus8Pro", 3)
    assert perm.state.startswith("no permissions (missing udev rules?")
    assert perm.state.endswith("device.html]") and perm.transport_id == 4
    assert (emu.state, emu.model, emu.transport_id) == ("offline", None, 5)


# -- Debian's adb server -------------------------------------------------------------------
def test_version_and_listing_with_states(server, real_adb, adb_testdevice):
    assert server.running()
    assert real_adb("version").stdout.splitlines()[0].endswith(server.version())
    with AdbTestDevice() as stranger:              # trusts no key; nobody taps "Allow"
        real_adb("connect", adb_testdevice.serial)
        real_adb("connect", stranger.serial)
        wait_for_state(server, adb_testdevice.serial, "device")
        wait_for_state(server, stranger.serial, "unauthorized")
        listed = {d.serial: d for d in server.devices()}
        good = listed[adb_testdevice.serial]
        assert (good.model, good.product, good.device) == ("IN2023", "OnePlus8Pro",
                                                            "OnePlus8Pro")
        assert isinstance(good.transport_id, int)
        with pytest.raises(AdbError) as refused:
            server.link(stranger.serial).connect()
        assert str(refused.value).startswith(unauthorized_message(stranger.serial))
        with pytest.raises(AdbError, match="did not accept this computer's adb key"):
            server.link(stranger.serial).shell("echo hi", timeout=5)


def test_shell_returns_all_output_merged(link):
    assert link.description.startswith(f"adb server {link.server.address} (adb 1.0.")
    assert link.shell("echo hi; echo err >&2; exit 3", timeout=10) == "hi\nerr\n"
    assert link.shell("echo a; exit 7; echo b", timeout=10) == "a\n"   # v1: ends at exit
    assert link.shell("printf '\\377A'", timeout=10) == "\ufffdA"       # binary-safe
    out = link.shell("seq 1 100000", timeout=20)
    assert out.splitlines() == [str(i) for i in range(1, 100001)]
    assert link.shell("getprop ro.product.model", timeout=10) == "IN2023\n"


def test_push_pull_round_trip_keeps_mode_and_mtime(link, adb_testdevice, tmp_path):
    payload = os.urandom(3_000_000)
    local = tmp_path / "blob"
    local.write_bytes(payload)
    os.utime(local, (1_700_000_000, 1_700_000_000))
    link.push(local, "/data/local/tmp/dir/blob", 0o100750, timeout=30)
    on_device = adb_testdevice.host_path("/data/local/tmp/dir/blob")
    assert on_device.read_bytes() == payload
    assert stat.S_IMODE(on_device.stat().st_mode) == 0o750
    assert int(on_device.stat().st_mtime) == 1_700_000_000
    link.pull("/data/local/tmp/dir/blob", tmp_path / "back", timeout=30)
    assert (tmp_path / "back").read_bytes() == payload
    with pytest.raises(AdbError, match="pulling /data/local/tmp/nope failed: .*No such file"):
        link.pull("/data/local/tmp/nope", tmp_path / "nope", timeout=10)
    assert not (tmp_path / "nope").exists()


def test_full_storage_fails_with_the_device_message(link, adb_testdevice, tmp_path):
    adb_testdevice.faults.storage_full()
    (tmp_path / "f").write_bytes(b"x" * 200_000)
    with pytest.raises(AdbError, match="pushing f to /data/local/tmp/f failed: write failed: "
                                       "No space left on device"):
        link.push(tmp_path / "f", "/data/local/tmp/f", 0o644, timeout=10)
    assert not adb_testdevice.host_path("/data/local/tmp/f").exists()


def test_unknown_serial_lists_what_the_server_sees(link, server, adb_testdevice):
    expected = (f"does not list 10.9.9.9:5555; it sees: {adb_testdevice.serial} \\(device\\)"
                f"\\. Check the serial")
    with pytest.raises(AdbError, match=expected):
        server.link("10.9.9.9:5555").connect()
    with pytest.raises(AdbError, match=expected) as refused:
        server.link("10.9.9.9:5555").shell("true", timeout=5)
    assert not isinstance(refused.value, LinkLost)


def test_hung_command_times_out(link, adb_testdevice):
    adb_testdevice.faults.hang_commands.append(r"sleepy")
    with pytest.raises(LinkTimeout, match="no answer within 1 s to 'sleepy 1'"):
        link.shell("sleepy 1", timeout=1)
    assert link.shell("echo still here", timeout=10) == "still here\n"


def test_device_dropping_mid_pull_is_link_lost(link, adb_testdevice, tmp_path):
    adb_testdevice.write_file("/data/local/tmp/big", os.urandom(500_000))
    adb_testdevice.faults.drop_after_bytes(100_000)
    with pytest.raises(LinkLost, match="connection lost during 'pull /data/local/tmp/big'"):
        link.pull("/data/local/tmp/big", tmp_path / "big", timeout=10)
    assert not (tmp_path / "big").exists()          # no half-written file


def test_server_gone_is_link_lost(link, real_adb):
    real_adb("kill-server")
    with pytest.raises(LinkLost, match="no adb server answers"):
        link.shell("echo hi", timeout=5)
    assert not link.server.running()


# -- auto transport: what the running server lists decides --------------------------------
@pytest.fixture
def our_server(real_adb, adb_key, monkeypatch) -> AdbServer:
    """Make our code see the isolated server (as ANDROID_ADB_SERVER_PORT does for adb), with
    no ANDROID_SERIAL and the session's host key."""
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(real_adb.port))
    monkeypatch.delenv("ANDROID_ADB_SERVER_ADDRESS", raising=False)
    monkeypatch.delenv("ANDROID_SERIAL", raising=False)
    monkeypatch.setenv("ANDROID_USER_HOME", str(adb_key[0].parent))
    return AdbServer("127.0.0.1", real_adb.port, timeout=10)


def connect(real_adb, server: AdbServer, serial: str, state: str = "device") -> None:
    """``adb connect`` (which says "failed to authenticate" to a device that will be listed
    unauthorized), then wait until the server lists ``serial`` in ``state``."""
    said = real_adb("connect", serial).stdout
    assert "connected to" in said or state != "device", said
    wait_for_state(server, serial, state)


def test_auto_refuses_a_usb_serial_the_server_does_not_list(our_server, real_adb,
                                                            adb_testdevice):
    """adb-shell would fight the server for the phone's USB interface: say what it lists."""
    connect(real_adb, our_server, adb_testdevice.serial)
    with pytest.raises(AdbError) as refused:
        AdbDevice(USB_SERIAL, timeout=5)
    assert not isinstance(refused.value, LinkLost)
    assert refused.value.render(flag) == (
        f"the adb server at {our_server.address} does not list {USB_SERIAL}; it sees: "
        f"{adb_testdevice.serial} (device). While it runs it holds the phones on USB, so check "
        f"the serial and the cable with `adb devices -l`; or stop it (`adb kill-server`) and "
        f"pass --adb-transport direct to reach the phone without it.")
    assert str(refused.value).endswith("pass transport direct to reach the phone without it.")


def test_auto_goes_direct_to_an_unlisted_tcp_serial_and_says_why(our_server, adb_testdevice):
    phone = AdbDevice(adb_testdevice.serial, timeout=5)     # not `adb connect`ed
    try:
        assert phone.transport == (f"adb-shell over TCP (no adb server; the server at "
                                   f"{our_server.address} does not list {adb_testdevice.serial})")
        assert phone.shell("echo direct").stdout == "direct\n"
    finally:
        phone.close()


def test_auto_takes_the_server_for_a_listed_serial(our_server, real_adb, adb_testdevice):
    connect(real_adb, our_server, adb_testdevice.serial)
    phone = AdbDevice(adb_testdevice.serial, timeout=5)
    assert phone.transport.startswith(f"adb server {our_server.address} (adb 1.0.")
    assert phone.shell("echo served").stdout == "served\n"


def test_a_listed_serial_not_ready_gives_its_state_message(our_server, real_adb,
                                                           adb_testdevice):
    with AdbTestDevice() as stranger:              # trusts no key; nobody taps "Allow"
        connect(real_adb, our_server, stranger.serial, "unauthorized")
        with pytest.raises(AdbError) as refused:
            AdbDevice(stranger.serial, timeout=5)
        assert str(refused.value).startswith(unauthorized_message(stranger.serial))


class ListingServer:
    """A server whose listing is given (states Debian's adb cannot be made to show here)."""

    address = "127.0.0.1:5037"

    def __init__(self, *listed: ListedDevice) -> None:
        self.listed = list(listed)

    def devices(self) -> list[ListedDevice]:
        return self.listed

    def find(self, serial: str) -> ListedDevice | None:
        return next((d for d in self.listed if d.serial == serial), None)


def test_no_permissions_names_udev_rules():
    state = ("no permissions (missing udev rules? user is in the plugdev group); see "
             "[http://developer.android.com/tools/device.html]")
    link = ServerLink(ListingServer(ListedDevice(USB_SERIAL, state)), USB_SERIAL)
    with pytest.raises(AdbError) as refused:
        link.connect()
    message = str(refused.value)
    assert message.startswith(f"the adb server at 127.0.0.1:5037 lists {USB_SERIAL} with no "
                              f"permissions: the server may not open the phone's USB device")
    assert "apt install android-sdk-platform-tools-common" in message
    assert "plugdev" in message and "`adb kill-server; adb start-server`" in message


def test_offline_is_a_lost_link_to_retry():
    link = ServerLink(ListingServer(ListedDevice(USB_SERIAL, "offline")), USB_SERIAL)
    with pytest.raises(LinkLost, match="is offline for the adb server .* `adb reconnect`"):
        link.connect()


# -- no serial given: pick the only device, as adb does ----------------------------------
def test_the_serial_given_wins_then_android_serial(monkeypatch, free_port):
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(free_port))       # no server there
    monkeypatch.setenv("ANDROID_SERIAL", "from-env")
    assert resolve_serial("R58M1234XYZ") == ("R58M1234XYZ", "given")
    assert resolve_serial(None) == ("from-env", "from ANDROID_SERIAL")
    monkeypatch.delenv("ANDROID_SERIAL")
    with pytest.raises(AdbError) as refused:
        resolve_serial(None)
    assert refused.value.render(flag) == (
        f"no device serial: pass --device SERIAL (or HOST:PORT), or set ANDROID_SERIAL. (No "
        f"adb server answers at 127.0.0.1:{free_port} to pick the only attached phone from; "
        f"`adb start-server` starts one.)")
    assert str(refused.value).startswith("no device serial: pass device SERIAL (or HOST:PORT)")
    assert refused.value.field == "device"


def test_the_only_ready_device_is_picked(our_server, real_adb, adb_testdevice):
    connect(real_adb, our_server, adb_testdevice.serial)
    with AdbTestDevice() as stranger:              # listed, but unauthorized: not a candidate
        connect(real_adb, our_server, stranger.serial, "unauthorized")
        assert resolve_serial(None) == (
            adb_testdevice.serial,
            f"the only device the adb server at {our_server.address} lists as ready (also "
            f"listed: {stranger.serial} (unauthorized))")
        phone = AdbDevice(timeout=5)
        assert phone.serial == adb_testdevice.serial
        assert phone.serial_source.startswith("the only device the adb server")
        assert phone.shell("echo picked").stdout == "picked\n"


def test_more_than_one_device_is_refused_like_adb(our_server, real_adb, adb_testdevice,
                                                  adb_key):
    connect(real_adb, our_server, adb_testdevice.serial)
    with AdbTestDevice(authorized_keys=[adb_key[1]]) as second:
        connect(real_adb, our_server, second.serial)
        with pytest.raises(AdbError) as refused:
            AdbDevice(timeout=5)
        message = str(refused.value)
        assert message.startswith(f"more than one device/emulator: the adb server at "
                                  f"{our_server.address} lists ")
        assert f"{adb_testdevice.serial} (device)" in message
        assert f"{second.serial} (device)" in message
        assert message.endswith("pass device SERIAL (or HOST:PORT), or set ANDROID_SERIAL "
                                "to pick one.")


def test_no_ready_device_lists_what_the_server_sees(our_server, real_adb):
    with pytest.raises(AdbError, match=f"the adb server at {our_server.address} lists no "
                                       f"devices: pass device SERIAL"):
        resolve_serial(None)
    with AdbTestDevice() as stranger:
        connect(real_adb, our_server, stranger.serial, "unauthorized")
        with pytest.raises(AdbError) as refused:
            AdbDevice()
        assert refused.value.render(flag) == (
            f"no device serial, and the adb server at {our_server.address} lists no ready "
            f"device ({stranger.serial} (unauthorized)): pass --device SERIAL (or HOST:PORT), "
            f"or set ANDROID_SERIAL; `adb devices -l` shows what adb sees.")
