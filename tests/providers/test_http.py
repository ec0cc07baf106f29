"""The HTTP plumbing every pass-through kind shares: proxies from the environment, bounded decoding,
and the translation hooks as plain functions (no server needed)."""

from __future__ import annotations

import gzip
import json
import socket
import threading
import tracemalloc
import zlib
from collections.abc import Iterator

import httpx
import pytest

from config.errors import UpstreamError
from providers.base import CHUNK_SIZE, UploadOptions
from providers.http import MAX_JSON_BYTES, coalesced, decode_stream
from providers.openai import OpenAIProvider
from tests.upstreams import FakeFilesServer, openai_config

MiB = 1024 * 1024


class RecordingProxy:
    """A forward proxy that answers every request itself with one file object, and records the
    request lines and Proxy-Authorization it saw (enough to prove the calls went through it)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.asked: list[tuple[str, str]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with client:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += client.recv(4096)
                lines = head.decode().split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                self.asked.append((lines[0], headers.get("Proxy-Authorization", "")))
                body = json.dumps(
                    {
                        "id": "file-viaproxy",
                        "object": "file",
                        "bytes": 1,
                        "created_at": 1,
                        "filename": "p.txt",
                        "purpose": "assistants",
                        "status": "processed",
                    }
                ).encode()
                client.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_a_proxy_from_the_environment_carries_the_calls(fake_openai: FakeFilesServer, monkeypatch, no_proxy_env):
    proxy = RecordingProxy()
    monkeypatch.setenv("HTTP_PROXY", f"http://gate:s%40fe@127.0.0.1:{proxy.port}")
    try:
        provider = OpenAIProvider(**openai_config(fake_openai))
        assert provider.retrieve("file-viaproxy").filename == "p.txt"
    finally:
        proxy.close()
    [(request_line, authorization)] = proxy.asked
    assert request_line == f"GET {fake_openai.url}/files/file-viaproxy HTTP/1.1"
    assert authorization == "Basic Z2F0ZTpzQGZl"  # gate:s@fe
    assert fake_openai.requests == []


def test_no_proxy_skips_the_proxy(fake_openai: FakeFilesServer, monkeypatch, no_proxy_env):
    proxy = RecordingProxy()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        OpenAIProvider(**openai_config(fake_openai)).check()
    finally:
        proxy.close()
    assert proxy.asked == [] and len(fake_openai.requests) == 1


class Streamed(httpx.SyncByteStream):
    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces


def provider_answering(*responses: httpx.Response) -> OpenAIProvider:
    provider = OpenAIProvider(api_key="sk-test", base_url="http://upstream.invalid/v1")
    answers = iter(responses)
    provider.client = httpx.Client(
        base_url=provider.client.base_url, transport=httpx.MockTransport(lambda request: next(answers))
    )
    return provider


def test_a_compressed_answer_that_inflates_past_the_bound_is_refused_without_inflating_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    compressed = bomb.compress(b"\0" * (256 * MiB)) + bomb.flush()  # a few hundred KiB on the wire
    provider = provider_answering(
        httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=Streamed(compressed))
    )
    tracemalloc.start()
    try:
        with pytest.raises(UpstreamError, match="oversized"):
            provider.retrieve("file-abc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_JSON_BYTES + 8 * MiB  # the bound, not the 256 MiB the answer inflates to


def test_a_corrupt_compressed_answer_is_an_upstream_error() -> None:
    provider = provider_answering(
        httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=Streamed(b"\x1f\x8b not gzip at all"))
    )
    with pytest.raises(UpstreamError, match="corrupt"):
        provider.retrieve("file-abc")


def test_a_download_compressed_against_our_wish_is_decoded_in_bounded_pieces() -> None:
    content = b"".join(bytes([n % 251]) * 1000 for n in range(5000))  # 5 MB, compresses well
    provider = provider_answering(
        httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=Streamed(gzip.compress(content)))
    )
    download = provider.open_content("file-abc")
    assert download.size is None  # the header's length is the compressed one: not the file's
    pieces = list(download.chunks)
    assert b"".join(pieces) == content and max(map(len, pieces)) <= CHUNK_SIZE


def test_a_download_reaches_the_client_in_chunks_of_a_mebibyte_after_the_first_piece() -> None:
    pieces = [bytes([n]) * 64 * 1024 for n in range(40)]  # 2.5 MiB in the transport's 64 KiB reads
    chunks = list(coalesced(iter(pieces)))
    assert b"".join(chunks) == b"".join(pieces)
    assert [len(chunk) for chunk in chunks] == [64 * 1024, CHUNK_SIZE, CHUNK_SIZE, CHUNK_SIZE // 2 - 64 * 1024]
    assert list(coalesced(iter([b"ab", b"c", b"d"]))) == [b"ab", b"cd"]
    assert list(coalesced(iter([]))) == []


def test_decode_stream_passes_identity_through_untouched() -> None:
    pieces = [b"a" * 10, b"b" * 20]
    assert list(decode_stream(iter(pieces), "identity")) == pieces


# The translation hooks are plain functions of plain values.


def test_openai_upload_fields_carry_purpose_and_expiry() -> None:
    provider = OpenAIProvider(api_key="sk-test")
    options = UploadOptions(filename="a.jsonl", purpose="batch", namespace="org", expires_after_seconds=7200)
    assert provider.upload_fields(options) == [
        ("purpose", "batch"),
        ("expires_after[anchor]", "created_at"),
        ("expires_after[seconds]", "7200"),
    ]


def test_openai_list_query_and_page_parsing() -> None:
    provider = OpenAIProvider(api_key="sk-test")
    assert provider.list_query(limit=5, order="asc", purpose="batch", after="file-1") == {
        "limit": 5,
        "order": "asc",
        "purpose": "batch",
        "after": "file-1",
    }
    page = provider.parse_page(
        {
            "object": "list",
            "data": [
                {
                    "id": "file-2",
                    "bytes": 3,
                    "created_at": 9,
                    "filename": "x",
                    "purpose": "batch",
                    "status": "processed",
                }
            ],
            "has_more": True,
        }
    )
    assert ([f.id for f in page.files], page.has_more, page.cursor) == (["file-2"], True, "file-2")


def test_openai_error_bodies_are_parsed_field_by_field() -> None:
    provider = OpenAIProvider(api_key="sk-test")
    body = b'{"error": {"message": "no", "type": "invalid_request_error", "param": "purpose", "code": 7}}'
    assert provider.parse_error(body) == ("no", "purpose", None)
    assert provider.parse_error(b"<html>") == (None, None, None)
