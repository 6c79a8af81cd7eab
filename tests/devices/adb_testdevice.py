"""A protocol-faithful ADB *device* (the adbd side) over TCP, for tests.

Both adb-shell's ``AdbDeviceTcp`` and the real ``adb`` client (``adb connect 127.0.0.1:PORT``)
can talk to it. It speaks the ADB transport protocol (``adbtd_wire``), authenticates hosts
with RSA keys like adbd (``adbtd_keys``), serves shell v1/v2 and sync (``adbtd_services``)
and runs commands in a sandbox that behaves like a stock, unrooted Android phone
(``adbtd_sandbox``): mksh and toybox, uid 2000, no glibc, the kernel's exec rules, aarch64
programs under qemu, taskset masks really applied. The default phone is a Snapdragon 865
(``sd865``); ``PROFILES`` (``adbtd_profiles``) names the others.

    with AdbTestDevice(authorized_keys=[pub]) as dev:
        AdbDeviceTcp("127.0.0.1", dev.port).connect(rsa_keys=[signer])
    AdbTestDevice(profile=PROFILES["emulator-x86_64"](), authorized_keys=[pub])

Every shell command is logged (``command_log()``: ``CommandRecord`` with the device text, exit
status, stderr and output), so a test can check that nothing the product ran failed with
"not found", "Unknown option" or "Permission denied".

Handshake, as adbd does it: host CNXN(version, maxdata, "host::...") -> the device negotiates
min(versions) and min(max payloads), then sends AUTH TOKEN (20 random bytes). AUTH SIGNATURE
that verifies against an authorized key -> CNXN(version, max payload, banner); a wrong one ->
a fresh TOKEN; AUTH RSAPUBLICKEY -> accepted only if ``accept_new_keys`` (the user tapping
"Allow"), otherwise no answer, so the host shows the device as ``unauthorized``.

Fault hooks live on ``device.faults`` (see ``Faults``).

Known gaps (not needed by our clients): no TLS (STLS) or pairing, no ``delayed_ack`` windows,
no sendrecv_v2/abb/framebuffer/reverse/forward/tcpip services; PTY shell requests are served
as raw pipes. How the sandbox still differs from a phone (device paths mapped by a rewrite of
the command text, so ``ls /`` shows the host root; no SELinux, no bionic, qemu, ...) is listed
in ``adbtd_sandbox``.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import adbtd_services as services
from .adbtd_keys import decode_android_pubkey, same_key, verify_token
from .adbtd_sandbox import PROFILES, Profile, Sandbox, sd865  # noqa: F401  (PROFILES re-exported)
from .adbtd_services import CommandRecord
from .adbtd_streams import Stream
from .adbtd_wire import (
    A_AUTH,
    A_CLSE,
    A_CNXN,
    A_OKAY,
    A_OPEN,
    A_VERSION,
    A_VERSION_MIN,
    A_WRTE,
    AUTH_RSAPUBLICKEY,
    AUTH_SIGNATURE,
    AUTH_TOKEN,
    MAX_PAYLOAD,
    TOKEN_SIZE,
    ConnectionDropped,
    Packet,
    ProtocolError,
    pack,
    read_packet,
)

log = logging.getLogger(__name__)

# What a current adbd advertises, minus what this device does not implement (abb, apex,
# sendrecv_v2*, delayed_ack): hosts then fall back to what is here.
FEATURES = ("shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir",
            "fixed_push_symlink_timestamp")


@dataclass
class KillRule:
    pattern: str                 # regex searched in the device command text
    signal: int = signal.SIGKILL
    after_s: float = 0.0
    when: Callable[[], bool] | None = None   # polled; the delay starts once it is true
    once: bool = False           # forget the rule after it fired
    leaf: bool = False           # signal only the program the command's shells run (a crash,
                                 # the OOM killer), not the whole process group


@dataclass
class Faults:
    """Failure injection, all off by default; change them at any time.

    * ``keep_unauthorized``: reject every signature and public key (device stays
      ``unauthorized``).
    * ``free_bytes``: free space on /data. ``df`` reports it and a SEND of a larger file
      fails with ``FAIL write failed: No space left on device`` (``storage_full()`` sets 0).
    * ``hang_commands``: regexes; a matching shell command produces nothing and never exits
      (until the host closes the stream).
    * ``kill_commands``: ``KillRule``s; a matching command gets the signal after ``after_s``
      (counted from when ``when()`` first holds, if given; shell v2 then reports exit status
      128+signal). ``SIGSTOP`` makes a genuinely hung process.
    * ``drop_on_open``: regex; the next OPEN of a matching service (e.g. ``"^sync:"``) cuts the
      TCP connection instead of answering. One-shot.
    * ``drop_after_bytes(n)``: the device cuts the connection after sending ``n`` more bytes
      (counted over all connections; the packet crossing the limit is truncated). One-shot.
    """

    keep_unauthorized: bool = False
    free_bytes: int | None = None
    hang_commands: list[str] = field(default_factory=list)
    kill_commands: list[KillRule] = field(default_factory=list)
    drop_on_open: str | None = None
    _byte_budget: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def storage_full(self) -> None:
        self.free_bytes = 0

    def drop_after_bytes(self, n: int) -> None:
        with self._lock:
            self._byte_budget = n

    def take_byte_budget(self, size: int) -> int | None:
        """How many of ``size`` bytes may still go out before the cut, or None: no cut."""
        with self._lock:
            if self._byte_budget is None or size < self._byte_budget:
                if self._byte_budget is not None:
                    self._byte_budget -= size
                return None
            allowed, self._byte_budget = self._byte_budget, None
            return allowed

    def take_drop_on_open(self, service: str) -> bool:
        with self._lock:
            if services.matches(self.drop_on_open, service):
                self.drop_on_open = None
                return True
            return False

    def hangs(self, command: str) -> bool:
        return any(re.search(p, command) for p in self.hang_commands)

    def kill_rule(self, command: str) -> KillRule | None:
        rule = next((r for r in self.kill_commands if re.search(r.pattern, command)), None)
        if rule and rule.once:
            self.kill_commands.remove(rule)
        return rule


class Connection:
    """One host connection: the reader loop (this thread) and the stream table."""

    def __init__(self, device: AdbTestDevice, sock: socket.socket) -> None:
        self.device, self.sock = device, sock
        self.version = A_VERSION_MIN          # until CNXN negotiates (checksums are on)
        self.max_payload = 4096               # until CNXN negotiates
        self.online = False
        self.dead = False
        self.host_banner = b""
        self.token: bytes | None = None
        self.streams: dict[int, Stream] = {}
        self._next_id = 0
        self._lock = threading.Lock()

    # -- sending ------------------------------------------------------------------------
    def send(self, packet: Packet) -> None:
        raw = pack(packet, self.version)
        with self._lock:
            if self.dead:
                raise ConnectionDropped("connection closed")
            cut = self.device.faults.take_byte_budget(len(raw))
            try:
                self.sock.sendall(raw if cut is None else raw[:cut])
            except OSError as err:
                self._close_socket()
                raise ConnectionDropped(str(err)) from err
            if cut is not None:
                self._close_socket()
                raise ConnectionDropped("fault: dropped after byte budget")

    def _close_socket(self) -> None:
        self.dead = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def drop(self) -> None:
        with self._lock:
            self._close_socket()

    # -- receiving ----------------------------------------------------------------------
    def serve(self) -> None:
        try:
            while not self.dead:
                packet = read_packet(self.sock, self.version)
                self.handle(packet)
        except (ConnectionDropped, ProtocolError, OSError) as err:
            log.debug("connection ends: %s", err)
        finally:
            self.drop()
            for stream in list(self.streams.values()):
                stream.on_peer_close()

    def handle(self, p: Packet) -> None:
        if p.command == A_CNXN:
            self._on_cnxn(p)
        elif p.command == A_AUTH:
            self._on_auth(p)
        elif not self.online:
            return                            # adbd ignores stream traffic before auth
        elif p.command == A_OPEN:
            self._on_open(p)
        else:
            self._on_stream_packet(p)

    def _on_cnxn(self, p: Packet) -> None:
        for stream in list(self.streams.values()):   # a new CNXN restarts the transport
            stream.on_peer_close()
        self.streams.clear()
        self.version = min(p.arg0, A_VERSION)
        self.max_payload = min(p.arg1, MAX_PAYLOAD)
        self.host_banner = p.data
        self.online = False
        if self.device.require_auth:
            self._send_token()
        else:
            self._go_online()

    def _send_token(self) -> None:
        self.token = secrets.token_bytes(TOKEN_SIZE)
        self.send(Packet(A_AUTH, AUTH_TOKEN, 0, self.token))

    def _on_auth(self, p: Packet) -> None:
        if self.online or self.token is None:
            return
        if p.arg0 == AUTH_SIGNATURE:
            if self.device.check_signature(self.token, p.data):
                self._go_online()
            else:
                self._send_token()
        elif p.arg0 == AUTH_RSAPUBLICKEY and self.device.offer_key(p.data):
            self._go_online()
        # else: nobody taps "Allow" -- no answer, the host keeps the device unauthorized

    def _go_online(self) -> None:
        self.online = True
        self.send(Packet(A_CNXN, self.version, self.max_payload, self.device.banner()))

    def _on_open(self, p: Packet) -> None:
        service = p.data.rstrip(b"\0").decode("utf-8", "replace")
        if self.device.faults.take_drop_on_open(service):
            self.drop()
            return
        handler = services.lookup(service)
        if handler is None or p.arg0 == 0:
            self.send(Packet(A_CLSE, 0, p.arg0))
            return
        with self._lock:
            self._next_id += 1
            stream = Stream(self, self._next_id, p.arg0, service)
            self.streams[stream.local_id] = stream
        self.send(Packet(A_OKAY, stream.local_id, stream.remote_id))
        threading.Thread(target=self._run_service, args=(handler, stream), daemon=True,
                         name=f"adbtd-{service[:30]}").start()

    def _run_service(self, handler, stream: Stream) -> None:
        try:
            handler(stream, self.device)
        except services.GONE:
            pass
        except Exception:                     # a bug in the test device: log, close stream
            log.exception("service %r failed", stream.service)
        finally:
            stream.close()

    def _on_stream_packet(self, p: Packet) -> None:
        stream = self.streams.get(p.arg1)
        if stream is None:
            return                            # unknown or already closed: ignored
        if p.command == A_OKAY:
            stream.on_okay()
        elif p.command == A_WRTE:
            stream.on_data(p.data)
            self.send(Packet(A_OKAY, stream.local_id, stream.remote_id))
        elif p.command == A_CLSE:
            self.forget(stream)
            stream.on_peer_close()
            self.send(Packet(A_CLSE, stream.local_id, stream.remote_id))   # adbd echoes it

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.local_id, None)


class AdbTestDevice:
    """The device server. ``start()``/``stop()`` or use it as a context manager.

    ``authorized_keys``: adbkey.pub texts (or paths to them) the device trusts.
    ``require_auth=False`` skips AUTH (like ``ro.adb.secure=0``).
    ``accept_new_keys``: AUTH RSAPUBLICKEY is accepted and remembered (user taps "Allow").
    ``state_dir``: where the sandbox lives (default: a fresh temp dir, removed on stop).
    """

    def __init__(self, *, authorized_keys=(), require_auth: bool = True,
                 accept_new_keys: bool = False, profile: Profile | None = None,
                 state_dir: str | Path | None = None) -> None:
        self.require_auth = require_auth
        self.accept_new_keys = accept_new_keys
        self.faults = Faults()
        self._keys = [self._load_key(k) for k in authorized_keys]
        self._tmp = None if state_dir else tempfile.TemporaryDirectory(prefix="adbtd-")
        self.sandbox = Sandbox(Path(state_dir or self._tmp.name), profile or sd865())
        self._listener: socket.socket | None = None
        self._connections: list[Connection] = []
        self._procs: set[subprocess.Popen] = set()
        self._commands: list[CommandRecord] = []
        self._lock = threading.Lock()
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> AdbTestDevice:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, daemon=True, name="adbtd-accept").start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener:
            listener.close()
        with self._lock:
            connections, procs = list(self._connections), list(self._procs)
        for conn in connections:
            conn.drop()
        for proc in procs:
            _kill_group(proc)
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> AdbTestDevice:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept_loop(self) -> None:
        while self._listener is not None:
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, sock)
            with self._lock:
                self._connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name="adbtd-conn").start()

    def drop_connections(self) -> int:
        """Cut every host connection now (a cable pulled); returns how many there were."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.drop()
        return len(connections)

    def _serve(self, conn: Connection) -> None:
        conn.serve()
        with self._lock:
            self._connections.remove(conn)

    # -- identity and keys -------------------------------------------------------------
    def banner(self) -> bytes:
        props = self.sandbox.profile.props
        parts = [f"{k}={props.get(k, '')}" for k in
                 ("ro.product.name", "ro.product.model", "ro.product.device")]
        return ("device::" + ";".join(parts + ["features=" + ",".join(FEATURES)])).encode()

    @staticmethod
    def _load_key(key):
        text = Path(key).read_text() if isinstance(key, Path) or (
            isinstance(key, str) and os.path.exists(key)) else key
        return decode_android_pubkey(text)

    def authorize(self, key) -> None:
        """Trust an adbkey.pub text (or a path to one)."""
        self._keys.append(self._load_key(key))

    def check_signature(self, token: bytes, signature: bytes) -> bool:
        if self.faults.keep_unauthorized:
            return False
        return any(verify_token(key, token, signature) for key in self._keys)

    def offer_key(self, data: bytes) -> bool:
        """AUTH RSAPUBLICKEY: the "Allow USB debugging?" dialog."""
        if self.faults.keep_unauthorized or not self.accept_new_keys:
            return False
        try:
            key = decode_android_pubkey(data)
        except ValueError:
            return False
        if not any(same_key(key, k) for k in self._keys):
            self._keys.append(key)
        return True

    # -- sandbox -------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return self.sandbox.root

    def host_path(self, device_path: str) -> Path:
        return self.sandbox.host_path(device_path)

    def write_file(self, device_path: str, content: str | bytes) -> Path:
        """Create or replace a device file, e.g. a sysfs value (scaling_governor)."""
        return self.sandbox.write_file(device_path, content)

    def set_prop(self, key: str, value: str) -> None:
        self.sandbox.profile.props[key] = value
        self.sandbox.write_props()

    def taskset_calls(self) -> list[str]:
        return self.sandbox.taskset_calls()

    def record_command(self, record: CommandRecord) -> None:
        with self._lock:
            self._commands.append(record)

    def command_log(self) -> list[CommandRecord]:
        """Every shell command run so far, in the order they ended (a hung one when it was
        started): what the host sent, the exit status, stderr and the output's end."""
        with self._lock:
            return list(self._commands)

    def spawn(self, command: str, merge_stderr: bool) -> subprocess.Popen:
        free = self.faults.free_bytes
        avail_kb = self.sandbox.profile.df_avail_kb if free is None else free // 1024
        proc = self.sandbox.spawn(command, avail_kb, merge_stderr)
        with self._lock:
            self._procs = {p for p in self._procs if p.poll() is None} | {proc}
        return proc


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
