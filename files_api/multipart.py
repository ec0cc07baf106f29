"""Reading an upload straight off the request, part by part, without holding the file.

Django's ``MultiPartParser`` finishes the whole body before a view runs: by then a 512 MiB file has
been spooled to disk once. ``MultipartForm`` reads the body lazily instead, so the file part's
chunks go to the provider while they still arrive. The form fields sent before the file (the SDKs
send ``purpose`` first) are read first; fields after it are read once the file part is done. Part
headers follow Django's rules (``_part_headers``); the parts are split with ``bytes.find`` and the
file's chunks are handed on without copies (Django's ``BoundaryIter`` copied each chunk twice).
This is the edge of an upload: the service gets the form's fields and a ``FilePart`` (name, media
type and a chunk iterator), never the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.http.multipartparser import FIELD, FILE
from django.utils.encoding import force_str
from django.utils.http import parse_header_parameters

from config.errors import InvalidRequest, RequestTimeout
from providers.base import CHUNK_SIZE

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32


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
            # Django re-raises a read error as UnreadablePostError, from the socket's TimeoutError
            # when the client stopped sending for CLIENT_IDLE_TIMEOUT_SECONDS (config.middleware).
            if isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError):
                raise RequestTimeout("The request body stopped arriving; the upload was abandoned.") from exc
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


# Django's part-header limit (``parse_boundary_stream(..., 1024)``): the headers of one part,
# from the CRLF after its boundary to the blank line, must fit in this many bytes.
MAX_PART_HEADER_BYTES = 1024
RAW = "raw"


class MultipartForm:
    """A ``multipart/form-data`` body read lazily: fields, one file part, more fields.

    The body is read in ``CHUNK_SIZE`` pieces and split at the delimiters (``CRLF--boundary``) with
    ``bytes.find``. The file part's chunks are handed on as the very objects that were read: each
    piece is held until the next one has arrived (so a delimiter straddling the two is seen) and
    only the piece where the part ends is sliced. Part headers are read as Django's multipart
    parser reads them (same 1 KiB limit, same ``Content-Disposition`` rules).
    """

    def __init__(self, raw: Any, *, content_type: str, content_length: int | None, content_encoding: str = "") -> None:
        # Nothing here inflates a body (a few KiB of gzip can grow without bound), and a body read
        # as sent while it is encoded would be stored as if it were the file: refuse any coding.
        if any(coding.strip().lower() not in ("", "identity") for coding in content_encoding.split(",")):
            raise InvalidRequest(
                "Uploads must not be compressed: send the multipart body as it is, without a Content-Encoding header.",
                code="unsupported_content_encoding",
            )
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
        self._delimiter = b"\r\n--" + boundary.encode("ascii", "replace")
        # Unread bytes of the body. The first boundary may open the body without a CRLF before it.
        self._buffer = b"\r\n"
        self._started = False
        self._finished = False
        self._in_part = False
        self.fields: dict[str, str] = {}
        self.file: FilePart | None = None

    # Reading the body.

    def _read(self) -> bytes:
        return self.reader.read(CHUNK_SIZE)

    def _fill(self, size: int) -> bool:
        """Make the buffer hold at least ``size`` bytes if the body has them; False if it ends first."""
        while len(self._buffer) < size:
            data = self._read()
            if not data:
                return False
            self._buffer += data
        return True

    def check_complete(self) -> None:
        """Raise ``InvalidRequest`` if the body has ended before Content-Length bytes (the client went away)."""
        if self.reader.is_truncated:
            raise _incomplete_body()

    def _ended_early(self) -> InvalidRequest:
        if self.reader.is_truncated:
            return _incomplete_body()
        return InvalidRequest("The multipart body is malformed: it ends inside a part.")

    def _part_data(self) -> Iterator[bytes]:
        """The current part's bytes up to its closing delimiter, which is consumed (the buffer then
        starts right after it). Raises ``InvalidRequest`` if the body ends first."""
        delimiter = self._delimiter
        overlap = len(delimiter) - 1
        held, self._buffer = self._buffer, b""
        while True:
            index = held.find(delimiter)
            if index >= 0:
                self._buffer = held[index + len(delimiter) :]
                self._in_part = False
                if index:
                    yield held[:index]
                return
            data = self._read()
            while 0 < len(data) < overlap:  # small reads: look far enough past ``held`` to decide
                more = self._read()
                if not more:
                    break
                data += more
            if len(data) < overlap:  # the body ends here: the delimiter is in what is left, or missing
                held += data
                index = held.find(delimiter)
                if index < 0:
                    self._buffer = b""
                    raise self._ended_early()
                continue
            # A delimiter that starts in ``held`` and ends in ``data`` (``held`` alone has none).
            tail = held[-overlap:]
            seam = (tail + data[:overlap]).find(delimiter)
            if seam >= 0:
                cut = len(held) - len(tail) + seam
                self._buffer = data[seam + len(delimiter) - len(tail) :]
                self._in_part = False
                if cut:
                    yield held[:cut]
                return
            if held:
                yield held
            held = data

    def _skip_part(self) -> None:
        for _ in self._part_data():
            pass

    def _next_part(self) -> tuple[str, dict[str, Any]] | None:
        """Move to the next part and return its type and headers (``None`` after the last one)."""
        if self._finished:
            return None
        if self._in_part:  # the caller left the previous part unread
            self._skip_part()
        if not self._started:
            self._started = True
            try:
                self._skip_part()  # the preamble, normally empty
            except InvalidRequest:
                if self.reader.is_truncated:
                    raise
                self._finished = True  # no boundary at all: a body without parts
                return None
        if not self._fill(2):
            if self.reader.is_truncated:
                raise self._ended_early()
            self._finished = True  # "--boundary" closing the body without its final "--"
            return None
        if self._buffer.startswith(b"--"):  # the close delimiter; an epilogue is ignored
            self._finished = True
            self._buffer = b""
            return None
        while (header_end := self._buffer.find(b"\r\n\r\n", 0, MAX_PART_HEADER_BYTES)) < 0:
            if len(self._buffer) >= MAX_PART_HEADER_BYTES:
                raise InvalidRequest("The multipart body is malformed: Request max total header size exceeded.")
            if not self._fill(len(self._buffer) + 1):
                raise self._ended_early()
        header, self._buffer = self._buffer[:header_end], self._buffer[header_end + 4 :]
        self._in_part = True
        return _part_headers(header)

    # The form.

    def read_until_file(self) -> FilePart | None:
        """Read fields until the file part begins; return it (``None`` if the body has none)."""
        while (part := self._next_part()) is not None:
            item_type, meta = part
            disposition = meta.get("content-disposition", ("", {}))[1]
            name = _text(disposition.get("name", ""))
            if item_type == FILE and name == "file":
                content_type = meta.get("content-type", ("application/octet-stream", {}))[0].strip()
                self.file = FilePart(name, _text(disposition.get("filename", "")), content_type, self._part_data())
                return self.file
            if item_type == FILE:
                raise InvalidRequest(f"Unexpected file field {name!r}; send the file as 'file'.", param=name or None)
            if item_type == FIELD:
                self._store_field(name)
        return None

    def read_remaining_fields(self) -> dict[str, str]:
        """Read the fields after the file part; a second file is refused."""
        if self.file is not None:
            for _ in self.file.chunks:  # normally already consumed by the provider; drains leftovers
                pass
        while (part := self._next_part()) is not None:
            item_type, meta = part
            name = _text(meta.get("content-disposition", ("", {}))[1].get("name", ""))
            if item_type == FILE:
                raise InvalidRequest("Send exactly one file per upload.", param=name or "file")
            if item_type == FIELD:
                self._store_field(name)
        self.check_complete()
        return self.fields

    def _store_field(self, name: str) -> None:
        value = b""
        for piece in self._part_data():
            value += piece
            if len(value) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"The form field {name!r} is too long.", param=name)
        if name in self.fields:
            raise InvalidRequest(f"The form field {name!r} was sent twice.", param=name)
        if len(self.fields) >= MAX_FIELDS:
            raise InvalidRequest("Too many form fields.")
        self.fields[name] = value.decode("utf-8", "replace")


def _part_headers(header: bytes) -> tuple[str, dict[str, Any]]:
    """A part's type and headers, read as ``django.http.multipartparser.parse_boundary_stream`` reads them."""
    item_type = RAW
    headers: dict[str, Any] = {}
    for line in header.split(b"\r\n"):
        try:
            main_value_pair, params = parse_header_parameters(line.decode())
            name, value = main_value_pair.split(":", 1)
            encoded = {key: item.encode() for key, item in params.items()}
        except ValueError:  # an invalid header line, as Django skips it
            continue
        if name == "content-disposition":
            item_type = FILE if encoded.get("filename") else FIELD
        headers[name] = value, encoded
    return item_type, headers


def _incomplete_body() -> InvalidRequest:
    return InvalidRequest("The request body ended before Content-Length bytes.", code="incomplete_body")


def _text(value: str | bytes) -> str:
    return force_str(value, "utf-8", errors="replace").strip()
