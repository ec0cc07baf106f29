"""A Google Cloud Storage bucket as the bytes side of a storage-backed kind (``vertex``)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Iterator

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from google.api_core import exceptions as api_errors
from google.api_core.retry import Retry
from google.auth import exceptions as auth_errors
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.cloud.storage.fileio import BlobWriter
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2 import service_account

from config.errors import (
    FileNotFound,
    GatewayError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.base import CHUNK_SIZE, Content, StoredObject
from providers.stores import (
    PART_SIZE,
    checked_key,
    checked_prefix,
    credentials_refused,
    media_type,
    normalized_prefix,
    probe,
)

logger = logging.getLogger("filegate.providers")

LABEL = "GCS store"
SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 - an address, not a secret
GOOGLE_UNIVERSE = "googleapis.com"
LIST_PAGE_SIZE = 1000
GOOGLE_ERRORS = (
    api_errors.GoogleAPIError,
    auth_errors.GoogleAuthError,
    requests.exceptions.RequestException,
    InvalidResponse,
    DataCorruption,
)


class ExplicitCloseWriter(BlobWriter):
    """The library's ``BlobWriter``, finalised by an explicit ``close()`` only.

    ``io.IOBase`` closes a file object when it is garbage-collected, and ``BlobWriter.close()``
    sends the buffered rest as the final chunk: an upload abandoned midway would be published,
    cut short, whenever its writer is collected (measured against the emulator: a refused 20 MiB
    upload appeared as a 20 MiB object after ``gc.collect()``). Collection does nothing here.
    """

    def __del__(self) -> None:
        pass


class GCSStore:
    """Objects in one GCS bucket, under an optional name prefix. Implements ``providers.base.Store``.

    Calls, all through one google-cloud-storage client (safe to share across threads):

    - ``save``: a resumable upload through the library's ``BlobWriter`` (what ``blob.open("wb")``
      returns; here ``ExplicitCloseWriter``) in chunks of ``PART_SIZE`` (8 MiB): the session starts
      when the first 8 MiB are buffered, every full 8 MiB goes out as one chunk, and ``close()``
      sends the rest and finalises the object. Memory is one chunk plus the piece being written.
      On any failure, the chunks raising or GCS failing, the writer is never closed, so the
      session is never finalised: no object exists, and GCS discards the unfinished session after
      a week. The session is abandoned, not cancelled: ``BlobWriter.terminate()`` would be the
      cancel, but it sends its ``DELETE`` to the initiation URL rather than to the session URI
      (which the library does not expose), so it cancels nothing and we do not call it.
    - ``open``: object metadata (``get_blob``: size, generation), then ``download_to_file`` of one
      8 MiB range at a time into one buffer, pinned to that generation, handed out ``CHUNK_SIZE``
      at a time.
    - ``delete``: ``blob.delete``; a 404 means already gone.
    - ``iter_objects``: ``list_blobs``, 1,000 names per page, following ``nextPageToken``.
    - ``check``: ``providers.stores.probe`` (write, read back and delete a probe object under the prefix).

    Why not django-storages' ``GoogleCloudStorage``: its ``_save`` calls
    ``blob.upload_from_file(content, rewind=True)``, and the rewind seeks, which a one-pass stream
    cannot; and its ``GoogleCloudFile`` reads the whole object into a spooled temporary file
    before the first byte.

    Credentials: ``credentials_file`` is the service-account JSON itself (only that type: other
    credential types can make the library read local files or run commands). Without it the
    default credentials apply, except with ``endpoint_url`` (an emulator), where requests are
    anonymous. Outside an emulator the key's token URI and universe must be Google's, so a
    tenant's JSON cannot send the gateway's signed assertions elsewhere.

    Errors: a missing object is ``FileNotFound``; refused credentials (401/403, a refused token
    exchange) ``UpstreamRejected`` 403 ``upstream_authentication_failed``; unreachable
    ``UpstreamUnavailable``; timeouts ``UpstreamTimeout``; 429 ``UpstreamRateLimited``; anything
    else ``UpstreamError``. Messages and logs carry the status, never a credential.
    """

    uri_scheme = "gs"

    def __init__(
        self,
        *,
        bucket: str,
        project: str = "",
        prefix: str = "",
        credentials_file: str = "",
        endpoint_url: str = "",
    ) -> None:
        """Raises ``ImproperlyConfigured`` for unusable settings or credentials (never quoting them)."""
        if not bucket:
            raise ImproperlyConfigured("GCS store: a bucket is required")
        self.bucket = bucket
        self.prefix = normalized_prefix(prefix)
        self.timeout = (float(settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS), float(settings.UPSTREAM_TIMEOUT_SECONDS))
        # google's retries are bounded by time, not by count: retry transient failures (5xx, 429,
        # connection errors) for as long as one connection attempt may take, unless retries are off.
        self.retry: Retry | None = (
            DEFAULT_RETRY.with_timeout(float(settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS))
            if settings.UPSTREAM_RETRIES > 0
            else None
        )
        credentials = _credentials(credentials_file, is_emulator=bool(endpoint_url))
        try:
            self.client = storage.Client(
                project=project or None,
                credentials=credentials,
                client_options={"api_endpoint": endpoint_url} if endpoint_url else None,
            )
        except (auth_errors.GoogleAuthError, ValueError) as exc:
            raise ImproperlyConfigured(f"GCS store: no usable credentials ({type(exc).__name__})") from None
        self.bucket_handle = self.client.bucket(bucket)

    def save(self, key: str, chunks: Iterable[bytes], *, content_type: str) -> int:
        """See ``Store.save``: a resumable upload in 8 MiB chunks, never finalised after a failure."""
        blob = self.bucket_handle.blob(self.prefix + checked_key(key))
        writer = ExplicitCloseWriter(
            blob,
            chunk_size=PART_SIZE,
            ignore_flush=True,
            retry=self.retry,
            content_type=media_type(content_type),
            timeout=self.timeout,
        )
        size = 0
        try:
            for chunk in chunks:
                writer.write(chunk)
                size += len(chunk)
            writer.close()
        except GOOGLE_ERRORS as exc:
            raise _gateway_error(exc, "save") from exc
        # On any failure the writer is left unclosed (see ExplicitCloseWriter): nothing finalises it.
        return size

    def open(self, key: str) -> Content:
        """See ``Store.open``: ``FileNotFound`` before the first chunk if the object is missing."""
        name = self.prefix + checked_key(key)
        try:
            blob = self.bucket_handle.get_blob(name, timeout=self.timeout, retry=self.retry)
        except GOOGLE_ERRORS as exc:
            raise _gateway_error(exc, "open") from exc
        if blob is None:
            raise FileNotFound("No such File object.", param="id")
        size = int(blob.size or 0)
        return Content(chunks=self._ranges(blob, size), size=size)

    def _ranges(self, blob: storage.Blob, size: int) -> Iterator[bytes]:
        for start in range(0, size, PART_SIZE):
            part = io.BytesIO()
            try:
                blob.download_to_file(
                    part,
                    start=start,
                    end=min(start + PART_SIZE, size) - 1,
                    raw_download=True,
                    checksum=None,  # GCS knows the checksum of the whole object only
                    if_generation_match=blob.generation,
                    timeout=self.timeout,
                    retry=self.retry,
                )
            except GOOGLE_ERRORS as exc:
                raise _gateway_error(exc, "read") from exc
            with part.getbuffer() as view:
                for offset in range(0, len(view), CHUNK_SIZE):
                    yield bytes(view[offset : offset + CHUNK_SIZE])

    def delete(self, key: str) -> bool:
        """See ``Store.delete``: ``False`` if the object was already missing."""
        blob = self.bucket_handle.blob(self.prefix + checked_key(key))
        try:
            blob.delete(timeout=self.timeout, retry=self.retry)
        except api_errors.NotFound:
            return False
        except GOOGLE_ERRORS as exc:
            raise _gateway_error(exc, "delete") from exc
        return True

    def iter_objects(self, prefix: str) -> Iterator[StoredObject]:
        """See ``Store.iter_objects``: names relative to the store's prefix, page by page."""
        blobs = self.client.list_blobs(
            self.bucket_handle,
            prefix=self.prefix + checked_prefix(prefix),
            page_size=LIST_PAGE_SIZE,
            fields="items(name,size,updated),nextPageToken",
            timeout=self.timeout,
            retry=self.retry,
        )
        try:
            for blob in blobs:
                yield StoredObject(
                    key=blob.name[len(self.prefix) :],
                    size=int(blob.size or 0),
                    modified_at=blob.updated.timestamp() if blob.updated else None,
                )
        except GOOGLE_ERRORS as exc:
            raise _gateway_error(exc, "list") from exc

    def check(self) -> None:
        """See ``Store.check``."""
        probe(self)


def _credentials(credentials_file: str, *, is_emulator: bool) -> Credentials | None:
    """The account's credentials: its service-account key, anonymous for an emulator, else ``None`` (the default)."""
    if not credentials_file:
        return AnonymousCredentials() if is_emulator else None
    try:
        info = json.loads(credentials_file)
    except ValueError:
        raise ImproperlyConfigured("GCS store: the credentials file is not JSON") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ImproperlyConfigured("GCS store: the credentials file must be a service-account key")
    if not is_emulator and (
        info.get("token_uri", GOOGLE_TOKEN_URI) != GOOGLE_TOKEN_URI
        or info.get("universe_domain", GOOGLE_UNIVERSE) != GOOGLE_UNIVERSE
    ):
        raise ImproperlyConfigured("GCS store: the service-account key must use Google's token endpoint")
    try:
        return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    except (ValueError, auth_errors.GoogleAuthError):
        raise ImproperlyConfigured("GCS store: the service-account key is incomplete or malformed") from None


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, api_errors.GoogleAPICallError):
        return exc.code
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _gateway_error(exc: BaseException, operation: str) -> GatewayError:
    """The gateway error for a google-cloud-storage / google-auth / transport failure (status at most)."""
    if isinstance(exc, api_errors.RetryError) and exc.cause is not None:
        exc = exc.cause
    status = _status(exc)
    logger.warning("gcs %s failed: %s %s", operation, type(exc).__name__, status or "")
    if isinstance(exc, auth_errors.RefreshError) or status in (401, 403):
        return credentials_refused(LABEL, f"HTTP {status}" if status else "the token exchange was refused")
    if isinstance(exc, requests.exceptions.Timeout | auth_errors.TimeoutError):
        return UpstreamTimeout(f"The {LABEL} did not answer in time.")
    if isinstance(exc, requests.exceptions.ConnectionError | auth_errors.TransportError):
        return UpstreamUnavailable(f"The {LABEL} could not be reached.")
    if status == 429:
        return UpstreamRateLimited(f"The {LABEL} is throttling requests; retry later.")
    if status == 404:
        return UpstreamError(f"The {LABEL}'s bucket or object does not exist.")
    if status == 412:
        return UpstreamError(f"The object in the {LABEL} changed while it was read.")
    return UpstreamError(f"The {LABEL} failed (HTTP {status})." if status else f"The {LABEL} failed.")
