"""How bytes reach a phone: the two adb transports behind ``AdbDevice``.

* ``AdbShellLink`` speaks the device protocol itself through adb-shell (TCP ``HOST:PORT``, or USB
  with adb-shell's USB extra); no adb server may hold the USB device at the same time.
* ``ServerLink`` (``adb_server.py``) asks a running adb server (port 5037) to forward our
  requests, so a phone that already shows in ``adb devices`` works without killing the server.

Both raise ``LinkLost`` when the connection breaks (the bench reconnects and resumes) and
``LinkTimeout`` when a command does not finish in time; over USB that covers adb-shell's
``Usb*Error`` and libusb's ``usb1.USBError*`` too (unplugged, reset, stalled), and opening a
USB phone that is missing, held by an adb server or not permitted says what to do.
"""

from __future__ import annotations

import abc
import os
import sys
from pathlib import Path

from ..errors import UserError, option


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

    def __init__(self, serial: str, key: Path | None = None, timeout: float = 10.0,
                 reason: str = "no adb server") -> None:
        self.serial = serial
        self.key = key
        self.timeout = timeout
        self._adb = None
        self._usb = not is_tcp_serial(serial)
        if not self._usb:
            from adb_shell.adb_device import AdbDevice

            host, _, port = serial.rpartition(":")
            self._adb = AdbDevice(_tcp_transport(host, int(port)),
                                  default_transport_timeout_s=timeout)
            self.description = f"adb-shell over TCP ({reason})"
            return
        if not _usb_supported():
            raise AdbError(_no_usb_support(serial))
        self.description = f"adb-shell over USB ({reason})"

    def connect(self) -> None:
        from adb_shell.exceptions import DeviceAuthError, TcpTimeoutException

        try:
            if self._usb:
                self._adb = self._find_usb()
            self._adb.connect(rsa_keys=[load_signer(self.key)], auth_timeout_s=self.timeout,
                              read_timeout_s=self.timeout, transport_timeout_s=self.timeout)
        except (DeviceAuthError, TcpTimeoutException) as exc:
            raise AdbError(f"{unauthorized_message(self.serial, self.key)} "
                           f"({type(exc).__name__})") from None
        except OSError as exc:
            raise LinkLost(f"cannot reach {self.serial}: {exc}. Is it on the network with adb "
                           f"over TCP enabled (adb tcpip 5555)?") from None
        except Exception as exc:         # noqa: BLE001 - only USB failures are translated
            error = usb_connect_error(self.serial, self.key, exc)
            if error is None:
                raise
            raise error from None

    def _find_usb(self):
        """adb-shell's USB device for our serial, looked up on the bus on every connect: a
        replugged phone is a new USB device, and the old handle is dead."""
        from adb_shell.adb_device import AdbDeviceUsb
        from adb_shell.exceptions import InvalidTransportError

        self.close()
        self._adb = None
        try:
            return AdbDeviceUsb(serial=self.serial, default_transport_timeout_s=self.timeout)
        except InvalidTransportError:
            raise AdbError(_no_usb_support(self.serial)) from None

    def close(self) -> None:
        if self._adb is None:
            return
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
        """adb-shell's many failure types (its TCP and USB transports' and libusb's) ->
        LinkTimeout / LinkLost."""
        from adb_shell.exceptions import (AdbConnectionError, AdbTimeoutError,
                                          InvalidChecksumError, InvalidCommandError,
                                          InvalidResponseError, TcpTimeoutException)

        if self._adb is None or not self._adb.available:
            raise LinkLost(f"{self.serial}: not connected")
        try:
            return action()
        except (AdbTimeoutError, TcpTimeoutException):
            raise self._timed_out(what, timeout) from None
        except (AdbConnectionError, InvalidResponseError, InvalidCommandError,
                InvalidChecksumError, ConnectionError, OSError) as exc:   # a broken stream too
            raise self._lost(what, exc) from None
        except Exception as exc:         # noqa: BLE001 - only USB failures are translated
            kind = usb_failure(exc)
            if kind is None:
                raise
            raise (self._timed_out(what, timeout) if kind == "timeout"
                   else self._lost(what, exc)) from None

    def _timed_out(self, what: str, timeout: float) -> LinkTimeout:
        return LinkTimeout(f"{self.serial}: no answer within {timeout:.0f} s to "
                           f"{what.strip().splitlines()[0][:120]!r}")

    def _lost(self, what: str, exc: BaseException) -> LinkLost:
        return LinkLost(f"{self.serial}: connection lost during {what[:80]!r} "
                        f"({describe(exc)})")


def is_tcp_serial(serial: str) -> bool:
    """``HOST:PORT`` (a phone on the network) rather than a USB serial or emulator name."""
    host, sep, port = serial.rpartition(":")
    return bool(host and sep and port.isdigit())


# -- USB: adb-shell's transport over libusb ---------------------------------------------------
# adb-shell wraps libusb's failures in its own Usb*Error classes, but not all of them: opening
# and claiming the device raise libusb's usb1.USBError* unwrapped. usb1 is installed only with
# adb-shell's USB extra, so its classes are looked up in sys.modules, never imported: an
# exception of theirs can only exist once adb-shell's USB transport has imported usb1.
LIBUSB_KINDS = (("USBErrorTimeout", "timeout"), ("USBErrorBusy", "busy"),
                ("USBErrorAccess", "access"), ("USBErrorNotFound", "not-found"))


def usb_failure(exc: BaseException) -> str | None:
    """What a USB failure means: ``timeout``, ``busy`` (another program, usually an adb
    server, claimed the phone's interface), ``access`` (no permission to open it),
    ``not-found``, or ``lost`` (unplugged, I/O or pipe error, closed); None when ``exc`` is not
    a USB failure."""
    from adb_shell import exceptions as adb_exceptions

    if isinstance(exc, getattr(adb_exceptions, "UsbDeviceNotFoundError", ())):
        return "not-found"
    if isinstance(exc, _usb_wrappers()):  # no libusb error inside: the transport was closed
        return _libusb_kind(_wrapped_libusb_error(exc)) or "lost"
    return _libusb_kind(exc)


def describe(exc: BaseException) -> str:
    """``Type: message``; for adb-shell's USB errors the message and the libusb error inside
    (UsbWriteFailedError alone would print its argument tuple)."""
    text = str(exc)
    if isinstance(exc, _usb_wrappers()) and exc.args:
        inner = _wrapped_libusb_error(exc)
        text = f"{exc.args[0]}: {inner}" if inner is not None else str(exc.args[0])
    return f"{type(exc).__name__}: {text}"


def _usb_wrappers() -> tuple[type, ...]:
    from adb_shell import exceptions as adb_exceptions

    return tuple(getattr(adb_exceptions, name) for name in
                 ("UsbReadFailedError", "UsbWriteFailedError") if hasattr(adb_exceptions, name))


def _libusb_kind(error: object) -> str | None:
    usb1 = sys.modules.get("usb1")
    if usb1 is None or not isinstance(error, getattr(usb1, "USBError", ())):
        return None
    return next((kind for name, kind in LIBUSB_KINDS
                 if isinstance(error, getattr(usb1, name, ()))), "lost")


def _wrapped_libusb_error(exc: BaseException) -> object:
    """adb-shell passes libusb's error as its exceptions' second argument."""
    inner = getattr(exc, "usb_error", None)
    return inner if inner is not None else (exc.args[1] if len(exc.args) > 1 else None)


def usb_connect_error(serial: str, key: Path | None, exc: BaseException) -> AdbError | None:
    """A USB failure while opening the link -> an error that says what to do (LinkLost where
    retrying can help: a phone that was unplugged may come back); None when not USB."""
    kind = usb_failure(exc)
    if kind is None:
        return None
    detail = f"({describe(exc)})"
    if kind == "not-found":
        return LinkLost(
            f"no USB device with serial {serial} answers adb {detail}: check the cable, that "
            f"USB debugging is on, and the serial (`adb devices -l` lists the phones adb sees). "
            f"A running adb server holds the phone's USB interface: use it "
            f"({option('transport')} server) or stop it (`adb kill-server`).")
    if kind == "busy":
        return AdbError(
            f"{serial}: another program holds the phone's USB interface {detail}, usually an "
            f"adb server: use it ({option('transport')} server) or stop it (`adb kill-server`), "
            f"then retry.")
    if kind == "access":
        return AdbError(
            f"{serial}: no permission to open the phone's USB device {detail}: install udev "
            f"rules for Android phones (Debian: `apt install android-sdk-platform-tools-common`) "
            f"and join the plugdev group, then re-plug the phone; or use a running adb server "
            f"({option('transport')} server).")
    if kind == "timeout":                # as over TCP: adbd waits for the user's answer
        return AdbError(f"{unauthorized_message(serial, key)} (no answer over USB {detail})")
    return LinkLost(f"cannot reach {serial} over USB {detail}: check the cable and "
                    f"`adb devices`.")


def _usb_supported() -> bool:
    """adb-shell's USB transport imports (it needs usb1, from adb-shell's USB extra)."""
    from adb_shell import adb_device

    return getattr(adb_device, "UsbTransport", None) is not None


def _no_usb_support(serial: str) -> str:
    return (f"device {serial!r} is a USB serial: reach it through a running adb server "
            f"(`adb start-server`; check `adb devices`), or install adb-shell's USB support "
            f"(`pip install 'adb-shell[usb]'`), or switch the phone to TCP (`adb tcpip 5555`, "
            f"then {option('device')} PHONE_IP:5555).")


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
            for name, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 5)):
                if hasattr(socket, name):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)

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
