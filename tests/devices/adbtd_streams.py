"""One ADB stream as the device sees it: classic (OKAY-per-WRTE) flow control and an inbox.

Protocol facts (AOSP protocol.txt): the device answers OPEN with OKAY(device-id, host-id) or
CLSE(0, host-id); every WRTE is acknowledged with OKAY before the sender may send the next
one on that stream; either side ends a stream with CLSE, and adbd answers a host's CLSE with
its own CLSE (adb-shell waits for that echo).
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING

from .adbtd_wire import A_CLSE, A_WRTE, ConnectionDropped, Packet

if TYPE_CHECKING:
    from .adb_testdevice import Connection


class StreamClosed(Exception):
    """The host closed the stream (or the connection went away)."""


class Stream:
    def __init__(self, conn: Connection, local_id: int, remote_id: int, service: str) -> None:
        self.conn, self.local_id, self.remote_id, self.service = conn, local_id, remote_id, service
        self.closed = threading.Event()
        self._inbox: queue.Queue[bytes | None] = queue.Queue()
        self._okay = threading.Semaphore(0)
        self._write_lock = threading.Lock()     # one WRTE in flight: wait for its OKAY
        self._buffer = b""

    # -- called by the connection's reader thread -----------------------------------------
    def on_okay(self) -> None:
        self._okay.release()

    def on_data(self, data: bytes) -> None:
        self._inbox.put(data)

    def on_peer_close(self) -> None:
        self.closed.set()
        self._inbox.put(None)
        self._okay.release()

    # -- used by services ---------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Send bytes as WRTE packets of at most max_payload, each acknowledged by an OKAY."""
        with self._write_lock:
            for start in range(0, len(data), self.conn.max_payload):
                if self.closed.is_set():
                    raise StreamClosed(self.service)
                chunk = data[start:start + self.conn.max_payload]
                self.conn.send(Packet(A_WRTE, self.local_id, self.remote_id, chunk))
                self._wait_okay()

    def _wait_okay(self) -> None:
        while not self._okay.acquire(timeout=0.5):
            if self.conn.dead:
                raise ConnectionDropped("connection closed")
        if self.closed.is_set():
            raise StreamClosed(self.service)

    def read(self, timeout: float | None = None) -> bytes | None:
        """Next WRTE payload from the host; None once the host closed the stream."""
        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data
        if self.closed.is_set() and self._inbox.empty():
            return None
        return self._inbox.get(timeout=timeout)

    def read_exact(self, size: int) -> bytes | None:
        """Exactly ``size`` bytes across WRTE boundaries (sync and shell v2 framing)."""
        while len(self._buffer) < size:
            chunk = self._inbox.get()
            if chunk is None:
                self._inbox.put(None)
                return None
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def close(self) -> None:
        """Device-side close: CLSE(device-id, host-id), unless the host closed first."""
        if not self.closed.is_set():
            self.closed.set()
            try:
                self.conn.send(Packet(A_CLSE, self.local_id, self.remote_id))
            except (ConnectionDropped, OSError):
                pass
        self.conn.forget(self)
