"""A phone over adb, through the adb-shell library (no adb server needed).

Transport: ``HOST:PORT`` serials connect over TCP (``adb tcpip 5555`` on the phone, or an
emulator / test device); other serials are USB devices, which need adb-shell's USB extra
(``pip install adb-shell[usb]``). ``ANDROID_SERIAL`` is the default serial. The host key is the
standard one, ``$ANDROID_USER_HOME/adbkey`` or ``~/.android/adbkey`` (created with mode 0600
when absent), so a phone that already trusts this computer's adb trusts us too.

Files: everything staged lives under ``/data/local/tmp/seaformer-deploy/``: content-addressed
files in ``cas/<sha256>/<name>`` (pushed to a temporary name and renamed, skipped when already
there), and one scratch folder per session (plans, results, outputs) removed at cleanup.

Every value that enters a device shell command is quoted with ``shlex.quote``.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import tempfile
import time
import uuid
from pathlib import Path

from adb_shell.exceptions import AdbTimeoutError, TcpTimeoutException

from ..errors import UserError
from .base import CommandResult, Device, DeviceInfo
from .probe import CoreChoice

ROOT = "/data/local/tmp/seaformer-deploy"
PROPERTIES = {"model": "ro.product.model", "manufacturer": "ro.product.manufacturer",
              "soc": "ro.soc.model", "board": "ro.board.platform",
              "android": "ro.build.version.release", "sdk": "ro.build.version.sdk",
              "abi": "ro.product.cpu.abi", "os_build": "ro.build.fingerprint"}


class AdbError(UserError):
    pass


def key_path() -> Path:
    home = os.environ.get("ANDROID_USER_HOME")
    return Path(home) / "adbkey" if home else Path.home() / ".android" / "adbkey"


def load_signer(path: Path | None = None):
    """The host's adb key as an adb-shell signer; created (0600) like adb does when absent."""
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_cryptography import CryptographySigner

    path = Path(path or key_path())
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        keygen(str(path))
    os.chmod(path, 0o600)
    return CryptographySigner(str(path))


def open_transport(serial: str, timeout: float):
    """An adb-shell device object for ``serial`` (not yet connected)."""
    host, sep, port = serial.rpartition(":")
    if sep and port.isdigit():
        from adb_shell.adb_device import AdbDeviceTcp

        return AdbDeviceTcp(host, int(port), default_transport_timeout_s=timeout), "tcp"
    try:
        from adb_shell.adb_device_usb import AdbDeviceUsb
    except ImportError:
        raise AdbError(f"device {serial!r} is a USB serial, and adb-shell's USB support is not "
                       f"installed: `pip install 'adb-shell[usb]'`, or switch the phone to TCP "
                       f"(`adb tcpip 5555`, then --device PHONE_IP:5555).") from None
    return AdbDeviceUsb(serial=serial, default_transport_timeout_s=timeout), "usb"


class AdbDevice(Device):
    kind = "adb"
    formats = ("pte",)

    def __init__(self, serial: str | None = None, key: Path | None = None,
                 runner_target: str = "android-arm64", timeout: float = 10.0) -> None:
        serial = serial or os.environ.get("ANDROID_SERIAL")
        if not serial:
            raise AdbError("no device serial: pass --device SERIAL (or HOST:PORT), or set "
                           "ANDROID_SERIAL.")
        self.serial = self.name = serial
        self.runner_target = runner_target
        self.core: int | None = None
        self._session = f"run-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._libdirs: set[str] = set()
        self._adb, kind = open_transport(serial, timeout)
        self.transport = f"adb-shell {kind} (no adb server)"
        self._connect(load_signer(key), timeout)

    def _connect(self, signer, timeout: float) -> None:
        from adb_shell.exceptions import DeviceAuthError

        try:
            self._adb.connect(rsa_keys=[signer], auth_timeout_s=timeout,
                              read_timeout_s=timeout)
        except (DeviceAuthError, TcpTimeoutException) as exc:
            raise AdbError(f"{self.serial} did not accept this computer's adb key "
                           f"({key_path()}): unlock the phone and accept the 'Allow USB "
                           f"debugging?' prompt, then retry. ({type(exc).__name__})") from None
        except OSError as exc:
            raise AdbError(f"cannot reach {self.serial}: {exc}. Is it on the network with "
                           f"adb over TCP enabled (adb tcpip 5555)?") from None

    # -- commands --------------------------------------------------------------------------

    def shell(self, script: str, timeout: float | None = 60) -> CommandResult:
        """Run ``script`` in the device's sh; stdout, stderr and the exit status come back
        separately (the shell v1 stream merges them, so stderr goes through a file)."""
        marker = f"@@sfd-rc-{uuid.uuid4().hex}@@"
        err = f"/data/local/tmp/.sfd-{uuid.uuid4().hex}.err"
        wrapped = (f"(\n{script}\n) 2>{err}; rc=$?; echo; echo {marker}$rc; "
                   f"cat {err} 2>/dev/null; rm -f {err}")
        limit = timeout if timeout is not None else 24 * 3600
        try:
            out = self._adb.shell(wrapped, transport_timeout_s=limit, read_timeout_s=limit,
                                  timeout_s=limit)
        except (AdbTimeoutError, TcpTimeoutException):
            raise AdbError(f"{self.serial}: no answer within {limit:.0f} s to "
                           f"{script.strip().splitlines()[0][:120]!r} (hung, or the connection "
                           f"was lost).") from None
        head, found, tail = out.rpartition(marker)
        if not found:
            raise AdbError(f"{self.serial}: the shell output lost its exit status (connection "
                           f"cut?): {out[-300:]!r}")
        code, _, stderr = tail.partition("\n")
        return CommandResult(int(code.strip() or 1), head[:-1] if head.endswith("\n") else head,
                             stderr)

    def run(self, argv: list[str], timeout: float | None, cwd: str | None = None
            ) -> CommandResult:
        """Pinned with taskset to the chosen core (the runner pins itself too), with the staged
        shared libraries on LD_LIBRARY_PATH."""
        command = " ".join(shlex.quote(a) for a in argv)
        if self.core is not None and self.core >= 0:
            command = f"taskset {1 << self.core:x} {command}"
        if self._libdirs:
            command = f"LD_LIBRARY_PATH={shlex.quote(':'.join(sorted(self._libdirs)))} {command}"
        if cwd:
            command = f"cd {shlex.quote(cwd)} && {command}"
        return self.shell(command, timeout)

    def choose_core(self, info: DeviceInfo, requested: int | None = None) -> CoreChoice:
        choice = super().choose_core(info, requested)
        self.core = choice.core
        return choice

    # -- files -----------------------------------------------------------------------------

    def stage(self, files: list[Path]) -> dict[Path, str]:
        where = {Path(f): f"{ROOT}/cas/{_sha256(Path(f))}/{Path(f).name}" for f in files}
        present = self._existing(list(where.values()))
        missing = {local: remote for local, remote in where.items() if remote not in present}
        self._check_space(sum(local.stat().st_size for local in missing))
        for local, remote in missing.items():
            self._push(local, remote)
        self._libdirs |= {remote.rsplit("/", 1)[0] for local, remote in where.items()
                          if ".so" in local.name}
        return where

    def _existing(self, paths: list[str]) -> set[str]:
        if not paths:
            return set()
        quoted = " ".join(shlex.quote(p) for p in paths)
        listed = self.shell(f"for f in {quoted}; do [ -f \"$f\" ] && echo \"$f\"; done; true")
        return set(listed.stdout.splitlines())

    def _check_space(self, needed: int) -> None:
        if needed == 0:
            return
        self.shell(f"mkdir -p {ROOT}")
        df = self.shell(f"df -k {ROOT}")
        try:
            available_kb = int(df.stdout.strip().splitlines()[-1].split()[3])
        except (IndexError, ValueError):
            return                     # an unusual df: let the push itself report the failure
        if available_kb * 1024 < needed * 1.05:
            raise AdbError(f"{self.serial}: {available_kb / 1024:.0f} MB free under {ROOT}, "
                           f"{needed / 2**20:.0f} MB to push; free space on the phone (or "
                           f"remove old files with `adb shell rm -r {ROOT}`).")

    def _push(self, local: Path, remote: str) -> None:
        from adb_shell.exceptions import PushFailedError

        folder = remote.rsplit("/", 1)[0]
        part = f"{remote}.part-{uuid.uuid4().hex[:8]}"
        made = self.shell(f"mkdir -p {shlex.quote(folder)}")
        if made.returncode != 0:
            raise AdbError(f"{self.serial}: cannot create {folder}: {made.stderr.strip()}")
        mode = 0o100755 if os.access(local, os.X_OK) else 0o100644
        try:
            self._adb.push(str(local), part, st_mode=mode, mtime=int(time.time()),
                           read_timeout_s=60)
        except PushFailedError as exc:
            self.shell(f"rm -f {shlex.quote(part)}")
            raise AdbError(f"{self.serial}: pushing {local.name} failed: {exc}") from None
        moved = self.shell(f"mv -f {shlex.quote(part)} {shlex.quote(remote)}")
        if moved.returncode != 0:
            raise AdbError(f"{self.serial}: cannot place {remote}: {moved.stderr.strip()}")

    def fetch(self, device_path: str, local: Path) -> None:
        self._adb.pull(device_path, str(local), read_timeout_s=60)

    def workdir(self) -> str:
        return f"{ROOT}/{self._session}"

    def write_text(self, device_path: str, text: str) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write(text)
        try:
            self.shell(f"mkdir -p {shlex.quote(device_path.rsplit('/', 1)[0])}")
            self._adb.push(f.name, device_path, st_mode=0o100644, mtime=int(time.time()))
        finally:
            os.unlink(f.name)

    def read_text(self, device_path: str) -> str:
        result = self.shell(f"cat {shlex.quote(device_path)}")
        if result.returncode != 0:
            raise AdbError(f"{self.serial}: cannot read {device_path}: {result.stderr.strip()}")
        return result.stdout

    def cleanup(self) -> None:
        self.shell(f"rm -rf {shlex.quote(self.workdir())}")

    def properties(self) -> dict[str, str]:
        script = "; ".join(f"echo {key}=$(getprop {prop})" for key, prop in PROPERTIES.items())
        props = dict(line.split("=", 1) for line in self.shell(script).stdout.splitlines()
                     if "=" in line)
        if props.get("abi") and not props["abi"].startswith("arm64"):
            raise AdbError(f"{self.serial} is {props['abi']}; the runner is built for "
                           f"arm64-v8a phones.")
        return {k: v for k, v in props.items() if v}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
