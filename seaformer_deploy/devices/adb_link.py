"""How bytes reach a phone: the two adb transports behind ``AdbDevice``.

* ``AdbShellLink`` speaks the device protocol itself through adb-shell (TCP ``HOST:PORT``, or USB
  with adb-shell's USB extra); no adb server may hold the USB device at the same time.
* ``ServerLink`` (``adb_server.py``) asks a running adb server (port 5037) to forward our
  requests, so a phone that already shows in ``adb devices`` works without killing the server.

Both raise ``LinkLost`` when the connection breaks (the bench reconnects and resumes) and
``LinkTimeout`` when a command does not finish in time.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path

from ..errors import UserError


class AdbError(UserError):
    pass


class LinkLost(AdbError):
    """The connection to the device broke; reconnecting may help."""


class LinkTimeout(AdbError):
    """A command or transfer did not finish within its timeout."""


class AdbLink(abc.ABC):
    serial: str
    description: str            # which transport, for the user and the report

    @abc.abstractmethod
    def connect(self) -> None:
        """Open (or reopen) the connection; AdbError with what to do when it cannot."""

    @abc.abstractmethod
    def close(self) -> None:
        """Drop the connection; never raises."""

    @abc.abstractmethod
    def shell(self, command: str, timeout: float) -> str:
        """Run ``command`` in the device's sh; its stdout and stderr, merged (shell v1)."""

    @abc.abstractmethod
    def push(self, local: Path, remote: str, mode: int, timeout: float) -> None:
        """Copy ``local`` to the device path ``remote`` with file mode ``mode``."""

    @abc.abstractmethod
    def pull(self, remote: str, local: Path, timeout: float) -> None:
        """Copy the device file ``remote`` to ``local``."""


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


def unauthorized_message(serial: str, key: Path | None = None) -> str:
    return (f"{serial} did not accept this computer's adb key ({key or key_path()}): unlock "
            f"the phone and accept the 'Allow USB debugging?' prompt, then retry.")


class AdbShellLink(AdbLink):
    """The adb device protocol spoken directly, through adb-shell."""

    def __init__(self, serial: str, key: Path | None = None, timeout: float = 10.0) -> None:
        self.serial = serial
        self.key = key
        self.timeout = timeout
        host, sep, port = serial.rpartition(":")
        if sep and port.isdigit():
            from adb_shell.adb_device import AdbDevice

            self._adb = AdbDevice(_tcp_transport(host, int(port)),
                                  default_transport_timeout_s=timeout)
            self.description = "adb-shell over TCP (no adb server)"
            return
        try:
            from adb_shell.adb_device_usb import AdbDeviceUsb
        except ImportError:
            raise AdbError(f"device {serial!r} is a USB serial: reach it through a running adb "
                           f"server (`adb start-server`; check `adb devices`), or install "
                           f"adb-shell's USB support (`pip install 'adb-shell[usb]'`), or switch "
                           f"the phone to TCP (`adb tcpip 5555`, then --device PHONE_IP:5555)."
                           ) from None
        self._adb = AdbDeviceUsb(serial=serial, default_transport_timeout_s=timeout)
        self.description = "adb-shell over USB (no adb server)"

    def connect(self) -> None:
        from adb_shell.exceptions import DeviceAuthError, TcpTimeoutException

        try:
            self._adb.connect(rsa_keys=[load_signer(self.key)], auth_timeout_s=self.timeout,
                              read_timeout_s=self.timeout, transport_timeout_s=self.timeout)
        except (DeviceAuthError, TcpTimeoutException) as exc:
            raise AdbError(f"{unauthorized_message(self.serial, self.key)} "
                           f"({type(exc).__name__})") from None
        except OSError as exc:
            raise LinkLost(f"cannot reach {self.serial}: {exc}. Is it on the network with adb "
                           f"over TCP enabled (adb tcpip 5555)?") from None

    def close(self) -> None:
        try:
            self._adb.close()
        except Exception:               # noqa: BLE001 - closing a broken link must not fail
            pass

    def shell(self, command: str, timeout: float) -> str:
        return self._call(lambda: self._adb.shell(
            command, transport_timeout_s=timeout, read_timeout_s=timeout, timeout_s=timeout),
            command, timeout)

    def push(self, local: Path, remote: str, mode: int, timeout: float) -> None:
        from adb_shell.exceptions import PushFailedError

        try:
            self._call(lambda: self._adb.push(str(local), remote, st_mode=mode,
                                              read_timeout_s=timeout, transport_timeout_s=timeout),
                       f"push {local.name}", timeout)
        except PushFailedError as exc:
            raise AdbError(f"{self.serial}: pushing {local.name} failed: {exc}") from None

    def pull(self, remote: str, local: Path, timeout: float) -> None:
        self._call(lambda: self._adb.pull(remote, str(local), read_timeout_s=timeout,
                                          transport_timeout_s=timeout), f"pull {remote}", timeout)

    def _call(self, action, what: str, timeout: float):
        """adb-shell's many failure types -> LinkTimeout / LinkLost."""
        from adb_shell.exceptions import (AdbConnectionError, AdbTimeoutError,
                                          InvalidChecksumError, InvalidCommandError,
                                          InvalidResponseError, TcpTimeoutException)

        if not self._adb.available:
            raise LinkLost(f"{self.serial}: not connected")
        try:
            return action()
        except (AdbTimeoutError, TcpTimeoutException):
            raise LinkTimeout(f"{self.serial}: no answer within {timeout:.0f} s to "
                              f"{what.strip().splitlines()[0][:120]!r}") from None
        except (AdbConnectionError, InvalidResponseError, InvalidCommandError,
                InvalidChecksumError, ConnectionError, OSError) as exc:   # a broken stream too
            raise LinkLost(f"{self.serial}: connection lost during {what[:80]!r} "
                           f"({type(exc).__name__}: {exc})") from None


def _tcp_transport(host: str, port: int):
    """adb-shell's TCP transport, made to notice a lost connection.

    adb-shell reads a closed socket's empty result as "no data yet" and spins until its read
    timeout, which for a runner is many minutes; we raise at once instead. Keepalive probes
    find a peer that vanished without closing (network gone) within about 15 s."""
    import select
    import socket

    from adb_shell.exceptions import TcpTimeoutException
    from adb_shell.transport.tcp_transport import TcpTransport

    class ClosingAwareTcpTransport(TcpTransport):
        def connect(self, transport_timeout_s):
            super().connect(transport_timeout_s)
            sock = self._connection
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for option, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2),
                                  ("TCP_KEEPCNT", 5)):
                if hasattr(socket, option):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)

        # adb-shell waits with select(), which refuses sockets numbered 1024 or more; a long
        # bench process (or a host app embedding us) can have that many files open, so wait
        # with poll() instead, which has no such limit.
        def _wait(self, event: int, transport_timeout_s, what: str) -> None:
            poller = select.poll()
            poller.register(self._connection, event)
            ms = None if transport_timeout_s is None else max(0, int(transport_timeout_s * 1000))
            if not poller.poll(ms):
                raise TcpTimeoutException(f"{what} {self._host}:{self._port} timed out after "
                                          f"{transport_timeout_s} s")

        def bulk_read(self, numbytes, transport_timeout_s):
            self._wait(select.POLLIN, transport_timeout_s, "reading from")
            data = self._connection.recv(numbytes)
            if not data:
                raise ConnectionResetError("the device closed the connection")
            return data

        def bulk_write(self, data, transport_timeout_s):
            self._wait(select.POLLOUT, transport_timeout_s, "sending to")
            return self._connection.send(data)

    return ClosingAwareTcpTransport(host, port)
