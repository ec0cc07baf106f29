"""A fast fake of OpenAI's Files API for the benchmark: asynchronous, streaming, never the bottleneck.

Uploads are parsed as they arrive and the file part is only counted and checksummed (CRC-32, a few
GB/s), never kept; downloads stream the recorded number of bytes of a fixed pattern. Records live in
memory, one store per credential (as an upstream account or project sees only its own files).
``/_bench/...`` routes let the benchmark check what arrived (see ``bench/kinds.py``).

It speaks four dialects, one per path root (``DIALECTS``):

- OpenAI's ``/v1/files`` and Azure OpenAI's v1 surface ``/openai/v1/files`` (key in ``api-key``);
- Anthropic's Files API under ``/anthropic/v1/files`` (an account's ``base_url`` is ``{url}/anthropic``):
  ``x-api-key`` (or a bearer token, as the SDK sends it) and ``anthropic-version`` required, the beta
  shapes the gateway asks for (``size_bytes``, RFC 3339 ``created_at``, ``downloadable``, lists
  newest first paged by ``after_id`` / ``before_id``, ``file_deleted``), uploads taking only ``file``
  and never downloadable; ``POST /_bench/anthropic-tool-file?bytes=N`` makes a downloadable file as
  Anthropic's code execution tool would;
- Groq's under ``/groq/openai/v1/files`` (``base_url`` ``{url}/groq/openai/v1``): only ``purpose=batch``,
  file objects without ``status``, every file in one list answer whatever the query.

``tests/bench/test_kinds.py`` drives each dialect with its provider's SDK types.

    python bench/upstream.py --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import os
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from aiohttp import web

CHUNK_BYTES = 1024 * 1024
PATTERN = (bytes(range(256)) * (CHUNK_BYTES // 256))[:CHUNK_BYTES]


def pattern_crc32(nbytes: int) -> int:
    """The CRC-32 of the first ``nbytes`` bytes of the download pattern (what the client should see)."""
    crc = 0
    full, rest = divmod(nbytes, CHUNK_BYTES)
    for _ in range(full):
        crc = zlib.crc32(PATTERN, crc)
    return zlib.crc32(PATTERN[:rest], crc)


@dataclass
class Record:
    id: str
    bytes: int
    created: float
    filename: str
    purpose: str
    crc32: int = 0
    seq: int = 0
    downloadable: bool = True

    @property
    def created_at(self) -> int:
        return int(self.created)


class Store:
    """Files in creation order; list pages are slices of it."""

    def __init__(self) -> None:
        self.by_id: dict[str, Record] = {}
        self.ordered: list[Record] = []
        self._seq = itertools.count()

    def add(
        self, *, file_id: str, nbytes: int, filename: str, purpose: str, crc32: int = 0, downloadable: bool = True
    ) -> Record:
        record = Record(
            id=file_id,
            bytes=nbytes,
            created=time.time(),
            filename=filename,
            purpose=purpose,
            crc32=crc32,
            seq=next(self._seq),
            downloadable=downloadable,
        )
        self.by_id[record.id] = record
        self.ordered.append(record)
        return record

    def remove(self, file_id: str) -> bool:
        record = self.by_id.pop(file_id, None)
        if record is None:
            return False
        index = bisect.bisect_left([r.seq for r in self.ordered], record.seq)
        del self.ordered[index]
        return True


def rfc3339(moment: float) -> str:
    """``2025-04-15T18:37:24.100435Z``, as Anthropic writes times."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Dialect:
    """OpenAI's Files API (and Azure OpenAI's, which differs only in the key's header): the base of the others."""

    name = "openai"

    def credential(self, request: web.Request) -> str:
        """The caller's key: the bearer token, or Azure's ``api-key`` header; empty when there is none."""
        authorization = request.headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            return authorization.removeprefix("Bearer ")
        return request.headers.get("api-key", "")

    def refusal(self, request: web.Request) -> web.Response | None:
        """The answer to a request this upstream would refuse before looking at it (no key, missing header)."""
        if not self.credential(request):
            return self.error(401, "no key")
        return None

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
        return web.json_response(body, status=status)

    def not_found(self, file_id: str) -> web.Response:
        return self.error(404, f"No such File object: {file_id}")

    def new_id(self) -> str:
        return "file-" + secrets.token_hex(12)

    def upload_error(self, fields: dict[str, str]) -> web.Response | None:
        return None

    def stores_purpose(self, fields: dict[str, str]) -> str:
        return fields.get("purpose", "")

    def file_object(self, record: Record) -> dict:
        return {
            "id": record.id,
            "object": "file",
            "bytes": record.bytes,
            "created_at": record.created_at,
            "expires_at": None,
            "filename": record.filename,
            "purpose": record.purpose,
            "status": "processed",
            "status_details": None,
        }

    def deleted(self, file_id: str) -> dict:
        return {"id": file_id, "object": "file", "deleted": True}

    def list_body(self, store: Store, query: dict[str, str]) -> dict | web.Response:
        limit = int(query.get("limit", "10000"))
        order = query.get("order", "desc")
        after = query.get("after")
        purpose = query.get("purpose")
        records = store.ordered if order == "asc" else store.ordered[::-1]
        if after:
            cursor = store.by_id.get(after)
            if cursor is None:
                return self.not_found(after)
            records = [r for r in records if (r.seq > cursor.seq if order == "asc" else r.seq < cursor.seq)]
        if purpose:
            records = [r for r in records if r.purpose == purpose]
        page = records[: limit + 1]
        data = [self.file_object(r) for r in page[:limit]]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(page) > limit,
        }

    def content_refusal(self, record: Record) -> web.Response | None:
        return None


class Anthropic(Dialect):
    """Anthropic's Files API in the beta shapes (``anthropic-beta: files-api-2025-04-14``) the gateway asks for."""

    name = "anthropic"
    versions = frozenset({"2023-01-01", "2023-06-01", "2026-10-21"})

    def credential(self, request: web.Request) -> str:
        # x-api-key, or a bearer token: the anthropic SDK 2.10.0 sends API keys as "Authorization: Bearer".
        authorization = request.headers.get("Authorization", "")
        bearer = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
        return request.headers.get("x-api-key", "") or bearer

    def refusal(self, request: web.Request) -> web.Response | None:
        if not self.credential(request):
            return self.error(401, "x-api-key header is required")
        version = request.headers.get("anthropic-version")
        if version not in self.versions:
            return self.error(400, f"anthropic-version: {version!r} is not a supported version")
        return None

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        kinds = {401: "authentication_error", 404: "not_found_error"}
        inner: dict = {"type": kinds.get(status, "invalid_request_error"), "message": message}
        if code is not None:
            inner["details"] = {"error_code": code}
        request_id = "req_011C" + secrets.token_hex(10)
        body = {"type": "error", "error": inner, "request_id": request_id}
        return web.json_response(body, status=status, headers={"request-id": request_id})

    def not_found(self, file_id: str) -> web.Response:
        return self.error(404, f"File not found: {file_id}")

    def new_id(self) -> str:
        return "file_011C" + secrets.token_hex(10)

    def upload_error(self, fields: dict[str, str]) -> web.Response | None:
        extra = sorted(set(fields) - {"expires_in_seconds"})
        return self.error(400, f"{extra[0]}: Extra inputs are not permitted") if extra else None

    def stores_purpose(self, fields: dict[str, str]) -> str:
        return ""

    def file_object(self, record: Record) -> dict:
        return {
            "id": record.id,
            "type": "file",
            "filename": record.filename,
            "mime_type": "application/octet-stream",
            "size_bytes": record.bytes,
            "created_at": rfc3339(record.created),
            "downloadable": record.downloadable,
        }

    def deleted(self, file_id: str) -> dict:
        return {"id": file_id, "type": "file_deleted"}

    def list_body(self, store: Store, query: dict[str, str]) -> dict | web.Response:
        """Newest first, ``limit`` (1 to 1000, default 20) after ``after_id`` or just before ``before_id``."""
        limit = int(query.get("limit", "20"))
        if not 1 <= limit <= 1000:
            return self.error(400, "limit: Input should be an integer from 1 to 1000")
        before, after = query.get("before_id"), query.get("after_id")
        records = store.ordered[::-1]
        ids = [record.id for record in records]
        if before:
            end = ids.index(before) if before in ids else 0
            start = max(0, end - limit)
            page, has_more = records[start:end], start > 0
        else:
            start = ids.index(after) + 1 if after in ids else (len(ids) if after else 0)
            page, has_more = records[start : start + limit], start + limit < len(records)
        data = [self.file_object(record) for record in page]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    def content_refusal(self, record: Record) -> web.Response | None:
        if record.downloadable:
            return None
        message = "The file has `downloadable: false`. Only files generated by a tool can be downloaded."
        return self.error(400, message, code="file_not_downloadable")


class Groq(Dialect):
    """Groq's OpenAI-compatible Files API: batch input files only, no ``status``, no paging."""

    name = "groq"

    def credential(self, request: web.Request) -> str:
        authorization = request.headers.get("Authorization", "")
        return authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""

    def refusal(self, request: web.Request) -> web.Response | None:
        if not self.credential(request):
            return self.error(401, "Invalid API Key", code="invalid_api_key")
        return None

    def error(self, status: int, message: str, code: str | None = None) -> web.Response:
        body: dict = {"message": message, "type": "invalid_request_error"}
        if code is not None:
            body["code"] = code
        return web.json_response({"error": body}, status=status)

    def not_found(self, file_id: str) -> web.Response:
        return self.error(404, f"File {file_id} not found", code="not_found")

    def new_id(self) -> str:
        return "file_01" + secrets.token_hex(12)

    def upload_error(self, fields: dict[str, str]) -> web.Response | None:
        purpose = fields.get("purpose", "")
        return None if purpose == "batch" else self.error(400, f"purpose must be 'batch', got {purpose!r}")

    def file_object(self, record: Record) -> dict:
        return {
            "id": record.id,
            "object": "file",
            "bytes": record.bytes,
            "created_at": record.created_at,
            "filename": record.filename,
            "purpose": record.purpose,
        }

    def list_body(self, store: Store, query: dict[str, str]) -> dict | web.Response:
        return {"object": "list", "data": [self.file_object(record) for record in store.ordered[::-1]]}


OPENAI, ANTHROPIC, GROQ = Dialect(), Anthropic(), Groq()
# Each path root and the dialect spoken there (Azure's v1 surface is OpenAI's with the key in api-key).
DIALECTS: dict[str, Dialect] = {
    "/v1/files": OPENAI,
    "/openai/v1/files": OPENAI,
    "/anthropic/v1/files": ANTHROPIC,
    "/groq/openai/v1/files": GROQ,
}


def store_of(request: web.Request, dialect: Dialect) -> Store:
    """The caller's own store (created on first use)."""
    stores: dict[str, Store] = request.app["stores"]
    return stores.setdefault(dialect.credential(request), Store())


async def create_file(request: web.Request, dialect: Dialect) -> web.Response:
    boundary = request.content_type == "multipart/form-data" and request.headers["Content-Type"].partition("boundary=")[
        2
    ].strip('"')
    if not boundary:
        return dialect.error(400, "not multipart")
    parser = MultipartCounter(boundary.encode())
    async for chunk in request.content.iter_any():
        parser.feed(chunk)
    if not parser.done:
        return dialect.error(400, "truncated body")
    if (refused := dialect.upload_error(parser.fields)) is not None:
        return refused
    record = store_of(request, dialect).add(
        file_id=dialect.new_id(),
        nbytes=parser.file_bytes,
        filename=parser.filename,
        purpose=dialect.stores_purpose(parser.fields),
        crc32=parser.file_crc32,
        downloadable=dialect is not ANTHROPIC,  # Anthropic never lets an upload be downloaded
    )
    return web.json_response(dialect.file_object(record))


class MultipartCounter:
    """A streaming multipart/form-data parser that keeps the small fields and only counts the file.

    aiohttp's own part reader costs about 20 % of the upstream's throughput; this one scans each
    received chunk once with ``bytes.find``, holding back at most one delimiter's length.
    """

    def __init__(self, boundary: bytes) -> None:
        self.delimiter = b"\r\n--" + boundary
        self.buffer = b"\r\n"  # the first delimiter has no CRLF before it
        self.in_headers = True
        self.fields: dict[str, str] = {}
        self.filename = ""
        self.file_bytes = 0
        self.file_crc32 = 0
        self.done = False
        self._name = ""
        self._is_file = False
        self._value = bytearray()

    def feed(self, chunk: bytes) -> None:
        data = self.buffer + chunk if self.buffer else chunk
        start = 0
        while not self.done:
            if self.in_headers:
                end = data.find(b"\r\n\r\n", start)
                if end < 0:
                    break
                self._start_part(data[start:end])
                start = end + 4
                self.in_headers = False
                continue
            at = data.find(self.delimiter, start)
            if at < 0:
                keep = max(start, len(data) - len(self.delimiter))
                self._body(data, start, keep)
                start = keep
                break
            self._body(data, start, at)
            after = at + len(self.delimiter)
            if len(data) - after < 2:
                start = at  # the part's end is decided once the next two bytes arrive
                break
            self._end_part()
            if data[after : after + 2] == b"--":
                self.done = True
                start = len(data)
                break
            start = after + 2
            self.in_headers = True
        self.buffer = data[start:]

    def _start_part(self, block: bytes) -> None:
        if block.startswith(self.delimiter):
            block = block[len(self.delimiter) + 2 :]
        headers = block.decode("latin-1")
        disposition = next((h for h in headers.split("\r\n") if h.lower().startswith("content-disposition")), "")
        params = {
            key.strip().lower(): value.strip().strip('"')
            for key, _, value in (item.partition("=") for item in disposition.split(";")[1:])
        }
        self._name = params.get("name", "")
        self._is_file = "filename" in params
        if self._is_file:
            self.filename = params["filename"]

    def _body(self, data: bytes, start: int, end: int) -> None:
        if end <= start:
            return
        if self._is_file:
            piece = memoryview(data)[start:end]
            self.file_bytes += len(piece)
            self.file_crc32 = zlib.crc32(piece, self.file_crc32)
        elif len(self._value) < 65536:
            self._value += data[start:end]

    def _end_part(self) -> None:
        if not self._is_file:
            self.fields[self._name] = self._value.decode()
        self._value = bytearray()


async def list_files(request: web.Request, dialect: Dialect) -> web.Response:
    body = dialect.list_body(store_of(request, dialect), dict(request.query))
    return body if isinstance(body, web.Response) else web.json_response(body)


async def retrieve_file(request: web.Request, dialect: Dialect) -> web.Response:
    record = store_of(request, dialect).by_id.get(request.match_info["file_id"])
    if record is None:
        return dialect.not_found(request.match_info["file_id"])
    return web.json_response(dialect.file_object(record))


async def delete_file(request: web.Request, dialect: Dialect) -> web.Response:
    file_id = request.match_info["file_id"]
    if not store_of(request, dialect).remove(file_id):
        return dialect.not_found(file_id)
    return web.json_response(dialect.deleted(file_id))


async def file_content(request: web.Request, dialect: Dialect) -> web.StreamResponse:
    record = store_of(request, dialect).by_id.get(request.match_info["file_id"])
    if record is None:
        return dialect.not_found(request.match_info["file_id"])
    if (refused := dialect.content_refusal(record)) is not None:
        return refused
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = record.bytes
    await response.prepare(request)
    view = memoryview(PATTERN)
    left = record.bytes
    while left > 0:
        step = min(left, CHUNK_BYTES)
        await response.write(view[:step])
        left -= step
    await response.write_eof()
    return response


Handler = Callable[[web.Request, Dialect], Awaitable[web.StreamResponse]]


def speaking(dialect: Dialect, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``handler`` in ``dialect``, behind the dialect's refusals (no key, a required header missing)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if (refused := dialect.refusal(request)) is not None:
            return refused
        return await handler(request, dialect)

    return handle


async def bench_record(request: web.Request) -> web.Response:
    """What one upload delivered (bytes, CRC-32), whoever's key it was made with."""
    file_id = request.match_info["file_id"]
    for store in request.app["stores"].values():
        if (record := store.by_id.get(file_id)) is not None:
            return web.json_response(asdict(record))
    return OPENAI.not_found(file_id)


def any_credential(request: web.Request) -> str:
    return next((key for key in (dialect.credential(request) for dialect in (OPENAI, ANTHROPIC)) if key), "")


async def bench_records(request: web.Request) -> web.Response:
    """Every file of the caller's key (in any dialect's header), by id, with what its upload delivered."""
    store = request.app["stores"].setdefault(any_credential(request), Store())
    return web.json_response({record.id: asdict(record) for record in store.ordered})


async def anthropic_tool_file(request: web.Request) -> web.Response:
    """A downloadable file of ``bytes`` bytes for the caller's key, as Anthropic's code execution tool makes one."""
    if (refused := ANTHROPIC.refusal(request)) is not None:
        return refused
    record = store_of(request, ANTHROPIC).add(
        file_id=ANTHROPIC.new_id(), nbytes=int(request.query["bytes"]), filename="output.bin", purpose=""
    )
    return web.json_response(ANTHROPIC.file_object(record))


async def healthz(request: web.Request) -> web.Response:
    files = sum(len(store.by_id) for store in request.app["stores"].values())
    return web.json_response({"status": "ok", "pid": os.getpid(), "files": files})


def make_app() -> web.Application:
    app = web.Application(client_max_size=1 << 40)
    app["stores"] = {}
    for root, dialect in DIALECTS.items():
        app.router.add_post(root, speaking(dialect, create_file))
        app.router.add_get(root, speaking(dialect, list_files))
        app.router.add_get(root + "/{file_id}", speaking(dialect, retrieve_file))
        app.router.add_delete(root + "/{file_id}", speaking(dialect, delete_file))
        app.router.add_get(root + "/{file_id}/content", speaking(dialect, file_content))
    app.router.add_get("/_bench/files", bench_records)
    app.router.add_get("/_bench/files/{file_id}", bench_record)
    app.router.add_post("/_bench/anthropic-tool-file", anthropic_tool_file)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    try:
        import uvloop  # optional: a little less event-loop overhead per request

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
