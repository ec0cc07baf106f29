"""Checks on what a client uploads: file names. Batch lines are checked by ``providers.batch``."""

from __future__ import annotations

import unicodedata

from config.errors import InvalidRequest

MAX_FILENAME_LENGTH = 255


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
