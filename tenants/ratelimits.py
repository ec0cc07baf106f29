"""Per-key rate limits: how many requests, uploads and downloads an API key may make per clock minute.

Limits. A scope's limit is the organisation's (``Organization.<scope>_per_minute``), or the settings'
default (``RATE_LIMIT_<SCOPE>_PER_MINUTE``) when it has none; 0 is no limit. A key can have a lower
one of its own, never a higher one. They come with the authenticated key (and its cache), so reading
them costs no query; a change is seen within API_KEY_CACHE_SECONDS.

Counting, across processes and instances. The count is in the database: one ``RateLimitCounter``
row per key and scope says how many of the minute ``window``'s requests have been handed out. A
process does not write it for every request: it takes a lease of ``limit // RATE_LIMIT_LEASE_DIVISOR``
requests (at least 1) with one conditional UPDATE that never hands out more than the limit, then
admits requests from that lease without a query until it is spent. A lease ends with its minute.

What that guarantees:
- A key never makes more than its limit in one clock minute, however many processes and instances
  serve it. Two provisos, each worth at most one lease per process: the instances' clocks must agree
  (NTP; a clock s seconds behind spends what is left of its lease of the previous minute for those s
  seconds), and a limit lowered within a minute binds new leases, not those already taken.
- It can be refused early, when requests leased to other processes sit unused there: by at most
  (P - 1) x lease requests in a minute, P being the processes its requests reach. A limit below the
  divisor has leases of 1 and is exact (to within the one request per process that a refusal by
  another scope can give back).
- The cost: one UPDATE per lease, and per process and minute a key is refused in, at most four
  statements (then its refusals are answered from memory until the minute ends).
- Fixed minutes, not a sliding window: a key can make its limit at the end of one minute and again
  at the start of the next. ``Retry-After`` is then honest: the seconds until the next minute.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Greatest

from config.errors import RateLimited
from tenants.models import ApiKey, Organization, RateLimitCounter

REQUESTS = "requests"  # every authenticated API request
UPLOADS = "uploads"
DOWNLOADS = "downloads"  # content downloads
SCOPES = (REQUESTS, UPLOADS, DOWNLOADS)
# The model field and the setting of each scope's limit.
LIMIT_FIELDS = {scope: f"{scope}_per_minute" for scope in SCOPES}
DEFAULT_SETTINGS = {scope: f"RATE_LIMIT_{scope.upper()}_PER_MINUTE" for scope in SCOPES}
WINDOW_SECONDS = 60
MAX_LEASES = 10_000  # per process: beyond it the oldest lease is dropped (its requests are lost, never doubled)


def default_rate_limit(scope: str) -> int:
    """The settings' limit of ``scope`` per minute (0: none)."""
    return getattr(settings, DEFAULT_SETTINGS[scope])


def organization_rate_limit(organization: Organization, scope: str) -> int:
    """What each key of ``organization`` may make in ``scope`` per minute, its own limits aside (0: no limit)."""
    value = getattr(organization, LIMIT_FIELDS[scope])
    return default_rate_limit(scope) if value is None else value


def rate_limit(api_key: ApiKey, scope: str) -> int:
    """What ``api_key`` may make in ``scope`` per minute (0: no limit): the lower of its own and its organisation's."""
    limit = organization_rate_limit(api_key.organization, scope)
    own = getattr(api_key, LIMIT_FIELDS[scope])
    if own is None:
        return limit
    return own if limit == 0 else min(own, limit)


def format_rate(limit: int) -> str:
    """ "6000 per minute", or "no limit" for 0."""
    return f"{limit} per minute" if limit else "no limit"


def window_of(now: float) -> int:
    return int(now // WINDOW_SECONDS)


def seconds_left(now: float) -> float:
    """Until the next minute, when every key's count starts again."""
    return (window_of(now) + 1) * WINDOW_SECONDS - now


@dataclass
class Lease:
    """What one process holds of one key's minute in one scope."""

    window: int = -1
    limit: int = 0  # the limit the lease was taken under
    remaining: int = 0
    size: int = 1  # what the next lease asks for
    is_spent: bool = False  # the database has nothing left to hand out this minute
    # Held while a lease is taken: the process's other requests for the key wait for it instead of
    # each taking a lease of their own (hundreds at once under gevent), which would strand them.
    # Looked up when a lease is made, not at import: under gevent it must be gevent's lock (a thread
    # lock held across the query would block every greenlet of the worker).
    lock: threading.Lock = field(default_factory=lambda: threading.Lock())


class LeaseBook:
    """One process's leases. ``leases`` serves the requests; a test makes more to play other processes."""

    def __init__(self) -> None:
        self._leases: dict[tuple[str, str], Lease] = {}
        self._lock = threading.Lock()

    def take(self, *, api_key_id: int, key_prefix: str, scope: str, limit: int, now: float) -> bool:
        """Admit one request of a key limited to ``limit`` (> 0) per minute in ``scope``.

        From this process's lease when it has one, else from a new lease out of the database's count.
        False when the key's minute is used up (as far as this process can get).
        """
        window = window_of(now)
        lease = self._lease(key_prefix, scope)
        with lease.lock:
            if lease.window != window or lease.limit != limit:  # a new minute, or a changed limit
                if lease.window != window:
                    lease.remaining = 0
                lease.window, lease.limit, lease.is_spent = window, limit, False
                lease.size = max(1, limit // max(1, settings.RATE_LIMIT_LEASE_DIVISOR))
            if lease.remaining == 0 and not lease.is_spent:
                lease.remaining = lease_take(
                    api_key_id=api_key_id, scope=scope, window=window, limit=limit, size=lease.size
                )
                if lease.remaining < lease.size:  # fewer than a lease were left: ask for one at a time now
                    lease.size = 1
                lease.is_spent = lease.remaining == 0
            if lease.remaining == 0:
                return False
            lease.remaining -= 1
            return True

    def give_back(self, *, key_prefix: str, scope: str, now: float) -> None:
        """Return a request ``take`` admitted for a request another scope then refused."""
        lease = self._leases.get((key_prefix, scope))
        if lease is None:
            return
        with lease.lock:
            if lease.window == window_of(now):
                lease.remaining += 1

    def clear(self) -> None:
        with self._lock:
            self._leases.clear()

    def _lease(self, key_prefix: str, scope: str) -> Lease:
        # By the key's prefix, not its id: SQLite can give a deleted key's id to the next key.
        name = (key_prefix, scope)
        lease = self._leases.get(name)
        if lease is None:
            with self._lock:
                lease = self._leases.get(name)
                if lease is None:
                    if len(self._leases) >= MAX_LEASES:
                        self._leases.pop(next(iter(self._leases)))
                    lease = self._leases[name] = Lease()
        return lease


leases = LeaseBook()


def lease_take(*, api_key_id: int, scope: str, window: int, limit: int, size: int) -> int:
    """Take ``size`` of the key's requests in ``window`` from the shared count, or 1 when fewer are left.

    Returns how many were granted: ``size``, 1 or 0 (the minute's ``limit`` is handed out).
    """
    if _grant(api_key_id, scope, window, limit, size):
        return size
    # The key's first request in this scope has no row yet; or too few are left. Either way the row
    # exists after this (ON CONFLICT DO NOTHING), and the conditional UPDATE decides.
    counter = RateLimitCounter(api_key_id=api_key_id, scope=scope, window=window, granted=0)
    RateLimitCounter.objects.bulk_create([counter], ignore_conflicts=True)
    if _grant(api_key_id, scope, window, limit, size):
        return size
    if size > 1 and _grant(api_key_id, scope, window, limit, 1):
        return 1
    return 0


def _grant(api_key_id: int, scope: str, window: int, limit: int, size: int) -> bool:
    # One statement: concurrent leases cannot both take the last requests (PostgreSQL re-checks the
    # condition on the locked row; SQLite has one writer). A row of an earlier minute starts again at
    # ``size``; one of a later minute (another instance's clock is ahead) is counted into, never rewound.
    new_minute = Q(window__lt=window)
    counter = RateLimitCounter.objects.filter(api_key_id=api_key_id, scope=scope)
    return bool(
        counter.filter(new_minute | Q(granted__lte=limit - size)).update(
            granted=Case(When(new_minute, then=Value(size)), default=F("granted") + size),
            window=Greatest("window", Value(window)),
        )
    )


def rate_limit_admit(*, api_key: ApiKey, scopes: Sequence[str], now: float | None = None) -> None:
    """Count one request of ``api_key`` against each of ``scopes``: against all of them, or (refused) none.

    Raises ``RateLimited`` (429) naming the used-up limit, with ``Retry-After`` (and ``retry-after-ms``,
    which the OpenAI SDKs prefer): the time until the next minute, when the key's count starts again.
    """
    now = time.time() if now is None else now
    admitted: list[str] = []
    for scope in scopes:
        limit = rate_limit(api_key, scope)
        if limit == 0:
            continue
        if not leases.take(api_key_id=api_key.pk, key_prefix=api_key.prefix, scope=scope, limit=limit, now=now):
            for done in admitted:
                leases.give_back(key_prefix=api_key.prefix, scope=done, now=now)
            raise _refusal(scope, limit, now)
        admitted.append(scope)


def _refusal(scope: str, limit: int, now: float) -> RateLimited:
    wait = seconds_left(now)
    return RateLimited(
        f"This API key may make {limit} {scope} per minute and has made them; "
        f"retry after {math.ceil(wait)} seconds, when the next minute starts.",
        headers={"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))},
    )


def rate_limit_counters_delete(*, api_key_id: int) -> int:
    """Delete a key's counters (it was revoked: they count nothing any more). Returns how many."""
    deleted, _ = RateLimitCounter.objects.filter(api_key_id=api_key_id).delete()
    return deleted
