"""The five file operations, in one place: records, quota, audit and the provider call.

No database transaction is ever held open across a provider call: quota is reserved in one short
transaction, the bytes move with none open, and the record is written with the quota commit in a
second short one.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from config.errors import (
    FileNotFound,
    GatewayError,
    InternalError,
    InvalidRequest,
    PayloadTooLarge,
    ProviderMisconfigured,
    to_gateway_error,
)
from files_api.models import AuditEvent, File
from files_api.serializers import UploadFieldsSerializer
from files_api.uploads import FileStream, MultipartForm
from files_api.validation import BatchLineValidator, clean_filename
from providers import registry
from providers.base import (
    CHUNK_SIZE,
    CONTENT,
    DELETE,
    LIST,
    RETRIEVE,
    UPLOAD,
    Content,
    Page,
    Provider,
    RemoteFile,
    UploadOptions,
)
from tenants.models import ApiKey, Organization, ProviderAccount
from tenants.services import (
    provider_account_get,
    provider_account_resolve,
    quota_commit,
    quota_free,
    quota_release,
    quota_reserve,
)

logger = logging.getLogger("filegate.files")

# Room for the multipart framing and form fields around the file, when comparing the request's
# Content-Length with a file-size limit before reading anything.
FORM_OVERHEAD_BYTES = 64 * 1024
# File.public_id's length: every id the gateway records or mints fits, so a longer one names no file.
MAX_FILE_ID_LENGTH = 64
# Upstream pages one list request may read past files hidden from the caller (another org's).
MAX_UPSTREAM_LIST_PAGES = 10
# Upstream file states that never change again (OpenAI's and Azure's; `uploaded` and `pending` do).
FINAL_STATUSES = frozenset({"processed", "error"})


@dataclass(frozen=True)
class FileContent:
    chunks: Iterator[bytes]
    filename: str
    size_bytes: int | None


def provider_for(account: ProviderAccount) -> Provider:
    """The provider for ``account``; instances (and their HTTP pools) are reused across requests."""
    try:
        return registry.get_provider(account.kind, account.provider_config(), cache_key=str(account.pk))
    except ImproperlyConfigured as exc:
        # An operator's problem (a rotated-away CREDENTIAL_KEYS entry, a setting the kind refuses):
        # say which account, log why, and never echo the cause (it may quote a credential).
        logger.error("provider account %s (%s) cannot be built: %s", account.pk, account.kind, exc)
        raise ProviderMisconfigured(
            f"The provider account {account.name!r} is misconfigured; an organization admin must fix it."
        ) from None


def file_as_remote(file: File) -> RemoteFile:
    return RemoteFile(
        id=file.public_id,
        bytes=file.bytes,
        created_at=file.created_at_unix,
        filename=file.filename,
        purpose=file.purpose,
        status=file.status,
        expires_at=file.expires_at_unix,
        status_details=file.status_details or None,
        storage_key=file.storage_key,
        storage_uri=file.storage_uri,
    )


def _audit(
    *,
    organization: Organization,
    api_key: ApiKey | None,
    action: str,
    file_id: str = "",
    account: ProviderAccount | None = None,
    nbytes: int | None = None,
    error: BaseException | None = None,
) -> None:
    outcome, detail = "success", ""
    if error is not None:
        # What the client was told (a DRF ValidationError becomes its InvalidRequest); a bug keeps its class name.
        gateway_error = to_gateway_error(error)
        unexpected = isinstance(gateway_error, InternalError) and gateway_error is not error
        outcome = type(error).__name__ if unexpected else (gateway_error.code or type(gateway_error).__name__)
        detail = "unexpected error" if unexpected else gateway_error.message
    AuditEvent.objects.create(
        organization=organization,
        api_key=api_key,
        action=action,
        file_id=file_id[:MAX_FILE_ID_LENGTH],
        provider_account=account.name if account else "",
        bytes=nbytes,
        outcome=outcome[:64],
        detail=detail,
    )


def _validated_fields(fields: dict[str, str]) -> dict[str, Any]:
    serializer = UploadFieldsSerializer(data=fields)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _max_file_size(organization: Organization) -> tuple[int, str]:
    """The organisation's file-size limit and the message when it is crossed."""
    limit = organization.max_file_size_bytes
    return limit, f"Files may be at most {limit} bytes for this organization."


def _file_limit(organization: Organization, purpose: str, filename: str) -> tuple[int, str]:
    """The size limit for this file and the message when it is crossed."""
    if purpose != "batch":
        return _max_file_size(organization)
    if not filename.lower().endswith(".jsonl"):
        raise InvalidRequest("Batch files must be .jsonl files.", param="file", code="invalid_file_type")
    limit = min(organization.batch_max_size_bytes, organization.max_file_size_bytes)
    return limit, f"Batch files may be at most {limit} bytes for this organization."


def _checked_stream(
    chunks: Iterator[bytes],
    organization: Organization,
    *,
    purpose: str,
    filename: str,
    on_end: Callable[[], None] | None = None,
) -> FileStream:
    """The file's chunks under this purpose's size limit (and batch-line checks for batch files)."""
    limit, too_large = _file_limit(organization, purpose, filename)
    return FileStream(
        chunks,
        max_bytes=limit,
        too_large_message=too_large,
        validator=BatchLineValidator() if purpose == "batch" else None,
        on_end=on_end,
    )


def _expires_after(purpose: str, fields: dict[str, Any]) -> int | None:
    seconds = fields.get("expires_after[seconds]")
    if seconds is None and purpose == "batch" and settings.BATCH_FILE_DEFAULT_TTL_SECONDS:
        return settings.BATCH_FILE_DEFAULT_TTL_SECONDS  # OpenAI expires batch files after 30 days by default
    return seconds


def file_create(
    *, api_key: ApiKey, account_name: str | None, body: Any, content_type: str, content_length: int | None
) -> RemoteFile:
    """Stream the multipart ``body``'s file to the named (or default) account's provider and record it.

    Sequence: check the size limit, reserve quota, stream to the provider (limits, checksum and
    batch validation applied per chunk), record the file and commit the quota. Raises
    ``InvalidRequest``, ``PayloadTooLarge``, ``QuotaExceeded``, ``UnsupportedOperation`` and the
    provider's ``Upstream*`` errors; after any of them nothing is recorded or charged, and a failed
    ``file.create`` audit event says why.
    """
    account = None
    try:
        account = provider_account_resolve(organization=api_key.organization, name=account_name)
        # DRF hands over no stream at all for an empty body; read that as an empty body.
        form = MultipartForm(
            body if body is not None else io.BytesIO(), content_type=content_type, content_length=content_length
        )
        return _upload(api_key=api_key, account=account, form=form)
    except Exception as exc:
        _audit(
            organization=api_key.organization,
            api_key=api_key,
            action=AuditEvent.Action.CREATE,
            account=account,
            error=exc,
        )
        raise


def _upload(*, api_key: ApiKey, account: ProviderAccount, form: MultipartForm) -> RemoteFile:
    organization = api_key.organization
    provider = provider_for(account)
    provider.require(UPLOAD)
    max_size, too_large = _max_file_size(organization)
    if form.content_length > max_size + FORM_OVERHEAD_BYTES:
        raise PayloadTooLarge(too_large, param="file")
    part = form.read_until_file()
    if part is None:
        form.read_remaining_fields()
        raise InvalidRequest("Missing required parameter: 'file'.", param="file")
    filename = clean_filename(part.filename)
    if "purpose" not in form.fields:
        # The purpose comes after the file: spool it (bounded memory) and decide afterwards.
        return _upload_spooled(api_key=api_key, account=account, provider=provider, form=form, filename=filename)
    fields = _validated_fields(form.fields)
    purpose = fields["purpose"]
    _check_purpose(provider, purpose)
    stream = _checked_stream(part.chunks, organization, purpose=purpose, filename=filename, on_end=form.check_complete)
    if form.content_length > stream.max_bytes + FORM_OVERHEAD_BYTES:
        raise PayloadTooLarge(stream.too_large_message, param="file")
    options = UploadOptions(
        filename=filename,
        purpose=purpose,
        namespace=organization.slug,
        content_type=part.content_type,
        expires_after_seconds=_expires_after(purpose, fields),
        size_hint=min(form.content_length, stream.max_bytes),
    )
    return _store(api_key=api_key, account=account, provider=provider, stream=stream, options=options, form=form)


def _check_purpose(provider: Provider, purpose: str) -> None:
    if provider.purposes is not None and purpose not in provider.purposes:
        raise InvalidRequest(
            f"The {provider.label or provider.kind} provider accepts only purpose "
            f"{', '.join(sorted(provider.purposes))}, not {purpose!r}.",
            param="purpose",
            code="unsupported_purpose",
        )


def _upload_spooled(
    *, api_key: ApiKey, account: ProviderAccount, provider: Provider, form: MultipartForm, filename: str
) -> RemoteFile:
    """The slow path for bodies that send ``purpose`` after the file: spool, validate, then stream."""
    organization = api_key.organization
    assert form.file is not None
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
        max_size, too_large = _max_file_size(organization)
        first = FileStream(
            form.file.chunks, max_bytes=max_size, too_large_message=too_large, on_end=form.check_complete
        )
        first.ensure_not_empty()
        for chunk in first:
            spool.write(chunk)
        fields = _validated_fields(form.read_remaining_fields())
        purpose = fields["purpose"]
        _check_purpose(provider, purpose)
        spool.seek(0)
        stream = _checked_stream(
            iter(lambda: spool.read(CHUNK_SIZE), b""), organization, purpose=purpose, filename=filename
        )
        options = UploadOptions(
            filename=filename,
            purpose=purpose,
            namespace=organization.slug,
            content_type=form.file.content_type,
            expires_after_seconds=_expires_after(purpose, fields),
            size_hint=first.bytes_read,
        )
        return _store(api_key=api_key, account=account, provider=provider, stream=stream, options=options, form=None)


def _store(
    *,
    api_key: ApiKey,
    account: ProviderAccount,
    provider: Provider,
    stream: FileStream,
    options: UploadOptions,
    form: MultipartForm | None,
) -> RemoteFile:
    organization = api_key.organization
    stream.ensure_not_empty()
    reservation = quota_reserve(organization_id=organization.pk, nbytes=options.size_hint or stream.max_bytes)
    remote: RemoteFile | None = None
    try:
        remote = provider.upload(stream, options)
        stream.drain()
        fields = options
        if form is not None:
            late = _late_expiry(form.read_remaining_fields(), options)
            fields = dataclasses.replace(options, expires_after_seconds=late)
        file = _record(
            api_key=api_key, account=account, remote=remote, stream=stream, options=fields, reservation=reservation
        )
    except BaseException:
        # Whatever failed, the bytes are not ours to charge: release the hold, and remove an
        # upstream object that no record will ever point at.
        quota_release(reservation=reservation)
        if remote is not None:
            _delete_orphan(provider, remote)
        raise
    return file_as_remote(file)


def _late_expiry(fields: dict[str, str], options: UploadOptions) -> int | None:
    """Honour ``expires_after`` fields sent after the file (the gateway enforces the expiry itself)."""
    validated = _validated_fields({"purpose": options.purpose, **fields})
    return validated.get("expires_after[seconds]") or options.expires_after_seconds


def _record(
    *,
    api_key: ApiKey,
    account: ProviderAccount,
    remote: RemoteFile,
    stream: FileStream,
    options: UploadOptions,
    reservation: Any,
) -> File:
    now = timezone.now()
    # Stored files get the record's own clock (microseconds keep list order stable); upstream files
    # keep the upstream's timestamp, which is what the provider will report later.
    created_at = now if remote.storage_key else datetime.fromtimestamp(remote.created_at, tz=UTC)
    expires_at = (
        created_at + timedelta(seconds=options.expires_after_seconds) if options.expires_after_seconds else None
    )
    nbytes = remote.bytes if remote.bytes is not None else stream.bytes_read
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
            sha256=stream.sha256,
            created_at=created_at,
            expires_at=expires_at,
            api_key=api_key,
            checked_at=None if remote.storage_key else now,
        )
        quota_commit(reservation=reservation, actual_bytes=nbytes)
        _audit(
            organization=api_key.organization,
            api_key=api_key,
            action=AuditEvent.Action.CREATE,
            file_id=file.public_id,
            account=account,
            nbytes=nbytes,
        )
    return file


def _delete_orphan(provider: Provider, remote: RemoteFile) -> None:
    try:
        provider.delete(remote.storage_key or remote.id)
    except Exception:
        logger.warning("could not remove orphaned upstream file %s", remote.id, exc_info=True)


def _live_files(organization: Organization) -> QuerySet[File]:
    now = timezone.now()
    return File.objects.filter(organization=organization, deleted_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )


def _find_record(organization: Organization, account_name: str | None, file_id: str) -> File | None:
    """Our record of ``file_id`` if the caller may see it.

    Raises ``FileNotFound`` when the id is recorded for another organisation, deleted or expired:
    a record elsewhere must not be reachable through shared upstream credentials either. Also for
    an id no file can have (too long, NUL), which then reaches neither the database nor an upstream.
    """
    if len(file_id) > MAX_FILE_ID_LENGTH or "\x00" in file_id:
        # PostgreSQL rejects NUL in any text, and a longer id in the audit's varchar(64): a 500 for bad input.
        raise FileNotFound(f"No such File object: {file_id[:MAX_FILE_ID_LENGTH]}", param="id")
    file = File.objects.by_public_id(file_id)
    if file is None:
        return None
    if file.organization_id != organization.pk or file.is_deleted or file.is_expired():
        # Check the X-Provider-Account header exactly as for an unknown id first: otherwise a bad
        # header answers 404 here and 400 there, telling whether the id exists in another organisation.
        _account_for_unknown_id(organization, account_name, file_id)
        raise FileNotFound(f"No such File object: {file_id}", param="id")
    file.provider_account = provider_account_get(account_id=file.provider_account_id)
    return file


def _account_for_unknown_id(
    organization: Organization, account_name: str | None, file_id: str
) -> tuple[ProviderAccount, Provider]:
    account = provider_account_resolve(organization=organization, name=account_name)
    provider = provider_for(account)
    if provider.stores_files:
        raise FileNotFound(f"No such File object: {file_id}", param="id")
    return account, provider


def file_list(
    *,
    organization: Organization,
    account_name: str | None,
    purpose: str | None,
    limit: int,
    order: str,
    after: str | None,
) -> Page:
    """One page of the account's files, newest first unless ``order="asc"``.

    Storage-backed kinds are listed from the records; the others page through the upstream, with
    files recorded as another organisation's (or deleted, or expired) left out.
    """
    account = provider_account_resolve(organization=organization, name=account_name)
    provider = provider_for(account)
    provider.require(LIST)
    if provider.stores_files:
        return _list_records(organization, account, purpose=purpose, limit=limit, order=order, after=after)
    return _list_upstream(organization, provider, purpose=purpose, limit=limit, order=order, after=after)


def _list_upstream(
    organization: Organization, provider: Provider, *, purpose: str | None, limit: int, order: str, after: str | None
) -> Page:
    """Up to ``limit`` upstream files the organisation may see, reading on past hidden ones.

    Accounts that share one upstream credential see each other's files upstream. A page made only
    of hidden files must not reach the client as ``data=[]`` with ``has_more``: the SDKs stop
    paging at an empty page. So read further pages (a bounded number) until the page is filled.
    """
    visible: list[RemoteFile] = []
    for _ in range(MAX_UPSTREAM_LIST_PAGES):
        page = provider.list(purpose=purpose, limit=limit, order=order, after=after)
        hidden = set(
            File.objects.filter(public_id__in=[remote.id for remote in page.data])
            .filter(~Q(organization=organization) | Q(deleted_at__isnull=False) | Q(expires_at__lte=timezone.now()))
            .values_list("public_id", flat=True)
        )
        for remote in page.data:
            if remote.id in hidden:
                continue
            if len(visible) == limit:
                return Page(data=visible, has_more=True)
            visible.append(remote)
        if len(visible) == limit or not page.has_more or not page.data:
            return Page(data=visible, has_more=page.has_more)
        after = page.data[-1].id
    return Page(data=visible, has_more=True)


def _list_records(
    organization: Organization,
    account: ProviderAccount,
    *,
    purpose: str | None,
    limit: int,
    order: str,
    after: str | None,
) -> Page:
    files = _live_files(organization).filter(provider_account=account)
    if purpose:
        files = files.filter(purpose=purpose)
    if after:
        cursor = files.filter(public_id=after).values("created_at", "pk").first()
        if cursor is None:
            # Same answer whether the id is unknown or another organisation's: nothing leaks.
            raise InvalidRequest(f"Invalid 'after': no file {after!r} in this list.", param="after")
        if order == "asc":
            files = files.filter(
                Q(created_at__gt=cursor["created_at"]) | Q(created_at=cursor["created_at"], pk__gt=cursor["pk"])
            )
        else:
            files = files.filter(
                Q(created_at__lt=cursor["created_at"]) | Q(created_at=cursor["created_at"], pk__lt=cursor["pk"])
            )
    files = files.order_by("created_at", "pk") if order == "asc" else files.order_by("-created_at", "-pk")
    rows = list(files[: limit + 1])
    return Page(data=[file_as_remote(file) for file in rows[:limit]], has_more=len(rows) > limit)


def file_retrieve(*, organization: Organization, account_name: str | None, file_id: str) -> RemoteFile:
    """The file object. Raises ``FileNotFound`` (also for other organisations' files).

    A recorded upstream file is answered from the record while ``_confirmed_recently`` holds;
    otherwise the upstream is asked and the record follows its status.
    """
    file = _find_record(organization, account_name, file_id)
    if file is None:
        _, provider = _account_for_unknown_id(organization, account_name, file_id)
        provider.require(RETRIEVE)
        return provider.retrieve(file_id)
    provider = provider_for(file.provider_account)
    if provider.stores_files or _confirmed_recently(file):
        return file_as_remote(file)
    provider.require(RETRIEVE)
    try:
        remote = provider.retrieve(file.public_id)
    except FileNotFound:
        _forget(file)  # deleted upstream behind the gateway's back: stop charging for it
        raise
    changes: dict[str, Any] = {"status": remote.status} if remote.status != file.status else {}
    if remote.status in FINAL_STATUSES:
        changes["checked_at"] = timezone.now()
    if changes:
        File.objects.filter(pk=file.pk).update(**changes)
    return dataclasses.replace(
        remote,
        purpose=file.purpose,
        filename=remote.filename or file.filename,
        expires_at=remote.expires_at or file.expires_at_unix,
    )


def _confirmed_recently(file: File) -> bool:
    """Whether the upstream confirmed this file, in a state it no longer leaves, within UPSTREAM_RECHECK_SECONDS.

    Upstream file objects do not change once processed (or failed): the one thing the record can
    miss is a deletion made upstream directly, and that it learns within this window.
    """
    seconds = settings.UPSTREAM_RECHECK_SECONDS
    return (
        seconds > 0
        and file.status in FINAL_STATUSES
        and file.checked_at is not None
        and timezone.now() - file.checked_at < timedelta(seconds=seconds)
    )


def _locate(
    organization: Organization, account_name: str | None, file_id: str
) -> tuple[File | None, ProviderAccount, Provider]:
    """The caller's record of ``file_id`` (or ``None``), and the account and provider that hold it."""
    file = _find_record(organization, account_name, file_id)
    if file is None:
        account, provider = _account_for_unknown_id(organization, account_name, file_id)
        return None, account, provider
    return file, file.provider_account, provider_for(file.provider_account)


def file_content(*, api_key: ApiKey, account_name: str | None, file_id: str) -> FileContent:
    """The file's bytes as a stream of chunks, plus what the response headers need. Audited."""
    organization = api_key.organization
    file, account, provider = _locate(organization, account_name, file_id)
    audit = functools.partial(
        _audit,
        organization=organization,
        api_key=api_key,
        action=AuditEvent.Action.CONTENT,
        file_id=file_id,
        account=account,
    )
    try:
        provider.require(CONTENT)
        opened = provider.open_content(file.remote_ref if file else file_id)
        # Stores report the object's size, pass-through kinds the upstream's Content-Length: with
        # it, a download cut off mid-stream is a visible error for the client instead of a
        # silently shorter file.
        if isinstance(opened, Content):
            chunks, size = opened.chunks, opened.size
        else:
            chunks, size = opened, getattr(opened, "size_bytes", None)
    except Exception as exc:
        audit(error=exc)
        raise
    audit(nbytes=size)
    return FileContent(chunks=chunks, filename=file.filename if file else file_id, size_bytes=size)


def file_delete(*, api_key: ApiKey, account_name: str | None, file_id: str) -> str:
    """Delete the file upstream and release its bytes. Returns the id. Raises ``FileNotFound``."""
    organization = api_key.organization
    file, account, provider = _locate(organization, account_name, file_id)
    audit = functools.partial(
        _audit,
        organization=organization,
        api_key=api_key,
        action=AuditEvent.Action.DELETE,
        file_id=file_id,
        account=account,
    )
    try:
        provider.require(DELETE)
        existed = provider.delete(file.remote_ref if file else file_id)
        if file is None and existed is False:
            raise FileNotFound(f"No such File object: {file_id}", param="id")
    except Exception as exc:
        audit(error=exc)
        raise
    with transaction.atomic():
        if file is not None:
            _forget(file)
        audit(nbytes=file.bytes if file else None)
    return file_id


def _forget(file: File) -> bool:
    """Mark the record deleted and free its bytes, once (concurrent deletes free them once)."""
    with transaction.atomic():
        marked = File.objects.filter(pk=file.pk, deleted_at__isnull=True).update(
            deleted_at=timezone.now(), status="deleted"
        )
        if marked:
            quota_free(organization_id=file.organization_id, nbytes=file.bytes)
    return bool(marked)


def file_purge_expired(*, batch_size: int = 500, dry_run: bool = False) -> list[File]:
    """Delete expired files upstream and release their bytes, ``batch_size`` at a time.

    Returns the files handled. A file whose provider fails stays for the next run.
    """
    now = timezone.now()
    handled: list[File] = []
    last_pk = 0
    while True:
        batch = list(
            File.objects.select_related("provider_account", "organization")
            .filter(deleted_at__isnull=True, expires_at__lte=now, pk__gt=last_pk)
            .order_by("pk")[:batch_size]
        )
        if not batch:
            return handled
        last_pk = batch[-1].pk
        for file in batch:
            if dry_run:
                handled.append(file)
                continue
            try:
                provider_for(file.provider_account).delete(file.remote_ref)
            except GatewayError as exc:
                logger.warning("could not purge %s: %s", file.public_id, exc.message)
                continue
            except Exception:
                # One organisation's broken account (credentials no key decrypts, a missing SDK)
                # must not stop the purge, and the freeing of bytes, for every other organisation.
                logger.exception("could not purge %s", file.public_id)
                continue
            if _forget(file):
                _audit(
                    organization=file.organization,
                    api_key=None,
                    action=AuditEvent.Action.EXPIRE,
                    file_id=file.public_id,
                    account=file.provider_account,
                    nbytes=file.bytes,
                )
                handled.append(file)
