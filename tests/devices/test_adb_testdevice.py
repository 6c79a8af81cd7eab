"""The ADB test device, through adb-shell, a raw protocol client, and Debian's real adb."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest
from adb_shell.adb_device import AdbDeviceTcp
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_cryptography import CryptographySigner
from adb_shell.exceptions import (
    AdbTimeoutError,
    DeviceAuthError,
    PushFailedError,
    TcpTimeoutException,
)

from devices.adb_testdevice import AdbTestDevice, KillRule
from devices.adbtd_keys import decode_android_pubkey, encode_android_pubkey
from devices.adbtd_sandbox import elf_exec_supported
from devices.adbtd_wire import (
    A_AUTH,
    A_CLSE,
    A_CNXN,
    A_OKAY,
    A_OPEN,
    A_WRTE,
    AUTH_SIGNATURE,
    HEADER,
    Packet,
    checksum,
    pack,
)

from seaformer_deploy.devices.probe import (
    PROBE_SCRIPT,
    choose_core,
    device_state,
    parse_snapshot,
    topology,
)

REFUSED = (TcpTimeoutException, DeviceAuthError)     # no answer to RSAPUBLICKEY, like adbd
CUT = (AdbTimeoutError, TcpTimeoutException, ConnectionError)


def connect(device: AdbTestDevice, key_path, **kwargs) -> AdbDeviceTcp:
    client = AdbDeviceTcp("127.0.0.1", device.port, default_transport_timeout_s=10)
    client.connect(rsa_keys=[CryptographySigner(str(key_path))], **kwargs)
    return client


@pytest.fixture
def adb(adb_testdevice, adb_key):
    client = connect(adb_testdevice, adb_key[0])
    yield client
    client.close()


# -- a minimal raw host, to see the wire itself (checksums, versions, shell v2) -----------
class RawHost:
    def __init__(self, device: AdbTestDevice, version: int = 0x01000001) -> None:
        self.sock = socket.create_connection(("127.0.0.1", device.port), timeout=10)
        self.version = 0x01000000          # until the device's CNXN arrives
        self.offered = version

    def send(self, packet: Packet) -> None:
        self.sock.sendall(pack(packet, self.version))

    def recv(self) -> tuple[Packet, int]:
        header = self.sock.recv(HEADER.size, socket.MSG_WAITALL)
        check = HEADER.unpack(header)[4]
        rest = _recv_all(self.sock, HEADER.unpack(header)[3])
        return Packet(*HEADER.unpack(header)[:3], rest), check

    def handshake(self, key_path) -> Packet:
        self.send(Packet(A_CNXN, self.offered, 1 << 20, b"host::features=shell_v2\0"))
        signer = CryptographySigner(str(key_path))
        while True:
            packet, _ = self.recv()
            if packet.command == A_CNXN:
                self.version = packet.arg0
                return packet
            self.send(Packet(A_AUTH, AUTH_SIGNATURE, 0, signer.Sign(packet.data)))

    def run(self, service: str) -> bytes:
        """OPEN, collect every WRTE (acknowledging each) until the device's CLSE."""
        self.send(Packet(A_OPEN, 7, 0, service.encode() + b"\0"))
        out = b""
        while True:
            packet, _ = self.recv()
            if packet.command == A_WRTE:
                out += packet.data
                self.send(Packet(A_OKAY, 7, packet.arg0))
            elif packet.command == A_CLSE:
                return out


def _recv_all(sock, size):
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


def shell_v2(device: AdbTestDevice, key_path, command: str) -> tuple[bytes, bytes, int | None]:
    host = RawHost(device)
    host.handshake(key_path)
    raw = host.run(f"shell,v2,raw:{command}")
    host.sock.close()
    out, err, code = b"", b"", None
    while raw:
        kind, length = struct.unpack_from("<BI", raw)
        data, raw = raw[5:5 + length], raw[5 + length:]
        if kind == 1:
            out += data
        elif kind == 2:
            err += data
        elif kind == 3:
            code = data[0]
    return out, err, code


# -- protocol ----------------------------------------------------------------------------
def test_handshake_negotiates_version_checksum_and_banner(adb_testdevice, adb_key):
    host = RawHost(adb_testdevice)
    host.send(Packet(A_CNXN, 0x01000001, 1 << 20, b"host::\0"))
    token, check = host.recv()
    assert (token.command, token.arg0, len(token.data)) == (A_AUTH, 1, 20)
    assert check == 0                   # negotiated 0x01000001: adbd skips data checksums
    host.sock.close()

    old = RawHost(adb_testdevice, version=0x01000000)
    old.send(Packet(A_CNXN, 0x01000000, 4096, b"host::\0"))
    token, check = old.recv()
    assert check == checksum(token.data)     # old protocol: byte-sum checksum
    old.sock.close()

    cnxn = RawHost(adb_testdevice).handshake(adb_key[0])
    assert (cnxn.arg0, cnxn.arg1) == (0x01000001, 1 << 20)
    banner = cnxn.data.decode()
    assert banner.startswith("device::ro.product.name=OnePlus8Pro;ro.product.model=IN2023;")
    assert "features=shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir" in banner


def test_android_pubkey_round_trip(adb_key):
    key = decode_android_pubkey(adb_key[1])
    assert encode_android_pubkey(key).split()[0] == adb_key[1].split()[0]


def test_bad_magic_drops_the_connection(adb_testdevice):
    sock = socket.create_connection(("127.0.0.1", adb_testdevice.port), timeout=5)
    sock.sendall(HEADER.pack(A_CNXN, 0x01000001, 4096, 0, 0, 0x12345678))
    assert sock.recv(24) == b""
    sock.close()


# -- adb-shell: auth, shell, sync ----------------------------------------------------------
def test_adb_shell_shell_and_getprop(adb):
    assert adb.shell("echo hi; echo oops >&2") == "hi\noops\n"     # v1 merges stderr
    assert adb.shell("getprop ro.product.model").strip() == "IN2023"
    assert adb.shell("getprop ro.soc.model; getprop ro.product.cpu.abi") == "SM8250\narm64-v8a\n"
    assert adb.shell("getprop no.such.prop").strip() == ""
    assert "[ro.build.version.release]: [12]" in adb.shell("getprop")
    assert adb.shell("cd /data/local/tmp && pwd") == "/data/local/tmp\n"
    assert adb.shell("uname -m") == "aarch64\n"


def test_push_pull_round_trip_stat_and_list(adb, adb_testdevice, tmp_path):
    payload = os.urandom(3_000_000)
    (tmp_path / "blob").write_bytes(payload)
    adb.push(str(tmp_path / "blob"), "/data/local/tmp/dir/blob", st_mode=0o100640,
             mtime=1_700_000_000)
    adb.pull("/data/local/tmp/dir/blob", str(tmp_path / "back"))
    digest = hashlib.sha256(payload).hexdigest()
    assert hashlib.sha256((tmp_path / "back").read_bytes()).hexdigest() == digest
    assert adb.shell("sha256sum /data/local/tmp/dir/blob").split()[0] == digest
    assert adb.stat("/data/local/tmp/dir/blob") == (0o100640, 3_000_000, 1_700_000_000)
    assert adb.stat("/data/local/tmp/missing") == (0, 0, 0)
    names = {bytes(f.filename) for f in adb.list("/data/local/tmp/dir")}
    assert names == {b".", b"..", b"blob"}
    assert adb_testdevice.host_path("/data/local/tmp/dir/blob").read_bytes() == payload


def test_pull_missing_file_fails(adb, tmp_path):
    with pytest.raises(Exception, match="No such file"):
        adb.pull("/data/local/tmp/nope", str(tmp_path / "x"))


def test_probe_reads_the_sd865_profile(adb, adb_testdevice):
    files = parse_snapshot(adb.shell(PROBE_SCRIPT))
    topo = topology(files)
    assert [c.max_khz for c in topo.cores] == [1_804_800] * 4 + [2_419_200] * 3 + [2_841_600]
    assert [c.core_type for c in topo.cores] == ["Cortex-A55"] * 4 + ["Cortex-A77"] * 4
    assert [c.cluster for c in topo.cores] == [0] * 4 + [1] * 3 + [2]
    assert topo.kernel == "Linux 4.19.113-perf+ aarch64"
    assert choose_core(topo).core == 7
    adb_testdevice.write_file("/sys/devices/system/cpu/cpufreq/policy7/scaling_governor",
                              "performance\n")
    state = device_state(parse_snapshot(adb.shell(PROBE_SCRIPT)))
    assert state.governors[7] == "performance" and state.governors[0] == "schedutil"
    assert state.battery_c == 28.5 and state.max_temperature() == 42.0


def test_concurrent_connections(adb_testdevice, adb_key):
    results = {}

    def work(i):
        client = connect(adb_testdevice, adb_key[0])
        results[i] = client.shell(f"sleep 0.3; echo {i}")
        client.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: f"{i}\n" for i in range(4)}
    assert time.monotonic() - start < 1.2          # served in parallel, not one by one


def test_shell_v2_separates_streams_and_reports_exit_code(adb_testdevice, adb_key):
    out, err, code = shell_v2(adb_testdevice, adb_key[0], "echo out; echo err >&2; exit 42")
    assert (out, err, code) == (b"out\n", b"err\n", 42)


# -- auth ----------------------------------------------------------------------------------
def test_unknown_key_is_refused(adb_testdevice, tmp_path):
    keygen(str(tmp_path / "stranger"))
    with pytest.raises(REFUSED):
        connect(adb_testdevice, tmp_path / "stranger", auth_timeout_s=1)


def test_new_key_accepted_when_user_taps_allow(adb_key, tmp_path):
    keygen(str(tmp_path / "newcomer"))
    with AdbTestDevice(accept_new_keys=True) as device:
        client = connect(device, tmp_path / "newcomer", auth_timeout_s=2)
        assert client.shell("echo ok") == "ok\n"
        client.close()
        client = connect(device, tmp_path / "newcomer")   # now remembered: signature works
        client.close()


def test_keep_unauthorized_fault(adb_testdevice, adb_key):
    adb_testdevice.faults.keep_unauthorized = True
    with pytest.raises(REFUSED):
        connect(adb_testdevice, adb_key[0], auth_timeout_s=1)


# -- ARM64 executables and taskset -----------------------------------------------------------
@pytest.fixture(scope="session")
def hello_arm64(tmp_path_factory):
    if not (shutil.which("aarch64-linux-gnu-g++") and elf_exec_supported()):
        pytest.skip("needs aarch64-linux-gnu-g++, qemu-aarch64-static and a host C compiler")
    out = tmp_path_factory.mktemp("arm64")
    source = out / "hello.cpp"
    source.write_text('#include <cstdio>\nint main(int c, char** v) {'
                      ' std::printf("hello arm64 %s %d\\n", v[0], c); return 3; }\n')
    binaries = {}
    for kind, flags in (("static", ["-static"]), ("dynamic", [])):
        binaries[kind] = out / f"hello_{kind}"
        subprocess.run(["aarch64-linux-gnu-g++", "-O1", *flags, "-o", str(binaries[kind]),
                        str(source)], check=True)
    return binaries


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_pushed_arm64_binary_runs_under_qemu(adb, adb_testdevice, adb_key, hello_arm64, kind):
    adb.push(str(hello_arm64[kind]), "/data/local/tmp/hello", st_mode=0o100755)
    output = adb.shell("cd /data/local/tmp && ./hello a b; echo rc=$?")
    assert output == "hello arm64 ./hello 3\nrc=3\n"
    assert adb.shell("taskset 80 /data/local/tmp/hello") == "hello arm64 /data/local/tmp/hello 1\n"
    assert adb_testdevice.taskset_calls() == ["80 /data/local/tmp/hello"]
    out, _, code = shell_v2(adb_testdevice, adb_key[0], "/data/local/tmp/hello x")
    assert (out, code) == (b"hello arm64 /data/local/tmp/hello 2\n", 3)


def test_taskset_rejects_masks_without_existing_cpus(adb):
    assert adb.shell("taskset 100 true; echo $?").endswith("Invalid argument\n1\n")


# -- fault hooks -----------------------------------------------------------------------------
def test_storage_full(adb, adb_testdevice, tmp_path):
    adb_testdevice.faults.storage_full()
    assert adb.shell("df -k /data").splitlines()[1].split()[3] == "0"
    (tmp_path / "f").write_bytes(b"x" * 10_000)
    with pytest.raises(PushFailedError, match="No space left on device"):
        adb.push(str(tmp_path / "f"), "/data/local/tmp/f")
    assert not adb_testdevice.host_path("/data/local/tmp/f").exists()


def test_kill_command_with_signal(adb_testdevice, adb_key):
    adb_testdevice.faults.kill_commands.append(KillRule(r"bench", signal.SIGKILL, after_s=0.2))
    start = time.monotonic()
    out, _, code = shell_v2(adb_testdevice, adb_key[0], "echo start; sleep 10; echo bench")
    assert (out, code) == (b"start\n", 128 + signal.SIGKILL)
    assert time.monotonic() - start < 5


def test_hang_command(adb, adb_testdevice):
    adb_testdevice.faults.hang_commands.append(r"^run_bench")
    with pytest.raises((AdbTimeoutError, TcpTimeoutException)):
        adb.shell("run_bench --x", transport_timeout_s=1, read_timeout_s=1, timeout_s=1)


def test_drop_on_open(adb, adb_testdevice, adb_key):
    adb_testdevice.faults.drop_on_open = r"^sync:"
    with pytest.raises(CUT):      # adb-shell sees EOF, then times out
        adb.stat("/data/local/tmp", transport_timeout_s=1, read_timeout_s=1)
    assert adb_testdevice.faults.drop_on_open is None           # one-shot
    assert connect(adb_testdevice, adb_key[0]).stat("/data/local/tmp")[0] & 0o040000


def test_drop_after_bytes(adb, adb_testdevice, adb_key, tmp_path):
    adb_testdevice.write_file("/data/local/tmp/big", os.urandom(500_000))
    adb_testdevice.faults.drop_after_bytes(100_000)
    with pytest.raises(CUT):
        adb.pull("/data/local/tmp/big", str(tmp_path / "big"), transport_timeout_s=1,
                 read_timeout_s=1)
    again = connect(adb_testdevice, adb_key[0])                  # one-shot: reconnecting works
    again.pull("/data/local/tmp/big", str(tmp_path / "big"))
    assert (tmp_path / "big").stat().st_size == 500_000


# -- Debian's adb ----------------------------------------------------------------------------
# (the isolated server, fixture `real_adb`, is in conftest.py: test_adb_server.py uses it too)
def test_real_adb_client(real_adb, adb_testdevice, tmp_path):
    serial = adb_testdevice.serial
    assert "connected to" in real_adb("connect", serial).stdout
    assert real_adb("-s", serial, "wait-for-device", timeout=15).returncode == 0
    assert f"{serial}\tdevice" in real_adb("devices").stdout.replace("        ", "\t")
    hi = real_adb("-s", serial, "shell", "echo hi; echo err >&2; exit 5")
    assert (hi.stdout, hi.stderr, hi.returncode) == ("hi\n", "err\n", 5)      # shell v2
    assert real_adb("-s", serial, "shell", "getprop", "ro.product.model").stdout == "IN2023\n"
    payload = os.urandom(2_000_000)
    (tmp_path / "up").write_bytes(payload)
    assert real_adb("-s", serial, "push", str(tmp_path / "up"), "/data/local/tmp/").returncode == 0
    assert adb_testdevice.host_path("/data/local/tmp/up").read_bytes() == payload
    pulled = real_adb("-s", serial, "pull", "/data/local/tmp/up", str(tmp_path / "down"))
    assert pulled.returncode == 0
    assert (tmp_path / "down").read_bytes() == payload


def test_real_adb_shows_unauthorized(real_adb, tmp_path):
    with AdbTestDevice() as device:             # trusts no key, nobody taps "Allow"
        real_adb("connect", device.serial)
        deadline = time.monotonic() + 10
        while "unauthorized" not in (listing := real_adb("devices").stdout):
            assert time.monotonic() < deadline, listing
            time.sleep(0.2)
        failed = real_adb("-s", device.serial, "shell", "echo hi")
        assert failed.returncode != 0 and "unauthorized" in failed.stderr
