"""The operations on existing files: list, retrieve, content, delete, and the purge of expired files.

Every call by id starts with ``_locate``: the caller's live record of the id, or, for an id the
gateway never recorded, the account named in the header (only kinds with a Files API of their own
can hold files the gateway did not make). Ids recorded but not visible to the caller (another
organisation's, deleted, expired, or a case variant of such an id) are answered exactly like
unknown ids, and never reach the upstream as the caller's own. Uploads are in ``files_api.upload``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from config.database import release_connection
from config.errors import FileNotFound, GatewayError
from files_api.audit import Audit, audited
from files_api.models import AuditEvent, File
from files_api.selectors import Lookup, file_as_remote, list_records, list_upstream, lookup_file
from providers.base import CONTENT, DELETE, LIST, RETRIEVE, Content, Page, Provider, RemoteFile
from tenants.models import ApiKey, Organization, ProviderAccount
from tenants.services import provider_account_get, provider_account_resolve, provider_for, quota_free

logger = logging.getLogger("filegate.files")

# Upstream file states that never change again (OpenAI's and Azure's; `uploaded` and `pending` do).
FINAL_STATUSES = frozenset({"processed", "error"})


@dataclass(frozen=True)
class FileContent:
    content: Content
    filename: str


@dataclass(frozen=True)
class Located:
    """Where a call by id goes: the caller's record (or ``None``), the account and its provider."""

    lookup: Lookup
    account: ProviderAccount
    provider: Provider

    @property
    def file(self) -> File | None:
        return self.lookup.file

    @property
    def remote_ref(self) -> str:
        """What the provider knows the file by: the object key, or the upstream id."""
        return self.file.remote_ref if self.file is not None else self.lookup.file_id


def _not_found(file_id: str) -> FileNotFound:
    return FileNotFound(f"No such File object: {file_id}", param="id")


def _locate(organization: Organization, account_name: str | None, file_id: str) -> Located:
    """The caller's record of ``file_id`` with its account and provider, or the header's account for
    an id the gateway has no record of. Raises ``FileNotFound`` where no provider could hold it."""
    lookup = lookup_file(organization, file_id)
    if lookup.file is not None:
        account = provider_account_get(account_id=lookup.file.provider_account_id)
        return Located(lookup=lookup, account=account, provider=provider_for(account))
    # Unknown, and shadowed ids alike: the header is checked the same way for both, so a bad header
    # cannot tell them apart either.
    account = provider_account_resolve(organization=organization, name=account_name)
    provider = provider_for(account)
    if provider.stores_files or not lookup.is_possible:
        raise _not_found(lookup.file_id)
    return Located(lookup=lookup, account=account, provider=provider)


def _shadowed(located: Located) -> FileNotFound:
    """The answer for a shadowed id, after the same upstream round trip an unknown id costs: its
    timing must not tell that the id is recorded elsewhere. The upstream's answer is discarded."""
    with suppress(GatewayError):
        located.provider.retrieve(located.lookup.file_id)
    return _not_found(located.lookup.file_id)


@contextmanager
def _audited_call(
    api_key: ApiKey, account_name: str | None, file_id: str, action: str
) -> Iterator[tuple[Located, Audit]]:
    """Locate ``file_id`` and audit the operation on it (a failure to locate is audited too)."""
    organization = api_key.organization
    with audited(organization=organization, api_key=api_key, action=action, file_id=file_id) as audit:
        located = _locate(organization, account_name, file_id)
        audit.account = located.account
        yield located, audit


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
        return list_records(organization, account, purpose=purpose, limit=limit, order=order, after=after)
    return list_upstream(organization, provider, purpose=purpose, limit=limit, order=order, after=after)


def file_retrieve(*, organization: Organization, account_name: str | None, file_id: str) -> RemoteFile:
    """The file object. Raises ``FileNotFound`` (also for other organisations' files).

    A recorded upstream file is answered from the record while ``_confirmed_recently`` holds;
    otherwise the upstream is asked and the record follows its status.
    """
    located = _locate(organization, account_name, file_id)
    file, provider = located.file, located.provider
    if file is None:
        if located.lookup.is_shadowed:
            raise _shadowed(located)
        provider.require(RETRIEVE)
        return provider.retrieve(located.lookup.file_id)
    if provider.stores_files or _confirmed_recently(file):
        return file_as_remote(file)
    provider.require(RETRIEVE)
    try:
        remote = provider.retrieve(file.public_id)
    except FileNotFound:
        _note_missing(file, located.account)
        raise
    _note_found(file, remote)
    return dataclasses.replace(
        remote,
        purpose=file.purpose,
        filename=remote.filename or file.filename,
        expires_at=remote.expires_at or file.expires_at_unix,
        downloadable=remote.downloadable and file.is_downloadable,
    )


def _confirmed_recently(file: File) -> bool:
    """Whether the upstream confirmed this file, in a state it no longer leaves, within UPSTREAM_RECHECK_SECONDS.

    Upstream file objects do not change once processed (or failed): the one thing the record can
    miss is a deletion made upstream directly, and that it learns within this window.
    """
    seconds = settings.UPSTREAM_RECHECK_SECONDS
    return (
        seconds > 0
        and file.missing_since is None
        and file.status in FINAL_STATUSES
        and file.checked_at is not None
        and timezone.now() - file.checked_at < timedelta(seconds=seconds)
    )


def _note_found(file: File, remote: RemoteFile) -> None:
    changes: dict[str, object] = {"status": remote.status} if remote.status != file.status else {}
    if remote.status in FINAL_STATUSES:
        changes["checked_at"] = timezone.now()
    if file.missing_since is not None:
        changes["missing_since"] = None
    if changes:
        File.objects.filter(pk=file.pk).update(**changes)


def _note_missing(file: File, account: ProviderAccount) -> None:
    """The upstream says the file is gone. The first time, mark the record missing (and audit it);
    once that has held for MISSING_FILE_CONFIRM_SECONDS, forget the record and release its bytes.

    One 404 is not proof: Azure answers 404 for a while after an upload, and an account pointed at
    the wrong ``base_url`` answers 404 for every file. The bytes stay charged until confirmed.
    """
    now = timezone.now()
    marked = File.objects.filter(pk=file.pk, missing_since__isnull=True).update(missing_since=now)
    if marked:
        _audit_system_event(file, account, AuditEvent.Action.MISSING, detail="The provider has no such file.")
        return
    confirm_after = timedelta(seconds=settings.MISSING_FILE_CONFIRM_SECONDS)
    if file.missing_since is not None and now - file.missing_since >= confirm_after:
        file_forget_gone(file, account, detail="Confirmed gone at the provider; bytes released.")


def file_forget_gone(file: File, account: ProviderAccount, *, detail: str) -> bool:
    """Forget a record whose file is confirmed gone at the provider, releasing its bytes, with a
    ``file.gone`` event. Returns ``False`` (and does nothing) when another request forgot it first."""
    with transaction.atomic():
        if not file_forget(file):
            return False
        _audit_system_event(file, account, AuditEvent.Action.GONE, detail=detail)
    return True


def _audit_system_event(file: File, account: ProviderAccount, action: str, *, detail: str) -> None:
    AuditEvent.objects.create(
        organization_id=file.organization_id,
        api_key=None,
        action=action,
        file_id=file.public_id,
        provider_account=account.name,
        bytes=file.bytes,
        outcome="success",
        detail=detail,
    )


def file_content(*, api_key: ApiKey, account_name: str | None, file_id: str) -> FileContent:
    """The file's bytes as a stream, with its size when known. Audited.

    Raises ``FileNotFound``, ``UnsupportedOperation`` (a provider, or a file, whose bytes cannot be
    downloaded) and the provider's ``Upstream*`` errors, all before the first byte.
    """
    with _audited_call(api_key, account_name, file_id, AuditEvent.Action.CONTENT) as (located, audit):
        file, provider = located.file, located.provider
        if located.lookup.is_shadowed:
            raise _shadowed(located)
        provider.require(CONTENT, file_as_remote(file) if file is not None else None)
        try:
            content = provider.open_content(located.remote_ref)
        except FileNotFound:
            if file is not None and not provider.stores_files:
                _note_missing(file, located.account)
            raise
        if content.size is None and file is not None and provider.stores_files:
            content.size = file.bytes  # bytes the gateway stored itself: their size is the record's
        audit.succeed(nbytes=content.size)
    release_connection(content.size)  # the download streams after the view has returned
    return FileContent(content=content, filename=file.filename if file is not None else located.lookup.file_id)


def file_delete(*, api_key: ApiKey, account_name: str | None, file_id: str) -> str:
    """Delete the file upstream and release its bytes. Returns the id.

    Raises ``FileNotFound`` when there is nothing to delete, also for the losers of concurrent
    deletes of one file: exactly one caller is told it deleted the file.
    """
    with _audited_call(api_key, account_name, file_id, AuditEvent.Action.DELETE) as (located, audit):
        file, provider = located.file, located.provider
        if located.lookup.is_shadowed:
            raise _shadowed(located)
        provider.require(DELETE)
        existed = provider.delete(located.remote_ref)
        if file is None:
            if not existed:
                raise _not_found(located.lookup.file_id)
            audit.succeed()
            return located.lookup.file_id
        with transaction.atomic():
            if not file_forget(file):
                raise _not_found(file.public_id)  # another request deleted it first
            audit.succeed(nbytes=file.bytes)
    return file.public_id


def file_forget(file: File) -> bool:
    """Mark the record deleted and free its bytes; call inside a transaction (with the audit event).

    Only one caller ever succeeds for a record: the conditional UPDATE decides (on SQLite and
    PostgreSQL alike), so the bytes are freed once.
    """
    marked = File.objects.filter(pk=file.pk, deleted_at__isnull=True).update(
        deleted_at=timezone.now(), status="deleted"
    )
    if marked:
        quota_free(organization_id=file.organization_id, nbytes=file.bytes)
    return bool(marked)


def file_purge_expired(*, batch_size: int = 500, dry_run: bool = False) -> list[File]:
    """Delete expired files upstream and release their bytes, ``batch_size`` at a time.

    Returns the files handled. A file whose provider fails stays for the next run; a file deleted
    meanwhile by a client is left to that client (its bytes are freed once).
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
            if dry_run or _purge(file):
                handled.append(file)


def _purge(file: File) -> bool:
    try:
        provider_for(file.provider_account).delete(file.remote_ref)
    except GatewayError as exc:
        logger.warning("could not purge %s: %s", file.public_id, exc.message)
        return False
    except Exception:
        # One organisation's broken account (a missing SDK, a bug) must not stop the purge, and the
        # freeing of bytes, for every other organisation.
        logger.exception("could not purge %s", file.public_id)
        return False
    with transaction.atomic():
        if not file_forget(file):
            return False
        AuditEvent.objects.create(
            organization=file.organization,
            api_key=None,
            action=AuditEvent.Action.EXPIRE,
            file_id=file.public_id,
            provider_account=file.provider_account.name,
            bytes=file.bytes,
        )
    return True
