"""A client of the adb server's host protocol: phones that ``adb devices`` already lists.

Why our own compact client and not a library: adbutils, the maintained one, ships an 8.7 MB adb
binary inside its wheel, pulls in requests, Pillow, retry2 and deprecation, and runs
``adb start-server`` whenever the server does not answer (we must never start a server: it
takes over the user's USB devices); pure-python-adb has had no release since 2020. The protocol
is small and documented in AOSP ``packages/modules/adb`` (OVERVIEW.TXT, SERVICES.TXT,
SYNC.TXT):

* every request is 4 hex digits of length + the payload, on a fresh TCP connection to the
  server; the answer is ``OKAY`` or ``FAIL`` + 4 hex digits of length + a message;
* ``host:version`` and ``host:devices-l`` answer OKAY + a length-prefixed text;
* ``host:transport:<serial>`` turns the connection into a pipe to that device, where one
  device service follows: ``shell:<cmd>`` (v1: stdout and stderr merged, raw bytes until the
  device closes) or ``sync:``. One connection per command: that is how adb itself works;
* ``sync:`` messages are a 4-byte id + a little-endian u32: SEND "path,mode", DATA chunks of
  at most 64 KiB, DONE <mtime> -> OKAY, or FAIL + the device's reason; RECV path -> DATA ...
  DONE, or FAIL.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import option
from .adb_link import AdbError, AdbLink, LinkLost, LinkTimeout, unauthorized_message

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 5037
SYNC_DATA_MAX = 64 * 1024          # largest DATA chunk adbd accepts (SYNC.TXT)
SYNC = struct.Struct("<4sI")       # sync messages: id, then a length or a value
LISTING_KEYS = ("usb", "product", "model", "device", "transport_id")


def server_address() -> tuple[str, int]:
    """Where the adb client looks: $ANDROID_ADB_SERVER_ADDRESS and $ANDROID_ADB_SERVER_PORT."""
    host = os.environ.get("ANDROID_ADB_SERVER_ADDRESS") or DEFAULT_HOST
    port = os.environ.get("ANDROID_ADB_SERVER_PORT") or str(DEFAULT_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise AdbError(f"ANDROID_ADB_SERVER_PORT={port!r} is not a TCP port (1-65535); unset "
                       f"it to use adb's default {DEFAULT_PORT}.")
    return host, int(port)


@dataclass
class ListedDevice:
    """One line of ``adb devices -l``."""

    serial: str
    state: str                       # device, unauthorized, offline, no permissions (...), ...
    model: str | None = None
    product: str | None = None
    device: str | None = None
    usb: str | None = None
    transport_id: int | None = None


def parse_devices(text: str) -> list[ListedDevice]:
    """``host:devices-l`` lines: serial, a state (may hold spaces), then key:value fields."""
    found = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2:
            continue
        fields = {}
        while len(words) > 2 and words[-1].partition(":")[0] in LISTING_KEYS:
            key, _, value = words.pop().partition(":")
            fields[key] = value
        tid = fields.pop("transport_id", "")
        found.append(ListedDevice(words[0], " ".join(words[1:]), **fields,
                                  transport_id=int(tid) if tid.isdigit() else None))
    return found


def summary(devices: list[ListedDevice]) -> str:
    """``R58M1234 (device), emulator-5554 (offline)``, or ``no devices``."""
    return ", ".join(f"{d.serial} ({d.state})" for d in devices) or "no devices"


class _Conn:
    """One TCP connection to the server, with one deadline for the whole exchange."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock, self.deadline = sock, time.monotonic() + timeout

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        self.sock.settimeout(left)

    def send(self, data: bytes) -> None:
        self._arm()
        self.sock.sendall(data)

    def recv(self, size: int = 65536) -> bytes:
        self._arm()
        return self.sock.recv(size)

    def exact(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.recv(size - len(data))
            if not chunk:
                raise ConnectionResetError("the adb server closed the connection")
            data += chunk
        return data

    def request(self, payload: str) -> str | None:
        """Send a request; None on OKAY, the server's message on FAIL."""
        raw = payload.encode()
        self.send(b"%04x" % len(raw) + raw)
        status = self.exact(4)
        if status == b"OKAY":
            return None
        if status != b"FAIL":
            raise ConnectionResetError(f"not an adb server answer: {status!r}")
        return self.text()

    def text(self) -> str:
        try:
            size = int(self.exact(4), 16)
        except ValueError:
            raise ConnectionResetError("not an adb server answer: bad length") from None
        return self.exact(size).decode("utf-8", "replace")

    def close(self) -> None:
        self.sock.close()


class AdbServer:
    """A running adb server (``adb start-server``); we only ever talk to it."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 timeout: float = 10.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.address = f"{host}:{port}"

    def running(self) -> bool:
        """A quick look: does an adb server answer here? Never starts one."""
        try:
            self.version(timeout=1.0)
            return True
        except AdbError:
            return False

    def version(self, timeout: float | None = None) -> str:
        """The server's version as ``adb version`` prints it, e.g. ``1.0.41``."""
        text = self.query("host:version", timeout)
        try:
            return f"1.0.{int(text, 16)}"
        except ValueError:
            raise AdbError(f"{self.address} answered {text[:40]!r} to host:version: not an adb "
                           f"server? Check ANDROID_ADB_SERVER_PORT.") from None

    def devices(self) -> list[ListedDevice]:
        return parse_devices(self.query("host:devices-l"))

    def find(self, serial: str) -> ListedDevice | None:
        return next((d for d in self.devices() if d.serial == serial), None)

    def link(self, serial: str, timeout: float | None = None) -> ServerLink:
        return ServerLink(self, serial, timeout or self.timeout)

    def query(self, service: str, timeout: float | None = None) -> str:
        """A host request answered with one length-prefixed text."""
        limit = timeout or self.timeout
        with _errors(f"the adb server at {self.address}", service, limit):
            conn = self.open(limit)
            try:
                failed = conn.request(service)
                if failed is not None:
                    raise AdbError(f"the adb server at {self.address} refused {service!r}: "
                                   f"{failed}")
                return conn.text()
            finally:
                conn.close()

    def open(self, timeout: float) -> _Conn:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=min(timeout, 5.0))
        except OSError as exc:               # refused, unknown host, unreachable, timeout
            raise LinkLost(f"no adb server answers at {self.address} ({exc}): start one with "
                           f"`adb start-server`, or reach the phone directly with "
                           f"{option('device')} HOST:PORT.") from None
        return _Conn(sock, timeout)


@contextmanager
def _errors(who: str, what: str, timeout: float):
    """Socket failures -> LinkTimeout / LinkLost, naming who and what."""
    what = what.strip().splitlines()[0][:120] if what.strip() else what
    try:
        yield
    except TimeoutError:
        raise LinkTimeout(f"{who}: no answer within {timeout:.0f} s to {what!r}") from None
    except OSError as exc:
        raise LinkLost(f"{who}: connection lost during {what!r} ({exc}); is the adb server "
                       f"still running (`adb devices`)?") from None


# -- which device -----------------------------------------------------------------------------
def resolve_serial(serial: str | None) -> tuple[str, str]:
    """The device to use and how it was chosen, as adb chooses: the serial given, else
    $ANDROID_SERIAL, else the only device that a running adb server lists as ready (state
    "device"). AdbError when none or several could be meant."""
    if serial:
        return serial, "given"
    if os.environ.get("ANDROID_SERIAL"):
        return os.environ["ANDROID_SERIAL"], "from ANDROID_SERIAL"
    server = AdbServer(*server_address())
    hint = f"pass {option('device')} SERIAL (or HOST:PORT), or set ANDROID_SERIAL"
    if not server.running():
        raise AdbError(f"no device serial: {hint}. (No adb server answers at "
                       f"{server.address} to pick the only attached phone from; "
                       f"`adb start-server` starts one.)")
    listed = server.devices()
    ready = [d for d in listed if d.state == "device"]
    if not ready:
        seen = f"no ready device ({summary(listed)})" if listed else "no devices"
        raise AdbError(f"no device serial, and the adb server at {server.address} lists "
                       f"{seen}: {hint}; `adb devices -l` shows what adb sees.")
    if len(ready) > 1:
        raise AdbError(f"more than one device/emulator: the adb server at {server.address} "
                       f"lists {summary(ready)}; {hint} to pick one.")
    others = [d for d in listed if d.state != "device"]
    return ready[0].serial, (f"the only device the adb server at {server.address} lists as "
                             f"ready" + (f" (also listed: {summary(others)})" if others else ""))


def unlisted_usb_error(server: AdbServer, serial: str, listed: list[ListedDevice]) -> AdbError:
    """A USB serial that a running server does not list: adb-shell would fight the server for
    the USB devices it holds, so say what the server sees instead."""
    return AdbError(f"the adb server at {server.address} does not list {serial}; it sees: "
                    f"{summary(listed)}. While it runs it holds the phones on USB, so check "
                    f"the serial and the cable with `adb devices -l`; or stop it "
                    f"(`adb kill-server`) and pass {option('transport')} direct to reach the "
                    f"phone without it.")


class ServerLink(AdbLink):
    """A device reached through a running adb server."""

    def __init__(self, server: AdbServer, serial: str, timeout: float = 10.0) -> None:
        self.server, self.serial, self.timeout = server, serial, timeout
        self._version: str | None = None

    @property
    def description(self) -> str:
        """``adb server 127.0.0.1:5037 (adb 1.0.41)``; asks the server once."""
        if self._version is None:
            try:
                self._version = self.server.version()
            except AdbError:
                return f"adb server {self.server.address}"
        return f"adb server {self.server.address} (adb {self._version})"

    def connect(self) -> None:
        listed = self.server.find(self.serial)
        if listed is None or listed.state != "device":
            self._refused(listed.state if listed else f"device '{self.serial}' not found")

    def close(self) -> None:
        pass                         # nothing stays open between commands

    def shell(self, command: str, timeout: float) -> str:
        with self._guard(command, timeout):
            conn = self._open(f"shell:{command}", timeout)
            try:
                out = b"".join(iter(conn.recv, b""))
            finally:
                conn.close()
        return out.decode("utf-8", "replace")

    def push(self, local: Path, remote: str, mode: int, timeout: float) -> None:
        """SEND "path,mode", DATA chunks, DONE with the file's mtime (as `adb push` does)."""
        local = Path(local)
        spec = f"{remote},{mode if mode & 0o170000 else mode | 0o100000}".encode()
        what = f"pushing {local.name} to {remote}"
        with open(local, "rb") as f, self._guard(f"push {local.name}", timeout):
            conn = self._open("sync:", timeout)
            try:
                try:
                    conn.send(SYNC.pack(b"SEND", len(spec)) + spec)
                    while chunk := f.read(SYNC_DATA_MAX):
                        conn.send(SYNC.pack(b"DATA", len(chunk)) + chunk)
                    conn.send(SYNC.pack(b"DONE", int(os.fstat(f.fileno()).st_mtime)))
                except (BrokenPipeError, ConnectionResetError):
                    pass             # adbd may refuse early and hang up: its FAIL says why
                if (kind := self._sync_reply(conn, what)[0]) != b"OKAY":
                    raise ConnectionResetError(f"unexpected sync reply {kind!r}")
                conn.send(SYNC.pack(b"QUIT", 0))
            finally:
                conn.close()

    def pull(self, remote: str, local: Path, timeout: float) -> None:
        local, path = Path(local), remote.encode()
        with open(local, "wb") as f:
            try:
                with self._guard(f"pull {remote}", timeout):
                    conn = self._open("sync:", timeout)
                    try:
                        conn.send(SYNC.pack(b"RECV", len(path)) + path)
                        while (reply := self._sync_reply(conn, f"pulling {remote}"))[0] == b"DATA":
                            _write(f, conn.exact(reply[1]), local)
                        if reply[0] != b"DONE":
                            raise ConnectionResetError(f"unexpected sync reply {reply[0]!r}")
                        conn.send(SYNC.pack(b"QUIT", 0))
                    finally:
                        conn.close()
            except BaseException:
                f.close()
                local.unlink(missing_ok=True)      # no half-written file left behind
                raise

    def _sync_reply(self, conn: _Conn, what: str) -> tuple[bytes, int]:
        """The next sync reply's id and value; FAIL -> AdbError with the device's reason."""
        kind, value = SYNC.unpack(conn.exact(SYNC.size))
        if kind == b"FAIL":
            raise AdbError(f"{self.serial}: {what} failed: "
                           f"{conn.exact(value).decode('utf-8', 'replace')}")
        return kind, value

    def _guard(self, what: str, timeout: float):
        return _errors(f"{self.serial} (through the adb server at {self.server.address})",
                       what, timeout)

    def _open(self, service: str, timeout: float) -> _Conn:
        conn = self.server.open(timeout)
        try:
            failed = conn.request(f"host:transport:{self.serial}")
            if failed is not None:
                self._refused(failed)
            failed = conn.request(service)
            if failed is not None:
                raise AdbError(f"{self.serial} refused {service[:80]!r}: {failed}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _refused(self, why: str) -> None:
        """The server's reason for not reaching the device -> an error that says what to do."""
        where = f"the adb server at {self.server.address}"
        if "unauthorized" in why:
            raise AdbError(f"{unauthorized_message(self.serial)} ({where} lists it as "
                           f"unauthorized)")
        if "not found" in why:
            raise AdbError(f"{where} does not list {self.serial}; it sees: "
                           f"{summary(self.server.devices())}. Check the serial with `adb "
                           f"devices -l`; for a phone on the network run `adb connect "
                           f"HOST:PORT` or pass {option('device')} HOST:PORT.")
        if "no permissions" in why:
            raise AdbError(f"{where} lists {self.serial} with no permissions: the server may "
                           f"not open the phone's USB device ({why}). Install udev rules for "
                           f"Android phones (Debian: `apt install "
                           f"android-sdk-platform-tools-common`), join the plugdev group, "
                           f"re-plug the phone, then restart the server (`adb kill-server; adb "
                           f"start-server`).")
        if any(word in why for word in ("offline", "connecting", "authorizing")):
            raise LinkLost(f"{self.serial} is {why.removeprefix('device ')} for {where}: "
                           f"check the cable or network, then `adb reconnect`; it may just "
                           f"be booting.")
        raise AdbError(f"{where} cannot reach {self.serial}: {why}")


def _write(f, data: bytes, local: Path) -> None:
    """A local write error is ours, not the connection's: keep it out of LinkLost."""
    try:
        f.write(data)
    except OSError as exc:
        raise AdbError(f"cannot write {local}: {exc}") from None
