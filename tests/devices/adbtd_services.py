"""Services behind OPEN: shell (protocol v1 and v2) and sync (file transfer).

Service names, as adbd parses them (AOSP SERVICES.TXT, ``services.cpp``, ``shell_service``):

* ``shell:CMD`` / ``exec:CMD`` -- v1: raw bytes, stdout and stderr merged, stream closes at
  exit, no exit code. (adbd uses a raw pipe, not a PTY, when a command is given.)
* ``shell,v2,raw:CMD`` / ``shell,v2,pty,TERM=..:CMD`` -- v2: packets of
  ``id:u8 length:u32le data``; ids stdin=0, stdout=1, stderr=2, exit=3 (one byte, the exit
  status, 128+signal when killed), close-stdin=4, window-size=5. A PTY request is served
  as raw (documented gap).
* ``sync:`` -- requests ``id:4 length:u32le`` + payload (AOSP SYNC.TXT); see ``sync_service``.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import stat
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .adbtd_streams import Stream, StreamClosed
from .adbtd_wire import ConnectionDropped

if TYPE_CHECKING:
    from .adb_testdevice import AdbTestDevice

ID_STDIN, ID_STDOUT, ID_STDERR, ID_EXIT, ID_CLOSE_STDIN, ID_WINDOW = 0, 1, 2, 3, 4, 5
SYNC_DATA_MAX = 64 * 1024
SYNC_PATH_MAX = 1024
Handler = Callable[[Stream, "AdbTestDevice"], None]
GONE = (StreamClosed, ConnectionDropped, BrokenPipeError, ConnectionResetError)


def lookup(service: str) -> Handler | None:
    """The handler for a service string, or None (adbd then answers CLSE)."""
    name, _, command = service.partition(":")
    if name in ("shell", "exec"):
        return lambda s, d: shell_v1(s, d, command)
    if name.startswith("shell,"):
        options = name.split(",")[1:]
        if "v2" in options:
            return lambda s, d: shell_v2(s, d, command)
        return lambda s, d: shell_v1(s, d, command)
    if service == "sync:":
        return sync_service
    return None


# -- shell --------------------------------------------------------------------------------
LOG_BYTES = 2048          # how much stderr / output a command log record keeps


@dataclass(frozen=True)
class CommandRecord:
    """One shell command the device ran (``AdbTestDevice.command_log()``)."""

    command: str          # the device text, as the host sent it (before the sandbox rewrite)
    service: str          # "shell" (v1: stdout and stderr merged, as adbd does) or "shell,v2"
    status: int | None    # exit status, 128+N when killed by signal N; None: hung
    stderr: str           # v2: the first 2 KB of stderr; v1: "" (stderr is in the output)
    output: str           # the last 2 KB of what went to the host on stdout (v1: + stderr)

    def text(self) -> str:
        """Everything the log kept: where to look for error messages."""
        return self.stderr + self.output


class Command:
    """One device command: its process (or a simulated hang), its fault rules, and what the
    command log keeps of it (``CommandRecord``)."""

    def __init__(self, device: AdbTestDevice, text: str, service: str) -> None:
        self.device, self.text, self.service = device, text, service
        self.hung = device.faults.hangs(text)
        self.proc: subprocess.Popen | None = None
        self.stderr_head = b""
        self.output_tail = b""
        if self.hung:
            device.record_command(CommandRecord(text, service, None, "", ""))
            return
        self.proc = device.spawn(text or "exec /bin/sh", merge_stderr=service != "shell,v2")
        rule = device.faults.kill_rule(text)
        if rule:
            threading.Thread(target=self._kill_later, args=(rule,), daemon=True).start()

    def saw_output(self, data: bytes) -> None:
        self.output_tail = (self.output_tail + data)[-LOG_BYTES:]

    def saw_stderr(self, data: bytes) -> None:
        if len(self.stderr_head) < LOG_BYTES:
            self.stderr_head = (self.stderr_head + data)[:LOG_BYTES]

    def finished(self) -> int:
        """Wait for the exit, release the pipes, log the command; the exit status."""
        status = self.exit_status()
        self.close_pipes()
        self.device.record_command(CommandRecord(
            self.text, self.service, status, self.stderr_head.decode("utf-8", "replace"),
            self.output_tail.decode("utf-8", "replace")))
        return status

    def _kill_later(self, rule) -> None:
        while rule.when is not None and not rule.when():
            if self.proc.poll() is not None:
                return
            time.sleep(0.02)
        time.sleep(rule.after_s)
        if not rule.leaf:
            return self.signal(rule.signal)
        for pid in _leaves(self.proc.pid):
            try:
                os.kill(pid, rule.signal)
            except ProcessLookupError:
                pass

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def hangup(self) -> None:
        """The host went away: adbd sends SIGHUP to the shell; follow up with SIGKILL."""
        self.signal(signal.SIGHUP)
        if self.proc:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)

    def exit_status(self) -> int:
        code = self.proc.wait()
        return 128 - code if code < 0 else code        # killed by signal N -> 128+N

    def close_pipes(self) -> None:
        """Release the process's pipes once it has exited: the stdin thread may wait on the
        host stream long after that, and a suite runs thousands of commands."""
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()


def _leaves(root: int) -> list[int]:
    """Descendants of ``root`` without children of their own, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat_line = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat_line.rpartition(")")[2].split()[1])
    family, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - family
        family |= frontier
    return [pid for pid in family if pid not in parents.values()]


def _pump_output(pipe, emit: Callable[[bytes], None], unmap,
                 seen: Callable[[bytes], None]) -> None:
    """Copy a process pipe to the stream, reversing the sandbox path rewrite; ``seen`` gets
    the same bytes, for the command log."""
    try:
        while chunk := os.read(pipe.fileno(), 65536):
            if out := unmap.feed(chunk):
                seen(out)
                emit(out)
        if out := unmap.flush():
            seen(out)
            emit(out)
    except GONE:
        pass


def _write_stdin(cmd: Command, data: bytes) -> None:
    try:
        cmd.proc.stdin.write(data)
        cmd.proc.stdin.flush()
    except (BrokenPipeError, ValueError, OSError):
        pass


def _hang(stream: Stream) -> None:
    """A hung command: no output, no exit, until the host gives up on the stream."""
    while stream.read() is not None:
        pass


def shell_v1(stream: Stream, device: AdbTestDevice, text: str) -> None:
    cmd = Command(device, text, "shell")
    if cmd.hung:
        return _hang(stream)

    def feed_stdin() -> None:
        while (data := stream.read()) is not None:
            _write_stdin(cmd, data)
        cmd.hangup()

    threading.Thread(target=feed_stdin, daemon=True).start()
    _pump_output(cmd.proc.stdout, stream.write, device.sandbox.unmapper(), cmd.saw_output)
    cmd.finished()


def _v2_packet(kind: int, data: bytes) -> bytes:
    return struct.pack("<BI", kind, len(data)) + data


def shell_v2(stream: Stream, device: AdbTestDevice, text: str) -> None:
    cmd = Command(device, text, "shell,v2")
    if cmd.hung:
        return _hang(stream)
    limit = stream.conn.max_payload - 5

    def emitter(kind: int) -> Callable[[bytes], None]:
        def emit(data: bytes) -> None:
            for i in range(0, len(data), limit):
                stream.write(_v2_packet(kind, data[i:i + limit]))
        return emit

    threading.Thread(target=_v2_stdin, args=(stream, cmd), daemon=True).start()
    pumps = [threading.Thread(target=_pump_output, daemon=True,
                              args=(pipe, emitter(kind), device.sandbox.unmapper(), seen))
             for pipe, kind, seen in ((cmd.proc.stdout, ID_STDOUT, cmd.saw_output),
                                      (cmd.proc.stderr, ID_STDERR, cmd.saw_stderr))]
    for pump in pumps:
        pump.start()
    for pump in pumps:
        pump.join()
    status = cmd.finished()
    try:
        stream.write(_v2_packet(ID_EXIT, bytes([status & 0xFF])))
    except GONE:
        pass


def _v2_stdin(stream: Stream, cmd: Command) -> None:
    """Host -> device v2 packets: stdin data, close-stdin; window size changes are ignored."""
    while (header := stream.read_exact(5)) is not None:
        kind, length = struct.unpack("<BI", header)
        data = stream.read_exact(length) if length else b""
        if data is None:
            break
        if kind == ID_STDIN:
            _write_stdin(cmd, data)
        elif kind == ID_CLOSE_STDIN:
            cmd.proc.stdin.close()
    cmd.hangup()


# -- sync -----------------------------------------------------------------------------------
def _id(name: bytes) -> int:
    return int.from_bytes(name, "little")


ID_STAT, ID_STA2, ID_LST2 = _id(b"STAT"), _id(b"STA2"), _id(b"LST2")
ID_LIST, ID_LIS2, ID_DENT, ID_DNT2 = _id(b"LIST"), _id(b"LIS2"), _id(b"DENT"), _id(b"DNT2")
ID_SEND, ID_RECV, ID_DATA, ID_DONE = _id(b"SEND"), _id(b"RECV"), _id(b"DATA"), _id(b"DONE")
ID_OKAY, ID_FAIL, ID_QUIT = _id(b"OKAY"), _id(b"FAIL"), _id(b"QUIT")
REQ = struct.Struct("<II")
STAT_V1 = struct.Struct("<IIII")                       # id mode size mtime
STAT_V2 = struct.Struct("<IIQQIIIIQqqq")               # id error dev ino mode nlink uid gid
                                                       # size atime mtime ctime


class SyncFail(Exception):
    """Ends the sync session with FAIL <message>, as adbd's SendSyncFail does."""


def sync_service(stream: Stream, device: AdbTestDevice) -> None:
    """adbd runs as the shell user: so do its file operations (this thread only)."""
    with device.sandbox.as_shell_user():
        _sync_session(stream, device)


def _sync_session(stream: Stream, device: AdbTestDevice) -> None:
    handlers = {ID_STAT: _sync_stat_v1, ID_STA2: _sync_stat_v2, ID_LST2: _sync_stat_v2,
                ID_LIST: _sync_list, ID_LIS2: _sync_list, ID_SEND: _sync_send,
                ID_RECV: _sync_recv}
    while (header := stream.read_exact(REQ.size)) is not None:
        request, length = REQ.unpack(header)
        if request == ID_QUIT:
            return
        handler = handlers.get(request)
        try:
            if handler is None:
                raise SyncFail(f"unknown command {header[:4]!r}")
            if length > SYNC_PATH_MAX:
                raise SyncFail("path too long")
            path = stream.read_exact(length)
            if path is None:
                return
            handler(stream, device, request, path.decode("utf-8", "surrogateescape"))
        except SyncFail as fail:
            message = str(fail).encode()
            stream.write(REQ.pack(ID_FAIL, len(message)) + message)
            return                                      # adbd ends the session after FAIL


def _fail_errno(what: str, err: OSError) -> SyncFail:
    return SyncFail(f"{what}: {os.strerror(err.errno or errno.EIO)}")


def _sync_stat_v1(stream: Stream, device: AdbTestDevice, request: int, path: str) -> None:
    try:
        st = os.lstat(device.sandbox.host_path(path))
        reply = STAT_V1.pack(ID_STAT, st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))
    except OSError:
        reply = STAT_V1.pack(ID_STAT, 0, 0, 0)        # v1 reports errors as all zeros
    stream.write(reply)


def _stat_v2_fields(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
            int(st.st_atime), int(st.st_mtime), int(st.st_ctime))


def _sync_stat_v2(stream: Stream, device: AdbTestDevice, request: int, path: str) -> None:
    host = device.sandbox.host_path(path)
    try:
        st = os.lstat(host) if request == ID_LST2 else os.stat(host)
        reply = STAT_V2.pack(request, 0, *_stat_v2_fields(st))
    except OSError as err:
        reply = STAT_V2.pack(request, err.errno, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    stream.write(reply)


def _sync_list(stream: Stream, device: AdbTestDevice, request: int, path: str) -> None:
    """DENT/DNT2 per entry (readdir order, with . and ..), then DONE."""
    host = device.sandbox.host_path(path)
    v2 = request == ID_LIS2
    try:
        names = [".", ".."] + sorted(os.listdir(host))
    except OSError:
        names = []                                      # adbd: empty listing, just DONE
    out = []
    for name in names:
        try:
            st = os.lstat(os.path.join(host, name))
        except OSError:
            continue
        raw = name.encode("utf-8", "surrogateescape")
        if v2:
            out.append(STAT_V2.pack(ID_DNT2, 0, *_stat_v2_fields(st)) + struct.pack("<I", len(raw)))
        else:
            out.append(struct.pack("<5I", ID_DENT, st.st_mode, st.st_size & 0xFFFFFFFF,
                                   int(st.st_mtime), len(raw)))
        out.append(raw)
    done = ((STAT_V2.pack(ID_DONE, 0, *[0] * 10) + b"\0" * 4) if v2
            else struct.pack("<5I", ID_DONE, 0, 0, 0, 0))
    stream.write(b"".join(out) + done)


def _sync_send(stream: Stream, device: AdbTestDevice, request: int, spec: str) -> None:
    """SEND "path,mode", DATA chunks, DONE(mtime) -> OKAY, or FAIL (e.g. storage full)."""
    path, _, mode_text = spec.rpartition(",")
    if not path or not mode_text.isdigit():
        path, mode_text = spec, str(0o100644)
    mode = int(mode_text)
    host = device.sandbox.host_path(path)
    data, mtime = _receive_file(stream)
    if data is None:
        return
    free = device.faults.free_bytes
    if free is not None and len(data) > free:
        raise SyncFail(f"write failed: {os.strerror(errno.ENOSPC)}")
    try:
        host.parent.mkdir(parents=True, exist_ok=True)     # adbd's secure_mkdirs
        if stat.S_ISLNK(mode):
            if host.is_symlink() or host.exists():
                host.unlink()
            os.symlink(data.decode(), host)
        else:
            _write_file(host, data, mode, mtime)
    except OSError as err:
        raise _fail_errno("write failed", err) from err
    stream.write(REQ.pack(ID_OKAY, 0))


def _receive_file(stream: Stream) -> tuple[bytes | None, int]:
    chunks = []
    while (header := stream.read_exact(REQ.size)) is not None:
        kind, value = REQ.unpack(header)
        if kind == ID_DONE:
            return b"".join(chunks), value
        if kind != ID_DATA:
            raise SyncFail("invalid data message")
        if value > SYNC_DATA_MAX:
            raise SyncFail("oversize data message")
        chunk = stream.read_exact(value)
        if chunk is None:
            break
        chunks.append(chunk)
    return None, 0


def _write_file(host, data: bytes, mode: int, mtime: int) -> None:
    if host.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory")
    with open(host, "wb") as f:
        f.write(data)
    os.chmod(host, stat.S_IMODE(mode) or 0o644)
    if mtime:
        os.utime(host, (mtime, mtime))


def _sync_recv(stream: Stream, device: AdbTestDevice, request: int, path: str) -> None:
    """RECV path -> DATA chunks of at most 64 KiB, then DONE; FAIL if unreadable."""
    try:
        with open(device.sandbox.host_path(path), "rb") as f:
            while chunk := f.read(SYNC_DATA_MAX):
                stream.write(REQ.pack(ID_DATA, len(chunk)) + chunk)
    except OSError as err:
        raise _fail_errno("open failed", err) from err
    stream.write(REQ.pack(ID_DONE, 0))


def matches(pattern: str | None, text: str) -> bool:
    return pattern is not None and re.search(pattern, text) is not None
