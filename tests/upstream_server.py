"""What every fake upstream Files API shares: a real HTTP server on 127.0.0.1, started by the tests.

A fake is a ``FakeServer`` subclass (its state: files, received requests and uploads, queued
faults) with a ``FakeHandler`` subclass that speaks its API. The base does the rest once: server
lifecycle, routing of the five operations (``{prefix}``, ``{prefix}/{id}``, ``{prefix}/{id}/content``),
fault injection, streaming multipart parsing (chunked or not: the file's bytes go to a folder and
only their size and sha256 stay in memory), downloads streamed from disk, resets, and JSON answers
validated with the official SDK's pydantic types before they are sent.

Faults are queued per operation with ``server.fail(operation, ...)``: an HTTP status (in the API's
own error envelope, with ``Retry-After`` on 429 and 529 unless ``retry_after=None``), a hang (for
timeouts) or a TCP reset after ``after_bytes`` of the upload body or of the download.
``server.max_upload_bytes`` makes uploads over that size fail with the API's own 413, answered as
soon as the limit is crossed (at once when Content-Length says so).

The fakes: ``tests/upstreams.py`` (OpenAI, Azure OpenAI), ``tests/upstream_anthropic.py``,
``tests/upstream_groq.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import json
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qs, urlsplit

S = TypeVar("S", bound="FakeServer")
OPERATIONS = ("upload", "list", "retrieve", "content", "delete")
READ_SIZE = 256 * 1024
FIELD_LIMIT = 64 * 1024  # a form field (not the file) longer than this is refused as malformed


@dataclass
class StoredFile:
    object: dict[str, Any]  # the file object in the API's own shape
    path: Path
    sha256: str
    seq: int
    created: float  # unix seconds, the order lists are sorted in
    shared: bool = False  # the bytes are shared by seeded files: never unlinked on delete


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
    retry_after: str | None = "7"  # sent with 429 and 529 answers; None sends no Retry-After
    message: str | None = None  # None: the API's own wording for the status
    param: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class ApiError:
    """An error answer before it is put in the API's envelope."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Multipart:
    """A multipart upload as parsed: its plain fields and the one part that carried a filename."""

    fields: dict[str, str]
    file_field: str  # the name of the file part; "" when there was none
    filename: str
    content_type: str
    size: int
    sha256: str
    path: Path  # the file's bytes, in the server's folder; absent when there was no file part


class IncompleteBody(Exception):
    """The client stopped sending before the body was whole."""


class Reset(Exception):
    """The handler reset the connection on purpose; nothing more is written."""


class TooLarge(Exception):
    """The request body crossed the server's ``max_upload_bytes``."""


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


@dataclass
class ResettingBody:
    """Resets the connection once ``after_bytes`` of the body have been read."""

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


@dataclass
class CappedBody:
    """Raises ``TooLarge`` as soon as more than ``limit`` bytes of the body have arrived."""

    body: Any
    limit: int
    received: int = field(default=0)

    def read(self, size: int) -> bytes:
        data = self.body.read(size)
        self.received += len(data)
        if self.received > self.limit:
            raise TooLarge
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

    def text(self) -> str:
        """The current part as text: a form field, never the file."""
        value = bytearray()
        for chunk in self.data():
            value += chunk
            if len(value) > FIELD_LIMIT:
                raise ValueError("multipart field too long")
        return value.decode()

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


def serving(server: S) -> Iterator[S]:
    """Run ``server`` for a fixture's duration: ``yield from serving(FakeX(...))``."""
    server.start()
    yield server
    server.stop()


def conforms(model: Any, body: Any, *, exact: bool = False) -> None:
    """Validate ``body`` with an SDK type; ``exact`` also refuses keys the type does not declare.

    The SDKs' models accept unknown keys, so ``exact`` is what catches a field the real API does
    not send (an ``object`` on an Anthropic list, a ``status`` on a Groq file).
    """
    model.model_validate(body)  # the fake must only say what the real API could say
    if exact:
        extra = set(body) - set(model.model_fields)
        assert not extra, f"{model.__name__} has no {sorted(extra)}"


class FakeServer:
    """State and lifecycle of one fake Files API; subclasses name their API's handler and ids."""

    kind: str  # the provider kind an account on this fake has
    handler: ClassVar[type[FakeHandler]]
    prefix: str

    def __init__(self, root: Path, *, api_key: str) -> None:
        self.root = root
        self.api_key = api_key
        self.files: dict[str, StoredFile] = {}
        self.requests: list[ReceivedRequest] = []
        self.uploads: list[ReceivedUpload] = []
        self.faults: dict[str, list[Fault]] = {}
        self.max_upload_bytes: int | None = None
        self.connections = 0
        self.compressed_answers = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._seq = 0
        root.mkdir(parents=True, exist_ok=True)
        handler = type(f"{type(self).__name__}Handler", (self.handler,), {"fake": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``: the ``base_url`` of the anthropic and groq SDKs (they add the paths)."""
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The ``base_url`` an account on this fake is configured with."""
        return self.origin

    def account_config(self, **overrides: Any) -> dict[str, Any]:
        """The settings of a provider account on this fake."""
        return {"api_key": self.api_key, "base_url": self.url, **overrides}

    def start(self) -> FakeServer:
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

    def add_file(self, content: bytes, **fields: Any) -> str:
        """A file made directly on the upstream, outside the gateway; ``fields`` as ``file_object`` takes them.

        Returns its id.
        """
        path, sha256 = self.write(content)
        return str(self.register(path, sha256, len(content), time.time(), **fields)["id"])

    def seed(self, count: int, content: bytes = b"{}\n", **fields: Any) -> list[str]:
        """``count`` files made outside the gateway, fast: they share one copy of ``content``.

        Their creation times are one second apart, all in the past, so the order is the order made.
        """
        path, sha256 = self.write(content)
        start = time.time() - count - 1
        made = [self.register(path, sha256, len(content), start + i, shared=True, **fields) for i in range(count)]
        return [str(obj["id"]) for obj in made]

    # What the fakes build on.

    def new_id(self) -> str:
        raise NotImplementedError

    def file_object(self, file_id: str, *, size: int, created: float, **fields: Any) -> dict[str, Any]:
        """The API's file object for a new file."""
        raise NotImplementedError

    def register(
        self, path: Path, sha256: str, size: int, created: float, *, shared: bool = False, **fields: Any
    ) -> dict[str, Any]:
        """Keep a new file whose bytes are at ``path`` (moved to the file's id); return its file object."""
        file_id = self.new_id()
        obj = self.file_object(file_id, size=size, created=created, **fields)
        if not shared:
            path = path.rename(self.root / file_id)
        with self.lock:
            self._seq += 1
            self.files[file_id] = StoredFile(obj, path, sha256, self._seq, created, shared)
        return obj

    def write(self, content: bytes) -> tuple[Path, str]:
        """Store ``content`` under a fresh name; return its path and sha256."""
        path = self.root / f"blob-{secrets.token_hex(8)}"
        path.write_bytes(content)
        return path, hashlib.sha256(content).hexdigest()

    def ordered(self, *, newest_first: bool = True) -> list[StoredFile]:
        with self.lock:
            files = sorted(self.files.values(), key=lambda f: (f.created, f.seq))
        return files[::-1] if newest_first else files

    def remove(self, file_id: str) -> None:
        with self.lock:
            stored = self.files.pop(file_id, None)
        if stored is not None and not stored.shared:
            stored.path.unlink(missing_ok=True)

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


class FakeHandler(BaseHTTPRequestHandler):
    """Routing, faults, bodies and answers; subclasses implement their API's five operations."""

    protocol_version = "HTTP/1.1"
    fake: FakeServer
    unknown_url = ApiError(404, "Invalid URL", code="unknown_url")
    _raw_body: Any = None  # this request's body reader, once asked for

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
        except (Reset, IncompleteBody, ConnectionError, OSError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    # The API, implemented by each fake.

    def refusal(self, request: ReceivedRequest) -> ApiError | None:
        """Why the API refuses this request before looking at it (a key, a header), or None."""
        return None

    def send_api_error(self, error: ApiError) -> None:
        """Answer ``error`` in the API's envelope."""
        raise NotImplementedError

    def fault_message(self, status: int) -> str:
        return "Internal server error"

    def not_found(self, file_id: str) -> ApiError:
        raise NotImplementedError

    def too_large(self) -> ApiError:
        return ApiError(413, "Request Entity Too Large")

    def upload(self, request: ReceivedRequest, fault: Fault | None) -> None:
        raise NotImplementedError

    def list_files(self, request: ReceivedRequest) -> None:
        raise NotImplementedError

    def retrieve(self, stored: StoredFile) -> None:
        raise NotImplementedError

    def content(self, stored: StoredFile, fault: Fault | None) -> None:
        raise NotImplementedError

    def delete(self, file_id: str, stored: StoredFile) -> None:
        raise NotImplementedError

    # Routing.

    def _route(self, method: str) -> None:
        self._raw_body = None
        url = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = ReceivedRequest(method, url.path, parse_qs(url.query), headers)
        with self.fake.lock:
            self.fake.requests.append(request)
        operation, file_id = self._operation(method, url.path)
        if operation is None:
            return self._refuse(method, self.unknown_url)
        fault = self.fake.take_fault(operation)
        if fault is not None and fault.mode == "hang":
            self.fake.stopping.wait(30)
            self.reset()
        refusal = self.refusal(request)
        if refusal is not None:
            return self._refuse(method, refusal)
        if fault is not None and fault.mode == "status":
            return self._refuse(method, self._fault_error(fault))
        if fault is not None and fault.mode == "reset" and operation not in ("upload", "content"):
            self.reset()
        if operation == "upload":
            try:
                return self.upload(request, fault)
            except TooLarge:
                return self._too_large()
        if operation == "list":
            return self.list_files(request)
        stored = self.fake.files.get(file_id)
        if stored is None:
            return self.send_api_error(self.not_found(file_id))
        if operation == "retrieve":
            return self.retrieve(stored)
        if operation == "content":
            return self.content(stored, fault)
        return self.delete(file_id, stored)

    def _operation(self, method: str, path: str) -> tuple[str | None, str]:
        rest = path.removeprefix(self.fake.prefix)
        if not path.startswith(self.fake.prefix) or (rest and not rest.startswith("/")):
            return None, ""
        parts = rest.strip("/").split("/") if rest.strip("/") else []
        if len(parts) == 2 and parts[1] != "content":
            return None, ""
        operation = {
            ("POST", 0): "upload",
            ("GET", 0): "list",
            ("GET", 1): "retrieve",
            ("DELETE", 1): "delete",
            ("GET", 2): "content",
        }.get((method, len(parts)))
        return operation, parts[0] if parts else ""

    def _refuse(self, method: str, error: ApiError) -> None:
        """Answer ``error``; the body of a refused POST is read to its end (and dropped) first."""
        if method == "POST":
            self.discard_body()
        self.send_api_error(error)

    def _too_large(self) -> None:
        """Answer the 413 at once, then drop the rest of the body (so the client reads the answer) and close."""
        error = self.too_large()
        self.send_api_error(dataclasses.replace(error, headers={**error.headers, "Connection": "close"}))
        self.wfile.flush()
        self.discard_body()

    def _fault_error(self, fault: Fault) -> ApiError:
        headers = {}
        if fault.status in (429, 529) and fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        message = fault.message or self.fault_message(fault.status)
        return ApiError(fault.status, message, param=fault.param, code=fault.code, headers=headers)

    # Bodies.

    def body(self) -> Any:
        """The request body as a reader, chunked or by length, capped at ``max_upload_bytes``.

        Raises ``TooLarge`` at once when Content-Length is over the cap, before a byte is read.
        """
        raw = self._raw()
        limit = self.fake.max_upload_bytes
        if limit is None:
            return raw
        if isinstance(raw, LengthBody) and raw.remaining > limit:
            raise TooLarge
        return CappedBody(raw, limit)

    def discard_body(self) -> None:
        """Read what is left of the body and drop it."""
        raw = self._raw()
        while raw.read(READ_SIZE):
            pass

    def _raw(self) -> Any:
        if self._raw_body is None:
            if "chunked" in self.headers.get("transfer-encoding", ""):
                self._raw_body = ChunkedBody(self.rfile)
            else:
                self._raw_body = LengthBody(self.rfile, int(self.headers.get("content-length") or 0))
        return self._raw_body

    def receive_multipart(self, request: ReceivedRequest, fault: Fault | None) -> Multipart:
        """Parse the multipart body while it streams; the file part goes to disk, hashed.

        Every upload is recorded in ``fake.uploads``. A body that ends early (or is reset, or
        crosses ``max_upload_bytes``) raises, and its bytes are discarded.
        """
        body = self.body()
        if fault is not None and fault.mode == "reset":
            body = ResettingBody(body, fault.after_bytes, self.reset)
        boundary = disposition("x;" + request.headers.get("content-type", "").partition(";")[2]).get("boundary", "")
        reader = MultipartReader(body, boundary.encode())
        path = self.fake.root / f"upload-{secrets.token_hex(8)}.part"
        received = Multipart({}, "", "", "", 0, "", path)
        digest, is_complete = hashlib.sha256(), False
        try:
            for part in reader.parts():
                params = disposition(part.get("content-disposition", ""))
                if "filename" not in params:
                    received.fields[params.get("name", "")] = reader.text()
                    continue
                received.file_field, received.filename = params.get("name", ""), params["filename"]
                received.content_type = part.get("content-type", "")
                with open(path, "wb") as out:
                    for chunk in reader.data():
                        out.write(chunk)
                        digest.update(chunk)
                        received.size += len(chunk)
            is_complete = True
        finally:
            received.sha256 = digest.hexdigest()
            upload = ReceivedUpload(
                received.fields,
                received.filename,
                received.content_type,
                received.size,
                received.sha256,
                is_complete,
                request.headers,
            )
            with self.fake.lock:
                self.fake.uploads.append(upload)
            if not is_complete:
                path.unlink(missing_ok=True)
        return received

    def reset(self) -> None:
        """Abort the connection with a TCP RST, as a crashed upstream or a middlebox would."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise Reset

    # Answers.

    def stream_file(self, stored: StoredFile, size: int, content_type: str, fault: Fault | None) -> None:
        """Send the file's bytes from disk; a ``reset`` fault cuts the connection after ``after_bytes``."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        sent = 0
        with open(stored.path, "rb") as handle:
            while chunk := handle.read(64 * 1024):
                if fault is not None and fault.mode == "reset" and sent + len(chunk) > fault.after_bytes:
                    self.wfile.write(chunk[: fault.after_bytes - sent])
                    self.wfile.flush()
                    self.reset()
                self.wfile.write(chunk)
                sent += len(chunk)

    def answer(
        self, status: int, body: dict[str, Any], model: Any, headers: dict[str, str] | None = None, exact: bool = False
    ) -> None:
        conforms(model, body, exact=exact)
        self.send_json(status, body, headers)

    def send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        # As the providers' edges do: JSON answers are compressed when the client accepts it.
        compressed = "gzip" in self.headers.get("accept-encoding", "")
        if compressed:
            data = gzip.compress(data, compresslevel=1)  # a list of 10,000 files: ~10 ms instead of ~60 at level 9
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
