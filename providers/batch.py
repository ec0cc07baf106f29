"""Batch JSONL files: splitting them into lines, parsing a line at bounded cost, and rewriting them.

An OpenAI batch file is one request a line: ``{"custom_id", "method", "url", "body"}``. Everything
here works on a stream of byte chunks and holds at most one line at a time:

- ``LineSplitter`` / ``split_lines`` cut the chunks into numbered lines, refusing a line as soon as
  it crosses ``max_line_bytes`` (the ``BATCH_LINE_MAX_BYTES`` setting), without reading its rest.
- ``parse_line`` parses one line, refusing first what would cost too much to build: nesting deeper
  than ``MAX_LINE_DEPTH`` and more than ``MAX_LINE_TOKENS`` JSON tokens (so a line of tiny values
  cannot make the parse grow memory many times the line's size). It never raises ``RecursionError``.
- ``BatchLineValidator`` checks OpenAI batch lines chunk by chunk (``feed(chunk)`` / ``finish()``),
  as ``files_api.uploads.FileStream`` needs for the kinds that store the file unchanged.
- ``rewrite_lines`` turns the file into a provider's native batch file while it streams, for the
  storage-backed kinds. ``RewritingStoreProvider.transform`` (the base of ``bedrock`` and
  ``vertex``) calls it as::

      rewrite_lines(chunks, BedrockRewriter(default_model=model_header), max_line_bytes=settings.BATCH_LINE_MAX_BYTES)

  and the upload path stores the chunks it yields. The rewriters live in ``providers.batch_bedrock``
  and ``providers.batch_vertex``.

Every refusal is ``config.errors.InvalidRequest`` (400, code ``invalid_batch_file``, param ``file``)
with a message naming the line: ``Invalid batch file: line 3: ...``.

A UTF-8 byte order mark is refused at the start of any line (the first one included), whatever
the provider kind: JSON forbids it (RFC 8259, section 8.1) and we found no evidence that OpenAI
accepts it, so the client is told to save the file without one rather than having it silently
stripped by some kinds and not others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from django.conf import settings

from config.errors import InvalidRequest
from providers.base import CHUNK_SIZE, ObjectStoreProvider, UploadOptions

# A line nested deeper than this is refused before it is parsed: real requests (a JSON schema in
# response_format included) stay far below it, and it keeps the C parser well inside Python's
# recursion limit, so a line nested 200,000 deep is a 400, never a RecursionError.
MAX_LINE_DEPTH = 64
# Strings, opening brackets, commas and colons a line may hold. Every JSON value but the first
# follows a bracket, comma or colon, so this bounds the values the parse builds and, with the line
# cap, its memory: at most about 40 bytes a token (500,000 empty lists, objects, ints or short
# strings parse into 9-18 MiB) plus 8 bytes a byte of the line (Python keeps the decoded line and
# its strings at up to 4 bytes a character). Room for an embeddings request of a few hundred
# thousand token ids.
MAX_LINE_TOKENS = 500_000

BOM = b"\xef\xbb\xbf"
CHAT_COMPLETIONS = "/v1/chat/completions"
# The endpoints OpenAI's Batch API accepts in a line's `url` (openai-python BatchCreateParams).
BATCH_ENDPOINTS = frozenset(
    {
        "/v1/responses",
        CHAT_COMPLETIONS,
        "/v1/embeddings",
        "/v1/completions",
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/videos",
    }
)
OPENAI_KEYS = frozenset({"custom_id", "method", "url", "body"})

# One JSON token: a whole string (escapes skipped, possessively, so a long string costs one linear
# pass and no backtracking memory), an opening or closing bracket, a comma or colon, or a quote that
# opens a string never closed.
_TOKEN = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"|([\[{])|([\]}])|([,:])|(")')
_OPEN, _CLOSE, _UNTERMINATED = 1, 2, 4  # the groups of _TOKEN (3 is a comma or colon)


def line_error(number: int, problem: str) -> InvalidRequest:
    """The error for a bad line: ``Invalid batch file: line {number}: {problem}.``"""
    return InvalidRequest(f"Invalid batch file: line {number}: {problem}.", param="file", code="invalid_batch_file")


class LineSplitter:
    """Cuts chunks of a JSONL file into numbered lines, holding at most one partial line.

    ``feed(chunk)`` yields ``(number, line)`` for each line the chunk completes and ``finish()``
    the last one when the file does not end with a newline. Lines come without their ``\\n`` or
    ``\\r\\n``. Raises ``InvalidRequest`` for a line longer than ``max_line_bytes`` (its line break
    not counted) as soon as the held bytes cross it, for an empty line, and at ``finish()`` for a
    file without lines. Whitespace after the last line break is ignored.
    """

    def __init__(self, *, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self.line_count = 0
        self._partial = bytearray()

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes]]:
        start = 0
        while (newline := chunk.find(b"\n", start)) >= 0:
            yield self._complete(chunk[start:newline])
            start = newline + 1
        tail = chunk[start:]
        self._check_length(self.line_count + 1, tail)
        self._partial += tail

    def finish(self) -> Iterator[tuple[int, bytes]]:
        if self._partial and not self._partial.isspace():
            yield self._complete(b"")
        if self.line_count == 0:
            raise line_error(1, "the file has no request lines")

    def _complete(self, piece: bytes) -> tuple[int, bytes]:
        self.line_count += 1
        number = self.line_count
        self._check_length(number, piece)
        if self._partial:
            self._partial += piece
            line = bytes(self._partial)
            self._partial.clear()
        else:
            line = piece
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line or line.isspace():
            raise line_error(number, "the line is empty")
        return number, line

    def _check_length(self, number: int, piece: bytes) -> None:
        """Refuse before holding ``piece`` if the line would then pass the cap. A final ``\\r`` is
        not counted yet: it may be the first half of a ``\\r\\n``."""
        size = len(self._partial) + len(piece)
        if (piece[-1:] or self._partial[-1:]) == b"\r":
            size -= 1
        if size > self.max_line_bytes:
            raise line_error(number, f"the line is longer than {self.max_line_bytes} bytes")


def split_lines(chunks: Iterable[bytes], *, max_line_bytes: int) -> Iterator[tuple[int, bytes]]:
    """``(number, line)`` for each line of the file whose chunks are ``chunks``; see ``LineSplitter``."""
    splitter = LineSplitter(max_line_bytes=max_line_bytes)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


def parse_line(number: int, raw: bytes) -> dict[str, Any]:
    """The JSON object on line ``number``.

    Raises ``InvalidRequest`` for a byte order mark, nesting deeper than ``MAX_LINE_DEPTH``, more
    than ``MAX_LINE_TOKENS`` tokens, invalid UTF-8, invalid JSON, or a value that is not an object.
    """
    if raw.startswith(BOM):
        raise line_error(
            number, "the line starts with a UTF-8 byte order mark; save the file as UTF-8 without a byte order mark"
        )
    _check_cost(number, raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise line_error(number, "the line is not valid UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError:  # JSONDecodeError, NaN and Infinity, integers over Python's digit limit
        raise line_error(number, "the line is not valid JSON") from None
    if not isinstance(value, dict):
        raise line_error(number, "the line is not a JSON object")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's parser would accept NaN and Infinity


def _check_cost(number: int, raw: bytes) -> None:
    """Refuse a line nested deeper than ``MAX_LINE_DEPTH`` or holding more than ``MAX_LINE_TOKENS`` tokens.

    Counting bytes is enough for most lines: the counts include brackets, commas and quotes inside
    strings, so they can only overstate. Only a line they do not clear is scanned token by token
    (about 0.2 microseconds a token, stopping at the limit).
    """
    openings = raw.count(b"[") + raw.count(b"{")
    at_most = openings + raw.count(b",") + raw.count(b":") + raw.count(b'"') // 2
    if at_most <= MAX_LINE_TOKENS and openings <= MAX_LINE_DEPTH:
        return
    depth = tokens = 0
    for token in _TOKEN.finditer(raw):
        kind = token.lastindex
        if kind == _CLOSE:
            depth -= 1
            if depth < 0:
                return  # not JSON: the parser stops at this bracket, having built only what came before
            continue
        if kind == _UNTERMINATED:
            return  # not JSON: the parser stops at this string, likewise
        tokens += 1
        if kind == _OPEN:
            depth += 1
            if depth > MAX_LINE_DEPTH:
                raise line_error(number, f"the line is nested deeper than {MAX_LINE_DEPTH} levels")
        if tokens > MAX_LINE_TOKENS:
            raise line_error(
                number, f"the line holds more than {MAX_LINE_TOKENS} JSON tokens (strings, brackets, commas, colons)"
            )


def claim_id(number: int, seen: set[str], value: str, name: str) -> None:
    """Record the request id ``value``; raises ``InvalidRequest`` if an earlier line used it."""
    if value in seen:
        raise line_error(number, f"{name!r} {value!r} is used by an earlier line")
    seen.add(value)


def check_openai_line(number: int, line: dict[str, Any], seen: set[str]) -> None:
    """Check OpenAI's batch-line rules and record the line's ``custom_id`` in ``seen``.

    A unique non-empty string ``custom_id``, ``method`` ``POST``, a ``url`` in ``BATCH_ENDPOINTS``
    and an object ``body``; raises ``InvalidRequest`` naming the first rule broken.
    """
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise line_error(number, "'custom_id' must be a non-empty string")
    claim_id(number, seen, custom_id, "custom_id")
    if line.get("method") != "POST":
        raise line_error(number, "'method' must be \"POST\"")
    if line.get("url") not in BATCH_ENDPOINTS:
        raise line_error(number, f"'url' must be one of {', '.join(sorted(BATCH_ENDPOINTS))}")
    if not isinstance(line.get("body"), dict):
        raise line_error(number, "'body' must be a JSON object")


class BatchLineValidator:
    """Checks an OpenAI batch file line by line as its chunks pass (``feed``, then ``finish``).

    Every line must pass ``parse_line`` and ``check_openai_line``; the first bad line raises
    ``InvalidRequest`` naming its number and the problem. Holds one partial line at most, plus
    the custom ids seen.
    """

    def __init__(self, *, max_line_bytes: int) -> None:
        self.splitter = LineSplitter(max_line_bytes=max_line_bytes)
        self.custom_ids: set[str] = set()

    @property
    def line_number(self) -> int:
        return self.splitter.line_count

    def feed(self, chunk: bytes) -> None:
        for number, raw in self.splitter.feed(chunk):
            check_openai_line(number, parse_line(number, raw), self.custom_ids)

    def finish(self) -> None:
        for number, raw in self.splitter.finish():
            check_openai_line(number, parse_line(number, raw), self.custom_ids)


class Rewriter(Protocol):
    """Turns OpenAI batch lines into one provider's native batch records."""

    @property
    def native_keys(self) -> frozenset[str]:
        """The keys that mark a line as already in the provider's format (when it has no OpenAI key)."""
        ...

    def rewrite(self, number: int, line: dict[str, Any]) -> dict[str, Any]:
        """The native record for an OpenAI line that passed ``check_openai_line``; raises
        ``InvalidRequest`` (via ``line_error``) naming the field it cannot express."""
        ...

    def check_native(self, number: int, line: dict[str, Any]) -> str | None:
        """Check the shape of a line already in the provider's format (raising ``InvalidRequest``)
        and return the request id it carries, if any, so ids stay unique across both kinds of line."""
        ...


def rewrite_lines(chunks: Iterable[bytes], rewriter: Rewriter, *, max_line_bytes: int) -> Iterator[bytes]:
    """The provider's batch file for the batch file whose chunks are ``chunks``, as it streams.

    Yields newline-terminated JSONL in chunks of about ``CHUNK_SIZE`` (1 MiB), never the whole
    file. A line with any OpenAI key is an OpenAI request: it must pass ``check_openai_line`` and is
    replaced by ``rewriter.rewrite``'s record. A line with none of them but a native key passes
    through byte for byte once ``rewriter.check_native`` accepts it. Request ids (``custom_id`` and
    native ids) must be unique across the file. Raises ``InvalidRequest`` naming the first line
    that cannot be split, parsed, checked or rewritten; nothing is ever dropped.
    """
    seen: set[str] = set()
    out = bytearray()
    for number, raw in split_lines(chunks, max_line_bytes=max_line_bytes):
        line = parse_line(number, raw)
        if line.keys() & OPENAI_KEYS or not line.keys() & rewriter.native_keys:
            check_openai_line(number, line, seen)
            out += _encode(number, rewriter.rewrite(number, line))
        else:
            if (native_id := rewriter.check_native(number, line)) is not None:
                claim_id(number, seen, native_id, "request id")
            out += raw
        out += b"\n"
        if len(out) >= CHUNK_SIZE:
            yield bytes(out)
            out.clear()
    if out:
        yield bytes(out)


def _encode(number: int, record: dict[str, Any]) -> bytes:
    try:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape (\\ud800) cannot be written as UTF-8
        raise line_error(number, "the line holds an unpaired UTF-16 surrogate escape") from None


class RewritingStoreProvider(ObjectStoreProvider):
    """A storage-backed kind whose ``purpose=batch`` files are stored in its provider's batch format.

    ``transform`` rewrites such an upload with ``rewrite_lines`` and the kind's ``rewriter``, which
    checks every line (OpenAI lines by OpenAI's rules, native lines by the provider's), so the
    gateway's OpenAI-only line check is off for them (``needs_openai_batch_lines``). Files of other
    purposes are stored as they arrive.
    """

    def rewriter(self, options: UploadOptions) -> Rewriter:
        """A fresh rewriter for one upload (it remembers the file's model and request ids)."""
        raise NotImplementedError

    def needs_openai_batch_lines(self, options: UploadOptions) -> bool:
        return False

    def transform(self, chunks: Iterable[bytes], options: UploadOptions) -> Iterable[bytes]:
        if options.purpose != "batch":
            return chunks
        return rewrite_lines(chunks, self.rewriter(options), max_line_bytes=settings.BATCH_LINE_MAX_BYTES)
