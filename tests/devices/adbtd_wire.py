"""ADB transport messages: the 24-byte header, packing, reading and version-dependent checksums.

Facts from AOSP ``adb/protocol.txt`` and ``transport.cpp``: six little-endian uint32 words
(command, arg0, arg1, data_length, data_check, magic = command ^ 0xffffffff). ``data_check`` is
a plain byte sum, not a CRC. From protocol version 0x01000001 (A_VERSION_SKIP_CHECKSUM) adbd
sends 0 there and does not check it; before that (and before CNXN has negotiated a version) it
is computed and checked.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass


def _cmd(name: bytes) -> int:
    return int.from_bytes(name, "little")


A_SYNC, A_CNXN, A_AUTH = _cmd(b"SYNC"), _cmd(b"CNXN"), _cmd(b"AUTH")
A_OPEN, A_OKAY, A_CLSE, A_WRTE = _cmd(b"OPEN"), _cmd(b"OKAY"), _cmd(b"CLSE"), _cmd(b"WRTE")
A_STLS = _cmd(b"STLS")
KNOWN_COMMANDS = {A_SYNC, A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_CLSE, A_WRTE, A_STLS}

A_VERSION_MIN = 0x01000000
A_VERSION_SKIP_CHECKSUM = 0x01000001
A_VERSION = 0x01000001            # what current adbd speaks
MAX_PAYLOAD = 1024 * 1024         # adbd's ceiling; the connection uses min(this, client's)

AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
TOKEN_SIZE = 20

HEADER = struct.Struct("<6I")


class ProtocolError(Exception):
    """A malformed message: adbd drops the connection on these."""


class ConnectionDropped(Exception):
    """The peer closed the TCP connection (or a fault hook cut it)."""


@dataclass
class Packet:
    command: int
    arg0: int
    arg1: int
    data: bytes = b""

    @property
    def name(self) -> str:
        return self.command.to_bytes(4, "little").decode("ascii", "replace")

    def __repr__(self) -> str:  # short, for logs
        return f"Packet({self.name}, {self.arg0:#x}, {self.arg1:#x}, {len(self.data)}B)"


def checksum(data: bytes) -> int:
    return sum(data) & 0xFFFFFFFF


def pack(packet: Packet, version: int) -> bytes:
    check = 0 if version >= A_VERSION_SKIP_CHECKSUM else checksum(packet.data)
    header = HEADER.pack(packet.command, packet.arg0, packet.arg1, len(packet.data), check,
                         packet.command ^ 0xFFFFFFFF)
    return header + packet.data


def recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ConnectionDropped("peer closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_packet(sock: socket.socket, version: int, max_payload: int = MAX_PAYLOAD) -> Packet:
    """One message, validated as adbd's check_header/check_data do."""
    command, arg0, arg1, length, check, magic = HEADER.unpack(recv_exact(sock, HEADER.size))
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic {magic:#x} for command {command:#x}")
    if command not in KNOWN_COMMANDS:
        raise ProtocolError(f"unknown command {command:#x}")
    if length > max_payload:
        raise ProtocolError(f"payload of {length} bytes exceeds max payload {max_payload}")
    data = recv_exact(sock, length) if length else b""
    if version < A_VERSION_SKIP_CHECKSUM and checksum(data) != check:
        raise ProtocolError(f"bad checksum {check:#x}, expected {checksum(data):#x}")
    return Packet(command, arg0, arg1, data)
