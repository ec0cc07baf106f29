"""A fake Anthropic Files API (``/v1/files``): a real HTTP server on 127.0.0.1, started by the tests.

It answers as the real API does today, in its two shapes, chosen by the request as upstream does:
- with ``anthropic-beta: files-api-2025-04-14``, the beta shapes: lists paged by ``before_id`` /
  ``after_id`` with ``first_id``, ``last_id`` and ``has_more``; file objects without
  ``expires_at`` unless the file expires;
- without it, the generally available shapes: lists paged by an opaque ``page`` token
  (``next_page``) or filtered by up to 100 ``ids[]``; ``before_id`` / ``after_id`` are a 400; every
  file object carries ``expires_at`` (null when the file does not expire).
"Migrating off files-api-2025-04-14 is optional: requests that still send it keep working and keep
returning the beta response shapes" (Anthropic's Files guide, quoted in mozilla-ai/otari#1473; also
stdapi-ai/stdapi.ai#206). The anthropic SDK 2.10.0 sends no beta header from ``client.files`` nor
``client.beta.files`` and parses the GA shapes (``SyncPageCursor``: ``data``, ``next_page``).

Every request needs the key, in ``x-api-key`` or as ``Authorization: Bearer`` (which the SDK 2.10.0
sends; 401 ``authentication_error`` otherwise), and ``anthropic-version`` (400 without); an unknown
``anthropic-beta`` value is a 400. Every answer carries a ``request-id`` header,
and every JSON answer is checked with the SDK's own types (``FileMetadata`` / ``BetaFileMetadata``,
``DeletedFile``, ``SyncPageCursor`` / ``SyncPage``, ``ErrorResponse`` and ``ErrorDetails``) before it
is sent, refusing keys the type does not declare.

Uploads take only ``file`` and ``expires_in_seconds`` (3600..7776000, SDK ``file_upload_params``);
any other field is refused, so a caller cannot slip OpenAI's ``purpose`` through. Uploaded files
are not downloadable; ``add_file(..., downloadable=True)`` makes one as the code execution tool
would. Content of a file that is not downloadable is the SDK's ``FileNotDownloadableError`` (400,
``error.details.error_code`` ``file_not_downloadable``); of an expired one ``FileExpiredError`` (404).
An upload over ``max_upload_bytes`` (500 MB, the Files API request limit) is Cloudflare's 413
``request_too_large``, sent before the request reaches Anthropic, so without a request id (errors
page: https://platform.claude.com/docs/en/api/errors). An upload past ``storage_limit`` is the SDK's
``StorageQuotaExceededError``: 400 with ``error_code`` ``storage_quota_exceeded`` (SDK
``_error_classes.py``; the older Files guide said 403).

Not confirmed by any source, so chosen and kept simple: the wording of 400 messages other than the
missing headers; a missing file's 404 as ``not_found_error`` (the errors page's type for 404; the
Files guide's example shows ``invalid_request_error``); an unknown ``after_id`` / ``before_id``
giving an empty page; beta file objects carrying ``expires_at`` only when the file expires; the
filename rules after the SDK's last-path-component cut; ``2026-10-21`` accepted as a version and the
key accepted as a bearer token (the SDK sends both, so the API must take them).
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import pytest
from anthropic.pagination import SyncPage, SyncPageCursor
from anthropic.types import DeletedFile, FileMetadata
from anthropic.types.anthropic_beta_param import AnthropicBetaParam
from anthropic.types.beta import BetaDeletedFile, BetaFileMetadata
from anthropic.types.shared import ErrorDetails, ErrorResponse, InvalidRequestErrorObject
from pydantic import TypeAdapter

from tests.upstream_server import ApiError, FakeHandler, FakeServer, Fault, ReceivedRequest, StoredFile, serving

ANTHROPIC_KEY = "sk-ant-api03-upstream-0123456789abcdefXYZ"
FILES_BETA = "files-api-2025-04-14"
# The dated API versions: the two long documented, and the one the anthropic SDK 2.10.0 sends.
VERSIONS = ("2023-01-01", "2023-06-01", "2026-10-21")
KNOWN_BETAS = frozenset(get_args(get_args(AnthropicBetaParam)[1]))
MIN_EXPIRY, MAX_EXPIRY = 3600, 7776000
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# Files guide: 1 to 255 characters, none of these nor control characters (the SDK keeps only the
# last path component, so "/" and "\" are cut off rather than refused).
BAD_FILENAME = re.compile(r'[<>:"|?*\x00-\x1f]')
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class RequestTooLargeErrorObject(InvalidRequestErrorObject):
    """Cloudflare's 413 body: the errors page's ``request_too_large`` type, which the SDK does not list."""

    type: Literal["request_too_large"]  # type: ignore[assignment]


class EdgeErrorResponse(ErrorResponse):
    error: RequestTooLargeErrorObject  # type: ignore[assignment]


def token(size: int) -> str:
    return "".join(BASE58[byte % len(BASE58)] for byte in secrets.token_bytes(size))


def rfc3339(moment: float) -> str:
    """``2025-04-15T18:37:24.100435Z``, as the API writes times."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class AnthropicHandler(FakeHandler):
    fake: FakeAnthropic
    unknown_url = ApiError(404, "Not Found")
    request_id = ""
    from_edge = False  # the answer comes from Cloudflare, in front of the API: no request id

    def parse_request(self) -> bool:
        self.request_id = "req_011C" + token(20)
        self.from_edge = False
        return super().parse_request()

    def end_headers(self) -> None:
        if not self.from_edge:
            self.send_header("request-id", self.request_id)
        super().end_headers()

    def betas(self) -> list[str]:
        values = self.headers.get_all("anthropic-beta") or []
        return [beta.strip() for value in values for beta in value.split(",") if beta.strip()]

    def is_beta(self) -> bool:
        return FILES_BETA in self.betas()

    def refusal(self, request: ReceivedRequest) -> ApiError | None:
        # The key goes in x-api-key, or as a bearer token: the anthropic SDK 2.10.0 sends API keys
        # as "Authorization: Bearer" (Anthropic._api_key_auth).
        bearer = request.headers.get("authorization", "")
        key = request.headers.get("x-api-key") or (bearer[7:] if bearer.startswith("Bearer ") else None)
        if key is None:
            return ApiError(401, "x-api-key header is required")  # n8n-io/n8n#37930 quotes this answer
        if key != self.fake.api_key:
            return ApiError(401, "invalid x-api-key")
        version = request.headers.get("anthropic-version")
        if version is None:
            return ApiError(400, "anthropic-version: header is required")
        if version not in VERSIONS:
            return ApiError(400, f"anthropic-version: {version!r} is not a supported version")
        unknown = [beta for beta in self.betas() if beta not in KNOWN_BETAS]
        if unknown:
            shown = ", ".join(f"`{beta}`" for beta in unknown)
            return ApiError(400, f"Unexpected value(s) {shown} for the `anthropic-beta` header.")
        return None

    def send_api_error(self, error: ApiError) -> None:
        status = error.status
        kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        inner: dict[str, Any] = {"type": kind, "message": error.message}
        if error.code is not None:
            inner["details"] = {"error_code": error.code}
            TypeAdapter(ErrorDetails).validate_python(inner["details"])
        self.from_edge = status == 413
        body = {"type": "error", "error": inner, "request_id": None if self.from_edge else self.request_id}
        self.answer(status, body, EdgeErrorResponse if self.from_edge else ErrorResponse, error.headers, exact=True)

    def fault_message(self, status: int) -> str:
        return {429: "Rate limit exceeded", 529: "Overloaded"}.get(status, "Internal server error")

    def not_found(self, file_id: str) -> ApiError:
        return ApiError(404, f"File not found: {file_id}")

    def too_large(self) -> ApiError:
        return ApiError(413, "Request exceeds the maximum allowed number of bytes.")

    # Operations.

    def upload(self, request: ReceivedRequest, fault: Fault | None) -> None:
        received = self.receive_multipart(request, fault)
        error = self.upload_error(received.fields, received.file_field, received.filename)
        if error is None and self.fake.used_bytes() + received.size > self.fake.storage_limit:
            error = ApiError(400, "Your organization's file storage quota is exhausted.", code="storage_quota_exceeded")
        if error is not None:
            received.path.unlink(missing_ok=True)
            return self.send_api_error(error)
        created = time.time()
        seconds = received.fields.get("expires_in_seconds")
        obj = self.fake.register(
            received.path,
            received.sha256,
            received.size,
            created,
            filename=stored_name(received.filename, received.content_type),
            mime_type=media_type(received.filename, received.content_type),
            downloadable=False,
            expires_at=created + int(seconds) if seconds else None,
        )
        self.send_file_object(obj)

    def upload_error(self, fields: dict[str, str], file_field: str, filename: str) -> ApiError | None:
        extra = sorted(set(fields) - {"expires_in_seconds"}) + ([file_field] if file_field not in ("", "file") else [])
        if extra:
            return ApiError(400, f"{extra[0]}: Extra inputs are not permitted")
        if file_field != "file":
            return ApiError(400, "file: Field required")
        seconds = fields.get("expires_in_seconds")
        if seconds is not None and not (seconds.isdigit() and MIN_EXPIRY <= int(seconds) <= MAX_EXPIRY):
            return ApiError(400, f"expires_in_seconds: must be an integer from {MIN_EXPIRY} to {MAX_EXPIRY}")
        name = stored_name(filename, "")
        if len(name) > 255 or BAD_FILENAME.search(name):
            return ApiError(400, f"Invalid filename: {name!r}")
        return None

    def list_files(self, request: ReceivedRequest) -> None:
        query = {name: values[-1] for name, values in request.query.items()}
        limit = query.get("limit", "20")
        if not (limit.isdigit() and 1 <= int(limit) <= 1000):
            return self.send_api_error(ApiError(400, "limit: Input should be an integer from 1 to 1000"))
        if self.is_beta():
            return self.list_by_ids(query, int(limit))
        return self.list_by_page(request.query, int(limit))

    def list_by_ids(self, query: dict[str, str], limit: int) -> None:
        """The beta page: ``limit`` files after ``after_id`` or just before ``before_id``, newest first."""
        before, after = query.get("before_id"), query.get("after_id")
        if before and after:
            return self.send_api_error(ApiError(400, "before_id and after_id cannot be used together"))
        files = self.fake.ordered()
        ids = [stored.object["id"] for stored in files]
        if before:
            end = ids.index(before) if before in ids else 0
            start = max(0, end - limit)
            page, has_more = files[start:end], start > 0
        else:
            start = ids.index(after) + 1 if after in ids else (len(ids) if after else 0)
            page, has_more = files[start : start + limit], start + limit < len(files)
        data = [self.fake.metadata(stored, beta=True) for stored in page]
        body = {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        self.answer(200, body, SyncPage[BetaFileMetadata], exact=True)

    def list_by_page(self, query: dict[str, list[str]], limit: int) -> None:
        """The GA page: ``limit`` files after the ``page`` token's place, or the files named in ``ids[]``."""
        if "before_id" in query or "after_id" in query:
            message = f"before_id and after_id need the `anthropic-beta: {FILES_BETA}` header; use page"
            return self.send_api_error(ApiError(400, message))
        files = self.fake.ordered()
        wanted = set(query.get("ids[]", []))
        if wanted:
            if "page" in query or "limit" in query or len(wanted) > 100:
                return self.send_api_error(ApiError(400, "ids: at most 100, and not with page or limit"))
            page, next_page = [stored for stored in files if stored.object["id"] in wanted], None
        else:
            place = read_page_token(query["page"][-1]) if "page" in query else None
            if "page" in query and place is None:
                return self.send_api_error(ApiError(400, "page: invalid page token"))
            rest = [stored for stored in files if place is None or (stored.created, stored.seq) < place]
            page = rest[:limit]
            next_page = page_token(page[-1]) if len(rest) > limit else None
        body = {"data": [self.fake.metadata(stored, beta=False) for stored in page], "next_page": next_page}
        self.answer(200, body, SyncPageCursor[FileMetadata], exact=True)

    def retrieve(self, stored: StoredFile) -> None:
        self.send_file_object(stored.object)

    def content(self, stored: StoredFile, fault: Fault | None) -> None:
        obj = stored.object
        if not obj["downloadable"]:
            # The SDK's FileNotDownloadableError; its docstring: only files a tool made can be downloaded.
            message = "The file has `downloadable: false`. Only files generated by a tool can be downloaded."
            return self.send_api_error(ApiError(400, message, code="file_not_downloadable"))
        if obj["expires_at"] is not None and datetime.fromisoformat(obj["expires_at"]).timestamp() <= time.time():
            return self.send_api_error(ApiError(404, "The file has expired.", code="file_expired"))
        self.stream_file(stored, obj["size_bytes"], obj["mime_type"], fault)

    def delete(self, file_id: str, stored: StoredFile) -> None:
        self.fake.remove(file_id)
        body = {"id": file_id, "type": "file_deleted"}
        self.answer(200, body, BetaDeletedFile if self.is_beta() else DeletedFile, exact=True)

    def send_file_object(self, obj: dict[str, Any]) -> None:
        beta = self.is_beta()
        body = self.fake.metadata(obj, beta=beta)
        self.answer(200, body, BetaFileMetadata if beta else FileMetadata, exact=True)


def stored_name(filename: str, content_type: str) -> str:
    """The name the API keeps: the last path component, or ``unnamed`` plus the type's extension (SDK docstring)."""
    name = re.split(r"[/\\]", filename)[-1]
    return name or "unnamed" + (mimetypes.guess_extension(content_type.split(";")[0].strip()) or "")


def media_type(filename: str, content_type: str) -> str:
    declared = content_type.split(";")[0].strip()
    if declared and declared != "application/octet-stream":
        return declared
    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def page_token(stored: StoredFile) -> str:
    """An opaque ``page_...`` token: the place after ``stored`` in the newest-first order."""
    place = json.dumps([stored.created, stored.seq]).encode()
    return "page_" + base64.urlsafe_b64encode(place).decode()


def read_page_token(value: str) -> tuple[float, int] | None:
    try:
        created, seq = json.loads(base64.urlsafe_b64decode(value.removeprefix("page_")))
        return float(created), int(seq)
    except (ValueError, TypeError, binascii.Error):
        return None


class FakeAnthropic(FakeServer):
    """Anthropic's Files API. ``url`` is the account's ``base_url`` and an SDK's ``base_url`` alike."""

    kind = "anthropic"
    prefix = "/v1/files"
    handler = AnthropicHandler

    def __init__(self, root: Path, *, api_key: str = ANTHROPIC_KEY) -> None:
        super().__init__(root, api_key=api_key)
        self.max_upload_bytes = 500 * 1000 * 1000  # errors page: Files API requests up to 500 MB
        self.storage_limit = 100 * 1000**3  # Files guide: 100 GB per organization (newer notes say 500 GB)

    def add_file(
        self, content: bytes, *, filename: str = "outside.txt", downloadable: bool = True, **fields: Any
    ) -> str:
        """A file made outside the gateway: by default downloadable, as the code execution tool makes them."""
        return super().add_file(content, filename=filename, downloadable=downloadable, **fields)

    def new_id(self) -> str:
        return "file_011C" + token(20)  # like file_011CNha8iCJcU1wXNR6q4V8w (API reference example)

    def file_object(
        self,
        file_id: str,
        *,
        size: int,
        created: float,
        filename: str = "seeded.txt",
        mime_type: str | None = None,
        downloadable: bool = False,
        expires_at: float | None = None,
    ) -> dict[str, Any]:
        return {
            "id": file_id,
            "type": "file",
            "filename": filename,
            "mime_type": mime_type or mimetypes.guess_type(filename)[0] or "application/octet-stream",
            "size_bytes": size,
            "created_at": rfc3339(created),
            "downloadable": downloadable,
            "expires_at": rfc3339(expires_at) if expires_at is not None else None,
        }

    def metadata(self, file: StoredFile | dict[str, Any], *, beta: bool) -> dict[str, Any]:
        """The file object in the request's shape: beta objects leave out an empty ``expires_at``."""
        obj = dict(file.object if isinstance(file, StoredFile) else file)
        if beta and obj["expires_at"] is None:
            del obj["expires_at"]
        return obj

    def used_bytes(self) -> int:
        with self.lock:
            return sum(stored.object["size_bytes"] for stored in self.files.values())


@pytest.fixture
def fake_anthropic(tmp_path: Path, fast_retries: None) -> Iterator[FakeAnthropic]:
    yield from serving(FakeAnthropic(tmp_path / "fake-anthropic"))
