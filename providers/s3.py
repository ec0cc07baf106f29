"""An S3 bucket (or an S3-compatible store) as the bytes side of a storage-backed kind (``bedrock``)."""

from __future__ import annotations

import functools
import io
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

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
    ClosingChunks,
    checked_key,
    checked_prefix,
    credentials_refused,
    media_type,
    normalized_prefix,
    probe,
    safe_code,
)

logger = logging.getLogger("filegate.providers")

LABEL = "S3 store"
ENCRYPTIONS = ("AES256", "aws:kms")
_MISSING = frozenset({"NoSuchKey", "NotFound", "404"})
_REFUSED = frozenset(
    {
        "AccessDenied",
        "AccountProblem",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "403",
    }
)
# A client made from a fresh boto3 session loads S3's service model again (~0.13 s of CPU); made
# from one shared session it costs ~0.01 s. Sessions are not thread-safe: clients are made under a lock.
_session_lock = threading.Lock()
# Each part carries a CRC-32 that S3 checks, as boto3's managed transfer sends by default.
CHECKSUM = "CRC32"
CHECKSUM_MEMBER = "ChecksumCRC32"
_THROTTLED = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests"})


class ChunkReader:
    """Chunks that arrive once, read into a caller's buffer (one copy of each byte, no allocation).

    Whatever the chunk iterator raises (a ``GatewayError`` refusing the upload) comes out of
    ``fill`` unchanged.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")

    def fill(self, buffer: bytearray) -> int:
        """Fill ``buffer`` from the chunks; the bytes filled, fewer than its length only at the end."""
        view = memoryview(buffer)
        filled = 0
        while filled < len(view):
            if not self._pending:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._pending = memoryview(chunk)
            size = min(len(view) - filled, len(self._pending))
            view[filled : filled + size] = self._pending[:size]
            self._pending = self._pending[size:]
            filled += size
        return filled


class PartBody(io.RawIOBase):
    """A seekable, read-only view of one part in the part buffer: the request body botocore reads
    (checksum, signature, the send itself) and rewinds for a retry, without a copy of the part."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        """One copy of the bytes asked for (``io.RawIOBase.read`` would make two)."""
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._position + size)
        data = bytes(self._view[self._position : end])
        self._position = max(self._position, end)
        return data

    def readinto(self, buffer: Any) -> int:
        size = max(0, min(len(buffer), len(self._view) - self._position))
        buffer[:size] = self._view[self._position : self._position + size]
        self._position += size
        return size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position


class S3Store:
    """Objects in one S3 bucket, under an optional key prefix. Implements ``providers.base.Store``.

    Calls, all on one boto3 client (thread-safe, so one per store):

    - ``save``: the first 8 MiB (``PART_SIZE``) are read into one part buffer; a file that ends
      before it fills is one ``PutObject``. Otherwise ``CreateMultipartUpload``, then ``UploadPart``
      per 8 MiB, each sent from that same buffer and the next read into it once S3 has the part,
      then ``CompleteMultipartUpload`` with each part's ETag and CRC-32. One 8 MiB buffer per
      upload, allocated once and never copied whole (botocore reads the part through ``PartBody``,
      a view of it), whatever the size.
      boto3's managed transfer (``upload_fileobj``, what django-storages calls) reads a fresh 8 MiB
      ``bytes`` per part and reads the next one while the previous is sent: at least two parts
      alive, and under gunicorn a 256 MiB upload grew a fresh worker's RSS by up to 37 MiB
      (``bench/run.py --only uploads --kind bedrock``, 2026-12-02), past the 32 MiB the product
      allows, as freed parts stayed with the allocator. With one buffer the next part is read only
      once S3 has the last: against moto that measured 64-75 MB/s (0.65-0.93x boto3 straight to
      moto, whose own CPU is the bottleneck there), as the managed transfer did.
      On any failure, the chunks raising or S3 failing, ``AbortMultipartUpload`` runs before the
      error comes out, so neither an object nor an unfinished upload is left (if S3 is
      unreachable even for the abort, the bucket's ``AbortIncompleteMultipartUpload`` lifecycle
      rule is the backstop). The chunks' own exception comes out unchanged.
    - ``open``: ``GetObject``, streamed from its body ``CHUNK_SIZE`` at a time, with ``ContentLength``.
    - ``delete``: ``HeadObject`` (S3's ``DeleteObject`` answers 204 for a missing key too), then ``DeleteObject``.
    - ``iter_objects``: ``ListObjectsV2`` through boto3's paginator, 1,000 keys per page.
    - ``check``: ``providers.stores.probe`` (write, read back and delete a probe object under the prefix).

    Why not django-storages' ``S3Storage``: its ``_save`` is ``upload_fileobj`` (above), and the
    rest has to be bypassed: its ``S3File`` downloads the
    whole object into a spooled temporary file before the first byte is read, its ``listdir``
    builds whole lists, and every option not passed falls back to the process-wide ``AWS_*``
    Django settings, wrong for a store that belongs to one tenant account.

    Errors: a missing key is ``FileNotFound``; refused credentials (or none found by the default
    chain) ``UpstreamRejected`` 403 ``upstream_authentication_failed``; unreachable
    ``UpstreamUnavailable``; timeouts ``UpstreamTimeout``; throttling ``UpstreamRateLimited``;
    anything else ``UpstreamError``. Messages and logs carry S3's error code, never a credential.
    """

    uri_scheme = "s3"

    def __init__(
        self,
        *,
        bucket: str,
        region: str = "",
        prefix: str = "",
        aws_access_key_id: str = "",
        aws_secret_access_key: str = "",
        endpoint_url: str = "",
        server_side_encryption: str = "",
        kms_key_id: str = "",
    ) -> None:
        """Raises ``ImproperlyConfigured`` for an inconsistent configuration (never quoting a secret).

        Without ``aws_access_key_id`` / ``aws_secret_access_key`` the default AWS credential chain
        applies (environment, config files, instance or task role). ``endpoint_url`` selects an
        S3-compatible store, addressed path-style.
        """
        if not bucket:
            raise ImproperlyConfigured("S3 store: a bucket is required")
        if bool(aws_access_key_id) != bool(aws_secret_access_key):
            raise ImproperlyConfigured("S3 store: give both the access key id and the secret access key, or neither")
        if server_side_encryption and server_side_encryption not in ENCRYPTIONS:
            raise ImproperlyConfigured(f"S3 store: server-side encryption must be one of {', '.join(ENCRYPTIONS)}")
        if kms_key_id and server_side_encryption != "aws:kms":
            raise ImproperlyConfigured("S3 store: a KMS key id needs server-side encryption aws:kms")
        self.bucket = bucket
        self.prefix = normalized_prefix(prefix)
        self.write_args: dict[str, str] = {}
        if server_side_encryption:
            self.write_args["ServerSideEncryption"] = server_side_encryption
        if kms_key_id:
            self.write_args["SSEKMSKeyId"] = kms_key_id
        config = Config(
            connect_timeout=settings.UPSTREAM_CONNECT_TIMEOUT_SECONDS,
            read_timeout=settings.UPSTREAM_TIMEOUT_SECONDS,
            retries={"mode": "standard", "total_max_attempts": 1 + max(0, settings.UPSTREAM_RETRIES)},
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        self.client = _client(
            region_name=region or None,
            endpoint_url=endpoint_url or None,
            aws_access_key_id=aws_access_key_id or None,
            aws_secret_access_key=aws_secret_access_key or None,
            config=config,
        )

    def save(self, key: str, chunks: Iterable[bytes], *, content_type: str) -> int:
        """See ``Store.save``: S3 multipart in 8 MiB parts from one buffer, aborted on any failure."""
        name = self.prefix + checked_key(key)
        reader = ChunkReader(chunks)
        part = bytearray(PART_SIZE)
        size = reader.fill(part)
        write_args = {"Bucket": self.bucket, "Key": name, "ContentType": media_type(content_type), **self.write_args}
        try:
            if size < PART_SIZE:
                self.client.put_object(Body=PartBody(memoryview(part)[:size]), **write_args)
                return size
            upload_id = self.client.create_multipart_upload(ChecksumAlgorithm=CHECKSUM, **write_args)["UploadId"]
        except (BotoCoreError, ClientError) as exc:
            raise _gateway_error(exc, "save") from exc
        try:
            total = self._upload_parts(name, upload_id, reader, part, size)
        except BaseException:
            self._abort(name, upload_id)
            raise
        return total

    def _upload_parts(self, name: str, upload_id: str, reader: ChunkReader, part: bytearray, size: int) -> int:
        """Send ``part`` (``size`` bytes filled) and every part after it, then complete the upload."""
        ids = {"Bucket": self.bucket, "Key": name, "UploadId": upload_id}
        done: list[dict[str, Any]] = []
        total = 0
        try:
            while size:
                answer = self.client.upload_part(
                    Body=PartBody(memoryview(part)[:size]),
                    PartNumber=len(done) + 1,
                    ChecksumAlgorithm=CHECKSUM,
                    **ids,
                )
                finished = {"PartNumber": len(done) + 1, "ETag": answer["ETag"]}
                if answer.get(CHECKSUM_MEMBER):  # S3 wants each part's checksum back on completion
                    finished[CHECKSUM_MEMBER] = answer[CHECKSUM_MEMBER]
                done.append(finished)
                total += size
                size = reader.fill(part) if size == PART_SIZE else 0
            self.client.complete_multipart_upload(MultipartUpload={"Parts": done}, **ids)
        except (BotoCoreError, ClientError) as exc:
            raise _gateway_error(exc, "save") from exc
        return total

    def _abort(self, name: str, upload_id: str) -> None:
        """Discard an unfinished multipart upload and its parts; a failure here is logged, not raised
        (the bucket's ``AbortIncompleteMultipartUpload`` lifecycle rule is the backstop)."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload_id)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("s3 abort of an unfinished upload failed: %s", _describe(exc))

    def open(self, key: str) -> Content:
        """See ``Store.open``: ``FileNotFound`` before the first chunk if the key is missing."""
        name = self.prefix + checked_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                raise FileNotFound("No such File object.", param="id") from None
            raise _gateway_error(exc, "open") from exc
        except BotoCoreError as exc:
            raise _gateway_error(exc, "open") from exc
        body = response["Body"]
        return Content(chunks=ClosingChunks(_body_chunks(body), body.close), size=response["ContentLength"])

    def delete(self, key: str) -> bool:
        """See ``Store.delete``: ``False`` if the key was already missing."""
        name = self.prefix + checked_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise _gateway_error(exc, "delete") from exc
        except BotoCoreError as exc:
            raise _gateway_error(exc, "delete") from exc
        try:
            self.client.delete_object(Bucket=self.bucket, Key=name)
        except (BotoCoreError, ClientError) as exc:
            raise _gateway_error(exc, "delete") from exc
        return True

    def iter_objects(self, prefix: str) -> Iterator[StoredObject]:
        """See ``Store.iter_objects``: keys relative to the store's prefix, page by page."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + checked_prefix(prefix)
        )
        try:
            for page in pages:
                for item in page.get("Contents", ()):
                    yield StoredObject(
                        key=item["Key"][len(self.prefix) :],
                        size=item["Size"],
                        modified_at=item["LastModified"].timestamp(),
                    )
        except (BotoCoreError, ClientError) as exc:
            raise _gateway_error(exc, "list") from exc

    def check(self) -> None:
        """See ``Store.check``."""
        probe(self)


@functools.cache
def _shared_session() -> boto3.session.Session:
    return boto3.session.Session()


def _client(**options: Any) -> Any:
    """An S3 client from the shared session; without keys it finds credentials by the default chain."""
    with _session_lock:
        return _shared_session().client("s3", **options)


def _body_chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK_SIZE)
    except BotoCoreError as exc:
        raise _gateway_error(exc, "read") from exc


def _code(exc: ClientError) -> str:
    return safe_code(exc.response.get("Error", {}).get("Code"))


def _describe(exc: BotoCoreError | ClientError) -> str:
    """S3's error code, or the exception's class: what may be logged or shown of a failure."""
    return _code(exc) if isinstance(exc, ClientError) else type(exc).__name__


def _gateway_error(exc: BotoCoreError | ClientError, operation: str) -> GatewayError:
    """The gateway error for a boto3/botocore failure: S3's error code at most, never its message."""
    code = _describe(exc)
    logger.warning("s3 %s failed: %s", operation, code)
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _REFUSED or status == 403:
            return credentials_refused(LABEL, code)
        if code in _THROTTLED or status == 429:
            return UpstreamRateLimited(f"The {LABEL} is throttling requests ({code}); retry later.")
        if code == "NoSuchBucket":
            return UpstreamError(f"The {LABEL}'s bucket does not exist.")
        return UpstreamError(f"The {LABEL} failed ({code}).")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return credentials_refused(LABEL, "no usable AWS credentials were found")
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return UpstreamTimeout(f"The {LABEL} did not answer in time.")
    if isinstance(exc, BotoConnectionError):
        return UpstreamUnavailable(f"The {LABEL} could not be reached.")
    return UpstreamError(f"The {LABEL} failed ({code}).")
