"""Reading an upload straight off the request, part by part, without holding the file.

Django's ``MultiPartParser`` finishes the whole body before a view runs: by then a 512 MiB file has
been spooled to disk once. Here the same parser machinery (``django.http.multipartparser.Parser``)
is driven lazily instead, so the file part's chunks go to the provider while they still arrive. The
form fields sent before the file (the SDKs send ``purpose`` first) are read first; fields after it
are read once the file part is done.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.http.multipartparser import FIELD, FILE, ChunkIter, LazyStream, MultiPartParserError, Parser
from django.utils.encoding import force_str
from django.utils.http import parse_header_parameters

from config.errors import InvalidRequest, PayloadTooLarge
from providers.base import CHUNK_SIZE

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32

# SHA-256 runs at about 1 GB/s and hashlib releases the GIL on large buffers, so each upload hashes
# chunk N on one of these threads while its own thread receives, parses and forwards chunk N+1.
# Shared by every upload of the process; each upload has at most one chunk in flight here.
_HASHER = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1), thread_name_prefix="filegate-sha256")


class CountingReader:
    """The request body as a file object that counts bytes and notices a body cut short."""

    def __init__(self, raw: Any, content_length: int) -> None:
        self.raw = raw
        self.content_length = content_length
        self.received = 0
        self.hit_end = False

    def read(self, size: int) -> bytes:
        try:
            data = self.raw.read(size)
        except (OSError, ValueError) as exc:
            raise InvalidRequest("The request body could not be read to the end.", code="incomplete_body") from exc
        self.received += len(data)
        if not data:
            self.hit_end = True
        return data

    @property
    def is_truncated(self) -> bool:
        """True once the body has ended before Content-Length bytes arrived (the client went away)."""
        return self.hit_end and self.received < self.content_length


@dataclass
class FilePart:
    field_name: str
    filename: str
    content_type: str
    chunks: Iterator[bytes]


class MultipartForm:
    """A ``multipart/form-data`` body read lazily: fields, one file part, more fields."""

    def __init__(self, raw: Any, *, content_type: str, content_length: int | None) -> None:
        media_type, params = parse_header_parameters(content_type or "")
        if media_type != "multipart/form-data":
            raise InvalidRequest("Uploads must be sent as multipart/form-data with 'file' and 'purpose' fields.")
        boundary = params.get("boundary", "")
        if not boundary or len(boundary) > 200:
            raise InvalidRequest("The multipart body has no valid boundary.")
        if content_length is None:
            raise InvalidRequest("A Content-Length header is required for uploads.", code="missing_content_length")
        self.content_length = content_length
        self.reader = CountingReader(raw, content_length)
        stream = LazyStream(ChunkIter(self.reader, CHUNK_SIZE))  # type: ignore[arg-type]
        self._parts = iter(Parser(stream, boundary.encode("ascii", "replace")))
        self.fields: dict[str, str] = {}
        self.file: FilePart | None = None

    def _next_part(self) -> tuple[Any, Any, Any] | None:
        try:
            return next(self._parts, None)
        except MultiPartParserError as exc:
            raise InvalidRequest(f"The multipart body is malformed: {exc}") from exc

    def read_until_file(self) -> FilePart | None:
        """Read fields until the file part begins; return it (``None`` if the body has none)."""
        while (part := self._next_part()) is not None:
            item_type, meta, field_stream = part
            disposition = meta.get("content-disposition", ("", {}))[1]
            name = _text(disposition.get("name", ""))
            if item_type == FILE and name == "file":
                content_type = meta.get("content-type", ("application/octet-stream", {}))[0].strip()
                self.file = FilePart(name, _text(disposition.get("filename", "")), content_type, iter(field_stream))
                return self.file
            if item_type == FILE:
                raise InvalidRequest(f"Unexpected file field {name!r}; send the file as 'file'.", param=name or None)
            if item_type == FIELD:
                self._store_field(name, field_stream)
        return None

    def read_remaining_fields(self) -> dict[str, str]:
        """Read the fields after the file part; a second file is refused."""
        if self.file is not None:
            for _ in self.file.chunks:  # normally already consumed by the provider; drains leftovers
                pass
        while (part := self._next_part()) is not None:
            item_type, meta, field_stream = part
            name = _text(meta.get("content-disposition", ("", {}))[1].get("name", ""))
            if item_type == FILE:
                raise InvalidRequest("Send exactly one file per upload.", param=name or "file")
            if item_type == FIELD:
                self._store_field(name, field_stream)
        if self.reader.is_truncated:
            raise InvalidRequest("The request body ended before Content-Length bytes.", code="incomplete_body")
        return self.fields

    def _store_field(self, name: str, field_stream: Any) -> None:
        value = field_stream.read(MAX_FIELD_BYTES + 1)
        if len(value) > MAX_FIELD_BYTES:
            raise InvalidRequest(f"The form field {name!r} is too long.", param=name)
        if name in self.fields:
            raise InvalidRequest(f"The form field {name!r} was sent twice.", param=name)
        if len(self.fields) >= MAX_FIELDS:
            raise InvalidRequest("Too many form fields.")
        self.fields[name] = value.decode("utf-8", "replace")


def _text(value: str | bytes) -> str:
    return force_str(value, "utf-8", errors="replace").strip()


class FileStream:
    """The file's bytes on their way upstream: counted, hashed, limited and validated per chunk.

    Iterate it or ``read(n)`` from it (the ``providers.base.UploadStream`` protocol). Raises
    ``PayloadTooLarge`` the moment the limit is crossed and the validator's ``InvalidRequest`` on
    the first bad line, so the provider aborts the transfer mid-stream. ``on_end`` runs once the
    last chunk has been handed out, before the provider can treat the file as complete.
    """

    def __init__(
        self,
        chunks: Iterator[bytes],
        *,
        max_bytes: int,
        too_large_message: str,
        validator: Any | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self.max_bytes = max_bytes
        self.too_large_message = too_large_message
        self.validator = validator
        self.on_end = on_end
        self.bytes_read = 0
        self._sha256 = hashlib.sha256()
        self._hashing: Future[None] | None = None
        self._buffer = b""
        self._done = False

    @property
    def sha256(self) -> str:
        self._wait_for_hash()
        return self._sha256.hexdigest()

    def _hash(self, chunk: bytes) -> None:
        # Updates stay in order: the previous chunk is hashed before the next one is handed over.
        self._wait_for_hash()
        self._hashing = _HASHER.submit(self._sha256.update, chunk)

    def _wait_for_hash(self) -> None:
        if self._hashing is not None:
            self._hashing.result()
            self._hashing = None

    def ensure_not_empty(self) -> None:
        """Pull the first chunk now so an empty file is refused before anything goes upstream."""
        for first in self._chunks:
            if first:
                self._chunks = itertools.chain([first], self._chunks)
                return
        raise InvalidRequest("The file is empty.", param="file", code="empty_file")

    def _next_chunk(self) -> bytes | None:
        if self._done:
            return None
        for chunk in self._chunks:
            if not chunk:
                continue
            self.bytes_read += len(chunk)
            if self.bytes_read > self.max_bytes:
                raise PayloadTooLarge(self.too_large_message, param="file")
            self._hash(chunk)
            if self.validator is not None:
                self.validator.feed(chunk)
            return chunk
        self._done = True
        if self.validator is not None:
            self.validator.finish()
        if self.on_end is not None:
            self.on_end()
        return None

    def __iter__(self) -> Iterator[bytes]:
        if self._buffer:
            buffered, self._buffer = self._buffer, b""
            yield buffered
        while (chunk := self._next_chunk()) is not None:
            yield chunk

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left if ``size`` < 0, for small files only)."""
        parts = [self._buffer] if self._buffer else []
        have = len(self._buffer)
        while size < 0 or have < size:
            chunk = self._next_chunk()
            if chunk is None:
                break
            parts.append(chunk)
            have += len(chunk)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if size < 0:
            self._buffer = b""
            return data
        self._buffer = data[size:]
        return data[:size]

    def drain(self) -> None:
        """Consume what the provider left unread, so limits and validation still see every byte."""
        self._buffer = b""
        while self._next_chunk() is not None:
            pass
