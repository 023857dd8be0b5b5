"""The Zabbix sender/trapper protocol, without the ``zabbix_sender`` binary.

A request or answer is ``ZBXD`` + a flags byte + data length + reserved length + JSON. Flags
0x01 is the protocol, 0x02 zlib-compressed data, 0x04 "large" (8-byte lengths instead of 4).
"""

from __future__ import annotations

import json
import re
import socket
import struct
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_HEADER = b"ZBXD"
_FLAG_COMPRESSED = 0x02
_FLAG_LARGE = 0x04
_INFO = re.compile(
    r"processed: (?P<processed>\d+); failed: (?P<failed>\d+); total: (?P<total>\d+); "
    r"seconds spent: (?P<seconds>[\d.]+)"
)


class ZabbixProtocolError(RuntimeError):
    """The server's answer was not a Zabbix protocol packet we understand."""


@dataclass(frozen=True)
class SenderResult:
    processed: int
    failed: int
    total: int
    seconds: float
    response: str  # "success" or "failed"
    info: str  # the raw info string


def encode(payload: Mapping[str, Any]) -> bytes:
    data = json.dumps(payload, ensure_ascii=False).encode()
    return _HEADER + b"\x01" + struct.pack("<Q", len(data)) + data


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ZabbixProtocolError(f"connection closed after {len(chunks)} of {size} bytes")
        chunks += chunk
    return bytes(chunks)


def _read_packet(sock: socket.socket) -> dict[str, Any]:
    head = _recv_exact(sock, 5)
    if head[:4] != _HEADER:
        raise ZabbixProtocolError(f"not a Zabbix packet: {head!r}")
    flags = head[4]
    fmt = "<QQ" if flags & _FLAG_LARGE else "<II"
    length, uncompressed = struct.unpack(fmt, _recv_exact(sock, struct.calcsize(fmt)))
    data = _recv_exact(sock, length)
    if flags & _FLAG_COMPRESSED:
        data = zlib.decompress(data)
        if len(data) != uncompressed:
            raise ZabbixProtocolError("decompressed length does not match the header")
    answer = json.loads(data)
    if not isinstance(answer, dict):
        raise ZabbixProtocolError(f"unexpected answer: {answer!r}")
    return answer


def request(
    payload: Mapping[str, Any], host: str = "127.0.0.1", port: int = 10051, timeout: float = 10
) -> dict[str, Any]:
    """Send one protocol request and return the decoded JSON answer."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(encode(payload))
        return _read_packet(sock)


def send_values(
    values: Iterable[tuple[str, str, object]],
    *,
    host: str = "127.0.0.1",
    port: int = 10051,
    timeout: float = 10,
) -> SenderResult:
    """Send ``(zabbix host, item key, value)`` triples to trapper items."""
    data = [{"host": h, "key": k, "value": str(v)} for h, k, v in values]
    answer = request({"request": "sender data", "data": data}, host, port, timeout)
    info = str(answer.get("info", ""))
    match = _INFO.search(info)
    if match is None:
        raise ZabbixProtocolError(f"sender answer without counts: {answer!r}")
    return SenderResult(
        processed=int(match["processed"]),
        failed=int(match["failed"]),
        total=int(match["total"]),
        seconds=float(match["seconds"]),
        response=str(answer.get("response", "")),
        info=info,
    )


def send_value(
    zabbix_host: str,
    key: str,
    value: object,
    *,
    host: str = "127.0.0.1",
    port: int = 10051,
    timeout: float = 10,
) -> SenderResult:
    return send_values([(zabbix_host, key, value)], host=host, port=port, timeout=timeout)


def server_stats(host: str = "127.0.0.1", port: int = 10051, timeout: float = 5) -> dict[str, Any]:
    """``zabbix.stats`` (needs ``StatsAllowedIP`` to cover us); the ``data`` of a success."""
    answer = request({"request": "zabbix.stats"}, host, port, timeout)
    if answer.get("response") != "success" or not isinstance(answer.get("data"), dict):
        raise ZabbixProtocolError(f"zabbix.stats failed: {answer!r}")
    data: dict[str, Any] = answer["data"]
    return data
