"""The upload pipeline: limits, quota, the bytes' way to the provider, the record.

``file_upload`` follows one sequence: resolve the account, check the size limit against
Content-Length, reserve quota for what the request may carry, read the form up to the file, stream
the file to the provider (limits and batch-line checks applied per chunk as it arrives, the
provider's rewriting of batch files, then limits and checksum again on what is stored), record the
file and settle the reservation to its stored size. Any failure after the reservation releases it and
removes an upstream object no record will point at. No database transaction is open while bytes
move: the reservation and the record are short transactions of their own.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.database import release_connection
from config.errors import InvalidRequest, PayloadTooLarge
from files_api.audit import Audit, audited
from files_api.models import AuditEvent, File
from files_api.multipart import FilePart, MultipartForm
from files_api.selectors import file_as_remote
from files_api.serializers import UploadFieldsSerializer
from files_api.validation import clean_filename
from providers.base import CHUNK_SIZE, UPLOAD, Provider, RemoteFile, UploadHints, UploadOptions
from providers.batch import BatchLineValidator
from tenants.models import ApiKey, Organization, ProviderAccount, QuotaReservation
from tenants.services import provider_account_resolve, provider_for, quota_commit, quota_release, quota_reserve

logger = logging.getLogger("filegate.files")

# Room for the multipart framing and form fields around the file, when comparing the request's
# Content-Length with a file-size limit before reading anything.
FORM_OVERHEAD_BYTES = 64 * 1024
# A file whose purpose arrives after it is spooled here while the purpose is unknown: in memory up
# to this size, then in a temporary file (never more than the organisation's file-size limit).
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024

# SHA-256 runs at about 1 GB/s and hashlib releases the GIL on large buffers, so each upload hashes
# chunk N on one of these threads while its own thread receives, parses and forwards chunk N+1
# (under gevent they are greenlets: the hashing then simply interleaves).
_HASHER = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1), thread_name_prefix="filegate-sha256")


@dataclass(frozen=True)
class SizeLimit:
    max_bytes: int
    message: str


@dataclass(frozen=True)
class UploadFields:
    """The form's fields, validated."""

    purpose: str
    expires_after_seconds: int | None


def file_upload(
    *,
    api_key: ApiKey,
    account_name: str | None,
    body: Any,
    content_type: str,
    content_length: int | None,
    content_encoding: str = "",
    hints: UploadHints = UploadHints(),  # noqa: B008 - frozen, so one shared default is safe
) -> RemoteFile:
    """Stream the multipart ``body``'s file to the named (or default) account's provider and record it.

    The body is read lazily (``MultipartForm``), so the file reaches the provider while it arrives.
    ``hints`` are the upload's optional headers, which the provider may refuse before anything is read.
    The file is recorded and charged at its stored size (after any rewriting), within the quota.

    Raises ``InvalidRequest`` (also for a compressed body: any ``content_encoding`` but identity),
    ``PayloadTooLarge``, ``QuotaExceeded``, ``UnsupportedOperation`` and the provider's ``Upstream*``
    errors; after any of them nothing is recorded or charged, and a failed ``file.create`` audit
    event says why.
    """
    organization = api_key.organization
    with audited(organization=organization, api_key=api_key, action=AuditEvent.Action.CREATE) as audit:
        account = provider_account_resolve(organization=organization, name=account_name)
        audit.account = account
        provider = provider_for(account)
        provider.require(UPLOAD)
        provider.check_hints(hints)
        form = MultipartForm(
            body, content_type=content_type, content_length=content_length, content_encoding=content_encoding
        )
        limit = file_size_limit(organization)
        if form.content_length > limit.max_bytes + FORM_OVERHEAD_BYTES:
            raise PayloadTooLarge(limit.message, param="file")
        # Reserved before a byte of the body is read: a form that sends its purpose after the file
        # is spooled, and that spooling must already count against the quota.
        reservation = quota_reserve(organization_id=organization.pk, nbytes=min(form.content_length, limit.max_bytes))
        release_connection(form.content_length)  # no database work until the bytes have moved
        remote: RemoteFile | None = None
        try:
            with _file_stream(provider, organization, form, limit, hints) as (stream, options, is_spooled):
                remote = provider.upload(stream, options)
                stream.drain()
            if not is_spooled:  # a spooled form was read whole before the upload
                options = _late_fields(form, options)
            file = _record(
                api_key=api_key,
                account=account,
                remote=remote,
                stream=stream,
                options=options,
                reservation=reservation,
                audit=audit,
            )
        except BaseException:
            # Whatever failed, the bytes are not ours to charge: remove an upstream object that no
            # record will ever point at (first: that needs no database, which may be what failed),
            # and release the hold. A success event written with the record went with it.
            if remote is not None:
                _delete_orphan(provider, remote)
            audit.rolled_back()
            quota_release(reservation=reservation)
            raise
    return file_as_remote(file)


def file_size_limit(organization: Organization) -> SizeLimit:
    limit = organization.max_file_size_bytes
    return SizeLimit(limit, f"Files may be at most {limit} bytes for this organization.")


def purpose_size_limit(organization: Organization, purpose: str, filename: str) -> SizeLimit:
    """The size limit for this file (batch files have their own, and must be .jsonl)."""
    if purpose != "batch":
        return file_size_limit(organization)
    if not filename.lower().endswith(".jsonl"):
        raise InvalidRequest("Batch files must be .jsonl files.", param="file", code="invalid_file_type")
    limit = min(organization.batch_max_size_bytes, organization.max_file_size_bytes)
    return SizeLimit(limit, f"Batch files may be at most {limit} bytes for this organization.")


def validate_fields(fields: dict[str, str]) -> UploadFields:
    serializer = UploadFieldsSerializer(data=fields)
    serializer.is_valid(raise_exception=True)
    data = serializer.validated_data
    return UploadFields(purpose=data["purpose"], expires_after_seconds=data.get("expires_after[seconds]"))


@contextmanager
def _file_stream(
    provider: Provider, organization: Organization, form: MultipartForm, limit: SizeLimit, hints: UploadHints
) -> Iterator[tuple[FileStream, UploadOptions, bool]]:
    """Read the form up to its file and give the file's checked stream, the upload's options, and
    whether the file was spooled (its purpose came after it: every field has been read).

    A file whose purpose comes after it is spooled first (bounded by ``limit``) and streamed from
    the spool, which is removed when the block ends. The provider decides whether the gateway checks
    batch lines against OpenAI's rules (``needs_openai_batch_lines``) and how the bytes are
    rewritten on their way (``transform``).
    """
    part = form.read_until_file()
    if part is None:
        form.read_remaining_fields()
        raise InvalidRequest("Missing required parameter: 'file'.", param="file")
    filename = clean_filename(part.filename)
    with ExitStack() as cleanup:
        chunks: Iterator[bytes] = part.chunks
        on_end: Callable[[], None] | None = form.check_complete
        if "purpose" not in form.fields:
            spool = cleanup.enter_context(_spool(part, limit, on_end=form.check_complete))
            chunks, on_end = iter(lambda: spool.read(CHUNK_SIZE), b""), None
        fields = validate_fields(
            _pending_pair_removed(form.fields) if on_end is not None else form.read_remaining_fields()
        )
        _check_purpose(provider, fields.purpose)
        purpose_limit = purpose_size_limit(organization, fields.purpose, filename)
        if form.content_length > purpose_limit.max_bytes + FORM_OVERHEAD_BYTES:
            raise PayloadTooLarge(purpose_limit.message, param="file")
        options = UploadOptions(
            filename=filename,
            purpose=fields.purpose,
            namespace=organization.slug,
            content_type=part.content_type,
            expires_after_seconds=_expiry(fields),
            size_hint=min(form.content_length, purpose_limit.max_bytes),
            hints=hints,
        )
        stream = FileStream(
            chunks,
            max_bytes=purpose_limit.max_bytes,
            too_large_message=purpose_limit.message,
            validator=BatchLineValidator(max_line_bytes=settings.BATCH_LINE_MAX_BYTES)
            if provider.needs_openai_batch_lines(options)
            else None,
            transform=functools.partial(provider.transform, options=options),
            on_end=on_end,
        )
        stream.ensure_not_empty()
        yield stream, options, on_end is None


EXPIRY_FIELDS = frozenset({"expires_after[anchor]", "expires_after[seconds]"})


def _pending_pair_removed(fields: dict[str, str]) -> dict[str, str]:
    """The fields sent before the file, less half an expiry pair: its other half may follow the file
    (``_late_fields`` then checks the pair whole)."""
    if len(EXPIRY_FIELDS & fields.keys()) == 1:
        return {name: value for name, value in fields.items() if name not in EXPIRY_FIELDS}
    return fields


def _late_fields(form: MultipartForm, options: UploadOptions) -> UploadOptions:
    """Fields sent after the file (an expiry sent last) still count; the gateway enforces expiry itself."""
    every_field = form.read_remaining_fields()  # those before the file too
    if not every_field.keys() & EXPIRY_FIELDS:
        return options
    fields = validate_fields({**every_field, "purpose": options.purpose})
    if fields.expires_after_seconds is None:
        return options
    return dataclasses.replace(options, expires_after_seconds=fields.expires_after_seconds)


@contextmanager
def _spool(part: FilePart, limit: SizeLimit, *, on_end: Callable[[], None]) -> Iterator[Any]:
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
        first = FileStream(part.chunks, max_bytes=limit.max_bytes, too_large_message=limit.message, on_end=on_end)
        first.ensure_not_empty()
        for chunk in first:
            spool.write(chunk)
        spool.seek(0)
        yield spool


def _check_purpose(provider: Provider, purpose: str) -> None:
    if provider.purposes is not None and purpose not in provider.purposes:
        raise InvalidRequest(
            f"The {provider.label or provider.kind} provider accepts only purpose "
            f"{', '.join(sorted(provider.purposes))}, not {purpose!r}.",
            param="purpose",
            code="unsupported_purpose",
        )


def _expiry(fields: UploadFields) -> int | None:
    if fields.expires_after_seconds is None and fields.purpose == "batch" and settings.BATCH_FILE_DEFAULT_TTL_SECONDS:
        return settings.BATCH_FILE_DEFAULT_TTL_SECONDS  # OpenAI expires batch files after 30 days by default
    return fields.expires_after_seconds


def _record(
    *,
    api_key: ApiKey,
    account: ProviderAccount,
    remote: RemoteFile,
    stream: FileStream,
    options: UploadOptions,
    reservation: QuotaReservation,
    audit: Audit,
) -> File:
    now = timezone.now()
    # Stored files get the record's own clock (microseconds keep list order stable); upstream files
    # keep the upstream's timestamp, which is what the provider will report later.
    created_at = now if remote.storage_key else datetime.fromtimestamp(remote.created_at, tz=UTC)
    expires_at = (
        created_at + timedelta(seconds=options.expires_after_seconds) if options.expires_after_seconds else None
    )
    nbytes = remote.bytes if remote.bytes is not None else stream.bytes_stored
    # Read before the transaction: waiting for the hashing may yield (gevent), and a greenlet that
    # yields while holding SQLite's write lock stalls every other one of its worker.
    sha256 = stream.sha256
    with transaction.atomic():
        file = File.objects.create(
            public_id=remote.id,
            organization=api_key.organization,
            provider_account=account,
            storage_key=remote.storage_key,
            storage_uri=remote.storage_uri,
            filename=options.filename,
            purpose=options.purpose,
            bytes=nbytes,
            status=remote.status,
            status_details=remote.status_details or "",
            sha256=sha256,
            created_at=created_at,
            expires_at=expires_at,
            api_key=api_key,
            checked_at=None if remote.storage_key else now,
            is_downloadable=remote.downloadable,
        )
        audit.succeed(file_id=file.public_id, nbytes=nbytes)
        # Last: it updates the organisation's row, which stays locked until the commit.
        quota_commit(reservation=reservation, actual_bytes=nbytes)
    return file


def _delete_orphan(provider: Provider, remote: RemoteFile) -> None:
    try:
        provider.delete(remote.storage_key or remote.id)
    except Exception:
        logger.warning("could not remove orphaned upstream file %s", remote.id, exc_info=True)


class FileStream:
    """The file's bytes on their way to the provider: checked as they arrive, and as they are stored.

    As they arrive: counted against the size limit and, for batch files the provider does not
    check itself, checked line by line (``validator``). Then through ``transform`` (the provider's
    rewriting of batch files; the same bytes otherwise) and, as they are handed to the provider,
    counted against the size limit again and hashed: ``bytes_stored`` and ``sha256`` describe what
    the provider stores, which for a rewritten file is the rewritten bytes a download returns.

    Iterate it or ``read(n)`` from it (the ``providers.base.UploadStream`` protocol). Raises
    ``PayloadTooLarge`` the moment either count crosses the limit and the validator's or the
    transform's ``InvalidRequest`` on the first bad line, so the provider aborts the transfer
    mid-stream. ``on_end`` runs once the last chunk has arrived, before the provider can treat the
    file as complete.
    """

    def __init__(
        self,
        chunks: Iterator[bytes],
        *,
        max_bytes: int,
        too_large_message: str,
        validator: Any | None = None,
        transform: Callable[[Iterable[bytes]], Iterable[bytes]] | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self._chunks = chunks
        self.max_bytes = max_bytes
        self.too_large_message = too_large_message
        self.validator = validator
        self.on_end = on_end
        self.bytes_read = 0
        self.bytes_stored = 0
        self._transform = transform
        self._output: Iterator[bytes] | None = None
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

    def _arriving(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if not chunk:
                continue
            self.bytes_read += len(chunk)
            if self.bytes_read > self.max_bytes:
                raise PayloadTooLarge(self.too_large_message, param="file")
            if self.validator is not None:
                self.validator.feed(chunk)
            yield chunk
        if self.validator is not None:
            self.validator.finish()
        if self.on_end is not None:
            self.on_end()

    def _next_chunk(self) -> bytes | None:
        if self._done:
            return None
        if self._output is None:
            arriving = self._arriving()
            self._output = iter(self._transform(arriving)) if self._transform is not None else arriving
        for chunk in self._output:
            if not chunk:
                continue
            self.bytes_stored += len(chunk)
            if self.bytes_stored > self.max_bytes:
                raise PayloadTooLarge(
                    f"{self.too_large_message} As rewritten for the provider, this file grows past that.",
                    param="file",
                )
            self._hash(chunk)
            return chunk
        self._done = True
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
