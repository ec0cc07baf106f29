"""Business logic of tenants: API keys, provider accounts and storage-quota accounting.

Quota bytes move through three states. ``quota_reserve`` holds bytes for an upload in flight with
one conditional UPDATE; ``quota_commit`` turns the hold into used bytes (at the file's real size) in
the same transaction that records the file; ``quota_release`` gives the hold back on failure. A
hold whose worker died is reclaimed by ``quota_reclaim_stale`` after QUOTA_RESERVATION_TTL_SECONDS;
should that upload finish after all, it is charged only if the quota has room for it then.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction
from django.db.models import F, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from config.errors import AuthenticationFailed, InvalidRequest, ProviderMisconfigured, QuotaExceeded
from providers import registry
from providers.base import Provider
from tenants.models import ApiKey, Membership, Organization, ProviderAccount, QuotaReservation
from tenants.ratelimits import rate_limit_counters_delete

logger = logging.getLogger("filegate.tenants")

KEY_PREFIX = "fg_"
PREFIX_LENGTH = 12
_KEY_CHARS = re.compile(r"[A-Za-z0-9_-]+")
ACCOUNT_NAME_MAX_LENGTH = 64  # ProviderAccount.name
MAX_CACHE_ENTRIES = 10_000

# Live keys this process authenticated in the last API_KEY_CACHE_SECONDS, by their hash: the key's
# query was about a third of a retrieve's CPU. Only live keys are cached, so unknown and revoked
# keys always ask the database. A key revoked or deleted in this process (deleted through the ORM
# too, in admin or with its organisation: ``api_key_forget_deleted`` receives post_delete) leaves the
# cache at once; other processes see it within their entry's lifetime.
_api_keys: dict[str, tuple[float, ApiKey]] = {}
_cache_lock = threading.Lock()  # guards both caches' writes
# Provider accounts by id, for PROVIDER_ACCOUNT_CACHE_SECONDS: a retrieve then reads its file alone,
# without a join whose compilation costs as much as the rest of the query.
_accounts: dict[int, tuple[float, ProviderAccount]] = {}
# Which account an (organisation id, name) means, "" for the default, for the same time.
_account_names: dict[tuple[int, str], tuple[float, int]] = {}
# Bumped (under _cache_lock) by every revoke, deletion or clear: a key read from the database before one is not
# cached, so a revoke that lands between another request's read and its cache write still wins.
_api_key_generation = 0
_account_generation = 0  # the same for provider_account_forget


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str


def _hash_key(plaintext: str) -> str:
    # Keys are 256 random bits, so a fast hash is as strong as a slow one here, and it keeps
    # authentication off the hot path's profile.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def api_key_create(
    *, organization: Organization, name: str = "", rate_limits: Mapping[str, int | None] | None = None
) -> IssuedKey:
    """Create a key for ``organization``. The plaintext is returned once and never stored.

    ``rate_limits`` sets the key's own limits by field (``{"uploads_per_minute": 10}``), validated
    by the caller (``tenants.forms.ApiKeyForm``); they can only lower the organisation's.
    """
    for _ in range(5):
        plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    organization=organization,
                    name=name,
                    prefix=plaintext[:PREFIX_LENGTH],
                    key_hash=_hash_key(plaintext),
                    **(rate_limits or {}),
                )
        except IntegrityError:  # a prefix collision: astronomically rare, just draw again
            continue
        return IssuedKey(api_key=api_key, plaintext=plaintext)
    raise RuntimeError("could not draw a unique API key prefix")


def api_key_revoke(*, api_key: ApiKey) -> None:
    """Revoke the key. This process refuses it at once; other processes within API_KEY_CACHE_SECONDS.

    Its rate-limit counters go too: they count nothing any more.
    """
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    rate_limit_counters_delete(api_key_id=api_key.pk)
    _forget_api_key(api_key.key_hash)


def api_key_delete(*, api_key: ApiKey) -> None:
    """Delete the key (its files and audit events keep no key). This process refuses it at once;
    other processes within API_KEY_CACHE_SECONDS. Deleting a deleted key does nothing."""
    ApiKey.objects.filter(pk=api_key.pk).delete()
    _forget_api_key(api_key.key_hash)


def api_key_forget_deleted(sender: type[ApiKey], instance: ApiKey, **kwargs: Any) -> None:
    """``post_delete`` receiver (connected in ``TenantsConfig.ready``): a key deleted through the ORM,
    on its own or with its organisation, leaves this process's cache at once."""
    _forget_api_key(instance.key_hash, using=kwargs.get("using"))


def _forget_api_key(key_hash: str, *, using: str | None = None) -> None:
    _evict_api_key(key_hash)
    # Inside a transaction, other requests still find the row until the commit, and one of them may
    # cache the key again meanwhile: forget it once more then (at once outside a transaction).
    transaction.on_commit(functools.partial(_evict_api_key, key_hash), using=using)


def _evict_api_key(key_hash: str) -> None:
    global _api_key_generation
    with _cache_lock:
        # A request that read the key before this point must not cache it after (see api_key_authenticate).
        _api_key_generation += 1
        _api_keys.pop(key_hash, None)


def api_key_cache_clear() -> None:
    global _api_key_generation
    with _cache_lock:
        _api_key_generation += 1
        _api_keys.clear()


def api_key_authenticate(*, plaintext: str) -> ApiKey:
    """Return the live key (with its organisation loaded) or raise ``AuthenticationFailed``.

    Served from this process's cache for API_KEY_CACHE_SECONDS after a database hit.
    """
    # Keys are URL-safe base64: anything else (a NUL above all, which PostgreSQL refuses in a
    # query) is refused before the database is asked.
    if (
        not plaintext.startswith(KEY_PREFIX)
        or len(plaintext) < PREFIX_LENGTH + 8
        or not _KEY_CHARS.fullmatch(plaintext)
    ):
        raise AuthenticationFailed(_masked_message(plaintext))
    key_hash = _hash_key(plaintext)
    ttl = settings.API_KEY_CACHE_SECONDS
    generation = _api_key_generation
    cached = _cached_api_key(key_hash) if ttl > 0 else None
    api_key = cached if cached is not None else _live_api_key(plaintext, key_hash)
    now = timezone.now()
    resolution = timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    # Only write last_used_at once per resolution window: a write on every request would serialise
    # a busy key's requests on one row. (On a cached key this also updates the cache entry.)
    if api_key.last_used_at is None or now - api_key.last_used_at >= resolution:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    if ttl <= 0:
        return api_key
    if cached is None:
        with _cache_lock:
            if generation == _api_key_generation:  # else a key may have been revoked since our read
                if len(_api_keys) >= MAX_CACHE_ENTRIES:
                    _api_keys.pop(next(iter(_api_keys)))  # the oldest entry
                _api_keys[key_hash] = (time.monotonic() + ttl, api_key)
    # Requests run in threads: each gets its own copies, so nothing one request sets on its key
    # or organisation leaks into another's.
    private = copy.copy(api_key)  # a model's own copy protocol: fresh field values and _state
    private.organization = copy.copy(api_key.organization)
    return private


def _live_api_key(plaintext: str, key_hash: str) -> ApiKey:
    try:
        # get() rather than first(): it compiles no ORDER BY (Meta.ordering), a third of the query's cost.
        api_key = ApiKey.objects.select_related("organization").get(prefix=plaintext[:PREFIX_LENGTH])
    except ApiKey.DoesNotExist:
        api_key = None
    if api_key is None or not hmac.compare_digest(api_key.key_hash, key_hash):
        raise AuthenticationFailed(_masked_message(plaintext))
    if api_key.is_revoked:
        raise AuthenticationFailed("This API key has been revoked.")
    return api_key


def _cached_api_key(key_hash: str) -> ApiKey | None:
    """The cached live key for this hash, or None when there is none or it has expired.

    Its organisation comes with it, limits included, as read when the entry was made. That is
    safe for quota, which only ever changes used/reserved bytes with conditional UPDATEs by org
    id: a stale limit can only affect the early Content-Length check, for at most the TTL.
    """
    entry = _api_keys.get(key_hash)
    if entry is None:
        return None
    expires_at, api_key = entry
    if time.monotonic() < expires_at:
        return api_key
    with _cache_lock:
        if _api_keys.get(key_hash) is entry:
            del _api_keys[key_hash]
    return None


def _masked_message(plaintext: str) -> str:
    shown = plaintext[:6] + "*" * 4 + plaintext[-4:] if len(plaintext) > 12 else "****"
    return f"Incorrect API key provided: {shown}."


def organization_create(
    *,
    slug: str,
    name: str = "",
    storage_quota_bytes: int | None = None,
    max_file_size_bytes: int | None = None,
    batch_max_size_bytes: int | None = None,
) -> Organization:
    """Create an organisation; limits left ``None`` take the settings' defaults."""
    if Organization.objects.filter(slug=slug).exists():
        raise InvalidRequest(f"Organization {slug!r} already exists.", param="slug")
    limits = {
        "storage_quota_bytes": storage_quota_bytes,
        "max_file_size_bytes": max_file_size_bytes,
        "batch_max_size_bytes": batch_max_size_bytes,
    }
    for field, value in limits.items():
        if value is not None and value <= 0:
            raise InvalidRequest(f"{field} must be a positive number of bytes.", param=field)
    return Organization.objects.create(
        slug=slug, name=name or slug, **{field: value for field, value in limits.items() if value is not None}
    )


def org_admin_add(*, organization: Organization, user: AbstractUser) -> Membership:
    """Make ``user`` an admin of ``organization``: a member of it, and staff so they can log in to admin.

    Idempotent. Never grants superuser: an org admin sees their organisations only.
    """
    with transaction.atomic():
        if not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        membership, _ = Membership.objects.get_or_create(organization=organization, user=user)
    return membership


def provider_account_create(
    *, organization: Organization, name: str, kind: str, config: dict[str, Any], is_default: bool = False
) -> ProviderAccount:
    """Validate ``config`` against the provider class and store it, secrets encrypted.

    Raises ``InvalidRequest`` for an unknown kind, an unknown or missing key, or a taken name.
    """
    provider_settings, provider_secrets = registry.split_config(kind, config)
    if ProviderAccount.objects.filter(organization=organization, name=name).exists():
        raise InvalidRequest(f"Provider account {name!r} already exists in {organization.slug}.", param="name")
    account = ProviderAccount(organization=organization, name=name, kind=kind, settings=provider_settings)
    account.set_secrets(provider_secrets)
    with transaction.atomic():
        if is_default:
            ProviderAccount.objects.filter(organization=organization, is_default=True).update(is_default=False)
        account.is_default = is_default or not ProviderAccount.objects.filter(organization=organization).exists()
        account.save()
    return account


def provider_account_save(account: ProviderAccount) -> None:
    """Save ``account`` (changed in admin); if it is the default, the organisation's other accounts stop being one.

    This process sees the change at once (``provider_account_forget``).
    """
    with transaction.atomic():
        if account.is_default:
            # Before the save: the database allows one default per organisation at any moment.
            ProviderAccount.objects.filter(organization_id=account.organization_id, is_default=True).exclude(
                pk=account.pk
            ).update(is_default=False)
        account.save()
    provider_account_forget(account_id=account.pk)


def provider_account_get(*, account_id: int) -> ProviderAccount:
    """The account with this id (a private copy), cached for PROVIDER_ACCOUNT_CACHE_SECONDS.

    A change saved in another process is seen within that time; ``provider_account_forget``
    makes this process see one at once.
    """
    ttl = settings.PROVIDER_ACCOUNT_CACHE_SECONDS
    if ttl <= 0:
        return ProviderAccount.objects.get(pk=account_id)
    entry = _accounts.get(account_id)
    if entry is None or time.monotonic() >= entry[0]:
        generation = _account_generation
        account = ProviderAccount.objects.get(pk=account_id)
        with _cache_lock:
            if generation == _account_generation:  # else it may have been saved since our read
                if len(_accounts) >= MAX_CACHE_ENTRIES:
                    _accounts.pop(next(iter(_accounts)))
                _accounts[account_id] = (time.monotonic() + ttl, account)
    else:
        account = entry[1]
    return copy.copy(account)


def provider_account_forget(*, account_id: int | None = None) -> None:
    """Drop one account (or, without an id, every account) from this process's cache."""
    global _account_generation
    with _cache_lock:
        _account_generation += 1
        # Any save may rename an account or move the default: every name is looked up afresh.
        _account_names.clear()
        if account_id is None:
            _accounts.clear()
        else:
            _accounts.pop(account_id, None)


def provider_for(account: ProviderAccount) -> Provider:
    """The provider for ``account``; instances (and their HTTP pools) are reused across requests.

    Raises ``ProviderMisconfigured`` when the account cannot be built (secrets no configured key
    decrypts, a setting the kind refuses): an operator's problem, logged without its cause's text,
    which may quote a credential.
    """
    try:
        return registry.get_provider(account.kind, account.provider_config(), cache_key=str(account.pk))
    except ImproperlyConfigured as exc:
        logger.error("provider account %s (%s) cannot be built: %s", account.pk, account.kind, type(exc).__name__)
        raise ProviderMisconfigured(
            f"The provider account {account.name!r} is misconfigured; an organization admin must fix it."
        ) from None


def provider_account_resolve(*, organization: Organization, name: str | None) -> ProviderAccount:
    """The account named ``name`` (the X-Provider-Account header), or the organisation's default.

    Which account a name (or the default) means is cached with the accounts themselves, for
    PROVIDER_ACCOUNT_CACHE_SECONDS: every upload and list starts here. Raises ``InvalidRequest``.
    """
    ttl = settings.PROVIDER_ACCOUNT_CACHE_SECONDS
    key = (organization.pk, name or "")
    entry = _account_names.get(key) if ttl > 0 else None
    if entry is not None and time.monotonic() < entry[0]:
        with contextlib.suppress(ProviderAccount.DoesNotExist):
            return provider_account_get(account_id=entry[1])
    generation = _account_generation
    account = _account_named(organization, name)
    if ttl > 0:
        with _cache_lock:
            if generation == _account_generation:  # else it may have been saved since our read
                if len(_account_names) >= MAX_CACHE_ENTRIES:
                    _account_names.pop(next(iter(_account_names)))
                if len(_accounts) >= MAX_CACHE_ENTRIES:
                    _accounts.pop(next(iter(_accounts)))
                expires_at = time.monotonic() + ttl
                _account_names[key] = (expires_at, account.pk)
                _accounts[account.pk] = (expires_at, account)
    return copy.copy(account)


def _account_named(organization: Organization, name: str | None) -> ProviderAccount:
    accounts = ProviderAccount.objects.filter(organization=organization)
    if name:
        # get() rather than first() here and below: Meta.ordering would add a join to Organization.
        # A name with NUL (which PostgreSQL refuses in a query) or too long for the column names no account.
        valid = "\x00" not in name and len(name) <= ACCOUNT_NAME_MAX_LENGTH
        account = _get_or_none(accounts, name=name) if valid else None
        if account is None:
            raise InvalidRequest(
                f"No provider account named {name!r} in this organization.",
                param="X-Provider-Account",
                code="unknown_provider_account",
            )
        return account
    account = _get_or_none(accounts, is_default=True)
    if account is None:
        raise InvalidRequest(
            "This organization has no default provider account; name one in the X-Provider-Account header.",
            param="X-Provider-Account",
            code="no_provider_account",
        )
    return account


def _get_or_none(queryset: Any, **lookup: Any) -> Any:
    try:
        return queryset.get(**lookup)
    except queryset.model.DoesNotExist:
        return None


def quota_reserve(*, organization_id: int, nbytes: int) -> QuotaReservation:
    """Hold ``nbytes`` of the organisation's quota for an upload in flight.

    One conditional UPDATE decides: two uploads racing for the last bytes cannot both win, on
    PostgreSQL (row lock, predicate re-checked) or SQLite (one writer). Raises ``QuotaExceeded``.
    """
    for attempt in range(2):
        with transaction.atomic():
            _commit_without_waiting_for_disk()
            reservation = QuotaReservation.objects.create(organization_id=organization_id, bytes=nbytes)
            # Last: the organisation's row, which every upload of the organisation updates, stays
            # locked only until this transaction commits.
            granted = Organization.objects.filter(
                pk=organization_id,
                used_bytes__lte=F("storage_quota_bytes") - F("reserved_bytes") - nbytes,
            ).update(reserved_bytes=F("reserved_bytes") + nbytes)
            if not granted:
                transaction.set_rollback(True)
        if granted:
            return reservation
        if attempt == 0 and not quota_reclaim_stale(organization_id=organization_id):
            break
    raise _quota_exceeded(organization_id, f"This upload needs up to {nbytes} bytes")


def _commit_without_waiting_for_disk() -> None:
    """Let this transaction's commit return before its record reaches the disk (PostgreSQL).

    For holds only: a hold lost in a database crash is harmless (the upload's commit then charges the
    file only if the quota has room, see ``quota_commit``, and a lost release is a hold that
    ``quota_reclaim_stale`` takes back). The organisation's row is then locked for microseconds
    instead of a disk flush, which is what bounds how many uploads one organisation can make a second.
    Files and charges are always committed durably.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _quota_exceeded(organization_id: int, needs: str, *, own_hold_bytes: int = 0) -> QuotaExceeded:
    """The refusal; ``own_hold_bytes`` is what the refused upload itself still holds (room it could use)."""
    org = Organization.objects.get(pk=organization_id)
    room = org.available_bytes + own_hold_bytes
    return QuotaExceeded(
        f"{needs} but the organization has {room} of its {org.storage_quota_bytes}-byte "
        "storage quota left. Delete files or ask for a higher quota."
    )


def quota_commit(*, reservation: QuotaReservation, actual_bytes: int) -> None:
    """Turn a hold into used bytes at the file's stored size. Call inside the transaction that records the file.

    Within the hold it is settled unconditionally. A file stored larger than its hold (a batch file
    that grew when rewritten for its provider) is charged only if the quota has room for the
    difference, decided by one conditional UPDATE as in ``quota_reserve``. So is a file whose hold
    ``quota_reclaim_stale`` took back (its upload outlived QUOTA_RESERVATION_TTL_SECONDS), since that
    room may have gone to other uploads. Raises ``QuotaExceeded`` when there is no room, having
    charged nothing and kept the hold: the caller's transaction must not record the file, and the
    caller releases the hold and removes its upstream copy.
    """
    if actual_bytes <= reservation.bytes:
        _settle(reservation, actual_bytes)  # refused only if the hold is gone: nothing to undo then
        return
    with transaction.atomic():  # a savepoint: a refusal also undoes the hold's deletion
        _settle(reservation, actual_bytes)


def _settle(reservation: QuotaReservation, actual_bytes: int) -> None:
    deleted, _ = QuotaReservation.objects.filter(pk=reservation.pk).delete()
    held = reservation.bytes if deleted else 0
    organization = Organization.objects.filter(pk=reservation.organization_id)
    settle = {"reserved_bytes": F("reserved_bytes") - held, "used_bytes": F("used_bytes") + actual_bytes}
    if actual_bytes <= held:
        organization.update(**settle)
        return
    charged = organization.filter(
        used_bytes__lte=F("storage_quota_bytes") - (F("reserved_bytes") - held) - actual_bytes,
    ).update(**settle)
    if not deleted:
        logger.warning(
            "quota reservation %s was reclaimed before its upload finished; the file was %s",
            reservation.pk,
            "charged within the quota" if charged else "refused: the quota has no room for it now",
        )
    if charged:
        return
    if deleted:
        needs = f"This file is {actual_bytes} bytes as stored, more than the {held} bytes reserved for it,"
    else:
        needs = f"This upload took longer than the reservation timeout; it needs {actual_bytes} bytes"
    raise _quota_exceeded(reservation.organization_id, needs, own_hold_bytes=held)


def quota_release(*, reservation: QuotaReservation) -> bool:
    """Give a hold back (idempotent: a hold is released at most once). Returns whether this call released it."""
    with transaction.atomic():
        _commit_without_waiting_for_disk()
        deleted, _ = QuotaReservation.objects.filter(pk=reservation.pk).delete()
        if deleted:
            Organization.objects.filter(pk=reservation.organization_id).update(
                reserved_bytes=F("reserved_bytes") - reservation.bytes
            )
    return bool(deleted)


def quota_free(*, organization_id: int, nbytes: int) -> None:
    """Subtract a deleted file's bytes from used. Call inside the transaction that marks it deleted."""
    Organization.objects.filter(pk=organization_id).update(used_bytes=F("used_bytes") - nbytes)


@dataclass(frozen=True)
class Usage:
    """An organisation's quota counters next to what they should add up to."""

    used_bytes: int
    reserved_bytes: int
    live_bytes: int  # the bytes of its live files
    held_bytes: int  # the bytes its open reservations hold

    @property
    def has_drift(self) -> bool:
        return (self.used_bytes, self.reserved_bytes) != (self.live_bytes, self.held_bytes)


def quota_usage(*, organization_id: int, live_bytes: QuerySet[Any]) -> Usage:
    """The counters and what they should be, read in one statement, so from one snapshot.

    ``live_bytes`` is a query of one row and one column: the sum of the organisation's live files'
    bytes (``files_api`` builds it; this app knows no files). Every change to the counters lands in
    the transaction that changes the files or reservations they count, so within one snapshot any
    difference is drift, never an upload or a delete caught half-way.
    """
    held = (
        QuotaReservation.objects.filter(organization_id=organization_id)
        .order_by()
        .values("organization")
        .annotate(total=Sum("bytes"))
        .values("total")
    )
    row = (
        Organization.objects.filter(pk=organization_id)
        .annotate(live=Coalesce(Subquery(live_bytes), 0), held=Coalesce(Subquery(held), 0))
        .values_list("used_bytes", "reserved_bytes", "live", "held")
        .get()
    )
    return Usage(*row)


def quota_recount(*, organization_id: int, live_bytes: QuerySet[Any]) -> Usage:
    """Set the counters to what the live files and open reservations add up to; return them as found.

    Under the organisation's row lock, so it cannot race an upload or a delete. Every change to the
    counters is an UPDATE of that row, in the same transaction as the file or reservation it counts.
    On PostgreSQL a transaction that got there first holds the lock until it commits, and the sums
    are read after (read committed: each statement sees what committed before it), so they include
    it; one that comes later waits for the lock and applies its own delta to the recounted values,
    while its uncommitted row is not in the sums. On SQLite every transaction takes the one write
    lock when it begins (``transaction_mode`` IMMEDIATE), which serialises them the same way.
    """
    with transaction.atomic():
        Organization.objects.select_for_update().filter(pk=organization_id).values_list("pk").get()
        usage = quota_usage(organization_id=organization_id, live_bytes=live_bytes)
        if usage.has_drift:
            Organization.objects.filter(pk=organization_id).update(
                used_bytes=usage.live_bytes, reserved_bytes=usage.held_bytes
            )
    return usage


def quota_stale_reservations(*, organization_id: int | None = None) -> QuerySet[QuotaReservation]:
    """Holds older than QUOTA_RESERVATION_TTL_SECONDS (of one organisation, or all): their workers died,
    or their uploads outlived the timeout."""
    cutoff = timezone.now() - timedelta(seconds=settings.QUOTA_RESERVATION_TTL_SECONDS)
    stale = QuotaReservation.objects.filter(created_at__lt=cutoff)
    if organization_id is not None:
        stale = stale.filter(organization_id=organization_id)
    return stale.order_by("pk")


def quota_reclaim_stale(*, organization_id: int | None = None) -> int:
    """Release holds older than QUOTA_RESERVATION_TTL_SECONDS (their workers died, or their uploads
    outlived the timeout: ``quota_commit`` then charges them afresh). Returns how many."""
    return sum(
        quota_release(reservation=reservation)
        for reservation in quota_stale_reservations(organization_id=organization_id)
    )
