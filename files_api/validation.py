"""Checks on what a client uploads: file names and batch JSONL lines."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from config.errors import InvalidRequest

MAX_FILENAME_LENGTH = 255

# The endpoints OpenAI's Batch API accepts in a line's `url` (openai-python BatchCreateParams).
BATCH_ENDPOINTS = frozenset(
    {
        "/v1/responses",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/videos",
    }
)


def clean_filename(raw: str) -> str:
    """Return a safe file name: the last path segment, no control characters, at most 255 characters.

    Raises ``InvalidRequest`` when nothing usable is left.
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if name in ("", ".", ".."):
        raise InvalidRequest("The file needs a file name.", param="file", code="invalid_filename")
    if len(name) > MAX_FILENAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[: MAX_FILENAME_LENGTH - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_FILENAME_LENGTH]
    return name


class BatchLineValidator:
    """Checks an OpenAI batch file line by line as its chunks pass, holding one partial line at most.

    Every line must be a JSON object with a unique string ``custom_id``, ``method`` ``POST``, a
    known endpoint ``url`` and an object ``body``. The first bad line raises ``InvalidRequest``
    naming the line number and the problem.
    """

    def __init__(self) -> None:
        self.line_number = 0
        self.custom_ids: set[str] = set()
        self._partial = bytearray()

    def feed(self, chunk: bytes) -> None:
        start = 0
        while (newline := chunk.find(b"\n", start)) >= 0:
            if self._partial:
                self._partial += chunk[start:newline]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = chunk[start:newline]
            self._check(line)
            start = newline + 1
        self._partial += chunk[start:]

    def finish(self) -> None:
        if self._partial.strip():
            self._check(bytes(self._partial))
            self._partial.clear()
        if self.line_number == 0:
            raise self._error(1, "the file has no request lines")

    def _error(self, line_number: int, problem: str) -> InvalidRequest:
        return InvalidRequest(
            f"Invalid batch file: line {line_number}: {problem}.", param="file", code="invalid_batch_file"
        )

    def _check(self, raw: bytes) -> None:
        self.line_number += 1
        number = self.line_number
        if not raw.strip():
            raise self._error(number, "the line is empty")
        try:
            line: Any = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            raise self._error(number, "the line is not valid JSON") from None
        if not isinstance(line, dict):
            raise self._error(number, "the line is not a JSON object")
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise self._error(number, "'custom_id' must be a non-empty string")
        if custom_id in self.custom_ids:
            raise self._error(number, f"'custom_id' {custom_id!r} is used by an earlier line")
        self.custom_ids.add(custom_id)
        if line.get("method") != "POST":
            raise self._error(number, "'method' must be \"POST\"")
        if line.get("url") not in BATCH_ENDPOINTS:
            raise self._error(number, f"'url' must be one of {', '.join(sorted(BATCH_ENDPOINTS))}")
        if not isinstance(line.get("body"), dict):
            raise self._error(number, "'body' must be a JSON object")
