"""The shared base of pass-through kinds: one pooled HTTP client, retries, and upstream error mapping.

OpenAI-compatible upstreams (OpenAI, Azure OpenAI; Groq with a small translation) serve the same five
calls under an API root: ``POST/GET files``, ``GET/DELETE files/{id}`` and ``GET files/{id}/content``.
``PassThroughProvider`` makes those calls; a subclass only says where the root is and how to
authenticate. Nothing from httpx escapes: every failure becomes a ``config.errors`` class.
"""

from __future__ import annotations

import json
import logging
import random
import re
import secrets
import time
from collections.abc import Generator, Iterator
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

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
from providers.base import ByteCounter, Page, Provider, RemoteFile, UploadOptions, UploadStream, iter_chunks
from providers.bulk import BulkTransport
from providers.fields import Field

logger = logging.getLogger("filegate.providers")

# Ids are put into URL paths. Upstream ids look like `file-abc123`; anything else (`..`, slashes,
# escapes) cannot name an upstream file and must not reach the upstream as a path.
REMOTE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")
# A list page of 10,000 files is a few MB; anything far beyond that is not a Files API answer.
MAX_JSON_BYTES = 32 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 1000
# Key- and account-shaped strings that upstream messages quote ("Incorrect API key provided: sk-ab***yz").
_SECRET_LIKE = re.compile(r"\b(sk-|rk-|org-|proj_)[\w*\-]{4,}")
_MASKED = re.compile(r"[\w\-]*\*{2,}[\w\-]*")  # keys shown partly masked, e.g. "ab12cd***wxyz"
_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,64}")
_MEDIA_TYPE = re.compile(r"[\w.+\-]+/[\w.+\-]+")
USER_AGENT = "filegate"
# Idempotent calls are retried after these: the request may never have reached the upstream, or a
# pooled keep-alive connection was closed under us. Read timeouts are not retried: the upstream is slow.
RETRYABLE_ERRORS = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout)

# Settings most HTTP kinds share.
API_KEY = Field("api_key", "API key", "The provider's API key.", secret=True, required=True, header=True)
TIMEOUT = Field(
    "timeout",
    "Timeout (seconds)",
    "Read/write timeout towards the provider (default: UPSTREAM_TIMEOUT_SECONDS).",
    type="seconds",
)


class ContentStream:
    """An upstream download: iterate for chunks; ``size_bytes`` is the upstream's Content-Length.

    Closing it (Django's StreamingHttpResponse does, also when the client goes away) releases the
    upstream connection, whether or not iteration started.
    """

    def __init__(self, response: httpx.Response, provider: PassThroughProvider) -> None:
        self.response = response
        self.provider = provider
        length = response.headers.get("content-length", "")
        # With a content coding the decoded bytes would not match the header; we ask for identity.
        is_identity = response.headers.get("content-encoding", "identity") == "identity"
        self.size_bytes = int(length) if length.isdigit() and is_identity else None
        self._chunks = self._iterate()

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()
        self.response.close()

    def _iterate(self) -> Generator[bytes, None, None]:
        try:
            # Chunks as they arrive, up to CHUNK_SIZE each (BulkTransport): never holding back bytes
            # until a whole MiB has come in.
            yield from self.response.iter_bytes()
        except httpx.HTTPError as exc:
            raise self.provider.map_exception(exc) from exc
        finally:
            self.response.close()


class PassThroughProvider(Provider):
    """Base of kinds whose upstream has an OpenAI-compatible Files API.

    Subclasses implement ``api_root()`` and ``auth_headers()`` and may add ``default_params()``.
    One connection pool (``BulkTransport``) lives as long as the instance; the registry keeps one
    instance per account configuration, so requests reuse warm connections.
    """

    fields: ClassVar[tuple[Field, ...]] = (API_KEY, TIMEOUT)
    default_base_url: ClassVar[str] = ""
    retry_backoff_seconds: ClassVar[float] = 0.5
    sends_expiry: bool = True  # whether the upstream accepts expires_after[...] on upload

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.base_url = str(config.get("base_url") or self.default_base_url).rstrip("/")
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ImproperlyConfigured(f"{self.kind}: base_url must be an http(s) URL, not {self.base_url!r}")
        self.timeout_seconds = _positive_seconds(config.get("timeout"), settings.UPSTREAM_TIMEOUT_SECONDS, self.kind)
        connect_seconds = min(self.timeout_seconds, float(settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS))
        # Every call goes over one pool of plain http.client connections (providers/bulk.py): 1 MiB
        # pieces without h11's copies for the bytes, and requests handed to the transport directly,
        # without httpx.Client's per-call machinery (URL merging, auth and redirect flows, cookies),
        # which cost a retrieve about 0.2 ms of CPU.
        self.transport = BulkTransport()
        self.root = self.api_root().rstrip("/") + "/"
        # JSON answers may come compressed (a list of 10,000 files is megabytes); downloads ask for identity.
        self.headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "gzip", **self.auth_headers()}
        self.timeouts = httpx.Timeout(self.timeout_seconds, connect=connect_seconds).as_dict()

    def api_root(self) -> str:
        """The URL the ``files`` paths are relative to."""
        raise NotImplementedError

    def auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def default_params(self) -> dict[str, str]:
        return {}

    # The five operations.

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
        return self.to_remote(self._json(response), default_bytes=counter.total)

    def list(self, *, purpose: str | None, limit: int, order: str, after: str | None) -> Page:
        """One upstream page; ``purpose``, ``limit``, ``order`` and ``after`` are passed through."""
        params: dict[str, str | int] = {"limit": limit, "order": order}
        if purpose:
            params["purpose"] = purpose
        if after:
            params["after"] = after
        body = self._json(self._send("GET", "files", retry=True, params=params))
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise UpstreamError(f"The {self.label} provider returned an unexpected file list.")
        return Page(data=[self.to_remote(item) for item in data], has_more=body.get("has_more") is True)

    def retrieve(self, remote_id: str) -> RemoteFile:
        """The upstream's file object. Raises ``FileNotFound`` and the mapped ``Upstream*`` errors."""
        return self.to_remote(self._json(self._send("GET", self._file_path(remote_id), retry=True, file_id=remote_id)))

    def delete(self, remote_id: str) -> bool:
        """Delete upstream. Returns ``False`` if the upstream said the file was already gone."""
        try:
            response = self._send("DELETE", self._file_path(remote_id), retry=True, file_id=remote_id)
        except FileNotFound:
            return False
        body = self._json(response)
        if isinstance(body, dict) and body.get("deleted") is False:
            raise UpstreamError(f"The {self.label} provider did not delete the file.")
        return True

    def open_content(self, remote_id: str) -> ContentStream:
        """The upstream's bytes, streamed. The status is checked before this returns, so a missing
        file raises ``FileNotFound`` (and other failures their mapped error) before the first chunk.
        A connection that breaks mid-download raises ``UpstreamError`` from the iteration.
        """
        response = self._send(
            "GET",
            self._file_path(remote_id, "/content"),
            retry=True,
            file_id=remote_id,
            headers={"Accept": "application/octet-stream", "Accept-Encoding": "identity"},
        )
        return ContentStream(response, self)

    def check(self) -> None:
        """List one file with the account's credentials; raise the mapped error if that fails."""
        self._json(self._send("GET", "files", retry=False, params={"limit": 1}))

    # Translation between the upstream's JSON and ours.

    def to_remote(self, data: Any, *, default_bytes: int = 0) -> RemoteFile:
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

    def _multipart(self, chunks: ByteCounter, options: UploadOptions, boundary: str) -> Iterator[bytes]:
        """The upload body, made while the file streams: fields first (as the SDKs send them), then the file."""
        fields = [("purpose", options.purpose)]
        if options.expires_after_seconds and self.sends_expiry:
            fields += [
                ("expires_after[anchor]", "created_at"),
                ("expires_after[seconds]", str(options.expires_after_seconds)),
            ]
        head = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields
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

    def _file_path(self, remote_id: str, suffix: str = "") -> str:
        if not REMOTE_ID.fullmatch(remote_id):
            raise FileNotFound(f"No such File object: {remote_id[:128]}", param="id")
        return f"files/{remote_id}{suffix}"

    # HTTP plumbing.

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
        query = {**self.default_params(), **(params or {})}
        request = httpx.Request(
            method,
            self.root + path + ("?" + urlencode(query) if query else ""),
            headers={**self.headers, **headers} if headers else self.headers,
            content=content,
            extensions={"timeout": self.timeouts},
        )
        attempts = 1 + max(0, settings.UPSTREAM_RETRIES) if retry else 1
        for attempt in range(attempts):
            is_last = attempt + 1 == attempts
            try:
                response = self.transport.handle_request(request)
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
            data = _read_bounded(response, MAX_JSON_BYTES)
        except httpx.HTTPError as exc:
            raise self.map_exception(exc) from exc
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
        status = response.status_code
        try:
            raw = _read_bounded(response, MAX_ERROR_BYTES, truncate=True) or b""
        except httpx.HTTPError:
            raw = b""
        error = _error_object(raw)
        raw_message = error.get("message")
        message = self.scrub(raw_message) if isinstance(raw_message, str) else None
        logger.warning("%s upstream answered HTTP %s", self.kind, status)
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
            retry_after = response.headers.get("retry-after")
            return UpstreamRateLimited(message, headers={"Retry-After": retry_after} if retry_after else None)
        if 400 <= status < 500:
            param, code = error.get("param"), error.get("code")
            return UpstreamRejected(
                message,
                status_code=status,
                param=param if isinstance(param, str) and _SAFE_TOKEN.fullmatch(param) else None,
                code=code if isinstance(code, str) and _SAFE_TOKEN.fullmatch(code) else None,
            )
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


def _read_bounded(response: httpx.Response, limit: int, *, truncate: bool = False) -> bytes | None:
    """Up to ``limit`` bytes of the body, and close it. Past the limit: ``None``, or the prefix if ``truncate``."""
    data = bytearray()
    try:
        for chunk in response.iter_bytes():
            data += chunk
            if len(data) > limit:
                return bytes(data[:limit]) if truncate else None
    finally:
        response.close()
    return bytes(data)


def _error_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


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
