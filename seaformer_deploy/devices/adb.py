"""A phone over adb: through a running adb server, or the device protocol spoken directly.

Transport (``adb_link``): ``auto`` uses the adb server (``adb devices``; port 5037 or
``ANDROID_ADB_SERVER_PORT``) when it runs, so a phone already shown there needs nothing else;
a USB serial the server does not list is refused (the server holds the USB devices), a
``HOST:PORT`` it does not list is reached directly. With no server, adb-shell talks to the
device itself (``HOST:PORT`` over TCP, USB with adb-shell's USB extra). The serial is the one
given, else ``ANDROID_SERIAL``, else the only device the server lists as ready. The host key is the
standard one, ``$ANDROID_USER_HOME/adbkey`` or ``~/.android/adbkey`` (created with mode 0600
when absent), so a phone that already trusts this computer's adb trusts us too.

Files: everything staged lives under ``/data/local/tmp/seaformer-deploy/``: content-addressed
files in ``cas/<sha256>/<name>`` (pushed to a temporary name and renamed, skipped when already
there), one scratch folder per session (plans, results, outputs) removed at cleanup, and the
``lock`` folder that keeps two benches off one phone.

Every value that enters a device shell command is quoted with ``shlex.quote``.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import tempfile
import time
import uuid
from pathlib import Path

from ..errors import option
from ..export.manifest import sha256_path
from .adb_link import AdbError, AdbLink, AdbShellLink, LinkLost, LinkTimeout, key_path
from .base import CommandResult, Device, DeviceInfo
from .probe import CoreChoice

__all__ = ["ROOT", "AdbDevice", "AdbError", "LinkLost", "LinkTimeout", "key_path"]

ROOT = "/data/local/tmp/seaformer-deploy"
LOCK = f"{ROOT}/lock"
PROPERTIES = {"model": "ro.product.model", "manufacturer": "ro.product.manufacturer",
              "soc": "ro.soc.model", "board": "ro.board.platform",
              "android": "ro.build.version.release", "sdk": "ro.build.version.sdk",
              "abi": "ro.product.cpu.abi", "os_build": "ro.build.fingerprint"}
TRANSPORTS = ("auto", "server", "direct")


def open_link(serial: str, key: Path | None, timeout: float, transport: str) -> AdbLink:
    """The link to ``serial`` for ``transport`` (see the module docstring). ``auto`` never
    falls back silently: a USB serial that a running server does not list is refused (the
    server holds the USB devices), and a HOST:PORT one goes direct with the reason recorded
    in the link's description."""
    if transport not in TRANSPORTS:
        raise AdbError(f"unknown adb transport {transport!r}; expected one of "
                       f"{', '.join(TRANSPORTS)}.")
    if transport == "direct":
        return AdbShellLink(serial, key=key, timeout=timeout)
    from .adb_link import is_tcp_serial
    from .adb_server import AdbServer, server_address, unlisted_usb_error

    server = AdbServer(*server_address())
    if not server.running():
        if transport == "server":
            raise AdbError(f"no adb server answers on {server.address}: start it with "
                           f"`adb start-server` (or use {option('transport')} direct).")
        return AdbShellLink(serial, key=key, timeout=timeout)
    listed = server.devices()
    if transport == "server" or serial in {d.serial for d in listed}:
        return server.link(serial)       # a listed state other than "device" fails on connect
    if not is_tcp_serial(serial):
        raise unlisted_usb_error(server, serial, listed)
    return AdbShellLink(serial, key=key, timeout=timeout,      # maybe just not `adb connect`ed
                        reason=f"no adb server; the server at {server.address} does not "
                               f"list {serial}")


class AdbDevice(Device):
    kind = "adb"

    def __init__(self, serial: str | None = None, key: Path | None = None,
                 timeout: float = 10.0, transport: str = "auto") -> None:
        from .adb_server import resolve_serial

        serial, self.serial_source = resolve_serial(serial)   # given, ANDROID_SERIAL, the only
        self.serial = self.name = serial                     # device the adb server lists
        self.core: int | None = None
        self.session = f"run-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._locked = False
        self.link = open_link(serial, key, timeout, transport)
        self.transport = self.link.description
        self.link.connect()

    def close(self) -> None:
        self.link.close()

    def reconnect(self, attempts: int = 6, first_delay: float = 0.5) -> str:
        """Reopen the link, backing off exponentially (0.5, 1, 2, ... s); says how it went."""
        delay, started = first_delay, time.monotonic()
        for attempt in range(1, attempts + 1):
            self.link.close()
            time.sleep(delay)
            try:
                self.link.connect()
                self.shell("true", timeout=10)
                return (f"reconnected to {self.serial} after {attempt} attempt(s), "
                        f"{time.monotonic() - started:.1f} s")
            except (LinkLost, LinkTimeout):
                delay *= 2
        raise LinkLost(f"{self.serial}: connection lost and not restored after {attempts} "
                       f"attempts over {time.monotonic() - started:.0f} s; check the cable or "
                       f"network and `adb devices`.")

    # -- commands --------------------------------------------------------------------------

    def shell(self, script: str, timeout: float | None = 60) -> CommandResult:
        """Run ``script`` in the device's sh; stdout, stderr and the exit status come back
        separately (the shell v1 stream merges them, so stderr goes through a file)."""
        marker = f"@@sfd-rc-{uuid.uuid4().hex}@@"
        err = f"/data/local/tmp/.sfd-{uuid.uuid4().hex}.err"
        wrapped = (f"(\n{script}\n) 2>{err}; rc=$?; echo; echo {marker}$rc; "
                   f"cat {err} 2>/dev/null; rm -f {err}")
        out = self.link.shell(wrapped, timeout if timeout is not None else 24 * 3600)
        head, found, tail = out.rpartition(marker)
        if not found:
            raise LinkLost(f"{self.serial}: the shell output lost its exit status (connection "
                           f"cut?): {out[-300:]!r}")
        code, _, stderr = tail.partition("\n")
        return CommandResult(int(code.strip() or 1), head[:-1] if head.endswith("\n") else head,
                             stderr)

    def run(self, argv: list[str], timeout: float | None, cwd: str | None = None,
            env: dict[str, str] | None = None) -> CommandResult:
        """Pinned with taskset to the chosen core (the runner pins itself too); ``env`` is
        set for the program, not for taskset."""
        command = " ".join(shlex.quote(a) for a in argv)
        if env:
            assigned = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())
                                if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k))
            command = f"env {assigned} {command}"
        if self.core is not None and self.core >= 0:
            command = f"taskset {1 << self.core:x} {command}"
        if cwd:
            command = f"cd {shlex.quote(cwd)} && {command}"
        return self.shell(command, timeout)

    def kill_session(self) -> None:
        """Kill what this session still runs on the device (a runner left behind by a lost
        connection, a timeout or Ctrl-C). The bracket keeps pkill from matching its own shell."""
        pattern = f"[{self.session[0]}]{self.session[1:]}"
        # Not `pkill -9 -f`: toybox's pkill also takes "-9" as a pattern and kills the shell
        # running it. pgrep + kill mean the same on toybox, busybox and procps.
        self.shell(f"kill -9 $(pgrep -f {shlex.quote(pattern)}) 2>/dev/null; true", timeout=30)

    def choose_core(self, info: DeviceInfo, requested: int | None = None) -> CoreChoice:
        choice = super().choose_core(info, requested)
        self.core = choice.core
        return choice

    # -- one bench at a time ---------------------------------------------------------------

    def acquire_lock(self, wait: float = 0.0) -> None:
        """Take the device's bench lock (an atomic mkdir), waiting up to ``wait`` seconds."""
        owner = (f"host={socket.gethostname()} pid={os.getpid()} session={self.session} "
                 f"since={time.strftime('%Y-%m-%dT%H:%M:%S%z')}")
        deadline = time.monotonic() + wait
        while True:
            took = self.shell(f"mkdir -p {ROOT} && mkdir {LOCK} && echo {shlex.quote(owner)} "
                              f"> {LOCK}/owner")
            if took.returncode == 0:
                self._locked = True
                return
            holder = self.shell(f"cat {LOCK}/owner").stdout.strip() or "unknown"
            if self._stale(holder):
                self.shell(f"rm -rf {LOCK}")
                continue
            if time.monotonic() >= deadline:
                raise AdbError(
                    f"{self.serial} is busy: another bench holds {LOCK} ({holder}). Wait for "
                    f"it ({option('wait_seconds')} SECONDS waits), or, if that run is gone, "
                    f"remove the lock with `adb -s {self.serial} shell rm -r {LOCK}`.")
            time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))

    def _stale(self, holder: str) -> bool:
        """A lock left by a dead process of this computer is taken over."""
        fields = dict(f.split("=", 1) for f in holder.split() if "=" in f)
        if fields.get("host") != socket.gethostname() or not fields.get("pid", "").isdigit():
            return False
        try:
            os.kill(int(fields["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def release_lock(self) -> None:
        if self._locked:
            self.shell(f"grep -q {shlex.quote('session=' + self.session)} {LOCK}/owner && "
                       f"rm -rf {LOCK}; true")
            self._locked = False

    # -- files -----------------------------------------------------------------------------

    def stage(self, files: list[Path]) -> dict[Path, str]:
        where = {Path(f): f"{ROOT}/cas/{sha256_path(Path(f))}/{Path(f).name}" for f in files}
        present = self._existing(list(where.values()))
        missing = {local: remote for local, remote in where.items() if remote not in present}
        self._check_space(sum(local.stat().st_size for local in missing))
        for local, remote in missing.items():
            self._push(local, remote)
        return where

    def _existing(self, paths: list[str]) -> set[str]:
        """Of the content-addressed ``paths``, those present on the device with the content
        their name promises (hashed there, so a damaged cached file is pushed again)."""
        if not paths:
            return set()
        quoted = " ".join(shlex.quote(p) for p in paths)
        listed = self.shell(f"for f in {quoted}; do [ -f \"$f\" ] && sha256sum \"$f\"; done; "
                            f"true")
        found = set()
        for line in listed.stdout.splitlines():
            digest, _, path = line.partition("  ")
            if path and f"/cas/{digest}/" in path:
                found.add(path)
        return found

    def free_bytes(self, folder: str = ROOT) -> int | None:
        """Free space under ``folder`` (created when it is our root), from ``df -k``; None if
        df says something odd."""
        if folder == ROOT:
            self.shell(f"mkdir -p {ROOT}")
        df = self.shell(f"df -k {shlex.quote(folder)}")
        try:
            return int(df.stdout.strip().splitlines()[-1].split()[3]) * 1024
        except (IndexError, ValueError):
            return None

    def _check_space(self, needed: int) -> None:
        if needed == 0:
            return
        available = self.free_bytes()
        if available is not None and available < needed * 1.05:
            raise AdbError(f"{self.serial}: {available / 2**20:.0f} MB free under {ROOT}, "
                           f"{needed / 2**20:.0f} MB to push; free space on the phone (or "
                           f"remove old files with `seaformer-deploy bench --cleanup` or "
                           f"`adb shell rm -r {ROOT}/cas`).")

    def _push(self, local: Path, remote: str) -> None:
        folder = remote.rsplit("/", 1)[0]
        part = f"{remote}.part-{uuid.uuid4().hex[:8]}"
        made = self.shell(f"mkdir -p {shlex.quote(folder)}")
        if made.returncode != 0:
            raise AdbError(f"{self.serial}: cannot create {folder}: {made.stderr.strip()}")
        mode = 0o100755 if os.access(local, os.X_OK) else 0o100644
        try:
            self.link.push(local, part, mode, timeout=max(60.0, local.stat().st_size / 2e6))
        except LinkLost:
            raise
        except AdbError:
            self.shell(f"rm -f {shlex.quote(part)}")
            raise
        moved = self.shell(f"mv -f {shlex.quote(part)} {shlex.quote(remote)}")
        if moved.returncode != 0:
            raise AdbError(f"{self.serial}: cannot place {remote}: {moved.stderr.strip()}")

    def fetch(self, device_path: str, local: Path) -> None:
        self.link.pull(device_path, Path(local), timeout=60)

    def workdir(self) -> str:
        return f"{ROOT}/{self.session}"

    def write_text(self, device_path: str, text: str) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(text)
        try:
            self.shell(f"mkdir -p {shlex.quote(device_path.rsplit('/', 1)[0])}")
            self.link.push(Path(f.name), device_path, 0o100644, timeout=60)
        finally:
            os.unlink(f.name)

    def read_text(self, device_path: str) -> str:
        result = self.shell(f"cat {shlex.quote(device_path)}")
        if result.returncode != 0:
            raise AdbError(f"{self.serial}: cannot read {device_path}: {result.stderr.strip()}")
        return result.stdout

    def cleanup(self) -> None:
        self.shell(f"rm -rf {shlex.quote(self.workdir())}")

    def remove_cache(self) -> None:
        """``--cleanup``: also drop the content-addressed files (runner, artifacts, inputs)."""
        self.shell(f"rm -rf {ROOT}/cas")

    def properties(self) -> dict[str, str]:
        script = "; ".join(f"echo {key}=$(getprop {prop})" for key, prop in PROPERTIES.items())
        props = dict(line.split("=", 1) for line in self.shell(script).stdout.splitlines()
                     if "=" in line)
        return {k: v for k, v in props.items() if v}
