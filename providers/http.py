"""The shared base of kinds that speak to a provider's Files API over HTTP (OpenAI, Azure, Groq, Anthropic).

The plumbing exists once, here: one pooled ``httpx.Client`` per account (auth headers, base URL,
timeouts, proxies and CA bundle from the environment; bodiless requests through urllib3 beneath it,
``providers/transport.py``), the multipart upload body generated while the
file streams in, retries of idempotent calls, bounded reading of JSON answers (compressed or not),
streamed downloads, and the mapping of every failure to a ``config.errors`` class.

What differs between kinds is a handful of small methods over plain values, each testable with no
server: ``upload_fields`` (the form fields sent before the file), ``list_query`` (the query of one
upstream list page), ``parse_file`` (one file object), ``parse_page`` (a list answer: files in the
order asked for, ``has_more``, the cursor of the next page), ``parse_deleted``, ``parse_error`` (an
error body) and ``error_for`` (the gateway error for a status and that body). Their defaults speak
OpenAI's dialect; a kind overrides only what its provider says differently, and ``iter_pages`` where
its paging is not OpenAI's.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import secrets
import time
import urllib.request
import zlib
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config.errors import (
    FileNotFound,
    GatewayError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.base import (
    CHUNK_SIZE,
    ByteCounter,
    Content,
    Provider,
    RemoteFile,
    UploadOptions,
    UploadStream,
    iter_chunks,
)
from providers.fields import Field
from providers.transport import BodilessViaUrllib3

logger = logging.getLogger("filegate.providers")

# Ids are put into URL paths. Upstream ids look like `file-abc123`; anything else (`..`, slashes,
# escapes) cannot name an upstream file and must not reach the upstream as a path.
REMOTE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")
# A list page of 10,000 files is a few MB; anything far beyond that is not a Files API answer. The
# bound holds for the decompressed size: a small gzip body must not inflate without limit.
MAX_JSON_BYTES = 32 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 1000
# Key- and account-shaped strings that upstream messages quote ("Incorrect API key provided: sk-ab***yz").
_SECRET_LIKE = re.compile(r"\b(sk-|rk-|org-|proj_|gsk_)[\w*\-]{4,}")
_MASKED = re.compile(r"[\w\-]*\*{2,}[\w\-]*")  # keys shown partly masked, e.g. "ab12cd***wxyz"
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,64}")
_MEDIA_TYPE = re.compile(r"[\w.+\-]+/[\w.+\-]+")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", re.ASCII)
USER_AGENT = "filegate"
# Idempotent calls are retried after these: the request may never have reached the upstream, or a
# pooled keep-alive connection was closed under us. Read timeouts are not retried: the upstream is slow.
RETRYABLE_ERRORS = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout)
# One per request handler that may be talking to this upstream at once; more are opened when needed.
MAX_IDLE_CONNECTIONS = 16

# Settings most HTTP kinds share.
API_KEY = Field("api_key", "API key", "The provider's API key.", secret=True, required=True, header=True)
TIMEOUT = Field(
    "timeout",
    "Timeout (seconds)",
    "Read/write timeout towards the provider (default: UPSTREAM_TIMEOUT_SECONDS).",
    type="seconds",
)


@dataclass(frozen=True)
class UpstreamPage:
    """One page of an upstream list, in the order it was asked for."""

    files: list[RemoteFile]
    has_more: bool
    cursor: str | None  # where the next page continues (the last file's id for OpenAI)


class PassThroughProvider(Provider):
    """Base of kinds whose provider has a Files API of its own.

    Subclasses implement ``api_root()`` and ``auth_headers()`` and override the translation hooks
    their provider needs. One connection pool lives as long as the instance; the registry keeps one
    instance per account configuration, so requests reuse warm connections.
    """

    fields: ClassVar[tuple[Field, ...]] = (API_KEY, TIMEOUT)
    default_base_url: ClassVar[str] = ""
    retry_backoff_seconds: ClassVar[float] = 0.5
    max_page_size: ClassVar[int] = 10000  # the largest list page the upstream serves
    sends_expiry: bool = True  # whether the upstream accepts expires_after[...] on upload

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.base_url = str(config.get("base_url") or self.default_base_url).rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImproperlyConfigured(f"{self.kind}: base_url must be an http(s) URL, not {self.base_url!r}")
        self.timeout_seconds = _positive_seconds(config.get("timeout"), settings.UPSTREAM_TIMEOUT_SECONDS, self.kind)
        connect_seconds = min(self.timeout_seconds, float(settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS))
        self.client = httpx.Client(
            base_url=self.api_root().rstrip("/") + "/",
            headers={"User-Agent": USER_AGENT, **self.auth_headers()},
            timeout=httpx.Timeout(self.timeout_seconds, connect=connect_seconds),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=MAX_IDLE_CONNECTIONS),
            # Cookies an upstream sets (load balancers do) are not state we want to carry between
            # requests of different clients.
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
            # Bodiless requests (downloads above all) through urllib3: providers/transport.py says why,
            # and why an ALL_PROXY, which would share the pattern, leaves everything to httpx.
            mounts=(
                {}
                if "all" in urllib.request.getproxies()
                else {"all://": BodilessViaUrllib3(max_idle_connections=MAX_IDLE_CONNECTIONS)}
            ),
        )

    def api_root(self) -> str:
        """The URL the ``files`` paths are relative to."""
        raise NotImplementedError

    def auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def default_params(self) -> dict[str, str]:
        return {}

    # Translation hooks: pure functions of plain values (OpenAI's dialect by default).

    def upload_fields(self, options: UploadOptions) -> list[tuple[str, str]]:
        """The form fields sent before the file part."""
        fields = [("purpose", options.purpose)]
        if options.expires_after_seconds and self.sends_expiry:
            fields += [
                ("expires_after[anchor]", "created_at"),
                ("expires_after[seconds]", str(options.expires_after_seconds)),
            ]
        return fields

    def list_query(self, *, limit: int, order: str, purpose: str | None, after: str | None) -> dict[str, str | int]:
        """The query string of one upstream list page."""
        query: dict[str, str | int] = {"limit": limit, "order": order}
        if purpose:
            query["purpose"] = purpose
        if after:
            query["after"] = after
        return query

    def parse_file(self, data: Any, *, default_bytes: int = 0) -> RemoteFile:
        """An upstream file object as a ``RemoteFile``; raises ``UpstreamError`` if it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not REMOTE_ID.fullmatch(data["id"]):
            raise UpstreamError(f"The {self.label} provider returned an unexpected file object.")
        details = data.get("status_details")
        return RemoteFile(
            id=data["id"],
            bytes=_integer(data.get("bytes"), default_bytes),
            created_at=_integer(data.get("created_at"), int(time.time())),
            filename=str(data.get("filename") or ""),
            purpose=str(data.get("purpose") or ""),
            status=str(data.get("status") or "processed"),
            expires_at=_integer(data.get("expires_at"), None),
            status_details=str(details) if details else None,
        )

    def parse_page(self, body: Any, *, order: str = "desc") -> UpstreamPage:
        """A list answer asked for in ``order``: its files, whether more follow, and the cursor of the
        next page. OpenAI's upstreams answer in the order asked for, so ``order`` changes nothing here."""
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise UpstreamError(f"The {self.label} provider returned an unexpected file list.")
        files = [self.parse_file(item) for item in data]
        return UpstreamPage(files=files, has_more=body.get("has_more") is True, cursor=files[-1].id if files else None)

    def parse_deleted(self, body: Any) -> bool:
        """Whether a delete answer says the file is gone."""
        return not (isinstance(body, dict) and body.get("deleted") is False)

    def parse_error(self, body: bytes) -> tuple[str | None, str | None, str | None]:
        """``(message, param, code)`` of an error body; ``None`` for what it does not say."""
        error = parse_error_envelope(body)
        message, param, code = error.get("message"), error.get("param"), error.get("code")
        return (
            message if isinstance(message, str) else None,
            param if isinstance(param, str) else None,
            code if isinstance(code, str) else None,
        )

    # The operations.

    def upload(self, stream: UploadStream, options: UploadOptions) -> RemoteFile:
        """Stream the file upstream as one multipart request; return the upstream's file object.

        The body is sent chunked while the file arrives, never held whole. A ``GatewayError`` from
        ``stream`` (too large, bad batch line) propagates unchanged and aborts the request before
        its closing boundary, so the upstream stores nothing. Never retried: the upstream may have
        kept the first attempt. Raises the mapped ``Upstream*`` errors.
        """
        boundary = "filegate-" + secrets.token_hex(16)
        counter = ByteCounter(iter_chunks(stream))
        response = self._send(
            "POST",
            "files",
            retry=False,
            content=self._multipart(counter, options, boundary),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        # Azure's v1 API may answer bytes=null while it processes the file; we know what we sent.
        return self.parse_file(self._json(response), default_bytes=counter.total)

    def iter_pages(
        self, *, purpose: str | None, order: str, after: str | None, page_size: int
    ) -> Iterator[list[RemoteFile]]:
        """The upstream's files after ``after`` in ``order``, one upstream page at a time, fetched lazily."""
        cursor = after
        while True:
            size = min(page_size, self.max_page_size)
            page = self.fetch_page(self.list_query(limit=size, order=order, purpose=purpose, after=cursor), order=order)
            yield page.files
            if not page.has_more or page.cursor is None:
                return
            cursor = page.cursor

    def fetch_page(self, query: dict[str, str | int], *, order: str) -> UpstreamPage:
        """One upstream list page (retried like every read), parsed as asked for in ``order``."""
        return self.parse_page(self._json(self._send("GET", "files", retry=True, params=query)), order=order)

    def retrieve(self, remote_id: str) -> RemoteFile:
        """The upstream's file object. Raises ``FileNotFound`` and the mapped ``Upstream*`` errors."""
        return self.parse_file(self._json(self._send("GET", self.file_path(remote_id), retry=True, file_id=remote_id)))

    def delete(self, remote_id: str) -> bool:
        """Delete upstream. Returns ``False`` if the upstream said the file was already gone."""
        try:
            response = self._send("DELETE", self.file_path(remote_id), retry=True, file_id=remote_id)
        except FileNotFound:
            return False
        if not self.parse_deleted(self._json(response)):
            raise UpstreamError(f"The {self.label} provider did not delete the file.")
        return True

    def open_content(self, remote_id: str) -> Content:
        """The upstream's bytes, streamed, with the upstream's ``Content-Length`` as the size.

        The status is checked before this returns, so a missing file raises ``FileNotFound`` (and
        other failures their mapped error) before the first chunk. A connection that breaks
        mid-download raises ``UpstreamError`` from the iteration.
        """
        response = self._send(
            "GET",
            self.file_path(remote_id, "/content"),
            retry=True,
            file_id=remote_id,
            headers={"Accept": "application/octet-stream", "Accept-Encoding": "identity"},
        )
        download = _Download(response, self)
        media_type = response.headers.get("content-type", "").partition(";")[0].strip()
        return Content(
            chunks=download,
            size=download.size,
            media_type=media_type if _MEDIA_TYPE.fullmatch(media_type) else "application/octet-stream",
        )

    def check(self) -> None:
        """List one file with the account's credentials; raise the mapped error if that fails."""
        query = self.list_query(limit=1, order="desc", purpose=None, after=None)
        self._json(self._send("GET", "files", retry=False, params=query))

    def file_path(self, remote_id: str, suffix: str = "") -> str:
        if not REMOTE_ID.fullmatch(remote_id):
            raise FileNotFound(f"No such File object: {remote_id[:128]}", param="id")
        return f"files/{remote_id}{suffix}"

    # Plumbing.

    def _multipart(self, chunks: ByteCounter, options: UploadOptions, boundary: str) -> Iterator[bytes]:
        """The upload body, made while the file streams: fields first (as the SDKs send them), then the file."""
        head = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in self.upload_fields(options)
        )
        content_type = (
            options.content_type if _MEDIA_TYPE.fullmatch(options.content_type) else "application/octet-stream"
        )
        filename = options.filename.replace("\\", "\\\\").replace('"', "%22")
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        yield head.encode()
        yield from chunks
        # Only reached once the stream has checked the whole file: a rejected file never gets its
        # closing boundary, so the upstream sees a cut-off request and keeps nothing.
        yield f"\r\n--{boundary}--\r\n".encode()

    def _send(
        self,
        method: str,
        path: str,
        *,
        retry: bool,
        file_id: str | None = None,
        params: dict[str, str | int] | None = None,
        headers: dict[str, str] | None = None,
        content: Iterator[bytes] | None = None,
    ) -> httpx.Response:
        """Send one request and return its (still unread) 2xx response; raise the mapped error otherwise.

        With ``retry``, connection errors and 5xx answers are retried UPSTREAM_RETRIES times with
        exponential backoff. A 404 on a call naming ``file_id`` is ``FileNotFound``.
        """
        request = self.client.build_request(
            method,
            path,
            params={**self.default_params(), **(params or {})},
            headers={"Accept-Encoding": "gzip", **(headers or {})},
            content=content,
        )
        attempts = 1 + max(0, settings.UPSTREAM_RETRIES) if retry else 1
        for attempt in range(attempts):
            is_last = attempt + 1 == attempts
            try:
                response = self.client.send(request, stream=True)
            except httpx.HTTPError as exc:
                if is_last or not isinstance(exc, RETRYABLE_ERRORS):
                    raise self.map_exception(exc) from exc
            else:
                if response.is_success:
                    return response
                if is_last or response.status_code < 500:
                    raise self.map_response(response, file_id=file_id)
                response.close()
            time.sleep(self.retry_backoff_seconds * 2**attempt * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")

    def _json(self, response: httpx.Response) -> Any:
        try:
            data = read_bounded(response, MAX_JSON_BYTES)
        except httpx.HTTPError as exc:
            raise self.map_exception(exc) from exc
        except zlib.error:
            raise UpstreamError(f"The {self.label} provider returned a corrupt compressed answer.") from None
        if data is None:
            raise UpstreamError(f"The {self.label} provider returned an oversized answer.")
        try:
            return json.loads(data)
        except ValueError:
            raise UpstreamError(f"The {self.label} provider returned an answer that is not JSON.") from None

    def map_exception(self, exc: httpx.HTTPError) -> GatewayError:
        """The gateway error for a transport failure (no URL or credential in the message)."""
        logger.warning("%s upstream request failed: %s", self.kind, type(exc).__name__)
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeout(f"The {self.label} provider did not answer within {self.timeout_seconds:g} seconds.")
        if isinstance(exc, httpx.ConnectError):
            return UpstreamUnavailable(f"The {self.label} provider could not be reached.")
        return UpstreamError(f"The connection to the {self.label} provider broke off.")

    def map_response(self, response: httpx.Response, *, file_id: str | None = None) -> GatewayError:
        """The gateway error for a non-2xx answer. Reads at most 64 KiB of it and closes it."""
        try:
            raw = read_bounded(response, MAX_ERROR_BYTES, truncate=True) or b""
        except (httpx.HTTPError, zlib.error):
            raw = b""
        logger.warning("%s upstream answered HTTP %s", self.kind, response.status_code)
        message, param, code = self.parse_error(raw)
        return self.error_for(
            response.status_code,
            message=self.scrub(message) if message else None,
            param=param if param and _SAFE_TOKEN.fullmatch(param) else None,
            code=code if code and _SAFE_TOKEN.fullmatch(code) else None,
            retry_after=response.headers.get("retry-after"),
            file_id=file_id,
        )

    def error_for(
        self,
        status: int,
        *,
        message: str | None,
        param: str | None,
        code: str | None,
        retry_after: str | None,
        file_id: str | None,
    ) -> GatewayError:
        """The gateway error for an upstream status and its (already scrubbed) details."""
        if status == 404 and file_id is not None:
            return FileNotFound(f"No such File object: {file_id}", param="id")
        if status in (401, 403):
            # A 401 would make the client's SDK report its own gateway key as wrong; the account's
            # credential is what failed, so say so, as a 403 the SDKs do not retry.
            return UpstreamRejected(
                f"The {self.label} provider refused this provider account's credentials (HTTP {status}); "
                f"an organization admin must update the account.{' Provider said: ' + message if message else ''}",
                status_code=403,
                code="upstream_authentication_failed",
            )
        if status == 429:
            return UpstreamRateLimited(message, headers={"Retry-After": retry_after} if retry_after else None)
        if 400 <= status < 500:
            return UpstreamRejected(message, status_code=status, param=param, code=code)
        if status >= 500:
            return UpstreamError(f"The {self.label} provider failed (HTTP {status}).")
        return UpstreamError(f"The {self.label} provider answered with an unexpected HTTP {status}.")

    def scrub(self, message: str) -> str:
        """An upstream message without credentials, account ids or the upstream's address."""
        for value in (self.config.get("api_key"), self.config.get("organization"), self.config.get("project")):
            if value:
                message = message.replace(str(value), "***")
        host = urlsplit(self.base_url).hostname
        if host:
            message = message.replace(host, "the provider")
        message = _MASKED.sub("***", _SECRET_LIKE.sub(r"\1***", message))
        return message[:MAX_MESSAGE_CHARS]


class _Download:
    """An upstream download's chunks. Closing it (Django's StreamingHttpResponse does, also when the
    client goes away) releases the upstream connection, whether or not iteration started."""

    def __init__(self, response: httpx.Response, provider: PassThroughProvider) -> None:
        self.response = response
        self.provider = provider
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        length = response.headers.get("content-length", "")
        # We ask for identity; an upstream that compresses anyway is decoded, and its length is not ours.
        self.size = int(length) if length.isdigit() and encoding == "identity" else None
        self._chunks = self._iterate(encoding)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()
        self.response.close()

    def _iterate(self, encoding: str) -> Generator[bytes, None, None]:
        try:
            raw = self.response.iter_raw()
            yield from coalesced(raw) if encoding == "identity" else decode_stream(raw, encoding)
        except httpx.HTTPError as exc:
            raise self.provider.map_exception(exc) from exc
        except zlib.error:
            raise UpstreamError(f"The {self.provider.label} provider sent a corrupt compressed download.") from None
        finally:
            self.response.close()


def _decompressor(encoding: str) -> Any:
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None


def coalesced(pieces: Iterable[bytes], size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """``pieces`` joined into chunks of at least ``size`` bytes (the last may be shorter), but the
    first, passed on as it comes: the client's first bytes do not wait for a whole chunk.

    A download comes in the pieces its transport reads: 1 MiB through ``providers.transport`` (one
    piece is passed on as it is, no copy), but 64 KiB through httpx's own transport (an upstream
    behind a proxy) and an HTTP chunk at a time for a chunked answer. Written to the client one by
    one, small pieces cost a socket write each under gunicorn: joined into 1 MiB chunks, a 256 MiB
    download through httpx's transport cost 0.86-0.93 gateway CPU seconds per GB instead of 1.04
    (`bench/run.py --only downloads` on PostgreSQL, with and without, 2026-12-02), at the price of
    one copy of each byte.
    """
    pieces = iter(pieces)
    for first in pieces:
        yield first
        break
    pending: list[bytes] = []
    pending_bytes = 0
    for piece in pieces:
        pending.append(piece)
        pending_bytes += len(piece)
        if pending_bytes >= size:
            yield b"".join(pending)
            pending.clear()
            pending_bytes = 0
    if pending:
        yield b"".join(pending)


def decode_stream(raw: Iterator[bytes], encoding: str) -> Iterator[bytes]:
    """Undo a gzip/deflate content coding piece by piece: no step yields more than ``CHUNK_SIZE``
    bytes, so a small body that inflates enormously never sits in memory whole."""
    decompressor = _decompressor(encoding)
    for piece in raw:
        if decompressor is None:
            yield piece
            continue
        data = decompressor.decompress(piece, CHUNK_SIZE)
        while data:
            yield data
            data = decompressor.decompress(decompressor.unconsumed_tail, CHUNK_SIZE)
    if decompressor is not None and (rest := decompressor.flush()):
        yield rest


def read_bounded(response: httpx.Response, limit: int, *, truncate: bool = False) -> bytes | None:
    """Up to ``limit`` decoded bytes of the body, and close it.

    Past the limit: ``None``, or the first ``limit`` bytes if ``truncate``.
    """
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    data = bytearray()
    try:
        for chunk in decode_stream(response.iter_raw(), encoding):
            data += chunk
            if len(data) > limit:
                return bytes(data[:limit]) if truncate else None
    finally:
        response.close()
    return bytes(data)


def parse_error_envelope(body: bytes) -> dict[str, Any]:
    """The ``error`` object of a JSON error body (OpenAI's and Anthropic's envelopes alike); ``{}`` if none."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, dict) else {}


def rfc3339_seconds(value: Any) -> int | None:
    """An RFC 3339 time (``2025-04-15T18:37:24.100435Z``, any offset) as whole unix seconds; None if it is not one."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        return None
    try:
        return math.floor(datetime.fromisoformat(value.upper()).timestamp())
    except ValueError:  # well-formed but impossible (month 13, a leap second)
        return None


def _integer(value: Any, default: Any) -> Any:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _positive_seconds(value: Any, default: float, kind: str) -> float:
    if value in (None, ""):
        return float(default)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{kind}: timeout must be a number of seconds, not {value!r}") from None
    if not seconds > 0:
        raise ImproperlyConfigured(f"{kind}: timeout must be positive, not {value!r}")
    return seconds
