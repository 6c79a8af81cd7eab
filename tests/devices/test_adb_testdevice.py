"""The ADB test device, through adb-shell, a raw protocol client, and Debian's real adb."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

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
from devices import adbtd_sandbox
from devices.adbtd_sandbox import PROFILES, HostLeaksGlibc, elf_exec_supported
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


AARCH64_LIBS = Path("/usr/aarch64-linux-gnu/lib")      # Debian's cross glibc (libc6-arm64-cross)
CXX_LIBS = ("libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1")


def push_glibc(adb, folder: str, libraries=("libc.so.6",), libs: Path = AARCH64_LIBS,
               loader: str = "ld-linux-aarch64.so.1") -> str:
    """Bundle glibc's loader and ``libraries`` in ``folder``; the command prefix that starts a
    program with them (how the product starts its runner on a phone without glibc)."""
    for name in (loader, *libraries):
        adb.push(str(libs / name), f"{folder}/{name}", st_mode=0o100755)
    return f"{folder}/{loader} --library-path {folder} --inhibit-cache"


@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_pushed_arm64_binary_runs_under_qemu(adb, adb_testdevice, adb_key, hello_arm64, kind):
    """Static: runs as it is. Dynamic (glibc): through the loader and libraries it brings (it
    used to run directly, with the cross sysroot linked into the sandbox; a phone refuses
    that, see test_glibc_program_needs_its_own_loader)."""
    adb.push(str(hello_arm64[kind]), "/data/local/tmp/hello", st_mode=0o100755)
    launch = "" if kind == "static" else push_glibc(adb, "/data/local/tmp/glibc", CXX_LIBS) + " "
    output = adb.shell(f"cd /data/local/tmp && {launch}./hello a b; echo rc=$?")
    assert output == "hello arm64 ./hello 3\nrc=3\n"
    assert (adb.shell(f"taskset 80 {launch}/data/local/tmp/hello")
            == "hello arm64 /data/local/tmp/hello 1\n")
    assert adb_testdevice.taskset_calls() == [f"80 {launch}/data/local/tmp/hello"]
    out, _, code = shell_v2(adb_testdevice, adb_key[0], f"{launch}/data/local/tmp/hello x")
    assert (out, code) == (b"hello arm64 /data/local/tmp/hello 2\n", 3)


def test_taskset_rejects_masks_without_existing_cpus(adb):
    assert adb.shell("taskset 100 true; echo $?").endswith("Invalid argument\n1\n")


# -- a stock, unrooted phone ------------------------------------------------------------------
HELLO_C = '#include <stdio.h>\nint main(int c, char **v) { printf("hello %s %d\\n", v[0], c); }\n'
# Pins itself when given a core (as the runner does), then reports what the device says, in
# the main thread and in a thread started afterwards (which inherits the affinity).
CPU_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void report(const char *who) {
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    unsigned long mask = 0;
    for (int i = 0; i < 64; i++) if (CPU_ISSET(i, &set)) mask |= 1UL << i;
    printf("%s cpu=%d mask=%lx cpus=%ld\n", who, sched_getcpu(), mask,
           sysconf(_SC_NPROCESSORS_ONLN));
}
static void *worker(void *arg) { report("thread"); return arg; }
int main(int argc, char **argv) {
    if (argc > 1) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(atoi(argv[1]), &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0) printf("pin: %s\n", strerror(errno));
    }
    report("main");
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);
}
"""


# Prints the first line of "/" + its argument: a path the command text does not show.
HEAD_C = r"""
#include <stdio.h>
int main(int argc, char **argv) {
    char path[4096], line[256];
    snprintf(path, sizeof path, "/%s", argc > 1 ? argv[1] : "");
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); return 1; }
    if (fgets(line, sizeof line, f)) fputs(line, stdout);
    return 0;
}
"""


@pytest.fixture(scope="session")
def programs(tmp_path_factory):
    """hello, cpu and head, built as glibc programs for aarch64 (and x86-64 when cc is
    there)."""
    if not (shutil.which("aarch64-linux-gnu-gcc") and elf_exec_supported()):
        pytest.skip("needs aarch64-linux-gnu-gcc, qemu-aarch64-static and a host C compiler")
    out = tmp_path_factory.mktemp("programs")
    built = {}
    for name, source in (("hello", HELLO_C), ("cpu", CPU_C), ("head", HEAD_C)):
        (out / f"{name}.c").write_text(source)
        for arch, cc in (("aarch64", "aarch64-linux-gnu-gcc"), ("x86_64", "cc")):
            if shutil.which(cc):
                built[name, arch] = out / f"{name}-{arch}"
                subprocess.run([cc, "-O1", "-pthread", "-o", str(built[name, arch]),
                                str(out / f"{name}.c")], check=True)
    return built


@contextlib.contextmanager
def phone(profile: str, adb_key):
    """A started test device with one of PROFILES, and an adb-shell client on it."""
    with AdbTestDevice(profile=PROFILES[profile](), authorized_keys=[adb_key[1]]) as device:
        client = connect(device, adb_key[0])
        try:
            yield device, client
        finally:
            client.close()


def test_glibc_program_needs_its_own_loader(adb, adb_testdevice, adb_key, programs, arm64_exec):
    adb.push(str(programs["hello", "aarch64"]), "/data/local/tmp/hello", st_mode=0o100755)
    # Its PT_INTERP, /lib/ld-linux-aarch64.so.1, does not exist on the phone: ENOENT.
    out, err, code = shell_v2(adb_testdevice, adb_key[0], "cd /data/local/tmp && ./hello")
    assert (out, err, code) == (b"", b"/system/bin/sh: ./hello: No such file or directory\n", 126)
    out, err, code = shell_v2(adb_testdevice, adb_key[0], "taskset 80 /data/local/tmp/hello")
    assert (err, code) == (b"taskset: exec /data/local/tmp/hello: No such file or directory\n",
                           127)
    # Started by the loader it brings, with its libc: runs.
    launch = push_glibc(adb, "/data/local/tmp/glibc")
    assert adb.shell(f"{launch} /data/local/tmp/hello a") == "hello /data/local/tmp/hello 2\n"
    # Without the libc next to the loader there is no host libc to fall back to.
    launch = push_glibc(adb, "/data/local/tmp/bare", libraries=())
    out, err, code = shell_v2(adb_testdevice, adb_key[0], f"{launch} /data/local/tmp/hello")
    assert code == 127 and b"libc.so.6: cannot open shared object file" in err


def test_shell_is_mksh_with_toybox_and_nothing_of_the_host(adb_testdevice, adb_key):
    def run(command):
        return shell_v2(adb_testdevice, adb_key[0], command)

    assert b"MIRBSD KSH" in run("echo $KSH_VERSION")[0]
    assert run("echo $PATH")[0] == b"/system/bin:/system/xbin:/vendor/bin\n"
    assert run("readlink /system/bin/ls; ls -l /bin")[0].endswith(b"/bin -> system/bin\n")
    for command, message in (
            ("df --output=avail /data", b"df: Unknown option 'output=avail'"),
            ("cp --reflink /proc/version /data/local/tmp/v", b"cp: Unknown option 'reflink'"),
            ("rm -rf --one-file-system /data/local/tmp/x", b"rm: Unknown option"),
            ("awk 1 /proc/version", b"/system/bin/sh: awk: inaccessible or not found"),
            ("/usr/bin/env", b"/system/bin/sh: /usr/bin/env: inaccessible or not found"),
            ("bash -c true", b"/system/bin/sh: bash: inaccessible or not found")):
        _, err, code = run(command)
        assert code and err.startswith(message), (command, err)
    assert run("[ -e /lib64/ld-linux-x86-64.so.2 ] || echo absent")[0] == b"absent\n"
    # A script's interpreter is looked up on the device: #!/bin/bash does not exist there.
    script = "/data/local/tmp/s.sh"
    adb_testdevice.write_file(script, "#!/bin/bash\necho bash\n").chmod(0o755)
    assert run(script)[1:] == (f"/system/bin/sh: {script}: No such file or directory\n".encode(),
                               126)
    adb_testdevice.write_file(script, "#!/system/bin/sh\necho $0 $1\n").chmod(0o755)
    assert run(f"{script} x")[0] == f"{script} x\n".encode()


def test_commands_run_as_the_shell_user(adb_testdevice, adb_key):
    out, _, _ = shell_v2(adb_testdevice, adb_key[0], "id -u; id -un; touch /data/local/tmp/f; "
                         "ls -ln /data/local/tmp/f")
    uid = 2000 if os.geteuid() == 0 else os.getuid()
    assert out.splitlines()[0] == str(uid).encode()
    if os.geteuid() == 0:
        assert out.splitlines()[1] == b"shell"
        assert out.splitlines()[2].split()[2:4] == [b"2000", b"2000"]
    governor = "/sys/devices/system/cpu/cpu7/cpufreq/scaling_governor"
    _, err, code = shell_v2(adb_testdevice, adb_key[0], f"echo performance > {governor}")
    assert code == 1 and b"Permission denied" in err
    assert adb_testdevice.host_path(governor).read_text() == "schedutil\n"


def test_push_writes_as_the_shell_user(adb, adb_testdevice, tmp_path):
    (tmp_path / "f").write_text("x")
    adb.push(str(tmp_path / "f"), "/data/local/tmp/new/f")
    made = adb_testdevice.host_path("/data/local/tmp/new/f")
    if os.geteuid() != 0:
        return
    assert (made.stat().st_uid, made.parent.stat().st_uid) == (2000, 2000)
    with pytest.raises(PushFailedError, match="Permission denied"):
        adb.push(str(tmp_path / "f"), "/system/bin/f")


def test_exec_from_sdcard_is_refused(adb_testdevice, adb_key):
    adb_testdevice.write_file("/sdcard/s.sh", "#!/system/bin/sh\necho ran\n").chmod(0o755)
    out, err, code = shell_v2(adb_testdevice, adb_key[0], "/sdcard/s.sh; sh /sdcard/s.sh")
    assert err == b"/system/bin/sh: /sdcard/s.sh: Permission denied\n"
    assert (out, code) == (b"ran\n", 0)      # reading it into sh still works, as on a phone


def test_taskset_pins_to_the_device_cpu(adb, adb_testdevice, programs, arm64_exec):
    adb.push(str(programs["cpu", "aarch64"]), "/data/local/tmp/cpu", st_mode=0o100755)
    launch = push_glibc(adb, "/data/local/tmp/glibc")
    assert adb.shell(f"taskset 80 {launch} /data/local/tmp/cpu") == (
        "main cpu=7 mask=80 cpus=8\nthread cpu=7 mask=80 cpus=8\n")
    assert adb_testdevice.taskset_calls() == [f"80 {launch} /data/local/tmp/cpu"]
    # The program pins itself (the runner does): the thread it starts next inherits it.
    assert adb.shell(f"{launch} /data/local/tmp/cpu 5") == (
        "main cpu=5 mask=20 cpus=8\nthread cpu=5 mask=20 cpus=8\n")
    assert adb.shell(f"{launch} /data/local/tmp/cpu 9").startswith("pin: Invalid argument\n")
    host = adb.shell("taskset 80 sh -c 'toybox taskset -p $$'").split()[-1]
    assert int(host, 16) == 1 << adb_testdevice.sandbox.host_cpus[7 % len(
        adb_testdevice.sandbox.host_cpus)]


def test_command_log_keeps_status_and_errors(adb, adb_testdevice, adb_key):
    adb.shell("echo fine")
    shell_v2(adb_testdevice, adb_key[0], "df --output=avail /data")
    log = adb_testdevice.command_log()
    assert [(r.command, r.service, r.status) for r in log] == [
        ("echo fine", "shell", 0), ("df --output=avail /data", "shell,v2", 1)]
    assert log[0].output == "fine\n" and log[0].stderr == ""
    assert log[1].stderr == "df: Unknown option 'output=avail' (see \"df --help\")\n"
    assert [r.command for r in log if "Unknown option" in r.text()] == [log[1].command]


def test_thermal_denied_profile(adb_key):
    with phone("sd865-thermal-denied", adb_key) as (device, client):
        assert "Permission denied" in client.shell("cat /sys/class/thermal/thermal_zone0/temp")
        state = device_state(parse_snapshot(client.shell(PROBE_SCRIPT)))
        assert state.thermal_c == {} and state.battery_c == 28.5


def test_android_11_phone_without_soc_properties(adb_key):
    with phone("sd855-android11", adb_key) as (device, client):
        assert client.shell("getprop ro.build.version.release; getprop ro.soc.model") == "11\n\n"
        assert client.shell("getprop ro.board.platform") == "msmnile\n"
        topo = topology(parse_snapshot(client.shell(PROBE_SCRIPT)))
        assert [c.max_khz for c in topo.cores] == [1_785_600] * 4 + [2_419_200] * 3 + [2_841_600]
        assert choose_core(topo).core == 7


def test_snapdragon_8_gen_2_profile(adb_key):
    with phone("sm8550", adb_key) as (device, client):
        topo = topology(parse_snapshot(client.shell(PROBE_SCRIPT)))
        assert [c.core_type for c in topo.cores] == (
            ["Cortex-A510"] * 3 + ["Cortex-A715"] * 2 + ["Cortex-A710"] * 2 + ["Cortex-X3"])
        assert choose_core(topo).core == 7
        assert client.shell("getprop ro.soc.model; getprop ro.build.version.sdk") == "SM8550\n34\n"


def test_x86_64_emulator_runs_native_programs(adb_key, programs):
    if ("cpu", "x86_64") not in programs:
        pytest.skip("needs a host C compiler for x86-64")
    with phone("emulator-x86_64", adb_key) as (device, client):
        assert client.shell("uname -m; getprop ro.product.cpu.abi; getprop ro.kernel.qemu") == (
            "x86_64\nx86_64\n1\n")
        topo = topology(parse_snapshot(client.shell(PROBE_SCRIPT)))
        assert len(topo.cores) == 4 and topo.cpu_model.startswith("Intel")
        assert {c.max_khz for c in topo.cores} == {None} and choose_core(topo).core == 3
        client.push(str(programs["cpu", "x86_64"]), "/data/local/tmp/cpu", st_mode=0o100755)
        # Its interpreter, /lib64/ld-linux-x86-64.so.2, is not on the device ...
        assert client.shell("/data/local/tmp/cpu") == (
            "/system/bin/sh: /data/local/tmp/cpu: No such file or directory\n")
        # ... but the host's loader and libc, bundled, run it natively, with device CPUs.
        launch = push_glibc(client, "/data/local/tmp/glibc", libs=Path("/lib/x86_64-linux-gnu"),
                            loader="ld-linux-x86-64.so.2")
        assert client.shell(f"taskset 8 {launch} /data/local/tmp/cpu") == (
            "main cpu=3 mask=8 cpus=4\nthread cpu=3 mask=8 cpus=4\n")
        # Paths it builds itself name device files too (the runner reads them from its plan).
        client.push(str(programs["head", "x86_64"]), "/data/local/tmp/head", st_mode=0o100755)
        assert client.shell(f"{launch} /data/local/tmp/head proc/version").startswith(
            "Linux version 6.1.23-android14")
        assert client.shell(f"{launch} /data/local/tmp/head usr/lib/os-release") == (
            "/usr/lib/os-release: No such file or directory\n")
        client.push(str(programs["hello", "aarch64"]), "/data/local/tmp/arm", st_mode=0o100755)
        assert "not executable: 64-bit ELF file" in client.shell("/data/local/tmp/arm")


def test_rooted_profile_has_su(adb_key):
    """A Magisk-style phone: the shell still says uid 2000, su writes cpufreq."""
    profile = PROFILES["sd865"]()
    profile.rooted = True
    governor = "/sys/devices/system/cpu/cpu7/cpufreq/scaling_governor"
    with AdbTestDevice(profile=profile, authorized_keys=[adb_key[1]]) as device:
        client = connect(device, adb_key[0])
        assert client.shell("id -u; command -v su") == "2000\n/system/bin/su\n"
        assert client.shell(f"su 0 sh -c 'echo performance > {governor}' && cat {governor}") == (
            "performance\n")
        client.close()


def test_host_with_aarch64_glibc_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / "ld-linux-aarch64.so.1"
    fake.touch()
    monkeypatch.setattr(adbtd_sandbox, "HOST_GLIBC_PATHS", (str(fake),))
    with pytest.raises(HostLeaksGlibc, match="qemu-user falls back to host paths"):
        AdbTestDevice()


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
