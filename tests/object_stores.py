"""Real object stores for the tests: moto's S3 server and the gcp-storage-emulator.

Both run as separate processes, started once per test session on free ports on 127.0.0.1 and
stopped by PID; every test gets buckets of its own.

- ``moto_s3``: ``moto_server`` with IAM authentication switched on once an administrator key has
  been made, so a wrong key is refused (403) and a policy can refuse a call midway, as on AWS.
  moto refuses non-final multipart parts under 5 MiB, as S3 does.
- ``gcs_emulator``: ``gcp-storage-emulator --in-memory``. It lacks two things the GCS tests
  need, read in its source (``gcp_storage_emulator/handlers/objects.py``, ``storage.py``): object
  listings ignore ``maxResults``/``pageToken`` (everything comes in one page), and it checks no
  credentials. ``GCSFront`` makes up for them honestly: a proxy on 127.0.0.1 in front of the
  emulator that pages listings the way the GCS JSON API documents it, records every request
  (method, path, ``Content-Range``, status), can fail chosen requests, and serves an OAuth token
  endpoint that verifies service-account assertions against the public keys it was given (and
  then accepts only the tokens it issued). Two more quirks: the emulator appends each resumable
  chunk by rewriting the whole partial object (a 200 MiB upload takes it seconds), and it
  answers ``DELETE`` on a session with 501. Tests that measure memory talk to the emulator
  directly, so the in-process proxy's buffers are not counted.

Registered as a pytest plugin by ``tests/conftest.py``; the fixtures are at the bottom.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gc
import json
import secrets
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from providers.base import Store
from providers.gcs import GCSStore
from providers.s3 import S3Store

BIN = Path(sys.executable).parent  # the servers' commands live beside the interpreter running the tests
REGION = "us-east-1"
MIB = 1024 * 1024
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A server started as a child process; ``stop()`` ends exactly that process, by its PID."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, name: str, command: list[str], port: int, log: Path) -> ServerProcess:
        with open(log, "wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        server = cls(name=name, port=port, process=process, log=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited at start: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
            time.sleep(0.05)
        server.stop()
        raise RuntimeError(f"{name} did not start listening within 30 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


# S3: moto.


@dataclass
class MotoS3:
    """moto's S3 (and IAM) server with authentication on; ``admin`` may do anything."""

    server: ServerProcess
    access_key_id: str
    secret_access_key: str

    @property
    def url(self) -> str:
        return self.server.url

    session: boto3.session.Session = field(default_factory=boto3.session.Session)

    def client(self, service: str = "s3", *, access_key_id: str = "", secret_access_key: str = "") -> Any:
        """A client on this server; the administrator's unless another key is given."""
        return self.session.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=access_key_id or self.access_key_id,
            aws_secret_access_key=secret_access_key or self.secret_access_key,
        )

    @functools.cached_property
    def admin(self) -> Any:
        """The administrator's S3 client (boto3 clients are thread-safe: one for the whole session)."""
        return self.client()

    def new_user(self, name: str, policy: dict[str, Any]) -> tuple[str, str]:
        """An IAM user with ``policy`` (inline, named ``base``); returns its access key id and secret."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="base", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]


def allow(action: str = "*") -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}


def deny(action: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": action, "Resource": "*"}]}


def start_moto(log: Path) -> MotoS3:
    port = free_port()
    server = ServerProcess.start(
        "moto_server", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], port, log
    )
    try:
        # Authentication is off until the first reset-auth, so the administrator can be made with any key.
        bootstrap = boto3.session.Session().client(
            "iam", endpoint_url=server.url, region_name=REGION, aws_access_key_id="boot", aws_secret_access_key="boot"
        )
        bootstrap.create_user(UserName="admin")
        bootstrap.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(allow()))
        key = bootstrap.create_access_key(UserName="admin")["AccessKey"]
        connection = HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/moto-api/reset-auth", body=b"0")
        assert connection.getresponse().status == 200
        connection.close()
    except BaseException:
        server.stop()
        raise
    return MotoS3(server=server, access_key_id=key["AccessKeyId"], secret_access_key=key["SecretAccessKey"])


def empty_bucket(s3: Any, bucket: str) -> None:
    """Remove every object and unfinished multipart upload, then the bucket."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", ())]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", ()):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    s3.delete_bucket(Bucket=bucket)


# GCS: the emulator and the front that makes up for what it lacks.


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str  # percent-decoded: object names read as they are
    query: dict[str, list[str]]
    content_range: str
    body_bytes: int
    status: int
    has_bearer: bool  # carried an ``Authorization: Bearer`` header


@dataclass
class Fault:
    """Answer ``status`` to requests ``matches`` accepts, after letting ``passes`` of them through."""

    matches: Callable[[str, str, dict[str, list[str]]], bool]
    status: int
    passes: int = 0


@dataclass
class GCSFront:
    """A proxy in front of the emulator: pages listings, records requests, fails on demand, issues tokens."""

    emulator: ServerProcess
    server: ThreadingHTTPServer | None = None
    seen: list[SeenRequest] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    public_keys: dict[str, Any] = field(default_factory=dict)  # service-account e-mail -> RSA public key
    tokens: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def token_uri(self) -> str:
        return self.url + "/token"

    def start(self) -> GCSFront:
        front = self

        class Handler(FrontHandler):
            pass

        Handler.front = front
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.faults.clear()
            self.public_keys.clear()
            self.tokens.clear()

    def fail(self, matches: Callable[[str, str, dict[str, list[str]]], bool], status: int, *, passes: int = 0) -> None:
        with self.lock:
            self.faults.append(Fault(matches=matches, status=status, passes=passes))

    def requests(self, method: str | None = None, path_start: str = "") -> list[SeenRequest]:
        with self.lock:
            return [
                seen
                for seen in self.seen
                if (method is None or seen.method == method) and seen.path.startswith(path_start)
            ]

    def fault_for(self, method: str, path: str, query: dict[str, list[str]]) -> int | None:
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path, query):
                    if fault.passes > 0:
                        fault.passes -= 1
                        return None
                    return fault.status
        return None

    def issue_token(self, form: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """RFC 7523 JWT-bearer grant: the assertion must be signed by a key this front was given."""
        refused = (400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        try:
            header, payload, signature = form["assertion"][0].split(".")
            claims = json.loads(_b64decode(payload))
            public_key = self.public_keys[claims["iss"]]
            public_key.verify(
                _b64decode(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except (KeyError, ValueError, InvalidSignature):
            return refused
        token = "ya29.front-" + secrets.token_urlsafe(16)
        with self.lock:
            self.tokens.add(token)
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}

    def is_authorized(self, authorization: str) -> bool:
        """Anonymous requests pass (the emulator's own mode); a bearer token must be one this front issued."""
        if not authorization:
            return True
        with self.lock:
            return authorization.removeprefix("Bearer ") in self.tokens


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FrontHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    front: GCSFront

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.handle_any()

    def do_POST(self) -> None:
        self.handle_any()

    def do_PUT(self) -> None:
        self.handle_any()

    def do_DELETE(self) -> None:
        self.handle_any()

    def do_PATCH(self) -> None:
        self.handle_any()

    def handle_any(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.front.fault_for(self.command, parts.path, query)
        if parts.path == "/token" and self.command == "POST":
            status, answer = self.front.issue_token(parse_qs(body.decode()))
            headers, content = {"Content-Type": "application/json"}, json.dumps(answer).encode()
        elif fault is not None:
            status, headers, content = fault, {"Content-Type": "application/json"}, b'{"error": {"code": %d}}' % fault
        elif not self.front.is_authorized(self.headers.get("Authorization", "")):
            status, headers, content = 401, {"Content-Type": "application/json"}, b'{"error": {"code": 401}}'
        else:
            status, headers, content = self.forward(body, parts.path, query)
        with self.front.lock:
            self.front.seen.append(
                SeenRequest(
                    method=self.command,
                    path=unquote(parts.path),
                    query=query,
                    content_range=self.headers.get("Content-Range", ""),
                    body_bytes=len(body),
                    status=status,
                    has_bearer=self.headers.get("Authorization", "").startswith("Bearer "),
                )
            )
        self.answer(status, headers, content)

    def forward(self, body: bytes, path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        connection = HTTPConnection("127.0.0.1", self.front.emulator.port, timeout=60)
        headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        try:
            connection.request(self.command, self.path, body=body, headers=headers)
            response = connection.getresponse()
            content = response.read()
            answer_headers = {name: value for name, value in response.getheaders() if name.lower() not in HOP_BY_HOP}
            status = response.status
        finally:
            connection.close()
        if self.command == "GET" and status == 200 and is_object_listing(path):
            content = page_listing(content, query)
        return status, answer_headers, content

    def answer(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


def is_object_listing(path: str) -> bool:
    segments = path.strip("/").split("/")
    return len(segments) == 5 and segments[:3] == ["storage", "v1", "b"] and segments[4] == "o"


def page_listing(content: bytes, query: dict[str, list[str]]) -> bytes:
    """One page of a full listing, as GCS pages: ``maxResults`` names (at most 1,000) from ``pageToken`` on."""
    listing = json.loads(content)
    items = listing.get("items") or []
    size = min(int(query.get("maxResults", ["1000"])[0]), 1000)
    start = int(_b64decode(query["pageToken"][0])) if "pageToken" in query else 0
    listing["items"] = items[start : start + size]
    listing.pop("nextPageToken", None)
    if start + size < len(items):
        listing["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
    return json.dumps(listing).encode()


def gcs_admin(endpoint: str) -> storage.Client:
    return storage.Client(
        project="filegate-tests", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )


@dataclass(frozen=True)
class ServiceAccountKey:
    email: str
    private_key: Any

    def json(self, token_uri: str) -> str:
        """The service-account key file's content, as Google issues it."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return json.dumps(
            {
                "type": "service_account",
                "project_id": "filegate-tests",
                "private_key_id": secrets.token_hex(20),
                "private_key": pem,
                "client_email": self.email,
                "client_id": "1234567890",
                "token_uri": token_uri,
            }
        )

    @property
    def pem_body(self) -> str:
        """A line from the middle of the private key, to look for in messages."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return pem.splitlines()[3]


def new_service_account_key(email: str) -> ServiceAccountKey:
    return ServiceAccountKey(email=email, private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048))


# Content for the store tests.

_BLOCK = secrets.token_bytes(MIB)


def numbered_chunks(size: int, chunk_size: int = MIB) -> Iterator[bytes]:
    """``size`` bytes in chunks of ``chunk_size``, each starting with its number (so a reordered or
    repeated part changes the bytes). Made as they are consumed: nothing is held but one chunk."""
    assert chunk_size <= MIB
    number = 0
    while size > 0:
        length = min(chunk_size, size)
        yield (number.to_bytes(8, "big") + _BLOCK)[:length]
        size -= length
        number += 1


def numbered_bytes(size: int, chunk_size: int = MIB) -> bytes:
    return b"".join(numbered_chunks(size, chunk_size))


def refused_after(
    chunks: Iterator[bytes], limit: int, error: BaseException, on_refuse: Callable[[], None] = lambda: None
) -> Iterator[bytes]:
    """The chunks until more than ``limit`` bytes went through; then ``on_refuse()`` runs (to look
    at the store mid-upload) and ``error`` is raised, as the gateway's checked stream does."""
    sent = 0
    for chunk in chunks:
        if sent + len(chunk) > limit:
            on_refuse()
            raise error
        sent += len(chunk)
        yield chunk


def collect_failed_call(error: BaseException) -> None:
    """Let the failed call's frames, and what they held (an unclosed writer), be garbage-collected now.

    What a store leaves behind must not change when its abandoned objects are collected later.
    """
    error.__traceback__ = None
    gc.collect()


def store_calls(store: Store) -> list[Callable[[], Any]]:
    """One call of each of a store's operations, for tests that expect every one of them to fail alike."""
    return [
        lambda: store.save("org-a/f", iter([b"x"]), content_type="text/plain"),
        lambda: store.open("org-a/f"),
        lambda: store.delete("org-a/f"),
        lambda: list(store.iter_objects("org-a/")),
        store.check,
    ]


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    """Python's peak memory growth (tracemalloc) inside the block, in bytes: ``[peak]`` once it ends."""
    result: list[int] = []
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        yield result
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result.append(peak - baseline)


# A server that accepts connections (the kernel does) and never answers: for timeouts.


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# Fixtures.


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    moto = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    yield moto
    moto.server.stop()


@pytest.fixture
def s3_bucket(moto_s3: MotoS3) -> Iterator[str]:
    """A bucket of this test's own, emptied and removed afterwards."""
    name = f"filegate-{uuid.uuid4().hex[:16]}"
    moto_s3.admin.create_bucket(Bucket=name)
    yield name
    empty_bucket(moto_s3.admin, name)


@pytest.fixture
def s3_admin(moto_s3: MotoS3) -> Any:
    """A boto3 S3 client with the administrator key, to look at buckets behind the store's back."""
    return moto_s3.admin


@pytest.fixture
def make_s3_store(moto_s3: MotoS3, s3_bucket: str) -> Callable[..., S3Store]:
    """Builds an ``S3Store`` on this test's bucket with the administrator key; keyword arguments override."""

    def make(**overrides: Any) -> S3Store:
        config: dict[str, Any] = {
            "bucket": s3_bucket,
            "region": REGION,
            "endpoint_url": moto_s3.url,
            "aws_access_key_id": moto_s3.access_key_id,
            "aws_secret_access_key": moto_s3.secret_access_key,
        }
        return S3Store(**{**config, **overrides})

    return make


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    port = free_port()
    command = [str(BIN / "gcp-storage-emulator"), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"]
    server = ServerProcess.start("gcp-storage-emulator", command, port, tmp_path_factory.mktemp("gcs") / "gcs.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcs_front_server(gcs_emulator: ServerProcess) -> Iterator[GCSFront]:
    front = GCSFront(emulator=gcs_emulator).start()
    yield front
    front.stop()


@pytest.fixture
def gcs_front(gcs_front_server: GCSFront) -> Iterator[GCSFront]:
    """The front with nothing recorded, no faults and no keys."""
    gcs_front_server.reset()
    yield gcs_front_server
    gcs_front_server.reset()


@pytest.fixture
def gcs_bucket(gcs_emulator: ServerProcess) -> Iterator[str]:
    """A bucket of this test's own; the emulator is wiped afterwards (objects, sessions and buckets)."""
    name = f"filegate-{uuid.uuid4().hex[:16]}"
    gcs_admin(gcs_emulator.url).create_bucket(name)
    yield name
    connection = HTTPConnection("127.0.0.1", gcs_emulator.port, timeout=30)
    connection.request("GET", "/wipe")
    assert connection.getresponse().status == 200
    connection.close()


@pytest.fixture
def gcs_admin_bucket(gcs_emulator: ServerProcess, gcs_bucket: str) -> storage.Bucket:
    """The test's bucket through a plain client, to look at it behind the store's back."""
    return gcs_admin(gcs_emulator.url).bucket(gcs_bucket)


@pytest.fixture
def make_gcs_store(gcs_emulator: ServerProcess, gcs_front: GCSFront, gcs_bucket: str) -> Callable[..., GCSStore]:
    """Builds a ``GCSStore`` on this test's bucket, through the front unless ``endpoint_url`` says otherwise."""

    def make(**overrides: Any) -> GCSStore:
        config: dict[str, Any] = {"bucket": gcs_bucket, "project": "filegate-tests", "endpoint_url": gcs_front.url}
        return GCSStore(**{**config, **overrides})

    return make


@pytest.fixture(scope="session")
def service_account_key() -> ServiceAccountKey:
    return new_service_account_key("filegate@filegate-tests.iam.gserviceaccount.com")
