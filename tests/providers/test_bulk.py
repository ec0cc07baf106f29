"""BulkTransport: uploads and downloads over plain http.client connections, pooled and checked."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import threading
import time
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
    return provider.transport._idle


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


def _self_signed(tmp_path: Any) -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_a_chunked_upload_goes_out_over_tls(tmp_path):
    """OpenAI is https: a chunked body must go out over an SSLSocket (which has no sendmsg)."""
    import ssl

    import httpx

    from providers.bulk import BulkTransport

    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        raw, _ = server.accept()
        with server_ctx.wrap_socket(raw, server_side=True) as conn:
            data = b""
            while not data.endswith(b"\r\n0\r\n\r\n"):
                piece = conn.recv(65536)
                if not piece:
                    break
                data += piece
            received.append(data)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=cert)
    client = httpx.Client(transport=BulkTransport(verify=client_ctx))
    try:
        response = client.post(f"https://localhost:{port}/v1/files", content=iter([b"a" * 100, b"b" * 50]))
        assert response.status_code == 200
        assert response.read() == b"ok"
    finally:
        client.close()
        thread.join(5)
        server.close()
    head, _, body = received[0].partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"64\r\n" + b"a" * 100 + b"\r\n32\r\n" + b"b" * 50 + b"\r\n0\r\n\r\n"


def test_an_os_error_from_the_body_iterator_propagates_at_once(fake_openai):
    """Not mistaken for a write error (then a wait for an answer to a request that never ends)."""
    provider = OpenAIProvider(**openai_config(fake_openai, timeout=3))

    def chunks():
        yield os.urandom(MiB)
        raise OSError("the spool file went away")

    started = time.monotonic()
    with pytest.raises(OSError, match="spool file went away"):
        provider.upload(FileStream(chunks(), max_bytes=100 * MiB, too_large_message="x"), options())
    assert time.monotonic() - started < 2
    assert not fake_openai.files
    assert idle(provider) == []


def test_a_body_on_a_delete_is_sent_not_left_for_the_next_request():
    """Whatever the method, a request that declares a body sends it: else the server reads the
    next request on the kept-alive connection as this one's body."""
    import httpx

    from providers.bulk import BulkTransport

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    bodies: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            lines = head.lower().split(b"\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length"))
            conn.settimeout(2)
            while len(rest) < length:
                piece = conn.recv(65536)
                if not piece:
                    break
                rest += piece
            bodies.append(rest)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = httpx.Client(transport=BulkTransport())
    try:
        response = client.request("DELETE", f"http://127.0.0.1:{port}/v1/files/x", content=b'{"a": 1}')
        assert response.status_code == 200
    finally:
        client.close()
        thread.join(5)
        server.close()
    assert bodies == [b'{"a": 1}']


class TunnelProxy:
    """A forward proxy that only tunnels (CONNECT), and records what it was asked."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.asked: list[tuple[str, str]] = []  # (CONNECT target, Proxy-Authorization)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(4096)
        lines = head.decode().split("\r\n")
        method, target, _ = lines[0].split(" ")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        self.asked.append((f"{method} {target}", headers.get("Proxy-Authorization", "")))
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()


def test_a_proxy_from_the_environment_tunnels_every_call(fake_openai, monkeypatch):
    proxy = TunnelProxy()
    monkeypatch.setenv("HTTP_PROXY", f"http://gate:s%40fe@127.0.0.1:{proxy.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        provider = OpenAIProvider(**openai_config(fake_openai))
        content = os.urandom(2 * MiB)
        remote = provider.upload(stream(content), options())
        assert b"".join(provider.open_content(remote.id)) == content
        assert provider.retrieve(remote.id).id == remote.id
    finally:
        proxy.close()
    upstream = fake_openai.url.split("//")[1].split("/")[0]
    assert proxy.asked and all(asked == (f"CONNECT {upstream}", "Basic Z2F0ZTpzQGZl") for asked in proxy.asked)
    assert len(fake_openai.requests) == 3


def test_no_proxy_skips_the_proxy(fake_openai, monkeypatch):
    proxy = TunnelProxy()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        OpenAIProvider(**openai_config(fake_openai)).check()
    finally:
        proxy.close()
    assert proxy.asked == [] and len(fake_openai.requests) == 1
