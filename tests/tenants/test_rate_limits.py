"""Per-key rate limits: each scope on its own, per key, per organisation, counted in the database a
lease at a time, and refused with OpenAI's 429 envelope and an honest Retry-After."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from config.errors import RateLimited
from tenants import ratelimits
from tenants.models import ApiKey, Organization, RateLimitCounter
from tenants.ratelimits import DOWNLOADS, REQUESTS, UPLOADS, LeaseBook, rate_limit, rate_limit_admit
from tenants.services import api_key_cache_clear, api_key_create, api_key_delete, api_key_revoke
from tests.conftest import Tenant, make_tenant, upload
from tests.files_api.test_quota import race

MINUTE = 29_000_000  # a minute since the epoch, for the tests that set the time themselves
START = MINUTE * 60.0


def limit_org(org: Organization, **limits: int | None) -> None:
    Organization.objects.filter(pk=org.pk).update(**limits)
    api_key_cache_clear()  # the cached key carries its organisation's limits


def limit_key(api_key: ApiKey, **limits: int | None) -> None:
    ApiKey.objects.filter(pk=api_key.pk).update(**limits)
    api_key_cache_clear()


def fresh(api_key: ApiKey) -> ApiKey:
    return ApiKey.objects.select_related("organization").get(pk=api_key.pk)


def error_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 429, response.content
    return response.json()["error"]


def counter_writes(queries: CaptureQueriesContext) -> int:
    return sum(
        1
        for query in queries.captured_queries
        if "tenants_ratelimitcounter" in query["sql"] and "SELECT" not in query["sql"]
    )


# Each scope on its own


def test_uploads_over_the_limit_are_refused_with_openais_429(tenant_a: Tenant, fresh_minute: None) -> None:
    limit_org(tenant_a.org, uploads_per_minute=2)
    assert [upload(tenant_a.client).status_code for _ in range(2)] == [200, 200]

    refused = upload(tenant_a.client)
    error = error_of(refused)
    assert (error["type"], error["code"], error["param"]) == ("rate_limit_error", "api_key_rate_limit_exceeded", None)
    assert "2 uploads per minute" in error["message"]
    wait = int(refused["Retry-After"])
    assert 1 <= wait <= 60
    assert abs(wait - ratelimits.seconds_left(time.time())) <= 1
    assert wait - 1 <= int(refused["retry-after-ms"]) / 1000 <= wait
    assert f"retry after {wait} seconds" in error["message"]
    # Refused before the view: nothing was stored or charged.
    org = Organization.objects.get(pk=tenant_a.org.pk)
    assert (org.files.count(), org.used_bytes, org.reserved_bytes) == (2, 10, 0)
    # Other requests are not uploads.
    assert tenant_a.client.get("/v1/files").status_code == 200


def test_downloads_have_a_limit_of_their_own(tenant_a: Tenant, fresh_minute: None) -> None:
    limit_org(tenant_a.org, downloads_per_minute=1)
    file_id = upload(tenant_a.client, b"abc").json()["id"]
    assert b"".join(tenant_a.client.get(f"/v1/files/{file_id}/content").streaming_content) == b"abc"

    error = error_of(tenant_a.client.get(f"/v1/files/{file_id}/content"))
    assert "1 downloads per minute" in error["message"]
    assert tenant_a.client.get(f"/v1/files/{file_id}").status_code == 200
    assert upload(tenant_a.client).status_code == 200


def test_every_request_counts_against_the_request_limit(tenant_a: Tenant, fresh_minute: None) -> None:
    limit_org(tenant_a.org, requests_per_minute=4)
    file_id = upload(tenant_a.client).json()["id"]
    assert tenant_a.client.get("/v1/files").status_code == 200
    assert tenant_a.client.get(f"/v1/files/{file_id}").status_code == 200
    assert tenant_a.client.get(f"/v1/files/{file_id}/content").status_code == 200

    error = error_of(tenant_a.client.delete(f"/v1/files/{file_id}"))
    assert "4 requests per minute" in error["message"]
    assert Organization.objects.get(pk=tenant_a.org.pk).files.filter(deleted_at__isnull=True).count() == 1


def test_a_refused_upload_costs_no_request(tenant_a: Tenant, fresh_minute: None) -> None:
    limit_org(tenant_a.org, requests_per_minute=3, uploads_per_minute=1)
    assert upload(tenant_a.client).status_code == 200
    assert "uploads" in error_of(upload(tenant_a.client))["message"]
    assert [tenant_a.client.get("/v1/files").status_code for _ in range(2)] == [200, 200]
    assert "requests" in error_of(tenant_a.client.get("/v1/files"))["message"]


def test_an_upload_refused_for_the_request_limit_gives_its_upload_back(tenant_a: Tenant) -> None:
    limit_org(tenant_a.org, requests_per_minute=1, uploads_per_minute=2)
    api_key = fresh(tenant_a.api_key)
    rate_limit_admit(api_key=api_key, scopes=(UPLOADS, REQUESTS), now=START)
    with pytest.raises(RateLimited, match="1 requests per minute"):
        rate_limit_admit(api_key=api_key, scopes=(UPLOADS, REQUESTS), now=START + 1)

    limit_org(tenant_a.org, requests_per_minute=None)
    api_key = fresh(tenant_a.api_key)
    rate_limit_admit(api_key=api_key, scopes=(UPLOADS, REQUESTS), now=START + 2)  # the upload given back
    with pytest.raises(RateLimited, match="2 uploads per minute"):
        rate_limit_admit(api_key=api_key, scopes=(UPLOADS, REQUESTS), now=START + 3)


def test_a_key_at_its_limit_holds_back_no_other_key(tenant_a: Tenant, fresh_minute: None) -> None:
    limit_org(tenant_a.org, uploads_per_minute=1)
    second = api_key_create(organization=tenant_a.org, name="second")
    other = type(tenant_a.client)()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {second.plaintext}")
    assert upload(tenant_a.client).status_code == 200
    assert upload(tenant_a.client).status_code == 429
    assert upload(other).status_code == 200


def test_requests_without_a_key_are_refused_as_401_not_counted(tenant_a: Tenant, fresh_minute: None) -> None:
    limit_org(tenant_a.org, requests_per_minute=1)
    anonymous = type(tenant_a.client)()
    assert [anonymous.get("/v1/files").status_code for _ in range(3)] == [401, 401, 401]
    assert not RateLimitCounter.objects.exists()
    assert tenant_a.client.get("/v1/files").status_code == 200


# Whose limit


@pytest.mark.parametrize(
    ("default", "org", "key", "expected"),
    [
        (6000, None, None, 6000),  # the settings' default
        (6000, 100, None, 100),  # the organisation's, lower
        (6000, 9000, None, 9000),  # or higher: operators set it
        (6000, 0, None, 0),  # 0: no limit
        (6000, 100, 10, 10),  # a key's own lowers it
        (6000, 100, 500, 100),  # and never raises it
        (6000, None, 7000, 6000),  # not even above the default
        (6000, 0, 50, 50),  # under no organisation limit, the key's own holds
        (0, None, None, 0),  # no default limit
    ],
)
def test_a_keys_limit_is_the_lower_of_its_own_and_its_organisations(
    settings: Any, default: int, org: int | None, key: int | None, expected: int
) -> None:
    settings.RATE_LIMIT_UPLOADS_PER_MINUTE = default
    api_key = ApiKey(organization=Organization(uploads_per_minute=org), uploads_per_minute=key)
    assert rate_limit(api_key, UPLOADS) == expected
    assert rate_limit(api_key, DOWNLOADS) == settings.RATE_LIMIT_DOWNLOADS_PER_MINUTE


def test_the_default_limit_comes_from_settings(tenant_a: Tenant, settings: Any, fresh_minute: None) -> None:
    settings.RATE_LIMIT_UPLOADS_PER_MINUTE = 1
    assert [upload(tenant_a.client).status_code for _ in range(2)] == [200, 429]


def test_an_organisation_without_a_limit_is_not_limited(tenant_a: Tenant, settings: Any, fresh_minute: None) -> None:
    settings.RATE_LIMIT_UPLOADS_PER_MINUTE = 1
    limit_org(tenant_a.org, uploads_per_minute=0)
    assert [upload(tenant_a.client).status_code for _ in range(3)] == [200, 200, 200]
    assert not RateLimitCounter.objects.filter(scope=UPLOADS).exists()


def test_a_keys_own_limit_holds_it_below_its_organisations(tenant_a: Tenant, fresh_minute: None) -> None:
    limit_org(tenant_a.org, uploads_per_minute=5)
    limit_key(tenant_a.api_key, uploads_per_minute=1)
    assert upload(tenant_a.client).status_code == 200
    assert "1 uploads per minute" in error_of(upload(tenant_a.client))["message"]


# Counting: the minute, the lease, the database


def test_retry_after_is_the_time_until_the_next_minute(tenant_a: Tenant) -> None:
    limit_org(tenant_a.org, uploads_per_minute=1)
    api_key = fresh(tenant_a.api_key)
    rate_limit_admit(api_key=api_key, scopes=(UPLOADS,), now=START + 10)
    with pytest.raises(RateLimited) as refused:
        rate_limit_admit(api_key=api_key, scopes=(UPLOADS,), now=START + 45.25)
    assert refused.value.headers == {"Retry-After": "15", "retry-after-ms": "14750"}
    with pytest.raises(RateLimited):
        rate_limit_admit(api_key=api_key, scopes=(UPLOADS,), now=START + 45.25 + 14.74)
    # Told the truth: at that moment the key may upload again.
    rate_limit_admit(api_key=api_key, scopes=(UPLOADS,), now=START + 45.25 + 14.75)


def test_a_new_minute_starts_the_count_again_in_the_same_row(tenant_a: Tenant) -> None:
    limit_org(tenant_a.org, requests_per_minute=3)
    api_key = fresh(tenant_a.api_key)
    for minute in range(5):
        now = START + minute * 60
        for _ in range(3):
            rate_limit_admit(api_key=api_key, scopes=(REQUESTS,), now=now)
        with pytest.raises(RateLimited):
            rate_limit_admit(api_key=api_key, scopes=(REQUESTS,), now=now + 59)
    # One row per key and scope, whatever the minutes: the table cannot grow with time.
    assert list(RateLimitCounter.objects.values_list("scope", "window", "granted")) == [(REQUESTS, MINUTE + 4, 3)]


def test_a_process_takes_a_lease_of_the_limit_at_a_time(tenant_a: Tenant, settings: Any) -> None:
    settings.RATE_LIMIT_LEASE_DIVISOR = 10
    book = LeaseBook()
    with CaptureQueriesContext(connection) as queries:
        admitted = sum(take(book, tenant_a.api_key, limit=100, now=START) for _ in range(25))
    assert admitted == 25
    assert granted(tenant_a.api_key) == 30  # three leases of 10
    # The first lease also creates the row (UPDATE, INSERT, UPDATE); the next two are one UPDATE each.
    assert counter_writes(queries) == 5


def test_a_limit_below_the_divisor_is_counted_exactly(tenant_a: Tenant) -> None:
    books = [LeaseBook() for _ in range(3)]  # three processes
    admitted = [take(books[n % 3], tenant_a.api_key, limit=7, now=START) for n in range(30)]
    assert sum(admitted) == 7
    assert admitted[:7] == [True] * 7
    assert granted(tenant_a.api_key) == 7


def test_processes_sharing_the_database_never_hand_out_more_than_the_limit(tenant_a: Tenant, settings: Any) -> None:
    settings.RATE_LIMIT_LEASE_DIVISOR = 10
    books = [LeaseBook() for _ in range(3)]
    # Each process takes a lease of 10 and uses one: the worst case for requests left in leases.
    admitted = [take(book, tenant_a.api_key, limit=100, now=START) for book in books]
    while True:
        more = take(books[0], tenant_a.api_key, limit=100, now=START)
        if not more:
            break
        admitted.append(more)
    assert granted(tenant_a.api_key) == 100
    # Refused early by at most (processes - 1) x lease: here exactly the 2 x 9 left in the other two.
    assert sum(admitted) == 100 - 2 * 9
    assert sum(take(book, tenant_a.api_key, limit=100, now=START) for book in books[1:] for _ in range(20)) == 18
    assert not take(books[0], tenant_a.api_key, limit=100, now=START)


def test_near_the_limit_a_process_takes_what_is_left_one_at_a_time(tenant_a: Tenant, settings: Any) -> None:
    settings.RATE_LIMIT_LEASE_DIVISOR = 10  # leases of 9 for a limit of 95
    first, second = LeaseBook(), LeaseBook()
    assert take(first, tenant_a.api_key, limit=95, now=START)
    admitted = 0
    while take(second, tenant_a.api_key, limit=95, now=START):
        admitted += 1
    # Nine leases of 9 (81 requests), then the last 5 of the 95 one at a time rather than none.
    assert (admitted, granted(tenant_a.api_key)) == (81 + 5, 95)
    assert sum(take(first, tenant_a.api_key, limit=95, now=START) for _ in range(20)) == 8


@pytest.mark.django_db(transaction=True)
def test_requests_of_one_process_arriving_together_share_one_lease(settings: Any) -> None:
    settings.RATE_LIMIT_LEASE_DIVISOR = 10
    tenant = make_tenant("together")
    book = LeaseBook()
    assert race(lambda n: take(book, tenant.api_key, limit=1000, now=START), 12) == [True] * 12
    assert granted(tenant.api_key) == 100  # one lease, not one per waiting request


@pytest.mark.django_db(transaction=True)
def test_processes_taking_leases_at_once_hand_out_the_limit_exactly_once(settings: Any) -> None:
    settings.RATE_LIMIT_LEASE_DIVISOR = 10  # leases of 9
    tenant = make_tenant("racers")

    def process(n: int) -> int:
        book, admitted = LeaseBook(), 0
        while take(book, tenant.api_key, limit=95, now=START):
            admitted += 1
        return admitted

    # Each asks until refused, so it uses every request it leased: together exactly the limit.
    admitted = race(process, 12)
    assert sum(admitted) == 95
    assert granted(tenant.api_key) == 95


def test_a_count_of_a_later_minute_is_added_to_never_restarted(tenant_a: Tenant) -> None:
    ahead, behind = LeaseBook(), LeaseBook()  # another instance's clock is a minute ahead
    assert take(ahead, tenant_a.api_key, limit=2, now=START + 60)
    assert take(behind, tenant_a.api_key, limit=2, now=START)
    assert not take(behind, tenant_a.api_key, limit=2, now=START)
    assert RateLimitCounter.objects.get().window == MINUTE + 1
    assert granted(tenant_a.api_key) == 2


def test_requests_served_from_a_lease_make_no_query(tenant_a: Tenant, fresh_minute: None) -> None:
    assert tenant_a.client.get("/v1/files").status_code == 200  # takes the lease (and caches the key)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(10):
            assert tenant_a.client.get("/v1/files").status_code == 200
    assert counter_writes(queries) == 0


# The counters' rows


def test_revoking_a_key_deletes_its_counters(tenant_a: Tenant, fresh_minute: None) -> None:
    other = make_tenant("other")
    assert upload(tenant_a.client).status_code == 200
    assert upload(other.client).status_code == 200
    assert RateLimitCounter.objects.filter(api_key=tenant_a.api_key).count() == 2  # uploads and requests
    api_key_revoke(api_key=tenant_a.api_key)
    assert not RateLimitCounter.objects.filter(api_key=tenant_a.api_key).exists()
    assert RateLimitCounter.objects.filter(api_key=other.api_key).count() == 2


def test_deleting_a_key_deletes_its_counters(tenant_a: Tenant, fresh_minute: None) -> None:
    assert tenant_a.client.get("/v1/files").status_code == 200
    api_key_delete(api_key=tenant_a.api_key)
    assert not RateLimitCounter.objects.exists()


def take(book: LeaseBook, api_key: ApiKey, *, limit: int, now: float) -> bool:
    return book.take(api_key_id=api_key.pk, key_prefix=api_key.prefix, scope=REQUESTS, limit=limit, now=now)


def granted(api_key: ApiKey) -> int:
    return RateLimitCounter.objects.get(api_key=api_key, scope=REQUESTS).granted
