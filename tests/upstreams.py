"""Fake OpenAI and Azure OpenAI Files APIs: real HTTP servers on 127.0.0.1, started by the tests.

Every JSON answer is validated with the official ``openai`` SDK's pydantic types before it is sent
(Azure's file object widens ``status`` to Azure's own states, see ``AzureFileObject``). Uploads are
parsed while they stream, chunked or not: the file's bytes go to a folder and only their size and
sha256 stay in memory, so a 256 MiB upload costs the fake one buffer. An upload that does not end
with its closing boundary and a complete body is discarded, as a real upstream would.

Faults are injected per operation with ``server.fail(operation, ...)``: an HTTP status, a hang
(for timeouts) or a connection reset after some bytes of the body (upload) or answer (content).
Registered as a pytest plugin by ``tests/conftest.py``; the fixtures are at the bottom.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import secrets
import socket
import string
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import pytest
from openai.pagination import SyncCursorPage
from openai.types import FileDeleted, FileObject
from openai.types.shared import ErrorObject

from providers.http import PassThroughProvider
from tenants.models import ProviderAccount
from tenants.services import provider_account_create

OPERATIONS = ("upload", "list", "retrieve", "content", "delete")
READ_SIZE = 256 * 1024


class AzureFileObject(FileObject):
    """Azure's file object: OpenAI's, with Azure's ``FileState`` values (it answers ``pending``)."""

    status: Literal["uploaded", "pending", "running", "processed", "error", "deleting", "deleted"]  # type: ignore[assignment]


@dataclass
class StoredFile:
    object: dict[str, Any]
    path: Path
    sha256: str
    seq: int


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names


@dataclass(frozen=True)
class ReceivedUpload:
    """One upload as the fake saw it, kept or not."""

    fields: dict[str, str]
    filename: str
    content_type: str
    size: int
    sha256: str
    is_complete: bool
    headers: dict[str, str]


@dataclass
class Fault:
    mode: str  # "status", "hang" or "reset"
    times: int
    status: int = 500
    after_bytes: int = 0
    retry_after: str = "7"
    message: str = "The server had an error while processing your request."
    param: str | None = None
    code: str | None = None


class IncompleteBody(Exception):
    """The client stopped sending before the body was whole."""


class _Reset(Exception):
    """The handler reset the connection on purpose; nothing more is written."""


class LengthBody:
    def __init__(self, rfile: Any, length: int) -> None:
        self.rfile, self.remaining = rfile, length

    def read(self, size: int) -> bytes:
        if self.remaining == 0:
            return b""
        data = self.rfile.read(min(size, self.remaining))
        if not data:
            raise IncompleteBody
        self.remaining -= len(data)
        return data


class ChunkedBody:
    """A ``Transfer-Encoding: chunked`` body; a missing terminating chunk is ``IncompleteBody``."""

    def __init__(self, rfile: Any) -> None:
        self.rfile, self.remaining, self.done = rfile, 0, False

    def read(self, size: int) -> bytes:
        if self.done:
            return b""
        if self.remaining == 0:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\r\n"):
                raise IncompleteBody
            try:
                self.remaining = int(line.split(b";")[0], 16)
            except ValueError:
                raise IncompleteBody from None
            if self.remaining == 0:
                while (trailer := self.rfile.readline(1024)) != b"\r\n":
                    if not trailer:
                        raise IncompleteBody
                self.done = True
                return b""
        data = self.rfile.read(min(size, self.remaining))
        if not data:
            raise IncompleteBody
        self.remaining -= len(data)
        if self.remaining == 0 and self.rfile.read(2) != b"\r\n":
            raise IncompleteBody
        return data


class MultipartReader:
    """A streaming ``multipart/form-data`` parser, written independently of the gateway's."""

    def __init__(self, body: Any, boundary: bytes) -> None:
        self.body = body
        self.delimiter = b"\r\n--" + boundary
        self.buffer = bytearray(b"\r\n")  # so the first boundary looks like every later one

    def _fill(self) -> None:
        chunk = self.body.read(READ_SIZE)
        if not chunk:
            raise IncompleteBody
        self.buffer += chunk

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _until(self, marker: bytes, limit: int) -> bytes:
        while (index := self.buffer.find(marker)) < 0:
            if len(self.buffer) > limit:
                raise ValueError("multipart headers too long")
            self._fill()
        data = bytes(self.buffer[:index])
        del self.buffer[: index + len(marker)]
        return data

    def data(self) -> Iterator[bytes]:
        """The current part's bytes, up to the next delimiter (which is consumed)."""
        keep = len(self.delimiter) - 1
        while True:
            index = self.buffer.find(self.delimiter)
            if index >= 0:
                if index:
                    yield bytes(self.buffer[:index])
                del self.buffer[: index + len(self.delimiter)]
                return
            if len(self.buffer) > keep:
                yield bytes(self.buffer[:-keep])
                del self.buffer[:-keep]
            self._fill()

    def parts(self) -> Iterator[dict[str, str]]:
        """Yield each part's headers; the caller consumes ``data()`` before asking for the next."""
        for _ in self.data():  # the preamble
            pass
        while (after := self._take(2)) != b"--":
            if after != b"\r\n":
                raise ValueError("malformed multipart delimiter")
            raw = self._until(b"\r\n\r\n", 16 * 1024).decode("utf-8")
            headers = {}
            for line in raw.split("\r\n"):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            yield headers
        while self.body.read(READ_SIZE):  # the epilogue, to the body's real end
            pass


def disposition(value: str) -> dict[str, str]:
    params = {}
    for item in value.split(";")[1:]:
        name, _, raw = item.strip().partition("=")
        params[name] = raw.strip('"').replace("%22", '"')
    return params


class FakeFilesServer:
    """An OpenAI-style (``flavor="openai"``) or Azure-style (``flavor="azure"``) Files API."""

    def __init__(self, root: Path, *, flavor: str, api_key: str, api_version: str = "2024-10-21") -> None:
        self.root = root
        self.flavor = flavor
        self.api_key = api_key
        # Azure only: a dated version goes in ?api-version=; "v1" is the newer /openai/v1 surface without it.
        self.api_version = api_version
        self.prefix = {"openai": "/v1/files", "azure": "/openai/files"}[flavor]
        if flavor == "azure" and api_version == "v1":
            self.prefix = "/openai/v1/files"
        self.files: dict[str, StoredFile] = {}
        self.requests: list[ReceivedRequest] = []
        self.uploads: list[ReceivedUpload] = []
        self.faults: dict[str, list[Fault]] = {}
        self.connections = 0
        self.compressed_answers = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._seq = 0
        root.mkdir(parents=True, exist_ok=True)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        """The ``base_url`` an account of this flavor is configured with."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1" if self.flavor == "openai" else f"http://{host}:{port}"

    def start(self) -> FakeFilesServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        with self.lock:
            for sock in self._sockets:  # wake handlers blocked on idle keep-alive connections
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self.httpd.server_close()

    # What tests use.

    def fail(self, operation: str, mode: str = "status", *, times: int = 1, **options: Any) -> None:
        """Make the next ``times`` calls of ``operation`` fail: ``status=``, ``"hang"`` or ``"reset"``."""
        assert operation in OPERATIONS
        self.faults.setdefault(operation, []).append(Fault(mode=mode, times=times, **options))

    def add_file(self, content: bytes, *, filename: str = "outside.txt", purpose: str = "assistants") -> str:
        """A file made directly on the upstream, outside the gateway. Returns its id."""
        file_id = self._new_id()
        path = self.root / file_id
        path.write_bytes(content)
        self._store(file_id, path, hashlib.sha256(content).hexdigest(), len(content), filename, purpose, "processed")
        return file_id

    def open_connections(self) -> int:
        with self.lock:
            return len(self._sockets)

    def content_of(self, file_id: str) -> bytes:
        return self.files[file_id].path.read_bytes()

    def calls(self, method: str, path_suffix: str = "") -> list[ReceivedRequest]:
        return [r for r in self.requests if r.method == method and r.path.endswith(self.prefix + path_suffix)]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``condition()`` holds: the fake's handler threads finish after the client returns."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "the fake upstream never reached the expected state"
            time.sleep(0.01)

    # Internals.

    def _new_id(self) -> str:
        if self.flavor == "azure":
            return "file-" + secrets.token_hex(16)
        return "file-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(22))

    def _store(
        self, file_id: str, path: Path, sha256: str, size: int, filename: str, purpose: str, status: str, **extra: Any
    ) -> dict[str, Any]:
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": size,
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": status,
            **extra,
        }
        with self.lock:
            self._seq += 1
            self.files[file_id] = StoredFile(object=obj, path=path, sha256=sha256, seq=self._seq)
        return obj

    def take_fault(self, operation: str) -> Fault | None:
        with self.lock:
            queue = self.faults.get(operation) or []
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
            return fault

    def file_model(self) -> type[FileObject]:
        return AzureFileObject if self.flavor == "azure" else FileObject


def _handler_for(server: FakeFilesServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_FakeHandler):
        fake = server

    return Handler


class _FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeFilesServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK cost 40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.fake.lock:
            self.fake.connections += 1
            self.fake._sockets.add(self.connection)

    def finish(self) -> None:
        with self.fake.lock:
            self.fake._sockets.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (_Reset, IncompleteBody, ConnectionError, OSError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    # Routing.

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        headers = {name.lower(): value for name, value in self.headers.items()}
        with self.fake.lock:
            self.fake.requests.append(ReceivedRequest(method, url.path, query, headers))
        rest = url.path.removeprefix(self.fake.prefix)
        if not url.path.startswith(self.fake.prefix) or (rest and not rest.startswith("/")):
            return self._error(404, "Invalid URL", code="unknown_url")
        parts = rest.strip("/").split("/") if rest.strip("/") else []
        operation = {
            ("POST", 0): "upload",
            ("GET", 0): "list",
            ("GET", 1): "retrieve",
            ("DELETE", 1): "delete",
            ("GET", 2): "content",
        }.get((method, len(parts)))
        if operation is None or (len(parts) == 2 and parts[1] != "content"):
            return self._error(404, "Invalid URL", code="unknown_url")
        fault = self.fake.take_fault(operation)
        if fault is not None and fault.mode == "hang":
            self.fake.stopping.wait(30)
            self._reset()
        if not self._is_authorized(headers):
            return self._refuse(method)
        expected_version = [] if self.fake.api_version == "v1" else [self.fake.api_version]
        if self.fake.flavor == "azure" and query.get("api-version", []) != expected_version:
            return self._error(400, "Missing or unsupported api-version query parameter.", param="api-version")
        if fault is not None and fault.mode == "status":
            return self._fail(method, fault)
        if fault is not None and fault.mode == "reset" and operation not in ("upload", "content"):
            self._reset()
        file_id = parts[0] if parts else ""
        if operation == "upload":
            return self._upload(headers, fault)
        if operation == "list":
            return self._list(query)
        stored = self.fake.files.get(file_id)
        if stored is None:
            return self._error(404, f"No such File object: {file_id}", param="id")
        if operation == "retrieve":
            return self._retrieve(stored)
        if operation == "content":
            return self._content(stored, fault)
        return self._delete(file_id, stored)

    def _is_authorized(self, headers: dict[str, str]) -> bool:
        if self.fake.flavor == "azure":
            return headers.get("api-key") == self.fake.api_key
        return headers.get("authorization") == f"Bearer {self.fake.api_key}"

    def _refuse(self, method: str) -> None:
        if method == "POST":
            self._discard_body()
        key = self.headers.get("api-key") or self.headers.get("authorization", "").removeprefix("Bearer ")
        shown = f"{key[:6]}***{key[-4:]}" if len(key) > 10 else key
        self._error(
            401,
            f"Incorrect API key provided: {shown}. You can find your API key in your account settings.",
            code="invalid_api_key",
        )

    def _fail(self, method: str, fault: Fault) -> None:
        if method == "POST":
            self._discard_body()
        headers = {"Retry-After": fault.retry_after} if fault.status == 429 else {}
        code = "rate_limit_exceeded" if fault.status == 429 else fault.code
        self._error(fault.status, fault.message, param=fault.param, code=code, headers=headers)

    # Operations.

    def _upload(self, headers: dict[str, str], fault: Fault | None) -> None:
        body: Any
        if "chunked" in headers.get("transfer-encoding", ""):
            body = ChunkedBody(self.rfile)
        else:
            body = LengthBody(self.rfile, int(headers.get("content-length", "0")))
        if fault is not None and fault.mode == "reset":
            body = _ResettingBody(body, fault.after_bytes, self._reset)
        boundary = disposition("x;" + headers.get("content-type", "").partition(";")[2]).get("boundary", "")
        reader = MultipartReader(body, boundary.encode())
        fields: dict[str, str] = {}
        filename, content_type, size, digest = "", "", 0, hashlib.sha256()
        path = self.fake.root / f"upload-{secrets.token_hex(8)}.part"
        has_file = is_complete = False
        try:
            for part in reader.parts():
                params = disposition(part.get("content-disposition", ""))
                if "filename" in params:
                    has_file, filename = True, params["filename"]
                    content_type = part.get("content-type", "")
                    with open(path, "wb") as out:
                        for chunk in reader.data():
                            out.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                else:
                    fields[params.get("name", "")] = b"".join(reader.data()).decode()
            is_complete = True
        finally:
            with self.fake.lock:
                self.fake.uploads.append(
                    ReceivedUpload(fields, filename, content_type, size, digest.hexdigest(), is_complete, headers)
                )
            if not is_complete:
                path.unlink(missing_ok=True)
        if not has_file or "purpose" not in fields:
            path.unlink(missing_ok=True)
            return self._error(400, "Missing required parameter: 'file' or 'purpose'.", param="file")
        file_id = self.fake._new_id()
        final = self.fake.root / file_id
        path.rename(final)
        extra = {}
        if "expires_after[seconds]" in fields:
            extra["expires_at"] = int(time.time()) + int(fields["expires_after[seconds]"])
        status = "pending" if self.fake.flavor == "azure" else "processed"
        obj = self.fake._store(file_id, final, digest.hexdigest(), size, filename, fields["purpose"], status, **extra)
        if self.fake.flavor == "azure":
            # Azure: 201 Created with a Location header (learn.microsoft.com .../files/upload).
            return self._json(
                201, obj, self.fake.file_model(), headers={"Location": f"{self.fake.url}{self.fake.prefix}/{file_id}"}
            )
        return self._json(200, obj, FileObject)

    def _list(self, query: dict[str, list[str]]) -> None:
        purpose = query.get("purpose", [None])[0]
        limit = int(query.get("limit", ["10000"])[0])
        order = query.get("order", ["desc"])[0]
        after = query.get("after", [None])[0]
        with self.fake.lock:
            files = sorted(self.fake.files.values(), key=lambda f: (f.object["created_at"], f.seq))
        if order == "desc":
            files.reverse()
        items = [f.object for f in files if purpose is None or f.object["purpose"] == purpose]
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        page = items[:limit]
        body = {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
        self._json(200, body, SyncCursorPage[self.fake.file_model()])  # type: ignore[index]

    def _retrieve(self, stored: StoredFile) -> None:
        if stored.object["status"] == "pending":
            stored.object["status"] = "processed"  # Azure has finished processing by the first look
        self._json(200, stored.object, self.fake.file_model())

    def _content(self, stored: StoredFile, fault: Fault | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(stored.object["bytes"]))
        self.end_headers()
        sent = 0
        with open(stored.path, "rb") as handle:
            while chunk := handle.read(64 * 1024):
                if fault is not None and fault.mode == "reset" and sent + len(chunk) > fault.after_bytes:
                    self.wfile.write(chunk[: fault.after_bytes - sent])
                    self._reset()
                self.wfile.write(chunk)
                sent += len(chunk)

    def _delete(self, file_id: str, stored: StoredFile) -> None:
        with self.fake.lock:
            self.fake.files.pop(file_id, None)
        stored.path.unlink(missing_ok=True)
        self._json(200, {"id": file_id, "object": "file", "deleted": True}, FileDeleted)

    # Answers.

    def _json(self, status: int, body: dict[str, Any], model: Any, headers: dict[str, str] | None = None) -> None:
        model.model_validate(body)  # the fake must only say what the real API could say
        self._send_json(status, body, headers)

    def _error(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        error_type = "invalid_request_error" if status < 500 else "server_error"
        error = {"message": message, "type": error_type, "param": param, "code": code}
        ErrorObject.model_validate(error)
        self._send_json(status, {"error": error}, headers)

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None) -> None:
        data = json.dumps(body).encode()
        # As OpenAI's edge does: JSON answers are compressed when the client accepts it.
        compressed = "gzip" in self.headers.get("accept-encoding", "")
        if compressed:
            data = gzip.compress(data)
            with self.fake.lock:
                self.fake.compressed_answers += 1
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if compressed:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _discard_body(self) -> None:
        if "chunked" in self.headers.get("transfer-encoding", ""):
            body: Any = ChunkedBody(self.rfile)
        else:
            body = LengthBody(self.rfile, int(self.headers.get("content-length") or 0))
        while body.read(READ_SIZE):
            pass

    def _reset(self) -> None:
        """Abort the connection with a TCP RST, as a crashed upstream or a middlebox would."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise _Reset


@dataclass
class _ResettingBody:
    body: Any
    after_bytes: int
    reset: Callable[[], None]
    received: int = field(default=0)

    def read(self, size: int) -> bytes:
        if self.received >= self.after_bytes:
            self.reset()
        data = self.body.read(min(size, max(1, self.after_bytes - self.received)))
        self.received += len(data)
        return data


# Fixtures.

OPENAI_KEY = "sk-upstream-0123456789abcdefXYZ"
AZURE_KEY = "0123456789abcdef0123456789abcdef"
OPENAI_ORG = "org-UpstreamOrg123"
OPENAI_PROJECT = "proj_UpstreamProject123"


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the retry backoff short so fault tests stay fast."""
    monkeypatch.setattr(PassThroughProvider, "retry_backoff_seconds", 0.01)


@pytest.fixture
def fake_openai(tmp_path: Path, fast_retries: None) -> Iterator[FakeFilesServer]:
    server = FakeFilesServer(tmp_path / "fake-openai", flavor="openai", api_key=OPENAI_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def fake_azure(tmp_path: Path, fast_retries: None) -> Iterator[FakeFilesServer]:
    server = FakeFilesServer(tmp_path / "fake-azure", flavor="azure", api_key=AZURE_KEY).start()
    yield server
    server.stop()


def openai_config(server: FakeFilesServer, **overrides: Any) -> dict[str, Any]:
    return {
        "api_key": server.api_key,
        "base_url": server.url,
        "organization": OPENAI_ORG,
        "project": OPENAI_PROJECT,
        **overrides,
    }


def azure_config(server: FakeFilesServer, **overrides: Any) -> dict[str, Any]:
    return {"api_key": server.api_key, "base_url": server.url, **overrides}


def add_upstream_account(
    tenant: Any, server: FakeFilesServer, *, name: str | None = None, **overrides: Any
) -> ProviderAccount:
    """A provider account of ``tenant`` on ``server``, named after the flavor unless ``name`` is given."""
    kind = "openai" if server.flavor == "openai" else "azure_openai"
    config = openai_config(server, **overrides) if server.flavor == "openai" else azure_config(server, **overrides)
    return provider_account_create(
        organization=tenant.org, name=name or kind.replace("_", "-"), kind=kind, config=config
    )
