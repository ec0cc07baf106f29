"""What the three stores behind the storage-backed kinds share (``providers.s3``, ``providers.gcs``,
``providers.local``): key and prefix checks, the media type they record, a chunk stream that
releases its source when closed, the write-read-delete probe behind ``check()``, and the error a
refused credential becomes.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator

from django.core.exceptions import ImproperlyConfigured

from config.errors import FileNotFound, UpstreamError, UpstreamRejected
from providers.base import Store

# S3 refuses non-final multipart parts under 5 MiB (EntityTooSmall); GCS wants resumable chunks in
# multiples of 256 KiB. 8 MiB satisfies both and bounds the memory one transfer holds.
PART_SIZE = 8 * 1024 * 1024
# S3 and GCS both cap object names at 1024 bytes of UTF-8.
MAX_KEY_BYTES = 1024
PROBE_FOLDER = "filegate-check/"
PROBE_CONTENT = b"filegate store check\n"

_MEDIA_TYPE = re.compile(r"[\w.+\-]+/[\w.+\-]+")
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\]")
_SAFE_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def checked_key(key: str) -> str:
    """``key`` if it can name an object under a store's root or prefix.

    Keys are built by the gateway from minted ids; this refuses anything that could leave the
    root of a folder or mean something else to a tool that normalises paths (``..``, a leading
    ``/``, empty segments, backslashes, control characters). Raises ``FileNotFound``: no object
    can have such a key.
    """
    segments = key.split("/")
    if (
        not key
        or len(key.encode()) > MAX_KEY_BYTES
        or _FORBIDDEN.search(key)
        or any(segment in ("", ".", "..") for segment in segments)
    ):
        raise FileNotFound("No such File object.", param="id")
    return key


def checked_prefix(prefix: str) -> str:
    """A listing prefix: ``""``, or a key start (it may end in ``/``). Raises ``FileNotFound`` like ``checked_key``."""
    if prefix:
        checked_key(prefix.removesuffix("/"))
    return prefix


def normalized_prefix(prefix: str) -> str:
    """A store's configured key prefix as it is prepended: ``""`` or ``"some/folder/"``.

    Raises ``ImproperlyConfigured`` for a prefix ``checked_key`` would refuse.
    """
    prefix = prefix.strip("/")
    try:
        return checked_key(prefix) + "/" if prefix else ""
    except FileNotFound:
        raise ImproperlyConfigured("The key prefix must be a plain folder path (no '..', '.', '//' or '\\').") from None


def media_type(value: str) -> str:
    """The content type to record: the client's if it is a plain ``type/subtype``, else octet-stream.

    The value comes from the client's multipart headers and ends up in a request header to the store.
    """
    return value if _MEDIA_TYPE.fullmatch(value or "") else "application/octet-stream"


def safe_code(code: object) -> str:
    """An error code from a store, fit for a message or a log line (no free text from the store)."""
    return code if isinstance(code, str) and _SAFE_CODE.fullmatch(code) else "unknown"


def credentials_refused(label: str, detail: str) -> UpstreamRejected:
    """The error for a store that refused the account's credentials (as ``providers.http`` words it).

    A 403, never a 401: the client's own gateway key is fine, and the SDKs do not retry a 403.
    """
    return UpstreamRejected(
        f"The {label} refused this provider account's credentials ({detail}); "
        "an organization admin must update the account.",
        status_code=403,
        code="upstream_authentication_failed",
    )


class ClosingChunks:
    """Chunks from a source that must be released: released when exhausted, when iteration fails,
    and when closed, also before the first chunk (Django closes a response it never sent)."""

    def __init__(self, chunks: Iterator[bytes], release: Callable[[], None]) -> None:
        self._chunks = chunks
        self._release = release
        self._is_closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if not self._is_closed:
            self._is_closed = True
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
            self._release()


def probe(store: Store) -> None:
    """Prove ``store`` reachable and writable: write a small object, read it back, delete it.

    The probe object lives under ``filegate-check/`` with a random name and is deleted even when
    reading it back fails. Raises the store's mapped errors, or ``UpstreamError`` if the bytes
    read back differ from those written.
    """
    key = PROBE_FOLDER + secrets.token_hex(8)
    store.save(key, iter([PROBE_CONTENT]), content_type="text/plain")
    try:
        content = store.open(key)
        received = bytearray()
        try:
            for chunk in content.chunks:
                received += chunk
                if len(received) > len(PROBE_CONTENT):
                    break
        finally:
            close = getattr(content.chunks, "close", None)
            if close is not None:
                close()
    finally:
        store.delete(key)
    if bytes(received) != PROBE_CONTENT:
        raise UpstreamError("The store returned other bytes than were written to it.")
