"""providers/transport.py against raw servers on 127.0.0.1: bodiless requests through urllib3 behave as
through httpx's own transport (first bytes early, failures as httpx's exceptions, no half-read
connection reused, certificates verified), requests with a body stay on httpx's transport, and an
``ALL_PROXY`` leaves everything to httpx."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config.errors import UpstreamError, UpstreamUnavailable
from providers.base import CHUNK_SIZE
from providers.openai import OpenAIProvider
from providers.transport import BodilessViaUrllib3
from tests.providers.test_http import RecordingProxy
from tests.upstreams import FakeFilesServer, openai_config

MiB = 1024 * 1024
Handler = Callable[[socket.socket, bytes], None]


class RawServer:
    """Answers each request on each connection with ``handler(conn, request_head)``; counts connections."""

    def __init__(self, handler: Handler, *, wrap: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.wrap = wrap
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.wrap is not None:
                conn = self.wrap.wrap_socket(conn, server_side=True)
            with conn:
                pending = b""
                while True:
                    while b"\r\n\r\n" not in pending:
                        data = conn.recv(65536)
                        if not data:
                            return
                        pending += data
                    head, _, pending = pending.partition(b"\r\n\r\n")
                    self.handler(conn, head)
        except OSError:
            return

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler, **options: ssl.SSLContext) -> RawServer:
        servers.append(RawServer(handler, **options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def answer(conn: socket.socket, body: bytes, *, length: int | None = None) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {length or len(body)}\r\n\r\n"
    conn.sendall(head.encode() + body)


def transport() -> BodilessViaUrllib3:
    return BodilessViaUrllib3(max_idle_connections=4)


def test_the_first_bytes_of_a_download_come_through_before_the_upstream_sends_the_rest(serve) -> None:
    rest_may_go = threading.Event()

    def slow(conn: socket.socket, head: bytes) -> None:
        answer(conn, b"a" * 1000, length=1000 + 2 * MiB)
        rest_may_go.wait(10)
        conn.sendall(b"b" * 2 * MiB)

    server = serve(slow)
    content = OpenAIProvider(api_key="sk-test", base_url=server.url()).open_content("file-abc")
    chunks = iter(content.chunks)
    assert next(chunks) == b"a" * 1000  # arrived while the upstream still holds the rest back
    rest_may_go.set()
    rest = b"".join(chunks)
    assert (content.size, rest) == (1000 + 2 * MiB, b"b" * 2 * MiB)


def test_a_body_left_unread_closes_its_connection_and_one_read_whole_is_reused(serve) -> None:
    server = serve(lambda conn, head: answer(conn, b"z" * (3 * MiB)))
    with httpx.Client(transport=transport()) as client:
        with client.stream("GET", server.url() + "/files/a/content") as response:
            assert len(next(response.iter_raw())) <= CHUNK_SIZE
        assert client.get(server.url() + "/files/b/content").content == b"z" * (3 * MiB)
        assert client.get(server.url() + "/files/c/content").content == b"z" * (3 * MiB)
    assert server.connections == 2  # a fresh one after the half-read body; the whole-read one again


def reset_midway(conn: socket.socket, head: bytes) -> None:
    answer(conn, b"x" * 1000, length=MiB)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def test_upstream_failures_are_the_exceptions_httpx_raises_for_them(serve) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{unused.getsockname()[1]}/"
    silent = serve(lambda conn, head: threading.Event().wait(5))
    cut = serve(reset_midway)
    with httpx.Client(transport=transport(), timeout=httpx.Timeout(0.5)) as client:
        with pytest.raises(httpx.ConnectError):
            client.get(refused)
        with pytest.raises(httpx.ReadTimeout):
            client.get(silent.url())
        with pytest.raises(httpx.RemoteProtocolError), client.stream("GET", cut.url()) as response:
            response.read()
        with pytest.raises(httpx.ConnectError):
            client.get("http://no-such-host.invalid/")


def test_a_download_cut_off_upstream_is_an_upstream_error_after_its_first_bytes(serve, settings) -> None:
    settings.UPSTREAM_RETRIES = 0
    server = serve(reset_midway)
    content = OpenAIProvider(api_key="sk-test", base_url=server.url()).open_content("file-abc")
    chunks = iter(content.chunks)
    assert next(chunks) == b"x" * 1000
    with pytest.raises(UpstreamError):
        next(chunks)


def test_a_request_with_a_body_goes_through_httpxs_own_transport(fake_openai: FakeFilesServer) -> None:
    fast = transport()
    seen: list[str] = []

    class Recording(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request.method)
            return original.handle_request(request)

    original, fast.with_body = fast.with_body, Recording()
    body = b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n--b\r\n'
    body += b'Content-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nhello\r\n--b--\r\n'
    headers = {"Authorization": f"Bearer {openai_config(fake_openai)['api_key']}"}
    with httpx.Client(transport=fast, headers=headers) as client:
        created = client.post(
            f"{fake_openai.url}/files",
            content=iter([body]),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert created.status_code == 200, created.text
        assert client.get(f"{fake_openai.url}/files/{created.json()['id']}").json()["bytes"] == 5
    assert seen == ["POST"]  # the GET went through urllib3


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "filegate test upstream")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_an_upstream_certificate_is_verified_against_ssl_cert_file(serve, tmp_path, monkeypatch, settings) -> None:
    settings.UPSTREAM_RETRIES = 0
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = serve(lambda conn, head: answer(conn, b"over tls"), wrap=context)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with pytest.raises(UpstreamUnavailable):
        OpenAIProvider(api_key="sk-test", base_url=server.url("https")).open_content("file-abc")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    content = OpenAIProvider(api_key="sk-test", base_url=server.url("https")).open_content("file-abc")
    assert b"".join(content.chunks) == b"over tls"


def test_with_all_proxy_set_every_call_goes_through_httpx_and_the_proxy(
    fake_openai: FakeFilesServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    proxy = RecordingProxy()
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{proxy.port}")
    try:
        provider = OpenAIProvider(**openai_config(fake_openai))
        assert provider.retrieve("file-viaproxy").filename == "p.txt"
    finally:
        proxy.close()
    # Only this upstream's requests: a thread another test left behind may use the proxy meanwhile.
    ours = [line for line, _ in proxy.asked if f" {fake_openai.url}/" in line]
    assert ours == [f"GET {fake_openai.url}/files/file-viaproxy HTTP/1.1"]
    assert fake_openai.requests == []
