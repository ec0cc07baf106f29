"""A fast fake of OpenAI's Files API for the benchmark: asynchronous, streaming, never the bottleneck.

Uploads are parsed as they arrive and the file part is only counted and checksummed (CRC-32, a few
GB/s), never kept; downloads stream the recorded number of bytes of a fixed pattern. Records live in
memory, one store per credential (as an upstream account or project sees only its own files). It
serves OpenAI's paths (``/v1/files``) and Azure OpenAI's v1 surface (``/openai/v1/files``, key in
``api-key``). ``/_bench/...`` routes let the benchmark check what arrived (see ``bench/kinds.py``).

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
from dataclasses import asdict, dataclass

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
    created_at: int
    filename: str
    purpose: str
    crc32: int = 0
    seq: int = 0

    def as_openai(self) -> dict:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": None,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


class Store:
    """Files in creation order; list pages are slices of it."""

    def __init__(self) -> None:
        self.by_id: dict[str, Record] = {}
        self.ordered: list[Record] = []
        self._seq = itertools.count()

    def add(self, *, nbytes: int, filename: str, purpose: str, crc32: int = 0) -> Record:
        record = Record(
            id="file-" + secrets.token_hex(12),
            bytes=nbytes,
            created_at=int(time.time()),
            filename=filename,
            purpose=purpose,
            crc32=crc32,
            seq=next(self._seq),
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


def not_found(file_id: str) -> web.Response:
    body = {
        "error": {
            "message": f"No such File object: {file_id}",
            "type": "invalid_request_error",
            "param": "id",
            "code": None,
        }
    }
    return web.json_response(body, status=404)


def credential(request: web.Request) -> str:
    """The caller's key: the bearer token, or Azure's ``api-key`` header; empty when there is none."""
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        return authorization.removeprefix("Bearer ")
    return request.headers.get("api-key", "")


def store_of(request: web.Request) -> Store:
    """The caller's own store (created on first use)."""
    stores: dict[str, Store] = request.app["stores"]
    return stores.setdefault(credential(request), Store())


def check_auth(request: web.Request) -> web.Response | None:
    if not credential(request):
        return web.json_response(
            {"error": {"message": "no key", "type": "invalid_request_error", "param": None, "code": None}},
            status=401,
        )
    return None


async def create_file(request: web.Request) -> web.Response:
    if (denied := check_auth(request)) is not None:
        return denied
    boundary = request.content_type == "multipart/form-data" and request.headers["Content-Type"].partition("boundary=")[
        2
    ].strip('"')
    if not boundary:
        return web.json_response({"error": {"message": "not multipart", "type": "invalid_request_error"}}, status=400)
    parser = MultipartCounter(boundary.encode())
    async for chunk in request.content.iter_any():
        parser.feed(chunk)
    if not parser.done:
        return web.json_response({"error": {"message": "truncated body", "type": "invalid_request_error"}}, status=400)
    record = store_of(request).add(
        nbytes=parser.file_bytes,
        filename=parser.filename,
        purpose=parser.fields.get("purpose", ""),
        crc32=parser.file_crc32,
    )
    return web.json_response(record.as_openai())


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


async def list_files(request: web.Request) -> web.Response:
    if (denied := check_auth(request)) is not None:
        return denied
    store = store_of(request)
    limit = int(request.query.get("limit", "10000"))
    order = request.query.get("order", "desc")
    after = request.query.get("after")
    purpose = request.query.get("purpose")
    records = store.ordered if order == "asc" else store.ordered[::-1]
    if after:
        cursor = store.by_id.get(after)
        if cursor is None:
            return not_found(after)
        records = [r for r in records if (r.seq > cursor.seq if order == "asc" else r.seq < cursor.seq)]
    if purpose:
        records = [r for r in records if r.purpose == purpose]
    page = records[: limit + 1]
    data = [r.as_openai() for r in page[:limit]]
    body = {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(page) > limit,
    }
    return web.json_response(body)


async def retrieve_file(request: web.Request) -> web.Response:
    if (denied := check_auth(request)) is not None:
        return denied
    record = store_of(request).by_id.get(request.match_info["file_id"])
    if record is None:
        return not_found(request.match_info["file_id"])
    return web.json_response(record.as_openai())


async def delete_file(request: web.Request) -> web.Response:
    if (denied := check_auth(request)) is not None:
        return denied
    file_id = request.match_info["file_id"]
    if not store_of(request).remove(file_id):
        return not_found(file_id)
    return web.json_response({"id": file_id, "object": "file", "deleted": True})


async def file_content(request: web.Request) -> web.StreamResponse:
    if (denied := check_auth(request)) is not None:
        return denied
    record = store_of(request).by_id.get(request.match_info["file_id"])
    if record is None:
        return not_found(request.match_info["file_id"])
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


async def bench_record(request: web.Request) -> web.Response:
    """What one upload delivered (bytes, CRC-32), whoever's key it was made with."""
    file_id = request.match_info["file_id"]
    for store in request.app["stores"].values():
        if (record := store.by_id.get(file_id)) is not None:
            return web.json_response(asdict(record))
    return not_found(file_id)


async def bench_records(request: web.Request) -> web.Response:
    """Every file of the caller's key, by id, with what its upload delivered."""
    return web.json_response({record.id: asdict(record) for record in store_of(request).ordered})


async def healthz(request: web.Request) -> web.Response:
    files = sum(len(store.by_id) for store in request.app["stores"].values())
    return web.json_response({"status": "ok", "pid": os.getpid(), "files": files})


def make_app() -> web.Application:
    app = web.Application(client_max_size=1 << 40)
    app["stores"] = {}
    for root in ("/v1/files", "/openai/v1/files"):  # OpenAI's paths, and Azure OpenAI's v1 surface
        app.router.add_post(root, create_file)
        app.router.add_get(root, list_files)
        app.router.add_get(root + "/{file_id}", retrieve_file)
        app.router.add_delete(root + "/{file_id}", delete_file)
        app.router.add_get(root + "/{file_id}/content", file_content)
    app.router.add_get("/_bench/files", bench_records)
    app.router.add_get("/_bench/files/{file_id}", bench_record)
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
