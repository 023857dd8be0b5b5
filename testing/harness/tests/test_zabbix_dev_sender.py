"""The Zabbix protocol framing, against a fake trapper (needs no Zabbix)."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import zlib
from collections.abc import Iterator

import pytest

from yobidashi_harness.zabbix_sender import (
    ZabbixProtocolError,
    encode,
    request,
    send_value,
)


def test_encode_is_header_flags_length_and_json() -> None:
    packet = encode({"request": "sender data", "data": [{"host": "h", "key": "k", "value": "1"}]})
    assert packet[:5] == b"ZBXD\x01"
    (length,) = struct.unpack("<Q", packet[5:13])
    assert json.loads(packet[13:]) == {
        "request": "sender data",
        "data": [{"host": "h", "key": "k", "value": "1"}],
    }
    assert length == len(packet) - 13


class FakeTrapper:
    """Accepts one connection at a time, records the request, answers with ``reply``."""

    def __init__(self) -> None:
        self.reply = b""
        self.requests: list[dict[str, object]] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                head = conn.recv(13)
                (length,) = struct.unpack("<Q", head[5:13])
                body = b""
                while len(body) < length:
                    body += conn.recv(length - len(body))
                self.requests.append(json.loads(body))
                conn.sendall(self.reply)

    def close(self) -> None:
        # shutdown() wakes the blocked accept(); close() alone does not on Linux.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def trapper() -> Iterator[FakeTrapper]:
    fake = FakeTrapper()
    yield fake
    fake.close()


def _answer(payload: dict[str, object], *, compress: bool = False) -> bytes:
    data = json.dumps(payload).encode()
    if compress:
        packed = zlib.compress(data)
        return b"ZBXD\x03" + struct.pack("<II", len(packed), len(data)) + packed
    return b"ZBXD\x01" + struct.pack("<II", len(data), 0) + data


def test_send_value_parses_the_counts(trapper: FakeTrapper) -> None:
    trapper.reply = _answer(
        {
            "response": "success",
            "info": "processed: 1; failed: 0; total: 1; seconds spent: 0.000055",
        }
    )
    result = send_value("test-host", "test.value", 10, port=trapper.port)
    assert (result.processed, result.failed, result.total) == (1, 0, 1)
    assert result.response == "success"
    assert trapper.requests == [
        {
            "request": "sender data",
            "data": [{"host": "test-host", "key": "test.value", "value": "10"}],
        }
    ]


def test_compressed_answers_are_inflated(trapper: FakeTrapper) -> None:
    trapper.reply = _answer({"response": "success", "data": {"x": 1}}, compress=True)
    assert request({"request": "zabbix.stats"}, port=trapper.port) == {
        "response": "success",
        "data": {"x": 1},
    }


def test_garbage_is_a_protocol_error(trapper: FakeTrapper) -> None:
    trapper.reply = b"HTTP/1.1 400 Bad Request\r\n\r\n"
    with pytest.raises(ZabbixProtocolError):
        request({"request": "zabbix.stats"}, port=trapper.port)
