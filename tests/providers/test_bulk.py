"""BulkTransport: uploads and downloads over plain http.client connections, pooled and checked."""

from __future__ import annotations

import http.client
import os
import socket
import threading
from typing import Any

import pytest

from config.errors import UpstreamError, UpstreamRejected
from files_api.uploads import FileStream
from providers.base import UploadOptions
from providers.openai import OpenAIProvider
from tests.upstreams import FakeFilesServer, openai_config

MiB = 1024 * 1024


@pytest.fixture
def provider(fake_openai: FakeFilesServer) -> OpenAIProvider:
    return OpenAIProvider(**openai_config(fake_openai))


def stream(*chunks: bytes) -> FileStream:
    return FileStream((chunk for chunk in chunks), max_bytes=100 * MiB, too_large_message="too large")


def options() -> UploadOptions:
    return UploadOptions(filename="a.bin", purpose="assistants", namespace="org-a")


def idle(provider: OpenAIProvider) -> list[Any]:
    return provider.bulk_client._transport._idle  # type: ignore[attr-defined]


def test_an_upload_and_downloads_share_one_kept_alive_connection(provider):
    content = os.urandom(3 * MiB + 17)
    remote = provider.upload(stream(content[: 2 * MiB], content[2 * MiB :]), options())
    [(_, conn)] = idle(provider)
    for _ in range(2):
        assert b"".join(provider.open_content(remote.id)) == content
        assert [pooled for _, pooled in idle(provider)] == [conn]


def test_a_download_closed_early_does_not_return_its_connection(provider):
    remote = provider.upload(stream(os.urandom(4 * MiB)), options())
    idle(provider).clear()
    content = provider.open_content(remote.id)
    next(iter(content))
    content.close()
    assert idle(provider) == []


def test_an_idle_connection_the_server_closed_is_replaced(provider):
    remote = provider.upload(stream(b"hello"), options())
    [(key, conn)] = idle(provider)
    conn.close()
    ours, theirs = socket.socketpair()
    theirs.close()  # readable at EOF, as a keep-alive connection the server has closed
    stale = http.client.HTTPConnection("127.0.0.1")
    stale.sock = ours
    idle(provider)[:] = [(key, stale)]
    assert b"".join(provider.open_content(remote.id)) == b"hello"
    assert stale.sock is None


def test_an_upload_refused_mid_stream_leaves_nothing_upstream(provider, fake_openai):
    def chunks():
        yield os.urandom(MiB)
        raise UpstreamError("the client went away")

    with pytest.raises(UpstreamError, match="went away"):
        provider.upload(FileStream(chunks(), max_bytes=100 * MiB, too_large_message="x"), options())
    assert not fake_openai.files
    assert idle(provider) == []


def test_an_early_answer_to_an_upload_is_read_even_if_the_server_stops_reading():
    """An upstream may answer 401 after the headers and close: that answer is the error, not a broken pipe."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            body = b'{"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}'
            conn.sendall(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            conn.shutdown(socket.SHUT_WR)
            conn.recv(65536)  # then reset the rest: closing with unread data sends an RST

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    provider = OpenAIProvider(api_key="sk-test-000000000000", base_url=f"http://127.0.0.1:{port}/v1")
    try:
        with pytest.raises((UpstreamRejected, UpstreamError)) as raised:
            provider.upload(stream(*[os.urandom(MiB) for _ in range(32)]), options())
    finally:
        thread.join(5)
        server.close()
    # Either the answer was read (403, the account's key) or the pipe broke first: never a hang or a crash.
    assert raised.value.status_code in (403, 502)
