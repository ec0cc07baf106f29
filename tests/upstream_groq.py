"""A fake Groq Files API (``/openai/v1/files``): a real HTTP server on 127.0.0.1, started by the tests.

Shaped on the groq SDK 1.7.0 (``resources/files.py``, ``types/file_*``), whose types check every
JSON answer before it is sent, refusing keys they do not declare:
- upload: multipart ``file`` and ``purpose``; only ``batch`` is accepted (``FileCreateParams``:
  ``Literal["batch"]``), any other purpose is a 400 naming ``purpose``;
- file objects: ``id``, ``object``, ``bytes``, ``created_at`` (unix seconds), ``filename``,
  ``purpose`` (``batch`` or ``batch_output``), and no ``status`` nor ``expires_at``;
- list: ``{"object": "list", "data": [...]}``, every file at once, newest first: no paging, and any
  query is ignored;
- delete: ``{id, object: "file", deleted: true}``.
Requests need ``Authorization: Bearer <key>``; without it, or with another key, the answer is
Groq's 401 ``{"error": {"message": "Invalid API Key", "type": "invalid_request_error", "code":
"invalid_api_key"}}`` (as ag5826000/resume-commentor#4 quotes it). Errors use Groq's envelope
``{"error": ErrorObject}``; answers carry an ``x-request-id`` header (``req_01...``).

``seed(10_000)`` makes ten thousand files in well under a second, for gateways that page lists
themselves.

Not confirmed by any source, so chosen and kept simple: the wording and ``code`` of errors other
than the 401, the error ``type`` of 429 (``requests``, as Groq names exhausted limits) and of 5xx
answers, the list order (newest first, OpenAI's default), extra form fields being ignored, and the
413 (Groq states a 100 MB limit for batch files, not how it refuses more; ``max_upload_bytes`` is
off by default).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from groq.types import FileCreateResponse, FileDeleteResponse, FileInfoResponse, FileListResponse
from groq.types.shared import ErrorObject

from tests.upstream_server import ApiError, FakeHandler, FakeServer, Fault, ReceivedRequest, StoredFile, serving
from tests.upstreams import openai_file

GROQ_KEY = "gsk_upstream0123456789abcdefXYZ"
CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"  # Groq's ids are lower-case ULIDs: file_01jh6x76wtemjr74t1fh0faj5t


def ulid() -> str:
    return "01" + "".join(CROCKFORD[byte % 32] for byte in secrets.token_bytes(24))


class GroqHandler(FakeHandler):
    fake: FakeGroq
    unknown_url = ApiError(404, "Unknown request URL", code="unknown_url")

    def end_headers(self) -> None:
        self.send_header("x-request-id", "req_" + ulid())
        super().end_headers()

    def refusal(self, request: ReceivedRequest) -> ApiError | None:
        if request.headers.get("authorization") != f"Bearer {self.fake.api_key}":
            return ApiError(401, "Invalid API Key", code="invalid_api_key")
        return None

    def send_api_error(self, error: ApiError) -> None:
        kind = "invalid_request_error"
        if error.status == 429:
            kind = "requests"  # Groq names the exhausted limit: "requests" or "tokens"
        elif error.status >= 500:
            kind = "internal_server_error"
        body: dict[str, Any] = {"message": error.message, "type": kind}
        body |= {name: value for name, value in (("param", error.param), ("code", error.code)) if value is not None}
        ErrorObject.model_validate(body)
        self.send_json(error.status, {"error": body}, error.headers)

    def fault_message(self, status: int) -> str:
        return "Rate limit reached for requests" if status == 429 else "Internal Server Error"

    def not_found(self, file_id: str) -> ApiError:
        return ApiError(404, f"File {file_id} not found", param="file_id", code="not_found")

    def too_large(self) -> ApiError:
        return ApiError(413, "Request Entity Too Large", code="request_too_large")

    # Operations.

    def upload(self, request: ReceivedRequest, fault: Fault | None) -> None:
        received = self.receive_multipart(request, fault)
        error = None
        if not received.file_field:
            error = ApiError(400, "'file' is a required property", param="file")
        elif received.fields.get("purpose") != "batch":
            purpose = received.fields.get("purpose", "")
            error = ApiError(400, f"purpose must be 'batch', got {purpose!r}", param="purpose")
        if error is not None:
            received.path.unlink(missing_ok=True)
            return self.send_api_error(error)
        obj = self.fake.register(
            received.path, received.sha256, received.size, time.time(), filename=received.filename, purpose="batch"
        )
        self.answer(200, obj, FileCreateResponse, exact=True)

    def list_files(self, request: ReceivedRequest) -> None:
        body = {"object": "list", "data": [stored.object for stored in self.fake.ordered()]}
        self.answer(200, body, FileListResponse, exact=True)

    def retrieve(self, stored: StoredFile) -> None:
        self.answer(200, stored.object, FileInfoResponse, exact=True)

    def content(self, stored: StoredFile, fault: Fault | None) -> None:
        self.stream_file(stored, stored.object["bytes"], "application/octet-stream", fault)

    def delete(self, file_id: str, stored: StoredFile) -> None:
        self.fake.remove(file_id)
        self.answer(200, {"id": file_id, "object": "file", "deleted": True}, FileDeleteResponse, exact=True)


class FakeGroq(FakeServer):
    """Groq's Files API. ``url`` is the account's ``base_url`` (``.../openai/v1``); SDKs take ``origin``."""

    kind = "groq"
    prefix = "/openai/v1/files"
    handler = GroqHandler

    def __init__(self, root: Path, *, api_key: str = GROQ_KEY) -> None:
        super().__init__(root, api_key=api_key)

    @property
    def url(self) -> str:
        return f"{self.origin}/openai/v1"

    def new_id(self) -> str:
        return "file_" + ulid()

    def file_object(
        self, file_id: str, *, size: int, created: float, filename: str = "outside.jsonl", purpose: str = "batch"
    ) -> dict[str, Any]:
        return openai_file(file_id, size, created, filename, purpose)  # OpenAI's, without status


@pytest.fixture
def fake_groq(tmp_path: Path, fast_retries: None) -> Iterator[FakeGroq]:
    yield from serving(FakeGroq(tmp_path / "fake-groq"))
