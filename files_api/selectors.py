"""Reads: which file an id names for an organisation, and the pages of a list."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from config.errors import InvalidRequest
from files_api.models import File
from providers.base import Page, Provider, RemoteFile
from tenants.models import Organization, ProviderAccount

# File.public_id's length: every id the gateway records or mints fits, so a longer one names no file.
MAX_FILE_ID_LENGTH = 64
# Upstream pages one list request may read past files hidden from the caller (another org's).
MAX_UPSTREAM_LIST_PAGES = 10


@dataclass(frozen=True)
class Lookup:
    """What an id names for one organisation.

    ``file`` is the organisation's live record. ``is_shadowed`` means the id (or a case variant of
    it) is recorded but not visible to this organisation: another organisation's file, or one that is
    deleted or expired. Such an id must be answered exactly as an unknown one, and must never reach
    the upstream as the caller's own.
    """

    file_id: str
    file: File | None
    is_shadowed: bool
    is_possible: bool = True  # False for an id no file can have (too long, NUL): never sent anywhere


def normalize_file_id(raw: str) -> str:
    """The id as the gateway looks it up: surrounding space and trailing dots removed (no provider's
    ids end in a dot, and a URL path may drop or keep one)."""
    return raw.strip().rstrip(".")


def lookup_file(organization: Organization, raw_id: str) -> Lookup:
    """Find what ``raw_id`` names for ``organization``: its live record, a shadowed id, or nothing.

    One query, matching case-insensitively (``file_public_id_upper`` index): an upstream that
    treats ids case-insensitively must not turn a variant of another organisation's id into "unknown".
    """
    file_id = normalize_file_id(raw_id)
    if not file_id or len(file_id) > MAX_FILE_ID_LENGTH or "\x00" in file_id:
        # PostgreSQL rejects NUL in any text, and no recorded id is longer: nothing to look up.
        return Lookup(file_id=file_id[:MAX_FILE_ID_LENGTH], file=None, is_shadowed=False, is_possible=False)
    candidates = _candidates(file_id.upper())
    for file in candidates:
        if file.public_id == file_id and file.organization_id == organization.pk and _is_live(file):
            return Lookup(file_id=file_id, file=file, is_shadowed=False)
    return Lookup(file_id=file_id, file=None, is_shadowed=bool(candidates))


# Every column of files_api.File, in the model's field order, as Model.from_db takes them.
_COLUMNS = tuple(field.column for field in File._meta.concrete_fields)
# The expression matches the `file_public_id_upper` index. Table and column names are the model's
# own, never input.
_CANDIDATES_SQL = f'SELECT {", ".join(_COLUMNS)} FROM "{File._meta.db_table}" WHERE UPPER("public_id") = %s LIMIT 8'  # noqa: S608


def _candidates(upper_id: str) -> list[File]:
    """The records whose id matches ``upper_id`` whatever the case.

    Every call by id starts here, so it is the cheapest public path to model instances. On
    PostgreSQL: the cursor and ``Model.from_db`` (psycopg already returns every column as the model
    holds it: aware datetimes, booleans), about 0.13 ms of CPU less per retrieve than ``raw()``,
    whose per-query set-up (column descriptions, converters, init order) cost more than the query:
    measured with `bench/run.py --only retrieves` on PostgreSQL, 0.955-0.97 ms of gateway CPU per GET
    instead of 1.075-1.13 and 1,611-1,640 retrieves/s at c=16 instead of 1,399-1,473 (2026-12-02).
    SQLite returns datetimes as text, which the ORM's converters turn into aware datetimes: ``raw()``.
    """
    if connection.vendor != "postgresql":
        return list(File.objects.raw(_CANDIDATES_SQL, [upper_id]))
    with connection.cursor() as cursor:
        cursor.execute(_CANDIDATES_SQL, [upper_id])
        rows = cursor.fetchall()
    return [File.from_db(connection.alias, _COLUMNS, row) for row in rows]


def _is_live(file: File) -> bool:
    return not file.is_deleted and not file.is_expired()


def live_files(organization: Organization) -> QuerySet[File]:
    now = timezone.now()
    return File.objects.filter(organization=organization, deleted_at__isnull=True).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )


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
        downloadable=file.is_downloadable,
    )


def list_records(
    organization: Organization,
    account: ProviderAccount,
    *,
    purpose: str | None,
    limit: int,
    order: str,
    after: str | None,
) -> Page:
    """A page of the account's live files from the gateway's records (storage-backed kinds)."""
    files = live_files(organization).filter(provider_account=account)
    if purpose:
        files = files.filter(purpose=purpose)
    if after:
        cursor = files.filter(public_id=normalize_file_id(after)).values("created_at", "pk").first()
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
    # Tuples, not model instances: building 10,000 File objects cost more than everything else a
    # list does.
    rows = list(files.values_list(*_LISTED_FIELDS)[: limit + 1])
    return Page(data=[_listed(row) for row in rows[:limit]], has_more=len(rows) > limit)


_LISTED_FIELDS = (
    "public_id",
    "bytes",
    "created_at",
    "filename",
    "purpose",
    "status",
    "expires_at",
    "status_details",
    "storage_key",
    "storage_uri",
    "is_downloadable",
)


def _listed(row: tuple[Any, ...]) -> RemoteFile:
    public_id, nbytes, created_at, filename, purpose, status, expires_at, details, key, uri, downloadable = row
    return RemoteFile(
        id=public_id,
        bytes=nbytes,
        created_at=int(created_at.timestamp()),
        filename=filename,
        purpose=purpose,
        status=status,
        expires_at=int(expires_at.timestamp()) if expires_at else None,
        status_details=details or None,
        storage_key=key,
        storage_uri=uri,
        downloadable=downloadable,
    )


def list_upstream(
    organization: Organization,
    provider: Provider,
    *,
    purpose: str | None,
    limit: int,
    order: str,
    after: str | None,
) -> Page:
    """Up to ``limit`` upstream files the organisation may see, reading on past hidden ones.

    Accounts that share one upstream credential see each other's files upstream: files recorded for
    another organisation (or deleted, or expired) are left out, and a recorded file shows the
    purpose the gateway recorded (Anthropic keeps none). A page made only of hidden files must not
    reach the client as ``data=[]`` with ``has_more``: the SDKs stop paging at an empty page, so
    further upstream pages are read (a bounded number) until the page is filled. One more visible
    file than ``limit`` is looked for, so ``has_more`` is true only when another page has something.
    """
    visible: list[RemoteFile] = []
    pages = provider.iter_pages(purpose=purpose, order=order, after=after, page_size=limit + 1)
    for number, files in enumerate(pages, start=1):
        records = _records_of(files)
        now = timezone.now()
        for remote in files:
            shown = _as_seen_by(organization, remote, records.get(remote.id), now=now)
            if shown is None or (purpose and shown.purpose != purpose):
                continue
            visible.append(shown)
            if len(visible) > limit:
                return Page(data=visible[:limit], has_more=True)
        if number >= MAX_UPSTREAM_LIST_PAGES:
            return Page(data=visible, has_more=True)
    return Page(data=visible, has_more=False)


def _records_of(files: list[RemoteFile]) -> dict[str, dict[str, Any]]:
    rows = File.objects.filter(public_id__in=[remote.id for remote in files]).values(
        "public_id", "organization_id", "deleted_at", "expires_at", "purpose", "filename"
    )
    return {row["public_id"]: dict(row) for row in rows}


def _as_seen_by(
    organization: Organization, remote: RemoteFile, record: dict[str, Any] | None, *, now: datetime
) -> RemoteFile | None:
    if record is None:
        return remote
    is_expired = record["expires_at"] is not None and record["expires_at"] <= now
    if record["organization_id"] != organization.pk or record["deleted_at"] is not None or is_expired:
        return None
    if remote.purpose == record["purpose"] and remote.filename:
        return remote  # as recorded: most files, and a copy per file was a sixth of a 1,000-file list's CPU
    return dataclasses.replace(remote, purpose=record["purpose"], filename=remote.filename or record["filename"])
