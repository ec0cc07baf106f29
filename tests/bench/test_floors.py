"""bench/floors_wsgi.py: each floor moves exactly the bytes asked for, so its CPU per GB is per GB."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator

import floors
import floors_wsgi
import pytest

MIB = 1024 * 1024


def call(path: str, query: str = "", body: bytes = b"") -> tuple[str, bytes]:
    answered: list[str] = []
    environ = {"PATH_INFO": path, "QUERY_STRING": query, "wsgi.input": io.BytesIO(body)}
    chunks = floors_wsgi.application(environ, lambda status, headers: answered.append(status))
    return answered[0], b"".join(chunks)


@pytest.fixture
def blob_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threading.Thread(target=floors.serve_blobs, args=(port,), daemon=True).start()
    monkeypatch.setattr(floors_wsgi, "UPSTREAM", f"http://127.0.0.1:{port}/")
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            threading.Event().wait(0.05)
    yield


def test_the_sink_reads_the_whole_body() -> None:
    assert call("/sink", body=b"x" * (3 * MIB + 7)) == ("200 OK", str(3 * MIB + 7).encode())


@pytest.mark.parametrize("size", [0, 5, MIB, 2 * MIB + 3])
def test_serve_answers_the_bytes_asked_for(size: int) -> None:
    status, body = call("/serve", str(size))
    assert (status, len(body)) == ("200 OK", size)


@pytest.mark.parametrize("library", ["httpx", "urllib3"])
@pytest.mark.parametrize("size", [0, MIB - 1, 3 * MIB + 5])
def test_each_relay_passes_on_what_the_blob_server_sent(blob_server: None, library: str, size: int) -> None:
    status, body = call(f"/relay/{library}", str(size))
    assert (status, body) == ("200 OK", (floors.BLOCK * 4)[:size])
