"""Reconciliation: the gateway's records against what the upstreams and buckets hold (``reconcile_files``).

For each provider account, the records of its live files are walked in batches alongside what the
provider lists, one page at a time, so memory stays bounded by a page and a batch whatever the size
of the account: for kinds with a Files API, the upstream's list, newest first, matched by creation
second; for storage kinds, the objects under the organisation's folder in each of the account's
stores, matched by file id. A record not listed where the order puts it is asked about on its own (a
retrieve, or opening its object) before it is called gone, so the order only decides what a run
costs, never a verdict. Listed files and objects without a live record are orphans. Then each
organisation's counters are compared with its live files and open reservations.

Without ``fix`` nothing changes. With it, what is safe is repaired: gone records are forgotten (their
bytes released once, through ``file_forget``, with a ``file.gone`` event), records marked missing that
are found again lose the mark, orphaned objects under the organisation's folder whose names the
gateway gives are deleted, stale reservations are released and drifted counters recounted. Orphan
files upstream are only reported: nothing tells a file the gateway uploaded and lost from one made
with the same credentials outside it, so deleting them could destroy someone's data. Anything younger
than RECONCILE_GRACE_SECONDS is left alone (an upload may be between storing its bytes and recording
them), and so are the records of an account none of whose files could be found (see ``_Verdicts``).
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import groupby, islice
from operator import itemgetter
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import Collate
from django.utils import timezone

from config.errors import FileNotFound, GatewayError, InvalidRequest
from files_api.models import AuditEvent, File
from files_api.services import file_forget_gone
from providers.base import (
    LIST,
    ObjectStoreProvider,
    Provider,
    RemoteFile,
    Store,
    StoredObject,
    is_minted_file_id,
)
from tenants.models import Organization, ProviderAccount
from tenants.services import (
    provider_for,
    quota_recount,
    quota_release,
    quota_stale_reservations,
    quota_usage,
)

logger = logging.getLogger("filegate.files")

# Upstream files per list request, and stored objects per record lookup.
PAGE_SIZE = 1000
# Records read per query.
BATCH_SIZE = 500

GONE = "gone"  # a record whose file the provider no longer has
ORPHAN = "orphan"  # a file upstream, or an object in the organisation's folder, with no live record
FOUND = "found"  # a record marked missing whose file the provider has again
USAGE = "usage"  # used_bytes differs from the bytes of the live files
RESERVED = "reserved"  # reserved_bytes differs from the bytes the open reservations hold
STALE = "stale-reservation"  # a reservation older than QUOTA_RESERVATION_TTL_SECONDS
ERROR = "error"  # an account that could not be checked
CATEGORIES = (GONE, ORPHAN, FOUND, USAGE, RESERVED, STALE, ERROR)

YOUNG = "left: younger than RECONCILE_GRACE_SECONDS"


@dataclass(frozen=True)
class Finding:
    """One thing reconciliation found, and what ``--fix`` did about it (``action``, "" for nothing)."""

    category: str
    organization: str
    account: str  # "" for the organisation's counters
    subject: str  # a file id (an object's key relative to the organisation's folder), a counter, a reservation
    bytes: int | None  # the file's or the reservation's; for a counter, how far it is off
    detail: str
    action: str = ""


@dataclass
class Summary:
    """What a run looked at, found and repaired."""

    fix: bool
    organizations: int = 0
    accounts: int = 0
    records: int = 0  # live records checked
    listed: int = 0  # upstream files and stored objects seen
    missing: int = 0  # records marked missing among them
    found: Counter[str] = field(default_factory=Counter)  # findings by category
    fixed: Counter[str] = field(default_factory=Counter)  # findings repaired, by category

    @property
    def errors(self) -> int:
        return self.found[ERROR]


@dataclass
class _Run:
    fix: bool
    summary: Summary
    on_finding: Callable[[Finding], None]
    settled_before: datetime  # now minus RECONCILE_GRACE_SECONDS

    def add(self, finding: Finding, *, is_fixed: bool = False) -> None:
        self.summary.found[finding.category] += 1
        if is_fixed:
            self.summary.fixed[finding.category] += 1
        self.on_finding(finding)

    def is_settled(self, moment: datetime | float | None) -> bool:
        """Whether ``moment`` (a time, unix seconds, or unknown) is older than the grace period."""
        if moment is None:
            return False
        if not isinstance(moment, datetime):
            moment = datetime.fromtimestamp(moment, tz=UTC)
        return moment <= self.settled_before


def reconcile_files(
    *,
    organization: str | None = None,
    account: str | None = None,
    fix: bool = False,
    on_finding: Callable[[Finding], None] | None = None,
) -> Summary:
    """Compare records with what the providers hold, for every account (or those the filters name),
    and each organisation's usage with its live files; ``fix`` repairs what is safe.

    Findings go to ``on_finding`` as they are made. An account that cannot be checked is an
    ``error`` finding, and the others are still checked. Raises ``InvalidRequest`` when no
    organisation or account matches the filters.
    """
    organizations = Organization.objects.order_by("slug")
    if organization is not None:
        organizations = organizations.filter(slug=organization)
        if not organizations.exists():
            raise InvalidRequest(f"No organisation {organization!r}.", param="org")
    if (
        account is not None
        and not ProviderAccount.objects.filter(organization__in=organizations, name=account).exists()
    ):
        raise InvalidRequest(f"No provider account named {account!r}.", param="account")
    grace = timedelta(seconds=settings.RECONCILE_GRACE_SECONDS)
    run = _Run(
        fix=fix,
        summary=Summary(fix=fix),
        on_finding=on_finding or (lambda finding: None),
        settled_before=timezone.now() - grace,
    )
    for org in organizations:
        accounts = ProviderAccount.objects.filter(organization=org).order_by("name")
        if account is not None:
            accounts = accounts.filter(name=account)
            if not accounts:
                continue
        run.summary.organizations += 1
        for provider_account in accounts:
            provider_account.organization = org
            _check_account(run, provider_account)
        _check_usage(run, org)
    return run.summary


# Accounts.


@dataclass
class _Account:
    """One account under check: where its findings go."""

    run: _Run
    account: ProviderAccount

    def report(
        self, category: str, subject: str, nbytes: int | None, detail: str, action: str = "", *, is_fixed: bool = False
    ) -> None:
        finding = Finding(category, self.account.organization.slug, self.account.name, subject, nbytes, detail, action)
        self.run.add(finding, is_fixed=is_fixed)

    def error(self, message: str) -> None:
        self.report(ERROR, "", None, message)


def _check_account(run: _Run, account: ProviderAccount) -> None:
    checking = _Account(run, account)
    run.summary.accounts += 1
    try:
        provider = provider_for(account)
        if isinstance(provider, ObjectStoreProvider):
            _check_stores(checking, provider)
        elif provider.can(LIST):
            _check_upstream(checking, provider)
        else:
            checking.error(f"The {provider.label or provider.kind} provider cannot list its files.")
    except GatewayError as exc:
        checking.error(exc.message)
    except Exception:
        # One broken account (a missing SDK, a bug) must not stop the check of every other one.
        logger.exception("reconcile_files: checking account %s failed", account.pk)
        checking.error("Unexpected error (the log has the details).")


def _check_upstream(checking: _Account, provider: Provider) -> None:
    """Kinds with a Files API: the upstream's list, newest first, against the records, newest first."""
    pages = provider.iter_pages(purpose=None, order="desc", after=None, page_size=PAGE_SIZE)
    listed = ((-remote.created_at, remote.id) for page in pages for remote in _upstream_page(checking, page))
    records = _records_newest_first(checking.account)
    _compare(checking, provider, records, listed, key=lambda record: -int(record.created_at.timestamp()))


def _upstream_page(checking: _Account, page: list[RemoteFile]) -> list[RemoteFile]:
    """Report the page's orphans (files with no live record, in any organisation); return the page."""
    checking.run.summary.listed += len(page)
    recorded = _recorded([remote.id for remote in page])
    for remote in page:
        if recorded.get(remote.id) is not True:
            detail = "its record was deleted" if remote.id in recorded else "no record"
            checking.report(
                ORPHAN,
                remote.id,
                remote.bytes,
                f"at the provider, {detail}",
                "left: the gateway deletes no upstream file it has no record of" if checking.run.fix else "",
            )
    return page


def _check_stores(checking: _Account, provider: ObjectStoreProvider) -> None:
    """Storage kinds: the objects under the organisation's folder, by file id, against the records by id."""
    namespace = checking.account.organization.slug + "/"
    listings = [_objects(store, namespace) for store in provider.stores()]
    objects = heapq.merge(*listings, key=itemgetter(0))
    listed = (
        (file_id, file_id) for batch in _batches(objects, PAGE_SIZE) for file_id, _, _ in _object_batch(checking, batch)
    )
    _compare(checking, provider, _records_by_id(checking.account), listed, key=lambda record: record.public_id)


StoreEntry = tuple[str, Store, StoredObject]


def _objects(store: Store, namespace: str) -> Iterator[StoreEntry]:
    for item in store.iter_objects(namespace):
        yield item.key[len(namespace) :], store, item


def _object_batch(checking: _Account, batch: list[StoreEntry]) -> list[StoreEntry]:
    """Report (and with ``fix`` delete) the batch's orphaned objects; return the batch."""
    checking.run.summary.listed += len(batch)
    recorded = _recorded([file_id for file_id, _, _ in batch])
    for file_id, store, item in batch:
        if recorded.get(file_id) is not True:
            _orphaned_object(checking, store, item, file_id, has_deleted_record=file_id in recorded)
    return batch


def _orphaned_object(
    checking: _Account, store: Store, item: StoredObject, file_id: str, *, has_deleted_record: bool
) -> None:
    detail = f"object {item.key}, " + ("its record was deleted" if has_deleted_record else "no record")
    action, is_fixed = "", False
    if checking.run.fix:
        if not is_minted_file_id(file_id):
            action = "left: not a name the gateway gives objects"
        elif not checking.run.is_settled(item.modified_at):
            action = YOUNG
        elif File.objects.filter(public_id=file_id, deleted_at__isnull=True).exists():
            action = "left: recorded meanwhile"  # an upload that finished after the grace period
        else:
            store.delete(item.key)
            _audit_object_deleted(checking.account, file_id, item.size)
            action, is_fixed = "deleted", True
    checking.report(ORPHAN, file_id, item.size, detail, action, is_fixed=is_fixed)


def _audit_object_deleted(account: ProviderAccount, file_id: str, nbytes: int) -> None:
    AuditEvent.objects.create(
        organization=account.organization,
        api_key=None,
        action=AuditEvent.Action.DELETE,
        file_id=file_id[:64],
        provider_account=account.name,
        bytes=nbytes,
        detail="reconcile_files: deleted a stored object no record names.",
    )


def _recorded(file_ids: list[str]) -> dict[str, bool]:
    """Which of ``file_ids`` have a record (in any organisation), and whether it is live."""
    rows = File.objects.filter(public_id__in=file_ids).values_list("public_id", "deleted_at")
    return {public_id: deleted_at is None for public_id, deleted_at in rows}


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


# Records.


def _live_records(account: ProviderAccount) -> QuerySet[File]:
    return File.objects.filter(provider_account=account, deleted_at__isnull=True)


def _records_newest_first(account: ProviderAccount) -> Iterator[File]:
    files = _live_records(account).order_by("-created_at", "-pk")
    page = files
    while batch := list(page[:BATCH_SIZE]):
        yield from batch
        last = batch[-1]
        page = files.filter(Q(created_at__lt=last.created_at) | Q(created_at=last.created_at, pk__lt=last.pk))


def _records_by_id(account: ProviderAccount) -> Iterator[File]:
    # Stores list keys by code point; PostgreSQL's default collation would order ids otherwise.
    collation = "C" if connection.vendor == "postgresql" else "BINARY"
    files = _live_records(account).annotate(sort_id=Collate("public_id", collation)).order_by("sort_id")
    page = files
    while batch := list(page[:BATCH_SIZE]):
        yield from batch
        page = files.filter(sort_id__gt=batch[-1].public_id)


# Comparing.


def _compare(
    checking: _Account,
    provider: Provider,
    records: Iterator[File],
    listed: Iterator[tuple[Any, str]],
    *,
    key: Callable[[File], Any],
) -> None:
    verdicts = _Verdicts(checking)
    try:
        for record, is_listed in _merge(records, listed, key):
            checking.run.summary.records += 1
            checking.run.summary.missing += record.missing_since is not None
            if is_listed or _still_there(provider, record):
                verdicts.found(record)
            else:
                verdicts.gone(record)
    except GatewayError:
        verdicts.abandon()
        raise
    verdicts.finish()


def _merge(
    records: Iterable[File], listed: Iterable[tuple[Any, str]], key: Callable[[File], Any]
) -> Iterator[tuple[File, bool]]:
    """Each record, with whether it was listed, walking records and listing side by side.

    ``listed`` yields ``(sort key, file id)`` in ascending key order, and ``records`` come in the
    order of ``key``. A record is listed if its id is among the ids listed under its key. Input out
    of order only makes records look unlisted (then each is asked about on its own). The listing is
    read to its end, for the orphans it reports, also past the last record.
    """
    groups = ((group_key, {file_id for _, file_id in group}) for group_key, group in groupby(listed, key=itemgetter(0)))
    current = next(groups, None)
    for record_key, same_key in groupby(records, key=key):
        while current is not None and current[0] < record_key:
            current = next(groups, None)
        ids = current[1] if current is not None and current[0] == record_key else set()
        for record in same_key:
            yield record, record.public_id in ids
    for _ in groups:
        pass


def _still_there(provider: Provider, record: File) -> bool:
    """Whether the provider has the record's file, asked about it alone. Raises its other errors."""
    try:
        if provider.stores_files:
            chunks = provider.open_content(record.remote_ref).chunks
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        else:
            provider.retrieve(record.public_id)
    except FileNotFound:
        return False
    return True


class _Verdicts:
    """What becomes of one account's records: found ones lose a missing mark, gone ones are forgotten.

    Gone records are forgotten only once one of the account's records has been found in this run:
    an account whose credentials or settings were changed to another upstream account (or bucket)
    finds none of its files, and forgetting them all would release their quota and lose the records
    of files that still exist. Until then up to BATCH_SIZE gone records wait; further ones are left
    for the next run. If none is found, nothing is forgotten and the account is reported as an error.
    Gone records younger than RECONCILE_GRACE_SECONDS are reported and left, and count for nothing.
    """

    def __init__(self, checking: _Account) -> None:
        self.checking = checking
        self.waiting: list[File] = []
        self.has_found = False
        self.gone_count = 0

    def found(self, record: File) -> None:
        if record.missing_since is not None:
            _found_again(self.checking, record)
        if not self.has_found:
            self.has_found = True
            for waiting in self.waiting:
                _gone(self.checking, waiting)
            self.waiting.clear()

    def gone(self, record: File) -> None:
        run = self.checking.run
        if not run.is_settled(record.created_at):
            _gone(self.checking, record, left=YOUNG if run.fix else "")  # perhaps not listed yet (Azure)
            return
        self.gone_count += 1
        if not run.fix or self.has_found:
            _gone(self.checking, record)
        elif len(self.waiting) < BATCH_SIZE:
            self.waiting.append(record)
        else:
            _gone(self.checking, record, left="left for the next run: none of the account's files found yet")

    def abandon(self) -> None:
        """The account's check failed midway: the records waiting are reported, and left."""
        for record in self.waiting:
            _gone(self.checking, record, left="left: the check of the account failed")

    def finish(self) -> None:
        if self.has_found or not self.gone_count:
            return
        for record in self.waiting:
            _gone(self.checking, record, left="left: none of the account's files was found")
        self.checking.error(
            f"None of the account's {self.gone_count} recorded file(s) checked was found at the provider: its "
            "credentials or settings may point at another account or bucket, so none is forgotten. If the files "
            "really are gone, delete them through the API (a DELETE of a file gone upstream succeeds)."
        )


def _gone(checking: _Account, record: File, *, left: str = "") -> None:
    detail = "not at the provider"
    if record.missing_since is not None:
        detail += f"; marked missing since {record.missing_since.isoformat(timespec='seconds')}"
    action, is_fixed = left, False
    if checking.run.fix and not left:
        if file_forget_gone(record, checking.account, detail="reconcile_files: confirmed gone at the provider."):
            action, is_fixed = f"forgotten, {record.bytes} bytes released", True
        else:
            action = "nothing to do: deleted meanwhile by another request"
    checking.report(GONE, record.public_id, record.bytes, detail, action, is_fixed=is_fixed)


def _found_again(checking: _Account, record: File) -> None:
    assert record.missing_since is not None
    detail = f"marked missing since {record.missing_since.isoformat(timespec='seconds')}, but the provider has it"
    action, is_fixed = "", False
    if checking.run.fix:
        is_fixed = bool(File.objects.filter(pk=record.pk, missing_since__isnull=False).update(missing_since=None))
        action = "missing mark cleared" if is_fixed else "nothing to do: cleared meanwhile"
    checking.report(FOUND, record.public_id, record.bytes, detail, action, is_fixed=is_fixed)


# Usage.


def _check_usage(run: _Run, org: Organization) -> None:
    """Stale reservations, then the counters against the live files and open reservations."""
    for reservation in quota_stale_reservations(organization_id=org.pk):
        action, is_fixed = "", False
        if run.fix:
            is_fixed = quota_release(reservation=reservation)
            action = "released" if is_fixed else "nothing to do: settled meanwhile"
        since = reservation.created_at.isoformat(timespec="seconds")
        run.add(
            Finding(
                STALE, org.slug, "", f"reservation {reservation.pk}", reservation.bytes, f"held since {since}", action
            ),
            is_fixed=is_fixed,
        )
    live = (
        File.objects.filter(organization_id=org.pk, deleted_at__isnull=True)
        .order_by()
        .values("organization")
        .annotate(total=Sum("bytes"))
        .values("total")
    )
    usage = (quota_recount if run.fix else quota_usage)(organization_id=org.pk, live_bytes=live)
    counters = (
        (USAGE, "used_bytes", usage.used_bytes, usage.live_bytes, "the live files add up to"),
        (RESERVED, "reserved_bytes", usage.reserved_bytes, usage.held_bytes, "the open reservations hold"),
    )
    for category, name, value, expected, meaning in counters:
        if value != expected:
            detail = f"{name} is {value}, {meaning} {expected}"
            action = f"set to {expected}" if run.fix else ""
            run.add(Finding(category, org.slug, "", name, value - expected, detail, action), is_fixed=run.fix)
